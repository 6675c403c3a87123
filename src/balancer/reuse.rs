//! The idle pool (http mode): server connections kept open after a complete response, for the
//! next request to the same server.
//!
//! A connection enters the pool only when its last response was complete and both sides
//! allowed keep-alive, and it leaves it in one of four ways: a worker takes it for a request;
//! the server closes it (the accepting thread sees it through the `Watch`, which wakes on a
//! close only, never on bytes, so a response on a connection in use wakes nobody); it has been
//! idle `--server-idle-timeout` (the accepting thread's deadline); or the pool for that
//! server already holds `--server-idle-max`. Busy connections
//! are bounded by the slots, as in tcp mode; idle ones by this pool, separately.
//!
//! Before reuse a connection is checked without blocking (`recv` with `MSG_PEEK`): a readable
//! EOF or unexpected bytes mean it cannot carry a request, and it is closed. What the check
//! cannot see (the server closing it a moment later) is covered by the worker's one retry on
//! a new connection.
//!
//! Locking: one mutex over the table; held to insert, find or remove an entry (and to arm its
//! one-shot registration, a cheap `epoll_ctl`, so an event can never find an entry missing),
//! never across socket I/O: the check before reuse runs after the lock is released.

use crate::balancer::watch::{Kind, Watch};
use parking_lot::Mutex;
use std::collections::{HashMap, VecDeque};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Debug)]
struct Entry {
    token: u64,
    conn: TcpStream,
}

#[derive(Debug, Default)]
struct Table {
    /// Tokens whose one-shot registration fired while their connection was out of the pool
    /// (in use): put back, such a connection must be armed again. Bounded: past `MAX_FIRED`
    /// it is cleared, and a connection put back unarmed is still checked before reuse.
    fired: std::collections::HashSet<u64>,
    /// Per server, most recently used last (taken first: its TCP state is warmest).
    idle: HashMap<SocketAddr, Vec<Entry>>,
    /// When each entry's idle time runs out, in the order they were put (all share one timeout,
    /// so the order is also deadline order). Entries taken meanwhile are skipped.
    expiry: VecDeque<(Instant, SocketAddr, u64)>,
}

const MAX_FIRED: usize = 4096;

#[derive(Debug)]
pub struct Reuse {
    table: Mutex<Table>,
    watch: Arc<Watch>,
}

impl Reuse {
    pub fn new(watch: Arc<Watch>) -> Reuse {
        Reuse { table: Mutex::new(Table::default()), watch }
    }

    /// An idle connection to `addr` that looks usable, with its watch token (to give back
    /// with it to `put`), if any. Stale ones found on the way are closed.
    pub fn take(&self, addr: SocketAddr) -> Option<(TcpStream, u64)> {
        loop {
            let entry = self.table.lock().idle.get_mut(&addr).and_then(Vec::pop)?;
            if usable(&entry.conn) {
                return Some((entry.conn, entry.token));
            }
            crate::debug!("server {addr}: a pooled connection was closed or sent bytes unasked; dropped");
        }
    }

    /// Keeps `conn` for the next request to `addr`, unless the pool for it already holds `max`
    /// (then it is closed). `token`: the one it had when it was taken from the pool, `None`
    /// for a new connection. `idle_for`: how long it may wait.
    ///
    /// The watch wakes on the server's close only (`EPOLLRDHUP`), not on its bytes: a
    /// response on a connection in use must not wake the accepting thread, and bytes nobody
    /// asked for are found by the check before reuse. So a connection taken and put back
    /// keeps its registration armed, and costs no `epoll_ctl`, unless its close was seen
    /// while it was in use.
    pub fn put(&self, addr: SocketAddr, conn: TcpStream, token: Option<u64>, max: usize, idle_for: Duration) {
        let mut t = self.table.lock();
        let list_len = t.idle.get(&addr).map_or(0, Vec::len);
        if list_len >= max {
            return; // dropping `conn` closes it
        }
        let token = match token {
            Some(tok) if !t.fired.remove(&tok) => tok,
            _ => {
                let tok = self.watch.token(Kind::Idle);
                if let Err(e) = self.watch.arm(&conn, tok, false, true, token.is_some()) {
                    // Unwatched, a server's close would go unseen until reuse: not worth keeping.
                    drop(t);
                    crate::error!("internal: cannot watch an idle connection to {addr}: {e}");
                    return;
                }
                tok
            }
        };
        t.idle.entry(addr).or_default().push(Entry { token, conn });
        t.expiry.push_back((Instant::now() + idle_for, addr, token));
        // Entries taken before their time stay in `expiry` until it comes; under heavy reuse,
        // sweep them out so the queue stays proportional to what is idle.
        let idle: usize = t.idle.values().map(Vec::len).sum();
        if t.expiry.len() > 4 * idle + 1024 {
            let Table { idle, expiry, .. } = &mut *t;
            expiry.retain(|(_, a, tok)| idle.get(a).is_some_and(|l| l.iter().any(|e| e.token == *tok)));
        }
    }

    /// The watch saw the server close an idle connection (or send bytes unasked): drop it.
    pub fn on_event(&self, token: u64) {
        let mut t = self.table.lock();
        let found = t.idle.values_mut().find_map(|list| {
            let i = list.iter().position(|e| e.token == token)?;
            Some(list.swap_remove(i))
        });
        if found.is_none() {
            // In use: its registration is spent; `put` arms it again.
            if t.fired.len() >= MAX_FIRED {
                t.fired.clear();
            }
            t.fired.insert(token);
        }
        drop(t);
        if found.is_some() {
            crate::debug!("server: an idle pooled connection was closed by its server");
        }
    }

    /// Closes connections idle past their time; says when the next one is due.
    pub fn expire(&self, now: Instant) -> Option<Instant> {
        let mut t = self.table.lock();
        while let Some(&(due, addr, token)) = t.expiry.front() {
            if due > now {
                return Some(due);
            }
            t.expiry.pop_front();
            if let Some(list) = t.idle.get_mut(&addr) {
                list.retain(|e| e.token != token);
            }
        }
        None
    }

    /// Idle connections now, for the status page.
    pub fn idle(&self) -> usize {
        self.table.lock().idle.values().map(Vec::len).sum()
    }

    /// Closes every idle connection (shutdown).
    pub fn clear(&self) {
        let mut t = self.table.lock();
        t.idle.clear();
        t.expiry.clear();
    }
}

/// A pooled connection can carry a request if it has neither an EOF nor stray bytes waiting.
fn usable(conn: &TcpStream) -> bool {
    let mut byte = [0u8; 1];
    match conn.peek(&mut byte) {
        Err(e) => e.kind() == std::io::ErrorKind::WouldBlock,
        Ok(_) => false, // EOF (0) or bytes nobody asked for
    }
}
