//! The runtime `Config`, and the `Layer` it is built from.
//!
//! Settings arrive in layers: command-line flags over the config file over defaults. Each layer
//! is a `Layer` of optional, already-typed values (the command line and the file check their own
//! syntax and name their own words). `Config::build` merges the layers, resolves server names
//! once, and checks what only the whole can tell (a port, at least one server). A running
//! balancer re-runs the same build on SIGHUP and applies the result; see `sched::Dispatcher::reconfigure`.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

/// How a server is chosen among those that can take a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Balance {
    /// Fewest entries reported by `/healthcheck` (plus local +1 per dispatch), then fewest
    /// errors, then the lower position: the core rule.
    LeastLoaded,
    /// Each in turn, skipping servers down or at their bound.
    RoundRobin,
    /// Fewest bridged connections in flight, then the lower position.
    LeastConn,
}

impl Balance {
    pub fn parse(s: &str) -> Option<Balance> {
        match s {
            "least-loaded" => Some(Balance::LeastLoaded),
            "round-robin" => Some(Balance::RoundRobin),
            "least-conn" => Some(Balance::LeastConn),
            _ => None,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Balance::LeastLoaded => "least-loaded",
            Balance::RoundRobin => "round-robin",
            Balance::LeastConn => "least-conn",
        }
    }
}

/// What the balancer bounds and forwards: whole connections, or one HTTP request at a time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// A slot per client connection, bytes bridged both ways until both sides end.
    Tcp,
    /// A slot per request: idle keep-alive clients hold nothing, server connections are reused.
    Http,
}

impl Mode {
    pub fn parse(s: &str) -> Option<Mode> {
        match s {
            "tcp" => Some(Mode::Tcp),
            "http" => Some(Mode::Http),
            _ => None,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Mode::Tcp => "tcp",
            Mode::Http => "http",
        }
    }
}

/// An address block with a weight: `--weight 10.0.0.0/8=3`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    pub net: IpAddr,
    pub prefix: u8,
}

impl Cidr {
    /// `ADDR` (a /32 or /128) or `ADDR/PREFIX`.
    pub fn parse(s: &str) -> Option<Cidr> {
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p.parse::<u8>().ok()?)),
            None => (s, None),
        };
        let net: IpAddr = addr.trim_start_matches('[').trim_end_matches(']').parse().ok()?;
        let max = if net.is_ipv4() { 32 } else { 128 };
        let prefix = prefix.unwrap_or(max);
        (prefix <= max).then_some(Cidr { net, prefix })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.net, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.prefix)).unwrap_or(0);
                u32::from(n) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(self.prefix)).unwrap_or(0);
                u128::from(n) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.net, self.prefix)
    }
}

/// A server: the address its word (`8080`, `host:8080`, `[::1]:8080`) resolved to when the
/// configuration was built (at startup, and again on each SIGHUP). The word itself is not
/// kept: the log, `/status` and the stats file name a server by this address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerAddr {
    pub addr: SocketAddr,
    /// The name of a backend the balancer spawns (`worker-1`...), shown by `/status` and the
    /// dashboard; `None` for a server given by address.
    pub name: Option<String>,
}

