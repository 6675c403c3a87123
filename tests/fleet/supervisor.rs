//! Spawned backends with real processes (small `sh` scripts stand in for `backend`): restart
//! after a kill, the backoff schedule and its reset, stop with SIGTERM then SIGKILL, and no
//! process left behind.

use lb::balancer::supervisor::{self, Backoff, CommandFn, Supervisor, SupervisorError};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Bounds every wait; only reached when something hangs.
const PATIENCE: Duration = Duration::from_secs(10);

fn sh(script: &str) -> Command {
    let mut c = Command::new("sh");
    c.args(["-c", script]);
    c
}

/// The same script for every slot.
fn every(script: &'static str) -> Arc<CommandFn> {
    Arc::new(move |_| sh(script))
}

fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

fn first_pids(sup: &Supervisor, n: usize) -> Vec<u32> {
    (0..n)
        .map(|i| sup.wait_for_new_pid(i, None, PATIENCE).unwrap_or_else(|| panic!("slot {i} never started")))
        .collect()
}

#[test]
fn a_killed_backend_is_restarted() {
    let sup = Supervisor::start_with(2, Backoff::default(), every("exec sleep 1000")).unwrap();
    let before = first_pids(&sup, 2);
    assert!(before.iter().all(|p| alive(*p)));
    kill(Pid::from_raw(before[1] as i32), Signal::SIGKILL).unwrap();
    let after = sup.wait_for_new_pid(1, Some(before[1]), PATIENCE).expect("worker-2 was not restarted");
    assert_ne!(after, before[1]);
    assert!(alive(after));
    // The old one is reaped (no zombie), the other slot untouched.
    assert!(!alive(before[1]), "pid {} is still there", before[1]);
    assert_eq!(sup.pids(), vec![Some(before[0]), Some(after)]);
    sup.stop();
    assert!(!alive(before[0]) && !alive(after));
}

/// Starts one slot whose command reports each spawn time on a channel; returns the gaps
/// between the first `n + 1` spawns.
fn spawn_gaps(script: &'static str, backoff: Backoff, n: usize) -> Vec<Duration> {
    let (tx, rx) = mpsc::channel::<Instant>();
    let tx = std::sync::Mutex::new(tx);
    let command: Arc<CommandFn> = Arc::new(move |_| {
        // The receiver outlives the supervisor in this test; a send error cannot happen.
        let _ = tx.lock().unwrap().send(Instant::now());
        sh(script)
    });
    let sup = Supervisor::start_with(1, backoff, command).unwrap();
    let times: Vec<Instant> =
        (0..=n).map(|i| rx.recv_timeout(PATIENCE).unwrap_or_else(|_| panic!("spawn {i} did not come"))).collect();
    sup.stop();
    times.windows(2).map(|w| w[1] - w[0]).collect()
}

#[test]
fn the_backoff_doubles_while_a_backend_keeps_dying() {
    let gaps = spawn_gaps("exit 3", Backoff::default(), 4);
    // 0.1 s, 0.2, 0.4, 0.8 (plus the time the child takes to exit).
    for (gap, want) in gaps.iter().zip([100, 200, 400, 800]) {
        let want = Duration::from_millis(want);
        assert!(*gap >= want && *gap < want + Duration::from_millis(700), "gaps {gaps:?}");
    }
    assert!(gaps.windows(2).all(|w| w[1] > w[0]), "gaps {gaps:?}");
}

#[test]
fn the_backoff_resets_after_a_long_enough_run() {
    let backoff = Backoff {
        initial: Duration::from_millis(200),
        max: Duration::from_secs(5),
        reset_after: Duration::from_millis(300),
    };
    // Up 0.4 s each time, past reset_after: each restart waits the initial 0.2 s again
    // (doubling would make the gaps 0.6, 0.8, 1.2 s).
    let gaps = spawn_gaps("sleep 0.4; exit 1", backoff, 3);
    for gap in &gaps {
        assert!(*gap >= Duration::from_millis(600) && *gap < Duration::from_millis(780), "gaps {gaps:?}");
    }
}

/// A named pipe in a fresh directory: a child writes one line to it, the test reads it. Opening
/// blocks until both ends are there, so the reader learns exactly when the child got that far.
struct Fifo(PathBuf);

impl Fifo {
    fn new(name: &str) -> Fifo {
        let path = temp_dir(name).join("fifo");
        nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        Fifo(path)
    }

    /// What one writer wrote, waiting at most `PATIENCE`.
    fn read(&self) -> String {
        let (tx, rx) = mpsc::channel();
        let path = self.0.clone();
        // On a timeout the reader thread stays blocked in open; the test fails anyway.
        std::thread::spawn(move || tx.send(std::fs::read_to_string(path)));
        match rx.recv_timeout(PATIENCE) {
            Ok(Ok(text)) => text.trim().to_string(),
            other => panic!("nothing came through {}: {other:?}", self.0.display()),
        }
    }
}

