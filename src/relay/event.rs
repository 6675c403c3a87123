//! One event line from the source, parsed: the five kinds of the protocol table and the reasons a
//! line is refused.
//!
//! A line is `seq|T` followed by the fields its type `T` needs (`F`, `U`, `P`: from and to; `S`:
//! from; `B`: none), with no spaces and no extra fields. Numbers are unsigned decimal and must fit
//! in a `u64`; a sequence number is at least 1. The raw bytes of an accepted line are kept by the
//! window and forwarded unchanged, so parsing never needs to allocate.

use std::fmt;

/// The longest line accepted, terminator excluded: a `P` line with three 20-digit numbers is 64
/// bytes, so nothing well-formed is longer.
pub const MAX_LINE: usize = 64;

/// What an event does, per the protocol table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Kind {
    /// `F`: record that `from` follows `to`; notify `to`.
    #[default]
    Follow,
    /// `U`: forget that `from` follows `to`; notify nobody.
    Unfollow,
    /// `B`: notify every connected client.
    Broadcast,
    /// `P`: notify `to`.
    Private,
    /// `S`: notify every current follower of `from`.
    Status,
}

/// A parsed event; `from` and `to` are 0 where the kind has no such field.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Event {
    pub seq: u64,
    pub kind: Kind,
    pub from: u64,
    pub to: u64,
}

/// Why a line was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Malformed {
    /// Longer than [`MAX_LINE`] bytes.
    TooLong,
    /// The sequence number is missing, not a decimal number, zero, or beyond `u64`.
    BadSeq,
    /// The type field is not one of `F U B P S`.
    BadType,
    /// Too few or too many fields for the type.
    Fields,
    /// A user id is not a decimal number that fits in a `u64`.
    BadUser,
}

impl fmt::Display for Malformed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Malformed::TooLong => "line longer than 64 bytes",
            Malformed::BadSeq => "bad sequence number",
            Malformed::BadType => "bad event type",
            Malformed::Fields => "wrong number of fields",
            Malformed::BadUser => "bad user id",
        })
    }
}

/// Parses one line without its terminator. Accepts exactly the shapes of the protocol table.
pub fn parse(line: &[u8]) -> Result<Event, Malformed> {
    if line.len() > MAX_LINE {
        return Err(Malformed::TooLong);
    }
    let mut fields = line.split(|&b| b == b'|');
    // split always yields at least one item, possibly empty; number() refuses the empty one
    let seq = fields.next().and_then(number).filter(|&s| s > 0).ok_or(Malformed::BadSeq)?;
    let kind = match fields.next() {
        Some(b"F") => Kind::Follow,
        Some(b"U") => Kind::Unfollow,
        Some(b"B") => Kind::Broadcast,
        Some(b"P") => Kind::Private,
        Some(b"S") => Kind::Status,
        Some(_) => return Err(Malformed::BadType),
        None => return Err(Malformed::Fields),
    };
    let users = match kind {
        Kind::Broadcast => 0,
        Kind::Status => 1,
        Kind::Follow | Kind::Unfollow | Kind::Private => 2,
    };
    let mut ids = [0u64; 2];
    for id in ids.iter_mut().take(users) {
        let field = fields.next().ok_or(Malformed::Fields)?;
        *id = number(field).ok_or(Malformed::BadUser)?;
    }
    if fields.next().is_some() {
        return Err(Malformed::Fields);
    }
    Ok(Event { seq, kind, from: ids[0], to: ids[1] })
}

/// An unsigned decimal number: one or more ASCII digits, no sign, no spaces, no overflow.
pub fn number(field: &[u8]) -> Option<u64> {
    if field.is_empty() {
        return None;
    }
    let mut n: u64 = 0;
    for &b in field {
        let d = b.wrapping_sub(b'0');
        if d > 9 {
            return None;
        }
        n = n.checked_mul(10)?.checked_add(u64::from(d))?;
    }
    Some(n)
}

/// A line as a printable string for a log message: lossy UTF-8, control bytes escaped, cut at
/// 80 bytes so a hostile line cannot flood the log.
pub fn printable(line: &[u8]) -> String {
    let cut = &line[..line.len().min(80)];
    let mut s: String = String::from_utf8_lossy(cut).chars().flat_map(char::escape_debug).collect();
    if line.len() > cut.len() {
        s.push_str("...");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_protocol_table_parses() {
        assert_eq!(parse(b"666|F|60|50"), Ok(Event { seq: 666, kind: Kind::Follow, from: 60, to: 50 }));
        assert_eq!(parse(b"1|U|12|9"), Ok(Event { seq: 1, kind: Kind::Unfollow, from: 12, to: 9 }));
        assert_eq!(parse(b"542532|B"), Ok(Event { seq: 542532, kind: Kind::Broadcast, from: 0, to: 0 }));
        assert_eq!(parse(b"43|P|32|56"), Ok(Event { seq: 43, kind: Kind::Private, from: 32, to: 56 }));
        assert_eq!(parse(b"634|S|32"), Ok(Event { seq: 634, kind: Kind::Status, from: 32, to: 0 }));
    }

    #[test]
    fn bad_lines_say_why() {
        assert_eq!(parse(b""), Err(Malformed::BadSeq));
        assert_eq!(parse(b"0|B"), Err(Malformed::BadSeq));
        assert_eq!(parse(b"x|B"), Err(Malformed::BadSeq));
        assert_eq!(parse(b"99999999999999999999|B"), Err(Malformed::BadSeq));
        assert_eq!(parse(b"1|X|2"), Err(Malformed::BadType));
        assert_eq!(parse(b"1"), Err(Malformed::Fields));
        assert_eq!(parse(b"1|F|2"), Err(Malformed::Fields));
        assert_eq!(parse(b"1|B|2"), Err(Malformed::Fields));
        assert_eq!(parse(b"1|S|2|3"), Err(Malformed::Fields));
        assert_eq!(parse(b"1|P|a|3"), Err(Malformed::BadUser));
        assert_eq!(parse(b"1|P|-2|3"), Err(Malformed::BadUser));
        assert_eq!(parse(b"1|S| 2"), Err(Malformed::BadUser));
        assert_eq!(parse(&[b'1'; 65]), Err(Malformed::TooLong));
    }

    #[test]
    fn the_longest_well_formed_line_fits() {
        let m = u64::MAX;
        let line = format!("{m}|P|{m}|{m}");
        assert_eq!(line.len(), MAX_LINE);
        assert!(parse(line.as_bytes()).is_ok());
    }
}
