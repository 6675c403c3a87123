//! Durable per-server stats: the `stats-file` SQLite file, its writer thread, and
//! `loadbalancer stats FILE [--json]`.
//!
//! ## The file
//! One table, `server_totals`, one row per server address with every field of
//! `stats::ServerTotals` (the histogram as a comma-separated text column, one count per bucket
//! of `stats::BUCKETS` plus +Inf). Rows hold absolute totals: the balancer adds the loaded rows
//! to its live counters at start (`Store::restore`), so each save writes "everything so far"
//! and a save is idempotent. `PRAGMA application_id` marks the file as ours.
//!
//! ## Refusing a file without touching it
//! `Store::open` reads before it writes: a file whose first 16 bytes are not the SQLite header,
//! that fails `PRAGMA quick_check`, or that is some other program's database (tables, but not
//! our application id) is refused with an error naming it, and its bytes stay as they were.
//!
//! ## Locking
//! One balancer per file, for the life of the process: `open` takes a non-blocking `flock` on a
//! side file `FILE.lock` and keeps it until the `Store` is dropped (the kernel drops it if we
//! die, even by SIGKILL). A side file rather than SQLite's own `locking_mode=EXCLUSIVE` so that
//! `loadbalancer stats FILE` can still read the table while the balancer runs. `open` then
//! starts an IMMEDIATE transaction, so a file another program holds in SQLite (a reserved or
//! exclusive lock) is refused too, before anything is written. The side file is left in place
//! at exit: deleting a lock file races with the next opener.
//!
//! ## The writer thread and the bridges
//! Bridges only add to atomics (`stats::ServerStats`); they never wait for this module. One
//! writer thread (`spawn_writer`) owns the `Store`: it sleeps until a counter moves
//! (`stats::Changes`: the first change after each save wakes it; an idle balancer never does),
//! waits until one second after its last save (a condvar deadline, recomputed on every wakeup), takes
//! `Stats::snapshot()` (which holds the stats lock only to clone the list of `Arc`s), and saves
//! in one transaction only when the snapshot differs from the last one saved. So a kill -9
//! loses at most the last second. `StoreWriter::stop` wakes it for a final save and joins it.

use crate::balancer::stats::{NBUCKETS, ServerTotals, Stats};
use nix::fcntl::{Flock, FlockArg};
use parking_lot::{Condvar, Mutex};
use rusqlite::{Connection, ErrorCode, OpenFlags, TransactionBehavior, params};
use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The first 16 bytes of every SQLite 3 database file.
const SQLITE_HEADER: &[u8; 16] = b"SQLite format 3\0";
/// `PRAGMA application_id` of our files: "LBst".
const APPLICATION_ID: i32 = 0x4c42_7374;
/// The file used inside a directory given as `stats-file` (or its old name `stats-dir`).
pub const DEFAULT_FILE_NAME: &str = "loadbalancer-stats.db";
/// How often the writer looks for changes, and so the most a kill -9 can lose.
pub const SAVE_PERIOD: Duration = Duration::from_secs(1);

/// Why the stats file could not be used. Each message names the file.
#[derive(Debug)]
pub enum StoreError {
    /// The file, or its lock file, could not be opened or read.
    Io { path: PathBuf, what: &'static str, source: io::Error },
    /// Not an SQLite database, or a damaged one. Nothing was written.
    NotADatabase { path: PathBuf, detail: String },
    /// A valid SQLite database, but another program's. Nothing was written.
    Foreign { path: PathBuf },
    /// Another balancer (or another program) holds the file. Nothing was written.
    Locked { path: PathBuf, detail: String },
    /// An SQLite call failed while reading or writing our table.
    Sqlite { path: PathBuf, what: &'static str, source: rusqlite::Error },
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::Io { path, what, source } => {
                write!(f, "stats file {}: cannot {what}: {source}", path.display())
            }
            StoreError::NotADatabase { path, detail } => {
                write!(f, "stats file {}: not a valid SQLite database ({detail}); left untouched", path.display())
            }
            StoreError::Foreign { path } => write!(
                f,
                "stats file {}: an SQLite database of another program (no loadbalancer table); left untouched",
                path.display()
            ),
            StoreError::Locked { path, detail } => {
                write!(f, "stats file {}: in use: {detail}; left untouched", path.display())
            }
            StoreError::Sqlite { path, what, source } => {
                write!(f, "stats file {}: cannot {what}: {source}", path.display())
            }
        }
    }
}

