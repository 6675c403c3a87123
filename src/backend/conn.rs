//! One client connection: its socket and the bytes read from it but not yet used, so that a
//! persistent connection serves its requests in order, however they were cut into reads.
//!
//! [`Conn`] owns a read buffer. A head read stops at the end of the head; a body read (it is a
//! [`BufRead`]) takes exactly the body; whatever came after, the start of a pipelined next
//! request, stays in the buffer for the next head read. Nothing is ever read past what the
//! current request needs except into that buffer, so no byte is lost between requests.
//!
//! Waits: the first byte of a request is awaited until the request's idle deadline (the head
//! timeout for a connection's first request, counted from the accept; the keep-alive timeout
//! for the next ones) with `poll` on the socket and on the server's stop pipe, so a SIGTERM
//! ends an idle keep-alive connection at once. From that first byte the head must be complete
//! within [`HEAD_TIMEOUT`] (the first request keeps its deadline from the accept), however the
//! client spaces its bytes, so a client trickling a byte every few seconds cannot hold a worker
//! longer than a silent one.
//!
//! The close is a half-close followed by a short, bounded drain: closing a socket with unread
//! bytes in its receive buffer makes the kernel send RST, and an RST can reach the client
//! before it has read our reply and destroy it.

use super::body::{self, BodyError, Framing};
use super::http::{Head, MAX_HEAD, head_end};
use nix::poll::{PollFd, PollFlags, PollTimeout};
use std::io::{self, BufRead, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::fd::{AsFd, BorrowedFd};
use std::time::{Duration, Instant};

/// How long a client has, from the accept (or from the first byte of a later request), to
/// send its complete request head.
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(10);

/// How long one read of a request body may wait for a byte (an idle limit, not a total: a large
/// upload may take as long as it needs while it keeps moving).
pub const BODY_IDLE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long to wait for a write to make progress before giving the client up.
pub const WRITE_IDLE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long, at most, to drain what the client still sends after our reply.
pub const LINGER: Duration = Duration::from_secs(1);

/// The read buffer's size: one read of a body piece.
const READ_SIZE: usize = 64 * 1024;

/// How a head read ended.
#[derive(Debug)]
pub enum HeadRead {
    /// A complete head (up to and including its blank line), taken out of the buffer; what
    /// followed it stays buffered.
    Complete(Vec<u8>),
    /// The client closed before sending a byte of this request (a port probe, a client giving
    /// up, or the normal end of a keep-alive connection).
    Closed,
    /// The client closed after some bytes but before the end of the head.
    Truncated,
    /// [`MAX_HEAD`] bytes arrived without the blank line that ends a head.
    TooLarge,
    /// A deadline passed; `silent` when not a byte of this request arrived (for a later
    /// request on a connection: the keep-alive timeout).
    TimedOut { silent: bool },
    /// Shutdown began while the connection was idle, before a byte of this request.
    Stopping,
    /// The read failed (reset and the like).
    Failed(io::Error),
}

/// Where the current request's body stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Body {
    /// Not read yet; `expect` when the client waits for `100 Continue` before sending it.
    Pending { framing: Framing, expect: bool },
    /// Read to its end (or there was none): the next bytes are the next request.
    Done,
    /// Read only partly (an error): the connection cannot carry another request.
    Broken,
}

/// A client connection and its unread bytes.
#[derive(Debug)]
pub struct Conn {
    stream: TcpStream,
    /// Bytes read from the socket; `buf[pos..]` are not used yet. `pos <= buf.len()`.
    buf: Vec<u8>,
    pos: usize,
    body: Body,
}

/// A socket timeout for what is `left` of a deadline: rounded up to whole milliseconds, so a
/// sub-millisecond remainder does not become a zero (which `set_read_timeout` refuses) or a spin.
pub fn timeout_for(left: Duration) -> Duration {
    let ms = left.as_nanos().div_ceil(1_000_000).max(1);
    Duration::from_millis(u64::try_from(ms).unwrap_or(u64::MAX))
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut)
}

/// What [`Conn::wait_readable`] saw.
enum Ready {
    Socket,
    Stop,
    Timeout,
}

impl Conn {
    pub fn new(stream: TcpStream) -> Conn {
        Conn { stream, buf: Vec::with_capacity(4096), pos: 0, body: Body::Done }
    }

