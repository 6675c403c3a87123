//! Spawned backends (`worker: n` in the fleet file): start them, restart the ones that die,
//! stop them all.
//!
//! ## Threads
//! One monitor thread per backend (`Monitor::run`). It spawns its child, blocks until the child
//! exits, logs the exit, sleeps out the backoff and spawns it again, until the supervisor stops.
//! Nothing polls: the monitor blocks in `waitid`, and its backoff is a condvar wait with a
//! deadline that `stop` cuts short. The child is spawned by the thread that waits for it, and
//! that thread lives exactly as long as the child: this matters because the backend's
//! `--die-with-parent` uses `PR_SET_PDEATHSIG`, which fires when the *thread* that forked it
//! exits, and fires when the whole balancer dies, even by SIGKILL (so no orphan is left).
//!
//! ## Locking and pids
//! `Shared::state` (one mutex) holds each slot's live pid and the `stopping` flag; `changed`
//! (its condvar) is notified whenever either moves. A pid is in the table from just after spawn
//! until the child is reaped, and reaping happens only under the lock: the monitor first waits
//! for the exit *without* reaping (`waitid(WEXITED | WNOWAIT)`), then takes the lock, reaps and
//! clears the slot. So while the lock is held, every pid in the table is our child (alive or
//! a zombie), and a signal sent under the lock can never hit a recycled pid. That is why
//! `stop` signals under the lock (a `kill` is one syscall; nothing else is done under it).
//! A monitor that spawns after `stop` set `stopping` sees the flag when it registers the pid
//! and kills its own child.
//!
//! ## Backoff
//! A child that dies is restarted after 0.1 s, then 0.2, 0.4 ... up to 5 s between tries; a
//! child that stayed up 30 s resets the delay to 0.1 s. A spawn that fails (exec error) is
//! retried on the same schedule.
//!
//! The balancer must not set SIGCHLD to SIG_IGN (children would reap themselves), and must call
//! `stop` (or drop the supervisor) before `process::exit`, which skips destructors.

use crate::balancer::config::WorkerSpec;
use nix::errno::Errno;
use nix::sys::signal::{Signal, kill};
use nix::sys::wait::{Id, WaitPidFlag, waitid};
use nix::unistd::Pid;
use parking_lot::{Condvar, Mutex};
use std::fmt;
use std::io;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Builds the command for backend number `index` (0-based); called for every (re)spawn.
pub type CommandFn = dyn Fn(u16) -> Command + Send + Sync;

/// How long a stopped backend gets between SIGTERM and SIGKILL.
pub const STOP_GRACE: Duration = Duration::from_secs(2);

/// Restart delays: `initial`, doubling up to `max`; back to `initial` after `reset_after` up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    pub initial: Duration,
    pub max: Duration,
    pub reset_after: Duration,
}

impl Default for Backoff {
    /// 0.1 s doubling to 5 s, reset after 30 s up (issue #7).
    fn default() -> Backoff {
        Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(5),
            reset_after: Duration::from_secs(30),
        }
    }
}

impl Backoff {
    /// The delay before the next try, given the last delay and how long the child ran.
    pub fn next(&self, last: Option<Duration>, ran: Duration) -> Duration {
        match last {
            Some(d) if ran < self.reset_after => (d * 2).min(self.max),
            _ => self.initial.min(self.max),
        }
    }
}

/// Why the backends could not be started.
#[derive(Debug)]
pub enum SupervisorError {
    /// A backend's program could not be started (the ones already started were stopped).
    Spawn { name: String, program: String, source: io::Error },
    /// A monitor thread could not be created.
    Thread { name: String, source: io::Error },
}

impl fmt::Display for SupervisorError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SupervisorError::Spawn { name, program, source } => write!(f, "{name}: cannot start {program}: {source}"),
            SupervisorError::Thread { name, source } => write!(f, "{name}: cannot start its monitor thread: {source}"),
        }
    }
}

impl std::error::Error for SupervisorError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            SupervisorError::Spawn { source, .. } | SupervisorError::Thread { source, .. } => Some(source),
        }
    }
}

/// The `backend` binary next to the running executable (under `cargo test`, the test binary is
/// in `target/*/deps/`, and `backend` one directory up). A missing file is reported when a
/// spawn fails, naming this path.
pub fn backend_exe() -> PathBuf {
    let exe = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("loadbalancer"));
    let beside = exe.with_file_name("backend");
    let parent = exe.parent();
    if !beside.exists()
        && parent.and_then(Path::file_name).is_some_and(|n| n == "deps")
        && let Some(up) = parent.and_then(Path::parent)
        && up.join("backend").exists()
    {
        return up.join("backend");
    }
    beside
}