impl std::error::Error for StoreError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StoreError::Io { source, .. } => Some(source),
            StoreError::Sqlite { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// The database path for a `stats-file` value: the path itself, or `DEFAULT_FILE_NAME` inside it
/// when it is an existing directory.
pub fn db_path(path: &Path) -> PathBuf {
    if path.is_dir() { path.join(DEFAULT_FILE_NAME) } else { path.to_path_buf() }
}

/// An open stats file, held exclusively by this process until dropped.
pub struct Store {
    path: PathBuf,
    conn: Connection,
    /// The `FILE.lock` flock; released when dropped (after `conn`, by field order).
    _lock: Flock<File>,
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store").field("path", &self.path).finish_non_exhaustive()
    }
}

impl Store {
    /// Opens or creates the stats file at `path` (a directory gets `DEFAULT_FILE_NAME` inside).
    /// Refuses, without writing to it, a file that is not an SQLite database, is damaged, is
    /// another program's database, or is held by another balancer. Keeps an exclusive lock on
    /// `FILE.lock` until the `Store` is dropped.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let path = db_path(path);
        check_header(&path)?;
        let lock = take_lock(&path)?;
        let sqlite_err = |what| {
            let path = path.clone();
            move |source| sqlite_error(&path, what, source)
        };
        let conn = Connection::open_with_flags(
            &path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(sqlite_err("open"))?;
        // Short: `stats FILE` readers hold a shared lock for milliseconds; anything longer is
        // another writer, which we refuse rather than wait for.
        conn.busy_timeout(Duration::from_millis(200)).map_err(sqlite_err("set the busy timeout"))?;
        // Read-only checks first: nothing is written to a file we refuse.
        let check: String =
            conn.query_row("PRAGMA quick_check", [], |r| r.get(0)).map_err(sqlite_err("check the database"))?;
        if check != "ok" {
            return Err(StoreError::NotADatabase { path, detail: format!("quick_check: {check}") });
        }
        let app_id: i32 =
            conn.query_row("PRAGMA application_id", [], |r| r.get(0)).map_err(sqlite_err("read the application id"))?;
        let tables: i64 = conn
            .query_row("SELECT count(*) FROM sqlite_master WHERE type = 'table'", [], |r| r.get(0))
            .map_err(sqlite_err("list the tables"))?;
        if app_id != APPLICATION_ID && (app_id != 0 || tables > 0) {
            return Err(StoreError::Foreign { path });
        }
        let mut store = Store { path, conn, _lock: lock };
        store.init_schema()?;
        Ok(store)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Creates the table in a new file. The IMMEDIATE transaction also refuses a file that
    /// another program holds in SQLite, before any write.
    fn init_schema(&mut self) -> Result<(), StoreError> {
        let path = self.path.clone();
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| sqlite_error(&path, "lock the database", e))?;
        tx.execute_batch(&format!(
            "PRAGMA application_id = {APPLICATION_ID};
             CREATE TABLE IF NOT EXISTS server_totals (
                 server          TEXT PRIMARY KEY NOT NULL,
                 requests        INTEGER NOT NULL,
                 successes       INTEGER NOT NULL,
                 failures        INTEGER NOT NULL,
                 bytes_to_server INTEGER NOT NULL,
                 bytes_to_client INTEGER NOT NULL,
                 time_sum_us     INTEGER NOT NULL,
                 -- counts per bucket of stats::BUCKETS, then +Inf; not cumulative
                 buckets         TEXT NOT NULL,
                 -- unix seconds of the last save that changed this row
                 updated_at      INTEGER NOT NULL
             );"
        ))
        .map_err(|e| sqlite_error(&path, "create the table", e))?;
        tx.commit().map_err(|e| sqlite_error(&path, "create the table", e))
    }

