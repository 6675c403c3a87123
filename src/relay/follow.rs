//! The follow graph: for each user, the set of users who follow them.
//!
//! Keyed by the followed user because the only question asked on the hot path is "who follows
//! the sender of this status update" (`S`). A user with no followers has no entry, so the graph
//! holds exactly the follow relations currently in force: its size is bounded by the number of
//! distinct (follower, followed) pairs, at most users², and never by the length of the stream.
//! Follows are recorded whether or not either user is connected.

use super::hash::{IdMap, IdSet};

#[derive(Default)]
pub struct Follows {
    /// followed user -> followers; never holds an empty set.
    followers: IdMap<IdSet>,
}

impl Follows {
    /// Records that `from` follows `to`; following twice is the same as once.
    pub fn follow(&mut self, from: u64, to: u64) {
        self.followers.entry(to).or_default().insert(from);
    }

    /// Forgets that `from` follows `to`, if it did.
    pub fn unfollow(&mut self, from: u64, to: u64) {
        if let Some(set) = self.followers.get_mut(&to) {
            set.remove(&from);
            if set.is_empty() {
                self.followers.remove(&to);
            }
        }
    }

    /// The current followers of `user`, in no particular order.
    pub fn followers(&self, user: u64) -> impl Iterator<Item = u64> + '_ {
        self.followers.get(&user).into_iter().flat_map(|s| s.iter().copied())
    }

    /// Number of follow relations in force.
    pub fn len(&self) -> usize {
        self.followers.values().map(IdSet::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.followers.is_empty()
    }

    pub fn clear(&mut self) {
        // a fresh map, so that the memory of a large old graph is given back
        self.followers = IdMap::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn follow_unfollow() {
        let mut g = Follows::default();
        g.follow(1, 2);
        g.follow(1, 2);
        g.follow(3, 2);
        let mut f: Vec<u64> = g.followers(2).collect();
        f.sort();
        assert_eq!(f, vec![1, 3]);
        g.unfollow(1, 2);
        g.unfollow(9, 2);
        assert_eq!(g.followers(2).collect::<Vec<_>>(), vec![3]);
        g.unfollow(3, 2);
        assert!(g.is_empty());
        assert_eq!(g.followers(1).count(), 0);
    }
}