/// The name of backend `index` (0-based) in logs and in its `--name`: `worker-1`, `worker-2`...
pub fn worker_name(index: u16) -> String {
    format!("worker-{}", u32::from(index) + 1)
}

/// `backend --die-with-parent --name worker-I --avg-delay-ms D --fail-rate P PORT`.
pub fn backend_command(exe: &Path, spec: &WorkerSpec, index: u16) -> Command {
    let mut cmd = Command::new(exe);
    cmd.arg("--die-with-parent")
        .args(["--name", &worker_name(index)])
        .args(["--avg-delay-ms", &spec.avg_delay_ms.to_string()])
        .args(["--fail-rate", &spec.fail_rate.to_string()])
        .arg((u32::from(spec.first_port) + u32::from(index)).to_string());
    cmd
}

#[derive(Debug)]
struct State {
    /// Set once by `stop`; no spawn after it survives.
    stopping: bool,
    /// The live (or not yet reaped) child of each slot; `None` between a reap and the respawn.
    pids: Vec<Option<u32>>,
}

/// What the supervisor and its monitors share. See the module doc for the locking rules.
#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    /// Notified when a pid is registered or cleared, and when `stopping` is set.
    changed: Condvar,
}

impl Shared {
    /// Sends `sig` to `pid`. Call with the state lock held (so the pid is ours, see the module
    /// doc). ESRCH cannot happen for an unreaped child; any error is logged.
    fn signal(pid: u32, sig: Signal, name: &str) {
        let Ok(raw) = i32::try_from(pid) else { return };
        if let Err(e) = kill(Pid::from_raw(raw), sig) {
            crate::warn!("{name} (pid {pid}): cannot send {}: {e}", sig.as_str());
        }
    }
}

/// The running backends. `stop` or drop stops them all.
pub struct Supervisor {
    shared: Arc<Shared>,
    names: Vec<String>,
    monitors: Vec<JoinHandle<()>>,
}

impl fmt::Debug for Supervisor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Supervisor").field("names", &self.names).finish_non_exhaustive()
    }
}

impl Supervisor {
    /// Starts `spec.count` backends from `backend_exe` on ports `first_port + i`. Fails, after
    /// stopping those already started, if one cannot be spawned.
    pub fn start(spec: &WorkerSpec, backend_exe: &Path) -> Result<Supervisor, SupervisorError> {
        let (spec, exe) = (spec.clone(), backend_exe.to_path_buf());
        Supervisor::start_with(spec.count, Backoff::default(), Arc::new(move |i| backend_command(&exe, &spec, i)))
    }

    /// Starts `count` children from `command(i)` (stdin is set to null; stdout and stderr are
    /// as the command says, inherited by default), restarting them with `backoff`.
    pub fn start_with(count: u16, backoff: Backoff, command: Arc<CommandFn>) -> Result<Supervisor, SupervisorError> {
        let shared = Arc::new(Shared {
            state: Mutex::new(State { stopping: false, pids: vec![None; usize::from(count)] }),
            changed: Condvar::new(),
        });
        let mut sup = Supervisor { shared: Arc::clone(&shared), names: Vec::new(), monitors: Vec::new() };
        for index in 0..count {
            let name = worker_name(index);
            let (first_tx, first_rx) = mpsc::sync_channel(1);
            let monitor = Monitor {
                index,
                name: name.clone(),
                command: Arc::clone(&command),
                backoff,
                shared: Arc::clone(&shared),
                first: Some(first_tx),
            };
            let thread = std::thread::Builder::new()
                .name(format!("monitor-{name}"))
                .spawn(move || monitor.run())
                .map_err(|source| SupervisorError::Thread { name: name.clone(), source });
            let thread = match thread {
                Ok(t) => t,
                Err(e) => {
                    sup.shutdown();
                    return Err(e);
                }
            };
            sup.names.push(name.clone());
            sup.monitors.push(thread);
            // The monitor reports its first spawn; a dead monitor (panic) drops the sender.
            let first = first_rx.recv().unwrap_or_else(|_| {
                Err(SupervisorError::Spawn {
                    name: name.clone(),
                    program: "the backend".into(),
                    source: io::Error::other("its monitor thread ended"),
                })
            });
            if let Err(e) = first {
                sup.shutdown();
                return Err(e);
            }
        }
        Ok(sup)
    }