    /// Every saved server's totals, in the order they were first saved.
    pub fn load(&self) -> Result<Vec<(String, ServerTotals)>, StoreError> {
        read_rows(&self.conn, &self.path)
    }

    /// Adds the saved totals to `stats` as their base, so counts continue across restarts.
    /// Returns the number of servers loaded. Call once, before traffic.
    pub fn restore(&self, stats: &Stats) -> Result<usize, StoreError> {
        let rows = self.load()?;
        for (name, totals) in &rows {
            stats.server(name).add(totals);
        }
        Ok(rows.len())
    }

    /// Writes `rows` (absolute totals) in one transaction: all or nothing. Rows of servers not
    /// in `rows` are kept.
    pub fn save(&mut self, rows: &[(String, ServerTotals)]) -> Result<(), StoreError> {
        let path = self.path.clone();
        let err = |what| {
            let path = path.clone();
            move |e| sqlite_error(&path, what, e)
        };
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(err("begin a save"))?;
        {
            let mut upsert = tx
                .prepare_cached(
                    "INSERT INTO server_totals (server, requests, successes, failures, bytes_to_server,
                         bytes_to_client, time_sum_us, buckets, updated_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
                     ON CONFLICT (server) DO UPDATE SET
                         requests = excluded.requests, successes = excluded.successes,
                         failures = excluded.failures, bytes_to_server = excluded.bytes_to_server,
                         bytes_to_client = excluded.bytes_to_client, time_sum_us = excluded.time_sum_us,
                         buckets = excluded.buckets, updated_at = excluded.updated_at
                     WHERE requests != excluded.requests OR bytes_to_server != excluded.bytes_to_server
                         OR bytes_to_client != excluded.bytes_to_client OR buckets != excluded.buckets
                         OR successes != excluded.successes OR failures != excluded.failures",
                )
                .map_err(err("prepare a save"))?;
            for (name, t) in rows {
                let buckets = t.buckets.iter().map(u64::to_string).collect::<Vec<_>>().join(",");
                upsert
                    .execute(params![
                        name,
                        sql_int(t.requests),
                        sql_int(t.successes),
                        sql_int(t.failures),
                        sql_int(t.bytes_to_server),
                        sql_int(t.bytes_to_client),
                        sql_int(t.time_sum_us),
                        buckets,
                        sql_int(now),
                    ])
                    .map_err(err("save a row"))?;
            }
        }
        tx.commit().map_err(err("commit a save"))
    }
}

/// SQLite integers are i64; counters that large do not occur, but never wrap to negative.
fn sql_int(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn sqlite_error(path: &Path, what: &'static str, source: rusqlite::Error) -> StoreError {
    let path = path.to_path_buf();
    match source.sqlite_error_code() {
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => {
            StoreError::Locked { path, detail: "another program holds an SQLite lock on it".into() }
        }
        Some(ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt) => {
            StoreError::NotADatabase { path, detail: source.to_string() }
        }
        _ => StoreError::Sqlite { path, what, source },
    }
}

/// Refuses a non-empty file that does not start with the SQLite header. A missing or empty file
/// is fine: SQLite makes a new database of it.
fn check_header(path: &Path) -> Result<(), StoreError> {
    let mut file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(source) => return Err(StoreError::Io { path: path.to_path_buf(), what: "open it", source }),
    };
    let mut head = Vec::with_capacity(SQLITE_HEADER.len());
    (&mut file).take(SQLITE_HEADER.len() as u64).read_to_end(&mut head).map_err(|source| StoreError::Io {
        path: path.to_path_buf(),
        what: "read it",
        source,
    })?;
    if head.is_empty() || head == SQLITE_HEADER {
        Ok(())
    } else {
        Err(StoreError::NotADatabase {
            path: path.to_path_buf(),
            detail: "it does not start with the SQLite header".into(),
        })
    }
}

