//! The repeatable randomness behind `--avg-delay-ms` and `--fail-rate`.
//!
//! Design: a counter-based generator rather than per-thread streams. Every non-observation
//! request takes the next number `k` from one shared atomic counter, and its two draws (delay
//! and failure) are `splitmix64(seed + (2k + j + 1) * GAMMA)` for `j = 0, 1`. So the outcome of
//! the k-th request depends only on the seed and `k`, never on which of the worker threads
//! accepted it: with `--seed`, a sequential client sees the same delays and the same failures on
//! every run whatever `--threads` is, and parallel clients see the same multiset of outcomes over
//! the first K requests (so "30 % of 100 requests failed" is an exact, repeatable number).
//! Per-thread streams would make the outcome depend on the accept race between threads.
//!
//! Both draws are always taken, whatever the flags, so turning one option on does not shift
//! the other's sequence.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// The golden-ratio increment of splitmix64.
const GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

/// splitmix64's output function (Steele, Lea, Flood 2014): a bijective 64-bit mixer.
pub fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A uniform float in `[0, 1)` from the top 53 bits of `x`.
pub fn unit(x: u64) -> f64 {
    (x >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

/// An exponential variate with the given mean from a uniform `u` in `[0, 1)`
/// (inverse transform: `-mean * ln(1 - u)`; `1 - u` is in `(0, 1]`, so the log is finite).
/// The largest possible value is about 36.7 × mean (u = 1 - 2^-53).
pub fn exponential(mean: f64, u: f64) -> f64 {
    -mean * (1.0 - u).ln()
}

/// What one request must do before answering.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Outcome {
    /// How long to sleep before answering: `--delay-ms` plus the exponential part.
    pub delay: Duration,
    /// Whether to answer `500` instead of doing the work.
    pub fail: bool,
}

/// The per-process draw source. Shared by all workers behind `Arc`; lock-free.
#[derive(Debug)]
pub struct Dice {
    seed: u64,
    /// The index of the next request to draw for; only ever incremented.
    next: AtomicU64,
    fixed: Duration,
    /// Mean of the exponential part in ms; 0 turns it off.
    avg_ms: f64,
    /// Failure probability in `[0, 1]`.
    fail_p: f64,
}

impl Dice {
    /// `fail_percent` must already be validated to `0..=100`.
    pub fn new(seed: u64, fixed_ms: u64, avg_ms: u64, fail_percent: f64) -> Dice {
        Dice {
            seed,
            next: AtomicU64::new(0),
            fixed: Duration::from_millis(fixed_ms),
            avg_ms: avg_ms as f64,
            fail_p: fail_percent / 100.0,
        }
    }

    /// The outcome of request number `k` (pure: same seed and `k`, same outcome).
    pub fn outcome_at(&self, k: u64) -> Outcome {
        let base = self.seed.wrapping_add(k.wrapping_mul(2).wrapping_add(1).wrapping_mul(GAMMA));
        let u_delay = unit(mix(base));
        let u_fail = unit(mix(base.wrapping_add(GAMMA)));
        let mut delay = self.fixed;
        if self.avg_ms > 0.0 {
            // Sub-millisecond precision is kept; the value is finite and below 37 × mean.
            delay += Duration::from_secs_f64(exponential(self.avg_ms, u_delay) / 1000.0);
        }
        Outcome {
            delay,
            // u < 1 always, so p = 1 fails every request and p = 0 none.
            fail: u_fail < self.fail_p,
        }
    }

    /// Takes the next request number and returns its outcome.
    pub fn roll(&self) -> Outcome {
        self.outcome_at(self.next.fetch_add(1, Ordering::Relaxed))
    }
}

/// A seed for runs without `--seed`: the clock and the pid, mixed.
pub fn default_seed() -> u64 {
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0);
    mix(nanos ^ (u64::from(std::process::id()) << 32))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitmix_matches_the_reference() {
        // First output of the reference splitmix64 seeded with 0: mix(0 + GAMMA).
        assert_eq!(mix(GAMMA), 0xE220_A839_7B1D_CDAF);
    }

    #[test]
    fn same_seed_same_outcomes() {
        let a = Dice::new(42, 5, 100, 30.0);
        let b = Dice::new(42, 5, 100, 30.0);
        let xs: Vec<_> = (0..50).map(|_| a.roll()).collect();
        let ys: Vec<_> = (0..50).map(|_| b.roll()).collect();
        assert_eq!(xs, ys);
        let c = Dice::new(43, 5, 100, 30.0);
        let zs: Vec<_> = (0..50).map(|_| c.roll()).collect();
        assert_ne!(xs, zs);
    }

    #[test]
    fn failure_share_and_delay_mean_are_close() {
        let d = Dice::new(7, 0, 100, 25.0);
        let n = 20_000u64;
        let (mut fails, mut total_ms) = (0u64, 0.0f64);
        for k in 0..n {
            let o = d.outcome_at(k);
            fails += u64::from(o.fail);
            total_ms += o.delay.as_secs_f64() * 1000.0;
        }
        let share = fails as f64 / n as f64;
        assert!((share - 0.25).abs() < 0.02, "failure share {share}");
        let mean = total_ms / n as f64;
        assert!((mean - 100.0).abs() < 5.0, "mean delay {mean}");
    }

    #[test]
    fn extremes_of_the_fail_rate() {
        let all = Dice::new(1, 0, 0, 100.0);
        let none = Dice::new(1, 0, 0, 0.0);
        assert!((0..1000).all(|k| all.outcome_at(k).fail));
        assert!((0..1000).all(|k| !none.outcome_at(k).fail));
        assert_eq!(none.outcome_at(3).delay, Duration::ZERO);
    }

    #[test]
    fn unit_stays_below_one() {
        assert!(unit(u64::MAX) < 1.0);
        assert_eq!(unit(0), 0.0);
        assert!(exponential(10.0, unit(u64::MAX)).is_finite());
    }
}
