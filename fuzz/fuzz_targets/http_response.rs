//! Response framing in http mode (`http::head::parse_response`) on any bytes a server sends,
//! answering one of a few requests (the first byte picks it: GET, HEAD, CONNECT, an Upgrade,
//! HTTP/1.0). Checks: no panic; a parsed head lies inside the buffer and within `MAX_HEAD`;
//! its own bytes parse the same; shorter prefixes are not complete; an answer to HEAD, a 204
//! or a 304 has no body; a body to EOF never keeps the connection; a tunnel only follows a 101
//! to an Upgrade or a 2xx to CONNECT.
#![no_main]

use lb::balancer::http::head::{BodyKind, MAX_HEAD, RequestHead, parse_request, parse_response};
use libfuzzer_sys::fuzz_target;

const REQUESTS: [&[u8]; 5] = [
    b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
    b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n",
    b"CONNECT h:443 HTTP/1.1\r\nHost: h\r\n\r\n",
    b"GET /ws HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
    b"GET / HTTP/1.0\r\n\r\n",
];

fuzz_target!(|data: &[u8]| {
    let Some((&pick, data)) = data.split_first() else { return };
    let req: RequestHead = parse_request(REQUESTS[usize::from(pick) % REQUESTS.len()]).unwrap().unwrap();
    let Ok(Some(head)) = parse_response(data, &req) else { return };
    assert!(head.len > 0 && head.len <= data.len() && head.len <= MAX_HEAD);
    assert_eq!(parse_response(&data[..head.len], &req), Ok(Some(head.clone())), "bytes after the head changed it");
    for cut in [0, head.len / 2, head.len - 1] {
        assert_eq!(parse_response(&data[..cut], &req), Ok(None), "a prefix of {cut} bytes decided early");
    }
    if req.head_only || head.status == 204 || head.status == 304 || (100..200).contains(&head.status) {
        assert_eq!(head.body, BodyKind::None, "status {} to {:?}", head.status, req);
    }
    if head.body == BodyKind::UntilEof {
        assert!(!head.keep_alive, "a body to EOF cannot keep the connection");
    }
    if head.tunnel {
        assert!(
            (head.status == 101 && req.upgrade) || (req.connect && (200..300).contains(&head.status)),
            "tunnel on {} to {:?}",
            head.status,
            req
        );
    }
});
