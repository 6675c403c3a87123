//! The dispatcher: owns the slots, the waiting room, the server table, the pacing bucket and
//! the probe gate, and decides which waiting connection goes to which server, when.
//!
//! # Locking
//!
//! Everything here lives in one `State` behind one mutex, `Dispatcher::state`. One lock, because
//! every decision reads all of it at once: a dispatch needs a free slot (global count), a
//! waiting connection (room), a token (bucket), an open probe gate, and a server below its bound
//! (table). Nobody does I/O or logs under the lock: callers take what they need and leave.
//!
//! A connection moves through these states; the arrows say who moves it:
//!
//! ```text
//!   accepted ──(accept thread: push)──► waiting ──(worker: take)──► bridged ──(worker: Slot drop)──► done
//!                     │ full                      │ queue timeout (accept thread: expire)
//!                     ▼                           ▼
//!                   503                         503
//! ```
//!
//! - `in_flight` counts slots handed out by `take` and not yet released. It is raised only in
//!   `try_dispatch` after checking `in_flight < limit`, and lowered only when a `Slot` is
//!   released, both under the lock, so it is never above `limit` (a lowered limit only stops
//!   new dispatches). A slot is released after its bridge has ended both ways and closed
//!   the server's socket, so the servers never see more than `limit` bridged connections.
//! - A server's `in_flight` moves with the slot that reserved it (`try_dispatch`, `failover`,
//!   `Slot` release), under the same lock, so the per-server bound is exact in the same way.
//! - Three condition variables share the mutex: `work` (idle workers: something may be
//!   dispatchable), `busy_server` (a worker in failover waiting for a server below its bound),
//!   `health` (the probe thread: a round is wanted, or the state is stopping).
//!
//! A shared limit (`shared/`) caps new dispatches at `min(limit, share)` (`cap`), where the
//! share holds until its lease's deadline and the fallback after it, checked at each dispatch
//! so that dispatch stops on time even if the lease thread is late. `limit` stays the group's
//! `-N`. The lease thread learns of a change in demand (the waiting room becoming empty or
//! non-empty, work above a lowered share finishing) through `set_demand_hook`, called outside
//! the lock.
//!
//! Work conservation: every event that can make a dispatch possible (a push, a release, a
//! round's end, a new limit or rate) notifies `work` (as many workers as could dispatch, so
//! none wakes for nothing), and a worker that dispatched wakes one more while dispatchable
//! work remains; a token not yet due becomes a timed wait.

use crate::balancer::config::{Balance, Config, PROBE_PERIOD};
use crate::balancer::health::Round;
use crate::balancer::queue::WaitingRoom;
use crate::balancer::select::{self, Candidate, Choice};
use crate::balancer::stats::{ServerStats, Stats, View};
use crate::common::sys::Waker;
use parking_lot::{Condvar, Mutex, MutexGuard};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// A client connection that has been accepted and (unless the server speaks first) has sent
/// its first byte.
#[derive(Debug)]
pub struct Job {
    pub client: TcpStream,
    pub peer: SocketAddr,
}

/// A server in the table. Never removed: a server dropped by a reload is `retiring`, takes no
/// new connection, and is hidden once idle, so slot indices stay valid.
#[derive(Debug)]
struct Server {
    addr: SocketAddr,
    up: bool,
    reason: String,
    /// From the last probe, plus one per connection sent since.
    entries: u64,
    errors: u64,
    /// Bridged connections now; never above `State::max_per_server`.
    in_flight: usize,
    max_in_flight: usize,
    last_probe: Option<Instant>,
    retiring: bool,
    stats: Arc<ServerStats>,
}

/// Token bucket for `--rate`.
#[derive(Debug)]
struct Bucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl Bucket {
    fn new(rate: f64, burst: u32, now: Instant) -> Bucket {
        Bucket { rate, burst: f64::from(burst), tokens: f64::from(burst), last: now }
    }

