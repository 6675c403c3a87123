//! When the source closes, everything received is still delivered (events behind a gap after
//! the gap timeout); a new source continues the sequence; a second concurrent source is refused.

use crate::relay_support::Relay;

#[test]
fn events_behind_a_gap_are_delivered_after_the_source_closes() {
    let relay = Relay::start(&["--gap-timeout", "200ms"]);
    let mut c = relay.client(1);
    let mut src = relay.source();
    src.send(&["1|B", "3|B", "4|P|2|1"]);
    src.close();
    relay.wait_log("closed after 3 lines");
    c.expect(&["1|B", "3|B", "4|P|2|1"]);
    relay.wait_log("seq 2..=2 missing");
}

#[test]
fn a_last_line_without_line_end_counts() {
    let relay = Relay::start(&[]);
    let mut c = relay.client(1);
    let mut src = relay.source();
    src.raw(b"1|B\r\n2|B");
    src.close();
    c.expect(&["1|B", "2|B"]);
}

#[test]
fn a_new_source_continues_the_sequence() {
    let relay = Relay::start(&[]);
    let mut one = relay.client(1);
    let mut two = relay.client(2);
    let mut src = relay.source();
    src.send(&["1|F|1|2", "2|B"]);
    two.expect(&["1|F|1|2", "2|B"]);
    src.close();
    relay.wait_log("closed after 2 lines");
    let mut src = relay.source();
    relay.wait_log("next seq 3");
    src.send(&["4|S|2", "3|B"]);
    // the follow from the first connection still holds: no reset
    one.expect(&["2|B", "3|B", "4|S|2"]);
}

#[test]
fn a_second_source_is_refused() {
    let relay = Relay::start(&[]);
    let mut c = relay.client(1);
    let mut src = relay.source();
    let second = crate::relay_support::Source::connect(relay.event_port);
    relay.wait_log("refused a second source");
    let mut buf = [0u8; 1];
    second.stream.set_read_timeout(Some(crate::relay_support::WAIT)).unwrap();
    let n = std::io::Read::read(&mut &second.stream, &mut buf);
    assert!(matches!(n, Ok(0)) || n.is_err(), "the second source was not closed: {n:?}");
    src.send(&["1|B"]);
    c.expect(&["1|B"]);
}
