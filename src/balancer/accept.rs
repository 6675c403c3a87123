//! The accepting thread (the main thread): accepts clients, waits off the workers for each
//! one's first byte, and hands ready connections to the dispatcher. It also owns every socket
//! that is not being bridged:
//!
//! - *pending*: accepted, silent so far. With `TCP_DEFER_ACCEPT` most clients arrive with
//!   their request already here; the rest wait in `poll` here and hold no slot, no worker and
//!   no server connection. Closed after `client_timeout`.
//! - *lingering*: answered with a final 500 or 503 and shut for writing; read and discarded
//!   until the client closes (bounded by `LINGER`), so closing never sends an RST that would
//!   destroy the answer in the client's receive queue.
//!
//! One `poll` covers the listeners, the self-pipe (signals, handed-over sockets, the end of a
//! drain), and the sockets above. Its timeout is the earliest deadline among pending clients,
//! lingering sockets, the waiting room's next queue timeout and the drain; there is no
//! periodic tick.
//!
//! Descriptors: every client this thread takes holds one, and the workers need theirs for
//! server connections and pipes. So accepting *pauses* (the listeners leave the `poll`, and
//! clients wait in the kernel's backlog) when `accept` fails for want of room (EMFILE,
//! ENFILE, ENOBUFS, ENOMEM), when an accepted client's descriptor reaches into the room kept
//! for the workers (`reserved`), and while a worker waits for a descriptor. It resumes on the
//! next wake-up (a descriptor freed, a socket handed over, a client gone) or after
//! `shortage::RETRY`, never by spinning; the episode is logged once (`shortage.rs`). See:
//! issue 11 (defect 5).

use crate::balancer::bridge::poll_timeout;
use crate::balancer::config::{Config, Mode};
use crate::balancer::http;
use crate::balancer::park::{self, Lot, Turn};
use crate::balancer::sched::{Dispatcher, Job, Pusher};
use crate::balancer::shortage;
use crate::balancer::watch::{Kind, Watch};
use crate::common::sys::Waker;
use nix::poll::{PollFd, PollFlags, poll};
use parking_lot::Mutex;
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsFd, AsRawFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// How long an answered socket is drained before it is closed regardless.
const LINGER: Duration = Duration::from_secs(2);

/// Sockets handed to the accepting thread by other threads, answered or done, to linger and
/// close.
#[derive(Debug)]
pub struct Closer {
    handed: Mutex<Vec<TcpStream>>,
    waker: Arc<Waker>,
}

impl Closer {
    pub fn new(waker: Arc<Waker>) -> Closer {
        Closer { handed: Mutex::new(Vec::new()), waker }
    }

    /// Closes a client whose exchange is over, cleanly: its write side is shut now, and the
    /// accepting thread reads what it still sends until it closes (so no RST destroys the end
    /// of its response). The socket stays non-blocking.
    pub fn linger(&self, client: TcpStream) {
        // A client that already left: lingering then closes it at once.
        let _ = client.shutdown(Shutdown::Write);
        self.handed.lock().push(client);
        self.waker.wake();
    }

    /// Writes a final answer, shuts the write side, and hands the socket over to linger.
    pub fn answer(&self, mut client: TcpStream, reply: &[u8]) {
        // A client that reset or stopped reading cannot get the answer; nothing more to do.
        let _ = client.set_nonblocking(false);
        let _ = client.set_write_timeout(Some(Duration::from_secs(1)));
        let _ = client.write_all(reply);
        let _ = client.shutdown(Shutdown::Write);
        self.handed.lock().push(client);
        self.waker.wake();
    }

    fn take(&self) -> Vec<TcpStream> {
        std::mem::take(&mut *self.handed.lock())
    }
}

/// Signal flags set by handlers; each signal also writes the self-pipe.
#[derive(Debug, Default)]
pub struct Signals {
    pub terminate: Arc<AtomicBool>,
    pub reload: Arc<AtomicBool>,
}

struct Waiting {
    stream: TcpStream,
    peer: SocketAddr,
    deadline: Instant,
}

pub struct Acceptor {
    pub listeners: Vec<TcpListener>,
    /// Client connections between requests (http mode), shared with the workers.
    pub lot: Arc<Lot>,
    pub dispatcher: Arc<Dispatcher>,
    pub closer: Arc<Closer>,
    pub waker: Arc<Waker>,
    pub signals: Signals,
    /// Called on SIGHUP; returns nothing, logs its own outcome.
    pub on_reload: Box<dyn FnMut()>,
}

