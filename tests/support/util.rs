//! Shared helpers for the balancer's integration tests: real processes on 127.0.0.1, ports
//! from binding port 0 (each program logs the port it got), std::net clients. Every wait is
//! bounded in time and fails with a message.
#![allow(dead_code)] // each test file uses a different subset

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const LB: &str = env!("CARGO_BIN_EXE_loadbalancer");
pub const BACKEND: &str = env!("CARGO_BIN_EXE_backend");

/// A child process whose stderr is collected line by line, and whose exit is reported by a
/// thread blocked in `wait`, so tests wait on events, not on a polling loop.
pub struct Proc {
    pub pid: i32,
    pub cmd: String,
    lines: Receiver<String>,
    exit: Receiver<ExitStatus>,
    status: Option<ExitStatus>,
    pub log: Arc<Mutex<Vec<String>>>,
}

impl Proc {
    pub fn spawn(exe: &str, args: &[&str]) -> Proc {
        Self::spawn_env(exe, args, &[])
    }

    pub fn spawn_env(exe: &str, args: &[&str], env: &[(&str, &str)]) -> Proc {
        let cmd = format!("{exe} {}", args.join(" "));
        let mut c = Command::new(exe);
        c.args(args).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped());
        for (k, v) in env {
            c.env(k, v);
        }
        let mut child: Child = c.spawn().unwrap_or_else(|e| panic!("cannot start {cmd}: {e}"));
        let pid = child.id() as i32;
        let stderr = child.stderr.take().expect("stderr is piped");
        let (tx, rx) = channel();
        let log = Arc::new(Mutex::new(Vec::new()));
        let log2 = Arc::clone(&log);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                log2.lock().unwrap().push(line.clone());
                let _ = tx.send(line);
            }
        });
        let (etx, erx) = channel();
        std::thread::spawn(move || {
            if let Ok(st) = child.wait() {
                let _ = etx.send(st);
            }
        });
        Proc { pid, cmd, lines: rx, exit: erx, status: None, log }
    }

    /// Waits for a stderr line containing `needle`; returns it.
    pub fn wait_line(&self, needle: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return line,
                Ok(_) => {}
                Err(_) => {
                    panic!("{}: no line with {needle:?} within {timeout:?}; stderr:\n{}", self.cmd, self.stderr())
                }
            }
        }
    }

    pub fn stderr(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        if self.status.is_none() {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid), sig);
        }
    }

    /// Waits for the process to exit, up to `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        if let Some(st) = self.status {
            return st;
        }
        match self.exit.recv_timeout(timeout) {
            Ok(st) => {
                self.status = Some(st);
                st
            }
            Err(_) => panic!("{} did not exit within {timeout:?}; stderr:\n{}", self.cmd, self.stderr()),
        }
    }

    /// Forgets all but the last `keep` lines of the log, and every line not yet waited for:
    /// a long run (`scripts/soak.sh`) would otherwise keep every line it ever logged.
    pub fn forget_lines(&self, keep: usize) {
        while self.lines.try_recv().is_ok() {}
        let mut log = self.log.lock().unwrap_or_else(|e| e.into_inner());
        let drop = log.len().saturating_sub(keep);
        log.drain(..drop);
    }

    /// The exit status if the process has exited by now.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self.exit.try_recv().ok();
        }
        self.status
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.exited().is_none() {
            self.signal(nix::sys::signal::Signal::SIGKILL);
            let _ = self.exit.recv_timeout(Duration::from_secs(5));
        }
    }
}

fn port_from(line: &str, marker: &str) -> u16 {
    let rest = &line[line.find(marker).unwrap_or_else(|| panic!("{marker} not in {line}")) + marker.len()..];
    let addr = rest.split_whitespace().next().unwrap().trim_end_matches('/');
    addr.rsplit(':').next().unwrap().parse().unwrap_or_else(|_| panic!("no port in {line}"))
}

/// A companion backend on a free port.
pub struct Backend {
    pub proc: Proc,
    pub port: u16,
}

/// A backend that closes after each reply (`--close-each`), as the tcp-mode tests expect: they
/// send requests without `Connection: close` through the bridge and read to EOF.
pub fn backend(args: &[&str]) -> Backend {
    let mut all: Vec<&str> = args.to_vec();
    all.push("--close-each");
    backend_persistent(&all)
}

