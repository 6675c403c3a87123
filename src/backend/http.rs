//! The HTTP/1.1 subset the backend speaks: parsing one request head (with the `httparse`
//! crate, the parser the balancer uses too), checking a file name, and formatting a reply
//! head. Pure functions over bytes, unit-tested without sockets.
//!
//! What is accepted: `HTTP/1.0` and `HTTP/1.1`; origin-form targets (`/name?query`, the query is
//! ignored) and absolute-form (`http://host/name`); CRLF or bare LF line ends; empty lines
//! before the request line (RFC 9112 §2.2); `Content-Length` or `Transfer-Encoding: chunked`
//! bodies; `Expect: 100-continue`; `Connection: close` / `keep-alive`. `Host` is not required:
//! the backend serves one site. What is refused, and how:
//! - a malformed request line or header, obsolete line folding, a space before a header's
//!   colon, a bad or conflicting `Content-Length`, or `Transfer-Encoding` together with
//!   `Content-Length` (a request-smuggling shape) → `400`;
//! - more than [`MAX_HEADERS`] header fields → `431` (as a head over [`MAX_HEAD`] bytes is);
//! - another HTTP version → `505`; another transfer coding → `501`; another expectation → `417`.
//!
//! Methods: GET, HEAD and PUT are served; the other methods of RFC 9110 (POST, DELETE, OPTIONS,
//! PATCH, TRACE, CONNECT) get `405` with `Allow: GET, HEAD, PUT`; any other token gets `501`.
//!
//! Persistence (RFC 9112 §9.3): an HTTP/1.1 request keeps the connection unless it says
//! `Connection: close`; an HTTP/1.0 request keeps it only if it says `Connection: keep-alive`.
//! [`Head::keep_alive`] is that wish; whether the connection is kept is the handler's call.

/// The largest request head we read (request line plus headers plus the blank line).
pub const MAX_HEAD: usize = 8 * 1024;

/// The most header fields a request head may have; more get `431`. Generous for any real
/// client, and it bounds the parser's table (httparse fills a caller-given array).
pub const MAX_HEADERS: usize = 100;

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
    /// The request is HTTP/1.1 (else HTTP/1.0).
    pub http11: bool,
    /// The client wants the connection kept after the reply (module notes, Persistence).
    pub keep_alive: bool,
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

/// Parses a complete head (as delimited by [`head_end`]) with httparse, then reads the fields
/// the backend acts on. httparse refuses, as 400: a malformed request line (two spaces, no
/// version, a bad method token), a header without a colon or with a space before it, obsolete
/// line folding and control characters in a value.
pub fn parse_head(head: &[u8]) -> Result<Head, Refusal> {
    let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut fields);
    match req.parse(head) {
        Ok(httparse::Status::Complete(_)) => {}
        // `head_end` found a blank line where httparse sees none: a head of empty lines only.
        Ok(httparse::Status::Partial) => return Err(refuse(400, "malformed request line")),
        Err(httparse::Error::Version) => return Err(version_refusal(head)),
        Err(httparse::Error::TooManyHeaders) => return Err(refuse(431, "too many header fields")),
        Err(httparse::Error::Token | httparse::Error::NewLine) => return Err(refuse(400, "malformed request line")),
        Err(httparse::Error::HeaderName) => return Err(refuse(400, "malformed header name or line")),
        Err(httparse::Error::HeaderValue) => return Err(refuse(400, "control character in a header value")),
        Err(_) => return Err(refuse(400, "malformed head")),
    }
    // Complete means all three parts of the request line are there.
    let (Some(method), Some(target), Some(version)) = (req.method, req.path, req.version) else {
        return Err(refuse(400, "malformed request line"));
    };
    let http11 = version == 1;
    let path = parse_target(target).ok_or(refuse(400, "malformed request target"))?;

    let mut content_length = None;
    let mut chunked = false;
    let mut transfer_encoding = false;
    let mut expect_continue = false;
    let (mut close, mut keep) = (false, false);
    for field in req.headers.iter() {
        let (name, value) = (field.name, field.value.trim_ascii());
        if name.eq_ignore_ascii_case("content-length") {
            let n = parse_length(value).ok_or(refuse(400, "malformed Content-Length"))?;
            if content_length.is_some_and(|old| old != n) {
                return Err(refuse(400, "conflicting Content-Length headers"));
            }
            content_length = Some(n);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            transfer_encoding = true;
            if value.eq_ignore_ascii_case(b"chunked") && !chunked {
                chunked = true;
            } else {
                return Err(refuse(501, "unsupported Transfer-Encoding"));
            }
        } else if name.eq_ignore_ascii_case("expect") {
            if value.eq_ignore_ascii_case(b"100-continue") {
                // HTTP/1.0 clients do not understand 100 Continue (RFC 9110 §10.1.1).
                expect_continue = http11;
            } else {
                return Err(refuse(417, "unsupported expectation"));
            }
        } else if name.eq_ignore_ascii_case("connection") {
            // A list of options; unknown ones (`Upgrade`, header names) do not concern us.
            for option in value.split(|&b| b == b',').map(<[u8]>::trim_ascii) {
                close |= option.eq_ignore_ascii_case(b"close");
                keep |= option.eq_ignore_ascii_case(b"keep-alive");
            }
        }
    }
    if transfer_encoding && (content_length.is_some() || !http11) {
        return Err(refuse(400, "Transfer-Encoding with Content-Length or on HTTP/1.0"));
    }
    Ok(Head {
        method: classify(method),
        method_text: method.to_string(),
        path,
        content_length,
        chunked,
        expect_continue,
        http11,
        // `close` wins over `keep-alive` if a client sends both.
        keep_alive: !close && (http11 || keep),
    })
}

