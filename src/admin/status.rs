//! Placeholder renderers until the full ones land.
use crate::stats::View;
pub fn json(v: &View) -> String {
    format!("{{\"limit\":{},\"in_flight\":{},\"queued\":{}}}", v.limit, v.in_flight, v.queued)
}
pub fn worker_stats(_v: &View) -> String {
    "{}".into()
}
