//! The fleet: config files, supervised backends, the store, the admin pages: one test binary.
//!
//! Each behaviour is a module; they link once, as one binary (see DESIGN.md, Tests).

#[path = "../support/util.rs"]
mod util;

mod config;
mod dashboard;
mod file;
mod metrics;
mod names;
mod persist;
mod pool;
mod reload;
mod round_robin;
mod spawn;
mod stats;
mod store;
mod supervisor;
mod yaml_corpus;
