//! Client identification: CRLF or bare LF; garbage is closed with a log line; clients may come
//! and go at any time.

use crate::relay_support::{Client, Relay};

#[test]
fn a_bare_lf_id_is_accepted() {
    let relay = Relay::start(&[]);
    let mut c = Client::connect_raw(relay.client_port, b"42\n");
    relay.wait_log("user 42 registered");
    let mut src = relay.source();
    src.send(&["1|P|1|42"]);
    c.expect(&["1|P|1|42"]);
}

#[test]
fn garbage_ids_are_closed_with_a_log_line() {
    let relay = Relay::start(&[]);
    for (hello, shown) in [
        (&b"abc\r\n"[..], "abc"),
        (b"-5\r\n", "-5"),
        (b"\r\n", ""),
        (b"12 34\n", "12 34"),
        (b"99999999999999999999999\r\n", "99999999999999999999999"),
    ] {
        let mut c = Client::connect_raw(relay.client_port, hello);
        c.expect_closed();
        relay.wait_log(&format!("sent \"{shown}\", not a user id: closed"));
    }
    // an id that never ends is cut at 32 bytes
    let mut c = Client::connect_raw(relay.client_port, &[b'1'; 40]);
    c.expect_closed();
    relay.wait_log(&format!("sent \"{}\", not a user id", "1".repeat(32)));
    // and the relay still serves proper clients
    let mut ok = relay.client(7);
    let mut src = relay.source();
    src.send(&["1|B"]);
    ok.expect(&["1|B"]);
}

#[test]
fn clients_coming_and_going_do_not_disturb_the_others() {
    let relay = Relay::start(&[]);
    let mut steady = relay.client(1);
    let mut src = relay.source();
    for round in 0..20u64 {
        let mut passer = relay.client(100 + round);
        let seq = 2 * round + 1;
        src.send(&[&format!("{seq}|B"), &format!("{}|P|1|{}", seq + 1, 100 + round)]);
        passer.expect(&[&format!("{seq}|B"), &format!("{}|P|1|{}", seq + 1, 100 + round)]);
        steady.expect(&[&format!("{seq}|B")]);
        if round % 2 == 0 {
            // half of them leave without a word before the relay writes to them again
            drop(passer);
        }
    }
    src.send(&["41|B"]);
    steady.expect(&["41|B"]);
}

#[test]
fn a_client_closing_before_its_id_is_forgotten() {
    let relay = Relay::start(&[]);
    let c = Client::connect_raw(relay.client_port, b"12");
    let addr = c.stream().local_addr().unwrap();
    drop(c);
    relay.wait_log(&format!("{addr} closed before sending an id"));
}
