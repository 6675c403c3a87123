//! Pacing and live control: --rate stretches a burst over time without refusing anyone;
//! PUT /rate and PUT /limit take effect at once; bad bodies change nothing.

use crate::util::*;
use std::time::{Duration, Instant};

fn burst(port: u16, n: usize) -> Duration {
    let t0 = Instant::now();
    let hs: Vec<_> = (0..n).map(|_| std::thread::spawn(move || get(port, "/api/v1/hello").status)).collect();
    assert!(hs.into_iter().all(|h| h.join().unwrap() == 200), "every paced client is served");
    t0.elapsed()
}

#[test]
fn rate_20_stretches_60_instant_requests_over_about_3_seconds() {
    let a = backend(&["--threads", "32"]);
    let lb = balancer(&["--rate", "20"], &[a.port]);
    let took = burst(lb.port, 60);
    // 4 at once (burst = N), then 56 at 20/s: 2.8 s at the least.
    assert!(took >= Duration::from_millis(2700), "took {took:?}");
    assert!(took < Duration::from_secs(15), "took {took:?}");
}

#[test]
fn rate_and_limit_change_at_runtime() {
    // 600 ms per request at 5 per second: about three overlap once the limit allows it.
    let a = backend(&["--delay-ms", "600", "--threads", "32"]);
    let lb = balancer(&["-N", "1", "--admin", "0"], &[a.port]);
    let admin = lb.admin.unwrap();
    assert!(status(admin)["rate"].is_null());

    let r = request(admin, "PUT", "/rate", b"5");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(status(admin)["rate"].as_f64(), Some(5.0));
    let r = request(admin, "PUT", "/limit", b"4");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(status(admin)["limit"].as_u64(), Some(4));
    // Burst is 1 (the starting N): 11 more at 5/s take 2.2 s at the least.
    let took = burst(lb.port, 12);
    assert!(took >= Duration::from_millis(2100), "took {took:?}");
    assert!(inflight(a.port).1 >= 2, "the raised limit let more than one through");

    assert_eq!(request(admin, "PUT", "/rate", b"off").status, 200);
    assert!(status(admin)["rate"].is_null());
    burst(lb.port, 16);
    assert_eq!(inflight(a.port).1, 4, "limit 4 filled, never exceeded");

    for (path, body) in [("/rate", &b"fast"[..]), ("/rate", b"-3"), ("/limit", b"0"), ("/limit", b"x")] {
        let r = request(admin, "PUT", path, body);
        assert_eq!(r.status, 400, "{path} {body:?}");
        assert_eq!(r.text().lines().count(), 1, "one-line reason: {}", r.text());
    }
    assert!(status(admin)["rate"].is_null());
    assert_eq!(status(admin)["limit"].as_u64(), Some(4));
    assert_eq!(get(admin, "/nope").status, 404);
}

#[test]
fn status_reports_every_field() {
    let a = backend(&[]);
    let lb = balancer(&["--admin", "0", "--max-per-server", "3"], &[a.port]);
    assert_eq!(get(lb.port, "/api/v1/hello").status, 200);
    let st = status(lb.admin.unwrap());
    for key in ["limit", "in_flight", "queued", "rate", "served", "rejected", "servers", "classes"] {
        assert!(st.get(key).is_some(), "/status has {key}: {st}");
    }
    assert_eq!(st["served"].as_u64(), Some(1));
    let s = &st["servers"][0];
    for key in ["address", "up", "entries", "errors", "in_flight", "max_in_flight", "last_probe"] {
        assert!(s.get(key).is_some(), "server has {key}: {s}");
    }
    assert_eq!(s["address"], format!("127.0.0.1:{}", a.port));
    assert_eq!(s["up"], true);
}
