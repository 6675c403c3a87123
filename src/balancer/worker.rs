//! Worker threads: each takes one ticket at a time from the dispatcher, connects to the
//! reserved server (failing over to the next best when the connect fails), bridges, reports
//! the exchange, and releases its slot.
//!
//! Self-healing: the work on a ticket runs under `catch_unwind`. If it panics, the slot is
//! released by `Slot`'s drop, the client gets the 500 unless a byte already reached it, the
//! panic is logged with its message, and the thread is replaced by a fresh one (its pipes may
//! hold stray bytes, so they are not reused).

use crate::balancer::accept::Closer;
use crate::balancer::bridge::{self, Buffers, End, Progress, Timeouts};
use crate::balancer::config::CONNECT_TIMEOUT;
use crate::balancer::http;
use crate::balancer::sched::{Dispatcher, Failover, Job, Route, Slot, Ticket};
use crate::balancer::stats::Exchange;
use nix::poll::{PollFd, PollFlags, poll};
use parking_lot::Mutex;
use socket2::{Domain, Socket, Type};
use std::io;
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsFd;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The worker threads, grown on demand (a raised limit needs more of them).
pub struct Pool {
    shared: Arc<Shared>,
}

struct Shared {
    dispatcher: Arc<Dispatcher>,
    closer: Arc<Closer>,
    /// Threads started so far (never decreases; a replaced thread is counted once).
    started: Mutex<usize>,
    #[cfg(feature = "fault-injection")]
    fault: crate::balancer::worker::fault::Fault,
}

impl Pool {
    pub fn new(dispatcher: Arc<Dispatcher>, closer: Arc<Closer>) -> Pool {
        Pool {
            shared: Arc::new(Shared {
                dispatcher,
                closer,
                started: Mutex::new(0),
                #[cfg(feature = "fault-injection")]
                fault: fault::Fault::from_env(),
            }),
        }
    }

    /// Makes sure at least `n` workers exist. Takes the pool's count lock briefly.
    pub fn ensure(&self, n: usize) -> std::io::Result<()> {
        let mut started = self.shared.started.lock();
        while *started < n {
            spawn(Arc::clone(&self.shared))?;
            *started += 1;
        }
        Ok(())
    }
}

fn spawn(shared: Arc<Shared>) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("worker".into())
        .spawn(move || Worker { shared, buffers: Buffers::default() }.run())
        .map(drop)
}

struct Worker {
    shared: Arc<Shared>,
    buffers: Buffers,
}

impl Worker {
    fn run(mut self) {
        while let Some(ticket) = self.shared.dispatcher.take() {
            let Ticket { job: Job { client, peer }, route } = ticket;
            let mut progress = Progress::default();
            // The client stays out here, so that after a panic it can still be answered; the
            // route (with the slot) goes in, so that unwinding releases the slot.
            let outcome = catch_unwind(AssertUnwindSafe(|| self.serve(&client, peer, route, &mut progress)));
            match outcome {
                Ok(Some(reply)) => self.shared.closer.answer(client, reply),
                Ok(None) => {} // dropping `client` closes it: the bridge is over
                Err(panic) => {
                    let msg = panic
                        .downcast_ref::<&str>()
                        .map(|s| s.to_string())
                        .or_else(|| panic.downcast_ref::<String>().cloned())
                        .unwrap_or_else(|| "(no message)".into());
                    crate::error!("internal: worker panicked: {msg}; replacing it");
                    if progress.to_client == 0 {
                        self.shared.closer.answer(client, http::INTERNAL_ERROR);
                    }
                    // The slot was released while unwinding; a new thread takes this one's
                    // place with fresh buffers (a pipe may hold stray bytes).
                    if let Err(e) = spawn(Arc::clone(&self.shared)) {
                        crate::error!("internal: cannot start a replacement worker: {e}");
                    }
                    return;
                }
            }
        }
    }