/// A backend with HTTP/1.1 persistent connections (its default): for tests of connection reuse.
pub fn backend_persistent(args: &[&str]) -> Backend {
    let mut all: Vec<&str> = args.to_vec();
    all.push("0");
    let proc = Proc::spawn(BACKEND, &all);
    let line = proc.wait_line("listening on ", Duration::from_secs(10));
    let port = port_from(&line, "listening on ");
    Backend { proc, port }
}

/// A running balancer: its port, and its admin port if `--admin 0` was given.
pub struct Lb {
    pub proc: Proc,
    pub port: u16,
    pub admin: Option<u16>,
}

impl Lb {
    /// How many log lines it has written so far.
    pub fn log_mark(&self) -> usize {
        self.proc.log.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Waits for a log line after `mark` containing `needle`, and returns it. Blocks on the
    /// next line each time (an event), never on a timer; bounded by `timeout` in all.
    pub fn wait_after(&self, mark: usize, needle: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let log = self.proc.log.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(l) = log.get(mark..).unwrap_or(&[]).iter().find(|l| l.contains(needle)) {
                return l.clone();
            }
            drop(log);
            let left = deadline.saturating_duration_since(Instant::now());
            let next = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.proc.wait_line("", left)));
            if left.is_zero() || next.is_err() {
                panic!(
                    "{}: no line with {needle:?} within {timeout:?}; its log:\n{}",
                    self.proc.cmd,
                    self.proc.stderr()
                );
            }
        }
    }
}

/// Starts `loadbalancer ARGS... 0 SERVERS...` and waits until it listens.
pub fn balancer(args: &[&str], servers: &[u16]) -> Lb {
    balancer_env(args, servers, &[])
}

pub fn balancer_env(args: &[&str], servers: &[u16], env: &[(&str, &str)]) -> Lb {
    let ports: Vec<String> = servers.iter().map(|p| p.to_string()).collect();
    let mut all: Vec<&str> = args.to_vec();
    all.push("0");
    all.extend(ports.iter().map(String::as_str));
    let proc = Proc::spawn_env(LB, &all, env);
    let line = proc.wait_line("listening on ", Duration::from_secs(10));
    let port = port_from(&line, "listening on ");
    // The admin line comes before the listening line, so it is in the log already.
    let admin = args.contains(&"--admin").then(|| {
        let log = proc.stderr();
        let line = log.lines().find(|l| l.contains("admin on ")).unwrap_or_else(|| panic!("no admin line:\n{log}"));
        port_from(line, "admin on http://")
    });
    Lb { proc, port, admin }
}

/// A parsed HTTP reply.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub head: String,
    pub body: Vec<u8>,
    pub raw: Vec<u8>,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<String> {
        self.head.split("\r\n").skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim().eq_ignore_ascii_case(name).then(|| v.trim().to_string())
        })
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Sends raw bytes, half-closes nothing, reads to EOF (bounded by `timeout`).
pub fn exchange(port: u16, request: &[u8], timeout: Duration) -> std::io::Result<Vec<u8>> {
    exchange_from(None, port, request, timeout)
}

/// Like `exchange`, from a chosen source address (for client classes).
pub fn exchange_from(src: Option<&str>, port: u16, request: &[u8], timeout: Duration) -> std::io::Result<Vec<u8>> {
    let mut s = connect_from(src, port)?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    s.write_all(request)?;
    let mut out = Vec::new();
    s.read_to_end(&mut out)?;
    Ok(out)
}

pub fn connect_from(src: Option<&str>, port: u16) -> std::io::Result<TcpStream> {
    let dst: SocketAddr = ([127, 0, 0, 1], port).into();
    match src {
        None => TcpStream::connect(dst),
        Some(ip) => {
            let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
            let local: SocketAddr = format!("{ip}:0").parse().unwrap();
            sock.bind(&local.into())?;
            sock.connect(&dst.into())?;
            Ok(sock.into())
        }
    }
}

pub fn parse_reply(raw: Vec<u8>) -> Reply {
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 4);
    let Some(end) = end else {
        return Reply { status: 0, head: String::new(), body: Vec::new(), raw };
    };
    let head = String::from_utf8_lossy(&raw[..end]).into_owned();
    let status = head.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
    Reply { status, head, body: raw[end..].to_vec(), raw }
}

