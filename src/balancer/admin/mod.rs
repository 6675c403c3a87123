//! The admin endpoint: a small HTTP server on its own thread and port, never routed to servers.
//!
//! | request          | answer                                                     |
//! |------------------|------------------------------------------------------------|
//! | `GET /status`    | the live state as JSON (`status::json`)                    |
//! | `GET /metrics`   | Prometheus text format (`metrics::text`)                   |
//! | `GET /worker/stats` | the original fleet's stats JSON (`status::worker_stats`) |
//! | `GET /`          | the live dashboard (`dashboard::PAGE`)                      |
//! | `PUT /rate`      | body `r` (0.001..1000000) or `off`: pacing for new dispatches |
//! | `PUT /limit`     | body `n` (1..`MAX_LIMIT`): the global bound for new dispatches |
//!
//! A bad body gets `400` with a one-line reason naming the value and the accepted range, and
//! changes nothing (the ranges are `config`'s, the same as the flags'); other paths `404`.
//! Requests are served one at a time, each bounded by a 2 s deadline, so a stuck admin client
//! delays the next one by at most that and never touches the data path. A request refused
//! before its body was read (a body over 64 KiB) is answered, then the rest of what the client
//! sends is read and dropped until it stops or the deadline passes, so the client sees the
//! `400` rather than a reset. The deadline is one for the whole request: each read waits only
//! for what is left of it.

pub mod dashboard;
pub mod metrics;
pub mod status;

use crate::balancer::config;
use crate::balancer::http::{self, Request};
use crate::balancer::sched::Dispatcher;
use crate::balancer::worker::Pool;
use crate::common::args::shown;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

const DEADLINE: Duration = Duration::from_secs(2);

pub struct Admin {
    pub listener: TcpListener,
    pub dispatcher: Arc<Dispatcher>,
    pub pool: Arc<Pool>,
    /// The shared limit's state, when there is one (`/status` `shared`, `/metrics`).
    pub shared: Option<Arc<crate::balancer::shared::Inner>>,
}

impl Admin {
    pub fn run(self) {
        for conn in self.listener.incoming() {
            match conn {
                Ok(stream) => self.serve(stream),
                Err(e) => crate::debug!("admin: accept failed: {e}"),
            }
        }
    }

    fn serve(&self, mut stream: TcpStream) {
        let deadline = Instant::now() + DEADLINE;
        // Timeouts bound a stuck admin client; failing to set them only loses that bound.
        let _ = stream.set_read_timeout(Some(DEADLINE));
        let _ = stream.set_write_timeout(Some(DEADLINE));
        let (reply, refused) = match http::read_request(&mut Until { stream: &mut stream, deadline }, deadline) {
            Ok(req) => (self.route(&req), false),
            Err(e) => (http::response("400 Bad Request", "text/plain", format!("{e}\n").as_bytes()), true),
        };
        if let Err(e) = stream.write_all(&reply) {
            crate::debug!("admin: write failed: {e}");
        }
        let _ = stream.shutdown(Shutdown::Write); // the client may be gone already
        if refused {
            linger(&mut stream, deadline);
        }
    }

    fn route(&self, req: &Request) -> Vec<u8> {
        let path = req.path.split('?').next().unwrap_or("");
        let text = |status: &str, body: String| http::response(status, "text/plain; charset=utf-8", body.as_bytes());
        match (req.method.as_str(), path) {
            ("GET", "/status") => {
                let doc = with_shared(status::json(&self.dispatcher.view()), self.shared.as_deref());
                http::response("200 OK", "application/json", doc.as_bytes())
            }
            ("GET", "/worker/stats") => {
                http::response("200 OK", "application/json", status::worker_stats(&self.dispatcher.view()).as_bytes())
            }
            ("GET", "/metrics") => {
                let mut text = metrics::text(&self.dispatcher.view());
                if let Some(s) = self.shared.as_deref() {
                    text.push_str(&metrics::shared_text(&s.view()));
                }
                http::response("200 OK", metrics::CONTENT_TYPE, text.as_bytes())
            }
            ("GET", "/") => http::response("200 OK", dashboard::CONTENT_TYPE, dashboard::PAGE.as_bytes()),
            ("PUT", "/rate") => {
                let body = String::from_utf8_lossy(&req.body).trim().to_string();
                match config::parse_rate(&body) {
                    Ok(rate) => {
                        self.dispatcher.set_rate(rate);
                        crate::info!("admin: rate set to {}", rate.map_or("off".into(), |r| r.to_string()));
                        text("200 OK", format!("rate {}\n", rate.map_or("off".into(), |r| r.to_string())))
                    }
                    Err(e) => text("400 Bad Request", format!("rate '{}': {e}\n", shown(&body))),
                }
            }
            ("PUT", "/limit") => {
                let body = String::from_utf8_lossy(&req.body).trim().to_string();
                match config::parse_limit(&body) {
                    Ok(n) => {
                        // The pool only learns the new bound here; it starts threads as
                        // clients need them (see `worker::Pool`), not one per slot now.
                        if let Err(e) = self.pool.ensure(n) {
                            return text("500 Internal Server Error", format!("cannot start a worker: {e}\n"));
                        }
                        self.dispatcher.set_limit(n);
                        crate::info!("admin: limit set to {n}");
                        text("200 OK", format!("limit {n}\n"))
                    }
                    Err(e) => text("400 Bad Request", format!("limit '{}': {e}\n", shown(&body))),
                }
            }
            (_, "/status" | "/worker/stats" | "/metrics" | "/" | "/rate" | "/limit") => {
                text("405 Method Not Allowed", format!("{} {path}: method not allowed\n", req.method))
            }
            _ => text("404 Not Found", format!("{path}: not found\n")),
        }
    }
}

/// The admin client's stream with every read bounded by what is left of the request's
/// deadline, not by a fresh 2 s each: otherwise a client sending a byte just before each
/// timeout holds the admin for one more timeout past the deadline. See: issue #13, hostile
/// admin input.
struct Until<'a> {
    stream: &'a mut TcpStream,
    deadline: Instant,
}

impl Read for Until<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(std::io::ErrorKind::TimedOut.into());
        }
        // Whole milliseconds, at least one: a zero timeout would mean "block forever".
        let left = Duration::from_millis(u64::try_from(left.as_millis()).unwrap_or(u64::MAX).max(1));
        self.stream.set_read_timeout(Some(left))?;
        self.stream.read(buf)
    }
}

/// Reads and drops what a refused client still sends, until its EOF or `deadline`, so that
/// closing with unread bytes does not reset the connection under the answer just written.
fn linger(stream: &mut TcpStream, deadline: Instant) {
    let mut buf = [0u8; 16 * 1024];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        // A zero timeout would mean "block forever"; a failure to set it ends the linger.
        if left.is_zero() || stream.set_read_timeout(Some(left)).is_err() {
            return;
        }
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

/// Adds the shared limit's object to a `/status` document as its last member, `shared`
/// (kept apart from `status::json` so that the document's own shape stays its business).
fn with_shared(mut doc: String, shared: Option<&crate::balancer::shared::Inner>) -> String {
    let Some(s) = shared else { return doc };
    let Some(end) = doc.rfind('}') else { return doc };
    let tail = doc.split_off(end);
    doc.push_str(",\"shared\":");
    doc.push_str(&s.view().json());
    doc.push_str(&tail);
    doc
}
