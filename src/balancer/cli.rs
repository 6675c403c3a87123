//! The `loadbalancer` command line: getopts into a `Layer` (stage one: syntax and ranges, each
//! error naming its word), before `Config::build` merges it over the config file (stage two).
//!
//! Options may stand anywhere among the positional words (GNU permutation):
//! `loadbalancer 8020 8120 -R 1 8220` is `-R 1`, port 8020, servers 8120 and 8220.

use crate::balancer::config::{Balance, Cidr, Layer, parse_duration};
use crate::common::log::{self, Level};
use getopts::Options;
use std::path::PathBuf;
use std::str::FromStr;

pub const USAGE: &str = "usage: loadbalancer [-N n] [-R r] [OPTIONS] PORT SERVER...   (or: loadbalancer --config FILE.yaml, loadbalancer stats FILE [--json])";

/// What the command line asks for.
#[derive(Debug)]
pub enum Command {
    /// Run the balancer with these settings (and maybe a config file under them).
    Run(Box<Args>),
    /// `-h`: print help, exit 0.
    Help,
    /// `-V`: print the version, exit 0.
    Version,
    /// `stats FILE [--json]`: print the stored table.
    Stats { file: PathBuf, json: bool },
}

#[derive(Debug)]
pub struct Args {
    pub layer: Layer,
    pub config_file: Option<PathBuf>,
    pub log_level: Level,
}

/// A bad command line: the message names the word and the problem. Exit status 2.
#[derive(Debug)]
pub struct UsageError(pub String);

fn options() -> Options {
    let mut o = Options::new();
    o.optopt("N", "connections", "client connections bridged at once (default 4)", "n");
    o.optopt("R", "probe-every", "a health probe round after every r connections (default 5)", "r");
    o.optopt("", "config", "read settings from a YAML file (flags win over it)", "FILE");
    o.optopt("", "max-per-server", "at most m bridged connections to any one server", "m");
    o.optopt("", "queue-max", "at most q connections wait; one more gets 503 (default 4096)", "q");
    o.optopt("", "queue-timeout", "a connection waiting this long gets 503 (default 30s)", "s");
    o.optopt("", "rate", "connections per second dispatched to servers, or off", "r");
    o.optopt("", "burst", "token bucket depth for --rate (default: N)", "b");
    o.optopt("", "admin", "serve /status, /metrics, the dashboard on [HOST:]PORT", "PORT");
    o.optopt("", "client-timeout", "close a client silent this long (default 30s)", "s");
    o.optopt(
        "",
        "server-timeout",
        "500/close when a server is silent this long after the client spoke (default 5s, > 1s)",
        "s",
    );
    o.optopt("", "drain-timeout", "on SIGTERM, wait this long for bridges (default 10s)", "s");
    o.optopt("", "balance", "least-loaded (default), round-robin or least-conn", "RULE");
    o.optmulti("", "weight", "weight of a client address or block, e.g. 10.0.0.0/8=3", "CIDR=W");
    o.optflag("", "server-speaks-first", "dispatch at accept, without waiting for the client's first byte");
    o.optopt("", "stats-dir", "SQLite file (or directory) for durable per-server stats", "PATH");
    o.optopt("", "host", "address to listen on (default 127.0.0.1)", "IP");
    // The shared limit (issue 14): one -N for every balancer of a group, leased from Redis.
    o.optopt("", "shared-limit", "share -N with other balancers through Redis", "redis://HOST:PORT[/DB]");
    o.optopt("", "shared-name", "the group that shares -N (default: from the server list)", "NAME");
    o.optopt("", "shared-lease", "lease on a share, renewed every third of it (default 3s)", "s");
    o.optopt("", "shared-grace", "quarantine of an expired lease's slots (default 10s)", "s");
    o.optopt("", "shared-fallback", "slots used anyway without a lease; may exceed -N (default 0)", "k");
    o.optflagmulti("v", "verbose", "more log lines (debug)");
    o.optflagmulti("q", "quiet", "fewer log lines");
    o.optflag("h", "help", "print this help");
    o.optflag("V", "version", "print the version");
    o
}

pub fn help() -> String {
    options().usage(&format!(
        "{USAGE}\n\nBridges each client TCP connection to the least-loaded healthy server.\n\
         PORT is the listening port; a SERVER is a port on 127.0.0.1 or HOST:PORT."
    ))
}

