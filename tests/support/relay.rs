//! Shared helpers for the relay tests: start `eventrelay` on ports chosen by the kernel, learn
//! them from its log, follow its log, and play user clients and event sources over real sockets
//! on 127.0.0.1.
//!
//! Nothing here sleeps to synchronise: waits are on a log line (a condition variable fed by a
//! thread reading the relay's stderr) or on a socket read, each bounded by a deadline whose
//! failure message says what was awaited and shows the relay's log.
#![allow(dead_code)] // each test file uses a different part of this module

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// The bound on every wait in these tests: long enough for a loaded 2-core machine, short
/// enough that a hang fails the test instead of the whole run.
pub const WAIT: Duration = Duration::from_secs(10);

pub const RELAY: &str = env!("CARGO_BIN_EXE_eventrelay");
pub const SIM: &str = env!("CARGO_BIN_EXE_eventsim");

/// The relay's stderr, line by line, as it arrives.
#[derive(Default)]
struct Log {
    lines: Mutex<(Vec<String>, bool)>,
    grew: Condvar,
}

pub struct Relay {
    child: Child,
    log: Arc<Log>,
    pub event_port: u16,
    pub client_port: u16,
    cmd: String,
}

impl Relay {
    /// Starts `eventrelay --event-port 0 --client-port 0 -v ARGS` and waits for both ports.
    pub fn start(args: &[&str]) -> Relay {
        Self::start_with(Command::new(RELAY), args)
    }

    /// Like `start`, under `ulimit -n limit` (soft and hard: the relay cannot raise it), in a
    /// shell that then becomes the relay, so the pid is the relay's.
    pub fn start_fd_limited(limit: u32, args: &[&str]) -> Relay {
        let mut c = Command::new("sh");
        c.args(["-c", &format!("ulimit -n {limit} && exec \"$0\" \"$@\""), RELAY]);
        Self::start_with(c, args)
    }