/// `FILE.lock`, exclusively, without waiting.
fn take_lock(path: &Path) -> Result<Flock<File>, StoreError> {
    let mut name = path.as_os_str().to_owned();
    name.push(".lock");
    let lock_path = PathBuf::from(name);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&lock_path)
        .map_err(|source| StoreError::Io { path: lock_path.clone(), what: "open the lock file", source })?;
    Flock::lock(file, FlockArg::LockExclusiveNonblock).map_err(|(_, errno)| {
        if errno == nix::errno::Errno::EWOULDBLOCK {
            let detail = format!("another balancer holds {}", lock_path.display());
            StoreError::Locked { path: path.to_path_buf(), detail }
        } else {
            StoreError::Io { path: lock_path.clone(), what: "lock the lock file", source: io::Error::from(errno) }
        }
    })
}

fn read_rows(conn: &Connection, path: &Path) -> Result<Vec<(String, ServerTotals)>, StoreError> {
    let err = |what| move |e| sqlite_error(path, what, e);
    let mut stmt = conn
        .prepare(
            "SELECT server, requests, successes, failures, bytes_to_server, bytes_to_client, time_sum_us, buckets
             FROM server_totals ORDER BY rowid",
        )
        .map_err(err("read the table"))?;
    let rows = stmt
        .query_map([], |r| {
            let n = |i| r.get::<_, i64>(i).map(|v| u64::try_from(v).unwrap_or(0));
            let totals = ServerTotals {
                requests: n(1)?,
                successes: n(2)?,
                failures: n(3)?,
                bytes_to_server: n(4)?,
                bytes_to_client: n(5)?,
                time_sum_us: n(6)?,
                buckets: [0; NBUCKETS],
            };
            Ok((r.get::<_, String>(0)?, totals, r.get::<_, String>(7)?))
        })
        .map_err(err("read the table"))?;
    let mut out = Vec::new();
    for row in rows {
        let (name, mut totals, buckets) = row.map_err(err("read a row"))?;
        let counts: Vec<u64> = buckets.split(',').filter_map(|c| c.trim().parse().ok()).collect();
        if counts.len() != NBUCKETS {
            // Saved with another bucket layout: keep the counters, drop the histogram rather
            // than put counts in the wrong buckets.
            crate::warn!(
                "stats file {}: server {name}: {} histogram buckets saved, {NBUCKETS} expected; histogram reset",
                path.display(),
                counts.len()
            );
        } else {
            totals.buckets.copy_from_slice(&counts);
        }
        out.push((name, totals));
    }
    Ok(out)
}

/// The stored table of `path`, for `loadbalancer stats FILE [--json]`: a fixed-width table, or
/// a JSON array of objects. Opens the file read-only and takes no lock of ours, so it works
/// while a balancer runs; a missing file, a non-database or another program's database is an
/// error.
pub fn print_table(path: &Path, json: bool) -> Result<String, StoreError> {
    let path = db_path(path);
    if let Err(source) = std::fs::metadata(&path) {
        return Err(StoreError::Io { path, what: "open it", source });
    }
    check_header(&path)?;
    let conn = Connection::open_with_flags(&path, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)
        .map_err(|e| sqlite_error(&path, "open", e))?;
    conn.busy_timeout(Duration::from_secs(2)).map_err(|e| sqlite_error(&path, "set the busy timeout", e))?;
    let has_table: i64 = conn
        .query_row("SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'server_totals'", [], |r| {
            r.get(0)
        })
        .map_err(|e| sqlite_error(&path, "list the tables", e))?;
    if has_table == 0 {
        return Err(StoreError::Foreign { path });
    }
    let rows = read_rows(&conn, &path)?;
    Ok(if json { rows_json(&rows) } else { rows_table(&rows) })
}