    /// Takes a token, or says when the next one is due.
    fn take(&mut self, now: Instant) -> Result<(), Instant> {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            let wait = (1.0 - self.tokens) / self.rate;
            // Round up to the next millisecond so the wake-up finds the token there.
            Err(now + Duration::from_secs_f64(wait) + Duration::from_millis(1))
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Running,
    /// SIGTERM: no new clients; queued and bridged ones finish.
    Draining,
    /// Workers and the probe thread exit.
    Stopped,
}

#[derive(Debug)]
struct State {
    room: WaitingRoom<Job>,
    servers: Vec<Server>,
    config: Arc<Config>,
    limit: usize,
    in_flight: usize,
    bucket: Option<Bucket>,
    cursor: usize,
    served: u64,
    rejected: u64,
    /// Dispatches since the last count-triggered round.
    since_probe: u64,
    /// Rounds started so far; a round's number is this value when it starts.
    rounds_started: u64,
    /// Dispatch is held until round number `gate` has finished (startup, every R, and a
    /// reload that adds servers).
    gate: Option<u64>,
    /// The probe thread should start a round now (startup, new servers after a reload). The
    /// round for the gate after R dispatches is sent by the R-th dispatch instead (`take`).
    round_wanted: bool,
    /// A round whose requests are out and whose replies nobody reads yet: started by the R-th
    /// dispatch, finished by whoever next needs a routing decision (or the probe thread).
    parked: Option<Round>,
    last_round_end: Option<Instant>,
    phase: Phase,
    /// The shared limit's cap on new dispatches; `None` without a shared limit.
    share: Option<ShareCap>,
}

/// A shared limit's cap on new dispatches: `slots` until `until` (the lease could have
/// expired then), `after` from then on (the fallback), unless the lease thread says otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShareCap {
    pub slots: usize,
    pub until: Instant,
    pub after: usize,
}

/// What the lease thread reports to the group: its waiting room, its slots in flight, `-N`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Demand {
    pub waiting: usize,
    pub in_flight: usize,
    pub limit: usize,
}

/// Called when demand changes (see `set_demand_hook`).
pub struct DemandHook(Box<dyn Fn() + Send + Sync>);

impl std::fmt::Debug for DemandHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DemandHook")
    }
}

/// What `take` hands a worker: the connection, and its route.
#[derive(Debug)]
pub struct Ticket {
    pub job: Job,
    pub route: Route,
}

/// Where a dispatched connection goes, with the slot it holds. Apart from the connection, so
/// a worker can keep the client while the route (and the slot) goes where unwinding drops it.
#[derive(Debug)]
pub struct Route {
    pub slot: Slot,
    /// The reserved server, or `None` when no server is up (answer 500).
    pub server: Option<SocketAddr>,
    pub config: Arc<Config>,
    pub stats: Option<Arc<ServerStats>>,
    /// This dispatch was the R-th since the last count-triggered round: once its server begins
    /// to reply, the worker calls `reply_started`.
    pub closed_gate: bool,
}

/// A held slot. Releasing it (explicitly or by drop, even while unwinding) gives back the
/// global slot, the class's slot and the server's, and wakes a waiting worker.
#[derive(Debug)]
pub struct Slot {
    dispatcher: Arc<Dispatcher>,
    class: String,
    server: Option<usize>,
    tried: Vec<usize>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.dispatcher.release(&self.class, self.server);
    }
}

/// What a failed connect leads to.
#[derive(Debug)]
pub enum Failover {
    /// Try this server next (already reserved).
    Retry(SocketAddr, Arc<ServerStats>),
    /// Every server has been tried or is down: answer 500.
    NoneLeft,
}

/// One server's probe outcome, reported by the probe thread.
#[derive(Debug, Clone)]
pub enum ProbeResult {
    Up { errors: u64, entries: u64 },
    Down(String),
}

/// A server that changed state in a probe round, for the log.
#[derive(Debug)]
pub struct Flip {
    pub addr: SocketAddr,
    pub up: bool,
    pub reason: String,
}

#[derive(Debug)]
pub struct Dispatcher {
    state: Mutex<State>,
    work: Condvar,
    busy_server: Condvar,
    health: Condvar,
    waker: Arc<Waker>,
    pub stats: Arc<Stats>,
    /// Probe connections kept between rounds (its own lock, never taken with `state`).
    pub probe_conns: crate::balancer::health::Idle,
    started: Instant,
    /// Bridges in flight, for a shared limit's cut (off without one).
    pub cuts: crate::balancer::shared::cut::Registry,
    demand_hook: OnceLock<DemandHook>,
}

