//! `GET /status` and `GET /worker/stats`: the live `View` as JSON.
//!
//! Pure functions of a `View` (taken under the dispatcher lock and rendered after it is
//! released). Each document is a `#[derive(Serialize)]` struct borrowing from the view, so
//! the wire names live here and the view's own names can change; `crate::common::json` writes
//! it (strings escaped, non-finite floats `null`, times rounded to the thousandth).

use crate::balancer::stats::{ServerView, View};
use crate::common::json::{thousandths, to_string};
use crate::common::worker_stats::{Counts, WorkerStats};
use serde::Serialize;

/// The `/status` document. Keys are stable (tests and the dashboard read them); see issue #4
/// and issue #7.
#[derive(Serialize)]
struct Status<'a> {
    limit: usize,
    in_flight: usize,
    queued: usize,
    queue_max: usize,
    /// Connections per second as set, `null` when pacing is off.
    rate: Option<f64>,
    burst: u32,
    balance: &'a str,
    /// `tcp` or `http`: what `served` and the slots count (connections or requests).
    mode: &'a str,
    served: u64,
    rejected: u64,
    /// Clients that gave up while they waited; their requests never reached a server.
    abandoned: u64,
    uptime_s: f64,
    servers: Vec<Server<'a>>,
    classes: Vec<Class<'a>>,
}

/// One server in `/status`: its routing state and its totals, side by side.
#[derive(Serialize)]
struct Server<'a> {
    address: &'a str,
    /// The name the fleet gave it (`worker-1`...), `null` for a server given by address.
    name: Option<&'a str>,
    up: bool,
    reason: &'a str,
    entries: u64,
    errors: u64,
    in_flight: usize,
    max_in_flight: usize,
    bound: Option<usize>,
    /// Seconds since the last probe ended, `null` before the first.
    last_probe: Option<f64>,
    retiring: bool,
    requests: u64,
    successes: u64,
    failures: u64,
    bytes_to_server: u64,
    bytes_to_client: u64,
    avg_ms: f64,
}

#[derive(Serialize)]
struct Class<'a> {
    key: &'a str,
    weight: u32,
    in_flight: usize,
    queued: usize,
    served: u64,
}

/// The `/status` document: the dispatcher's state, every server (with its totals) and every
/// active client class, one line.
pub fn json(v: &View) -> String {
    let doc = Status {
        limit: v.limit,
        in_flight: v.in_flight,
        queued: v.queued,
        queue_max: v.queue_max,
        rate: v.rate,
        burst: v.burst,
        balance: v.balance,
        served: v.served,
        rejected: v.rejected,
        abandoned: v.abandoned,
        mode: v.mode,
        uptime_s: thousandths(v.uptime.as_secs_f64()),
        servers: v.servers.iter().map(server).collect(),
        classes: v
            .classes
            .iter()
            .map(|c| Class {
                key: &c.key,
                weight: c.weight,
                in_flight: c.in_flight,
                queued: c.queued,
                served: c.served,
            })
            .collect(),
    };
    to_string(&doc) + "\n"
}

fn server(s: &ServerView) -> Server<'_> {
    let t = &s.totals;
    Server {
        address: &s.address,
        name: s.name.as_deref(),
        up: s.up,
        reason: &s.reason,
        entries: s.entries,
        errors: s.errors,
        in_flight: s.in_flight,
        max_in_flight: s.max_in_flight,
        bound: s.bound,
        last_probe: s.last_probe_ago.map(thousandths),
        retiring: s.retiring,
        requests: t.requests,
        successes: t.successes,
        failures: t.failures,
        bytes_to_server: t.bytes_to_server,
        bytes_to_client: t.bytes_to_client,
        avg_ms: thousandths(t.avg_ms()),
    }
}

