//! The one error type of the backend's run time: each variant is a start-up step, and its
//! message says what we did, to which address, with the `io::Error` as source. (Command-line
//! refusals are [`super::args::UsageError`], exit status 2; these are exit status 1.)

use std::fmt;
use std::io;
use std::net::SocketAddr;

#[derive(Debug)]
pub enum Error {
    /// Creating, configuring, binding or listening on the socket failed (a port in use lands
    /// here); `what` is the step as a verb phrase (`bind`, `listen on`).
    Listen { addr: SocketAddr, what: &'static str, source: io::Error },
    /// Installing the SIGTERM/SIGINT handlers failed.
    Signals(io::Error),
    /// Starting a worker thread failed.
    Spawn(io::Error),
    /// `prctl(PR_SET_PDEATHSIG)` failed.
    DieWithParent(io::Error),
    /// Creating the pipe that wakes idle connections at shutdown failed.
    StopPipe(io::Error),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Listen { addr, what, source } => write!(f, "cannot {what} {addr}: {source}"),
            Error::Signals(e) => write!(f, "installing signal handlers: {e}"),
            Error::Spawn(e) => write!(f, "starting a worker thread: {e}"),
            Error::DieWithParent(e) => write!(f, "--die-with-parent: prctl(PR_SET_PDEATHSIG): {e}"),
            Error::StopPipe(e) => write!(f, "creating the stop pipe: {e}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Listen { source, .. } => Some(source),
            Error::Signals(e) | Error::Spawn(e) | Error::DieWithParent(e) | Error::StopPipe(e) => Some(e),
        }
    }
}
