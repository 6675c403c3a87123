//! Persistent connections (issue #12): several requests on one connection, answered in order;
//! pipelined requests sent in one write; `Connection: close`, HTTP/1.0, `--close-each`, the
//! idle timeout and SIGTERM ending a connection; bodies the reply did not need skipped so the
//! next request is read from the right byte.

use crate::backend_support::*;
use std::io::{BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// A connection to `b`, read through a buffer that keeps what follows one reply for the next.
fn connect(b: &Backend) -> (TcpStream, BufReader<TcpStream>) {
    let s = TcpStream::connect(b.addr).expect("connect");
    s.set_read_timeout(Some(REPLY_TIMEOUT)).unwrap();
    let r = BufReader::new(s.try_clone().unwrap());
    (s, r)
}

fn next_reply(r: &mut BufReader<TcpStream>) -> Reply {
    read_reply(r, false).expect("a reply")
}

/// Asserts that the backend closed the connection: EOF, and no byte before it.
fn assert_closed(r: &mut BufReader<TcpStream>) {
    let mut rest = Vec::new();
    r.read_to_end(&mut rest).expect("EOF, not an error");
    assert!(rest.is_empty(), "bytes after the last reply: {:?}", String::from_utf8_lossy(&rest));
}

/// One more request on the connection proves it is still open (and still in step).
fn assert_open(s: &mut TcpStream, r: &mut BufReader<TcpStream>) {
    s.write_all(b"GET /inflight HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    let reply = next_reply(r);
    assert_eq!((reply.status, reply.header("connection")), (200, None), "{reply:?}");
    assert!(reply.text().contains("\"current\""), "{reply:?}");
}

/// Stops `b` quietly and returns its whole log: only after its stderr closed is every line
/// it wrote surely collected.
fn stop_for_log(b: Backend) -> String {
    let log = std::sync::Arc::clone(&b.log);
    b.stop_quietly();
    log.lock().unwrap().join("\n")
}

fn temp_dir(tag: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("backend-keepalive-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d); // a leftover from an earlier run, if any
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn three_requests_on_one_connection_get_three_replies_in_order() {
    let dir = temp_dir("three");
    let b = Backend::start(&["--dir", dir.to_str().unwrap()]);
    let (mut s, mut r) = connect(&b);

    s.write_all(b"PUT /a HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello").unwrap();
    let put = next_reply(&mut r);
    s.write_all(b"GET /a HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    let get = next_reply(&mut r);
    s.write_all(b"HEAD /a HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    let head = read_reply(&mut r, true).expect("a reply to HEAD");

    assert_eq!(put.status, 201);
    assert_eq!((get.status, get.body.as_slice()), (200, &b"hello"[..]));
    assert_eq!((head.status, head.header("content-length")), (200, Some("5")));
    for reply in [&put, &get, &head] {
        assert_eq!(reply.header("connection"), None, "a kept connection says nothing: {reply:?}");
    }
    assert_open(&mut s, &mut r);
    // Four requests, and the observation endpoint is not an entry: three entries.
    assert_eq!(b.health(), (0, 3));
    drop((s, r));
    b.stop_quietly();
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn pipelined_requests_in_one_write_are_answered_in_order() {
    let dir = temp_dir("pipelined");
    let b = Backend::start(&["--dir", dir.to_str().unwrap()]);
    let (mut s, mut r) = connect(&b);
    // A chunked upload (with a trailer), a read of it, and a miss that closes: one write, so
    // the second and third requests arrive with the first one's body.
    s.write_all(
        b"PUT /p HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n\
          3\r\npip\r\n6;x=1\r\nelined\r\n0\r\nT: v\r\n\r\n\
          GET /p HTTP/1.1\r\nHost: t\r\n\r\n\
          GET /nope HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    let replies: Vec<Reply> = (0..3).map(|_| next_reply(&mut r)).collect();
    let statuses: Vec<u16> = replies.iter().map(|r| r.status).collect();
    assert_eq!(statuses, [201, 200, 404]);
    assert_eq!(replies[1].body, b"pipelined");
    assert_eq!(replies[2].header("connection"), Some("close"));
    assert_closed(&mut r);

    // Three GETs of a file, pipelined, each answered whole and in order.
    let (mut s, mut r) = connect(&b);
    s.write_all(
        b"GET /p HTTP/1.1\r\n\r\nGET /healthcheck HTTP/1.1\r\n\r\nGET /p HTTP/1.1\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    let bodies: Vec<Vec<u8>> = (0..3).map(|_| next_reply(&mut r).body).collect();
    assert_eq!(bodies[0], b"pipelined");
    let health = String::from_utf8_lossy(&bodies[1]).into_owned();
    assert!(health.lines().count() == 2 && health.lines().all(|l| l.parse::<u64>().is_ok()), "{health:?}");
    assert_eq!(bodies[2], b"pipelined");
    assert_closed(&mut r);
    b.stop_quietly();
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn connection_close_and_http_1_0_close_after_the_reply() {
    let b = Backend::start(&[]);
    for raw in [
        &b"GET /healthcheck HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"[..],
        b"GET /healthcheck HTTP/1.1\r\nConnection: keep-alive, Close\r\n\r\n",
        b"GET /healthcheck HTTP/1.0\r\n\r\n",
    ] {
        let (mut s, mut r) = connect(&b);
        s.write_all(raw).unwrap();
        let reply = next_reply(&mut r);
        let what = String::from_utf8_lossy(raw);
        assert_eq!((reply.status, reply.header("connection")), (200, Some("close")), "{what}");
        assert_closed(&mut r);
    }
    // HTTP/1.0 asking for keep-alive gets it, and is told so.
    let (mut s, mut r) = connect(&b);
    s.write_all(b"GET /healthcheck HTTP/1.0\r\nConnection: keep-alive\r\n\r\n").unwrap();
    let reply = next_reply(&mut r);
    assert_eq!(reply.header("connection"), Some("keep-alive"));
    assert_open(&mut s, &mut r);
    drop((s, r));
    b.stop_quietly();
}

#[test]
fn an_idle_connection_is_closed_after_the_keep_alive_timeout() {
    let b = Backend::start(&["--keep-alive-timeout", "300ms", "-v"]);
    let (mut s, mut r) = connect(&b);
    s.write_all(b"GET /healthcheck HTTP/1.1\r\n\r\n").unwrap();
    assert_eq!(next_reply(&mut r).header("connection"), None);
    let idle = Instant::now();
    assert_closed(&mut r); // bounded by REPLY_TIMEOUT
    assert!(idle.elapsed() >= Duration::from_millis(300), "closed after {:?}", idle.elapsed());
    let log = stop_for_log(b);
    assert!(log.contains("idle between requests"), "{log}");
}

#[test]
fn close_each_closes_after_every_reply() {
    let b = Backend::start(&["--close-each"]);
    let (mut s, mut r) = connect(&b);
    // Two requests in one write: only the first is answered.
    s.write_all(b"GET /healthcheck HTTP/1.1\r\n\r\nGET /healthcheck HTTP/1.1\r\n\r\n").unwrap();
    let reply = next_reply(&mut r);
    assert_eq!((reply.status, reply.header("connection")), (200, Some("close")));
    assert_closed(&mut r);
    let log = stop_for_log(b);
    assert!(log.contains("one request per connection"), "{log}");
}

#[test]
fn bodies_the_reply_did_not_need_are_skipped() {
    let b = Backend::start(&[]);
    let (mut s, mut r) = connect(&b);
    // A GET with a body, a POST (405) with a chunked body: each is read past, so the request
    // after it is parsed from its first byte.
    s.write_all(b"GET /nope HTTP/1.1\r\nContent-Length: 6\r\n\r\nGET /x").unwrap();
    assert_eq!(next_reply(&mut r).status, 404);
    s.write_all(b"POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nGET \r\n0\r\n\r\n").unwrap();
    let reply = next_reply(&mut r);
    assert_eq!((reply.status, reply.header("connection")), (405, None));
    assert_open(&mut s, &mut r);

    // A client waiting for 100 Continue that we never send may or may not send its body: the
    // refusal closes the connection instead of guessing.
    let (mut s, mut r) = connect(&b);
    s.write_all(b"POST /x HTTP/1.1\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n").unwrap();
    let reply = next_reply(&mut r);
    assert_eq!((reply.status, reply.header("connection")), (405, Some("close")));
    assert_closed(&mut r);

    // A refused head closes: where it ends is not known.
    let (mut s, mut r) = connect(&b);
    s.write_all(b"GET /x HTTP/1.1\r\nNo colon\r\n\r\nGET /healthcheck HTTP/1.1\r\n\r\n").unwrap();
    let reply = next_reply(&mut r);
    assert_eq!((reply.status, reply.header("connection")), (400, Some("close")));
    assert_closed(&mut r);
    b.stop_quietly();
}

#[test]
fn sigterm_closes_idle_keep_alive_connections_at_once() {
    // The keep-alive timeout is far longer than the shutdown's drain (2 s): only the stop pipe
    // can end the idle connection in time for a quiet exit.
    let b = Backend::start(&["--keep-alive-timeout", "60"]);
    let (mut s, mut r) = connect(&b);
    s.write_all(b"GET /healthcheck HTTP/1.1\r\n\r\n").unwrap();
    assert_eq!(next_reply(&mut r).header("connection"), None);
    // Exit 0 and no warning: a worker still held by the idle connection after the drain
    // would be reported as `stopping with ... unfinished`.
    b.stop_quietly();
    assert_closed(&mut r);
}

#[test]
fn a_reply_received_is_no_longer_in_flight() {
    // With persistent connections a client's next request can follow a reply at once, on any
    // connection: it must never find the answered one still counted (the bound tests of the
    // balancer read `max`). A race, so tried many times; each try is two quick requests.
    let b = Backend::start(&[]);
    let (mut s, mut r) = connect(&b);
    let (mut o, mut or) = connect(&b);
    for i in 0..200 {
        s.write_all(b"GET /api/v1/hello HTTP/1.1\r\n\r\n").unwrap();
        assert_eq!(next_reply(&mut r).status, 200);
        o.write_all(b"GET /inflight HTTP/1.1\r\n\r\n").unwrap();
        let v = next_reply(&mut or).json();
        assert_eq!((v["current"].as_u64(), v["max"].as_u64()), (Some(0), Some(1)), "try {i}: {v}");
    }
    drop((s, r, o, or));
    b.stop_quietly();
}
