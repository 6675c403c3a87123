//! Follows are recorded whether or not the users are connected; notifications for users who are
//! not connected are dropped, not kept for later.

use crate::relay_support::Relay;

#[test]
fn follows_between_absent_users_count() {
    let relay = Relay::start(&[]);
    let mut watcher = relay.client(99);
    let mut src = relay.source();
    src.send(&["1|F|10|20", "2|B"]); // neither 10 nor 20 is connected
    watcher.expect(&["2|B"]); // the follow has been processed
    let mut ten = relay.client(10);
    src.send(&["3|S|20", "4|B"]);
    ten.expect(&["3|S|20", "4|B"]);
}

#[test]
fn notifications_for_absent_users_are_dropped() {
    let relay = Relay::start(&[]);
    let mut watcher = relay.client(99);
    let mut src = relay.source();
    src.send(&["1|P|99|5", "2|F|99|5", "3|B"]); // 5 is not connected
    watcher.expect(&["3|B"]);
    let mut five = relay.client(5);
    src.send(&["4|P|99|5"]);
    // nothing from before 5 connected is replayed: the first line 5 sees is event 4
    five.expect(&["4|P|99|5"]);
}
