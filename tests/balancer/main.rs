//! The balancer (tcp mode and everything shared by both modes): one test binary.
//!
//! Each behaviour is a module; they link once, as one binary (see DESIGN.md, Tests).

#[path = "../support/keepalive.rs"]
mod keepalive;
#[path = "../support/redis.rs"]
mod redis;
#[path = "../support/util.rs"]
mod util;

mod check;
mod cli;
mod comeback;
mod drain;
mod failover;
mod fairness;
mod fd_limit;
mod hostile;
mod hostile_admin;
mod hostile_clients;
mod limits;
mod overload;
mod pacing;
mod probes;
mod routing;
mod self_heal;
mod shared;
mod stalled;
mod transfer;
