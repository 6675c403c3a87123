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

/// A panic outside the per-ticket catch_unwind (as one inside `Dispatcher::take` would be)
/// also leaves a replacement and frees the slot: with one slot, later clients are served.
/// See: issue #11 (before, each worker that died there was gone for good).
#[test]
fn a_worker_dying_outside_a_ticket_is_replaced_and_its_slot_freed() {
    let a = backend(&[]);
    let lb = balancer_env(&["-N", "1"], &[a.port], &[("LB_FAULT_DIE_AT", "2")]);
    assert_eq!(get(lb.port, "/api/v1/hello").status, 200);
    // The dying worker held this client's ticket: it is closed unanswered (a reset, since
    // its request was never read).
    match exchange(lb.port, b"GET /api/v1/hello HTTP/1.1\r\nHost: x\r\n\r\n", Duration::from_secs(10)) {
        Ok(raw) => assert!(raw.is_empty(), "{}", String::from_utf8_lossy(&raw)),
        Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}"),
    }
    lb.proc.wait_line("worker thread died outside a ticket; replacing it", Duration::from_secs(5));
    for _ in 0..3 {
        assert_eq!(get(lb.port, "/api/v1/hello").status, 200);
    }
}
