//! Weights hold per request: two classes of 16 keep-alive clients each, weights 2:1, share the
//! slots 2:1 while both are backlogged, though every client keeps its one connection open.

use crate::keepalive::{self, Act, Client, Group};
use crate::util::*;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// Completions per class, with a condition variable so the test waits on them.
#[derive(Default)]
struct Tally {
    heavy: AtomicU64,
    light: AtomicU64,
    lock: Mutex<()>,
    more: Condvar,
}

impl Tally {
    fn total(&self) -> u64 {
        self.heavy.load(Ordering::SeqCst) + self.light.load(Ordering::SeqCst)
    }
    /// Waits (bounded) for `n` more completions: the test's clock is the servers' work.
    fn wait(&self, n: u64) {
        let target = self.total() + n;
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut g = self.lock.lock().unwrap();
        while self.total() < target {
            let left = deadline.checked_duration_since(Instant::now()).expect("no progress in 30 s");
            g = self.more.wait_timeout(g, left).unwrap().0;
        }
    }
}

#[test]
fn weights_two_to_one_hold_per_request_for_keep_alive_clients() {
    let s = keepalive::start("s", &Group::new(), |_, name| {
        Act::After(Duration::from_millis(15), keepalive::ok(name, "ok"))
    });
    let lb = balancer(
        &[
            "--mode",
            "http",
            "-N",
            "3",
            "-R",
            "1000000",
            "--admin",
            "0",
            "--weight",
            "127.0.0.2=2",
            "--weight",
            "127.0.0.3=1",
        ],
        &[s.port],
    );
    let (port, admin) = (lb.port, lb.admin.unwrap());
    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Tally::default());
    let mut threads = Vec::new();
    for (src, heavy) in [("127.0.0.2", true), ("127.0.0.3", false)] {
        for _ in 0..16 {
            let (stop, tally) = (Arc::clone(&stop), Arc::clone(&tally));
            threads.push(std::thread::spawn(move || {
                let mut c = Client::connect_from(src, port);
                while !stop.load(Ordering::SeqCst) {
                    assert_eq!(c.get("/").status, 200);
                    let n = if heavy { &tally.heavy } else { &tally.light };
                    n.fetch_add(1, Ordering::SeqCst);
                    let _g = tally.lock.lock().unwrap();
                    tally.more.notify_all();
                }
            }));
        }
    }
    // Past the start, then slots sampled while both classes wait, then completions counted.
    while tally.heavy.load(Ordering::SeqCst) < 10 || tally.light.load(Ordering::SeqCst) < 10 {
        tally.wait(1);
    }
    let (mut slots_heavy, mut slots_light, mut samples, mut tries) = (0u64, 0u64, 0, 0);
    while samples < 30 {
        tries += 1;
        assert!(tries < 1000, "the classes were never both backlogged");
        tally.wait(2);
        let st = status(admin);
        let classes = st["classes"].as_array().unwrap().clone();
        let get =
            |k: &str, f: &str| classes.iter().find(|c| c["key"] == k).map(|c| c[f].as_u64().unwrap()).unwrap_or(0);
        if get("127.0.0.2", "queued") > 0 && get("127.0.0.3", "queued") > 0 {
            slots_heavy += get("127.0.0.2", "in_flight");
            slots_light += get("127.0.0.3", "in_flight");
            samples += 1;
        }
    }
    let (h0, l0) = (tally.heavy.load(Ordering::SeqCst), tally.light.load(Ordering::SeqCst));
    tally.wait(150);
    let (h, l) = (tally.heavy.load(Ordering::SeqCst) - h0, tally.light.load(Ordering::SeqCst) - l0);
    stop.store(true, Ordering::SeqCst);
    for t in threads {
        t.join().unwrap();
    }
    let slot_ratio = slots_heavy as f64 / slots_light.max(1) as f64;
    let done_ratio = h as f64 / l.max(1) as f64;
    assert!((1.6..=2.5).contains(&slot_ratio), "slots {slots_heavy}:{slots_light} = {slot_ratio:.2}, want 2:1");
    assert!((1.5..=2.7).contains(&done_ratio), "completions {h}:{l} = {done_ratio:.2}, want 2:1");
}
