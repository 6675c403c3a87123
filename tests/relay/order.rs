//! Events are delivered in sequence order per client whatever the order of arrival, including
//! lines split across reads.

use crate::relay_support::Relay;

#[test]
fn reversed_events_arrive_in_order() {
    let relay = Relay::start(&[]);
    let mut c = relay.client(1);
    let mut src = relay.source();
    let lines: Vec<String> =
        (1..=50).rev().map(|s| if s % 2 == 0 { format!("{s}|B") } else { format!("{s}|P|9|1") }).collect();
    let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
    src.send(&refs);
    let want: Vec<String> =
        (1..=50).map(|s| if s % 2 == 0 { format!("{s}|B") } else { format!("{s}|P|9|1") }).collect();
    let want: Vec<&str> = want.iter().map(String::as_str).collect();
    c.expect(&want);
}

#[test]
fn order_holds_across_writes_and_split_lines() {
    let relay = Relay::start(&[]);
    let mut c = relay.client(1);
    let mut src = relay.source();
    src.raw(b"3|B\r\n2|");
    src.raw(b"B\r");
    src.raw(b"\n5|B\r\n");
    src.raw(b"1|B\r\n");
    c.expect(&["1|B", "2|B", "3|B"]);
    src.raw(b"4|B\r\n");
    c.expect(&["4|B", "5|B"]);
}

#[test]
fn each_client_sees_its_own_events_in_order() {
    let relay = Relay::start(&[]);
    let mut a = relay.client(1);
    let mut b = relay.client(2);
    let mut src = relay.source();
    src.send(&["4|P|2|1", "6|P|1|2", "2|P|1|2", "5|P|2|1", "3|P|2|1", "1|P|1|2"]);
    a.expect(&["3|P|2|1", "4|P|2|1", "5|P|2|1"]);
    b.expect(&["1|P|1|2", "2|P|1|2", "6|P|1|2"]);
}
