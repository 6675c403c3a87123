//! A stalled client is disconnected once its unsent bytes would pass --client-buffer, while the
//! others keep being served in order.

use crate::relay_support::{Relay, WAIT};
use std::io::Read;
use std::net::SocketAddr;

#[test]
fn a_stalled_client_is_cut_off_and_the_others_are_served() {
    let relay = Relay::start(&["--client-buffer", "64KiB"]);
    let mut healthy = relay.client(1);
    // The stalled client reads nothing and offers a tiny receive window, so the kernel holds
    // little for it and the relay's own buffer fills quickly.
    let stalled = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    stalled.set_recv_buffer_size(4096).unwrap();
    let addr: SocketAddr = format!("127.0.0.1:{}", relay.client_port).parse().unwrap();
    stalled.connect(&addr.into()).unwrap();
    let mut stalled: std::net::TcpStream = stalled.into();
    std::io::Write::write_all(&mut stalled, b"2\r\n").unwrap();
    relay.wait_log("user 2 registered");

    let mut src = relay.source();
    let batch = 2000u64; // about 20 KB per client per batch, well under the 64 KiB limit
    let mut seq = 0u64;
    let mut batches = 0;
    while relay.log_count("over --client-buffer") == 0 {
        batches += 1;
        assert!(batches <= 500, "the stalled client was never disconnected; log:\n{}", relay.log_text());
        let lines: Vec<String> = (seq + 1..=seq + batch).map(|s| format!("{s}|B")).collect();
        let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
        src.send(&refs);
        // pace on the healthy client: it reads every line of the batch, in order
        for s in seq + 1..=seq + batch {
            assert_eq!(healthy.line().as_deref(), Some(format!("{s}|B\r\n").as_str()));
        }
        seq += batch;
    }
    let line = relay.wait_log("over --client-buffer 65536: disconnected");
    assert!(line.contains("user 2 ("), "{line}");
    seq += 1;
    src.send(&[&format!("{seq}|B")]);
    healthy.expect(&[&format!("{seq}|B")]);

    // what the stalled client did get is an unbroken prefix, then the connection ends; the
    // last line may be cut where the kernel stopped taking bytes when the relay gave up
    stalled.set_read_timeout(Some(WAIT)).unwrap();
    let mut got = Vec::new();
    let r = stalled.read_to_end(&mut got);
    assert!(r.is_ok() || r.unwrap_err().kind() == std::io::ErrorKind::ConnectionReset);
    let text = String::from_utf8(got).unwrap();
    let (whole, cut) = text.rsplit_once("\r\n").unwrap_or(("", &text));
    let mut n = 0;
    for l in whole.split("\r\n").filter(|l| !l.is_empty()) {
        n += 1;
        assert_eq!(l, format!("{n}|B"));
    }
    assert!(format!("{}|B", n + 1).starts_with(cut), "{cut:?} after line {n}");
}

#[test]
fn a_client_that_keeps_up_is_never_cut_off_by_a_burst() {
    // A burst released at once by the window (here 3,000 lines of about 10 bytes, more than the
    // 8 KiB limit) must not cost a reading client its connection: the relay writes as it goes.
    let relay = Relay::start(&["--client-buffer", "8KiB"]);
    let mut c = relay.client(1);
    let mut src = relay.source();
    let lines: Vec<String> = (2..=3000).map(|s| format!("{s}|B")).collect();
    let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
    src.send(&refs);
    src.send(&["1|B"]);
    let mut got = 0;
    while got < 3000 {
        match c.line() {
            Some(l) => {
                got += 1;
                assert_eq!(l, format!("{got}|B\r\n"));
            }
            None => panic!("cut off after {got} lines; log:\n{}", relay.log_text()),
        }
    }
}
