//! The fair share: how many of the group's slots each instance should have, given every
//! instance's demand (waiting + in flight). A pure function over a snapshot, unit-tested
//! without Redis.
//!
//! Max-min fairness by water-filling: the available slots are poured evenly into all
//! instances; an instance whose demand is below the level takes only its demand, and what it
//! leaves is poured into the others. What no demand needs (the spare) is then split evenly
//! over every live instance, so an instance that gets a burst already holds a few slots and
//! does not wait a Redis round trip for its first ones. Integer slots: where slots do not
//! divide evenly, the first instances in the caller's order (sorted by instance id, the same
//! order for every instance) get one more.
//!
//! | N | demands       | shares     | why                                                   |
//! |---|---------------|------------|-------------------------------------------------------|
//! | 6 | `[20]`        | `[6]`      | alone: everything                                     |
//! | 6 | `[20, 20]`    | `[3, 3]`   | two busy ones split it                                |
//! | 6 | `[20, 0]`     | `[6, 0]`   | the idle one's slots go to the busy one               |
//! | 6 | `[2, 20]`     | `[2, 4]`   | a small demand is met in full, the rest goes on       |
//! | 6 | `[20, 20, 20]`| `[2, 2, 2]`| three busy ones                                       |
//! | 7 | `[20, 20]`    | `[4, 3]`   | the odd slot goes to the first in order               |
//! | 6 | `[0, 0]`      | `[3, 3]`   | nobody busy: the spare is split                       |
//! | 6 | `[1, 1]`      | `[3, 3]`   | demands met, the spare 4 split                        |
//! | 4 | `[]`          | `[]`       | nobody                                                |
//!
//! This decides what an instance *asks* for. Whether it gets it is decided atomically in
//! Redis (`lease.rs`): never more than the slots the other instances do not hold, so the bound
//! never depends on this function, nor on every instance seeing the same snapshot.

/// The max-min fair split of `total` slots over `demands` (one per instance, in a fixed
/// order), with the spare split evenly. The result has the same length and sums to `total`
/// (or to 0 when `demands` is empty).
pub fn fair(total: usize, demands: &[usize]) -> Vec<usize> {
    let n = demands.len();
    let mut out = vec![0; n];
    if n == 0 {
        return out;
    }
    let mut order: Vec<usize> = (0..n).collect();
    // Smallest demand first; ties keep the caller's order (a stable sort).
    order.sort_by_key(|&i| demands[i]);
    let mut left = total;
    for (pos, &i) in order.iter().enumerate() {
        let rest = n - pos;
        let level = left / rest;
        if demands[i] <= level {
            out[i] = demands[i];
            left -= demands[i];
            continue;
        }
        // Everyone from here on wants more than the level: each gets the level, and the
        // slots that do not divide go to the first of them in the caller's order.
        let mut capped: Vec<usize> = order[pos..].to_vec();
        capped.sort_unstable();
        let mut extra = left - level * rest;
        for j in capped {
            out[j] = level + usize::from(extra > 0);
            extra = extra.saturating_sub(1);
        }
        return out;
    }
    // Every demand is met: split the spare over all.
    let (each, mut extra) = (left / n, left % n);
    for s in &mut out {
        *s += each + usize::from(extra > 0);
        extra = extra.saturating_sub(1);
    }
    out
}

/// The share instance `me` should ask for: its place in `fair` over the live instances,
/// `available` being the group's slots less those held by expired (quarantined) leases.
/// `demands` is (instance id, demand) of every live instance, `me` included.
pub fn target(available: usize, demands: &[(String, usize)], me: &str) -> usize {
    let mut sorted: Vec<&(String, usize)> = demands.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    let shares = fair(available, &sorted.iter().map(|d| d.1).collect::<Vec<_>>());
    sorted.iter().position(|d| d.0 == me).map_or(0, |i| shares[i])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table() {
        let rows: &[(usize, &[usize], &[usize])] = &[
            (6, &[20], &[6]),
            (6, &[20, 20], &[3, 3]),
            (6, &[20, 0], &[6, 0]),
            (6, &[0, 20], &[0, 6]),
            (6, &[2, 20], &[2, 4]),
            (6, &[20, 20, 20], &[2, 2, 2]),
            (7, &[20, 20], &[4, 3]),
            (6, &[0, 0], &[3, 3]),
            (6, &[1, 1], &[3, 3]),
            (4, &[], &[]),
            (6, &[3, 3], &[3, 3]),
            (8, &[1, 9, 9], &[1, 4, 3]),
            (0, &[5, 5], &[0, 0]),
        ];
        for (n, demands, want) in rows {
            assert_eq!(fair(*n, demands), *want, "N={n} demands={demands:?}");
        }
    }

    #[test]
    fn sums_to_total_and_is_max_min() {
        // Exhaustive over small cases: the sum is exact, and no instance below its demand has
        // fewer than any other instance's share minus one (no one could be raised without
        // lowering someone who has no more).
        for total in 0..9 {
            for a in 0..7 {
                for b in 0..7 {
                    for c in 0..7 {
                        let d = [a, b, c];
                        let s = fair(total, &d);
                        assert_eq!(s.iter().sum::<usize>(), total, "{total} {d:?} {s:?}");
                        for i in 0..3 {
                            if s[i] < d[i] {
                                assert!(s.iter().all(|&x| x <= s[i] + 1), "{total} {d:?} {s:?}");
                            }
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn target_orders_by_id() {
        let d = vec![("b".to_string(), 20), ("a".to_string(), 20)];
        assert_eq!(target(7, &d, "a"), 4);
        assert_eq!(target(7, &d, "b"), 3);
        assert_eq!(target(7, &d, "c"), 0);
    }
}
