//! The dispatcher: owns the slots, the waiting room, the server table, the pacing bucket and
//! the probe gate, and decides which waiting connection goes to which server, when. It alone
//! applies probe results: a round (`health::Round`) only sends and collects; when rounds run
//! and what they hold is the pure state in `gate` (`Gate`, `Recovery`).
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
//!   `health` (the probe thread: a round is wanted, a server is down, or the state is
//!   stopping).
//! - A round is run with the lock released: it is taken out of (or started from) the state
//!   under the lock, sent and collected without it, and its results applied under it again
//!   (`finish_round`).
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

use crate::balancer::config::{Balance, Config};
use crate::balancer::exchange::Request;
use crate::balancer::gate::{Gate, Recovery, ReplyStarted};
use crate::balancer::health::{Idle, ProbeResult, Round};
use crate::balancer::queue::WaitingRoom;
use crate::balancer::reuse::Reuse;
use crate::balancer::select::{self, Candidate, Choice};
use crate::balancer::shortage::Shortage;
use crate::balancer::stats::{ServerStats, Stats, View};
use crate::balancer::watch::Watch;
use crate::common::sys::Waker;
use parking_lot::{Condvar, Mutex, MutexGuard};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering as AtomicOrdering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// What waits in the waiting room. In tcp mode: a client connection that has been accepted and
/// (unless the server speaks first) has sent its first byte. In http mode: one request, whose
/// head has been read (`request`), on its client connection.
#[derive(Debug)]
pub struct Job {
    pub client: TcpStream,
    pub peer: SocketAddr,
    /// The token the accepting thread watches the client under while it waits (see `watch`),
    /// so that a client that gives up can be taken out (`Dispatcher::abandon`).
    pub id: u64,
    pub request: Option<Box<Request>>,
    /// Queued without the watch, because a sleeping worker was there to take it at once
    /// (counted in `State::unwatched`; see `Dispatcher::enqueue`).
    pub unwatched: bool,
    /// The client's socket has been armed in the watch before (a hint: arming a new one
    /// adds it rather than trying a modify first).
    pub registered: bool,
}

/// Who pushes a job into the waiting room (see `Dispatcher::enqueue`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pusher {
    /// The accepting thread: it computes its next deadline after its pushes.
    Acceptor,
    /// A worker, with a pipelined request it found after a response.
    Worker,
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
            // Rates are checked where they enter (`config::check_rate`), so the wait is at most
            // 1 / MIN_RATE seconds; still, no stored rate may panic here (this runs in
            // `Dispatcher::take`, outside the worker's catch_unwind): a wait that is not a
            // finite, non-negative number of seconds, or is longer than `MAX_TOKEN_WAIT`,
            // becomes a look again after `MAX_TOKEN_WAIT`. See: issue #11.
            let wait = (1.0 - self.tokens) / self.rate;
            let wait = Duration::try_from_secs_f64(wait).unwrap_or(MAX_TOKEN_WAIT).min(MAX_TOKEN_WAIT);
            // Round up to the next millisecond so the wake-up finds the token there.
            Err(now.checked_add(wait + Duration::from_millis(1)).unwrap_or(now))
        }
    }
}

/// The longest a worker sleeps for a token before it computes the wait again.
const MAX_TOKEN_WAIT: Duration = Duration::from_secs(3600);

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
    abandoned: u64,
    /// Dispatch is held until a gating round has finished (startup, every R, a reload that
    /// adds servers); the round parked after the R-th dispatch lives here.
    gate: Gate<Round>,
    /// When the probe thread probes the servers that are down (they never hold the gate).
    recovery: Recovery,
    phase: Phase,
    /// The shared limit's cap on new dispatches; `None` without a shared limit.
    share: Option<ShareCap>,
    /// Workers asleep in `take` without a deadline.
    sleepers: usize,
    /// Jobs in the room queued without the watch (`Job::unwatched`).
    unwatched: usize,
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

/// What a finished round was for: applying it opens the gate, or ends a recovery round.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoundKind {
    /// Gating round number n: the servers up or not probed yet.
    Gating(u64),
    /// The servers that are down, probed by the probe thread; never gates.
    Recovery,
}