    /// Each slot's current pid, `None` while it waits to be restarted. For tests and `/status`.
    pub fn pids(&self) -> Vec<Option<u32>> {
        self.shared.state.lock().pids.clone()
    }

    /// Waits until slot `index` holds a pid other than `old` (a restart), up to `timeout`.
    /// Returns the new pid, or `None` on timeout or a bad index.
    pub fn wait_for_new_pid(&self, index: usize, old: Option<u32>, timeout: Duration) -> Option<u32> {
        let deadline = Instant::now() + timeout;
        let mut state = self.shared.state.lock();
        loop {
            match state.pids.get(index)? {
                Some(pid) if Some(*pid) != old => return Some(*pid),
                _ => {}
            }
            if self.shared.changed.wait_until(&mut state, deadline).timed_out() {
                return None;
            }
        }
    }

    /// SIGTERM to every backend, up to `STOP_GRACE` for them to exit, then SIGKILL to the rest;
    /// returns when every one is reaped and every monitor has ended.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        let deadline = Instant::now() + STOP_GRACE;
        {
            let mut state = self.shared.state.lock();
            state.stopping = true;
            for (i, pid) in state.pids.iter().enumerate() {
                if let Some(pid) = pid {
                    Shared::signal(*pid, Signal::SIGTERM, self.names.get(i).map_or("worker", String::as_str));
                }
            }
            self.shared.changed.notify_all();
            while state.pids.iter().any(Option::is_some) {
                if self.shared.changed.wait_until(&mut state, deadline).timed_out() {
                    break;
                }
            }
            for (i, pid) in state.pids.iter().enumerate() {
                if let Some(pid) = pid {
                    let name = self.names.get(i).map_or("worker", String::as_str);
                    crate::warn!(
                        "{name} (pid {pid}) did not exit {}s after SIGTERM; sending SIGKILL",
                        STOP_GRACE.as_secs()
                    );
                    Shared::signal(*pid, Signal::SIGKILL, name);
                }
            }
        }
        for m in self.monitors.drain(..) {
            if m.join().is_err() {
                crate::error!("internal: a backend monitor thread panicked");
            }
        }
    }
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        if !self.monitors.is_empty() {
            self.shutdown();
        }
    }
}

/// Watches one backend slot for the life of the supervisor.
struct Monitor {
    index: u16,
    name: String,
    command: Arc<CommandFn>,
    backoff: Backoff,
    shared: Arc<Shared>,
    /// Reports the first spawn's outcome to `start_with`; taken after use.
    first: Option<mpsc::SyncSender<Result<(), SupervisorError>>>,
}

impl Monitor {
    fn run(mut self) {
        let mut delay: Option<Duration> = None;
        loop {
            let mut cmd = (self.command)(self.index);
            cmd.stdin(Stdio::null());
            let started = Instant::now();
            let child = match cmd.spawn() {
                Ok(child) => child,
                Err(source) => {
                    let program = cmd.get_program().to_string_lossy().into_owned();
                    if let Some(first) = self.first.take() {
                        // `start_with` waits on the other end; if it is gone there is no one to tell.
                        let _ = first.send(Err(SupervisorError::Spawn { name: self.name.clone(), program, source }));
                        return;
                    }
                    let next = self.backoff.next(delay, Duration::ZERO);
                    crate::error!("{}: cannot start {program}: {source}; retrying in {}s", self.name, secs(next));
                    delay = Some(next);
                    if !self.sleep(next) {
                        return;
                    }
                    continue;
                }
            };
            let pid = child.id();
            if self.register(pid) {
                crate::info!("{} started (pid {pid})", self.name);
                if let Some(first) = self.first.take() {
                    // As above: nobody to tell if `start_with` is gone.
                    let _ = first.send(Ok(()));
                }
            } else {
                crate::debug!("{} (pid {pid}) started while stopping; killed", self.name);
            }
            let status = self.wait_and_reap(child, pid);
            let ran = started.elapsed();
            if self.shared.state.lock().stopping {
                crate::debug!("{} (pid {pid}) stopped: {}", self.name, describe(status.as_ref()));
                return;
            }
            let next = self.backoff.next(delay, ran);
            delay = Some(next);
            crate::warn!(
                "{} (pid {pid}) exited with status {}; restarting in {}s",
                self.name,
                describe(status.as_ref()),
                secs(next)
            );
            if !self.sleep(next) {
                return;
            }
        }
    }

