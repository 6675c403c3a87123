//! What each simulated client must receive next, shared by the source thread (which appends)
//! and the checking thread (which consumes).
//!
//! Locking: one `parking_lot::Mutex` per client guards its [`Expect`]. The source thread takes
//! it once per batch per client that gains lines, appends, and lets go before writing the batch
//! to the relay, so every byte a correct relay can send is expected before it can arrive. The
//! checker takes it once per read. Neither does I/O under the lock. The counters in [`Shared`]
//! are atomics: the source adds to `expected_bytes` before it sets `source_done`, and the
//! checker reads them in the opposite order, so "done and all bytes received" is final.

use std::sync::atomic::{AtomicBool, AtomicU64};
use std::time::Instant;

use parking_lot::Mutex;

/// One client's expected bytes: whole CRLF-terminated lines, in order.
#[derive(Default)]
pub struct Expect {
    /// Expected bytes; `buf[start..]` is still to come.
    pub buf: Vec<u8>,
    /// Bytes of `buf` received and matched.
    pub start: usize,
    /// Where the line containing `start` begins (`<= start`), kept for failure messages.
    pub line_start: usize,
    /// When `buf[start..]` last went from empty to non-empty; None while empty.
    pub since: Option<Instant>,
}

impl Expect {
    pub fn pending(&self) -> bool {
        self.start < self.buf.len()
    }

    /// Appends lines; starts the missing-line clock if nothing was pending.
    pub fn append(&mut self, bytes: &[u8], now: Instant) {
        if !self.pending() {
            self.since = Some(now);
        }
        self.buf.extend_from_slice(bytes);
    }

    /// Drops the matched bytes before the current line once they dominate the buffer.
    pub fn compact(&mut self) {
        if self.line_start > 64 * 1024 && self.line_start * 2 > self.buf.len() {
            self.buf.drain(..self.line_start);
            self.start -= self.line_start;
            self.line_start = 0;
        }
    }

    /// The expected line that starts at `line_start`, CRLF removed; empty if none.
    pub fn current_line(&self) -> &[u8] {
        let rest = &self.buf[self.line_start.min(self.buf.len())..];
        let end = rest.iter().position(|&b| b == b'\n').unwrap_or(rest.len());
        let l = &rest[..end];
        l.strip_suffix(b"\r").unwrap_or(l)
    }
}

/// State shared by the source thread and the checker.
pub struct Shared {
    pub expects: Vec<Mutex<Expect>>,
    /// Bytes appended to all expectations so far.
    pub expected_bytes: AtomicU64,
    /// Lines appended to all expectations so far (notifications).
    pub expected_lines: AtomicU64,
    /// Set once the last batch was written and the source closed.
    pub source_done: AtomicBool,
    /// Why the source thread stopped early, if it did.
    pub source_error: Mutex<Option<String>>,
}

impl Shared {
    pub fn new(clients: usize) -> Shared {
        Shared {
            expects: (0..clients).map(|_| Mutex::new(Expect::default())).collect(),
            expected_bytes: AtomicU64::new(0),
            expected_lines: AtomicU64::new(0),
            source_done: AtomicBool::new(false),
            source_error: Mutex::new(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_crosses_threads() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Shared>();
    }

    #[test]
    fn compaction_keeps_the_current_line() {
        let mut e = Expect::default();
        let line = b"12345|S|1\r\n";
        for _ in 0..20_000 {
            e.append(line, Instant::now());
        }
        e.start = line.len() * 15_000 + 3;
        e.line_start = line.len() * 15_000;
        e.compact();
        assert_eq!(e.line_start, 0);
        assert_eq!(e.start, 3);
        assert_eq!(e.current_line(), b"12345|S|1");
    }
}
