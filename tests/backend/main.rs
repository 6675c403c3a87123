//! The companion backend: one test binary.
//!
//! Each behaviour is a module; they link once, as one binary (see DESIGN.md, Tests).

#[path = "../support/backend.rs"]
mod backend_support;
#[path = "../support/util.rs"]
mod util;

mod keepalive;
mod serve;
