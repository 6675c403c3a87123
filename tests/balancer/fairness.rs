//! Weighted fair sharing among client classes: with weights 2 and 1 both backlogged, slots
//! and completions split 2:1; a class alone gets every slot.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};

/// Completions so far, with a condition variable so the test waits on them, not on a clock.
#[derive(Default)]
struct Done {
    count: Mutex<()>,
    more: Condvar,
}
use crate::util::*;

/// Runs `clients` looping clients from `src` until `stop`; counts completed 200s.
fn class_load(
    src: &'static str,
    port: u16,
    clients: usize,
    stop: Arc<AtomicBool>,
    done: Arc<AtomicU64>,
    signal: Arc<Done>,
) -> Vec<std::thread::JoinHandle<()>> {
    (0..clients)
        .map(|_| {
            let (stop, done, signal) = (Arc::clone(&stop), Arc::clone(&done), Arc::clone(&signal));
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let raw = exchange_from(
                        Some(src),
                        port,
                        b"GET /api/v1/hello HTTP/1.1\r\nHost: x\r\n\r\n",
                        std::time::Duration::from_secs(20),
                    )
                    .unwrap();
                    if parse_reply(raw).status == 200 && !stop.load(Ordering::Relaxed) {
                        done.fetch_add(1, Ordering::Relaxed);
                        let _guard = signal.count.lock().unwrap();
                        signal.more.notify_all();
                    }
                }
            })
        })
        .collect()
}

#[test]
fn weights_two_to_one_share_slots_and_completions_two_to_one() {
    let a = backend(&["--delay-ms", "60", "--threads", "32"]);
    let lb = balancer(&["-N", "3", "--admin", "0", "--weight", "127.0.0.2=2", "--weight", "127.0.0.3=1"], &[a.port]);
    let admin = lb.admin.unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let heavy = Arc::new(AtomicU64::new(0));
    let light = Arc::new(AtomicU64::new(0));
    let signal = Arc::new(Done::default());
    let mut threads = class_load("127.0.0.2", lb.port, 8, Arc::clone(&stop), Arc::clone(&heavy), Arc::clone(&signal));
    threads.extend(class_load("127.0.0.3", lb.port, 8, Arc::clone(&stop), Arc::clone(&light), Arc::clone(&signal)));

    let total = || heavy.load(Ordering::Relaxed) + light.load(Ordering::Relaxed);
    // Waits (bounded) until `n` more requests completed: the clock of this test is the
    // servers' work, not wall time.
    let wait_completions = |n: u64| {
        let target = total() + n;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        let mut guard = signal.count.lock().unwrap();
        while total() < target {
            let left = deadline.checked_duration_since(std::time::Instant::now()).expect("no progress in 30 s");
            guard = signal.more.wait_timeout(guard, left).unwrap().0;
        }
    };
    // Warm up past the start, when whichever class connected first holds every slot.
    while heavy.load(Ordering::Relaxed) < 10 || light.load(Ordering::Relaxed) < 10 {
        wait_completions(1);
    }
    // Sample the slots held per class while both are backlogged, one sample per two
    // completions, so the samples cover many service times.
    let (mut slots_heavy, mut slots_light, mut samples) = (0u64, 0u64, 0);
    let mut tries = 0;
    while samples < 40 {
        tries += 1;
        assert!(tries < 1000, "the classes were never both backlogged");
        wait_completions(2);
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
    // Then count completions over a window of 150.
    let (h0, l0) = (heavy.load(Ordering::Relaxed), light.load(Ordering::Relaxed));
    wait_completions(150);
    let (h, l) = (heavy.load(Ordering::Relaxed) - h0, light.load(Ordering::Relaxed) - l0);
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().unwrap();
    }
    let slot_ratio = slots_heavy as f64 / slots_light as f64;
    let done_ratio = h as f64 / l as f64;
    assert!((1.7..=2.3).contains(&slot_ratio), "slots {slots_heavy}:{slots_light}");
    assert!((1.7..=2.3).contains(&done_ratio), "completions {h}:{l}");
    assert_eq!(inflight(a.port).1, 3);
}

#[test]
fn a_class_alone_gets_every_slot() {
    let a = backend(&["--delay-ms", "100", "--threads", "32"]);
    let lb = balancer(&["-N", "5", "--weight", "127.0.0.2=2", "--weight", "127.0.0.3=1"], &[a.port]);
    let port = lb.port;
    let hs: Vec<_> = (0..20)
        .map(|_| {
            std::thread::spawn(move || {
                let raw = exchange_from(
                    Some("127.0.0.3"),
                    port,
                    b"GET /api/v1/hello HTTP/1.1\r\nHost: x\r\n\r\n",
                    std::time::Duration::from_secs(20),
                )
                .unwrap();
                parse_reply(raw).status
            })
        })
        .collect();
    assert!(hs.into_iter().all(|h| h.join().unwrap() == 200));
    assert_eq!(inflight(a.port).1, 5, "the weight-1 class alone held all 5 slots");
}
