//! JSON scalars written by hand, for the few small fixed shapes the crate emits (admin status,
//! the fleet's stats, the backend's replies): serde_json is only a dev-dependency.
//! `json_string` escapes per RFC 8259 (quote, backslash, and every control character);
//! `json_number` writes non-finite floats as `null`, which JSON lacks.

use std::fmt::Write;

/// `s` as a JSON string literal, quotes included.
pub fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0x20 || c == '\u{7f}' || c == '\u{2028}' || c == '\u{2029}' => {
                // Writing to a String cannot fail.
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A float as a JSON number, rounded to 1/1000 (milliseconds to the microsecond); `null` when
/// not finite.
pub fn json_number(v: f64) -> String {
    if !v.is_finite() {
        return "null".into();
    }
    let r = (v * 1000.0).round() / 1000.0;
    // `-0` is valid JSON but reads oddly.
    if r == 0.0 { "0".into() } else { format!("{r}") }
}