impl ServerAddr {
    /// Resolves a server word once. A bare port means 127.0.0.1.
    pub fn resolve(word: &str) -> Result<ServerAddr, String> {
        if let Ok(port) = word.parse::<u32>() {
            if port == 0 || port > 65535 {
                return Err(format!("server '{word}': port must be 1..65535"));
            }
            let addr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port as u16);
            return Ok(ServerAddr { addr, name: None });
        }
        if let Ok(addr) = word.parse::<SocketAddr>() {
            if addr.port() == 0 {
                return Err(format!("server '{word}': port must be 1..65535"));
            }
            return Ok(ServerAddr { addr, name: None });
        }
        let Some((host, port)) = word.rsplit_once(':') else {
            return Err(format!("server '{word}': expected PORT or HOST:PORT"));
        };
        match port.parse::<u16>() {
            Ok(p) if p > 0 => {}
            _ => return Err(format!("server '{word}': port must be 1..65535")),
        }
        if host.is_empty() {
            return Err(format!("server '{word}': empty host"));
        }
        let mut addrs =
            (word).to_socket_addrs().map_err(|e| format!("server '{word}': cannot resolve '{host}': {e}"))?;
        let first = addrs.next();
        // Prefer IPv4 where a name has both: the common local set-up listens on 127.0.0.1.
        let v4 = word.to_socket_addrs().ok().and_then(|mut a| a.find(|a| a.is_ipv4()));
        match v4.or(first) {
            Some(addr) => Ok(ServerAddr { addr, name: None }),
            None => Err(format!("server '{word}': '{host}' resolves to no address")),
        }
    }
}

impl fmt::Display for ServerAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.addr)
    }
}

/// Backends the balancer spawns and supervises (`worker: n` in the fleet file).
#[derive(Clone, Debug, PartialEq)]
pub struct WorkerSpec {
    pub count: u16,
    pub first_port: u16,
    pub avg_delay_ms: f64,
    pub fail_rate: f64,
}

/// One layer of settings; `None` means "not said here".
#[derive(Clone, Debug, Default)]
pub struct Layer {
    pub port: Option<u16>,
    pub host: Option<IpAddr>,
    pub servers: Option<Vec<String>>,
    pub connections: Option<usize>,
    pub probe_every: Option<u64>,
    pub max_per_server: Option<usize>,
    pub queue_max: Option<usize>,
    pub queue_timeout: Option<Duration>,
    /// `Some(None)` is an explicit `off`.
    pub rate: Option<Option<f64>>,
    pub burst: Option<u32>,
    pub admin: Option<String>,
    pub client_timeout: Option<Duration>,
    pub server_timeout: Option<Duration>,
    pub drain_timeout: Option<Duration>,
    pub balance: Option<Balance>,
    pub weights: Option<Vec<(Cidr, u32)>>,
    pub server_speaks_first: Option<bool>,
    pub pool: Option<u16>,
    pub workers: Option<u16>,
    pub worker_port: Option<u16>,
    pub avg_delay_ms: Option<f64>,
    pub failure: Option<f64>,
    pub stats_file: Option<PathBuf>,
    pub mode: Option<Mode>,
    pub keep_alive_timeout: Option<Duration>,
    pub server_idle_max: Option<usize>,
    pub server_idle_timeout: Option<Duration>,
    // The shared limit (issue 14): checked in `shared::settings`.
    pub shared_limit: Option<String>,
    pub shared_name: Option<String>,
    pub shared_lease: Option<Duration>,
    pub shared_grace: Option<Duration>,
    pub shared_fallback: Option<usize>,
}

macro_rules! merge_fields {
    ($hi:ident, $lo:ident, $($f:ident),*) => { Layer { $($f: $hi.$f.or($lo.$f)),* } };
}

impl Layer {
    /// `self` wins where it says something.
    pub fn over(self, lower: Layer) -> Layer {
        let (hi, lo) = (self, lower);
        merge_fields!(
            hi,
            lo,
            port,
            host,
            servers,
            connections,
            probe_every,
            max_per_server,
            queue_max,
            queue_timeout,
            rate,
            burst,
            admin,
            client_timeout,
            server_timeout,
            drain_timeout,
            balance,
            weights,
            server_speaks_first,
            pool,
            workers,
            worker_port,
            avg_delay_ms,
            failure,
            stats_file,
            mode,
            keep_alive_timeout,
            server_idle_max,
            server_idle_timeout,
            shared_limit,
            shared_name,
            shared_lease,
            shared_grace,
            shared_fallback
        )
    }
}

