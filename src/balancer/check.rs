//! `loadbalancer --check [--config FILE] [flags]`: validates the whole configuration the way a
//! start would, and says in one line what would run, without running it (as `nginx -t` and
//! `haproxy -c` do).
//!
//! It goes through the same steps as `run` up to the first one with an effect: the flags (in
//! `cli`), the file and the merged `Config` (server and admin names resolved), the stats file
//! (`store::check`: readable, ours, writable, with nothing written and no lock taken, so it
//! works beside a balancer that holds the file) and, for a fleet, the `backend` binary it
//! would spawn. Nothing is bound, spawned or raised: a port in use is not an error here,
//! since the running balancer being checked before a reload is the usual holder of it.
//! Exit status as for a start: 2 for a bad flag, file or value, 1 for a stats file or backend
//! binary that cannot be used.

use crate::balancer::cli::Args;
use crate::balancer::config::Config;
use crate::balancer::{RunError, load_config, store, supervisor};
use std::net::SocketAddr;

/// Checks everything `run(args)` would check before binding; returns the `ok:` line.
pub fn check(args: &Args) -> Result<String, RunError> {
    let config = load_config(&args.layer, args.config_file.as_deref())?;
    let stats = match config.stats_file.as_deref() {
        Some(path) => Some(store::check(path).map_err(|e| RunError::Runtime(e.to_string()))?),
        None => None,
    };
    if config.workers.is_some() {
        let exe = supervisor::backend_exe();
        if !exe.is_file() {
            return Err(RunError::Runtime(format!("worker: the backend binary {} does not exist", exe.display())));
        }
    }
    Ok(summary(&config, stats.as_deref()))
}

/// `ok: would listen on 127.0.0.1:8000, 3 servers, limit 4, mode tcp[, admin on ...][, stats
/// in ...]`. One line: the first thing an operator reads after a change.
fn summary(config: &Config, stats: Option<&str>) -> String {
    let mut line = format!(
        "ok: would listen on {}, {} server{}, limit {}, mode {}",
        listen_words(&config.listen),
        config.servers.len(),
        if config.servers.len() == 1 { "" } else { "s" },
        config.limit,
        config.mode.name(),
    );
    if let Some(spec) = &config.workers {
        line.push_str(&format!(", {} spawned backends from port {}", spec.count, spec.first_port));
    }
    if let Some(a) = config.admin {
        line.push_str(&format!(", admin on {a}"));
    }
    if let Some(s) = stats {
        line.push_str(&format!(", {s}"));
    }
    line
}

/// One address, or a pool's consecutive ports as `HOST:FIRST-LAST`.
fn listen_words(listen: &[SocketAddr]) -> String {
    match listen {
        [] => "nothing".into(),
        [one] => one.to_string(),
        [first, .., last] => format!("{first}-{}", last.port()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::balancer::config::Layer;

    #[test]
    fn the_line_says_what_would_run() {
        let layer = Layer {
            port: Some(8000),
            servers: Some(vec!["8081".into(), "8082".into(), "8083".into()]),
            ..Layer::default()
        };
        let config = Config::build(layer).unwrap();
        assert_eq!(summary(&config, None), "ok: would listen on 127.0.0.1:8000, 3 servers, limit 4, mode tcp");
        let pool: Vec<SocketAddr> = (0..3).map(|i| SocketAddr::from(([127, 0, 0, 1], 8000 + i))).collect();
        assert_eq!(listen_words(&pool), "127.0.0.1:8000-8002");
    }
}
