//! Byte-for-byte bridging: 100 MB each way intact, half-close passed through.

use crate::util::*;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::Duration;

/// A repeatable 100 MB body: a cheap generator, so the test needs no file on disk.
fn body_byte(i: usize) -> u8 {
    (i.wrapping_mul(2_654_435_761) >> 13) as u8
}

const SIZE: usize = 100 * 1024 * 1024;

#[test]
fn a_100mb_upload_and_download_pass_intact() {
    let dir = std::env::temp_dir().join(format!("lb-transfer-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let a = backend(&["--dir", dir.to_str().unwrap()]);
    let lb = balancer(&[], &[a.port]);

    let mut s = TcpStream::connect(("127.0.0.1", lb.port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    write!(s, "PUT /big.bin HTTP/1.1\r\nHost: x\r\nContent-Length: {SIZE}\r\n\r\n").unwrap();
    let chunk: Vec<u8> = (0..1 << 20).map(body_byte).collect();
    for _ in 0..SIZE / chunk.len() {
        s.write_all(&chunk).unwrap();
    }
    let mut reply = Vec::new();
    s.read_to_end(&mut reply).unwrap();
    let reply = parse_reply(reply);
    assert!(reply.status == 201 || reply.status == 200, "PUT: {}", String::from_utf8_lossy(&reply.raw));
    assert_eq!(std::fs::metadata(dir.join("big.bin")).unwrap().len(), SIZE as u64);

    let mut s = TcpStream::connect(("127.0.0.1", lb.port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    s.write_all(b"GET /big.bin HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut got = Vec::with_capacity(SIZE + 4096);
    s.read_to_end(&mut got).unwrap();
    let reply = parse_reply(got);
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body.len(), SIZE);
    let first_bad = reply.body.iter().enumerate().position(|(i, b)| *b != body_byte(i % (1 << 20)));
    assert_eq!(first_bad, None, "body differs");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_half_close_reaches_the_server_and_the_reply_still_comes_back() {
    // The server replies only after it sees EOF from the client: a half-close must pass.
    let echo = serve_each(|mut s| {
        let mut all = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            if all.starts_with(b"GET /healthcheck") && all.ends_with(b"\r\n\r\n") {
                let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\n0\n0\n");
                return;
            }
            match s.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => all.extend_from_slice(&buf[..n]),
            }
        }
        let _ = s.write_all(format!("got {} bytes", all.len()).as_bytes());
    });
    let lb = balancer(&[], &[echo]);
    let mut s = TcpStream::connect(("127.0.0.1", lb.port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"hello, server").unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    let mut reply = String::new();
    s.read_to_string(&mut reply).unwrap();
    assert_eq!(reply, "got 13 bytes", "{}", lb.proc.stderr());
}

/// A server that refuses uploads to `/reject` at once (answers and closes without reading
/// the body), and checks that every byte of an upload to `/check` is `B`.
fn picky_server() -> u16 {
    serve_each(|mut s| {
        let _ = s.set_read_timeout(Some(Duration::from_secs(30)));
        let Some(head) = read_head(&mut s) else { return };
        let text = String::from_utf8_lossy(&head).to_string();
        if text.starts_with("GET /healthcheck ") {
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\n0\n0\n");
        } else if text.starts_with("PUT /reject ") {
            let _ = s.write_all(b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 0\r\n\r\n");
        } else {
            // What came with the head, then the rest up to EOF.
            let split = head.windows(4).position(|w| w == b"\r\n\r\n").map_or(head.len(), |p| p + 4);
            let mut body = head[split..].to_vec();
            let _ = s.read_to_end(&mut body);
            let verdict = match body.iter().position(|b| *b != b'B') {
                None => format!("all {} bytes are B", body.len()),
                Some(i) => format!("byte {i} of {} is {:?}", body.len(), body[i] as char),
            };
            let _ = write!(s, "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{verdict}", verdict.len());
        }
    })
}

#[test]
fn an_upload_cut_short_by_the_server_leaves_nothing_behind_for_the_next_client() {
    // One worker, so the second client is bridged by the same thread, with the same buffers,
    // as the first. Bulk goes through a pipe; a pipe still holding the refused upload's bytes
    // must never be used again.
    let server = picky_server();
    let lb = balancer(&["-N", "1"], &[server]);
    let big = vec![b'A'; 8 << 20];
    for _ in 0..3 {
        let mut s = TcpStream::connect(("127.0.0.1", lb.port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.set_write_timeout(Some(Duration::from_secs(10))).unwrap();
        let _ = write!(s, "PUT /reject HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n", big.len());
        let _ = s.write_all(&big); // cut short by the server: errors expected
        let mut reply = Vec::new();
        let _ = s.read_to_end(&mut reply);
    }
    let body = vec![b'B'; 1 << 20];
    let mut s = TcpStream::connect(("127.0.0.1", lb.port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "PUT /check HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    s.write_all(&body).unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    let mut reply = Vec::new();
    s.read_to_end(&mut reply).unwrap();
    let reply = parse_reply(reply);
    assert_eq!(reply.text(), format!("all {} bytes are B", body.len()), "{}", lb.proc.stderr());
}
