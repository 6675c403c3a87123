//! Probe rounds: every server of a round is asked `GET /healthcheck`, and the round returns
//! what each answered. A leaf: it knows sockets and HTTP, not the dispatcher; whoever runs a
//! round applies its results (`Dispatcher`, which alone owns the server table and the gate).
//!
//! All servers of a round are probed in parallel: non-blocking sockets under one `poll` on
//! the thread that runs the round, so a silent server costs the round at most the 2 s probe
//! timeout, not 2 s per server, and a round costs no thread start-up. A round comes in two
//! halves, `Round::start` (send, never blocks) and `Round::collect` (read), so the round after
//! the R-th dispatch is sent at once and read by whoever next needs a routing decision. A
//! server is up only after a complete `200` reply whose body is `<errors>\n<entries>`;
//! anything else (refused, timed out, other status, short or malformed body) makes it down.
//! A failure of our own (no descriptor for the probe's socket, a failed `poll`) says nothing
//! about the server: it is `ProbeResult::Internal`, and the server keeps its state.

use crate::balancer::bridge::poll_timeout;
use crate::balancer::config::{CONNECT_TIMEOUT, PROBE_TIMEOUT};
use crate::balancer::http;
use crate::balancer::shortage;
use nix::poll::{PollFd, PollFlags, poll};
use socket2::{Domain, Socket, Type};
use std::io::{self, Read};
use std::net::SocketAddr;
use std::os::fd::AsFd;
use std::time::Instant;

/// One server's probe outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeResult {
    /// A complete `200` with the server's counts.
    Up { errors: u64, entries: u64 },
    /// The server's fault: refused, timed out, a bad or short reply (the reason).
    Down(String),
    /// Our own failure (out of descriptors, `poll` failed): nothing is known of the server.
    Internal(String),
}

impl std::fmt::Display for ProbeResult {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ProbeResult::Up { errors, entries } => write!(f, "up, errors={errors} entries={entries}"),
            ProbeResult::Down(why) => write!(f, "down: {why}"),
            ProbeResult::Internal(why) => write!(f, "not probed: internal: {why}"),
        }
    }
}

/// A round in progress: every server's probe has been sent where its connection allowed, and
/// the replies are read by `collect`. Split in two so that the worker whose dispatch calls for
/// a round can send it at once and go on bridging, while the replies arrive; whoever needs
/// the next routing decision reads them (see `Dispatcher::take`).
pub struct Round {
    probes: Vec<Probe>,
    deadline: Instant,
    connect_deadline: Instant,
}

impl std::fmt::Debug for Round {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Round").field("probes", &self.probes.len()).finish()
    }
}

impl Round {
    /// Starts a round over `addrs`: connects where no kept connection exists, and sends the
    /// request on every connection that is ready for it. Never blocks.
    pub fn start(addrs: &[SocketAddr], idle: &Idle) -> Round {
        let start = Instant::now();
        let mut kept = idle.take(addrs);
        let mut probes: Vec<Probe> = addrs
            .iter()
            .map(|a| match kept.iter().position(|(k, _)| k == a) {
                Some(i) => Probe::reuse(*a, kept.swap_remove(i).1),
                None => Probe::start(*a),
            })
            .collect();
        for p in probes.iter_mut().filter(|p| p.result.is_none() && p.stage == Stage::Sending) {
            p.send();
        }
        Round { probes, deadline: start + PROBE_TIMEOUT, connect_deadline: start + CONNECT_TIMEOUT.min(PROBE_TIMEOUT) }
    }

    /// Probes `addr` again within this round's deadlines (extended to count from now): its
    /// answer must come from after now. Never blocks.
    pub fn reprobe(&mut self, addr: SocketAddr) {
        let now = Instant::now();
        self.deadline = self.deadline.max(now + PROBE_TIMEOUT);
        self.connect_deadline = self.connect_deadline.max(now + CONNECT_TIMEOUT.min(PROBE_TIMEOUT));
        if let Some(p) = self.probes.iter_mut().find(|p| p.addr == addr) {
            // The first answer is usually in already: take it and ask again at once (on the
            // same connection if the server keeps it). If it is not, ask again as soon as it
            // is, so that one connection carries both.
            if p.result.is_none() && p.stage == Stage::Receiving {
                p.advance();
            }
            if p.result.is_some() {
                p.renew();
            } else {
                p.ask_again = true;
            }
        }
    }

