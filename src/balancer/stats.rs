//! The stats sink: per-server counters kept by the bridges, and the `View` types that show the
//! live state to the admin endpoint, the metrics and the store.
//!
//! Counters are atomics in one `ServerStats` per server address, shared by `Arc`: a bridge adds
//! its `Exchange` when it ends, without taking any lock, so statistics never slow the data path.
//! Totals survive restarts: the store loads the saved totals as a base at start
//! (`ServerStats::add`) and snapshots `totals()` at most once a second (see `store`).
//! The `View` is a plain copy taken under the dispatcher lock (see `sched::Dispatcher::view`),
//! rendered after the lock is released.

use parking_lot::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::AcqRel, Ordering::Relaxed};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// Upper bounds of the response-time histogram buckets, in seconds; a last bucket is +Inf.
pub const BUCKETS: [f64; 13] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];
pub const NBUCKETS: usize = BUCKETS.len() + 1;

/// What one bridged connection did, reported once when its bridge ends.
#[derive(Clone, Debug, Default)]
pub struct Exchange {
    /// Status code of the server's reply, from its first line (`HTTP/1.x NNN`), if one was seen.
    pub status: Option<u16>,
    pub bytes_to_server: u64,
    pub bytes_to_client: u64,
    /// From dispatch to the end of the server's reply (its EOF, or the bridge's end).
    pub response_time: Duration,
}

impl Exchange {
    /// A 1xx-3xx reply is a success; a 4xx/5xx reply, or no reply at all, is a failure.
    pub fn succeeded(&self) -> bool {
        matches!(self.status, Some(s) if s < 400)
    }
}

/// Plain totals of one server, as saved and shown.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServerTotals {
    pub requests: u64,
    pub successes: u64,
    pub failures: u64,
    pub bytes_to_server: u64,
    pub bytes_to_client: u64,
    /// Count per bucket (not cumulative), the last one +Inf.
    pub buckets: [u64; NBUCKETS],
    pub time_sum_us: u64,
}

impl ServerTotals {
    /// Mean response time in milliseconds, 0 with no requests.
    pub fn avg_ms(&self) -> f64 {
        if self.requests == 0 { 0.0 } else { self.time_sum_us as f64 / 1000.0 / self.requests as f64 }
    }
}

/// Tells a waiting reader (the store's writer) that some counter moved, without a lock on the
/// data path: a bridge pays one atomic swap, and the hook runs only on the first change after
/// the reader last looked.
#[derive(Default)]
pub struct Changes {
    dirty: AtomicBool,
    hook: OnceLock<Box<dyn Fn() + Send + Sync>>,
}

impl std::fmt::Debug for Changes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Changes").field("dirty", &self.dirty).finish_non_exhaustive()
    }
}

impl Changes {
    fn mark(&self) {
        if !self.dirty.swap(true, AcqRel)
            && let Some(hook) = self.hook.get()
        {
            hook();
        }
    }

    /// Clears the mark before a reader takes its snapshot; a change after this marks again.
    pub fn take(&self) -> bool {
        self.dirty.swap(false, AcqRel)
    }

    /// Sets the function called on the first change after each `take`. The first call wins.
    pub fn on_change(&self, hook: Box<dyn Fn() + Send + Sync>) {
        // A second reader would be a wiring bug; the first keeps working.
        let _ = self.hook.set(hook);
    }
}

/// Live counters of one server. Only ever added to.
#[derive(Debug)]
pub struct ServerStats {
    pub name: String,
    changes: Arc<Changes>,
    requests: AtomicU64,
    successes: AtomicU64,
    failures: AtomicU64,
    bytes_to_server: AtomicU64,
    bytes_to_client: AtomicU64,
    buckets: [AtomicU64; NBUCKETS],
    time_sum_us: AtomicU64,
}

impl ServerStats {
    fn new(name: &str, changes: Arc<Changes>) -> ServerStats {
        ServerStats {
            name: name.to_string(),
            changes,
            requests: AtomicU64::new(0),
            successes: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            bytes_to_server: AtomicU64::new(0),
            bytes_to_client: AtomicU64::new(0),
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            time_sum_us: AtomicU64::new(0),
        }
    }

    pub fn record(&self, x: &Exchange) {
        let ok = x.succeeded();
        let secs = x.response_time.as_secs_f64();
        let bucket = BUCKETS.iter().position(|b| secs <= *b).unwrap_or(BUCKETS.len());
        self.add(&ServerTotals {
            requests: 1,
            successes: u64::from(ok),
            failures: u64::from(!ok),
            bytes_to_server: x.bytes_to_server,
            bytes_to_client: x.bytes_to_client,
            buckets: std::array::from_fn(|i| u64::from(i == bucket)),
            time_sum_us: x.response_time.as_micros() as u64,
        });
    }

