//! The stats file: round trips, totals across reopen, the writer thread, refusing a
//! non-database and a locked database (held by other processes) without touching it, and
//! `print_table`.

use lb::balancer::stats::{Exchange, NBUCKETS, ServerTotals, Stats};
use lb::balancer::store::{self, Store, StoreError};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("lb-fleet-store-{name}-{}", std::process::id()));
    // A leftover from an earlier run of this test is ours to remove; a failure shows up below.
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn totals(requests: u64, failures: u64) -> ServerTotals {
    let mut buckets = [0; NBUCKETS];
    buckets[2] = requests - 1;
    buckets[NBUCKETS - 1] = 1;
    ServerTotals {
        requests,
        successes: requests - failures,
        failures,
        bytes_to_server: 123 * requests,
        bytes_to_client: 4567 * requests,
        buckets,
        time_sum_us: 4_000 * requests,
    }
}

#[test]
fn save_and_load_round_trip() {
    let dir = temp_dir("roundtrip");
    let path = dir.join("stats.db");
    let rows = vec![("127.0.0.1:9001".to_string(), totals(10, 1)), ("127.0.0.1:9002".to_string(), totals(7, 0))];
    {
        let mut s = Store::open(&path).unwrap();
        assert_eq!(s.load().unwrap(), vec![]);
        s.save(&rows).unwrap();
        assert_eq!(s.load().unwrap(), rows);
        // A later save replaces totals and keeps rows it does not mention.
        s.save(&[("127.0.0.1:9001".to_string(), totals(12, 2))]).unwrap();
        let now = s.load().unwrap();
        assert_eq!(now[0], ("127.0.0.1:9001".to_string(), totals(12, 2)));
        assert_eq!(now[1], rows[1]);
    }
    let s = Store::open(&path).unwrap();
    assert_eq!(s.load().unwrap().len(), 2);
}

/// Records one exchange per status on `server`.
fn traffic(stats: &Stats, server: &str, statuses: &[u16]) {
    let s = stats.server(server);
    for &status in statuses {
        s.record(&Exchange {
            status: Some(status),
            bytes_to_server: 100,
            bytes_to_client: 1000,
            response_time: Duration::from_millis(3),
        });
    }
}

#[test]
fn totals_continue_across_a_restart() {
    let dir = temp_dir("restart");
    let path = dir.join("stats.db");
    // First run: 3 requests, the writer saves them at stop.
    {
        let stats = Arc::new(Stats::default());
        let store = Store::open(&path).unwrap();
        assert_eq!(store.restore(&stats).unwrap(), 0);
        let writer = store::spawn_writer(store, Arc::clone(&stats));
        traffic(&stats, "a:1", &[200, 200, 500]);
        writer.stop().unwrap();
    }
    // Second run: loads 3 as its base, adds 2.
    {
        let stats = Arc::new(Stats::default());
        let store = Store::open(&path).unwrap();
        assert_eq!(store.restore(&stats).unwrap(), 1);
        let writer = store::spawn_writer(store, Arc::clone(&stats));
        traffic(&stats, "a:1", &[200, 404]);
        traffic(&stats, "b:2", &[200]);
        drop(writer); // drop also makes the final save
    }
    let store = Store::open(&path).unwrap();
    let rows = store.load().unwrap();
    assert_eq!(rows.len(), 2);
    let (name, a) = &rows[0];
    assert_eq!(name, "a:1");
    assert_eq!((a.requests, a.successes, a.failures), (5, 3, 2));
    assert_eq!((a.bytes_to_server, a.bytes_to_client), (500, 5000));
    assert_eq!(a.buckets[2], 5, "3 ms lands in the 5 ms bucket");
    assert_eq!(rows[1].1.requests, 1);
}

/// `PRAGMA data_version` as seen by a separate connection: it moves when another connection
/// commits.
fn data_version(conn: &rusqlite::Connection) -> i64 {
    conn.query_row("PRAGMA data_version", [], |r| r.get(0)).unwrap()
}

/// Writes to one file, seen through inotify on its directory: waiting on it is waiting on an
/// event, not a polling loop. Set up before the write it waits for, so none is missed.
struct Writes {
    ino: nix::sys::inotify::Inotify,
    name: std::ffi::OsString,
}

