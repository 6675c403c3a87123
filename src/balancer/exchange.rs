//! One request and its response (http mode): every byte forwarded as received, both ways, while
//! the framing of each message is tracked so that the exchange ends exactly where the response
//! ends, and the connections can carry the next one.
//!
//! The two directions run under one `poll`, as in the byte bridge, because they overlap: a
//! server may answer `100 Continue` before the body is sent, or answer early and stop reading.
//!
//! - **Upstream** (client → server): the head and whatever followed it arrive from the parking
//!   thread; more body is read only when everything read so far has been written, so a slow
//!   server slows the client and no buffer grows. The body's framing (`http::body`) says where
//!   the request ends; bytes after it are the start of the next request and are kept, not sent.
//!   Until 64 KiB have passed, every request byte is kept, so that a reused connection that
//!   fails before any response byte can be replaced and the request sent again from the start.
//! - **Downstream** (server → client): bytes are collected until the response head parses, then
//!   the head and body are passed on as they come. Interim answers (`100 Continue`) pass through
//!   and the final head is awaited next. `101` to an Upgrade and `2xx` to CONNECT end the
//!   exchange as a tunnel (the caller bridges the rest). Bytes a server sends beyond the end of
//!   its response are never forwarded, and its connection is not reused.
//!
//! Deadlines, recomputed at every wake-up: while the request is incomplete, `client_timeout`
//! since the last byte either way; after it, `server_timeout` since the last byte either way.

use crate::balancer::bridge::{Progress, Timeouts, poll_timeout};
use crate::balancer::http::body::Body;
use crate::balancer::http::head::{self, BadResponse, BodyKind, RequestHead};
use nix::poll::{PollFd, PollFlags, poll};
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::os::fd::AsFd;
use std::time::Instant;

/// Request bytes kept for a possible resend; past this a request is not retried.
const RETRY_KEEP: usize = 64 * 1024;
/// More interim responses than this before the final one is a misbehaving server.
const MAX_INTERIM: usize = 16;

/// A request as the parking thread hands it over: its parsed head, and the bytes read so far
/// (the head, then whatever followed it).
#[derive(Debug)]
pub struct Request {
    pub buf: Vec<u8>,
    pub head: RequestHead,
}

/// How an exchange ended.
#[derive(Debug)]
pub enum Ending {
    /// The response has come whole from the server; `unsent` is its end, not yet written to
    /// the client. `client_next`: the client may send another request, and these bytes
    /// (maybe none) are its start; `None`: close the client. `server_keep`: the server
    /// connection may carry another request.
    Complete { client_next: Option<Vec<u8>>, server_keep: bool, unsent: Vec<u8> },
    /// The response turned the connection into a tunnel. `to_server`: tunnel bytes the client
    /// sent early; `to_client`: the end of the head and what followed, both not yet written.
    Tunnel { to_server: Vec<u8>, to_client: Vec<u8> },
    /// A reused server connection failed before any response byte (the server closed it as
    /// we sent): the request may go again on a new connection.
    Retry(String),
    /// The server failed; `bad_gateway`: its head was malformed or cut short (a 502 if nothing
    /// reached the client), else it timed out or broke (a 500 if nothing reached the client).
    Server { why: String, bad_gateway: bool },
    /// The request's body is malformed (a 400 if nothing reached the client).
    BadRequest(&'static str),
    /// The client left, or went silent mid-request.
    Client(String),
}

/// The client → server half, kept across a retry.
#[derive(Debug)]
pub struct Upstream {
    pub head: RequestHead,
    /// Request bytes; `buf[sent..]` not yet written to the server.
    buf: Vec<u8>,
    sent: usize,
    body: Body,
    /// Every byte of the request has been read from the client.
    done: bool,
    /// Bytes after the request's end: the start of the next request.
    next: Vec<u8>,
    /// `buf` still holds every request byte sent so far.
    retryable: bool,
}

impl Upstream {
    /// Splits what the parking thread read into this request and what follows it.
    pub fn new(req: Request) -> Result<Upstream, &'static str> {
        let Request { mut buf, head } = req;
        let mut body = Body::new(head.body);
        let used = body.feed(&buf[head.len..]).map_err(|e| e.0)?;
        let done = body.is_done();
        let next = if done { buf.split_off(head.len + used) } else { Vec::new() };
        Ok(Upstream { head, buf, sent: 0, body, done, next, retryable: true })
    }

    /// Starts the request over for a new connection; false once bytes sent are gone.
    pub fn rewind(&mut self) -> bool {
        if self.retryable {
            self.sent = 0;
        }
        self.retryable
    }

    pub fn done(&self) -> bool {
        self.done
    }

