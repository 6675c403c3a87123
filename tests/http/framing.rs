//! Bytes pass unchanged, and each message ends exactly where its framing says: chunked bodies
//! with trailers both ways, HEAD, 204, 304, 100-continue, pipelining, HTTP/1.0,
//! `Connection: close` from either side, a response without a length, and an upgrade.

use crate::keepalive::{self, Act, Client, Group, Req};
use crate::util::*;
use std::io::{Read, Write};
use std::time::Duration;

fn one(handler: impl Fn(&Req, &str) -> Act + Send + Sync + 'static) -> (keepalive::Server, Lb) {
    let s = keepalive::start("s", &Group::new(), handler);
    let lb = balancer(&["--mode", "http", "-R", "1000000"], &[s.port]);
    (s, lb)
}

const CHUNKED_REPLY: &[u8] =
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Sum\r\n\r\n5\r\nhello\r\n6;x=y\r\n world\r\n0\r\nX-Sum: 11\r\n\r\n";

#[test]
fn chunked_bodies_with_trailers_pass_byte_for_byte_both_ways() {
    let (s, lb) = one(|_, _| Act::Reply(CHUNKED_REPLY.to_vec()));
    let request: &[u8] = b"POST /up HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n4;ext\r\ndefg\r\n0\r\nX-T: 1\r\n\r\n";
    let mut c = Client::connect(lb.port);
    for _ in 0..2 {
        c.send(request);
        let r = c.read(false).expect("a response");
        assert_eq!(r.raw, CHUNKED_REPLY, "{}", String::from_utf8_lossy(&r.raw));
    }
    let seen = s.seen();
    assert_eq!(seen.len(), 2);
    for req in seen {
        assert_eq!(req.raw, request, "{}", String::from_utf8_lossy(&req.raw));
    }
}

