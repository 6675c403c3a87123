//! The waiting room: one over --queue-max gets the exact 503 at once; one that waited
//! --queue-timeout gets it too; nothing hangs, nothing is dropped without an answer.

use crate::util::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

fn send(port: u16) -> TcpStream {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.write_all(b"GET /api/v1/hello HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    s
}

fn read_all(mut s: TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    out
}

#[test]
fn one_over_queue_max_gets_the_exact_503_at_once() {
    let a = backend(&["--delay-ms", "1500"]);
    let lb = balancer(&["-N", "1", "--queue-max", "2", "-v"], &[a.port]);
    let first = send(lb.port);
    lb.proc.wait_line("to server", Duration::from_secs(5));
    let queued: Vec<TcpStream> = (0..2).map(|_| send(lb.port)).collect();
    lb.proc.wait_line("queued, 2 waiting", Duration::from_secs(5));
    let over = send(lb.port);
    assert_eq!(read_all(over), EXACT_503);
    assert_eq!(parse_reply(read_all(first)).status, 200);
    for q in queued {
        assert_eq!(parse_reply(read_all(q)).status, 200, "queued clients are served in turn");
    }
}

#[test]
fn a_connection_that_waits_past_queue_timeout_gets_the_exact_503() {
    let a = backend(&["--delay-ms", "2500"]);
    let lb = balancer(&["-N", "1", "--queue-timeout", "1", "-v"], &[a.port]);
    let first = send(lb.port);
    lb.proc.wait_line("to server", Duration::from_secs(5));
    let waiting = send(lb.port);
    assert_eq!(read_all(waiting), EXACT_503);
    lb.proc.wait_line("waited too long", Duration::from_secs(1));
    assert_eq!(parse_reply(read_all(first)).status, 200);
}

#[test]
fn a_low_open_file_limit_is_reported_and_the_balancer_goes_on() {
    let a = backend(&[]);
    // A hard limit of 256 cannot hold 4096 waiting clients: the balancer says what it allows.
    let script = format!("ulimit -n 256 && exec {LB} 0 {}", a.port);
    let lb = Proc::spawn("/bin/sh", &["-c", &script]);
    let line = lb.wait_line("open-file limit is 256", std::time::Duration::from_secs(10));
    assert!(line.contains("about"), "{line}");
    let listening = lb.wait_line("listening on ", std::time::Duration::from_secs(10));
    let port: u16 = listening.rsplit(':').next().unwrap().trim().parse().unwrap();
    assert_eq!(get(port, "/api/v1/hello").status, 200);
}
