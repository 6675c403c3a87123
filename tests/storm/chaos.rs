//! The storm's test servers: HTTP/1.1 keep-alive servers on 127.0.0.1 that a chaos thread can
//! make misbehave, and a tally shared by all of them.
//!
//! The tally counts, across every server, the client requests being worked on (the bound the
//! balancer promises, asserted from the servers' side), the most at once, and the ids of the
//! requests whose replies a server cut. A server records a cut *before* the cut can be seen
//! (before the reset, before the listener closes), so a client that reads a truncated reply can
//! look its id up and tell whether the server did it or the balancer did.
//!
//! Faults (`Fault`), each applied to one server and healed later:
//! - *crash*: the listener is closed (its backlog is reset by the kernel) and every connection
//!   is reset (`SO_LINGER` 0): requests in progress are cut; `heal` listens on the same port.
//! - *stall*: requests (probes too) are read and never answered; the connection is held until
//!   the balancer closes it. A stalled request is not work: it is counted apart (`stalled`),
//!   because the server learns of the balancer's close only after the balancer has released
//!   the slot, a race no server could close (see `Counts::max_held`).
//! - *garbage probes*: `/healthcheck` gets bytes that are not a count; clients are served.
//! - *reset mid-body*: each client request gets its head and half its body, then a reset.
//!
//! Ports are taken below the kernel's ephemeral range (32768 and up here), so that while a
//! server is down no outgoing connection can take its port and the restart can bind it again.
#![allow(dead_code)] // the storm, drain and shared tests each use a part

use std::collections::{HashMap, HashSet};
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// What a server is doing wrong right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Fault {
    Healthy,
    /// Listener and connections gone; back on the same port at `heal`.
    Crashed,
    /// Reads requests, never answers.
    Stall,
    /// Answers probes with garbage, clients normally.
    GarbageProbes,
    /// Answers clients with a head and half a body, then resets.
    ResetMidBody,
}

/// The counts of a group of servers.
#[derive(Debug, Default, Clone)]
pub struct Counts {
    /// Client requests read and not yet answered (or cut): the servers' work. Never above the
    /// balancer's `-N` if it keeps its bound.
    pub working: usize,
    pub max_working: usize,
    /// Requests held by a stalled server, until the balancer closes their connection.
    pub stalled: usize,
    /// The most of `working + stalled` at once: reported, not asserted (a stalled request's end
    /// is seen only after the balancer has released its slot).
    pub max_held: usize,
    /// Client requests read.
    pub requests: u64,
    /// Ids of the requests whose replies a server cut (or never sent: crashed while working).
    pub cut: HashSet<u64>,
    /// Probes answered well, per server.
    pub probes: Vec<u64>,
    /// Connections that carried a client request and are still open.
    pub open_data: usize,
    /// Replies that could not be written although no fault was applied (the balancer closed
    /// the connection while the server still owed it a reply): request id and error.
    pub broken_writes: Vec<(u64, String)>,
    /// Faults applied, by kind.
    pub faults: HashMap<String, u64>,
    /// When the last client request arrived, and the longest time between two arrivals since
    /// `reset_gap`: how long dispatch stood still.
    pub last_arrival: Option<Instant>,
    pub max_gap: Duration,
}

/// `Counts` under a mutex, with a condition variable signalled on every change.
#[derive(Debug, Default)]
pub struct Tally {
    counts: Mutex<Counts>,
    changed: Condvar,
}

impl Tally {
    fn lock(&self) -> MutexGuard<'_, Counts> {
        self.counts.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn update(&self, f: impl FnOnce(&mut Counts)) {
        f(&mut self.lock());
        self.changed.notify_all();
    }

    pub fn snapshot(&self) -> Counts {
        self.lock().clone()
    }

    /// True if a server cut the reply to request `id`.
    pub fn was_cut(&self, id: u64) -> bool {
        self.lock().cut.contains(&id)
    }

