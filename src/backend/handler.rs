//! One connection, one request: read the head, route it, answer, count, close.
//!
//! Routes, checked in this order on the path:
//! - `/healthcheck`, `/inflight`, `/worker/stats`: the observation endpoints. GET only (any other
//!   method → `403`); never delayed or failed, never counted in flight; `/healthcheck` is an
//!   entry, the other two are not counted at all.
//! - everything else rolls the dice first (`--fail-rate` → `500`, doing nothing else), is
//!   counted in flight, and sleeps the delay before answering;
//! - `/api/v1/hello`: GET only (else `403`);
//! - `/NAME`: GET, HEAD and PUT of the file `DIR/NAME`; other RFC methods `405`, unknown
//!   methods `501`, a name that is not plain `400`, a missing file `404`.
//!
//! A request whose head cannot be parsed is answered at once (4xx/5xx, not delayed, not failed,
//! not in flight) and counted as an entry and an error.

use super::body::{self, BodyError, Framing};
use super::conn::{self, BODY_IDLE_TIMEOUT, HEAD_TIMEOUT, HeadRead, WRITE_IDLE_TIMEOUT};
use super::http::{self, Head, Method};
use super::server::Shared;
use crate::common::json;
use crate::common::worker_stats::WorkerStats;
use serde::Serialize;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::OpenOptionsExt;
use std::sync::atomic::Ordering;
use std::time::Instant;

const HEALTHCHECK: &str = "/healthcheck";
const INFLIGHT: &str = "/inflight";
const WORKER_STATS: &str = "/worker/stats";
const HELLO: &str = "/api/v1/hello";

/// What goes after the reply head.
enum Payload {
    /// These bytes (may be empty).
    Bytes(Vec<u8>),
    /// This many bytes of this file; for HEAD, the head only.
    File(File, u64),
}

/// A reply ready to send.
struct Reply {
    status: u16,
    content_type: Option<&'static str>,
    /// `Allow` header, for 405.
    allow: bool,
    payload: Payload,
}

impl Reply {
    fn empty(status: u16) -> Reply {
        Reply { status, content_type: None, allow: status == 405, payload: Payload::Bytes(Vec::new()) }
    }

    fn text(status: u16, body: String) -> Reply {
        Reply { content_type: Some("text/plain"), payload: Payload::Bytes(body.into_bytes()), ..Reply::empty(status) }
    }

    /// `200` with `doc` as its JSON body.
    fn json<T: Serialize>(doc: &T) -> Reply {
        Reply {
            content_type: Some("application/json"),
            payload: Payload::Bytes(json::to_string(doc).into_bytes()),
            ..Reply::empty(200)
        }
    }

    fn length(&self) -> u64 {
        match &self.payload {
            Payload::Bytes(b) => b.len() as u64,
            Payload::File(_, n) => *n,
        }
    }
}

/// How a request is counted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// `/healthcheck`: an entry (after reading the counts), not in worker stats.
    Health,
    /// `/inflight`, `/worker/stats`: not counted anywhere.
    Observation,
    /// Everything else: an entry and in worker stats.
    Work,
}

/// Serves one accepted connection to its end. Never panics on client behaviour; every failure
/// is logged with its side (`client:` or `internal:`) and ends the connection.
pub fn serve(mut stream: TcpStream, shared: &Shared) {
    let peer = stream.peer_addr().map_or_else(|_| "?".to_string(), |a| a.to_string());
    if let Err(e) = stream.set_write_timeout(Some(WRITE_IDLE_TIMEOUT)) {
        crate::debug!("client: {peer}: cannot set a write timeout: {e}");
        return;
    }
    let mut buf = Vec::with_capacity(4096);
    let end = match conn::read_head(&mut stream, &mut buf, Instant::now() + HEAD_TIMEOUT) {
        HeadRead::Complete(end) => end,
        HeadRead::Closed => {
            crate::debug!("client: {peer}: closed without a request");
            return;
        }
        HeadRead::TimedOut { silent: true } => {
            crate::debug!("client: {peer}: sent nothing in {HEAD_TIMEOUT:?}, closing");
            return conn::close_gracefully(stream);
        }
        HeadRead::Failed(e) => {
            crate::debug!("client: {peer}: reading the request: {e}");
            return;
        }
        HeadRead::TimedOut { silent: false } => {
            return refuse_head(stream, shared, &peer, 408, "request head incomplete after 10 s");
        }
        HeadRead::Truncated => {
            return refuse_head(stream, shared, &peer, 400, "closed in the middle of the head");
        }
        HeadRead::TooLarge => {
            return refuse_head(stream, shared, &peer, 431, "request head over 8 KiB");
        }
    };
    let head = match http::parse_head(&buf[..end]) {
        Ok(head) => head,
        Err(r) => return refuse_head(stream, shared, &peer, r.status, r.reason),
    };
    let started = Instant::now();
    let kind = match head.path.as_str() {
        HEALTHCHECK => Kind::Health,
        INFLIGHT | WORKER_STATS => Kind::Observation,
        _ => Kind::Work,
    };

    let reply = if kind == Kind::Work {
        let _in_flight = shared.counters.enter();
        let reply = work(&mut stream, shared, &head, &buf[end..]);
        send(stream, shared, &peer, &head, reply, kind, started)
        // `_in_flight` ends here, after the reply was written (or failed to be).
    } else {
        let reply = observe(shared, &head);
        send(stream, shared, &peer, &head, reply, kind, started)
    };
    if let Some(stream) = reply {
        conn::close_gracefully(stream);
    }
}

