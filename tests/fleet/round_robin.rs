//! `--balance round-robin`: the servers in turn, in the order given, skipping one that is down
//! (issue #7).

use crate::util::*;

#[test]
fn round_robin_takes_the_servers_in_turn_and_skips_one_that_is_down() {
    let a = backend(&["--name", "a"]);
    let b = backend(&["--name", "b"]);
    let c = backend(&["--name", "c"]);
    let down = dead_port();
    let lb = balancer(&["--balance", "round-robin", "--admin", "0"], &[a.port, b.port, down, c.port]);
    let st = status(lb.admin.unwrap());
    assert_eq!(st["balance"], "round-robin");
    assert_eq!(st["servers"][2]["up"], false, "the startup round found it down: {st}");
    let order: Vec<String> = (0..9).map(|_| served_by(lb.port, "/api/v1/hello")).collect();
    assert_eq!(order, ["a", "b", "c", "a", "b", "c", "a", "b", "c"]);
}
