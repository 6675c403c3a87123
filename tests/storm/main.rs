//! Storms (issue 13): the balancer, in both modes, under load while its servers fail in every
//! way the chaos thread knows, and while Redis fails under a shared limit. One test binary; each
//! behaviour is a module, the test servers and clients are modules of their own.
//!
//! The storms run one at a time (`one_at_a_time`): each is meant to load the machine, and two at
//! once would only measure each other.

#[path = "../support/redis.rs"]
mod redis;
#[path = "../support/util.rs"]
mod util;

mod chaos;
mod clients;
mod procfs;

mod drain;
mod shared;
mod storm;

use std::sync::{Mutex, MutexGuard};

static ONE: Mutex<()> = Mutex::new(());

/// Held for the whole of a storm test; a failed test leaves it poisoned, which is no reason
/// to fail the next.
pub fn one_at_a_time() -> MutexGuard<'static, ()> {
    ONE.lock().unwrap_or_else(|e| e.into_inner())
}
