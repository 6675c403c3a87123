//! Helpers for the backend tests: start a real `backend` process on port 0, learn its port from
//! the `listening on` line, talk raw HTTP to it with std sockets, and stop it.
//!
//! Every wait is bounded and says what it waited for; a backend's stderr is collected so a
//! failing assertion can show it.
#![allow(dead_code)] // each test file uses a different subset

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_backend");

/// How long a backend may take to start listening.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a test waits for one reply.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(15);

/// A running backend, killed on drop.
pub struct Backend {
    pub child: Child,
    pub addr: SocketAddr,
    pub args: Vec<String>,
    /// Every stderr line so far.
    pub log: Arc<Mutex<Vec<String>>>,
    /// The thread collecting stderr; it ends when the backend's stderr closes.
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Backend {
    /// Starts `backend ARGS... 0` and waits for its listening line.
    pub fn start(args: &[&str]) -> Backend {
        let mut full: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        full.push("0".to_string());
        Backend::start_exact(full)
    }

    /// Starts `backend ARGS` (the caller gives the port) and waits for its listening line.
    pub fn start_exact(args: Vec<String>) -> Backend {
        let mut child = Command::new(BIN)
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn backend");
        let stderr = child.stderr.take().expect("piped stderr");
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        let sink = Arc::clone(&log);
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Some(rest) = line.split("listening on ").nth(1) {
                    let addr = rest.split(' ').next().unwrap_or_default().to_string();
                    // The receiver may be gone if the test already gave up; nothing to do then.
                    let _ = tx.send(addr);
                }
                sink.lock().unwrap().push(line);
            }
        });
        let addr = match rx.recv_timeout(START_TIMEOUT) {
            Ok(a) => a.parse().expect("listening address"),
            Err(_) => {
                let _ = child.kill();
                panic!(
                    "backend {args:?} did not say `listening on` within {START_TIMEOUT:?}; stderr: {:?}",
                    log.lock().unwrap()
                );
            }
        };
        Backend { child, addr, args, log, reader: Some(reader) }
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Sends `raw` and returns the parsed reply.
    pub fn raw(&self, raw: &[u8]) -> Reply {
        request(self.addr, raw)
    }

    /// `METHOD PATH HTTP/1.1` with a Host header and no body.
    pub fn call(&self, method: &str, path: &str) -> Reply {
        self.raw(format!("{method} {path} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes())
    }

    pub fn get(&self, path: &str) -> Reply {
        self.call("GET", path)
    }

    /// `(errors, entries)` from `/healthcheck` (which then counts itself).
    pub fn health(&self) -> (u64, u64) {
        let r = self.get("/healthcheck");
        assert_eq!(r.status, 200, "{r:?}");
        let text = r.text();
        let mut lines = text.lines();
        let errors = lines.next().unwrap().parse().unwrap();
        let entries = lines.next().unwrap().parse().unwrap();
        (errors, entries)
    }

    /// Sends `sig` and waits (bounded) for the exit status.
    pub fn signal_and_wait(&mut self, sig: nix::sys::signal::Signal) -> ExitStatus {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid()), sig).expect("kill");
        wait_bounded(&mut self.child, Duration::from_secs(5))
            .unwrap_or_else(|| panic!("backend did not exit on {sig}; stderr {:?}", self.log()))
    }

    /// Stops the backend with SIGTERM (exit status 0 expected), waits for the last of its
    /// stderr, and asserts that it logged no warning or error: the normal paths are quiet.
    pub fn stop_quietly(mut self) {
        let status = self.signal_and_wait(nix::sys::signal::Signal::SIGTERM);
        assert_eq!(status.code(), Some(0), "stderr {:?}", self.log());
        if let Some(reader) = self.reader.take() {
            reader.join().expect("stderr reader");
        }
        let log = self.log();
        let noisy: Vec<_> = log.iter().filter(|l| l.contains(" WARN ") || l.contains(" ERROR ")).collect();
        assert!(noisy.is_empty(), "warnings or errors: {noisy:?}");
    }

    pub fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        // Already exited in tests that stop it themselves: then kill fails, harmlessly.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits up to `limit` for `child` to exit, blocking in `waitpid` on a helper thread.
pub fn wait_bounded(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        // WNOWAIT leaves the zombie for Child::wait below to reap.
        let flags = nix::sys::wait::WaitPidFlag::WEXITED | nix::sys::wait::WaitPidFlag::WNOWAIT;
        let _ = tx.send(nix::sys::wait::waitid(nix::sys::wait::Id::Pid(pid), flags));
    });
    // The waitid result itself does not matter: it only says the child has exited.
    let _exited = rx.recv_timeout(limit).ok()?;
    child.try_wait().ok().flatten()
}

/// A parsed reply.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    /// Header names lower-cased, in order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == &name.to_ascii_lowercase()).map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8(self.body.clone()).expect("utf-8 body")
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("json body")
    }
}

