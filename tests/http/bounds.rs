//! Requests, not connections, are bounded: 64 keep-alive clients with `-N 4` are all served,
//! the servers never see more than 4 requests at once, and they see fewer connections than
//! requests (server connections are reused).

use crate::keepalive::{self, Act, Client, Group};
use crate::util::*;
use std::time::Duration;

#[test]
fn sixty_four_keep_alive_clients_share_four_slots_per_request() {
    let group = Group::new();
    let handler = |_: &keepalive::Req, name: &str| Act::After(Duration::from_millis(5), keepalive::ok(name, "hi"));
    let a = keepalive::start("a", &group, handler);
    let b = keepalive::start("b", &group, handler);
    let lb = balancer(&["--mode", "http", "-N", "4", "-R", "1000000"], &[a.port, b.port]);
    let port = lb.port;
    // Every client holds its connection for all of its requests: in tcp mode four of them
    // would hold every slot until they close.
    let clients: Vec<_> = (0..64)
        .map(|_| {
            std::thread::spawn(move || {
                let mut c = Client::connect(port);
                (0..5).map(|_| c.get("/work").status).collect::<Vec<u16>>()
            })
        })
        .collect();
    for c in clients {
        assert_eq!(c.join().unwrap(), vec![200; 5], "log:\n{}", lb.proc.stderr());
    }
    let requests = a.requests() + b.requests();
    assert_eq!(requests, 320);
    assert!(group.max() <= 4, "servers saw {} requests at once", group.max());
    assert!(group.max() >= 2, "never more than {} at once: not concurrent", group.max());
    let conns = a.conns() + b.conns();
    assert!(conns < requests, "{conns} connections for {requests} requests: no reuse");
    assert!(conns <= 8, "{conns} server connections: more than the idle pool and slots need");
}

#[test]
fn the_status_page_counts_requests() {
    let group = Group::new();
    let a = keepalive::start("a", &group, |_, name| Act::Reply(keepalive::ok(name, "x")));
    let lb = balancer(&["--mode", "http", "--admin", "0"], &[a.port]);
    let mut c = Client::connect(lb.port);
    for _ in 0..3 {
        assert_eq!(c.get("/").status, 200);
    }
    let st = status(lb.admin.unwrap());
    assert_eq!(st["served"], 3, "{st}");
    assert_eq!(st["mode"], "http", "{st}");
}
