//! SIGINT/SIGTERM: stop accepting, deliver what was received and flush it, exit 0.

use crate::relay_support::Relay;

#[test]
fn sigterm_flushes_and_exits_zero() {
    let relay = Relay::start(&["--gap-timeout", "1000s"]);
    let mut c = relay.client(1);
    let mut src = relay.source();
    src.send(&["1|B", "3|P|2|1"]);
    c.expect(&["1|B"]);
    let client_port = relay.client_port;
    let (status, log) = relay.terminate();
    assert_eq!(status.code(), Some(0), "{log}");
    assert!(log.contains("signal: stopping"), "{log}");
    assert!(log.contains("stopped: 2 events delivered"), "{log}");
    // the event waiting behind the gap went out before the exit
    c.expect(&["3|P|2|1"]);
    c.expect_closed();
    assert!(std::net::TcpStream::connect(("127.0.0.1", client_port)).is_err(), "still accepting");
}

#[test]
fn sigint_on_an_idle_relay_exits_zero() {
    let relay = Relay::start(&[]);
    let pid = nix::unistd::Pid::from_raw(relay_pid(&relay));
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).unwrap();
    let mut relay = relay;
    let status = relay.wait_exit();
    assert_eq!(status.code(), Some(0), "{}", relay.log_text());
}

fn relay_pid(relay: &Relay) -> i32 {
    // the log prefix is `eventrelay[PID]`
    let line = relay.wait_log("events listening on");
    let start = line.find('[').unwrap() + 1;
    let end = line.find(']').unwrap();
    line[start..end].parse().unwrap()
}
