//! The bounds, asserted from the servers' side (`GET /inflight` on the backend): never more
//! than N bridged at once in total, nor m per server; busy at N while work waits; silent
//! clients hold no slot.

use crate::util::*;
use std::io::Write;
use std::net::TcpStream;
use std::time::Duration;

fn parallel_gets(port: u16, n: usize, path: &'static str) -> Vec<u16> {
    let hs: Vec<_> = (0..n).map(|_| std::thread::spawn(move || get(port, path).status)).collect();
    hs.into_iter().map(|h| h.join().unwrap()).collect()
}

#[test]
fn the_global_bound_is_exact_and_always_filled_while_work_waits() {
    let a = backend(&["--delay-ms", "150", "--threads", "32"]);
    let lb = balancer(&["-N", "4"], &[a.port]);
    let statuses = parallel_gets(lb.port, 24, "/api/v1/hello");
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    let (current, max) = inflight(a.port);
    assert_eq!(current, 0);
    assert_eq!(max, 4, "the server saw at most N at once, and N while 20 waited");
}

#[test]
fn the_per_server_bound_holds_and_clients_wait_for_it() {
    let a = backend(&["--delay-ms", "150"]);
    let b = backend(&["--delay-ms", "150"]);
    let lb = balancer(&["-N", "8", "--max-per-server", "2"], &[a.port, b.port]);
    let statuses = parallel_gets(lb.port, 20, "/api/v1/hello");
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    assert_eq!(inflight(a.port).1, 2);
    assert_eq!(inflight(b.port).1, 2);
}

#[test]
fn client_resets_keep_the_slot_until_the_server_is_done_and_nothing_is_lost() {
    // Half of the clients reset while waiting or being served; the rest are all served and
    // the server stays at N.
    let a = backend(&["--delay-ms", "150", "--threads", "32"]);
    let lb = balancer(&["-N", "3"], &[a.port]);
    let port = lb.port;
    let hs: Vec<_> = (0..24)
        .map(|i| {
            std::thread::spawn(move || {
                if i % 2 == 0 {
                    let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
                    (&s).write_all(b"GET /api/v1/hello HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
                    let s = socket2::Socket::from(s);
                    s.set_linger(Some(Duration::ZERO)).unwrap();
                    0
                } else {
                    get(port, "/api/v1/hello").status
                }
            })
        })
        .collect();
    let statuses: Vec<u16> = hs.into_iter().map(|h| h.join().unwrap()).filter(|s| *s != 0).collect();
    assert_eq!(statuses.len(), 12);
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    assert!(inflight(a.port).1 <= 3);
    assert_eq!(get(lb.port, "/api/v1/hello").status, 200);
}

#[test]
fn a_thousand_idle_connections_do_not_starve_the_servers() {
    let a = backend(&["--delay-ms", "50"]);
    let lb = balancer(&["-N", "2"], &[a.port]);
    let idle: Vec<TcpStream> = (0..1000).map(|_| TcpStream::connect(("127.0.0.1", lb.port)).unwrap()).collect();
    let statuses = parallel_gets(lb.port, 10, "/api/v1/hello");
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    assert_eq!(inflight(a.port).1, 2);
    drop(idle);
}
