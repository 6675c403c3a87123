//! One library crate under four binaries:
//!
//! - `balancer`: the `loadbalancer` binary, a bridge that guards fragile servers (accept,
//!   queue, sched, select, health, worker, bridge, admin, stats, store, supervisor);
//! - `backend`: the companion HTTP server used by demos, tests and benchmarks;
//! - `relay`: `eventrelay` and `eventsim`, the in-order event relay and its verifier;
//! - `common`: the few helpers all four share (logging, the libc doorway, JSON documents and
//!   the `/worker/stats` document).
//!
//! Only `common::sys` may hold `unsafe` code; every other module is checked by the lint below.
#![deny(unsafe_code)]

#[macro_use]
pub mod common;

pub mod backend;
pub mod balancer;
pub mod relay;
