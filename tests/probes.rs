//! Probe connections: kept open between rounds where the server allows keep-alive, and a
//! kept connection the server closed meanwhile does not make the server look down.

mod util;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use util::*;

/// A keep-alive server: answers `/healthcheck` and keeps the connection (unless
/// `close_after_probe`, then it closes without saying so); answers anything else with `ok` and
/// closes. Counts connections that began with a probe.
fn keepalive_server(close_after_probe: bool) -> (u16, Arc<AtomicUsize>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let probe_conns = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&probe_conns);
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            let counter = Arc::clone(&counter);
            std::thread::spawn(move || {
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

/// A keep-alive server that counts what it serves: `/healthcheck` answers `0\n<entries>` and
/// keeps the connection; anything else takes a little work (20 ms), is counted, and answered
/// with `name`, just before the reply is written (as the `backend` does).
fn counting_server(name: &'static str) -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let entries = Arc::new(AtomicUsize::new(0));
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            let entries = Arc::clone(&entries);
            std::thread::spawn(move || {
                let _ = s.set_read_timeout(Some(Duration::from_secs(30)));
                while let Some(head) = read_head(&mut s) {
                    if head.starts_with(b"GET /healthcheck ") {
                        let body = format!("0\n{}\n", entries.load(Ordering::SeqCst));
                        let _ = write!(s, "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}", body.len());
                        continue;
                    }
                    std::thread::sleep(Duration::from_millis(20));
                    entries.fetch_add(1, Ordering::SeqCst);
                    let _ = write!(
                        s,
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{name}",
                        name.len()
                    );
                    return;
                }
            });
        }
    });
    port
}

#[test]
fn clients_one_after_another_are_routed_on_counts_that_include_the_rth() {
    // With -R 1 a round follows every connection. It is sent at the dispatch, before the
    // server has seen the request; the server counts the request only as it replies, and
    // the balancer asks again then. So each next client sees the previous one counted, and
    // the two servers take turns. Counts from the round as first sent (a: 0, b: 0 every time)
    // would send every client to a.
    let a = counting_server("a");
    let b = counting_server("b");
    let lb = balancer(&["-R", "1"], &[a, b]);
    let order: Vec<String> = (0..6).map(|_| get(lb.port, "/work").text()).collect();
    assert_eq!(order, ["a", "b", "a", "b", "a", "b"], "{}", lb.proc.stderr());
}
