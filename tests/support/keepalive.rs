//! A keep-alive HTTP/1.1 test server for the http-mode tests: real sockets on 127.0.0.1:0, a
//! thread per connection, several requests per connection. It answers `/healthcheck` itself
//! (the balancer's probes), hands every other request to the test's `handler`, and counts what
//! the balancer did to it: connections accepted, requests, requests in progress (and the most
//! at once, shared by every server of a `Group`), and the raw bytes of each request as they
//! arrived, so tests can check bounds, reuse and byte-exact forwarding from the server's side.
#![allow(dead_code)] // each test file uses a different part

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Counts shared by a group of servers (the bound is on the sum over all of them).
#[derive(Debug, Default)]
pub struct Group {
    pub in_progress: AtomicUsize,
    pub max_in_progress: AtomicUsize,
}

impl Group {
    pub fn new() -> Arc<Group> {
        Arc::new(Group::default())
    }
    pub fn max(&self) -> usize {
        self.max_in_progress.load(Ordering::SeqCst)
    }
}

/// One request as the server read it.
#[derive(Debug, Clone)]
pub struct Req {
    pub head: String,
    pub method: String,
    pub path: String,
    /// The body bytes exactly as they came (chunk framing and trailers included).
    pub body: Vec<u8>,
    /// The request's bytes as they came, head and body.
    pub raw: Vec<u8>,
}

impl Req {
    pub fn header(&self, name: &str) -> Option<String> {
        self.head.lines().skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim().eq_ignore_ascii_case(name).then(|| v.trim().to_string())
        })
    }
}

/// What the handler wants done with a request.
pub enum Act {
    /// Write these bytes (a whole response) and keep reading requests.
    Reply(Vec<u8>),
    /// Wait, then reply.
    After(Duration, Vec<u8>),
    /// Write these bytes, then close the connection.
    ReplyClose(Vec<u8>),
    /// Close at once without a byte.
    Close,
    /// Switch protocols: write these bytes, then echo every byte back until EOF.
    Echo(Vec<u8>),
}

/// A running test server.
pub struct Server {
    pub port: u16,
    pub name: String,
    pub conns: Arc<AtomicUsize>,
    pub requests: Arc<AtomicUsize>,
    pub seen: Arc<Mutex<Vec<Req>>>,
}

impl Server {
    pub fn conns(&self) -> usize {
        self.conns.load(Ordering::SeqCst)
    }
    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
    pub fn seen(&self) -> Vec<Req> {
        self.seen.lock().unwrap().clone()
    }
}

/// A 200 with `body`, `Content-Length` and the server's name.
pub fn ok(name: &str, body: &str) -> Vec<u8> {
    format!("HTTP/1.1 200 OK\r\nServer: {name}\r\nContent-Length: {}\r\n\r\n{body}", body.len()).into_bytes()
}

type Handler = dyn Fn(&Req, &str) -> Act + Send + Sync;

/// Starts a server named `name` in `group`; `handler(req, name)` decides each answer.
pub fn start(name: &str, group: &Arc<Group>, handler: impl Fn(&Req, &str) -> Act + Send + Sync + 'static) -> Server {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let server =
        Server { port, name: name.to_string(), conns: Arc::default(), requests: Arc::default(), seen: Arc::default() };
    let handler: Arc<Handler> = Arc::new(handler);
    let (conns, requests, seen, group, name) =
        (server.conns.clone(), server.requests.clone(), server.seen.clone(), Arc::clone(group), name.to_string());
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(s) = s else { continue };
            let (handler, requests, seen, group, name) =
                (Arc::clone(&handler), requests.clone(), seen.clone(), Arc::clone(&group), name.clone());
            let first = conns.clone();
            std::thread::spawn(move || serve(s, &*handler, &requests, &seen, &group, &name, &first));
        }
    });
    server
}

