//! A new source that starts the sequence again resets the relay: the follow graph and the
//! window start empty.

use crate::relay_support::Relay;

#[test]
fn a_source_starting_again_at_1_resets_follows() {
    let relay = Relay::start(&[]);
    let mut one = relay.client(1);
    let mut src = relay.source();
    src.send(&["1|F|1|2", "2|S|2"]);
    one.expect(&["2|S|2"]); // 1 follows 2
    src.close();
    relay.wait_log("closed after 2 lines");
    let mut src = relay.source();
    src.send(&["1|S|2", "2|B"]);
    relay.wait_log("new stream starts at seq 1, behind next 3: follows and window reset");
    // after the reset 1 follows nobody: the status update is not delivered, the broadcast is
    one.expect(&["2|B"]);
}

#[test]
fn a_shuffled_restart_is_recognised() {
    let relay = Relay::start(&[]);
    let mut one = relay.client(1);
    let mut src = relay.source();
    src.send(&["2|B", "1|B", "3|B"]);
    one.expect(&["1|B", "2|B", "3|B"]);
    src.close();
    relay.wait_log("closed after 3 lines");
    let mut src = relay.source();
    // a new stream whose first batch was shuffled: it opens with 2, not 1
    src.send(&["2|P|5|1", "1|B"]);
    one.expect(&["1|B", "2|P|5|1"]);
    relay.wait_log("new stream starts at seq 2");
}

#[test]
fn a_restart_delivers_what_the_old_stream_left_first() {
    let relay = Relay::start(&["--gap-timeout", "1000s"]);
    let mut one = relay.client(1);
    let mut src = relay.source();
    src.send(&["1|B", "3|P|9|1"]);
    one.expect(&["1|B"]);
    src.close();
    relay.wait_log("closed after 2 lines");
    let mut src = relay.source();
    src.send(&["1|P|8|1"]);
    // the old stream's event 3 goes out (its gap given up) before the new stream's event 1
    one.expect(&["3|P|9|1", "1|P|8|1"]);
}
