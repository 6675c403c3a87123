//! eventsim against eventrelay at 100,000 events (batches of 1, 100 and 10,000; 1,000 clients;
//! two runs against one relay), and against a deliberately wrong relay, which must fail.

use crate::relay_support::{Relay, eventsim};
use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

const PASS: &str = "\\o/ ALL NOTIFICATIONS RECEIVED \\o/";

fn passes(relay: &Relay, args: &[&str]) {
    let (code, out, err) = eventsim(relay.event_port, relay.client_port, args);
    assert!(
        code == 0 && out.contains(PASS),
        "eventsim {args:?} exited {code}:\n{out}\n{err}\nrelay log:\n{}",
        relay.log_text()
    );
    assert!(out.contains("events/s: ") && out.contains("notifications/s: "), "{out}");
}

#[test]
fn batches_of_1() {
    let relay = Relay::start(&["-q"]);
    passes(&relay, &["--total-events", "100000", "--max-batch", "1"]);
}

#[test]
fn batches_of_100() {
    let relay = Relay::start(&["-q"]);
    passes(&relay, &["--total-events", "100000", "--max-batch", "100"]);
}

#[test]
fn batches_of_10000() {
    let relay = Relay::start(&["-q"]);
    passes(&relay, &["--total-events", "100000", "--max-batch", "10000"]);
}

#[test]
fn a_thousand_clients() {
    let relay = Relay::start(&["-q"]);
    passes(&relay, &["--total-events", "100000", "--concurrency", "1000"]);
}

#[test]
fn two_runs_against_one_relay() {
    // the second run starts the sequence again: the relay must reset and pass it too
    let relay = Relay::start(&[]);
    passes(&relay, &["--total-events", "20000", "--seed", "1"]);
    passes(&relay, &["--total-events", "20000", "--seed", "2", "--max-batch", "500"]);
    relay.wait_log("follows and window reset");
}

/// How the deliberately wrong relay goes wrong.
#[derive(Clone, Copy, PartialEq)]
enum Fault {
    /// Forwards each event the moment it arrives, ignoring the sequence numbers.
    ArrivalOrder,
    /// Like ArrivalOrder, and writes every notification twice.
    Doubled,
    /// Reads everything and forwards nothing.
    Silent,
}

/// A relay that gets the follow graph right but is wrong as `fault` says. Returns its (event
/// port, client port); its threads end with the test process.
fn wrong_relay(fault: Fault) -> (u16, u16) {
    let events = TcpListener::bind("127.0.0.1:0").unwrap();
    let clients = TcpListener::bind("127.0.0.1:0").unwrap();
    let ports = (events.local_addr().unwrap().port(), clients.local_addr().unwrap().port());
    let by_user: Arc<Mutex<HashMap<u64, TcpStream>>> = Arc::default();
    let registry = Arc::clone(&by_user);
    std::thread::spawn(move || {
        for stream in clients.incoming().flatten() {
            let mut line = String::new();
            if BufReader::new(&stream).read_line(&mut line).is_ok()
                && let Ok(id) = line.trim().parse::<u64>()
            {
                registry.lock().unwrap().insert(id, stream);
            }
        }
    });
    std::thread::spawn(move || {
        let Some(Ok(source)) = events.incoming().next() else { return };
        let mut follows: HashMap<u64, HashSet<u64>> = HashMap::new();
        for line in BufReader::new(source).lines() {
            let Ok(line) = line else { return };
            let f: Vec<&str> = line.split('|').collect();
            let id = |i: usize| f.get(i).and_then(|s| s.parse::<u64>().ok()).unwrap_or(0);
            let mut users = by_user.lock().unwrap();
            let targets: Vec<u64> = match f.get(1).copied() {
                Some("F") => {
                    follows.entry(id(3)).or_default().insert(id(2));
                    vec![id(3)]
                }
                Some("U") => {
                    follows.entry(id(3)).or_default().remove(&id(2));
                    vec![]
                }
                Some("B") => users.keys().copied().collect(),
                Some("P") => vec![id(3)],
                Some("S") => follows.get(&id(2)).map(|s| s.iter().copied().collect()).unwrap_or_default(),
                _ => vec![],
            };
            let copies = match fault {
                Fault::ArrivalOrder => 1,
                Fault::Doubled => 2,
                Fault::Silent => 0,
            };
            for t in targets {
                if let Some(s) = users.get_mut(&t) {
                    for _ in 0..copies {
                        // a client that went away is this bad relay's problem, not the test's
                        let _ = s.write_all(format!("{line}\r\n").as_bytes());
                    }
                }
            }
        }
    });
    ports
}

/// Runs eventsim against a wrong relay; returns its FAILED line after checking the exit code.
fn fails(fault: Fault, args: &[&str]) -> String {
    let (event_port, client_port) = wrong_relay(fault);
    let (code, out, err) = eventsim(event_port, client_port, args);
    assert_eq!(code, 1, "eventsim should have failed:\n{out}\n{err}");
    assert!(!out.contains(PASS), "{out}");
    let failure =
        out.lines().find(|l| l.starts_with("FAILED: client ")).unwrap_or_else(|| panic!("no FAILED line:\n{out}"));
    assert!(failure.contains("(user ") && failure.contains(": expected "), "{failure}");
    eprintln!("{failure}");
    failure.to_string()
}

#[test]
fn eventsim_fails_against_a_relay_that_ignores_order() {
    let failure = fails(Fault::ArrivalOrder, &["--total-events", "20000", "--timeout", "5000"]);
    assert!(failure.contains("but received \""), "{failure}");
}

#[test]
fn eventsim_fails_on_a_repeated_line() {
    let failure = fails(Fault::Doubled, &["--total-events", "2000", "--max-batch", "1", "--timeout", "5000"]);
    // the copy arrives where the next line is expected, or after the last one: an extra line
    assert!(failure.contains("but received \""), "{failure}");
}

#[test]
fn eventsim_fails_on_a_missing_line() {
    let failure = fails(Fault::Silent, &["--total-events", "2000", "--timeout", "300"]);
    assert!(failure.contains("but received nothing within 300 ms"), "{failure}");
}
