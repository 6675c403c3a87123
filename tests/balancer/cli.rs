//! Bad command lines: one line naming the word and the problem, the usage line, exit 2;
//! runtime failures (a port in use) exit 1; never a panic trace.

use crate::util::LB;
use std::process::Command;

fn run(args: &[&str]) -> (i32, String) {
    let out = Command::new(LB).args(args).output().expect("run loadbalancer");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!stderr.contains("panicked"), "panic trace for {args:?}:\n{stderr}");
    (out.status.code().unwrap_or(-1), stderr)
}

fn assert_usage_error(args: &[&str], word: &str) {
    let (code, stderr) = run(args);
    assert_eq!(code, 2, "{args:?} exits 2; stderr:\n{stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 2, "{args:?}: one error line plus usage:\n{stderr}");
    assert!(lines[0].contains(word), "{args:?}: the error names {word:?}:\n{stderr}");
    assert!(lines[1].starts_with("usage: loadbalancer"), "{args:?}: usage line:\n{stderr}");
}

#[test]
fn bad_command_lines_exit_2_naming_the_word() {
    assert_usage_error(&[], "PORT");
    assert_usage_error(&["8080"], "SERVER");
    assert_usage_error(&["-N", "0", "8080", "8081"], "-N '0'");
    assert_usage_error(&["-N", "abc", "8080", "8081"], "-N 'abc'");
    assert_usage_error(&["-R", "-1", "8080", "8081"], "-R '-1'");
    assert_usage_error(&["99999", "8081"], "99999");
    assert_usage_error(&["8080", "99999"], "99999");
    assert_usage_error(&["--frobnicate", "8080", "8081"], "frobnicate");
    assert_usage_error(&["8080", "no-such-host.invalid:80"], "no-such-host.invalid");
    assert_usage_error(&["--server-timeout", "1", "8080", "8081"], "--server-timeout");
    assert_usage_error(&["--weight", "10.0.0.0/8", "8080", "8081"], "--weight");
    assert_usage_error(&["--balance", "random", "8080", "8081"], "--balance");
}

#[test]
fn help_and_version_exit_0() {
    let out = Command::new(LB).arg("--help").output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in ["-N", "-R", "--max-per-server", "--queue-max", "--rate", "--admin", "--weight", "--config"] {
        assert!(help.contains(flag), "--help mentions {flag}:\n{help}");
    }
    let out = Command::new(LB).arg("-V").output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("loadbalancer "));
}

#[test]
fn port_in_use_exits_1() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let (code, stderr) = run(&[&port, "8081"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains(&port) && stderr.contains("bind"), "{stderr}");
}
