//! The parking lot (http mode), run by the accepting thread: client connections between
//! requests, holding no slot, no worker and no server connection.
//!
//! A request moves through these states; the arrows say who moves it:
//!
//! ```text
//!                  (accepting thread)                  (worker)              (worker)
//!  accepted ──► parked ──head complete──► queued ──take──► forwarding ──response done──┐
//!                ▲  │ bad head: 400/431     │ gave up: dropped   │ tunnel: bridged   │
//!                │  │ idle/slow: closed     │ timeout/full: 503  ▼ to the end        │
//!                │  ▼                       ▼                   closed               │
//!                │ closed                 closed                                      │
//!                └────────── parked again by the worker (keep-alive, maybe with the next bytes) ◄──┘
//! ```
//!
//! - *parked*: the connection is in `lot`, watched by the `Watch` for input. Its deadline is the
//!   keep-alive timeout while it has sent nothing of its next request, and the client timeout
//!   once a head has begun. The head is read here, on this thread (non-blocking, at most 64 KiB
//!   plus one read), and parsed; a complete head turns the connection into a job for the
//!   waiting room. Bad heads are answered here with the exact 400 or 431 and never reach a
//!   server.
//! - *queued*: the job is in the dispatcher's waiting room; the client is watched for a close
//!   or a reset, and one that gives up is taken out (`Dispatcher::abandon`).
//! - *forwarding*: a worker owns it (see `request`); when the response is complete the worker
//!   parks the connection again itself (`Lot::arrive`), with any bytes of the next request it
//!   read: the accepting thread is not woken to do it, so it sees a keep-alive request once,
//!   when its first bytes arrive.
//!
//! Locking: the lot is shared by the accepting thread and the workers under one mutex, held
//! to insert, find or remove an entry and to arm its one-shot registration (a cheap
//! `epoll_ctl`, so an event can never find its entry missing), never across a read.
//!
//! Deadlines: all parked connections of one kind share one timeout, so deadlines are in the
//! order the connections were parked, and two queues (`idle`, `reading`) give the earliest
//! deadline at their fronts. An entry whose connection moved on is skipped when it comes up.
//! The accepting thread sleeps until its earliest deadline, which it records here
//! (`sleep_until`); a worker that parks a connection due before that wakes it. Ten thousand
//! idle clients cost memory, but no work until one of them speaks or times out.

use crate::balancer::exchange::Request;
use crate::balancer::http::head;
use crate::balancer::sched::Job;
use crate::balancer::watch::{Kind, Watch};
use crate::common::sys::Waker;
use parking_lot::Mutex;
use std::collections::{HashMap, VecDeque};
use std::io::{ErrorKind, Read};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A malformed request head, or an ambiguously framed one.
pub const BAD_REQUEST: &[u8] = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
/// A request head over 64 KiB.
pub const TOO_LARGE: &[u8] =
    b"HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";

#[derive(Debug)]
struct Parked {
    stream: TcpStream,
    peer: SocketAddr,
    /// Bytes of the next request read so far.
    buf: Vec<u8>,
    deadline: Instant,
    /// Its deadline is the keep-alive one (nothing of a next request yet), in queue `idle`.
    idle: bool,
    /// The token it is watched under while parked; 0 until first parked.
    token: u64,
    /// Its socket has been armed in the watch before (see `Job::registered`).
    registered: bool,
}

/// Where a connection comes to the lot from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrival {
    /// Just accepted: read it now, it has likely sent its request.
    Accepted,
    /// A worker, after a complete response; `registered` as in `Job::registered`.
    Served { registered: bool },
}

/// What became of a connection that had something to say.
#[derive(Debug)]
pub enum Turn {
    /// A complete head: queue it.
    Queue(Job),
    /// Answer it with this and close (400, 431).
    Answer(TcpStream, SocketAddr, &'static [u8]),
    /// Nothing more to do; dropping it closes it.
    Closed,
    /// Still reading, or idle: parked.
    Parked,
}

#[derive(Debug)]
pub struct Lot {
    watch: Arc<Watch>,
    /// The accepting thread's, woken when a parked connection's deadline is its next one.
    waker: Arc<Waker>,
    inner: Mutex<Inner>,
}

#[derive(Debug)]
struct Inner {
    lot: HashMap<u64, Parked>,
    /// (deadline, token) of connections waiting for their next request, deadline order.
    idle: VecDeque<(Instant, u64)>,
    /// (deadline, token) of new connections and of those in the middle of a head.
    reading: VecDeque<(Instant, u64)>,
    timeouts: Timeouts,
    /// Draining: nothing is parked any more; a connection handed back is closed.
    closed: bool,
    /// The accepting thread wakes by then at the latest (`None`: it has no deadline). A
    /// worker that parks a connection due earlier wakes it (see `park`).
    sleep_until: Option<Instant>,
}

impl Lot {
    pub fn new(watch: Arc<Watch>, waker: Arc<Waker>, timeouts: Timeouts) -> Lot {
        let inner = Inner {
            lot: HashMap::new(),
            idle: VecDeque::new(),
            reading: VecDeque::new(),
            timeouts,
            closed: false,
            sleep_until: None,
        };
        Lot { watch, waker, inner: Mutex::new(inner) }
    }

