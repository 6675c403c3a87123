//! Issue 14: one limit shared by several balancers through Redis. Real `redis-server`s (each
//! test starts its own on a free port and stops it, also on failure), real balancers, and test
//! servers that count the requests in progress across all of them, so the bound is asserted
//! from the servers' side. Short leases (600 ms, grace 1 s) keep the file fast.

use crate::redis::Redis;
use crate::util::*;
use nix::sys::signal::Signal;
use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

const N: usize = 6;
const LEASE: Duration = Duration::from_millis(600);
const GRACE: Duration = Duration::from_secs(1);
/// A renewal every lease/3.
const PERIOD: Duration = Duration::from_millis(200);

/// What the counting servers have seen, across all of them.
#[derive(Default)]
struct Seen {
    now: usize,
    max: usize,
    /// Per tag (the last path segment: which balancer's clients), requests in progress.
    by_tag: HashMap<String, usize>,
    /// (when, tag, that tag's count after it): every arrival.
    arrivals: Vec<(Instant, String, usize)>,
    /// (when, tag): requests whose connection was closed before their answer.
    cut: Vec<(Instant, String)>,
}

struct Count {
    seen: Mutex<Seen>,
    changed: Condvar,
}

impl Count {
    /// Waits until `pred` holds, up to `timeout`; false if it never did.
    fn wait(&self, timeout: Duration, pred: impl Fn(&Seen) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        let mut s = self.seen.lock().unwrap();
        while !pred(&s) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            s = self.changed.wait_timeout(s, left).unwrap().0;
        }
        true
    }

    fn max(&self) -> usize {
        self.seen.lock().unwrap().max
    }
}

/// `n` servers sharing one count. `GET /hold/MS/TAG` is held MS ms, or until the balancer
/// closes the connection (a cut), then answered; `/healthcheck` says 0 errors, 0 entries.
fn counting_servers(n: usize) -> (Vec<u16>, Arc<Count>) {
    let count = Arc::new(Count { seen: Mutex::default(), changed: Condvar::new() });
    let ports = (0..n)
        .map(|_| {
            let c = Arc::clone(&count);
            serve_each(move |s| serve_counted(s, &c))
        })
        .collect();
    (ports, count)
}

fn serve_counted(mut s: TcpStream, c: &Count) {
    let _ = s.set_read_timeout(Some(Duration::from_secs(20)));
    let Some(head) = read_head(&mut s) else { return };
    let head = String::from_utf8_lossy(&head).into_owned();
    let path = head.split_whitespace().nth(1).unwrap_or("").to_string();
    if path == "/healthcheck" {
        let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\n0\n0\n");
        return;
    }
    let hold = Duration::from_millis(path.split('/').nth(2).and_then(|m| m.parse().ok()).unwrap_or(0));
    let tag = path.rsplit('/').next().unwrap_or("").to_string();
    {
        let mut seen = c.seen.lock().unwrap();
        seen.now += 1;
        seen.max = seen.max.max(seen.now);
        let t = seen.by_tag.entry(tag.clone()).or_default();
        *t += 1;
        let n = *t;
        seen.arrivals.push((Instant::now(), tag.clone(), n));
    }
    c.changed.notify_all();
    // Hold: a blocking read that ends at the deadline, or early when the balancer closes.
    let deadline = Instant::now() + hold;
    let mut closed = false;
    let mut buf = [0u8; 256];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        let _ = s.set_read_timeout(Some(left.max(Duration::from_millis(1))));
        match s.read(&mut buf) {
            Ok(0) => {
                closed = true;
                break;
            }
            Ok(_) => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => break,
            Err(_) => {
                closed = true;
                break;
            }
        }
    }
    {
        let mut seen = c.seen.lock().unwrap();
        seen.now -= 1;
        *seen.by_tag.entry(tag.clone()).or_default() -= 1;
        if closed {
            seen.cut.push((Instant::now(), tag));
        }
    }
    c.changed.notify_all();
    if !closed {
        let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok");
    }
}

