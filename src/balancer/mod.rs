//! Builds a running balancer from its settings and runs it until a signal ends it: the one
//! place that knows every thread kind and how they are wired.
//!
//! Threads: the main thread accepts (`accept::Acceptor`), N workers bridge (`worker::Pool`),
//! one thread probes (`sched::ProbeThread`, running `health` rounds), one serves the admin endpoint (`admin::Admin`).

pub mod accept;
pub mod admin;
pub mod bridge;
pub mod check;
pub mod cli;
pub mod config;
pub mod exchange;
pub mod file;
pub mod gate;
pub mod health;
pub mod http;
pub mod park;
pub mod queue;
pub mod request;
pub mod reuse;
pub mod sched;
pub mod select;
pub mod shared;
pub mod shortage;
pub mod stats;
pub mod store;
pub mod supervisor;
pub mod watch;
pub mod worker;

use self::accept::{Acceptor, Closer, Signals};
use self::admin::Admin;
use self::cli::Args;
use self::config::{Config, Layer, Mode};
use self::park::Lot;
use self::sched::{Dispatcher, ProbeThread};
use self::stats::Stats;
use self::store::{Store, spawn_writer};
use self::supervisor::{Supervisor, backend_exe};
use self::watch::Watch;
use self::worker::Pool;
use crate::common::args::{self as common_args, FdLimit, ListenOptions};
use crate::common::sys::Waker;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Why the balancer could not run: bad settings (exit 2) or a runtime failure (exit 1).
#[derive(Debug)]
pub enum RunError {
    Usage(String),
    /// A bad config file: the message names the file, the line and the key (exit 2).
    File(String),
    Runtime(String),
}

impl RunError {
    pub fn exit_code(&self) -> i32 {
        match self {
            RunError::Usage(_) | RunError::File(_) => 2,
            RunError::Runtime(_) => 1,
        }
    }
}

/// The settings from the command line over the config file, if any.
pub fn load_config(args_layer: &Layer, file: Option<&Path>) -> Result<Config, RunError> {
    let file_layer = match file {
        Some(path) => self::file::load(path).map_err(|e| RunError::File(e.to_string()))?,
        None => Layer::default(),
    };
    Config::build(args_layer.clone().over(file_layer)).map_err(RunError::Usage)
}

pub fn run(args: Args) -> Result<(), RunError> {
    let config = Arc::new(load_config(&args.layer, args.config_file.as_deref())?);
    check_fd_limit(&config);
    let listeners =
        config.listen.iter().map(|a| bind(*a, !config.server_speaks_first)).collect::<Result<Vec<_>, _>>()?;
    let admin_listener = match config.admin {
        Some(a) => Some(bind(a, false)?),
        None => None,
    };

    // The store is opened before anything is spawned: a bad or locked file stops the start
    // with the file untouched and nothing left behind.
    let stats = Arc::new(Stats::default());
    let writer = match config.stats_file.as_deref() {
        Some(path) => {
            let store = Store::open(path).map_err(|e| RunError::Runtime(e.to_string()))?;
            let n = store.restore(&stats).map_err(|e| RunError::Runtime(e.to_string()))?;
            crate::info!("stats: {} loaded ({n} servers)", store.path().display());
            Some(spawn_writer(store, Arc::clone(&stats)))
        }
        None => None,
    };
    let supervisor = match &config.workers {
        Some(spec) => {
            let sup = Supervisor::start(spec, &backend_exe()).map_err(|e| RunError::Runtime(e.to_string()))?;
            wait_for_spawned(spec);
            Some(sup)
        }
        None => None,
    };

    let waker = Arc::new(Waker::new().map_err(|e| RunError::Runtime(format!("cannot create the wake-up pipe: {e}")))?);
    let signals = register_signals(&waker)?;
    let watch = Arc::new(Watch::new().map_err(|e| RunError::Runtime(format!("cannot create the epoll set: {e}")))?);
    let dispatcher = Dispatcher::new(Arc::clone(&config), stats, Arc::clone(&waker), Arc::clone(&watch));
    // Before any worker exists: a group's instance dispatches nothing before its first lease.
    let shared = match &config.shared {
        Some(s) => Some(shared::Running::start(s.clone(), Arc::clone(&dispatcher)).map_err(RunError::Runtime)?),
        None => None,
    };
    let closer = Arc::new(Closer::new(Arc::clone(&waker)));
    let lot = Arc::new(Lot::new(watch, Arc::clone(&waker), accept::park_timeouts(&config)));
    let pool = Arc::new(Pool::new(Arc::clone(&dispatcher), Arc::clone(&closer), Arc::clone(&lot)));
    pool.ensure(config.limit).map_err(|e| RunError::Runtime(format!("cannot start worker threads: {e}")))?;
    let probes = ProbeThread { dispatcher: Arc::clone(&dispatcher) };
    spawn("health", move || probes.run())?;
    if let Some(listener) = admin_listener {
        if let Ok(a) = listener.local_addr() {
            crate::info!("admin on http://{a}/");
        }
        let admin = Admin {
            listener,
            dispatcher: Arc::clone(&dispatcher),
            pool: Arc::clone(&pool),
            shared: shared.as_ref().map(|s| Arc::clone(&s.inner)),
        };
        spawn("admin", move || admin.run())?;
    }
    for l in &listeners {
        if let Ok(a) = l.local_addr() {
            crate::info!("listening on {a}");
        }
    }
    crate::info!(
        "{} mode: at most {} {} at once to {} server(s): {}",
        config.mode.name(),
        config.limit,
        if config.mode == Mode::Http { "requests" } else { "connections" },
        config.servers.len(),
        config.servers.iter().map(|s| s.to_string()).collect::<Vec<_>>().join(" ")
    );

    let reload = reloader(args.layer.clone(), args.config_file.clone(), Arc::clone(&dispatcher), Arc::clone(&pool));
    Acceptor {
        listeners,
        lot,
        dispatcher: Arc::clone(&dispatcher),
        closer,
        waker,
        signals,
        on_reload: Box::new(reload),
    }
    .run();
    dispatcher.reuse.clear();
    if let Some(s) = shared {
        s.stop();
    }
    if let Some(sup) = supervisor {
        sup.stop();
    }
    if let Some(w) = writer
        && let Err(e) = w.stop()
    {
        crate::error!("stats: final save failed: {e}");
    }
    crate::info!("stopped");
    Ok(())
}

