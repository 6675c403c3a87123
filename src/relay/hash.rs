//! A small, fast hasher for integer keys (user ids), so the hot delivery path does not pay for
//! SipHash on every follower lookup.
//!
//! The state is one `u64`: each written word is mixed in with a rotate, xor and odd multiply
//! (the FxHash step), and `finish` runs the splitmix64 finaliser so that the low bits hashbrown
//! uses for the bucket and the high bits it uses for the control byte both depend on every input
//! bit. It is not DoS-resistant; DESIGN.md says why that is accepted for user ids.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};

/// FxHash-style hasher with a splitmix64 finaliser.
#[derive(Clone, Copy, Default)]
pub struct IdHasher(u64);

const K: u64 = 0x517c_c1b7_2722_0a95;

impl Hasher for IdHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(5) ^ u64::from(b)).wrapping_mul(K);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(K);
    }

    fn write_usize(&mut self, n: usize) {
        self.write_u64(n as u64);
    }

    fn finish(&self) -> u64 {
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

pub type IdBuild = BuildHasherDefault<IdHasher>;
pub type IdMap<V> = HashMap<u64, V, IdBuild>;
pub type IdSet = HashSet<u64, IdBuild>;

#[cfg(test)]
mod tests {
    use super::*;
    use std::hash::BuildHasher;

    #[test]
    fn neighbours_spread_over_low_bits() {
        let b = IdBuild::default();
        let buckets: HashSet<u64> = (0..64u64).map(|i| b.hash_one(i) & 63).collect();
        assert!(buckets.len() > 32, "only {} of 64 buckets used", buckets.len());
    }
}
