//! The little HTTP the balancer itself speaks: its fixed answers, the status line it reads from
//! a server's reply (for statistics, without changing a byte), the health-check reply, and
//! request heads for the admin endpoint. The bridge never parses HTTP.

pub mod body;
pub mod head;

use std::io::{self, Read};
use std::time::Instant;

/// Every server is down or failed: the exact reply the client gets.
pub const INTERNAL_ERROR: &[u8] = b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n";

/// The waiting room is full, or the connection waited too long.
pub const UNAVAILABLE: &[u8] =
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nRetry-After: 1\r\nConnection: close\r\n\r\n";

/// `HTTP/1.x NNN` at the start of `bytes` → `NNN`.
pub fn status_code(bytes: &[u8]) -> Option<u16> {
    let rest = bytes.strip_prefix(b"HTTP/1.")?;
    let (&minor, rest) = rest.split_first()?;
    if !minor.is_ascii_digit() {
        return None;
    }
    let rest = rest.strip_prefix(b" ")?;
    let code = rest.get(..3)?;
    if !code.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(code).ok()?.parse().ok()
}

/// Where the head ends (just after `\r\n\r\n`), if it has.
pub fn head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 4)
}

/// A reply head as `httparse` reads it: the few facts the probe needs.
struct ReplyHead {
    len: usize,
    status: u16,
    minor: u8,
    /// `Content-Length`: `Some(None)` when present but not a number.
    length: Option<Option<usize>>,
    /// The `Connection` header's tokens include `close` / `keep-alive`.
    close: bool,
    keep_alive: bool,
}

/// Parses the reply head at the start of `buf`: `Ok(None)` while it is incomplete.
fn reply_head(buf: &[u8]) -> Result<Option<ReplyHead>, ()> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut resp = httparse::Response::new(&mut headers);
    let len = match resp.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(_) => return Err(()),
    };
    let mut head = ReplyHead {
        len,
        status: resp.code.unwrap_or(0),
        minor: resp.version.unwrap_or(1),
        length: None,
        close: false,
        keep_alive: false,
    };
    for h in resp.headers.iter() {
        if h.name.eq_ignore_ascii_case("content-length") {
            let v = std::str::from_utf8(h.value).ok().map(str::trim);
            let len = v.filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit())).and_then(|v| v.parse().ok());
            // Two lengths that disagree are no length at all (RFC 9112 §6.3).
            head.length = match head.length {
                Some(earlier) if earlier != len => Some(None),
                _ => Some(len),
            };
        } else if h.name.eq_ignore_ascii_case("connection") {
            for t in h.value.split(|b| *b == b',') {
                head.close |= t.trim_ascii().eq_ignore_ascii_case(b"close");
                head.keep_alive |= t.trim_ascii().eq_ignore_ascii_case(b"keep-alive");
            }
        }
    }
    Ok(Some(head))
}

/// Why a health-check reply makes its server down.
#[derive(Debug, PartialEq, Eq)]
pub enum BadReply {
    Status(String),
    Malformed(&'static str),
}

impl std::fmt::Display for BadReply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BadReply::Status(line) => write!(f, "answered '{line}'"),
            BadReply::Malformed(why) => write!(f, "malformed reply: {why}"),
        }
    }
}

/// Parses a complete `/healthcheck` reply: `200`, body `<errors>\n<entries>` with at most one
/// trailing newline, both non-negative integers. Returns `(errors, entries)`.
pub fn parse_health(reply: &[u8]) -> Result<(u64, u64), BadReply> {
    let head = match reply_head(reply) {
        Ok(Some(h)) => h,
        Ok(None) => return Err(BadReply::Malformed("no end of head")),
        Err(()) => return Err(BadReply::Malformed("malformed head")),
    };
    if head.status != 200 {
        let first = reply.split(|b| *b == b'\r').next().unwrap_or_default();
        return Err(BadReply::Status(String::from_utf8_lossy(first).into_owned()));
    }
    let mut body = &reply[head.len..];
    if let Some(len) = head.length {
        let len = len.ok_or(BadReply::Malformed("bad Content-Length"))?;
        if body.len() < len {
            return Err(BadReply::Malformed("short body"));
        }
        body = &body[..len];
    }
    let body = std::str::from_utf8(body).map_err(|_| BadReply::Malformed("body is not text"))?;
    let body = body.strip_suffix('\n').unwrap_or(body);
    let (errors, entries) = body.split_once('\n').ok_or(BadReply::Malformed("body is not two lines"))?;
    let num = |s: &str| {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(BadReply::Malformed("counts are not non-negative integers"));
        }
        s.parse::<u64>().map_err(|_| BadReply::Malformed("count out of range"))
    };
    Ok((num(errors)?, num(entries)?))
}

/// True once `buf` holds a whole reply: the head and Content-Length bytes of body (a reply
/// without Content-Length ends at EOF). A malformed head is complete: nothing more can help.
pub fn reply_complete(buf: &[u8]) -> bool {
    match reply_head(buf) {
        Ok(Some(h)) => match h.length {
            Some(Some(len)) => buf.len() >= h.len.saturating_add(len),
            Some(None) => true,
            None => false,
        },
        Ok(None) => false,
        Err(()) => true,
    }
}

/// True when a reply's head says `Connection: close` (or it is HTTP/1.0 without keep-alive):
/// the server will not take another request on this connection.
pub fn says_close(reply: &[u8]) -> bool {
    match reply_head(reply) {
        Ok(Some(h)) => h.close || (h.minor == 0 && !h.keep_alive),
        _ => true,
    }
}