    /// The timeouts for connections parked from now on (a reload).
    pub fn set_timeouts(&self, t: Timeouts) {
        self.inner.lock().timeouts = t;
    }

    /// A connection arrives: from accept, or parked again by a worker after a response with
    /// `buf` holding what it sent early. It is read now (if just accepted), and queued,
    /// answered or parked.
    pub fn arrive(&self, stream: TcpStream, peer: SocketAddr, buf: Vec<u8>, from: Arrival) -> Turn {
        let t = self.inner.lock().timeouts;
        let (fresh, registered) = match from {
            Arrival::Accepted => (true, false),
            Arrival::Served { registered } => (false, registered),
        };
        let idle = !fresh && buf.is_empty();
        let deadline = Instant::now() + if idle { t.idle } else { t.request };
        // A new client usually has its request here already (TCP_DEFER_ACCEPT): read it now.
        // One handed back just had its response and has rarely sent more yet: the watch (level
        // triggered) says when it does, which saves a read that would find nothing.
        self.advance(Parked { stream, peer, buf, deadline, idle, token: 0, registered }, t, fresh)
    }

    /// The watch says `token` (a parked connection) has input, a close or an error.
    pub fn ready(&self, token: u64) -> Turn {
        let (parked, t) = {
            let mut inner = self.inner.lock();
            (inner.lot.remove(&token), inner.timeouts)
        };
        match parked {
            Some(p) => self.advance(p, t, true),
            None => Turn::Closed, // it moved on; a stale event
        }
    }

    /// Reads what the connection has (if `read`), and decides. Runs without the lock.
    fn advance(&self, mut p: Parked, t: Timeouts, read: bool) -> Turn {
        let had = p.buf.len();
        if read {
            match read_some(&mut p.stream, &mut p.buf) {
                Ok(true) => {}
                Ok(false) => {
                    if !p.buf.is_empty() {
                        crate::debug!("client {}: closed in the middle of a request head", p.peer);
                    }
                    return Turn::Closed;
                }
                Err(e) => {
                    crate::debug!("client {}: {e}", p.peer);
                    return Turn::Closed;
                }
            }
        }
        match head::parse_request(&p.buf) {
            Ok(Some(head)) => {
                let id = self.watch.token(Kind::Queued);
                let request = Some(Box::new(Request { buf: p.buf, head }));
                Turn::Queue(Job {
                    client: p.stream,
                    peer: p.peer,
                    id,
                    request,
                    unwatched: false,
                    registered: p.registered,
                })
            }
            Err(head::Refusal::Bad(why)) => {
                crate::info!("client {}: bad request ({why}); answering 400", p.peer);
                Turn::Answer(p.stream, p.peer, BAD_REQUEST)
            }
            Err(head::Refusal::TooLarge) => {
                crate::info!("client {}: request head over 64 KiB; answering 431", p.peer);
                Turn::Answer(p.stream, p.peer, TOO_LARGE)
            }
            Ok(None) => {
                let mut due = p.token == 0;
                if p.idle && had == 0 && !p.buf.is_empty() {
                    // The first byte of a request starts the client timeout.
                    p.idle = false;
                    p.deadline = Instant::now() + t.request;
                    due = true;
                }
                self.park(p, due)
            }
        }
    }

