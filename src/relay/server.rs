//! The relay's event loop: one thread, one `poll(2)` over every socket, no locks.
//!
//! Each round: fire the gap timer if due, write out every client buffer that gained bytes, then
//! sleep in `poll` until a socket is ready or the earliest deadline (gap timeout, accept pause,
//! shutdown) passes; with no deadline the wait is unbounded, so an idle relay uses no CPU.
//! Ready sockets are handled in a fixed order: signal pipe, client listener, clients, event
//! listener, source. Clients come before the source so that a client which connected and sent
//! its id before the source connected is registered before the first event is delivered.
//!
//! Delivery: one `read` of up to 256 KiB from the source is cut into lines, each placed in the
//! [`Window`]; every event that becomes next in order is delivered at once, appending its line to
//! the buffer of each client it concerns. Those buffers are written at the top of the next round,
//! one `write` per client per read, so the batch grows by itself when the relay falls behind.
//! A client whose unsent bytes would pass `--client-buffer` is written to at once (the kernel may
//! take some); if that is not enough it is disconnected with a log line, and nobody else waits.
//!
//! Client slots freed during a round are reused only from the next round on, so a token from
//! this round's `poll` never names a different client.

use std::fmt;
use std::io::{self, Read};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

use crate::common::args::{self as common_args, ListenOptions};

use super::args::Config;
use super::client::{Client, Flush, IdRead, Phase};
use super::event::{Kind, Malformed, parse, printable};
use super::follow::Follows;
use super::hash::IdMap;
use super::source::{Fill, Line, Source};
use super::window::{Placed, Slot, Window};

/// How long a SIGINT/SIGTERM leaves for writing out what clients are owed.
const STOP_GRACE: Duration = Duration::from_secs(2);

/// How long accepting pauses when the process is out of file descriptors.
const ACCEPT_PAUSE: Duration = Duration::from_millis(100);

/// A failure of the relay itself (ours), one variant per setup step.
#[derive(Debug)]
pub enum RelayError {
    /// Could not listen on the event or client address.
    Bind { what: &'static str, addr: SocketAddr, source: io::Error },
    /// Could not install the SIGINT/SIGTERM handlers.
    Signals(io::Error),
    /// `poll(2)` failed for a reason other than a signal.
    Poll(io::Error),
}

impl fmt::Display for RelayError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RelayError::Bind { what, addr, source } => {
                write!(f, "internal: cannot listen for {what} on {addr}: {source}")
            }
            RelayError::Signals(e) => write!(f, "internal: cannot install signal handlers: {e}"),
            RelayError::Poll(e) => write!(f, "internal: poll failed: {e}"),
        }
    }
}

impl std::error::Error for RelayError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            RelayError::Bind { source, .. } => Some(source),
            RelayError::Signals(e) | RelayError::Poll(e) => Some(e),
        }
    }
}

/// What a `poll` entry stands for.
#[derive(Clone, Copy)]
enum Token {
    Wake,
    ClientListener,
    Client(usize),
    EventListener,
    Source,
}

/// Why a client is being dropped while notifications are delivered.
enum Doom {
    /// Its unsent bytes would pass the limit.
    Slow(usize),
    /// Writing to it failed: the peer is gone.
    Gone(io::Error),
}

/// Every client connection, identified or not.
#[derive(Default)]
struct Clients {
    slab: Vec<Option<Client>>,
    /// Slots free for reuse.
    free: Vec<usize>,
    /// Slots freed this round, moved to `free` at the start of the next.
    freed: Vec<usize>,
    /// Registered user -> slot; a slot appears here only while its client is `Registered`.
    by_user: IdMap<usize>,
    /// Slots with bytes queued this round, each once (see `Client::dirty`).
    dirty: Vec<usize>,
    /// Slots to close at the end of this delivery batch.
    doomed: Vec<(usize, Doom)>,
}