    /// Connects (failing over), bridges, and records the exchange. Returns the final answer
    /// the client still needs, if any.
    fn serve(
        &mut self,
        client: &TcpStream,
        peer: SocketAddr,
        route: Route,
        progress: &mut Progress,
    ) -> Option<&'static [u8]> {
        let Route { mut slot, server, config, mut stats, closed_gate } = route;
        #[cfg(feature = "fault-injection")]
        self.shared.fault.maybe_panic();
        let dispatched = Instant::now();
        let mut target = server;
        loop {
            let Some(addr) = target else {
                crate::warn!("client {peer}: no server is up; answering 500");
                return Some(http::INTERNAL_ERROR);
            };
            match connect(addr, CONNECT_TIMEOUT) {
                Ok(conn) => {
                    crate::debug!("client {peer}: to server {addr}");
                    let t = Timeouts { client: config.client_timeout, server: config.server_timeout };
                    let dispatcher = &self.shared.dispatcher;
                    let mut replying = || {
                        if closed_gate {
                            dispatcher.reply_started(addr);
                        }
                    };
                    // Registered for a shared limit's cut until the bridge ends (see shared/cut.rs).
                    let end = {
                        let _cut = dispatcher.cuts.hold(&conn);
                        bridge::run(client, &conn, &mut self.buffers, t, progress, &mut replying)
                    };
                    let exchange = Exchange {
                        status: progress.status,
                        bytes_to_server: progress.to_server,
                        bytes_to_client: progress.to_client,
                        response_time: progress.server_done.unwrap_or_else(Instant::now) - dispatched,
                    };
                    if let Some(s) = stats.as_ref() {
                        s.record(&exchange);
                    }
                    return self.finish(conn, slot, addr, end, progress, peer);
                }
                Err(e) => {
                    let reason = format!("connect failed: {e}");
                    crate::warn!("server: {addr} is down: {reason}; failing over");
                    match self.shared.dispatcher.failover(&mut slot, &reason) {
                        Failover::Retry(next, next_stats) => {
                            target = Some(next);
                            stats = Some(next_stats);
                        }
                        Failover::NoneLeft => target = None,
                    }
                }
            }
        }
    }

    /// Counts server errors, releases the slot, logs how the bridge ended, and says whether
    /// the client still needs the 500 (it has had nothing yet). The slot goes before the log
    /// line, so that a logged end means the slot is free.
    fn finish(
        &self,
        server: TcpStream,
        slot: Slot,
        addr: SocketAddr,
        end: End,
        p: &Progress,
        peer: SocketAddr,
    ) -> Option<&'static [u8]> {
        if matches!(end, End::Client(_)) && p.server_done.is_none() {
            // The client left, but the server may still be working for it: keep the slot
            // until the server has finished, so it never holds more than N jobs at once.
            // See: issue #4 (the bounds are seen from the servers' side).
            let timeout = self.shared.dispatcher.config().server_timeout;
            drain_server(&server, Instant::now() + timeout);
        }
        drop(server);
        if matches!(end, End::ServerTimeout | End::Server(_)) {
            self.shared.dispatcher.count_error(addr);
        }
        drop(slot);
        let nothing_sent = p.to_client == 0;
        match end {
            End::Done => {
                crate::debug!("client {peer}: bridged to {addr}: {} bytes up, {} down", p.to_server, p.to_client)
            }
            End::ClientTimeout => crate::info!("client {peer}: idle timeout; closing"),
            End::ServerTimeout => crate::warn!("server: {addr} sent nothing in time for client {peer}"),
            End::Client(ref e) => crate::info!("client {peer}: {e}; closing"),
            End::Server(ref e) => crate::warn!("server: {addr}: {e} (client {peer})"),
            End::Internal(ref e) => crate::error!("internal: bridge {peer} -> {addr}: {e}"),
        }
        let failed = matches!(end, End::ServerTimeout | End::Server(_) | End::Internal(_));
        // Otherwise the client is just closed: after Done both sides are finished, after a
        // failure mid-reply closing is the only signal left.
        (failed && nothing_sent).then_some(http::INTERNAL_ERROR)
    }
}

/// Connects to `addr` within `timeout` on a socket that is non-blocking from the start (the
/// bridge wants it so), with Nagle off: the bridge forwards what it has at once.
fn connect(addr: SocketAddr, timeout: Duration) -> io::Result<TcpStream> {
    let sock = Socket::new(Domain::for_address(addr), Type::STREAM.nonblocking().cloexec(), None)?;
    match sock.connect(&addr.into()) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => wait_connected(&sock, Instant::now() + timeout)?,
        Err(e) => return Err(e),
    }
    let _ = sock.set_tcp_nodelay(true); // latency only; the bridge works without it
    Ok(sock.into())
}

/// Waits for a non-blocking connect to finish, and says how it went.
fn wait_connected(sock: &Socket, deadline: Instant) -> io::Result<()> {
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let mut fds = [PollFd::new(sock.as_fd(), PollFlags::POLLOUT)];
        match poll(&mut fds, bridge::poll_timeout(left)) {
            Ok(0) if left.is_zero() => return Err(io::Error::new(io::ErrorKind::TimedOut, "timed out")),
            Ok(0) | Err(nix::errno::Errno::EINTR) => continue,
            Ok(_) => {
                let failed = fds[0].revents().is_some_and(|r| r.intersects(PollFlags::POLLERR | PollFlags::POLLHUP));
                if !failed {
                    return Ok(()); // writable without error: connected (no getsockopt needed)
                }
                return Err(sock.take_error()?.unwrap_or_else(|| io::Error::other("connection failed")));
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// Reads and discards what the server still sends, until its EOF or `deadline`.
fn drain_server(server: &TcpStream, deadline: Instant) {
    use std::io::Read;
    let _ = server.set_nonblocking(false); // a failure leaves it non-blocking: the read then ends the drain
    let _ = server.shutdown(std::net::Shutdown::Write); // the request is complete or abandoned
    let mut buf = [0u8; 16 * 1024];
    loop {
        let Some(left) = deadline.checked_duration_since(Instant::now()).filter(|d| !d.is_zero()) else { return };
        if server.set_read_timeout(Some(left)).is_err() {
            return;
        }
        match (&*server).read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

#[cfg(feature = "fault-injection")]
pub mod fault {
    //! Test-only: `LB_FAULT_PANIC_AT=k` makes the worker serving the k-th ticket panic.
    use std::sync::atomic::{AtomicU64, Ordering};

    pub struct Fault {
        at: Option<u64>,
        seen: AtomicU64,
    }

    impl Fault {
        pub fn from_env() -> Fault {
            let at = std::env::var("LB_FAULT_PANIC_AT").ok().and_then(|v| v.parse().ok());
            Fault { at, seen: AtomicU64::new(0) }
        }

        pub fn maybe_panic(&self) {
            let n = self.seen.fetch_add(1, Ordering::Relaxed) + 1;
            if self.at == Some(n) {
                panic!("fault injection: ticket {n}");
            }
        }
    }
}
