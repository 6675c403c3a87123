//! The storm's clients: threads that send requests through the balancer, one after another,
//! and classify how each ended, byte for byte.
//!
//! A request is `GET /r/ID` (or, one in eight, a `POST` with a body the server checksums), so
//! the client knows the exact reply it must get (`chaos::reply`). Every read has a deadline,
//! so a client never hangs: a reply that does not come in time is a failure ("hung"). The
//! allowed endings are the complete reply, the balancer's exact 500 or 503 (and in http mode
//! its exact 502), each followed by a clean close where the balancer closes; and, only for a
//! request whose reply its server cut (`Tally::was_cut`), anything short of that. A reset or a
//! truncated reply that no server cut is the balancer's doing: a failure.
#![allow(dead_code)] // the storm, drain and shared tests each use a part

use crate::chaos::{self, Tally};
use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub const EXACT_500: &[u8] = b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n";
pub const EXACT_502: &[u8] = b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
pub const EXACT_503: &[u8] =
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nRetry-After: 1\r\nConnection: close\r\n\r\n";

/// The balancer's mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Tcp,
    Http,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Tcp => "tcp",
            Mode::Http => "http",
        }
    }
}

/// How one request ended.
#[derive(Debug)]
enum Outcome {
    Ok,
    E500,
    E502,
    E503,
    /// Short of a complete reply, and its server cut it.
    Cut,
    /// Closed (EOF or reset) before a single byte of a reply, no server having cut it. A
    /// failure in a storm; during a drain, a request the balancer never took.
    Empty(String),
    Fail(String),
}

/// Outcome counts, shared by all client threads and read while they run.
#[derive(Debug, Default)]
pub struct Outcomes {
    pub ok: AtomicU64,
    pub e500: AtomicU64,
    pub e502: AtomicU64,
    pub e503: AtomicU64,
    pub cut: AtomicU64,
    /// Closed before any byte of a reply, after the drain began (drain tests only).
    pub not_taken: AtomicU64,
    pub failed: AtomicU64,
    /// The first failures, described.
    pub failures: Mutex<Vec<String>>,
}

impl Outcomes {
    pub fn total(&self) -> u64 {
        [&self.ok, &self.e500, &self.e502, &self.e503, &self.cut, &self.not_taken, &self.failed]
            .iter()
            .map(|a| a.load(Ordering::Relaxed))
            .sum()
    }

    pub fn line(&self) -> String {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        format!(
            "requests {} : ok {}, 500 {}, 502 {}, 503 {}, cut by a server {}, not taken (drain) {}, FAILED {}",
            self.total(),
            g(&self.ok),
            g(&self.e500),
            g(&self.e502),
            g(&self.e503),
            g(&self.cut),
            g(&self.not_taken),
            g(&self.failed)
        )
    }

    pub fn failures(&self) -> Vec<String> {
        self.failures.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn fail(&self, what: String) {
        self.failed.fetch_add(1, Ordering::Relaxed);
        let mut f = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        if f.len() < 30 {
            f.push(what);
        }
    }
}

/// What the clients of one run share.
#[derive(Clone)]
pub struct Shared {
    pub port: u16,
    pub mode: Mode,
    pub tally: Arc<Tally>,
    pub outcomes: Arc<Outcomes>,
    pub ids: Arc<AtomicU64>,
    /// Set by `Load::finish` (each load has its own).
    pub stop: Arc<AtomicBool>,
    /// Set when the balancer was sent SIGTERM: from then on, a connection refused ends the
    /// client, and a close before any byte counts as not taken.
    pub draining: Arc<AtomicBool>,
    /// How long one request may take, end to end: past it the client counts a hang.
    pub per_request: Duration,
    /// Ids go up by this much (`ids` starts where the sequence should).
    pub id_step: u64,
}

impl Shared {
    pub fn new(port: u16, mode: Mode, tally: &Arc<Tally>) -> Shared {
        Shared {
            port,
            mode,
            tally: Arc::clone(tally),
            outcomes: Arc::default(),
            ids: Arc::new(AtomicU64::new(1)),
            stop: Arc::default(),
            draining: Arc::default(),
            per_request: Duration::from_secs(15),
            id_step: 1,
        }
    }

    fn next_id(&self) -> u64 {
        self.ids.fetch_add(self.id_step, Ordering::Relaxed)
    }
}

/// A client's connection habit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Habit {
    /// A new connection for every request.
    Fresh,
    /// One connection for many requests (http mode), a new one when the balancer closes it.
    KeepAlive,
}

/// Client threads; `finish` stops and joins them.
pub struct Load {
    shared: Shared,
    threads: Vec<JoinHandle<()>>,
}

