//! The shared limit's settings: `--shared-limit redis://HOST:PORT[/DB]`, `--shared-name`,
//! `--shared-lease`, `--shared-grace`, `--shared-fallback` (and the same keys in the config
//! file), checked word by word where they enter and merged into one `Settings` by
//! `Config::build`.
//!
//! The URL is parsed here by hand, strictly: the redis crate would accept more (unix sockets,
//! TLS, passwords) than this balancer supports, and its errors do not name our flag.

use std::time::Duration;

/// The accepted range of `--shared-lease`: a renewal every lease/3 must have room for a
/// bounded Redis call (200 ms), and an hour is already more than anyone should wait.
pub const LEASE_RANGE: (Duration, Duration) = (Duration::from_millis(300), Duration::from_secs(3600));
/// The accepted range of `--shared-grace`.
pub const GRACE_RANGE: (Duration, Duration) = (Duration::ZERO, Duration::from_secs(3600));
pub const DEFAULT_LEASE: Duration = Duration::from_secs(3);
pub const DEFAULT_GRACE: Duration = Duration::from_secs(10);

/// One group's settings, validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    /// The URL as given (for messages) and what it names.
    pub url: String,
    pub host: String,
    pub port: u16,
    pub db: u32,
    /// The group: every balancer started with the same name shares one `-N`.
    pub name: String,
    pub lease: Duration,
    pub grace: Duration,
    /// Slots a cut-off instance uses anyway (0: none; the bound may be exceeded by this much).
    pub fallback: usize,
}

/// `redis://HOST:PORT[/DB]` (PORT defaults to 6379, DB to 0) → (host, port, db). The error
/// says what is expected; the caller names the flag or key.
pub fn parse_url(url: &str) -> Result<(String, u16, u32), String> {
    const WHAT: &str = "expected redis://HOST:PORT[/DB]";
    let rest = url.strip_prefix("redis://").ok_or_else(|| WHAT.to_string())?;
    let (authority, db) = match rest.split_once('/') {
        Some((a, "")) => (a, 0),
        Some((a, d)) => (a, d.parse::<u32>().map_err(|_| format!("{WHAT}: database '{d}' is not a number"))?),
        None => (rest, 0),
    };
    if authority.contains('@') {
        return Err(format!("{WHAT}: passwords are not supported"));
    }
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (h, p) = v6.split_once(']').ok_or_else(|| format!("{WHAT}: unclosed '['"))?;
        (h, p.strip_prefix(':'))
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    if host.is_empty() || host.contains(|c: char| c.is_whitespace() || c == '/' || c == '?' || c == '#') {
        return Err(format!("{WHAT}: bad host '{host}'"));
    }
    let port = match port {
        None => 6379,
        Some(p) => match p.parse::<u16>() {
            Ok(p) if p > 0 => p,
            _ => return Err(format!("{WHAT}: port '{p}' is not in 1..65535")),
        },
    };
    Ok((host.to_string(), port, db))
}

/// A group name: 1 to 64 of `A-Z a-z 0-9 . _ -` (it becomes part of Redis keys and log lines).
pub fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok { Ok(()) } else { Err("expected 1 to 64 letters, digits, '.', '_' or '-'".into()) }
}

/// The default group name: a short hash of the sorted server list, so that balancers started
/// in front of the same servers share one limit without being told a name.
pub fn default_name(servers: &[std::net::SocketAddr]) -> String {
    let mut words: Vec<String> = servers.iter().map(|s| s.to_string()).collect();
    words.sort();
    // FNV-1a: stable across builds and platforms (std's hasher is not).
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in words.join(",").bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("servers-{:08x}", h >> 32)
}

/// Checks a duration against its range; the error names the range.
pub fn check_range(d: Duration, (lo, hi): (Duration, Duration)) -> Result<Duration, String> {
    if d < lo || d > hi { Err(format!("must be in {lo:?}..{hi:?}")) } else { Ok(d) }
}

