//! Our own shortage of descriptors: never a server's fault. See: issue 11 (defect 5).
//!
//! When `socket()`, `connect()`, `accept()` or `pipe()` fails with EMFILE, ENFILE, ENOBUFS
//! or ENOMEM, the process (or the kernel) is out of room, and that says nothing about the
//! server we were about to reach. So:
//!
//! - a worker keeps its client, its slot and its reserved server, waits for a descriptor to
//!   be freed and tries again; a client that has waited its queue timeout gets the 503, as
//!   in the waiting room. The server is never marked down for it;
//! - a probe that cannot get a socket reports `ProbeResult::Internal`: the server keeps its
//!   state;
//! - the accepting thread stops polling the listeners (clients wait in the kernel's backlog)
//!   until a descriptor is freed, or a short deadline passes, and takes none while a worker
//!   waits for one, so freed descriptors go to connections to servers first;
//! - the log says when an episode starts and when it ends, not once per try.
//!
//! An *episode* runs from the first refusal (or pause) until nobody waits for a descriptor
//! and accepting has resumed. Its state is one small struct behind its own mutex, never taken
//! with the dispatcher's; outside an episode `freed` and `relieved` cost one atomic load, so
//! the data path pays nothing for this.

use crate::common::sys::Waker;
use parking_lot::{Condvar, Mutex};
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// How long a waiter sleeps at most before trying again: descriptors freed by threads that do
/// not report it (the admin endpoint, the stats writer, a probe round) are found this way.
pub const RETRY: Duration = Duration::from_millis(250);

/// True for the errors that mean we are out of room, not that the peer failed.
pub fn is_ours(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM))
}

#[derive(Debug)]
pub struct Shortage {
    /// An episode is on. Only set and cleared under `state`; read without it on the fast path.
    active: AtomicBool,
    state: Mutex<Episode>,
    /// Notified (all) when a descriptor is freed during an episode.
    freed: Condvar,
    /// Wakes the accepting thread's `poll`, so that a paused accept can resume.
    waker: Arc<Waker>,
}

#[derive(Debug, Default)]
struct Episode {
    /// When the episode started; `None`: no episode.
    since: Option<Instant>,
    /// Workers waiting for a descriptor now; while any does, accepting stays paused.
    waiting: usize,
    /// The accepting thread has stopped polling its listeners.
    accept_paused: bool,
    /// Descriptors reported freed in this episode; waiters wait for it to move.
    freed: u64,
    /// Operations refused for want of room in this episode.
    refused: u64,
}

impl Shortage {
    pub fn new(waker: Arc<Waker>) -> Shortage {
        Shortage { active: AtomicBool::new(false), state: Mutex::new(Episode::default()), freed: Condvar::new(), waker }
    }

    /// `what` (e.g. "connect to 127.0.0.1:8080") failed with our own shortage `e`. Logs the
    /// start of an episode; later refusals in the same episode are only counted.
    pub fn refused(&self, what: &str, e: &dyn std::fmt::Display) {
        let mut ep = self.state.lock();
        ep.refused += 1;
        let first = self.start(&mut ep);
        drop(ep);
        if first {
            crate::error!(
                "internal: out of descriptors ({what}: {e}); no server is blamed: clients wait for one to be freed"
            );
        }
    }

    /// A worker, refused, waits until a descriptor is freed (or `RETRY` passes), to try again.
    /// False once `give_up` has passed: the caller answers its client with the 503.
    pub fn wait(&self, give_up: Instant) -> bool {
        let mut ep = self.state.lock();
        self.start(&mut ep);
        ep.waiting += 1;
        let seen = ep.freed;
        let until = give_up.min(Instant::now() + RETRY);
        while ep.freed == seen && Instant::now() < until {
            self.freed.wait_until(&mut ep, until);
        }
        ep.waiting -= 1;
        drop(ep);
        Instant::now() < give_up
    }

    /// One or more descriptors were just closed. Wakes the waiting workers first; with none
    /// waiting, a paused accept.
    pub fn freed(&self) {
        if !self.active.load(Ordering::Acquire) {
            return;
        }
        let mut ep = self.state.lock();
        ep.freed += 1;
        let wake_acceptor = ep.accept_paused && ep.waiting == 0;
        drop(ep);
        self.freed.notify_all();
        if wake_acceptor {
            self.waker.wake();
        }
    }

    /// An operation that needed a descriptor succeeded (a worker's retry, a probe round):
    /// ends the episode if nobody waits any more and accepting runs; else lets a paused
    /// accept go on once no worker waits.
    pub fn relieved(&self) {
        if !self.active.load(Ordering::Acquire) {
            return;
        }
        let mut ep = self.state.lock();
        let wake_acceptor = ep.accept_paused && ep.waiting == 0;
        let ended = self.end(&mut ep);
        drop(ep);
        if wake_acceptor {
            self.waker.wake();
        }
        self.log_end(ended);
    }

    /// The accepting thread stops polling its listeners (`why` says what it ran into).
    pub fn pause_accept(&self, why: &str) {
        let mut ep = self.state.lock();
        ep.accept_paused = true;
        let first = self.start(&mut ep);
        drop(ep);
        if first {
            crate::error!("internal: {why}; accepting paused until a descriptor is freed; no server is blamed");
        }
    }

    /// The accepting thread took what waited without running out again.
    pub fn resume_accept(&self) {
        let mut ep = self.state.lock();
        ep.accept_paused = false;
        let ended = self.end(&mut ep);
        drop(ep);
        self.log_end(ended);
    }

    /// A worker waits for a descriptor: the accepting thread leaves freed ones to it.
    pub fn workers_waiting(&self) -> bool {
        self.active.load(Ordering::Acquire) && self.state.lock().waiting > 0
    }

    /// Starts an episode if none is on; true if this call started it.
    fn start(&self, ep: &mut Episode) -> bool {
        if ep.since.is_some() {
            return false;
        }
        ep.since = Some(Instant::now());
        ep.freed = 0;
        self.active.store(true, Ordering::Release);
        true
    }

    /// Ends the episode if nobody waits and accepting runs: its length and refusals.
    fn end(&self, ep: &mut Episode) -> Option<(Duration, u64)> {
        if ep.waiting > 0 || ep.accept_paused {
            return None;
        }
        let since = ep.since.take()?;
        self.active.store(false, Ordering::Release);
        Some((since.elapsed(), std::mem::take(&mut ep.refused)))
    }

    fn log_end(&self, ended: Option<(Duration, u64)>) {
        if let Some((took, refused)) = ended {
            crate::info!(
                "internal: descriptors available again after {:.1}s ({refused} operations waited)",
                took.as_secs_f64()
            );
        }
    }
}