impl Clients {
    fn insert(&mut self, c: Client) -> usize {
        match self.free.pop() {
            Some(i) => {
                self.slab[i] = Some(c);
                i
            }
            None => {
                self.slab.push(Some(c));
                self.slab.len() - 1
            }
        }
    }

    fn get(&mut self, i: usize) -> Option<&mut Client> {
        self.slab.get_mut(i).and_then(Option::as_mut)
    }

    fn remove(&mut self, i: usize) -> Option<Client> {
        let c = self.slab.get_mut(i)?.take()?;
        if let Some(user) = c.user()
            && self.by_user.get(&user) == Some(&i)
        {
            self.by_user.remove(&user);
        }
        self.freed.push(i);
        Some(c)
    }

    /// Queues `text` for the client in slot `i`; see the module doc for the limit.
    fn push(
        slab: &mut [Option<Client>],
        dirty: &mut Vec<usize>,
        doomed: &mut Vec<(usize, Doom)>,
        i: usize,
        text: &[u8],
        limit: usize,
    ) -> bool {
        let Some(c) = slab.get_mut(i).and_then(Option::as_mut) else { return false };
        if c.doomed {
            return false;
        }
        if !c.push(text, limit) {
            // Over the limit: let the kernel take what it can, then retry. Even a client that
            // was blocked at the last poll gets this one write: it may have read since.
            if let Flush::Gone(e) = c.flush() {
                c.doomed = true;
                doomed.push((i, Doom::Gone(e)));
                return false;
            }
            if !c.push(text, limit) {
                c.doomed = true;
                doomed.push((i, Doom::Slow(c.pending())));
                return false;
            }
        }
        if !c.dirty {
            c.dirty = true;
            dirty.push(i);
        }
        true
    }

    /// Notifies `user` if connected; true if a client got the line.
    fn notify(&mut self, user: u64, text: &[u8], limit: usize) -> bool {
        match self.by_user.get(&user) {
            Some(&i) => Self::push(&mut self.slab, &mut self.dirty, &mut self.doomed, i, text, limit),
            None => false,
        }
    }

    /// Notifies every registered client; returns how many got the line.
    fn broadcast(&mut self, text: &[u8], limit: usize) -> u64 {
        let mut n = 0;
        for &i in self.by_user.values() {
            n += u64::from(Self::push(&mut self.slab, &mut self.dirty, &mut self.doomed, i, text, limit));
        }
        n
    }

    /// Writes every buffer that gained bytes, then closes the clients doomed meanwhile.
    fn flush_dirty(&mut self, limit: usize) {
        for k in 0..self.dirty.len() {
            let i = self.dirty[k];
            let Some(c) = self.slab.get_mut(i).and_then(Option::as_mut) else { continue };
            c.dirty = false;
            if c.doomed || c.blocked {
                continue; // doomed: closed below; blocked: the poll loop writes when POLLOUT says so
            }
            if let Flush::Gone(e) = c.flush() {
                c.doomed = true;
                self.doomed.push((i, Doom::Gone(e)));
            }
        }
        self.dirty.clear();
        self.close_doomed(limit);
    }

    fn close_doomed(&mut self, limit: usize) {
        while let Some((i, why)) = self.doomed.pop() {
            let Some(c) = self.remove(i) else { continue };
            let who = describe(&c);
            match why {
                Doom::Slow(pending) => {
                    warn!("client: {who} has {pending} bytes unsent, over --client-buffer {limit}: disconnected")
                }
                Doom::Gone(e) => info!("client: {who} went away while being written to: {e}"),
            }
        }
    }

    /// True when no client has bytes left to write.
    fn all_flushed(&self) -> bool {
        self.slab.iter().flatten().all(|c| c.pending() == 0)
    }
}

/// `user 42 (127.0.0.1:5555)` or `unidentified client (…)`.
fn describe(c: &Client) -> String {
    match c.user() {
        Some(u) => format!("user {u} ({})", c.peer),
        None => format!("unidentified client ({})", c.peer),
    }
}

