//! Socket chores of one client connection: reading a request head against a deadline, and the
//! clean close after the reply.
//!
//! The head read is deadline-driven: the whole head must arrive within [`HEAD_TIMEOUT`] of the
//! accept, however the client spaces its bytes, so a client trickling a byte every few seconds
//! cannot hold a worker longer than a silent one. The close is a half-close followed by a short,
//! bounded drain: closing a socket with unread bytes in its receive buffer makes the kernel send
//! RST, and an RST can reach the client before it has read our reply and destroy it.

use super::http::{MAX_HEAD, head_end};
use std::io::{self, Read};
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};

/// How long a client has, from the accept, to send its complete request head.
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(10);

/// How long one read of a request body may wait for a byte (an idle limit, not a total: a large
/// upload may take as long as it needs while it keeps moving).
pub const BODY_IDLE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long to wait for a write to make progress before giving the client up.
pub const WRITE_IDLE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long, at most, to drain what the client still sends after our reply.
pub const LINGER: Duration = Duration::from_secs(1);

/// How a head read ended.
#[derive(Debug)]
pub enum HeadRead {
    /// A head ends at this index of the buffer; the bytes after it are the body's start.
    Complete(usize),
    /// The client closed before sending a byte (a port probe, or a client giving up).
    Closed,
    /// The client closed after some bytes but before the end of the head.
    Truncated,
    /// [`MAX_HEAD`] bytes arrived without the blank line that ends a head.
    TooLarge,
    /// The deadline passed; `silent` when not a byte arrived.
    TimedOut { silent: bool },
    /// The read failed (reset and the like).
    Failed(io::Error),
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

/// Reads into `buf` until it holds a complete head, the client closes, the head outgrows
/// [`MAX_HEAD`], or `deadline` passes. Leaves the socket's read timeout set to whatever was
/// left; callers set their own before reading more.
pub fn read_head(stream: &mut TcpStream, buf: &mut Vec<u8>, deadline: Instant) -> HeadRead {
    let mut chunk = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return HeadRead::TimedOut { silent: buf.is_empty() };
        }
        if let Err(e) = stream.set_read_timeout(Some(timeout_for(left))) {
            return HeadRead::Failed(e);
        }
        match stream.read(&mut chunk) {
            Ok(0) if buf.is_empty() => return HeadRead::Closed,
            Ok(0) => return HeadRead::Truncated,
            Ok(n) => {
                // The end marker is at most 3 bytes long before the new ones: rescan only
                // from there, so a client sending one byte per read costs linear time.
                let from = buf.len().saturating_sub(3);
                buf.extend_from_slice(&chunk[..n]);
                match head_end(&buf[from..]) {
                    Some(end) if from + end <= MAX_HEAD => return HeadRead::Complete(from + end),
                    Some(_) => return HeadRead::TooLarge,
                    None if buf.len() >= MAX_HEAD => return HeadRead::TooLarge,
                    None => {}
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted || is_timeout(&e) => {}
            Err(e) => return HeadRead::Failed(e),
        }
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
