//! The YAML config file (`loadbalancer --config FILE.yaml`) read into a `config::Layer`.
//!
//! Reading is two steps. serde-saphyr deserializes the document into `RawFile`, a struct with one
//! optional field per key (`deny_unknown_fields`, so an unknown key is refused with its line);
//! each field holds a `Spanned<Node>`: the YAML value as written, with its line. Then `to_layer`
//! checks each value's type and range itself, so every error names the file, the line and the
//! key in one line: `fleet.yaml:7: key 'rate': expected a number or off`. Checking by hand
//! rather than through typed serde fields is deliberate: a serde type error knows the line but
//! not the key, and cannot say "or off".
//!
//! The file says only what it says: every key is optional and maps to one `Layer` field;
//! defaults and whole-config checks (a port, at least one server) stay in `Config::build`, and
//! flags given on the command line win over the file (`Layer::over`).

use crate::balancer::config::{self, Balance, Cidr, Layer, MAX_BURST, MAX_LIMIT, Mode, parse_admin, parse_duration};
use crate::common::args::{DURATION_FORMS, shown};
use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::{MessageFormatter, Spanned, UserMessageFormatter};
use std::fmt;
use std::io;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Why a config file was refused. Display is one line that names the file (and the line and
/// the key where there is one).
#[derive(Debug)]
pub enum FileError {
    /// The file could not be read.
    Read { path: PathBuf, source: io::Error },
    /// The text is not YAML, or not one mapping of keys.
    Syntax { path: PathBuf, line: u64, message: String },
    /// A key this program does not know.
    UnknownKey { path: PathBuf, line: u64, key: String },
    /// A known key with a value of the wrong type or out of range.
    Value { path: PathBuf, line: u64, key: String, message: String },
}

impl FileError {
    /// The 1-based line the error points at; 0 when it is about the whole file.
    pub fn line(&self) -> u64 {
        match self {
            FileError::Read { .. } => 0,
            FileError::Syntax { line, .. } | FileError::UnknownKey { line, .. } | FileError::Value { line, .. } => {
                *line
            }
        }
    }

    /// The key the error is about, if any.
    pub fn key(&self) -> Option<&str> {
        match self {
            FileError::UnknownKey { key, .. } | FileError::Value { key, .. } => Some(key),
            _ => None,
        }
    }
}

impl fmt::Display for FileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FileError::Read { path, source } => write!(f, "{}: cannot read: {source}", path.display()),
            FileError::Syntax { path, line, message } => write!(f, "{}:{line}: {message}", path.display()),
            // The key is the file's text, and a complex key (`? ...`) may span lines: shown
            // escaped and cut, so the message stays one line.
            FileError::UnknownKey { path, line, key } => match closest_key(key) {
                Some(known) => {
                    write!(f, "{}:{line}: unknown key '{}' (did you mean '{known}'?)", path.display(), shown(key))
                }
                None => write!(f, "{}:{line}: unknown key '{}'", path.display(), shown(key)),
            },
            FileError::Value { path, line, key, message } => {
                write!(f, "{}:{line}: key '{key}': {message}", path.display())
            }
        }
    }
}

impl std::error::Error for FileError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            FileError::Read { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// Reads and parses `path`. Refuses an unreadable file, YAML syntax errors, unknown keys and
/// bad values, each with its line.
pub fn load(path: &Path) -> Result<Layer, FileError> {
    let bytes = std::fs::read(path).map_err(|source| FileError::Read { path: path.to_path_buf(), source })?;
    let text = String::from_utf8(bytes).map_err(|e| not_utf8(e.as_bytes(), e.utf8_error(), path))?;
    parse(&text, path)
}

/// A file that is not UTF-8, refused at the line of its first bad byte (`read_to_string` only
/// said "stream did not contain valid UTF-8", naming no line). See: issue #13, config corpus.
fn not_utf8(bytes: &[u8], e: std::str::Utf8Error, path: &Path) -> FileError {
    let at = e.valid_up_to();
    let before = &bytes[..at];
    let line = before.iter().filter(|&&b| b == b'\n').count() as u64 + 1;
    let column = at - before.iter().rposition(|&b| b == b'\n').map_or(0, |p| p + 1) + 1;
    let message = format!("not UTF-8 text: byte 0x{:02x} at column {column}", bytes[at]);
    FileError::Syntax { path: path.to_path_buf(), line, message }
}

/// Parses `text` as the contents of `path` (the path names the file in errors and anchors a
/// relative `stats-file`). An empty document is an empty `Layer`.
pub fn parse(text: &str, path: &Path) -> Result<Layer, FileError> {
    if text.lines().all(|l| l.trim().is_empty() || l.trim_start().starts_with('#')) {
        return Ok(Layer::default());
    }
    let raw: RawFile = serde_saphyr::from_str(text).map_err(|e| yaml_error(&e, text, path))?;
    to_layer(raw, path)
}

/// Maps a serde-saphyr error to ours, keeping its line, and naming the top-level key whose
/// value holds that line when there is one (serde-saphyr knows the line but not the key for,
/// say, a `.inf` or an unclosed `[`).
fn yaml_error(e: &serde_saphyr::Error, text: &str, path: &Path) -> FileError {
    let path = path.to_path_buf();
    let inner = e.without_snippet();
    let line = e.location().map(|l| l.line()).unwrap_or(0);
    if let serde_saphyr::Error::SerdeUnknownField { field, .. } = inner {
        return FileError::UnknownKey { path, line, key: field.clone() };
    }
    // One line: the message formatter may not add newlines, but be sure.
    let message = UserMessageFormatter.format_message(inner).replace('\n', " ");
    match enclosing_key(text, line) {
        Some(key) => FileError::Value { path, line, key, message },
        None => FileError::Syntax { path, line, message },
    }
}

/// The top-level key (`key:` at column 1) at or above `line` (1-based), if that line belongs
/// to a key of ours. A heuristic for error messages only: it never decides what a value is.
fn enclosing_key(text: &str, line: u64) -> Option<String> {
    let upto = usize::try_from(line).ok()?.checked_sub(1)?;
    let candidate = text
        .lines()
        .take(upto + 1)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .find(|l| l.starts_with(|c: char| !c.is_whitespace() && c != '#' && c != '-' && c != '}' && c != ']'))?;
    let (key, _) = candidate.split_once(':')?;
    let key = key.trim().trim_matches(|c| c == '"' || c == '\'');
    KEYS.contains(&key).then(|| key.to_string())
}

/// The known key nearest to `word`, if it is at most two edits away (a typo).
fn closest_key(word: &str) -> Option<&'static str> {
    KEYS.iter().map(|k| (edit_distance(word, k), *k)).filter(|(d, _)| *d <= 2).min().map(|(_, k)| k)
}

