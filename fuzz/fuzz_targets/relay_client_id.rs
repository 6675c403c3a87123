//! The relay's client id parser (`relay::client::id_line`), fed what a client sends in
//! arbitrary pieces as `Client::read_id` receives them (at most 32 bytes in all). The first
//! byte seeds the cuts. Checks: no panic; the answer does not depend on how the bytes were cut;
//! an id is exactly the decimal number before the first line end (one CR allowed before the
//! LF) within the first 32 bytes; garbage is never longer than 32 bytes.
#![no_main]

use lb::relay::client::{IdRead, id_line};
use libfuzzer_sys::fuzz_target;

const ID_MAX: usize = 32;

/// Receives `sent` in pieces as the socket would deliver them into the 32-byte buffer.
fn receive(sent: &[u8], mut cut: impl FnMut() -> usize) -> Option<IdRead> {
    let mut buf = Vec::new();
    let mut at = 0;
    loop {
        if let Some(done) = id_line(&buf) {
            return Some(done);
        }
        if at == sent.len() {
            return None; // the client stopped sending: Pending (then Closed at its EOF)
        }
        let room = ID_MAX - buf.len();
        let n = cut().clamp(1, room).min(sent.len() - at);
        buf.extend_from_slice(&sent[at..at + n]);
        at += n;
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&seed, sent)) = data.split_first() else { return };
    let whole = receive(sent, || ID_MAX);
    let bytes = receive(sent, || 1);
    let mut x = u32::from(seed) | 1;
    let cuts = receive(sent, || {
        x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        (x >> 16) as usize % 8 + 1
    });
    assert_eq!(whole, bytes);
    assert_eq!(whole, cuts);
    let first = &sent[..sent.len().min(ID_MAX)];
    match &whole {
        Some(IdRead::Id(id)) => {
            let end = first.iter().position(|&b| b == b'\n').expect("an id without a line end");
            let line = &first[..end];
            let digits = line.strip_suffix(b"\r").unwrap_or(line);
            assert!(!digits.is_empty() && digits.iter().all(u8::is_ascii_digit));
            assert_eq!(std::str::from_utf8(digits).unwrap().parse::<u64>(), Ok(*id));
        }
        Some(IdRead::Garbage(g)) => assert!(g.len() <= ID_MAX),
        Some(other) => panic!("id_line said {other:?}"),
        None => assert!(first.len() < ID_MAX && !first.contains(&b'\n')),
    }
});
