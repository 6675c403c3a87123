//! The checking side of `eventsim`: one thread polls every client socket and compares each
//! byte read with the next expected byte of that client.
//!
//! A client fails on a wrong byte (a wrong or reordered line), on bytes beyond its expectation
//! (an extra line), on its connection closing, and when it has been waiting for more than
//! `timeout` without a byte (a missing line). Those clocks are checked at deadlines computed from
//! the expectations, not on a timer: at a check at time T, a client with nothing pending cannot
//! time out before T + timeout, so the next check is the earliest pending deadline or T +
//! timeout. After the last expected byte, `grace` is spent listening for an extra line.

use std::io::{self, Read};
use std::net::TcpStream;
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

use super::SimError;
use super::expect::Shared;
use crate::relay::event::printable;

/// The result of a run that got as far as checking.
pub enum Verdict {
    /// Every client received exactly its lines.
    Passed { events: u64, notifications: u64, elapsed: Duration },
    /// The first failure seen, as a sentence naming the client and the lines.
    Failed(String),
}

pub struct Checker {
    pub clients: Vec<TcpStream>,
    /// users[c]: the user id client c represents.
    pub users: Vec<u64>,
    pub shared: Arc<Shared>,
    pub wake: UnixStream,
    pub timeout: Duration,
    pub grace: Duration,
    pub log_interval: Duration,
    pub total_events: u64,
}

/// Milliseconds until `deadline`, rounded up.
fn poll_timeout(deadline: Instant, now: Instant) -> PollTimeout {
    let ms = deadline.saturating_duration_since(now).as_micros().div_ceil(1000).min(i32::MAX as u128);
    PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX)
}

