//! One limit shared by several balancers (`--shared-limit redis://…`): each instance holds a
//! lease in Redis on a share of the group's `-N` slots, and its dispatcher dispatches at most
//! its share. Issue 14; the algorithm and the proof of the bound are in DESIGN.md (Shared
//! limit).
//!
//! # A lease's states
//!
//! ```text
//!             grant ok                     renew ok (every lease/3, or at once on a demand change)
//!   start ──────────────► leased ◄─────────────────────────────────────────┐
//!     │ Redis down,         │ ▲  \ Redis answers "recovering"               │
//!     │ fallback K > 0      │ │   ▼                                         │
//!     ▼                     │ │  recovering (share 0 until lease + grace)   │
//!   fallback ◄──────────────┤ │                                             │
//!   (K slots)   K > 0       │ └───────────── renew ok ─────────────┐        │
//!                           │ no renewal by sent + lease − lease/10 │        │
//!                           ▼                                       │        │
//!                        cut-off (0 slots; retry ≥ once a second) ──┘        │
//!                           │ sent + (lease + grace) · 0.9: cut every bridge │
//!                           └────────────────────────────────────────────────┘
//! ```
//!
//! Who moves it: the lease thread (`Shared::run`) makes every Redis call, one at a time, and
//! sets the dispatcher's cap (`Dispatcher::set_share`) with the deadline at which the lease
//! could have expired; the dispatcher itself stops at that deadline, so a lease thread blocked
//! in a (bounded) call cannot make dispatch late. The cut at the grace's end is armed after
//! every successful renewal on a switch with its own thread (`cut::Registry`), for the same
//! reason. Demand changes reach the lease thread through the dispatcher's demand hook, which
//! only sets a flag and signals a condition variable.
//!
//! Locking: `Inner::flags` (stop, demand changed) and `Inner::snapshot` (what `/status`
//! shows) are two small mutexes, never held together nor across a Redis call.

pub mod cut;
pub mod lease;
pub mod settings;
pub mod share;

pub use settings::Settings;

use crate::balancer::sched::{Dispatcher, ShareCap};
use lease::{Answer, Peer, Report, Store};
use parking_lot::{Condvar, Mutex};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// A lease's state as `/status` names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LeaseState {
    /// Within its lease: dispatching up to its share.
    Leased,
    /// Its lease could have expired and no renewal came: dispatching nothing new.
    CutOff,
    /// Redis lost the group's state: nothing is granted until lease + grace have passed.
    Recovering,
    /// Cut off, but using `--shared-fallback` slots anyway.
    Fallback,
}

impl LeaseState {
    pub const ALL: [LeaseState; 4] =
        [LeaseState::Leased, LeaseState::CutOff, LeaseState::Recovering, LeaseState::Fallback];

    pub fn name(self) -> &'static str {
        match self {
            LeaseState::Leased => "leased",
            LeaseState::CutOff => "cut-off",
            LeaseState::Recovering => "recovering",
            LeaseState::Fallback => "fallback",
        }
    }
}

/// One instance of the group, as last read from Redis.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InstanceView {
    pub id: String,
    pub share: usize,
    pub held: usize,
    pub demand: usize,
    pub expired: bool,
    /// This instance.
    pub me: bool,
}

/// The shared limit as `/status` and `/metrics` show it.
#[derive(Clone, Debug)]
pub struct View {
    pub name: String,
    pub id: String,
    pub redis: String,
    /// The cap on new dispatches now.
    pub share: usize,
    pub state: LeaseState,
    /// Until this instance stops dispatching unless renewed (0 when cut off).
    pub lease_left: Duration,
    pub instances: Vec<InstanceView>,
    pub renewals: u64,
    pub failures: u64,
}

impl View {
    /// The `shared` object of `/status`, written with serde like the rest of the document.
    pub fn json(&self) -> String {
        #[derive(serde::Serialize)]
        struct Instance<'a> {
            id: &'a str,
            share: usize,
            held: usize,
            demand: usize,
            expired: bool,
            #[serde(rename = "self")]
            me: bool,
        }
        #[derive(serde::Serialize)]
        struct Shared<'a> {
            name: &'a str,
            id: &'a str,
            redis: &'a str,
            share: usize,
            state: &'a str,
            lease_left_ms: u128,
            renewals: u64,
            failures: u64,
            instances: Vec<Instance<'a>>,
        }
        let doc = Shared {
            name: &self.name,
            id: &self.id,
            redis: &self.redis,
            share: self.share,
            state: self.state.name(),
            lease_left_ms: self.lease_left.as_millis(),
            renewals: self.renewals,
            failures: self.failures,
            instances: self
                .instances
                .iter()
                .map(|p| Instance {
                    id: &p.id,
                    share: p.share,
                    held: p.held,
                    demand: p.demand,
                    expired: p.expired,
                    me: p.me,
                })
                .collect(),
        };
        crate::common::json::to_string(&doc)
    }
}

