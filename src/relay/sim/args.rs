//! The `eventsim` command line: the original harness's environment variables, with the same
//! defaults, and a flag for each (flags win). Two stages like the relay's: getopts, then
//! validation into [`SimConfig`].

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use crate::common::log::{Level, level_from_counts};
use crate::relay::args::{UsageError, port};

pub const USAGE: &str = "Usage: eventsim [--event-port PORT] [--client-port PORT] [--host ADDR] [--total-events N] \
[--concurrency N] [--users N] [--seed N] [--timeout MS] [--max-batch N] [--log-interval MS] [--grace MS] [-v|-q] [-h] [-V]";

/// What the command line asks for.
pub enum SimParsed {
    Run(SimConfig),
    Help(String),
    Version,
}

#[derive(Clone, Debug)]
pub struct SimConfig {
    pub event_addr: SocketAddr,
    pub client_addr: SocketAddr,
    /// Events sent, numbered 1..=total_events.
    pub total_events: u64,
    /// Clients connected (distinct users), at least 1, at most `users`.
    pub concurrency: usize,
    /// Users 1..=users appear in events.
    pub users: u64,
    pub seed: u64,
    /// A client waiting for a line fails after this long without one.
    pub timeout: Duration,
    /// Batches are 1..=max_batch events, shuffled within, one write each.
    pub max_batch: usize,
    pub log_interval: Duration,
    /// After the last expected line, how long to keep listening for an extra one.
    pub grace: Duration,
    pub level: Level,
}

fn options() -> getopts::Options {
    let mut o = getopts::Options::new();
    o.optopt("", "event-port", "relay's event port (env eventListenerPort; default 9090)", "PORT");
    o.optopt("", "client-port", "relay's client port (env clientListenerPort; default 9099)", "PORT");
    o.optopt("", "host", "relay's address (default 127.0.0.1)", "ADDR");
    o.optopt("", "total-events", "events to send (env totalEvents; default 10000000)", "N");
    o.optopt("", "concurrency", "clients to connect (env concurrencyLevel; default 100)", "N");
    o.optopt("", "users", "users in events (env numberOfUsers; default concurrency x 10)", "N");
    o.optopt("", "seed", "random seed (env randomSeed; default 666)", "N");
    o.optopt("", "timeout", "ms a client waits for its next line (env timeout; default 20000)", "MS");
    o.optopt("", "max-batch", "largest shuffled batch (env maxEventSourceBatchSize; default 100)", "N");
    o.optopt("", "log-interval", "ms between progress lines (env logInterval; default 1000)", "MS");
    o.optopt("", "grace", "ms to wait for an extra line after the last one (default 200)", "MS");
    o.optflagmulti("v", "verbose", "log more (repeatable)");
    o.optflagmulti("q", "quiet", "log less (repeatable)");
    o.optflag("h", "help", "print this help");
    o.optflag("V", "version", "print the version");
    o
}

/// A number from `--flag`, else the environment variable `var`, else `default`; within `range`.
fn number(
    m: &getopts::Matches,
    flag: &str,
    var: &str,
    default: u64,
    range: std::ops::RangeInclusive<u64>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<u64, UsageError> {
    let (value, source) = match m.opt_str(flag) {
        Some(v) => (v, format!("--{flag}")),
        None => match env(var) {
            Some(v) => (v, format!("environment variable {var}")),
            None => return Ok(default),
        },
    };
    match value.trim().parse::<u64>() {
        Ok(n) if range.contains(&n) => Ok(n),
        _ => {
            Err(UsageError::new(source, format!("{value:?} is not a number from {} to {}", range.start(), range.end())))
        }
    }
}

pub fn parse(args: &[String], env: &dyn Fn(&str) -> Option<String>) -> Result<SimParsed, UsageError> {
    let m = options().parse(args).map_err(UsageError::from_getopts)?;
    if m.opt_present("h") {
        return Ok(SimParsed::Help(options().usage(USAGE)));
    }
    if m.opt_present("V") {
        return Ok(SimParsed::Version);
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
    let total_events = number(&m, "total-events", "totalEvents", 10_000_000, 0..=u64::MAX / 2, env)?;
    let concurrency = number(&m, "concurrency", "concurrencyLevel", 100, 1..=100_000, env)?;
    let users = number(&m, "users", "numberOfUsers", concurrency * 10, concurrency..=100_000_000, env)?;
    let seed = number(&m, "seed", "randomSeed", 666, 0..=u64::MAX, env)?;
    let timeout = number(&m, "timeout", "timeout", 20_000, 1..=86_400_000, env)?;
    let max_batch = number(&m, "max-batch", "maxEventSourceBatchSize", 100, 1..=10_000_000, env)?;
    let log_interval = number(&m, "log-interval", "logInterval", 1000, 1..=86_400_000, env)?;
    let grace = number(&m, "grace", "eventsimGrace", 200, 0..=86_400_000, env)?;
    Ok(SimParsed::Run(SimConfig {
        event_addr: SocketAddr::new(host, event_port),
        client_addr: SocketAddr::new(host, client_port),
        total_events,
        concurrency: concurrency as usize, // at most 100_000
        users,
        seed,
        timeout: Duration::from_millis(timeout),
        max_batch: max_batch as usize, // at most 10_000_000
        log_interval: Duration::from_millis(log_interval),
        grace: Duration::from_millis(grace),
        level: level_from_counts(m.opt_count("v"), m.opt_count("q")),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str], env: &[(&str, &str)]) -> Result<SimConfig, String> {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let env: Vec<(String, String)> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let lookup = move |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        match parse(&args, &lookup) {
            Ok(SimParsed::Run(c)) => Ok(c),
            Ok(_) => Err("help or version".into()),
            Err(e) => Err(e.to_string()),
        }
    }

    #[test]
    fn the_original_defaults() {
        let c = run(&[], &[]).unwrap();
        assert_eq!(c.total_events, 10_000_000);
        assert_eq!((c.concurrency, c.users, c.seed, c.max_batch), (100, 1000, 666, 100));
        assert_eq!(c.timeout, Duration::from_millis(20_000));
        let c = run(&["--concurrency", "7"], &[("concurrencyLevel", "3"), ("totalEvents", "5")]).unwrap();
        assert_eq!((c.concurrency, c.users, c.total_events), (7, 70, 5));
    }

    #[test]
    fn refusals_name_the_flag() {
        assert!(run(&["--max-batch", "0"], &[]).unwrap_err().starts_with("--max-batch"));
        assert!(run(&["--concurrency", "10", "--users", "5"], &[]).unwrap_err().starts_with("--users"));
        assert!(run(&[], &[("totalEvents", "many")]).unwrap_err().contains("totalEvents"));
    }
}