impl Dispatcher {
    /// A dispatcher for `config`; every server starts down until the first round, and dispatch
    /// is held until that round ends.
    pub fn new(config: Arc<Config>, stats: Arc<Stats>, waker: Arc<Waker>) -> Arc<Dispatcher> {
        let now = Instant::now();
        let servers = config.servers.iter().map(|s| new_server(s.addr, &stats)).collect();
        let state = State {
            room: WaitingRoom::new(config.queue_max),
            servers,
            limit: config.limit,
            in_flight: 0,
            bucket: config.rate.map(|r| Bucket::new(r, config.burst, now)),
            cursor: 0,
            served: 0,
            rejected: 0,
            since_probe: 0,
            rounds_started: 0,
            gate: Some(0),
            round_wanted: true,
            parked: None,
            last_round_end: None,
            phase: Phase::Running,
            share: None,
            config,
        };
        Arc::new(Dispatcher {
            state: Mutex::new(state),
            work: Condvar::new(),
            busy_server: Condvar::new(),
            health: Condvar::new(),
            waker,
            stats,
            probe_conns: Default::default(),
            started: now,
            cuts: Default::default(),
            demand_hook: OnceLock::new(),
        })
    }

    /// Adds an accepted connection to the waiting room and says how many wait now, or gives
    /// it back when the room is full (the caller answers 503).
    pub fn push(&self, job: Job) -> Result<usize, Job> {
        let mut st = self.state.lock();
        let (key, weight) = st.config.class_of(job.peer.ip());
        match st.room.push(key, weight, job, Instant::now()) {
            Ok(()) => {
                let waiting = st.room.len();
                let wake = dispatchable(&st) > 0;
                drop(st);
                if wake {
                    self.work.notify_one();
                }
                if waiting == 1 {
                    self.demand_changed();
                }
                Ok(waiting)
            }
            Err(job) => {
                st.rejected += 1;
                Err(job)
            }
        }
    }

    /// Blocks until a connection can be dispatched, and returns it with its slot. `None`
    /// once the dispatcher is stopped.
    pub fn take(self: &Arc<Self>) -> Option<Ticket> {
        let mut st = self.state.lock();
        loop {
            if st.phase == Phase::Stopped {
                return None;
            }
            if st.gate.is_some() && !st.room.is_empty() {
                // A client waits for the routing decision that the gate holds. Read the
                // replies of a round already sent, or, if none is out, run one here, now,
                // rather than wake the probe thread and sleep, which costs two hand-overs per
                // round (with -R 5, one round every five clients).
                if let Some(round) = st.parked.take() {
                    MutexGuard::unlocked(&mut st, || round.finish(self));
                    continue;
                }
                if gate_round_due(&st) {
                    let (round, addrs) = begin_round(&mut st);
                    MutexGuard::unlocked(&mut st, || crate::balancer::health::run_round(self, round, addrs));
                    continue;
                }
            }
            match self.try_dispatch(&mut st) {
                Ok(ticket) => {
                    let more = !st.room.is_empty() && st.in_flight < cap(&st);
                    let emptied = st.room.is_empty();
                    // The R-th dispatch sends the round the gate now waits for, before its own
                    // connect: the servers answer while this client is being bridged, and the
                    // next routing decision finds the replies waiting instead of waiting a
                    // round trip to servers busy with our clients.
                    let round = ticket.route.closed_gate.then(|| begin_round(&mut st));
                    drop(st);
                    if let Some((number, addrs)) = round {
                        let round = Round::start(number, &addrs, &self.probe_conns);
                        let mut st = self.state.lock();
                        st.parked = Some(round);
                        let waiting = dispatchable(&st) > 0;
                        drop(st);
                        if waiting {
                            self.work.notify_one();
                        }
                    }
                    if more {
                        self.work.notify_one();
                    }
                    if emptied {
                        self.demand_changed();
                    }
                    return Some(ticket);
                }
                Err(Some(due)) => {
                    self.work.wait_until(&mut st, due);
                }
                Err(None) => self.work.wait(&mut st),
            }
        }
    }

