//! `eventsim`: plays the event source and the user clients of the follower-maze harness against
//! a relay and checks every notification, byte for byte.
//!
//! Threads: the main thread connects the clients (each sends its id), then starts the source
//! thread ([`feed`]), then checks what the clients receive ([`check`]); they share only the
//! per-client expectations ([`expect`], with its locking rules). The events and the follow graph
//! a correct relay would build come from a seeded generator ([`model`]), so a run is repeatable.

pub mod args;
pub mod check;
pub mod expect;
pub mod feed;
pub mod model;

use std::fmt;
use std::io::{self, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::time::Instant;

use args::SimConfig;
use check::{Checker, Verdict};
use expect::Shared;
use feed::Feeder;
use model::{Model, Rng};

/// A failure of the simulator's own setup, as opposed to a verdict on the relay.
#[derive(Debug)]
pub enum SimError {
    /// A client could not connect or send its id.
    Connect { what: String, addr: SocketAddr, source: io::Error },
    /// Creating the wake pipe or the source thread failed.
    Setup(io::Error),
    /// `poll(2)` failed.
    Poll(io::Error),
}

impl fmt::Display for SimError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SimError::Connect { what, addr, source } => write!(f, "{what} at {addr} failed: {source}"),
            SimError::Setup(e) => write!(f, "internal: setting up failed: {e}"),
            SimError::Poll(e) => write!(f, "internal: poll failed: {e}"),
        }
    }
}

impl std::error::Error for SimError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            SimError::Connect { source, .. } => Some(source),
            SimError::Setup(e) | SimError::Poll(e) => Some(e),
        }
    }
}

/// Connects the clients, feeds the stream from a second thread and checks every client.
pub fn run(config: &SimConfig) -> Result<Verdict, SimError> {
    crate::relay::server::raise_fd_limit();
    let mut rng = Rng::new(config.seed);
    let model = Model::new(config.users, config.concurrency, &mut rng);
    let addr = config.client_addr;
    let mut clients = Vec::with_capacity(model.clients.len());
    for &user in &model.clients {
        let fail = |what: &str| {
            let what = format!("{what} for user {user}");
            move |source| SimError::Connect { what, addr, source }
        };
        let mut s = TcpStream::connect(addr).map_err(fail("connecting the client"))?;
        s.write_all(format!("{user}\r\n").as_bytes()).map_err(fail("sending the id"))?;
        s.set_nonblocking(true).map_err(fail("setting up the client"))?;
        clients.push(s);
    }
    info!("clients: {} connected to {addr}", clients.len());
    let shared = Arc::new(Shared::new(clients.len()));
    let (wake_r, wake_w) = UnixStream::pair().map_err(SimError::Setup)?;
    let users = model.clients.clone();
    let feeder = Feeder { config: config.clone(), shared: Arc::clone(&shared), model, rng, wake: wake_w };
    let started = Instant::now();
    let source =
        std::thread::Builder::new().name("source".into()).spawn(move || feeder.run()).map_err(SimError::Setup)?;
    let checker = Checker {
        clients,
        users,
        shared,
        wake: wake_r,
        timeout: config.timeout,
        grace: config.grace,
        log_interval: config.log_interval,
        total_events: config.total_events,
    };
    let verdict = checker.run(started)?;
    if matches!(verdict, Verdict::Passed { .. }) && source.join().is_err() {
        return Ok(Verdict::Failed("internal: the source thread panicked".into()));
    }
    // on failure the source thread may still be blocked writing; process exit ends it
    Ok(verdict)
}