    /// Records the new child's pid. Returns false if the supervisor is stopping, after sending
    /// the child SIGKILL: it has done no work yet, and `stop` may already be past its own
    /// SIGKILL round, so a gentler signal the child might ignore could leave `stop` joining
    /// this thread forever.
    fn register(&self, pid: u32) -> bool {
        let mut state = self.shared.state.lock();
        state.pids[usize::from(self.index)] = Some(pid);
        self.shared.changed.notify_all();
        if state.stopping {
            Shared::signal(pid, Signal::SIGKILL, &self.name);
        }
        !state.stopping
    }

    /// Blocks until the child exits, then reaps it and clears its slot under the lock.
    fn wait_and_reap(&self, mut child: Child, pid: u32) -> io::Result<ExitStatus> {
        let raw = Pid::from_raw(i32::try_from(pid).unwrap_or(i32::MAX));
        let exited = loop {
            match waitid(Id::Pid(raw), WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT) {
                Ok(_) => break true,
                Err(Errno::EINTR) => continue,
                Err(e) => {
                    // ECHILD: someone else reaped it (is SIGCHLD ignored?). We cannot know it
                    // exited, so wait() below runs without the lock, which it must not block.
                    crate::error!("internal: {} (pid {pid}): waitid: {e}", self.name);
                    break false;
                }
            }
        };
        let status = if exited { None } else { Some(child.wait()) };
        let mut state = self.shared.state.lock();
        // A zombie: reaping it returns at once, and under the lock (see the module doc).
        let status = status.unwrap_or_else(|| child.wait());
        state.pids[usize::from(self.index)] = None;
        self.shared.changed.notify_all();
        status
    }

    /// Sleeps `d`, or less if the supervisor stops. Returns false when it is stopping.
    fn sleep(&self, d: Duration) -> bool {
        let deadline = Instant::now() + d;
        let mut state = self.shared.state.lock();
        // Other slots' changes wake us too: recompute against the same deadline.
        while !state.stopping && Instant::now() < deadline {
            self.shared.changed.wait_until(&mut state, deadline);
        }
        !state.stopping
    }
}

/// `0.1`, `5`: seconds as the log shows them.
fn secs(d: Duration) -> String {
    format!("{}", (d.as_secs_f64() * 1000.0).round() / 1000.0)
}

/// `3`, `SIGKILL (signal 9)`, or the error.
fn describe(status: Result<&ExitStatus, &io::Error>) -> String {
    match status {
        Ok(s) => match (s.code(), s.signal()) {
            (Some(code), _) => code.to_string(),
            (None, Some(sig)) => match Signal::try_from(sig) {
                Ok(name) => format!("{} (signal {sig})", name.as_str()),
                Err(_) => format!("signal {sig}"),
            },
            (None, None) => s.to_string(),
        },
        Err(e) => format!("unknown ({e})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_the_cap_and_resets_after_a_long_run() {
        let b = Backoff::default();
        let short = Duration::from_secs(1);
        let mut d = None;
        let mut seen = Vec::new();
        for _ in 0..8 {
            let n = b.next(d, short);
            seen.push(n.as_millis());
            d = Some(n);
        }
        assert_eq!(seen, [100, 200, 400, 800, 1600, 3200, 5000, 5000]);
        assert_eq!(b.next(d, Duration::from_secs(30)), Duration::from_millis(100));
    }

    #[test]
    fn backend_argv() {
        let spec = WorkerSpec { count: 3, first_port: 9001, avg_delay_ms: 20.0, fail_rate: 2.5 };
        let cmd = backend_command(Path::new("/x/backend"), &spec, 1);
        let args: Vec<String> = cmd.get_args().map(|a| a.to_string_lossy().into_owned()).collect();
        assert_eq!(
            args,
            ["--die-with-parent", "--name", "worker-2", "--avg-delay-ms", "20", "--fail-rate", "2.5", "9002"]
        );
        assert_eq!(cmd.get_program(), "/x/backend");
    }

    #[test]
    fn statuses_read_well() {
        assert_eq!(describe(Ok(&ExitStatus::from_raw(3 << 8))), "3");
        assert_eq!(describe(Ok(&ExitStatus::from_raw(9))), "SIGKILL (signal 9)");
        assert_eq!(secs(Duration::from_millis(100)), "0.1");
        assert_eq!(secs(Duration::from_secs(5)), "5");
    }
}