pub fn request(port: u16, method: &str, path: &str, body: &[u8]) -> Reply {
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n").into_bytes();
    if !body.is_empty() || method == "PUT" {
        req.extend_from_slice(format!("Content-Length: {}\r\n", body.len()).as_bytes());
    }
    req.extend_from_slice(b"\r\n");
    req.extend_from_slice(body);
    let raw =
        exchange(port, &req, Duration::from_secs(20)).unwrap_or_else(|e| panic!("{method} {path} on {port}: {e}"));
    parse_reply(raw)
}

pub fn get(port: u16, path: &str) -> Reply {
    request(port, "GET", path, b"")
}

/// Which backend answered (its `Server-Name` header).
pub fn served_by(port: u16, path: &str) -> String {
    let r = get(port, path);
    r.header("Server-Name").unwrap_or_else(|| format!("(status {}: {:?})", r.status, r.text()))
}

/// `GET /inflight` on a backend: (current, max).
pub fn inflight(backend_port: u16) -> (u64, u64) {
    let r = get(backend_port, "/inflight");
    let v: serde_json::Value =
        serde_json::from_slice(&r.body).unwrap_or_else(|e| panic!("/inflight: {e}: {}", r.text()));
    (v["current"].as_u64().unwrap(), v["max"].as_u64().unwrap())
}

/// `GET /status` on the admin port, parsed.
pub fn status(admin: u16) -> serde_json::Value {
    let r = get(admin, "/status");
    assert_eq!(r.status, 200, "{}", r.text());
    serde_json::from_slice(&r.body).unwrap_or_else(|e| panic!("/status: {e}: {}", r.text()))
}

/// Half-closes after sending, then reads to EOF: the shape of `curl -T` uploads.
pub fn exchange_half_close(port: u16, request: &[u8], timeout: Duration) -> std::io::Result<Vec<u8>> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(timeout))?;
    s.write_all(request)?;
    s.shutdown(Shutdown::Write)?;
    let mut out = Vec::new();
    s.read_to_end(&mut out)?;
    Ok(out)
}

/// A fake server for failure cases: answers every connection with `reply` (or nothing, if
/// `None`, keeping the connection open). Runs until the test ends.
pub fn fake_server(reply: Option<&'static [u8]>) -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            match reply {
                Some(r) => {
                    let _ = s.set_read_timeout(Some(Duration::from_millis(200)));
                    let mut buf = [0u8; 4096];
                    let _ = s.read(&mut buf);
                    let _ = s.write_all(r);
                }
                None => held.push(s),
            }
        }
    });
    port
}

/// A port nobody listens on (bound, then released).
pub fn dead_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// Reads up to the end of a request head (or what came before EOF or an error: `None`).
pub fn read_head(s: &mut TcpStream) -> Option<Vec<u8>> {
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => return None,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    Some(head)
}

/// A scripted server: reads each request head, then answers `script(head)` or, for `None`,
/// holds the connection open without a byte. Runs until the test ends.
pub fn scripted_server(script: fn(&str) -> Option<Vec<u8>>) -> u16 {
    serve_each(move |mut s| {
        let _ = s.set_read_timeout(Some(Duration::from_secs(30)));
        let Some(head) = read_head(&mut s) else { return };
        let mut buf = [0u8; 4096];
        match script(&String::from_utf8_lossy(&head)) {
            Some(reply) => {
                let _ = s.write_all(&reply);
            }
            None => {
                // Hold the connection until the peer closes it.
                while matches!(s.read(&mut buf), Ok(n) if n > 0) {}
            }
        }
    })
}

/// A test server on an ephemeral port of 127.0.0.1: every connection is handed to `handle` on
/// a thread of its own. Runs until the test ends.
pub fn serve_each(handle: impl Fn(TcpStream) + Send + Sync + 'static) -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let handle = Arc::new(handle);
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(s) = s else { continue };
            let handle = Arc::clone(&handle);
            std::thread::spawn(move || handle(s));
        }
    });
    port
}

