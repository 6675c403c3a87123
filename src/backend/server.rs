//! The process: listening socket, the pool of workers, signals and shutdown.
//!
//! Threads: the main thread binds, starts `--threads` [`Worker`]s, then blocks reading the
//! signal pipe of `signal-hook` (no polling). Each worker blocks in `accept()` on the one shared
//! listener (the kernel hands each connection to one waiting thread) and serves that
//! connection to its end, then accepts again. Workers block SIGTERM/SIGINT, so the signal
//! handler always runs on the main thread and never interrupts a worker's system call.
//!
//! Connections are persistent (HTTP/1.1 keep-alive, see `conn`) unless `--close-each`: a
//! worker serves its connection's requests in order until the client closes, asks to close,
//! or stays idle for `--keep-alive-timeout`. So an idle keep-alive connection holds a worker:
//! `--threads` must exceed the connections a client keeps open (the balancer keeps at most its
//! limit per server, plus one probe connection).
//!
//! Shutdown: on SIGTERM or SIGINT the main thread sets `stopping`, closes the write end of the
//! stop pipe and shuts the listener down; on Linux that wakes every thread blocked in
//! `accept()` (which then fails with EINVAL) and makes later connects fail, so no new
//! connection is taken. The closed pipe reads as EOF, which wakes every worker waiting for the
//! next request of an idle connection: those close at once. Each worker finishes the request
//! it holds (its reply says `Connection: close`), sees `stopping`, and returns, dropping its
//! `done` sender; the main thread waits on the receiving end until every sender is gone or
//! [`DRAIN`] has passed, then returns.
//!
//! SIGPIPE: the Rust runtime sets it to SIG_IGN before `main`, and std's socket writes use
//! MSG_NOSIGNAL, so a client that resets mid-reply is an EPIPE/ECONNRESET error on one
//! connection, never the end of the process (tested by resetting a 100 MB download).
//!
//! Shared state is [`Shared`], behind `Arc`: read-only configuration plus the atomic and
//! mutex-guarded counts of [`Counters`] (see its locking notes).

use super::args::{Config, Persistence};
use super::counters::Counters;
use super::delay::Dice;
use super::error::Error;
use super::handler;
use nix::sys::signal::{SigSet, Signal};
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;
use std::io;
use std::net::{Shutdown, TcpListener};
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How long requests in progress may take to finish after SIGTERM/SIGINT.
pub const DRAIN: Duration = Duration::from_secs(2);

/// What every worker shares.
#[derive(Debug)]
pub struct Shared {
    /// The `Server-Name` of every reply; printable ASCII (checked by `args`).
    pub name: String,
    /// The directory whose files are served.
    pub dir: PathBuf,
    pub counters: Counters,
    pub dice: Dice,
    /// Numbers the temporary files of uploads; only incremented.
    pub uploads: AtomicU64,
    /// Set once, by the main thread, when shutdown begins; never cleared.
    pub stopping: AtomicBool,
    /// The read end of the stop pipe: readable (EOF) once shutdown began, since the main
    /// thread then drops the only write end. Idle connections wait on it beside their socket.
    pub stop: OwnedFd,
    /// Keep-alive (and its idle timeout) or one request per connection.
    pub persistence: Persistence,
}

/// A worker thread: accepts and serves one connection at a time until shutdown.
struct Worker {
    id: usize,
    listener: Arc<TcpListener>,
    shared: Arc<Shared>,
    /// Dropped when the worker ends, however it ends; the main thread counts them.
    _done: mpsc::Sender<()>,
}