/// httparse knows only HTTP/1.0 and 1.1: a well-formed version of another number is `505`,
/// anything else where the version should be is a malformed request line.
fn version_refusal(head: &[u8]) -> Refusal {
    let line = head.split(|&b| b == b'\n').find(|l| !l.trim_ascii().is_empty()).unwrap_or_default();
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    match line.split(|&b| b == b' ').collect::<Vec<_>>().as_slice() {
        [_, _, v] if v.len() == 8 && v.starts_with(b"HTTP/") && v[5].is_ascii_digit() && v[6] == b'.' => {
            refuse(505, "unsupported HTTP version")
        }
        _ => refuse(400, "malformed HTTP version"),
    }
}

fn classify(method: &str) -> Method {
    match method {
        "GET" => Method::Get,
        "HEAD" => Method::Head,
        "PUT" => Method::Put,
        "POST" | "DELETE" | "OPTIONS" | "PATCH" | "TRACE" | "CONNECT" => Method::NotAllowed,
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
fn parse_target(target: &str) -> Option<String> {
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

/// What a reply says about the connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Persist {
    /// `Connection: close`: the connection closes after this reply.
    Close,
    /// `Connection: keep-alive`: kept, said aloud for an HTTP/1.0 client, which would
    /// otherwise assume a close.
    KeepAlive,
    /// No `Connection` header: kept, as HTTP/1.1 assumes.
    Kept,
}

impl Persist {
    /// How a reply to a request of this version says "kept" (`keep`) or "closing".
    pub fn for_reply(keep: bool, http11: bool) -> Persist {
        match (keep, http11) {
            (false, _) => Persist::Close,
            (true, false) => Persist::KeepAlive,
            (true, true) => Persist::Kept,
        }
    }
}

/// A reply head: status line, `Server-Name`, `Content-Length`, the extra headers, the
/// `Connection` header `persist` asks for, and the blank line. `server_name` was checked at
/// start-up to hold no control characters, so it cannot split the head.
pub fn reply_head(
    status: u16,
    server_name: &str,
    content_length: u64,
    extra: &[(&str, &str)],
    persist: Persist,
) -> String {
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
    h.push_str(match persist {
        Persist::Close => "Connection: close\r\n\r\n",
        Persist::KeepAlive => "Connection: keep-alive\r\n\r\n",
        Persist::Kept => "\r\n",
    });
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
    fn more_refusals_after_httparse() {
        let status = |s: &str| parse(s).map(|_| 0).unwrap_or_else(|r| r.status);
        assert_eq!(status("GET / HTTP/1.1 x\r\n\r\n"), 400);
        assert_eq!(status("GET / HTTP/1.10\r\n\r\n"), 400);
        assert_eq!(status("GET / HTTP/1.1\r\nA: b\x01c\r\n\r\n"), 400);
        assert_eq!(status("\r\n\r\n"), 400);
        let many: String = (0..=MAX_HEADERS).map(|i| format!("H{i}: v\r\n")).collect();
        assert_eq!(status(&format!("GET / HTTP/1.1\r\n{many}\r\n")), 431);
        // One empty line before the request line is ignored (RFC 9112 §2.2).
        assert_eq!(status("\r\nGET / HTTP/1.1\r\n\r\n"), 0);
    }

    #[test]
    fn persistence_wishes() {
        let keep = |s: &str| parse(s).unwrap().keep_alive;
        assert!(keep("GET / HTTP/1.1\r\n\r\n"));
        assert!(!keep("GET / HTTP/1.1\r\nConnection: Close\r\n\r\n"));
        assert!(!keep("GET / HTTP/1.1\r\nConnection: keep-alive, close\r\n\r\n"));
        assert!(keep("GET / HTTP/1.1\r\nConnection: Upgrade\r\n\r\n"));
        assert!(!keep("GET / HTTP/1.0\r\n\r\n"));
        assert!(keep("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n"));
        assert!(!parse("GET / HTTP/1.0\r\n\r\n").unwrap().http11);
    }

    #[test]
    fn reply_heads() {
        assert_eq!(
            reply_head(404, "s1", 0, &[], Persist::Close),
            "HTTP/1.1 404 Not Found\r\nServer-Name: s1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
        assert_eq!(
            reply_head(200, "s1", 2, &[("A", "b")], Persist::Kept),
            "HTTP/1.1 200 OK\r\nServer-Name: s1\r\nContent-Length: 2\r\nA: b\r\n\r\n"
        );
        assert!(reply_head(200, "s1", 2, &[], Persist::KeepAlive).ends_with("\r\nConnection: keep-alive\r\n\r\n"));
        assert_eq!(Persist::for_reply(true, false), Persist::KeepAlive);
    }
}