/// What the layers said, merged; `None` when `shared-limit` is not set (the other shared
/// settings are then ignored, with a warning by the caller).
pub struct Given<'a> {
    pub url: Option<&'a str>,
    pub name: Option<&'a str>,
    pub lease: Option<Duration>,
    pub grace: Option<Duration>,
    pub fallback: Option<usize>,
}

/// Builds the settings for a config whose servers and `-N` are known. Errors are one line
/// naming the setting.
pub fn build(given: Given<'_>, servers: &[std::net::SocketAddr], limit: usize) -> Result<Option<Settings>, String> {
    let Some(url) = given.url else {
        if given.name.is_some() || given.lease.is_some() || given.grace.is_some() || given.fallback.is_some() {
            crate::warn!("shared-name, shared-lease, shared-grace and shared-fallback need shared-limit; ignored");
        }
        return Ok(None);
    };
    let (host, port, db) = parse_url(url).map_err(|e| format!("--shared-limit '{url}': {e}"))?;
    let name = match given.name {
        Some(n) => {
            check_name(n).map_err(|e| format!("--shared-name '{n}': {e}"))?;
            n.to_string()
        }
        None => default_name(servers),
    };
    let lease =
        check_range(given.lease.unwrap_or(DEFAULT_LEASE), LEASE_RANGE).map_err(|e| format!("--shared-lease: {e}"))?;
    let grace =
        check_range(given.grace.unwrap_or(DEFAULT_GRACE), GRACE_RANGE).map_err(|e| format!("--shared-grace: {e}"))?;
    let fallback = given.fallback.unwrap_or(0);
    if fallback > limit {
        return Err(format!("--shared-fallback {fallback}: must be in 0..{limit} (at most -N)"));
    }
    Ok(Some(Settings { url: url.to_string(), host, port, db, name, lease, grace, fallback }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(parse_url("redis://127.0.0.1:6380").unwrap(), ("127.0.0.1".into(), 6380, 0));
        assert_eq!(parse_url("redis://h:1/3").unwrap(), ("h".into(), 1, 3));
        assert_eq!(parse_url("redis://h/").unwrap(), ("h".into(), 6379, 0));
        assert_eq!(parse_url("redis://[::1]:7").unwrap(), ("::1".into(), 7, 0));
        for bad in [
            "http://h:1",
            "redis://",
            "redis://:1",
            "redis://h:0",
            "redis://h:x",
            "redis://h:1/x",
            "h:1",
            "redis://u:p@h:1",
        ] {
            assert!(parse_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn names() {
        assert!(check_name("eu-west.1_a").is_ok());
        assert!(check_name("").is_err());
        assert!(check_name("a b").is_err());
        assert!(check_name(&"x".repeat(65)).is_err());
        let a: std::net::SocketAddr = "127.0.0.1:1".parse().unwrap();
        let b: std::net::SocketAddr = "127.0.0.1:2".parse().unwrap();
        assert_eq!(default_name(&[a, b]), default_name(&[b, a]), "the order of the servers does not matter");
        assert_ne!(default_name(&[a]), default_name(&[b]));
        check_name(&default_name(&[a])).unwrap();
    }

    #[test]
    fn ranges() {
        let g = |fallback| Given { url: Some("redis://h:1"), name: None, lease: None, grace: None, fallback };
        let s = build(g(None), &[], 6).unwrap().unwrap();
        assert_eq!((s.lease, s.grace, s.fallback), (DEFAULT_LEASE, DEFAULT_GRACE, 0));
        assert!(build(g(Some(7)), &[], 6).unwrap_err().contains("--shared-fallback 7"));
        let short = Given { lease: Some(Duration::from_millis(100)), ..g(None) };
        assert!(build(short, &[], 6).unwrap_err().contains("--shared-lease"));
        let none = Given { url: None, name: None, lease: None, grace: None, fallback: None };
        assert!(build(none, &[], 6).unwrap().is_none());
    }
}