    /// The client asked for its connection to close after this response (`Connection: close`,
    /// or HTTP/1.0 without keep-alive), and sent nothing after its request.
    pub fn last_of_connection(&self) -> bool {
        self.done && !self.head.keep_alive && self.next.is_empty()
    }

    fn pending(&self) -> bool {
        self.sent < self.buf.len()
    }

    /// Takes `bytes` just read from the client: the part that belongs to the request is queued
    /// for the server, the rest kept for the next request.
    fn absorb(&mut self, bytes: &[u8]) -> Result<(), &'static str> {
        if !self.retryable && !self.pending() {
            self.buf.clear();
            self.sent = 0;
        }
        let used = self.body.feed(bytes).map_err(|e| e.0)?;
        self.buf.extend_from_slice(&bytes[..used]);
        if self.body.is_done() {
            self.done = true;
            self.next.extend_from_slice(&bytes[used..]);
        }
        if self.buf.len() > RETRY_KEEP {
            self.retryable = false;
        }
        Ok(())
    }
}

/// The server → client half.
#[derive(Debug, Default)]
struct Downstream {
    /// Bytes for the client; `out[written..]` not yet written.
    out: Vec<u8>,
    written: usize,
    /// A response head not yet complete.
    head_buf: Vec<u8>,
    body: Option<Body>,
    interim: usize,
    status: Option<u16>,
    keep_alive: bool,
    tunnel: bool,
    /// Some response byte has arrived.
    any: bool,
    /// The response is complete (a tunnel: its head is).
    done: bool,
    /// The server sent bytes after the end of its response.
    extra: bool,
}

impl Downstream {
    fn pending(&self) -> bool {
        self.written < self.out.len()
    }

    /// Takes bytes just read from the server.
    fn absorb(&mut self, bytes: &[u8], req: &RequestHead) -> Result<(), BadResponse> {
        if !self.pending() {
            self.out.clear();
            self.written = 0;
        }
        if self.done {
            if self.tunnel {
                self.out.extend_from_slice(bytes);
            } else if !bytes.is_empty() {
                self.extra = true;
            }
            return Ok(());
        }
        if let Some(body) = self.body.as_mut() {
            let used = body.feed(bytes).map_err(|e| BadResponse(e.0))?;
            self.out.extend_from_slice(&bytes[..used]);
            if body.is_done() {
                self.done = true;
                self.extra |= used < bytes.len();
            }
            return Ok(());
        }
        self.head_buf.extend_from_slice(bytes);
        let Some(h) = head::parse_response(&self.head_buf, req)? else { return Ok(()) };
        let rest = self.head_buf.split_off(h.len);
        self.out.append(&mut self.head_buf);
        if h.interim {
            self.interim += 1;
            if self.interim > MAX_INTERIM {
                return Err(BadResponse("too many interim responses"));
            }
            return self.absorb(&rest, req);
        }
        self.status = Some(h.status);
        self.keep_alive = h.keep_alive;
        if h.tunnel {
            self.tunnel = true;
            self.done = true;
            self.out.extend_from_slice(&rest);
            return Ok(());
        }
        self.body = Some(Body::new(h.body));
        if h.body == BodyKind::None || h.body == BodyKind::Length(0) {
            self.done = true;
            self.extra = !rest.is_empty();
            return Ok(());
        }
        self.absorb(&rest, req)
    }

    /// The server closed: the end of a body that runs to EOF, or a failure.
    fn eof(&mut self) -> bool {
        match &self.body {
            Some(b) if b.until_eof() => {
                self.done = true;
                self.keep_alive = false;
                true
            }
            _ => false,
        }
    }
}

/// The two sockets of an exchange, both non-blocking.
#[derive(Debug, Clone, Copy)]
pub struct Ends<'a> {
    pub client: &'a TcpStream,
    pub server: &'a TcpStream,
    /// The server connection carried a request before (it came from the pool).
    pub reused: bool,
}

