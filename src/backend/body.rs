//! Receiving a request body into a file, streamed piece by piece from the connection's read
//! buffer whatever its size, framed by `Content-Length` or by `Transfer-Encoding: chunked`
//! (decoded; chunk extensions and trailers are read and ignored). Exactly the body is read, so
//! a pipelined next request stays in the buffer. Failures say which side they belong to
//! ([`BodyError`]), so the handler can answer 408, 400 or 500 accordingly.

use std::io::{self, BufRead, Read, Write};

/// The longest chunk-size or trailer line accepted.
const MAX_CHUNK_LINE: u64 = 4096;

/// How the body is delimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    Length(u64),
    Chunked,
}

/// Why a body could not be received.
#[derive(Debug)]
pub enum BodyError {
    /// Client side: no byte came within the idle timeout.
    Timeout,
    /// Client side: the connection ended before the body did.
    Truncated,
    /// Client side: the chunked framing is broken.
    Malformed(&'static str),
    /// Client side: the read failed (reset and the like).
    Client(io::Error),
    /// Our side: the file could not be written.
    Disk(io::Error),
}

fn read_error(e: io::Error) -> BodyError {
    match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => BodyError::Timeout,
        io::ErrorKind::UnexpectedEof => BodyError::Truncated,
        _ => BodyError::Client(e),
    }
}

/// Copies exactly `n` bytes from `src` to `out`, straight from `src`'s buffer.
fn copy_exact(src: &mut impl BufRead, out: &mut impl Write, mut n: u64) -> Result<(), BodyError> {
    while n > 0 {
        let piece = match src.fill_buf() {
            Ok([]) => return Err(BodyError::Truncated),
            Ok(got) => &got[..usize::try_from(n).map_or(got.len(), |n| n.min(got.len()))],
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(read_error(e)),
        };
        out.write_all(piece).map_err(BodyError::Disk)?;
        let used = piece.len();
        src.consume(used);
        n -= used as u64;
    }
    Ok(())
}

/// Reads one line (up to `\n`, at most [`MAX_CHUNK_LINE`] bytes), without its line end.
fn read_line(src: &mut impl BufRead) -> Result<Vec<u8>, BodyError> {
    let mut line = Vec::new();
    src.take(MAX_CHUNK_LINE).read_until(b'\n', &mut line).map_err(read_error)?;
    match line.pop() {
        Some(b'\n') => {}
        None => return Err(BodyError::Truncated),
        Some(_) if line.len() + 1 < MAX_CHUNK_LINE as usize => return Err(BodyError::Truncated),
        Some(_) => return Err(BodyError::Malformed("chunk line too long")),
    }
    if line.last() == Some(&b'\r') {
        line.pop();
    }
    Ok(line)
}

/// Decodes a chunked body from `src` into `out`.
fn copy_chunked(src: &mut impl BufRead, out: &mut impl Write) -> Result<u64, BodyError> {
    let mut total = 0u64;
    loop {
        let line = read_line(src)?;
        let size = line.split(|&b| b == b';').next().unwrap_or_default().trim_ascii();
        let size = std::str::from_utf8(size)
            .ok()
            .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_hexdigit()))
            .and_then(|s| u64::from_str_radix(s, 16).ok())
            .ok_or(BodyError::Malformed("bad chunk size"))?;
        if size == 0 {
            // Trailer fields, if any, up to the empty line.
            while !read_line(src)?.is_empty() {}
            return Ok(total);
        }
        copy_exact(src, out, size)?;
        total = total.saturating_add(size);
        if !read_line(src)?.is_empty() {
            return Err(BodyError::Malformed("chunk data longer than its size"));
        }
    }
}

/// Receives a body from `src` into `out`; returns how many body bytes were written. Reads
/// exactly the body: what follows it in `src` (a pipelined next request) is left there, so
/// `src` should be the connection's own buffer ([`super::conn::Conn`]), not a fresh
/// `BufReader` that would swallow those bytes.
pub fn receive(src: &mut impl BufRead, framing: Framing, out: &mut impl Write) -> Result<u64, BodyError> {
    match framing {
        Framing::Length(n) => {
            copy_exact(src, out, n)?;
            Ok(n)
        }
        Framing::Chunked => copy_chunked(src, out),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recv(prefix: &str, rest: &str, framing: Framing) -> Result<Vec<u8>, BodyError> {
        let mut out = Vec::new();
        receive(&mut std::io::BufReader::new(prefix.as_bytes().chain(rest.as_bytes())), framing, &mut out)?;
        Ok(out)
    }

    #[test]
    fn leaves_what_follows_the_body() {
        let mut src = &b"5\r\nhello\r\n0\r\n\r\nGET / HTTP/1.1\r\n\r\n"[..];
        let mut out = Vec::new();
        receive(&mut src, Framing::Chunked, &mut out).unwrap();
        assert_eq!((out.as_slice(), src), (&b"hello"[..], &b"GET / HTTP/1.1\r\n\r\n"[..]));
        let mut src = &b"abcGET"[..];
        receive(&mut src, Framing::Length(3), &mut std::io::sink()).unwrap();
        assert_eq!(src, b"GET");
    }

    #[test]
    fn length_framed() {
        assert_eq!(recv("he", "llo world", Framing::Length(5)).unwrap(), b"hello");
        assert!(matches!(recv("he", "l", Framing::Length(5)), Err(BodyError::Truncated)));
        assert_eq!(recv("", "", Framing::Length(0)).unwrap(), b"");
    }

    #[test]
    fn chunked() {
        let body = "5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nTrailer: x\r\n\r\n";
        assert_eq!(recv(&body[..3], &body[3..], Framing::Chunked).unwrap(), b"hello world");
        assert_eq!(recv("0\n\n", "", Framing::Chunked).unwrap(), b"");
        assert!(matches!(recv("5\r\nhel", "", Framing::Chunked), Err(BodyError::Truncated)));
        assert!(matches!(recv("x\r\n", "", Framing::Chunked), Err(BodyError::Malformed(_))));
        assert!(matches!(recv("2\r\nabc\r\n0\r\n\r\n", "", Framing::Chunked), Err(BodyError::Malformed(_))));
    }
}
