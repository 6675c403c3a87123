//! Property tests of the dispatcher (issue 13, "Fuzzing and properties"): proptest draws a
//! set-up (servers, `-N`, per-server bound, `-R`, balance rule, class weights, queue size) and
//! a sequence of events (arrivals by class, completions, connect failures, gating and recovery
//! rounds with any replies, limit and rate changes, clients giving up), and plays them against
//! a real `Dispatcher`. The idle workers are played by `try_take` after every event, until it
//! says no, as the workers blocked in `take` would be woken to do. Probe rounds are applied
//! through the dispatcher's own `begin_gating` / `apply_round`, with the replies drawn rather
//! than sent (no server is ever connected to; jobs carry clones of one real connected socket).
//!
//! After every event it checks:
//! - **bounds**: each dispatch leaves `in_flight` at or below the cap it was made under, and
//!   every server at or below `--max-per-server`; the counts equal the tickets held (no slot
//!   leaks, none is counted twice);
//! - **work conservation**: while a connection waits, a slot is free, the gate is open, some
//!   server can take it (or none is up: the 500 is an answer too) and a token is there, a
//!   dispatch happens (and `dispatchable`, which decides how many workers are woken, says so);
//! - **fair pick**: every dispatch goes to a waiting class of least `in_flight / weight`.
//!
//! A second property checks shares over time: while every class stays busy and slots turn
//! over (completions in any order, the limit raised), each class holds its weighted share of
//! the slots within one request: `(held_a - 1) / w_a <= held_b / w_b` for every pair.
//!
//! Test code only (`#[cfg(test)]`): its `unwrap`s are on set-up that cannot fail here (a
//! literal CIDR, a valid config, a loopback socket), and a failure would fail the test.

use super::*;
use crate::balancer::config::{Cidr, Layer};
use proptest::prelude::*;
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, TcpListener};

const CLASSES: usize = 4;
const MAX_SERVERS: usize = 4;

#[derive(Debug, Clone)]
struct Setup {
    servers: usize,
    limit: usize,
    per_server: Option<usize>,
    probe_every: u64,
    balance: Balance,
    weights: [u32; CLASSES],
    queue_max: usize,
}

/// What a server answers to a probe in a drawn round.
#[derive(Debug, Clone, Copy)]
enum Reply {
    Up(u64, u64),
    Down,
    Internal,
}

#[derive(Debug, Clone)]
enum Op {
    /// A client of this class has spoken: it is pushed into the waiting room.
    Arrive(usize),
    /// The bridge of a held ticket (index, modulo the number held) ends: its slot is dropped.
    Complete(usize),
    /// A held ticket's server refuses the connect: failover.
    ConnectFails(usize),
    /// A gating round is applied with these replies (by server index).
    Gating([Reply; MAX_SERVERS]),
    /// A recovery round (the servers down) is applied with these replies.
    Recovery([Reply; MAX_SERVERS]),
    Limit(usize),
    Rate(Option<f64>),
    /// A waiting client (index, modulo the number waiting) gives up.
    Abandon(usize),
}

fn setup() -> impl Strategy<Value = Setup> {
    (
        1..=MAX_SERVERS,
        1usize..=8,
        prop_oneof![Just(None), (1usize..=3).prop_map(Some)],
        prop_oneof![1u64..=6, Just(1_000_000)],
        prop_oneof![Just(Balance::LeastLoaded), Just(Balance::LeastConn), Just(Balance::RoundRobin)],
        [1u32..=4, 1u32..=4, 1u32..=4, 1u32..=4],
        1usize..=24,
    )
        .prop_map(|(servers, limit, per_server, probe_every, balance, weights, queue_max)| Setup {
            servers,
            limit,
            per_server,
            probe_every,
            balance,
            weights,
            queue_max,
        })
}

