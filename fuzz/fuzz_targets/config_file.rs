//! The config loader (`file::parse`, what `file::load` runs on a file's text) on any text,
//! and on any bytes as `load` reads them (a file that is not UTF-8 is refused before parsing;
//! here the bytes are made text lossily so that the parser sees them too). Checks: no panic;
//! an error is one line, names the file, and points at a line of the text (or 0),
//! lines counted as YAML counts them.
#![no_main]

use lb::balancer::file::parse;
use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Err(e) = parse(&text, Path::new("fuzz.yaml")) {
        let shown = e.to_string();
        assert!(!shown.contains('\n'), "two lines: {shown:?}");
        assert!(shown.starts_with("fuzz.yaml"), "does not name the file: {shown:?}");
        // YAML ends a line at LF, CRLF or a lone CR (`str::lines` knows only the first two).
        let lines = text.replace("\r\n", "\n").bytes().filter(|&b| b == b'\n' || b == b'\r').count() as u64 + 1;
        assert!(e.line() <= lines + 1, "line {} of a {lines}-line text: {shown}", e.line());
    }
});
