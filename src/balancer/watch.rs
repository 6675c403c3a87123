//! One epoll set, read by the accepting thread, for every socket that waits without a thread:
//! client connections parked between requests (http mode), clients queued in the waiting room
//! (to see them give up), and idle server connections in the reuse pool (to see the server
//! close them).
//!
//! Why epoll and not the accepting thread's `poll` over a vector: ten thousand idle keep-alive
//! clients would make every wake-up of that thread cost ten thousand entries. An epoll set
//! costs nothing per idle socket; the accepting thread's `poll` holds its one descriptor.
//!
//! Every registration is one-shot (`EPOLLONESHOT`) and carries a token whose top bits say what
//! kind of socket it is. One-shot, because the socket's owner changes hands (a queued client is
//! taken by a worker, a pooled connection is taken for a request) without telling the
//! accepting thread: after its one event, a registration stays silent until it is armed again,
//! so a socket that moved on can never make the accepting thread spin. A token is never
//! reused, so an event that arrives for a socket that moved on finds nothing and is dropped.

use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::atomic::{AtomicU64, Ordering};

/// The events of a one-shot registration (see `Watch::arm`).
fn flags(input: bool, close: bool) -> EpollFlags {
    let mut flags = EpollFlags::EPOLLONESHOT;
    if input {
        flags |= EpollFlags::EPOLLIN;
    }
    if close {
        flags |= EpollFlags::EPOLLRDHUP;
    }
    flags
}

/// What a token names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A client connection parked by the accepting thread (http mode).
    Parked,
    /// A client in the waiting room.
    Queued,
    /// An idle server connection in the reuse pool.
    Idle,
}

const KIND_SHIFT: u32 = 62;

#[derive(Debug)]
pub struct Watch {
    epoll: Epoll,
    next: AtomicU64,
}

impl Watch {
    pub fn new() -> io::Result<Watch> {
        let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC).map_err(io::Error::from)?;
        Ok(Watch { epoll, next: AtomicU64::new(1) })
    }

    /// A fresh token of `kind`, never handed out before.
    pub fn token(&self, kind: Kind) -> u64 {
        let n = self.next.fetch_add(1, Ordering::Relaxed) & ((1 << KIND_SHIFT) - 1);
        let tag = match kind {
            Kind::Parked => 0,
            Kind::Queued => 1,
            Kind::Idle => 2,
        };
        n | (tag << KIND_SHIFT)
    }

    pub fn kind(token: u64) -> Kind {
        match token >> KIND_SHIFT {
            0 => Kind::Parked,
            1 => Kind::Queued,
            _ => Kind::Idle,
        }
    }

    /// Arms `fd` for one event under `token`. `input`: wake on readable bytes too, not only on
    /// the peer's close (`EPOLLRDHUP`) or an error or reset (always reported). `close`: wake
    /// when the peer closes its side; without it, only an error or reset wakes (a tcp-mode
    /// client may half-close and still wait for its reply). `seen`: the socket has been armed
    /// before (a hint only: either way it ends up armed).
    pub fn arm(&self, fd: impl AsFd, token: u64, input: bool, close: bool, seen: bool) -> io::Result<()> {
        let mut event = EpollEvent::new(flags(input, close), token);
        // A socket is registered once for the life of its descriptor and re-armed after: one
        // seen before is modified, a new one (a new client, a new server connection) added,
        // and a wrong hint costs one failed call.
        let first = if seen { self.epoll.modify(fd.as_fd(), &mut event) } else { self.epoll.add(fd.as_fd(), event) };
        match first {
            Ok(()) => Ok(()),
            Err(nix::errno::Errno::ENOENT) if seen => self.epoll.add(fd, event).map_err(io::Error::from),
            Err(nix::errno::Errno::EEXIST) if !seen => self.epoll.modify(fd, &mut event).map_err(io::Error::from),
            Err(e) => Err(e.into()),
        }
    }

    /// Takes the registration of `fd` away (its owner will watch it some other way).
    pub fn forget(&self, fd: impl AsFd) {
        // ENOENT: it was never armed; either way it is not registered now.
        let _ = self.epoll.delete(fd);
    }

    /// The tokens that have an event now (never blocks), appended to `out`.
    pub fn ready(&self, out: &mut Vec<u64>) {
        let mut events = [EpollEvent::empty(); 256];
        loop {
            match self.epoll.wait(&mut events, EpollTimeout::ZERO) {
                Ok(n) => {
                    out.extend(events[..n].iter().map(|e| e.data()));
                    if n < events.len() {
                        return;
                    }
                }
                Err(nix::errno::Errno::EINTR) => {}
                Err(e) => {
                    crate::error!("internal: epoll_wait: {e}");
                    return;
                }
            }
        }
    }

    /// The descriptor the accepting thread polls: readable while any event is pending.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.epoll.0.as_fd()
    }
}
