//! `GET /status` and `GET /worker/stats`: the live `View` as JSON.
//!
//! Pure functions of a `View` (taken under the dispatcher lock and rendered after it is
//! released). The JSON is written by hand: the shapes are small and fixed, and serde_json is
//! only a dev-dependency; strings and numbers go through `crate::common::json`.

use crate::balancer::stats::{ServerTotals, View};
pub use crate::common::json::{json_number, json_string};
use std::fmt::Write;

fn opt<T: ToString>(v: Option<T>) -> String {
    v.map_or_else(|| "null".into(), |v| v.to_string())
}

/// The `/status` document: the dispatcher's state, every server (with its totals) and every
/// active client class. Keys are stable; see issue #4 and issue #7.
pub fn json(v: &View) -> String {
    let mut out = String::with_capacity(256 + 400 * v.servers.len() + 100 * v.classes.len());
    let _ = write!(
        out,
        "{{\"limit\":{},\"in_flight\":{},\"queued\":{},\"queue_max\":{},\"rate\":{},\"burst\":{},\
         \"balance\":{},\"mode\":{},\"served\":{},\"rejected\":{},\"abandoned\":{},\"uptime_s\":{},\"servers\":[",
        v.limit,
        v.in_flight,
        v.queued,
        v.queue_max,
        v.rate.map_or_else(|| "null".into(), json_number),
        v.burst,
        json_string(v.balance),
        json_string(v.mode),
        v.served,
        v.rejected,
        v.abandoned,
        json_number(v.uptime.as_secs_f64()),
    );
    for (i, s) in v.servers.iter().enumerate() {
        let t = &s.totals;
        let _ = write!(
            out,
            "{}{{\"address\":{},\"up\":{},\"reason\":{},\"entries\":{},\"errors\":{},\"in_flight\":{},\
             \"max_in_flight\":{},\"bound\":{},\"last_probe\":{},\"retiring\":{},\"requests\":{},\
             \"successes\":{},\"failures\":{},\"bytes_to_server\":{},\"bytes_to_client\":{},\"avg_ms\":{}}}",
            if i > 0 { "," } else { "" },
            json_string(&s.address),
            s.up,
            json_string(&s.reason),
            s.entries,
            s.errors,
            s.in_flight,
            s.max_in_flight,
            opt(s.bound),
            s.last_probe_ago.map_or_else(|| "null".into(), json_number),
            s.retiring,
            t.requests,
            t.successes,
            t.failures,
            t.bytes_to_server,
            t.bytes_to_client,
            json_number(t.avg_ms()),
        );
    }
    out.push_str("],\"classes\":[");
    for (i, c) in v.classes.iter().enumerate() {
        let _ = write!(
            out,
            "{}{{\"key\":{},\"weight\":{},\"in_flight\":{},\"queued\":{},\"served\":{}}}",
            if i > 0 { "," } else { "" },
            json_string(&c.key),
            c.weight,
            c.in_flight,
            c.queued,
            c.served,
        );
    }
    out.push_str("]}\n");
    out
}

/// `GET /worker/stats` in the original fleet's shape: four arrays, each `{"total": n}` then one
/// `{"NAME": n}` per server (NAME is the server's address). The total average response time is
/// weighted by requests (all time over all requests), not a mean of the servers' means.
pub fn worker_stats(v: &View) -> String {
    let sum = v.servers.iter().fold(ServerTotals::default(), |mut acc, s| {
        acc.requests += s.totals.requests;
        acc.successes += s.totals.successes;
        acc.failures += s.totals.failures;
        acc.time_sum_us += s.totals.time_sum_us;
        acc
    });
    let array = |total: String, each: &dyn Fn(&ServerTotals) -> String| {
        let mut a = format!("[{{\"total\":{total}}}");
        for s in &v.servers {
            let _ = write!(a, ",{{{}:{}}}", json_string(&s.address), each(&s.totals));
        }
        a.push(']');
        a
    };
    format!(
        "{{\"SuccessfulRequests\":{},\"FailedRequests\":{},\"TotalRequests\":{},\"AverageResponseTime\":{}}}\n",
        array(sum.successes.to_string(), &|t| t.successes.to_string()),
        array(sum.failures.to_string(), &|t| t.failures.to_string()),
        array(sum.requests.to_string(), &|t| t.requests.to_string()),
        array(json_number(sum.avg_ms()), &|t| json_number(t.avg_ms())),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::balancer::stats::{ClassView, ServerView};
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
    fn strings_are_escaped() {
        let s = "a\"b\\c\nd\te\u{0}f\u{1f}g\u{7f}h\u{2028}é";
        let parsed: String = serde_json::from_str(&json_string(s)).unwrap();
        assert_eq!(parsed, s);
        assert_eq!(json_string("plain"), "\"plain\"");
    }

    #[test]
    fn numbers() {
        assert_eq!(json_number(2.5), "2.5");
        assert_eq!(json_number(3.0), "3");
        assert_eq!(json_number(0.1234567), "0.123");
        assert_eq!(json_number(-0.0001), "0");
        assert_eq!(json_number(f64::NAN), "null");
        assert_eq!(json_number(f64::INFINITY), "null");
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
        assert_eq!(object_keys(&v), 12);
        assert_eq!(object_keys(s0), 16);
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
    fn worker_stats_in_the_fleet_shape() {
        let v: Value = serde_json::from_str(&worker_stats(&sample())).unwrap();
        assert_eq!(
            v["SuccessfulRequests"],
            serde_json::json!([{"total": 39}, {"127.0.0.1:9001": 9}, {"[::1]:9002": 30}])
        );
        assert_eq!(v["FailedRequests"], serde_json::json!([{"total": 1}, {"127.0.0.1:9001": 1}, {"[::1]:9002": 0}]));
        assert_eq!(v["TotalRequests"], serde_json::json!([{"total": 40}, {"127.0.0.1:9001": 10}, {"[::1]:9002": 30}]));
        // (10 * 20 ms + 30 * 40 ms) / 40 requests = 35 ms, not the mean of means (30 ms).
        assert_eq!(
            v["AverageResponseTime"],
            serde_json::json!([{"total": 35}, {"127.0.0.1:9001": 20}, {"[::1]:9002": 40}])
        );
        let empty: Value = serde_json::from_str(&worker_stats(&View::default())).unwrap();
        assert_eq!(empty["AverageResponseTime"], serde_json::json!([{"total": 0}]));
    }
}
