//! The `eventrelay` command line, in two stages: getopts into plain strings ([`Args`]), then
//! validation into the runtime [`Config`]. Every refusal names the flag (or environment
//! variable) and the value; `-h` and `-V` are normal outcomes, not errors.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

pub use crate::common::args::UsageError;
use crate::common::args::{self as common_args, SIZE_FORMS};
use crate::common::log::{Level, level_from_counts};

pub const USAGE: &str = "Usage: eventrelay [--event-port PORT] [--client-port PORT] [--host ADDR] [--window N] \
[--gap-timeout DUR] [--client-buffer SIZE] [-v|-q] [-h] [-V]";

/// What the command line asks for.
pub enum Parsed {
    /// Run the relay.
    Run(Config),
    /// Print this help text and exit 0.
    Help(String),
    /// Print the version and exit 0.
    Version,
}

/// The runtime settings of the relay.
#[derive(Clone, Debug)]
pub struct Config {
    /// Where the event source connects.
    pub event_addr: SocketAddr,
    /// Where user clients connect.
    pub client_addr: SocketAddr,
    /// Slots in the reorder window, 1..=MAX_WINDOW.
    pub window: usize,
    /// How long a missing event may hold back later ones.
    pub gap_timeout: Duration,
    /// Most bytes a client may have waiting to be written before it is disconnected.
    pub client_buffer: usize,
    pub level: Level,
}

/// 16 Mi slots, about 1.5 GiB of window: a bound on what a typo can allocate.
pub const MAX_WINDOW: usize = 1 << 24;

/// The command-line options, shared by `parse` and the help text.
fn options() -> getopts::Options {
    let mut o = getopts::Options::new();
    o.optopt("", "event-port", "port of the event source (env eventListenerPort; default 9090; 0 = any)", "PORT");
    o.optopt("", "client-port", "port of the user clients (env clientListenerPort; default 9099; 0 = any)", "PORT");
    o.optopt("", "host", "address to listen on (default 127.0.0.1)", "ADDR");
    o.optopt("", "window", "events held for reordering (default 65536)", "N");
    o.optopt("", "gap-timeout", "wait for a missing event before skipping it: 5s, 200ms (default 5s)", "DUR");
    o.optopt("", "client-buffer", "unsent bytes allowed per client: 1MiB, 64KiB, 4096 (default 1MiB)", "SIZE");
    o.optflagmulti("v", "verbose", "log more (repeatable)");
    o.optflagmulti("q", "quiet", "log less (repeatable)");
    o.optflag("h", "help", "print this help");
    o.optflag("V", "version", "print the version");
    o
}

/// Parses `args` (without the program name); `env` looks up environment variables.
pub fn parse(args: &[String], env: &dyn Fn(&str) -> Option<String>) -> Result<Parsed, UsageError> {
    let m = options().parse(args).map_err(UsageError::from_getopts)?;
    if m.opt_present("h") {
        return Ok(Parsed::Help(options().usage(USAGE)));
    }
    if m.opt_present("V") {
        return Ok(Parsed::Version);
    }
    if let Some(extra) = m.free.first() {
        return Err(UsageError::new(format!("{extra:?}"), "unexpected argument"));
    }
    let host: IpAddr = match m.opt_str("host") {
        Some(h) => h.parse().map_err(|_| UsageError::new("--host", format!("{h:?} is not an IP address")))?,
        None => IpAddr::V4(Ipv4Addr::LOCALHOST),
    };
    let event_port = port(&m, "event-port", "eventListenerPort", 9090, env)?;
    let client_port = port(&m, "client-port", "clientListenerPort", 9099, env)?;
    let window = match m.opt_str("window") {
        Some(s) => match s.parse::<usize>() {
            Ok(n) if (1..=MAX_WINDOW).contains(&n) => n,
            _ => return Err(UsageError::new("--window", format!("{s:?} is not a number from 1 to {MAX_WINDOW}"))),
        },
        None => 65536,
    };
    let gap_timeout = match m.opt_str("gap-timeout") {
        Some(s) => duration(&s).ok_or_else(|| {
            UsageError::new("--gap-timeout", format!("{s:?} is not a duration such as 5s or 200ms (1ms to a year)"))
        })?,
        None => Duration::from_secs(5),
    };
    let client_buffer = match m.opt_str("client-buffer") {
        Some(s) => size(&s)
            .filter(|&n| n >= 128)
            .ok_or_else(|| UsageError::new("--client-buffer", format!("{s:?} is not {SIZE_FORMS} (at least 128)")))?,
        None => 1 << 20,
    };
    Ok(Parsed::Run(Config {
        event_addr: SocketAddr::new(host, event_port),
        client_addr: SocketAddr::new(host, client_port),
        window,
        gap_timeout,
        client_buffer,
        level: level_from_counts(m.opt_count("v"), m.opt_count("q")),
    }))
}

