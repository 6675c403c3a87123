//! The HTTP/1.1 subset the backend speaks: parsing one request head, checking a file name, and
//! formatting a reply head. Pure functions over bytes, unit-tested without sockets.
//!
//! What is accepted: `HTTP/1.0` and `HTTP/1.1`; origin-form targets (`/name?query`, the query is
//! ignored) and absolute-form (`http://host/name`); CRLF or bare LF line ends; `Content-Length`
//! or `Transfer-Encoding: chunked` bodies; `Expect: 100-continue`. `Host` is not required: the
//! backend serves one site. What is refused, and how:
//! - a malformed request line or header, obsolete line folding, a space before a header's
//!   colon, a bad or conflicting `Content-Length`, or `Transfer-Encoding` together with
//!   `Content-Length` (a request-smuggling shape) → `400`;
//! - another HTTP version → `505`; another transfer coding → `501`; another expectation → `417`.
//!
//! Methods: GET, HEAD and PUT are served; the other methods of RFC 9110 (POST, DELETE, OPTIONS,
//! PATCH, TRACE, CONNECT) get `405` with `Allow: GET, HEAD, PUT`; any other token gets `501`.

/// The largest request head we read (request line plus headers plus the blank line).
pub const MAX_HEAD: usize = 8 * 1024;

/// The longest file name accepted (the usual file-system limit).
pub const MAX_NAME: usize = 255;

/// The request method, sorted by how we treat it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    Get,
    Head,
    Put,
    /// A method RFC 9110 defines that we do not serve: `405`.
    NotAllowed,
    /// Any other token: `501`.
    Unknown,
}

/// A parsed request head.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Head {
    pub method: Method,
    /// The method as sent, for the log.
    pub method_text: String,
    /// The path, without scheme, authority or query; always starts with `/`.
    pub path: String,
    /// The declared body length; `None` when absent (or chunked).
    pub content_length: Option<u64>,
    /// `Transfer-Encoding: chunked` was given (never together with `content_length`).
    pub chunked: bool,
    /// `Expect: 100-continue` was given on an HTTP/1.1 request.
    pub expect_continue: bool,
}

/// Why a head was refused: the status to answer and a short reason for the log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Refusal {
    pub status: u16,
    pub reason: &'static str,
}

fn refuse(status: u16, reason: &'static str) -> Refusal {
    Refusal { status, reason }
}

/// The index just past the blank line that ends a head in `buf`, if it is there yet.
/// Accepts `\r\n\r\n`, `\n\n` and `\n\r\n`.
pub fn head_end(buf: &[u8]) -> Option<usize> {
    let mut i = 0;
    while let Some(off) = buf[i..].iter().position(|&b| b == b'\n') {
        let nl = i + off;
        match buf.get(nl + 1) {
            Some(b'\n') => return Some(nl + 2),
            Some(b'\r') if buf.get(nl + 2) == Some(&b'\n') => return Some(nl + 3),
            _ => i = nl + 1,
        }
    }
    None
}

/// `tchar` of RFC 9110: the characters of a method or header name.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn is_token(s: &[u8]) -> bool {
    !s.is_empty() && s.iter().all(|&b| is_tchar(b))
}