/// What the lease thread publishes for the admin endpoint.
#[derive(Debug, Default)]
struct Snapshot {
    share: usize,
    /// The dispatcher's deadline for the share (when the lease could have expired).
    valid_until: Option<Instant>,
    recovering: bool,
    instances: Vec<InstanceView>,
    renewals: u64,
    failures: u64,
}

#[derive(Debug, Default)]
struct Flags {
    stop: bool,
    demand: bool,
}

/// Shared by the lease thread, the dispatcher's demand hook and the admin endpoint.
#[derive(Debug)]
pub struct Inner {
    flags: Mutex<Flags>,
    wake: Condvar,
    snapshot: Mutex<Snapshot>,
    settings: Settings,
    id: String,
}

impl Inner {
    /// The live view for `/status` (the snapshot lock only, briefly).
    pub fn view(&self) -> View {
        let s = self.snapshot.lock();
        let now = Instant::now();
        let valid = s.valid_until.is_some_and(|t| now < t);
        let state = match (valid, s.recovering) {
            (true, true) => LeaseState::Recovering,
            (true, false) => LeaseState::Leased,
            (false, _) if self.settings.fallback > 0 => LeaseState::Fallback,
            (false, _) => LeaseState::CutOff,
        };
        View {
            name: self.settings.name.clone(),
            id: self.id.clone(),
            redis: self.settings.url.clone(),
            share: if valid { s.share } else { self.settings.fallback },
            state,
            lease_left: s.valid_until.map_or(Duration::ZERO, |t| t.saturating_duration_since(now)),
            instances: s.instances.clone(),
            renewals: s.renewals,
            failures: s.failures,
        }
    }

    fn flag(&self, f: impl FnOnce(&mut Flags)) {
        f(&mut self.flags.lock());
        self.wake.notify_one();
    }
}

/// A running shared limit: the lease thread and the cut switch's thread.
pub struct Running {
    pub inner: Arc<Inner>,
    lease: JoinHandle<()>,
    switch: JoinHandle<()>,
    dispatcher: Arc<Dispatcher>,
}

impl Running {
    /// Caps the dispatcher at 0, takes the first lease (so a balancer never dispatches
    /// before it knows its share), and starts the threads. An unreachable Redis is an error
    /// (naming it) unless a fallback is set; then the instance starts with the fallback.
    pub fn start(settings: Settings, dispatcher: Arc<Dispatcher>) -> Result<Running, String> {
        let now = Instant::now();
        dispatcher.set_share(Some(ShareCap { slots: 0, until: now, after: 0 }));
        dispatcher.cuts.enable();
        let store = Store::new(&settings).map_err(|e| format!("shared limit: {e}"))?;
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos();
        let id = format!("{}-{:x}", std::process::id(), nanos & 0xffff_ffff_ffff);
        crate::info!(
            "shared: group '{}' on {} shares -N {}: lease {:?}, grace {:?}, fallback {} (instance {id})",
            settings.name,
            settings.url,
            dispatcher.demand().limit,
            settings.lease,
            settings.grace,
            settings.fallback
        );
        let inner = Arc::new(Inner {
            flags: Mutex::default(),
            wake: Condvar::new(),
            snapshot: Mutex::default(),
            settings: settings.clone(),
            id: id.clone(),
        });
        let mut shared = Shared {
            settings,
            id,
            store,
            dispatcher: Arc::clone(&dispatcher),
            inner: Arc::clone(&inner),
            seq: 0,
            cap: 0,
            first: true,
            last_ok: None,
            recover_until: None,
            peers: Vec::new(),
            cut_off_logged: false,
            failing_since: None,
        };
        if let Err(e) = shared.renew() {
            if shared.settings.fallback == 0 {
                return Err(format!("shared limit: cannot take a lease: {e}"));
            }
            shared.enter_cut_off(Instant::now());
        }
        let hook_inner = Arc::clone(&inner);
        dispatcher.set_demand_hook(Box::new(move || hook_inner.flag(|f| f.demand = true)));
        let spawn = |name: &str, f: Box<dyn FnOnce() + Send>| {
            std::thread::Builder::new()
                .name(name.into())
                .spawn(f)
                .map_err(|e| format!("cannot start the {name} thread: {e}"))
        };
        let lease = spawn("lease", Box::new(move || shared.run()))?;
        let d = Arc::clone(&dispatcher);
        let switch = spawn("cut-switch", Box::new(move || d.cuts.run_switch()))?;
        Ok(Running { inner, lease, switch, dispatcher })
    }