    /// The relay's process id (for /proc: CPU time, RSS).
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    fn start_with(mut command: Command, args: &[&str]) -> Relay {
        let mut all = vec!["--event-port", "0", "--client-port", "0", "-v"];
        all.extend_from_slice(args);
        let cmd = format!("{RELAY} {}", all.join(" "));
        let mut child = command
            .args(&all)
            .env_remove("eventListenerPort")
            .env_remove("clientListenerPort")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {cmd}: {e}"));
        let stderr = child.stderr.take().expect("stderr was piped");
        let log = Arc::new(Log::default());
        let feed = Arc::clone(&log);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let mut l = feed.lines.lock().unwrap();
                l.0.push(line);
                feed.grew.notify_all();
            }
            feed.lines.lock().unwrap().1 = true;
            feed.grew.notify_all();
        });
        let mut relay = Relay { child, log, event_port: 0, client_port: 0, cmd };
        relay.event_port = port_of(&relay.wait_log("events listening on 127.0.0.1:"));
        relay.client_port = port_of(&relay.wait_log("clients listening on 127.0.0.1:"));
        relay
    }

    /// Every log line so far, joined.
    pub fn log_text(&self) -> String {
        self.log.lines.lock().unwrap().0.join("\n")
    }

    /// How many log lines so far contain `needle`.
    pub fn log_count(&self, needle: &str) -> usize {
        self.log.lines.lock().unwrap().0.iter().filter(|l| l.contains(needle)).count()
    }

    /// Waits until `n` log lines contain `needle`; returns the n-th.
    pub fn wait_log_n(&self, needle: &str, n: usize) -> String {
        let deadline = Instant::now() + WAIT;
        let mut l = self.log.lines.lock().unwrap();
        loop {
            if let Some(line) = l.0.iter().filter(|x| x.contains(needle)).nth(n - 1) {
                return line.clone();
            }
            let now = Instant::now();
            if now >= deadline || l.1 {
                let text = l.0.join("\n");
                drop(l);
                panic!("no log line #{n} containing {needle:?} from `{}`; log:\n{text}", self.cmd);
            }
            l = self.log.grew.wait_timeout(l, deadline - now).unwrap().0;
        }
    }

    pub fn wait_log(&self, needle: &str) -> String {
        self.wait_log_n(needle, 1)
    }

    /// A user client for `user`, returned once the relay has registered it.
    pub fn client(&self, user: u64) -> Client {
        let needle = format!("user {user} registered");
        let before = self.log_count(&needle);
        let c = Client::connect_raw(self.client_port, format!("{user}\r\n").as_bytes());
        self.wait_log_n(&needle, before + 1);
        c
    }

    /// A new event source connection, returned once the relay has taken it as the source.
    pub fn source(&self) -> Source {
        let before = self.log_count("source: connected from");
        let s = Source::connect(self.event_port);
        self.wait_log_n("source: connected from", before + 1);
        s
    }

    /// Sends SIGTERM and waits (bounded) for the exit.
    pub fn terminate(mut self) -> (ExitStatus, String) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("kill");
        let status = self.wait_exit();
        (status, self.log_text())
    }

    /// Waits (bounded) for the relay to exit on its own: its stderr reaching end of file is
    /// the event, then `wait` collects the status.
    pub fn wait_exit(&mut self) -> ExitStatus {
        let l = self.log.lines.lock().unwrap();
        let (l, _) = self.log.grew.wait_timeout_while(l, WAIT, |l| !l.1).unwrap();
        if !l.1 {
            let text = l.0.join("\n");
            drop(l);
            panic!("`{}` did not exit within {WAIT:?}; log:\n{text}", self.cmd);
        }
        drop(l);
        self.child.wait().expect("wait for the relay")
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        // a test that panicked leaves the relay running; it must not outlive the test
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn port_of(line: &str) -> u16 {
    let tail = line.rsplit(':').next().unwrap_or("");
    tail.trim().parse().unwrap_or_else(|_| panic!("no port in {line:?}"))
}

/// A user client: reads CRLF-terminated lines with a bounded wait.
pub struct Client {
    reader: BufReader<TcpStream>,
}

impl Client {
    /// Connects and sends `hello` without waiting for the relay to register it.
    pub fn connect_raw(port: u16, hello: &[u8]) -> Client {
        let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect client");
        s.write_all(hello).expect("send id");
        Client { reader: BufReader::new(s) }
    }

    pub fn stream(&self) -> &TcpStream {
        self.reader.get_ref()
    }

    /// The next line with its CRLF, or None if the relay closed the connection; panics after
    /// `WAIT` without a whole line.
    pub fn line(&mut self) -> Option<String> {
        self.reader.get_ref().set_read_timeout(Some(WAIT)).expect("timeout");
        let mut line = String::new();
        match self.reader.read_line(&mut line) {
            Ok(0) => None,
            Ok(_) => Some(line),
            Err(e) => panic!("no line within {WAIT:?} (got {line:?}): {e}"),
        }
    }

    /// Reads exactly these lines (given without CRLF), in this order.
    pub fn expect(&mut self, lines: &[&str]) {
        for want in lines {
            let got = self.line();
            assert_eq!(got.as_deref(), Some(format!("{want}\r\n").as_str()), "expected line {want:?}");
        }
    }

    /// Waits for the relay to close the connection; panics if a line comes instead.
    pub fn expect_closed(&mut self) {
        self.reader.get_ref().set_read_timeout(Some(WAIT)).expect("timeout");
        let mut rest = Vec::new();
        match self.reader.read_to_end(&mut rest) {
            Ok(_) => {
                assert!(rest.is_empty(), "expected the connection closed, got {:?}", String::from_utf8_lossy(&rest))
            }
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
            Err(e) => panic!("connection not closed within {WAIT:?}: {e}"),
        }
    }
}

/// An event source connection.
pub struct Source {
    pub stream: TcpStream,
}

impl Source {
    pub fn connect(port: u16) -> Source {
        Source { stream: TcpStream::connect(("127.0.0.1", port)).expect("connect source") }
    }

    /// Sends each line followed by CRLF, in one write.
    pub fn send(&mut self, lines: &[&str]) {
        let mut buf = String::new();
        for l in lines {
            buf.push_str(l);
            buf.push_str("\r\n");
        }
        self.raw(buf.as_bytes());
    }

    pub fn raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write to the relay's event port");
    }

    /// Closes the connection (the relay sees end of stream).
    pub fn close(self) {
        let _ = self.stream.shutdown(Shutdown::Both);
    }
}

/// Runs `eventsim` against the given ports with extra args; returns (exit code, stdout, stderr).
pub fn eventsim(event_port: u16, client_port: u16, args: &[&str]) -> (i32, String, String) {
    let ep = event_port.to_string();
    let cp = client_port.to_string();
    let mut all = vec!["--event-port", ep.as_str(), "--client-port", cp.as_str(), "--log-interval", "60000"];
    all.extend_from_slice(args);
    let out = Command::new(SIM)
        .args(&all)
        .env_remove("totalEvents")
        .env_remove("concurrencyLevel")
        .env_remove("numberOfUsers")
        .env_remove("maxEventSourceBatchSize")
        .output()
        .expect("run eventsim");
    let code = out.status.code().unwrap_or(-1);
    (code, String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}
