//! Hostile input on the admin port (see: issue #13, "Hostile input"): raw garbage, requests cut
//! short then closed or left silent, a megabyte header, binary bodies, unknown methods, bodies
//! the endpoint does not read. Each gets its 400 (405 for a method a known path does not
//! take) or a clean close, never a reset under the answer; nothing changes (`/status` shows the
//! same limit and rate); the balancer still serves a request after each one; and a stuck admin
//! client never blocks the data path. Hostile values of `PUT /rate` and `/limit` themselves are
//! `hostile.rs`'s.

use crate::util::*;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};

/// What the client does after sending its bytes.
#[derive(Clone, Copy, Debug)]
enum Then {
    /// Half-closes, then reads the answer to EOF.
    Close,
    /// Stays silent with its write side open, and reads the answer to EOF.
    Silence,
}

/// Sends `bytes` to the admin port, then does `then`; returns what came back and how long the
/// whole exchange took. A reset is an error: the answer must survive the close.
fn poke(admin: u16, bytes: &[u8], then: Then) -> (std::io::Result<Vec<u8>>, Duration) {
    let t0 = Instant::now();
    let mut s = TcpStream::connect(("127.0.0.1", admin)).expect("connect to the admin port");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(10))).unwrap();
    let result = (|| {
        s.write_all(bytes)?;
        if let Then::Close = then {
            s.shutdown(Shutdown::Write)?;
        }
        let mut out = Vec::new();
        s.read_to_end(&mut out)?;
        Ok(out)
    })();
    (result, t0.elapsed())
}

/// A deterministic stream of bytes (xorshift64*), so a failure can be replayed.
fn noise(seed: u64, n: usize) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            (x.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 56) as u8
        })
        .collect()
}

/// The limit and rate the admin reports.
fn settings(admin: u16) -> (serde_json::Value, serde_json::Value) {
    let st = status(admin);
    (st["limit"].clone(), st["rate"].clone())
}

fn served(lb: &Lb, after: &str) {
    let r = get(lb.port, "/api/v1/hello");
    assert_eq!(r.status, 200, "after {after}: {}\nstderr:\n{}", r.text(), lb.proc.stderr());
}

