//! Request and response heads in http mode: what framing needs, and nothing more.
//!
//! Heads are parsed with `httparse` (a parser shared with much of the Rust HTTP world, strict
//! about what it accepts) and reduced to the few facts that decide where a message ends and
//! whether the connection carries another one. The bytes themselves are never rewritten: the
//! caller forwards the head exactly as received.
//!
//! Request framing follows RFC 9112 §6, refusing what a server might read differently from us
//! (the request-smuggling cases):
//!
//! | request says                                   | body                  |
//! |------------------------------------------------|-----------------------|
//! | `Transfer-Encoding` whose last coding is `chunked`, no `Content-Length` | chunked |
//! | `Transfer-Encoding` with any other last coding | refused: 400          |
//! | both `Transfer-Encoding` and `Content-Length`  | refused: 400          |
//! | `Content-Length` (repeated values must agree)  | that many bytes       |
//! | neither                                        | none                  |
//!
//! Response framing (RFC 9112 §6.3), given the request it answers:
//!
//! | response                                       | body                  |
//! |------------------------------------------------|-----------------------|
//! | 1xx, 204, 304, or any answer to HEAD           | none                  |
//! | 2xx to CONNECT, 101 to an Upgrade              | a tunnel follows      |
//! | `Transfer-Encoding` ending in `chunked`        | chunked               |
//! | other `Transfer-Encoding`                      | until EOF             |
//! | `Content-Length` (repeated values must agree)  | that many bytes       |
//! | neither                                        | until EOF             |

/// The largest request head accepted; a longer one gets the 431.
pub const MAX_HEAD: usize = 64 * 1024;
/// More header lines than this are refused like an oversized head.
const MAX_HEADERS: usize = 256;

/// How a message body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyKind {
    /// No body: the message ends with its head.
    None,
    /// Exactly this many bytes.
    Length(u64),
    /// `Transfer-Encoding: chunked`, up to and including the trailer section.
    Chunked,
    /// Everything until the sender closes (responses only).
    UntilEof,
}

/// Why a request is answered by the balancer instead of forwarded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Malformed, or framed ambiguously: `400 Bad Request`.
    Bad(&'static str),
    /// Head over `MAX_HEAD` bytes or `MAX_HEADERS` lines: `431`.
    TooLarge,
}

/// The facts of one request head that framing needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHead {
    /// Bytes of the head, up to and including its blank line.
    pub len: usize,
    pub body: BodyKind,
    /// The client allows another request on this connection after this one.
    pub keep_alive: bool,
    /// `HEAD`: the response has no body whatever it says.
    pub head_only: bool,
    /// `CONNECT`: a 2xx answer turns the connection into a tunnel.
    pub connect: bool,
    /// An `Upgrade` header: a 101 answer turns the connection into a tunnel.
    pub upgrade: bool,
}

/// The facts of one response head that framing needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseHead {
    pub len: usize,
    pub status: u16,
    pub body: BodyKind,
    /// An interim answer (1xx other than 101): the final response follows.
    pub interim: bool,
    /// The connection becomes a tunnel after this head (101 to an Upgrade, 2xx to CONNECT).
    pub tunnel: bool,
    /// The server allows another request on this connection.
    pub keep_alive: bool,
}

/// Why a server's response head cannot be forwarded (the client gets the 502).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BadResponse(pub &'static str);

/// Parses a request head at the start of `buf`. `Ok(None)`: not complete yet (and not too big).
pub fn parse_request(buf: &[u8]) -> Result<Option<RequestHead>, Refusal> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) if n <= MAX_HEAD => n,
        Ok(httparse::Status::Complete(_)) => return Err(Refusal::TooLarge),
        Ok(httparse::Status::Partial) if buf.len() >= MAX_HEAD => return Err(Refusal::TooLarge),
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(Refusal::TooLarge),
        Err(_) => return Err(Refusal::Bad("malformed request head")),
    };
    let method = req.method.unwrap_or("");
    let minor = req.version.unwrap_or(1);
    let fields = Fields::of(req.headers).map_err(Refusal::Bad)?;
    let body = match (fields.chunked, fields.length) {
        (Some(_), Some(_)) => return Err(Refusal::Bad("both Transfer-Encoding and Content-Length")),
        (Some(true), None) => BodyKind::Chunked,
        (Some(false), None) => return Err(Refusal::Bad("Transfer-Encoding does not end in chunked")),
        (None, Some(n)) => BodyKind::Length(n),
        (None, None) => BodyKind::None,
    };
    Ok(Some(RequestHead {
        len,
        body,
        keep_alive: fields.keep_alive(minor),
        head_only: method == "HEAD",
        connect: method == "CONNECT",
        upgrade: fields.upgrade,
    }))
}

