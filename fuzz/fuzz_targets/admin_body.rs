//! The parsers of values an operator sends at run time or on the command line: `PUT /rate`
//! and `PUT /limit` bodies (`config::parse_rate`, `parse_limit`), `--burst`, durations and
//! `--weight`. Checks: no panic; whatever is accepted is inside the range the error messages
//! name (a rate is finite, positive and in `MIN_RATE..=MAX_RATE`, `off` or `0` is no pacing);
//! `check_rate` on the same bits as a float agrees with that range.
#![no_main]

use lb::balancer::cli::parse_weight;
use lb::balancer::config::{self, MAX_BURST, MAX_LIMIT, MAX_RATE, MIN_RATE};
use lb::common::args::MAX_DURATION;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let word = String::from_utf8_lossy(data);
    match config::parse_rate(&word) {
        Ok(Some(r)) => assert!(r.is_finite() && (MIN_RATE..=MAX_RATE).contains(&r), "rate {r} from {word:?}"),
        Ok(None) => {}
        Err(e) => assert!(!e.contains('\n')),
    }
    if let Ok(n) = config::parse_limit(&word) {
        assert!((1..=MAX_LIMIT).contains(&n));
    }
    if let Ok(n) = config::parse_burst(&word) {
        assert!((1..=MAX_BURST).contains(&n));
    }
    if let Some(d) = config::parse_duration(&word) {
        assert!(d <= MAX_DURATION, "{d:?} from {word:?}");
    }
    let _ = parse_weight(&word);
    if data.len() >= 8 {
        let v = f64::from_le_bytes(data[..8].try_into().unwrap());
        match config::check_rate(v) {
            Ok(Some(r)) => assert!(r == v && (MIN_RATE..=MAX_RATE).contains(&r)),
            Ok(None) => assert!(v == 0.0 && v.is_sign_positive()),
            Err(_) => assert!(!(MIN_RATE..=MAX_RATE).contains(&v)),
        }
    }
});
