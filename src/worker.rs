//! Worker threads: each takes one ticket at a time from the dispatcher, connects to the
//! reserved server (failing over to the next best when the connect fails), bridges, reports
//! the exchange, and releases its slot.
//!
//! Self-healing: the work on a ticket runs under `catch_unwind`. If it panics, the slot is
//! released by `Slot`'s drop, the client gets the 500 unless a byte already reached it, the
//! panic is logged with its message, and the thread is replaced by a fresh one (its pipes may
//! hold stray bytes, so they are not reused).

use crate::accept::Closer;
use crate::bridge::{self, End, Pipes, Progress, Timeouts};
use crate::config::CONNECT_TIMEOUT;
use crate::http;
use crate::sched::{Dispatcher, Failover, Ticket};
use crate::stats::Exchange;
use parking_lot::Mutex;
use std::net::{SocketAddr, TcpStream};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::time::Instant;

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
    fault: crate::worker::fault::Fault,
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
    std::thread::Builder::new().name("worker".into()).spawn(move || Worker { shared, pipes: None }.run()).map(drop)
}

struct Worker {
    shared: Arc<Shared>,
    pipes: Option<Pipes>,
}

impl Worker {
    fn run(mut self) {
        while let Some(ticket) = self.shared.dispatcher.take() {
            let mut progress = Progress::default();
            let client = match ticket.job.client.try_clone() {
                Ok(c) => c,
                Err(e) => {
                    crate::error!("internal: cannot duplicate a client socket: {e}");
                    continue;
                }
            };
            let outcome = catch_unwind(AssertUnwindSafe(|| self.serve(ticket, &mut progress)));
            if let Err(panic) = outcome {
                let msg = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "(no message)".into());
                crate::error!("internal: worker panicked: {msg}; replacing it");
                if progress.to_client == 0 {
                    self.shared.closer.answer(client, http::INTERNAL_ERROR);
                }
                // The ticket (and its slot) was dropped while unwinding; a new thread takes
                // this one's place with fresh pipes.
                if let Err(e) = spawn(Arc::clone(&self.shared)) {
                    crate::error!("internal: cannot start a replacement worker: {e}");
                }
                return;
            }
        }
    }

    fn serve(&mut self, ticket: Ticket, progress: &mut Progress) {
        let Ticket { job, mut slot, server, config, mut stats } = ticket;
        #[cfg(feature = "fault-injection")]
        self.shared.fault.maybe_panic();
        let dispatched = Instant::now();
        let mut target = server;
        loop {
            let Some(addr) = target else {
                crate::warn!("client {}: no server is up; answering 500", job.peer);
                self.shared.closer.answer(job.client, http::INTERNAL_ERROR);
                return;
            };
            match TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT) {
                Ok(conn) => {
                    crate::debug!("client {}: to server {addr}", job.peer);
                    let _ = conn.set_nodelay(true); // latency only; the bridge works without it
                    let end = self.bridge(&job.client, &conn, &config, progress);
                    let exchange = Exchange {
                        status: progress.status,
                        bytes_to_server: progress.to_server,
                        bytes_to_client: progress.to_client,
                        response_time: progress.server_done.unwrap_or_else(Instant::now) - dispatched,
                    };
                    if let Some(s) = stats.as_ref() {
                        s.record(&exchange);
                    }
                    self.finish(job.client, conn, addr, end, progress, job.peer);
                    return;
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

    fn bridge(
        &mut self,
        client: &TcpStream,
        server: &TcpStream,
        config: &crate::config::Config,
        p: &mut Progress,
    ) -> End {
        let pipes = match self.pipes.take() {
            Some(p) => p,
            None => match Pipes::new() {
                Ok(p) => p,
                Err(e) => return End::Internal(e),
            },
        };
        let t = Timeouts { client: config.client_timeout, server: config.server_timeout };
        let end = bridge::run(client, server, &pipes, t, p);
        if matches!(end, End::Done) {
            self.pipes = Some(pipes); // empty again: reuse them
        }
        end
    }

    /// Logs how a bridge ended, counts server errors, and answers 500 where the client has
    /// had nothing yet.
    fn finish(&self, client: TcpStream, server: TcpStream, addr: SocketAddr, end: End, p: &Progress, peer: SocketAddr) {
        if matches!(end, End::Client(_)) && p.server_done.is_none() {
            // The client left, but the server may still be working for it: keep the slot
            // until the server has finished, so it never holds more than N jobs at once.
            // See: issue #4 (the bounds are seen from the servers' side).
            let timeout = self.shared.dispatcher.config().server_timeout;
            drain_server(&server, Instant::now() + timeout);
        }
        drop(server);
        let nothing_sent = p.to_client == 0;
        match end {
            End::Done => {
                crate::debug!("client {peer}: bridged to {addr}: {} bytes up, {} down", p.to_server, p.to_client)
            }
            End::ClientTimeout => crate::info!("client {peer}: idle timeout; closing"),
            End::ServerTimeout => {
                crate::warn!("server: {addr} sent nothing in time for client {peer}");
                self.shared.dispatcher.count_error(addr);
            }
            End::Client(ref e) => crate::info!("client {peer}: {e}; closing"),
            End::Server(ref e) => {
                crate::warn!("server: {addr}: {e} (client {peer})");
                self.shared.dispatcher.count_error(addr);
            }
            End::Internal(ref e) => crate::error!("internal: bridge {peer} -> {addr}: {e}"),
        }
        let failed = matches!(end, End::ServerTimeout | End::Server(_) | End::Internal(_));
        if failed && nothing_sent {
            self.shared.closer.answer(client, http::INTERNAL_ERROR);
        }
        // Otherwise dropping `client` closes it: after Done both sides are finished, after a
        // failure mid-reply closing is the only signal left.
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
