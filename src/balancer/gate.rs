//! The probe gate and the probe schedule, as pure state: when dispatch waits for a round,
//! which round opens it, and when the probe thread probes servers that are down. No clock of
//! its own, no lock, no I/O: the dispatcher holds a `Gate` and a `Recovery` in its `State`
//! (under its one lock), tells them what happened, and does what they say.
//!
//! # The gate
//!
//! Rounds are numbered in the order they start. The gate is either open, or *held for round
//! n*: dispatch waits until a round numbered n or later has finished.
//!
//! ```text
//!   state                          dispatch   moved on by
//!   held for n, n not started yet  waits      `begin` (someone starts round n; the first
//!                                             client to wait starts it itself)
//!   held for n, n started          waits      `finished(m >= n)`: open
//!                                             (its replies parked, or being read)
//!   open                           goes       `dispatched`, the R-th: held for the next round
//!                                             `reply_started` (round read already): held
//!                                             `servers_added` (reload): held
//! ```
//!
//! - Startup: held for round 0, and a round is wanted (the probe thread starts it).
//! - After R dispatches: the R-th dispatch holds the gate for the next round and starts it
//!   at once (`dispatched` says so); its replies are *parked* here until the next decision
//!   (or the probe thread) takes them out to read them.
//! - `reply_started`: the R-th server has begun its reply, so it has counted that client. If
//!   no client was routed since, the next decision must see that count: a parked round is
//!   handed out to probe that server again (and parked back); a round read already means the
//!   gate is held for a new one.
//! - A reload that adds servers holds the gate for the next round and wants one at once.
//!
//! # Recovery: servers that are down
//!
//! A round that holds the gate probes the servers that are up (or not probed yet): those are
//! what routing reads, and a slow answer from one of them is worth waiting for. A server known
//! to be down never holds the gate; it is probed by the probe thread alone, one recovery round
//! at a time, each time a gating round starts (so under traffic as often as rounds run) and
//! otherwise every `PROBE_PERIOD`. A server that stalls costs its recovery round the 2 s probe
//! timeout, and nobody waits for that round. See: issue 11 (defect 6).

use crate::balancer::config::PROBE_PERIOD;
use std::time::Instant;

/// The gate, the numbering of gating rounds, and the round parked after the R-th dispatch.
/// `R` is the parked round's type (`health::Round`; unit tests use a stand-in).
#[derive(Debug)]
pub struct Gate<R> {
    /// Dispatches since the last count-triggered round; below R.
    since_probe: u64,
    /// Rounds started so far; a round's number is this value when it starts.
    started: u64,
    /// Dispatch waits until round number `held_for` has finished; `None`: open.
    held_for: Option<u64>,
    /// The probe thread should start a round now (startup, new servers after a reload).
    wanted: bool,
    /// A round whose requests are out and whose replies nobody reads yet, with its number.
    parked: Option<(u64, R)>,
    /// When the last gating round ended: the periodic round is due `PROBE_PERIOD` after it.
    last_end: Option<Instant>,
}

/// What `reply_started` asks the dispatcher to do.
#[derive(Debug, PartialEq, Eq)]
pub enum ReplyStarted<R> {
    /// A client was routed since the R-th (or no R-th dispatch is pending): nothing.
    Nothing,
    /// Probe the replying server again on this parked round, then `park` it back.
    Reprobe(u64, R),
    /// The round was read already: the gate is now held for a new round.
    Held,
}

impl<R> Default for Gate<R> {
    fn default() -> Self {
        Gate::new()
    }
}

impl<R> Gate<R> {
    /// At startup: held for round 0, which is wanted at once.
    pub fn new() -> Gate<R> {
        Gate { since_probe: 0, started: 0, held_for: Some(0), wanted: true, parked: None, last_end: None }
    }

    pub fn is_open(&self) -> bool {
        self.held_for.is_none()
    }

    /// The gate is held for a round nobody has started: a client that waits starts it.
    pub fn needs_round(&self) -> bool {
        self.held_for.is_some_and(|g| self.started <= g)
    }

    /// A round the probe thread should start now (startup, reload).
    pub fn wanted(&self) -> bool {
        self.wanted
    }

