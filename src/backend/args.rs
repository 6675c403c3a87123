//! The command line, in two stages: getopts words into a typed, validated [`Args`] (no side
//! effects but reading `--dir`'s metadata), then [`Args::into_config`] resolves what needs the
//! system (the listen address, the default seed) into the runtime [`Config`].
//!
//! Every refusal names the word and the problem ([`UsageError`], shared by the four binaries);
//! the binary prints it with the usage line and exits 2. `-h` and `-V` are ordinary outcomes
//! ([`Parsed`]).

pub use crate::common::args::UsageError;
use crate::common::args::number_in;
use crate::common::log::{self, Level};
use getopts::Options;
use std::ffi::OsStr;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

pub const USAGE: &str = "Usage: backend [--dir DIR] [--errors E] [--entries T] [--threads n] \
[--name NAME] [--delay-ms d] [--avg-delay-ms d] [--fail-rate p] [--seed s] [--host H] \
[--keep-alive-timeout s] [--close-each] [--die-with-parent] [-v|-q] PORT";

/// The most worker threads we agree to start.
pub const MAX_THREADS: usize = 1024;

/// The longest `--keep-alive-timeout` accepted.
pub const MAX_KEEP_ALIVE: Duration = Duration::from_secs(3600);

/// The default `--keep-alive-timeout`.
pub const DEFAULT_KEEP_ALIVE: Duration = Duration::from_secs(15);

/// The longest `--name` accepted.
pub const MAX_NAME_LEN: usize = 200;

/// What the command line asks for.
#[derive(Debug)]
pub enum Parsed {
    /// Serve with these arguments.
    Run(Args),
    /// `-h`/`--help`: print the help text, exit 0.
    Help,
    /// `-V`/`--version`: print the version, exit 0.
    Version,
}

fn bad(word: impl Into<String>, problem: impl Into<String>) -> UsageError {
    UsageError::new(word, problem)
}

/// The validated command line.
#[derive(Debug, Clone, PartialEq)]
pub struct Args {
    /// An existing directory (checked).
    pub dir: PathBuf,
    pub errors: u64,
    pub entries: u64,
    /// In `1..=MAX_THREADS`.
    pub threads: usize,
    /// Printable ASCII without control characters, so it can go into a header; `None` means
    /// `backend-PORT` with the port actually bound.
    pub name: Option<String>,
    pub delay_ms: u64,
    pub avg_delay_ms: u64,
    /// A percentage in `0..=100`.
    pub fail_rate: f64,
    pub seed: Option<u64>,
    pub host: String,
    pub port: u16,
    pub die_with_parent: bool,
    pub level: Level,
    /// See [`Persistence`].
    pub persistence: Persistence,
}

/// How long a connection lives: `--keep-alive-timeout` and `--close-each`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Persistence {
    /// HTTP/1.1 persistent connections, closed after this long idle between requests; in
    /// `1 ms..=MAX_KEEP_ALIVE`.
    KeepAlive(Duration),
    /// `--close-each`: one request per connection, every reply says `Connection: close`.
    CloseEach,
}

/// What the server needs at run time.
#[derive(Debug, Clone)]
pub struct Config {
    pub addr: SocketAddr,
    pub dir: PathBuf,
    pub errors: u64,
    pub entries: u64,
    pub threads: usize,
    pub name: Option<String>,
    pub delay_ms: u64,
    pub avg_delay_ms: u64,
    pub fail_rate: f64,
    /// The `--seed`, or one drawn from the clock and the pid.
    pub seed: u64,
    pub die_with_parent: bool,
    pub persistence: Persistence,
}

fn options() -> Options {
    let mut o = Options::new();
    o.optopt("", "dir", "directory whose files are served (default: .)", "DIR");
    o.optopt("", "errors", "preset error count (default 0)", "E");
    o.optopt("", "entries", "preset entry count (default 0)", "T");
    o.optopt("", "threads", "worker threads (default 16)", "n");
    o.optopt("", "name", "Server-Name of every reply (default backend-PORT)", "NAME");
    o.optopt("", "delay-ms", "sleep d ms before answering", "d");
    o.optopt("", "avg-delay-ms", "add a random delay, exponential with mean d ms", "d");
    o.optopt("", "fail-rate", "percent of requests answered 500 (0..100)", "p");
    o.optopt("", "seed", "seed for --avg-delay-ms and --fail-rate", "s");
    o.optopt("", "host", "address to listen on (default 127.0.0.1)", "H");
    o.optopt("", "keep-alive-timeout", "close a connection idle this long between requests (default 15s)", "s");
    o.optflag("", "close-each", "one request per connection: reply with Connection: close, then close");
    o.optflag("", "die-with-parent", "exit when the parent process dies");
    o.optflagmulti("v", "verbose", "more logging (debug: one line per request)");
    o.optflagmulti("q", "quiet", "less logging");
    o.optflag("h", "help", "print this help");
    o.optflag("V", "version", "print the version");
    o
}