impl Load {
    /// `fresh` threads of `Habit::Fresh` and `keep` of `Habit::KeepAlive`.
    pub fn start(shared: &Shared, fresh: usize, keep: usize) -> Load {
        // A stop flag of its own: the same `Shared` serves several loads, one after another.
        let shared = &Shared { stop: Arc::default(), ..shared.clone() };
        let habits = std::iter::repeat_n(Habit::Fresh, fresh).chain(std::iter::repeat_n(Habit::KeepAlive, keep));
        let threads = habits
            .map(|h| {
                let sh = shared.clone();
                std::thread::spawn(move || client(&sh, h))
            })
            .collect();
        Load { shared: shared.clone(), threads }
    }

    pub fn finish(mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        for t in self.threads.drain(..) {
            t.join().expect("a client thread panicked");
        }
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
    }
}

/// The request for `id`; `close`: with `Connection: close`.
pub fn request(id: u64, close: bool) -> Vec<u8> {
    let body = chaos::request_body(id);
    let method = if body.is_some() { "POST" } else { "GET" };
    let mut req = format!("{method} /r/{id} HTTP/1.1\r\nHost: storm\r\n").into_bytes();
    if close {
        req.extend_from_slice(b"Connection: close\r\n");
    }
    if let Some(b) = &body {
        req.extend_from_slice(format!("Content-Length: {}\r\n\r\n", b.len()).as_bytes());
        req.extend_from_slice(b);
    } else {
        req.extend_from_slice(b"\r\n");
    }
    req
}

/// The exact reply to `id` from whichever server the reply names.
fn expected(id: u64, got: &[u8], close: bool) -> Option<Vec<u8>> {
    let prefix = b"HTTP/1.1 200 OK\r\nServer: s";
    let digit = *got.strip_prefix(prefix.as_slice())?.first()?;
    let sum = chaos::request_body(id).map(|b| chaos::fnv(&b));
    Some(chaos::reply(id, digit, sum, close))
}

/// How reading stopped short.
#[derive(Debug)]
enum Short {
    Eof,
    Reset,
    Timeout,
    Other(std::io::Error),
}

/// Reads into `buf` until `done(buf)` says how long the message is, or until EOF when it never
/// does. Every read waits at most until `deadline`.
fn read_until(
    s: &mut TcpStream,
    buf: &mut Vec<u8>,
    deadline: Instant,
    done: impl Fn(&[u8]) -> Option<usize>,
) -> Result<usize, Short> {
    let mut chunk = [0u8; 32 * 1024];
    loop {
        if let Some(n) = done(buf)
            && buf.len() >= n
        {
            return Ok(n);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(Short::Timeout);
        }
        s.set_read_timeout(Some(left)).map_err(Short::Other)?;
        match s.read(&mut chunk) {
            Ok(0) => return Err(Short::Eof),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => return Err(Short::Timeout),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return Err(Short::Reset),
            Err(e) => return Err(Short::Other(e)),
        }
    }
}

/// The length of the HTTP message at the start of `buf` (head plus `Content-Length`), once the
/// head is in.
fn framed(buf: &[u8]) -> Option<usize> {
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = String::from_utf8_lossy(&buf[..end]);
    let len = head
        .split("\r\n")
        .find_map(|l| l.split_once(':').filter(|(k, _)| k.trim().eq_ignore_ascii_case("content-length")))
        .and_then(|(_, v)| v.trim().parse::<usize>().ok())
        .unwrap_or(0);
    Some(end + len)
}

fn shown(bytes: &[u8]) -> String {
    let cut = &bytes[..bytes.len().min(160)];
    format!("{} bytes: {:?}", bytes.len(), String::from_utf8_lossy(cut))
}