    /// One client dispatched; `every` is R (at least 1). True if it was the R-th: the gate is
    /// now held for the next round, which the caller starts at once with `begin`.
    pub fn dispatched(&mut self, every: u64) -> bool {
        self.since_probe += 1;
        if self.since_probe < every {
            return false;
        }
        self.since_probe = 0;
        self.held_for = Some(self.started);
        true
    }

    /// Starts a gating round: returns its number.
    pub fn begin(&mut self) -> u64 {
        self.wanted = false;
        let n = self.started;
        self.started += 1;
        n
    }

    /// Parks round `number`, sent and not read yet.
    pub fn park(&mut self, number: u64, round: R) {
        self.parked = Some((number, round));
    }

    /// Takes the parked round out, to read it.
    pub fn unpark(&mut self) -> Option<(u64, R)> {
        self.parked.take()
    }

    pub fn has_parked(&self) -> bool {
        self.parked.is_some()
    }

    /// The R-th dispatch's server has begun its reply (see the module doc).
    pub fn reply_started(&mut self) -> ReplyStarted<R> {
        if self.since_probe != 0 {
            return ReplyStarted::Nothing;
        }
        match self.parked.take() {
            Some((n, round)) => ReplyStarted::Reprobe(n, round),
            None => {
                // Read already, or being read now: either way its answer may predate the
                // count, so the next decision waits for a round that starts after now.
                self.held_for = Some(self.started);
                ReplyStarted::Held
            }
        }
    }

    /// A reload added servers: they start down until probed, so dispatch waits for a round
    /// that probes them, wanted at once.
    pub fn servers_added(&mut self) {
        self.wanted = true;
        self.held_for = Some(self.started);
    }

    /// Gating round `number` has been applied at `now`. True if that opened the gate.
    pub fn finished(&mut self, number: u64, now: Instant) -> bool {
        self.last_end = Some(now);
        if self.held_for.is_some_and(|g| g <= number) {
            self.held_for = None;
            return true;
        }
        false
    }

    /// For the probe thread: `Ok` if a gating round is due now (wanted, or `PROBE_PERIOD`
    /// after the last one ended), else when it will be (`None`: only when wanted).
    pub fn due(&self, now: Instant) -> Result<(), Option<Instant>> {
        let next = self.last_end.map(|t| t + PROBE_PERIOD);
        if self.wanted || next.is_some_and(|d| now >= d) { Ok(()) } else { Err(next) }
    }
}

/// The schedule of recovery rounds: probes of the servers that are down, by the probe thread
/// alone, never gating (see the module doc).
#[derive(Debug, Default)]
pub struct Recovery {
    /// A recovery round is in flight; at most one at a time.
    running: bool,
    /// A gating round started (or a server went down) since the last recovery round began.
    asked: bool,
    last_end: Option<Instant>,
}

impl Recovery {
    /// Asks for a recovery round soon. True if the probe thread should be woken for it (none
    /// is in flight; one in flight will see the request when it ends).
    pub fn ask(&mut self) -> bool {
        self.asked = true;
        !self.running
    }

    /// `Ok` if a recovery round is due now, given whether any server is down; else when it
    /// will be (`None`: not until asked).
    pub fn due(&self, now: Instant, any_down: bool) -> Result<(), Option<Instant>> {
        if !any_down || self.running {
            return Err(None);
        }
        let next = self.last_end.map(|t| t + PROBE_PERIOD);
        if self.asked || next.is_none_or(|d| now >= d) { Ok(()) } else { Err(next) }
    }

    pub fn begin(&mut self) {
        self.running = true;
        self.asked = false;
    }

