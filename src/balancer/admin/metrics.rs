//! `GET /metrics`: the live `View` in the Prometheus text exposition format, version 0.0.4
//! (`Content-Type: text/plain; version=0.0.4`).
//!
//! A pure function of a `View`. Every family has its `# HELP` and `# TYPE` lines, then its
//! samples; label values are escaped (backslash, double quote, newline). Per-server families
//! carry `server="ADDRESS"`, per-class ones `class="KEY"`. The response-time histogram is
//! cumulative over `stats::BUCKETS` plus `+Inf`, with `_sum` in seconds and `_count`. Counters
//! come from totals that continue across restarts (see `store`); Prometheus treats a
//! counter that falls as a reset, which a restart without the stats file is.

use crate::balancer::stats::{BUCKETS, View};
use std::fmt::Write;

/// The `Content-Type` of `text`.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A label value inside its quotes.
pub fn escape_label(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// A sample value: integers as written, floats in Rust's shortest round-trip form, and the
/// spellings Prometheus uses for the non-finite ones.
fn value(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf".into() } else { "-Inf".into() }
    } else {
        format!("{v}")
    }
}

/// Writes one family: HELP, TYPE, then `samples` as (label text, value).
fn family(out: &mut String, name: &str, kind: &str, help: &str, samples: impl IntoIterator<Item = (String, String)>) {
    // Writing to a String cannot fail.
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
    for (labels, v) in samples {
        if labels.is_empty() {
            let _ = writeln!(out, "{name} {v}");
        } else {
            let _ = writeln!(out, "{name}{{{labels}}} {v}");
        }
    }
}

/// The whole exposition for `v`.
pub fn text(v: &View) -> String {
    let mut out = String::with_capacity(2048 + 2048 * v.servers.len() + 512 * v.classes.len());
    let one = |x: String| [(String::new(), x)];
    let server = |s: &crate::balancer::stats::ServerView| format!("server=\"{}\"", escape_label(&s.address));
    let class = |c: &crate::balancer::stats::ClassView| format!("class=\"{}\"", escape_label(&c.key));

    family(
        &mut out,
        "lb_served_total",
        "counter",
        "Connections (tcp mode) or requests (http mode) dispatched to a server slot since start.",
        one(v.served.to_string()),
    );
    family(
        &mut out,
        "lb_rejected_total",
        "counter",
        "Connections answered 503 (queue full or queue timeout) since start.",
        one(v.rejected.to_string()),
    );
    family(
        &mut out,
        "lb_abandoned_total",
        "counter",
        "Clients that gave up while waiting; their requests never reached a server.",
        one(v.abandoned.to_string()),
    );
    family(
        &mut out,
        "lb_in_flight",
        "gauge",
        "Client connections bridged to servers now.",
        one(v.in_flight.to_string()),
    );
    family(&mut out, "lb_queued", "gauge", "Client connections waiting for a slot now.", one(v.queued.to_string()));
    family(
        &mut out,
        "lb_queue_max",
        "gauge",
        "The most connections that may wait (--queue-max).",
        one(v.queue_max.to_string()),
    );
    family(&mut out, "lb_limit", "gauge", "The global bound on bridged connections (-N).", one(v.limit.to_string()));
    family(
        &mut out,
        "lb_uptime_seconds",
        "gauge",
        "Seconds since the balancer started.",
        one(value(v.uptime.as_secs_f64())),
    );

    let per_server = |f: &dyn Fn(&crate::balancer::stats::ServerView) -> String| -> Vec<(String, String)> {
        v.servers.iter().map(|s| (server(s), f(s))).collect()
    };
    family(
        &mut out,
        "lb_server_requests_total",
        "counter",
        "Connections bridged to the server that have ended.",
        per_server(&|s| s.totals.requests.to_string()),
    );
    family(
        &mut out,
        "lb_server_successes_total",
        "counter",
        "Ended connections whose reply status was 1xx-3xx.",
        per_server(&|s| s.totals.successes.to_string()),
    );
    family(
        &mut out,
        "lb_server_failures_total",
        "counter",
        "Ended connections with a 4xx/5xx reply, or no reply.",
        per_server(&|s| s.totals.failures.to_string()),
    );
    let bytes = v.servers.iter().flat_map(|s| {
        [
            (format!("{},direction=\"to_server\"", server(s)), s.totals.bytes_to_server.to_string()),
            (format!("{},direction=\"to_client\"", server(s)), s.totals.bytes_to_client.to_string()),
        ]
    });
    family(&mut out, "lb_server_bytes_total", "counter", "Bytes forwarded, by direction.", bytes);
    family(
        &mut out,
        "lb_server_up",
        "gauge",
        "1 if the server's last health probes passed, else 0.",
        per_server(&|s| u8::from(s.up).to_string()),
    );
    family(
        &mut out,
        "lb_server_in_flight",
        "gauge",
        "Connections bridged to the server now.",
        per_server(&|s| s.in_flight.to_string()),
    );
    family(
        &mut out,
        "lb_server_max_in_flight",
        "gauge",
        "The most connections bridged to the server at once since start.",
        per_server(&|s| s.max_in_flight.to_string()),
    );
    family(
        &mut out,
        "lb_server_entries",
        "gauge",
        "Entries the server last reported on /healthcheck, plus local dispatches since.",
        per_server(&|s| s.entries.to_string()),
    );
    family(
        &mut out,
        "lb_server_errors",
        "gauge",
        "Errors the server last reported on /healthcheck.",
        per_server(&|s| s.errors.to_string()),
    );

    let _ = writeln!(out, "# HELP lb_server_response_seconds From dispatch to the end of the server's reply.");
    let _ = writeln!(out, "# TYPE lb_server_response_seconds histogram");
    for s in &v.servers {
        let labels = server(s);
        let mut cumulative = 0u64;
        for (bound, n) in BUCKETS.iter().zip(s.totals.buckets.iter()) {
            cumulative += n;
            let _ =
                writeln!(out, "lb_server_response_seconds_bucket{{{labels},le=\"{}\"}} {cumulative}", value(*bound));
        }
        // The +Inf bucket counts everything, the last (overflow) bucket included.
        let count: u64 = s.totals.buckets.iter().sum();
        let _ = writeln!(out, "lb_server_response_seconds_bucket{{{labels},le=\"+Inf\"}} {count}");
        let _ =
            writeln!(out, "lb_server_response_seconds_sum{{{labels}}} {}", value(s.totals.time_sum_us as f64 / 1e6));
        let _ = writeln!(out, "lb_server_response_seconds_count{{{labels}}} {count}");
    }

    let per_class = |f: &dyn Fn(&crate::balancer::stats::ClassView) -> String| -> Vec<(String, String)> {
        v.classes.iter().map(|c| (class(c), f(c))).collect()
    };
    family(
        &mut out,
        "lb_class_served_total",
        "counter",
        "Connections of the client class dispatched to a slot.",
        per_class(&|c| c.served.to_string()),
    );
    family(
        &mut out,
        "lb_class_in_flight",
        "gauge",
        "Connections of the client class bridged now.",
        per_class(&|c| c.in_flight.to_string()),
    );
    family(
        &mut out,
        "lb_class_queued",
        "gauge",
        "Connections of the client class waiting now.",
        per_class(&|c| c.queued.to_string()),
    );
    family(&mut out, "lb_class_weight", "gauge", "The client class's weight.", per_class(&|c| c.weight.to_string()));
    out
}