/// Everything a running balancer needs, validated.
#[derive(Clone, Debug)]
pub struct Config {
    /// Listening addresses: `pool` consecutive ports from `port` (one when no pool).
    pub listen: Vec<SocketAddr>,
    /// Servers in routing order: those named first, spawned backends after; no duplicates.
    pub servers: Vec<ServerAddr>,
    /// The global bound on bridged connections (`-N`); at least 1.
    pub limit: usize,
    /// A probe round after every `probe_every` dispatched connections (`-R`); at least 1.
    pub probe_every: u64,
    pub max_per_server: Option<usize>,
    pub queue_max: usize,
    pub queue_timeout: Duration,
    pub rate: Option<f64>,
    pub burst: u32,
    pub admin: Option<SocketAddr>,
    pub client_timeout: Duration,
    pub server_timeout: Duration,
    pub drain_timeout: Duration,
    pub balance: Balance,
    pub weights: Vec<(Cidr, u32)>,
    pub server_speaks_first: bool,
    pub workers: Option<WorkerSpec>,
    pub stats_file: Option<PathBuf>,
    /// `tcp` or `http`; fixed for the life of the process (a reload cannot change it).
    pub mode: Mode,
    /// http mode: an idle client connection between requests is closed after this long.
    pub keep_alive_timeout: Duration,
    /// http mode: idle connections kept per server for reuse; never above the limit's maximum.
    pub server_idle_max: usize,
    /// http mode: an idle server connection is closed after this long.
    pub server_idle_timeout: Duration,
    /// `--shared-limit` and its settings; `None`: this balancer's `-N` is its own.
    pub shared: Option<crate::balancer::shared::Settings>,
}

pub const DEFAULT_LIMIT: usize = 4;

/// The highest global bound on bridged connections (`-N`, `connections`, `PUT /limit`).
///
/// Why 2048: at the bound every slot may be a bridge on its own worker thread, so the bound
/// must be something the process can hold without aborting, on a small machine (the one this
/// was measured on: 2 cores, `ulimit -Hn` 20000, `vm.max_map_count` 65530, `pid_max` 32768):
/// - threads: 2048, each with about four memory mappings (stack, guard, signal stack and its
///   guard), 8k mappings in all, far below `vm.max_map_count`; an exhausted map count is what
///   aborted the process at `PUT /limit 100000` ("failed to allocate an alternative stack");
/// - descriptors: a bridge holds two sockets and at most two splice pipes (six descriptors),
///   so 2048 bridges plus the default waiting room (4096) and a margin need about 16.4k,
///   below that hard limit;
/// - memory: two 16 KiB copy buffers and the touched part of a stack per thread, some tens of
///   MiB in all.
///
/// Threads are started only as clients need them (see `worker::Pool`), so a high bound costs
/// nothing until it is used.
pub const MAX_LIMIT: usize = 2048;

/// The slowest pacing rate (`--rate`, `rate`, `PUT /rate`), in connections per second: one
/// connection every 1000 s. Anything slower is better said as `off` or a lower limit, and a
/// lower bound keeps the wait for the next token (at most `1 / MIN_RATE` seconds) finite.
pub const MIN_RATE: f64 = 0.001;

/// The fastest pacing rate: a million connections per second, beyond what one balancer can
/// accept; a higher rate is no pacing at all, so it is refused rather than silently ignored.
pub const MAX_RATE: f64 = 1e6;

/// The deepest token bucket (`--burst`, `burst`): one second at `MAX_RATE`.
pub const MAX_BURST: u32 = 1_000_000;

/// The accepted rates, for messages.
pub fn rate_range() -> String {
    format!("off, or {MIN_RATE} to {MAX_RATE} connections per second")
}

/// Checks a pacing rate: `0` means off (`None`); otherwise `MIN_RATE..=MAX_RATE`. Refuses a
/// negative sign (also `-0`), NaN and infinities.
pub fn check_rate(v: f64) -> Result<Option<f64>, String> {
    if v == 0.0 && v.is_sign_positive() {
        return Ok(None);
    }
    if (MIN_RATE..=MAX_RATE).contains(&v) {
        return Ok(Some(v));
    }
    Err(format!("expected {}", rate_range()))
}

