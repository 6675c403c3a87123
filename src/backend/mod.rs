//! `backend`: the companion HTTP/1.1 server that stands behind the balancer in demos, tests and
//! benchmarks.
//!
//! HTTP/1.1 persistent connections (several requests per connection, pipelined ones in order;
//! `--close-each` for one request per connection), served by a fixed pool of threads that each
//! block in `accept()` on one shared listener and serve one connection at a time. It serves
//! GET, HEAD and PUT of the plain files of one directory, streamed whatever their size, and a
//! few endpoints that let tests see what the balancer did to it: `/healthcheck` (errors and
//! entries, the balancer's load measure), `/inflight` (requests in progress now and at most),
//! `/worker/stats` and `/api/v1/hello` (the fleet's endpoints). `--delay-ms`, `--avg-delay-ms`
//! and `--fail-rate` make it slow or unreliable on purpose, repeatably with `--seed`. Every
//! reply says who answered (`Server-Name`). See docs/backend.md for the user's view.
//!
//! Modules: `args` (command line), `server` (listener, workers, signals, shutdown), `handler`
//! (one connection's requests), `conn` (the connection's read buffer, deadline reads, clean
//! close), `http` (request heads with httparse, names, reply heads), `body` (upload framing),
//! `counters` (shared counts), `delay` (the seeded dice), `error` (run-time errors).

pub mod args;
pub mod body;
pub mod conn;
pub mod counters;
pub mod delay;
pub mod error;
pub mod handler;
pub mod http;
pub mod server;

pub use args::{Args, Config, Parsed, UsageError};
pub use error::Error;

/// Runs a backend with `config` until SIGTERM or SIGINT. `parent` is the parent pid as read
/// first thing in `main`, for `--die-with-parent`'s check that the parent is still there.
pub fn run(config: Config, parent: nix::unistd::Pid) -> Result<(), Error> {
    if config.die_with_parent && !server::die_with_parent(parent)? {
        crate::info!("the parent process is already gone (--die-with-parent): exiting");
        return Ok(());
    }
    server::run(config)
}
