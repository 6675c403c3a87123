//! Bad requests are answered by the balancer, exactly, and reach no server; a garbage response
//! gets the 502 and counts an error for its server.

use crate::keepalive::{self, Act, Group};
use crate::util::*;
use std::io::Write;
use std::time::Duration;

const BAD: &[u8] = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
const TOO_LARGE: &[u8] =
    b"HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
const BAD_GATEWAY: &[u8] = b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";

#[test]
fn each_bad_request_gets_its_exact_answer_and_reaches_no_server() {
    let s = keepalive::start("s", &Group::new(), |_, name| Act::Reply(keepalive::ok(name, "ok")));
    let lb = balancer(&["--mode", "http"], &[s.port]);
    let big = format!("GET / HTTP/1.1\r\nHost: t\r\nX-Big: {}\r\n\r\n", "a".repeat(70 * 1024));
    let cases: Vec<(&str, Vec<u8>, &[u8])> = vec![
        ("garbage", b"\x00\x01\x02 not http\r\n\r\n".to_vec(), BAD),
        ("no version", b"GET /\r\n\r\n".to_vec(), BAD),
        (
            "TE and CL",
            b"POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n".to_vec(),
            BAD,
        ),
        ("differing CL", b"POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd".to_vec(), BAD),
        ("TE not chunked", b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n".to_vec(), BAD),
        ("bad chunk", b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n".to_vec(), BAD),
        ("head over 64 KiB", big.into_bytes(), TOO_LARGE),
    ];
    for (what, req, want) in cases {
        let got = exchange(lb.port, &req, Duration::from_secs(10)).unwrap_or_default();
        assert_eq!(got, want, "{what}: got {:?}", String::from_utf8_lossy(&got));
    }
    assert_eq!(s.requests(), 0, "a bad request reached the server");
    // And the balancer still serves.
    assert_eq!(get(lb.port, "/").status, 200);
}

#[test]
fn a_head_that_never_ends_is_closed_after_the_client_timeout() {
    let s = keepalive::start("s", &Group::new(), |_, name| Act::Reply(keepalive::ok(name, "ok")));
    let lb = balancer(&["--mode", "http", "--client-timeout", "300ms"], &[s.port]);
    let mut c = std::net::TcpStream::connect(("127.0.0.1", lb.port)).unwrap();
    c.write_all(b"GET / HTTP/1.1\r\nHost: t\r\n").unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut buf = [0u8; 16];
    assert!(matches!(std::io::Read::read(&mut c, &mut buf), Ok(0)), "not closed");
    assert_eq!(s.requests(), 0);
}

#[test]
fn a_garbage_response_gets_the_502_and_an_error_for_its_server() {
    let s = keepalive::start("s", &Group::new(), |_, _| Act::ReplyClose(b"SPAM SPAM SPAM\r\n\r\n".to_vec()));
    let lb = balancer(&["--mode", "http", "--admin", "0", "-R", "1000000"], &[s.port]);
    let got = exchange(lb.port, b"GET / HTTP/1.1\r\nHost: t\r\n\r\n", Duration::from_secs(10)).unwrap();
    assert_eq!(got, BAD_GATEWAY, "{:?}", String::from_utf8_lossy(&got));
    let st = status(lb.admin.unwrap());
    assert_eq!(st["servers"][0]["errors"], 1, "{st}");
}
