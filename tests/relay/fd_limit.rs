//! Out of file descriptors (see: issue #13, "Hostile input"): under `ulimit -n 64`, 300 user
//! clients connect at once. The relay takes what its descriptors allow, leaves the rest in the
//! kernel's backlog, and takes them as registered ones leave; it does not crash, does not spin
//! (accepting pauses while EMFILE lasts), says so once per episode rather than once per retry,
//! and every registered client gets its events, in order.

use crate::relay_support::{Client, Relay};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

const USERS: u64 = 300;

/// CPU time (user + system) the process `pid` has used so far, from /proc/PID/stat.
fn cpu_time(pid: i32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("/proc/PID/stat");
    let rest = &stat[stat.rfind(')').expect("a command name") + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    // /proc counts in USER_HZ, which Linux fixes at 100 for user space.
    Duration::from_millis(ticks * 10)
}

/// The users the relay has logged as registered so far.
fn registered(relay: &Relay) -> Vec<u64> {
    let log = relay.log_text();
    log.lines()
        .filter_map(|l| {
            let (user, rest) = l.split("client: user ").nth(1)?.split_once(' ')?;
            if rest.starts_with("registered from") { user.parse().ok() } else { None }
        })
        .collect()
}

#[test]
fn out_of_descriptors_the_relay_pauses_accepts_and_registered_clients_get_every_event() {
    let relay = Relay::start_fd_limited(64, &[]);
    let cpu0 = cpu_time(relay.pid());
    let t0 = Instant::now();
    // The source first: it needs a descriptor too.
    let mut source = relay.source();
    let mut clients: BTreeMap<u64, Client> =
        (1..=USERS).map(|u| (u, Client::connect_raw(relay.client_port, format!("{u}\r\n").as_bytes()))).collect();
    relay.wait_log("cannot accept a client connection");
    // The shortage lasts: the relay retries quietly, and the episode has one warning.
    relay.wait_log_n("still out of descriptors", 3);
    assert_eq!(relay.log_count("cannot accept"), 1, "one warning per episode:\n{}", relay.log_text());

    // Rounds: broadcast one event; every client registered by then gets it (and whatever
    // came before since it registered), then leaves, freeing descriptors for the backlog.
    let mut seq = 0u64;
    let mut got: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
    for _round in 0..USERS {
        if clients.is_empty() {
            break;
        }
        // At least one client not yet served is registered.
        relay.wait_log_n(" registered from", got.len() + 1);
        let now: Vec<u64> = registered(&relay).into_iter().filter(|u| !got.contains_key(u)).collect();
        seq += 1;
        source.send(&[&format!("{seq}|B")]);
        for u in now {
            let mut c = clients.remove(&u).unwrap_or_else(|| panic!("user {u} registered twice"));
            let mut seqs = Vec::new();
            loop {
                let line = c.line().unwrap_or_else(|| panic!("user {u} closed before event {seq}"));
                let n: u64 = line.strip_suffix("|B\r\n").and_then(|n| n.parse().ok()).unwrap_or_else(|| {
                    panic!("user {u}: not a broadcast: {line:?}");
                });
                seqs.push(n);
                if n == seq {
                    break;
                }
            }
            got.insert(u, seqs);
        }
    }
    let wall = t0.elapsed();
    let cpu = cpu_time(relay.pid()) - cpu0;
    assert!(clients.is_empty(), "{} clients never registered:\n{}", clients.len(), relay.log_text());
    for (u, seqs) in &got {
        // Registered before event k, a client gets every event from k on, in order.
        let first = seqs[0];
        let want: Vec<u64> = (first..first + seqs.len() as u64).collect();
        assert_eq!(seqs, &want, "user {u}: events out of order or missing");
    }
    // A relay that spins on EMFILE burns a core meanwhile.
    assert!(cpu < wall / 2, "the relay used {cpu:?} of CPU in {wall:?}");
    eprintln!("{USERS} clients served in {seq} rounds, {wall:?}, {cpu:?} CPU");
    let log = relay.log_text();
    assert!(log.contains("accepting again after"), "the end of the shortage is logged:\n{log}");
    assert!(!log.contains("panicked"), "{log}");
    // Afterwards it takes a client as usual.
    let mut late = relay.client(USERS + 1);
    source.send(&[&format!("{}|B", seq + 1)]);
    late.expect(&[&format!("{}|B", seq + 1)]);
    let (status, log) = relay.terminate();
    assert!(status.success(), "{status}:\n{log}");
}
