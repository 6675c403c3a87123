//! Hostile rates and limits (see: issue #11): a value that cannot be honoured is refused where
//! it enters, by flag (exit 2), config key (exit 2) or admin body (400), with one line naming
//! the value and the accepted range, and the balancer goes on serving. Before the fix,
//! `PUT /rate 1e-30` was accepted and the next dispatch panicked in `Dispatcher::take`, and
//! `PUT /limit 100000` started a thread per slot until the process aborted.

use crate::util::*;
use std::time::Duration;

/// The values every entry point is tried with.
const VALUES: [&str; 8] = ["1e-30", "5e-324", "1e308", "inf", "nan", "-0", "18446744073709551616", "100000"];

/// One setting and its entry points.
struct Setting {
    flag: &'static str,
    key: &'static str,
    /// How the flag's refusal states the range.
    flag_range: &'static str,
    /// How the config file's refusal states it.
    key_range: &'static str,
    /// Which of `VALUES` it accepts.
    accepts: &'static [&'static str],
}

const SETTINGS: [Setting; 3] = [
    Setting {
        flag: "--rate",
        key: "rate",
        flag_range: "off, or 0.001 to 1000000 connections per second",
        key_range: "a number or off (0.001 to 1000000 connections per second)",
        accepts: &["100000"],
    },
    Setting {
        flag: "--burst",
        key: "burst",
        flag_range: "a whole number from 1 to 1000000",
        key_range: "a whole number in 1..1000000",
        accepts: &["100000"],
    },
    Setting {
        flag: "-N",
        key: "connections",
        flag_range: "a whole number from 1 to 2048",
        key_range: "a whole number in 1..2048",
        accepts: &[],
    },
];

/// How the config file's error shows a value: YAML has already read it as a number (an
/// integer beyond 64 bits becomes a float, `-0` is the integer 0) or as a string.
fn as_yaml_reads_it(v: &str) -> &str {
    match v {
        "inf" => "a string 'inf'",
        "nan" => "a string 'nan'",
        "-0" => "found 0",
        "18446744073709551616" => "1.8446744073709552e19",
        other => other,
    }
}

fn served(lb: &Lb, after: &str) {
    let r = get(lb.port, "/api/v1/hello");
    assert_eq!(r.status, 200, "after {after}: {}\nstderr:\n{}", r.text(), lb.proc.stderr());
}

#[test]
fn hostile_flags_exit_2_naming_the_value_and_the_range() {
    let a = backend(&[]);
    let server = a.port.to_string();
    for s in &SETTINGS {
        for v in VALUES {
            let what = format!("{} {v}", s.flag);
            if s.accepts.contains(&v) {
                let lb = balancer(&[s.flag, v], &[a.port]);
                served(&lb, &what);
                continue;
            }
            let (status, _, stderr) = run_to_end(LB, &[s.flag, v, "0", &server], b"", Duration::from_secs(10));
            assert_eq!(status.code(), Some(2), "{what}: {stderr}");
            let first = stderr.lines().next().unwrap_or("");
            assert_eq!(first, format!("loadbalancer: {} '{v}': expected {}", s.flag, s.flag_range), "{what}");
            assert!(!stderr.contains("panicked"), "{what}: {stderr}");
        }
    }
}

#[test]
fn hostile_config_keys_exit_2_naming_the_key_the_value_and_the_range() {
    let a = backend(&[]);
    let dir = temp_dir("hostile-keys");
    let file = dir.join("lb.yaml");
    let path = file.to_str().unwrap();
    for s in &SETTINGS {
        for v in VALUES {
            let what = format!("{}: {v}", s.key);
            std::fs::write(&file, format!("port: 0\nservers: [{}]\n{what}\n", a.port)).unwrap();
            // `rate: -0` is the integer 0 to YAML, which is `off`, as `rate: 0` is.
            let accepted = s.accepts.contains(&v) || (s.key == "rate" && v == "-0");
            if accepted {
                let lb = balancer_with(&["--config", path]);
                served(&lb, &what);
                continue;
            }
            let (status, _, stderr) = run_to_end(LB, &["--config", path], b"", Duration::from_secs(10));
            assert_eq!(status.code(), Some(2), "{what}: {stderr}");
            let first = stderr.lines().next().unwrap_or("");
            assert!(first.starts_with(&format!("loadbalancer: {path}:3: key '{}': ", s.key)), "{what}: {first}");
            assert!(first.contains(&format!("expected {}, found ", s.key_range)), "{what}: {first}");
            assert!(first.contains(as_yaml_reads_it(v)), "{what}: the value is named: {first}");
        }
    }
    let _ = std::fs::remove_dir_all(&dir); // a leftover temp dir is harmless
}

#[test]
fn hostile_admin_bodies_get_400_and_the_balancer_still_serves() {
    let a = backend(&[]);
    let lb = balancer(&["--admin", "0", "-N", "2"], &[a.port]);
    let admin = lb.admin.unwrap();
    served(&lb, "start");
    let long = "9".repeat(60_000); // fits the admin's 64 KiB body, names nothing it can hold
    let huge = "1".repeat(1 << 20); // over it: refused before the body is read
    let mut bodies: Vec<&str> = VALUES.to_vec();
    bodies.push(&long);
    bodies.push(&huge);
    for (path, range, accepts) in [
        ("/rate", "off, or 0.001 to 1000000 connections per second", &["100000"][..]),
        ("/limit", "a whole number from 1 to 2048", &[][..]),
    ] {
        for body in &bodies {
            let shown = if body.len() > 40 { format!("{}...", &body[..40]) } else { body.to_string() };
            let what = format!("PUT {path} {shown}");
            let r = request(admin, "PUT", path, body.as_bytes());
            if accepts.contains(body) {
                assert_eq!(r.status, 200, "{what}: {}", r.text());
            } else if body.len() > 64 * 1024 {
                assert_eq!(r.status, 400, "{what}: {}", r.text());
                assert!(r.text().contains("too large"), "{what}: {}", r.text());
            } else {
                assert_eq!(r.status, 400, "{what}: {}", r.text());
                let name = path.trim_start_matches('/');
                assert_eq!(r.text(), format!("{name} '{shown}': expected {range}\n"), "{what}");
            }
            served(&lb, &what);
        }
    }
    let st = status(admin);
    assert_eq!(st["limit"].as_u64(), Some(2), "no refused limit was applied: {st}");
    assert_eq!(st["rate"].as_f64(), Some(100000.0), "only the accepted rate was applied: {st}");
    assert!(!lb.proc.stderr().contains("panic"), "{}", lb.proc.stderr());
}

/// Threads alive in process `pid` (from /proc).
fn threads(pid: i32) -> usize {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = text.lines().find(|l| l.starts_with("Threads:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn put_limit_at_the_maximum_starts_no_thread_it_does_not_need() {
    let a = backend(&[]);
    let lb = balancer(&["--admin", "0"], &[a.port]);
    let admin = lb.admin.unwrap();
    let before = threads(lb.proc.pid);
    let r = request(admin, "PUT", "/limit", b"2048");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(status(admin)["limit"].as_u64(), Some(2048));
    for _ in 0..3 {
        served(&lb, "PUT /limit 2048");
    }
    // One client at a time needs one worker, and one more waiting for the next client: not
    // one per slot (before the fix, 2048 threads at once; at 100000, an abort).
    let after = threads(lb.proc.pid);
    assert!(after <= before + 2, "threads: {before} before PUT /limit 2048, {after} after");
    assert_eq!(request(admin, "PUT", "/limit", b"2049").status, 400);
    served(&lb, "PUT /limit 2049");
}
