//! The `loadbalancer` command line: getopts into a `Layer` (stage one: syntax and ranges, each
//! error naming its word), before `Config::build` merges it over the config file (stage two).
//!
//! Options may stand anywhere among the positional words (GNU permutation):
//! `loadbalancer 8020 8120 -R 1 8220` is `-R 1`, port 8020, servers 8120 and 8220.

use crate::balancer::config::{self, Balance, Cidr, Layer, MAX_BURST, MAX_LIMIT, Mode, parse_duration};
pub use crate::common::args::UsageError;
use crate::common::args::{self as common_args, DURATION_FORMS, shown};
use crate::common::log::{self, Level};
use getopts::Options;
use std::path::PathBuf;
use std::str::FromStr;

pub const USAGE: &str = "usage: loadbalancer [-N n] [-R r] [OPTIONS] PORT SERVER...   (or: loadbalancer --config FILE.yaml, loadbalancer --check ..., loadbalancer stats FILE [--json])";

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
    /// `--check`: validate everything, print what would run, bind nothing.
    pub check: bool,
}

fn options() -> Options {
    let mut o = Options::new();
    o.optopt("N", "connections", &format!("client connections bridged at once, 1..{MAX_LIMIT} (default 4)"), "n");
    o.optopt("R", "probe-every", "a health probe round after every r connections (default 5)", "r");
    o.optopt("", "config", "read settings from a YAML file (flags win over it)", "FILE");
    o.optopt("", "max-per-server", "at most m bridged connections to any one server", "m");
    o.optopt("", "queue-max", "at most q connections wait; one more gets 503 (default 4096)", "q");
    o.optopt("", "queue-timeout", "a connection waiting this long gets 503 (default 30s)", "s");
    o.optopt(
        "",
        "rate",
        &format!("connections per second dispatched to servers, {} to {}, or off", config::MIN_RATE, config::MAX_RATE),
        "r",
    );
    o.optopt("", "burst", &format!("token bucket depth for --rate, 1..{MAX_BURST} (default: N)"), "b");
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
    o.optopt(
        "",
        "stats-file",
        "SQLite file for durable per-server stats; in an existing directory, loadbalancer-stats.db",
        "FILE",
    );
    // The old name: it always took a file. Kept so existing command lines keep working.
    o.optopt("", "stats-dir", "the old name of --stats-file, still accepted", "FILE");
    o.optflag("", "check", "check the configuration, print what would run, exit (binds nothing)");
    o.optopt("", "mode", "tcp (default: a slot per connection) or http (a slot per request)", "MODE");
    o.optopt("", "keep-alive-timeout", "http mode: close a client idle this long between requests (default 60s)", "s");
    o.optopt("", "server-idle-max", "http mode: idle connections kept per server for reuse (default N)", "n");
    o.optopt("", "server-idle-timeout", "http mode: close an idle server connection after this (default 15s)", "s");
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
        "{USAGE}\n\nBridges each client connection (--mode tcp, the default) or forwards each HTTP request\n\
         (--mode http) to a healthy server: the least-loaded one unless\n\
         --balance says otherwise. PORT is the listening port; a SERVER is a port on 127.0.0.1 or\n\
         HOST:PORT (a name is resolved at startup and again on SIGHUP). A setting flag has a config-file\n\
         key of its name without the dashes (connections for -N, probe-every for -R, weights for\n\
         --weight, stats-file for --stats-file); flags win over the file.\n\
         --check validates flags, file, server names and the stats file, prints what would run, and\n\
         exits 0 (2: bad configuration, 1: a server name or the stats file fails) without binding."
    ))
}

pub fn parse<S: AsRef<str>>(argv: &[S]) -> Result<Command, UsageError> {
    let argv: Vec<&str> = argv.iter().map(|s| s.as_ref()).collect();
    if argv.first() == Some(&"stats") {
        return parse_stats(&argv[1..]);
    }
    let m = options().parse(&argv).map_err(UsageError::from_getopts)?;
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
    layer.connections = ranged(&m, "N", config::parse_limit)?;
    layer.probe_every = opt_min(&m, "R", 1)?;
    layer.max_per_server = opt_min(&m, "max-per-server", 1)?;
    layer.queue_max = opt_min(&m, "queue-max", 1)?;
    layer.burst = ranged(&m, "burst", config::parse_burst)?;
    layer.queue_timeout = duration(&m, "queue-timeout")?;
    layer.client_timeout = duration(&m, "client-timeout")?;
    layer.server_timeout = duration(&m, "server-timeout")?;
    layer.drain_timeout = duration(&m, "drain-timeout")?;
    layer.rate = ranged(&m, "rate", config::parse_rate)?;
    layer.admin = m.opt_str("admin");
    if let Some(b) = m.opt_str("balance") {
        let rule = Balance::parse(&b).ok_or_else(|| {
            UsageError::new(format!("--balance '{b}'"), "expected least-loaded, round-robin or least-conn")
        })?;
        layer.balance = Some(rule);
    }
    let weights = m.opt_strs("weight");
    if !weights.is_empty() {
        let parsed =
            weights.iter().map(|w| parse_weight(w).map_err(|e| UsageError::new(e, ""))).collect::<Result<_, _>>()?;
        layer.weights = Some(parsed);
    }
    if m.opt_present("server-speaks-first") {
        layer.server_speaks_first = Some(true);
    }
    layer.stats_file = match (m.opt_str("stats-file"), m.opt_str("stats-dir")) {
        (Some(_), Some(_)) => {
            return Err(UsageError::new("--stats-dir", "is the old name of --stats-file: give one of them"));
        }
        (file, dir) => file.or(dir).map(PathBuf::from),
    };
    if let Some(word) = m.opt_str("mode") {
        let mode = Mode::parse(&word)
            .ok_or_else(|| UsageError::new(format!("--mode '{}'", shown(&word)), "expected tcp or http"))?;
        layer.mode = Some(mode);
    }
    layer.keep_alive_timeout = duration(&m, "keep-alive-timeout")?;
    layer.server_idle_timeout = duration(&m, "server-idle-timeout")?;
    layer.server_idle_max = match m.opt_str("server-idle-max") {
        Some(word) => Some(
            common_args::number_in(&word, 0..=1_000_000)
                .map_err(|e| UsageError::new(format!("--server-idle-max '{}'", shown(&word)), e))?,
        ),
        None => None,
    };
    if let Some(h) = m.opt_str("host") {
        layer.host = Some(h.parse().map_err(|_| UsageError::new(format!("--host '{h}'"), "not an IP address"))?);
    }
    shared_flags(&m, &mut layer)?;
    Ok(Command::Run(Box::new(Args {
        layer,
        config_file: m.opt_str("config").map(PathBuf::from),
        log_level: log::level_from_counts(m.opt_count("v"), m.opt_count("q")),
        check: m.opt_present("check"),
    })))
}

