//! Duplicate, too-far-ahead and malformed lines are logged once with their line number and
//! skipped; the stream goes on in step.

use crate::relay_support::Relay;

#[test]
fn bad_lines_are_logged_and_skipped() {
    let relay = Relay::start(&["--window", "8"]);
    let mut c = relay.client(1);
    let mut src = relay.source();
    let long = format!("4|P|1|{}", "1".repeat(200));
    src.send(&[
        "1|B",       // line 1: delivered
        "1|B",       // line 2: late duplicate
        "3|B",       // line 3: waits for 2
        "3|P|2|1",   // line 4: duplicate of a waiting event
        "100|B",     // line 5: beyond the window
        "x|B",       // line 6: bad sequence number
        "2|Q|1",     // line 7: bad type
        "2|F|1",     // line 8: missing field
        "2|P|a|1",   // line 9: non-numeric id
        &long,       // line 10: over-long
        "",          // line 11: empty
        "2|B|extra", // line 12: extra field
        "2|B",       // line 13: fills the gap
    ]);
    c.expect(&["1|B", "2|B", "3|B"]);
    src.send(&["marker"]); // line 14: once it is logged, every earlier line is
    relay.wait_log("line 14: ");
    for (no, what) in [
        (2, "already delivered or skipped"),
        (4, "duplicate of waiting seq 3"),
        (5, "beyond the window"),
        (6, "bad sequence number"),
        (7, "bad event type"),
        (8, "wrong number of fields"),
        (9, "bad user id"),
        (10, "line longer than 64 bytes"),
        (11, "bad sequence number"),
        (12, "wrong number of fields"),
    ] {
        let line = relay.wait_log(&format!("line {no}: "));
        assert!(line.contains(what), "line {no} should be logged as {what:?}: {line}");
        assert_eq!(relay.log_count(&format!("line {no}: ")), 1, "line {no} logged more than once");
    }
    // the over-long line's tail did not desynchronise anything: the next events still flow
    src.send(&["4|B"]);
    c.expect(&["4|B"]);
}

#[test]
fn a_huge_line_costs_one_log_line() {
    let relay = Relay::start(&[]);
    let mut c = relay.client(1);
    let mut src = relay.source();
    let mut junk = vec![b'7'; 1 << 20];
    junk.extend_from_slice(b"\r\n1|B\r\n");
    src.raw(&junk);
    c.expect(&["1|B"]);
    // a marker: once line 3's complaint is in, every earlier complaint is (stderr is ordered)
    src.send(&["marker"]);
    relay.wait_log("line 3: ");
    assert_eq!(relay.log_count("line 1: line longer than 64 bytes"), 1, "{}", relay.log_text());
    assert_eq!(relay.log_count("source: line"), 2, "{}", relay.log_text());
}
