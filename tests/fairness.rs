//! Weighted fair sharing among client classes: with weights 2 and 1 both backlogged, slots
//! and completions split 2:1; a class alone gets every slot.

mod util;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use util::*;

/// Runs `clients` looping clients from `src` until `stop`; counts completed 200s.
fn class_load(
    src: &'static str,
    port: u16,
    clients: usize,
    stop: Arc<AtomicBool>,
    done: Arc<AtomicU64>,
) -> Vec<std::thread::JoinHandle<()>> {
    (0..clients)
        .map(|_| {
            let (stop, done) = (Arc::clone(&stop), Arc::clone(&done));
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
    let mut threads = class_load("127.0.0.2", lb.port, 8, Arc::clone(&stop), Arc::clone(&heavy));
    threads.extend(class_load("127.0.0.3", lb.port, 8, Arc::clone(&stop), Arc::clone(&light)));

    // Sample the slots held per class while both are backlogged (bounded count).
    let (mut slots_heavy, mut slots_light, mut samples) = (0u64, 0u64, 0);
    while samples < 40 {
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
    while heavy.load(Ordering::Relaxed) + light.load(Ordering::Relaxed) - h0 - l0 < 150 {
        std::thread::yield_now();
        assert!(status(admin)["served"].as_u64().unwrap() < 100_000);
    }
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
