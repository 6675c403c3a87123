//! The admin endpoint (to be written): routes, and renderers in submodules.

pub mod dashboard;
pub mod metrics;
pub mod status;
