//! http mode (`--mode http`): a slot per request, parked keep-alive clients, reused server
//! connections, framing, bad input. One test binary; each behaviour is a module.

#[path = "../support/keepalive.rs"]
mod keepalive;
#[path = "../support/util.rs"]
mod util;

mod abandon;
mod bad;
mod bounds;
mod drain;
mod fairness;
mod fd_limit;
mod framing;
mod hostile_clients;
mod idle;
mod reuse;
