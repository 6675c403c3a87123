//! Choosing a server: least entries, then fewest errors, then position; local +1 per
//! dispatch; counts refreshed by a probe after R dispatches and every 5 s.

use crate::util::*;
use std::time::Duration;

fn name(b: &Backend) -> String {
    format!("backend-{}", b.port)
}

#[test]
fn least_loaded_by_preset_counts_then_local_counts() {
    let a = backend(&["--entries", "10"]);
    let b = backend(&["--entries", "2"]);
    let c = backend(&["--entries", "5"]);
    let lb = balancer(&["-R", "1000"], &[a.port, b.port, c.port]);
    // b: 2,3,4 then ties with c at 5 and wins by position; then c at 5 < b at 6.
    let order: Vec<String> = (0..5).map(|_| served_by(lb.port, "/healthcheck")).collect();
    assert_eq!(order, vec![name(&b), name(&b), name(&b), name(&b), name(&c)], "{}", lb.proc.stderr());
}

#[test]
fn errors_break_ties_and_a_probe_after_r_changes_the_route() {
    let a = backend(&[]);
    let b = backend(&["--entries", "2"]);
    let lb = balancer(&["-R", "2"], &[a.port, b.port]);
    // Two 404s on a: errors there, which only a probe can tell the balancer.
    assert_eq!(get(lb.port, "/missing").header("Server-Name"), Some(name(&a)));
    assert_eq!(get(lb.port, "/missing").header("Server-Name"), Some(name(&a)));
    // The round after the 2nd dispatch finished before this choice: entries tie at 3, a
    // has 2 errors, so b. Local counts alone (a=2, b=2, no errors) would pick a.
    assert_eq!(served_by(lb.port, "/healthcheck"), name(&b), "{}", lb.proc.stderr());
}

#[test]
fn the_periodic_probe_refreshes_counts() {
    let a = backend(&[]);
    let b = backend(&["--entries", "3"]);
    let lb = balancer(&["-R", "1000", "-v"], &[a.port, b.port]);
    lb.proc.wait_line(&format!("probe 127.0.0.1:{}: up", a.port), Duration::from_secs(10));
    for _ in 0..10 {
        assert_eq!(get(a.port, "/healthcheck").status, 200); // straight to a: the balancer can't see these
    }
    assert_eq!(served_by(lb.port, "/healthcheck"), name(&a)); // local: a=1 < b=3
    // The 5 s round sees a at 1 (probe) + 10 + 1 = 12 entries.
    lb.proc.wait_line(&format!("probe 127.0.0.1:{}: up, errors=0 entries=12", a.port), Duration::from_secs(8));
    assert_eq!(served_by(lb.port, "/healthcheck"), name(&b));
}

#[test]
fn a_server_given_twice_is_one_server() {
    let a = backend(&[]);
    let lb = balancer(&[], &[a.port, a.port]);
    assert!(lb.proc.stderr().contains("given twice; using it once"), "{}", lb.proc.stderr());
    assert_eq!(served_by(lb.port, "/healthcheck"), name(&a));
}

#[test]
fn thirty_parallel_clients_with_n6_are_all_served_and_never_more_than_6() {
    let a = backend(&["--delay-ms", "100"]);
    let b = backend(&["--delay-ms", "100"]);
    let lb = balancer(&["-N", "6"], &[a.port, b.port]);
    let handles: Vec<_> = (0..30)
        .map(|_| {
            let port = lb.port;
            std::thread::spawn(move || get(port, "/api/v1/hello").status)
        })
        .collect();
    let statuses: Vec<u16> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    // Each server alone never saw more than the bound (the global sum is checked on one
    // server in tests/limits.rs, where the server's own maximum is the global one).
    let (_, max_a) = inflight(a.port);
    let (_, max_b) = inflight(b.port);
    assert!(max_a <= 6 && max_b <= 6, "servers saw {max_a} and {max_b} in parallel");
}