/// Answers `/healthcheck` well (0 errors, 0 entries) and never answers anything else.
pub fn silent_server() -> u16 {
    scripted_server(|head| {
        head.starts_with("GET /healthcheck ").then(|| b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\n0\n0\n".to_vec())
    })
}

pub const EXACT_500: &[u8] = b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n";
pub const EXACT_503: &[u8] =
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nRetry-After: 1\r\nConnection: close\r\n\r\n";

// ---- Fleet helpers (issue #7): config files, pools, spawned backends, whole runs. ----

/// A fresh, empty directory for one test: `$TMPDIR/lb-fleet-NAME-PID`.
pub fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("lb-fleet-{name}-{}", std::process::id()));
    // A leftover from an earlier run of the same pid is stale: start empty.
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
    dir
}

/// Starts `loadbalancer ARGS...` as given (port and servers come from `--config` or `ARGS`) and
/// waits for its start-up summary (`mode: at most`), which follows every `listening on`
/// line. Lines of spawned backends share its stderr, so only the balancer's own lines count.
/// `port` is the first listener, `admin` the admin port if there is one.
pub fn balancer_with(args: &[&str]) -> Lb {
    let proc = Proc::spawn(LB, args);
    proc.wait_line(&format!("loadbalancer[{}] ", proc.pid), Duration::from_secs(10));
    let own = format!("loadbalancer[{}] ", proc.pid);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !own_lines(&proc).iter().any(|l| l.contains(" mode: at most ")) {
        let left = deadline.saturating_duration_since(Instant::now());
        proc.wait_line(&own, left.max(Duration::from_millis(1)));
    }
    let port = *listening_ports(&proc).first().unwrap_or_else(|| panic!("no listener:\n{}", proc.stderr()));
    let admin = own_lines(&proc).iter().find(|l| l.contains("admin on ")).map(|l| port_from(l, "admin on http://"));
    Lb { proc, port, admin }
}

/// The balancer's own stderr lines so far (not those of the backends it spawned).
pub fn own_lines(proc: &Proc) -> Vec<String> {
    let own = format!("loadbalancer[{}] ", proc.pid);
    proc.log.lock().unwrap().iter().filter(|l| l.starts_with(&own)).cloned().collect()
}

/// Every port the balancer logged `listening on`, in order.
pub fn listening_ports(proc: &Proc) -> Vec<u16> {
    own_lines(proc).iter().filter(|l| l.contains("listening on ")).map(|l| port_from(l, "listening on ")).collect()
}

/// A line of the log so far containing `needle`, wherever it came from.
pub fn logged(proc: &Proc, needle: &str) -> Option<String> {
    proc.log.lock().unwrap().iter().find(|l| l.contains(needle)).cloned()
}

/// The pid in a supervisor line `worker-N started (pid P)`.
pub fn started_pid(line: &str) -> i32 {
    let rest = &line[line.find("(pid ").unwrap_or_else(|| panic!("no pid in {line}")) + 5..];
    rest.trim_end_matches(')').parse().unwrap_or_else(|_| panic!("no pid in {line}"))
}

/// The first of `n` consecutive ports free on 127.0.0.1 right now: port 0 picks the first,
/// the neighbours are tried by binding them; a taken neighbour means another try.
pub fn free_ports(n: u16) -> u16 {
    for _ in 0..20 {
        let first = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let p = first.local_addr().unwrap().port();
        if u32::from(p) + u32::from(n) > 65535 {
            continue;
        }
        let rest: Vec<_> = (1..n).map_while(|i| std::net::TcpListener::bind(("127.0.0.1", p + i)).ok()).collect();
        if rest.len() == usize::from(n) - 1 {
            return p;
        }
    }
    panic!("no {n} consecutive free ports in 20 tries");
}

/// Waits up to `timeout` for process `pid` (not necessarily our child) to exit; true if it
/// has. Blocks in `poll` on a pidfd, which becomes readable when the process exits, so this
/// is an event, not a polling loop. A pid that no longer exists has exited.
pub fn wait_gone(pid: i32, timeout: Duration) -> bool {
    use std::os::fd::{FromRawFd, OwnedFd};
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1; no memory
    // is passed.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        let e = std::io::Error::last_os_error();
        assert_eq!(e.raw_os_error(), Some(libc::ESRCH), "pidfd_open({pid}): {e}");
        return true;
    }
    // SAFETY: `fd` was just returned by pidfd_open and is owned by nobody else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let ms = u16::try_from(left.as_millis()).unwrap_or(u16::MAX);
        let mut fds = [nix::poll::PollFd::new(std::os::fd::AsFd::as_fd(&fd), nix::poll::PollFlags::POLLIN)];
        match nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(ms)) {
            Ok(n) if n > 0 => return true,
            Ok(_) if Instant::now() >= deadline => return false,
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(e) => panic!("poll on the pidfd of {pid}: {e}"),
        }
    }
}

