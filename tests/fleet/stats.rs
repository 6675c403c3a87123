//! `GET /worker/stats` on the admin port, in the original fleet's shape, with the numbers of
//! a known set of requests: N to a server that fails every request, N to one that fails none
//! (issue #7).

use crate::util::*;
use serde_json::{Value, json};

const N: usize = 5;

/// `[{"total": t}, {"NAME": n}...]` → (t, [(NAME, n)...]).
fn split(v: &Value) -> (Value, Vec<(String, Value)>) {
    let items = v.as_array().unwrap_or_else(|| panic!("not an array: {v}"));
    let total = items[0].as_object().filter(|o| o.len() == 1).and_then(|o| o.get("total")).cloned();
    let total = total.unwrap_or_else(|| panic!("first element is not {{\"total\": n}}: {v}"));
    let rest = items[1..]
        .iter()
        .map(|o| {
            let o = o.as_object().filter(|o| o.len() == 1).unwrap_or_else(|| panic!("not {{NAME: n}}: {o}"));
            let (k, v) = o.iter().next().unwrap();
            (k.clone(), v.clone())
        })
        .collect();
    (total, rest)
}

#[test]
fn worker_stats_counts_a_known_failure_rate() {
    let bad = backend(&["--name", "bad", "--fail-rate", "100"]);
    let good = backend(&["--name", "good", "--fail-rate", "0", "--delay-ms", "30"]);
    let lb = balancer(&["-v", "--balance", "round-robin", "--admin", "0"], &[bad.port, good.port]);
    let (bad_name, good_name) = (format!("127.0.0.1:{}", bad.port), format!("127.0.0.1:{}", good.port));

    let empty: Value = serde_json::from_slice(&get(lb.admin.unwrap(), "/worker/stats").body).unwrap();
    assert_eq!(empty["TotalRequests"], json!([{"total": 0}, {&bad_name: 0}, {&good_name: 0}]));

    // Round robin: bad, good, bad, good... each reply counted before the next request.
    for i in 0..2 * N {
        let r = get_counted(&lb, "/api/v1/hello");
        let want = if i % 2 == 0 { (500, "bad") } else { (200, "good") };
        assert_eq!((r.status, r.header("Server-Name").unwrap_or_default().as_str()), want, "request {i}");
    }

    let reply = get(lb.admin.unwrap(), "/worker/stats");
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("Content-Type").as_deref(), Some("application/json"));
    let v: Value = serde_json::from_slice(&reply.body).unwrap_or_else(|e| panic!("{e}: {}", reply.text()));
    let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(keys.len(), 4, "{v}");
    let n = N as u64;
    assert_eq!(v["SuccessfulRequests"], json!([{"total": n}, {&bad_name: 0}, {&good_name: n}]));
    assert_eq!(v["FailedRequests"], json!([{"total": n}, {&bad_name: n}, {&good_name: 0}]));
    assert_eq!(v["TotalRequests"], json!([{"total": 2 * n}, {&bad_name: n}, {&good_name: n}]));

    // Response times: the good server waits 30 ms per request, the failing one answers at
    // once; the total is weighted by requests, not a mean of means (here the same: equal counts).
    let (total, each) = split(&v["AverageResponseTime"]);
    let names: Vec<&str> = each.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(names, [bad_name.as_str(), good_name.as_str()]);
    let (t, b, g) = (total.as_f64().unwrap(), each[0].1.as_f64().unwrap(), each[1].1.as_f64().unwrap());
    assert!(g >= 30.0 && b < 30.0, "good {g} ms, bad {b} ms");
    assert!((t - (b + g) / 2.0).abs() < 0.01, "total {t} ms from {b} and {g}");

    // The same numbers in /status.
    let st = status(lb.admin.unwrap());
    let per: Vec<(u64, u64, u64)> = st["servers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["requests"].as_u64().unwrap(), s["successes"].as_u64().unwrap(), s["failures"].as_u64().unwrap()))
        .collect();
    assert_eq!(per, [(n, 0, n), (n, n, 0)], "{st}");
}