impl Acceptor {
    /// Runs until SIGINT/SIGTERM and the drain that follows.
    pub fn run(mut self) {
        let mut pending: Vec<Waiting> = Vec::new();
        let mut lingering: Vec<Waiting> = Vec::new();
        let mut drain_deadline: Option<Instant> = None;
        // Accepting is paused until then at the latest (see the module doc).
        let mut paused: Option<Instant> = None;
        // The last client's descriptor was in the upper half of the room for clients: look
        // before each accept (see `accept_all`).
        let mut tight = false;
        let nofile = match nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE) {
            Ok((soft, _)) => soft,
            Err(e) => {
                crate::warn!("cannot read the open-file limit: {e}; no room is kept for server connections");
                u64::MAX
            }
        };
        for l in &self.listeners {
            if let Err(e) = l.set_nonblocking(true) {
                crate::error!("internal: listener {:?}: {e}", l.local_addr());
            }
        }
        // Reloads run on this thread, so this copy is current until the next one (and taking
        // it at every wake-up would cost the dispatcher's lock each time).
        let mut config = self.dispatcher.config();
        loop {
            if self.signals.reload.swap(false, Ordering::Relaxed) {
                (self.on_reload)();
                config = self.dispatcher.config();
                self.lot.set_timeouts(park_timeouts(&config));
            }
            if drain_deadline.is_none() && self.signals.terminate.load(Ordering::Relaxed) {
                let drain = config.drain_timeout;
                self.listeners.clear();
                self.dispatcher.begin_drain();
                // Idle keep-alive clients have no request in progress: closed at once.
                self.lot.close_all();
                // Logged once it is true: the listeners are closed.
                crate::info!("signal: stop accepting; draining for up to {}s", drain.as_secs_f64());
                drain_deadline = Some(Instant::now() + drain);
            }
            let now = Instant::now();
            if let Some(d) = drain_deadline {
                if self.dispatcher.is_idle() {
                    break;
                }
                if now >= d {
                    crate::warn!("drain timeout: closing what is left");
                    break;
                }
            }

            // Deadlines first: they decide the poll timeout.
            let client_timeout = config.client_timeout;
            pending.retain(|w| {
                let alive = w.deadline > now;
                if !alive {
                    crate::info!("client {}: sent nothing in {}s; closing", w.peer, client_timeout.as_secs_f64());
                }
                alive
            });
            lingering.retain(|w| w.deadline > now);
            let next_parked = self.lot.expire(now);
            let next_idle_conn = self.dispatcher.reuse.expire(now);
            let (expired, next_expiry) = self.dispatcher.expire(now);
            for job in expired {
                crate::warn!("client {}: waited too long for a slot; answering 503", job.peer);
                lingering.push(answer_here(job.client, job.peer, http::UNAVAILABLE));
            }
            // A worker waiting for a descriptor gets the next one freed, not a new client.
            let shortage = &self.dispatcher.shortage;
            if paused.is_none() && shortage.workers_waiting() {
                shortage.pause_accept("a worker waits for a descriptor");
                paused = Some(now + shortage::RETRY);
            }
            if let Some(retry) = paused
                && retry <= now
            {
                paused = Some(now + shortage::RETRY);
            }
            let accepting = paused.is_none();
            let deadline = [
                pending.iter().map(|w| w.deadline).min(),
                lingering.iter().map(|w| w.deadline).min(),
                next_expiry,
                next_parked,
                next_idle_conn,
                drain_deadline,
                paused,
            ]
            .into_iter()
            .flatten()
            .min();
            // Last: a worker may have parked a connection since `expire`.
            let deadline = self.lot.sleep_until(deadline);

            let mut fds: Vec<PollFd> = Vec::with_capacity(1 + self.listeners.len() + pending.len() + lingering.len());
            fds.push(PollFd::new(self.waker.read.as_fd(), PollFlags::POLLIN));
            fds.push(PollFd::new(self.dispatcher.watch.fd(), PollFlags::POLLIN));
            if accepting {
                fds.extend(self.listeners.iter().map(|l| PollFd::new(l.as_fd(), PollFlags::POLLIN)));
            }
            fds.extend(pending.iter().map(|w| PollFd::new(w.stream.as_fd(), PollFlags::POLLIN)));
            fds.extend(lingering.iter().map(|w| PollFd::new(w.stream.as_fd(), PollFlags::POLLIN)));
            let timeout = deadline
                .map(|d| poll_timeout(d.saturating_duration_since(now)))
                .unwrap_or(nix::poll::PollTimeout::NONE);
            match poll(&mut fds, timeout) {
                Ok(_) => {}
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => {
                    crate::error!("internal: poll: {e}");
                    continue;
                }
            }
            let ready: Vec<bool> = fds.iter().map(|f| f.revents().is_some_and(|r| !r.is_empty())).collect();
            drop(fds);
            let (wake, rest) = ready.split_at(2);
            let (lis_ready, rest) = rest.split_at(if accepting { self.listeners.len() } else { 0 });
            let (pend_ready, ling_ready) = rest.split_at(pending.len());

            // Lingering sockets: discard what arrives, close at EOF or error.
            let mut kept = Vec::with_capacity(lingering.len());
            for (mut w, r) in lingering.drain(..).zip(ling_ready) {
                if !*r || discard(&mut w.stream) {
                    kept.push(w);
                }
            }
            lingering = kept;
            // Pending clients whose first byte (or EOF) arrived.
            let mut fired = Vec::new();
            let mut kept = Vec::with_capacity(pending.len());
            for (w, r) in pending.drain(..).zip(pend_ready) {
                if *r { fired.push(w) } else { kept.push(w) }
            }
            pending = kept;
            for w in fired {
                self.admit(w.stream, w.peer, &mut pending, &mut lingering, client_timeout);
            }
            if wake[0] {
                self.waker.drain();
                let now = Instant::now();
                lingering.extend(self.closer.take().into_iter().map(|stream| Waiting {
                    peer: stream.peer_addr().unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0))),
                    stream,
                    deadline: now + LINGER,
                }));
            }
            if wake[1] {
                self.watched(&mut lingering);
            }
            // Paused: every wake-up is a chance that a descriptor was freed; try once more
            // unless a worker waits for one.
            let resuming = paused.is_some() && !self.dispatcher.shortage.workers_waiting();
            if resuming {
                paused = None;
            }
            let room = nofile.saturating_sub(reserved(nofile, &config));
            for idx in 0..self.listeners.len() {
                if paused.is_none() && (resuming || lis_ready.get(idx).copied().unwrap_or(false)) {
                    let accepted = self.accept_all(idx, &config, room, &mut tight, &mut pending, &mut lingering);
                    if let Err(why) = accepted {
                        self.dispatcher.shortage.pause_accept(&why);
                        paused = Some(Instant::now() + shortage::RETRY);
                    }
                }
            }
            if resuming && paused.is_none() {
                self.dispatcher.shortage.resume_accept();
            }
        }
        // The drain is over: answer whoever still waits, and close the rest.
        let left = self.dispatcher.stop();
        for job in left {
            // The process exits next: the answer is written, the close is the kernel's.
            let _ = answer_here(job.client, job.peer, http::UNAVAILABLE);
        }
    }

    /// Accepts what waits on listener `idx`, until the backlog is empty (`Ok`) or there is no
    /// room for more (`Err` with why: accepting must pause).
    ///
    /// Clients get descriptors below `room`; those above are kept for server connections.
    /// Descriptors are handed out lowest first, so a client's number says how full the table
    /// is below it. Once a client's number is in the upper half of the room (`tight`), each
    /// accept is preceded by a look at the lowest free number (a duplicate, closed at once),
    /// so no client ever takes one at or above `room`: two more calls per client, only while
    /// the table is that full.
    fn accept_all(
        &mut self,
        idx: usize,
        config: &Config,
        room: u64,
        tight: &mut bool,
        pending: &mut Vec<Waiting>,
        lingering: &mut Vec<Waiting>,
    ) -> Result<(), String> {
        loop {
            if *tight {
                match self.listeners[idx].try_clone() {
                    Ok(probe) if probe.as_raw_fd() as u64 >= room => {
                        return Err(format!(
                            "descriptors below {room} are all in use; those above are kept for server connections"
                        ));
                    }
                    Ok(_) => {} // closed here: the accept below takes that number
                    Err(e) if shortage::is_ours(&e) => return Err(format!("accept: {e}")),
                    Err(e) => crate::debug!("internal: cannot look for a free descriptor: {e}"),
                }
            }
            match accept_nonblocking(&self.listeners[idx]) {
                Ok((stream, peer)) => {
                    crate::debug!("client {peer}: accepted");
                    let fd = stream.as_raw_fd() as u64;
                    *tight = fd.saturating_mul(2) >= room;
                    if config.mode == Mode::Http {
                        let turn = self.lot.arrive(stream, peer, Vec::new(), park::Arrival::Accepted);
                        self.turn(turn, lingering);
                    } else if config.server_speaks_first {
                        self.enqueue(stream, peer, lingering);
                    } else {
                        self.admit(stream, peer, pending, lingering, config.client_timeout);
                    }
                    if fd >= room {
                        // Another thread filled the table since the last look.
                        return Err(format!(
                            "descriptor {fd} went to a client; those from {room} up are kept for server connections"
                        ));
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                // Out of room: leave the rest in the backlog until a descriptor is freed.
                Err(e) if shortage::is_ours(&e) => return Err(format!("accept: {e}")),
                Err(e) => {
                    crate::debug!("client: accept failed: {e}");
                }
            }
        }
    }

    /// Queues a client that has spoken, parks a silent one, drops one that already left.
    fn admit(
        &self,
        stream: TcpStream,
        peer: SocketAddr,
        pending: &mut Vec<Waiting>,
        lingering: &mut Vec<Waiting>,
        timeout: Duration,
    ) {
        let mut probe = [0u8; 1];
        match stream.peek(&mut probe) {
            Ok(0) => crate::debug!("client {peer}: closed before sending anything"),
            Ok(_) => self.enqueue(stream, peer, lingering),
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                pending.push(Waiting { stream, peer, deadline: Instant::now() + timeout })
            }
            Err(e) => crate::debug!("client {peer}: {e}"),
        }
    }

    /// Acts on what the parking lot decided for a connection.
    fn turn(&self, turn: Turn, lingering: &mut Vec<Waiting>) {
        match turn {
            Turn::Queue(job) => self.enqueue_job(job, lingering),
            Turn::Answer(stream, peer, reply) => lingering.push(answer_here(stream, peer, reply)),
            Turn::Closed | Turn::Parked => {}
        }
    }

    /// The watch has events: parked clients that spoke, queued clients that gave up, idle
    /// server connections that their server closed.
    fn watched(&mut self, lingering: &mut Vec<Waiting>) {
        let mut tokens = Vec::new();
        self.dispatcher.watch.ready(&mut tokens);
        for token in tokens {
            match Watch::kind(token) {
                Kind::Parked => {
                    let turn = self.lot.ready(token);
                    self.turn(turn, lingering);
                }
                Kind::Queued => {
                    if let Some(job) = self.dispatcher.abandon(token) {
                        // Its request never reaches a server; dropping it closes it.
                        crate::info!("client {}: gave up while waiting; dropped from the waiting room", job.peer);
                    }
                }
                Kind::Idle => self.dispatcher.reuse.on_event(token),
            }
        }
    }

    fn enqueue(&self, stream: TcpStream, peer: SocketAddr, lingering: &mut Vec<Waiting>) {
        let id = self.dispatcher.watch.token(Kind::Queued);
        self.enqueue_job(
            Job { client: stream, peer, id, request: None, unwatched: false, registered: false },
            lingering,
        );
    }

    fn enqueue_job(&self, job: Job, lingering: &mut Vec<Waiting>) {
        let peer = job.peer;
        match self.dispatcher.enqueue(job, Pusher::Acceptor) {
            Ok(waiting) => crate::debug!("client {peer}: queued, {waiting} waiting"),
            Err(job) => {
                crate::warn!("client {peer}: waiting room full; answering 503");
                lingering.push(answer_here(job.client, job.peer, http::UNAVAILABLE));
            }
        }
    }
}