impl Writes {
    fn watch(path: &std::path::Path) -> Writes {
        use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
        let ino = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC).unwrap();
        ino.add_watch(path.parent().unwrap(), AddWatchFlags::IN_MODIFY | AddWatchFlags::IN_CLOSE_WRITE).unwrap();
        Writes { ino, name: path.file_name().unwrap().to_owned() }
    }

    /// Waits up to `timeout` for a write to the file; false on timeout.
    fn wait(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            let ms = u16::try_from(left.as_millis()).unwrap_or(u16::MAX);
            let mut fds = [nix::poll::PollFd::new(std::os::fd::AsFd::as_fd(&self.ino), nix::poll::PollFlags::POLLIN)];
            if nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(ms)).unwrap_or(0) > 0
                && let Ok(events) = self.ino.read_events()
                && events.iter().any(|e| e.name.as_deref() == Some(self.name.as_os_str()))
            {
                return true;
            }
        }
    }
}

#[test]
fn the_writer_saves_within_a_second_and_only_on_change() {
    let dir = temp_dir("writer");
    let path = dir.join("stats.db");
    let stats = Arc::new(Stats::default());
    let store = Store::open(&path).unwrap();
    let writer = store::spawn_writer(store, Arc::clone(&stats));
    let reader = rusqlite::Connection::open_with_flags(&path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
    let v0 = data_version(&reader);

    let writes = Writes::watch(&path);
    traffic(&stats, "a:1", &[200]);
    let start = Instant::now();
    while !store::print_table(&path, true).unwrap().contains("\"requests\":1") {
        assert!(writes.wait(Duration::from_secs(5).saturating_sub(start.elapsed())), "no save within 5 s");
    }
    let saved_at = start.elapsed();
    assert!(saved_at <= Duration::from_millis(1500), "saved after {saved_at:?}");
    let v1 = data_version(&reader);
    assert_ne!(v0, v1);

    // Nothing changed since that save: stopping makes no commit (the periodic save goes
    // through the same check, and an unchanged balancer never wakes the writer at all).
    writer.stop().unwrap();
    assert_eq!(data_version(&reader), v1, "the writer saved an unchanged snapshot");

    // A change is saved at stop.
    let writer = store::spawn_writer(Store::open(&path).unwrap(), Arc::clone(&stats));
    traffic(&stats, "a:1", &[500]);
    writer.stop().unwrap();
    assert_ne!(data_version(&reader), v1);
    assert!(store::print_table(&path, true).unwrap().contains("\"requests\":2"));
}

#[test]
fn a_text_file_is_refused_and_left_untouched() {
    let dir = temp_dir("text");
    let path = dir.join("notes.db");
    let text = b"these are my notes, not a database\n".repeat(100);
    std::fs::write(&path, &text).unwrap();
    let e = Store::open(&path).unwrap_err();
    println!("{e}");
    assert!(matches!(e, StoreError::NotADatabase { .. }), "{e}");
    let msg = e.to_string();
    assert!(msg.contains(&path.display().to_string()) && msg.contains("not a valid SQLite database"), "{msg}");
    assert_eq!(std::fs::read(&path).unwrap(), text);
    assert!(!dir.join("notes.db-journal").exists());
    assert!(matches!(store::print_table(&path, false), Err(StoreError::NotADatabase { .. })));
}

#[test]
fn a_damaged_database_is_refused_and_left_untouched() {
    let dir = temp_dir("damaged");
    let path = dir.join("stats.db");
    {
        let mut s = Store::open(&path).unwrap();
        s.save(&[("a:1".to_string(), totals(3, 0))]).unwrap();
    }
    // Keep the header, scribble over the rest of the first page and the table's page.
    let mut bytes = std::fs::read(&path).unwrap();
    for b in bytes.iter_mut().skip(16) {
        *b = 0xAB;
    }
    std::fs::write(&path, &bytes).unwrap();
    let e = Store::open(&path).unwrap_err();
    println!("{e}");
    assert!(e.to_string().contains(&path.display().to_string()), "{e}");
    assert!(matches!(e, StoreError::NotADatabase { .. } | StoreError::Sqlite { .. }), "{e}");
    assert_eq!(std::fs::read(&path).unwrap(), bytes);
}

/// A child process that holds a lock until its stdin closes; it prints one line once it holds it.
struct Holder(Child);

impl Holder {
    fn spawn(cmd: &mut Command) -> Holder {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
        let mut line = String::new();
        let stdout = child.stdout.take().expect("piped stdout");
        // Blocks until the child says it holds the lock, or exits (EOF).
        BufReader::new(stdout).read_line(&mut line).unwrap();
        if line.trim() != "locked" {
            let out = child.wait_with_output().unwrap();
            panic!("{cmd:?} did not take the lock: {:?} {}", out.status, String::from_utf8_lossy(&out.stderr));
        }
        Holder(child)
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        // Closing stdin lets it exit; then reap it.
        drop(self.0.stdin.take());
        let status = self.0.wait();
        assert!(status.is_ok(), "reaping the lock holder: {status:?}");
    }
}

fn create(path: &Path) -> Vec<u8> {
    {
        let mut s = Store::open(path).unwrap();
        s.save(&[("a:1".to_string(), totals(3, 0))]).unwrap();
    }
    std::fs::read(path).unwrap()
}

#[test]
fn a_database_another_balancer_holds_is_refused() {
    let dir = temp_dir("flock");
    let path = dir.join("stats.db");
    let before = create(&path);
    // Another balancer is what holds FILE.lock: util-linux flock(1) stands in for it.
    let lock = format!("{}.lock", path.display());
    let _holder = Holder::spawn(Command::new("flock").args(["-n", &lock, "sh", "-c", "echo locked; exec cat"]));
    let e = Store::open(&path).unwrap_err();
    println!("{e}");
    assert!(matches!(e, StoreError::Locked { .. }), "{e}");
    assert!(e.to_string().contains("in use: another balancer holds"), "{e}");
    assert!(e.to_string().contains(&path.display().to_string()), "{e}");
    assert_eq!(std::fs::read(&path).unwrap(), before);
    // Reading the table still works while it is held.
    assert!(store::print_table(&path, false).unwrap().contains("a:1"));
}

#[test]
fn a_database_another_program_locks_in_sqlite_is_refused() {
    let dir = temp_dir("sqlite-lock");
    let path = dir.join("stats.db");
    let before = create(&path);
    let script = "import sqlite3, sys\n\
                  c = sqlite3.connect(sys.argv[1], isolation_level=None)\n\
                  c.execute('BEGIN EXCLUSIVE')\n\
                  print('locked', flush=True)\n\
                  sys.stdin.read()\n";
    if Command::new("python3").arg("-V").output().is_err() {
        panic!("this test needs python3 (Debian package python3) to hold an SQLite lock from another process");
    }
    let holder = Holder::spawn(Command::new("python3").args(["-c", script]).arg(&path));
    let started = Instant::now();
    let e = Store::open(&path).unwrap_err();
    println!("{e}");
    assert!(started.elapsed() < Duration::from_secs(3), "open waited {:?}", started.elapsed());
    assert!(matches!(e, StoreError::Locked { .. }), "{e}");
    assert!(e.to_string().contains(&path.display().to_string()), "{e}");
    drop(holder);
    assert_eq!(std::fs::read(&path).unwrap(), before);
    // Once released, it opens.
    Store::open(&path).unwrap();
}

#[test]
fn print_table_shows_the_stored_rows() {
    let dir = temp_dir("print");
    let path = dir.join("stats.db");
    {
        let mut s = Store::open(&path).unwrap();
        s.save(&[("127.0.0.1:9001".to_string(), totals(10, 1)), ("127.0.0.1:9002".to_string(), totals(4, 4))]).unwrap();
    }
    let table = store::print_table(&path, false).unwrap();
    let lines: Vec<&str> = table.lines().collect();
    let header: Vec<&str> = lines[0].split_whitespace().collect();
    assert_eq!(header, ["server", "requests", "successes", "failures", "bytes_in", "bytes_out", "avg_ms"]);
    let row: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(row, ["127.0.0.1:9001", "10", "9", "1", "1230", "45670", "4.00"]);
    assert_eq!(lines.len(), 3);

    let v: serde_json::Value = serde_json::from_str(&store::print_table(&path, true).unwrap()).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 2);
    assert_eq!(v[1]["server"], "127.0.0.1:9002");
    assert_eq!(v[1]["failures"], 4);
    assert_eq!(v[1]["avg_ms"], 4.0);

    // A missing file is an error naming it, and is not created.
    let missing = dir.join("missing.db");
    let e = store::print_table(&missing, false).unwrap_err();
    assert!(e.to_string().contains("missing.db"), "{e}");
    assert!(!missing.exists());
}

#[test]
fn store_errors_are_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<StoreError>();
    fn assert_send<T: Send>() {}
    assert_send::<Store>();
}
