//! Out of file descriptors in http mode (see: issue #13, "Hostile input"; tcp mode is
//! tests/balancer/fd_limit.rs): under a 64-descriptor limit, 300 clients at once, half of them
//! keep-alive (two requests on one connection) and half with a new connection per request. The
//! balancer does not crash and does not spin, every client gets its replies, the exact 503 or a
//! clean close, no server is called down for our own shortage, and afterwards a request gets
//! its 200.

use crate::keepalive::{self, Act, Group};
use crate::util::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// CPU time (user + system) the process `pid` has used so far, from /proc/PID/stat.
fn cpu_time(pid: i32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("/proc/PID/stat");
    // Fields after the command name (which is in parentheses and may hold spaces).
    let rest = &stat[stat.rfind(')').expect("a command name") + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    // /proc counts in USER_HZ, which Linux fixes at 100 for user space.
    Duration::from_millis(ticks * 10)
}

/// Reads one response from `s` (with what `buf` already holds): `Ok(None)` at a clean EOF
/// before any byte of it, the raw response otherwise (by Content-Length; to EOF without one).
fn read_response(s: &mut TcpStream, buf: &mut Vec<u8>) -> std::io::Result<Option<Vec<u8>>> {
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 4) {
            let r = parse_reply(buf[..end].to_vec());
            if let Some(len) = r.header("Content-Length").and_then(|v| v.parse::<usize>().ok())
                && buf.len() >= end + len
            {
                return Ok(Some(buf.drain(..end + len).collect()));
            }
        }
        let n = s.read(&mut chunk)?;
        if n == 0 {
            return Ok((!buf.is_empty()).then(|| std::mem::take(buf)));
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// How one response ended: the 200 with its body, the exact 503 (after which the balancer
/// closes), a clean close before a byte, or something else.
#[derive(Debug, PartialEq)]
enum Seen {
    Ok,
    Unavailable,
    Closed,
}

fn judge(r: std::io::Result<Option<Vec<u8>>>) -> Result<Seen, String> {
    match r.map_err(|e| format!("error: {e}"))? {
        None => Ok(Seen::Closed),
        Some(raw) if raw == EXACT_503 => Ok(Seen::Unavailable),
        Some(raw) => {
            let r = parse_reply(raw);
            if r.status == 200 && r.body == b"ok" { Ok(Seen::Ok) } else { Err(format!("{:?}", r.raw)) }
        }
    }
}

/// A client: `requests` GETs on one connection (the last says `Connection: close`); stops at
/// the first response that is not a 200.
fn client(port: u16, requests: usize) -> Result<Vec<Seen>, String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(40))).unwrap();
    let mut buf = Vec::new();
    let mut seen = Vec::new();
    for i in 0..requests {
        let close = if i + 1 == requests { "Connection: close\r\n" } else { "" };
        let req = format!("GET /x HTTP/1.1\r\nHost: t\r\n{close}\r\n");
        if let Err(e) = s.write_all(req.as_bytes()) {
            // The balancer closed between responses (a keep-alive close is clean).
            if i > 0 {
                break;
            }
            return Err(format!("write: {e}"));
        }
        let outcome = judge(read_response(&mut s, &mut buf))?;
        let go_on = outcome == Seen::Ok;
        seen.push(outcome);
        if !go_on {
            break;
        }
    }
    Ok(seen)
}

#[test]
fn http_mode_out_of_descriptors_does_not_crash_or_spin() {
    let group = Group::new();
    let handler = |_: &keepalive::Req, name: &str| Act::After(Duration::from_millis(10), keepalive::ok(name, "ok"));
    let a = keepalive::start("a", &group, handler);
    let b = keepalive::start("b", &group, handler);
    let (pa, pb) = (a.port.to_string(), b.port.to_string());
    // `ulimit -n` in a shell that then becomes the balancer: the limit is the hard one too,
    // so the balancer cannot raise it.
    let mut lb = Proc::spawn(
        "sh",
        &["-c", "ulimit -n 64 && exec \"$0\" \"$@\"", LB, "--mode", "http", "--queue-timeout", "20", "0", &pa, &pb],
    );
    let line = lb.wait_line("listening on ", Duration::from_secs(10));
    let port: u16 = line.rsplit(':').next().unwrap().trim().parse().unwrap_or_else(|_| panic!("{line}"));
    assert_eq!(client(port, 1), Ok(vec![Seen::Ok]), "{}", lb.stderr());

    let cpu0 = cpu_time(lb.pid);
    let t0 = Instant::now();
    let clients: Vec<_> = (0..300).map(|i| std::thread::spawn(move || client(port, 1 + i % 2))).collect();
    let outcomes: Vec<Result<Vec<Seen>, String>> = clients.into_iter().map(|c| c.join().unwrap()).collect();
    let wall = t0.elapsed();
    let cpu = cpu_time(lb.pid) - cpu0;
    let log = lb.stderr();

    assert!(lb.exited().is_none(), "the balancer died: {log}");
    let bad: Vec<&String> = outcomes.iter().filter_map(|o| o.as_ref().err()).collect();
    assert!(
        bad.is_empty(),
        "{} clients got neither 200s, the exact 503 nor a clean close: {:?}\n{log}",
        bad.len(),
        &bad[..bad.len().min(5)]
    );
    assert!(log.contains("no server is blamed"), "300 clients under 64 descriptors: a shortage, logged:\n{log}");
    assert!(!log.contains("is down"), "a server was called down for our own shortage:\n{log}");
    let shortage_lines = log.lines().filter(|l| l.contains("descriptor") || l.contains("Too many open files")).count();
    assert!(shortage_lines <= 10, "{shortage_lines} lines about the shortage:\n{log}");
    assert!(!log.contains("panicked"), "{log}");
    // A loop that spins on EMFILE burns a core while clients wait.
    assert!(cpu < wall / 2, "the balancer used {cpu:?} of CPU in {wall:?}:\n{log}");
    let all: Vec<&Seen> = outcomes.iter().flatten().flatten().collect();
    let served = all.iter().filter(|s| ***s == Seen::Ok).count();
    eprintln!("{served} of {} requests served, in {wall:?}, {cpu:?} CPU", all.len());

    // And afterwards it serves as before.
    assert_eq!(client(port, 2), Ok(vec![Seen::Ok, Seen::Ok]), "{}", lb.stderr());
}
