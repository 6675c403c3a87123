//! Body framing in http mode (`http::body::Body::feed`) fed in arbitrary pieces. The first
//! bytes pick the framing (a length, or chunked) and how the rest is cut into pieces. Checks:
//! `feed` never claims more bytes than it was given; it claims a whole piece unless the body
//! ends inside it; a body that is done stays done and claims nothing more; and cutting the same
//! bytes differently (one piece, one byte at a time, the fuzzer's cuts) gives the same total,
//! the same end and the same verdict.
#![no_main]

use lb::balancer::http::body::Body;
use lb::balancer::http::head::BodyKind;
use libfuzzer_sys::fuzz_target;

/// Feeds `input` cut at `cuts`; returns (bytes claimed, done, refused).
fn run(kind: BodyKind, input: &[u8], cuts: &mut dyn Iterator<Item = usize>) -> (usize, bool, bool) {
    let mut body = Body::new(kind);
    let mut used = 0;
    let mut at = 0;
    while at < input.len() {
        let step = cuts.next().unwrap_or(input.len()).clamp(1, input.len() - at);
        let piece = &input[at..at + step];
        at += step;
        let was_done = body.is_done();
        match body.feed(piece) {
            Ok(n) => {
                assert!(n <= piece.len(), "claimed {n} of {} bytes", piece.len());
                if was_done {
                    assert_eq!(n, 0, "a done body claimed more");
                }
                if n < piece.len() {
                    assert!(body.is_done(), "left bytes over without ending");
                }
                used += n;
            }
            Err(_) => return (used, body.is_done(), true),
        }
        if was_done {
            assert!(body.is_done(), "a done body came undone");
        }
    }
    (used, body.is_done(), false)
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 3 {
        return;
    }
    let kind = match data[0] % 4 {
        0 => BodyKind::Chunked,
        1 => BodyKind::Length(u64::from(data[1])),
        2 => BodyKind::Length(u64::from(data[1]) * 1000),
        _ => BodyKind::None,
    };
    let seed = data[2];
    let input = &data[3..];
    let whole = run(kind, input, &mut std::iter::empty());
    let bytes = run(kind, input, &mut std::iter::repeat(1));
    let mut x = u32::from(seed) | 1;
    let mut cuts = std::iter::from_fn(move || {
        // A small xorshift: pieces of 1 to 16 bytes, the same for the same seed.
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        Some((x % 16 + 1) as usize)
    });
    let cut = run(kind, input, &mut cuts);
    // A refused body may have claimed a different amount before the bad byte was seen in a
    // bigger piece; the verdict, and for accepted bodies everything, must agree.
    assert_eq!(whole.2, bytes.2, "one piece vs byte by byte: {whole:?} {bytes:?}");
    assert_eq!(whole.2, cut.2, "one piece vs cuts: {whole:?} {cut:?}");
    if !whole.2 {
        assert_eq!(whole, bytes, "one piece vs byte by byte");
        assert_eq!(whole, cut, "one piece vs cuts");
    }
    if let BodyKind::Length(n) = kind {
        assert_eq!(whole.0 as u64, n.min(input.len() as u64));
    }
});
