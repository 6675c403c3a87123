//! Out of file descriptors: our own shortage is never a server's fault. Under a 64-descriptor
//! limit with 300 clients at once, no server is called down, every client gets a complete
//! reply, the exact 503 or a clean close, the accept loop does not spin, and the log says so
//! once per episode, not once per try. See: issue 11 (defect 5).

use crate::util::*;
use std::time::{Duration, Instant};

/// CPU time (user + system) the process `pid` has used so far, from /proc/PID/stat.
fn cpu_time(pid: i32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("/proc/PID/stat");
    // Fields after the command name (which is in parentheses and may hold spaces).
    let rest = &stat[stat.rfind(')').expect("a command name") + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    // /proc counts in USER_HZ, which Linux fixes at 100 for user space.
    Duration::from_millis(ticks * 10)
}

/// How a client's exchange ended: a complete 200, the exact 503, a clean close without a
/// byte, or something else (the reason).
fn judge(raw: std::io::Result<Vec<u8>>) -> Result<&'static str, String> {
    let raw = raw.map_err(|e| format!("error: {e}"))?;
    if raw.is_empty() {
        return Ok("closed");
    }
    if raw == EXACT_503 {
        return Ok("503");
    }
    let r = parse_reply(raw);
    let len: Option<usize> = r.header("Content-Length").and_then(|v| v.parse().ok());
    if r.status == 200 && len == Some(r.body.len()) {
        return Ok("200");
    }
    Err(format!("{:?}", String::from_utf8_lossy(&r.raw)))
}

#[test]
fn out_of_descriptors_the_servers_stay_up_and_nothing_spins() {
    let a = backend(&["--delay-ms", "20"]);
    let b = backend(&["--delay-ms", "20"]);
    let (pa, pb) = (a.port.to_string(), b.port.to_string());
    // `ulimit -n` in a shell that then becomes the balancer: the limit is the hard one too,
    // so the balancer cannot raise it.
    let mut lb =
        Proc::spawn("sh", &["-c", "ulimit -n 64 && exec \"$0\" \"$@\"", LB, "--queue-timeout", "20", "0", &pa, &pb]);
    let line = lb.wait_line("listening on ", Duration::from_secs(10));
    let port: u16 = line.rsplit(':').next().unwrap().trim().parse().unwrap_or_else(|_| panic!("{line}"));
    assert_eq!(get(port, "/api/v1/hello").status, 200, "{}", lb.stderr());

    let cpu0 = cpu_time(lb.pid);
    let t0 = Instant::now();
    let clients: Vec<_> = (0..300)
        .map(|_| {
            std::thread::spawn(move || {
                judge(exchange(port, b"GET /api/v1/hello HTTP/1.1\r\nHost: x\r\n\r\n", Duration::from_secs(40)))
            })
        })
        .collect();
    let outcomes: Vec<Result<&str, String>> = clients.into_iter().map(|c| c.join().unwrap()).collect();
    let wall = t0.elapsed();
    let cpu = cpu_time(lb.pid) - cpu0;
    let log = lb.stderr();

    assert!(lb.exited().is_none(), "the balancer died: {log}");
    let bad: Vec<&String> = outcomes.iter().filter_map(|o| o.as_ref().err()).collect();
    assert!(
        bad.is_empty(),
        "{} clients got neither a 200, the exact 503 nor a clean close: {:?}\n{log}",
        bad.len(),
        &bad[..bad.len().min(5)]
    );
    assert!(!log.contains("is down"), "a server was called down for our own shortage:\n{log}");
    let shortage_lines = log.lines().filter(|l| l.contains("descriptor") || l.contains("Too many open files")).count();
    assert!(shortage_lines <= 10, "{shortage_lines} lines about the shortage:\n{log}");
    // A loop that spins on EMFILE burns a core while clients wait.
    assert!(cpu < wall / 2, "the balancer used {cpu:?} of CPU in {wall:?}:\n{log}");
    let served = outcomes.iter().filter(|o| matches!(o, Ok("200"))).count();
    eprintln!("{served} of 300 served, in {wall:?}, {cpu:?} CPU");

    // And afterwards it serves as before.
    assert_eq!(get(port, "/api/v1/hello").status, 200, "{}", lb.stderr());
}
