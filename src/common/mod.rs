//! Helpers shared by the four binaries: the logger, the command-line helpers (errors, units,
//! listening sockets, the open-file limit), the doorway to libc, JSON documents, and the
//! `/worker/stats` document the balancer and the backend both serve.

#[macro_use]
pub mod log;

pub mod args;
pub mod json;
#[allow(unsafe_code)] // the one doorway to libc; each block carries a SAFETY comment
pub mod sys;
pub mod worker_stats;