/// Parses a response head at the start of `buf`, answering `req`. `Ok(None)`: not complete.
/// A head over `MAX_HEAD` is a bad response.
pub fn parse_response(buf: &[u8], req: &RequestHead) -> Result<Option<ResponseHead>, BadResponse> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut headers);
    let len = match resp.parse(buf) {
        Ok(httparse::Status::Complete(n)) if n <= MAX_HEAD => n,
        Ok(httparse::Status::Partial) if buf.len() < MAX_HEAD => return Ok(None),
        Ok(_) | Err(httparse::Error::TooManyHeaders) => return Err(BadResponse("response head too large")),
        Err(_) => return Err(BadResponse("malformed response head")),
    };
    let status = resp.code.unwrap_or(0);
    let minor = resp.version.unwrap_or(1);
    let fields = Fields::of(resp.headers).map_err(BadResponse)?;
    let tunnel = (status == 101 && req.upgrade) || (req.connect && (200..300).contains(&status));
    let interim = (100..200).contains(&status) && status != 101;
    if status == 101 && !req.upgrade {
        return Err(BadResponse("101 Switching Protocols without an Upgrade request"));
    }
    let mut keep_alive = fields.keep_alive(minor);
    let body = if interim || tunnel || req.head_only || status == 204 || status == 304 {
        BodyKind::None
    } else {
        match (fields.chunked, fields.length) {
            (Some(true), length) => {
                // Both headers: Transfer-Encoding wins (RFC 9112 §6.3), but the connection
                // is not trusted with another message.
                keep_alive &= length.is_none();
                BodyKind::Chunked
            }
            (Some(false), _) => BodyKind::UntilEof,
            (None, Some(n)) => BodyKind::Length(n),
            (None, None) => BodyKind::UntilEof,
        }
    };
    if body == BodyKind::UntilEof {
        keep_alive = false;
    }
    Ok(Some(ResponseHead { len, status, body, interim, tunnel, keep_alive }))
}

/// The header fields that framing reads.
struct Fields {
    /// `Some(last coding is chunked)` when Transfer-Encoding is present.
    chunked: Option<bool>,
    length: Option<u64>,
    close: bool,
    keep_alive_token: bool,
    upgrade: bool,
}

