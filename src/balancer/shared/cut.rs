//! The bridges in flight, so that a cut-off instance can end them itself when its grace is
//! over (`cut_all`), and the dead man's switch that does it on time.
//!
//! A worker registers a duplicate (`try_clone`) of its server socket for the life of a
//! bridge, through the guard `hold` returns; `shutdown(Both)` on the duplicate ends the
//! bridge's `poll` at once on both directions. The guard drops (and the duplicate closes)
//! before the worker closes its own socket and releases the slot, so a released slot still
//! means a closed server socket.
//!
//! The switch: `arm(deadline)` after every successful renewal moves the cut to that lease's
//! grace end; if no renewal moves it further, the thread running `run_switch` cuts every
//! bridge then. It does not depend on the lease thread, which may be blocked in a Redis call.
//!
//! Locking: `conns` (the registry) and `switch` (the deadline) are two mutexes, never held
//! together; the cut takes `conns` only to shut sockets down (no blocking call).

use parking_lot::{Condvar, Mutex};
use std::collections::HashMap;
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

#[derive(Debug, Default)]
pub struct Registry {
    /// Off unless a shared limit is configured: then `hold` costs nothing.
    enabled: AtomicBool,
    next: AtomicU64,
    /// Cuts made so far: a worker that sees it move knows its failure was ours, not the
    /// server's (and must not retry the request).
    cuts: AtomicU64,
    conns: Mutex<HashMap<u64, TcpStream>>,
    switch: Mutex<Switch>,
    wake: Condvar,
}

#[derive(Debug, Default)]
struct Switch {
    deadline: Option<Instant>,
    stop: bool,
}

/// Keeps a bridge's server socket in the registry until dropped.
#[must_use]
pub struct Hold<'a> {
    registry: &'a Registry,
    key: Option<u64>,
}

impl Drop for Hold<'_> {
    fn drop(&mut self) {
        if let Some(k) = self.key {
            let dup = self.registry.conns.lock().remove(&k);
            drop(dup); // closes the duplicate, outside the lock
        }
    }
}

impl Registry {
    pub fn enable(&self) {
        self.enabled.store(true, Ordering::Relaxed);
    }

    /// Registers `server` for as long as the guard lives. If the duplicate cannot be made
    /// (out of descriptors), the bridge runs unregistered and a cut misses it: logged.
    pub fn hold(&self, server: &TcpStream) -> Hold<'_> {
        if !self.enabled.load(Ordering::Relaxed) {
            return Hold { registry: self, key: None };
        }
        match server.try_clone() {
            Ok(dup) => {
                let k = self.next.fetch_add(1, Ordering::Relaxed);
                self.conns.lock().insert(k, dup);
                Hold { registry: self, key: Some(k) }
            }
            Err(e) => {
                crate::error!("internal: shared: cannot register a bridge for cutting: {e}; a cut will miss it");
                Hold { registry: self, key: None }
            }
        }
    }

    /// Shuts down every registered server socket; their bridges end at once. Returns how many.
    pub fn cut_all(&self) -> usize {
        self.cuts.fetch_add(1, Ordering::SeqCst);
        let conns = self.conns.lock();
        for s in conns.values() {
            // An error means the socket is already shut or reset: it is ending anyway.
            let _ = s.shutdown(Shutdown::Both);
        }
        conns.len()
    }

    /// How many cuts have happened (see `cuts`).
    pub fn cuts(&self) -> u64 {
        self.cuts.load(Ordering::SeqCst)
    }

    /// The cut happens at `deadline` unless re-armed before; `None` disarms.
    pub fn arm(&self, deadline: Option<Instant>) {
        self.switch.lock().deadline = deadline;
        self.wake.notify_all();
    }

    pub fn stop_switch(&self) {
        self.switch.lock().stop = true;
        self.wake.notify_all();
    }

    /// The switch's thread: sleeps until the armed deadline, cuts, disarms. Returns on stop.
    pub fn run_switch(&self) {
        let mut sw = self.switch.lock();
        loop {
            if sw.stop {
                return;
            }
            match sw.deadline {
                Some(d) if Instant::now() >= d => {
                    sw.deadline = None;
                    drop(sw);
                    let n = self.cut_all();
                    crate::warn!("shared: grace over without a renewed lease: cut {n} bridge(s) still running");
                    sw = self.switch.lock();
                }
                Some(d) => {
                    self.wake.wait_until(&mut sw, d);
                }
                None => self.wake.wait(&mut sw),
            }
        }
    }
}