/// Ordering and delivery state: the window, the follow graph and the clients.
struct Core {
    window: Window,
    follows: Follows,
    clients: Clients,
    gap_timeout: Duration,
    /// When the stalled `next` is given up; Some exactly while the window is stalled.
    gap_deadline: Option<Instant>,
    /// The `next` the deadline was set for: a gap whose `next` has moved on was filled, and
    /// the gap now stalling the window is a new one with a timer of its own.
    gap_next: u64,
    /// `--client-buffer`.
    limit: usize,
    delivered: u64,
    notifications: u64,
}

impl Core {
    /// Handles one source line: parse, restart check, place in the window, deliver what is due.
    fn on_line(&mut self, no: u64, line: Line<'_>, first: &mut bool) {
        let text = match line {
            Line::Text(t) => t,
            Line::TooLong => {
                warn!("source: line {no}: {}: skipped", Malformed::TooLong);
                return;
            }
        };
        let ev = match parse(text) {
            Ok(ev) => ev,
            Err(m) => {
                warn!("source: line {no}: {m}: skipped: \"{}\"", printable(text));
                return;
            }
        };
        if *first {
            *first = false;
            // See: issue #5, "one that starts again at 1 resets the relay's state"; a shuffled
            // first batch may open with any number of the first window, not only 1.
            if ev.seq < self.window.next() && ev.seq <= self.window.size() as u64 {
                self.restart(ev.seq);
            }
        }
        match self.window.place(ev, text) {
            Placed::Stored => {
                if ev.seq == self.window.next() {
                    self.deliver_ready();
                }
            }
            Placed::Duplicate => warn!("source: line {no}: duplicate of waiting seq {}: skipped", ev.seq),
            Placed::Late => warn!(
                "source: line {no}: seq {} was already delivered or skipped (next is {}): skipped",
                ev.seq,
                self.window.next()
            ),
            Placed::Ahead => warn!(
                "source: line {no}: seq {} is beyond the window (next is {}, window {}): skipped",
                ev.seq,
                self.window.next(),
                self.window.size()
            ),
        }
    }

    /// Delivers every event that is next in order.
    fn deliver_ready(&mut self) {
        while let Some(slot) = self.window.pop() {
            self.deliver(&slot);
        }
    }

    fn deliver(&mut self, slot: &Slot) {
        let ev = slot.event;
        let text = slot.text();
        let limit = self.limit;
        let n = match ev.kind {
            Kind::Follow => {
                self.follows.follow(ev.from, ev.to);
                u64::from(self.clients.notify(ev.to, text, limit))
            }
            Kind::Unfollow => {
                self.follows.unfollow(ev.from, ev.to);
                0
            }
            Kind::Broadcast => self.clients.broadcast(text, limit),
            Kind::Private => u64::from(self.clients.notify(ev.to, text, limit)),
            Kind::Status => {
                let mut n = 0;
                for f in self.follows.followers(ev.from) {
                    n += u64::from(self.clients.notify(f, text, limit));
                }
                n
            }
        };
        self.delivered += 1;
        self.notifications += n;
    }

    /// Delivers everything waiting, giving up on every gap at once: no more events will come
    /// for them (source restart, shutdown).
    fn drain_all(&mut self) {
        loop {
            self.deliver_ready();
            match self.window.skip_gap() {
                Some((a, b)) => warn!("source: seq {a}..={b} never arrived: skipped"),
                None => break,
            }
        }
        self.gap_deadline = None;
    }

    fn restart(&mut self, seq: u64) {
        let next = self.window.next();
        self.drain_all();
        self.follows.clear();
        self.window.reset();
        info!(
            "source: new stream starts at seq {seq}, behind next {next}: follows and window reset \
             ({} events delivered before)",
            self.delivered
        );
    }

