//! The event source connection: reads big chunks and cuts them into numbered lines.
//!
//! One `read` fills up to [`READ_SIZE`] bytes; every complete line in it is handed out, and the
//! incomplete tail is moved to the front for the next read. A line end is LF with an optional CR
//! before it. A line that passes [`MAX_LINE`] bytes without an end is reported once as
//! [`Line::TooLong`] and its remaining bytes are skipped up to its LF, so one hostile line costs
//! a fixed amount of memory and never desynchronises the lines after it.

use std::io::{self, Read};
use std::net::{SocketAddr, TcpStream};

use super::event::MAX_LINE;

/// Bytes asked for per read: large enough that a busy source is read in big batches, which is
/// what batches the writes to clients.
pub const READ_SIZE: usize = 256 * 1024;

/// One line handed to the caller.
pub enum Line<'a> {
    /// A complete line, terminator removed.
    Text(&'a [u8]),
    /// A line over the limit; its bytes are dropped.
    TooLong,
}

/// What one read produced.
pub enum Fill {
    /// Some bytes arrived.
    Data,
    /// Nothing to read now.
    Empty,
    /// The source closed its side.
    Eof,
    /// The connection failed (reset and the like).
    Failed(io::Error),
}

pub struct Source {
    pub stream: TcpStream,
    pub peer: SocketAddr,
    buf: Box<[u8]>,
    /// Bytes of `buf` holding data not yet handed out; lines start at 0.
    len: usize,
    /// Lines handed out so far (the 1-based number of the last one).
    pub lines: u64,
    /// True while skipping the rest of an over-long line.
    skipping: bool,
    /// True until the first well-formed event of this connection has been seen.
    pub first: bool,
}

impl Source {
    pub fn new(stream: TcpStream, peer: SocketAddr) -> Source {
        Source {
            stream,
            peer,
            buf: vec![0; READ_SIZE].into_boxed_slice(),
            len: 0,
            lines: 0,
            skipping: false,
            first: true,
        }
    }

    /// One read into the free part of the buffer.
    pub fn fill(&mut self) -> Fill {
        loop {
            match self.stream.read(&mut self.buf[self.len..]) {
                Ok(0) => return Fill::Eof,
                Ok(n) => {
                    self.len += n;
                    return Fill::Data;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Fill::Empty,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Fill::Failed(e),
            }
        }
    }

    /// Hands every complete line to `each` with its line number, then keeps the tail. At end of
    /// stream (`eof`), a last line without a line end is handed out too.
    pub fn lines(&mut self, eof: bool, mut each: impl FnMut(u64, Line<'_>)) {
        let mut start = 0;
        while start < self.len {
            let rest = &self.buf[start..self.len];
            let Some(p) = rest.iter().position(|&b| b == b'\n') else {
                if self.skipping {
                    start = self.len; // still inside the over-long line
                } else if rest.len() > MAX_LINE + 1 {
                    // +1: room for the CR of a full-length line whose LF has not arrived
                    self.lines += 1;
                    each(self.lines, Line::TooLong);
                    self.skipping = true;
                    start = self.len;
                } else if eof {
                    self.lines += 1;
                    let line = rest.strip_suffix(b"\r").unwrap_or(rest);
                    each(self.lines, if line.len() > MAX_LINE { Line::TooLong } else { Line::Text(line) });
                    start = self.len;
                }
                break;
            };
            if self.skipping {
                self.skipping = false;
            } else {
                let line = &rest[..p];
                let line = line.strip_suffix(b"\r").unwrap_or(line);
                self.lines += 1;
                each(self.lines, if line.len() > MAX_LINE { Line::TooLong } else { Line::Text(line) });
            }
            start += p + 1;
        }
        self.buf.copy_within(start..self.len, 0);
        self.len -= start;
    }
}
