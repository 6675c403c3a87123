//! Server connections are reused, and a stale one is never the client's problem: a connection
//! the server closed while idle is dropped from the pool, and one that fails as the request
//! goes out is replaced and the request sent again.

use crate::keepalive::{self, Act, Client, Group};
use crate::util::*;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

#[test]
fn one_client_after_another_reuses_one_server_connection() {
    let s = keepalive::start("s", &Group::new(), |_, name| Act::Reply(keepalive::ok(name, "ok")));
    let lb = balancer(&["--mode", "http", "-R", "1000000"], &[s.port]);
    for _ in 0..10 {
        // A new client connection each time: the server still sees one.
        assert_eq!(Client::connect(lb.port).get("/").status, 200);
    }
    assert_eq!(s.requests(), 10);
    assert_eq!(s.conns(), 1, "each request opened a server connection");
}

#[test]
fn a_connection_the_server_closed_while_idle_is_not_used() {
    // The server closes every connection right after its response, without saying so.
    let s = keepalive::start("s", &Group::new(), |_, name| Act::ReplyClose(keepalive::ok(name, "ok")));
    let lb = balancer(&["--mode", "http", "-R", "1000000"], &[s.port]);
    let mut c = Client::connect(lb.port);
    for _ in 0..5 {
        assert_eq!(c.get("/").body, b"ok", "log:\n{}", lb.proc.stderr());
    }
    assert_eq!(s.requests(), 5);
}

#[test]
fn a_pooled_connection_that_fails_as_the_request_goes_out_is_retried_on_a_new_one() {
    // Every second request on a server connection is met with a close and no byte: a server
    // that timed the connection out just as the request arrived.
    let per_conn = Arc::new(AtomicUsize::new(0));
    let n = Arc::clone(&per_conn);
    let s = keepalive::start("s", &Group::new(), move |_, name| {
        if n.fetch_add(1, Ordering::SeqCst) % 2 == 1 { Act::Close } else { Act::Reply(keepalive::ok(name, "ok")) }
    });
    let lb = balancer(&["--mode", "http", "-R", "1000000"], &[s.port]);
    let mut c = Client::connect(lb.port);
    for i in 0..4 {
        let r = c.get("/");
        assert_eq!((r.status, r.body.as_slice()), (200, &b"ok"[..]), "request {i}; log:\n{}", lb.proc.stderr());
    }
    assert!(s.conns() >= 2, "no new connection after the failure");
    let _ = Duration::ZERO;
}