    /// Waits until `pred` holds, up to `timeout`; false if it never did.
    pub fn wait(&self, timeout: Duration, pred: impl Fn(&Counts) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        let mut c = self.lock();
        while !pred(&c) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            c = self.changed.wait_timeout(c, left).unwrap_or_else(|e| e.into_inner()).0;
        }
        true
    }

    /// Starts measuring the longest gap between arrivals from now.
    pub fn reset_gap(&self) {
        self.update(|c| {
            c.last_arrival = Some(Instant::now());
            c.max_gap = Duration::ZERO;
        });
    }

    /// Waits for a whole probe round after now: every server answered one more probe.
    pub fn wait_probe_round(&self, timeout: Duration) -> bool {
        let before = self.lock().probes.clone();
        self.wait(timeout, |c| c.probes.iter().zip(&before).all(|(now, then)| now > then))
    }

    fn begin_work(c: &mut Counts) {
        c.working += 1;
        c.max_working = c.max_working.max(c.working);
        c.max_held = c.max_held.max(c.working + c.stalled);
    }
}

/// How long the server works on request `id`: what it does is sleep.
pub type WorkTime = fn(u64) -> Duration;

/// 0 to 12 ms, spread over ids.
pub fn short_work(id: u64) -> Duration {
    Duration::from_micros(id.wrapping_mul(7919) % 12_000)
}

/// The length of the reply body to request `id`: mostly small, one in 16 over 64 KiB (the tcp
/// bridge's splice path, and long enough to be cut mid-body).
pub fn body_len(id: u64) -> usize {
    if id % 16 == 5 {
        64 * 1024 + (id % 7) as usize * 20_000
    } else {
        16 + (id.wrapping_mul(2_654_435_761) % 3000) as usize
    }
}

/// The reply body to request `id`: letters that depend on the id and the position, so a byte
/// out of place or from another reply shows.
pub fn body(id: u64) -> Vec<u8> {
    let len = body_len(id);
    (0..len).map(|i| if i % 64 == 63 { b'\n' } else { b'a' + ((id as usize * 7 + i) % 26) as u8 }).collect()
}

/// The body of request `id`, if it is a POST: one in eight up to 20 KB, and one in 32 (half of
/// those with long replies) over 20 KB, long enough for the bridge's bulk path upstream too.
pub fn request_body(id: u64) -> Option<Vec<u8>> {
    let len = match id {
        _ if id % 8 == 3 => (id % 20_000) as usize + 1,
        _ if id % 32 == 21 => 20_000 + (id % 5000) as usize,
        _ => return None,
    };
    Some((0..len).map(|i| b'A' + ((id as usize + i * 3) % 26) as u8).collect())
}

/// FNV-1a, 64 bits: the server's checksum of a request body, sent back as `X-Sum`.
pub fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3))
}

/// The complete reply server `digit` gives to request `id`: what the client must receive,
/// byte for byte.
pub fn reply(id: u64, digit: u8, sum: Option<u64>, close: bool) -> Vec<u8> {
    let body = body(id);
    let mut head = format!("HTTP/1.1 200 OK\r\nServer: s{}\r\nX-Id: {id}\r\n", digit as char);
    if let Some(s) = sum {
        head.push_str(&format!("X-Sum: {s:016x}\r\n"));
    }
    head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    if close {
        head.push_str("Connection: close\r\n");
    }
    head.push_str("\r\n");
    let mut out = head.into_bytes();
    out.extend_from_slice(&body);
    out
}

const PROBE_OK: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\n0\n0\n";
const GARBAGE: [&[u8]; 3] = [
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\xff\xfe garbage \x00\x00",
    b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nnot-a-num",
    b"HTTP/1.1 200 OK\r\nContent-Le",
];

/// One connection as the chaos thread sees it: a clone of the socket, and what is on it.
#[derive(Debug)]
struct Conn {
    stream: TcpStream,
    st: Mutex<ConnState>,
}