/// Levenshtein distance over chars.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diag = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let next = (row[j + 1] + 1).min(row[j] + 1).min(diag + usize::from(ca != *cb));
            diag = row[j + 1];
            row[j + 1] = next;
        }
    }
    row[b.len()]
}

/// A float as short as it can be read back: `1e-30`, `1.8446744073709552e19`, `2.5`.
fn float_words(v: f64) -> String {
    let a = v.abs();
    if a != 0.0 && a.is_finite() && !(1e-4..1e15).contains(&a) { format!("{v:e}") } else { v.to_string() }
}

/// A YAML value as written, before we know what it should be.
#[derive(Debug, Clone, PartialEq)]
enum Node {
    Null,
    Bool(bool),
    /// Any integer: wide enough for every u64 and i64.
    Int(i128),
    Float(f64),
    Str(String),
    Seq(Vec<Spanned<Node>>),
    Map(Vec<(Spanned<Node>, Spanned<Node>)>),
}

impl Node {
    /// What it is, for "expected X, found Y".
    fn kind(&self) -> &'static str {
        match self {
            Node::Null => "nothing",
            Node::Bool(_) => "a boolean",
            Node::Int(_) | Node::Float(_) => "a number",
            Node::Str(_) => "a string",
            Node::Seq(_) => "a list",
            Node::Map(_) => "a mapping",
        }
    }

    /// What it is, naming a scalar's value (shortened): `1e308`, `a string 'inf'`, `a list`.
    fn described(&self) -> String {
        match self {
            Node::Int(v) => v.to_string(),
            Node::Float(v) => float_words(*v),
            Node::Str(s) => format!("a string '{}'", shown(s)),
            other => other.kind().to_string(),
        }
    }
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Node, D::Error> {
        d.deserialize_any(NodeVisitor)
    }
}

struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML value")
    }
    fn visit_unit<E: de::Error>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }
    fn visit_none<E: de::Error>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Node, D::Error> {
        Node::deserialize(d)
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Node, E> {
        Ok(Node::Bool(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Node, E> {
        Ok(Node::Int(i128::from(v)))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Node, E> {
        Ok(Node::Int(i128::from(v)))
    }
    fn visit_i128<E: de::Error>(self, v: i128) -> Result<Node, E> {
        Ok(Node::Int(v))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Node, E> {
        Ok(Node::Float(v))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Node, E> {
        Ok(Node::Str(v.to_string()))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Node, E> {
        Ok(Node::Str(v))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Spanned<Node>>()? {
            items.push(item);
        }
        Ok(Node::Seq(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
        let mut entries = Vec::new();
        while let Some(entry) = map.next_entry::<Spanned<Node>, Spanned<Node>>()? {
            entries.push(entry);
        }
        Ok(Node::Map(entries))
    }
}

type Field = Option<Spanned<Node>>;

/// The keys of `RawFile`, as written in the file.
const KEYS: &[&str] = &[
    "port",
    "load-balancer-port",
    "host",
    "servers",
    "connections",
    "probe-every",
    "weights",
    "max-per-server",
    "queue-max",
    "queue-timeout",
    "rate",
    "burst",
    "admin",
    "client-timeout",
    "server-timeout",
    "drain-timeout",
    "balance",
    "server-speaks-first",
    "pool",
    "worker",
    "worker-port",
    "avg-delay",
    "failure",
    "stats-file",
    "stats-dir",
    "mode",
    "keep-alive-timeout",
    "server-idle-max",
    "server-idle-timeout",
    "shared-limit",
    "shared-name",
    "shared-lease",
    "shared-grace",
    "shared-fallback",
];

/// Every key the file may hold; the names are the long flags without their dashes, plus the
/// original fleet format's keys (`worker`, `pool`, `load-balancer-port`, ...).
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawFile {
    port: Field,
    load_balancer_port: Field,
    host: Field,
    servers: Field,
    connections: Field,
    probe_every: Field,
    weights: Field,
    max_per_server: Field,
    queue_max: Field,
    queue_timeout: Field,
    rate: Field,
    burst: Field,
    admin: Field,
    client_timeout: Field,
    server_timeout: Field,
    drain_timeout: Field,
    balance: Field,
    server_speaks_first: Field,
    pool: Field,
    worker: Field,
    worker_port: Field,
    avg_delay: Field,
    failure: Field,
    stats_file: Field,
    /// The old name of `stats-file` (it always named a file), still accepted.
    stats_dir: Field,
    mode: Field,
    keep_alive_timeout: Field,
    server_idle_max: Field,
    server_idle_timeout: Field,
    shared_limit: Field,
    shared_name: Field,
    shared_lease: Field,
    shared_grace: Field,
    shared_fallback: Field,
}

/// Checks values one key at a time; the first bad one is the error.
struct Checker<'a> {
    path: &'a Path,
}

impl Checker<'_> {
    fn err(&self, key: &str, node: &Spanned<Node>, message: impl Into<String>) -> FileError {
        // Messages echo the file's words, and a word may span lines (a quoted "\n", a folded
        // scalar): control characters are escaped so that the error stays one line.
        let mut one_line = String::new();
        for ch in message.into().chars() {
            if ch.is_control() {
                one_line.extend(ch.escape_default());
            } else {
                one_line.push(ch);
            }
        }
        FileError::Value {
            path: self.path.to_path_buf(),
            line: node.referenced.line(),
            key: key.to_string(),
            message: one_line,
        }
    }

    /// A whole number in `min..=max`.
    fn int<T: TryFrom<i128>>(&self, key: &str, node: &Spanned<Node>, min: i128, max: i128) -> Result<T, FileError> {
        let what = if max >= i128::from(u32::MAX) {
            format!("expected a whole number of at least {min}")
        } else {
            format!("expected a whole number in {min}..{max}")
        };
        match node.value {
            Node::Int(v) if (min..=max).contains(&v) => T::try_from(v).map_err(|_| self.err(key, node, what)),
            ref other => Err(self.err(key, node, format!("{what}, found {}", other.described()))),
        }
    }

    /// Any number (integer or not) in `min..=max`.
    fn number(&self, key: &str, node: &Spanned<Node>, min: f64, max: f64, what: &str) -> Result<f64, FileError> {
        let v = match node.value {
            Node::Int(v) => v as f64,
            Node::Float(v) => v,
            ref other => return Err(self.err(key, node, format!("expected {what}, found {}", other.described()))),
        };
        if v.is_finite() && (min..=max).contains(&v) {
            Ok(v)
        } else {
            Err(self.err(key, node, format!("expected {what}, found {v}")))
        }
    }

    fn string<'n>(&self, key: &str, node: &'n Spanned<Node>, what: &str) -> Result<&'n str, FileError> {
        match &node.value {
            Node::Str(s) => Ok(s),
            other => Err(self.err(key, node, format!("expected {what}, found {}", other.kind()))),
        }
    }

    /// Seconds as a number, or a string like `500ms`, `2.5s`, `30`.
    fn duration(&self, key: &str, node: &Spanned<Node>) -> Result<Duration, FileError> {
        let what = format!("expected {DURATION_FORMS}");
        let parsed = match &node.value {
            Node::Int(v) => parse_duration(&v.to_string()),
            Node::Float(v) => parse_duration(&v.to_string()),
            Node::Str(s) => parse_duration(s),
            other => return Err(self.err(key, node, format!("{what}, found {}", other.kind()))),
        };
        parsed.ok_or_else(|| self.err(key, node, format!("{what}, found {}", node.value.described())))
    }

    fn bool(&self, key: &str, node: &Spanned<Node>) -> Result<bool, FileError> {
        match node.value {
            Node::Bool(b) => Ok(b),
            ref other => Err(self.err(key, node, format!("expected true or false, found {}", other.kind()))),
        }
    }

    /// `8080`, `"host:8080"`, `"[::1]:8080"`: the syntax only; names resolve in `Config::build`.
    fn server(&self, node: &Spanned<Node>) -> Result<String, FileError> {
        const KEY: &str = "servers";
        let word = match &node.value {
            Node::Int(v) if (1..=65535).contains(v) => return Ok(v.to_string()),
            Node::Int(v) => return Err(self.err(KEY, node, format!("port {v} is not in 1..65535"))),
            Node::Str(s) => s.trim(),
            other => {
                return Err(self.err(KEY, node, format!("expected PORT or \"HOST:PORT\", found {}", other.kind())));
            }
        };
        let port = if let Ok(p) = word.parse::<u32>() {
            p
        } else {
            match word.rsplit_once(':') {
                Some((host, p)) if !host.is_empty() => p.parse::<u32>().unwrap_or(0),
                _ => return Err(self.err(KEY, node, format!("'{}': expected PORT or HOST:PORT", shown(word)))),
            }
        };
        if !(1..=65535).contains(&port) {
            return Err(self.err(KEY, node, format!("'{}': port must be 1..65535", shown(word))));
        }
        Ok(word.to_string())
    }

    /// A mapping from an address or CIDR block to a whole weight of at least 1.
    fn weights(&self, node: &Spanned<Node>) -> Result<Vec<(Cidr, u32)>, FileError> {
        const KEY: &str = "weights";
        let Node::Map(entries) = &node.value else {
            let found = node.value.kind();
            return Err(self.err(KEY, node, format!("expected a mapping like 10.0.0.0/8: 3, found {found}")));
        };
        let mut out = Vec::with_capacity(entries.len());
        for (block, weight) in entries {
            let Node::Str(text) = &block.value else {
                return Err(self.err(
                    KEY,
                    block,
                    format!("expected an address or CIDR block, found {}", block.value.kind()),
                ));
            };
            let cidr = Cidr::parse(text.trim())
                .ok_or_else(|| self.err(KEY, block, format!("'{}' is not an address or CIDR block", shown(text))))?;
            let w: u32 = self.int(KEY, weight, 1, i128::from(u32::MAX))?;
            out.push((cidr, w));
        }
        Ok(out)
    }
}

/// Checks each value and fills the layer. `path` names the file in errors and is the base of a
/// relative `stats-file`.
fn to_layer(raw: RawFile, path: &Path) -> Result<Layer, FileError> {
    let c = Checker { path };
    let mut layer = Layer::default();

    match (&raw.port, &raw.load_balancer_port) {
        (Some(_), Some(lbp)) => {
            return Err(c.err("load-balancer-port", lbp, "is the same as 'port': give one of them"));
        }
        (Some(n), None) => layer.port = Some(c.int("port", n, 0, 65535)?),
        (None, Some(n)) => layer.port = Some(c.int("load-balancer-port", n, 0, 65535)?),
        (None, None) => {}
    }
    if let Some(n) = &raw.host {
        let s = c.string("host", n, "an IP address")?;
        let ip: IpAddr =
            s.trim().parse().map_err(|_| c.err("host", n, format!("'{}' is not an IP address", shown(s))))?;
        layer.host = Some(ip);
    }
    if let Some(n) = &raw.servers {
        let Node::Seq(items) = &n.value else {
            return Err(c.err("servers", n, format!("expected a list of servers, found {}", n.value.kind())));
        };
        layer.servers = Some(items.iter().map(|s| c.server(s)).collect::<Result<_, _>>()?);
    }
    if let Some(n) = &raw.connections {
        layer.connections = Some(c.int("connections", n, 1, MAX_LIMIT as i128)?);
    }
    if let Some(n) = &raw.probe_every {
        layer.probe_every = Some(c.int("probe-every", n, 1, i128::from(u32::MAX))?);
    }
    if let Some(n) = &raw.weights {
        layer.weights = Some(c.weights(n)?);
    }
    if let Some(n) = &raw.max_per_server {
        layer.max_per_server = Some(c.int("max-per-server", n, 1, i128::from(u32::MAX))?);
    }
    if let Some(n) = &raw.queue_max {
        layer.queue_max = Some(c.int("queue-max", n, 1, i128::from(u32::MAX))?);
    }
    if let Some(n) = &raw.queue_timeout {
        layer.queue_timeout = Some(c.duration("queue-timeout", n)?);
    }
    if let Some(n) = &raw.rate {
        // `off` (or 0) turns pacing off, as `--rate off` does. YAML 1.1 reads a bare `off` as
        // false, so a boolean false is also off. The range is `config::check_rate`'s, the one
        // the flag and `PUT /rate` use.
        let what =
            format!("expected a number or off ({} to {} connections per second)", config::MIN_RATE, config::MAX_RATE);
        let rate = match &n.value {
            Node::Str(s) if s.trim() == "off" => None,
            Node::Bool(false) => None,
            Node::Int(v) => config::check_rate(*v as f64)
                .map_err(|_| c.err("rate", n, format!("{what}, found {}", n.value.described())))?,
            Node::Float(v) => config::check_rate(*v)
                .map_err(|_| c.err("rate", n, format!("{what}, found {}", n.value.described())))?,
            other => return Err(c.err("rate", n, format!("{what}, found {}", other.described()))),
        };
        layer.rate = Some(rate);
    }
    if let Some(n) = &raw.burst {
        layer.burst = Some(c.int("burst", n, 1, i128::from(MAX_BURST))?);
    }
    if let Some(n) = &raw.admin {
        let word = match &n.value {
            Node::Int(_) => c.int::<u16>("admin", n, 0, 65535)?.to_string(),
            Node::Str(s) => s.trim().to_string(),
            other => return Err(c.err("admin", n, format!("expected PORT or \"HOST:PORT\", found {}", other.kind()))),
        };
        // Checked here too so that a bad word gets its line; `Config::build` parses it again.
        parse_admin(&word).map_err(|_| c.err("admin", n, format!("'{}': expected PORT or HOST:PORT", shown(&word))))?;
        layer.admin = Some(word);
    }
    if let Some(n) = &raw.client_timeout {
        layer.client_timeout = Some(c.duration("client-timeout", n)?);
    }
    if let Some(n) = &raw.server_timeout {
        layer.server_timeout = Some(c.duration("server-timeout", n)?);
    }
    if let Some(n) = &raw.drain_timeout {
        layer.drain_timeout = Some(c.duration("drain-timeout", n)?);
    }
    if let Some(n) = &raw.balance {
        const WHAT: &str = "expected least-loaded, round-robin or least-conn";
        let s = c.string("balance", n, WHAT)?;
        layer.balance =
            Some(Balance::parse(s.trim()).ok_or_else(|| c.err("balance", n, format!("'{}': {WHAT}", shown(s))))?);
    }
    if let Some(n) = &raw.server_speaks_first {
        layer.server_speaks_first = Some(c.bool("server-speaks-first", n)?);
    }
    if let Some(n) = &raw.mode {
        const WHAT: &str = "expected tcp or http";
        let s = c.string("mode", n, WHAT)?;
        layer.mode = Some(Mode::parse(s.trim()).ok_or_else(|| c.err("mode", n, format!("'{}': {WHAT}", shown(s))))?);
    }
    if let Some(n) = &raw.keep_alive_timeout {
        layer.keep_alive_timeout = Some(c.duration("keep-alive-timeout", n)?);
    }
    if let Some(n) = &raw.server_idle_max {
        layer.server_idle_max = Some(c.int("server-idle-max", n, 0, 1_000_000)?);
    }
    if let Some(n) = &raw.server_idle_timeout {
        layer.server_idle_timeout = Some(c.duration("server-idle-timeout", n)?);
    }
    if let Some(n) = &raw.pool {
        layer.pool = Some(c.int("pool", n, 1, 1024)?);
    }
    if let Some(n) = &raw.worker {
        layer.workers = Some(c.int("worker", n, 0, 1024)?);
    }
    if let Some(n) = &raw.worker_port {
        layer.worker_port = Some(c.int("worker-port", n, 1, 65535)?);
    }
    if let Some(n) = &raw.avg_delay {
        // Whole milliseconds: the spawned backend's `--avg-delay-ms` takes an integer, and a
        // fraction passed on would make every spawn exit 2 and restart forever.
        layer.avg_delay_ms = Some(f64::from(c.int::<u32>("avg-delay", n, 0, 3_600_000)?));
    }
    if let Some(n) = &raw.failure {
        layer.failure = Some(c.number("failure", n, 0.0, 100.0, "a percentage in 0..100")?);
    }
    let stats = match (&raw.stats_file, &raw.stats_dir) {
        (Some(_), Some(dir)) => {
            return Err(c.err("stats-dir", dir, "is the old name of 'stats-file': give one of them"));
        }
        (Some(n), None) => Some(("stats-file", n)),
        (None, Some(n)) => Some(("stats-dir", n)),
        (None, None) => None,
    };
    if let Some((key, n)) = stats {
        let s = c.string(key, n, "a path")?;
        if s.is_empty() {
            return Err(c.err(key, n, "expected a path, found an empty string"));
        }
        let p = Path::new(s);
        // A relative path is relative to the file that names it, not to where we were started.
        let base = path.parent().unwrap_or(Path::new(""));
        layer.stats_file = Some(if p.is_absolute() { p.to_path_buf() } else { base.join(p) });
    }
    shared_keys(&c, &raw, &mut layer)?;
    Ok(layer)
}

/// `shared-*` (issue 14): syntax here, ranges and the whole in `shared::settings::build`.
fn shared_keys(c: &Checker<'_>, raw: &RawFile, layer: &mut Layer) -> Result<(), FileError> {
    use crate::balancer::shared::settings::{check_name, parse_url};
    if let Some(n) = &raw.shared_limit {
        let u = c.string("shared-limit", n, "redis://HOST:PORT[/DB]")?.trim();
        parse_url(u).map_err(|e| c.err("shared-limit", n, format!("'{u}': {e}")))?;
        layer.shared_limit = Some(u.to_string());
    }
    if let Some(n) = &raw.shared_name {
        let name = c.string("shared-name", n, "a group name")?.trim();
        check_name(name).map_err(|e| c.err("shared-name", n, format!("'{name}': {e}")))?;
        layer.shared_name = Some(name.to_string());
    }
    if let Some(n) = &raw.shared_lease {
        layer.shared_lease = Some(c.duration("shared-lease", n)?);
    }
    if let Some(n) = &raw.shared_grace {
        layer.shared_grace = Some(c.duration("shared-grace", n)?);
    }
    if let Some(n) = &raw.shared_fallback {
        layer.shared_fallback = Some(c.int("shared-fallback", n, 0, i128::from(u32::MAX))?);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(text: &str) -> Layer {
        parse(text, Path::new("/etc/lb/t.yaml")).unwrap_or_else(|e| panic!("{e}"))
    }

    /// The error for `text`, checked to be one line naming the file.
    fn bad(text: &str) -> FileError {
        let e = parse(text, Path::new("t.yaml")).expect_err("should be refused");
        let msg = e.to_string();
        assert!(msg.starts_with("t.yaml:"), "{msg}");
        assert!(!msg.contains('\n'), "not one line: {msg}");
        e
    }

    /// Asserts the error's line and key, and that its message contains `words`.
    fn bad_at(text: &str, line: u64, key: &str, words: &str) {
        let e = bad(text);
        assert_eq!(e.line(), line, "{e}");
        assert_eq!(e.key(), Some(key), "{e}");
        assert!(e.to_string().contains(words), "{e} lacks {words}");
        assert!(e.to_string().starts_with(&format!("t.yaml:{line}: ")), "{e}");
    }

    #[test]
    fn empty_file_says_nothing() {
        let l = ok("");
        assert!(l.port.is_none() && l.servers.is_none());
        let l = ok("# only a comment\n\n");
        assert!(l.port.is_none());
    }

    #[test]
    fn port_and_its_fleet_name() {
        assert_eq!(ok("port: 8020").port, Some(8020));
        assert_eq!(ok("load-balancer-port: 8021").port, Some(8021));
        bad_at("port: 8020\nload-balancer-port: 8021\n", 2, "load-balancer-port", "give one");
        bad_at("port: 70000", 1, "port", "0..65535");
        bad_at("port: -1", 1, "port", "found -1");
        bad_at("port: abc", 1, "port", "found a string");
        bad_at("\n\nload-balancer-port: [1]", 3, "load-balancer-port", "found a list");
    }

    #[test]
    fn host() {
        assert_eq!(ok("host: 0.0.0.0").host, Some("0.0.0.0".parse().unwrap()));
        assert_eq!(ok("host: '::1'").host, Some("::1".parse().unwrap()));
        bad_at("port: 1\nhost: example.com", 2, "host", "not an IP address");
    }

    #[test]
    fn servers_are_ports_or_host_port() {
        let l = ok("servers: [8080, \"127.0.0.1:8081\", \"localhost:9\", \"[::1]:7\", \"8082\"]");
        assert_eq!(l.servers.unwrap(), vec!["8080", "127.0.0.1:8081", "localhost:9", "[::1]:7", "8082"]);
        let l = ok("servers:\n  - 8080\n  - 8081\n");
        assert_eq!(l.servers.unwrap(), vec!["8080", "8081"]);
        bad_at("servers:\n  - 8080\n  - 0\n", 3, "servers", "not in 1..65535");
        bad_at("servers:\n  - 8080\n  - \"nohost\"\n", 3, "servers", "expected PORT or HOST:PORT");
        bad_at("servers:\n  - \"h:99999\"\n", 2, "servers", "port must be 1..65535");
        bad_at("servers: 8080", 1, "servers", "expected a list");
        bad_at("servers:\n  - [1]\n", 2, "servers", "found a list");
    }

    #[test]
    fn counts_and_limits() {
        let l = ok("connections: 7\nprobe-every: 3\nmax-per-server: 2\nqueue-max: 100\nburst: 5\n");
        assert_eq!(
            (l.connections, l.probe_every, l.max_per_server, l.queue_max, l.burst),
            (Some(7), Some(3), Some(2), Some(100), Some(5))
        );
        bad_at("connections: 0", 1, "connections", "in 1..2048, found 0");
        bad_at("probe-every: 1.5", 1, "probe-every", "whole number");
        bad_at("max-per-server: 0", 1, "max-per-server", "at least 1");
        bad_at("queue-max: x", 1, "queue-max", "found a string");
        bad_at("burst: -3", 1, "burst", "in 1..1000000, found -3");
    }

    #[test]
    fn durations_as_numbers_or_strings() {
        let l = ok("queue-timeout: 30\nclient-timeout: 2.5\nserver-timeout: \"500ms\"\ndrain-timeout: 2.5s\n");
        assert_eq!(l.queue_timeout, Some(Duration::from_secs(30)));
        assert_eq!(l.client_timeout, Some(Duration::from_millis(2500)));
        assert_eq!(l.server_timeout, Some(Duration::from_millis(500)));
        assert_eq!(l.drain_timeout, Some(Duration::from_millis(2500)));
        bad_at("queue-timeout: -1", 1, "queue-timeout", "expected seconds");
        bad_at("a: 1\n", 1, "a", "unknown key");
        bad_at("port: 1\nclient-timeout: soon", 2, "client-timeout", "expected seconds");
        bad_at("server-timeout: true", 1, "server-timeout", "found a boolean");
        bad_at("drain-timeout: {a: 1}", 1, "drain-timeout", "found a mapping");
    }

    #[test]
    fn rate_is_a_number_or_off() {
        assert_eq!(ok("rate: 20").rate, Some(Some(20.0)));
        assert_eq!(ok("rate: 2.5").rate, Some(Some(2.5)));
        assert_eq!(ok("rate: off").rate, Some(None));
        assert_eq!(ok("rate: \"off\"").rate, Some(None));
        assert_eq!(ok("rate: 0").rate, Some(None));
        bad_at("\nrate: fast", 2, "rate", "expected a number or off (0.001 to 1000000 connections per second)");
        bad_at("rate: -1", 1, "rate", "expected a number or off (0.001 to 1000000 connections per second), found -1");
        bad_at("rate: .inf", 1, "rate", "not a finite number");
        assert_eq!(ok("rate: 100000").rate, Some(Some(100000.0)));
        for (v, shown) in [
            ("1e-30", "1e-30"),
            ("5e-324", "5e-324"),
            ("1e308", "1e308"),
            ("18446744073709551616", "1.8446744073709552e19"),
            ("-0.0", "-0"),
            ("1000001", "1000001"),
        ] {
            bad_at(
                &format!("rate: {v}"),
                1,
                "rate",
                &format!("0.001 to 1000000 connections per second), found {shown}"),
            );
        }
        bad_at("rate: inf", 1, "rate", "found a string 'inf'");
        bad_at("rate: nan", 1, "rate", "found a string 'nan'");
    }

    #[test]
    fn limits_and_bursts_have_a_maximum() {
        assert_eq!(ok("connections: 2048").connections, Some(2048));
        bad_at("connections: 100000", 1, "connections", "in 1..2048, found 100000");
        // YAML reads an integer beyond 64 bits as a float.
        bad_at("connections: 18446744073709551616", 1, "connections", "found 1.8446744073709552e19");
        bad_at("connections: 1e308", 1, "connections", "found 1e308");
        bad_at("burst: 1000001", 1, "burst", "in 1..1000000, found 1000001");
        bad_at("burst: 5e-324", 1, "burst", "found 5e-324");
    }

    #[test]
    fn admin_is_a_port_or_host_port() {
        assert_eq!(ok("admin: 9000").admin.as_deref(), Some("9000"));
        assert_eq!(ok("admin: \"0.0.0.0:9000\"").admin.as_deref(), Some("0.0.0.0:9000"));
        bad_at("admin: 99999", 1, "admin", "0..65535");
        bad_at("admin: \"nonsense\"", 1, "admin", "expected PORT or HOST:PORT");
        bad_at("admin: [1]", 1, "admin", "found a list");
    }

    #[test]
    fn balance_and_flags() {
        assert_eq!(ok("balance: round-robin").balance, Some(Balance::RoundRobin));
        assert_eq!(ok("balance: least-conn").balance, Some(Balance::LeastConn));
        assert_eq!(ok("balance: least-loaded").balance, Some(Balance::LeastLoaded));
        bad_at("balance: random", 1, "balance", "'random': expected least-loaded");
        bad_at("balance: 3", 1, "balance", "found a number");
        assert_eq!(ok("server-speaks-first: true").server_speaks_first, Some(true));
        assert_eq!(ok("server-speaks-first: false").server_speaks_first, Some(false));
        bad_at("server-speaks-first: 1", 1, "server-speaks-first", "true or false");
    }

    #[test]
    fn weights_map_blocks_to_weights() {
        let l = ok("weights:\n  127.0.0.2: 2\n  10.0.0.0/8: 3\n  \"::1\": 4\n");
        let w = l.weights.unwrap();
        assert_eq!(w.len(), 3);
        assert_eq!(w[0], (Cidr::parse("127.0.0.2").unwrap(), 2));
        assert_eq!(w[1], (Cidr::parse("10.0.0.0/8").unwrap(), 3));
        assert_eq!(w[2], (Cidr::parse("::1").unwrap(), 4));
        bad_at("weights:\n  127.0.0.2: 2\n  10.0.0.0/33: 3\n", 3, "weights", "'10.0.0.0/33' is not an address");
        bad_at("weights:\n  127.0.0.2: 0\n", 2, "weights", "at least 1");
        bad_at("weights:\n  127.0.0.2: x\n", 2, "weights", "found a string");
        bad_at("weights: [1, 2]", 1, "weights", "expected a mapping");
    }

    #[test]
    fn fleet_keys() {
        let l = ok("worker: 3\npool: 2\nworker-port: 9001\navg-delay: 20\nfailure: 12.5\n");
        assert_eq!((l.workers, l.pool, l.worker_port), (Some(3), Some(2), Some(9001)));
        assert_eq!((l.avg_delay_ms, l.failure), (Some(20.0), Some(12.5)));
        assert_eq!(ok("worker: 0").workers, Some(0));
        bad_at("pool: 0", 1, "pool", "1..1024");
        bad_at("worker: -1", 1, "worker", "0..1024");
        bad_at("worker-port: 0", 1, "worker-port", "1..65535");
        bad_at("avg-delay: -5", 1, "avg-delay", "whole number in 0..3600000");
        bad_at("avg-delay: 2.5", 1, "avg-delay", "whole number");
        bad_at("failure: 101", 1, "failure", "0..100");
        bad_at("failure: lots", 1, "failure", "found a string");
    }

    #[test]
    fn stats_file_and_its_old_name() {
        assert_eq!(ok("stats-file: /var/lib/lb.db").stats_file, Some(PathBuf::from("/var/lib/lb.db")));
        assert_eq!(ok("stats-file: s.db").stats_file, Some(PathBuf::from("/etc/lb/s.db")));
        bad_at("stats-file: a.db\nstats-dir: b.db\n", 2, "stats-dir", "give one of them");
        bad_at("stats-file: ''", 1, "stats-file", "empty");
    }

    #[test]
    fn stats_dir_is_relative_to_the_file() {
        assert_eq!(ok("stats-dir: stats.db").stats_file, Some(PathBuf::from("/etc/lb/stats.db")));
        assert_eq!(ok("stats-dir: /var/lib/lb.db").stats_file, Some(PathBuf::from("/var/lib/lb.db")));
        let l = parse("stats-dir: s.db", Path::new("fleet.yaml")).unwrap();
        assert_eq!(l.stats_file, Some(PathBuf::from("s.db")));
        bad_at("stats-dir: 3", 1, "stats-dir", "expected a path");
        bad_at("stats-dir: ''", 1, "stats-dir", "empty");
    }

    #[test]
    fn unknown_keys_are_named_with_their_line() {
        bad_at(
            "port: 1\nservers: [2]\nconection: 3\n",
            3,
            "conection",
            "unknown key 'conection' (did you mean 'connections'?)",
        );
        bad_at("N: 3", 1, "N", "unknown key 'N'");
        assert_eq!(bad("workers: 3").to_string(), "t.yaml:1: unknown key 'workers' (did you mean 'worker'?)");
        assert_eq!(bad("colour: red").to_string(), "t.yaml:1: unknown key 'colour'");
    }

    /// A value may span lines too (a quoted "\n", a folded plain scalar); every message that
    /// echoes it stays one line. Found by the `config_file` fuzz target (issue 13).
    #[test]
    fn a_value_over_two_lines_is_shown_on_one() {
        for text in [
            "mode: \"a\\nb\"",
            "balance: \"a\\rb\"",
            "host: \"a\\nb\"",
            "admin: \"a\\nb\"",
            "servers: [\"a\\nb\"]",
            "weights:\n  \"a\\nb\": 2",
            "shared-limit: redis://a\n\n  b:1",
            "shared-name: \"a\\nb\"",
        ] {
            bad(text);
        }
    }

    /// A complex key (`? ...`) may span lines; the message stays one line. Found by the
    /// `config_file` fuzz target (issue 13).
    #[test]
    fn an_unknown_key_over_two_lines_is_shown_on_one() {
        let e = bad("? port+x# a\n\n  y\n: 8808\n");
        assert!(e.to_string().contains(r"unknown key 'port+x# a\ny'"), "{e}");
    }

    #[test]
    fn syntax_errors_have_a_line() {
        let e = bad("port: 1\nservers: [2\n");
        assert!(e.line() >= 2, "{e}");
        let e = bad("port: 1\n  bad indent: [\n");
        assert!(e.line() >= 1, "{e}");
        let e = bad("port: 1\nport: 2\n");
        assert_eq!(e.line(), 2, "{e}");
        // A YAML error inside a key's value names the key.
        bad_at("port: 1\nservers:\n  - 1\n  - [2\n", 4, "servers", "");
        let e = bad("- 1\n- 2\n");
        assert!(matches!(e, FileError::Syntax { .. }), "{e}");
    }

    #[test]
    fn every_key_is_known() {
        for key in KEYS {
            let e = parse(&format!("{key}: [[]]"), Path::new("t.yaml")).unwrap_err();
            assert_eq!(e.key(), Some(*key), "{e}");
            assert!(matches!(e, FileError::Value { .. }), "{e}");
        }
    }

    #[test]
    fn shared_keys_are_checked() {
        let l = ok(
            "shared-limit: redis://127.0.0.1:6379/1\nshared-name: eu\nshared-lease: 2s\nshared-grace: 5\nshared-fallback: 1\n",
        );
        assert_eq!(l.shared_limit.as_deref(), Some("redis://127.0.0.1:6379/1"));
        assert_eq!(l.shared_name.as_deref(), Some("eu"));
        assert_eq!((l.shared_lease, l.shared_grace), (Some(Duration::from_secs(2)), Some(Duration::from_secs(5))));
        assert_eq!(l.shared_fallback, Some(1));
        bad_at("port: 1\nshared-limit: http://x:1", 2, "shared-limit", "expected redis://HOST:PORT[/DB]");
        bad_at("shared-name: 'a b'", 1, "shared-name", "letters, digits");
        bad_at("shared-lease: soon", 1, "shared-lease", "expected seconds");
        bad_at("shared-fallback: -1", 1, "shared-fallback", "at least 0");
    }

    #[test]
    fn unreadable_file_is_named() {
        let e = load(Path::new("/nonexistent/dir/x.yaml")).unwrap_err();
        assert!(e.to_string().starts_with("/nonexistent/dir/x.yaml: cannot read: "), "{e}");
    }
}
