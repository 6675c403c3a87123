//! Each gap gets its own timeout (see: issue #13, the relay's long run). A source whose every
//! write fills the last gap and opens a new one keeps the window stalled at every round; the
//! relay used to keep the deadline of the first stall while `next` moved on, so after
//! `--gap-timeout` of such a stream it skipped a gap opened a moment before, and the events of
//! it, arriving right after, were refused as late: eventsim runs of 1M events lost
//! notifications on a loaded machine.

use crate::relay_support::Relay;
use std::time::Duration;

#[test]
fn rolling_gaps_each_get_their_own_timeout() {
    let relay = Relay::start(&["--gap-timeout", "300ms"]);
    let mut c = relay.client(1);
    let mut src = relay.source();
    src.send(&["2|B"]); // 1 missing
    // 40 writes 30 ms apart: 1.2 s of a stalled window, each gap 30 ms old when filled.
    for k in 0..40u64 {
        let (fill, ahead) = (2 * k + 1, 2 * k + 4);
        std::thread::sleep(Duration::from_millis(30)); // pacing the source, not waiting on the relay
        src.send(&[&format!("{fill}|B"), &format!("{ahead}|B")]);
        c.expect(&[&format!("{fill}|B"), &format!("{}|B", fill + 1)]);
    }
    assert_eq!(relay.log_count("missing"), 0, "a gap was skipped:\n{}", relay.log_text());
    assert_eq!(relay.log_count("already delivered or skipped"), 0, "{}", relay.log_text());
}
