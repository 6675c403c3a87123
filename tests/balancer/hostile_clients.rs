//! Hostile clients in tcp mode (see: issue #13, "Hostile input"): random bytes, a line without
//! end, a 2 MB head, half a request then a close, a reset right after connect (SO_LINGER 0),
//! many of each at once alongside good clients. The balancer stays up, every good request gets
//! its reply, no hostile client hangs, and the servers, which count the requests in progress
//! across all of them, never see more than the limit. tcp mode bridges bytes, so what a hostile
//! client gets back is its server's business; http mode's exact answers are
//! tests/http/hostile_clients.rs's.

use crate::keepalive::{self, Act, Group};
use crate::util::*;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::Duration;

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

/// The hostile kinds, each played by `play`.
#[derive(Clone, Copy, Debug)]
enum Kind {
    Random,
    EndlessLine,
    HugeHead,
    HalfThenClose,
    ResetAtConnect,
}

const KINDS: [Kind; 5] = [Kind::Random, Kind::EndlessLine, Kind::HugeHead, Kind::HalfThenClose, Kind::ResetAtConnect];

/// Plays one hostile client; `Err` says how it went wrong for the test (a hang, a failed
/// connect), not what the server answered, which tcp mode does not decide.
fn play(kind: Kind, port: u16, seed: u64) -> Result<(), String> {
    let s = TcpStream::connect(("127.0.0.1", port)).map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(30))).unwrap();
    let send_then_read = |mut s: TcpStream, bytes: Vec<u8>| -> Result<(), String> {
        // A writer of its own: a server that answers before reading everything must not
        // leave this client blocked in a write while nobody reads its answer.
        let mut w = s.try_clone().map_err(|e| e.to_string())?;
        let writer = std::thread::spawn(move || {
            // The peer may close before taking it all; what matters is the read side.
            let _ = w.write_all(&bytes);
            let _ = w.shutdown(Shutdown::Write);
        });
        let mut out = Vec::new();
        let read = s.read_to_end(&mut out);
        writer.join().unwrap();
        match read {
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                Err(format!("{kind:?}: no end within 30 s ({} bytes read)", out.len()))
            }
            _ => Ok(()),
        }
    };
    match kind {
        Kind::Random => send_then_read(s, noise(seed, 4096)),
        Kind::EndlessLine => {
            let mut line = b"GET /".to_vec();
            line.extend(std::iter::repeat_n(b'a', 100 * 1024));
            send_then_read(s, line)
        }
        Kind::HugeHead => {
            let mut head = b"GET /huge HTTP/1.1\r\nHost: t\r\nConnection: close\r\nX-Big: ".to_vec();
            head.extend(std::iter::repeat_n(b'b', 2 << 20));
            head.extend_from_slice(b"\r\n\r\n");
            send_then_read(s, head)
        }
        Kind::HalfThenClose => {
            let mut s = s;
            s.write_all(b"GET /half HTTP/1.1\r\nHost: t\r\nX-Ha").map_err(|e| e.to_string())?;
            drop(s);
            Ok(())
        }
        Kind::ResetAtConnect => {
            let sock = socket2::Socket::from(s);
            sock.set_linger(Some(Duration::ZERO)).map_err(|e| e.to_string())?;
            drop(sock); // an RST, not a FIN
            Ok(())
        }
    }
}

/// A good client's request on a new connection: it must get the server's 200, whole.
fn good(port: u16) -> Result<(), String> {
    let raw = exchange(port, b"GET /good HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", Duration::from_secs(30))
        .map_err(|e| format!("error: {e}"))?;
    let r = parse_reply(raw);
    if r.status == 200 && r.body == b"ok" { Ok(()) } else { Err(format!("{:?}", String::from_utf8_lossy(&r.raw))) }
}

#[test]
fn hostile_clients_leave_good_ones_served_and_the_bound_kept() {
    let group = Group::new();
    // Each request takes the server a little while, so requests overlap and the bound matters.
    let handler = |_: &keepalive::Req, name: &str| {
        std::thread::sleep(Duration::from_millis(10));
        Act::ReplyClose(keepalive::ok(name, "ok"))
    };
    let s1 = keepalive::start("s1", &group, handler);
    let s2 = keepalive::start("s2", &group, handler);
    let n = LIMIT.to_string();
    let mut lb = balancer(&["-N", &n, "--client-timeout", "2s", "--queue-timeout", "30"], &[s1.port, s2.port]);
    good(lb.port).unwrap_or_else(|e| panic!("before: {e}\n{}", lb.proc.stderr()));

    let port = lb.port;
    let mut hostile = Vec::new();
    for round in 0..12u64 {
        for kind in KINDS {
            hostile.push(std::thread::spawn(move || play(kind, port, round * 10 + kind as u64 + 1)));
        }
    }
    let goods: Vec<_> =
        (0..6).map(|_| std::thread::spawn(move || (0..10).map(|_| good(port)).collect::<Vec<_>>())).collect();
    let hostile: Vec<Result<(), String>> = hostile.into_iter().map(|h| h.join().unwrap()).collect();
    let goods: Vec<Result<(), String>> = goods.into_iter().flat_map(|g| g.join().unwrap()).collect();
    let log = lb.proc.stderr();

    let failed: Vec<&String> = goods.iter().filter_map(|g| g.as_ref().err()).collect();
    assert!(failed.is_empty(), "{} of {} good requests failed: {:?}\n{log}", failed.len(), goods.len(), failed);
    let hung: Vec<&String> = hostile.iter().filter_map(|h| h.as_ref().err()).collect();
    assert!(hung.is_empty(), "hostile clients that did not end: {hung:?}\n{log}");
    assert!(lb.proc.exited().is_none(), "the balancer died:\n{log}");
    assert!(!log.contains("panicked"), "{log}");
    let max = group.max();
    assert!(max <= LIMIT, "the servers saw {max} requests in progress with -N {LIMIT}");
    let good_seen = [&s1, &s2].iter().flat_map(|s| s.seen()).filter(|r| r.path == "/good").count();
    assert_eq!(good_seen, goods.len() + 1, "every good request reached a server once");
    // And it still serves.
    good(lb.port).unwrap_or_else(|e| panic!("after: {e}\n{}", lb.proc.stderr()));
}