/// `n` clients, each sending `GET path` one after another until stopped (or until their
/// balancer is gone). Statuses are counted.
struct Load {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<Vec<u16>>>,
}

impl Load {
    fn start(port: u16, n: usize, path: &str) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        let threads = (0..n)
            .map(|_| {
                let (stop, req) = (Arc::clone(&stop), req.clone());
                std::thread::spawn(move || {
                    let mut statuses = Vec::new();
                    // Bounded: by the stop flag, by the balancer going away, and by count.
                    for _ in 0..100_000 {
                        if stop.load(Ordering::Relaxed) {
                            break;
                        }
                        match exchange(port, req.as_bytes(), Duration::from_secs(20)) {
                            Ok(raw) => statuses.push(parse_reply(raw).status),
                            Err(_) => break,
                        }
                    }
                    statuses
                })
            })
            .collect();
        Load { stop, threads }
    }

    /// Stops and waits for the clients' last requests; returns every status seen.
    fn finish(mut self) -> Vec<u16> {
        self.stop.store(true, Ordering::Relaxed);
        self.threads.drain(..).flat_map(|t| t.join().unwrap()).collect()
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// A balancer of the group: `-N 6` in front of `servers`, sharing through `redis`.
fn instance(redis: &str, name: Option<&str>, servers: &[u16], extra: &[&str]) -> Lb {
    let mut args = vec!["-N", "6", "--admin", "0", "-v", "--shared-limit", redis, "--shared-lease", "600ms"];
    args.extend(["--shared-grace", "1s"]);
    if let Some(n) = name {
        args.extend(["--shared-name", n]);
    }
    args.extend(extra);
    balancer(&args, servers)
}

/// Waits, for an instance that joined a recovering group, until it has recovered.
fn wait_recovered(lb: &Lb) {
    if logged(&lb.proc, "is recovering").is_some() {
        lb.wait_after(0, "recovered", Duration::from_secs(6));
    }
}

/// Waits until the servers see exactly `want` requests in progress from each tag at once.
fn wait_split(count: &Count, want: &[(&str, usize)], timeout: Duration) {
    let ok = count.wait(timeout, |s| want.iter().all(|(t, n)| s.by_tag.get(*t) == Some(n)));
    assert!(ok, "the servers never saw {want:?} at once; last: {:?}", count.seen.lock().unwrap().by_tag);
}

/// The share in the instance's `/status`.
fn share(lb: &Lb) -> u64 {
    let s = status(lb.admin.unwrap());
    s["shared"]["share"].as_u64().unwrap_or_else(|| panic!("no shared.share in {s}"))
}

/// Milliseconds of the day of a log line's timestamp (`…THH:MM:SS.mmmZ`), to compare with
/// the test's own wall clock: a balancer's event time, not when the test read the line.
fn line_ms(line: &str) -> i64 {
    let t = line.split_whitespace().nth(1).and_then(|w| w.split_once('T')).map(|(_, t)| t.trim_end_matches('Z'));
    let t = t.unwrap_or_else(|| panic!("no timestamp in {line}"));
    let (h, rest) = t.split_once(':').unwrap();
    let (m, s) = rest.split_once(':').unwrap();
    let (h, m, s): (i64, i64, f64) = (h.parse().unwrap(), m.parse().unwrap(), s.parse().unwrap());
    h * 3_600_000 + m * 60_000 + (s * 1000.0).round() as i64
}

/// A TCP forwarder to Redis that the test can pause: while paused, bytes are held (both
/// ways) and new connections are accepted but not forwarded, as in a partition.
struct Forwarder {
    port: u16,
    paused: Arc<(Mutex<bool>, Condvar)>,
}

impl Forwarder {
    fn to(target: u16) -> Forwarder {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let paused = Arc::new((Mutex::new(false), Condvar::new()));
        let p = Arc::clone(&paused);
        std::thread::spawn(move || {
            for c in l.incoming() {
                let Ok(c) = c else { continue };
                let p = Arc::clone(&p);
                std::thread::spawn(move || {
                    wait_unpaused(&p);
                    let Ok(r) = TcpStream::connect(("127.0.0.1", target)) else { return };
                    let (c2, r2) = (c.try_clone().unwrap(), r.try_clone().unwrap());
                    let p2 = Arc::clone(&p);
                    std::thread::spawn(move || pump(c2, r2, &p2));
                    pump(r, c, &p);
                });
            }
        });
        Forwarder { port, paused }
    }

    fn set_paused(&self, on: bool) {
        *self.paused.0.lock().unwrap() = on;
        self.paused.1.notify_all();
    }
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        self.set_paused(false); // lets every held pump finish
    }
}