    /// Adds totals (a finished exchange, or the base loaded from the store).
    pub fn add(&self, t: &ServerTotals) {
        self.requests.fetch_add(t.requests, Relaxed);
        self.successes.fetch_add(t.successes, Relaxed);
        self.failures.fetch_add(t.failures, Relaxed);
        self.bytes_to_server.fetch_add(t.bytes_to_server, Relaxed);
        self.bytes_to_client.fetch_add(t.bytes_to_client, Relaxed);
        for (b, n) in self.buckets.iter().zip(t.buckets) {
            if n > 0 {
                b.fetch_add(n, Relaxed);
            }
        }
        self.time_sum_us.fetch_add(t.time_sum_us, Relaxed);
        self.changes.mark();
    }

    pub fn totals(&self) -> ServerTotals {
        ServerTotals {
            requests: self.requests.load(Relaxed),
            successes: self.successes.load(Relaxed),
            failures: self.failures.load(Relaxed),
            bytes_to_server: self.bytes_to_server.load(Relaxed),
            bytes_to_client: self.bytes_to_client.load(Relaxed),
            buckets: std::array::from_fn(|i| self.buckets[i].load(Relaxed)),
            time_sum_us: self.time_sum_us.load(Relaxed),
        }
    }
}

/// All servers' counters by name (the server's address), in first-seen order. A server removed
/// by a reload keeps its counters, so its history is still saved and shown.
#[derive(Debug, Default)]
pub struct Stats {
    servers: Mutex<Vec<Arc<ServerStats>>>,
    pub changes: Arc<Changes>,
}

impl Stats {
    /// The counters of `name`, created empty on first use. Takes the stats lock briefly.
    pub fn server(&self, name: &str) -> Arc<ServerStats> {
        let mut all = self.servers.lock();
        if let Some(s) = all.iter().find(|s| s.name == name) {
            return Arc::clone(s);
        }
        let s = Arc::new(ServerStats::new(name, Arc::clone(&self.changes)));
        all.push(Arc::clone(&s));
        s
    }

    /// Every server's totals, in first-seen order.
    pub fn snapshot(&self) -> Vec<(String, ServerTotals)> {
        let all: Vec<Arc<ServerStats>> = self.servers.lock().clone();
        all.iter().map(|s| (s.name.clone(), s.totals())).collect()
    }
}

/// A copy of the live state, for `/status`, `/metrics`, `/worker/stats` and the dashboard.
#[derive(Clone, Debug, Default)]
pub struct View {
    pub limit: usize,
    pub in_flight: usize,
    pub queued: usize,
    pub queue_max: usize,
    /// Connections per second, `None` when pacing is off.
    pub rate: Option<f64>,
    pub burst: u32,
    pub balance: &'static str,
    /// Connections dispatched to a slot since start.
    pub served: u64,
    /// Connections answered 503 (queue full or queue timeout) since start.
    pub rejected: u64,
    /// Clients that gave up while they waited (their request never reached a server).
    pub abandoned: u64,
    /// `tcp` or `http`.
    pub mode: &'static str,
    pub uptime: Duration,
    pub servers: Vec<ServerView>,
    pub classes: Vec<ClassView>,
}

#[derive(Clone, Debug, Default)]
pub struct ServerView {
    pub address: String,
    /// What the fleet calls it (`worker-1`...: a backend the balancer spawned), `None` for a
    /// server given by address.
    pub name: Option<String>,
    pub up: bool,
    /// Why it is down (or the last probe's failure), empty when up.
    pub reason: String,
    pub entries: u64,
    pub errors: u64,
    pub in_flight: usize,
    /// The highest `in_flight` seen since start.
    pub max_in_flight: usize,
    /// `--max-per-server`, if any.
    pub bound: Option<usize>,
    /// Seconds since the last probe answered or failed, `None` before the first.
    pub last_probe_ago: Option<f64>,
    /// Removed by a reload; still shown while its bridges finish.
    pub retiring: bool,
    pub totals: ServerTotals,
}

#[derive(Clone, Debug, Default)]
pub struct ClassView {
    pub key: String,
    pub weight: u32,
    pub in_flight: usize,
    pub queued: usize,
    pub served: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exchanges_add_up() {
        let stats = Stats::default();
        let s = stats.server("127.0.0.1:1");
        s.record(&Exchange {
            status: Some(200),
            bytes_to_server: 10,
            bytes_to_client: 20,
            response_time: Duration::from_millis(3),
        });
        s.record(&Exchange { status: Some(500), response_time: Duration::from_secs(20), ..Exchange::default() });
        s.record(&Exchange::default());
        let t = stats.server("127.0.0.1:1").totals();
        assert_eq!((t.requests, t.successes, t.failures), (3, 1, 2));
        assert_eq!((t.bytes_to_server, t.bytes_to_client), (10, 20));
        assert_eq!(t.buckets[2], 1); // 3 ms is in the 5 ms bucket
        assert_eq!(t.buckets[NBUCKETS - 1], 1); // 20 s is past the last bound
        assert_eq!(t.buckets[0], 1);
        assert_eq!(stats.snapshot().len(), 1);
    }
}