fn serve(
    mut s: TcpStream,
    handler: &Handler,
    requests: &AtomicUsize,
    seen: &Mutex<Vec<Req>>,
    group: &Group,
    name: &str,
    conns: &AtomicUsize,
) {
    let _ = s.set_read_timeout(Some(Duration::from_secs(30)));
    let mut buf: Vec<u8> = Vec::new();
    let mut counted = false;
    while let Some(req) = read_request(&mut s, &mut buf) {
        if req.path == "/healthcheck" {
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\n0\n0\n");
            continue;
        }
        if !counted {
            // Probe connections are not the balancer's client traffic: count the others.
            counted = true;
            conns.fetch_add(1, Ordering::SeqCst);
        }
        let now = group.in_progress.fetch_add(1, Ordering::SeqCst) + 1;
        group.max_in_progress.fetch_max(now, Ordering::SeqCst);
        requests.fetch_add(1, Ordering::SeqCst);
        seen.lock().unwrap().push(req.clone());
        let act = handler(&req, name);
        let done = |s: &mut TcpStream, bytes: &[u8]| {
            // The server's work on the request ends as its response starts out: the balancer
            // can release the slot only after it has read all of it, which is later still.
            group.in_progress.fetch_sub(1, Ordering::SeqCst);
            s.write_all(bytes).is_ok()
        };
        match act {
            Act::Reply(bytes) => {
                if !done(&mut s, &bytes) {
                    return;
                }
            }
            Act::After(wait, bytes) => {
                std::thread::sleep(wait); // the work the server does for this request
                if !done(&mut s, &bytes) {
                    return;
                }
            }
            Act::ReplyClose(bytes) => {
                done(&mut s, &bytes);
                let _ = s.shutdown(Shutdown::Write);
                return;
            }
            Act::Close => {
                done(&mut s, b"");
                return;
            }
            Act::Echo(bytes) => {
                done(&mut s, &bytes);
                let _ = s.write_all(&buf);
                let mut chunk = [0u8; 4096];
                while let Ok(n) = s.read(&mut chunk) {
                    if n == 0 || s.write_all(&chunk[..n]).is_err() {
                        break;
                    }
                }
                return;
            }
        }
    }
}

/// Reads one request (head, then a body by Content-Length or chunked) from `s`, starting with
/// what `buf` already holds; leaves what follows in `buf`. `None` at EOF or error.
fn read_request(s: &mut TcpStream, buf: &mut Vec<u8>) -> Option<Req> {
    let end = loop {
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break p + 4;
        }
        fill(s, buf)?;
    };
    let head = String::from_utf8_lossy(&buf[..end]).to_string();
    let mut words = head.split(' ');
    let method = words.next().unwrap_or("").to_string();
    let path = words.next().unwrap_or("").to_string();
    let mut req = Req { head, method, path, body: Vec::new(), raw: Vec::new() };
    let len = req.header("content-length").and_then(|v| v.parse::<usize>().ok());
    let chunked = req.header("transfer-encoding").is_some_and(|v| v.to_ascii_lowercase().ends_with("chunked"));
    if req.header("expect").is_some_and(|v| v.eq_ignore_ascii_case("100-continue")) {
        // As a server should: the client waits for this before it sends the body.
        s.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").ok()?;
    }
    let mut at = end;
    if chunked {
        // Chunk lines, data, then trailers up to the blank line: the raw bytes are kept.
        loop {
            let line_end = loop {
                if let Some(p) = buf[at..].windows(2).position(|w| w == b"\r\n") {
                    break at + p + 2;
                }
                fill(s, buf)?;
            };
            let line = String::from_utf8_lossy(&buf[at..line_end - 2]).to_string();
            let size = usize::from_str_radix(line.split(';').next().unwrap_or("").trim(), 16).ok()?;
            at = line_end;
            if size == 0 {
                loop {
                    let e = loop {
                        if let Some(p) = buf[at..].windows(2).position(|w| w == b"\r\n") {
                            break at + p + 2;
                        }
                        fill(s, buf)?;
                    };
                    let blank = e - at == 2;
                    at = e;
                    if blank {
                        break;
                    }
                }
                break;
            }
            while buf.len() < at + size + 2 {
                fill(s, buf)?;
            }
            at += size + 2;
        }
    } else if let Some(n) = len {
        while buf.len() < end + n {
            fill(s, buf)?;
        }
        at = end + n;
    }
    req.body = buf[end..at].to_vec();
    req.raw = buf[..at].to_vec();
    buf.drain(..at);
    Some(req)
}