/// `GET /worker/stats` in the original fleet's shape (`crate::common::worker_stats`), one entry
/// per server named by its address, one line.
pub fn worker_stats(v: &View) -> String {
    let doc = WorkerStats::new(v.servers.iter().map(|s| {
        let t = &s.totals;
        (s.address.as_str(), Counts { successful: t.successes, failed: t.failures, time_sum_us: t.time_sum_us })
    }));
    to_string(&doc) + "\n"
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::balancer::stats::{ClassView, ServerTotals};
    use serde_json::Value;
    use std::time::Duration;

    pub(crate) fn sample() -> View {
        let mut t1 = ServerTotals {
            requests: 10,
            successes: 9,
            failures: 1,
            bytes_to_server: 1000,
            bytes_to_client: 5000,
            time_sum_us: 10 * 20_000,
            ..ServerTotals::default()
        };
        t1.buckets[5] = 10;
        let t2 = ServerTotals { requests: 30, successes: 30, time_sum_us: 30 * 40_000, ..ServerTotals::default() };
        View {
            limit: 4,
            in_flight: 3,
            queued: 2,
            queue_max: 4096,
            rate: None,
            burst: 4,
            balance: "least-loaded",
            served: 40,
            rejected: 1,
            abandoned: 0,
            mode: "tcp",
            uptime: Duration::from_millis(12_345),
            servers: vec![
                ServerView {
                    address: "127.0.0.1:9001".into(),
                    name: Some("worker-1".into()),
                    up: true,
                    entries: 2,
                    in_flight: 2,
                    max_in_flight: 3,
                    bound: Some(3),
                    last_probe_ago: Some(1.25),
                    totals: t1,
                    ..ServerView::default()
                },
                ServerView {
                    address: "[::1]:9002".into(),
                    up: false,
                    reason: "connect: \"refused\"\n\tagain\u{1}".into(),
                    errors: 5,
                    in_flight: 1,
                    retiring: true,
                    totals: t2,
                    ..ServerView::default()
                },
            ],
            classes: vec![
                ClassView { key: "127.0.0.1".into(), weight: 1, in_flight: 1, queued: 0, served: 10 },
                ClassView { key: "10.0.0.0/8".into(), weight: 3, in_flight: 2, queued: 2, served: 30 },
            ],
        }
    }

    #[test]
    fn status_has_every_field() {
        let v: Value = serde_json::from_str(&json(&sample())).unwrap();
        assert_eq!(v["limit"], 4);
        assert_eq!(v["in_flight"], 3);
        assert_eq!(v["queued"], 2);
        assert_eq!(v["queue_max"], 4096);
        assert_eq!(v["rate"], Value::Null);
        assert_eq!(v["burst"], 4);
        assert_eq!(v["balance"], "least-loaded");
        assert_eq!(v["served"], 40);
        assert_eq!(v["rejected"], 1);
        assert_eq!(v["uptime_s"], 12.345);
        let s0 = &v["servers"][0];
        assert_eq!(s0["address"], "127.0.0.1:9001");
        assert_eq!(s0["name"], "worker-1");
        assert_eq!(s0["up"], true);
        assert_eq!(s0["reason"], "");
        assert_eq!(s0["entries"], 2);
        assert_eq!(s0["errors"], 0);
        assert_eq!(s0["in_flight"], 2);
        assert_eq!(s0["max_in_flight"], 3);
        assert_eq!(s0["bound"], 3);
        assert_eq!(s0["last_probe"], 1.25);
        assert_eq!(s0["retiring"], false);
        assert_eq!(s0["requests"], 10);
        assert_eq!(s0["successes"], 9);
        assert_eq!(s0["failures"], 1);
        assert_eq!(s0["bytes_to_server"], 1000);
        assert_eq!(s0["bytes_to_client"], 5000);
        assert_eq!(s0["avg_ms"], 20.0);
        let s1 = &v["servers"][1];
        assert_eq!(s1["name"], Value::Null);
        assert_eq!(s1["reason"], "connect: \"refused\"\n\tagain\u{1}");
        assert_eq!(s1["bound"], Value::Null);
        assert_eq!(s1["last_probe"], Value::Null);
        assert_eq!(s1["retiring"], true);
        assert_eq!(v["classes"][1]["key"], "10.0.0.0/8");
        assert_eq!(v["classes"][1]["weight"], 3);
        assert_eq!(v["classes"][1]["in_flight"], 2);
        assert_eq!(v["classes"][1]["queued"], 2);
        assert_eq!(v["classes"][1]["served"], 30);
        let object_keys = |o: &Value| o.as_object().unwrap().len();
        assert_eq!(object_keys(&v), 14);
        assert_eq!((v["mode"].as_str(), v["abandoned"].as_u64()), (Some("tcp"), Some(0)));
        assert_eq!(object_keys(s0), 17);
        assert_eq!(object_keys(s1), 17);
        assert_eq!(object_keys(&v["classes"][0]), 5);
    }

    #[test]
    fn status_of_an_empty_view_parses() {
        let v: Value = serde_json::from_str(&json(&View { rate: Some(20.0), ..View::default() })).unwrap();
        assert_eq!(v["rate"], 20.0);
        assert_eq!(v["servers"], Value::Array(vec![]));
        assert_eq!(v["classes"], Value::Array(vec![]));
    }

    #[test]
    fn status_floats_are_rounded_and_non_finite_ones_null() {
        let mut view = sample();
        view.uptime = Duration::from_nanos(1_234_567_891);
        view.servers[0].last_probe_ago = Some(f64::NAN);
        view.servers[1].last_probe_ago = Some(f64::INFINITY);
        let text = json(&view);
        assert!(text.ends_with("}\n") && text.lines().count() == 1, "{text}");
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["uptime_s"], 1.235);
        assert_eq!(v["servers"][0]["last_probe"], Value::Null);
        assert_eq!(v["servers"][1]["last_probe"], Value::Null);
        assert!(text.contains("\"avg_ms\":20.0,") || text.contains("\"avg_ms\":20.0}"), "{text}");
    }

    #[test]
    fn worker_stats_in_the_fleet_shape() {
        let text = worker_stats(&sample());
        assert!(text.ends_with("}\n"), "{text}");
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            v["SuccessfulRequests"],
            serde_json::json!([{"total": 39}, {"127.0.0.1:9001": 9}, {"[::1]:9002": 30}])
        );
        assert_eq!(v["FailedRequests"], serde_json::json!([{"total": 1}, {"127.0.0.1:9001": 1}, {"[::1]:9002": 0}]));
        assert_eq!(v["TotalRequests"], serde_json::json!([{"total": 40}, {"127.0.0.1:9001": 10}, {"[::1]:9002": 30}]));
        // (10 * 20 ms + 30 * 40 ms) / 40 requests = 35 ms, not the mean of means (30 ms).
        assert_eq!(
            v["AverageResponseTime"],
            serde_json::json!([{"total": 35.0}, {"127.0.0.1:9001": 20.0}, {"[::1]:9002": 40.0}])
        );
        let empty: Value = serde_json::from_str(&worker_stats(&View::default())).unwrap();
        assert_eq!(empty["AverageResponseTime"], serde_json::json!([{"total": 0.0}]));
    }
}
