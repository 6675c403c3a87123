//! Command-line helpers shared by the four binaries (`loadbalancer`, `backend`, `eventrelay`,
//! `eventsim`): one error type for a refused word, one way to read a whole number in a range,
//! one duration and one size syntax, one way to open a listening socket, and one way to raise
//! the open-file limit.
//!
//! Each binary keeps its own flags and its own wording (which flag, which environment
//! variable, which config key); what a value *means* (`500ms`, `64KiB`, a backlog of 1024,
//! `SO_REUSEADDR`) is decided here once, so the four programs cannot drift apart.

use crate::common::sys;
use socket2::{Domain, Protocol, Socket, Type};
use std::fmt;
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::ops::RangeInclusive;
use std::str::FromStr;
use std::time::Duration;

/// A refused command line: the word (a flag with its value, a positional, an environment
/// variable) and what is wrong with it. Every binary prints it as one line, then its usage
/// line, and exits 2.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageError {
    /// What was refused, as the user typed it: `--rate '1e-30'`, `PORT`, `--window`.
    pub word: String,
    /// Why, with the accepted range or forms where there are some; may be empty when `word`
    /// already says it all.
    pub problem: String,
}

impl UsageError {
    pub fn new(word: impl Into<String>, problem: impl Into<String>) -> UsageError {
        UsageError { word: word.into(), problem: problem.into() }
    }

    /// getopts reports an option by its bare name (`v`, `dir`): say it as it is typed.
    pub fn from_getopts(fail: getopts::Fail) -> UsageError {
        use getopts::Fail;
        match fail {
            Fail::ArgumentMissing(w) => UsageError::new(dashed(&w), "needs a value"),
            Fail::UnrecognizedOption(w) => UsageError::new(dashed(&w), "unknown option"),
            Fail::OptionMissing(w) => UsageError::new(dashed(&w), "missing"),
            Fail::OptionDuplicated(w) => UsageError::new(dashed(&w), "given more than once"),
            Fail::UnexpectedArgument(w) => UsageError::new(dashed(&w), "takes no value"),
        }
    }
}

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.problem.is_empty() { f.write_str(&self.word) } else { write!(f, "{}: {}", self.word, self.problem) }
    }
}

impl std::error::Error for UsageError {}

/// `v` → `-v`, `dir` → `--dir`; a name getopts gives back already dashed stays as it is.
pub fn dashed(name: &str) -> String {
    if name.starts_with('-') {
        name.to_string()
    } else if name.chars().count() == 1 {
        format!("-{name}")
    } else {
        format!("--{name}")
    }
}

/// A word as it may be shown in a one-line message: at most 40 characters (a hostile value
/// may be a megabyte long), control characters escaped.
pub fn shown(word: &str) -> String {
    const MAX: usize = 40;
    let mut out: String = word.chars().take(MAX).flat_map(char::escape_default).collect();
    if word.chars().count() > MAX {
        out.push_str("...");
    }
    out
}

/// A whole number in `range`; the error says the range, whatever was wrong (not a number,
/// too big for the type, out of range), so the caller only adds the flag.
pub fn number_in<T>(word: &str, range: RangeInclusive<T>) -> Result<T, String>
where
    T: FromStr + PartialOrd + fmt::Display + Copy,
{
    match word.trim().parse::<T>() {
        Ok(v) if range.contains(&v) => Ok(v),
        _ => Err(format!("expected a whole number from {} to {}", range.start(), range.end())),
    }
}

/// The longest duration any flag or key accepts: a year. Far beyond any sensible timeout,
/// and small enough that `Instant::now() + d` can never overflow.
pub const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 3600);

/// How a duration may be written, for messages.
pub const DURATION_FORMS: &str = "seconds, like 30, 2.5, 30s or 500ms (at most a year)";

/// `30`, `2.5`, `30s`, `500ms` → a duration in `0..=MAX_DURATION`; refuses negatives, NaN,
/// infinities and garbage. Callers that need a minimum (above zero, above a second) check it
/// themselves and say so in their message.
pub fn duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let (num, scale) = if let Some(n) = s.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1.0)
    } else {
        (s, 1.0)
    };
    let v: f64 = num.trim().parse().ok()?;
    let secs = v * scale;
    if !(0.0..=MAX_DURATION.as_secs_f64()).contains(&secs) {
        return None; // also NaN
    }
    Duration::try_from_secs_f64(secs).ok()
}

/// How a size may be written, for messages.
pub const SIZE_FORMS: &str = "a size such as 1MiB, 64KiB or 4096";

/// `1MiB`, `64KiB`, `64K`, `1M`, `1G`, or a bare number of bytes; `None` on garbage or
/// overflow.
pub fn size(s: &str) -> Option<usize> {
    let s = s.trim();
    let units: [(&str, usize); 6] =
        [("KiB", 1 << 10), ("MiB", 1 << 20), ("GiB", 1 << 30), ("K", 1 << 10), ("M", 1 << 20), ("G", 1 << 30)];
    for (suffix, mult) in units {
        if let Some(n) = s.strip_suffix(suffix) {
            return n.trim().parse::<usize>().ok()?.checked_mul(mult);
        }
    }
    s.parse().ok()
}

/// Listen backlog of every listener: room for a thousand clients connecting at once.
pub const BACKLOG: i32 = 1024;

