//! Worker threads: each takes one ticket at a time from the dispatcher, connects to the
//! reserved server (failing over to the next best when the connect fails), bridges, reports
//! the exchange, and releases its slot.
//!
//! Threads are started as clients need them, not one per slot: see `Pool`.
//!
//! Self-healing: the work on a ticket runs under `catch_unwind`. If it panics, the slot is
//! released by `Slot`'s drop, the client gets the 500 unless a byte already reached it, the
//! panic is logged with its message, and the thread is replaced by a fresh one (its pipes may
//! hold stray bytes, so they are not reused). A panic anywhere else in a worker (say inside
//! `Dispatcher::take`) unwinds through the thread's `Life` guard, which logs it and starts the
//! replacement; a ticket it held is dropped on the way, which releases its slot. So every
//! worker death, wherever it happens, leaves the slots free and the pool's counts exact.

use crate::balancer::accept::Closer;
use crate::balancer::bridge::{self, Buffers, End, Progress, Timeouts};
use crate::balancer::config::{CONNECT_TIMEOUT, MAX_LIMIT};
use crate::balancer::http;
use crate::balancer::park::{Arrival, Lot, Turn};
use crate::balancer::request::After;
use crate::balancer::sched::{Dispatcher, Failover, Job, Pusher, Route, Slot, Ticket};
use crate::balancer::shortage;
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

/// The worker threads, started as clients need them.
///
/// # Lifecycle
///
/// A worker is *idle* from its start, and again after each ticket, until `Dispatcher::take`
/// hands it the next one; then it is *busy* until that ticket is done. `Counts` (one small
/// mutex, never taken with the dispatcher's lock held) says how many workers are alive and
/// idle, and the bound (`target`: the limit last given to `ensure`, at most `MAX_LIMIT`).
///
/// The rule: whoever leaves the pool with no idle worker starts one more, if fewer than
/// `target` are alive. A worker that takes a ticket and finds no other idle worker starts a
/// new one before it serves its client; `ensure` (startup, `PUT /limit`, a reload) starts one
/// when none is idle. So while fewer than `target` workers are alive, one of them waits in
/// `take`, and a connection that can be dispatched never waits for a thread: the pool is as
/// work-conserving as one thread per slot, yet starts only as many threads as there have been
/// clients bridged at once (at most `target`). A lowered limit stops no thread: the extra ones
/// wait in `take`, which the limit gates.
///
/// A thread that cannot be started is logged; the pool then serves with the workers it has,
/// and tries again on the next dispatch that leaves none idle.
pub struct Pool {
    shared: Arc<Shared>,
}

struct Shared {
    dispatcher: Arc<Dispatcher>,
    closer: Arc<Closer>,
    /// Where a keep-alive client waits for its next request (http mode).
    lot: Arc<Lot>,
    counts: Mutex<Counts>,
    #[cfg(feature = "fault-injection")]
    fault: crate::balancer::worker::fault::Fault,
}

/// The pool's counts; only changed under `Shared::counts`.
#[derive(Debug, Default)]
struct Counts {
    /// Worker threads alive (started and not yet ended).
    live: usize,
    /// Of those, the ones not serving a ticket; never above `live`.
    idle: usize,
    /// The limit last given to `ensure`, in `1..=MAX_LIMIT`; `live` grows only up to it.
    target: usize,
}

impl Pool {
    pub fn new(dispatcher: Arc<Dispatcher>, closer: Arc<Closer>, lot: Arc<Lot>) -> Pool {
        Pool {
            shared: Arc::new(Shared {
                dispatcher,
                closer,
                lot,
                counts: Mutex::new(Counts::default()),
                #[cfg(feature = "fault-injection")]
                fault: fault::Fault::from_env(),
            }),
        }
    }

