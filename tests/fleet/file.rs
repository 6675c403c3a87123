//! Every shipped example parses through the library API and builds a runnable `Config`.

use lb::balancer::config::Config;
use lb::balancer::file;
use std::path::Path;

#[test]
fn every_example_parses_and_builds() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut seen = Vec::new();
    for entry in std::fs::read_dir(&dir).expect("examples/ is readable") {
        let path = entry.expect("a directory entry").path();
        if path.extension().and_then(|e| e.to_str()) != Some("yaml") {
            continue;
        }
        let layer = file::load(&path).unwrap_or_else(|e| panic!("{e}"));
        let config = Config::build(layer).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert!(!config.servers.is_empty(), "{}", path.display());
        seen.push(path.file_name().unwrap_or_default().to_string_lossy().into_owned());
    }
    seen.sort();
    assert_eq!(seen, ["fleet.yaml", "guard.yaml", "servers.yaml", "shared.yaml"]);
}

#[test]
fn fleet_example_has_the_original_keys() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/fleet.yaml");
    let layer = file::load(&path).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((layer.port, layer.pool, layer.workers, layer.worker_port), (Some(8020), Some(2), Some(3), Some(9001)));
    assert_eq!((layer.avg_delay_ms, layer.failure), (Some(20.0), Some(5.0)));
    // stats-dir is relative to the file, not to the working directory.
    assert_eq!(layer.stats_file, Some(path.parent().unwrap().join("fleet-stats.db")));
    let config = Config::build(layer).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.listen.len(), 2);
    assert_eq!(config.workers.map(|w| w.count), Some(3));
}

#[test]
fn flags_win_over_the_file() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/servers.yaml");
    let from_file = file::load(&path).unwrap_or_else(|e| panic!("{e}"));
    let flags = match lb::balancer::cli::parse(&["-N", "16", "--config", "x.yaml"]) {
        Ok(lb::balancer::cli::Command::Run(a)) => a.layer,
        other => panic!("{other:?}"),
    };
    let config = Config::build(flags.over(from_file)).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.limit, 16);
    assert_eq!(config.servers.len(), 3);
}