/// For `loadbalancer --check`: says whether `Store::open` would accept `path`, writing nothing,
/// creating nothing and taking no lock (a balancer running on the file holds it; checking a
/// configuration before a reload must still work). An existing file must be ours (or an
/// empty SQLite database), intact and writable; a missing one needs a writable directory.
/// Returns what was found, for the `ok:` line: `stats in FILE (N servers saved)`.
pub fn check(path: &Path) -> Result<String, StoreError> {
    use nix::unistd::{AccessFlags, access};
    let path = db_path(path);
    let writable = |p: &Path, what: &'static str| {
        access(p, AccessFlags::R_OK | AccessFlags::W_OK).map_err(|e| StoreError::Io {
            path: p.to_path_buf(),
            what,
            source: io::Error::from(e),
        })
    };
    if !path.exists() {
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        writable(dir, "create a file in its directory")?;
        return Ok(format!("stats in {} (new)", path.display()));
    }
    check_header(&path)?;
    writable(&path, "open it for writing")?;
    let err = |what| {
        let path = path.clone();
        move |source| sqlite_error(&path, what, source)
    };
    let conn = Connection::open_with_flags(&path, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)
        .map_err(err("open"))?;
    conn.busy_timeout(Duration::from_secs(2)).map_err(err("set the busy timeout"))?;
    let quick: String = conn.query_row("PRAGMA quick_check", [], |r| r.get(0)).map_err(err("check the database"))?;
    if quick != "ok" {
        return Err(StoreError::NotADatabase { path, detail: format!("quick_check: {quick}") });
    }
    let app_id: i32 =
        conn.query_row("PRAGMA application_id", [], |r| r.get(0)).map_err(err("read the application id"))?;
    let tables: i64 = conn
        .query_row("SELECT count(*) FROM sqlite_master WHERE type = 'table'", [], |r| r.get(0))
        .map_err(err("list the tables"))?;
    if app_id != APPLICATION_ID && (app_id != 0 || tables > 0) {
        return Err(StoreError::Foreign { path });
    }
    let saved = if tables > 0 { read_rows(&conn, &path)?.len() } else { 0 };
    Ok(format!("stats in {} ({saved} servers saved)", path.display()))
}

fn rows_table(rows: &[(String, ServerTotals)]) -> String {
    use std::fmt::Write;
    let width = rows.iter().map(|(n, _)| n.len()).max().unwrap_or(0).max("server".len());
    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = writeln!(
        out,
        "{:<width$}  {:>10}  {:>10}  {:>10}  {:>14}  {:>14}  {:>9}",
        "server", "requests", "successes", "failures", "bytes_in", "bytes_out", "avg_ms"
    );
    for (name, t) in rows {
        let _ = writeln!(
            out,
            "{name:<width$}  {:>10}  {:>10}  {:>10}  {:>14}  {:>14}  {:>9.2}",
            t.requests,
            t.successes,
            t.failures,
            t.bytes_to_server,
            t.bytes_to_client,
            t.avg_ms()
        );
    }
    out
}

/// One stored server in `loadbalancer stats FILE --json`.
#[derive(serde::Serialize)]
struct Row<'a> {
    server: &'a str,
    requests: u64,
    successes: u64,
    failures: u64,
    bytes_to_server: u64,
    bytes_to_client: u64,
    avg_ms: f64,
    time_sum_us: u64,
    /// Count per bucket of `stats::BUCKETS` (not cumulative), the last one +Inf.
    buckets: &'a [u64; NBUCKETS],
}

/// The rows as one JSON array of objects, one line.
fn rows_json(rows: &[(String, ServerTotals)]) -> String {
    let rows: Vec<Row<'_>> = rows
        .iter()
        .map(|(name, t)| Row {
            server: name,
            requests: t.requests,
            successes: t.successes,
            failures: t.failures,
            bytes_to_server: t.bytes_to_server,
            bytes_to_client: t.bytes_to_client,
            avg_ms: crate::common::json::thousandths(t.avg_ms()),
            time_sum_us: t.time_sum_us,
            buckets: &t.buckets,
        })
        .collect();
    crate::common::json::to_string(&rows) + "\n"
}

/// What the writer thread and `StoreWriter` share.
#[derive(Debug)]
struct WriterShared {
    /// Only changed under this lock, so the writer cannot miss a wake-up.
    state: Mutex<WriterState>,
    wake: Condvar,
}

#[derive(Debug, Default)]
struct WriterState {
    /// Set once by `stop`.
    stop: bool,
    /// A counter moved since the writer last looked (set by the `Stats` change hook).
    dirty: bool,
}

/// The writer thread: owns the `Store`, saves snapshots of `stats`.
struct Writer {
    store: Store,
    stats: Arc<Stats>,
    shared: Arc<WriterShared>,
    /// The last snapshot saved (or loaded), to skip saves that would change nothing.
    last: Vec<(String, ServerTotals)>,
    /// Whether the last save failed, to log a failing disk once rather than every second.
    failing: bool,
}