    /// Fires the gap timeout if due, then arms or disarms it for the window's new state.
    fn on_timers(&mut self, now: Instant) {
        if let Some(d) = self.gap_deadline
            && now >= d
        {
            if let Some((a, b)) = self.window.skip_gap() {
                warn!("source: seq {a}..={b} missing for {:?} while later events wait: skipped", self.gap_timeout);
                self.deliver_ready();
            }
            self.gap_deadline = None;
        }
        if self.window.stalled() {
            // See: issue #13, the relay's long run. Keeping a deadline while `next` moves on
            // (every read ending mid-batch leaves the window stalled at each round) timed a
            // gap opened a moment ago from the first stall seconds earlier, and skipped it.
            let next = self.window.next();
            if self.gap_deadline.is_none() || self.gap_next != next {
                self.gap_deadline = Some(now + self.gap_timeout);
                self.gap_next = next;
            }
        } else {
            self.gap_deadline = None;
        }
    }
}

/// The relay: listeners, the source connection, and the delivery core; see the module doc.
pub struct Relay {
    event_listener: Option<TcpListener>,
    client_listener: Option<TcpListener>,
    /// Read end of the pipe the signal handlers write to.
    wake: UnixStream,
    source: Option<Source>,
    core: Core,
    /// Accepting resumes then after running out of file descriptors.
    accept_paused_until: Option<Instant>,
    /// Since when accepts have been failing for want of descriptors, and how many retries
    /// failed since; None while accepts work. Ends (logged) at the next accept.
    shortage: Option<(Instant, u64)>,
    /// Set by SIGINT/SIGTERM: the moment the relay exits whatever is still unsent.
    stop_by: Option<Instant>,
    tokens: Vec<Token>,
    ready: Vec<(Token, PollFlags)>,
    scratch: Box<[u8]>,
}

impl Relay {
    /// Binds both listeners (logging the addresses actually bound, for `--*-port 0`), installs
    /// the signal handlers and allocates the window.
    pub fn bind(config: &Config) -> Result<Relay, RelayError> {
        raise_fd_limit();
        // Handlers first: whoever learns the ports from the log may signal at once.
        let (wake, wake_w) = UnixStream::pair().map_err(RelayError::Signals)?;
        wake.set_nonblocking(true).map_err(RelayError::Signals)?;
        let wake_w2 = wake_w.try_clone().map_err(RelayError::Signals)?;
        signal_hook::low_level::pipe::register(signal_hook::consts::SIGINT, wake_w).map_err(RelayError::Signals)?;
        signal_hook::low_level::pipe::register(signal_hook::consts::SIGTERM, wake_w2).map_err(RelayError::Signals)?;
        let event_listener = listen(config.event_addr, "events")?;
        let client_listener = listen(config.client_addr, "clients")?;
        for (what, l) in [("events", &event_listener), ("clients", &client_listener)] {
            match l.local_addr() {
                Ok(a) => info!("{what} listening on {a}"),
                Err(e) => warn!("internal: {what} listener has no local address: {e}"),
            }
        }
        info!(
            "window {} events, gap timeout {:?}, client buffer {} bytes",
            config.window, config.gap_timeout, config.client_buffer
        );
        Ok(Relay {
            event_listener: Some(event_listener),
            client_listener: Some(client_listener),
            wake,
            source: None,
            core: Core {
                window: Window::new(config.window),
                follows: Follows::default(),
                clients: Clients::default(),
                gap_timeout: config.gap_timeout,
                gap_deadline: None,
                gap_next: 0,
                limit: config.client_buffer,
                delivered: 0,
                notifications: 0,
            },
            accept_paused_until: None,
            shortage: None,
            stop_by: None,
            tokens: Vec::new(),
            ready: Vec::new(),
            scratch: vec![0; 16 * 1024].into_boxed_slice(),
        })
    }

