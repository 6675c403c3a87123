//! Follow state survives a client's reconnection; the newer of two connections for one user
//! wins and the older is closed.

use crate::relay_support::Relay;

#[test]
fn follows_survive_reconnects() {
    let relay = Relay::start(&[]);
    let mut one = relay.client(1);
    let mut two = relay.client(2);
    let mut src = relay.source();
    src.send(&["1|F|1|2"]);
    two.expect(&["1|F|1|2"]);
    let addr = one.stream().local_addr().unwrap();
    drop(one);
    relay.wait_log(&format!("user 1 ({addr}) disconnected"));
    src.send(&["2|S|2", "3|B"]); // 1 is away: dropped
    two.expect(&["3|B"]); // both processed
    one = relay.client(1);
    src.send(&["4|S|2"]);
    one.expect(&["4|S|2"]);
}

#[test]
fn the_newer_connection_for_a_user_wins() {
    let relay = Relay::start(&[]);
    let mut old = relay.client(5);
    let mut new = relay.client(5);
    relay.wait_log("user 5 connected again");
    old.expect_closed();
    let mut src = relay.source();
    src.send(&["1|P|1|5", "2|B"]);
    new.expect(&["1|P|1|5", "2|B"]);
}

#[test]
fn clients_may_connect_after_the_source() {
    let relay = Relay::start(&[]);
    let mut src = relay.source();
    let mut watcher = relay.client(99);
    src.send(&["1|B"]);
    watcher.expect(&["1|B"]);
    let mut late = relay.client(3);
    src.send(&["2|B"]);
    late.expect(&["2|B"]);
    watcher.expect(&["2|B"]);
}
