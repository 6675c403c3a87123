//! An idle keep-alive client is closed after `--keep-alive-timeout`, and not much later: the
//! accepting thread's next deadline was the idle server connection's (15 s by default), so a
//! client parked by a worker must wake it to count (see `park::Lot::sleep_until`).

use crate::keepalive::{self, Act, Client, Group};
use crate::util::*;
use std::time::{Duration, Instant};

#[test]
fn an_idle_keep_alive_client_is_closed_after_its_timeout() {
    let s = keepalive::start("s", &Group::new(), |_, name| Act::Reply(keepalive::ok(name, "ok")));
    let lb = balancer(&["--mode", "http", "-R", "1000000", "--keep-alive-timeout", "1"], &[s.port]);
    // Twice: the first time the lot was empty; the second, the accepting thread has slept
    // through a deadline before.
    for round in 0..2 {
        let mut c = Client::connect(lb.port);
        assert_eq!(c.get("/").status, 200, "round {round}; log:\n{}", lb.proc.stderr());
        let idle_from = Instant::now();
        assert!(c.closed(), "round {round}: not closed within the client's 20 s read timeout");
        let idle = idle_from.elapsed();
        assert!(idle >= Duration::from_millis(900), "round {round}: closed after {idle:?}, before its 1 s");
        // Not a performance bound: the timeout is honoured, not put off to the next 15 s deadline.
        assert!(idle < Duration::from_secs(6), "round {round}: closed only after {idle:?}");
    }
    // A client that keeps talking is never closed for being idle.
    let mut c = Client::connect(lb.port);
    for _ in 0..4 {
        // Pacing the client, not a wait: gaps shorter than its timeout, 2 s of them in all.
        std::thread::sleep(Duration::from_millis(500));
        assert_eq!(c.get("/").status, 200);
    }
    assert_eq!(s.conns(), 1, "the server connection was not reused across clients");
}