/// Answers a head that could not be parsed, at once.
fn refuse_head(mut stream: TcpStream, shared: &Shared, peer: &str, status: u16, why: &str) {
    crate::debug!("client: {peer}: {status}: {why}");
    shared.counters.count_entry(status);
    shared.counters.count_worker(status, std::time::Duration::ZERO);
    let head = http::reply_head(status, &shared.name, 0, &[]);
    match stream.write_all(head.as_bytes()) {
        Ok(()) => conn::close_gracefully(stream),
        Err(e) => crate::debug!("client: {peer}: writing the {status} reply: {e}"),
    }
}

/// The observation endpoints: GET only.
fn observe(shared: &Shared, head: &Head) -> Reply {
    if head.method != Method::Get {
        return Reply::empty(403);
    }
    let c = &shared.counters;
    match head.path.as_str() {
        HEALTHCHECK => {
            let (errors, entries) = c.health();
            Reply::text(200, format!("{errors}\n{entries}\n"))
        }
        INFLIGHT => {
            let (current, max) = c.in_flight();
            Reply::json(&InFlight { current, max })
        }
        _ => Reply::json(&WorkerStats::new([(shared.name.as_str(), c.worker())])),
    }
}

/// The `/inflight` reply.
#[derive(Serialize)]
struct InFlight {
    current: u64,
    max: u64,
}

/// The `/api/v1/hello` reply.
#[derive(Serialize)]
struct Hello {
    message: String,
}

/// Everything but the observation endpoints: dice, work, delay.
fn work(stream: &mut TcpStream, shared: &Shared, head: &Head, prefix: &[u8]) -> Reply {
    let outcome = shared.dice.roll();
    if outcome.fail {
        std::thread::sleep(outcome.delay);
        return Reply::empty(500);
    }
    let reply = if head.path == HELLO {
        match head.method {
            Method::Get => Reply::json(&Hello { message: format!("hello from backend: {}", shared.name) }),
            _ => Reply::empty(403),
        }
    } else {
        match (head.method, http::file_name(&head.path)) {
            (Method::NotAllowed, _) => Reply::empty(405),
            (Method::Unknown, _) => Reply::empty(501),
            (_, None) => Reply::empty(400),
            (Method::Get | Method::Head, Some(name)) => open(shared, name),
            (Method::Put, Some(name)) => put(stream, shared, head, prefix, name),
        }
    };
    std::thread::sleep(outcome.delay);
    reply
}

/// Opens `DIR/name` for GET or HEAD. Non-blocking open, so a FIFO in the directory cannot hang
/// the worker; only regular files are served.
fn open(shared: &Shared, name: &str) -> Reply {
    let path = shared.dir.join(name);
    let file = match OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK).open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Reply::empty(404),
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => return Reply::empty(403),
        Err(e) => {
            crate::warn!("internal: opening {}: {e}", path.display());
            return Reply::empty(500);
        }
    };
    match file.metadata() {
        Ok(md) if md.is_file() => Reply {
            content_type: Some("application/octet-stream"),
            payload: Payload::File(file, md.len()),
            ..Reply::empty(200)
        },
        Ok(_) => Reply::empty(404),
        Err(e) => {
            crate::warn!("internal: reading metadata of {}: {e}", path.display());
            Reply::empty(500)
        }
    }
}

