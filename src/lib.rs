//! One library crate under four binaries:
//!
//! - `loadbalancer`: a TCP bridge that guards fragile servers (accept, queue, sched, select,
//!   health, bridge, admin, stats, fleet);
//! - `backend`: the companion HTTP server used by demos, tests and benchmarks (`backend`);
//! - `eventrelay` and `eventsim`: the in-order event relay and its verifier (`relay`).
//!
//! Only `sys` may hold `unsafe` code; every other module is checked by the lint below.
#![deny(unsafe_code)]

#[macro_use]
pub mod log;

pub mod accept;
pub mod admin;
pub mod backend;
pub mod balancer;
pub mod bridge;
pub mod cli;
pub mod config;
pub mod fleet;
pub mod health;
pub mod http;
pub mod json;
pub mod queue;
pub mod relay;
pub mod sched;
pub mod select;
pub mod stats;
#[allow(unsafe_code)] // the one doorway to libc; each block carries a SAFETY comment
pub mod sys;
pub mod worker;
