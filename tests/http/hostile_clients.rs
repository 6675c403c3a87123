//! Hostile clients in http mode (see: issue #13, "Hostile input"): random bytes, a line without
//! end, a 2 MB head, half a request then a close, a reset right after connect (SO_LINGER 0),
//! many of each at once alongside good keep-alive and new-connection clients. Each bad request
//! gets its exact 400 or 431 (half a request then a close: a clean close) and reaches no
//! server; the balancer stays up; every good request gets its reply; and the servers, which
//! count requests in progress across all of them, never see more than the limit.

use crate::keepalive::{self, Act, Client, Group};
use crate::util::*;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::Duration;

const BAD: &[u8] = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
const TOO_LARGE: &[u8] =
    b"HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
const LIMIT: usize = 3;

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

#[derive(Clone, Copy, Debug)]
enum Kind {
    Random,
    EndlessLine,
    HugeHead,
    BadHeader,
    HalfThenClose,
    ResetAtConnect,
}

const KINDS: [Kind; 6] =
    [Kind::Random, Kind::EndlessLine, Kind::HugeHead, Kind::BadHeader, Kind::HalfThenClose, Kind::ResetAtConnect];

/// Sends `bytes` (from a writer thread, so a balancer that answers before reading it all
/// cannot leave this client stuck in a write), keeps its write side open unless `half_close`,
/// and reads to EOF. A reset is an error: the answer must survive the close.
fn send_and_read(s: TcpStream, bytes: Vec<u8>, half_close: bool) -> std::io::Result<Vec<u8>> {
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut w = s.try_clone()?;
    let writer = std::thread::spawn(move || {
        let r = w.write_all(&bytes);
        if half_close {
            let _ = w.shutdown(Shutdown::Write); // the answer is what is checked
        }
        r
    });
    let mut out = Vec::new();
    let mut s = s;
    let read = s.read_to_end(&mut out).map(|_| out);
    // The balancer may stop reading once it has answered; the write's fate is not the test.
    let _ = writer.join().unwrap();
    read
}

/// Plays one hostile client: `Err` describes an answer other than the exact one wanted.
fn play(kind: Kind, port: u16, seed: u64) -> Result<(), String> {
    let s = TcpStream::connect(("127.0.0.1", port)).map_err(|e| format!("{kind:?}: connect: {e}"))?;
    let (got, want): (std::io::Result<Vec<u8>>, &[u8]) = match kind {
        Kind::Random => {
            let mut bytes = noise(seed, 4096);
            bytes[0] = 0x01; // not a token byte: malformed from the first byte on
            (send_and_read(s, bytes, false), BAD)
        }
        Kind::EndlessLine => {
            let mut line = b"GET /".to_vec();
            line.extend(std::iter::repeat_n(b'a', 100 * 1024));
            (send_and_read(s, line, false), TOO_LARGE)
        }
        Kind::HugeHead => {
            let mut head = b"GET /huge HTTP/1.1\r\nHost: t\r\nX-Big: ".to_vec();
            head.extend(std::iter::repeat_n(b'b', 2 << 20));
            head.extend_from_slice(b"\r\n\r\n");
            (send_and_read(s, head, false), TOO_LARGE)
        }
        Kind::BadHeader => (send_and_read(s, b"GET /bad HTTP/1.1\r\nHost t\r\n\r\n".to_vec(), false), BAD),
        Kind::HalfThenClose => (send_and_read(s, b"GET /half HTTP/1.1\r\nHost: t\r\nX-Ha".to_vec(), true), b""),
        Kind::ResetAtConnect => {
            let sock = socket2::Socket::from(s);
            sock.set_linger(Some(Duration::ZERO)).map_err(|e| e.to_string())?;
            drop(sock); // an RST, not a FIN
            return Ok(());
        }
    };
    match got {
        Ok(got) if got == want => Ok(()),
        Ok(got) => Err(format!("{kind:?}: got {:?}", String::from_utf8_lossy(&got[..got.len().min(200)]))),
        Err(e) => Err(format!("{kind:?}: {e}")),
    }
}

#[test]
fn hostile_clients_get_their_exact_answers_and_reach_no_server() {
    let group = Group::new();
    let handler = |_: &keepalive::Req, name: &str| Act::After(Duration::from_millis(10), keepalive::ok(name, "ok"));
    let s1 = keepalive::start("s1", &group, handler);
    let s2 = keepalive::start("s2", &group, handler);
    let n = LIMIT.to_string();
    let mut lb =
        balancer(&["--mode", "http", "-N", &n, "--client-timeout", "5s", "--queue-timeout", "30"], &[s1.port, s2.port]);
    let port = lb.port;
    assert_eq!(Client::connect(port).get("/good").status, 200, "{}", lb.proc.stderr());

    let mut hostile = Vec::new();
    for round in 0..10u64 {
        for kind in KINDS {
            hostile.push(std::thread::spawn(move || play(kind, port, round * 10 + kind as u64 + 1)));
        }
    }
    // Good clients alongside: keep-alive ones (ten requests on one connection) and ones with
    // a new connection per request.
    let keep: Vec<_> = (0..4)
        .map(|_| {
            std::thread::spawn(move || {
                let mut c = Client::connect(port);
                (0..10).map(|_| c.get("/good")).map(|r| (r.status, r.body)).collect::<Vec<_>>()
            })
        })
        .collect();
    let fresh: Vec<_> = (0..4)
        .map(|_| {
            std::thread::spawn(move || {
                (0..5)
                    .map(|_| {
                        let raw = exchange(
                            port,
                            b"GET /good HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
                            Duration::from_secs(30),
                        )
                        .unwrap_or_default();
                        let r = parse_reply(raw);
                        (r.status, r.body)
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let wrong: Vec<String> = hostile.into_iter().filter_map(|h| h.join().unwrap().err()).collect();
    let goods: Vec<(u16, Vec<u8>)> = keep.into_iter().chain(fresh).flat_map(|g| g.join().unwrap()).collect();
    let log = lb.proc.stderr();

    assert!(lb.proc.exited().is_none(), "the balancer died:\n{log}");
    assert!(wrong.is_empty(), "{} hostile clients got the wrong answer: {:?}\n{log}", wrong.len(), wrong);
    let failed: Vec<_> = goods.iter().filter(|(st, body)| *st != 200 || body != b"ok").collect();
    assert!(failed.is_empty(), "{} of {} good requests failed: {failed:?}\n{log}", failed.len(), goods.len());
    assert!(!log.contains("panicked"), "{log}");
    let max = group.max();
    assert!(max <= LIMIT, "the servers saw {max} requests in progress with -N {LIMIT}");
    let seen: Vec<String> = [&s1, &s2].iter().flat_map(|s| s.seen()).map(|r| r.path).collect();
    let strays: Vec<&String> = seen.iter().filter(|p| p.as_str() != "/good").collect();
    assert!(strays.is_empty(), "bad requests reached a server: {strays:?}");
    assert_eq!(seen.len(), goods.len() + 1, "every good request reached a server once");
    // And it still serves.
    assert_eq!(Client::connect(port).get("/good").status, 200, "{}", lb.proc.stderr());
}
