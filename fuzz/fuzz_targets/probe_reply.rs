//! The probe-reply parser (`http::parse_health`, `reply_complete`, `says_close`) on any bytes
//! a server might send to `GET /healthcheck`. Checks: no panic; a reply read as up is a 200
//! whose counts are the first two lines of its body; completeness only grows as bytes arrive (the probe
//! stops reading at the first complete prefix, so a prefix may never be complete while the
//! whole is not).
#![no_main]

use lb::balancer::http::{parse_health, reply_complete, says_close};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let health = parse_health(data);
    let complete = reply_complete(data);
    let _ = says_close(data);
    if let Ok((errors, entries)) = health {
        // The oracle reads the head with httparse directly, not through the code under test.
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut reply = httparse::Response::new(&mut headers);
        let end = match reply.parse(data) {
            Ok(httparse::Status::Complete(end)) => end,
            _ => panic!("up without a complete head"),
        };
        assert_eq!(reply.code, Some(200), "up without a 200");
        let mut body = &data[end..];
        // Every Content-Length of a reply read as up names the same length.
        let mut length = None;
        for h in reply.headers.iter().filter(|h| h.name.eq_ignore_ascii_case("content-length")) {
            let len = std::str::from_utf8(h.value).ok().and_then(|v| v.trim().parse::<usize>().ok());
            let len = len.expect("up with a bad Content-Length");
            assert!(length.is_none_or(|l| l == len), "up with two Content-Lengths");
            length = Some(len);
        }
        if let Some(len) = length {
            body = &body[..len];
        }
        let body = String::from_utf8_lossy(body);
        let mut lines = body.split('\n').map(|l| l.parse::<u64>().ok());
        assert_eq!((lines.next(), lines.next()), (Some(Some(errors)), Some(Some(entries))), "counts not the body's");
    }
    if complete {
        // Complete means a whole head (httparse takes a bare LF as a line end, so this is not
        // `head_end`), or one so malformed that no more bytes can help.
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let partial = matches!(httparse::Response::new(&mut headers).parse(data), Ok(httparse::Status::Partial));
        assert!(!partial, "complete without a whole head");
    }
    // Monotone: every prefix that is complete stays complete with more bytes after it.
    for cut in [data.len() / 4, data.len() / 2, data.len().saturating_sub(1)] {
        if reply_complete(&data[..cut]) {
            assert!(complete, "prefix of {cut} bytes complete, whole reply not");
        }
    }
});
