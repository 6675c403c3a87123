//! `pool: k`: one balancer process listening on k consecutive ports, sharing its servers, its
//! limit and its waiting room. With `connections: 1`, a client held on the first listener
//! makes a client of the second wait: the limit protects the servers, so it is global (issue #7).

use crate::util::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// Sends a GET on `port` and returns the open socket and its local address (as logged).
fn send(port: u16) -> (TcpStream, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap_or_else(|e| panic!("connect {port}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.write_all(format!("GET /x HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n").as_bytes()).unwrap();
    let me = s.local_addr().unwrap().to_string();
    (s, me)
}

fn answer(mut s: TcpStream) -> Reply {
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    parse_reply(out)
}

#[test]
fn a_pool_of_two_listeners_shares_one_limit() {
    let server = held_server("held");
    let first = free_ports(2);
    let dir = temp_dir("pool");
    let file = dir.join("pool.yaml");
    let text = format!("load-balancer-port: {first}\npool: 2\nservers: [{}]\nconnections: 1\nadmin: 0\n", server.port);
    std::fs::write(&file, text).unwrap();
    let lb = balancer_with(&["-v", "--config", file.to_str().unwrap()]);
    assert_eq!(listening_ports(&lb.proc), [first, first + 1], "{}", lb.proc.stderr());
    let admin = lb.admin.unwrap();

    // A client on the first listener takes the only slot and is held at the server.
    let (one, _) = send(first);
    server.arrival();
    // A client on the second listener must wait for that slot.
    let (two, two_addr) = send(first + 1);
    lb.proc.wait_line(&format!("client {two_addr}: queued"), Duration::from_secs(10));
    let st = status(admin);
    assert_eq!(
        (st["limit"].as_u64(), st["in_flight"].as_u64(), st["queued"].as_u64()),
        (Some(1), Some(1), Some(1)),
        "{st}"
    );
    assert_eq!(st["servers"][0]["in_flight"], 1, "{st}");

    // Freeing the slot lets the second client through; both are served.
    server.release();
    assert_eq!(answer(one).status, 200);
    server.arrival();
    server.release();
    let reply = answer(two);
    assert_eq!((reply.status, reply.header("Server-Name").as_deref()), (200, Some("held")), "{reply:?}");
    assert_eq!(server.max.load(std::sync::atomic::Ordering::SeqCst), 1, "the server never held two at once");
    assert_eq!(status(admin)["served"], 2);
}