    /// One dispatch decision. `Err(Some(t))`: nothing before `t` (a token is due);
    /// `Err(None)`: nothing until something changes.
    fn try_dispatch(self: &Arc<Self>, st: &mut MutexGuard<'_, State>) -> Result<Ticket, Option<Instant>> {
        if st.room.is_empty() || st.in_flight >= cap(st) || st.gate.is_some() {
            return Err(None);
        }
        let choice = choose(st, &[]);
        if choice == Choice::AllBusy {
            return Err(None);
        }
        if let Some(bucket) = st.bucket.as_mut() {
            bucket.take(Instant::now()).map_err(Some)?;
        }
        let Some((class, job)) = st.room.pop_fair() else { return Err(None) };
        st.in_flight += 1;
        st.served += 1;
        st.since_probe += 1;
        if st.since_probe >= st.config.probe_every {
            // The next routing decision waits for a round that starts after this one.
            st.since_probe = 0;
            // It is sent by this dispatch and read by the worker that needs the next routing
            // decision (see `take` and `reply_started`).
            st.gate = Some(st.rounds_started);
        }
        let closed_gate = st.since_probe == 0 && st.gate.is_some();
        let server = match choice {
            Choice::Server(i) => Some(reserve(st, i)),
            _ => None,
        };
        let (addr, stats) = match server {
            Some(i) => (Some(st.servers[i].addr), Some(Arc::clone(&st.servers[i].stats))),
            None => (None, None),
        };
        let slot = Slot { dispatcher: Arc::clone(self), class, server, tried: server.into_iter().collect() };
        let route = Route { slot, server: addr, config: Arc::clone(&st.config), stats, closed_gate };
        Ok(Ticket { job, route })
    }

    /// The reserved server refused or failed the connect: marks it down (with `reason`),
    /// and reserves the next best not yet tried. Waits while every other live server is at
    /// its bound.
    pub fn failover(&self, slot: &mut Slot, reason: &str) -> Failover {
        let mut st = self.state.lock();
        if let Some(i) = slot.server.take() {
            let s = &mut st.servers[i];
            s.in_flight -= 1;
            s.up = false;
            s.reason = reason.to_string();
            self.busy_server.notify_all();
        }
        loop {
            match choose(&st, &slot.tried) {
                Choice::Server(i) => {
                    reserve(&mut st, i);
                    slot.server = Some(i);
                    slot.tried.push(i);
                    return Failover::Retry(st.servers[i].addr, Arc::clone(&st.servers[i].stats));
                }
                Choice::NoneUp => return Failover::NoneLeft,
                Choice::AllBusy if st.phase == Phase::Stopped => return Failover::NoneLeft,
                Choice::AllBusy => self.busy_server.wait(&mut st),
            }
        }
    }

    /// The R-th connection's server (`addr`) has begun to reply, so it has counted that
    /// connection now; the round sent at its dispatch probably reached it first. If no client
    /// has been routed since, the next decision must see that count: while the round is still
    /// unread, its probe to `addr` is sent again; if it was read already, the next decision
    /// waits for a new round. Either way clients one after another are routed on counts that
    /// include the R-th. (Under load the next decision usually comes before this reply and
    /// uses the round as sent: fresh by the same measure as any round run while clients are
    /// in flight.)
    pub fn reply_started(&self, addr: SocketAddr) {
        let mut st = self.state.lock();
        if st.since_probe != 0 || st.phase != Phase::Running {
            return;
        }
        let Some(mut round) = st.parked.take() else {
            st.gate = Some(st.rounds_started);
            return;
        };
        MutexGuard::unlocked(&mut st, || round.reprobe(addr));
        st.parked = Some(round);
        let wake = dispatchable(&st) > 0;
        drop(st);
        if wake {
            self.work.notify_one();
        }
    }

    /// Counts an error against a server (a timeout or a reset after connect).
    pub fn count_error(&self, addr: SocketAddr) {
        let mut st = self.state.lock();
        if let Some(s) = st.servers.iter_mut().find(|s| s.addr == addr) {
            s.errors += 1;
        }
    }