    /// Sets the number of workers the pool may grow to (`n`, clamped to `1..=MAX_LIMIT`), and
    /// starts one if none is idle and there is room: at most one thread per call. Takes the
    /// pool's count lock briefly.
    pub fn ensure(&self, n: usize) -> io::Result<()> {
        let mut counts = self.shared.counts.lock();
        counts.target = n.clamp(1, MAX_LIMIT);
        if counts.idle == 0 && counts.live < counts.target {
            start(&self.shared, &mut counts)?;
        }
        Ok(())
    }
}

impl Shared {
    /// A worker has a ticket: it is busy now. If no worker is left idle, start another.
    fn busy(self: &Arc<Self>) {
        let mut counts = self.counts.lock();
        counts.idle -= 1;
        if counts.idle == 0
            && counts.live < counts.target
            && let Err(e) = start(self, &mut counts)
        {
            drop(counts);
            crate::error!("internal: cannot start a worker thread: {e}; serving with fewer");
        }
    }

    /// A worker is done with its ticket and goes back to `take`.
    fn idle(&self) {
        self.counts.lock().idle += 1;
    }

    /// Parks a keep-alive client whose response is complete (http mode), here on the worker:
    /// handing it to the accepting thread instead would cost that thread a wake-up per
    /// request. Bytes it sent early may make a whole next request, which queues at once.
    fn park(&self, client: TcpStream, peer: SocketAddr, next: Vec<u8>, registered: bool) {
        match self.lot.arrive(client, peer, next, Arrival::Served { registered }) {
            Turn::Queue(job) => {
                if let Err(job) = self.dispatcher.enqueue(job, Pusher::Worker) {
                    crate::warn!("client {peer}: waiting room full; answering 503");
                    self.closer.answer(job.client, http::UNAVAILABLE);
                }
            }
            Turn::Answer(stream, _, reply) => self.closer.answer(stream, reply),
            Turn::Closed | Turn::Parked => {}
        }
    }
}

/// Starts a worker thread, counted alive and idle. Called with the count lock held, so two
/// callers cannot both start the one thread that was missing.
fn start(shared: &Arc<Shared>, counts: &mut Counts) -> io::Result<()> {
    let worker_shared = Arc::clone(shared);
    std::thread::Builder::new()
        .name("worker".into())
        .spawn(move || {
            let life = Life { shared: Arc::clone(&worker_shared), busy: false, replace: false };
            Worker { shared: worker_shared, buffers: Buffers::default(), life }.run()
        })
        .map(drop)?;
    counts.live += 1;
    counts.idle += 1;
    Ok(())
}

/// Owned by each worker thread; its drop is the thread's end. A normal end (the dispatcher
/// stopped) leaves the pool; a death (a panic unwinding through the thread, or a caught panic
/// that retires the thread) starts a replacement in its place, counted idle.
struct Life {
    shared: Arc<Shared>,
    /// Serving a ticket (so not counted idle).
    busy: bool,
    /// Retire this thread and start a fresh one (set after a caught panic).
    replace: bool,
}

impl Drop for Life {
    fn drop(&mut self) {
        let died = std::thread::panicking();
        if died {
            // The panic hook has logged the message; a ticket held here was dropped while
            // unwinding, so its slot is free already.
            crate::error!("internal: a worker thread died outside a ticket; replacing it");
        }
        let mut counts = self.shared.counts.lock();
        // This thread is gone either way.
        counts.live -= 1;
        if !self.busy {
            counts.idle -= 1;
        }
        if !(died || self.replace) {
            return;
        }
        if let Err(e) = start(&self.shared, &mut counts) {
            drop(counts);
            crate::error!("internal: cannot start a replacement worker: {e}");
        }
    }
}

struct Worker {
    shared: Arc<Shared>,
    buffers: Buffers,
    life: Life,
}