/// A port from `--flag`, else from the environment variable `var`, else `default`.
pub fn port(
    m: &getopts::Matches,
    flag: &str,
    var: &str,
    default: u16,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<u16, UsageError> {
    let (value, source) = match m.opt_str(flag) {
        Some(v) => (v, format!("--{flag}")),
        None => match env(var) {
            Some(v) => (v, format!("environment variable {var}")),
            None => return Ok(default),
        },
    };
    value
        .trim()
        .parse::<u16>()
        .map_err(|_| UsageError::new(source, format!("{value:?} is not a port number (0-65535)")))
}

/// `5s`, `200ms`, `1.5s` or a bare number of seconds (`common::args::duration`); at least
/// 1 ms, since a zero gap timeout would skip every gap at once.
pub fn duration(s: &str) -> Option<Duration> {
    common_args::duration(s).filter(|d| *d >= Duration::from_millis(1))
}

/// `1MiB`, `64KiB`, `64K`, `1M`, or a bare number of bytes (`common::args::size`).
pub use crate::common::args::size;

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str], env: &[(&str, &str)]) -> Result<Config, String> {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let env: Vec<(String, String)> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let lookup = move |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        match parse(&args, &lookup) {
            Ok(Parsed::Run(c)) => Ok(c),
            Ok(_) => Err("help or version".into()),
            Err(e) => Err(e.to_string()),
        }
    }

    #[test]
    fn defaults_env_and_flags() {
        let c = run(&[], &[]).unwrap();
        assert_eq!(c.event_addr.to_string(), "127.0.0.1:9090");
        assert_eq!(c.client_addr.port(), 9099);
        assert_eq!(c.window, 65536);
        assert_eq!(c.gap_timeout, Duration::from_secs(5));
        assert_eq!(c.client_buffer, 1 << 20);
        let c = run(&["--event-port", "1"], &[("eventListenerPort", "2"), ("clientListenerPort", "3")]).unwrap();
        assert_eq!((c.event_addr.port(), c.client_addr.port()), (1, 3));
    }

    #[test]
    fn refusals_name_the_flag() {
        assert!(run(&["--window", "0"], &[]).unwrap_err().starts_with("--window"));
        assert!(run(&["--gap-timeout", "soon"], &[]).unwrap_err().starts_with("--gap-timeout"));
        assert!(run(&["--client-buffer", "1x"], &[]).unwrap_err().starts_with("--client-buffer"));
        assert!(run(&[], &[("eventListenerPort", "x")]).unwrap_err().contains("eventListenerPort"));
        assert!(run(&["--host", "nowhere"], &[]).unwrap_err().starts_with("--host"));
    }

    #[test]
    fn units() {
        assert_eq!(duration("200ms"), Some(Duration::from_millis(200)));
        assert_eq!(duration("2"), Some(Duration::from_secs(2)));
        assert_eq!(duration("0"), None);
        assert_eq!(size("64KiB"), Some(65536));
        assert_eq!(size("1M"), Some(1 << 20));
        assert_eq!(size("4096"), Some(4096));
    }
}