fn fill(s: &mut TcpStream, buf: &mut Vec<u8>) -> Option<()> {
    let mut chunk = [0u8; 16 * 1024];
    match s.read(&mut chunk) {
        Ok(0) | Err(_) => None,
        Ok(n) => {
            buf.extend_from_slice(&chunk[..n]);
            Some(())
        }
    }
}

/// A client connection with a read buffer: sends requests and reads exactly one response at a
/// time (by Content-Length, chunked, or to EOF), so tests can use one connection for many.
pub struct Client {
    pub s: TcpStream,
    buf: Vec<u8>,
}

/// One response as the client read it.
#[derive(Debug, Clone)]
pub struct Resp {
    pub status: u16,
    pub head: String,
    pub body: Vec<u8>,
    /// Head and body exactly as received.
    pub raw: Vec<u8>,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<String> {
        self.head.lines().skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim().eq_ignore_ascii_case(name).then(|| v.trim().to_string())
        })
    }
}

impl Client {
    pub fn connect(port: u16) -> Client {
        let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        Client { s, buf: Vec::new() }
    }

    pub fn connect_from(src: &str, port: u16) -> Client {
        let s = crate::util::connect_from(Some(src), port).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        Client { s, buf: Vec::new() }
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.s.write_all(bytes).unwrap();
    }

    /// `GET path` on this connection, and its response.
    pub fn get(&mut self, path: &str) -> Resp {
        self.send(format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes());
        self.read(false).unwrap_or_else(|| panic!("no response to GET {path}"))
    }

    /// Reads one response; `head_only`: it answers a HEAD. `None` at EOF before a head.
    pub fn read(&mut self, head_only: bool) -> Option<Resp> {
        let end = loop {
            if let Some(p) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break p + 4;
            }
            fill(&mut self.s, &mut self.buf)?;
        };
        let head = String::from_utf8_lossy(&self.buf[..end]).to_string();
        let status = head.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
        let mut resp = Resp { status, head, body: Vec::new(), raw: Vec::new() };
        let no_body = head_only || status == 204 || status == 304 || (100..200).contains(&status);
        let at = if no_body {
            end
        } else if let Some(n) = resp.header("content-length").and_then(|v| v.parse::<usize>().ok()) {
            while self.buf.len() < end + n {
                fill(&mut self.s, &mut self.buf)?;
            }
            end + n
        } else if resp.header("transfer-encoding").is_some() {
            // Delimited with the balancer's own framer; the tests compare the bytes themselves.
            let mut body = lb::balancer::http::body::Body::new(lb::balancer::http::head::BodyKind::Chunked);
            let mut at = end;
            loop {
                at += body.feed(&self.buf[at..]).ok()?;
                if body.is_done() {
                    break at;
                }
                fill(&mut self.s, &mut self.buf)?;
            }
        } else {
            while fill(&mut self.s, &mut self.buf).is_some() {}
            self.buf.len()
        };
        resp.body = self.buf[end..at].to_vec();
        resp.raw = self.buf[..at].to_vec();
        self.buf.drain(..at);
        Some(resp)
    }

    /// True when the balancer has closed this connection (EOF within the read timeout).
    pub fn closed(&mut self) -> bool {
        if !self.buf.is_empty() {
            return false;
        }
        let mut b = [0u8; 1];
        matches!(self.s.read(&mut b), Ok(0))
    }
}
