//! SIGTERM in http mode: idle keep-alive clients are closed at once, a request in flight
//! finishes and its client is closed after the response; no response is cut; exit 0.

use crate::keepalive::{self, Act, Client, Group};
use crate::util::*;
use nix::sys::signal::Signal;
use std::time::Duration;

#[test]
fn sigterm_closes_idle_clients_and_lets_busy_ones_finish() {
    let (arrived, slow_arrived) = std::sync::mpsc::channel();
    let arrived = std::sync::Mutex::new(arrived);
    let s = keepalive::start("s", &Group::new(), move |req, name| {
        let wait = if req.path == "/slow" {
            let _ = arrived.lock().unwrap().send(()); // the test may signal now
            700
        } else {
            0
        };
        Act::After(Duration::from_millis(wait), keepalive::ok(name, "done"))
    });
    let mut lb = balancer(&["-v", "--mode", "http", "-R", "1000000"], &[s.port]);
    let mut idle = Client::connect(lb.port);
    assert_eq!(idle.get("/").status, 200);
    let port = lb.port;
    let busy = std::thread::spawn(move || {
        let mut c = Client::connect(port);
        let r = c.get("/slow");
        (r.status, r.body, c.closed())
    });
    slow_arrived.recv_timeout(Duration::from_secs(10)).expect("the slow request reached the server");
    lb.proc.signal(Signal::SIGTERM);
    lb.proc.wait_line("draining", Duration::from_secs(10));
    assert!(idle.closed(), "the idle keep-alive client was not closed");
    let (status, body, closed) = busy.join().unwrap();
    assert_eq!((status, body.as_slice(), closed), (200, &b"done"[..], true));
    assert!(lb.proc.wait_exit(Duration::from_secs(10)).success());
}
