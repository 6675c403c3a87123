//! One connection, its requests in order: read a head, route it, answer, count; then the next
//! request on the same connection, or close.
//!
//! Persistence: after a reply the connection is kept for the next request when the request
//! allows it (HTTP/1.1 without `Connection: close`, or HTTP/1.0 with `Connection:
//! keep-alive`), `--close-each` is not given, shutdown has not begun, and the request's body
//! was read or can still be skipped (a body the reply did not need is read and thrown away
//! after the reply; a client still waiting for a `100 Continue` we never sent makes us close
//! instead). A reply on a connection that closes says `Connection: close`; one to an HTTP/1.0
//! client on a kept connection says `Connection: keep-alive`. A refused head always closes:
//! where it ends is not known.
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

use super::args::Persistence;
use super::body::BodyError;
use super::conn::{self, Conn, HEAD_TIMEOUT, HeadRead, WRITE_IDLE_TIMEOUT};
use super::http::{self, Head, Method, Persist};
use super::server::Shared;
use crate::common::json;
use crate::common::worker_stats::WorkerStats;
use serde::Serialize;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::os::fd::AsFd;
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

/// What follows a request on its connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Next {
    /// Read the next request.
    KeepAlive,
    /// Close gracefully (half-close, drain): our reply must reach the client whole.
    Close,
    /// Just drop the socket: the client is gone, or never said a word.
    Gone,
}

/// Serves one accepted connection to its end: its requests in order, until one of them ends
/// it (module notes). Never panics on client behaviour; every failure is logged with its side
/// (`client:` or `internal:`) and ends the connection.
pub fn serve(stream: TcpStream, shared: &Shared) {
    let peer = stream.peer_addr().map_or_else(|_| "?".to_string(), |a| a.to_string());
    if let Err(e) = stream.set_write_timeout(Some(WRITE_IDLE_TIMEOUT)) {
        crate::debug!("client: {peer}: cannot set a write timeout: {e}");
        return;
    }
    let mut conn = Conn::new(stream);
    // The first request: its whole head within HEAD_TIMEOUT of the accept.
    let head_by = Instant::now() + HEAD_TIMEOUT;
    let mut next = serve_one(&mut conn, shared, &peer, head_by, Some(head_by), true);
    while next == Next::KeepAlive {
        let idle = match shared.persistence {
            Persistence::KeepAlive(idle) => idle,
            Persistence::CloseEach => break, // not reached: close-each never keeps
        };
        next = serve_one(&mut conn, shared, &peer, Instant::now() + idle, None, false);
    }
    if next != Next::Gone {
        conn::close_gracefully(conn.into_stream());
    }
}

/// Reads and answers one request (see [`Conn::read_head`] for `idle_until` and `head_until`);
/// `first` when it is the connection's first, for what a silence means.
fn serve_one(
    conn: &mut Conn,
    shared: &Shared,
    peer: &str,
    idle_until: Instant,
    head_until: Option<Instant>,
    first: bool,
) -> Next {
    let raw = match conn.read_head(shared.stop.as_fd(), idle_until, head_until) {
        HeadRead::Complete(raw) => raw,
        HeadRead::Closed => {
            if first {
                crate::debug!("client: {peer}: closed without a request");
            }
            return Next::Gone;
        }
        HeadRead::TimedOut { silent: true } if first => {
            crate::debug!("client: {peer}: sent nothing in {HEAD_TIMEOUT:?}, closing");
            return Next::Close;
        }
        HeadRead::TimedOut { silent: true } => {
            crate::debug!("client: {peer}: idle between requests for the keep-alive timeout, closing");
            return Next::Close;
        }
        HeadRead::Stopping => return Next::Close,
        HeadRead::Failed(e) => {
            crate::debug!("client: {peer}: reading the request: {e}");
            return Next::Gone;
        }
        HeadRead::TimedOut { silent: false } => {
            return refuse_head(conn, shared, peer, 408, "request head incomplete after 10 s");
        }
        HeadRead::Truncated => {
            return refuse_head(conn, shared, peer, 400, "closed in the middle of the head");
        }
        HeadRead::TooLarge => {
            return refuse_head(conn, shared, peer, 431, "request head over 8 KiB");
        }
    };
    let head = match http::parse_head(&raw) {
        Ok(head) => head,
        Err(r) => return refuse_head(conn, shared, peer, r.status, r.reason),
    };
    conn.expect_body(&head);
    let started = Instant::now();
    let kind = match head.path.as_str() {
        HEALTHCHECK => Kind::Health,
        INFLIGHT | WORKER_STATS => Kind::Observation,
        _ => Kind::Work,
    };

    let sent = if kind == Kind::Work {
        let in_flight = shared.counters.enter();
        let reply = work(conn, shared, &head);
        // Out of flight before the first byte of the reply goes out: a client holding any of it
        // may already send its next request (on this connection or another), and that one must
        // not find this one still counted, or `max` would exceed what the client had
        // outstanding (the balancer's bound, in its tests).
        drop(in_flight);
        send(conn, shared, peer, &head, reply, kind, started)
    } else {
        let reply = observe(shared, &head);
        send(conn, shared, peer, &head, reply, kind, started)
    };
    match sent {
        None => Next::Gone,
        Some(Persist::Close) => Next::Close,
        // A body the reply did not need is skipped now, so the next head starts where it should.
        Some(_) if conn.discard_body() => Next::KeepAlive,
        Some(_) => Next::Close,
    }
}

