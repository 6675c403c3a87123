//! Writing our JSON documents: each is a `#[derive(Serialize)]` struct (`/status`,
//! `/worker/stats`, the store's export, the backend's replies), turned into text here with
//! serde_json, which escapes strings per RFC 8259 and writes a non-finite float as `null`
//! (JSON has no NaN or infinity).
//!
//! Durations and means go out as milliseconds or seconds rounded to the thousandth
//! (`thousandths`), so a document does not show float noise like `20.000000000000004`; a
//! float field always reads as a float (`20.0`, never `20`).

use serde::Serialize;

/// `v` as compact JSON, without a trailing newline.
///
/// serde_json fails only on a map whose keys are not strings or a `Serialize` impl that reports
/// an error; our documents are plain structs, numbers, strings and string-keyed maps, so that
/// cannot happen. Should it ever, the error is logged and the document is `null`: a visible
/// failure for the reader, never a panic in a request path.
pub fn to_string<T: Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_else(|e| {
        crate::error!("internal: writing a JSON document: {e}");
        "null".into()
    })
}

/// `v` rounded to 1/1000 (milliseconds to the microsecond, seconds to the millisecond); a
/// non-finite `v` stays non-finite, so it is written `null`. `-0` becomes `0`: valid JSON, but
/// it reads oddly.
pub fn thousandths(v: f64) -> f64 {
    let r = (v * 1000.0).round() / 1000.0;
    if r == 0.0 { 0.0 } else { r }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_are_escaped() {
        let s = "a\"b\\c\nd\te\u{0}f\u{1f}g\u{7f}h\u{2028}é";
        let text = to_string(&s);
        assert!(!text.contains('\n') && !text.contains('\u{0}') && !text.contains('\u{1f}'), "{text}");
        let parsed: String = serde_json::from_str(&text).unwrap();
        assert_eq!(parsed, s);
        assert_eq!(to_string(&"plain"), "\"plain\"");
    }

    #[test]
    fn numbers() {
        let n = |v: f64| to_string(&thousandths(v));
        assert_eq!(n(2.5), "2.5");
        assert_eq!(n(3.0), "3.0");
        assert_eq!(n(0.1234567), "0.123");
        assert_eq!(n(-0.0001), "0.0");
        assert_eq!(n(0.1 + 0.2), "0.3"); // 0.30000000000000004 unrounded
        assert_eq!(n(f64::NAN), "null");
        assert_eq!(n(f64::INFINITY), "null");
        assert_eq!(n(f64::NEG_INFINITY), "null");
        assert_eq!(to_string(&Some(f64::NAN)), "null");
    }
}
