//! The backend's shared counts: entries and errors (what `/healthcheck` reports), requests in
//! flight (what `/inflight` reports) and the per-outcome statistics of `/worker/stats`.
//!
//! Locking: entries, errors and in-flight are independent atomics, each read or changed with one
//! atomic operation, so no lock is needed and a reader sees each value exact but not a joint
//! snapshot (a request counted between two loads is fine for every reader we have). The
//! `/worker/stats` figures must agree with each other (the average is a sum over a count), so
//! they live together under one short `parking_lot::Mutex`: take it, add or copy, release; no
//! I/O or logging happens under it.
//!
//! Which requests count where (see docs/backend.md):
//! - entries: every answered request except `/inflight` and `/worker/stats`; errors: those of
//!   them answered 4xx/5xx. `/healthcheck` reads both first, then counts itself.
//! - in flight: every request except the three observation endpoints, from the parsed request
//!   head until its reply is written.
//! - worker stats: every answered request except the three observation endpoints.

use crate::common::worker_stats::Counts;
use parking_lot::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

#[derive(Debug, Default)]
pub struct Counters {
    entries: AtomicU64,
    errors: AtomicU64,
    /// Requests between head and written reply now; never negative (each `enter` is paired with
    /// exactly one drop of its `InFlight` guard).
    in_flight: AtomicU64,
    /// The largest value `in_flight` has ever held; only raised, with `fetch_max`.
    max_in_flight: AtomicU64,
    /// The counts behind `/worker/stats` (the balancer's admin endpoint writes the same
    /// document); a copy is a consistent snapshot.
    worker: Mutex<Counts>,
}

/// Decrements the in-flight count when dropped, so every exit path (early `?`, panic) does it.
#[derive(Debug)]
pub struct InFlight<'a> {
    counters: &'a Counters,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.counters.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Counters {
    /// Counters starting from the `--errors` and `--entries` presets.
    pub fn new(errors: u64, entries: u64) -> Counters {
        Counters { entries: AtomicU64::new(entries), errors: AtomicU64::new(errors), ..Counters::default() }
    }

    /// `(errors, entries)` now.
    pub fn health(&self) -> (u64, u64) {
        (self.errors.load(Ordering::SeqCst), self.entries.load(Ordering::SeqCst))
    }

    /// Counts one answered request as an entry, and as an error when `status >= 400`.
    pub fn count_entry(&self, status: u16) {
        self.entries.fetch_add(1, Ordering::SeqCst);
        if status >= 400 {
            self.errors.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// Marks one request as in flight until the guard is dropped, raising the maximum.
    pub fn enter(&self) -> InFlight<'_> {
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_in_flight.fetch_max(now, Ordering::SeqCst);
        InFlight { counters: self }
    }

    /// `(current, max)` in flight.
    pub fn in_flight(&self) -> (u64, u64) {
        (self.in_flight.load(Ordering::SeqCst), self.max_in_flight.load(Ordering::SeqCst))
    }

    /// Adds one answered request to the worker statistics. Takes the `worker` lock briefly.
    pub fn count_worker(&self, status: u16, took: Duration) {
        let micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        let mut w = self.worker.lock();
        if status >= 400 {
            w.failed = w.failed.saturating_add(1);
        } else {
            w.successful = w.successful.saturating_add(1);
        }
        w.time_sum_us = w.time_sum_us.saturating_add(micros);
    }

    /// A consistent copy of the worker statistics. Takes the `worker` lock briefly.
    pub fn worker(&self) -> Counts {
        *self.worker.lock()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_flight_guard_counts_and_keeps_the_max() {
        let c = Counters::new(0, 0);
        {
            let _a = c.enter();
            let _b = c.enter();
            assert_eq!(c.in_flight(), (2, 2));
        }
        let _c = c.enter();
        assert_eq!(c.in_flight(), (1, 2));
    }

    #[test]
    fn presets_and_errors() {
        let c = Counters::new(3, 10);
        c.count_entry(200);
        c.count_entry(404);
        c.count_entry(500);
        assert_eq!(c.health(), (5, 13));
    }

    #[test]
    fn worker_average() {
        let c = Counters::new(0, 0);
        assert_eq!(c.worker().average_ms(), 0.0);
        c.count_worker(200, Duration::from_millis(10));
        c.count_worker(500, Duration::from_millis(30));
        let w = c.worker();
        assert_eq!((w.successful, w.failed, w.total()), (1, 1, 2));
        assert!((w.average_ms() - 20.0).abs() < 1e-9);
    }
}