fn wait_unpaused(p: &(Mutex<bool>, Condvar)) {
    let mut paused = p.0.lock().unwrap();
    while *paused {
        // Bounded: a test pauses for seconds, never for this long.
        let (g, timeout) = p.1.wait_timeout(paused, Duration::from_secs(30)).unwrap();
        paused = g;
        if timeout.timed_out() {
            return;
        }
    }
}

/// Copies `from` → `to` until EOF or an error, holding each chunk while paused.
fn pump(mut from: TcpStream, mut to: TcpStream, p: &(Mutex<bool>, Condvar)) {
    let mut buf = [0u8; 16 * 1024];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                wait_unpaused(p);
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = to.shutdown(std::net::Shutdown::Write); // the other side may be gone
}

#[test]
fn bad_urls_are_refused_and_an_unreachable_redis_stops_the_start_unless_a_fallback_is_set() {
    for url in ["http://127.0.0.1:1", "redis://127.0.0.1:0", "redis://:6379", "redis://h:1/x"] {
        let (st, _, err) = run_to_end(LB, &["--shared-limit", url, "0", "1"], b"", Duration::from_secs(10));
        assert_eq!(st.code(), Some(2), "{url}: {err}");
        assert!(err.contains(&format!("--shared-limit '{url}'")), "{url}: {err}");
    }
    let url = format!("redis://127.0.0.1:{}", dead_port());
    let (st, _, err) = run_to_end(LB, &["--shared-limit", &url, "0", "1"], b"", Duration::from_secs(10));
    assert_eq!(st.code(), Some(1), "{err}");
    assert!(err.contains(&url) && err.contains("cannot take a lease"), "{err}");
    let (ports, count) = counting_servers(1);
    let lb = balancer(&["-N", "6", "--admin", "0", "--shared-limit", &url, "--shared-fallback", "2"], &ports);
    assert_eq!(get(lb.port, "/hold/0/x").status, 200, "served on the fallback");
    let s = status(lb.admin.unwrap());
    assert_eq!(s["shared"]["state"], "fallback", "{s}");
    assert_eq!(s["shared"]["share"], 2, "{s}");
    assert_eq!(s["limit"], 6, "limit stays the group's -N: {s}");
    assert_eq!(count.max(), 1);
}