/// Receives a PUT body into a temporary file in DIR, then renames it over `DIR/name`, so a
/// reader never sees a half-written file and a failed upload leaves the old one in place.
fn put(stream: &mut TcpStream, shared: &Shared, head: &Head, prefix: &[u8], name: &str) -> Reply {
    let framing = match (head.chunked, head.content_length) {
        (true, _) => Framing::Chunked,
        (false, n) => Framing::Length(n.unwrap_or(0)), // no framing: no body (RFC 9112 §6.3)
    };
    let seq = shared.uploads.fetch_add(1, Ordering::Relaxed);
    let temp = shared.dir.join(format!(".put-{}-{seq}.tmp", std::process::id()));
    let mut file = match OpenOptions::new().write(true).create_new(true).open(&temp) {
        Ok(f) => f,
        Err(e) => {
            crate::warn!("internal: creating {}: {e}", temp.display());
            return Reply::empty(500);
        }
    };
    let received = (|| {
        if head.expect_continue {
            stream.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").map_err(BodyError::Client)?;
        }
        stream.set_read_timeout(Some(BODY_IDLE_TIMEOUT)).map_err(BodyError::Client)?;
        body::receive(prefix, &*stream, framing, &mut file)
    })();
    drop(file);
    let status = match received {
        Ok(_) => match std::fs::rename(&temp, shared.dir.join(name)) {
            Ok(()) => return Reply::empty(201),
            Err(e) => {
                crate::warn!("internal: renaming {} to {name}: {e}", temp.display());
                500
            }
        },
        Err(BodyError::Timeout) => 408,
        Err(BodyError::Truncated) => 400,
        Err(BodyError::Malformed(why)) => {
            crate::debug!("client: PUT {name}: {why}");
            400
        }
        Err(BodyError::Client(e)) => {
            crate::debug!("client: PUT {name}: {e}");
            400
        }
        Err(BodyError::Disk(e)) => {
            crate::warn!("internal: writing {}: {e}", temp.display());
            500
        }
    };
    if let Err(e) = std::fs::remove_file(&temp) {
        crate::warn!("internal: removing {}: {e}", temp.display());
    }
    Reply::empty(status)
}

/// Counts the request, writes the reply, logs one line. Returns the stream for a graceful close,
/// or `None` when the client is already gone.
fn send(
    mut stream: TcpStream,
    shared: &Shared,
    peer: &str,
    head: &Head,
    reply: Reply,
    kind: Kind,
    started: Instant,
) -> Option<TcpStream> {
    // Counted before writing: a client that has read its reply and asks /healthcheck next must
    // see this request counted (counting after the write would race with it).
    match kind {
        Kind::Health => shared.counters.count_entry(reply.status),
        Kind::Observation => {}
        Kind::Work => {
            shared.counters.count_entry(reply.status);
            shared.counters.count_worker(reply.status, started.elapsed());
        }
    }
    let mut extra = Vec::with_capacity(2);
    if let Some(t) = reply.content_type {
        extra.push(("Content-Type", t));
    }
    if reply.allow {
        extra.push(("Allow", "GET, HEAD, PUT"));
    }
    let length = reply.length();
    let mut out = http::reply_head(reply.status, &shared.name, length, &extra).into_bytes();
    // How many body bytes went out (for HEAD, how many would have).
    let written = (|| -> io::Result<u64> {
        match reply.payload {
            Payload::Bytes(b) => {
                if head.method != Method::Head {
                    out.extend_from_slice(&b);
                }
                stream.write_all(&out)?;
                Ok(length)
            }
            Payload::File(file, n) => {
                stream.write_all(&out)?;
                if head.method == Method::Head {
                    return Ok(n);
                }
                // File → socket: std uses sendfile(2) here, no copy through user space.
                io::copy(&mut file.take(n), &mut stream)
            }
        }
    })();
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    let line = format!("{peer} \"{} {}\" {}", head.method_text, head.path, reply.status);
    match written {
        Ok(sent) if sent < length => {
            // The file shrank while we sent it: the client sees a short body and our close.
            crate::warn!("internal: {line}: sent {sent} of {length} bytes, the file shrank");
            Some(stream)
        }
        Ok(_) => {
            crate::debug!("{line} {length} {ms:.1}ms");
            Some(stream)
        }
        Err(e) => {
            crate::debug!("client: {line}: writing the reply: {e}");
            None
        }
    }
}
