//! The probe-reply parser (`http::parse_health`, `reply_complete`, `says_close`) on any bytes
//! a server might send to `GET /healthcheck`. Checks: no panic; a reply read as up is a 200
//! whose counts are the first two lines of its body; completeness only grows as bytes arrive (the probe
//! stops reading at the first complete prefix, so a prefix may never be complete while the
//! whole is not).
#![no_main]

use lb::balancer::http::{head_end, header, parse_health, reply_complete, says_close, status_code};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let health = parse_health(data);
    let complete = reply_complete(data);
    let _ = says_close(data);
    if let Ok((errors, entries)) = health {
        assert_eq!(status_code(data), Some(200), "up without a 200");
        let end = head_end(data).expect("up without a head");
        let head = String::from_utf8_lossy(&data[..end]);
        let mut body = &data[end..];
        if let Some(len) = header(&head, "content-length") {
            body = &body[..len.parse::<usize>().expect("up with a bad Content-Length")];
        }
        let body = String::from_utf8_lossy(body);
        let mut lines = body.split('\n').map(|l| l.parse::<u64>().ok());
        assert_eq!((lines.next(), lines.next()), (Some(Some(errors)), Some(Some(entries))), "counts not the body's");
    }
    if complete {
        assert!(head_end(data).is_some());
    }
    // Monotone: every prefix that is complete stays complete with more bytes after it.
    for cut in [data.len() / 4, data.len() / 2, data.len().saturating_sub(1)] {
        if reply_complete(&data[..cut]) {
            assert!(complete, "prefix of {cut} bytes complete, whole reply not");
        }
    }
});