#[derive(Debug, Default)]
struct ConnState {
    /// The server crashed: the connection is being reset; stop at the next look.
    crashed: bool,
    /// The request whose reply is owed or being written.
    current: Option<u64>,
    /// The request whose reply was written last: written into the socket's send buffer, not
    /// necessarily read by the balancer yet, so a reset would still cut it. It has all been
    /// read once the next request arrives (the balancer sends one request at a time on a
    /// connection, after the whole reply to the one before).
    last: Option<u64>,
    /// `current` is counted in `working`.
    working: bool,
    /// `current` is counted in `stalled`.
    stalled: bool,
}

impl Conn {
    fn lock(&self) -> MutexGuard<'_, ConnState> {
        self.st.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The crash, for this connection: its request is cut (recorded first; so is the reply
    /// written last, which the reset may destroy in the send buffer), its counts
    /// dropped, and the socket set to reset when its last descriptor closes. `SHUT_RD` wakes
    /// the serving thread (its read returns 0) without sending anything; that thread closes.
    fn crash(&self, tally: &Tally) {
        let mut st = self.lock();
        st.crashed = true;
        tally.update(|c| {
            c.cut.extend(st.current.iter().chain(&st.last));
            if std::mem::take(&mut st.working) {
                c.working -= 1;
            }
            if std::mem::take(&mut st.stalled) {
                c.stalled -= 1;
            }
        });
        // Errors: the connection may be gone already, which is what a crash wants anyway.
        let _ = socket2::SockRef::from(&self.stream).set_linger(Some(Duration::ZERO));
        let _ = self.stream.shutdown(Shutdown::Read);
    }
}

/// One test server.
pub struct Server {
    /// `s0`, `s1`...: the digit is in every reply's `Server:` header.
    pub digit: u8,
    pub index: usize,
    pub port: u16,
    fault: Mutex<Fault>,
    work: WorkTime,
    tally: Arc<Tally>,
    conns: Mutex<HashMap<u64, Arc<Conn>>>,
    next_conn: AtomicU64,
    /// The listener's clone (to shut it from the chaos thread) and its accepting thread.
    listener: Mutex<Option<(TcpListener, JoinHandle<()>)>>,
    accepting: AtomicBool,
    garbage: AtomicU64,
}

/// A port below the ephemeral range that is free now.
fn fixed_port(seed: u64) -> TcpListener {
    let mut x = seed | 1;
    for _ in 0..500 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let port = 20_000 + (x % 12_000) as u16;
        if let Ok(l) = TcpListener::bind(("127.0.0.1", port)) {
            return l;
        }
    }
    panic!("no free port in 20000..32000 in 500 tries");
}

impl Server {
    fn start(index: usize, tally: &Arc<Tally>, work: WorkTime, seed: u64) -> Arc<Server> {
        let l = fixed_port(seed);
        let port = l.local_addr().unwrap().port();
        let s = Arc::new(Server {
            digit: b'0' + index as u8,
            index,
            port,
            fault: Mutex::new(Fault::Healthy),
            work,
            tally: Arc::clone(tally),
            conns: Mutex::default(),
            next_conn: AtomicU64::new(0),
            listener: Mutex::new(None),
            accepting: AtomicBool::new(true),
            garbage: AtomicU64::new(0),
        });
        s.listen(l);
        s
    }

