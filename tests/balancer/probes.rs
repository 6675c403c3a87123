//! Probe connections: kept open between rounds where the server allows keep-alive, and a
//! kept connection the server closed meanwhile does not make the server look down. The round
//! sent at the R-th dispatch is asked again once the R-th server has counted that client.

use crate::util::*;
use std::collections::HashMap;
use std::io::{Read, Write};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// A keep-alive server: answers `/healthcheck` and keeps the connection (unless
/// `close_after_probe`, then it closes without saying so); answers anything else with `ok` and
/// closes. Counts connections that began with a probe.
fn keepalive_server(close_after_probe: bool) -> (u16, Arc<AtomicUsize>) {
    let probe_conns = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&probe_conns);
    let port = serve_each(move |mut s| {
        let _ = s.set_read_timeout(Some(Duration::from_secs(30)));
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        let mut first = true;
        loop {
            while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                match s.read(&mut chunk) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            }
            let end = buf.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
            let head: Vec<u8> = buf.drain(..end).collect();
            if !head.starts_with(b"GET /healthcheck ") {
                let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok");
                return;
            }
            if first {
                counter.fetch_add(1, Ordering::SeqCst);
                first = false;
            }
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\n0\n0\n");
            if close_after_probe {
                return;
            }
        }
    });
    (port, probe_conns)
}

#[test]
fn probe_connections_are_kept_where_the_server_allows() {
    let (port, probe_conns) = keepalive_server(false);
    let lb = balancer(&["-R", "1"], &[port]);
    for _ in 0..10 {
        assert_eq!(get(lb.port, "/x").text(), "ok");
    }
    // 11 rounds (startup + one per request), all on one connection.
    assert_eq!(probe_conns.load(Ordering::SeqCst), 1, "{}", lb.proc.stderr());
}

#[test]
fn a_kept_connection_closed_by_the_server_is_replaced_not_called_down() {
    let (port, probe_conns) = keepalive_server(true);
    let lb = balancer(&["-R", "1"], &[port]);
    for _ in 0..10 {
        assert_eq!(get(lb.port, "/x").text(), "ok", "{}", lb.proc.stderr());
    }
    assert!(probe_conns.load(Ordering::SeqCst) >= 10);
    assert!(!lb.proc.stderr().contains("is down"), "{}", lb.proc.stderr());
}

/// What a pair of counting servers has seen: work requests in all, and per server the probes
/// answered and the entries counted.
#[derive(Default)]
struct Tally {
    work: usize,
    probes: HashMap<&'static str, usize>,
    entries: HashMap<&'static str, usize>,
}

/// A keep-alive server that counts what it serves, sharing `tally` with its sibling:
/// `/healthcheck` answers `0\n<entries>` and keeps the connection; anything else is counted,
/// just before the reply is written (as the `backend` does), and answered with `name`.
///
/// The k-th work request is counted only once this server has answered k + 1 probes (the
/// startup round and one round per dispatch with -R 1), so the round sent at its dispatch
/// has surely been answered without it: only a probe sent later can see it.
fn counting_server(name: &'static str, tally: &Arc<(Mutex<Tally>, Condvar)>) -> u16 {
    let tally = Arc::clone(tally);
    serve_each(move |mut s| {
        let _ = s.set_read_timeout(Some(Duration::from_secs(30)));
        let (lock, changed) = &*tally;
        while let Some(head) = read_head(&mut s) {
            let mut t = lock.lock().unwrap();
            if head.starts_with(b"GET /healthcheck ") {
                let body = format!("0\n{}\n", t.entries.get(name).unwrap_or(&0));
                *t.probes.entry(name).or_default() += 1;
                changed.notify_all();
                drop(t);
                let _ = write!(s, "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}", body.len());
                continue;
            }
            t.work += 1;
            let k = t.work;
            let deadline = Instant::now() + Duration::from_secs(5);
            while *t.probes.get(name).unwrap_or(&0) < k + 1 && Instant::now() < deadline {
                t = changed.wait_timeout(t, deadline - Instant::now()).unwrap().0;
            }
            *t.entries.entry(name).or_default() += 1;
            drop(t);
            let _ = write!(s, "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{name}", name.len());
            return;
        }
    })
}

#[test]
fn clients_one_after_another_are_routed_on_counts_that_include_the_rth() {
    // With -R 1 a round follows every connection. It is sent at the dispatch, before the
    // server has counted the request (the server makes sure of it); the server counts the
    // request as it replies, and the balancer asks again then. So each next client sees the
    // previous one counted, and the two servers take turns. Counts from the round as first
    // sent (a: 0, b: 0 every time) would send every client to a.
    let tally = Arc::new((Mutex::new(Tally::default()), Condvar::new()));
    let a = counting_server("a", &tally);
    let b = counting_server("b", &tally);
    let lb = balancer(&["-R", "1"], &[a, b]);
    let order: Vec<String> = (0..6).map(|_| get(lb.port, "/work").text()).collect();
    assert_eq!(order, ["a", "b", "a", "b", "a", "b"], "{}", lb.proc.stderr());
}
