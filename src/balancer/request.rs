//! A worker's turn with one request (http mode): from the ticket to the hand-back.
//!
//! The ticket holds a slot and a reserved server. The worker takes an idle connection to that
//! server from the pool, or connects (failing over to the next best server when the connect
//! fails, as in tcp mode), forwards the exchange (`exchange::forward`), records it, returns the
//! server connection to the pool when the response allows, releases the slot, and only then
//! hands the client back to the accepting thread, which parks it until its next request. So a
//! slot is held exactly while the servers work on one request of ours.
//!
//! A reused connection that fails before any response byte (the server closed it as the
//! request went out) is replaced by a new one and the request sent again, once: nothing of
//! the response had been seen, so the client cannot tell.

use crate::balancer::bridge::{self, Buffers, Progress, Timeouts};
use crate::balancer::config::CONNECT_TIMEOUT;
use crate::balancer::exchange::{self, Ending, Ends, Request, Upstream};
use crate::balancer::http;
use crate::balancer::park::BAD_REQUEST;
use crate::balancer::sched::{Dispatcher, Failover, Route};
use crate::balancer::shortage;
use crate::balancer::stats::Exchange;
use crate::balancer::worker::{connect, drain_server};
use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Instant;

/// A bad gateway: the server's response head was malformed or cut short.
pub const BAD_GATEWAY: &[u8] = b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";