    fn release(&self, class: &str, server: Option<usize>) {
        let mut st = self.state.lock();
        st.in_flight -= 1;
        st.room.release(class);
        if let Some(i) = server {
            st.servers[i].in_flight -= 1;
        }
        let drained = st.phase == Phase::Draining && st.in_flight == 0 && st.room.is_empty();
        let wake = dispatchable(&st) > 0;
        // Work above a lowered share has finished: the slots it held can go to the group.
        let handed_back = st.share.is_some() && st.in_flight == cap(&st);
        drop(st);
        if handed_back {
            self.demand_changed();
        }
        if wake {
            self.work.notify_one();
        }
        if server.is_some() {
            self.busy_server.notify_all();
        }
        if drained {
            self.waker.wake();
        }
    }

    /// Removes the connections that waited `queue_timeout` (the caller answers 503), and says
    /// when the longest-waiting one left will time out.
    pub fn expire(&self, now: Instant) -> (Vec<Job>, Option<Instant>) {
        let mut st = self.state.lock();
        let timeout = st.config.queue_timeout;
        let out = st.room.expire(now, timeout);
        st.rejected += out.len() as u64;
        let emptied = !out.is_empty() && st.room.is_empty();
        let next = st.room.next_expiry(timeout);
        drop(st);
        if emptied {
            self.demand_changed();
        }
        (out, next)
    }

    // ---- the probe thread's side ----

    /// Blocks until a probe round is due (wanted, or 5 s after the last one), then starts it:
    /// returns its number and the addresses to probe. `None` once stopped.
    pub fn next_round(&self) -> Option<Round> {
        let mut st = self.state.lock();
        loop {
            if st.phase == Phase::Stopped {
                return None;
            }
            let due = st.last_round_end.map(|t| t + PROBE_PERIOD);
            if st.round_wanted || due.is_some_and(|d| Instant::now() >= d) {
                // A round sent and not read yet comes first: its results are older.
                if let Some(round) = st.parked.take() {
                    return Some(round);
                }
                let (number, addrs) = begin_round(&mut st);
                drop(st);
                return Some(Round::start(number, &addrs, &self.probe_conns));
            }
            match due {
                Some(d) => {
                    self.health.wait_until(&mut st, d);
                }
                None => self.health.wait(&mut st),
            }
        }
    }

    /// Applies a finished round: counts overwrite the local ones, up/down follow the results.
    /// Opens the gate if this round was the one it waited for. Returns the servers that flipped.
    pub fn finish_round(&self, round: u64, results: Vec<(SocketAddr, ProbeResult)>) -> Vec<Flip> {
        let mut st = self.state.lock();
        let now = Instant::now();
        let mut flips = Vec::new();
        for (addr, result) in results {
            let Some(s) = st.servers.iter_mut().find(|s| s.addr == addr) else { continue };
            s.last_probe = Some(now);
            let was_up = s.up;
            match result {
                ProbeResult::Up { errors, entries } => {
                    s.up = true;
                    s.reason.clear();
                    s.errors = errors;
                    s.entries = entries;
                }
                ProbeResult::Down(reason) => {
                    s.up = false;
                    s.reason = reason;
                }
            }
            if was_up != s.up || (round == 0 && !s.up) {
                flips.push(Flip { addr, up: s.up, reason: s.reason.clone() });
            }
        }
        st.last_round_end = Some(now);
        if st.gate.is_some_and(|g| g <= round) {
            st.gate = None;
        }
        // Wake as many workers as can dispatch now, not all: a woken worker that finds nothing
        // to do costs two context switches, and with -R 5 a round ends every five clients.
        let wake = dispatchable(&st);
        drop(st);
        for _ in 0..wake {
            self.work.notify_one();
        }
        self.busy_server.notify_all();
        flips
    }

    // ---- the shared limit's side (shared/) ----

    /// A new cap on new dispatches (`None`: no shared limit). Wakes as many workers as can
    /// dispatch now; bridges in flight are never cut here.
    pub fn set_share(&self, share: Option<ShareCap>) {
        let mut st = self.state.lock();
        st.share = share;
        let wake = dispatchable(&st);
        drop(st);
        for _ in 0..wake {
            self.work.notify_one();
        }
    }

    /// The demand to report: waiting, in flight, and `-N`.
    pub fn demand(&self) -> Demand {
        let st = self.state.lock();
        Demand { waiting: st.room.len(), in_flight: st.in_flight, limit: st.limit }
    }

