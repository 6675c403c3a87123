//! When every server is down, a client's arrival asks for a probe of the servers at once: a
//! server that came back is used again without waiting for the 5 s probe timer, while every
//! client meanwhile got the 500. See: issue 13 (found by the storm).

use crate::util::*;
use std::time::Duration;

#[test]
fn a_server_that_comes_back_while_all_were_down_is_used_before_the_probe_timer() {
    let port = dead_port();
    let lb = balancer(&["-R", "1000000"], &[port]);
    // The startup round finds it down: the first client gets the 500.
    assert_eq!(get(lb.port, "/api/v1/hello").status, 500);
    // The next timed round is 5 s away. Bring the server back now.
    let p = port.to_string();
    let server = Proc::spawn(BACKEND, &["--close-each", &p]);
    server.wait_line("listening on", Duration::from_secs(10));
    // This client finds no server up (the 500, unless a round asked for by the first client
    // already saw it back) and asks for a probe round.
    let status = get(lb.port, "/api/v1/hello").status;
    assert!(status == 500 || status == 200, "{status}");
    // Well before the 5 s timer: without the request for a round this waits 5 s and fails.
    lb.proc.wait_line(&format!("server 127.0.0.1:{port} is up"), Duration::from_secs(3));
    assert_eq!(get(lb.port, "/api/v1/hello").status, 200);
}