#[test]
fn stop_terminates_then_kills_and_leaves_no_process() {
    // worker-2 ignores SIGTERM (an ignored signal stays ignored across exec), and says so
    // through the fifo once the trap is set, so the test does not race it.
    let fifo = Fifo::new("stubborn");
    let stubborn = format!("trap '' TERM; echo ready > {}; exec sleep 1000", fifo.0.display());
    let command: Arc<CommandFn> = Arc::new(move |i| if i == 1 { sh(&stubborn) } else { sh("exec sleep 1000") });
    let sup = Supervisor::start_with(3, Backoff::default(), command).unwrap();
    let pids = first_pids(&sup, 3);
    assert_eq!(fifo.read(), "ready");
    let started = Instant::now();
    sup.stop();
    let took = started.elapsed();
    for pid in &pids {
        assert!(!alive(*pid), "pid {pid} is left after stop");
    }
    assert!(took >= supervisor::STOP_GRACE, "SIGKILL came after {took:?}, before the grace");
    assert!(took < supervisor::STOP_GRACE + Duration::from_secs(2), "stop took {took:?}");
}

#[test]
fn stop_is_quick_when_backends_obey_sigterm_and_drop_stops_too() {
    let sup = Supervisor::start_with(3, Backoff::default(), every("exec sleep 1000")).unwrap();
    let pids = first_pids(&sup, 3);
    let started = Instant::now();
    drop(sup);
    assert!(started.elapsed() < Duration::from_secs(1), "drop took {:?}", started.elapsed());
    assert!(pids.iter().all(|p| !alive(*p)), "left: {pids:?}");
}

#[test]
fn stop_interrupts_a_backoff_sleep() {
    let backoff = Backoff { initial: Duration::from_secs(60), ..Backoff::default() };
    let (tx, rx) = mpsc::channel::<()>();
    let tx = std::sync::Mutex::new(tx);
    let command: Arc<CommandFn> = Arc::new(move |_| {
        // The receiver lives to the end of the test.
        let _ = tx.lock().unwrap().send(());
        sh("exit 0")
    });
    let sup = Supervisor::start_with(1, backoff, command).unwrap();
    rx.recv_timeout(PATIENCE).unwrap();
    // The child exits at once; the monitor now sleeps 60 s before the restart.
    let started = Instant::now();
    sup.stop();
    assert!(started.elapsed() < Duration::from_secs(1), "stop waited {:?}", started.elapsed());
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("lb-fleet-sup-{name}-{}", std::process::id()));
    // A leftover from an earlier run is ours to remove.
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn a_backend_that_cannot_start_fails_start_and_stops_the_others() {
    // worker-1 tells its pid through the fifo; worker-2's command (built after worker-1
    // started) reads it first, so the pid is known before start_with stops worker-1.
    let fifo = Arc::new(Fifo::new("spawnfail"));
    let script = format!("echo $$ > {}; exec sleep 1000", fifo.0.display());
    let worker1 = Arc::new(std::sync::Mutex::new(String::new()));
    let (f, w) = (Arc::clone(&fifo), Arc::clone(&worker1));
    let command: Arc<CommandFn> = Arc::new(move |i| {
        if i == 0 {
            sh(&script)
        } else {
            *w.lock().unwrap() = f.read();
            Command::new("/nonexistent/backend")
        }
    });
    let e = Supervisor::start_with(2, Backoff::default(), command).unwrap_err();
    assert!(matches!(e, SupervisorError::Spawn { .. }), "{e}");
    assert!(e.to_string().contains("worker-2: cannot start /nonexistent/backend"), "{e}");
    // worker-1 was started, then stopped and reaped before start_with returned.
    let pid: u32 = worker1.lock().unwrap().parse().unwrap();
    assert!(!alive(pid), "worker-1 (pid {pid}) is left");
}

#[test]
fn the_real_backend_command_and_binary() {
    let exe = supervisor::backend_exe();
    assert_eq!(exe, Path::new(env!("CARGO_BIN_EXE_backend")), "backend_exe() from a test binary");
    let spec = lb::balancer::config::WorkerSpec { count: 1, first_port: 9001, avg_delay_ms: 5.0, fail_rate: 0.0 };
    let cmd = supervisor::backend_command(&exe, &spec, 0);
    let args: Vec<_> = cmd.get_args().map(|a| a.to_string_lossy().into_owned()).collect();
    assert_eq!(args, ["--die-with-parent", "--name", "worker-1", "--avg-delay-ms", "5", "--fail-rate", "0", "9001"]);
}

#[test]
fn supervisor_is_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Supervisor>();
    assert_send_sync::<SupervisorError>();
}