/// What the client connection needs once its request is over.
#[derive(Debug)]
pub enum After {
    /// Park it for its next request; these bytes (maybe none) are its start.
    Park(Vec<u8>),
    /// Close it (after lingering, so no RST destroys what it was sent).
    Close,
    /// Answer it with this, then close it.
    Answer(&'static [u8]),
    /// Nothing more: both sides have ended (a tcp-mode bridge), or the client asked for the
    /// close and sent nothing more; dropping it closes it.
    Done,
}

/// Serves `req` from `client` on the route's server. Releases the route's slot before it
/// returns (the drop of `route`), and never holds the dispatcher's lock across I/O.
pub fn serve(
    dispatcher: &Arc<Dispatcher>,
    client: &TcpStream,
    peer: SocketAddr,
    req: Request,
    route: Route,
    buffers: &mut Buffers,
    progress: &mut Progress,
) -> After {
    // The worker's read buffer, kept from one request to the next (not allocated for each).
    let mut scratch = buffers.scratch(64 * 1024);
    let after = serve_with(dispatcher, client, peer, req, route, buffers, progress, &mut scratch);
    buffers.keep_scratch(scratch);
    after
}

#[allow(clippy::too_many_arguments)] // `serve`'s own, plus the buffer it lends
fn serve_with(
    dispatcher: &Arc<Dispatcher>,
    client: &TcpStream,
    peer: SocketAddr,
    req: Request,
    route: Route,
    buffers: &mut Buffers,
    progress: &mut Progress,
    scratch: &mut [u8],
) -> After {
    let Route { mut slot, server, config, mut stats, closed_gate } = route;
    let mut up = match Upstream::new(req) {
        Ok(up) => up,
        Err(why) => {
            crate::info!("client {peer}: bad request body ({why}); answering 400");
            return After::Answer(BAD_REQUEST);
        }
    };
    let t = Timeouts { client: config.client_timeout, server: config.server_timeout };
    let dispatched = Instant::now();
    let mut target = server;
    let mut fresh_only = false;
    // Our own shortage made this request wait for a descriptor (see `shortage`).
    let mut waited = false;
    loop {
        let Some(addr) = target else {
            crate::warn!("client {peer}: no server is up; answering 500");
            return After::Answer(http::INTERNAL_ERROR);
        };
        let pooled = if fresh_only { None } else { dispatcher.reuse.take(addr) };
        let reused = pooled.is_some();
        let token = pooled.as_ref().map(|(_, tok)| *tok);
        let pooled = pooled.map(|(conn, _)| conn);
        let conn = match pooled.map_or_else(|| connect(addr, CONNECT_TIMEOUT), Ok) {
            Ok(conn) => {
                if waited {
                    dispatcher.shortage.relieved();
                    waited = false;
                }
                conn
            }
            Err(e) if shortage::is_ours(&e) => {
                // Out of descriptors: our fault, not the server's (as in tcp mode): keep the
                // slot, wait for a freed descriptor, give up at the queue timeout.
                dispatcher.shortage.refused(&format!("connect to {addr}"), &e);
                waited = true;
                if !dispatcher.shortage.wait(dispatched + config.queue_timeout) {
                    crate::warn!("client {peer}: no descriptor to reach a server in time; answering 503");
                    return After::Answer(http::UNAVAILABLE);
                }
                continue;
            }
            Err(e) => {
                let reason = format!("connect failed: {e}");
                crate::warn!("server: {addr} is down: {reason}; failing over");
                match dispatcher.failover(&mut slot, &reason) {
                    Failover::Retry(next, next_stats) => {
                        target = Some(next);
                        stats = Some(next_stats);
                    }
                    Failover::NoneLeft => target = None,
                }
                continue;
            }
        };
        crate::debug!("client {peer}: request to server {addr}{}", if reused { " (reused connection)" } else { "" });
        let mut replying = || {
            if closed_gate {
                dispatcher.reply_started(addr);
            }
        };
        let ends = Ends { client, server: &conn, reused };
        let cuts = dispatcher.cuts.cuts();
        let ending = {
            // Registered for a shared limit's cut while the server works on it (shared/cut.rs).
            let _cut = dispatcher.cuts.hold(&conn);
            exchange::forward(ends, &mut up, t, progress, &mut replying, scratch)
        };
        if let Ending::Retry(why) = &ending
            && dispatcher.cuts.cuts() == cuts
            && !fresh_only
            && up.rewind()
        {
            crate::debug!("server {addr}: pooled connection failed ({why}); sending again on a new one");
            fresh_only = true;
            *progress = Progress::default();
            continue;
        }
        let record = |p: &Progress| {
            if let Some(s) = stats.as_ref() {
                s.record(&Exchange {
                    status: p.status,
                    bytes_to_server: p.to_server,
                    bytes_to_client: p.to_client,
                    response_time: p.server_done.unwrap_or_else(Instant::now) - dispatched,
                });
            }
        };
        let nothing_sent = progress.to_client == 0;
        // A second failure of the same kind is the server's: nothing came back.
        let ending = match ending {
            Ending::Retry(why) => Ending::Server { why, bad_gateway: true },
            other => other,
        };
        return match ending {
            Ending::Complete { client_next, server_keep, unsent } => {
                if server_keep {
                    dispatcher.reuse.put(addr, conn, token, config.server_idle_max, config.server_idle_timeout);
                } else {
                    drop(conn);
                }
                // The slot is held until the client has the whole response: until then the
                // request is ours, and its bytes are still in our memory.
                let flushed = write_all_within(client, &unsent, Instant::now() + t.client);
                if flushed.is_ok() {
                    progress.to_client += unsent.len() as u64;
                }
                record(progress);
                drop(slot);
                match (flushed, client_next) {
                    (Ok(()), Some(next)) if !dispatcher.is_draining() => After::Park(next),
                    (Err(e), _) => {
                        crate::info!("client {peer}: {e} while taking its response; closing");
                        After::Close
                    }
                    // It asked for the close and has nothing more on the way: closing now
                    // sends a FIN after the response, never an RST, so it needs no lingering.
                    (Ok(()), _) if up.last_of_connection() && nothing_unread(client) => After::Done,
                    _ => After::Close,
                }
            }
            Ending::Tunnel { to_server, to_client } => {
                let end = {
                    let _cut = dispatcher.cuts.hold(&conn);
                    match write_all_within(client, &to_client, Instant::now() + t.client) {
                        Ok(()) => {
                            progress.to_client += to_client.len() as u64;
                            tunnel(client, &conn, &to_server, buffers, t, progress)
                        }
                        Err(e) => bridge::End::Client(e),
                    }
                };
                record(progress);
                drop(slot);
                crate::debug!("client {peer}: tunnel through {addr} ended: {end:?}");
                After::Close
            }
            Ending::Server { why, bad_gateway } => {
                record(progress);
                drop(conn);
                dispatcher.count_error(addr);
                drop(slot);
                crate::warn!("server: {addr}: {why} (client {peer})");
                match (nothing_sent, bad_gateway) {
                    (true, true) => After::Answer(BAD_GATEWAY),
                    (true, false) => After::Answer(http::INTERNAL_ERROR),
                    (false, _) => After::Close,
                }
            }
            Ending::BadRequest(why) => {
                crate::info!("client {peer}: bad request body ({why})");
                drain_server(&conn, Instant::now() + t.server);
                drop(slot);
                if nothing_sent { After::Answer(BAD_REQUEST) } else { After::Close }
            }
            Ending::Client(why) => {
                // The server may still be working on it: the slot is held until it is done,
                // so the servers never see more than N requests at once.
                drain_server(&conn, Instant::now() + t.server);
                record(progress);
                drop(slot);
                crate::info!("client {peer}: {why}; closing");
                After::Close
            }
            Ending::Retry(_) => After::Close, // turned into `Server` above
        };
    }
}

/// Bridges the rest of the connection's life after a 101 or a 2xx to CONNECT: first the bytes
/// the client sent early, then both ways until both sides end.
fn tunnel(
    client: &TcpStream,
    server: &TcpStream,
    early: &[u8],
    buffers: &mut Buffers,
    t: Timeouts,
    progress: &mut Progress,
) -> bridge::End {
    if !early.is_empty() {
        if let Err(e) = write_all_within(server, early, Instant::now() + t.server) {
            return bridge::End::Server(e);
        }
        progress.to_server += early.len() as u64;
    }
    bridge::run(client, server, buffers, t, progress, &mut || {})
}

/// The client has sent nothing we have not read (no EOF either): a close now cannot turn into
/// an RST that would destroy the response in its receive queue.
fn nothing_unread(client: &TcpStream) -> bool {
    let mut byte = [0u8; 1];
    match client.peek(&mut byte) {
        Ok(0) => true, // it closed already: nothing after the FIN
        Ok(_) => false,
        Err(e) => e.kind() == std::io::ErrorKind::WouldBlock,
    }
}

/// Writes all of `bytes` to a non-blocking socket by `deadline`.
fn write_all_within(sock: &TcpStream, mut bytes: &[u8], deadline: Instant) -> std::io::Result<()> {
    use nix::poll::{PollFd, PollFlags, poll};
    use std::os::fd::AsFd;
    while !bytes.is_empty() {
        match (&*sock).write(bytes) {
            Ok(n) => bytes = &bytes[n..],
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(std::io::ErrorKind::TimedOut.into());
                }
                let mut fds = [PollFd::new(sock.as_fd(), PollFlags::POLLOUT)];
                let _ = poll(&mut fds, bridge::poll_timeout(left)); // the write says what happened
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