/// Gives freshly spawned backends a moment to listen, so the first probe round finds them up:
/// each port is tried until it accepts, for at most 3 s in all. Startup only.
fn wait_for_spawned(spec: &crate::balancer::config::WorkerSpec) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
    for i in 0..spec.count {
        let addr = SocketAddr::from(([127, 0, 0, 1], spec.first_port + i));
        while std::time::Instant::now() < deadline {
            if std::net::TcpStream::connect_timeout(&addr, std::time::Duration::from_millis(100)).is_ok() {
                break;
            }
            // A refused connect returns at once: pace the retries.
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}

/// SIGHUP: re-read the file, rebuild the config with the same flags over it, apply it.
/// An invalid file is logged and the running configuration stays.
fn reloader(flags: Layer, file: Option<PathBuf>, dispatcher: Arc<Dispatcher>, pool: Arc<Pool>) -> impl FnMut() {
    move || {
        let Some(path) = file.as_deref() else {
            crate::info!("signal: SIGHUP without --config: nothing to reload");
            return;
        };
        match load_config(&flags, Some(path)) {
            Ok(new) => {
                let old = dispatcher.config();
                if new.listen != old.listen
                    || new.workers != old.workers
                    || new.admin != old.admin
                    || new.shared != old.shared
                {
                    crate::warn!(
                        "reload: listeners, spawned workers, admin address and shared limit change only at restart"
                    );
                }
                if new.mode != old.mode {
                    crate::warn!(
                        "reload: mode {} takes a restart; staying in mode {}",
                        new.mode.name(),
                        old.mode.name()
                    );
                }
                let mut new = new;
                new.mode = old.mode;
                if let Err(e) = pool.ensure(new.limit) {
                    crate::error!("internal: reload: cannot start workers: {e}");
                    return;
                }
                let (servers, limit) = (new.servers.len(), new.limit);
                // Log after applying: whoever reads "applied" may rely on it being in use.
                dispatcher.reconfigure(Arc::new(new));
                crate::info!("reload: {} applied ({servers} servers, limit {limit})", path.display());
            }
            Err(RunError::Usage(e) | RunError::File(e) | RunError::Runtime(e)) => {
                crate::error!("reload: {e}; keeping the running configuration")
            }
        }
    }
}

fn spawn(name: &str, f: impl FnOnce() + Send + 'static) -> Result<(), RunError> {
    std::thread::Builder::new()
        .name(name.into())
        .spawn(f)
        .map(drop)
        .map_err(|e| RunError::Runtime(format!("cannot start the {name} thread: {e}")))
}

/// A listening socket. `defer`: the kernel completes accept only once the client has spoken.
/// Nagle is off on it, so every accepted socket inherits that (one call instead of one per
/// client).
fn bind(addr: SocketAddr, defer: bool) -> Result<TcpListener, RunError> {
    let opts = ListenOptions { nodelay: true, defer_accept: defer, ..ListenOptions::default() };
    common_args::listen(addr, opts).map_err(|e| RunError::Runtime(e.to_string()))
}

fn register_signals(waker: &Waker) -> Result<Signals, RunError> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let signals = Signals::default();
    let fail = |e: std::io::Error| RunError::Runtime(format!("cannot install signal handlers: {e}"));
    for sig in [SIGINT, SIGTERM] {
        signal_hook::flag::register(sig, Arc::clone(&signals.terminate)).map_err(fail)?;
    }
    signal_hook::flag::register(SIGHUP, Arc::clone(&signals.reload)).map_err(fail)?;
    for sig in [SIGINT, SIGTERM, SIGHUP] {
        let fd = waker.write.try_clone().map_err(fail)?;
        signal_hook::low_level::pipe::register(sig, fd).map_err(fail)?;
    }
    Ok(signals)
}

/// Each waiting or pending client holds one descriptor, each bridge two: make room for
/// `queue_max + 2N` plus a margin, or say what the limit allows.
fn check_fd_limit(config: &Config) {
    let want = (config.queue_max + 2 * config.limit + 64) as u64;
    match common_args::raise_fd_limit(want) {
        Ok(FdLimit::Enough(_)) => {}
        Ok(FdLimit::Short(have)) => crate::warn!(
            "open-file limit is {have}, below queue-max + 2N + 64 = {want}: about {} clients can wait",
            have.saturating_sub(2 * config.limit as u64 + 64)
        ),
        Err(e) => crate::warn!("cannot read or raise the open-file limit: {e}"),
    }
}