impl Checker {
    pub fn run(mut self, started: Instant) -> Result<Verdict, SimError> {
        let n = self.clients.len();
        let mut buf = vec![0u8; 64 * 1024];
        let mut last_rx = vec![started; n];
        let mut received: u64 = 0;
        let mut next_check = started + self.timeout;
        let mut next_log = started + self.log_interval;
        let mut ready: Vec<usize> = Vec::new();
        let mut wake_open = true;
        loop {
            if let Some(e) = self.shared.source_error.lock().take() {
                return Ok(Verdict::Failed(format!("source: {e}")));
            }
            if self.shared.source_done.load(Ordering::Acquire)
                && received == self.shared.expected_bytes.load(Ordering::Acquire)
            {
                break;
            }
            let now = Instant::now();
            let woke = self.wait(&mut ready, Some(poll_timeout(next_check.min(next_log), now)), &[], wake_open)?;
            if woke {
                // The byte only says "look at the source state". The feeder writes once and then
                // closes its end: stop polling a pipe at end of file, or poll would spin on it.
                let mut b = [0u8; 16];
                match self.wake.read(&mut b) {
                    Ok(n) if n > 0 => {}
                    _ => wake_open = false,
                }
            }
            for &c in &ready {
                match read_some(&mut self.clients[c], &mut buf) {
                    Ok(0) => {
                        let e = self.shared.expects[c].lock();
                        let want =
                            if e.pending() { format!("\"{}\"", printable(e.current_line())) } else { "nothing".into() };
                        return Ok(Verdict::Failed(format!(
                            "client {c} (user {}): expected {want} but the relay closed the connection",
                            self.users[c]
                        )));
                    }
                    Ok(len) => {
                        if let Some(f) = self.check(c, &buf[..len]) {
                            return Ok(Verdict::Failed(f));
                        }
                        received += len as u64;
                        last_rx[c] = Instant::now();
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => {
                        return Ok(Verdict::Failed(format!(
                            "client {c} (user {}): reading failed: {e}",
                            self.users[c]
                        )));
                    }
                }
            }
            let now = Instant::now();
            if now >= next_log {
                info!(
                    "clients: {received} of {} expected bytes received",
                    self.shared.expected_bytes.load(Ordering::Relaxed)
                );
                next_log = now + self.log_interval;
            }
            if now >= next_check {
                match self.missing(now, &last_rx) {
                    Ok(next) => next_check = next,
                    Err(f) => return Ok(Verdict::Failed(f)),
                }
            }
        }
        let elapsed = started.elapsed();
        let notifications = self.shared.expected_lines.load(Ordering::Relaxed);
        info!("clients: all {notifications} notifications received; listening {:?} for extra lines", self.grace);
        if let Some(f) = self.linger(&mut buf)? {
            return Ok(Verdict::Failed(f));
        }
        Ok(Verdict::Passed { events: self.total_events, notifications, elapsed })
    }

    /// Polls the wake pipe (if `with_wake`) and every client not marked in `closed`; fills
    /// `ready` with readable clients. True if the wake pipe is readable.
    fn wait(
        &self,
        ready: &mut Vec<usize>,
        timeout: Option<PollTimeout>,
        closed: &[bool],
        with_wake: bool,
    ) -> Result<bool, SimError> {
        let mut fds: Vec<PollFd<'_>> = Vec::with_capacity(self.clients.len() + 1);
        // index[k]: the client behind fds[k], None for the wake pipe
        let mut index: Vec<Option<usize>> = Vec::with_capacity(self.clients.len() + 1);
        if with_wake {
            fds.push(PollFd::new(self.wake.as_fd(), PollFlags::POLLIN));
            index.push(None);
        }
        for (i, c) in self.clients.iter().enumerate() {
            if !closed.get(i).copied().unwrap_or(false) {
                fds.push(PollFd::new(c.as_fd(), PollFlags::POLLIN));
                index.push(Some(i));
            }
        }
        ready.clear();
        match poll(&mut fds, timeout.unwrap_or(PollTimeout::NONE)) {
            Ok(_) => {}
            Err(Errno::EINTR) => return Ok(false),
            Err(e) => return Err(SimError::Poll(e.into())),
        }
        let mut woke = false;
        for (fd, who) in fds.iter().zip(&index) {
            if fd.revents().is_some_and(|r| !r.is_empty()) {
                match who {
                    Some(i) => ready.push(*i),
                    None => woke = true,
                }
            }
        }
        Ok(woke)
    }

    /// Compares `data`, just read from client `c`, with what it expects; a failure sentence if
    /// they differ.
    fn check(&self, c: usize, data: &[u8]) -> Option<String> {
        let mut e = self.shared.expects[c].lock();
        let avail = e.buf.len() - e.start;
        let k = avail.min(data.len());
        let exp = &e.buf[e.start..e.start + k];
        let at = if exp == &data[..k] {
            if data.len() == k {
                if let Some(p) = data.iter().rposition(|&b| b == b'\n') {
                    e.line_start = e.start + p + 1;
                }
                e.start += k;
                e.compact();
                return None;
            }
            k // more bytes than expected: an extra line
        } else {
            exp.iter().zip(data).position(|(a, b)| a != b).unwrap_or(k)
        };
        // the line the first wrong byte belongs to, on both sides
        let pos = e.start + at;
        let ls =
            e.buf[e.line_start..pos].iter().rposition(|&b| b == b'\n').map_or(e.line_start, |p| e.line_start + p + 1);
        let rest = &data[at..];
        let rest = &rest[..rest.iter().position(|&b| b == b'\n').unwrap_or(rest.len())];
        let mut got = e.buf[ls..pos].to_vec();
        got.extend_from_slice(rest);
        let got = got.strip_suffix(b"\r").unwrap_or(&got);
        e.line_start = ls;
        let want =
            if ls < e.buf.len() { format!("\"{}\"", printable(e.current_line())) } else { "no more lines".into() };
        Some(format!("client {c} (user {}): expected {want} but received \"{}\"", self.users[c], printable(got)))
    }

    /// Checks the missing-line clocks at `now`: a failure sentence, or the time of the next check.
    fn missing(&self, now: Instant, last_rx: &[Instant]) -> Result<Instant, String> {
        let mut next = now + self.timeout;
        for (c, m) in self.shared.expects.iter().enumerate() {
            let e = m.lock();
            if !e.pending() {
                continue;
            }
            let since = e.since.map_or(last_rx[c], |s| s.max(last_rx[c]));
            let deadline = since + self.timeout;
            if now >= deadline {
                return Err(format!(
                    "client {c} (user {}): expected \"{}\" but received nothing within {} ms",
                    self.users[c],
                    printable(e.current_line()),
                    self.timeout.as_millis()
                ));
            }
            next = next.min(deadline);
        }
        Ok(next)
    }

    /// After the last expected byte: any byte arriving within `grace` is an extra line.
    fn linger(&mut self, buf: &mut [u8]) -> Result<Option<String>, SimError> {
        let end = Instant::now() + self.grace;
        let mut ready = Vec::new();
        let mut closed = vec![false; self.clients.len()];
        loop {
            let now = Instant::now();
            if now >= end {
                return Ok(None);
            }
            self.wait(&mut ready, Some(poll_timeout(end, now)), &closed, false)?;
            for &c in &ready {
                if closed[c] {
                    continue;
                }
                match read_some(&mut self.clients[c], buf) {
                    Ok(0) => closed[c] = true, // closing after the last line is not an error
                    Ok(len) => {
                        if let Some(f) = self.check(c, &buf[..len]) {
                            return Ok(Some(f));
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(_) => closed[c] = true,
                }
            }
            if closed.iter().all(|&c| c) {
                return Ok(None);
            }
        }
    }
}

fn read_some(s: &mut TcpStream, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match s.read(buf) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            r => return r,
        }
    }
}
