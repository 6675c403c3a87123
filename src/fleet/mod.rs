//! The fleet: a whole set-up from one config file, supervised backends, durable stats.

pub mod file;
pub mod store;
pub mod supervisor;