    /// Drives every probe to its result under one `poll`, on this thread: the round ends when
    /// the last server has answered (or at the 2 s deadline). Results in the order of the
    /// addresses the round started with; kept-alive connections go back to `idle`.
    pub fn collect(mut self, idle: &Idle) -> Vec<(SocketAddr, ProbeResult)> {
        let probes = &mut self.probes;
        loop {
            // A probe without a result always has its socket; the filter just says so.
            let live: Vec<usize> =
                (0..probes.len()).filter(|i| probes[*i].result.is_none() && probes[*i].sock.is_some()).collect();
            if live.is_empty() {
                break;
            }
            let now = Instant::now();
            let mut fds: Vec<PollFd> = live.iter().filter_map(|i| probes[*i].poll_fd()).collect();
            let answer_by = live.iter().map(|i| reply_due(&probes[*i], self.deadline)).min().unwrap_or(self.deadline);
            let until = if live.iter().any(|i| probes[*i].stage == Stage::Connecting) {
                self.connect_deadline.min(answer_by)
            } else {
                answer_by
            };
            match poll(&mut fds, poll_timeout(until.saturating_duration_since(now))) {
                Ok(_) | Err(nix::errno::Errno::EINTR) => {}
                Err(e) => {
                    for i in &live {
                        probes[*i].result = Some(ProbeResult::Internal(format!("poll: {e}")));
                    }
                    break;
                }
            }
            let ready: Vec<bool> = fds.iter().map(|f| f.revents().is_some_and(|r| !r.is_empty())).collect();
            drop(fds);
            for (i, r) in live.into_iter().zip(ready) {
                if r {
                    probes[i].advance();
                }
                if probes[i].ask_again && probes[i].result.is_some() {
                    probes[i].renew();
                }
            }
            // Deadlines are judged after a poll, so a round read late (one that was sent and
            // parked, see `Dispatcher::take`) still takes the replies that came in time; and a
            // request sent late (a probe renewed while its round was parked, sent only once the
            // round is read) gets its full time to be answered.
            let now = Instant::now();
            for p in probes.iter_mut().filter(|p| p.result.is_none()) {
                if now >= reply_due(p, self.deadline) {
                    p.result =
                        Some(ProbeResult::Down(format!("no complete reply within {}s", PROBE_TIMEOUT.as_secs())));
                } else if now >= self.connect_deadline && p.stage == Stage::Connecting {
                    p.result = Some(ProbeResult::Down("connect failed: timed out".into()));
                }
            }
        }
        let mut results = Vec::with_capacity(probes.len());
        let mut keep = Vec::new();
        for p in self.probes {
            if p.keep
                && let Some(sock) = p.sock
            {
                keep.push((p.addr, sock));
            }
            results.push((p.addr, p.result.unwrap_or_else(|| ProbeResult::Internal("no result".into()))));
        }
        idle.put(keep);
        results
    }
}

/// Probe connections kept open between rounds, for servers that allow HTTP/1.1 keep-alive: a
/// round then costs no TCP handshake and teardown (with `-R 5` one runs every five clients).
/// Taken by whoever runs a round and given back after it; a server that closed its side
/// meanwhile is probed again on a fresh connection, not called down. Its own lock, held only
/// to move entries in or out (sockets are closed after it is released).
#[derive(Debug, Default)]
pub struct Idle(parking_lot::Mutex<Vec<(SocketAddr, Socket)>>);

impl Idle {
    /// Takes the kept connections to `addrs`; the others stay for the rounds that probe them.
    fn take(&self, addrs: &[SocketAddr]) -> Vec<(SocketAddr, Socket)> {
        let mut all = self.0.lock();
        let (taken, rest) = std::mem::take(&mut *all).into_iter().partition(|(a, _)| addrs.contains(a));
        *all = rest;
        taken
    }

    /// Closes the kept connections to servers not in `known` (a reload removed them).
    pub fn retain(&self, known: &[SocketAddr]) {
        let mut all = self.0.lock();
        let (keep, gone): (Vec<_>, Vec<_>) =
            std::mem::take(&mut *all).into_iter().partition(|(a, _)| known.contains(a));
        *all = keep;
        drop(all);
        drop(gone);
    }

    fn put(&self, conns: Vec<(SocketAddr, Socket)>) {
        self.0.lock().extend(conns);
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Connecting,
    Sending,
    Receiving,
}

/// One probe's state machine: connect, send the request, read the whole reply.
/// When `p`'s reply is due: the round's deadline, or `PROBE_TIMEOUT` after its request went
/// out if that was later. Before this, a probe renewed while its round was parked (see
/// `Round::reprobe`) was sent only when the round was read, and judged at once by the round's
/// deadline, which an idle gap of 2 s had passed: a healthy server was marked down.
fn reply_due(p: &Probe, round_deadline: Instant) -> Instant {
    p.asked.map_or(round_deadline, |asked| round_deadline.max(asked + PROBE_TIMEOUT))
}

struct Probe {
    addr: SocketAddr,
    sock: Option<Socket>,
    /// The connection comes from an earlier round: if the server closed it meanwhile, start
    /// over on a fresh one.
    reused: bool,
    /// The reply was complete by Content-Length on a connection the server keeps open.
    keep: bool,
    /// Its answer may predate what the round must see: once it is in, ask again.
    ask_again: bool,
    stage: Stage,
    request: Vec<u8>,
    sent: usize,
    reply: Vec<u8>,
    result: Option<ProbeResult>,
    /// When its request was all sent: the server has `PROBE_TIMEOUT` from then to answer.
    asked: Option<Instant>,
}

impl Probe {
    fn start(addr: SocketAddr) -> Probe {
        let mut p = Probe::unconnected(addr);
        // A shortage of our own (no descriptor, no buffer) is not the server's fault.
        let down = |e: io::Error| {
            if shortage::is_ours(&e) {
                ProbeResult::Internal(format!("connect: {e}"))
            } else {
                ProbeResult::Down(format!("connect failed: {e}"))
            }
        };
        match Socket::new(Domain::for_address(addr), Type::STREAM.nonblocking().cloexec(), None) {
            Err(e) => p.result = Some(ProbeResult::Internal(format!("socket: {e}"))),
            Ok(s) => match s.connect(&addr.into()) {
                Ok(()) => {
                    p.stage = Stage::Sending;
                    p.sock = Some(s);
                }
                Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {
                    // On a nearby server the handshake is usually over already: send now, so
                    // the answer is on its way before anyone waits for it. A send that fails
                    // leaves the verdict to the connect's own outcome (poll, then SO_ERROR).
                    if let Ok(n) = s.send(&p.request) {
                        p.sent = n;
                        p.stage = Stage::Sending;
                    }
                    p.sock = Some(s);
                }
                Err(e) => p.result = Some(down(e)),
            },
        }
        p
    }