/// A request read by the admin endpoint.
#[derive(Debug)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub body: Vec<u8>,
}

/// Reads one request (head up to 16 KiB, body up to 64 KiB by Content-Length) before
/// `deadline`. The stream must have a read timeout set by the caller.
pub fn read_request(stream: &mut impl Read, deadline: Instant) -> io::Result<Request> {
    let bad = |why: &str| io::Error::new(io::ErrorKind::InvalidData, why.to_string());
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    let end = loop {
        if let Some(end) = head_end(&buf) {
            break end;
        }
        if buf.len() > 16 * 1024 {
            return Err(bad("request head too long"));
        }
        if Instant::now() >= deadline {
            return Err(io::ErrorKind::TimedOut.into());
        }
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Err(bad("connection closed before the end of the head"));
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(&buf[..end]) {
        Ok(httparse::Status::Complete(_)) => {}
        _ => return Err(bad("malformed request head")),
    }
    let (method, path) = (req.method.unwrap_or("").to_string(), req.path.unwrap_or("").to_string());
    let mut length = None;
    for h in req.headers.iter().filter(|h| h.name.eq_ignore_ascii_case("content-length")) {
        let v = std::str::from_utf8(h.value).map_err(|_| bad("bad Content-Length"))?.trim();
        if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad("bad Content-Length"));
        }
        let len = v.parse::<usize>().map_err(|_| bad("body too large"))?;
        if length.is_some_and(|l| l != len) {
            return Err(bad("conflicting Content-Length"));
        }
        length = Some(len);
    }
    let len = length.unwrap_or(0);
    if len > 64 * 1024 {
        return Err(bad("body too large"));
    }
    let mut body = buf[end..].to_vec();
    while body.len() < len {
        if Instant::now() >= deadline {
            return Err(io::ErrorKind::TimedOut.into());
        }
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Err(bad("connection closed before the end of the body"));
        }
        body.extend_from_slice(&chunk[..n]);
    }
    body.truncate(len);
    Ok(Request { method, path, body })
}

/// A complete reply with Content-Length and `Connection: close`.
pub fn response(status: &str, content_type: &str, body: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines() {
        assert_eq!(status_code(b"HTTP/1.1 200 OK\r\n"), Some(200));
        assert_eq!(status_code(b"HTTP/1.0 503 x"), Some(503));
        assert_eq!(status_code(b"HTTP/2 200"), None);
        assert_eq!(status_code(b"HTTP/1.1 20"), None);
        assert_eq!(status_code(b"garbage"), None);
    }

    #[test]
    fn health_replies() {
        let ok = b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\n3\n17";
        assert_eq!(parse_health(ok), Ok((3, 17)));
        assert_eq!(parse_health(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n3\n17\n"), Ok((3, 17)));
        assert_eq!(parse_health(b"HTTP/1.1 200 OK\r\n\r\n0\n0\n"), Ok((0, 0)));
        assert!(matches!(parse_health(b"HTTP/1.1 404 Not Found\r\n\r\n"), Err(BadReply::Status(_))));
        assert!(parse_health(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n3\n17").is_err());
        assert!(parse_health(b"HTTP/1.1 200 OK\r\n\r\n-1\n4").is_err());
        assert!(parse_health(b"HTTP/1.1 200 OK\r\n\r\n1\n4\n\n").is_err());
        assert!(parse_health(b"HTTP/1.1 200 OK\r\n\r\nhello").is_err());
        assert!(parse_health(b"HTTP/1.1 200 OK\r\n\r\n1 4").is_err());
        assert!(parse_health(b"nonsense").is_err());
    }

    #[test]
    fn connection_close() {
        assert!(says_close(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n"));
        assert!(!says_close(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"));
        assert!(says_close(b"HTTP/1.0 200 OK\r\n\r\n"));
    }

    #[test]
    fn completeness() {
        assert!(!reply_complete(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\n3\n1"));
        assert!(reply_complete(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\n3\n17"));
        assert!(!reply_complete(b"HTTP/1.1 200 OK\r\n\r\n3\n17"));
    }

    /// A Content-Length near `usize::MAX` overflowed `end + len` (a panic with overflow
    /// checks, a wrong "complete" without). Found by the `probe_reply` fuzz target (issue 13).
    #[test]
    fn a_huge_content_length_is_never_complete() {
        let reply = b"HTTP/1.1 200 OK\r\nContent-Length: 18446744073709551615\r\n\r\n3\n17";
        assert!(!reply_complete(reply));
        assert!(parse_health(reply).is_err());
    }

    #[test]
    fn requests() {
        let mut raw: &[u8] = b"PUT /rate HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n20";
        let r = read_request(&mut raw, Instant::now() + std::time::Duration::from_secs(1)).unwrap();
        assert_eq!((r.method.as_str(), r.path.as_str(), r.body.as_slice()), ("PUT", "/rate", &b"20"[..]));
    }

    /// Two Content-Lengths that disagree: the admin refuses the request, and a probe reply
    /// with them is down (the last one used to win, unlike any other reader's choice).
    #[test]
    fn conflicting_lengths_are_refused() {
        let deadline = Instant::now() + std::time::Duration::from_secs(1);
        let mut raw: &[u8] = b"PUT /rate HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n20";
        assert!(read_request(&mut raw, deadline).is_err());
        let mut same: &[u8] = b"PUT /rate HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\n20";
        assert_eq!(read_request(&mut same, deadline).unwrap().body, b"20");
        let reply = b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\nContent-Length: 4\r\n\r\n3\n17";
        assert!(parse_health(reply).is_err());
        assert!(reply_complete(reply));
    }
}