/// Runs `exe ARGS` to the end (stdin from `input`), bounded by `timeout`: status, stdout, stderr.
pub fn run_to_end(exe: &str, args: &[&str], input: &[u8], timeout: Duration) -> (ExitStatus, String, String) {
    let cmd = format!("{exe} {}", args.join(" "));
    let mut child = Command::new(exe)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {cmd}: {e}"));
    let pid = child.id() as i32;
    let mut stdin = child.stdin.take().expect("stdin is piped");
    let input = input.to_vec();
    // A writer thread, so a child that does not read cannot block us; its error is the
    // child's business (it exited early), seen in its status.
    std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(timeout) {
        Ok(Ok(out)) => (
            out.status,
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        ),
        Ok(Err(e)) => panic!("{cmd}: {e}"),
        Err(_) => {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
            panic!("{cmd} did not finish within {timeout:?}")
        }
    }
}

/// `GET path` through the balancer from a socket whose local port is known, so the test can
/// wait for the balancer's debug line about this very client (`client 127.0.0.1:P: ...`).
/// Returns the reply and the client's address as the balancer logs it.
pub fn get_as(port: u16, path: &str) -> (Reply, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap_or_else(|e| panic!("connect {port}: {e}"));
    let me = s.local_addr().unwrap().to_string();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).unwrap_or_else(|e| panic!("GET {path} on {port}: {e}"));
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap_or_else(|e| panic!("GET {path} on {port}: {e}"));
    (parse_reply(out), me)
}

/// `get_as`, then waits until the balancer has logged the end of this client's bridge
/// (`client ADDR: bridged to`, debug level: start it with `-v`), after which its exchange is
/// in the statistics.
pub fn get_counted(lb: &Lb, path: &str) -> Reply {
    let (reply, me) = get_as(lb.port, path);
    lb.proc.wait_line(&format!("client {me}: bridged to"), Duration::from_secs(10));
    reply
}

/// A server that holds every request until the test releases it: `/healthcheck` is answered
/// at once (0 errors, 0 entries); any other request is announced on `arrivals`, then waits for
/// one `release()` (at most 20 s) and gets `200 ok` with `Server-Name: NAME`. `max` is the most
/// requests it ever held at once. Runs until the test ends.
pub struct HeldServer {
    pub port: u16,
    pub arrivals: Receiver<()>,
    release: std::sync::mpsc::Sender<()>,
    pub max: Arc<std::sync::atomic::AtomicUsize>,
}

impl HeldServer {
    /// Lets one held request (or the next to arrive) be answered.
    pub fn release(&self) {
        self.release.send(()).expect("the server thread is alive");
    }

    /// Waits for the next request to arrive, up to 10 s.
    pub fn arrival(&self) {
        self.arrivals.recv_timeout(Duration::from_secs(10)).expect("a request should have reached the server");
    }
}

pub fn held_server(name: &'static str) -> HeldServer {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let (arrive_tx, arrivals) = channel();
    let (release, release_rx) = channel::<()>();
    let arrive_tx = Mutex::new(arrive_tx);
    let release_rx = Mutex::new(release_rx);
    let max = Arc::new(AtomicUsize::new(0));
    let now = AtomicUsize::new(0);
    let max2 = Arc::clone(&max);
    let port = serve_each(move |mut s| {
        let _ = s.set_read_timeout(Some(Duration::from_secs(20)));
        let Some(head) = read_head(&mut s) else { return };
        if head.starts_with(b"GET /healthcheck ") {
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\n0\n0\n");
            return;
        }
        let held = now.fetch_add(1, Ordering::SeqCst) + 1;
        max2.fetch_max(held, Ordering::SeqCst);
        let _ = arrive_tx.lock().unwrap().send(());
        let released = release_rx.lock().unwrap().recv_timeout(Duration::from_secs(20));
        now.fetch_sub(1, Ordering::SeqCst);
        if released.is_ok() {
            let reply =
                format!("HTTP/1.1 200 OK\r\nServer-Name: {name}\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok");
            let _ = s.write_all(reply.as_bytes());
        }
    });
    HeldServer { port, arrivals, release, max }
}
