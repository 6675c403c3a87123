//! What the kernel says about the balancer: open descriptors, resident memory, CPU time, from
//! `/proc/PID`. Each read is one snapshot; the tests compare snapshots.
#![allow(dead_code)] // each test uses a part

/// One look at a process.
#[derive(Debug, Clone, Copy)]
pub struct Look {
    /// Open file descriptors (entries of `/proc/PID/fd`).
    pub fds: usize,
    /// Resident set size, KiB (`VmRSS`).
    pub rss_kb: u64,
    /// User plus system CPU time of all its threads, in clock ticks (`utime + stime`).
    pub cpu_ticks: u64,
    pub threads: u64,
}

impl std::fmt::Display for Look {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "fds {}, RSS {:.1} MB, CPU {} ticks, {} threads",
            self.fds,
            self.rss_kb as f64 / 1024.0,
            self.cpu_ticks,
            self.threads
        )
    }
}

pub fn look(pid: i32) -> Look {
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).unwrap_or_else(|e| panic!("/proc/{pid}/fd: {e}")).count();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_else(|e| panic!("status: {e}"));
    let rss_kb = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no VmRSS in /proc/{pid}/status"));
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_else(|e| panic!("stat: {e}"));
    // The command name is in parentheses and may hold spaces: fields count from after it.
    // There, index 0 is field 3 (state); utime is field 14, stime 15, num_threads 20.
    let rest: Vec<&str> = stat[stat.rfind(')').expect("a stat line") + 1..].split_whitespace().collect();
    let field = |n: usize| -> u64 { rest[n - 3].parse().unwrap_or_else(|_| panic!("stat field {n}: {stat}")) };
    Look { fds, rss_kb, cpu_ticks: field(14) + field(15), threads: field(20) }
}

/// The balancer's descriptors by kind (`socket`, `pipe`, `anon_inode:[eventpoll]`...), for the
/// report: what a difference in count is made of.
pub fn fd_kinds(pid: i32) -> String {
    let mut kinds: std::collections::BTreeMap<String, usize> = Default::default();
    for e in std::fs::read_dir(format!("/proc/{pid}/fd")).into_iter().flatten().flatten() {
        let target = std::fs::read_link(e.path()).map(|p| p.display().to_string()).unwrap_or_default();
        let kind = target.split(':').next().unwrap_or("").to_string();
        *kinds.entry(if kind.starts_with('/') { "file".into() } else { kind }).or_default() += 1;
    }
    kinds.iter().map(|(k, n)| format!("{k} {n}")).collect::<Vec<_>>().join(", ")
}