/// Whether the connection is kept after the reply to `head`, and how the reply says so.
/// Decided before the reply head is written (module notes, Persistence).
fn persistence(conn: &Conn, shared: &Shared, head: &Head) -> Persist {
    let keep = head.keep_alive
        && matches!(shared.persistence, Persistence::KeepAlive(_))
        && !shared.stopping.load(Ordering::SeqCst)
        && conn.reusable();
    Persist::for_reply(keep, head.http11)
}

/// Answers a head that could not be parsed, at once; the connection then closes.
fn refuse_head(conn: &mut Conn, shared: &Shared, peer: &str, status: u16, why: &str) -> Next {
    crate::debug!("client: {peer}: {status}: {why}");
    shared.counters.count_entry(status);
    shared.counters.count_worker(status, std::time::Duration::ZERO);
    let head = http::reply_head(status, &shared.name, 0, &[], Persist::Close);
    match conn.stream().write_all(head.as_bytes()) {
        Ok(()) => Next::Close,
        Err(e) => {
            crate::debug!("client: {peer}: writing the {status} reply: {e}");
            Next::Gone
        }
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
fn work(conn: &mut Conn, shared: &Shared, head: &Head) -> Reply {
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
            (Method::Put, Some(name)) => put(conn, shared, name),
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

/// Receives a PUT body (by Content-Length or chunked, decoded) into a temporary file in DIR,
/// then renames it over `DIR/name`, so a reader never sees a half-written file and a failed
/// upload leaves the old one in place.
fn put(conn: &mut Conn, shared: &Shared, name: &str) -> Reply {
    let seq = shared.uploads.fetch_add(1, Ordering::Relaxed);
    let temp = shared.dir.join(format!(".put-{}-{seq}.tmp", std::process::id()));
    let mut file = match OpenOptions::new().write(true).create_new(true).open(&temp) {
        Ok(f) => f,
        Err(e) => {
            crate::warn!("internal: creating {}: {e}", temp.display());
            return Reply::empty(500);
        }
    };
    let received = conn.receive_body(&mut file);
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

/// Counts the request, writes the reply, logs one line. Returns what the reply said about the
/// connection (see [`persistence`]), or `None` when the client is already gone.
fn send(
    conn: &mut Conn,
    shared: &Shared,
    peer: &str,
    head: &Head,
    reply: Reply,
    kind: Kind,
    started: Instant,
) -> Option<Persist> {
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
    let persist = persistence(conn, shared, head);
    let mut out = http::reply_head(reply.status, &shared.name, length, &extra, persist).into_bytes();
    let stream = conn.stream();
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
                io::copy(&mut file.take(n), stream)
            }
        }
    })();
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    let line = format!("{peer} \"{} {}\" {}", head.method_text, head.path, reply.status);
    match written {
        Ok(sent) if sent < length => {
            // The file shrank while we sent it: the client sees a short body and our close
            // (the connection cannot go on: the client still waits for the missing bytes).
            crate::warn!("internal: {line}: sent {sent} of {length} bytes, the file shrank");
            Some(Persist::Close)
        }
        Ok(_) => {
            crate::debug!("{line} {length} {ms:.1}ms");
            Some(persist)
        }
        Err(e) => {
            crate::debug!("client: {line}: writing the reply: {e}");
            None
        }
    }
}