pub fn parse<S: AsRef<str>>(argv: &[S]) -> Result<Command, UsageError> {
    let argv: Vec<&str> = argv.iter().map(|s| s.as_ref()).collect();
    if argv.first() == Some(&"stats") {
        return parse_stats(&argv[1..]);
    }
    let m = options().parse(&argv).map_err(|e| UsageError(e.to_string()))?;
    if m.opt_present("h") {
        return Ok(Command::Help);
    }
    if m.opt_present("V") {
        return Ok(Command::Version);
    }
    let mut layer = Layer::default();
    let mut free = m.free.iter();
    if let Some(word) = free.next() {
        layer.port = Some(number::<u16>("PORT", word)?);
    }
    let servers: Vec<String> = free.cloned().collect();
    if !servers.is_empty() {
        layer.servers = Some(servers);
    }
    layer.connections = opt_min(&m, "N", 1)?;
    layer.probe_every = opt_min(&m, "R", 1)?;
    layer.max_per_server = opt_min(&m, "max-per-server", 1)?;
    layer.queue_max = opt_min(&m, "queue-max", 1)?;
    layer.burst = opt_min(&m, "burst", 1)?;
    layer.queue_timeout = duration(&m, "queue-timeout")?;
    layer.client_timeout = duration(&m, "client-timeout")?;
    layer.server_timeout = duration(&m, "server-timeout")?;
    layer.drain_timeout = duration(&m, "drain-timeout")?;
    if let Some(r) = m.opt_str("rate") {
        layer.rate = Some(Some(parse_rate(&r).map_err(|e| UsageError(format!("--rate '{r}': {e}")))?))
            .map(|r| r.filter(|v| *v > 0.0));
    }
    layer.admin = m.opt_str("admin");
    if let Some(b) = m.opt_str("balance") {
        let rule = Balance::parse(&b)
            .ok_or_else(|| UsageError(format!("--balance '{b}': expected least-loaded, round-robin or least-conn")))?;
        layer.balance = Some(rule);
    }
    let weights = m.opt_strs("weight");
    if !weights.is_empty() {
        let parsed = weights.iter().map(|w| parse_weight(w).map_err(UsageError)).collect::<Result<_, _>>()?;
        layer.weights = Some(parsed);
    }
    if m.opt_present("server-speaks-first") {
        layer.server_speaks_first = Some(true);
    }
    layer.stats_file = m.opt_str("stats-dir").map(PathBuf::from);
    if let Some(h) = m.opt_str("host") {
        layer.host = Some(h.parse().map_err(|_| UsageError(format!("--host '{h}': not an IP address")))?);
    }
    shared_flags(&m, &mut layer)?;
    Ok(Command::Run(Box::new(Args {
        layer,
        config_file: m.opt_str("config").map(PathBuf::from),
        log_level: log::level_from_counts(m.opt_count("v"), m.opt_count("q")),
    })))
}

/// `--shared-*`: syntax here, ranges and the whole in `shared::settings::build`.
fn shared_flags(m: &getopts::Matches, layer: &mut Layer) -> Result<(), UsageError> {
    use crate::balancer::shared::settings::{check_name, parse_url};
    if let Some(u) = m.opt_str("shared-limit") {
        parse_url(&u).map_err(|e| UsageError(format!("--shared-limit '{u}': {e}")))?;
        layer.shared_limit = Some(u);
    }
    if let Some(n) = m.opt_str("shared-name") {
        check_name(&n).map_err(|e| UsageError(format!("--shared-name '{n}': {e}")))?;
        layer.shared_name = Some(n);
    }
    layer.shared_lease = duration(m, "shared-lease")?;
    layer.shared_grace = duration(m, "shared-grace")?;
    layer.shared_fallback = opt_min(m, "shared-fallback", 0)?;
    Ok(())
}

fn parse_stats(rest: &[&str]) -> Result<Command, UsageError> {
    let mut file = None;
    let mut json = false;
    for w in rest {
        match *w {
            "--json" => json = true,
            f if !f.starts_with('-') && file.is_none() => file = Some(PathBuf::from(f)),
            other => return Err(UsageError(format!("stats: unexpected word '{other}'"))),
        }
    }
    let file = file.ok_or_else(|| UsageError("stats: missing the FILE".into()))?;
    Ok(Command::Stats { file, json })
}