impl Writer {
    /// Sleeps until a counter moves (an idle balancer wakes it never), then saves at most once
    /// per `SAVE_PERIOD`; a final save at `stop`.
    fn run(mut self) -> Result<(), StoreError> {
        let mut earliest = Instant::now();
        loop {
            let stopping = {
                let mut st = self.shared.state.lock();
                while !st.stop && !st.dirty {
                    self.shared.wake.wait(&mut st);
                }
                // Spurious and early wake-ups recompute against the same deadline.
                while !st.stop && Instant::now() < earliest {
                    self.shared.wake.wait_until(&mut st, earliest);
                }
                st.dirty = false;
                st.stop
            };
            // Cleared before the snapshot: a change from here on wakes the writer again.
            self.stats.changes.take();
            // The lock is released: snapshot and write without it.
            let result = self.save_if_changed();
            if stopping {
                return result;
            }
            match result {
                Ok(()) if self.failing => {
                    crate::info!("stats file {}: saving again", self.store.path().display());
                    self.failing = false;
                }
                Ok(()) => {}
                Err(e) if !self.failing => {
                    crate::error!("{e}; will retry at the next change, at most every second");
                    self.failing = true;
                }
                Err(e) => crate::debug!("{e}"),
            }
            if self.failing {
                // Retry even if nothing moves again.
                self.shared.state.lock().dirty = true;
            }
            earliest = Instant::now() + SAVE_PERIOD;
        }
    }

    fn save_if_changed(&mut self) -> Result<(), StoreError> {
        let now = self.stats.snapshot();
        if now == self.last {
            return Ok(());
        }
        self.store.save(&now)?;
        crate::debug!("stats: saved {} servers to {}", now.len(), self.store.path().display());
        self.last = now;
        Ok(())
    }
}

/// Handle to the writer thread. `stop` (or drop) makes a final save and joins it.
#[derive(Debug)]
pub struct StoreWriter {
    shared: Arc<WriterShared>,
    thread: Option<JoinHandle<Result<(), StoreError>>>,
}

/// Starts the writer thread that saves `stats.snapshot()` to `store` at most every
/// `SAVE_PERIOD`, only when something changed. Call after `Store::restore`, so the first
/// snapshot already includes the loaded base.
pub fn spawn_writer(store: Store, stats: Arc<Stats>) -> StoreWriter {
    // Dirty from the start: the restored base marked the counters before this hook existed,
    // and the first look clears that mark so later changes wake the writer.
    let shared =
        Arc::new(WriterShared { state: Mutex::new(WriterState { stop: false, dirty: true }), wake: Condvar::new() });
    let hook_shared = Arc::clone(&shared);
    stats.changes.on_change(Box::new(move || {
        hook_shared.state.lock().dirty = true;
        hook_shared.wake.notify_all();
    }));
    // What the file holds now: no save is needed until a counter moves.
    let last = store.load().unwrap_or_default();
    let writer = Writer { store, stats, shared: Arc::clone(&shared), last, failing: false };
    let thread = std::thread::Builder::new().name("stats-writer".into()).spawn(move || writer.run());
    match thread {
        Ok(t) => StoreWriter { shared, thread: Some(t) },
        Err(e) => {
            // Without a thread there are no periodic saves; the balancer still runs, and says so.
            crate::error!("stats: cannot start the writer thread: {e}; totals will not be saved");
            StoreWriter { shared, thread: None }
        }
    }
}

impl StoreWriter {
    /// Wakes the writer for a final save, waits for it, and returns that save's result.
    pub fn stop(mut self) -> Result<(), StoreError> {
        self.stop_inner()
    }

    fn stop_inner(&mut self) -> Result<(), StoreError> {
        self.shared.state.lock().stop = true;
        self.shared.wake.notify_all();
        let Some(thread) = self.thread.take() else { return Ok(()) };
        match thread.join() {
            Ok(result) => result,
            Err(_) => {
                crate::error!("stats: the writer thread panicked; the last second of totals is not saved");
                Ok(())
            }
        }
    }
}

