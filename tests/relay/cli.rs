//! The command lines of eventrelay and eventsim: a refusal is one line naming the flag and the
//! problem, then the usage line, exit 2; help and version exit 0; nothing panics.

use crate::relay_support::{RELAY, SIM};
use std::process::Command;

fn run(bin: &str, args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let mut cmd = Command::new(bin);
    cmd.args(args).env_remove("eventListenerPort").env_remove("clientListenerPort");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

fn assert_refused(bin: &str, args: &[&str], env: &[(&str, &str)], names: &str) {
    let (code, _, err) = run(bin, args, env);
    assert_eq!(code, 2, "{bin} {args:?}: {err}");
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 2, "{bin} {args:?}: want one error line and the usage line:\n{err}");
    assert!(lines[0].contains(names), "{bin} {args:?}: {:?} does not name {names:?}", lines[0]);
    assert!(lines[1].starts_with("Usage: "), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn eventrelay_refuses_bad_flags() {
    assert_refused(RELAY, &["--window", "lots"], &[], "--window");
    assert_refused(RELAY, &["--window", "0"], &[], "--window");
    assert_refused(RELAY, &["--event-port", "70000"], &[], "--event-port");
    assert_refused(RELAY, &["--client-port"], &[], "client-port");
    assert_refused(RELAY, &["--gap-timeout", "-1s"], &[], "--gap-timeout");
    assert_refused(RELAY, &["--client-buffer", "big"], &[], "--client-buffer");
    assert_refused(RELAY, &["--host", "example"], &[], "--host");
    assert_refused(RELAY, &["--bogus"], &[], "bogus");
    assert_refused(RELAY, &["stray"], &[], "stray");
    assert_refused(RELAY, &[], &[("eventListenerPort", "http")], "eventListenerPort");
}

#[test]
fn eventsim_refuses_bad_flags() {
    assert_refused(SIM, &["--total-events", "x"], &[], "--total-events");
    assert_refused(SIM, &["--max-batch", "0"], &[], "--max-batch");
    assert_refused(SIM, &["--concurrency", "0"], &[], "--concurrency");
    assert_refused(SIM, &["--timeout", "soon"], &[], "--timeout");
    assert_refused(SIM, &[], &[("concurrencyLevel", "many")], "concurrencyLevel");
}

#[test]
fn help_and_version() {
    for bin in [RELAY, SIM] {
        for h in ["-h", "--help"] {
            let (code, out, _) = run(bin, &[h], &[]);
            assert_eq!(code, 0);
            assert!(out.starts_with("Usage: "), "{out}");
            assert!(out.contains("--event-port"), "{out}");
        }
        for v in ["-V", "--version"] {
            let (code, out, _) = run(bin, &[v], &[]);
            assert_eq!(code, 0);
            assert!(out.contains(env!("CARGO_PKG_VERSION")), "{out}");
        }
    }
}

#[test]
fn a_port_in_use_is_an_error_naming_it() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let (code, _, err) = run(RELAY, &["--event-port", &port, "--client-port", "0"], &[]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains(&format!("cannot listen for events on 127.0.0.1:{port}")), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn eventsim_without_a_relay_fails_cleanly() {
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = free.local_addr().unwrap().port().to_string();
    drop(free); // nobody listens there now
    let (code, out, err) = run(SIM, &["--client-port", &port, "--total-events", "10"], &[]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.contains("FAILED: connecting the client for user"), "{out}");
    assert!(!err.contains("panicked"), "{err}");
}