/// One client thread: requests until told to stop, each classified.
fn client(sh: &Shared, habit: Habit) {
    let mut conn: Option<TcpStream> = None;
    let mut left_on_conn = 0u32;
    // Bounded by the stop flag, and by count in case the flag is never set.
    for _ in 0..50_000_000u64 {
        if sh.stop.load(Ordering::Relaxed) {
            return;
        }
        let id = sh.next_id();
        let fresh = conn.is_none();
        let mut s = match conn.take() {
            Some(s) => s,
            None => match TcpStream::connect(("127.0.0.1", sh.port)) {
                Ok(s) => {
                    left_on_conn = 1 + (id % 40) as u32;
                    s
                }
                Err(e) if sh.draining.load(Ordering::SeqCst) => {
                    // The listener is closed: this client is done.
                    let _ = e;
                    return;
                }
                Err(e) => {
                    sh.outcomes.fail(format!("request {id}: connect: {e}"));
                    continue;
                }
            },
        };
        // tcp mode bridges a connection: one request, then both sides close. In http mode a
        // fresh client says `Connection: close` one time in four (and else just leaves after
        // its reply), a keep-alive one on the last request it means to send on the connection.
        let close = match (sh.mode, habit) {
            (Mode::Tcp, _) => true,
            (Mode::Http, Habit::Fresh) => id.is_multiple_of(4),
            (Mode::Http, Habit::KeepAlive) => left_on_conn == 1,
        };
        let deadline = Instant::now() + sh.per_request;
        let (outcome, keep) = exchange(sh, &mut s, id, close, deadline);
        let outcome = match outcome {
            Outcome::Empty(why) if sh.draining.load(Ordering::SeqCst) => {
                sh.outcomes.not_taken.fetch_add(1, Ordering::Relaxed);
                let _ = why;
                continue;
            }
            o => o,
        };
        let o = &sh.outcomes;
        match outcome {
            Outcome::Ok => o.ok.fetch_add(1, Ordering::Relaxed),
            Outcome::E500 => o.e500.fetch_add(1, Ordering::Relaxed),
            Outcome::E502 => o.e502.fetch_add(1, Ordering::Relaxed),
            Outcome::E503 => o.e503.fetch_add(1, Ordering::Relaxed),
            Outcome::Cut => o.cut.fetch_add(1, Ordering::Relaxed),
            Outcome::Empty(why) | Outcome::Fail(why) => {
                let on = if fresh { "a new connection" } else { "a kept connection" };
                let me = s.local_addr().map_or_else(|_| "?".into(), |a| a.to_string());
                o.fail(format!("request {id} on {on} from {me} ({:?}, {}): {why}", habit, sh.mode.name()));
                0
            }
        };
        left_on_conn = left_on_conn.saturating_sub(1);
        if keep && habit == Habit::KeepAlive && left_on_conn > 0 {
            conn = Some(s);
        }
    }
}

/// Sends request `id` on `s` and reads how it ends. The second value: the connection can carry
/// another request.
fn exchange(sh: &Shared, s: &mut TcpStream, id: u64, close: bool, deadline: Instant) -> (Outcome, bool) {
    let cut = || sh.tally.was_cut(id);
    if let Err(e) = s.write_all(&request(id, close)) {
        return if cut() {
            (Outcome::Cut, false)
        } else if e.kind() == ErrorKind::ConnectionReset || e.kind() == ErrorKind::BrokenPipe {
            (Outcome::Empty(format!("send: {e}")), false)
        } else {
            (Outcome::Fail(format!("send: {e}")), false)
        };
    }
    let mut buf = Vec::new();
    match sh.mode {
        Mode::Tcp => match read_until(s, &mut buf, deadline, |_| None) {
            Ok(_) => unreachable!("read to EOF"),
            Err(Short::Eof) => {
                if buf == EXACT_500 {
                    (Outcome::E500, false)
                } else if buf == EXACT_503 {
                    (Outcome::E503, false)
                } else if expected(id, &buf, true).is_some_and(|e| e == buf) {
                    (Outcome::Ok, false)
                } else if cut() {
                    (Outcome::Cut, false)
                } else if buf.is_empty() {
                    (Outcome::Empty("closed before any byte".into()), false)
                } else {
                    (Outcome::Fail(format!("not a reply the test allows ({})", shown(&buf))), false)
                }
            }
            Err(short) => (short_ending(short, &buf, cut()), false),
        },
        Mode::Http => match read_until(s, &mut buf, deadline, framed) {
            Ok(n) => {
                let (resp, rest) = buf.split_at(n);
                let final_answer = [EXACT_500, EXACT_502, EXACT_503].iter().position(|a| *a == resp);
                let ok = expected(id, resp, close).is_some_and(|e| e == resp);
                if !rest.is_empty() {
                    return (Outcome::Fail(format!("bytes after the reply: {}", shown(rest))), false);
                }
                if final_answer.is_none() && !ok {
                    return (Outcome::Fail(format!("not a reply the test allows ({})", shown(resp))), false);
                }
                let outcome = match final_answer {
                    Some(0) => Outcome::E500,
                    Some(1) => Outcome::E502,
                    Some(_) => Outcome::E503,
                    None => Outcome::Ok,
                };
                if final_answer.is_none() && !close {
                    return (outcome, true);
                }
                // The balancer closes after a final answer and after `Connection: close`:
                // cleanly, with nothing more.
                let mut more = Vec::new();
                match read_until(s, &mut more, deadline, |_| None) {
                    Err(Short::Eof) if more.is_empty() => (outcome, false),
                    Err(Short::Eof) => (Outcome::Fail(format!("{outcome:?}, then {}", shown(&more))), false),
                    Err(Short::Reset) => (Outcome::Fail(format!("{outcome:?}, then reset by the balancer")), false),
                    Err(Short::Timeout) => (Outcome::Fail(format!("{outcome:?}, then not closed in time")), false),
                    Err(Short::Other(e)) => (Outcome::Fail(format!("{outcome:?}, then {e}")), false),
                    Ok(_) => unreachable!("read to EOF"),
                }
            }
            Err(short) => (short_ending(short, &buf, cut()), false),
        },
    }
}

