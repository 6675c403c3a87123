//! One user client connection: its identification and its bounded outgoing buffer.
//!
//! A client first sends its user id and a line end (CRLF or a bare LF); until then it is
//! `AwaitingId` and its bytes collect in a 32-byte array. Afterwards it only reads: whatever it
//! still sends is read and thrown away so that its end-of-file can be seen.
//!
//! Notifications are appended to `out` and written later, in one `write` per batch of source
//! input (see `server`), never one syscall per notification. `out[sent..]` is what the kernel
//! has not taken yet; it is never allowed above the `--client-buffer` limit: a push that would
//! pass it is refused and the server then disconnects the client. The socket is nonblocking.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};

/// Longest id line accepted, terminator included.
const ID_MAX: usize = 32;

/// A buffer grown past this for a burst is given back once it has been written out.
const KEEP_CAPACITY: usize = 64 * 1024;

/// Where a client is in its short life.
pub enum Phase {
    /// Connected, id not complete yet; `len` bytes of `buf` received.
    AwaitingId { buf: [u8; ID_MAX], len: usize },
    /// Identified as `user`, receiving notifications.
    Registered { user: u64 },
}

/// What reading the id produced.
#[derive(Debug, PartialEq, Eq)]
pub enum IdRead {
    /// No complete line yet.
    Pending,
    /// The user id.
    Id(u64),
    /// Not a decimal user id followed by a line end; the bytes received, for the log.
    Garbage(Vec<u8>),
    /// The peer closed or reset before sending a whole id.
    Closed,
}

/// What writing out the buffer produced.
pub enum Flush {
    /// Everything pending was written.
    Done,
    /// The socket is full; wait for it to become writable.
    Blocked,
    /// The peer is gone (reset, broken pipe): the client must be dropped.
    Gone(io::Error),
}

pub struct Client {
    pub stream: TcpStream,
    pub peer: SocketAddr,
    pub phase: Phase,
    out: Vec<u8>,
    /// Bytes of `out` already written; `out.len() - sent` never exceeds the limit.
    sent: usize,
    /// True while waiting for POLLOUT: only the poll loop writes then.
    pub blocked: bool,
    /// True while the client is on the server's list of buffers to write this round.
    pub dirty: bool,
    /// Set once the client is over its limit: it gets nothing more and is closed this round.
    pub doomed: bool,
}

impl Client {
    pub fn new(stream: TcpStream, peer: SocketAddr) -> Client {
        Client {
            stream,
            peer,
            phase: Phase::AwaitingId { buf: [0; ID_MAX], len: 0 },
            out: Vec::new(),
            sent: 0,
            blocked: false,
            dirty: false,
            doomed: false,
        }
    }

    pub fn user(&self) -> Option<u64> {
        match self.phase {
            Phase::Registered { user } => Some(user),
            Phase::AwaitingId { .. } => None,
        }
    }

    /// Bytes queued and not yet taken by the kernel.
    pub fn pending(&self) -> usize {
        self.out.len() - self.sent
    }

    /// Reads what is there of the id line. Only meaningful while `AwaitingId`.
    pub fn read_id(&mut self) -> IdRead {
        let Phase::AwaitingId { buf, len } = &mut self.phase else {
            return IdRead::Pending;
        };
        loop {
            if let Some(done) = id_line(&buf[..*len]) {
                return done;
            }
            match self.stream.read(&mut buf[*len..]) {
                Ok(0) => return IdRead::Closed,
                Ok(n) => *len += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return IdRead::Pending,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return IdRead::Closed,
            }
        }
    }

    /// Reads and discards what a registered client sends; false once it has closed or failed.
    /// At most four reads a call, so a chatty client cannot hold the loop: poll comes back.
    pub fn drain_input(&mut self, scratch: &mut [u8]) -> bool {
        for _ in 0..4 {
            match self.stream.read(scratch) {
                Ok(0) => return false,
                Ok(n) if n < scratch.len() => return true,
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return false,
            }
        }
        true
    }

    /// Queues `line` plus CRLF if that keeps the pending bytes within `limit`; false otherwise
    /// (nothing is queued then).
    pub fn push(&mut self, line: &[u8], limit: usize) -> bool {
        let n = line.len() + 2;
        if self.pending() + n > limit {
            return false;
        }
        if self.sent > 0 && self.out.len() + n > self.out.capacity() {
            // reuse the room already written out before growing
            self.out.drain(..self.sent);
            self.sent = 0;
        }
        self.out.extend_from_slice(line);
        self.out.extend_from_slice(b"\r\n");
        true
    }

    /// Writes as much of the pending bytes as the socket takes.
    pub fn flush(&mut self) -> Flush {
        while self.sent < self.out.len() {
            match self.stream.write(&self.out[self.sent..]) {
                Ok(0) => return Flush::Gone(io::ErrorKind::WriteZero.into()),
                Ok(n) => self.sent += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.blocked = true;
                    return Flush::Blocked;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Flush::Gone(e),
            }
        }
        self.out.clear();
        self.sent = 0;
        if self.out.capacity() > KEEP_CAPACITY {
            self.out.shrink_to(KEEP_CAPACITY);
        }
        self.blocked = false;
        Flush::Done
    }
}

/// What the first bytes a client sent say, `received` being all of them so far (at most
/// `ID_MAX`): `None` while no line end has come and there is room for more; else the id, or
/// the garbage (the line without its end, or all 32 bytes when no line end came). Apart from
/// the socket so that it can be fuzzed (`fuzz/`, target `relay_client_id`).
pub fn id_line(received: &[u8]) -> Option<IdRead> {
    match received.iter().position(|&b| b == b'\n') {
        Some(p) => {
            let line = &received[..p];
            let digits = line.strip_suffix(b"\r").unwrap_or(line);
            Some(match super::event::number(digits) {
                Some(id) => IdRead::Id(id),
                None => IdRead::Garbage(digits.to_vec()),
            })
        }
        None if received.len() >= ID_MAX => Some(IdRead::Garbage(received.to_vec())),
        None => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_lines() {
        assert_eq!(id_line(b""), None);
        assert_eq!(id_line(b"123"), None);
        assert_eq!(id_line(b"123\n"), Some(IdRead::Id(123)));
        assert_eq!(id_line(b"123\r\nxyz"), Some(IdRead::Id(123)));
        assert_eq!(id_line(b"12 3\n"), Some(IdRead::Garbage(b"12 3".to_vec())));
        assert_eq!(id_line(b"\r\n"), Some(IdRead::Garbage(Vec::new())));
        assert_eq!(id_line(&[b'1'; ID_MAX]), Some(IdRead::Garbage(vec![b'1'; ID_MAX])));
    }
}