/// `r` (a positive number) or `off` (0 also means off).
pub fn parse_rate(s: &str) -> Result<f64, String> {
    if s == "off" {
        return Ok(0.0);
    }
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 => Ok(v),
        _ => Err("expected a number of connections per second, or off".into()),
    }
}

/// `CIDR=W` with W a positive integer.
pub fn parse_weight(s: &str) -> Result<(Cidr, u32), String> {
    let (block, w) = s.split_once('=').ok_or_else(|| format!("--weight '{s}': expected CIDR=WEIGHT"))?;
    let cidr =
        Cidr::parse(block).ok_or_else(|| format!("--weight '{s}': '{block}' is not an address or CIDR block"))?;
    match w.parse::<u32>() {
        Ok(w) if w >= 1 => Ok((cidr, w)),
        _ => Err(format!("--weight '{s}': weight must be a whole number of at least 1")),
    }
}

fn number<T: FromStr>(what: &str, word: &str) -> Result<T, UsageError> {
    word.parse::<T>().map_err(|_| {
        if what == "PORT" {
            UsageError(format!("PORT '{word}': not a port number (0..65535)"))
        } else {
            UsageError(format!("{what} '{word}': not a valid number"))
        }
    })
}

fn flag_name(name: &str) -> String {
    if name.len() == 1 { format!("-{name}") } else { format!("--{name}") }
}

fn opt_min<T: FromStr + PartialOrd + From<u8> + Copy>(
    m: &getopts::Matches,
    name: &str,
    min: u8,
) -> Result<Option<T>, UsageError> {
    let Some(word) = m.opt_str(name) else { return Ok(None) };
    let v: T = number(&flag_name(name), &word)?;
    if v < T::from(min) {
        return Err(UsageError(format!("{} '{word}': must be at least {min}", flag_name(name))));
    }
    Ok(Some(v))
}

fn duration(m: &getopts::Matches, name: &str) -> Result<Option<std::time::Duration>, UsageError> {
    let Some(word) = m.opt_str(name) else { return Ok(None) };
    parse_duration(&word)
        .map(Some)
        .ok_or_else(|| UsageError(format!("--{name} '{word}': expected seconds, like 30, 2.5 or 500ms")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(words: &[&str]) -> Result<Layer, String> {
        match parse(words) {
            Ok(Command::Run(a)) => Ok(a.layer),
            Ok(other) => Err(format!("{other:?}")),
            Err(UsageError(e)) => Err(e),
        }
    }

    #[test]
    fn options_permute_with_positionals() {
        let l = run(&["8020", "8120", "8220", "-R", "1"]).unwrap();
        assert_eq!(l.port, Some(8020));
        assert_eq!(l.servers.unwrap(), vec!["8120", "8220"]);
        assert_eq!(l.probe_every, Some(1));
        let l = run(&["-N", "7", "1234", "8080", "-R", "3", "8081"]).unwrap();
        assert_eq!((l.connections, l.probe_every, l.port), (Some(7), Some(3), Some(1234)));
        assert_eq!(l.servers.unwrap(), vec!["8080", "8081"]);
    }

    #[test]
    fn bad_words_are_named() {
        assert!(run(&["-N", "0", "1", "2"]).unwrap_err().contains("-N '0'"));
        assert!(run(&["-N", "abc", "1", "2"]).unwrap_err().contains("-N 'abc'"));
        assert!(run(&["-R", "-1", "1", "2"]).unwrap_err().contains("-R '-1'"));
        assert!(run(&["99999", "2"]).unwrap_err().contains("PORT '99999'"));
        assert!(run(&["--bogus", "1", "2"]).unwrap_err().contains("bogus"));
        assert!(run(&["--weight", "1.2.3.4=0", "1", "2"]).unwrap_err().contains("--weight"));
        assert!(run(&["--balance", "random", "1", "2"]).unwrap_err().contains("--balance"));
    }

    #[test]
    fn rate_off_is_none() {
        assert_eq!(run(&["--rate", "off", "1", "2"]).unwrap().rate, Some(None));
        assert_eq!(run(&["--rate", "20", "1", "2"]).unwrap().rate, Some(Some(20.0)));
    }
}