fn reply() -> impl Strategy<Value = Reply> {
    prop_oneof![
        4 => (0u64..4, 0u64..20).prop_map(|(e, n)| Reply::Up(e, n)),
        2 => Just(Reply::Down),
        1 => Just(Reply::Internal),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    let replies = || [reply(), reply(), reply(), reply()];
    prop_oneof![
        8 => (0..CLASSES).prop_map(Op::Arrive),
        6 => any::<usize>().prop_map(Op::Complete),
        1 => any::<usize>().prop_map(Op::ConnectFails),
        2 => replies().prop_map(Op::Gating),
        1 => replies().prop_map(Op::Recovery),
        1 => (1usize..=10).prop_map(Op::Limit),
        1 => prop_oneof![Just(None), Just(Some(0.001)), Just(Some(1e6))].prop_map(Op::Rate),
        1 => any::<usize>().prop_map(Op::Abandon),
    ]
}

/// A dispatcher for `s`: servers 127.0.0.1:1001.. (never connected to), class c is the client
/// address 10.0.0.(c+1), weighted by its own /32 block.
fn dispatcher(s: &Setup) -> Arc<Dispatcher> {
    let layer = Layer {
        port: Some(1),
        servers: Some((0..s.servers).map(|i| format!("127.0.0.1:{}", 1001 + i)).collect()),
        connections: Some(s.limit),
        probe_every: Some(s.probe_every),
        max_per_server: s.per_server,
        queue_max: Some(s.queue_max),
        balance: Some(s.balance),
        weights: Some(
            (0..CLASSES).map(|c| (Cidr::parse(&format!("10.0.0.{}/32", c + 1)).unwrap(), s.weights[c])).collect(),
        ),
        ..Layer::default()
    };
    let config = Arc::new(Config::build(layer).unwrap());
    let waker = Arc::new(Waker::new().unwrap());
    Dispatcher::new(config, Arc::new(Stats::default()), waker, Arc::new(Watch::new().unwrap()))
}

/// A dispatcher and what the test holds: the tickets the "workers" hold, the ids waiting.
struct Harness {
    d: Arc<Dispatcher>,
    /// One connected socket; every job carries a clone (jobs need a real `TcpStream`).
    conn: TcpStream,
    _peer: TcpStream,
    held: Vec<Ticket>,
    waiting: Vec<u64>,
    next_id: u64,
    bound: Option<usize>,
}

impl Harness {
    fn new(d: Arc<Dispatcher>) -> Harness {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let conn = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (peer, _) = listener.accept().unwrap();
        let bound = d.config().max_per_server;
        Harness { d, conn, _peer: peer, held: Vec::new(), waiting: Vec::new(), next_id: 0, bound }
    }

    fn arrive(&mut self, class: usize) {
        self.next_id += 1;
        let peer = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, class as u8 + 1)), 40000);
        let job = Job {
            client: self.conn.try_clone().unwrap(),
            peer,
            id: self.next_id,
            request: None,
            unwatched: false,
            registered: false,
        };
        let (before, max) = {
            let st = self.d.state.lock();
            (st.room.len(), st.config.queue_max)
        };
        match self.d.push(job) {
            Ok(n) => {
                assert!(before < max && n == before + 1, "pushed into a full room");
                self.waiting.push(self.next_id);
            }
            Err(_) => assert!(before >= max, "refused with room left: {before} of {max}"),
        }
    }

    /// Plays the idle workers: takes while `try_take` gives, checking each dispatch, and
    /// checks that it stops only when nothing is dispatchable.
    fn fill(&mut self) {
        loop {
            let st = self.d.state.lock();
            let due = dispatch_due(&st);
            if due {
                assert!(dispatchable(&st) > 0, "work is dispatchable but no worker would be woken");
            }
            let (before, cap_now) = (st.in_flight, cap(&st));
            let classes = st.room.views();
            drop(st);
            let Some(ticket) = self.d.try_take() else {
                assert!(!due, "a slot is idle while dispatchable work waits");
                return;
            };
            let st = self.d.state.lock();
            assert!(before < cap_now && st.in_flight == before + 1, "dispatched over the cap {cap_now}");
            if let Some(i) = ticket.route.slot.server {
                let s = &st.servers[i];
                assert!(s.up && !s.retiring, "dispatched to a server down");
                assert!(self.bound.is_none_or(|m| s.in_flight <= m), "server {i} over its bound");
            } else {
                assert_eq!(choose(&st, &[]), Choice::NoneUp, "a 500 while a server is up");
            }
            drop(st);
            // The fair pick: no waiting class holds less than its weight's share of the chosen.
            let chosen = classes.iter().find(|c| c.key == ticket.route.slot.class).expect("the class was there");
            for c in classes.iter().filter(|c| c.queued > 0) {
                assert!(
                    chosen.in_flight as u64 * u64::from(c.weight) <= c.in_flight as u64 * u64::from(chosen.weight),
                    "picked {} ({}/{}) over {} ({}/{})",
                    chosen.key,
                    chosen.in_flight,
                    chosen.weight,
                    c.key,
                    c.in_flight,
                    c.weight
                );
            }
            self.waiting.retain(|&id| id != ticket.job.id);
            self.held.push(ticket);
        }
    }

    fn connect_fails(&mut self, k: usize) {
        if self.held.is_empty() {
            return;
        }
        let k = k % self.held.len();
        let slot = &self.held[k].route.slot;
        let Some(failed) = slot.server else { return };
        // failover waits while every other live server is at its bound (a release wakes it);
        // single-threaded, that would never end, so that case is left out.
        let st = self.d.state.lock();
        let table: Vec<Candidate> = st
            .servers
            .iter()
            .enumerate()
            .map(|(i, s)| Candidate {
                up: s.up && i != failed,
                retiring: s.retiring,
                entries: s.entries,
                errors: s.errors,
                in_flight: s.in_flight - usize::from(i == failed),
            })
            .collect();
        let predicted = select::choose(&table, st.config.balance, st.config.max_per_server, st.cursor, &slot.tried);
        drop(st);
        if predicted == Choice::AllBusy {
            return;
        }
        let ticket = &mut self.held[k];
        let tried: Vec<usize> = ticket.route.slot.tried.clone();
        match self.d.failover(&mut ticket.route.slot, "connection refused") {
            Failover::Retry(..) => {
                let i = ticket.route.slot.server.expect("a retry holds a server");
                assert!(!tried.contains(&i), "retried server {i} again");
                let st = self.d.state.lock();
                assert!(!st.servers[failed].up, "the failed server is still up");
                assert!(self.bound.is_none_or(|m| st.servers[i].in_flight <= m), "failover over the bound");
            }
            Failover::NoneLeft => {
                // The worker answers 500 and releases the slot.
                self.held.swap_remove(k);
            }
        }
    }

    fn gating(&mut self, replies: &[Reply; MAX_SERVERS]) {
        let (number, addrs) = {
            let mut st = self.d.state.lock();
            self.d.begin_gating(&mut st)
        };
        let results = self.results(&addrs, replies);
        self.d.apply_round(RoundKind::Gating(number), results);
    }

    fn recovery(&mut self, replies: &[Reply; MAX_SERVERS]) {
        let addrs: Vec<SocketAddr> = {
            let mut st = self.d.state.lock();
            st.recovery.begin();
            st.servers.iter().filter(|s| is_recovering(s)).map(|s| s.addr).collect()
        };
        let results = self.results(&addrs, replies);
        self.d.apply_round(RoundKind::Recovery, results);
    }

    /// The drawn replies of the servers at `addrs` (by their index in the table).
    fn results(&self, addrs: &[SocketAddr], replies: &[Reply; MAX_SERVERS]) -> Vec<(SocketAddr, ProbeResult)> {
        let config = self.d.config();
        addrs
            .iter()
            .map(|a| {
                let i = config.servers.iter().position(|s| s.addr == *a).unwrap();
                let r = match replies[i] {
                    Reply::Up(errors, entries) => ProbeResult::Up { errors, entries },
                    Reply::Down => ProbeResult::Down("answered 'HTTP/1.1 503'".into()),
                    Reply::Internal => ProbeResult::Internal("out of descriptors".into()),
                };
                (*a, r)
            })
            .collect()
    }

    fn abandon(&mut self, k: usize) {
        if self.waiting.is_empty() {
            return;
        }
        let id = self.waiting.swap_remove(k % self.waiting.len());
        assert!(self.d.abandon(id).is_some(), "client {id} was waiting");
    }

    /// The counts in the dispatcher are the tickets held and the clients waiting.
    fn check_counts(&self) {
        let st = self.d.state.lock();
        assert_eq!(st.in_flight, self.held.len(), "slots in flight vs tickets held");
        assert_eq!(st.room.len(), self.waiting.len(), "waiting room vs clients waiting");
        for (i, s) in st.servers.iter().enumerate() {
            let held = self.held.iter().filter(|t| t.route.slot.server == Some(i)).count();
            assert_eq!(s.in_flight, held, "server {i}: in flight vs tickets");
            assert!(self.bound.is_none_or(|m| s.in_flight <= m), "server {i} over its bound");
        }
        let mut by_class: HashMap<&str, usize> = HashMap::new();
        for t in &self.held {
            *by_class.entry(&t.route.slot.class).or_default() += 1;
        }
        for c in st.room.views() {
            assert_eq!(c.in_flight, by_class.get(c.key.as_str()).copied().unwrap_or(0), "class {}", c.key);
        }
    }
}