/// `--shared-*`: syntax here, ranges and the whole in `shared::settings::build`.
fn shared_flags(m: &getopts::Matches, layer: &mut Layer) -> Result<(), UsageError> {
    use crate::balancer::shared::settings::{check_name, parse_url};
    if let Some(u) = m.opt_str("shared-limit") {
        parse_url(&u).map_err(|e| UsageError::new(format!("--shared-limit '{}'", shown(&u)), e))?;
        layer.shared_limit = Some(u);
    }
    if let Some(n) = m.opt_str("shared-name") {
        check_name(&n).map_err(|e| UsageError::new(format!("--shared-name '{}'", shown(&n)), e))?;
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
            other => return Err(UsageError::new(format!("stats: unexpected word '{other}'"), "")),
        }
    }
    let file = file.ok_or_else(|| UsageError::new("stats", "missing the FILE"))?;
    Ok(Command::Stats { file, json })
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
            UsageError::new(format!("PORT '{word}'"), "not a port number (0..65535)")
        } else {
            UsageError::new(format!("{what} '{}'", shown(word)), "not a valid number")
        }
    })
}

fn flag_name(name: &str) -> String {
    common_args::dashed(name)
}

/// `--name WORD` checked by `parse` (which says the accepted range): the error names the flag
/// and the word.
fn ranged<T>(
    m: &getopts::Matches,
    name: &str,
    parse: impl Fn(&str) -> Result<T, String>,
) -> Result<Option<T>, UsageError> {
    let Some(word) = m.opt_str(name) else { return Ok(None) };
    parse(&word).map(Some).map_err(|e| UsageError::new(format!("{} '{}'", flag_name(name), shown(&word)), e))
}

fn opt_min<T: FromStr + PartialOrd + From<u8> + Copy>(
    m: &getopts::Matches,
    name: &str,
    min: u8,
) -> Result<Option<T>, UsageError> {
    let Some(word) = m.opt_str(name) else { return Ok(None) };
    let v: T = number(&flag_name(name), &word)?;
    if v < T::from(min) {
        return Err(UsageError::new(format!("{} '{word}'", flag_name(name)), format!("must be at least {min}")));
    }
    Ok(Some(v))
}

fn duration(m: &getopts::Matches, name: &str) -> Result<Option<std::time::Duration>, UsageError> {
    let Some(word) = m.opt_str(name) else { return Ok(None) };
    parse_duration(&word)
        .map(Some)
        .ok_or_else(|| UsageError::new(format!("--{name} '{}'", shown(&word)), format!("expected {DURATION_FORMS}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(words: &[&str]) -> Result<Layer, String> {
        match parse(words) {
            Ok(Command::Run(a)) => Ok(a.layer),
            Ok(other) => Err(format!("{other:?}")),
            Err(e) => Err(e.to_string()),
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

    #[test]
    fn hostile_values_name_the_range() {
        let e = run(&["--rate", "1e-30", "1", "2"]).unwrap_err();
        assert_eq!(e, "--rate '1e-30': expected off, or 0.001 to 1000000 connections per second");
        let e = run(&["-N", "100000", "1", "2"]).unwrap_err();
        assert_eq!(e, "-N '100000': expected a whole number from 1 to 2048");
        let e = run(&["--burst", "18446744073709551616", "1", "2"]).unwrap_err();
        assert_eq!(e, "--burst '18446744073709551616': expected a whole number from 1 to 1000000");
    }

    #[test]
    fn help_names_the_new_flags_and_the_ranges() {
        let h = help();
        for words in ["--stats-file", "--stats-dir", "old name", "--check", "1..2048", "1..1000000", "or off"] {
            assert!(h.contains(words), "--help lacks {words}:\n{h}");
        }
        assert!(matches!(parse(&["--check", "1", "2"]), Ok(Command::Run(a)) if a.check));
    }

    #[test]
    fn stats_file_and_its_old_name() {
        assert_eq!(run(&["--stats-file", "s.db", "1", "2"]).unwrap().stats_file, Some(PathBuf::from("s.db")));
        assert_eq!(run(&["--stats-dir", "s.db", "1", "2"]).unwrap().stats_file, Some(PathBuf::from("s.db")));
        assert!(run(&["--stats-dir", "a", "--stats-file", "b", "1", "2"]).unwrap_err().contains("give one"));
    }
}