/// The timeouts of parked connections, from the running configuration.
pub fn park_timeouts(config: &Config) -> park::Timeouts {
    park::Timeouts { idle: config.keep_alive_timeout, request: config.client_timeout }
}

/// Descriptors kept free for what is not a client, out of the open-file limit `nofile`: per
/// worker (slot) its server socket and two splice pipes, per server two probe sockets, and a
/// margin for the admin endpoint, the stats file and the like. At most half the limit, so
/// clients always have the other half.
fn reserved(nofile: u64, config: &Config) -> u64 {
    let want = 5 * config.limit as u64 + 2 * config.servers.len() as u64 + 32;
    want.min(nofile / 2)
}

/// Accepts a client on a socket that is non-blocking from the start, as the waiting below and
/// the bridge want it; it inherits `TCP_NODELAY` from the listener (see `balancer::bind`).
fn accept_nonblocking(listener: &TcpListener) -> std::io::Result<(TcpStream, SocketAddr)> {
    let (sock, addr) = socket2::SockRef::from(listener).accept4(libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC)?;
    let peer = addr.as_socket().ok_or_else(|| std::io::Error::other("a client without an IP address"))?;
    Ok((sock.into(), peer))
}

/// Answers on the accepting thread: the socket is non-blocking and the answer is small, so
/// the write goes straight into an empty send buffer.
fn answer_here(mut stream: TcpStream, peer: SocketAddr, reply: &[u8]) -> Waiting {
    // A client that already left cannot be answered; lingering then closes it.
    let _ = stream.write_all(reply);
    let _ = stream.shutdown(Shutdown::Write);
    Waiting { stream, peer, deadline: Instant::now() + LINGER }
}

/// Reads and throws away what a lingering client sends. False once it is finished.
fn discard(stream: &mut TcpStream) -> bool {
    // Sockets handed over by workers are blocking; one that cannot be made non-blocking could
    // stall this thread in the read below, so it is closed at once instead.
    if stream.set_nonblocking(true).is_err() {
        return false;
    }
    let mut buf = [0u8; 16 * 1024];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return false,
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::WouldBlock => return true,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return false,
        }
    }
}