    /// `hook` is called (outside the lock, on the thread that made the change) when the
    /// waiting room becomes non-empty or empty, and when work above a lowered share has
    /// finished. Set once; later calls are ignored.
    pub fn set_demand_hook(&self, hook: Box<dyn Fn() + Send + Sync>) {
        let _ = self.demand_hook.set(DemandHook(hook)); // once: a second hook has no use
    }

    fn demand_changed(&self) {
        if let Some(h) = self.demand_hook.get() {
            (h.0)();
        }
    }

    // ---- control ----

    /// A new global bound for new dispatches; bridges in flight are never cut.
    pub fn set_limit(&self, limit: usize) {
        self.state.lock().limit = limit.max(1);
        self.work.notify_all();
    }

    /// A new pacing rate (`None`: off). The bucket starts full at the new rate.
    pub fn set_rate(&self, rate: Option<f64>) {
        let mut st = self.state.lock();
        let burst = st.config.burst;
        st.bucket = rate.map(|r| Bucket::new(r, burst, Instant::now()));
        drop(st);
        self.work.notify_all();
    }

    /// Applies a reloaded configuration: servers added (probed at once) and removed (they
    /// retire: no new connection, their bridges finish), weights, limits, rate, queue.
    pub fn reconfigure(&self, config: Arc<Config>) {
        let mut st = self.state.lock();
        let stats = Arc::clone(&self.stats);
        for s in st.servers.iter_mut() {
            s.retiring = !config.servers.iter().any(|c| c.addr == s.addr);
        }
        for c in &config.servers {
            if !st.servers.iter().any(|s| s.addr == c.addr) {
                st.servers.push(new_server(c.addr, &stats));
                st.round_wanted = true;
                // As at startup, hold dispatch until a round has probed the new servers: they
                // start down ("not probed yet"), and a reload that swaps every server would
                // otherwise answer 500 to the clients that arrive before that round ends.
                st.gate = Some(st.rounds_started);
            }
        }
        st.limit = config.limit;
        st.room.set_max(config.queue_max);
        let rate_changed = st.bucket.as_ref().map(|b| b.rate) != config.rate || st.config.burst != config.burst;
        if rate_changed {
            st.bucket = config.rate.map(|r| Bucket::new(r, config.burst, Instant::now()));
        }
        let cfg = Arc::clone(&config);
        st.room.reweigh(|key| key.parse().map(|ip| cfg.class_of(ip).1).unwrap_or_else(|_| weight_of_block(&cfg, key)));
        st.config = config;
        drop(st);
        self.health.notify_one();
        self.work.notify_all();
        self.busy_server.notify_all();
    }

    pub fn config(&self) -> Arc<Config> {
        Arc::clone(&self.state.lock().config)
    }

    /// SIGTERM: keep dispatching what is queued; `is_idle` tells when all is done.
    pub fn begin_drain(&self) {
        self.state.lock().phase = Phase::Draining;
    }

    pub fn is_idle(&self) -> bool {
        let st = self.state.lock();
        st.in_flight == 0 && st.room.is_empty()
    }

    /// Ends the drain: hands back whatever still waits (the caller answers 503) and stops
    /// workers and the probe thread.
    pub fn stop(&self) -> Vec<Job> {
        let mut st = self.state.lock();
        st.phase = Phase::Stopped;
        let left = st.room.take_all();
        drop(st);
        self.work.notify_all();
        self.busy_server.notify_all();
        self.health.notify_all();
        left
    }

    /// A copy of the live state for the admin endpoint.
    pub fn view(&self) -> View {
        let st = self.state.lock();
        let now = Instant::now();
        let bound = st.config.max_per_server;
        let servers = st
            .servers
            .iter()
            .filter(|s| !s.retiring || s.in_flight > 0)
            .map(|s| crate::balancer::stats::ServerView {
                address: s.addr.to_string(),
                up: s.up,
                reason: s.reason.clone(),
                entries: s.entries,
                errors: s.errors,
                in_flight: s.in_flight,
                max_in_flight: s.max_in_flight,
                bound,
                last_probe_ago: s.last_probe.map(|t| now.saturating_duration_since(t).as_secs_f64()),
                retiring: s.retiring,
                totals: Default::default(),
            })
            .collect::<Vec<_>>();
        let stats: Vec<_> = st.servers.iter().map(|s| (s.addr.to_string(), Arc::clone(&s.stats))).collect();
        let mut view = View {
            limit: st.limit,
            in_flight: st.in_flight,
            queued: st.room.len(),
            queue_max: st.config.queue_max,
            rate: st.bucket.as_ref().map(|b| b.rate),
            burst: st.config.burst,
            balance: st.config.balance.name(),
            served: st.served,
            rejected: st.rejected,
            uptime: self.started.elapsed(),
            servers,
            classes: st.room.views(),
        };
        drop(st);
        // Counters are atomics: read them after the lock is gone.
        for s in &mut view.servers {
            if let Some((_, st)) = stats.iter().find(|(a, _)| *a == s.address) {
                s.totals = st.totals();
            }
        }
        view
    }
}

