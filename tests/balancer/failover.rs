//! Servers that die, refuse, never answer or answer garbage: the balancer fails over before
//! forwarding a byte, answers the exact 500 when nothing is left, and keeps serving.

use crate::util::*;
use std::time::{Duration, Instant};

#[test]
fn a_killed_server_is_failed_over_before_the_next_probe() {
    let mut a = backend(&[]);
    let b = backend(&["--entries", "50"]);
    let lb = balancer(&["-R", "1000"], &[a.port, b.port]);
    assert_eq!(served_by(lb.port, "/healthcheck"), format!("backend-{}", a.port));
    a.proc.signal(nix::sys::signal::Signal::SIGKILL);
    a.proc.wait_exit(Duration::from_secs(5));
    // a is still "up" as far as probes know; the connect is refused and b answers.
    let r = get(lb.port, "/healthcheck");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("Server-Name"), Some(format!("backend-{}", b.port)));
    lb.proc.wait_line(&format!("server: 127.0.0.1:{} is down", a.port), Duration::from_secs(5));
}

#[test]
fn all_servers_down_gives_the_exact_500() {
    let lb = balancer(&[], &[dead_port(), dead_port()]);
    for _ in 0..3 {
        let raw = exchange(lb.port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", Duration::from_secs(10)).unwrap();
        assert_eq!(raw, EXACT_500, "{}", String::from_utf8_lossy(&raw));
    }
}

#[test]
fn a_server_that_never_answers_gives_500_and_the_balancer_goes_on() {
    let silent = silent_server();
    let lb = balancer(&["--server-timeout", "1.5", "-R", "1000"], &[silent]);
    let t0 = Instant::now();
    let raw = exchange(lb.port, b"GET /x HTTP/1.1\r\nHost: x\r\n\r\n", Duration::from_secs(10)).unwrap();
    assert_eq!(raw, EXACT_500, "{}", String::from_utf8_lossy(&raw));
    assert!(t0.elapsed() >= Duration::from_millis(1400), "answered before the server timeout");
    lb.proc.wait_line("sent nothing in time", Duration::from_secs(5));
    // The next client is served (answered) too: the balancer did not stop.
    let raw = exchange(lb.port, b"GET /y HTTP/1.1\r\nHost: x\r\n\r\n", Duration::from_secs(10)).unwrap();
    assert_eq!(raw, EXACT_500);
}

#[test]
fn servers_answering_probes_with_garbage_or_404_are_skipped() {
    let garbage = scripted_server(|_| Some(b"this is not http\r\n\r\n".to_vec()));
    let not_found = scripted_server(|_| Some(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n".to_vec()));
    let short = scripted_server(|_| Some(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n7\n".to_vec()));
    let good = backend(&["--entries", "1000"]);
    let lb = balancer(&[], &[garbage, not_found, short, good.port]);
    for _ in 0..4 {
        assert_eq!(served_by(lb.port, "/healthcheck"), format!("backend-{}", good.port));
    }
    let log = lb.proc.stderr();
    assert!(log.contains(&format!("127.0.0.1:{garbage} is down")), "{log}");
    assert!(log.contains(&format!("127.0.0.1:{not_found} is down: answered 'HTTP/1.1 404 Not Found'")), "{log}");
}

#[test]
fn a_server_that_comes_back_is_used_again() {
    let port = dead_port();
    let b = backend(&["--entries", "1000"]);
    let lb = balancer(&[], &[port, b.port]);
    assert_eq!(served_by(lb.port, "/healthcheck"), format!("backend-{}", b.port));
    let _a = {
        let proc = Proc::spawn(BACKEND, &[&port.to_string()]);
        proc.wait_line("listening on", Duration::from_secs(10));
        proc
    };
    lb.proc.wait_line(&format!("server 127.0.0.1:{port} is up"), Duration::from_secs(10));
    assert_eq!(served_by(lb.port, "/healthcheck"), format!("backend-{port}"));
}

#[test]
fn a_client_that_resets_does_not_hurt_the_balancer() {
    let a = backend(&["--delay-ms", "300"]);
    let lb = balancer(&[], &[a.port]);
    for _ in 0..5 {
        let s = connect_from(None, lb.port).unwrap();
        use std::io::Write;
        (&s).write_all(b"GET /api/v1/hello HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let sock = socket2::Socket::from(s);
        sock.set_linger(Some(Duration::ZERO)).unwrap(); // close → RST
    }
    assert_eq!(get(lb.port, "/api/v1/hello").status, 200);
}
