//! Where a message body ends, found while its bytes pass through unchanged.
//!
//! A `Body` is fed the bytes that follow a head, in whatever pieces the socket delivers, and
//! says how many of them belong to this message; the rest (a pipelined request, or bytes a
//! server should not have sent) are left for the caller. Chunked bodies are tracked by a small
//! state machine over chunk sizes, extensions, data, and the trailer section; nothing is
//! decoded or copied. Chunk lines must end in CRLF: a proxy that accepts framing a server might
//! read differently is how requests get smuggled, so anything unusual is an error.

use super::head::BodyKind;

/// A trailer section longer than this is refused (it is header data, bounded like a head).
const MAX_TRAILERS: usize = 64 * 1024;

/// The body is not valid chunked encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BadChunk(pub &'static str);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    /// Hex digits of a chunk size; `digits` read so far.
    Size {
        value: u64,
        digits: u8,
    },
    /// Spaces after the size, before `;` or CR.
    SizeSpace {
        value: u64,
    },
    /// A chunk extension, up to CR.
    Ext {
        value: u64,
    },
    /// The LF that ends a size line.
    SizeLf {
        value: u64,
    },
    Data {
        left: u64,
    },
    DataCr,
    DataLf,
    /// At the start of a trailer line (or of the blank line that ends the body).
    TrailerStart,
    TrailerLine,
    TrailerLf,
    EndLf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Length(u64),
    Chunked(Chunk),
    UntilEof,
    Done,
}

/// The framing state of one message body.
#[derive(Debug, Clone)]
pub struct Body {
    state: State,
    trailer_bytes: usize,
}

impl Body {
    pub fn new(kind: BodyKind) -> Body {
        let state = match kind {
            BodyKind::None | BodyKind::Length(0) => State::Done,
            BodyKind::Length(n) => State::Length(n),
            BodyKind::Chunked => State::Chunked(Chunk::Size { value: 0, digits: 0 }),
            BodyKind::UntilEof => State::UntilEof,
        };
        Body { state, trailer_bytes: 0 }
    }

    /// The body has ended (for `UntilEof`: never, until the caller sees EOF).
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// The body runs to EOF.
    pub fn until_eof(&self) -> bool {
        self.state == State::UntilEof
    }

    /// Observes `bytes`, the next bytes after what was fed before, and returns how many of
    /// them belong to this body: all of them, unless the body ends inside them.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<usize, BadChunk> {
        let mut used = 0;
        while used < bytes.len() {
            match self.state {
                State::Done => break,
                State::UntilEof => return Ok(bytes.len()),
                State::Length(left) => {
                    let take = left.min((bytes.len() - used) as u64);
                    used += take as usize;
                    self.state = if take == left { State::Done } else { State::Length(left - take) };
                }
                State::Chunked(Chunk::Data { left }) => {
                    let take = left.min((bytes.len() - used) as u64);
                    used += take as usize;
                    self.state =
                        State::Chunked(if take == left { Chunk::DataCr } else { Chunk::Data { left: left - take } });
                }
                State::Chunked(c) => {
                    self.state = self.step(c, bytes[used])?;
                    used += 1;
                }
            }
        }
        Ok(used)
    }

    fn step(&mut self, c: Chunk, b: u8) -> Result<State, BadChunk> {
        let next = match (c, b) {
            (Chunk::Size { value, digits }, b) if b.is_ascii_hexdigit() => {
                if digits >= 15 {
                    return Err(BadChunk("chunk size too large"));
                }
                let d = u64::from((b as char).to_digit(16).unwrap_or(0));
                Chunk::Size { value: value * 16 + d, digits: digits + 1 }
            }
            (Chunk::Size { digits: 0, .. }, _) => return Err(BadChunk("chunk size expected")),
            (Chunk::Size { value, .. } | Chunk::SizeSpace { value }, b' ' | b'\t') => Chunk::SizeSpace { value },
            (Chunk::Size { value, .. } | Chunk::SizeSpace { value }, b';') => Chunk::Ext { value },
            (Chunk::Size { value, .. } | Chunk::SizeSpace { value } | Chunk::Ext { value }, b'\r') => {
                Chunk::SizeLf { value }
            }
            (Chunk::Ext { value }, b) if b == b'\t' || (b >= 0x20 && b != 0x7f) => Chunk::Ext { value },
            (Chunk::SizeLf { value: 0 }, b'\n') => Chunk::TrailerStart,
            (Chunk::SizeLf { value }, b'\n') => Chunk::Data { left: value },
            (Chunk::DataCr, b'\r') => Chunk::DataLf,
            (Chunk::DataLf, b'\n') => Chunk::Size { value: 0, digits: 0 },
            (Chunk::TrailerStart, b'\r') => Chunk::EndLf,
            (Chunk::EndLf, b'\n') => return Ok(State::Done),
            (Chunk::TrailerLine, b'\r') => Chunk::TrailerLf,
            (Chunk::TrailerStart | Chunk::TrailerLine, b) if b != b'\n' => {
                self.trailer_bytes += 1;
                if self.trailer_bytes > MAX_TRAILERS {
                    return Err(BadChunk("trailer section too large"));
                }
                Chunk::TrailerLine
            }
            (Chunk::TrailerLf, b'\n') => Chunk::TrailerStart,
            _ => return Err(BadChunk("malformed chunked encoding")),
        };
        Ok(State::Chunked(next))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `input` in pieces of `step` bytes; returns the bytes used and whether it ended.
    fn run(kind: BodyKind, input: &[u8], step: usize) -> Result<(usize, bool), BadChunk> {
        let mut b = Body::new(kind);
        let mut used = 0;
        for piece in input.chunks(step) {
            let n = b.feed(piece)?;
            used += n;
            if n < piece.len() {
                break;
            }
        }
        Ok((used, b.is_done()))
    }

    #[test]
    fn lengths() {
        assert_eq!(run(BodyKind::Length(5), b"helloGET", 3), Ok((5, true)));
        assert_eq!(run(BodyKind::Length(5), b"hel", 3), Ok((3, false)));
        assert_eq!(run(BodyKind::None, b"GET", 3), Ok((0, true)));
    }

    #[test]
    fn chunked_with_trailers_in_any_pieces() {
        let body = b"4\r\nWiki\r\n5;ext=1\r\npedia\r\nE \r\n in\r\n\r\nchunks.\r\n0\r\nExpires: never\r\nX: y\r\n\r\n";
        let mut input = body.to_vec();
        input.extend_from_slice(b"GET / HTTP/1.1\r\n");
        for step in [1, 2, 3, 7, 100] {
            assert_eq!(run(BodyKind::Chunked, &input, step), Ok((body.len(), true)), "step {step}");
        }
        assert_eq!(run(BodyKind::Chunked, b"0\r\n\r\n", 1), Ok((5, true)));
        assert_eq!(run(BodyKind::Chunked, b"a\r\n0123456789\r\n", 4), Ok((15, false)));
    }

    #[test]
    fn bad_chunks() {
        for bad in [&b"x\r\n"[..], b"4\nWiki", b"4\r\nWikiXX", b"ffffffffffffffff1\r\n", b"\r\n", b"0\r\n\n"] {
            assert!(run(BodyKind::Chunked, bad, 1).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
    }
}
