//! `GET /metrics` from a live balancer after traffic passes the real `promtool check metrics`
//! (Debian package `prometheus`), lints included, and carries the per-server counters, the
//! gauges (per server and per client class) and the response-time histogram of that traffic
//! (issue #7).

use crate::util::*;
use std::time::Duration;

const PROMTOOL: &str = "/usr/bin/promtool";

/// The value of the sample whose line starts with `prefix` (name and labels).
fn sample(text: &str, prefix: &str) -> f64 {
    let line = text.lines().find(|l| l.starts_with(prefix)).unwrap_or_else(|| panic!("no sample {prefix}:\n{text}"));
    line.rsplit(' ').next().unwrap().parse().unwrap_or_else(|_| panic!("bad value in {line}"))
}

#[test]
fn metrics_after_traffic_pass_promtool() {
    let promtool = which(PROMTOOL).unwrap_or_else(|| {
        panic!("promtool not found (looked for {PROMTOOL} and on PATH): install the Debian package 'prometheus'")
    });
    let a = backend(&["--name", "a"]);
    let b = backend(&["--name", "b", "--fail-rate", "100"]);
    // A third server holds its request, so the scrape also sees a client in flight (client
    // classes exist only while they have clients waiting or in flight).
    let held = held_server("h");
    let lb = balancer(
        &["-v", "--balance", "round-robin", "--admin", "0", "--weight", "127.0.0.0/8=2"],
        &[a.port, b.port, held.port],
    );
    // Round robin: a, b, then h (held), then a, b again.
    get_counted(&lb, "/api/v1/hello");
    get_counted(&lb, "/api/v1/hello");
    let port = lb.port;
    let in_flight = std::thread::spawn(move || get(port, "/api/v1/hello"));
    held.arrival();
    get_counted(&lb, "/api/v1/hello");
    get_counted(&lb, "/api/v1/hello");

    let reply = get(lb.admin.unwrap(), "/metrics");
    assert_eq!(reply.status, 200);
    assert!(reply.header("Content-Type").is_some_and(|t| t.starts_with("text/plain; version=0.0.4")), "{}", reply.head);
    let text = reply.text();
    let (st, out, err) = run_to_end(&promtool, &["check", "metrics"], &reply.body, Duration::from_secs(20));
    assert!(st.success() && out.trim().is_empty() && err.trim().is_empty(), "promtool: {st}\n{out}{err}\n---\n{text}");

    // The traffic is in it: 3 requests each, the failures on b, a full histogram.
    let server = |p: u16| format!("server=\"127.0.0.1:{p}\"");
    let families: Vec<&str> =
        text.lines().filter_map(|l| l.strip_prefix("# TYPE ")).filter_map(|l| l.split(' ').next()).collect();
    assert!(families.len() >= 8, "{families:?}");
    let counted = |p| {
        text.lines()
            .filter(|l| !l.starts_with('#') && l.contains(&server(p)) && l.contains("_count{"))
            .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
            .collect::<Vec<_>>()
    };
    assert_eq!(counted(a.port), [2.0], "one histogram _count for a:\n{text}");
    assert_eq!(counted(b.port), [2.0], "one histogram _count for b:\n{text}");
    let inf = text
        .lines()
        .find(|l| l.contains("_bucket{") && l.contains(&server(a.port)) && l.contains("le=\"+Inf\""))
        .unwrap_or_else(|| panic!("no +Inf bucket for a:\n{text}"));
    assert!(inf.ends_with(" 2"), "{inf}");
    let fail_line = text
        .lines()
        .find(|l| !l.starts_with('#') && l.contains("fail") && l.contains(&server(b.port)))
        .unwrap_or_else(|| panic!("no failure counter for b:\n{text}"));
    assert!(fail_line.ends_with(" 2"), "{fail_line}");
    // The gauges see the held client, per server and per class (127.0.0.0/8, weight 2).
    assert_eq!(sample(&text, "lb_limit "), 4.0, "{text}");
    assert_eq!(sample(&text, "lb_in_flight "), 1.0, "{text}");
    assert_eq!(sample(&text, &format!("lb_server_in_flight{{{}}}", server(held.port))), 1.0, "{text}");
    assert_eq!(sample(&text, "lb_class_in_flight{class=\"127.0.0.0/8\"}"), 1.0, "{text}");
    assert_eq!(sample(&text, "lb_class_weight{class=\"127.0.0.0/8\"}"), 2.0, "{text}");

    held.release();
    assert_eq!(in_flight.join().unwrap().status, 200);
}

/// `path` if it is there, else the first `promtool` on PATH.
fn which(path: &str) -> Option<String> {
    if std::path::Path::new(path).exists() {
        return Some(path.into());
    }
    let paths = std::env::var_os("PATH")?;
    std::env::split_paths(&paths).map(|d| d.join("promtool")).find(|p| p.exists()).map(|p| p.display().to_string())
}
