//! Each event type reaches exactly the clients the protocol table names, unchanged and
//! CRLF-terminated. Something not delivered is proven by a later marker arriving first.

use crate::relay_support::Relay;

#[test]
fn each_type_notifies_whom_the_table_says() {
    let relay = Relay::start(&[]);
    let mut c1 = relay.client(1);
    let mut c2 = relay.client(2);
    let mut c3 = relay.client(3);
    let mut src = relay.source();
    src.send(&[
        "1|F|1|2", // 2 is told; 1 now follows 2
        "2|F|3|2", // 2 is told; 3 now follows 2
        "3|S|2",   // followers of 2: 1 and 3
        "4|P|1|3", // 3 only
        "5|U|3|2", // nobody; 3 no longer follows 2
        "6|S|2",   // followers of 2: 1 only
        "7|B",     // everyone
    ]);
    c1.expect(&["3|S|2", "6|S|2", "7|B"]);
    c2.expect(&["1|F|1|2", "2|F|3|2", "7|B"]);
    // 3 gets neither the unfollow nor the status after it: the broadcast comes next
    c3.expect(&["3|S|2", "4|P|1|3", "7|B"]);
}

#[test]
fn lines_are_forwarded_as_read_with_crlf() {
    let relay = Relay::start(&[]);
    let mut c = relay.client(7);
    let mut src = relay.source();
    // leading zeros stay, a bare LF becomes CRLF, a CRLF line is unchanged
    src.raw(b"0001|P|09|7\n2|B\r\n");
    c.expect(&["0001|P|09|7", "2|B"]);
}

#[test]
fn a_status_update_reaches_only_current_followers() {
    let relay = Relay::start(&[]);
    let mut a = relay.client(10);
    let mut b = relay.client(11);
    let mut src = relay.source();
    src.send(&["1|F|10|20", "2|F|11|20", "3|F|10|20", "4|U|11|20", "5|S|20", "6|B"]);
    a.expect(&["5|S|20", "6|B"]);
    b.expect(&["6|B"]);
}
