//! The bridge: moves bytes between a client and a server, both ways, unchanged, until both
//! directions are done.
//!
//! Each direction is a `Half`. It starts by copying through a small buffer of its own
//! (`recv` then `send`): an HTTP request or a small reply then costs one call each way, and the
//! reply's first bytes give its status code for statistics. Once a read fills the whole buffer
//! the direction is carrying bulk, and from then on bytes go source socket → pipe → destination
//! socket by `splice(2)`, never entering user space. A half reads only when it holds nothing
//! unwritten and otherwise waits for its destination to drain, so a full buffer or pipe can
//! never make `poll` spin. When a source reaches EOF with nothing held, the destination gets
//! `shutdown(SHUT_WR)` (a half-close passes through). The bridge ends when both halves have
//! shut their destination.
//!
//! A half is pumped only when `poll` said one of its two sockets is ready (the client's first
//! bytes are known to be there), so the loop makes no calls that can only fail with `EAGAIN`.
//!
//! Timeouts come from deadlines, recomputed on every wake-up:
//! - while the server owes a reply (the client spoke after the server's last byte), the server
//!   must send something within `server_timeout` of the client's last byte;
//! - otherwise the connection may sit idle for `client_timeout`.

use crate::balancer::http;
use crate::common::sys::{self, SplicePipe};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

/// Bytes a half copies through user space before it switches to `splice`: a read that fills
/// them means bulk. Big enough for any ordinary request or reply head.
const COPY_BYTES: usize = 16 * 1024;

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

/// What one direction keeps from one bridge to the next: its copy buffer, and its pipe once
/// it has carried bulk.
#[derive(Debug)]
pub struct Store {
    buf: Box<[u8]>,
    pipe: Option<SplicePipe>,
}

/// A worker's two stores, reused bridge after bridge.
#[derive(Debug)]
pub struct Buffers {
    up: Store,
    down: Store,
    /// http mode's read buffer (see `exchange`), allocated on first use.
    scratch: Vec<u8>,
}

impl Default for Buffers {
    fn default() -> Buffers {
        let store = || Store { buf: vec![0u8; COPY_BYTES].into_boxed_slice(), pipe: None };
        Buffers { up: store(), down: store(), scratch: Vec::new() }
    }
}

impl Buffers {
    /// A read buffer of `len` bytes for http mode, kept from one request to the next.
    pub fn scratch(&mut self, len: usize) -> Vec<u8> {
        let mut buf = std::mem::take(&mut self.scratch);
        buf.resize(len, 0);
        buf
    }

    /// Gives the buffer taken with `scratch` back for the next request.
    pub fn keep_scratch(&mut self, buf: Vec<u8>) {
        self.scratch = buf;
    }
}

/// One direction.
struct Half<'a> {
    src: &'a TcpStream,
    dst: &'a TcpStream,
    store: &'a mut Store,
    /// `store.buf[head..tail]`: read, not yet written.
    head: usize,
    tail: usize,
    /// Bytes in the pipe, not yet written.
    in_pipe: usize,
    /// A read filled the buffer: read by `splice` from now on.
    bulk: bool,
    /// Read the status code from the first bytes (the server's reply), and stop there once
    /// (`paused`) so the caller can act before any of them is passed on.
    wants_status: bool,
    status: Option<u16>,
    paused: bool,
    eof: bool,
    shut: bool,
}

enum Fault {
    Src(io::Error),
    Dst(io::Error),
}

fn retry(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::Interrupted
}

fn would_block(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::WouldBlock
}