/// A server that changed state in a probe round, for the log.
#[derive(Debug)]
struct Flip {
    addr: SocketAddr,
    up: bool,
    reason: String,
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
    probe_conns: Idle,
    /// Our own shortage of descriptors (its own lock, never taken with `state`).
    pub shortage: Shortage,
    /// The epoll set of sockets waiting without a thread (see `watch`).
    pub watch: Arc<Watch>,
    /// Idle server connections for reuse, http mode (its own lock, never taken with `state`).
    pub reuse: Reuse,
    /// When the earliest queue timeout is due, in nanoseconds since `started`: 0 means
    /// unknown (look), `u64::MAX` none (the room is empty). Moved under `state`'s lock; read
    /// without it by `expire`, whose only caller (the accepting thread) does most pushes and
    /// is woken by the others (a worker's pipelined request: `Pusher::Worker`).
    room_due: AtomicU64,
    started: Instant,
    /// Bridges in flight, for a shared limit's cut (off without one).
    pub cuts: crate::balancer::shared::cut::Registry,
    demand_hook: OnceLock<DemandHook>,
}

impl Dispatcher {
    /// A dispatcher for `config`; every server starts down until the first round, and dispatch
    /// is held until that round ends.
    pub fn new(config: Arc<Config>, stats: Arc<Stats>, waker: Arc<Waker>, watch: Arc<Watch>) -> Arc<Dispatcher> {
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
            abandoned: 0,
            sleepers: 0,
            unwatched: 0,
            gate: Gate::new(),
            recovery: Recovery::default(),
            phase: Phase::Running,
            share: None,
            config,
        };
        Arc::new(Dispatcher {
            state: Mutex::new(state),
            work: Condvar::new(),
            busy_server: Condvar::new(),
            health: Condvar::new(),
            shortage: Shortage::new(Arc::clone(&waker)),
            waker,
            stats,
            probe_conns: Default::default(),
            reuse: Reuse::new(Arc::clone(&watch)),
            watch,
            room_due: AtomicU64::new(0),
            started: now,
            cuts: Default::default(),
            demand_hook: OnceLock::new(),
        })
    }

    /// Pushes a job into the waiting room (as `push`), watching its client for giving up
    /// meanwhile: a reset in tcp mode (a byte-stream client may half-close and still wait for
    /// its reply), a close or a reset in http mode. The one way in for the accepting thread
    /// and for a worker that found a pipelined request.
    ///
    /// Unless a worker is asleep in `take` to dispatch it at once: then the job goes in
    /// unwatched, and the accepting thread saves the `epoll_ctl` (one of about ten system
    /// calls a keep-alive request costs). Exact, not a guess: it needs a free slot, an open
    /// gate, no pacing, a server with room, and more sleeping workers than unwatched jobs, so
    /// each unwatched job has its own worker already woken for it, and it waits only for that
    /// worker to run (or, after the R-th dispatch, for one probe round).
    ///
    /// `by`: who pushes. The accepting thread computes its next queue timeout after its
    /// pushes; a worker's push into an empty room wakes it, so that it does.
    pub fn enqueue(&self, mut job: Job, by: Pusher) -> Result<usize, Job> {
        let st = self.state.lock();
        let at_once = st.phase == Phase::Running
            && st.gate.is_open()
            && st.bucket.is_none()
            && st.room.len() == st.unwatched
            && st.in_flight + st.unwatched < cap(&st)
            && st.sleepers > st.unwatched
            && choose(&st, &[]) != Choice::AllBusy;
        if at_once {
            job.unwatched = true;
            return self.push_locked(st, job, by);
        }
        drop(st);
        let http = job.request.is_some();
        // Armed before the push: once in the room, a worker may take it at any moment.
        match self.watch.arm(&job.client, job.id, false, http, job.registered) {
            Ok(()) => job.registered = true,
            Err(e) => crate::debug!("client {}: cannot watch it while it waits: {e}", job.peer),
        }
        self.push_locked(self.state.lock(), job, by)
    }

    /// Adds an accepted connection to the waiting room and says how many wait now, or gives
    /// it back when the room is full (the caller answers 503).
    pub fn push(&self, job: Job) -> Result<usize, Job> {
        self.push_locked(self.state.lock(), job, Pusher::Acceptor)
    }

    fn push_locked(&self, mut st: MutexGuard<'_, State>, job: Job, by: Pusher) -> Result<usize, Job> {
        let (key, weight) = st.config.class_of(job.peer.ip());
        let unwatched = job.unwatched;
        match st.room.push(key, weight, job, Instant::now()) {
            Ok(()) => {
                st.unwatched += usize::from(unwatched);
                let waiting = st.room.len();
                if waiting == 1 {
                    // The room was empty: this job's queue timeout is now the earliest.
                    let due = self.nanos(Instant::now() + st.config.queue_timeout).max(1);
                    self.room_due.fetch_min(due, AtomicOrdering::AcqRel);
                }
                let wake = dispatchable(&st) > 0;
                drop(st);
                if wake {
                    self.work.notify_one();
                }
                if waiting == 1 {
                    self.demand_changed();
                    if by == Pusher::Worker {
                        self.waker.wake();
                    }
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
            if !st.gate.is_open() && !st.room.is_empty() {
                // A client waits for the routing decision that the gate holds. Read the
                // replies of a round already sent, or, if none is out, run one here, now,
                // rather than wake the probe thread and sleep, which costs two hand-overs per
                // round (with -R 5, one round every five clients).
                if let Some((number, round)) = st.gate.unpark() {
                    MutexGuard::unlocked(&mut st, || self.finish_round(RoundKind::Gating(number), round));
                    continue;
                }
                if st.gate.needs_round() {
                    let (number, addrs) = self.begin_gating(&mut st);
                    MutexGuard::unlocked(&mut st, || {
                        let round = Round::start(&addrs, &self.probe_conns);
                        self.finish_round(RoundKind::Gating(number), round)
                    });
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
                    let round = ticket.route.closed_gate.then(|| self.begin_gating(&mut st));
                    drop(st);
                    if let Some((number, addrs)) = round {
                        let round = Round::start(&addrs, &self.probe_conns);
                        let mut st = self.state.lock();
                        st.gate.park(number, round);
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
                Err(None) => {
                    st.sleepers += 1;
                    self.work.wait(&mut st);
                    st.sleepers -= 1;
                }
            }
        }
    }

    /// One dispatch decision without blocking and without running a probe round: a ticket if
    /// a connection can go now, else `None`. Workers use `take`; the property tests (`props`)
    /// use this to play the idle workers. A dispatch that closes the gate leaves its round to
    /// the caller (`take` would send it).
    pub fn try_take(self: &Arc<Self>) -> Option<Ticket> {
        let mut st = self.state.lock();
        if st.phase == Phase::Stopped {
            return None;
        }
        self.try_dispatch(&mut st).ok()
    }

    /// One dispatch decision. `Err(Some(t))`: nothing before `t` (a token is due);
    /// `Err(None)`: nothing until something changes.
    fn try_dispatch(self: &Arc<Self>, st: &mut MutexGuard<'_, State>) -> Result<Ticket, Option<Instant>> {
        if st.room.is_empty() || st.in_flight >= cap(st) || !st.gate.is_open() {
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
        st.unwatched -= usize::from(job.unwatched);
        st.in_flight += 1;
        st.served += 1;
        // The R-th: the next routing decision waits for a round that starts after this one.
        // It is sent by this dispatch and read by the worker that needs the next routing
        // decision (see `take` and `reply_started`).
        let every = st.config.probe_every;
        let closed_gate = st.gate.dispatched(every);
        let server = match choice {
            Choice::Server(i) => Some(reserve(st, i)),
            _ => {
                // No server is up, so no gating round runs: without this a server that came
                // back would wait for the 5 s probe timer while every client got the 500. A
                // client asks for a recovery round (one at a time). See: issue 13 (the storm).
                if st.recovery.ask() {
                    self.health.notify_one();
                }
                None
            }
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
            // Down now: from here on the probe thread probes it, in the background.
            if st.recovery.ask() {
                self.health.notify_one();
            }
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
        if st.phase != Phase::Running {
            return;
        }
        let ReplyStarted::Reprobe(number, mut round) = st.gate.reply_started() else { return };
        MutexGuard::unlocked(&mut st, || round.reprobe(addr));
        st.gate.park(number, round);
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

    /// Takes out the waiting client watched under `id`, which gave up (closed or reset): its
    /// request must never reach a server. `None` if it no longer waits (a worker has it).
    pub fn abandon(&self, id: u64) -> Option<Job> {
        let mut st = self.state.lock();
        let job = st.room.remove(|j| j.id == id)?;
        st.unwatched -= usize::from(job.unwatched);
        st.abandoned += 1;
        let emptied = st.room.is_empty();
        let drained = st.phase == Phase::Draining && st.in_flight == 0 && emptied;
        drop(st);
        if emptied {
            self.demand_changed();
        }
        if drained {
            self.waker.wake();
        }
        Some(job)
    }

    /// Removes the connections that waited `queue_timeout` (the caller answers 503), and says
    /// when the longest-waiting one left will time out.
    pub fn expire(&self, now: Instant) -> (Vec<Job>, Option<Instant>) {
        // The accepting thread asks at every wake-up; the lock is taken only when the earliest
        // queue timeout may have come (a push into an empty room or a reload moves it).
        let due = self.room_due.load(AtomicOrdering::Acquire);
        let now_ns = self.nanos(now);
        if due != 0 && now_ns < due {
            return (Vec::new(), (due != u64::MAX).then(|| self.started + Duration::from_nanos(due)));
        }
        let mut st = self.state.lock();
        let timeout = st.config.queue_timeout;
        let out = st.room.expire(now, timeout);
        st.unwatched -= out.iter().filter(|j| j.unwatched).count();
        st.rejected += out.len() as u64;
        let emptied = !out.is_empty() && st.room.is_empty();
        let next = st.room.next_expiry(timeout);
        // Never 0 (which means "look now"): a due time in the first nanosecond is 1.
        self.room_due.store(next.map_or(u64::MAX, |t| self.nanos(t).max(1)), AtomicOrdering::Release);
        drop(st);
        if emptied {
            self.demand_changed();
        }
        (out, next)
    }

    // ---- rounds: started here, run with the lock released, applied here ----

    /// Starts a gating round (under the lock): its number and the servers it probes, those up
    /// or not probed yet. A server known to be down is left to a recovery round, and one is
    /// asked for, so that under traffic it is probed as often as rounds run, in the background.
    fn begin_gating(&self, st: &mut State) -> (u64, Vec<SocketAddr>) {
        let number = st.gate.begin();
        let addrs = st.servers.iter().filter(|s| !s.retiring && !is_recovering(s)).map(|s| s.addr).collect();
        if st.servers.iter().any(is_recovering) && st.recovery.ask() {
            self.health.notify_one();
        }
        (number, addrs)
    }

    /// Blocks until the probe thread has a round to run: a gating round (wanted, or 5 s after
    /// the last one; a parked one first, its results are older) or a recovery round (some
    /// server is down). `None` once stopped. Also closes the kept probe connections to servers
    /// a reload removed.
    pub fn next_round(&self) -> Option<(RoundKind, Round)> {
        let mut st = self.state.lock();
        loop {
            if st.phase == Phase::Stopped {
                return None;
            }
            let now = Instant::now();
            let gating = st.gate.due(now);
            if gating.is_ok() {
                if let Some((number, round)) = st.gate.unpark() {
                    return Some((RoundKind::Gating(number), round));
                }
                let (number, addrs) = self.begin_gating(&mut st);
                let known: Vec<SocketAddr> = st.servers.iter().filter(|s| !s.retiring).map(|s| s.addr).collect();
                drop(st);
                self.probe_conns.retain(&known);
                return Some((RoundKind::Gating(number), Round::start(&addrs, &self.probe_conns)));
            }
            let recovery = st.recovery.due(now, st.servers.iter().any(is_recovering));
            if recovery.is_ok() {
                st.recovery.begin();
                let addrs: Vec<SocketAddr> = st.servers.iter().filter(|s| is_recovering(s)).map(|s| s.addr).collect();
                drop(st);
                return Some((RoundKind::Recovery, Round::start(&addrs, &self.probe_conns)));
            }
            match [gating.err().flatten(), recovery.err().flatten()].into_iter().flatten().min() {
                Some(d) => {
                    self.health.wait_until(&mut st, d);
                }
                None => self.health.wait(&mut st),
            }
        }
    }

    /// Reads a started round to its end (with the lock released), applies it, and logs its
    /// results (debug) and the servers that flipped, after they are applied: a logged count is
    /// a count in use. Called by the probe thread, or by a worker waiting for the gate.
    pub fn finish_round(&self, kind: RoundKind, round: Round) {
        let results = round.collect(&self.probe_conns);
        let lines: Vec<String> = if crate::common::log::enabled(crate::common::log::Level::Debug) {
            results.iter().map(|(addr, r)| format!("probe {addr}: {r}")).collect()
        } else {
            Vec::new()
        };
        let short: Vec<(SocketAddr, String)> = results
            .iter()
            .filter_map(|(a, r)| match r {
                ProbeResult::Internal(why) => Some((*a, why.clone())),
                _ => None,
            })
            .collect();
        let flips = self.apply_round(kind, results);
        for line in lines {
            crate::debug!("{line}");
        }
        for flip in flips {
            if flip.up {
                crate::info!("server {} is up", flip.addr);
            } else {
                crate::warn!("server: {} is down: {}", flip.addr, flip.reason);
            }
        }
        // Our own failure: the servers keep their state; the shortage is logged per episode.
        match short.first() {
            Some((addr, why)) => self.shortage.refused(&format!("probe {addr}"), why),
            None => self.shortage.relieved(),
        }
    }

    /// Applies a finished round: counts overwrite the local ones, up/down follow the results
    /// (an `Internal` result changes nothing). A gating round opens the gate if it was the
    /// one the gate waited for. Returns the servers that flipped.
    fn apply_round(&self, kind: RoundKind, results: Vec<(SocketAddr, ProbeResult)>) -> Vec<Flip> {
        let mut st = self.state.lock();
        let now = Instant::now();
        let mut flips = Vec::new();
        for (addr, result) in results {
            let Some(s) = st.servers.iter_mut().find(|s| s.addr == addr) else { continue };
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
                ProbeResult::Internal(_) => continue,
            }
            s.last_probe = Some(now);
            if was_up != s.up || (kind == RoundKind::Gating(0) && !s.up) {
                flips.push(Flip { addr, up: s.up, reason: s.reason.clone() });
            }
        }
        match kind {
            RoundKind::Gating(number) => {
                st.gate.finished(number, now);
            }
            RoundKind::Recovery => st.recovery.finished(now),
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
    /// Callers check the range (`config::parse_limit`); out-of-range values are clamped to it.
    pub fn set_limit(&self, limit: usize) {
        self.state.lock().limit = limit.clamp(1, crate::balancer::config::MAX_LIMIT);
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
        self.room_due.store(0, AtomicOrdering::Release); // the queue timeout may have changed
        let stats = Arc::clone(&self.stats);
        for s in st.servers.iter_mut() {
            s.retiring = !config.servers.iter().any(|c| c.addr == s.addr);
        }
        for c in &config.servers {
            if !st.servers.iter().any(|s| s.addr == c.addr) {
                st.servers.push(new_server(c.addr, &stats));
                // As at startup, hold dispatch until a round has probed the new servers: they
                // start down ("not probed yet"), and a reload that swaps every server would
                // otherwise answer 500 to the clients that arrive before that round ends.
                st.gate.servers_added();
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

    fn nanos(&self, t: Instant) -> u64 {
        u64::try_from(t.saturating_duration_since(self.started).as_nanos()).unwrap_or(u64::MAX - 1)
    }

    /// SIGTERM has come: a client whose response is done is closed, not kept alive.
    pub fn is_draining(&self) -> bool {
        self.state.lock().phase != Phase::Running
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
        st.unwatched = 0;
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
                name: st.config.servers.iter().find(|c| c.addr == s.addr).and_then(|c| c.name.clone()),
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
            abandoned: st.abandoned,
            mode: st.config.mode.name(),
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

/// A server probed and found down (by a probe or a failed connect): recovery rounds probe
/// it, gating rounds leave it out. A server not probed yet is not in recovery: the gate waits
/// for its first answer.
fn is_recovering(s: &Server) -> bool {
    !s.retiring && !s.up && s.last_probe.is_some()
}

/// How many workers could dispatch right now (an upper bound: a token or a server bound may
/// still make them wait). Wake-ups beyond this would find nothing to do.
fn dispatchable(st: &State) -> usize {
    if st.phase == Phase::Stopped {
        return 0;
    }
    if !st.gate.is_open() {
        // One worker to read the round the gate waits for, or to run it if nobody has.
        return usize::from((st.gate.has_parked() || st.gate.needs_round()) && !st.room.is_empty());
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

/// The probe thread: runs the rounds due at startup, after a reload, on the 5 s timer, and
/// the recovery rounds of servers that are down; the gating rounds after R dispatches are
/// sent and read by the workers (`Dispatcher::take`).
pub struct ProbeThread {
    pub dispatcher: Arc<Dispatcher>,
}

impl ProbeThread {
    pub fn run(self) {
        while let Some((kind, round)) = self.dispatcher.next_round() {
            self.dispatcher.finish_round(kind, round);
        }
    }
}

#[cfg(test)]
mod props;

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

    /// Whatever rate is stored, `take` answers: a token, or a due time after now and within
    /// the bound. Before issue #11, 1e-30 panicked in `Duration::from_secs_f64`.
    #[test]
    fn bucket_never_panics_for_any_rate() {
        let t0 = Instant::now();
        for rate in [1e-30, 5e-324, 1e308, f64::INFINITY, f64::NAN, -0.0, 0.0, -1.0, 1.8446744073709552e19, 1e5] {
            let mut b = Bucket::new(rate, 1, t0);
            assert!(b.take(t0).is_ok(), "{rate}: the first token is there");
            for later in [t0, t0 + Duration::from_secs(1), t0 + Duration::from_secs(1_000_000)] {
                if let Err(due) = b.take(later) {
                    assert!(due > later && due <= later + MAX_TOKEN_WAIT + Duration::from_millis(1), "{rate}");
                }
            }
        }
    }
}
