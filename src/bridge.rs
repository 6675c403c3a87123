//! The bridge: moves bytes between a client and a server, both ways, unchanged, until both
//! directions are done.
//!
//! Each direction is a `Half`: bytes go source socket → pipe → destination socket by
//! `splice(2)`, so they never enter user space. A half reads only when its pipe is empty and
//! otherwise waits for its destination to drain, so a full pipe can never make `poll` spin.
//! When a source reaches EOF and its pipe is empty, the destination gets `shutdown(SHUT_WR)`
//! (a half-close passes through). The bridge ends when both halves have shut their destination.
//!
//! Timeouts come from deadlines, recomputed on every wake-up:
//! - while the server owes a reply (the client spoke after the server's last byte), the server
//!   must send something within `server_timeout` of the client's last byte;
//! - otherwise the connection may sit idle for `client_timeout`.
//!
//! The first bytes of the server's reply are peeked (`MSG_PEEK`, nothing consumed) to read its
//! status code for statistics.

use crate::http;
use crate::sys::{self, SplicePipe};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use std::io;
use std::net::{Shutdown, TcpStream};
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

/// How a bridge ended.
#[derive(Debug)]
pub enum End {
    /// Both directions finished and were flushed.
    Done,
    /// The connection sat idle for `client_timeout`.
    ClientTimeout,
    /// The server sent nothing within `server_timeout` of the client's last byte.
    ServerTimeout,
    /// Reading from or writing to the client failed (reset, broken pipe).
    Client(io::Error),
    /// Reading from or writing to the server failed.
    Server(io::Error),
    /// Our own failure (poll, pipe).
    Internal(io::Error),
}

/// What the bridge saw, updated as it goes, so a worker that panics mid-bridge still knows
/// whether any byte reached the client.
#[derive(Debug, Default)]
pub struct Progress {
    pub to_server: u64,
    pub to_client: u64,
    pub status: Option<u16>,
    /// When the server's side reached EOF: the end of its reply.
    pub server_done: Option<Instant>,
}

#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    pub client: Duration,
    pub server: Duration,
}

/// The two pipes a worker reuses from one bridge to the next.
#[derive(Debug)]
pub struct Pipes {
    up: SplicePipe,
    down: SplicePipe,
}

impl Pipes {
    pub fn new() -> io::Result<Pipes> {
        Ok(Pipes { up: SplicePipe::new()?, down: SplicePipe::new()? })
    }
}

/// One direction.
struct Half<'a> {
    src: &'a TcpStream,
    dst: &'a TcpStream,
    pipe: &'a SplicePipe,
    /// Bytes in the pipe, not yet written to `dst`.
    pending: usize,
    eof: bool,
    shut: bool,
}

enum Fault {
    Src(io::Error),
    Dst(io::Error),
}

impl Half<'_> {
    fn done(&self) -> bool {
        self.shut
    }

    /// Moves what can move now. Returns the bytes read from the source.
    fn pump(&mut self) -> Result<u64, Fault> {
        let mut read = 0u64;
        loop {
            while self.pending > 0 {
                match sys::splice(&self.pipe.read, self.dst, self.pending) {
                    Ok(n) => self.pending -= n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(read),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(Fault::Dst(e)),
                }
            }
            if self.eof {
                if !self.shut {
                    self.shut = true;
                    // The peer may already be gone; the other half will see it.
                    let _ = self.dst.shutdown(Shutdown::Write);
                }
                return Ok(read);
            }
            match sys::splice(self.src, &self.pipe.write, self.pipe.capacity) {
                Ok(0) => self.eof = true,
                Ok(n) => {
                    self.pending = n;
                    read += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(read),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(Fault::Src(e)),
            }
        }
    }

    fn interest(&self) -> (PollFlags, PollFlags) {
        if self.shut {
            (PollFlags::empty(), PollFlags::empty())
        } else if self.pending > 0 {
            (PollFlags::empty(), PollFlags::POLLOUT)
        } else {
            (PollFlags::POLLIN, PollFlags::empty())
        }
    }
}

/// Bridges `client` and `server` until both directions are done or a deadline passes.
/// Both sockets are switched to non-blocking. The pipes must be empty on entry; they are
/// empty again on return only if the result is `Done` (otherwise the caller replaces them).
pub fn run(client: &TcpStream, server: &TcpStream, pipes: &Pipes, t: Timeouts, progress: &mut Progress) -> End {
    if let Err(e) = client.set_nonblocking(true).and_then(|_| server.set_nonblocking(true)) {
        return End::Internal(e);
    }
    let mut up = Half { src: client, dst: server, pipe: &pipes.up, pending: 0, eof: false, shut: false };
    let mut down = Half { src: server, dst: client, pipe: &pipes.down, pending: 0, eof: false, shut: false };
    let mut last_client = Instant::now();
    let mut last_server: Option<Instant> = None;
    let mut status_seen = false;
    loop {
        match up.pump() {
            Ok(n) if n > 0 => {
                progress.to_server += n;
                last_client = Instant::now();
            }
            Ok(_) => {}
            Err(Fault::Src(e)) => return End::Client(e),
            // The server stopped reading (it may have answered early and closed): drop the
            // rest of the upload and let the reply finish.
            Err(Fault::Dst(_)) => {
                up.pending = 0;
                up.eof = true;
                up.shut = true;
            }
        }
        // The reply's first bytes are peeked before the first splice takes them, so the status
        // is read from the bytes that pass; until some have arrived, nothing is spliced.
        let peeked = status_seen || peek_status(server, progress);
        status_seen = peeked;
        let pumped = if peeked { down.pump() } else { Ok(0) };
        match pumped {
            Ok(n) if n > 0 => {
                progress.to_client += n;
                last_server = Some(Instant::now());
            }
            Ok(_) => {}
            Err(Fault::Src(e)) => return End::Server(e),
            Err(Fault::Dst(e)) => return End::Client(e),
        }
        if down.eof && progress.server_done.is_none() {
            progress.server_done = Some(Instant::now());
        }
        if up.done() && down.done() {
            return End::Done;
        }

        // The server owes a reply when the client spoke after the server's last byte.
        let owes = !down.eof && last_server.is_none_or(|s| last_client > s);
        let (deadline, on_expiry) = if owes {
            (last_client + t.server, End::ServerTimeout)
        } else {
            (last_client.max(last_server.unwrap_or(last_client)) + t.client, End::ClientTimeout)
        };
        let now = Instant::now();
        if now >= deadline {
            return on_expiry;
        }
        let (c_up, s_up) = up.interest();
        let (s_down, c_down) = down.interest();
        let mut fds = [PollFd::new(client.as_fd(), c_up | c_down), PollFd::new(server.as_fd(), s_up | s_down)];
        match poll(&mut fds, poll_timeout(deadline - now)) {
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return End::Internal(e.into()),
        }
    }
}

/// A poll timeout in whole milliseconds, rounded up so we never wake just before a deadline.
pub fn poll_timeout(d: Duration) -> PollTimeout {
    let ms = d.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32;
    PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX)
}

/// Peeks at the first bytes of the server's reply (nothing consumed). True once something
/// (or EOF, or an error for the splice to report) is there; the status is read if the first
/// 12 bytes are.
fn peek_status(server: &TcpStream, progress: &mut Progress) -> bool {
    let mut buf = [0u8; 16];
    match server.peek(&mut buf) {
        Ok(n) => {
            if n >= 12 {
                progress.status = http::status_code(&buf[..n]);
            }
            true
        }
        Err(e) => e.kind() != io::ErrorKind::WouldBlock && e.kind() != io::ErrorKind::Interrupted,
    }
}