fn short_ending(short: Short, buf: &[u8], cut: bool) -> Outcome {
    match short {
        Short::Timeout => Outcome::Fail(format!("hung: no complete reply in time (had {})", shown(buf))),
        _ if cut => Outcome::Cut,
        Short::Eof if buf.is_empty() => Outcome::Empty("closed before any byte".into()),
        Short::Reset if buf.is_empty() => Outcome::Empty("reset before any byte".into()),
        Short::Eof => Outcome::Fail(format!("truncated, and no server cut it ({})", shown(buf))),
        Short::Reset => Outcome::Fail(format!("reset by the balancer mid-reply ({})", shown(buf))),
        Short::Other(e) => Outcome::Fail(format!("{e} ({})", shown(buf))),
    }
}

/// Connections that sit open on the balancer: silent ones (connected, never a byte), and in
/// http mode as many parked ones (one complete request, then nothing).
pub struct Idle {
    pub silent: Vec<TcpStream>,
    pub parked: Vec<TcpStream>,
}

impl Idle {
    /// Opens `n` idle connections (half parked in http mode). Parking requests are checked
    /// like any other and counted in `sh.outcomes`.
    pub fn open(sh: &Shared, n: usize) -> Idle {
        let parked_n = if sh.mode == Mode::Http { n / 2 } else { 0 };
        let silent = (0..n - parked_n)
            .map(|i| TcpStream::connect(("127.0.0.1", sh.port)).unwrap_or_else(|e| panic!("idle connection {i}: {e}")))
            .collect();
        // Parked ones by a few threads at once: each a request and its reply.
        let per = parked_n.div_ceil(8).max(1);
        let threads: Vec<JoinHandle<Vec<TcpStream>>> = (0..parked_n)
            .step_by(per)
            .map(|from| {
                let sh = sh.clone();
                let count = per.min(parked_n - from);
                std::thread::spawn(move || {
                    (0..count)
                        .map(|_| {
                            let mut s = TcpStream::connect(("127.0.0.1", sh.port)).expect("connect a parked client");
                            let id = sh.next_id();
                            let (o, keep) = exchange(&sh, &mut s, id, false, Instant::now() + sh.per_request);
                            assert!(matches!(o, Outcome::Ok) && keep, "parking request {id}: {o:?}");
                            sh.outcomes.ok.fetch_add(1, Ordering::Relaxed);
                            s
                        })
                        .collect()
                })
            })
            .collect();
        let parked = threads.into_iter().flat_map(|t| t.join().expect("parking thread")).collect();
        Idle { silent, parked }
    }

    pub fn len(&self) -> usize {
        self.silent.len() + self.parked.len()
    }

    /// How many of them the balancer has closed (EOF or reset seen without blocking).
    pub fn closed(&self) -> usize {
        self.silent
            .iter()
            .chain(&self.parked)
            .filter(|s| {
                s.set_nonblocking(true).expect("non-blocking");
                let mut b = [0u8; 1];
                let open = matches!((&**s).read(&mut b), Err(e) if e.kind() == ErrorKind::WouldBlock);
                s.set_nonblocking(false).expect("blocking");
                !open
            })
            .count()
    }

    /// Sends one more request on up to `n` parked connections: each must get its reply.
    pub fn use_parked(&mut self, sh: &Shared, n: usize) -> usize {
        let mut served = 0;
        for s in self.parked.iter_mut().take(n) {
            let id = sh.next_id();
            let (o, _) = exchange(sh, s, id, false, Instant::now() + sh.per_request);
            match o {
                Outcome::Ok => served += 1,
                other => sh.outcomes.fail(format!("request {id} on a connection parked through the storm: {other:?}")),
            }
        }
        served
    }

    /// Waits (each read bounded by `deadline`) for the balancer to close every connection:
    /// (clean EOFs, resets) on silent ones and on parked ones.
    pub fn wait_closed(&mut self, deadline: Instant) -> ((usize, usize), (usize, usize)) {
        let count = |v: &mut Vec<TcpStream>| {
            let (mut eof, mut reset) = (0, 0);
            for s in v.iter_mut() {
                let mut buf = Vec::new();
                match read_until(s, &mut buf, deadline, |_| None) {
                    Err(Short::Eof) if buf.is_empty() => eof += 1,
                    Err(Short::Reset) if buf.is_empty() => reset += 1,
                    other => panic!("an idle connection ended with {other:?} after {}", shown(&buf)),
                }
            }
            (eof, reset)
        };
        (count(&mut self.silent), count(&mut self.parked))
    }
}