/// Parses a complete head (as delimited by [`head_end`]).
pub fn parse_head(head: &[u8]) -> Result<Head, Refusal> {
    let mut lines = head.split(|&b| b == b'\n').map(|l| l.strip_suffix(b"\r").unwrap_or(l));
    let request_line = lines.next().unwrap_or_default();
    let mut parts = request_line.split(|&b| b == b' ');
    let (Some(method), Some(target), Some(version), None) = (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(refuse(400, "malformed request line"));
    };
    if !is_token(method) {
        return Err(refuse(400, "malformed method"));
    }
    let http11 = match version {
        b"HTTP/1.1" => true,
        b"HTTP/1.0" => false,
        v if v.len() == 8 && v.starts_with(b"HTTP/") && v[5].is_ascii_digit() => {
            return Err(refuse(505, "unsupported HTTP version"));
        }
        _ => return Err(refuse(400, "malformed HTTP version")),
    };
    let path = parse_target(target).ok_or(refuse(400, "malformed request target"))?;

    let mut content_length = None;
    let mut chunked = false;
    let mut transfer_encoding = false;
    let mut expect_continue = false;
    for line in lines {
        if line.is_empty() {
            break; // the blank line that ends the head
        }
        if line[0] == b' ' || line[0] == b'\t' {
            return Err(refuse(400, "obsolete header line folding"));
        }
        let colon = line.iter().position(|&b| b == b':').ok_or(refuse(400, "header line without a colon"))?;
        let (name, value) = (&line[..colon], line[colon + 1..].trim_ascii());
        if !is_token(name) {
            return Err(refuse(400, "malformed header name"));
        }
        if value.iter().any(|&b| b < 0x20 && b != b'\t' || b == 0x7f) {
            return Err(refuse(400, "control character in a header value"));
        }
        if name.eq_ignore_ascii_case(b"content-length") {
            let n = parse_length(value).ok_or(refuse(400, "malformed Content-Length"))?;
            if content_length.is_some_and(|old| old != n) {
                return Err(refuse(400, "conflicting Content-Length headers"));
            }
            content_length = Some(n);
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            transfer_encoding = true;
            if value.eq_ignore_ascii_case(b"chunked") && !chunked {
                chunked = true;
            } else {
                return Err(refuse(501, "unsupported Transfer-Encoding"));
            }
        } else if name.eq_ignore_ascii_case(b"expect") {
            if value.eq_ignore_ascii_case(b"100-continue") {
                // HTTP/1.0 clients do not understand 100 Continue (RFC 9110 §10.1.1).
                expect_continue = http11;
            } else {
                return Err(refuse(417, "unsupported expectation"));
            }
        }
    }
    if transfer_encoding && (content_length.is_some() || !http11) {
        return Err(refuse(400, "Transfer-Encoding with Content-Length or on HTTP/1.0"));
    }
    Ok(Head {
        method: classify(method),
        method_text: String::from_utf8_lossy(method).into_owned(),
        path,
        content_length,
        chunked,
        expect_continue,
    })
}

fn classify(method: &[u8]) -> Method {
    match method {
        b"GET" => Method::Get,
        b"HEAD" => Method::Head,
        b"PUT" => Method::Put,
        b"POST" | b"DELETE" | b"OPTIONS" | b"PATCH" | b"TRACE" | b"CONNECT" => Method::NotAllowed,
        _ => Method::Unknown,
    }
}

/// Digits only (no sign, no list), fitting in a `u64`.
fn parse_length(v: &[u8]) -> Option<u64> {
    if v.is_empty() || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(v).ok()?.parse().ok()
}

/// The path of an origin-form or absolute-form target, without its query or fragment.
fn parse_target(target: &[u8]) -> Option<String> {
    let target = std::str::from_utf8(target).ok()?;
    if target.bytes().any(|b| b <= b' ' || b == 0x7f) {
        return None;
    }
    let rest = match target.split_once("://") {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("http") => {
            // absolute-form: the path starts at the first '/' after the authority.
            &rest[rest.find('/').unwrap_or(rest.len())..]
        }
        Some(_) => return None,
        None => target,
    };
    let path = rest.split(['?', '#']).next().unwrap_or_default();
    match path {
        "" if rest.len() != target.len() => Some("/".to_string()), // "http://host" alone
        p if p.starts_with('/') => Some(p.to_string()),
        _ => None,
    }
}

/// The file name a path names, if it is a plain one: non-empty, at most [`MAX_NAME`] bytes, only
/// `[A-Za-z0-9._-]`, and not `.` or `..`. So no slash, no escape from the directory, no
/// percent-encoding and nothing the file system could read as special.
pub fn file_name(path: &str) -> Option<&str> {
    let name = path.strip_prefix('/')?;
    let plain = name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-');
    (plain && !name.is_empty() && name.len() <= MAX_NAME && name != "." && name != "..").then_some(name)
}

/// The reason phrase for each status we send.
pub fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        201 => "Created",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        411 => "Length Required",
        417 => "Expectation Failed",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        505 => "HTTP Version Not Supported",
        _ => "Unknown",
    }
}

