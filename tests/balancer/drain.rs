//! Signals: SIGTERM stops accepting, lets bridged connections finish, exits 0; SIGPIPE never
//! kills the balancer; a silent client is closed after --client-timeout and holds no slot,
//! unless --server-speaks-first, where it is bridged at once.

use crate::util::*;
use nix::sys::signal::Signal;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

#[test]
fn sigterm_drains_bridged_connections_then_exits_0() {
    let a = backend(&["--delay-ms", "1500"]);
    let mut lb = balancer(&["-v"], &[a.port]);
    let mut s = TcpStream::connect(("127.0.0.1", lb.port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"GET /api/v1/hello HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    lb.proc.wait_line("to server", Duration::from_secs(5)); // dispatched: it is being bridged
    lb.proc.signal(Signal::SIGTERM);
    lb.proc.wait_line("stop accepting", Duration::from_secs(5));
    assert!(TcpStream::connect(("127.0.0.1", lb.port)).is_err(), "listener closed at SIGTERM");
    let mut reply = Vec::new();
    s.read_to_end(&mut reply).unwrap();
    assert_eq!(parse_reply(reply).status, 200, "the bridged request finished");
    drop(s); // the client is done: the bridge ends and the drain can finish early
    let st = lb.proc.wait_exit(Duration::from_secs(10));
    assert_eq!(st.code(), Some(0), "{}", lb.proc.stderr());
}

#[test]
fn sigpipe_and_sighup_without_config_do_not_kill_it() {
    let a = backend(&[]);
    let mut lb = balancer(&[], &[a.port]);
    lb.proc.signal(Signal::SIGPIPE);
    lb.proc.signal(Signal::SIGHUP);
    lb.proc.wait_line("nothing to reload", Duration::from_secs(5));
    assert_eq!(get(lb.port, "/api/v1/hello").status, 200);
    assert!(lb.proc.exited().is_none());
}

#[test]
fn a_silent_client_holds_no_slot_and_is_closed_after_the_client_timeout() {
    let a = backend(&[]);
    let lb = balancer(&["-N", "1", "--client-timeout", "2"], &[a.port]);
    // Many silent clients, and the one slot still serves a talking client at once.
    let silent: Vec<TcpStream> = (0..50).map(|_| TcpStream::connect(("127.0.0.1", lb.port)).unwrap()).collect();
    assert_eq!(get(lb.port, "/api/v1/hello").status, 200);
    // Each silent one is closed by the balancer (EOF) after about 2 s.
    for mut s in silent {
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut buf = [0u8; 1];
        assert_eq!(s.read(&mut buf).unwrap(), 0, "closed without a byte");
    }
}

#[test]
fn server_speaks_first_dispatches_a_silent_client_at_once() {
    // Answers a health probe like a backend; greets anyone else first, SMTP-style.
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            std::thread::spawn(move || {
                let _ = s.set_read_timeout(Some(Duration::from_millis(300)));
                let mut buf = [0u8; 1024];
                match s.read(&mut buf) {
                    Ok(n) if buf[..n].starts_with(b"GET /healthcheck") => {
                        let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\n0\n0\n");
                    }
                    _ => {
                        let _ = s.write_all(b"220 hello\r\n");
                    }
                }
            });
        }
    });
    let lb = balancer(&["--server-speaks-first"], &[port]);
    let mut s = TcpStream::connect(("127.0.0.1", lb.port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut greeting = [0u8; 11];
    s.read_exact(&mut greeting).unwrap();
    assert_eq!(&greeting, b"220 hello\r\n");
}
