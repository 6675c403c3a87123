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

/// The value of header `name` (case-insensitive) in a head.
pub fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.split("\r\n").skip(1).find_map(|line| {
        let (k, v) = line.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
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
    let end = head_end(reply).ok_or(BadReply::Malformed("no end of head"))?;
    let head = std::str::from_utf8(&reply[..end]).map_err(|_| BadReply::Malformed("head is not text"))?;
    let first = head.lines().next().unwrap_or("");
    match status_code(first.as_bytes()) {
        Some(200) => {}
        Some(_) => return Err(BadReply::Status(first.to_string())),
        None => return Err(BadReply::Malformed("no status line")),
    }
    let mut body = &reply[end..];
    if let Some(len) = header(head, "content-length") {
        let len: usize = len.parse().map_err(|_| BadReply::Malformed("bad Content-Length"))?;
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
/// without Content-Length ends at EOF).
pub fn reply_complete(buf: &[u8]) -> bool {
    let Some(end) = head_end(buf) else { return false };
    let Ok(head) = std::str::from_utf8(&buf[..end]) else { return true };
    match header(head, "content-length").and_then(|v| v.parse::<usize>().ok()) {
        // Not `end + len`: a Content-Length near usize::MAX would overflow it.
        Some(len) => buf.len() - end >= len,
        None => false,
    }
}

/// True when a reply's head says `Connection: close` (or it is HTTP/1.0 without keep-alive):
/// the server will not take another request on this connection.
pub fn says_close(reply: &[u8]) -> bool {
    let Some(end) = head_end(reply) else { return true };
    let Ok(head) = std::str::from_utf8(&reply[..end]) else { return true };
    match header(head, "connection") {
        Some(v) => v.eq_ignore_ascii_case("close"),
        None => head.starts_with("HTTP/1.0"),
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
    let head = std::str::from_utf8(&buf[..end]).map_err(|_| bad("head is not text"))?.to_string();
    let mut words = head.lines().next().unwrap_or("").split(' ');
    let (method, path) = match (words.next(), words.next(), words.next()) {
        (Some(m), Some(p), Some(v)) if v.starts_with("HTTP/1.") => (m.to_string(), p.to_string()),
        _ => return Err(bad("malformed request line")),
    };
    let len = match header(&head, "content-length") {
        Some(v) => v.parse::<usize>().map_err(|_| bad("bad Content-Length"))?,
        None => 0,
    };
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
}