    /// After the drain: cuts what still runs, releases the lease, stops the threads.
    pub fn stop(self) {
        self.inner.flag(|f| f.stop = true);
        if self.lease.join().is_err() {
            crate::error!("internal: the lease thread panicked");
        }
        self.dispatcher.cuts.stop_switch();
        if self.switch.join().is_err() {
            crate::error!("internal: the cut switch's thread panicked");
        }
    }
}

/// The lease thread.
struct Shared {
    settings: Settings,
    id: String,
    store: Store,
    dispatcher: Arc<Dispatcher>,
    inner: Arc<Inner>,
    /// Of the last call sent; never reused.
    seq: u64,
    /// The share applied from the last successful call (what the dispatcher enforces while
    /// that lease is valid).
    cap: usize,
    /// No call has succeeded yet: the next one is a grant.
    first: bool,
    /// When the last successful call was *sent*: the lease is measured from there.
    last_ok: Option<Instant>,
    recover_until: Option<Instant>,
    peers: Vec<Peer>,
    cut_off_logged: bool,
    failing_since: Option<Instant>,
}

impl Shared {
    fn period(&self) -> Duration {
        self.settings.lease / 3
    }

    /// Until when a lease renewed by a call sent at `sent` can be trusted: less a tenth of
    /// the lease for clock-rate drift between us and Redis.
    fn valid_until(&self, sent: Instant) -> Instant {
        sent + self.settings.lease - self.settings.lease / 10
    }

    /// When our work must be gone if that lease is not renewed: Redis re-grants its slots
    /// after lease + grace; we cut with the same tenth's margin.
    fn cut_at(&self, sent: Instant) -> Instant {
        let span = self.settings.lease + self.settings.grace;
        sent + span - span / 10
    }

    fn run(mut self) {
        let retry = self.period().min(Duration::from_secs(1));
        let min_gap = (self.settings.lease / 60).max(Duration::from_millis(5));
        let mut last_call = Instant::now();
        let mut next = last_call + if self.last_ok.is_some() { self.period() } else { retry };
        let mut pending = false;
        loop {
            let now = Instant::now();
            // The earliest of: the next scheduled call, a pending demand call once the gap
            // allows, the moment the lease could expire (to log it and apply the fallback),
            // the end of a recovery.
            let mut wake = next;
            if pending {
                wake = wake.min(last_call + min_gap);
            }
            if let Some(ok) = self.last_ok.filter(|_| !self.cut_off_logged) {
                wake = wake.min(self.valid_until(ok));
            }
            if let Some(r) = self.recover_until {
                wake = wake.min(r);
            }
            {
                let mut f = self.inner.flags.lock();
                if !f.stop && !f.demand && wake > now {
                    self.inner.wake.wait_until(&mut f, wake);
                }
                if f.stop {
                    drop(f);
                    self.leave();
                    return;
                }
                pending |= std::mem::take(&mut f.demand);
            }
            let now = Instant::now();
            if let Some(ok) = self.last_ok
                && now >= self.valid_until(ok)
                && !self.cut_off_logged
            {
                self.enter_cut_off(now);
            }
            let recovered = self.recover_until.is_some_and(|r| now >= r);
            if now >= next || recovered || (pending && now >= last_call + min_gap) {
                pending = false;
                last_call = now;
                let ok = self.renew().is_ok();
                next = Instant::now() + if ok { self.period() } else { retry };
            }
        }
    }

    /// One grant or renewal; applies the answer. The error is logged once per outage.
    fn renew(&mut self) -> Result<(), String> {
        let d = self.dispatcher.demand();
        let demand = d.waiting + d.in_flight;
        let want = self.want(demand, d.limit);
        self.seq += 1;
        // Until the answer is applied the dispatcher may use the current share or, past its
        // deadline, the fallback: report the larger, so the group counts it.
        let cap = self.cap.max(self.settings.fallback);
        let report = Report { seq: self.seq, demand, in_flight: d.in_flight, cap, want, limit: d.limit };
        let sent = Instant::now();
        let result = self.store.settle(&self.id, &report, self.first);
        let now = Instant::now();
        let err = match result {
            Ok(Answer::Lease { share, held, recovering, recover_left, lost, peers })
                if now < self.valid_until(sent) =>
            {
                self.apply(sent, now, share, held, recovering, recover_left, lost, peers, &report);
                return Ok(());
            }
            Ok(Answer::Lease { .. }) => {
                format!("the answer took {:?}, longer than the lease can be trusted", now - sent)
            }
            Ok(Answer::Stale) => "Redis holds a newer call of ours (a clock or id clash?)".to_string(),
            Err(e) => e.to_string(),
        };
        self.inner.snapshot.lock().failures += 1;
        match self.failing_since {
            None => {
                self.failing_since = Some(now);
                crate::warn!("shared: cannot renew the lease: {err}; retrying");
            }
            Some(_) => crate::debug!("shared: cannot renew the lease: {err}"),
        }
        Err(err)
    }

