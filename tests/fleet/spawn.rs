//! `worker: n`: the balancer starts n `backend` processes on consecutive ports, routes to
//! them, restarts one that dies, and leaves no process behind when it exits, whether by
//! SIGTERM or by SIGKILL (the backends' parent-death signal) (issue #7).

use crate::util::*;
use nix::sys::signal::Signal;
use nix::unistd::Pid;
use std::path::PathBuf;
use std::time::Duration;

/// A fleet file: `worker: 2` from a free pair of ports, round robin, a probe round after every
/// dispatch (so a restarted backend is seen up by the next client).
fn fleet_file(name: &str, extra: &str) -> (PathBuf, u16) {
    let first = free_ports(2);
    let file = temp_dir(name).join("fleet.yaml");
    let text =
        format!("port: 0\nworker: 2\nworker-port: {first}\nbalance: round-robin\nprobe-every: 1\nadmin: 0\n{extra}");
    std::fs::write(&file, text).unwrap();
    (file, first)
}

/// The pid of spawned backend `name` (`worker-1`...) from the supervisor's line.
fn pid_of(lb: &Lb, name: &str) -> i32 {
    let line = logged(&lb.proc, &format!("{name} started (pid "))
        .unwrap_or_else(|| panic!("no '{name} started' line:\n{}", lb.proc.stderr()));
    started_pid(&line)
}

/// Waits for the `listening on` line of the backend with this pid (it shares our stderr).
fn wait_listening(lb: &Lb, pid: i32) {
    let own = format!("backend[{pid}] ");
    loop {
        if lb.proc.wait_line("listening on ", Duration::from_secs(10)).starts_with(&own) {
            return;
        }
    }
}

fn assert_gone(pid: i32, what: &str, lb: &Lb) {
    assert!(
        wait_gone(pid, Duration::from_secs(5)),
        "{what} (pid {pid}) is still running; balancer stderr:\n{}",
        lb.proc.stderr()
    );
}

#[test]
fn spawned_backends_serve_are_restarted_and_stop_with_the_balancer() {
    let (file, first) = fleet_file("spawn-restart", "");
    let mut lb = balancer_with(&["--config", file.to_str().unwrap()]);
    let (one, two) = (pid_of(&lb, "worker-1"), pid_of(&lb, "worker-2"));
    let st = status(lb.admin.unwrap());
    let addrs: Vec<&str> = st["servers"].as_array().unwrap().iter().map(|s| s["address"].as_str().unwrap()).collect();
    assert_eq!(addrs, [format!("127.0.0.1:{first}"), format!("127.0.0.1:{}", first + 1)]);
    let order: Vec<String> = (0..4).map(|_| served_by(lb.port, "/api/v1/hello")).collect();
    assert_eq!(order, ["worker-1", "worker-2", "worker-1", "worker-2"]);
    let hello = get(lb.port, "/api/v1/hello");
    assert_eq!(hello.text(), "{\"message\":\"hello from backend: worker-1\"}", "{hello:?}");

    // A backend killed outright is logged and started again, and serves again.
    nix::sys::signal::kill(Pid::from_raw(one), Signal::SIGKILL).unwrap();
    lb.proc.wait_line(&format!("worker-1 (pid {one}) exited with status SIGKILL"), Duration::from_secs(10));
    let again = started_pid(&lb.proc.wait_line("worker-1 started (pid ", Duration::from_secs(10)));
    assert_ne!(again, one);
    wait_listening(&lb, again);
    let after: Vec<Reply> = (0..3).map(|_| get(lb.port, "/api/v1/hello")).collect();
    assert!(after.iter().all(|r| r.status == 200), "{after:?}");
    assert!(
        after.iter().any(|r| r.header("Server-Name").as_deref() == Some("worker-1")),
        "the restarted worker-1 serves again: {after:?}"
    );
    assert_gone(one, "the killed worker-1", &lb);

    // SIGTERM: the balancer stops its backends and exits 0; nothing is left.
    lb.proc.signal(Signal::SIGTERM);
    let st = lb.proc.wait_exit(Duration::from_secs(15));
    assert!(st.success(), "{st}; stderr:\n{}", lb.proc.stderr());
    assert_gone(again, "worker-1", &lb);
    assert_gone(two, "worker-2", &lb);
}

#[test]
fn backends_exit_when_the_balancer_is_killed() {
    let (file, _) = fleet_file("spawn-sigkill", "");
    let mut lb = balancer_with(&["--config", file.to_str().unwrap()]);
    let (one, two) = (pid_of(&lb, "worker-1"), pid_of(&lb, "worker-2"));
    assert_eq!(served_by(lb.port, "/api/v1/hello"), "worker-1");
    // No chance to clean up: the parent-death signal must take the backends along.
    lb.proc.signal(Signal::SIGKILL);
    lb.proc.wait_exit(Duration::from_secs(5));
    assert_gone(one, "worker-1", &lb);
    assert_gone(two, "worker-2", &lb);
}

#[test]
fn a_fractional_avg_delay_is_refused_not_spawned() {
    // See the fix: --avg-delay-ms takes whole milliseconds; 2.5 made every spawn exit 2.
    let (file, _) = fleet_file("spawn-avg-delay", "avg-delay: 2.5\n");
    let path = file.to_str().unwrap();
    let (st, _, err) = run_to_end(LB, &["--config", path], b"", Duration::from_secs(10));
    assert_eq!(st.code(), Some(2), "{err}");
    assert!(err.starts_with(&format!("loadbalancer: {path}:7: key 'avg-delay': ")), "{err}");
    assert!(!err.contains("started (pid"), "nothing spawned:\n{err}");
}