impl Worker {
    fn run(mut self) {
        while let Some(ticket) = self.shared.dispatcher.take() {
            #[cfg(feature = "fault-injection")]
            self.shared.fault.maybe_die(); // outside catch_unwind: a death the guard must see
            self.shared.busy();
            self.life.busy = true;
            let Ticket { job: Job { client, peer, request, registered, .. }, route } = ticket;
            let mut progress = Progress::default();
            // The client stays out here, so that after a panic it can still be answered; the
            // route (with the slot) goes in, so that unwinding releases the slot.
            let outcome = catch_unwind(AssertUnwindSafe(|| match request {
                None => self.serve(&client, peer, route, &mut progress).map_or(After::Done, After::Answer),
                Some(req) => {
                    let d = &self.shared.dispatcher;
                    crate::balancer::request::serve(d, &client, peer, *req, route, &mut self.buffers, &mut progress)
                }
            }));
            match outcome {
                Ok(After::Answer(reply)) => self.shared.closer.answer(client, reply),
                Ok(After::Park(next)) => self.shared.park(client, peer, next, registered),
                Ok(After::Close) => self.shared.closer.linger(client),
                Ok(After::Done) => drop(client), // closes it: the bridge is over
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
                    // place with fresh buffers (a pipe may hold stray bytes): `Life`'s drop.
                    self.life.replace = true;
                    return;
                }
            }
            // This ticket's server socket is closed (and its client, unless it lingers):
            // whoever waits for a descriptor may try again.
            self.shared.dispatcher.shortage.freed();
            self.life.busy = false;
            self.shared.idle();
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
        // Our own shortage made this client wait for a descriptor (see `shortage`).
        let mut waited = false;
        loop {
            let Some(addr) = target else {
                crate::warn!("client {peer}: no server is up; answering 500");
                return Some(http::INTERNAL_ERROR);
            };
            match connect(addr, CONNECT_TIMEOUT) {
                Ok(conn) => {
                    if waited {
                        self.shared.dispatcher.shortage.relieved();
                    }
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
                Err(e) if shortage::is_ours(&e) => {
                    // Out of descriptors: our fault, not the server's. Keep it (and the slot),
                    // wait for a descriptor to be freed and try again; give up, as the waiting
                    // room would, at the queue timeout. See: issue 11 (defect 5).
                    let fds = &self.shared.dispatcher.shortage;
                    fds.refused(&format!("connect to {addr}"), &e);
                    waited = true;
                    if !fds.wait(dispatched + config.queue_timeout) {
                        crate::warn!("client {peer}: no descriptor to reach a server in time; answering 503");
                        return Some(http::UNAVAILABLE);
                    }
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
pub(crate) fn connect(addr: SocketAddr, timeout: Duration) -> io::Result<TcpStream> {
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
pub(crate) fn drain_server(server: &TcpStream, deadline: Instant) {
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
    //! Test-only: `LB_FAULT_PANIC_AT=k` makes the worker serving the k-th ticket panic (inside
    //! the per-ticket catch_unwind); `LB_FAULT_DIE_AT=k` makes the worker that took the k-th
    //! ticket panic outside it, as a panic inside `Dispatcher::take` would.
    use std::sync::atomic::{AtomicU64, Ordering};

    pub struct Fault {
        at: Option<u64>,
        seen: AtomicU64,
        die_at: Option<u64>,
        taken: AtomicU64,
    }

    impl Fault {
        pub fn from_env() -> Fault {
            let var = |name: &str| std::env::var(name).ok().and_then(|v| v.parse().ok());
            Fault {
                at: var("LB_FAULT_PANIC_AT"),
                seen: AtomicU64::new(0),
                die_at: var("LB_FAULT_DIE_AT"),
                taken: AtomicU64::new(0),
            }
        }

        pub fn maybe_die(&self) {
            let n = self.taken.fetch_add(1, Ordering::Relaxed) + 1;
            if self.die_at == Some(n) {
                panic!("fault injection: death after taking ticket {n}");
            }
        }

        pub fn maybe_panic(&self) {
            let n = self.seen.fetch_add(1, Ordering::Relaxed) + 1;
            if self.at == Some(n) {
                panic!("fault injection: ticket {n}");
            }
        }
    }
}