#[test]
fn hostile_admin_requests_get_400_or_a_clean_close_and_change_nothing() {
    let a = backend(&[]);
    let mut lb = balancer(&["--admin", "0", "-N", "3", "--rate", "500"], &[a.port]);
    let admin = lb.admin.unwrap();
    served(&lb, "start");
    let before = settings(admin);
    assert_eq!(before, (serde_json::json!(3), serde_json::json!(500.0)), "as started");

    let mut megabyte_header = b"GET /status HTTP/1.1\r\nHost: x\r\nX-Big: ".to_vec();
    megabyte_header.extend(std::iter::repeat_n(b'a', 1 << 20));
    megabyte_header.extend_from_slice(b"\r\n\r\n");
    let binary: Vec<u8> = (0..=255u8).collect();
    let with = |method: &str, path: &str, body: &[u8]| {
        let mut r =
            format!("{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n", body.len()).into_bytes();
        r.extend_from_slice(body);
        r
    };
    let put = |path: &str, body: &[u8]| with("PUT", path, body);
    let mut noisy_head = b"GET /status HTTP/1.1\r\n".to_vec();
    noisy_head.extend(noise(7, 2000));
    noisy_head.extend_from_slice(b"\r\n\r\n");

    // (what, bytes, then, the status wanted: 0 for "a clean close without a byte is fine too").
    let cases: Vec<(&str, Vec<u8>, Then, u16)> = vec![
        ("random bytes, closed", noise(1, 4096), Then::Close, 400),
        ("random bytes, silent", noise(2, 4096), Then::Silence, 400),
        ("random bytes with a blank line", [noise(3, 512), b"\r\n\r\n".to_vec()].concat(), Then::Silence, 400),
        ("NULs", vec![0u8; 100], Then::Close, 400),
        ("a blank line", b"\r\n\r\n".to_vec(), Then::Close, 400),
        ("no version", b"GET /status\r\n\r\n".to_vec(), Then::Close, 400),
        ("HTTP/2 preface", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec(), Then::Close, 400),
        ("a TLS hello", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03".to_vec(), Then::Close, 400),
        ("a head that is not text", b"GET /st\xffatus HTTP/1.1\r\n\r\n".to_vec(), Then::Close, 400),
        ("a header of noise", noisy_head, Then::Close, 400),
        ("half a request line, closed", b"PUT /lim".to_vec(), Then::Close, 400),
        ("half a head, closed", b"PUT /limit HTTP/1.1\r\nHost: x\r\nContent-Le".to_vec(), Then::Close, 400),
        ("half a body, closed", b"PUT /limit HTTP/1.1\r\nContent-Length: 4\r\n\r\n10".to_vec(), Then::Close, 400),
        ("half a request line, silent", b"PUT /lim".to_vec(), Then::Silence, 400),
        ("half a head, silent", b"PUT /limit HTTP/1.1\r\nHost: x\r\n".to_vec(), Then::Silence, 400),
        ("half a body, silent", b"PUT /limit HTTP/1.1\r\nContent-Length: 4\r\n\r\n10".to_vec(), Then::Silence, 400),
        ("a megabyte header", megabyte_header, Then::Close, 400),
        ("Content-Length: -1", b"PUT /limit HTTP/1.1\r\nContent-Length: -1\r\n\r\n1".to_vec(), Then::Close, 400),
        ("Content-Length: x", b"PUT /rate HTTP/1.1\r\nContent-Length: x\r\n\r\n1".to_vec(), Then::Close, 400),
        (
            "Content-Length: 2^64",
            b"PUT /rate HTTP/1.1\r\nContent-Length: 18446744073709551616\r\n\r\n1".to_vec(),
            Then::Close,
            400,
        ),
        ("binary body on /rate", put("/rate", &binary), Then::Close, 400),
        ("binary body on /limit", put("/limit", &binary), Then::Close, 400),
        ("not UTF-8 on /limit", put("/limit", b"\xff\xfe10"), Then::Close, 400),
        ("NUL in /rate", put("/rate", b"1\x0000"), Then::Close, 400),
        // The endpoint reads bodies by Content-Length only: a chunked body is an empty one,
        // refused, and the chunk bytes left behind must not reset the answer.
        (
            "a chunked /limit",
            b"PUT /limit HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1\r\n5\r\n0\r\n\r\n".to_vec(),
            Then::Silence,
            400,
        ),
        ("DELETE /limit", b"DELETE /limit HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(), Then::Silence, 405),
        ("PATCH /rate", with("PATCH", "/rate", b"10"), Then::Silence, 405),
        ("POST /limit", with("POST", "/limit", b"1"), Then::Silence, 405),
        ("BREW /status", b"BREW /status HTTP/1.1\r\n\r\n".to_vec(), Then::Silence, 405),
        // Not a token: httparse refuses the head (a 405 would mean we read it as a method).
        ("a method of noise", b"\x01\x02\x03 /status HTTP/1.1\r\n\r\n".to_vec(), Then::Close, 400),
        ("PUT to an unknown path", put("/limits", b"1"), Then::Silence, 404),
        ("GET with a body left unread", b"GET /status HTTP/1.1\r\n\r\nleft over".to_vec(), Then::Silence, 200),
    ];
    for (what, bytes, then, want) in cases {
        let (got, took) = poke(admin, &bytes, then);
        let got = got.unwrap_or_else(|e| panic!("{what} ({then:?}): {e} (a reset under the answer?)"));
        let r = parse_reply(got);
        assert_eq!(r.status, want, "{what} ({then:?}): {:?}", String::from_utf8_lossy(&r.raw));
        // Silence is ended by the admin's 2 s deadline; this only bounds a hang.
        assert!(took < Duration::from_secs(5), "{what} ({then:?}) took {took:?}");
        assert_eq!(settings(admin), before, "{what} changed a setting");
        served(&lb, what);
    }
    assert!(lb.proc.exited().is_none(), "the balancer died: {}", lb.proc.stderr());
    assert!(!lb.proc.stderr().contains("panicked"), "{}", lb.proc.stderr());
}

/// The 2 s deadline is one for the whole request, not 2 s per read: a client that sends a byte
/// now and then, each before the last read's timeout, used to hold the admin for one more read
/// timeout past the deadline (answered after 3.5 s here instead of 2).
#[test]
fn admin_deadline_bounds_a_trickling_client_not_each_read() {
    let a = backend(&[]);
    let lb = balancer(&["--admin", "0"], &[a.port]);
    let admin = lb.admin.unwrap();
    let t0 = Instant::now();
    let mut s = TcpStream::connect(("127.0.0.1", admin)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"GET /status HTTP/1.1\r\n").unwrap();
    // Pacing a client, not waiting for the balancer: the second byte comes 1.5 s in, inside the
    // deadline and inside the first read's 2 s timeout.
    std::thread::sleep(Duration::from_millis(1500));
    s.write_all(b"X").unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    let took = t0.elapsed();
    let r = parse_reply(out);
    assert_eq!(r.status, 400, "{:?}", String::from_utf8_lossy(&r.raw));
    assert!(took < Duration::from_millis(3000), "answered after {took:?}: the deadline is 2 s");
    served(&lb, "a trickling admin client");
}

#[test]
fn a_stuck_admin_client_does_not_block_the_data_path() {
    let a = backend(&[]);
    let lb = balancer(&["--admin", "0", "-N", "2"], &[a.port]);
    let admin = lb.admin.unwrap();
    // Half a request, then silence: the admin thread is busy with it until its deadline.
    let mut stuck = TcpStream::connect(("127.0.0.1", admin)).unwrap();
    stuck.write_all(b"PUT /limit HTTP/1.1\r\nContent-Length: 3\r\n\r\n1").unwrap();
    // A second admin client queues behind it (one request at a time)...
    let waiting = std::thread::spawn(move || {
        let t0 = Instant::now();
        let r = get(admin, "/status");
        (r, t0.elapsed())
    });
    // ...while clients through the balancer are served as usual.
    for i in 0..5 {
        served(&lb, &format!("request {i} while the admin is stuck"));
    }
    let (r, took) = waiting.join().unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(took < Duration::from_secs(5), "the next admin request waited {took:?}");
    let mut out = Vec::new();
    stuck.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    stuck.read_to_end(&mut out).unwrap();
    assert_eq!(parse_reply(out).status, 400, "the stuck client is answered when its deadline passes");
    assert_eq!(status(admin)["limit"].as_u64(), Some(2), "the half body changed nothing");
}