    /// Runs until SIGINT/SIGTERM has been handled; see the module doc for one round.
    pub fn run(mut self) -> Result<(), RelayError> {
        loop {
            let now = Instant::now();
            let Clients { free, freed, .. } = &mut self.core.clients;
            free.append(freed);
            if self.accept_paused_until.is_some_and(|d| now >= d) {
                self.accept_paused_until = None;
            }
            self.core.on_timers(now);
            self.core.clients.flush_dirty(self.core.limit);
            if let Some(stop_by) = self.stop_by
                && (now >= stop_by || self.core.clients.all_flushed())
            {
                break;
            }
            let deadline = [self.core.gap_deadline, self.accept_paused_until, self.stop_by].into_iter().flatten().min();
            if self.wait(deadline.map(|d| d.saturating_duration_since(now)))? {
                break; // a second signal while stopping: leave now
            }
            for k in 0..self.ready.len() {
                let (token, flags) = self.ready[k];
                self.handle(token, flags);
            }
        }
        let unsent: usize = self.core.clients.slab.iter().flatten().map(Client::pending).sum();
        info!(
            "stopped: {} events delivered, {} notifications, {unsent} bytes left unsent",
            self.core.delivered, self.core.notifications
        );
        Ok(())
    }

    /// Polls every socket that has something to say, for at most `timeout` (rounded up to a
    /// whole millisecond so that a deadline is never woken for early and spun on). Fills
    /// `ready`. Returns true if the relay must exit at once.
    fn wait(&mut self, timeout: Option<Duration>) -> Result<bool, RelayError> {
        let Relay { event_listener, client_listener, wake, source, core, tokens, ready, accept_paused_until, .. } =
            self;
        let mut fds: Vec<PollFd<'_>> = Vec::with_capacity(core.clients.slab.len() + 4);
        tokens.clear();
        fds.push(PollFd::new(wake.as_fd(), PollFlags::POLLIN));
        tokens.push(Token::Wake);
        let accepting = accept_paused_until.is_none();
        if let Some(l) = client_listener.as_ref().filter(|_| accepting) {
            fds.push(PollFd::new(l.as_fd(), PollFlags::POLLIN));
            tokens.push(Token::ClientListener);
        }
        for (i, c) in core.clients.slab.iter().enumerate() {
            if let Some(c) = c {
                let mut flags = PollFlags::POLLIN;
                if c.blocked {
                    flags |= PollFlags::POLLOUT;
                }
                fds.push(PollFd::new(c.stream.as_fd(), flags));
                tokens.push(Token::Client(i));
            }
        }
        if let Some(l) = event_listener.as_ref().filter(|_| accepting) {
            fds.push(PollFd::new(l.as_fd(), PollFlags::POLLIN));
            tokens.push(Token::EventListener);
        }
        if let Some(s) = source {
            fds.push(PollFd::new(s.stream.as_fd(), PollFlags::POLLIN));
            tokens.push(Token::Source);
        }
        let timeout = match timeout {
            None => PollTimeout::NONE,
            Some(t) => {
                let ms = t.as_micros().div_ceil(1000).min(i32::MAX as u128);
                PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX)
            }
        };
        ready.clear();
        match poll(&mut fds, timeout) {
            Ok(_) => {}
            Err(Errno::EINTR) => return Ok(false),
            Err(e) => return Err(RelayError::Poll(e.into())),
        }
        for (fd, &token) in fds.iter().zip(tokens.iter()) {
            if let Some(r) = fd.revents()
                && !r.is_empty()
            {
                ready.push((token, r));
            }
        }
        drop(fds);
        if ready.first().is_some_and(|(t, _)| matches!(t, Token::Wake)) {
            let mut buf = [0u8; 64];
            // the pipe only says "a signal came"; how many does not matter
            while matches!(wake.read(&mut buf), Ok(n) if n > 0) {}
            if self.stop_by.is_some() {
                info!("second signal while stopping: exiting now");
                return Ok(true);
            }
            self.begin_stop();
        }
        Ok(false)
    }

    fn handle(&mut self, token: Token, flags: PollFlags) {
        let input = flags.intersects(PollFlags::POLLIN | PollFlags::POLLHUP | PollFlags::POLLERR);
        match token {
            Token::Wake => {}
            Token::ClientListener => self.accept_clients(),
            Token::Client(i) => {
                if input {
                    self.client_input(i);
                }
                if flags.contains(PollFlags::POLLOUT)
                    && let Some(c) = self.core.clients.get(i)
                    && let Flush::Gone(e) = c.flush()
                {
                    let who = describe(c);
                    self.core.clients.remove(i);
                    info!("client: {who} went away while being written to: {e}");
                }
            }
            Token::EventListener => self.accept_sources(),
            Token::Source => self.source_input(),
        }
    }

    /// An accept worked: a shortage of descriptors, if there was one, is over.
    fn accepted(&mut self) {
        if let Some((since, retries)) = self.shortage.take() {
            info!("accepting again after {:?} out of descriptors ({retries} retries)", since.elapsed());
        }
    }

    /// Accepts every pending client connection; reads the id of each at once if it is there.
    fn accept_clients(&mut self) {
        loop {
            let Some(l) = self.client_listener.as_ref() else { return };
            match l.accept() {
                Ok((stream, peer)) => {
                    self.accepted();
                    if let Err(e) = prepare(&stream) {
                        warn!("client: cannot set up connection from {peer}: {e}");
                        continue;
                    }
                    debug!("client: connection from {peer}");
                    let i = self.core.clients.insert(Client::new(stream, peer));
                    self.client_input(i);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) => {
                    if self.accept_failed("client", e) {
                        return;
                    }
                }
            }
        }
    }

    /// Logs an accept failure; true if accepting must pause (out of descriptors).
    fn accept_failed(&mut self, what: &str, e: io::Error) -> bool {
        match e.raw_os_error() {
            Some(libc::EMFILE) | Some(libc::ENFILE) | Some(libc::ENOBUFS) | Some(libc::ENOMEM) => {
                // Once per episode: a shortage that lasts retries every ACCEPT_PAUSE, and a
                // line per retry would be ten a second. See: issue #13, relay out of fds.
                match &mut self.shortage {
                    Some((_, retries)) => {
                        *retries += 1;
                        debug!("internal: still out of descriptors (retry {retries}): {e}");
                    }
                    None => {
                        warn!(
                            "internal: cannot accept a {what} connection: {e}: pausing accepts,                              retrying every {ACCEPT_PAUSE:?} until a descriptor is free"
                        );
                        self.shortage = Some((Instant::now(), 0));
                    }
                }
                self.accept_paused_until = Some(Instant::now() + ACCEPT_PAUSE);
                true
            }
            _ => {
                debug!("{what}: accept failed: {e}");
                false
            }
        }
    }

    /// Input from client slot `i`: its id, or (once registered) bytes to discard or its EOF.
    fn client_input(&mut self, i: usize) {
        let scratch = &mut self.scratch;
        let Some(c) = self.core.clients.get(i) else { return };
        match c.phase {
            Phase::Registered { user } => {
                if !c.drain_input(scratch) {
                    let peer = c.peer;
                    self.core.clients.remove(i);
                    info!("client: user {user} ({peer}) disconnected");
                }
            }
            Phase::AwaitingId { .. } => match c.read_id() {
                IdRead::Pending => {}
                IdRead::Closed => {
                    let peer = c.peer;
                    self.core.clients.remove(i);
                    debug!("client: {peer} closed before sending an id");
                }
                IdRead::Garbage(bytes) => {
                    let peer = c.peer;
                    self.core.clients.remove(i);
                    warn!("client: {peer} sent \"{}\", not a user id: closed", printable(&bytes));
                }
                IdRead::Id(user) => {
                    c.phase = Phase::Registered { user };
                    let peer = c.peer;
                    if let Some(old) = self.core.clients.by_user.insert(user, i)
                        && let Some(o) = self.core.clients.remove(old)
                    {
                        info!(
                            "client: user {user} connected again from {peer}: closed the older connection from {}",
                            o.peer
                        );
                    }
                    debug!("client: user {user} registered from {peer}");
                }
            },
        }
    }

    /// Accepts source connections: the first becomes the source if none is connected, any other
    /// is refused with a log line.
    fn accept_sources(&mut self) {
        // Clients that connected before the source must be registered before its first event.
        self.accept_clients();
        let pending: Vec<usize> = (0..self.core.clients.slab.len())
            .filter(|&i| matches!(self.core.clients.slab[i].as_ref().map(|c| &c.phase), Some(Phase::AwaitingId { .. })))
            .collect();
        for i in pending {
            self.client_input(i);
        }
        loop {
            let Some(l) = self.event_listener.as_ref() else { return };
            match l.accept() {
                Ok((stream, peer)) => {
                    self.accepted();
                    if let Some(s) = &self.source {
                        warn!("source: refused a second source from {peer}: one is connected from {}", s.peer);
                        continue; // dropping the stream closes it
                    }
                    if let Err(e) = stream.set_nonblocking(true) {
                        warn!("source: cannot set up connection from {peer}: {e}");
                        continue;
                    }
                    info!("source: connected from {peer}; next seq {}", self.core.window.next());
                    self.source = Some(Source::new(stream, peer));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) => {
                    if self.accept_failed("source", e) {
                        return;
                    }
                }
            }
        }
    }

    /// One read from the source, every complete line processed.
    fn source_input(&mut self) {
        let Some(src) = self.source.as_mut() else { return };
        let fill = src.fill();
        let eof = !matches!(fill, Fill::Data | Fill::Empty);
        let core = &mut self.core;
        let mut first = src.first;
        src.lines(eof, |no, line| core.on_line(no, line, &mut first));
        src.first = first;
        let why = match fill {
            Fill::Data | Fill::Empty => return,
            Fill::Eof => "closed".to_string(),
            Fill::Failed(e) => format!("failed: {e}"),
        };
        info!(
            "source: {} {why} after {} lines; {} events delivered, {} notifications, {} waiting behind a gap",
            src.peer,
            src.lines,
            core.delivered,
            core.notifications,
            core.window.buffered()
        );
        self.source = None;
    }

    /// SIGINT/SIGTERM: stop accepting and reading, deliver what was received, and leave
    /// `STOP_GRACE` for the writes.
    fn begin_stop(&mut self) {
        info!("signal: stopping; flushing clients for up to {STOP_GRACE:?}");
        self.event_listener = None;
        self.client_listener = None;
        self.source = None;
        self.core.drain_all();
        let unidentified: Vec<usize> = (0..self.core.clients.slab.len())
            .filter(|&i| matches!(self.core.clients.slab[i].as_ref().map(|c| &c.phase), Some(Phase::AwaitingId { .. })))
            .collect();
        for i in unidentified {
            self.core.clients.remove(i);
        }
        self.stop_by = Some(Instant::now() + STOP_GRACE);
    }
}

/// A non-blocking listening socket (`common::args::listen`: SO_REUSEADDR, backlog 1024).
fn listen(addr: SocketAddr, what: &'static str) -> Result<TcpListener, RelayError> {
    let opts = ListenOptions { nonblocking: true, ..ListenOptions::default() };
    common_args::listen(addr, opts).map_err(|e| RelayError::Bind { what, addr, source: e.source })
}

/// A client socket: nonblocking, no Nagle delay (writes are already batched).
fn prepare(s: &TcpStream) -> io::Result<()> {
    s.set_nonblocking(true)?;
    s.set_nodelay(true)
}

/// Raises the soft descriptor limit as far as the hard one allows: each client is a
/// descriptor, and how many clients come is not known in advance.
pub fn raise_fd_limit() {
    if let Err(e) = common_args::raise_fd_limit(u64::MAX) {
        warn!("internal: cannot raise the descriptor limit: {e}");
    }
}