/// A rate as written on the command line or in a `PUT /rate` body: `off`, `0`, or a number
/// in `MIN_RATE..=MAX_RATE`. The error says the accepted range; the caller names the word.
pub fn parse_rate(word: &str) -> Result<Option<f64>, String> {
    let word = word.trim();
    if word == "off" {
        return Ok(None);
    }
    match word.parse::<f64>() {
        Ok(v) => check_rate(v),
        Err(_) => Err(format!("expected {}", rate_range())),
    }
}

/// A global bound (`-N`, `PUT /limit`) in `1..=MAX_LIMIT`.
pub fn parse_limit(word: &str) -> Result<usize, String> {
    crate::common::args::number_in(word, 1..=MAX_LIMIT)
}

/// A bucket depth (`--burst`) in `1..=MAX_BURST`.
pub fn parse_burst(word: &str) -> Result<u32, String> {
    crate::common::args::number_in(word, 1..=MAX_BURST)
}
pub const DEFAULT_PROBE_EVERY: u64 = 5;
pub const PROBE_PERIOD: Duration = Duration::from_secs(5);
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

impl Config {
    /// Merges defaults under `layer` and checks the whole. Errors are one line naming the word.
    pub fn build(layer: Layer) -> Result<Config, String> {
        let port = layer.port.ok_or("missing the listening PORT")?;
        let pool = layer.pool.unwrap_or(1).max(1);
        let host = layer.host.unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST));
        if pool > 1 && port == 0 {
            return Err("pool: a pool needs a fixed first port, not 0".into());
        }
        if u32::from(port) + u32::from(pool) - 1 > 65535 {
            return Err(format!("pool: {pool} ports from {port} run past 65535"));
        }
        let listen = (0..pool).map(|i| SocketAddr::new(host, port + i)).collect();

        let mut servers: Vec<ServerAddr> = Vec::new();
        for word in layer.servers.iter().flatten() {
            let s = ServerAddr::resolve(word)?;
            if servers.contains(&s) {
                crate::warn!("server '{word}' is given twice; using it once");
            } else {
                servers.push(s);
            }
        }
        let workers = match layer.workers {
            Some(count) if count > 0 => {
                let first_port = layer.worker_port.ok_or("worker: needs worker-port, the first backend port")?;
                if u32::from(first_port) + u32::from(count) - 1 > 65535 || first_port == 0 {
                    return Err(format!("worker-port: {count} ports from {first_port} do not fit in 1..65535"));
                }
                for i in 0..count {
                    let addr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), first_port + i);
                    let name = Some(crate::balancer::supervisor::worker_name(i));
                    // A server also named by address is the spawned backend: it takes the name.
                    match servers.iter_mut().find(|s| s.addr == addr) {
                        Some(s) => s.name = name,
                        None => servers.push(ServerAddr { addr, name }),
                    }
                }
                Some(WorkerSpec {
                    count,
                    first_port,
                    avg_delay_ms: layer.avg_delay_ms.unwrap_or(0.0),
                    fail_rate: layer.failure.unwrap_or(0.0),
                })
            }
            _ => None,
        };
        if servers.is_empty() {
            return Err("no SERVER given: at least one is needed".into());
        }
        let limit = layer.connections.unwrap_or(DEFAULT_LIMIT);
        if !(1..=MAX_LIMIT).contains(&limit) {
            return Err(format!("connections: {limit} is not in 1..{MAX_LIMIT}"));
        }
        if layer.probe_every == Some(0) {
            return Err("probe-every: must be at least 1".into());
        }
        let server_timeout = layer.server_timeout.unwrap_or(Duration::from_secs(5));
        if server_timeout <= Duration::from_secs(1) {
            return Err("--server-timeout: must be above 1s (curl -T waits 1s on Expect: 100-continue)".into());
        }
        let admin = match layer.admin.as_deref() {
            None => None,
            Some(word) => Some(parse_admin(word)?),
        };
        let shared = crate::balancer::shared::settings::build(
            crate::balancer::shared::settings::Given {
                url: layer.shared_limit.as_deref(),
                name: layer.shared_name.as_deref(),
                lease: layer.shared_lease,
                grace: layer.shared_grace,
                fallback: layer.shared_fallback,
            },
            &servers.iter().map(|s| s.addr).collect::<Vec<_>>(),
            limit,
        )?;
        let mut weights = layer.weights.unwrap_or_default();
        // Longest prefix first, so the first match is the most specific.
        weights.sort_by_key(|w| std::cmp::Reverse(w.0.prefix));
        Ok(Config {
            listen,
            servers,
            limit,
            probe_every: layer.probe_every.unwrap_or(DEFAULT_PROBE_EVERY),
            max_per_server: layer.max_per_server,
            queue_max: layer.queue_max.unwrap_or(4096),
            queue_timeout: layer.queue_timeout.unwrap_or(Duration::from_secs(30)),
            rate: layer.rate.flatten(),
            // The default (N) is within both ranges: MAX_LIMIT <= MAX_BURST.
            burst: layer.burst.unwrap_or(limit as u32).clamp(1, MAX_BURST),
            admin,
            client_timeout: layer.client_timeout.unwrap_or(Duration::from_secs(30)),
            server_timeout,
            drain_timeout: layer.drain_timeout.unwrap_or(Duration::from_secs(10)),
            balance: layer.balance.unwrap_or(Balance::LeastLoaded),
            weights,
            server_speaks_first: layer.server_speaks_first.unwrap_or(false),
            workers,
            stats_file: layer.stats_file,
            mode: layer.mode.unwrap_or(Mode::Tcp),
            keep_alive_timeout: layer.keep_alive_timeout.unwrap_or(Duration::from_secs(60)),
            server_idle_max: layer.server_idle_max.unwrap_or(limit),
            server_idle_timeout: layer.server_idle_timeout.unwrap_or(Duration::from_secs(15)),
            shared,
        })
    }

    /// The weight of a client address: the longest matching block, else 1.
    pub fn class_of(&self, ip: IpAddr) -> (String, u32) {
        let ip = canonical_ip(ip);
        for (cidr, w) in &self.weights {
            if cidr.contains(ip) {
                let key =
                    if cidr.prefix == if ip.is_ipv4() { 32 } else { 128 } { ip.to_string() } else { cidr.to_string() };
                return (key, *w);
            }
        }
        (ip.to_string(), 1)
    }
}