    pub fn fault(&self) -> Fault {
        *self.fault.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn set_fault(&self, f: Fault) {
        *self.fault.lock().unwrap_or_else(|e| e.into_inner()) = f;
    }

    fn listen(self: &Arc<Self>, l: TcpListener) {
        let clone = l.try_clone().expect("clone the listener");
        self.accepting.store(true, Ordering::SeqCst);
        let me = Arc::clone(self);
        let t = std::thread::spawn(move || {
            for s in l.incoming() {
                match s {
                    Ok(s) => me.adopt(s),
                    Err(_) if !me.accepting.load(Ordering::SeqCst) => break,
                    Err(e) if e.kind() == ErrorKind::InvalidInput => break, // shut: see `crash`
                    Err(_) => {}                                            // a client gave up: next
                }
            }
        });
        *self.listener.lock().unwrap_or_else(|e| e.into_inner()) = Some((clone, t));
    }

    fn adopt(self: &Arc<Self>, s: TcpStream) {
        let id = self.next_conn.fetch_add(1, Ordering::Relaxed);
        let conn = Arc::new(Conn { stream: s.try_clone().expect("clone a connection"), st: Mutex::default() });
        self.conns.lock().unwrap_or_else(|e| e.into_inner()).insert(id, Arc::clone(&conn));
        let me = Arc::clone(self);
        std::thread::spawn(move || {
            let data = me.serve(s, &conn);
            // Out of the table first, so the thread's own descriptor is the last to close:
            // after a crash that close is the reset.
            me.conns.lock().unwrap_or_else(|e| e.into_inner()).remove(&id);
            drop(conn);
            if data {
                me.tally.update(|c| c.open_data -= 1);
            }
        });
    }

    /// Applies `f` (the chaos thread's call).
    pub fn apply(self: &Arc<Self>, f: Fault) {
        let name = format!("{f:?}");
        self.tally.update(|c| *c.faults.entry(name).or_default() += 1);
        if f == Fault::Crashed {
            self.crash();
        } else {
            self.set_fault(f);
        }
    }

    /// The crash: fault first (a request read from now on is not answered), then the listener
    /// (its backlog is reset by the kernel; shutting a listening socket wakes its `accept`),
    /// then every connection.
    fn crash(&self) {
        self.set_fault(Fault::Crashed);
        self.accepting.store(false, Ordering::SeqCst);
        if let Some((l, t)) = self.listener.lock().unwrap_or_else(|e| e.into_inner()).take() {
            // Shutting down a listener that is already closed fails; nothing else can fail.
            let _ = socket2::SockRef::from(&l).shutdown(Shutdown::Read);
            drop(l);
            t.join().expect("the accepting thread ends");
        }
        let conns: Vec<Arc<Conn>> =
            self.conns.lock().unwrap_or_else(|e| e.into_inner()).drain().map(|(_, c)| c).collect();
        for c in conns {
            c.crash(&self.tally);
        }
    }

    /// Back to healthy; a crashed server listens again on its port.
    pub fn heal(self: &Arc<Self>) {
        if self.fault() == Fault::Crashed {
            // Its last descriptor closed when its accepting thread ended (joined in `crash`);
            // the port cannot have gone to an outgoing connection (see the module doc).
            let l = TcpListener::bind(("127.0.0.1", self.port)).unwrap_or_else(|e| {
                panic!("server s{}: cannot listen on {} again: {e}", self.digit as char, self.port)
            });
            self.set_fault(Fault::Healthy);
            self.listen(l);
        } else {
            self.set_fault(Fault::Healthy);
        }
    }

    /// Serves one connection until it ends. True if it carried a client request.
    fn serve(&self, mut s: TcpStream, conn: &Conn) -> bool {
        let _ = s.set_read_timeout(Some(Duration::from_secs(60))); // a bound on a forgotten test
        let mut buf = Vec::new();
        let mut data = false;
        loop {
            let Some(req) = read_request(&mut s, &mut buf) else { return data };
            if conn.lock().crashed {
                return data;
            }
            let fault = self.fault();
            if req.probe {
                match fault {
                    Fault::Stall | Fault::Crashed => {
                        hold(&mut s);
                        return data;
                    }
                    Fault::GarbageProbes => {
                        let k = self.garbage.fetch_add(1, Ordering::Relaxed) as usize % GARBAGE.len();
                        let _ = s.write_all(GARBAGE[k]); // its fate is the balancer's business
                        if k != 1 {
                            return data;
                        }
                    }
                    Fault::Healthy | Fault::ResetMidBody => {
                        if s.write_all(PROBE_OK).is_err() {
                            return data;
                        }
                        self.tally.update(|c| c.probes[self.index] += 1);
                    }
                }
                continue;
            }
            if !data {
                data = true;
                self.tally.update(|c| c.open_data += 1);
            }
            let id = req.id;
            {
                let mut st = conn.lock();
                if st.crashed {
                    return data;
                }
                st.current = Some(id);
                st.last = None;
                self.tally.update(|c| {
                    c.requests += 1;
                    let now = Instant::now();
                    if let Some(t) = c.last_arrival {
                        c.max_gap = c.max_gap.max(now - t);
                    }
                    c.last_arrival = Some(now);
                    if matches!(fault, Fault::Stall | Fault::Crashed) {
                        st.stalled = true;
                        c.stalled += 1;
                        c.max_held = c.max_held.max(c.working + c.stalled);
                    } else {
                        st.working = true;
                        Tally::begin_work(c);
                    }
                });
            }
            if matches!(fault, Fault::Stall | Fault::Crashed) {
                hold(&mut s);
                let mut st = conn.lock();
                if std::mem::take(&mut st.stalled) {
                    self.tally.update(|c| c.stalled -= 1);
                }
                return data;
            }
            std::thread::sleep((self.work)(id)); // the server's work time: pacing, not a wait
            let fault = self.fault();
            let reset = fault == Fault::ResetMidBody;
            {
                // The work is done: it ends here, before the reply starts out (the balancer
                // can release the slot only after it has read all of it, which is later).
                let mut st = conn.lock();
                if st.crashed {
                    return data;
                }
                self.tally.update(|c| {
                    if std::mem::take(&mut st.working) {
                        c.working -= 1;
                    }
                    if reset {
                        c.cut.insert(id);
                    }
                });
            }
            let bytes = reply(id, self.digit, req.sum, req.close);
            if reset {
                let head = bytes.len() - body_len(id);
                let _ = s.write_all(&bytes[..head + body_len(id) / 2]); // cut anyway
                let _ = socket2::SockRef::from(&s).set_linger(Some(Duration::ZERO));
                return data;
            }
            if !self.write_reply(&mut s, conn, id, &bytes) {
                return data;
            }
            {
                let mut st = conn.lock();
                st.last = st.current.take();
            }
            if req.close {
                let _ = s.shutdown(Shutdown::Write); // the reply is out; the peer may be gone
                hold(&mut s);
                return data;
            }
        }
    }

    /// Writes a reply in pieces, looking for a crash between them; a long one pauses once in
    /// the middle, so that crashes also land mid-body. False if it did not get out whole.
    fn write_reply(&self, s: &mut TcpStream, conn: &Conn, id: u64, bytes: &[u8]) -> bool {
        let half = bytes.len() / 2;
        let mut at = 0;
        while at < bytes.len() {
            if conn.lock().crashed {
                return false;
            }
            let end = (at + 16 * 1024).min(bytes.len());
            if at < half && end >= half && bytes.len() > 32 * 1024 {
                // Pacing, not a wait: the reply goes out in two bursts, so a reset fault can
                // land between them (mid-body), as on a real server under load.
                std::thread::sleep(Duration::from_millis(1));
            }
            if let Err(e) = s.write_all(&bytes[at..end]) {
                if !conn.lock().crashed && self.fault() != Fault::Crashed {
                    let what = format!("s{}: {e} after {at} of {} bytes", self.digit as char, bytes.len());
                    self.tally.update(|c| c.broken_writes.push((id, what)));
                }
                return false;
            }
            at = end;
        }
        true
    }
}

/// Holds a connection until its peer closes it (or the crash's `SHUT_RD`).
fn hold(s: &mut TcpStream) {
    let mut buf = [0u8; 4096];
    while matches!(s.read(&mut buf), Ok(n) if n > 0) {}
}

/// A request as the server reads it.
struct Req {
    probe: bool,
    id: u64,
    close: bool,
    /// The checksum of its body, if it had one.
    sum: Option<u64>,
}

/// Reads one request (head, then a `Content-Length` body) from `s`, starting with what `buf`
/// holds; leaves what follows in `buf`. `None` at EOF, error, or a head it cannot read.
fn read_request(s: &mut TcpStream, buf: &mut Vec<u8>) -> Option<Req> {
    let end = loop {
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break p + 4;
        }
        if buf.len() > 64 * 1024 {
            return None;
        }
        fill(s, buf)?;
    };
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    let path = head.split(' ').nth(1).unwrap_or("");
    let header = |name: &str| {
        head.split("\r\n").skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim().eq_ignore_ascii_case(name).then(|| v.trim().to_string())
        })
    };
    let probe = path == "/healthcheck";
    let id = path.strip_prefix("/r/").and_then(|i| i.parse().ok()).unwrap_or(u64::MAX);
    let close = header("connection").is_some_and(|v| v.eq_ignore_ascii_case("close"));
    let len: Option<usize> = header("content-length").and_then(|v| v.parse().ok());
    if let Some(n) = len {
        while buf.len() < end + n {
            fill(s, buf)?;
        }
    }
    let n = len.unwrap_or(0);
    let sum = len.map(|_| fnv(&buf[end..end + n]));
    buf.drain(..end + n);
    Some(Req { probe, id, close, sum })
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