impl Drop for StoreWriter {
    fn drop(&mut self) {
        if let Err(e) = self.stop_inner() {
            crate::error!("{e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("lb-store-{name}-{}", std::process::id()));
        // A leftover from an earlier run is not ours to keep.
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn totals(requests: u64) -> ServerTotals {
        let mut t = ServerTotals {
            requests,
            successes: requests - 1,
            failures: 1,
            bytes_to_server: 10 * requests,
            bytes_to_client: 100 * requests,
            time_sum_us: 2500 * requests,
            ..ServerTotals::default()
        };
        t.buckets[3] = requests;
        t
    }

    #[test]
    fn a_directory_gets_the_default_file() {
        let dir = temp_dir("dir");
        let store = Store::open(&dir).unwrap();
        assert_eq!(store.path(), dir.join(DEFAULT_FILE_NAME));
    }

    #[test]
    fn an_empty_file_becomes_a_database() {
        let dir = temp_dir("empty");
        let path = dir.join("s.db");
        std::fs::write(&path, b"").unwrap();
        let mut store = Store::open(&path).unwrap();
        store.save(&[("a".into(), totals(3))]).unwrap();
        assert_eq!(store.load().unwrap(), vec![("a".into(), totals(3))]);
    }

    #[test]
    fn another_programs_database_is_refused() {
        let dir = temp_dir("foreign");
        let path = dir.join("other.db");
        {
            let c = Connection::open(&path).unwrap();
            c.execute_batch("CREATE TABLE t (x INTEGER); INSERT INTO t VALUES (1);").unwrap();
        }
        let before = std::fs::read(&path).unwrap();
        let e = Store::open(&path).unwrap_err();
        assert!(matches!(e, StoreError::Foreign { .. }), "{e}");
        assert!(e.to_string().contains("other.db"), "{e}");
        assert_eq!(std::fs::read(&path).unwrap(), before);
        assert!(matches!(print_table(&path, false), Err(StoreError::Foreign { .. })));
    }

    #[test]
    fn a_second_store_in_this_process_is_refused() {
        let dir = temp_dir("twice");
        let path = dir.join("s.db");
        let _first = Store::open(&path).unwrap();
        let e = Store::open(&path).unwrap_err();
        assert!(matches!(e, StoreError::Locked { .. }), "{e}");
        assert!(e.to_string().contains("another balancer holds") && e.to_string().contains("s.db.lock"), "{e}");
    }

    #[test]
    fn odd_bucket_text_keeps_the_counters() {
        let dir = temp_dir("buckets");
        let path = dir.join("s.db");
        let mut store = Store::open(&path).unwrap();
        store.save(&[("a".into(), totals(3))]).unwrap();
        store.conn.execute("UPDATE server_totals SET buckets = '1,2'", []).unwrap();
        let rows = store.load().unwrap();
        assert_eq!(rows[0].1.requests, 3);
        assert_eq!(rows[0].1.buckets, [0; NBUCKETS]);
    }

    #[test]
    fn table_and_json() {
        let rows = vec![("127.0.0.1:9001".to_string(), totals(4)), ("x\"y".to_string(), ServerTotals::default())];
        let table = rows_table(&rows);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[0].starts_with("server        "), "{table}");
        assert!(lines[1].starts_with("127.0.0.1:9001"), "{table}");
        // Fixed width: every line is as long as the header.
        assert!(lines.iter().all(|l| l.len() == lines[0].len()), "{table}");
        assert!(lines[1].ends_with("  2.50"), "{table}");
        let v: serde_json::Value = serde_json::from_str(&rows_json(&rows)).unwrap();
        assert_eq!(v[0]["server"], "127.0.0.1:9001");
        assert_eq!(v[0]["requests"], 4);
        assert_eq!(v[0]["avg_ms"], 2.5);
        assert_eq!(v[1]["server"], "x\"y");
        assert_eq!(v[0]["buckets"].as_array().unwrap().len(), NBUCKETS);
        assert_eq!(rows_json(&[]), "[]\n");
    }
}
