//! The admin endpoint's request reader (`http::read_request`) on any bytes, read from a
//! `&[u8]` as from a socket, and the admin's own handling of a `PUT /rate` or `PUT /limit`
//! body. Checks: no panic; a request read has a method and a path without spaces, a body of
//! exactly its Content-Length and at most 64 KiB; a body accepted as a rate or a limit is in
//! its range.
#![no_main]

use lb::balancer::config::{self, MAX_LIMIT, MAX_RATE, MIN_RATE};
use lb::balancer::http::read_request;
use libfuzzer_sys::fuzz_target;
use std::time::{Duration, Instant};

fuzz_target!(|data: &[u8]| {
    let mut reader = data;
    let Ok(req) = read_request(&mut reader, Instant::now() + Duration::from_secs(60)) else { return };
    assert!(!req.method.contains(' ') && !req.path.contains(' '));
    assert!(req.body.len() <= 64 * 1024);
    // The oracle reads the head with httparse directly, not through the code under test: every
    // Content-Length a request read carries names the length of its body.
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut head = httparse::Request::new(&mut headers);
    assert!(matches!(head.parse(data), Ok(httparse::Status::Complete(_))), "read a request without a complete head");
    for h in head.headers.iter().filter(|h| h.name.eq_ignore_ascii_case("content-length")) {
        let len = std::str::from_utf8(h.value).ok().and_then(|v| v.trim().parse::<usize>().ok());
        assert_eq!(Some(req.body.len()), len, "body not of its Content-Length");
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
