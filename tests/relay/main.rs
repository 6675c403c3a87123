//! The event relay and eventsim: one test binary.
//!
//! Each behaviour is a module; they link once, as one binary (see DESIGN.md, Tests).

#[path = "../support/relay.rs"]
mod relay_support;

mod bad_lines;
mod cli;
mod clients;
mod event_types;
mod eventsim;
mod fd_limit;
mod gap_timeout;
mod long_run;
mod order;
mod reconnect;
mod restart;
mod rolling_gaps;
mod signal;
mod slow_client;
mod source_close;
mod unconnected;
