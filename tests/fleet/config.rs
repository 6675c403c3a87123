//! `loadbalancer --config FILE.yaml` with real processes: the file's keys reach the running
//! balancer (read back from `/status` and from where requests go), a flag given as well wins
//! over the file, and each kind of mistake in the file is one line naming the file, the line
//! and the key, with exit status 2 (issue #7).

use crate::util::*;
use std::path::Path;
use std::time::Duration;

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
}

#[test]
fn the_file_sets_the_keys_and_a_flag_wins() {
    let a = backend(&["--name", "a"]);
    let b = backend(&["--name", "b"]);
    let dir = temp_dir("config-keys");
    let file = dir.join("lb.yaml");
    write(
        &file,
        &format!(
            "# every kind of value: numbers, strings, durations, a list, a mapping\n\
             port: 0\n\
             servers:\n  - {}\n  - \"127.0.0.1:{}\"\n\
             connections: 3\n\
             probe-every: 2\n\
             max-per-server: 2\n\
             queue-max: 77\n\
             rate: 500\n\
             burst: 6\n\
             balance: round-robin\n\
             admin: 0\n\
             client-timeout: 5s\n\
             server-timeout: 3\n\
             drain-timeout: \"500ms\"\n\
             weights:\n  127.0.0.2: 2\n",
            a.port, b.port
        ),
    );
    let path = file.to_str().unwrap();

    let lb = balancer_with(&["--config", path]);
    let st = status(lb.admin.expect("admin: 0 in the file opens the admin port"));
    assert_eq!(st["limit"], 3, "{st}");
    assert_eq!(st["queue_max"], 77, "{st}");
    assert_eq!(st["rate"], 500.0, "{st}");
    assert_eq!(st["burst"], 6, "{st}");
    assert_eq!(st["balance"], "round-robin", "{st}");
    let servers: Vec<(String, serde_json::Value)> = st["servers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["address"].as_str().unwrap().to_string(), s["bound"].clone()))
        .collect();
    assert_eq!(
        servers,
        [(format!("127.0.0.1:{}", a.port), 2.into()), (format!("127.0.0.1:{}", b.port), 2.into())],
        "servers in file order, each with max-per-server as its bound"
    );
    // Round robin from the file: the servers in turn, in the file's order.
    let order: Vec<String> = (0..4).map(|_| served_by(lb.port, "/api/v1/hello")).collect();
    assert_eq!(order, ["a", "b", "a", "b"]);
    drop(lb);

    // Flags win over the file, key by key; what the flags do not say still comes from it.
    let lb = balancer_with(&["--config", path, "-N", "7", "--balance", "least-conn"]);
    let st = status(lb.admin.unwrap());
    assert_eq!(st["limit"], 7, "-N wins over connections: 3: {st}");
    assert_eq!(st["balance"], "least-conn", "{st}");
    assert_eq!(st["queue_max"], 77, "still from the file: {st}");
    assert_eq!(st["burst"], 6, "still from the file: {st}");
    assert_eq!(get(lb.port, "/api/v1/hello").status, 200);
    drop(lb);

    // The long flag for -N, too.
    let lb = balancer_with(&["--connections", "5", "--config", path]);
    assert_eq!(status(lb.admin.unwrap())["limit"], 5);
}

/// Runs the balancer on a file holding `text` and returns its whole stderr after checking the
/// exit status is 2 and that exactly one line names the file, at `line`, with `key` and
/// `words` in it.
fn refused(name: &str, text: &str, line: u32, key: &str, words: &str) {
    let dir = temp_dir(&format!("config-error-{name}"));
    let file = dir.join(format!("{name}.yaml"));
    write(&file, text);
    let path = file.to_str().unwrap();
    let (st, out, err) = run_to_end(LB, &["--config", path], b"", Duration::from_secs(10));
    assert_eq!(st.code(), Some(2), "{name}: exit status; stderr:\n{err}");
    assert!(out.is_empty(), "{name}: nothing on stdout: {out}");
    let naming: Vec<&str> = err.lines().filter(|l| l.contains(path)).collect();
    assert_eq!(naming.len(), 1, "{name}: one line names the file:\n{err}");
    let msg = naming[0];
    assert!(msg.starts_with(&format!("loadbalancer: {path}:{line}: ")), "{name}: file and line: {msg}");
    assert!(msg.contains(&format!("'{key}'")), "{name}: the key: {msg}");
    assert!(msg.contains(words), "{name}: {words:?} in {msg}");
    assert!(!err.contains("listening on"), "{name}: refused before listening:\n{err}");
}

#[test]
fn each_config_error_names_the_file_line_and_key() {
    let server = dead_port();
    refused(
        "unknown-key",
        &format!("port: 0\nservers: [{server}]\nconections: 3\n"),
        3,
        "conections",
        "unknown key 'conections' (did you mean 'connections'?)",
    );
    refused(
        "wrong-type",
        &format!("port: 0\nservers: [{server}]\n\nrate: fast\n"),
        4,
        "rate",
        "expected a number or off",
    );
    refused(
        "bad-value",
        &format!("port: 0\nconnections: 0\nservers: [{server}]\n"),
        2,
        "connections",
        "in 1..2048, found 0",
    );
    refused(
        "bad-choice",
        &format!("# a comment first\nport: 0\nservers:\n  - {server}\nbalance: random\n"),
        5,
        "balance",
        "'random': expected least-loaded, round-robin or least-conn",
    );
    refused("bad-server", "port: 0\nservers:\n  - 8080\n  - 70000\n", 4, "servers", "not in 1..65535");
}
