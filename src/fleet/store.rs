//! Placeholder until the SQLite store lands.
use std::path::Path;
pub fn print_table(path: &Path, _json: bool) -> Result<String, String> {
    Err(format!("{}: stats are not supported yet", path.display()))
}