/// Whether a dispatch must happen now: a connection waits, a slot is free under the cap, the
/// gate is open, a server can take it (or none is up: it gets the 500), and a token is there.
fn dispatch_due(st: &State) -> bool {
    let token = st.bucket.as_ref().is_none_or(|b| {
        let elapsed = Instant::now().saturating_duration_since(b.last).as_secs_f64();
        (b.tokens + elapsed * b.rate).min(b.burst) >= 1.0
    });
    st.phase == Phase::Running
        && !st.room.is_empty()
        && st.in_flight < cap(st)
        && st.gate.is_open()
        && choose(st, &[]) != Choice::AllBusy
        && token
}

proptest! {
    #[test]
    fn bounds_hold_and_no_slot_idles_while_work_waits(s in setup(), ops in prop::collection::vec(op(), 1..80)) {
        let mut h = Harness::new(dispatcher(&s));
        h.fill();
        h.check_counts();
        for op in &ops {
            match *op {
                Op::Arrive(c) => h.arrive(c),
                Op::Complete(k) => {
                    if !h.held.is_empty() {
                        let k = k % h.held.len();
                        drop(h.held.swap_remove(k));
                    }
                }
                Op::ConnectFails(k) => h.connect_fails(k),
                Op::Gating(ref r) => h.gating(r),
                Op::Recovery(ref r) => h.recovery(r),
                Op::Limit(n) => h.d.set_limit(n),
                Op::Rate(r) => h.d.set_rate(r),
                Op::Abandon(k) => h.abandon(k),
            }
            h.fill();
            h.check_counts();
        }
        h.held.clear();
        prop_assert!(h.d.is_idle() || !h.waiting.is_empty());
        prop_assert_eq!(h.d.stop().len(), h.waiting.len());
    }

    #[test]
    fn busy_classes_share_slots_by_weight_within_one_request(
        weights in prop::collection::vec(1u32..=5, 2..=CLASSES),
        limit in 1usize..=12,
        ops in prop::collection::vec(prop_oneof![4 => any::<usize>().prop_map(Some), 1 => Just(None)], 1..120),
    ) {
        let mut w = [1; CLASSES];
        w[..weights.len()].copy_from_slice(&weights);
        let s = Setup {
            servers: 2,
            limit,
            per_server: None,
            probe_every: 1_000_000,
            balance: Balance::LeastConn,
            weights: w,
            queue_max: 10_000,
        };
        let mut h = Harness::new(dispatcher(&s));
        h.gating(&[Reply::Up(0, 0); MAX_SERVERS]);
        let mut limit = limit;
        for op in ops {
            match op {
                Some(k) if !h.held.is_empty() => drop(h.held.swap_remove(k % h.held.len())),
                Some(_) => {}
                None => {
                    limit = (limit + 1).min(30);
                    h.d.set_limit(limit);
                }
            }
            // Every class stays busy: more waiting than could ever be dispatched at once.
            for c in 0..weights.len() {
                let queued = h.d.view().classes.iter().find(|v| v.key == format!("10.0.0.{}", c + 1)).map_or(0, |v| v.queued);
                for _ in queued..=limit {
                    h.arrive(c);
                }
            }
            h.fill();
            h.check_counts();
            prop_assert_eq!(h.held.len(), limit, "every slot busy");
            let view = h.d.view();
            for a in &view.classes {
                for b in &view.classes {
                    // (held_a - 1) / w_a <= held_b / w_b, without division.
                    prop_assert!(
                        (a.in_flight as u64).saturating_sub(1) * u64::from(b.weight)
                            <= b.in_flight as u64 * u64::from(a.weight),
                        "{} holds {} at weight {}, {} holds {} at weight {}",
                        a.key, a.in_flight, a.weight, b.key, b.in_flight, b.weight
                    );
                }
            }
        }
    }
}
