//! `loadbalancer --check`: validates flags, file, server names and the stats file, prints one
//! `ok:` line and exits 0, or exits 2 (bad setting) or 1 (stats file), binding nothing.

use crate::util::*;
use std::time::Duration;

fn check(args: &[&str]) -> (i32, String, String) {
    let mut all = vec!["--check"];
    all.extend_from_slice(args);
    let (status, out, err) = run_to_end(LB, &all, b"", Duration::from_secs(10));
    assert!(!err.contains("panicked"), "{args:?}: {err}");
    (status.code().unwrap_or(-1), out, err)
}

#[test]
fn check_prints_what_would_run_and_exits_0() {
    let (code, out, err) = check(&["-N", "7", "8000", "8081", "8082", "127.0.0.1:8083"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "ok: would listen on 127.0.0.1:8000, 3 servers, limit 7, mode tcp\n");
}

#[test]
fn check_binds_nothing_so_ports_in_use_are_fine() {
    // Both ports are held here: a start would fail to bind them; a check must not try.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let admin = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let admin_port = admin.local_addr().unwrap().port().to_string();
    let (code, out, err) = check(&["--admin", &admin_port, &port, "9"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out,
        format!("ok: would listen on 127.0.0.1:{port}, 1 server, limit 4, mode tcp, admin on 127.0.0.1:{admin_port}\n")
    );
    // And a real start on the same port fails, which is what makes the check's 0 mean something.
    let (status, _, err) = run_to_end(LB, &[&port, "9"], b"", Duration::from_secs(10));
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(err.contains("bind"), "{err}");
}

#[test]
fn check_reads_the_config_file_under_the_flags() {
    let dir = temp_dir("check-file");
    let file = dir.join("lb.yaml");
    std::fs::write(&file, "port: 8000\nservers: [8081, 8082]\nconnections: 3\n").unwrap();
    let path = file.to_str().unwrap();
    let (code, out, err) = check(&["--config", path]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "ok: would listen on 127.0.0.1:8000, 2 servers, limit 3, mode tcp\n");
    let (code, out, _) = check(&["--mode", "http", "8000", "1"]);
    assert_eq!((code, out.as_str()), (0, "ok: would listen on 127.0.0.1:8000, 1 server, limit 4, mode http\n"));
    let (code, out, _) = check(&["--config", path, "-N", "5"]);
    assert_eq!(code, 0);
    assert!(out.contains("limit 5"), "the flag wins: {out}");

    std::fs::write(&file, "port: 8000\nservers: [8081]\nrate: 1e-30\n").unwrap();
    let (code, out, err) = check(&["--config", path]);
    assert_eq!(code, 2, "{err}");
    assert!(out.is_empty(), "{out}");
    assert!(err.contains(&format!("{path}:3: key 'rate'")), "{err}");
    let _ = std::fs::remove_dir_all(&dir); // a leftover temp dir is harmless
}

#[test]
fn check_refuses_bad_settings_with_2() {
    for (args, names) in [
        (&["--rate", "inf", "8000", "8081"][..], "--rate 'inf'"),
        (&["-N", "100000", "8000", "8081"][..], "-N '100000'"),
        (&["8000"][..], "no SERVER"),
        (&["8000", "nosuchhost.invalid:80"][..], "nosuchhost.invalid"),
        (&["--config", "/nonexistent/lb.yaml"][..], "/nonexistent/lb.yaml"),
    ] {
        let (code, out, err) = check(args);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(out.is_empty(), "{args:?}: {out}");
        assert!(err.lines().next().unwrap_or("").contains(names), "{args:?}: {err}");
    }
}

#[test]
fn check_looks_at_the_stats_file_without_writing_it() {
    let dir = temp_dir("check-stats");
    // Absent: would be created, and is not created by the check.
    let new = dir.join("new.db");
    let (code, out, err) = check(&["--stats-file", new.to_str().unwrap(), "8000", "8081"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.trim_end().ends_with(&format!("stats in {} (new)", new.display())), "{out}");
    assert!(!new.exists(), "--check created {}", new.display());
    assert!(!dir.join("new.db.lock").exists(), "--check created the lock file");

    // Not a database: refused with 1, the file untouched.
    let junk = dir.join("junk.db");
    std::fs::write(&junk, b"not sqlite at all").unwrap();
    let (code, out, err) = check(&["--stats-dir", junk.to_str().unwrap(), "8000", "8081"]);
    assert_eq!(code, 1, "{err}");
    assert!(out.is_empty(), "{out}");
    assert!(err.contains("not a valid SQLite database"), "{err}");
    assert_eq!(std::fs::read(&junk).unwrap(), b"not sqlite at all");

    // A directory that does not exist: refused with 1.
    let nowhere = dir.join("no/such/dir/s.db");
    let (code, _, err) = check(&["--stats-file", nowhere.to_str().unwrap(), "8000", "8081"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("stats file"), "{err}");

    // One a balancer holds, running: accepted (a check before a reload is the usual case).
    let a = backend(&[]);
    let db = dir.join("kept.db");
    let db_word = db.to_str().unwrap();
    let mut lb = balancer(&["--stats-file", db_word], &[a.port]);
    assert_eq!(get(lb.port, "/api/v1/hello").status, 200);
    let (code, out, err) = check(&["--stats-file", db_word, "8000", "8081"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(&format!("stats in {db_word} (")), "{out}");
    // Saved and closed: accepted with its rows counted, and left byte for byte the same.
    lb.proc.signal(nix::sys::signal::Signal::SIGTERM);
    assert!(lb.proc.wait_exit(Duration::from_secs(15)).success(), "{}", lb.proc.stderr());
    let before = std::fs::read(&db).unwrap();
    let (code, out, err) = check(&["--stats-file", db_word, "8000", "8081"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("(1 servers saved)"), "{out}");
    assert_eq!(std::fs::read(&db).unwrap(), before, "--check wrote to the stats file");
    let _ = std::fs::remove_dir_all(&dir); // a leftover temp dir is harmless
}
