//! One line per event on stderr: `prog[pid] 2026-11-25T09:13:33.123Z LEVEL message`.
//!
//! The level is a process-wide atomic, checked by the macros before any formatting, so a
//! suppressed `debug!` costs one relaxed load. Each line is formatted into one buffer and
//! written with a single `write_all` on a locked stderr, so lines from threads never interleave.
//! Failure tags (`client:`, `server:`, `internal:`) are part of the message, chosen by the caller.

use std::io::Write;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Severity, ordered so that a larger value is chattier.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub enum Level {
    Error = 0,
    Warn = 1,
    Info = 2,
    Debug = 3,
}

static LEVEL: AtomicU8 = AtomicU8::new(Level::Info as u8);
static PROG: OnceLock<String> = OnceLock::new();

/// Sets the program name shown in every line; the first call wins.
pub fn init(prog: &str, level: Level) {
    let _ = PROG.set(prog.to_string()); // a second init keeps the first name: harmless
    set_level(level);
}

pub fn set_level(level: Level) {
    LEVEL.store(level as u8, Ordering::Relaxed);
}

/// Level from `-v`/`-q` counts: default Info, each `-v` one chattier, each `-q` one quieter.
pub fn level_from_counts(verbose: usize, quiet: usize) -> Level {
    let v = (Level::Info as i64 + verbose as i64 - quiet as i64).clamp(0, 3);
    match v {
        0 => Level::Error,
        1 => Level::Warn,
        2 => Level::Info,
        _ => Level::Debug,
    }
}

pub fn enabled(level: Level) -> bool {
    level as u8 <= LEVEL.load(Ordering::Relaxed)
}

#[doc(hidden)]
pub fn write(level: Level, args: std::fmt::Arguments<'_>) {
    let tag = match level {
        Level::Error => "ERROR",
        Level::Warn => "WARN ",
        Level::Info => "INFO ",
        Level::Debug => "DEBUG",
    };
    let prog = PROG.get().map(String::as_str).unwrap_or("lb");
    let line = format!("{prog}[{}] {} {tag} {args}\n", std::process::id(), utc_timestamp(SystemTime::now()));
    // A closed stderr must not take the process down; there is nowhere else to report it.
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ`, computed without a time-zone database.
pub fn utc_timestamp(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, dd) = civil_from_days(days as i64);
    format!("{y:04}-{m:02}-{dd:02}T{:02}:{:02}:{:02}.{:03}Z", rem / 3600, rem % 3600 / 60, rem % 60, d.subsec_millis())
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[macro_export]
macro_rules! error {
    ($($t:tt)*) => { if $crate::common::log::enabled($crate::common::log::Level::Error) { $crate::common::log::write($crate::common::log::Level::Error, format_args!($($t)*)) } };
}
#[macro_export]
macro_rules! warn {
    ($($t:tt)*) => { if $crate::common::log::enabled($crate::common::log::Level::Warn) { $crate::common::log::write($crate::common::log::Level::Warn, format_args!($($t)*)) } };
}
#[macro_export]
macro_rules! info {
    ($($t:tt)*) => { if $crate::common::log::enabled($crate::common::log::Level::Info) { $crate::common::log::write($crate::common::log::Level::Info, format_args!($($t)*)) } };
}
#[macro_export]
macro_rules! debug {
    ($($t:tt)*) => { if $crate::common::log::enabled($crate::common::log::Level::Debug) { $crate::common::log::write($crate::common::log::Level::Debug, format_args!($($t)*)) } };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_gregorian() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(19_723), (2024, 1, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
    }

    #[test]
    fn counts_move_the_level() {
        assert_eq!(level_from_counts(0, 0), Level::Info);
        assert_eq!(level_from_counts(1, 0), Level::Debug);
        assert_eq!(level_from_counts(0, 1), Level::Warn);
        assert_eq!(level_from_counts(0, 5), Level::Error);
    }
}