/// An IPv4 client seen through an IPv6 socket is still that IPv4 address.
pub fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

/// `PORT` (on 127.0.0.1) or `HOST:PORT`.
pub fn parse_admin(word: &str) -> Result<SocketAddr, String> {
    if let Ok(port) = word.parse::<u16>() {
        return Ok(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port));
    }
    word.to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .ok_or_else(|| format!("--admin '{word}': expected PORT or HOST:PORT"))
}

/// `30`, `2.5`, `30s`, `500ms` → a duration: the one syntax of every binary
/// (`common::args::duration`), here under the name the balancer's modules use.
pub use crate::common::args::duration as parse_duration;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr_matches_by_prefix() {
        let c = Cidr::parse("10.0.0.0/8").unwrap();
        assert!(c.contains("10.1.2.3".parse().unwrap()));
        assert!(!c.contains("11.0.0.1".parse().unwrap()));
        let host = Cidr::parse("127.0.0.2").unwrap();
        assert_eq!(host.prefix, 32);
        assert!(host.contains("127.0.0.2".parse().unwrap()));
        assert!(!host.contains("127.0.0.3".parse().unwrap()));
        assert!(Cidr::parse("0.0.0.0/0").unwrap().contains("8.8.8.8".parse().unwrap()));
        assert!(Cidr::parse("10.0.0.0/33").is_none());
        assert!(Cidr::parse("::1/128").unwrap().contains("::1".parse().unwrap()));
    }

    #[test]
    fn longest_prefix_wins() {
        let layer = Layer {
            port: Some(1),
            servers: Some(vec!["2".into()]),
            weights: Some(vec![(Cidr::parse("127.0.0.0/8").unwrap(), 3), (Cidr::parse("127.0.0.2").unwrap(), 2)]),
            ..Layer::default()
        };
        let c = Config::build(layer).unwrap();
        assert_eq!(c.class_of("127.0.0.2".parse().unwrap()), ("127.0.0.2".into(), 2));
        assert_eq!(c.class_of("127.0.0.9".parse().unwrap()), ("127.0.0.0/8".into(), 3));
        assert_eq!(c.class_of("10.0.0.1".parse().unwrap()), ("10.0.0.1".into(), 1));
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30"), Some(Duration::from_secs(30)));
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("2.5s"), Some(Duration::from_millis(2500)));
        assert_eq!(parse_duration("-1"), None);
        assert_eq!(parse_duration("abc"), None);
    }

    #[test]
    fn hostile_rates_and_limits_are_refused() {
        assert_eq!(parse_rate("off"), Ok(None));
        assert_eq!(parse_rate("0"), Ok(None));
        assert_eq!(parse_rate("20"), Ok(Some(20.0)));
        assert_eq!(parse_rate("0.001"), Ok(Some(0.001)));
        assert_eq!(parse_rate("100000"), Ok(Some(100000.0)));
        for bad in ["1e-30", "5e-324", "1e308", "inf", "-inf", "nan", "-0", "-1", "18446744073709551616", "x", ""] {
            let e = parse_rate(bad).unwrap_err();
            assert!(e.contains("0.001 to 1000000"), "{bad}: {e}");
        }
        assert_eq!(parse_limit("4"), Ok(4));
        assert_eq!(parse_limit(&MAX_LIMIT.to_string()), Ok(MAX_LIMIT));
        for bad in ["0", "-0", "100000", "18446744073709551616", "1e308", "inf", "nan", "5e-324", "2049"] {
            assert_eq!(parse_limit(bad), Err("expected a whole number from 1 to 2048".into()), "{bad}");
        }
        assert_eq!(parse_burst("100000"), Ok(100000));
        assert!(parse_burst("1000001").is_err() && parse_burst("0").is_err());
        let layer = Layer {
            port: Some(1),
            servers: Some(vec!["2".into()]),
            connections: Some(MAX_LIMIT + 1),
            ..Layer::default()
        };
        assert!(Config::build(layer).unwrap_err().contains("1..2048"));
    }

    #[test]
    fn servers_resolve_and_dedupe() {
        let layer = Layer {
            port: Some(1),
            servers: Some(vec!["8080".into(), "127.0.0.1:8080".into(), "[::1]:9".into()]),
            ..Layer::default()
        };
        let c = Config::build(layer).unwrap();
        assert_eq!(c.servers.len(), 2);
        assert!(ServerAddr::resolve("99999").is_err());
        assert!(ServerAddr::resolve("nosuchhost.invalid:80").is_err());
    }

    #[test]
    fn spawned_backends_are_named_once() {
        // 9001 is named by address and spawned: one server, with the spawned backend's name.
        let layer = Layer {
            port: Some(1),
            servers: Some(vec!["8080".into(), "9001".into()]),
            workers: Some(2),
            worker_port: Some(9001),
            ..Layer::default()
        };
        let c = Config::build(layer).unwrap();
        let servers: Vec<(String, Option<&str>)> =
            c.servers.iter().map(|s| (s.addr.to_string(), s.name.as_deref())).collect();
        assert_eq!(
            servers,
            [
                ("127.0.0.1:8080".into(), None),
                ("127.0.0.1:9001".into(), Some("worker-1")),
                ("127.0.0.1:9002".into(), Some("worker-2"))
            ]
        );
    }
}