/// The `--help` text: the usage line and one line per option.
pub fn help() -> String {
    options().usage(USAGE)
}

fn number<T: std::str::FromStr>(flag: &str, v: &str, what: &str) -> Result<T, UsageError> {
    v.parse().map_err(|_| bad(format!("--{flag} {v}"), format!("not {what}")))
}

/// Parses the words after the program name.
pub fn parse<S: AsRef<OsStr>>(words: &[S]) -> Result<Parsed, UsageError> {
    let m = options().parse(words).map_err(UsageError::from_getopts)?;
    if m.opt_present("h") {
        return Ok(Parsed::Help);
    }
    if m.opt_present("V") {
        return Ok(Parsed::Version);
    }

    let port = match m.free.as_slice() {
        [] => return Err(bad("PORT", "missing")),
        [p] => number::<u16>("", p, "a port (0..65535)").map_err(|_| bad(p, "not a port (0..65535)"))?,
        [_, extra, ..] => return Err(bad(extra, "unexpected word (only one PORT)")),
    };
    let get = |flag: &str| m.opt_str(flag);
    let u64_flag = |flag: &str| -> Result<u64, UsageError> {
        get(flag).map_or(Ok(0), |v| number(flag, &v, "a non-negative integer"))
    };

    let dir = PathBuf::from(get("dir").unwrap_or_else(|| ".".to_string()));
    match std::fs::metadata(&dir) {
        Ok(md) if md.is_dir() => {}
        Ok(_) => return Err(bad(format!("--dir {}", dir.display()), "not a directory")),
        Err(e) => return Err(bad(format!("--dir {}", dir.display()), e.to_string())),
    }

    let threads = match get("threads") {
        None => 16,
        Some(v) => number_in(&v, 1..=MAX_THREADS).map_err(|e| bad(format!("--threads {v}"), e))?,
    };

    let name = get("name");
    if let Some(n) = &name {
        let printable = n.bytes().all(|b| (0x20..0x7f).contains(&b));
        if n.trim().len() != n.len() || n.is_empty() || n.len() > MAX_NAME_LEN || !printable {
            return Err(bad(
                format!("--name {n}"),
                format!("must be 1..{MAX_NAME_LEN} printable ASCII characters, not starting or ending with a space"),
            ));
        }
    }

    let fail_rate = match get("fail-rate") {
        None => 0.0,
        Some(v) => match number::<f64>("fail-rate", &v, "a number")? {
            p if (0.0..=100.0).contains(&p) => p,
            _ => {
                return Err(bad(format!("--fail-rate {v}"), "must be a percentage, 0..100"));
            }
        },
    };

    let seed = get("seed").map(|v| number("seed", &v, "a non-negative integer")).transpose()?;

    let host = get("host").unwrap_or_else(|| "127.0.0.1".to_string());
    if host.is_empty() {
        return Err(bad("--host", "empty"));
    }

    let persistence = persistence(m.opt_str("keep-alive-timeout"), m.opt_present("close-each"))?;

    Ok(Parsed::Run(Args {
        dir,
        errors: u64_flag("errors")?,
        entries: u64_flag("entries")?,
        threads,
        name,
        delay_ms: u64_flag("delay-ms")?,
        avg_delay_ms: u64_flag("avg-delay-ms")?,
        fail_rate,
        seed,
        host,
        port,
        die_with_parent: m.opt_present("die-with-parent"),
        level: log::level_from_counts(m.opt_count("v"), m.opt_count("q")),
        persistence,
    }))
}

/// `--keep-alive-timeout` (seconds, `2.5`, `500ms`: the balancer's duration words) and
/// `--close-each`, which exclude each other.
fn persistence(timeout: Option<String>, close_each: bool) -> Result<Persistence, UsageError> {
    let Some(word) = timeout else {
        return Ok(if close_each { Persistence::CloseEach } else { Persistence::KeepAlive(DEFAULT_KEEP_ALIVE) });
    };
    let flag = format!("--keep-alive-timeout {word}");
    if close_each {
        return Err(bad(flag, "cannot be given with --close-each"));
    }
    match crate::common::args::duration(&word) {
        Some(d) if d >= Duration::from_millis(1) && d <= MAX_KEEP_ALIVE => Ok(Persistence::KeepAlive(d)),
        Some(_) => Err(bad(flag, format!("must be 1ms..{}s", MAX_KEEP_ALIVE.as_secs()))),
        None => Err(bad(flag, "not a duration (seconds, like 15, 2.5 or 500ms)")),
    }
}