/// Connects, sends `raw`, reads one reply (framed by its Content-Length; `HEAD` replies have
/// no body), checks it, and when it says `Connection: close` checks that the backend then
/// closes. The connection is dropped after.
pub fn request(addr: SocketAddr, raw: &[u8]) -> Reply {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(REPLY_TIMEOUT)).unwrap();
    s.write_all(raw).expect("send request");
    let mut r = BufReader::new(s);
    let what = String::from_utf8_lossy(raw);
    let reply =
        read_reply(&mut r, raw.starts_with(b"HEAD ")).unwrap_or_else(|e| panic!("reading the reply to {what:?}: {e}"));
    if reply.header("connection") == Some("close") {
        let mut rest = Vec::new();
        r.read_to_end(&mut rest).unwrap_or_else(|e| panic!("waiting for the close after {what:?}: {e}"));
        assert!(rest.is_empty(), "bytes after a reply to {what:?}: {:?}", String::from_utf8_lossy(&rest));
    }
    reply
}

/// Reads exactly one reply from `r`: its head up to the blank line, then Content-Length bytes
/// of body (none when `head_only`). Leaves whatever follows in `r`. An `UnexpectedEof` error
/// when the connection ends first. Checks what every reply must have (see [`check_reply`]).
pub fn read_reply(r: &mut impl BufRead, head_only: bool) -> std::io::Result<Reply> {
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let before = head.len();
        r.read_until(b'\n', &mut head)?;
        if head.len() == before {
            let got = String::from_utf8_lossy(&head).into_owned();
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!("EOF in a reply head: {got:?}"),
            ));
        }
        assert!(head.len() < 16 * 1024, "reply head too long");
    }
    let mut reply = reply_head(&head[..head.len() - 4]);
    let length: usize = reply.header("content-length").expect("Content-Length on every reply").parse().unwrap();
    reply.body = vec![0u8; if head_only { 0 } else { length }];
    r.read_exact(&mut reply.body)?;
    check_reply(&reply);
    Ok(reply)
}

/// Parses a reply head (without its blank line); the body is left empty.
fn reply_head(head: &[u8]) -> Reply {
    let head = std::str::from_utf8(head).expect("ascii head");
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap();
    let mut parts = status_line.splitn(3, ' ');
    assert_eq!(parts.next(), Some("HTTP/1.1"), "{status_line}");
    let status = parts.next().unwrap().parse().expect("status code");
    let headers: Vec<(String, String)> = lines
        .map(|l| {
            let (k, v) = l.split_once(": ").expect("header");
            (k.to_ascii_lowercase(), v.to_string())
        })
        .collect();
    Reply { status, headers, body: Vec::new() }
}

/// What every reply has: a `Server-Name`, and a `Connection` header that, if present, is
/// `close` or `keep-alive`.
fn check_reply(reply: &Reply) {
    assert!(reply.header("server-name").is_some(), "Server-Name on every reply");
    assert!(matches!(reply.header("connection"), None | Some("close" | "keep-alive")), "{reply:?}");
}

/// Parses a complete reply (head and body) read up to EOF: the reply must say
/// `Connection: close`, and its body must have exactly its Content-Length (`HEAD` replies:
/// `head_only`).
pub fn parse_reply(all: &[u8], head_only: bool) -> Reply {
    let end = all
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no end of head in {:?}", String::from_utf8_lossy(all)));
    let mut reply = reply_head(&all[..end]);
    reply.body = all[end + 4..].to_vec();
    let length: usize = reply.header("content-length").expect("Content-Length on every reply").parse().unwrap();
    let expect = if head_only { 0 } else { length };
    assert_eq!(reply.body.len(), expect, "body length of {reply:?}");
    assert_eq!(reply.header("connection"), Some("close"));
    check_reply(&reply);
    reply
}

/// Reads the reply head only (up to the blank line), returning it and any body bytes read.
pub fn read_head(s: &mut TcpStream) -> (String, Vec<u8>) {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        let n = s.read(&mut byte).expect("reading a reply head");
        assert_eq!(n, 1, "EOF inside a reply head: {:?}", String::from_utf8_lossy(&buf));
        buf.push(byte[0]);
        assert!(buf.len() < 16 * 1024, "reply head too long");
    }
    (String::from_utf8(buf).unwrap(), Vec::new())
}

/// A deterministic byte stream (xorshift64*) for large bodies, and FNV-1a to check them.
pub struct Pattern(u64);

impl Pattern {
    pub fn new(seed: u64) -> Pattern {
        Pattern(seed | 1)
    }

    pub fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            let v = self.0.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fnv(pub u64);

impl Fnv {
    pub fn new() -> Fnv {
        Fnv(0xcbf2_9ce4_8422_2325)
    }

    pub fn update(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
}

/// Half-closes and ignores the outcome: used where the server may already have closed.
pub fn half_close(s: &TcpStream) {
    let _ = s.shutdown(Shutdown::Write);
}

/// Asserts that `f` finishes within `limit`, returning its value.
pub fn within<T>(limit: Duration, what: &str, f: impl FnOnce() -> T) -> T {
    let t = Instant::now();
    let v = f();
    assert!(t.elapsed() < limit, "{what} took {:?} (limit {limit:?})", t.elapsed());
    v
}
