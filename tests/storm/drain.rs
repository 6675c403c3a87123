//! Issue 13: SIGTERM in the middle of a storm. 24 client threads (keep-alive too in http mode)
//! keep every slot busy and a queue waiting, with 100 idle connections open, when the balancer
//! is told to stop. Asserted: it exits 0 within its drain timeout; every request it took ends
//! in its complete reply or the exact 503, none cut (the servers see no connection closed while
//! they owe a reply); a request it never took (sent as it closed its listener, or on a
//! keep-alive connection it closed as idle) sees the connection close before any byte, never a
//! part of a reply; idle connections are closed (parked ones cleanly).

use crate::chaos::Fleet;
use crate::clients::{Idle, Load, Mode, Shared};
use crate::util::*;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

const DRAIN: Duration = Duration::from_secs(5);

/// 20 to 80 ms: long enough that SIGTERM finds requests in flight.
fn slow_work(id: u64) -> Duration {
    Duration::from_millis(20 + id.wrapping_mul(7919) % 60)
}

fn sigterm_mid_storm(mode: Mode) {
    let fleet = Fleet::start(4, slow_work);
    let mut args = vec!["-N", "8", "--drain-timeout", "5s", "--queue-timeout", "10s"];
    if mode == Mode::Http {
        args.extend(["--mode", "http"]);
    }
    let mut lb = balancer(&args, &fleet.ports());
    let name = mode.name();
    let sh = Shared::new(lb.port, mode, &fleet.tally);
    let mut idle = Idle::open(&sh, 100);
    let (fresh, keep) = if mode == Mode::Tcp { (24, 0) } else { (12, 12) };
    let load = Load::start(&sh, fresh, keep);
    let busy = fleet.tally.wait(Duration::from_secs(30), |c| c.requests >= 300 && c.working >= 6);
    assert!(busy, "the storm never got going: {:?}", fleet.tally.snapshot());

    // From here on a close before any byte is a request the balancer did not take.
    sh.draining.store(true, Ordering::SeqCst);
    let t0 = Instant::now();
    lb.proc.signal(nix::sys::signal::Signal::SIGTERM);
    let st = lb.proc.wait_exit(DRAIN + Duration::from_secs(5));
    let took = t0.elapsed();
    load.finish();
    let (silent, parked) = idle.wait_closed(Instant::now() + Duration::from_secs(5));
    let o = &sh.outcomes;
    let counts = fleet.tally.snapshot();
    eprintln!(
        "[{name}] SIGTERM mid-storm: exit {st} after {took:?}\n[{name}] {}\n[{name}] idle connections closed: silent \
         {} cleanly, {} reset (never accepted: the kernel resets a closed listener's backlog); parked {} cleanly, {} \
         reset; the servers saw {} requests, at most {} in progress",
        o.line(),
        silent.0,
        silent.1,
        parked.0,
        parked.1,
        counts.requests,
        counts.max_working
    );
    assert_eq!(st.code(), Some(0), "{}", lb.proc.stderr());
    // The drain ends when the last request is done, well before its timeout; the margin is
    // for the process's own exit on a loaded machine.
    assert!(took < DRAIN + Duration::from_millis(500), "exit {took:?} after SIGTERM (drain timeout {DRAIN:?})");
    assert!(logged(&lb.proc, "signal: stop accepting").is_some(), "{}", lb.proc.stderr());
    let failures = o.failures();
    assert!(failures.is_empty(), "{} failed:\n{}\n{}", failures.len(), failures.join("\n"), lb.proc.stderr());
    let allowed = o.ok.load(Ordering::Relaxed) + o.e503.load(Ordering::Relaxed) + o.not_taken.load(Ordering::Relaxed);
    assert_eq!(allowed, o.total(), "only replies, 503s and requests not taken: {}", o.line());
    assert!(counts.cut.is_empty(), "no server cut anything here");
    assert!(
        counts.broken_writes.is_empty(),
        "the balancer closed a server connection while it owed a reply: {:?}",
        counts.broken_writes
    );
    assert_eq!(parked.1, 0, "a parked keep-alive connection was reset at the drain");
    assert!(counts.max_working <= 8, "the servers saw {} at once", counts.max_working);
}

#[test]
fn sigterm_mid_storm_tcp_mode() {
    let _one = crate::one_at_a_time();
    sigterm_mid_storm(Mode::Tcp);
}

#[test]
fn sigterm_mid_storm_http_mode() {
    let _one = crate::one_at_a_time();
    sigterm_mid_storm(Mode::Http);
}