/// A reply head: status line, `Server-Name`, `Content-Length`, the extra headers, then
/// `Connection: close` and the blank line. `server_name` was checked at start-up to hold no
/// control characters, so it cannot split the head.
pub fn reply_head(status: u16, server_name: &str, content_length: u64, extra: &[(&str, &str)]) -> String {
    let mut h = format!(
        "HTTP/1.1 {status} {}\r\nServer-Name: {server_name}\r\nContent-Length: {content_length}\r\n",
        reason(status)
    );
    for (k, v) in extra {
        h.push_str(k);
        h.push_str(": ");
        h.push_str(v);
        h.push_str("\r\n");
    }
    h.push_str("Connection: close\r\n\r\n");
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Head, Refusal> {
        parse_head(s.as_bytes())
    }

    #[test]
    fn finds_the_end_of_a_head() {
        assert_eq!(head_end(b"GET / HTTP/1.1\r\nA: b\r\n\r\nbody"), Some(24));
        assert_eq!(head_end(b"GET / HTTP/1.1\n\nbody"), Some(16));
        assert_eq!(head_end(b"GET / HTTP/1.1\r\nA: b\r\n"), None);
        assert_eq!(head_end(b""), None);
    }

    #[test]
    fn parses_a_put() {
        let h =
            parse("PUT /f.txt?x=1 HTTP/1.1\r\nHost: a\r\ncontent-length: 12\r\nExpect: 100-Continue\r\n\r\n").unwrap();
        assert_eq!(h.method, Method::Put);
        assert_eq!(h.path, "/f.txt");
        assert_eq!(h.content_length, Some(12));
        assert!(h.expect_continue && !h.chunked);
    }

    #[test]
    fn absolute_form_and_lf_only() {
        let h = parse("GET http://example.org:80/a HTTP/1.0\n\n").unwrap();
        assert_eq!((h.method, h.path.as_str()), (Method::Get, "/a"));
        assert_eq!(parse("GET http://h HTTP/1.1\r\n\r\n").unwrap().path, "/");
    }

    #[test]
    fn refusals() {
        let status = |s: &str| parse(s).map(|_| 0).unwrap_or_else(|r| r.status);
        assert_eq!(status("GET /\r\n\r\n"), 400);
        assert_eq!(status("GET  / HTTP/1.1\r\n\r\n"), 400);
        assert_eq!(status("GET / HTTP/2.0\r\n\r\n"), 505);
        assert_eq!(status("GET / HTP/1.1\r\n\r\n"), 400);
        assert_eq!(status("G(T / HTTP/1.1\r\n\r\n"), 400);
        assert_eq!(status("GET x HTTP/1.1\r\n\r\n"), 400);
        assert_eq!(status("GET / HTTP/1.1\r\nNoColon\r\n\r\n"), 400);
        assert_eq!(status("GET / HTTP/1.1\r\nA : b\r\n\r\n"), 400);
        assert_eq!(status("GET / HTTP/1.1\r\nA: b\r\n c\r\n\r\n"), 400);
        assert_eq!(status("PUT /a HTTP/1.1\r\nContent-Length: -1\r\n\r\n"), 400);
        assert_eq!(status("PUT /a HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"), 400);
        assert_eq!(status("PUT /a HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n"), 0);
        assert_eq!(status("PUT /a HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 1\r\n\r\n"), 400);
        assert_eq!(status("PUT /a HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n"), 501);
        assert_eq!(status("PUT /a HTTP/1.1\r\nExpect: magic\r\n\r\n"), 417);
    }

    #[test]
    fn methods() {
        let m = |s: &str| parse(&format!("{s} /a HTTP/1.1\r\n\r\n")).unwrap().method;
        assert_eq!(m("HEAD"), Method::Head);
        assert_eq!(m("DELETE"), Method::NotAllowed);
        assert_eq!(m("BREW"), Method::Unknown);
        assert_eq!(m("get"), Method::Unknown); // methods are case-sensitive
    }

    #[test]
    fn file_names() {
        assert_eq!(file_name("/a-b_c.1"), Some("a-b_c.1"));
        for bad in ["/", "/..", "/.", "/a/b", "/../etc", "/a%2fb", "/a b", "a", "/é"] {
            assert_eq!(file_name(bad), None, "{bad}");
        }
        assert!(file_name(&format!("/{}", "x".repeat(MAX_NAME))).is_some());
        assert!(file_name(&format!("/{}", "x".repeat(MAX_NAME + 1))).is_none());
    }

    #[test]
    fn reply_heads() {
        assert_eq!(
            reply_head(404, "s1", 0, &[]),
            "HTTP/1.1 404 Not Found\r\nServer-Name: s1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
    }
}
