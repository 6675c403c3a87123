//! Placeholder page until the full one lands.
pub const PAGE: &str = "<!doctype html><title>loadbalancer</title>";
