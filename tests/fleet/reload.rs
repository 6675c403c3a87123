//! SIGHUP re-reads the config file: a server removed gets no new client while its transfer in
//! flight finishes intact, a server added takes the new clients, and an invalid file is logged
//! while the running configuration stays (issue #7).

use crate::util::*;
use nix::sys::signal::Signal;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::Duration;

fn server_line(port: u16) -> String {
    format!("127.0.0.1:{port}")
}

fn addresses(st: &serde_json::Value) -> Vec<(String, bool, u64)> {
    st["servers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["address"].as_str().unwrap().to_string(),
                s["retiring"].as_bool().unwrap(),
                s["in_flight"].as_u64().unwrap(),
            )
        })
        .collect()
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
}

#[test]
fn reload_moves_new_clients_and_keeps_the_transfer_in_flight() {
    // A: slow and serving a large file; B: the replacement.
    let dir = temp_dir("reload");
    let body: Vec<u8> = (0..4u32 << 20).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8).collect();
    std::fs::write(dir.join("big.bin"), &body).unwrap();
    let www = dir.to_str().unwrap();
    let a = backend(&["--name", "A", "--dir", www, "--delay-ms", "1500"]);
    let b = backend(&["--name", "B", "--dir", www]);
    let file = dir.join("lb.yaml");
    let head = "port: 0\nadmin: 0\nconnections: 4\n";
    write(&file, &format!("{head}servers: [{}]\n", a.port));
    let mut lb = balancer_with(&["-v", "--config", file.to_str().unwrap()]);
    let admin = lb.admin.unwrap();

    // A large, slow transfer from A is under way...
    let mut s = TcpStream::connect(("127.0.0.1", lb.port)).unwrap();
    let me = s.local_addr().unwrap().to_string();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.write_all(b"GET /big.bin HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
    let transfer = std::thread::spawn(move || {
        let mut out = Vec::new();
        s.read_to_end(&mut out).map(|_| out)
    });
    lb.proc.wait_line(&format!("client {me}: to server {}", server_line(a.port)), Duration::from_secs(10));

    // ...when the file swaps A for B and the balancer reloads it.
    write(&file, &format!("{head}servers: [{}]\n", b.port));
    lb.proc.signal(Signal::SIGHUP);
    lb.proc.wait_line("reload: ", Duration::from_secs(10));
    assert!(logged(&lb.proc, "applied (1 servers, limit 4)").is_some(), "{}", lb.proc.stderr());
    assert_eq!(
        addresses(&status(admin)),
        [(server_line(a.port), true, 1), (server_line(b.port), false, 0)],
        "A is retiring with its transfer still in flight"
    );

    // New clients go to B only.
    for _ in 0..3 {
        assert_eq!(served_by(lb.port, "/api/v1/hello"), "B");
    }

    // The transfer that started before the reload completes, byte for byte.
    let raw = transfer.join().unwrap().expect("the transfer in flight was not cut");
    let reply = parse_reply(raw);
    assert_eq!((reply.status, reply.header("Server-Name").as_deref()), (200, Some("A")), "{}", reply.head);
    assert!(reply.body == body, "the body arrived intact ({} of {} bytes)", reply.body.len(), body.len());
    // A got exactly that one request (health probes are not counted).
    let a_stats: serde_json::Value = serde_json::from_slice(&get(a.port, "/worker/stats").body).unwrap();
    assert_eq!(a_stats["TotalRequests"][0]["total"], 1, "{a_stats}");

    // An invalid file on reload is logged; the running configuration stays.
    write(&file, &format!("{head}servers: [{}]\nconections: 1\n", a.port));
    lb.proc.signal(Signal::SIGHUP);
    let line = lb.proc.wait_line("reload: ", Duration::from_secs(10));
    assert!(line.contains(&format!("{}:5: unknown key 'conections'", file.display())), "{line}");
    assert!(line.contains("keeping the running configuration"), "{line}");
    assert_eq!(served_by(lb.port, "/api/v1/hello"), "B");
    let st = status(admin);
    assert_eq!(st["limit"], 4, "{st}");
    assert!(lb.proc.exited().is_none(), "still running:\n{}", lb.proc.stderr());
}
