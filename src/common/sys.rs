//! The doorway to the operating system: the few calls std, socket2 and nix do not cover, and
//! small wrappers that turn their results into `io::Result`. The only module allowed `unsafe`.

use nix::fcntl::OFlag;
use nix::sys::resource::{Resource, getrlimit, setrlimit};
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};

/// Turns a libc `-1` into the thread's `errno`.
fn check(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret == -1 { Err(io::Error::last_os_error()) } else { Ok(ret) }
}

/// `TCP_DEFER_ACCEPT`: the kernel completes `accept` only once the client has sent data (or
/// the period has passed), so silent clients cost no wake-up. Linux only.
pub fn set_defer_accept(sock: &impl AsFd, seconds: i32) -> io::Result<()> {
    let fd = sock.as_fd().as_raw_fd();
    // SAFETY: `fd` is a valid socket borrowed for the call; the option value is a c_int that
    // lives across the call and its exact size is passed.
    let ret = unsafe {
        libc::setsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_DEFER_ACCEPT,
            (&seconds as *const i32).cast(),
            std::mem::size_of::<i32>() as libc::socklen_t,
        )
    };
    check(ret).map(drop)
}

/// Raises the soft limit on open files towards `want` (never above the hard limit).
/// Returns the soft limit now in force.
pub fn raise_nofile(want: u64) -> io::Result<u64> {
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).map_err(io::Error::from)?;
    if soft >= want {
        return Ok(soft);
    }
    let target = want.min(hard);
    setrlimit(Resource::RLIMIT_NOFILE, target, hard).map_err(io::Error::from)?;
    Ok(target)
}

/// A self-pipe that wakes a thread blocked in `poll`: written by signal handlers (through
/// signal-hook) and by other threads, read by the accepting thread.
#[derive(Debug)]
pub struct Waker {
    pub read: OwnedFd,
    pub write: OwnedFd,
    /// A wake-up is written and the reader has not drained it yet.
    pending: std::sync::atomic::AtomicBool,
}

impl Waker {
    pub fn new() -> io::Result<Waker> {
        let (read, write) = nix::unistd::pipe2(OFlag::O_NONBLOCK | OFlag::O_CLOEXEC).map_err(io::Error::from)?;
        Ok(Waker { read, write, pending: Default::default() })
    }

    /// Makes the reader's next `poll` return. Never blocks: a full pipe already means "wake".
    pub fn wake(&self) {
        // Under load many hand-overs come between two wake-ups of the reader: one write is
        // enough for all of them (the reader clears the flag before it looks at its lists).
        if self.pending.swap(true, std::sync::atomic::Ordering::AcqRel) {
            return;
        }
        // EAGAIN means a wake-up is already pending, which is all we want.
        let _ = nix::unistd::write(&self.write, &[1u8]);
    }

    /// Empties the pipe after a wake-up; call it before looking at what was handed over.
    /// The flag is cleared after the pipe is empty: cleared before, a wake-up written in
    /// between would be read here while the flag stayed set, and the next hand-over would
    /// write nothing and wait for ever.
    pub fn drain(&self) {
        let mut buf = [0u8; 64];
        while let Ok(n) = nix::unistd::read(&self.read, &mut buf) {
            if n < buf.len() {
                break;
            }
        }
        self.pending.store(false, std::sync::atomic::Ordering::Release);
    }
}

/// A pipe used by `splice` to move bytes between two sockets without copying them through
/// user space. Both ends non-blocking.
#[derive(Debug)]
pub struct SplicePipe {
    pub read: OwnedFd,
    pub write: OwnedFd,
    /// Bytes the pipe holds: what one splice into it may move.
    pub capacity: usize,
}

/// Linux's default pipe size, kept when a bigger one is refused.
const DEFAULT_PIPE_CAPACITY: usize = 1 << 16;

/// The pipe size asked for: bigger means fewer splice calls per megabyte.
const WANTED_PIPE_CAPACITY: i32 = 1 << 18;

impl SplicePipe {
    pub fn new() -> io::Result<SplicePipe> {
        let (read, write) = nix::unistd::pipe2(OFlag::O_NONBLOCK | OFlag::O_CLOEXEC).map_err(io::Error::from)?;
        // Refused (a low /proc/sys/fs/pipe-max-size, or a user over its pipe quota): keep the default.
        let capacity = nix::fcntl::fcntl(&write, nix::fcntl::FcntlArg::F_SETPIPE_SZ(WANTED_PIPE_CAPACITY))
            .ok()
            .and_then(|n| usize::try_from(n).ok())
            .unwrap_or(DEFAULT_PIPE_CAPACITY);
        Ok(SplicePipe { read, write, capacity })
    }
}

/// `splice(2)` without offsets, non-blocking, moving pages where it can.
pub fn splice(from: &impl AsFd, to: &impl AsFd, len: usize) -> io::Result<usize> {
    use nix::fcntl::SpliceFFlags;
    nix::fcntl::splice(
        from.as_fd(),
        None,
        to.as_fd(),
        None,
        len,
        SpliceFFlags::SPLICE_F_NONBLOCK | SpliceFFlags::SPLICE_F_MOVE,
    )
    .map_err(io::Error::from)
}
