//! The simulated world: a seeded random generator, the follow graph as the relay should see it,
//! and the event mix of the original harness.
//!
//! Events are generated in sequence order and applied to the model at once, so the model always
//! knows, for the event just made, exactly which connected users a correct relay notifies. The
//! mix, per 10,000 events: 1 `B`, 1,500 each of `F`, `U` and `P`, the rest (about 55%) `S`.
//! An `U` unfollows one of the users its sender follows, when there is one, so that follows
//! come and go instead of piling up; the graph then grows about like the square root of the
//! stream length, which keeps 10 million events within reach of a 2-core machine.

/// splitmix64: tiny, fast, and good enough for test data.
#[derive(Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n`; `n` must be at least 1.
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// Fisher-Yates.
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i as u64 + 1) as usize;
            items.swap(i, j);
        }
    }
}

/// Users are `1..=users`; vectors are indexed by user id (index 0 unused).
pub struct Model {
    users: u64,
    /// followers[v]: users following v, each once.
    followers: Vec<Vec<u32>>,
    /// follows[u]: users u follows, each once.
    follows: Vec<Vec<u32>>,
    /// client_of[u]: the client index of user u, or u32::MAX when u is not connected.
    client_of: Vec<u32>,
    /// The connected users, by client index.
    pub clients: Vec<u64>,
}

impl Model {
    /// Picks `concurrency` distinct connected users at random (concurrency <= users).
    pub fn new(users: u64, concurrency: usize, rng: &mut Rng) -> Model {
        let n = users as usize + 1;
        let mut ids: Vec<u64> = (1..=users).collect();
        // only the first `concurrency` places need to be random
        for i in 0..concurrency.min(ids.len()) {
            let j = i + rng.below((ids.len() - i) as u64) as usize;
            ids.swap(i, j);
        }
        ids.truncate(concurrency);
        let mut client_of = vec![u32::MAX; n];
        for (c, &u) in ids.iter().enumerate() {
            client_of[u as usize] = c as u32;
        }
        Model { users, followers: vec![Vec::new(); n], follows: vec![Vec::new(); n], client_of, clients: ids }
    }

    fn user(&self, rng: &mut Rng) -> u64 {
        1 + rng.below(self.users)
    }

    fn other(&self, not: u64, rng: &mut Rng) -> u64 {
        if self.users < 2 {
            return not;
        }
        let u = 1 + rng.below(self.users - 1);
        if u >= not { u + 1 } else { u }
    }

    /// Makes event `seq`: appends its line with CRLF to `line`, and the client indexes a correct
    /// relay notifies, in the order it must, to `targets`.
    pub fn event(&mut self, seq: u64, rng: &mut Rng, line: &mut Vec<u8>, targets: &mut Vec<u32>) {
        push_u64(line, seq);
        let r = rng.below(10_000);
        if r < 1 {
            line.extend_from_slice(b"|B");
            targets.extend(0..self.clients.len() as u32);
        } else if r < 1 + 1500 {
            let from = self.user(rng);
            let to = self.other(from, rng);
            line.extend_from_slice(b"|F|");
            push_pair(line, from, to);
            if !self.followers[to as usize].contains(&(from as u32)) {
                self.followers[to as usize].push(from as u32);
                self.follows[from as usize].push(to as u32);
            }
            self.target(to, targets);
        } else if r < 1 + 3000 {
            let from = self.user(rng);
            let f = &mut self.follows[from as usize];
            let to = if f.is_empty() {
                self.other(from, rng)
            } else {
                let k = rng.below(f.len() as u64) as usize;
                let to = f.swap_remove(k);
                let fl = &mut self.followers[to as usize];
                if let Some(p) = fl.iter().position(|&x| x == from as u32) {
                    fl.swap_remove(p);
                }
                u64::from(to)
            };
            line.extend_from_slice(b"|U|");
            push_pair(line, from, to);
        } else if r < 1 + 4500 {
            let from = self.user(rng);
            let to = self.other(from, rng);
            line.extend_from_slice(b"|P|");
            push_pair(line, from, to);
            self.target(to, targets);
        } else {
            let from = self.user(rng);
            line.extend_from_slice(b"|S|");
            push_u64(line, from);
            for &f in &self.followers[from as usize] {
                let c = self.client_of[f as usize];
                if c != u32::MAX {
                    targets.push(c);
                }
            }
        }
        line.extend_from_slice(b"\r\n");
    }

    fn target(&self, user: u64, targets: &mut Vec<u32>) {
        let c = self.client_of[user as usize];
        if c != u32::MAX {
            targets.push(c);
        }
    }
}

fn push_pair(line: &mut Vec<u8>, a: u64, b: u64) {
    push_u64(line, a);
    line.push(b'|');
    push_u64(line, b);
}

/// Decimal digits of `n`, without allocating.
pub fn push_u64(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digits() {
        let mut v = Vec::new();
        push_u64(&mut v, 0);
        v.push(b' ');
        push_u64(&mut v, u64::MAX);
        assert_eq!(v, b"0 18446744073709551615");
    }

    #[test]
    fn the_mix_is_about_right() {
        let mut rng = Rng::new(666);
        let mut m = Model::new(1000, 100, &mut rng);
        let (mut line, mut targets) = (Vec::new(), Vec::new());
        let mut counts = [0usize; 5];
        for seq in 1..=100_000 {
            line.clear();
            m.event(seq, &mut rng, &mut line, &mut targets);
            let t = line.iter().position(|&b| b == b'|').unwrap() + 1;
            let k = b"FUBPS".iter().position(|&c| c == line[t]).unwrap();
            counts[k] += 1;
        }
        assert!((14_000..16_000).contains(&counts[0]), "{counts:?}");
        assert!((54_000..56_000).contains(&counts[4]), "{counts:?}");
        assert!(counts[2] < 50, "{counts:?}");
        assert!(!targets.is_empty());
    }
}
