//! Durable per-server totals with real processes: they continue across a SIGTERM restart and
//! across kill -9 (which loses at most the last second), and a stats file that is not a
//! database, or that another balancer holds, stops the start with exit 1 and an error naming
//! it, leaving its bytes as they were (issue #7).

use crate::util::*;
use nix::sys::signal::Signal;
use serde_json::Value;
use std::path::Path;
use std::time::{Duration, Instant};

/// `loadbalancer stats FILE --json`, parsed.
fn stored(db: &Path) -> Value {
    let (st, out, err) = run_to_end(LB, &["stats", db.to_str().unwrap(), "--json"], b"", Duration::from_secs(10));
    assert!(st.success(), "stats --json: {st}: {err}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("stats --json: {e}: {out}"))
}

/// The stored request count of `server` (0 when it has no row yet).
fn stored_requests(db: &Path, server: &str) -> u64 {
    let rows = stored(db);
    rows.as_array().unwrap().iter().find(|r| r["server"] == server).map_or(0, |r| r["requests"].as_u64().unwrap())
}

/// The live request count of `server` in `/status`.
fn live_requests(lb: &Lb, server: &str) -> u64 {
    let st = status(lb.admin.unwrap());
    let s = st["servers"].as_array().unwrap().iter().find(|s| s["address"] == server).cloned();
    s.unwrap_or_else(|| panic!("no {server} in {st}"))["requests"].as_u64().unwrap()
}

/// Waits until the file holds `want` requests for `server`: each save is a debug line of the
/// balancer (`stats: saved`), and the writer saves within a second of a change, so this waits
/// on those lines, for at most 3 s.
fn wait_stored(proc: &Proc, db: &Path, server: &str, want: u64) -> Duration {
    let start = Instant::now();
    loop {
        let have = stored_requests(db, server);
        if have == want {
            return start.elapsed();
        }
        let left = Duration::from_secs(3).checked_sub(start.elapsed());
        let left = left.unwrap_or_else(|| panic!("{} holds {have} requests, not {want}", db.display()));
        proc.wait_line("stats: saved", left);
    }
}

#[test]
fn totals_continue_across_a_restart_and_a_kill_9() {
    let a = backend(&["--name", "a"]);
    let server = format!("127.0.0.1:{}", a.port);
    let dir = temp_dir("persist");
    let file = dir.join("lb.yaml");
    // A relative stats-dir is relative to the file's directory.
    std::fs::write(&file, format!("port: 0\nservers: [{}]\nadmin: 0\nstats-dir: stats.db\n", a.port)).unwrap();
    let db = dir.join("stats.db");
    let args = ["-v", "--config", file.to_str().unwrap()];

    let mut lb = balancer_with(&args);
    for _ in 0..3 {
        get_counted(&lb, "/api/v1/hello");
    }
    lb.proc.signal(Signal::SIGTERM);
    assert!(lb.proc.wait_exit(Duration::from_secs(15)).success(), "{}", lb.proc.stderr());
    assert_eq!(stored_requests(&db, &server), 3, "saved at exit");

    // A restart starts from the saved totals and adds to them.
    let mut lb = balancer_with(&args);
    assert!(logged(&lb.proc, &format!("stats: {} loaded (1 servers)", db.display())).is_some(), "{}", lb.proc.stderr());
    assert_eq!(live_requests(&lb, &server), 3);
    for _ in 0..2 {
        get_counted(&lb, "/api/v1/hello");
    }
    assert_eq!(live_requests(&lb, &server), 5);
    // Saved within about a second, while running; then kill -9 loses nothing more.
    let took = wait_stored(&lb.proc, &db, &server, 5);
    assert!(took < Duration::from_millis(2500), "saved {took:?} after the last request");
    lb.proc.signal(Signal::SIGKILL);
    lb.proc.wait_exit(Duration::from_secs(5));

    // The lock died with it: a new balancer opens the file and continues from 5.
    let lb = balancer_with(&args);
    assert_eq!(live_requests(&lb, &server), 5);
    get_counted(&lb, "/api/v1/hello");
    assert_eq!(live_requests(&lb, &server), 6);
    wait_stored(&lb.proc, &db, &server, 6);
    let row = stored(&db)[0].clone();
    assert_eq!(
        (row["server"].as_str(), row["successes"].as_u64(), row["failures"].as_u64()),
        (Some(server.as_str()), Some(6), Some(0)),
        "{row}"
    );
    // The table form, readable while a balancer runs.
    let (st, out, err) = run_to_end(LB, &["stats", db.to_str().unwrap()], b"", Duration::from_secs(10));
    assert!(st.success(), "{err}");
    assert!(out.lines().any(|l| l.starts_with(&server) && l.split_whitespace().nth(1) == Some("6")), "{out}");
}

/// Starts a balancer on `db` that must refuse it: exit 1, one message naming the file with
/// `words`, nothing listening, and the file's bytes unchanged.
fn refused(db: &Path, words: &str) {
    let before = std::fs::read(db).unwrap();
    let server = dead_port().to_string();
    let (st, _, err) =
        run_to_end(LB, &["--stats-dir", db.to_str().unwrap(), "0", &server], b"", Duration::from_secs(10));
    assert_eq!(st.code(), Some(1), "{err}");
    let line =
        err.lines().find(|l| l.contains(&db.display().to_string())).unwrap_or_else(|| panic!("file not named:\n{err}"));
    assert!(line.starts_with("loadbalancer: stats file "), "{line}");
    assert!(line.contains(words), "{words:?} not in {line}");
    assert!(!err.contains("listening on"), "{err}");
    assert!(std::fs::read(db).unwrap() == before, "{} was changed", db.display());
}

#[test]
fn a_text_file_is_refused_and_left_untouched() {
    let db = temp_dir("persist-corrupt").join("stats.db");
    std::fs::write(&db, "these are my notes, not a database\n").unwrap();
    refused(&db, "not a valid SQLite database");
}

#[test]
fn a_file_another_balancer_holds_is_refused_and_left_untouched() {
    let a = backend(&[]);
    let dir = temp_dir("persist-locked");
    let db = dir.join("stats.db");
    let server = format!("127.0.0.1:{}", a.port);
    let holder = balancer(&["-v", "--admin", "0", "--stats-dir", db.to_str().unwrap()], &[a.port]);
    get_counted(&holder, "/api/v1/hello");
    wait_stored(&holder.proc, &db, &server, 1);
    refused(&db, "in use");
    // The holder is unharmed and keeps counting.
    get_counted(&holder, "/api/v1/hello");
    assert_eq!(live_requests(&holder, &server), 2);
}