/// A client waits for a routing decision that the gate holds, and no round that would open
/// the gate has started yet.
fn gate_round_due(st: &State) -> bool {
    st.gate.is_some_and(|g| st.rounds_started <= g) && !st.room.is_empty()
}

/// Starts a round: its number and the addresses to probe. Whoever calls this runs the round
/// and reports it with `finish_round`.
fn begin_round(st: &mut State) -> (u64, Vec<SocketAddr>) {
    st.round_wanted = false;
    let round = st.rounds_started;
    st.rounds_started += 1;
    (round, st.servers.iter().filter(|s| !s.retiring).map(|s| s.addr).collect())
}

/// How many workers could dispatch right now (an upper bound: a token or a server bound may
/// still make them wait). Wake-ups beyond this would find nothing to do.
fn dispatchable(st: &State) -> usize {
    if st.phase == Phase::Stopped {
        return 0;
    }
    if st.gate.is_some() {
        // One worker to read the round the gate waits for, or to run it if nobody has.
        let parked = st.parked.is_some() && !st.room.is_empty();
        return usize::from(parked || gate_round_due(st));
    }
    st.room.len().min(cap(st).saturating_sub(st.in_flight))
}

/// The bound for new dispatches: `limit`, or less under a shared limit's share.
fn cap(st: &State) -> usize {
    match st.share {
        None => st.limit,
        Some(s) => st.limit.min(if Instant::now() < s.until { s.slots } else { s.after }),
    }
}

fn new_server(addr: SocketAddr, stats: &Stats) -> Server {
    Server {
        addr,
        up: false,
        reason: "not probed yet".into(),
        entries: 0,
        errors: 0,
        in_flight: 0,
        max_in_flight: 0,
        last_probe: None,
        retiring: false,
        stats: stats.server(&addr.to_string()),
    }
}

fn choose(st: &State, exclude: &[usize]) -> Choice {
    let table: Vec<Candidate> = st
        .servers
        .iter()
        .map(|s| Candidate {
            up: s.up,
            retiring: s.retiring,
            entries: s.entries,
            errors: s.errors,
            in_flight: s.in_flight,
        })
        .collect();
    select::choose(&table, st.config.balance, st.config.max_per_server, st.cursor, exclude)
}

/// Counts a connection against server `i`: in flight, and one local entry until the next probe.
fn reserve(st: &mut State, i: usize) -> usize {
    let s = &mut st.servers[i];
    s.in_flight += 1;
    s.max_in_flight = s.max_in_flight.max(s.in_flight);
    s.entries += 1;
    if st.config.balance == Balance::RoundRobin {
        st.cursor = i + 1;
    }
    i
}

/// The weight of a class keyed by a CIDR block (classes keyed by an address go through
/// `Config::class_of`).
fn weight_of_block(config: &Config, key: &str) -> u32 {
    config.weights.iter().find(|(c, _)| c.to_string() == key).map(|(_, w)| *w).unwrap_or(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_paces_after_the_burst() {
        let t0 = Instant::now();
        let mut b = Bucket::new(20.0, 2, t0);
        assert!(b.take(t0).is_ok());
        assert!(b.take(t0).is_ok());
        let due = b.take(t0).unwrap_err();
        let wait = due.duration_since(t0);
        assert!(wait >= Duration::from_millis(50) && wait <= Duration::from_millis(52), "{wait:?}");
        assert!(b.take(t0 + Duration::from_millis(50)).is_ok());
    }
}