impl Args {
    /// Resolves the listen address (a literal IPv4 or IPv6 address, brackets allowed, or a name
    /// resolved once; the first address wins) and picks the seed.
    pub fn into_config(self) -> Result<Config, UsageError> {
        let host = self.host.trim_start_matches('[').trim_end_matches(']');
        let addr = (host, self.port)
            .to_socket_addrs()
            .map_err(|e| bad(format!("--host {}", self.host), format!("does not resolve: {e}")))?
            .next()
            .ok_or_else(|| bad(format!("--host {}", self.host), "resolves to no address"))?;
        Ok(Config {
            addr,
            dir: self.dir,
            errors: self.errors,
            entries: self.entries,
            threads: self.threads,
            name: self.name,
            delay_ms: self.delay_ms,
            avg_delay_ms: self.avg_delay_ms,
            fail_rate: self.fail_rate,
            seed: self.seed.unwrap_or_else(super::delay::default_seed),
            die_with_parent: self.die_with_parent,
            persistence: self.persistence,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Result<Parsed, UsageError> {
        parse(&s.split_whitespace().map(String::from).collect::<Vec<_>>())
    }

    fn args(s: &str) -> Args {
        match p(s) {
            Ok(Parsed::Run(a)) => a,
            other => panic!("{s}: {other:?}"),
        }
    }

    #[test]
    fn defaults() {
        let a = args("8080");
        assert_eq!((a.port, a.threads, a.errors, a.entries), (8080, 16, 0, 0));
        assert_eq!((a.host.as_str(), a.name.as_deref()), ("127.0.0.1", None));
        assert_eq!((a.delay_ms, a.avg_delay_ms, a.fail_rate, a.seed), (0, 0, 0.0, None));
        assert_eq!(a.level, Level::Info);
        assert_eq!(a.persistence, Persistence::KeepAlive(DEFAULT_KEEP_ALIVE));
    }

    #[test]
    fn persistence_flags() {
        assert_eq!(args("--close-each 1").persistence, Persistence::CloseEach);
        let a = args("--keep-alive-timeout 250ms 1");
        assert_eq!(a.persistence, Persistence::KeepAlive(Duration::from_millis(250)));
        assert_eq!(args("--keep-alive-timeout 2 1").persistence, Persistence::KeepAlive(Duration::from_secs(2)));
    }

    #[test]
    fn options_anywhere() {
        let a = args("--errors 3 0 --entries 7 -v --fail-rate 12.5 --seed 9 --name s1");
        assert_eq!((a.port, a.errors, a.entries, a.seed), (0, 3, 7, Some(9)));
        assert_eq!((a.fail_rate, a.name.as_deref()), (12.5, Some("s1")));
        assert_eq!(a.level, Level::Debug);
    }

    #[test]
    fn refusals_name_the_word() {
        let word = |s: &str| p(s).map(|_| String::new()).unwrap_or_else(|e| e.word);
        assert_eq!(word(""), "PORT");
        assert_eq!(word("99999"), "99999");
        assert_eq!(word("1 2"), "2");
        assert_eq!(word("--threads 0 1"), "--threads 0");
        assert_eq!(word("--threads x 1"), "--threads x");
        assert_eq!(word("--fail-rate 101 1"), "--fail-rate 101");
        assert_eq!(word("--errors -1 1"), "--errors -1");
        assert_eq!(word("--bogus 1"), "--bogus");
        assert_eq!(word("1 --dir"), "--dir");
        assert_eq!(word("-x 1"), "-x");
        assert_eq!(word("--seed 1 --seed 2 1"), "--seed");
        assert_eq!(word("--dir /nonexistent/x 1"), "--dir /nonexistent/x");
        assert_eq!(word("--keep-alive-timeout 0 1"), "--keep-alive-timeout 0");
        assert_eq!(word("--keep-alive-timeout 3601 1"), "--keep-alive-timeout 3601");
        assert_eq!(word("--keep-alive-timeout x 1"), "--keep-alive-timeout x");
        assert_eq!(word("--keep-alive-timeout 5 --close-each 1"), "--keep-alive-timeout 5");
    }

    #[test]
    fn help_and_version() {
        assert!(matches!(p("-h"), Ok(Parsed::Help)));
        assert!(matches!(p("--version"), Ok(Parsed::Version)));
    }
}