#[test]
fn shares_follow_demand_and_the_servers_never_see_more_than_n() {
    let redis = Redis::start();
    let (ports, count) = counting_servers(2);
    let a = instance(&redis.url(), None, &ports, &[]);
    let b = instance(&redis.url(), None, &ports, &[]);
    wait_recovered(&a);
    wait_recovered(&b);

    // One busy instance alone reaches the whole limit: the idle one's slots go to it.
    let m = a.log_mark();
    let load_a = Load::start(a.port, 12, "/hold/100/a");
    assert!(count.wait(Duration::from_secs(5), |s| s.now >= N), "A alone never had 6 in progress");
    a.wait_after(m, "shared: share 6 of 6", Duration::from_secs(3));

    // Two busy ones settle to 3 + 3.
    let (ma, mb) = (a.log_mark(), b.log_mark());
    let t0 = Instant::now();
    let load_b = Load::start(b.port, 12, "/hold/100/b");
    a.wait_after(ma, "shared: share 3 of 6", Duration::from_secs(3));
    b.wait_after(mb, "shared: share 3 of 6", Duration::from_secs(3));
    let settled = t0.elapsed();
    assert!(
        count.wait(Duration::from_secs(3), |s| s.by_tag.get("a") == Some(&3) && s.by_tag.get("b") == Some(&3)),
        "the servers never saw 3 + 3"
    );
    assert_eq!((share(&a), share(&b)), (3, 3));
    // Two renewal intervals, plus one service time for A's work above its new share to
    // finish; the rest is slack for a loaded machine.
    assert!(settled < 2 * PERIOD + Duration::from_millis(100) + Duration::from_millis(700), "settled in {settled:?}");

    // The idle one's share goes to the busy one.
    let mb = b.log_mark();
    let statuses = load_a.finish();
    b.wait_after(mb, "shared: share 6 of 6", Duration::from_secs(3));
    assert!(count.wait(Duration::from_secs(3), |s| s.by_tag.get("b") == Some(&6)), "B never had 6 in progress");
    let statuses_b = load_b.finish();
    assert!(statuses.iter().chain(&statuses_b).all(|s| *s == 200), "{statuses:?} {statuses_b:?}");
    assert!(count.max() <= N, "the servers saw {} at once", count.max());
    eprintln!("settled to 3 + 3 in {settled:?}");
}

#[test]
fn three_instances_share_six_and_a_terminated_one_gives_its_share_back_at_once() {
    let redis = Redis::start();
    let (ports, count) = counting_servers(2);
    let lbs: Vec<Lb> = (0..3).map(|_| instance(&redis.url(), None, &ports, &[])).collect();
    lbs.iter().for_each(wait_recovered);
    let loads: Vec<Load> =
        lbs.iter().zip(["a", "b", "c"]).map(|(lb, t)| Load::start(lb.port, 8, &format!("/hold/80/{t}"))).collect();
    wait_split(&count, &[("a", 2), ("b", 2), ("c", 2)], Duration::from_secs(4));
    assert!(lbs.iter().all(|lb| share(lb) == 2), "three busy instances should hold 2 each");

    // SIGTERM: after its drain the instance releases its lease, and the other two split its
    // slots at their next renewals, long before lease + grace.
    let (m0, m1) = (lbs[0].log_mark(), lbs[1].log_mark());
    let mut loads = loads.into_iter();
    let load_c = loads.next_back().unwrap();
    lbs[2].proc.signal(Signal::SIGTERM);
    let released = lbs[2].wait_after(0, "shared: lease released", Duration::from_secs(5));
    drop(load_c);
    let l0 = lbs[0].wait_after(m0, "shared: share 3 of 6", Duration::from_secs(3));
    let l1 = lbs[1].wait_after(m1, "shared: share 3 of 6", Duration::from_secs(3));
    let after = line_ms(&l0).max(line_ms(&l1)) - line_ms(&released);
    assert!(after < (LEASE + GRACE).as_millis() as i64, "the released share came back after {after} ms");
    let statuses: Vec<u16> = loads.flat_map(Load::finish).collect();
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    assert!(count.max() <= N, "the servers saw {} at once", count.max());
}

#[test]
fn a_killed_instance_s_share_returns_after_lease_and_grace_and_not_before() {
    let redis = Redis::start();
    let (ports, count) = counting_servers(2);
    let mut a = instance(&redis.url(), None, &ports, &[]);
    let b = instance(&redis.url(), None, &ports, &[]);
    wait_recovered(&a);
    wait_recovered(&b);
    let load_a = Load::start(a.port, 8, "/hold/100/a");
    let load_b = Load::start(b.port, 8, "/hold/100/b");
    wait_split(&count, &[("a", 3), ("b", 3)], Duration::from_secs(4));

    let t0 = Instant::now();
    a.proc.signal(Signal::SIGKILL);
    a.proc.wait_exit(Duration::from_secs(5));
    drop(load_a);
    // B gets more than its 3 only once A's lease has expired in Redis and its grace passed:
    // A renewed at most one period before it died.
    let over = |s: &Seen| s.arrivals.iter().any(|(t, tag, n)| *t > t0 && tag == "b" && *n > 3);
    assert!(count.wait(LEASE + GRACE + Duration::from_secs(3), over), "B never took up A's share");
    let first =
        count.seen.lock().unwrap().arrivals.iter().find(|(t, tag, n)| *t > t0 && tag == "b" && *n > 3).unwrap().0;
    let after = first - t0;
    assert!(after >= LEASE + GRACE - PERIOD - Duration::from_millis(50), "A's share was re-granted after {after:?}");
    assert!(count.wait(Duration::from_secs(3), |s| s.by_tag.get("b") == Some(&6)), "B never had 6 in progress");
    let statuses = load_b.finish();
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    assert!(count.max() <= N, "the servers saw {} at once", count.max());
    eprintln!("A's share re-granted {after:?} after its death");
}

