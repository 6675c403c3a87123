//! Probes and the gate: a slow probe of a server that is up is waited for (the next client is
//! routed on its counts), but a server that is down never holds dispatch: it is probed in the
//! background, and brought back when it answers well. See: issue 11 (defect 6).

use crate::util::*;
use std::io::Write;
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Answers every request on its own connection and closes it: `/healthcheck` with
/// `probe(served)`, anything else with `name` (marking `served` first, as a server counts a
/// request before it answers it).
fn probed_server(name: &'static str, probe: fn(bool) -> (Duration, &'static str)) -> u16 {
    let served = Arc::new(AtomicBool::new(false));
    serve_each(move |mut s: TcpStream| {
        let _ = s.set_read_timeout(Some(Duration::from_secs(30)));
        let Some(head) = read_head(&mut s) else { return };
        if head.starts_with(b"GET /healthcheck ") {
            let (delay, body) = probe(served.load(Ordering::SeqCst));
            std::thread::sleep(delay); // the slow server this test is about
            let _ = write!(s, "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len());
            return;
        }
        served.store(true, Ordering::SeqCst);
        let _ = write!(s, "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{name}", name.len());
    })
}

#[test]
fn a_slow_probe_of_an_up_server_is_waited_for() {
    // a starts least loaded; once it has served a client its probes take 700 ms and report
    // 100 entries. The next client must wait for that answer and go to b (5 entries); a
    // decision that did not wait would see a at 1 (local count) and pick a again.
    let a =
        probed_server(
            "a",
            |served| {
                if served { (Duration::from_millis(700), "0\n100\n") } else { (Duration::ZERO, "0\n0\n") }
            },
        );
    let b = probed_server("b", |_| (Duration::ZERO, "0\n5\n"));
    let lb = balancer(&["-R", "1", "-v"], &[a, b]);
    assert_eq!(get(lb.port, "/work").text(), "a", "{}", lb.proc.stderr());
    assert_eq!(get(lb.port, "/work").text(), "b", "{}", lb.proc.stderr());
    assert!(
        lb.proc.stderr().contains(&format!("probe 127.0.0.1:{a}: up, errors=0 entries=100")),
        "{}",
        lb.proc.stderr()
    );
}

/// A server that answers probes (`0\n1000\n`: up, never the least loaded) until `stall` is set;
/// from then on it accepts and never answers. `stalled` counts the probes it held.
fn stallable_server(stall: &Arc<AtomicBool>, stalled: &Arc<AtomicUsize>) -> u16 {
    let (stall, stalled) = (Arc::clone(stall), Arc::clone(stalled));
    serve_each(move |mut s: TcpStream| {
        let _ = s.set_read_timeout(Some(Duration::from_secs(30)));
        let Some(_) = read_head(&mut s) else { return };
        if stall.load(Ordering::SeqCst) {
            stalled.fetch_add(1, Ordering::SeqCst);
            let mut buf = [0u8; 512];
            while matches!(std::io::Read::read(&mut s, &mut buf), Ok(n) if n > 0) {}
            return;
        }
        let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 7\r\nConnection: close\r\n\r\n0\n1000\n");
    })
}

#[test]
fn a_stalled_server_that_is_down_costs_later_clients_nothing() {
    let stall = Arc::new(AtomicBool::new(false));
    let stalled = Arc::new(AtomicUsize::new(0));
    let s = stallable_server(&stall, &stalled);
    let a = backend(&[]);
    let lb = balancer(&["-R", "1"], &[a.port, s]);
    assert_eq!(get(lb.port, "/api/v1/hello").status, 200);
    stall.store(true, Ordering::SeqCst);
    // While s is up, a round waits for it (up to the 2 s probe timeout); that round finds
    // it down.
    for _ in 0..2 {
        assert_eq!(get(lb.port, "/api/v1/hello").status, 200);
    }
    lb.proc.wait_line(&format!("server: 127.0.0.1:{s} is down"), Duration::from_secs(10));

    // From now on no round waits for s: each client is answered at once (1 s bounds a hang;
    // a round that waited for s would take its 2 s probe timeout), and s is not probed once
    // per client (only in the background, one probe at a time).
    let before = stalled.load(Ordering::SeqCst);
    for i in 0..10 {
        let t0 = Instant::now();
        let r = get(lb.port, "/api/v1/hello");
        assert_eq!(r.status, 200, "client {i}: {r:?}");
        let took = t0.elapsed();
        assert!(took < Duration::from_secs(1), "client {i} took {took:?}; stderr:\n{}", lb.proc.stderr());
    }
    let probed = stalled.load(Ordering::SeqCst) - before;
    assert!(probed < 10, "s was probed {probed} times for 10 clients; stderr:\n{}", lb.proc.stderr());

    // The background probe brings s back once it answers well.
    stall.store(false, Ordering::SeqCst);
    lb.proc.wait_line(&format!("server 127.0.0.1:{s} is up"), Duration::from_secs(15));
}
