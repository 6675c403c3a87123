//! Request framing in http mode (`http::head::parse_request`) on any bytes a client sends.
//! Checks: no panic; a parsed head lies inside the buffer and within `MAX_HEAD`; the head's
//! own bytes parse to the same facts (bytes after it never change it); every shorter prefix is
//! "not complete yet" (the balancer reads a head in pieces and must not decide early); and a
//! body it frames can be tracked by `Body` without a panic.
#![no_main]

use lb::balancer::http::body::Body;
use lb::balancer::http::head::{BodyKind, MAX_HEAD, parse_request};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(Some(head)) = parse_request(data) else { return };
    assert!(head.len > 0 && head.len <= data.len() && head.len <= MAX_HEAD);
    assert_eq!(data[head.len - 1], b'\n', "a head ends with its blank line");
    assert_eq!(parse_request(&data[..head.len]), Ok(Some(head.clone())), "bytes after the head changed it");
    for cut in [0, head.len / 3, head.len / 2, head.len - 1] {
        assert_eq!(parse_request(&data[..cut]), Ok(None), "a prefix of {cut} bytes decided early");
    }
    assert_ne!(head.body, BodyKind::UntilEof, "a request body never runs to EOF");
    let mut body = Body::new(head.body);
    if let Ok(n) = body.feed(&data[head.len..]) {
        assert!(n <= data.len() - head.len);
    }
});
