//! A missing event holds later ones back for --gap-timeout at most; then it is skipped and
//! logged, and a late arrival of it is refused.

use crate::relay_support::Relay;
use std::time::{Duration, Instant};

#[test]
fn a_missing_event_is_skipped_after_the_gap_timeout() {
    let relay = Relay::start(&["--gap-timeout", "300ms"]);
    let mut c = relay.client(1);
    let mut src = relay.source();
    let sent = Instant::now();
    src.send(&["1|B", "3|B", "4|B"]);
    c.expect(&["1|B"]);
    c.expect(&["3|B", "4|B"]);
    let waited = sent.elapsed();
    // the skip is timed from when the gap was seen, a little after `sent`
    assert!(waited >= Duration::from_millis(290), "skipped after {waited:?}, before the 300ms gap timeout");
    relay.wait_log("seq 2..=2 missing for 300ms while later events wait: skipped");
    src.send(&["2|B", "5|B"]);
    c.expect(&["5|B"]);
    relay.wait_log("line 4: seq 2 was already delivered or skipped");
}

#[test]
fn consecutive_missing_events_are_one_gap() {
    let relay = Relay::start(&["--gap-timeout", "200ms"]);
    let mut c = relay.client(1);
    let mut src = relay.source();
    src.send(&["10|B", "12|B"]);
    c.expect(&["10|B"]);
    relay.wait_log("seq 1..=9 missing");
    c.expect(&["12|B"]);
    relay.wait_log("seq 11..=11 missing");
}

#[test]
fn no_gap_no_wait() {
    // with a gap timeout far beyond the test's bounds, in-order events must still flow at once
    let relay = Relay::start(&["--gap-timeout", "1000s"]);
    let mut c = relay.client(1);
    let mut src = relay.source();
    src.send(&["2|B", "1|B", "3|B"]);
    c.expect(&["1|B", "2|B", "3|B"]);
}