impl<'a> Half<'a> {
    fn new(src: &'a TcpStream, dst: &'a TcpStream, store: &'a mut Store, wants_status: bool) -> Half<'a> {
        Half {
            src,
            dst,
            store,
            head: 0,
            tail: 0,
            in_pipe: 0,
            bulk: false,
            wants_status,
            status: None,
            paused: false,
            eof: false,
            shut: false,
        }
    }

    fn holds(&self) -> bool {
        self.head < self.tail || self.in_pipe > 0
    }

    /// Moves what can move now. Returns the bytes read from the source.
    fn pump(&mut self) -> Result<u64, Fault> {
        let mut read = 0u64;
        loop {
            while self.head < self.tail {
                match (&mut &*self.dst).write(&self.store.buf[self.head..self.tail]) {
                    Ok(n) => self.head += n,
                    Err(e) if would_block(&e) => return Ok(read),
                    Err(e) if retry(&e) => {}
                    Err(e) => return Err(Fault::Dst(e)),
                }
            }
            while self.in_pipe > 0 {
                let Some(pipe) = self.store.pipe.as_ref() else { break };
                match sys::splice(&pipe.read, self.dst, self.in_pipe) {
                    Ok(n) => self.in_pipe -= n,
                    Err(e) if would_block(&e) => return Ok(read),
                    Err(e) if retry(&e) => {}
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
            let got = if self.bulk { self.splice_in() } else { self.copy_in() };
            match got {
                Ok(0) => self.eof = true,
                Ok(n) if self.paused => return Ok(read + n as u64),
                Ok(n) => read += n as u64,
                Err(e) if would_block(&e) => return Ok(read),
                Err(e) if retry(&e) => {}
                Err(e) => return Err(Fault::Src(e)),
            }
        }
    }

    fn copy_in(&mut self) -> io::Result<usize> {
        let n = (&mut &*self.src).read(&mut self.store.buf)?;
        (self.head, self.tail) = (0, n);
        if self.wants_status && n > 0 {
            self.wants_status = false;
            self.status = http::status_code(&self.store.buf[..n]);
            self.paused = true;
        }
        self.bulk = n == self.store.buf.len();
        Ok(n)
    }

    fn splice_in(&mut self) -> io::Result<usize> {
        if self.store.pipe.is_none() {
            match SplicePipe::new() {
                Ok(pipe) => self.store.pipe = Some(pipe),
                // Out of descriptors: copy through the buffer instead. Slower, never a failure,
                // and never blamed on either side. See: issue 11 (defect 5).
                Err(e) if crate::balancer::shortage::is_ours(&e) => return self.copy_in(),
                Err(e) => return Err(e),
            }
        }
        let Some(pipe) = self.store.pipe.as_ref() else { return Ok(0) };
        let n = sys::splice(self.src, &pipe.write, pipe.capacity)?;
        self.in_pipe = n;
        Ok(n)
    }

    /// Drops what is held: the destination will take no more. A pipe left holding bytes is
    /// closed, never reused, so they cannot reach another connection.
    fn abandon(&mut self) {
        if self.in_pipe > 0 {
            self.store.pipe = None;
        }
        (self.head, self.tail, self.in_pipe) = (0, 0, 0);
        self.eof = true;
        self.shut = true;
    }

    /// What to wait for: the source's bytes when nothing is held, else room at the destination.
    fn interest(&self) -> (PollFlags, PollFlags) {
        if self.shut {
            (PollFlags::empty(), PollFlags::empty())
        } else if self.holds() {
            (PollFlags::empty(), PollFlags::POLLOUT)
        } else {
            (PollFlags::POLLIN, PollFlags::empty())
        }
    }

    /// Whether `poll`'s answer concerns this half: its source is readable or its destination
    /// writable as asked, or either reported an error or hang-up (always worth a look).
    fn ready(&self, src: PollFlags, dst: PollFlags) -> bool {
        let alarm = PollFlags::POLLERR | PollFlags::POLLHUP;
        let (want_src, want_dst) = self.interest();
        !self.shut && (src.intersects(want_src | alarm) || dst.intersects(want_dst | alarm))
    }
}

/// Bridges `client` and `server` until both directions are done or a deadline passes. Both
/// sockets must be non-blocking, and the client must have bytes to read (it has spoken). A
/// pipe that might still hold bytes on return has been dropped from `buffers`. `replying` is
/// called once, when the server's first bytes have been read and before any is passed on.
pub fn run(
    client: &TcpStream,
    server: &TcpStream,
    buffers: &mut Buffers,
    t: Timeouts,
    progress: &mut Progress,
    replying: &mut dyn FnMut(),
) -> End {
    let mut up = Half::new(client, server, &mut buffers.up, false);
    let mut down = Half::new(server, client, &mut buffers.down, true);
    let end = bridge(&mut up, &mut down, t, progress, replying);
    if !matches!(end, End::Done) {
        up.abandon();
        down.abandon();
    }
    end
}

fn bridge(up: &mut Half, down: &mut Half, t: Timeouts, progress: &mut Progress, replying: &mut dyn FnMut()) -> End {
    let (client, server) = (up.src, down.src);
    let mut last_client = Instant::now();
    let mut last_server: Option<Instant> = None;
    // What poll last said of each socket; the client's first bytes are already waiting.
    let (mut client_ready, mut server_ready) = (PollFlags::POLLIN, PollFlags::empty());
    loop {
        if up.ready(client_ready, server_ready) {
            match up.pump() {
                Ok(0) => {}
                Ok(n) => {
                    progress.to_server += n;
                    last_client = Instant::now();
                }
                Err(Fault::Src(e)) => return End::Client(e),
                // The server stopped reading (it may have answered early and closed): drop the
                // rest of the upload and let the reply finish.
                Err(Fault::Dst(_)) => up.abandon(),
            }
        }
        if down.ready(server_ready, client_ready) {
            let mut pumped = down.pump();
            if down.paused {
                // The server's first bytes are read and not yet passed on: the reply has begun.
                down.paused = false;
                replying();
                pumped = pumped.and_then(|n| down.pump().map(|m| n + m));
            }
            match pumped {
                Ok(0) => {}
                Ok(n) => {
                    progress.to_client += n;
                    last_server = Some(Instant::now());
                }
                Err(Fault::Src(e)) => return End::Server(e),
                Err(Fault::Dst(e)) => return End::Client(e),
            }
            if progress.status.is_none() {
                progress.status = down.status;
            }
        }
        if down.eof && progress.server_done.is_none() {
            progress.server_done = Some(Instant::now());
        }
        if up.shut && down.shut {
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
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return End::Internal(e.into()),
        }
        client_ready = fds[0].revents().unwrap_or(PollFlags::empty());
        server_ready = fds[1].revents().unwrap_or(PollFlags::empty());
    }
}

/// A poll timeout in whole milliseconds, rounded up so we never wake just before a deadline.
pub fn poll_timeout(d: Duration) -> PollTimeout {
    let ms = d.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32;
    PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX)
}