    /// The socket, for writing replies.
    pub fn stream(&mut self) -> &mut TcpStream {
        &mut self.stream
    }

    pub fn into_stream(self) -> TcpStream {
        self.stream
    }

    fn unread(&self) -> &[u8] {
        &self.buf[self.pos..]
    }

    /// Moves the unread bytes to the front, so a head starts at index 0.
    fn compact(&mut self) {
        if self.pos > 0 {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
    }

    /// Drops empty lines before a request line (RFC 9112 §2.2: some clients send a CRLF after
    /// a body), so they neither start the head deadline nor count as a request.
    fn skip_empty_lines(&mut self) {
        let n = self.unread().iter().take_while(|&&b| b == b'\r' || b == b'\n').count();
        self.pos += n;
    }

    /// Waits until the socket is readable, `stop` is (the stop pipe's write end was closed), or
    /// `deadline` passes. The socket wins a tie: a request that already arrived is served.
    fn wait_readable(&self, stop: BorrowedFd<'_>, deadline: Instant) -> io::Result<Ready> {
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(Ready::Timeout);
            }
            // poll takes at most i32::MAX ms; a longer wait is cut and re-armed by the loop.
            let ms = timeout_for(left).as_millis().min(i32::MAX as u128) as i32;
            let timeout = PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX);
            let mut fds = [PollFd::new(self.stream.as_fd(), PollFlags::POLLIN), PollFd::new(stop, PollFlags::POLLIN)];
            match nix::poll::poll(&mut fds, timeout) {
                Ok(0) => {}
                Ok(_) if fds[0].any().unwrap_or(true) => return Ok(Ready::Socket),
                Ok(_) => return Ok(Ready::Stop),
                Err(nix::errno::Errno::EINTR) => {}
                Err(e) => return Err(io::Error::from(e)),
            }
        }
    }

    /// One read from the socket into the buffer; `Ok(0)` at EOF.
    fn read_more(&mut self) -> io::Result<usize> {
        let old = self.buf.len();
        self.buf.resize(old + READ_SIZE, 0);
        let got = self.stream.read(&mut self.buf[old..]);
        self.buf.truncate(old + *got.as_ref().unwrap_or(&0));
        got
    }

    /// Reads the next request head. The first byte must come by `idle_until` (else
    /// `TimedOut { silent: true }`; `Stopping` if `stop` becomes readable first); the whole
    /// head by `head_until`, or when that is `None`, within [`HEAD_TIMEOUT`] of its first byte.
    /// Bytes already buffered (pipelined) count as arrived. Leaves the socket's read timeout
    /// set to whatever was left; callers set their own before reading more.
    pub fn read_head(&mut self, stop: BorrowedFd<'_>, idle_until: Instant, head_until: Option<Instant>) -> HeadRead {
        self.skip_empty_lines();
        self.compact();
        let mut deadline = None;
        // The end marker is at most 3 bytes long: each scan starts 3 bytes before the new
        // ones, so a client sending one byte per read costs linear time. (httparse is run once,
        // on the complete head: run on every read, it would rescan the head each time.)
        let mut scanned = 0usize;
        loop {
            if !self.buf.is_empty() {
                let started =
                    *deadline.get_or_insert_with(|| head_until.unwrap_or_else(|| Instant::now() + HEAD_TIMEOUT));
                let from = scanned.saturating_sub(3);
                match head_end(&self.buf[from..]) {
                    Some(end) if from + end <= MAX_HEAD => {
                        let head = self.buf[..from + end].to_vec();
                        self.pos = from + end;
                        return HeadRead::Complete(head);
                    }
                    Some(_) => return HeadRead::TooLarge,
                    None if self.buf.len() >= MAX_HEAD => return HeadRead::TooLarge,
                    None => scanned = self.buf.len(),
                }
                let left = started.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return HeadRead::TimedOut { silent: false };
                }
                if let Err(e) = self.stream.set_read_timeout(Some(timeout_for(left))) {
                    return HeadRead::Failed(e);
                }
            } else {
                match self.wait_readable(stop, idle_until) {
                    Ok(Ready::Socket) => {}
                    Ok(Ready::Stop) => return HeadRead::Stopping,
                    Ok(Ready::Timeout) => return HeadRead::TimedOut { silent: true },
                    Err(e) => return HeadRead::Failed(e),
                }
                // Readable: this read does not block, whatever the timeout says.
            }
            match self.read_more() {
                Ok(0) if self.buf.is_empty() => return HeadRead::Closed,
                Ok(0) => return HeadRead::Truncated,
                Ok(_) if deadline.is_none() => {
                    // Still only empty lines: the client is as idle as before.
                    self.skip_empty_lines();
                    self.compact();
                }
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted || is_timeout(&e) => {}
                Err(e) => return HeadRead::Failed(e),
            }
        }
    }

    /// Notes the body `head` announces, to be read by [`Conn::receive_body`] or skipped by
    /// [`Conn::discard_body`] before the next request.
    pub fn expect_body(&mut self, head: &Head) {
        self.body = match (head.chunked, head.content_length) {
            (true, _) => Body::Pending { framing: Framing::Chunked, expect: head.expect_continue },
            // No framing: no body (RFC 9112 §6.3).
            (false, None | Some(0)) => Body::Done,
            (false, Some(n)) => Body::Pending { framing: Framing::Length(n), expect: head.expect_continue },
        };
    }

    /// Reads the current request's body into `out`, first sending `100 Continue` if the client
    /// waits for it; returns the body's length. After an error the connection is not reusable.
    pub fn receive_body(&mut self, out: &mut impl Write) -> Result<u64, BodyError> {
        let Body::Pending { framing, expect } = self.body else { return Ok(0) };
        self.body = Body::Broken; // until the whole body is in
        if expect {
            self.stream.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").map_err(BodyError::Client)?;
        }
        self.stream.set_read_timeout(Some(BODY_IDLE_TIMEOUT)).map_err(BodyError::Client)?;
        let n = body::receive(self, framing, out)?;
        self.body = Body::Done;
        Ok(n)
    }

    /// Whether another request may follow on this connection as far as the body goes: it was
    /// read, or it can still be read and discarded. A client waiting for `100 Continue` that we
    /// did not send may or may not send its body, so then the connection must close instead
    /// (RFC 9110 §10.1.1).
    pub fn reusable(&self) -> bool {
        match self.body {
            Body::Done => true,
            Body::Pending { expect, .. } => !expect,
            Body::Broken => false,
        }
    }

    /// Reads and throws away a body the reply did not need (a GET with a body, a refused PUT),
    /// so the next request starts at the right byte. False when the connection must close: the
    /// body could not be read to its end, or [`Conn::reusable`] says no.
    pub fn discard_body(&mut self) -> bool {
        if !self.reusable() {
            return false;
        }
        match self.receive_body(&mut io::sink()) {
            Ok(_) => true,
            Err(e) => {
                crate::debug!("client: skipping a request body: {e:?}");
                false
            }
        }
    }
}

