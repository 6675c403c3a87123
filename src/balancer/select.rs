//! Choosing a server: a pure function over a snapshot of the server table, so every rule is
//! unit-tested without sockets. Called under the dispatcher lock (see `sched`).
//!
//! A server can take a connection when it is up, not retiring, not excluded (already tried for
//! this client) and below the per-server bound. Among those:
//!
//! | rule          | order                                               |
//! |---------------|-----------------------------------------------------|
//! | least-loaded  | fewest entries, then fewest errors, then position   |
//! | least-conn    | fewest in flight, then position                     |
//! | round-robin   | first at or after the cursor, wrapping              |
//!
//! When none can, the answer says why: every live server is at its bound (the client waits for
//! a slot), or none is up (the client gets the 500).

use crate::balancer::config::Balance;

/// One server as the chooser sees it.
#[derive(Clone, Copy, Debug, Default)]
pub struct Candidate {
    pub up: bool,
    pub retiring: bool,
    pub entries: u64,
    pub errors: u64,
    pub in_flight: usize,
}

/// The outcome of a choice.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Choice {
    /// This server (an index into the table).
    Server(usize),
    /// Some server is up but each one that is up is at its bound: wait for a slot to free.
    AllBusy,
    /// No server is up (or every one was tried): answer 500.
    NoneUp,
}

/// Picks a server. `cursor` is where round robin starts; `exclude` lists servers already
/// tried for this client.
pub fn choose(table: &[Candidate], rule: Balance, bound: Option<usize>, cursor: usize, exclude: &[usize]) -> Choice {
    let live = |i: usize, c: &Candidate| c.up && !c.retiring && !exclude.contains(&i);
    let free = |c: &Candidate| bound.is_none_or(|m| c.in_flight < m);
    let open = table.iter().enumerate().filter(|(i, c)| live(*i, c) && free(c));
    let best = match rule {
        Balance::LeastLoaded => open.min_by_key(|(i, c)| (c.entries, c.errors, *i)),
        Balance::LeastConn => open.min_by_key(|(i, c)| (c.in_flight, *i)),
        Balance::RoundRobin => {
            let n = table.len().max(1);
            open.min_by_key(|(i, _)| (i + n - cursor % n) % n)
        }
    };
    match best {
        Some((i, _)) => Choice::Server(i),
        None if table.iter().enumerate().any(|(i, c)| live(i, c)) => Choice::AllBusy,
        None => Choice::NoneUp,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn up(entries: u64, errors: u64, in_flight: usize) -> Candidate {
        Candidate { up: true, retiring: false, entries, errors, in_flight }
    }

    #[test]
    fn least_loaded_breaks_ties_by_errors_then_position() {
        let t = [up(5, 0, 0), up(3, 2, 0), up(3, 1, 0), up(3, 1, 0)];
        assert_eq!(choose(&t, Balance::LeastLoaded, None, 0, &[]), Choice::Server(2));
        assert_eq!(choose(&t, Balance::LeastLoaded, None, 0, &[2]), Choice::Server(3));
    }

    #[test]
    fn down_and_retiring_servers_are_skipped() {
        let mut t = [up(9, 0, 0), up(0, 0, 0), up(1, 0, 0)];
        t[1].up = false;
        t[2].retiring = true;
        assert_eq!(choose(&t, Balance::LeastLoaded, None, 0, &[]), Choice::Server(0));
        assert_eq!(choose(&t, Balance::LeastLoaded, None, 0, &[0]), Choice::NoneUp);
    }

    #[test]
    fn bound_makes_the_client_wait_not_fail() {
        let t = [up(0, 0, 2), up(0, 0, 2)];
        assert_eq!(choose(&t, Balance::LeastLoaded, Some(2), 0, &[]), Choice::AllBusy);
        assert_eq!(choose(&t, Balance::LeastLoaded, Some(3), 0, &[]), Choice::Server(0));
    }

    #[test]
    fn round_robin_wraps_from_the_cursor() {
        let mut t = [up(0, 0, 0), up(0, 0, 0), up(0, 0, 0)];
        assert_eq!(choose(&t, Balance::RoundRobin, None, 1, &[]), Choice::Server(1));
        assert_eq!(choose(&t, Balance::RoundRobin, None, 3, &[]), Choice::Server(0));
        t[2].up = false;
        assert_eq!(choose(&t, Balance::RoundRobin, None, 2, &[]), Choice::Server(0));
    }

    #[test]
    fn least_conn_counts_in_flight() {
        let t = [up(0, 0, 3), up(100, 100, 1)];
        assert_eq!(choose(&t, Balance::LeastConn, None, 0, &[]), Choice::Server(1));
    }

    #[test]
    fn empty_table_is_none_up() {
        assert_eq!(choose(&[], Balance::RoundRobin, None, 7, &[]), Choice::NoneUp);
    }
}