#[test]
fn redis_stopped_for_five_seconds_stops_dispatch_by_the_lease_end_and_it_resumes_after() {
    let redis = Redis::start();
    let (ports, count) = counting_servers(2);
    let a = instance(&redis.url(), None, &ports, &[]);
    let b = instance(&redis.url(), None, &ports, &[]);
    wait_recovered(&a);
    wait_recovered(&b);
    let load_a = Load::start(a.port, 8, "/hold/50/a");
    let load_b = Load::start(b.port, 8, "/hold/50/b");
    wait_split(&count, &[("a", 3), ("b", 3)], Duration::from_secs(4));

    let (ma, mb) = (a.log_mark(), b.log_mark());
    let t0 = Instant::now();
    redis.proc.signal(Signal::SIGSTOP);
    a.wait_after(ma, "dispatching nothing new", Duration::from_secs(3));
    b.wait_after(mb, "dispatching nothing new", Duration::from_secs(3));
    // Hold the stop for five seconds, watching that nothing reaches the servers meanwhile.
    let resumed = count.wait(Duration::from_secs(5).saturating_sub(t0.elapsed()), |s| {
        s.arrivals.iter().any(|(t, _, _)| *t > t0 + LEASE + Duration::from_millis(150))
    });
    assert!(!resumed, "a request was dispatched after the lease could have ended");
    let last = count.seen.lock().unwrap().arrivals.iter().rev().map(|a| a.0).find(|t| *t > t0);
    let t1 = Instant::now();
    redis.proc.signal(Signal::SIGCONT);
    assert!(
        count.wait(Duration::from_secs(4), |s| s.arrivals.iter().any(|(t, _, _)| *t > t1)),
        "dispatch never resumed after SIGCONT"
    );
    let statuses: Vec<u16> = [load_a, load_b].into_iter().flat_map(Load::finish).collect();
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    assert!(count.max() <= N, "the servers saw {} at once", count.max());
    eprintln!("last dispatch {:?} after SIGSTOP", last.map(|t| t - t0));
}