impl Worker {
    fn run(self) {
        // The main thread takes the signals (module notes); failing to block them here would
        // only mean a worker's syscall may see EINTR, which std retries.
        if let Err(e) = termination_signals().thread_block() {
            crate::warn!("internal: worker {}: blocking signals: {e}", self.id);
        }
        loop {
            match self.listener.accept() {
                Ok((stream, _)) => {
                    // A reply goes out as a head and a body in two writes: with Nagle on, the
                    // body of a kept connection's next reply waits for the peer's delayed
                    // ACK of the head (40 ms). Latency only, so a refusal is not fatal.
                    let _ = stream.set_nodelay(true);
                    // A bug in one request must not shrink the pool: catch it, log it, go on.
                    // The in-flight guard unwinds with it, so the counts stay exact.
                    let served =
                        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| handler::serve(stream, &self.shared)));
                    if served.is_err() {
                        crate::error!("internal: worker {}: a request panicked", self.id);
                    }
                }
                // After shutdown began, accept() fails (EINVAL): that is our cue, not an error.
                Err(_) if self.shared.stopping.load(Ordering::SeqCst) => return,
                Err(e) => self.accept_failed(e),
            }
            if self.shared.stopping.load(Ordering::SeqCst) {
                return;
            }
        }
    }

    /// Connection-level errors (the client left the backlog) are nothing; running out of
    /// descriptors or memory is waited out briefly instead of spinning on the same error.
    fn accept_failed(&self, e: io::Error) {
        match e.raw_os_error() {
            Some(libc::ECONNABORTED | libc::EPROTO | libc::EPERM) => {
                crate::debug!("client: accept: {e}")
            }
            _ => {
                crate::warn!("internal: worker {}: accept: {e}; retrying in 100 ms", self.id);
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

fn termination_signals() -> SigSet {
    let mut set = SigSet::empty();
    set.add(Signal::SIGTERM);
    set.add(Signal::SIGINT);
    set
}

/// Binds the listener (`common::args::listen`: SO_REUSEADDR, so a restart does not wait out
/// TIME_WAIT; a blocking socket, since every worker blocks in `accept`).
fn bind(config: &Config) -> Result<TcpListener, Error> {
    crate::common::args::listen(config.addr, Default::default()).map_err(|e| Error::Listen {
        addr: e.addr,
        what: e.step,
        source: e.source,
    })
}

/// Arranges SIGTERM on the parent's death (`--die-with-parent`), then closes the race where the
/// parent died before that: if we have already been re-parented, act as if signalled. `ppid` is
/// the parent pid read as the first thing in `main`. Returns false when we must stop.
pub fn die_with_parent(ppid: nix::unistd::Pid) -> Result<bool, Error> {
    nix::sys::prctl::set_pdeathsig(Signal::SIGTERM).map_err(|e| Error::DieWithParent(io::Error::from(e)))?;
    Ok(nix::unistd::getppid() == ppid)
}

/// Runs the server until SIGTERM or SIGINT. Logs `listening on ADDR` once ready.
pub fn run(config: Config) -> Result<(), Error> {
    // Registered before the listening line, so a signal sent as soon as a test sees it is
    // handled (and so SIGTERM from --die-with-parent exits cleanly).
    let mut signals = Signals::new([SIGTERM, SIGINT]).map_err(Error::Signals)?;
    let listener = Arc::new(bind(&config)?);
    let local = listener.local_addr().map_err(|source| Error::Listen {
        addr: config.addr,
        what: "read the bound address of",
        source,
    })?;
    let name = config.name.clone().unwrap_or_else(|| format!("backend-{}", local.port()));
    let (stop, stop_writer) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| Error::StopPipe(io::Error::from(e)))?;
    let shared = Arc::new(Shared {
        name,
        dir: config.dir.clone(),
        counters: Counters::new(config.errors, config.entries),
        dice: Dice::new(config.seed, config.delay_ms, config.avg_delay_ms, config.fail_rate),
        uploads: AtomicU64::new(0),
        stopping: AtomicBool::new(false),
        stop,
        persistence: config.persistence,
    });

    let (done_tx, done_rx) = mpsc::channel::<()>();
    for id in 0..config.threads {
        let worker =
            Worker { id, listener: Arc::clone(&listener), shared: Arc::clone(&shared), _done: done_tx.clone() };
        std::thread::Builder::new().name(format!("worker-{id}")).spawn(move || worker.run()).map_err(Error::Spawn)?;
    }
    drop(done_tx); // only the workers hold senders now

    let persistence = match config.persistence {
        Persistence::KeepAlive(idle) => format!("keep-alive {idle:?}"),
        Persistence::CloseEach => "one request per connection".to_string(),
    };
    crate::info!(
        "listening on {local} as {} ({} threads, dir {}, seed {}, {persistence})",
        shared.name,
        config.threads,
        config.dir.display(),
        config.seed
    );

    // `forever()` ends only if the signal pipe is closed, which nothing here does.
    if let Some(sig) = signals.forever().next() {
        let name = if sig == SIGTERM { "SIGTERM" } else { "SIGINT" };
        crate::info!("{name}: no new connections; finishing requests in progress");
    }
    shared.stopping.store(true, Ordering::SeqCst);
    drop(stop_writer); // wakes the workers waiting on idle connections (module notes)
    if let Err(e) = socket2::SockRef::from(&*listener).shutdown(Shutdown::Both) {
        crate::warn!("internal: shutting the listener down: {e}");
    }

    let deadline = Instant::now() + DRAIN;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match done_rx.recv_timeout(left) {
            Ok(()) => {} // workers never send; only their drop matters
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                crate::info!("stopped");
                return Ok(());
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                let (current, _) = shared.counters.in_flight();
                crate::warn!("stopping with {current} requests unfinished after {DRAIN:?}");
                return Ok(());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_state_crosses_threads() {
        fn check<T: Send + Sync>() {}
        check::<Shared>();
    }
}