/// Body reads come from the buffer first, then from the socket, one [`READ_SIZE`] read at a
/// time; what a body read does not consume stays for the next request.
impl Read for Conn {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let got = self.fill_buf()?;
        let n = got.len().min(out.len());
        out[..n].copy_from_slice(&got[..n]);
        self.consume(n);
        Ok(n)
    }
}

impl BufRead for Conn {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        if self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
            self.read_more()?;
        }
        Ok(self.unread())
    }

    fn consume(&mut self, n: usize) {
        self.pos = (self.pos + n).min(self.buf.len());
    }
}

/// Ends a connection after its reply: half-closes our side so the client sees the end at once,
/// then reads and discards what it still sends until it closes too or [`LINGER`] has passed,
/// then closes. Errors here only mean the client is already gone, so they end the drain early.
pub fn close_gracefully(mut stream: TcpStream) {
    if stream.shutdown(Shutdown::Write).is_err() {
        return; // not connected any more: nothing to protect
    }
    let deadline = Instant::now() + LINGER;
    let mut sink = [0u8; 16 * 1024];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || stream.set_read_timeout(Some(timeout_for(left))).is_err() {
            return;
        }
        match stream.read(&mut sink) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted || is_timeout(&e) => {}
            Err(_) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_round_up() {
        assert_eq!(timeout_for(Duration::from_nanos(1)), Duration::from_millis(1));
        assert_eq!(timeout_for(Duration::from_micros(1500)), Duration::from_millis(2));
        assert_eq!(timeout_for(Duration::from_secs(3)), Duration::from_secs(3));
    }
}