    /// Watches `p` for its next bytes; `queue`: its deadline is new, so it joins its queue.
    fn park(&self, mut p: Parked, queue: bool) -> Turn {
        let mut inner = self.inner.lock();
        if inner.closed {
            return Turn::Closed; // draining: between requests is the moment to close it
        }
        if p.token == 0 {
            p.token = self.watch.token(Kind::Parked);
        }
        if let Err(e) = self.watch.arm(&p.stream, p.token, true, true, p.registered) {
            drop(inner);
            crate::error!("internal: cannot watch client {}: {e}; closing it", p.peer);
            return Turn::Closed;
        }
        p.registered = true;
        let mut wake = false;
        if queue {
            let due = p.deadline;
            let q = if p.idle { &mut inner.idle } else { &mut inner.reading };
            q.push_back((due, p.token));
            // Usually the accepting thread wakes before this deadline anyway (an idle pooled
            // server connection's is sooner, or an earlier parked one's); only if not is it
            // woken, once, to take this one into account.
            if inner.sleep_until.is_none_or(|s| s > due) {
                inner.sleep_until = Some(due);
                wake = true;
            }
        }
        inner.lot.insert(p.token, p);
        // Entries of connections that moved on leave a queue only at its front, so one
        // long-lived connection there would keep every later one: sweep them once a queue
        // holds far more entries than there are parked connections. See: issue 13 (the storm
        // measured RSS growing with requests served).
        let live = 2 * inner.lot.len() + 1024;
        let Inner { lot, idle, reading, .. } = &mut *inner;
        for q in [idle, reading] {
            if q.len() > live {
                q.retain(|(due, tok)| lot.get(tok).is_some_and(|p| p.deadline == *due));
            }
        }
        drop(inner);
        if wake {
            self.waker.wake();
        }
        Turn::Parked
    }

    /// Closes connections whose deadline has passed; says when the next one is due.
    pub fn expire(&self, now: Instant) -> Option<Instant> {
        let mut next: Option<Instant> = None;
        let mut closed = Vec::new();
        let mut inner = self.inner.lock();
        let Inner { lot, idle, reading, .. } = &mut *inner;
        for q in [idle, reading] {
            while let Some(&(due, token)) = q.front() {
                let current = lot.get(&token).is_some_and(|p| p.deadline == due);
                if current && due > now {
                    next = Some(next.map_or(due, |n| n.min(due)));
                    break;
                }
                q.pop_front();
                if current && let Some(p) = lot.remove(&token) {
                    closed.push(p);
                }
            }
        }
        drop(inner);
        // Logged and closed without the lock.
        for p in closed {
            if p.idle {
                crate::debug!("client {}: idle keep-alive connection closed", p.peer);
            } else {
                crate::info!("client {}: no complete request head in time; closing", p.peer);
            }
        }
        next
    }

    /// The accepting thread is about to sleep until `deadline` (`None`: no deadline): returns
    /// when it must wake at the latest, which is earlier if a connection parked since its
    /// `expire` is due earlier. Entries parked from now on compare with this (see `park`).
    pub fn sleep_until(&self, deadline: Option<Instant>) -> Option<Instant> {
        let mut inner = self.inner.lock();
        let fronts = [inner.idle.front(), inner.reading.front()].into_iter().flatten().map(|&(due, _)| due);
        let until = deadline.into_iter().chain(fronts).min();
        inner.sleep_until = until;
        until
    }

    /// SIGTERM: every parked connection is closed at once (none has a request a server has
    /// seen), and so is every one handed back from now on.
    pub fn close_all(&self) {
        let mut inner = self.inner.lock();
        inner.closed = true;
        let lot = std::mem::take(&mut inner.lot);
        inner.idle.clear();
        inner.reading.clear();
        drop(inner);
        drop(lot);
    }
}

/// The two timeouts of a parked connection.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// Between requests (`--keep-alive-timeout`).
    pub idle: Duration,
    /// From a request's first byte to the end of its head (`--client-timeout`).
    pub request: Duration,
}

/// Reads what is there without blocking, until a head is complete. False at EOF.
fn read_some(stream: &mut TcpStream, buf: &mut Vec<u8>) -> std::io::Result<bool> {
    let mut chunk = [0u8; 16 * 1024];
    // A head over the limit is refused whatever follows, so reading stops just past it; a
    // complete head stops it too (what follows is read by the worker, or the watch tells).
    while buf.len() <= head::MAX_HEAD {
        match stream.read(&mut chunk) {
            Ok(0) => return Ok(false),
            Ok(n) => {
                let from = buf.len().saturating_sub(3);
                buf.extend_from_slice(&chunk[..n]);
                if buf[from..].windows(4).any(|w| w == b"\r\n\r\n") {
                    return Ok(true);
                }
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(true),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}
