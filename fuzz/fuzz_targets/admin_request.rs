//! The admin endpoint's request reader (`http::read_request`) on any bytes, read from a
//! `&[u8]` as from a socket, and the admin's own handling of a `PUT /rate` or `PUT /limit`
//! body. Checks: no panic; a request read has a method and a path without spaces, a body of
//! exactly its Content-Length and at most 64 KiB; a body accepted as a rate or a limit is in
//! its range.
#![no_main]

use lb::balancer::config::{self, MAX_LIMIT, MAX_RATE, MIN_RATE};
use lb::balancer::http::{head_end, header, read_request};
use libfuzzer_sys::fuzz_target;
use std::time::{Duration, Instant};

fuzz_target!(|data: &[u8]| {
    let mut reader = data;
    let Ok(req) = read_request(&mut reader, Instant::now() + Duration::from_secs(60)) else { return };
    assert!(!req.method.contains(' ') && !req.path.contains(' '));
    assert!(req.body.len() <= 64 * 1024);
    let end = head_end(data).expect("a request without the end of its head");
    let head = String::from_utf8_lossy(&data[..end]);
    if let Some(len) = header(&head, "content-length") {
        assert_eq!(Ok(req.body.len()), len.parse::<usize>());
    }
    // As `admin::route` does: lossy text, trimmed.
    let body = String::from_utf8_lossy(&req.body).trim().to_string();
    if let Ok(Some(rate)) = config::parse_rate(&body) {
        assert!((MIN_RATE..=MAX_RATE).contains(&rate), "rate {rate} from {body:?}");
    }
    if let Ok(n) = config::parse_limit(&body) {
        assert!((1..=MAX_LIMIT).contains(&n), "limit {n} from {body:?}");
    }
});
