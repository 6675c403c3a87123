//! Issue 13 with issue 14: a shared limit during a storm. Two balancers share `-N 8` through
//! a `redis-server` of the test's own (short leases: 600 ms, grace 1 s), 12 client threads on
//! each, in front of four servers that count the requests they work on across all of them.
//! Meanwhile Redis is killed and started empty, paused (SIGSTOP, a partition) and resumed,
//! and restarted empty again. Asserted: the servers never work on more than 8 at once; every
//! client gets its complete reply or the exact 503 (a client kept waiting past its queue
//! timeout of 1 s while no lease could be had); nothing else, and no client hangs. The servers
//! are healthy here: the storm is the store's.

use crate::chaos::{self, Fleet};
use crate::clients::{Load, Mode, Shared};
use crate::redis::Redis;
use crate::util::*;
use nix::sys::signal::Signal;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

const N: usize = 8;

fn shared_limit_storm(mode: Mode) {
    let mut redis = Redis::on(dead_port());
    let fleet = Fleet::start(4, chaos::short_work);
    let url = redis.url();
    let mut args = vec!["-N", "8", "--shared-limit", &url, "--shared-lease", "600ms", "--shared-grace", "1s"];
    args.extend(["--queue-timeout", "1s", "--server-timeout", "2s"]);
    if mode == Mode::Http {
        args.extend(["--mode", "http"]);
    }
    let a = balancer(&args, &fleet.ports());
    let b = balancer(&args, &fleet.ports());
    let name = mode.name();
    for lb in [&a, &b] {
        if logged(&lb.proc, "is recovering").is_some() {
            lb.wait_after(0, "recovered", Duration::from_secs(6));
        }
    }
    let (fresh, keep) = if mode == Mode::Tcp { (12, 0) } else { (6, 6) };
    let sa = Shared::new(a.port, mode, &fleet.tally);
    // Ids of B's clients from far above A's, so the two never share one.
    let sb = Shared {
        ids: std::sync::Arc::new(std::sync::atomic::AtomicU64::new(1 << 40)),
        ..Shared::new(b.port, mode, &fleet.tally)
    };
    let load_a = Load::start(&sa, fresh, keep);
    let load_b = Load::start(&sb, fresh, keep);
    let going = |more: u64| {
        let from = fleet.tally.snapshot().requests;
        let ok = fleet.tally.wait(Duration::from_secs(10), |c| c.requests >= from + more);
        assert!(
            ok,
            "dispatch did not resume: {:?}\nA:\n{}\nB:\n{}",
            fleet.tally.snapshot(),
            a.proc.stderr(),
            b.proc.stderr()
        );
    };
    going(300);
    let t0 = Instant::now();

    // Killed, then back empty: the instances stop when their leases could have ended, find
    // the group's state gone, and hold every grant for lease + grace.
    let (ma, mb) = (a.log_mark(), b.log_mark());
    redis.kill();
    a.wait_after(ma, "dispatching nothing new", Duration::from_secs(5));
    b.wait_after(mb, "dispatching nothing new", Duration::from_secs(5));
    redis = Redis::on(redis.port);
    a.wait_after(ma, "recovered", Duration::from_secs(8));
    b.wait_after(mb, "recovered", Duration::from_secs(8));
    going(100);

    // Paused (a partition), for a second past the point where the leases could have ended.
    let (ma, mb) = (a.log_mark(), b.log_mark());
    redis.proc.signal(Signal::SIGSTOP);
    a.wait_after(ma, "dispatching nothing new", Duration::from_secs(5));
    b.wait_after(mb, "dispatching nothing new", Duration::from_secs(5));
    std::thread::sleep(Duration::from_secs(1)); // the partition's length, not a wait for an event
    redis.proc.signal(Signal::SIGCONT);
    going(100);

    // Restarted empty again, under the load that resumed.
    let (ma, mb) = (a.log_mark(), b.log_mark());
    redis.kill();
    redis = Redis::on(redis.port);
    a.wait_after(ma, "recovered", Duration::from_secs(8));
    b.wait_after(mb, "recovered", Duration::from_secs(8));
    going(100);

    load_a.finish();
    load_b.finish();
    let counts = fleet.tally.snapshot();
    eprintln!(
        "[{name}] shared limit, Redis (port {}) killed, paused and restarted empty over {:.1}s\n[{name}] A: {}\n[{name}] \
         B: {}\n[{name}] the servers saw {} requests, at most {} in progress (limit {N} for the group)",
        redis.port,
        t0.elapsed().as_secs_f64(),
        sa.outcomes.line(),
        sb.outcomes.line(),
        counts.requests,
        counts.max_working
    );
    assert!(counts.max_working <= N, "the servers worked on {} requests at once (limit {N})", counts.max_working);
    for (o, lb) in [(&sa.outcomes, &a), (&sb.outcomes, &b)] {
        let failures = o.failures();
        assert!(failures.is_empty(), "{} failed:\n{}\n{}", failures.len(), failures.join("\n"), lb.proc.stderr());
        let allowed = o.ok.load(Ordering::Relaxed) + o.e503.load(Ordering::Relaxed);
        assert_eq!(allowed, o.total(), "only replies and 503s: {}\n{}", o.line(), lb.proc.stderr());
    }
    assert!(
        counts.broken_writes.is_empty(),
        "a balancer closed a server connection while it owed a reply: {:?}",
        counts.broken_writes
    );
}

#[test]
fn shared_limit_storm_tcp_mode() {
    let _one = crate::one_at_a_time();
    shared_limit_storm(Mode::Tcp);
}

#[test]
fn shared_limit_storm_http_mode() {
    let _one = crate::one_at_a_time();
    shared_limit_storm(Mode::Http);
}