/// The shared limit's families (issue 14), appended to `text` when there is one.
pub fn shared_text(v: &crate::balancer::shared::View) -> String {
    use crate::balancer::shared::LeaseState;
    let mut out = String::with_capacity(1024 + 256 * v.instances.len());
    let one = |x: String| [(String::new(), x)];
    family(
        &mut out,
        "lb_shared_share",
        "gauge",
        "Slots this instance may use for new dispatches now.",
        one(v.share.to_string()),
    );
    family(
        &mut out,
        "lb_shared_state",
        "gauge",
        "The lease's state: 1 for the current one.",
        LeaseState::ALL.map(|s| (format!("state=\"{}\"", s.name()), u8::from(s == v.state).to_string())),
    );
    family(
        &mut out,
        "lb_shared_lease_left_seconds",
        "gauge",
        "Time until this instance stops dispatching unless its lease is renewed.",
        one(value(v.lease_left.as_secs_f64())),
    );
    family(
        &mut out,
        "lb_shared_renewals_total",
        "counter",
        "Successful grants and renewals.",
        one(v.renewals.to_string()),
    );
    family(&mut out, "lb_shared_failures_total", "counter", "Failed Redis calls.", one(v.failures.to_string()));
    let label = |p: &crate::balancer::shared::InstanceView| format!("instance=\"{}\"", escape_label(&p.id));
    family(
        &mut out,
        "lb_shared_instance_share",
        "gauge",
        "Each instance's share of the group, as last read from Redis.",
        v.instances.iter().map(|p| (label(p), p.share.to_string())),
    );
    family(
        &mut out,
        "lb_shared_instance_demand",
        "gauge",
        "Each instance's demand (waiting + in flight), as last read from Redis.",
        v.instances.iter().map(|p| (label(p), p.demand.to_string())),
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::balancer::stats::{ClassView, ServerTotals, ServerView};
    use std::time::Duration;

    fn view() -> View {
        let mut t =
            ServerTotals { requests: 6, successes: 5, failures: 1, time_sum_us: 2_500_000, ..Default::default() };
        t.buckets[0] = 1; // <= 1 ms
        t.buckets[4] = 2; // <= 25 ms
        t.buckets[crate::balancer::stats::NBUCKETS - 1] = 3; // > 10 s
        View {
            limit: 4,
            in_flight: 1,
            served: 6,
            uptime: Duration::from_secs(3),
            balance: "least-loaded",
            servers: vec![ServerView {
                address: "127.0.0.1:9001".into(),
                up: true,
                in_flight: 1,
                totals: t,
                ..ServerView::default()
            }],
            classes: vec![ClassView { key: "a\"b\\c\nd".into(), weight: 2, ..ClassView::default() }],
            ..View::default()
        }
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape_label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
        assert!(text(&view()).contains("lb_class_weight{class=\"a\\\"b\\\\c\\nd\"} 2\n"));
    }

    #[test]
    fn the_histogram_is_cumulative() {
        let t = text(&view());
        let line = |le: &str| format!("lb_server_response_seconds_bucket{{server=\"127.0.0.1:9001\",le=\"{le}\"}} ");
        assert!(t.contains(&format!("{}1\n", line("0.001"))), "{t}");
        assert!(t.contains(&format!("{}1\n", line("0.01"))), "{t}");
        assert!(t.contains(&format!("{}3\n", line("0.025"))), "{t}");
        assert!(t.contains(&format!("{}3\n", line("10"))), "{t}");
        assert!(t.contains(&format!("{}6\n", line("+Inf"))), "{t}");
        assert!(t.contains("lb_server_response_seconds_count{server=\"127.0.0.1:9001\"} 6\n"));
        assert!(t.contains("lb_server_response_seconds_sum{server=\"127.0.0.1:9001\"} 2.5\n"));
    }

    #[test]
    fn every_family_has_help_and_type() {
        let t = text(&view());
        let types: Vec<&str> = t.lines().filter(|l| l.starts_with("# TYPE ")).collect();
        let helps = t.lines().filter(|l| l.starts_with("# HELP ")).count();
        assert_eq!(types.len(), helps);
        for name in [
            "lb_server_requests_total counter",
            "lb_server_successes_total counter",
            "lb_server_failures_total counter",
            "lb_server_bytes_total counter",
            "lb_class_served_total counter",
            "lb_served_total counter",
            "lb_rejected_total counter",
            "lb_abandoned_total counter",
            "lb_in_flight gauge",
            "lb_queued gauge",
            "lb_limit gauge",
            "lb_server_up gauge",
            "lb_server_in_flight gauge",
            "lb_server_entries gauge",
            "lb_server_errors gauge",
            "lb_class_in_flight gauge",
            "lb_class_queued gauge",
            "lb_class_weight gauge",
            "lb_server_response_seconds histogram",
        ] {
            assert!(types.contains(&format!("# TYPE {name}").as_str()), "no {name}");
        }
        assert!(t.contains("lb_server_bytes_total{server=\"127.0.0.1:9001\",direction=\"to_client\"} 0\n"));
        assert!(t.contains("lb_server_up{server=\"127.0.0.1:9001\"} 1\n"));
        assert!(t.ends_with('\n'));
    }

    /// `promtool check metrics` on `text`: its exit status and what it said.
    fn promtool(text: &str) -> (bool, String) {
        use std::io::Write;
        use std::process::{Command, Stdio};
        let child = Command::new("promtool")
            .args(["check", "metrics"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn();
        let mut child = match child {
            Ok(c) => c,
            Err(e) => panic!(
                "cannot run promtool ({e}): install the Debian package 'prometheus' \
                 (apt-get install prometheus) to check /metrics"
            ),
        };
        child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        (
            out.status.success(),
            format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)),
        )
    }

    /// See: issue #7 ("check the output in a test with the real promtool check metrics").
    #[test]
    fn promtool_accepts_the_exposition() {
        let mut busy = view();
        busy.rate = Some(20.0);
        busy.servers.push(ServerView {
            address: "[::1]:9002".into(),
            reason: "refused".into(),
            ..ServerView::default()
        });
        busy.classes.push(ClassView { key: "10.0.0.0/8".into(), weight: 3, in_flight: 2, queued: 5, served: 9 });
        for v in [View::default(), view(), busy] {
            let t = text(&v);
            let (ok, said) = promtool(&t);
            assert!(ok, "promtool refused the exposition:\n{said}\n---\n{t}");
            assert!(said.trim().is_empty(), "promtool complained:\n{said}\n---\n{t}");
        }
    }
}