    /// A probe on a connection kept from an earlier round.
    fn reuse(addr: SocketAddr, sock: Socket) -> Probe {
        let mut p = Probe::unconnected(addr);
        p.sock = Some(sock);
        p.reused = true;
        p.stage = Stage::Sending;
        p
    }

    fn unconnected(addr: SocketAddr) -> Probe {
        let request = format!("GET /healthcheck HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: loadbalancer\r\n\r\n");
        Probe {
            addr,
            sock: None,
            reused: false,
            keep: false,
            ask_again: false,
            stage: Stage::Connecting,
            request: request.into_bytes(),
            sent: 0,
            reply: Vec::new(),
            result: None,
            asked: None,
        }
    }

    /// Starts this probe over, after a result that came too early (see `Round::reprobe`): on
    /// the same connection if the server keeps it open, else on a fresh one.
    fn renew(&mut self) {
        let sock = if self.keep { self.sock.take() } else { None };
        *self = match sock {
            Some(sock) => Probe::reuse(self.addr, sock),
            None => Probe::start(self.addr),
        };
        if self.result.is_none() && self.stage == Stage::Sending {
            self.send();
        }
    }

    /// A kept connection turned out closed: probe again on a fresh one.
    fn restart(&mut self) {
        *self = Probe::start(self.addr);
    }

    fn poll_fd(&self) -> Option<PollFd<'_>> {
        let flags = if self.stage == Stage::Receiving { PollFlags::POLLIN } else { PollFlags::POLLOUT };
        self.sock.as_ref().map(|s| PollFd::new(s.as_fd(), flags))
    }

    /// Moves the probe on after its socket became ready.
    fn advance(&mut self) {
        let Some(sock) = self.sock.as_ref() else { return };
        if self.stage == Stage::Connecting {
            match sock.take_error() {
                Ok(None) => self.stage = Stage::Sending,
                Ok(Some(e)) | Err(e) => {
                    self.result = Some(ProbeResult::Down(format!("connect failed: {e}")));
                    return;
                }
            }
        }
        if self.stage == Stage::Sending {
            self.send();
            if self.stage != Stage::Receiving {
                return;
            }
        }
        let Some(sock) = self.sock.as_ref() else { return };
        let mut chunk = [0u8; 4096];
        loop {
            match (&mut &*sock).read(&mut chunk) {
                Ok(0) if self.reused && self.reply.is_empty() => return self.restart(),
                Ok(0) => return self.finish(false),
                Ok(n) => {
                    self.reply.extend_from_slice(&chunk[..n]);
                    if http::reply_complete(&self.reply) {
                        return self.finish(true);
                    }
                    if self.reply.len() > 64 * 1024 {
                        self.result = Some(ProbeResult::Down("reply over 64 KiB".into()));
                        return;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) if self.reused && self.reply.is_empty() => return self.restart(),
                Err(e) => {
                    self.result = Some(ProbeResult::Down(format!("receive failed: {e}")));
                    return;
                }
            }
        }
    }

    /// Sends what is left of the request; moves on to `Receiving` once all of it is out.
    fn send(&mut self) {
        let Some(sock) = self.sock.as_ref() else { return };
        while self.sent < self.request.len() {
            match sock.send(&self.request[self.sent..]) {
                Ok(n) => self.sent += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) if self.reused => return self.restart(),
                Err(e) => {
                    self.result = Some(ProbeResult::Down(format!("send failed: {e}")));
                    return;
                }
            }
        }
        self.stage = Stage::Receiving;
        self.asked = Some(Instant::now());
    }

    /// `framed`: the reply ended at its Content-Length, not at EOF.
    fn finish(&mut self, framed: bool) {
        let parsed = http::parse_health(&self.reply);
        self.keep = framed && parsed.is_ok() && !http::says_close(&self.reply);
        self.result = Some(match parsed {
            Ok((errors, entries)) => ProbeResult::Up { errors, entries },
            Err(bad) => ProbeResult::Down(bad.to_string()),
        });
        if !self.keep {
            self.sock = None;
        }
    }
}