    pub fn finished(&mut self, now: Instant) {
        self.running = false;
        self.last_end = Some(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// A stand-in for a parked round: its name.
    type G = Gate<&'static str>;

    #[test]
    fn startup_holds_the_gate_for_round_zero_until_it_finishes() {
        let mut g = G::new();
        let t = Instant::now();
        assert!(!g.is_open() && g.wanted() && g.needs_round());
        assert_eq!(g.due(t), Ok(()));
        assert_eq!(g.begin(), 0);
        assert!(!g.is_open() && !g.wanted() && !g.needs_round(), "started: nobody starts another");
        assert!(g.finished(0, t));
        assert!(g.is_open());
        assert_eq!(g.due(t), Err(Some(t + PROBE_PERIOD)));
        assert_eq!(g.due(t + PROBE_PERIOD), Ok(()));
    }

    #[test]
    fn the_rth_dispatch_holds_the_gate_and_its_round_opens_it() {
        let mut g = G::new();
        g.begin();
        g.finished(0, Instant::now());
        assert!(!g.dispatched(3) && !g.dispatched(3));
        assert!(g.is_open());
        assert!(g.dispatched(3), "the third of R = 3");
        assert!(!g.is_open() && g.needs_round());
        let n = g.begin();
        assert_eq!(n, 1);
        g.park(n, "sent");
        assert!(!g.needs_round() && g.has_parked());
        assert_eq!(g.unpark(), Some((1, "sent")));
        assert!(!g.is_open(), "held while the round is being read");
        assert!(g.finished(1, Instant::now()));
        assert!(g.is_open());
    }

    #[test]
    fn an_older_round_does_not_open_a_gate_held_for_a_newer_one() {
        let mut g = G::new();
        assert_eq!(g.begin(), 0); // the probe thread's startup round, still running
        g.servers_added(); // a reload: held for round 1
        assert!(g.wanted() && g.needs_round());
        assert!(!g.finished(0, Instant::now()));
        assert!(!g.is_open());
        assert_eq!(g.begin(), 1);
        assert!(g.finished(1, Instant::now()));
        assert!(g.is_open());
    }

    #[test]
    fn reply_started_reprobes_a_parked_round_or_holds_for_a_new_one() {
        let mut g = G::new();
        g.begin();
        g.finished(0, Instant::now());
        assert!(g.dispatched(1));
        let n = g.begin();
        g.park(n, "round 1");
        // Parked: hand it out to probe again; the caller parks it back.
        assert_eq!(g.reply_started(), ReplyStarted::Reprobe(1, "round 1"));
        g.park(1, "round 1");
        assert!(!g.is_open() && !g.needs_round());
        // Read already (the gate opened): held for a new round, which nobody has started.
        assert_eq!(g.unpark(), Some((1, "round 1")));
        assert!(g.finished(1, Instant::now()));
        assert_eq!(g.reply_started(), ReplyStarted::Held);
        assert!(!g.is_open() && g.needs_round());
        // Once a client has been routed since, a late reply changes nothing.
        assert_eq!(g.begin(), 2);
        g.finished(2, Instant::now());
        assert!(!g.dispatched(2));
        assert_eq!(g.reply_started(), ReplyStarted::Nothing);
        assert!(g.is_open());
    }

    #[test]
    fn reply_started_while_the_round_is_being_read_holds_for_the_next() {
        let mut g = G::new();
        g.begin();
        g.finished(0, Instant::now());
        assert!(g.dispatched(1));
        let n = g.begin();
        g.park(n, "round 1");
        let (n, _) = g.unpark().unwrap(); // a worker reads it, lock released
        assert_eq!(g.reply_started(), ReplyStarted::Held);
        assert!(!g.finished(n, Instant::now()), "its answer may predate the count");
        assert!(g.needs_round());
    }

    #[test]
    fn recovery_runs_one_round_at_a_time_only_while_a_server_is_down() {
        let t = Instant::now();
        let mut r = Recovery::default();
        assert_eq!(r.due(t, false), Err(None), "nothing is down");
        assert_eq!(r.due(t, true), Ok(()), "down, never probed for recovery");
        r.begin();
        assert_eq!(r.due(t, true), Err(None), "one in flight");
        assert!(!r.ask(), "the one in flight sees the request when it ends");
        r.finished(t + Duration::from_secs(2));
        assert_eq!(r.due(t + Duration::from_secs(2), true), Ok(()), "asked meanwhile");
        r.begin();
        r.finished(t + Duration::from_secs(2));
        let next = t + Duration::from_secs(2) + PROBE_PERIOD;
        assert_eq!(r.due(t + Duration::from_secs(3), true), Err(Some(next)), "not asked: on the timer");
        assert_eq!(r.due(next, true), Ok(()));
        assert!(r.ask());
        assert_eq!(r.due(t + Duration::from_secs(3), true), Ok(()));
    }
}
