//! The reorder window: a fixed ring of `size` slots indexed by `seq % size`, holding events that
//! arrived before their turn.
//!
//! `next` is the sequence number to deliver next. An event with `next <= seq < next + size` has
//! exactly one slot, and no other event in that range shares it, so placing and taking are O(1)
//! and the ring never grows: its memory is fixed when the relay starts, whatever the stream
//! length. Anything before `next` is late (delivered or skipped already), anything at or past
//! `next + size` is too far ahead; both are refused, never stored.
//!
//! Invariants: a slot is either empty (`seq == 0`) or holds the event whose `seq` maps to it
//! with `next <= seq < next + size`; `buffered` is the number of full slots.

use super::event::{Event, MAX_LINE};

/// One stored event with the raw bytes of its line (terminator excluded).
#[derive(Clone, Copy)]
pub struct Slot {
    /// 0 for an empty slot; sequence numbers start at 1.
    seq: u64,
    pub event: Event,
    len: u8,
    text: [u8; MAX_LINE],
}

impl Slot {
    const EMPTY: Slot = Slot {
        seq: 0,
        event: Event { seq: 0, kind: super::event::Kind::Follow, from: 0, to: 0 },
        len: 0,
        text: [0; MAX_LINE],
    };

    /// The line as read from the source, without its terminator.
    pub fn text(&self) -> &[u8] {
        &self.text[..usize::from(self.len)]
    }
}

/// Where [`Window::place`] put an event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Placed {
    /// Stored in its slot, to be delivered in turn.
    Stored,
    /// An event with this sequence number is already waiting: refused.
    Duplicate,
    /// Before `next`: delivered or skipped already: refused.
    Late,
    /// At or past `next + size`: no slot for it yet: refused.
    Ahead,
}

pub struct Window {
    slots: Box<[Slot]>,
    /// The sequence number delivered next; starts at 1.
    next: u64,
    /// Number of full slots, never above `slots.len()`.
    buffered: usize,
}

impl Window {
    /// A window of `size` slots (at least 1); memory is `size` × `size_of::<Slot>()`.
    pub fn new(size: usize) -> Window {
        Window { slots: vec![Slot::EMPTY; size.max(1)].into_boxed_slice(), next: 1, buffered: 0 }
    }

    pub fn size(&self) -> usize {
        self.slots.len()
    }

    pub fn next(&self) -> u64 {
        self.next
    }

    pub fn buffered(&self) -> usize {
        self.buffered
    }

    fn index(&self, seq: u64) -> usize {
        // size is at least 1 (new), so the modulo is defined
        (seq % self.slots.len() as u64) as usize
    }

    /// Stores `event` (whose line is `text`, at most [`MAX_LINE`] bytes) if it has a free slot.
    pub fn place(&mut self, event: Event, text: &[u8]) -> Placed {
        if event.seq < self.next {
            return Placed::Late;
        }
        if event.seq - self.next >= self.slots.len() as u64 {
            return Placed::Ahead;
        }
        let i = self.index(event.seq);
        let slot = &mut self.slots[i];
        if slot.seq != 0 {
            return Placed::Duplicate;
        }
        let len = text.len().min(MAX_LINE);
        slot.seq = event.seq;
        slot.event = event;
        slot.len = len as u8; // len <= MAX_LINE = 64
        slot.text[..len].copy_from_slice(&text[..len]);
        self.buffered += 1;
        Placed::Stored
    }

    /// Takes the event numbered `next` if it has arrived, and moves `next` on.
    pub fn pop(&mut self) -> Option<Slot> {
        if self.buffered == 0 {
            return None;
        }
        let i = self.index(self.next);
        if self.slots[i].seq != self.next {
            return None;
        }
        let slot = self.slots[i];
        self.slots[i].seq = 0;
        self.buffered -= 1;
        self.next += 1;
        Some(slot)
    }

    /// True when events wait but the one numbered `next` has not arrived.
    pub fn stalled(&self) -> bool {
        self.buffered > 0 && self.slots[self.index(self.next)].seq != self.next
    }

    /// Gives up on the missing events before the earliest waiting one: moves `next` to it and
    /// returns the skipped range `(first, last)`, or None when nothing waits or nothing is missing.
    pub fn skip_gap(&mut self) -> Option<(u64, u64)> {
        if !self.stalled() {
            return None;
        }
        let first = self.next;
        // a waiting event exists within size slots of next (invariant), so this ends
        let mut seq = self.next;
        while self.slots[self.index(seq)].seq != seq {
            seq += 1;
        }
        self.next = seq;
        Some((first, seq - 1))
    }

    /// Empties every slot and starts again at sequence number 1.
    pub fn reset(&mut self) {
        if self.buffered > 0 {
            for s in self.slots.iter_mut() {
                s.seq = 0;
            }
        }
        self.buffered = 0;
        self.next = 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::relay::event::parse;

    fn put(w: &mut Window, line: &str) -> Placed {
        w.place(parse(line.as_bytes()).unwrap(), line.as_bytes())
    }

    fn drain(w: &mut Window) -> Vec<u64> {
        std::iter::from_fn(|| w.pop()).map(|s| s.event.seq).collect()
    }

    #[test]
    fn order_is_restored() {
        let mut w = Window::new(4);
        assert_eq!(put(&mut w, "3|B"), Placed::Stored);
        assert_eq!(put(&mut w, "2|B"), Placed::Stored);
        assert!(w.stalled());
        assert!(drain(&mut w).is_empty());
        assert_eq!(put(&mut w, "1|B"), Placed::Stored);
        assert_eq!(drain(&mut w), vec![1, 2, 3]);
        assert_eq!(w.next(), 4);
        assert!(!w.stalled());
    }

    #[test]
    fn refusals() {
        let mut w = Window::new(4);
        assert_eq!(put(&mut w, "2|B"), Placed::Stored);
        assert_eq!(put(&mut w, "2|S|1"), Placed::Duplicate);
        assert_eq!(put(&mut w, "5|B"), Placed::Ahead);
        assert_eq!(put(&mut w, "4|B"), Placed::Stored);
        assert_eq!(put(&mut w, "1|B"), Placed::Stored);
        assert_eq!(drain(&mut w), vec![1, 2]);
        assert_eq!(put(&mut w, "1|B"), Placed::Late);
        assert_eq!(put(&mut w, "6|B"), Placed::Stored);
        assert_eq!(w.pop().map(|s| s.text().to_vec()), None);
    }

    #[test]
    fn a_slot_is_112_bytes() {
        // DESIGN.md states the window's memory from this
        assert_eq!(std::mem::size_of::<Slot>(), 112);
    }

    #[test]
    fn gaps_are_skipped_to_the_earliest_waiting() {
        let mut w = Window::new(8);
        assert_eq!(put(&mut w, "7|B"), Placed::Stored);
        assert_eq!(put(&mut w, "4|P|1|2"), Placed::Stored);
        assert_eq!(w.skip_gap(), Some((1, 3)));
        let s = w.pop().unwrap();
        assert_eq!(s.text(), b"4|P|1|2");
        assert_eq!(w.skip_gap(), Some((5, 6)));
        assert_eq!(drain(&mut w), vec![7]);
        assert_eq!(w.skip_gap(), None);
        w.reset();
        assert_eq!(w.next(), 1);
    }
}