    #[allow(clippy::too_many_arguments)] // one answer's fields, applied together
    fn apply(
        &mut self,
        sent: Instant,
        now: Instant,
        share: usize,
        held: usize,
        recovering: bool,
        recover_left: Duration,
        lost: bool,
        peers: Vec<Peer>,
        report: &Report,
    ) {
        let until = self.valid_until(sent);
        let lowered = share < self.cap;
        let changed = share != self.cap || self.first;
        self.cap = share;
        self.first = false;
        self.last_ok = Some(sent);
        self.dispatcher.set_share(Some(ShareCap { slots: share, until, after: self.settings.fallback }));
        self.dispatcher.cuts.arm(Some(self.cut_at(sent)));
        if let Some(since) = self.failing_since.take() {
            crate::info!("shared: lease renewed again after {:.1}s without", (now - since).as_secs_f64());
        }
        if self.cut_off_logged {
            self.cut_off_logged = false;
            crate::info!("shared: dispatching again (share {share})");
        }
        if lost {
            crate::warn!("shared: our lease had expired past its grace; granted anew");
        }
        let was_recovering = self.recover_until.is_some();
        self.recover_until = recovering.then(|| now + recover_left);
        if recovering && !was_recovering {
            crate::warn!(
                "shared: group '{}' is recovering (its state in Redis is new or was lost): nothing is granted for {} ms",
                self.settings.name,
                recover_left.as_millis()
            );
        } else if was_recovering && !recovering {
            crate::info!("shared: group '{}' recovered", self.settings.name);
        }
        if changed {
            crate::debug!(
                "shared: share {share} of {} (held {held}, asked {}, demand {}, {} other instance(s))",
                report.limit,
                report.want,
                report.demand,
                peers.len()
            );
        }
        self.peers = peers;
        let mut instances: Vec<InstanceView> = self
            .peers
            .iter()
            .map(|p| InstanceView {
                id: p.id.clone(),
                share: p.share,
                held: p.held,
                demand: p.demand,
                expired: p.expired,
                me: false,
            })
            .collect();
        instances.push(InstanceView {
            id: self.id.clone(),
            share,
            held,
            demand: report.demand,
            expired: false,
            me: true,
        });
        instances.sort_by(|a, b| a.id.cmp(&b.id));
        {
            let mut s = self.inner.snapshot.lock();
            s.share = share;
            s.valid_until = Some(until);
            s.recovering = recovering;
            s.instances = instances;
            s.renewals += 1;
        }
        // Call again at once when the group would learn something: a lowered share applied
        // (so it stops counting the old one), or a target that the new snapshot changes.
        let d = self.dispatcher.demand();
        if lowered || self.want(d.waiting + d.in_flight, d.limit) != report.want {
            self.inner.flag(|f| f.demand = true);
        }
    }

    /// The share to ask for: the max-min fair target over the live instances as last read,
    /// with our demand as it is now.
    fn want(&self, demand: usize, limit: usize) -> usize {
        let quarantined: usize = self.peers.iter().filter(|p| p.expired).map(|p| p.held).sum();
        let mut demands: Vec<(String, usize)> =
            self.peers.iter().filter(|p| !p.expired).map(|p| (p.id.clone(), p.demand)).collect();
        demands.push((self.id.clone(), demand));
        share::target(limit.saturating_sub(quarantined), &demands, &self.id)
    }

    /// The lease could have expired: the dispatcher already stopped at the deadline (or uses
    /// the fallback); log it once and make the fallback's workers wake.
    fn enter_cut_off(&mut self, now: Instant) {
        self.cut_off_logged = true;
        let k = self.settings.fallback;
        self.dispatcher.set_share(Some(ShareCap { slots: k, until: now, after: k }));
        if k > 0 {
            crate::warn!("shared: no lease: using the fallback of {k} slot(s); the group may exceed -N by {k}");
        } else {
            crate::warn!("shared: no lease since it could have expired: dispatching nothing new; clients wait");
        }
    }

    /// SIGTERM, after the drain: cut whatever still runs, then give the lease back.
    fn leave(&mut self) {
        let d = self.dispatcher.demand();
        if d.in_flight > 0 {
            let n = self.dispatcher.cuts.cut_all();
            crate::info!("shared: cut {n} bridge(s) still running at exit");
        }
        self.dispatcher.set_share(Some(ShareCap { slots: 0, until: Instant::now(), after: 0 }));
        match self.store.release(&self.id, d.in_flight) {
            Ok(()) => crate::info!("shared: lease released"),
            Err(e) => crate::warn!("shared: cannot release the lease: {e}; its slots return after lease + grace"),
        }
    }
}
