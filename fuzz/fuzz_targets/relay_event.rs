//! The relay's event line parser (`relay::event::parse`) and its log form (`printable`) on
//! any line. Checks: no panic; an accepted line is at most `MAX_LINE` bytes, has a sequence
//! number of at least 1, and the event written back in the protocol's form parses to the same
//! event; `printable` is one line of bounded length.
#![no_main]

use lb::relay::event::{Kind, MAX_LINE, parse, printable};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let shown = printable(data);
    assert!(!shown.contains('\n') && !shown.contains('\r'));
    assert!(shown.len() <= 80 * 10 + 3, "{} bytes", shown.len());
    let Ok(e) = parse(data) else { return };
    assert!(data.len() <= MAX_LINE && e.seq >= 1);
    let again = match e.kind {
        Kind::Follow => format!("{}|F|{}|{}", e.seq, e.from, e.to),
        Kind::Unfollow => format!("{}|U|{}|{}", e.seq, e.from, e.to),
        Kind::Broadcast => format!("{}|B", e.seq),
        Kind::Private => format!("{}|P|{}|{}", e.seq, e.from, e.to),
        Kind::Status => format!("{}|S|{}", e.seq, e.from),
    };
    assert_eq!(parse(again.as_bytes()), Ok(e), "{again}");
    assert!(again.len() <= data.len(), "the written form is never longer (leading zeros only shrink)");
});