impl Fields {
    fn of(headers: &[httparse::Header<'_>]) -> Result<Fields, &'static str> {
        let mut f = Fields { chunked: None, length: None, close: false, keep_alive_token: false, upgrade: false };
        for h in headers {
            let name = h.name;
            if name.eq_ignore_ascii_case("transfer-encoding") {
                let value = std::str::from_utf8(h.value).map_err(|_| "Transfer-Encoding is not text")?;
                // Codings accumulate over repeated fields; the last one decides.
                if let Some(last) = value.split(',').map(str::trim).rfind(|c| !c.is_empty()) {
                    f.chunked = Some(last.eq_ignore_ascii_case("chunked"));
                } else if f.chunked.is_none() {
                    f.chunked = Some(false);
                }
            } else if name.eq_ignore_ascii_case("content-length") {
                for part in h.value.split(|b| *b == b',') {
                    let n = content_length(part).ok_or("bad Content-Length")?;
                    if f.length.is_some_and(|m| m != n) {
                        return Err("differing Content-Length values");
                    }
                    f.length = Some(n);
                }
            } else if name.eq_ignore_ascii_case("connection") {
                for token in h.value.split(|b| *b == b',') {
                    let token = token.trim_ascii();
                    f.close |= token.eq_ignore_ascii_case(b"close");
                    f.keep_alive_token |= token.eq_ignore_ascii_case(b"keep-alive");
                }
            } else if name.eq_ignore_ascii_case("upgrade") {
                f.upgrade = true;
            }
        }
        Ok(f)
    }

    /// HTTP/1.1 is persistent unless it says close; HTTP/1.0 only if it says keep-alive.
    fn keep_alive(&self, minor: u8) -> bool {
        !self.close && (minor >= 1 || self.keep_alive_token)
    }
}

/// A Content-Length value: decimal digits only (no sign, no spaces inside), at most 19 of them.
fn content_length(v: &[u8]) -> Option<u64> {
    let v = v.trim_ascii();
    if v.is_empty() || v.len() > 19 || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(v).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(s: &str) -> Result<Option<RequestHead>, Refusal> {
        parse_request(s.as_bytes())
    }

    fn get() -> RequestHead {
        req("GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap().unwrap()
    }

    #[test]
    fn request_bodies() {
        let r = get();
        assert_eq!((r.body, r.keep_alive, r.len), (BodyKind::None, true, 27));
        let r = req("PUT / HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello").unwrap().unwrap();
        assert_eq!(r.body, BodyKind::Length(5));
        let r = req("PUT / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n").unwrap().unwrap();
        assert_eq!(r.body, BodyKind::Length(5));
        let r = req("POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n").unwrap().unwrap();
        assert_eq!(r.body, BodyKind::Chunked);
        assert_eq!(req("GET / HTTP/1.1\r\nHost: x\r\n"), Ok(None));
    }

    #[test]
    fn smuggling_is_refused() {
        let bad = |s: &str| matches!(req(s), Err(Refusal::Bad(_)));
        assert!(bad("POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"));
        assert!(bad("POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n"));
        assert!(bad("POST / HTTP/1.1\r\nContent-Length: 3, 4\r\n\r\n"));
        assert!(bad("POST / HTTP/1.1\r\nTransfer-Encoding: chunked, gzip\r\n\r\n"));
        assert!(bad("POST / HTTP/1.1\r\nContent-Length: -3\r\n\r\n"));
        assert!(bad("POST / HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n"));
        assert!(bad("GARBAGE\r\n\r\n"));
        assert!(bad("GET / HTTP/1.1\r\nBad Header\r\n\r\n"));
    }

    #[test]
    fn oversized_heads() {
        let mut big = String::from("GET / HTTP/1.1\r\nX: ");
        big.push_str(&"a".repeat(MAX_HEAD));
        assert_eq!(req(&big), Err(Refusal::TooLarge));
        let many: String = (0..300).map(|i| format!("H{i}: v\r\n")).collect();
        assert_eq!(req(&format!("GET / HTTP/1.1\r\n{many}\r\n")), Err(Refusal::TooLarge));
    }

    #[test]
    fn persistence() {
        assert!(!req("GET / HTTP/1.1\r\nConnection: close\r\n\r\n").unwrap().unwrap().keep_alive);
        assert!(!req("GET / HTTP/1.0\r\n\r\n").unwrap().unwrap().keep_alive);
        assert!(req("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n").unwrap().unwrap().keep_alive);
    }

    #[test]
    fn response_bodies() {
        let g = get();
        let resp = |s: &str, r: &RequestHead| parse_response(s.as_bytes(), r).unwrap().unwrap();
        let r = resp("HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n", &g);
        assert_eq!((r.status, r.body, r.keep_alive), (200, BodyKind::Length(3), true));
        assert_eq!(resp("HTTP/1.1 200 OK\r\n\r\n", &g).body, BodyKind::UntilEof);
        assert!(!resp("HTTP/1.1 200 OK\r\n\r\n", &g).keep_alive);
        assert_eq!(resp("HTTP/1.1 204 No Content\r\n\r\n", &g).body, BodyKind::None);
        assert_eq!(resp("HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n", &g).body, BodyKind::None);
        let head = req("HEAD / HTTP/1.1\r\n\r\n").unwrap().unwrap();
        assert_eq!(resp("HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n", &head).body, BodyKind::None);
        let r = resp("HTTP/1.1 100 Continue\r\n\r\n", &g);
        assert!(r.interim && r.body == BodyKind::None);
        assert_eq!(resp("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", &g).body, BodyKind::Chunked);
        assert!(!resp("HTTP/1.1 200 OK\r\nContent-Length: 1\r\nConnection: close\r\n\r\n", &g).keep_alive);
        assert!(parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", &g).is_err());
        assert!(parse_response(b"garbage\r\n\r\n", &g).is_err());
        assert_eq!(parse_response(b"HTTP/1.1 200 OK\r\n", &g), Ok(None));
    }

    #[test]
    fn tunnels() {
        let up = req("GET /ws HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n").unwrap().unwrap();
        let r = parse_response(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n", &up).unwrap();
        assert!(r.unwrap().tunnel);
        assert!(parse_response(b"HTTP/1.1 101 Switching Protocols\r\n\r\n", &get()).is_err());
        let c = req("CONNECT h:443 HTTP/1.1\r\n\r\n").unwrap().unwrap();
        assert!(parse_response(b"HTTP/1.1 200 OK\r\n\r\n", &c).unwrap().unwrap().tunnel);
        assert!(!parse_response(b"HTTP/1.1 403 No\r\n\r\n", &c).unwrap().unwrap().tunnel);
    }
}