#[test]
fn head_204_and_304_have_no_body_and_the_connection_goes_on() {
    let (_s, lb) = one(|req, _| {
        Act::Reply(match req.path.as_str() {
            "/204" => b"HTTP/1.1 204 No Content\r\n\r\n".to_vec(),
            "/304" => b"HTTP/1.1 304 Not Modified\r\nContent-Length: 99\r\nETag: \"x\"\r\n\r\n".to_vec(),
            _ => b"HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n".to_vec(), // HEAD: no body follows
        })
    });
    let mut c = Client::connect(lb.port);
    c.send(b"HEAD / HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(c.read(true).unwrap().status, 200);
    assert_eq!(c.get("/204").status, 204);
    c.send(b"GET /304 HTTP/1.1\r\nHost: t\r\n\r\n");
    let r = c.read(true).unwrap();
    assert_eq!((r.status, r.body.len()), (304, 0));
    // Still in step: a fourth request on the same connection is answered as itself.
    c.send(b"HEAD /again HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(c.read(true).unwrap().status, 200);
}

#[test]
fn three_pipelined_requests_are_answered_in_order() {
    let (s, lb) = one(|req, name| Act::Reply(keepalive::ok(name, &req.path)));
    let mut c = Client::connect(lb.port);
    c.send(b"GET /one HTTP/1.1\r\nHost: t\r\n\r\nGET /two HTTP/1.1\r\nHost: t\r\n\r\nGET /three HTTP/1.1\r\nHost: t\r\n\r\n");
    for want in ["/one", "/two", "/three"] {
        assert_eq!(c.read(false).unwrap().body, want.as_bytes());
    }
    assert_eq!(s.requests(), 3);
}

/// A pipelined request is queued by the worker that served the one before it, not by the
/// accepting thread. If it must wait, its queue timeout still holds, even when the accepting
/// thread sleeps with no deadline (the room had emptied): it is woken to count it. Here the
/// first request takes 1.5 s and uses the rate's one token; the second then waits for the
/// next token (4 s after the first) and gets the exact 503 at its 1 s queue timeout, 2.5 s in.
#[test]
fn a_pipelined_request_that_waits_too_long_gets_the_503() {
    let s = keepalive::start("s", &Group::new(), |req, name| {
        Act::After(Duration::from_millis(1500), keepalive::ok(name, &req.path))
    });
    let args = ["--mode", "http", "-R", "1000000", "--rate", "0.25", "--burst", "1", "--queue-timeout", "1s"];
    let lb = balancer(&args, &[s.port]);
    let mut c = Client::connect(lb.port);
    let t0 = std::time::Instant::now();
    c.send(b"GET /one HTTP/1.1\r\nHost: t\r\n\r\nGET /two HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(c.read(false).unwrap().body, b"/one");
    let second = c.read(false).expect("an answer to the second request");
    let waited = t0.elapsed();
    assert_eq!(second.raw, EXACT_503, "after {waited:?}; log:\n{}", lb.proc.stderr());
    assert!(waited < Duration::from_millis(3800), "the 503 came after {waited:?}, not at the queue timeout");
    assert_eq!(s.requests(), 1, "the request that timed out reached the server");
}

const EXACT_503: &[u8] =
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nRetry-After: 1\r\nConnection: close\r\n\r\n";

#[test]
fn http_1_0_and_connection_close_from_either_side_close_after_the_response() {
    let (_s, lb) = one(|req, name| {
        if req.path == "/server-closes" {
            Act::ReplyClose(
                format!("HTTP/1.1 200 OK\r\nServer: {name}\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok")
                    .into_bytes(),
            )
        } else {
            Act::Reply(keepalive::ok(name, "ok"))
        }
    });
    for req in [
        &b"GET / HTTP/1.0\r\n\r\n"[..],
        b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        b"GET /server-closes HTTP/1.1\r\nHost: t\r\n\r\n",
    ] {
        let mut c = Client::connect(lb.port);
        c.send(req);
        assert_eq!(c.read(false).unwrap().body, b"ok");
        assert!(c.closed(), "not closed after {}", String::from_utf8_lossy(req));
    }
    // HTTP/1.0 with keep-alive stays open.
    let mut c = Client::connect(lb.port);
    c.send(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    assert_eq!(c.read(false).unwrap().body, b"ok");
    assert_eq!(c.get("/").body, b"ok");
}

#[test]
fn a_response_without_length_runs_to_eof_then_both_close() {
    let (s, lb) = one(|_, _| Act::ReplyClose(b"HTTP/1.1 200 OK\r\n\r\nuntil the end".to_vec()));
    let mut raw = Vec::new();
    let mut c = Client::connect(lb.port);
    c.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
    c.s.read_to_end(&mut raw).unwrap();
    assert_eq!(raw, b"HTTP/1.1 200 OK\r\n\r\nuntil the end");
    assert_eq!(s.requests(), 1);
}

#[test]
fn expect_100_continue_passes_the_interim_answer_and_holds_the_slot() {
    // The server answers 100 before reading the body, then the final answer: both reach the
    // client in order, and the connection serves a next request.
    let (s, lb) = one(|req, name| Act::Reply(keepalive::ok(name, &req.body.len().to_string())));
    let mut c = Client::connect(lb.port);
    c.send(b"PUT /f HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n");
    let interim = c.read(false).expect("the interim answer");
    assert_eq!(interim.raw, b"HTTP/1.1 100 Continue\r\n\r\n");
    c.send(b"hello");
    assert_eq!(c.read(false).unwrap().body, b"5");
    assert_eq!(c.get("/next").status, 200);
    assert_eq!(s.requests(), 2);
}

#[test]
fn an_upgrade_answered_101_becomes_a_tunnel() {
    let (_s, lb) = one(|req, _| {
        if req.header("upgrade").is_some() {
            Act::Echo(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\n".to_vec())
        } else {
            Act::Reply(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n".to_vec())
        }
    });
    let mut c = Client::connect(lb.port);
    c.send(b"GET /ws HTTP/1.1\r\nHost: t\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n");
    let r = c.read(true).unwrap();
    assert_eq!(r.status, 101);
    for msg in [&b"frame one"[..], b"and two"] {
        c.s.write_all(msg).unwrap();
        let mut got = vec![0u8; msg.len()];
        c.s.read_exact(&mut got).unwrap();
        assert_eq!(got, msg);
    }
    c.s.shutdown(std::net::Shutdown::Write).unwrap();
    let mut rest = Vec::new();
    c.s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    c.s.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty());
}
