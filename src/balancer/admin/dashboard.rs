//! `GET /`: the dashboard, one self-contained HTML page (`dashboard.html`, compiled in).
//!
//! The page has no external resource (no CDN: it must work on an air-gapped host) and holds no
//! state on the server: its script fetches `/status` every second, computes the request rate
//! from the `served` delta, keeps the last five minutes in the browser for a canvas chart, and
//! builds the tables with `textContent` only (server addresses and probe reasons are never
//! parsed as HTML). Elements have stable ids for tests: `#in-flight`, `#limit`, `#queued`,
//! `#queue-max`, `#served`, `#rejected`, `#rate`, `#servers-up`, `#servers-down`, `#chart`,
//! and one `tr[data-address]` per server (cells classed `server`, `in-flight`, `requests`, ...;
//! the `server` cell reads `worker-1 (127.0.0.1:9001)` for a spawned backend, the address
//! alone otherwise) and `tr[data-class]` per client class.

/// The page.
pub const PAGE: &str = include_str!("dashboard.html");

/// The `Content-Type` of `PAGE`.
pub const CONTENT_TYPE: &str = "text/html; charset=utf-8";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_has_its_stable_ids() {
        for id in [
            "in-flight",
            "limit",
            "queued",
            "queue-max",
            "served",
            "rejected",
            "rate",
            "servers-up",
            "servers-down",
            "chart",
            "servers",
            "classes",
        ] {
            assert!(PAGE.contains(&format!("id=\"{id}\"")), "no #{id}");
        }
        assert!(PAGE.contains("tr.dataset.address = s.address"));
        assert!(PAGE.contains("s.name + \" (\" + s.address + \")\""), "a spawned backend by name and address");
        assert!(PAGE.contains("fetch(\"/status\""));
    }

    #[test]
    fn the_page_is_self_contained() {
        assert!(!PAGE.contains("http://") && !PAGE.contains("https://") && !PAGE.contains("//cdn"));
        assert!(!PAGE.contains(" src=") && !PAGE.contains("<link"));
        assert!(!PAGE.contains("innerHTML"), "tables are built with textContent only");
    }
}
