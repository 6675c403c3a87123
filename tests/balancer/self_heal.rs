//! A worker that panics takes neither its slot nor its client: the client gets the 500, the
//! panic is logged, and a new worker takes its place. Needs the test-only fault hook.
#![cfg(feature = "fault-injection")]

use crate::util::*;
use std::time::Duration;

#[test]
fn a_panicking_worker_is_replaced_and_its_client_answered() {
    let a = backend(&[]);
    // One worker only: if it were not replaced, nothing after the panic would be served.
    let lb = balancer_env(&["-N", "1"], &[a.port], &[("LB_FAULT_PANIC_AT", "2")]);
    assert_eq!(get(lb.port, "/api/v1/hello").status, 200);
    let raw = exchange(lb.port, b"GET /api/v1/hello HTTP/1.1\r\nHost: x\r\n\r\n", Duration::from_secs(10)).unwrap();
    assert_eq!(raw, EXACT_500);
    lb.proc.wait_line("worker panicked: fault injection", Duration::from_secs(5));
    for _ in 0..3 {
        assert_eq!(get(lb.port, "/api/v1/hello").status, 200);
    }
}