/// How a listening socket is set up beyond the common part (`SO_REUSEADDR`, `BACKLOG`).
#[derive(Debug, Clone, Copy, Default)]
pub struct ListenOptions {
    /// Accept without blocking (for a `poll` loop).
    pub nonblocking: bool,
    /// Nagle off on the listener: Linux hands it on to every accepted socket. Latency only,
    /// so a refusal is ignored.
    pub nodelay: bool,
    /// `TCP_DEFER_ACCEPT` (Linux): accept completes once the client has spoken. Best effort:
    /// a refusal is logged as a warning, since the caller works without it.
    pub defer_accept: bool,
}

/// A listening socket could not be set up: at which step, on which address.
#[derive(Debug)]
pub struct ListenError {
    pub addr: SocketAddr,
    /// What we were doing, as a verb phrase: `bind`, `listen on`.
    pub step: &'static str,
    pub source: io::Error,
}

impl fmt::Display for ListenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cannot {} {}: {}", self.step, self.addr, self.source)
    }
}

impl std::error::Error for ListenError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

/// Opens a listening TCP socket on `addr`: `SO_REUSEADDR` (a restart need not wait out
/// TIME_WAIT; Linux still refuses a port another socket listens on) and a backlog of
/// `BACKLOG`, plus `opts`.
pub fn listen(addr: SocketAddr, opts: ListenOptions) -> Result<TcpListener, ListenError> {
    let fail = |step: &'static str| move |source| ListenError { addr, step, source };
    let sock = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))
        .map_err(fail("create a socket for"))?;
    sock.set_reuse_address(true).map_err(fail("set SO_REUSEADDR on"))?;
    if opts.nodelay {
        let _ = sock.set_tcp_nodelay(true); // latency only (see `ListenOptions::nodelay`)
    }
    sock.bind(&addr.into()).map_err(fail("bind"))?;
    sock.listen(BACKLOG).map_err(fail("listen on"))?;
    if opts.nonblocking {
        sock.set_nonblocking(true).map_err(fail("make non-blocking"))?;
    }
    if opts.defer_accept
        && let Err(e) = sys::set_defer_accept(&sock, 1)
    {
        crate::warn!("TCP_DEFER_ACCEPT on {addr}: {e}; silent clients are still parked off the workers");
    }
    Ok(sock.into())
}

/// What `raise_fd_limit` found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FdLimit {
    /// The soft limit is now at least what was wanted.
    Enough(u64),
    /// The hard limit stops short of what was wanted: the soft limit is now this.
    Short(u64),
}

/// Raises the soft open-file limit towards `want` (`u64::MAX`: as far as the hard limit
/// allows), never lowering it. Each client costs a descriptor, so every server calls this
/// before it listens; the caller decides whether falling short deserves a warning.
pub fn raise_fd_limit(want: u64) -> io::Result<FdLimit> {
    let have = sys::raise_nofile(want)?;
    Ok(if have >= want { FdLimit::Enough(have) } else { FdLimit::Short(have) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(duration("30"), Some(Duration::from_secs(30)));
        assert_eq!(duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(duration("2.5s"), Some(Duration::from_millis(2500)));
        assert_eq!(duration(" 200ms "), Some(Duration::from_millis(200)));
        assert_eq!(duration("0"), Some(Duration::ZERO));
        for bad in ["-1", "abc", "inf", "nan", "1e308", "31536001", "", "ms", "5 m"] {
            assert_eq!(duration(bad), None, "{bad}");
        }
        assert_eq!(duration("31536000"), Some(MAX_DURATION));
    }

    #[test]
    fn sizes() {
        assert_eq!(size("64KiB"), Some(65536));
        assert_eq!(size("1M"), Some(1 << 20));
        assert_eq!(size("4096"), Some(4096));
        assert_eq!(size("1x"), None);
        assert_eq!(size("18446744073709551615G"), None);
    }

    #[test]
    fn numbers_name_their_range() {
        assert_eq!(number_in::<u32>("5", 1..=10), Ok(5));
        for bad in ["0", "11", "-0", "1e3", "18446744073709551616", "x", ""] {
            assert_eq!(number_in::<u32>(bad, 1..=10), Err("expected a whole number from 1 to 10".into()), "{bad}");
        }
    }

    #[test]
    fn shown_words_are_short_and_one_line() {
        assert_eq!(shown("1e-30"), "1e-30");
        assert_eq!(shown("a\nb"), "a\\nb");
        let long = "9".repeat(1 << 20);
        assert_eq!(shown(&long), format!("{}...", "9".repeat(40)));
    }

    #[test]
    fn getopts_failures_are_dashed() {
        let e = UsageError::from_getopts(getopts::Fail::UnrecognizedOption("bogus".into()));
        assert_eq!(e.to_string(), "--bogus: unknown option");
        assert_eq!(dashed("v"), "-v");
        assert_eq!(dashed("--x"), "--x");
    }

    #[test]
    fn a_port_in_use_is_named() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = taken.local_addr().unwrap();
        let e = listen(addr, ListenOptions::default()).unwrap_err();
        assert!(e.to_string().starts_with(&format!("cannot bind {addr}: ")), "{e}");
        let l = listen("127.0.0.1:0".parse().unwrap(), ListenOptions { nonblocking: true, ..Default::default() });
        assert!(l.is_ok());
    }
}
