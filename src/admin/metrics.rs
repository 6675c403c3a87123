//! Placeholder renderer until the full one lands.
use crate::stats::View;
pub fn text(v: &View) -> String {
    format!("lb_in_flight {}\n", v.in_flight)
}