#[test]
fn an_instance_cut_off_from_redis_stops_by_its_lease_end_and_cuts_its_bridges_at_the_grace_end() {
    let redis = Redis::start();
    let fwd = Forwarder::to(redis.port);
    let (ports, count) = counting_servers(2);
    let a = instance(&format!("redis://127.0.0.1:{}", fwd.port), None, &ports, &[]);
    let b = instance(&redis.url(), None, &ports, &[]);
    wait_recovered(&a);
    wait_recovered(&b);
    // A: three long requests in flight and more waiting; B: short ones.
    let load_a = Load::start(a.port, 5, "/hold/15000/a");
    let load_b = Load::start(b.port, 8, "/hold/50/b");
    wait_split(&count, &[("a", 3), ("b", 3)], Duration::from_secs(4));

    let ma = a.log_mark();
    let t0 = Instant::now();
    fwd.set_paused(true);
    a.wait_after(ma, "dispatching nothing new", Duration::from_secs(3));
    // A's three bridges are cut at its grace's end, not before: its last renewal was sent at
    // most one period before the pause, and the cut comes at 0.9 × (lease + grace) after it.
    assert!(
        count.wait(LEASE + GRACE + Duration::from_secs(2), |s| s.cut.iter().filter(|c| c.1 == "a").count() >= 3),
        "A's bridges were never cut"
    );
    let seen = count.seen.lock().unwrap();
    let cut_at = seen.cut.iter().filter(|c| c.1 == "a").map(|c| c.0 - t0).min().unwrap();
    let late_a =
        seen.arrivals.iter().filter(|(t, tag, _)| tag == "a" && *t > t0 + LEASE + Duration::from_millis(100)).count();
    drop(seen);
    assert_eq!(late_a, 0, "A dispatched after its lease could have ended");
    let span = LEASE + GRACE;
    assert!(cut_at >= span - span / 10 - PERIOD - Duration::from_millis(50), "cut after {cut_at:?}");
    assert!(cut_at <= span + Duration::from_millis(300), "cut after {cut_at:?}");
    a.wait_after(ma, "cut 3 bridge(s)", Duration::from_secs(2));
    // B takes up A's slots once Redis' quarantine is over.
    assert!(count.wait(Duration::from_secs(4), |s| s.by_tag.get("b") == Some(&6)), "B never took up A's share");
    assert!(count.max() <= N, "the servers saw {} at once", count.max());
    let statuses = load_b.finish();
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    drop(load_a);
    eprintln!("A's bridges cut {cut_at:?} after the partition");
}

#[test]
fn redis_restarted_empty_holds_every_grant_for_lease_and_grace_and_the_group_recovers() {
    let mut redis = Redis::start();
    let (ports, count) = counting_servers(2);
    let a = instance(&redis.url(), None, &ports, &[]);
    let b = instance(&redis.url(), None, &ports, &[]);
    wait_recovered(&a);
    wait_recovered(&b);
    let load_a = Load::start(a.port, 8, "/hold/100/a");
    let load_b = Load::start(b.port, 8, "/hold/100/b");
    wait_split(&count, &[("a", 3), ("b", 3)], Duration::from_secs(4));

    let (ma, mb) = (a.log_mark(), b.log_mark());
    redis.restart_empty();
    let recovering = a.wait_after(ma, "is recovering", Duration::from_secs(3));
    let recovered = a.wait_after(ma, "recovered", Duration::from_secs(5));
    b.wait_after(mb, "recovered", Duration::from_secs(5));
    let held = line_ms(&recovered) - line_ms(&recovering);
    assert!(held >= (LEASE + GRACE).as_millis() as i64 - 50, "grants held for only {held} ms");
    let t1 = Instant::now();
    assert!(
        count.wait(Duration::from_secs(3), |s| s.arrivals.iter().any(|(t, _, _)| *t > t1)),
        "dispatch never resumed"
    );
    let statuses: Vec<u16> = [load_a, load_b].into_iter().flat_map(Load::finish).collect();
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    assert!(count.max() <= N, "the servers saw {} at once", count.max());
}

#[test]
fn two_groups_with_different_names_do_not_share() {
    let redis = Redis::start();
    let (ports, count) = counting_servers(2);
    let a = instance(&redis.url(), Some("left"), &ports, &[]);
    let b = instance(&redis.url(), Some("right"), &ports, &[]);
    wait_recovered(&a);
    wait_recovered(&b);
    let _load_a = Load::start(a.port, 8, "/hold/300/a");
    let _load_b = Load::start(b.port, 8, "/hold/300/b");
    assert!(count.wait(Duration::from_secs(5), |s| s.now == 2 * N), "two groups should each use their own 6");
    let (sa, sb) = (status(a.admin.unwrap()), status(b.admin.unwrap()));
    assert_eq!(sa["shared"]["share"], 6, "{sa}");
    assert_eq!(sb["shared"]["share"], 6, "{sb}");
    assert_eq!(sa["shared"]["name"], "left");
    assert_eq!(sa["shared"]["instances"].as_array().map(Vec::len), Some(1), "{sa}");
}