/// Forwards one request to the server and its response to the client. `replying` is called
/// once, when the first response bytes have been read and before any is passed on. `scratch`
/// is the read buffer.
pub fn forward(
    ends: Ends<'_>,
    up: &mut Upstream,
    t: Timeouts,
    progress: &mut Progress,
    replying: &mut dyn FnMut(),
    scratch: &mut [u8],
) -> Ending {
    let Ends { client, server, reused } = ends;
    let mut down = Downstream::default();
    let mut last = Instant::now();
    // What poll last said; the server connection is fresh or idle, so it can take bytes, and
    // the client may already have sent more of its body.
    let (mut client_ready, mut server_ready) =
        (if up.done { PollFlags::empty() } else { PollFlags::POLLIN }, PollFlags::POLLOUT);
    let alarm = PollFlags::POLLERR | PollFlags::POLLHUP;
    loop {
        // Request bytes to the server.
        if up.pending() && server_ready.intersects(PollFlags::POLLOUT | alarm) {
            while up.pending() {
                match (&*server).write(&up.buf[up.sent..]) {
                    Ok(n) => {
                        up.sent += n;
                        progress.to_server += n as u64;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) if reused && !down.any && up.retryable => return Ending::Retry(format!("send: {e}")),
                    Err(e) => return Ending::Server { why: format!("send failed: {e}"), bad_gateway: false },
                }
            }
        }
        // More of the request from the client.
        if !up.done && !up.pending() && client_ready.intersects(PollFlags::POLLIN | alarm) {
            match (&*client).read(scratch) {
                Ok(0) => return Ending::Client("closed mid-request".into()),
                Ok(n) => {
                    if let Err(why) = up.absorb(&scratch[..n]) {
                        return Ending::BadRequest(why);
                    }
                    last = Instant::now();
                    continue; // write it out before reading on
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock || e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Ending::Client(e.to_string()),
            }
        }
        // The response from the server, when the client has taken what came before.
        if !down.done && !down.pending() && server_ready.intersects(PollFlags::POLLIN | alarm) {
            match (&*server).read(scratch) {
                Ok(0) if down.eof() => {}
                Ok(0) if !down.any && reused && up.retryable => return Ending::Retry("closed before replying".into()),
                Ok(0) if !down.any || down.body.is_none() => {
                    return Ending::Server { why: "closed before a complete response head".into(), bad_gateway: true };
                }
                Ok(0) => return Ending::Server { why: "closed mid-response".into(), bad_gateway: false },
                Ok(n) => {
                    if !down.any {
                        down.any = true;
                        replying();
                    }
                    if let Err(BadResponse(why)) = down.absorb(&scratch[..n], &up.head) {
                        return Ending::Server { why: why.into(), bad_gateway: true };
                    }
                    progress.status = progress.status.or(down.status);
                    last = Instant::now();
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock || e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if !down.any && reused && up.retryable => return Ending::Retry(format!("receive: {e}")),
                Err(e) => return Ending::Server { why: format!("receive failed: {e}"), bad_gateway: !down.any },
            }
        }
        if down.done {
            // The server is done: its connection can go back to the pool before the client
            // has the last bytes, so a client that sends its next request the moment it has
            // them finds the connection there. The caller writes `unsent`.
            progress.server_done = Some(Instant::now());
            let unsent = down.out.split_off(down.written);
            if down.tunnel {
                return Ending::Tunnel { to_server: std::mem::take(&mut up.next), to_client: unsent };
            }
            let both = up.done && up.head.keep_alive && down.keep_alive;
            let client_next = both.then(|| std::mem::take(&mut up.next));
            let server_keep = both && !down.extra && !up.pending();
            return Ending::Complete { client_next, server_keep, unsent };
        }
        // Response bytes to the client.
        while down.pending() {
            match (&*client).write(&down.out[down.written..]) {
                Ok(n) => {
                    down.written += n;
                    progress.to_client += n as u64;
                    last = Instant::now();
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Ending::Client(e.to_string()),
            }
        }

        let (deadline, client_owes) = if up.done { (last + t.server, false) } else { (last + t.client, true) };
        let now = Instant::now();
        if now >= deadline {
            return if client_owes {
                Ending::Client("sent nothing more in time".into())
            } else {
                Ending::Server { why: "sent nothing in time".into(), bad_gateway: false }
            };
        }
        let mut c = PollFlags::empty();
        let mut s = PollFlags::empty();
        if !up.done && !up.pending() {
            c |= PollFlags::POLLIN;
        }
        if down.pending() {
            c |= PollFlags::POLLOUT;
        }
        if up.pending() {
            s |= PollFlags::POLLOUT;
        }
        if !down.done && !down.pending() {
            s |= PollFlags::POLLIN;
        }
        let mut fds = [PollFd::new(client.as_fd(), c), PollFd::new(server.as_fd(), s)];
        match poll(&mut fds, poll_timeout(deadline - now)) {
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Ending::Server { why: format!("internal: poll: {e}"), bad_gateway: false },
        }
        client_ready = fds[0].revents().unwrap_or(PollFlags::empty());
        server_ready = fds[1].revents().unwrap_or(PollFlags::empty());
        if client_ready.intersects(alarm) && c.is_empty() {
            // The client hung up or reset while we wait on the server. Its socket would make
            // every poll return at once; the caller lets the server finish without it.
            return Ending::Client("hung up while its response was awaited".into());
        }
    }
}
