//! A client that gives up while its request waits is dropped from the waiting room, and its
//! request never reaches a server: in http mode a close counts, in tcp mode a reset does (a
//! byte-stream client may half-close and still wait for its reply).

use crate::keepalive::{self, Act, Client, Group};
use crate::util::*;
use std::io::Write;
use std::net::TcpStream;
use std::time::Duration;

/// Takes 2 s a request; `close`: closes after each reply (a tcp-mode bridge ends then).
fn slow_server(close: bool) -> keepalive::Server {
    keepalive::start("s", &Group::new(), move |_, name| {
        std::thread::sleep(Duration::from_millis(2000)); // the server's work: long enough for the give-up to be seen first
        let reply = keepalive::ok(name, "ok");
        if close { Act::ReplyClose(reply) } else { Act::Reply(reply) }
    })
}

/// Occupies the one slot with a slow request, queues `second`, lets `give_up` act on it, then
/// waits for the first to finish and returns the balancer.
fn queue_then(mode: &str, give_up: impl FnOnce(TcpStream)) -> (keepalive::Server, Lb) {
    let s = slow_server(mode == "tcp");
    let lb = balancer(&["-v", "--mode", mode, "-N", "1", "--admin", "0", "-R", "1000000"], &[s.port]);
    let port = lb.port;
    let first = std::thread::spawn(move || Client::connect(port).get("/first").status);
    lb.proc.wait_line("to server", Duration::from_secs(10));
    let mut second = TcpStream::connect(("127.0.0.1", port)).unwrap();
    second.write_all(b"GET /second HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    lb.proc.wait_line("queued, 1 waiting", Duration::from_secs(10));
    give_up(second);
    lb.proc.wait_line("gave up while waiting", Duration::from_secs(10));
    assert_eq!(first.join().unwrap(), 200);
    (s, lb)
}

#[test]
fn http_mode_a_client_that_closes_while_queued_never_reaches_a_server() {
    let (s, lb) = queue_then("http", drop);
    // The slot is free again: a third request goes straight through.
    assert_eq!(Client::connect(lb.port).get("/third").status, 200);
    let paths: Vec<String> = s.seen().into_iter().map(|r| r.path).collect();
    assert_eq!(paths, vec!["/first", "/third"]);
    assert_eq!(status(lb.admin.unwrap())["abandoned"], 1);
}

#[test]
fn tcp_mode_a_client_that_resets_while_queued_never_reaches_a_server() {
    let (s, lb) = queue_then("tcp", |sock| {
        socket2::SockRef::from(&sock).set_linger(Some(Duration::ZERO)).unwrap();
        drop(sock); // a reset
    });
    assert_eq!(get(lb.port, "/third").status, 200);
    let paths: Vec<String> = s.seen().into_iter().map(|r| r.path).collect();
    assert_eq!(paths, vec!["/first", "/third"]);
    assert_eq!(status(lb.admin.unwrap())["abandoned"], 1);
}

#[test]
fn tcp_mode_a_half_closed_client_still_gets_its_reply() {
    let s = slow_server(true);
    let lb = balancer(&["-v", "-N", "1", "-R", "1000000"], &[s.port]);
    let port = lb.port;
    let first = std::thread::spawn(move || get(port, "/first").status);
    lb.proc.wait_line("to server", Duration::from_secs(10));
    let got = exchange_half_close(port, b"GET /second HTTP/1.1\r\nHost: t\r\n\r\n", Duration::from_secs(10)).unwrap();
    assert!(got.starts_with(b"HTTP/1.1 200"), "{:?}", String::from_utf8_lossy(&got));
    assert_eq!(first.join().unwrap(), 200);
    assert_eq!(s.requests(), 2);
}