/// The four (or `n`) servers of a storm and their tally.
pub struct Fleet {
    pub servers: Vec<Arc<Server>>,
    pub tally: Arc<Tally>,
}

impl Fleet {
    pub fn start(n: usize, work: WorkTime) -> Fleet {
        let tally = Arc::new(Tally::default());
        tally.update(|c| c.probes = vec![0; n]);
        let seed = u64::from(std::process::id()) << 32
            ^ std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos() as u64;
        let servers = (0..n).map(|i| Server::start(i, &tally, work, seed.wrapping_add(i as u64 * 7_777))).collect();
        Fleet { servers, tally }
    }

    pub fn ports(&self) -> Vec<u16> {
        self.servers.iter().map(|s| s.port).collect()
    }

    pub fn heal_all(&self) {
        self.servers.iter().for_each(Server::heal);
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        // Crashing every server ends its threads: nothing of this fleet outlives the test.
        for s in &self.servers {
            s.crash();
        }
    }
}

/// Every fault, in the order the chaos thread applies them.
pub const ALL: [Fault; 4] = [Fault::Crashed, Fault::Stall, Fault::GarbageProbes, Fault::ResetMidBody];

/// The chaos thread: every `tick`, the oldest of the (at most two) faults in force is healed
/// and the next of `kinds` in turn (`ALL`: crash, stall, garbage probes, reset mid-body) is applied to a
/// healthy server picked at random; so each fault lasts two ticks and two servers stay healthy.
/// Stops (healing everything) when `stop` fires or its sender is dropped.
pub fn chaos(fleet: &Fleet, tick: Duration, kinds: &[Fault], stop: std::sync::mpsc::Receiver<()>) -> JoinHandle<u64> {
    let servers = fleet.servers.clone();
    let kinds = kinds.to_vec();
    std::thread::spawn(move || {
        if kinds.is_empty() {
            let _ = stop.recv(); // no faults: only the end of the storm
            return 0;
        }
        let mut active: std::collections::VecDeque<usize> = Default::default();
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15 ^ u64::from(std::process::id());
        let mut applied = 0u64;
        // The tick is the schedule: a fault lasts this long, it is not a wait for an event.
        while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = stop.recv_timeout(tick) {
            if active.len() >= 2
                && let Some(i) = active.pop_front()
            {
                servers[i].heal();
            }
            let healthy: Vec<usize> = (0..servers.len()).filter(|i| !active.contains(i)).collect();
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let i = healthy[(x % healthy.len() as u64) as usize];
            servers[i].apply(kinds[applied as usize % kinds.len()]);
            active.push_back(i);
            applied += 1;
        }
        for s in &servers {
            s.heal();
        }
        applied
    })
}
