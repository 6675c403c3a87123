//! The `backend` binary, as a real process on port 0, driven with std sockets: every endpoint
//! and status, the counts, uploads and downloads up to 100 MB, delays and failures (seeded),
//! the in-flight count, signals, --die-with-parent and the command line.

use crate::backend_support::*;
use nix::sys::signal::Signal;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// A fresh directory under the system's temp dir, removed on drop.
struct TempDir(std::path::PathBuf);

impl std::ops::Deref for TempDir {
    type Target = std::path::Path;
    fn deref(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        // Best effort: a leftover directory in /tmp is not worth failing a test over.
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn temp_dir(tag: &str) -> TempDir {
    let d = std::env::temp_dir().join(format!("backend-test-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d); // a leftover from an earlier run, if any
    std::fs::create_dir_all(&d).unwrap();
    TempDir(d)
}

fn put(b: &Backend, name: &str, body: &[u8]) -> Reply {
    let mut raw = format!("PUT /{name} HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n", body.len()).into_bytes();
    raw.extend_from_slice(body);
    b.raw(&raw)
}

#[test]
fn put_then_get_and_head_round_trip() {
    let dir = temp_dir("files");
    let b = Backend::start(&["--dir", dir.to_str().unwrap()]);
    let name = format!("backend-{}", b.port());

    let r = put(&b, "a.txt", b"hello\n");
    assert_eq!((r.status, r.body.as_slice()), (201, &b""[..]));
    assert_eq!(r.header("server-name"), Some(name.as_str()));
    assert_eq!(std::fs::read(dir.join("a.txt")).unwrap(), b"hello\n");

    let r = b.get("/a.txt");
    assert_eq!((r.status, r.body.as_slice()), (200, &b"hello\n"[..]));
    assert_eq!(r.header("content-length"), Some("6"));
    assert_eq!(r.header("server-name"), Some(name.as_str()));

    // PUT replaces.
    assert_eq!(put(&b, "a.txt", b"xy").status, 201);
    assert_eq!(b.get("/a.txt").body, b"xy");

    // HEAD: the length of the file, no body (checked by the parser).
    let r = b.call("HEAD", "/a.txt");
    assert_eq!((r.status, r.header("content-length")), (200, Some("2")));

    // Query strings are ignored; an empty PUT makes an empty file.
    assert_eq!(b.get("/a.txt?v=1").body, b"xy");
    assert_eq!(b.call("PUT", "/empty").status, 201);
    let r = b.get("/empty");
    assert_eq!((r.status, r.body.len()), (200, 0));

    // Missing files.
    assert_eq!(b.get("/nope").status, 404);
    assert_eq!(b.call("HEAD", "/nope").status, 404);
    // No temporary file is left behind.
    let mut names: Vec<_> =
        std::fs::read_dir(&*dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    names.sort();
    assert_eq!(names, ["a.txt", "empty"]);
    b.stop_quietly();
}

#[test]
fn chunked_put_and_expect_continue() {
    let dir = temp_dir("chunked");
    let b = Backend::start(&["--dir", dir.to_str().unwrap()]);
    let r = b.raw(
        b"PUT /c HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n\
          5\r\nhello\r\n7;x=y\r\n, world\r\n0\r\n\r\n",
    );
    assert_eq!(r.status, 201);
    assert_eq!(b.get("/c").body, b"hello, world");

    // The 100 Continue comes before we send the body, and the final reply after it.
    let mut s = TcpStream::connect(b.addr).unwrap();
    s.set_read_timeout(Some(REPLY_TIMEOUT)).unwrap();
    s.write_all(
        b"PUT /e HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    let (head, _) = read_head(&mut s);
    assert_eq!(head, "HTTP/1.1 100 Continue\r\n\r\n");
    s.write_all(b"abc").unwrap();
    let mut rest = Vec::new();
    s.read_to_end(&mut rest).unwrap();
    assert_eq!(parse_reply(&rest, false).status, 201);
    assert_eq!(b.get("/e").body, b"abc");

    // A body that ends early: 400, and the old file stays.
    let mut s = TcpStream::connect(b.addr).unwrap();
    s.set_read_timeout(Some(REPLY_TIMEOUT)).unwrap();
    s.write_all(b"PUT /e HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nxy").unwrap();
    half_close(&s);
    let mut all = Vec::new();
    s.read_to_end(&mut all).unwrap();
    assert_eq!(parse_reply(&all, false).status, 400);
    assert_eq!(b.get("/e").body, b"abc");
}

#[test]
fn bad_names_are_400() {
    let dir = temp_dir("names");
    std::fs::write(dir.join("ok"), b"x").unwrap();
    let b = Backend::start(&["--dir", dir.to_str().unwrap()]);
    let long = format!("/{}", "a".repeat(256));
    for path in ["/", "/..", "/.", "/../ok", "/a/b", "/%2e%2e", "/a%20b", "/a*", &long] {
        assert_eq!(b.get(path).status, 400, "GET {path}");
        assert_eq!(b.call("PUT", path).status, 400, "PUT {path}");
    }
    assert_eq!(b.get(&format!("/{}", "a".repeat(255))).status, 404);
    assert_eq!(b.get("/ok").status, 200);
}

#[test]
fn malformed_requests_and_methods() {
    let b = Backend::start(&[]);
    let status = |raw: &str| b.raw(raw.as_bytes()).status;
    assert_eq!(status("GARBAGE\r\n\r\n"), 400);
    assert_eq!(status("GET /x\r\n\r\n"), 400);
    assert_eq!(status("GET /x HTTP/1.1\r\nNo colon here\r\n\r\n"), 400);
    assert_eq!(status("GET /x HTTP/2.0\r\n\r\n"), 505);
    assert_eq!(status("PUT /x HTTP/1.1\r\nContent-Length: abc\r\n\r\n"), 400);
    assert_eq!(status("PUT /x HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n"), 501);
    assert_eq!(status("BREW /x HTTP/1.1\r\n\r\n"), 501);
    let r = b.call("DELETE", "/x");
    assert_eq!((r.status, r.header("allow")), (405, Some("GET, HEAD, PUT")));
    assert_eq!(b.call("POST", "/x").status, 405);

    // A head over 8 KiB.
    let big = format!("GET /x HTTP/1.1\r\nX-Fill: {}\r\n\r\n", "f".repeat(9000));
    assert_eq!(status(&big), 431);

    // A request with a body we do not read: the reply still arrives whole (no RST over it).
    let mut raw = b"GET /nope HTTP/1.1\r\nContent-Length: 1000000\r\n\r\n".to_vec();
    raw.extend(std::iter::repeat_n(b'z', 1_000_000));
    assert_eq!(b.raw(&raw).status, 404);
    // The same when the connection closes after the reply, with the body still unread.
    let mut raw = b"GET /nope HTTP/1.1\r\nContent-Length: 1000000\r\nConnection: close\r\n\r\n".to_vec();
    raw.extend(std::iter::repeat_n(b'z', 1_000_000));
    assert_eq!(b.raw(&raw).status, 404);
    // Plain HTTP/1.0 and bare LF line ends work too.
    assert_eq!(status("GET /healthcheck HTTP/1.0\n\n"), 200);
}

#[test]
fn healthcheck_counts_before_itself_and_presets() {
    let b = Backend::start(&["--errors", "3", "--entries", "10", "--name", "s1"]);
    let r = b.get("/healthcheck");
    assert_eq!(r.status, 200);
    assert_eq!(r.body, b"3\n10\n");
    assert_eq!(r.header("server-name"), Some("s1"));
    // The healthcheck itself was an entry.
    assert_eq!(b.health(), (3, 11));
    assert_eq!(b.get("/missing").status, 404); // entry and error
    assert_eq!(b.get("/api/v1/hello").status, 200); // entry
    assert_eq!(b.health(), (4, 14));
    // /inflight and /worker/stats are not entries.
    assert_eq!(b.get("/inflight").status, 200);
    assert_eq!(b.get("/worker/stats").status, 200);
    assert_eq!(b.health(), (4, 15));
    // A non-GET on /healthcheck is 403: an entry and an error.
    for m in ["PUT", "HEAD", "POST", "DELETE"] {
        assert_eq!(b.call(m, "/healthcheck").status, 403, "{m}");
    }
    assert_eq!(b.health(), (8, 20));
    // A malformed request is an entry and an error too.
    assert_eq!(b.raw(b"nonsense\r\n\r\n").status, 400);
    assert_eq!(b.health(), (9, 22));
}

#[test]
fn hello_and_worker_stats() {
    let b = Backend::start(&["--name", "w1", "--delay-ms", "20"]);
    let r = b.get("/api/v1/hello");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.text(), r#"{"message":"hello from backend: w1"}"#);
    assert_eq!(b.call("PUT", "/api/v1/hello").status, 403);
    for _ in 0..2 {
        assert_eq!(b.get("/api/v1/hello").status, 200);
    }
    for _ in 0..2 {
        assert_eq!(b.get("/missing").status, 404);
    }
    // Observation endpoints are not in the stats.
    b.health();
    b.get("/inflight");

    let r = b.get("/worker/stats");
    assert_eq!(r.header("content-type"), Some("application/json"));
    let v = r.json();
    let pair = |key: &str| {
        let a = v[key].as_array().unwrap_or_else(|| panic!("{key} in {v}"));
        assert_eq!(a.len(), 2, "{key}");
        (a[0]["total"].clone(), a[1]["w1"].clone())
    };
    let n = |x: u64| (serde_json::json!(x), serde_json::json!(x));
    assert_eq!(pair("SuccessfulRequests"), n(3));
    assert_eq!(pair("FailedRequests"), n(3)); // the 403 and two 404
    assert_eq!(pair("TotalRequests"), n(6));
    let (total, mine) = pair("AverageResponseTime");
    let avg = total.as_f64().expect("a float");
    assert_eq!(mine.as_f64(), Some(avg));
    // Every counted request slept 20 ms.
    assert!((20.0..1000.0).contains(&avg), "average {avg}");
    assert!(r.text().contains(r#"{"total":6}"#), "{}", r.text());
    b.stop_quietly();
}

#[test]
fn inflight_reports_parallel_requests() {
    let b = Backend::start(&["--delay-ms", "300"]);
    assert_eq!(b.get("/inflight").text(), r#"{"current":0,"max":0}"#);
    let addr = b.addr;
    let workers: Vec<_> =
        (0..5).map(|_| std::thread::spawn(move || request(addr, b"GET /api/v1/hello HTTP/1.1\r\n\r\n"))).collect();
    for w in workers {
        assert_eq!(w.join().unwrap().status, 200);
    }
    let v = b.get("/inflight").json();
    assert_eq!(v["max"], 5, "{v}");
    assert_eq!(v["current"], 0, "{v}");
    // Observation endpoints are not delayed.
    within(Duration::from_millis(250), "/healthcheck under --delay-ms 300", || b.health());

    // The pool bounds the parallelism: 2 threads, 4 clients, at most 2 at once.
    let b = Backend::start(&["--delay-ms", "150", "--threads", "2"]);
    let addr = b.addr;
    let workers: Vec<_> =
        (0..4).map(|_| std::thread::spawn(move || request(addr, b"GET /nope HTTP/1.1\r\n\r\n"))).collect();
    for w in workers {
        assert_eq!(w.join().unwrap().status, 404);
    }
    assert_eq!(b.get("/inflight").json()["max"], 2);
    b.stop_quietly();
}

#[test]
fn fail_rate_all_and_none() {
    let all = Backend::start(&["--fail-rate", "100"]);
    for path in ["/api/v1/hello", "/nope"] {
        assert_eq!(all.get(path).status, 500, "{path}");
    }
    // Observation endpoints never fail.
    assert_eq!(all.health(), (2, 2));
    assert_eq!(all.get("/inflight").status, 200);
    let v = all.get("/worker/stats").json();
    assert_eq!(v["FailedRequests"][0]["total"], 2, "{v}");

    let none = Backend::start(&["--fail-rate", "0"]);
    for _ in 0..20 {
        assert_eq!(none.get("/api/v1/hello").status, 200);
    }
}

#[test]
fn seeded_failures_and_delays_repeat() {
    let run = |seed: &str| {
        let b = Backend::start(&["--seed", seed, "--fail-rate", "50", "--avg-delay-ms", "2"]);
        let statuses: Vec<u16> = (0..40).map(|_| b.get("/api/v1/hello").status).collect();
        let fails = statuses.iter().filter(|&&s| s == 500).count() as u64;
        assert_eq!(b.health().0, fails);
        statuses
    };
    let a = run("42");
    assert_eq!(a, run("42"), "same seed, same outcomes");
    assert!(a.contains(&500) && a.contains(&200), "{a:?}");
    assert_ne!(a, run("43"), "another seed, other outcomes");
    // A fractional rate is accepted.
    let b = Backend::start(&["--fail-rate", "0.5", "--seed", "1"]);
    assert_eq!(b.get("/api/v1/hello").status, 200);
}

#[test]
fn hundred_megabytes_both_ways() {
    const SIZE: usize = 100 * 1024 * 1024;
    let dir = temp_dir("big");
    let b = Backend::start(&["--dir", dir.to_str().unwrap()]);

    let mut s = TcpStream::connect(b.addr).unwrap();
    s.set_read_timeout(Some(REPLY_TIMEOUT)).unwrap();
    write!(
        s,
        "PUT /big HTTP/1.1\r\nHost: t\r\nContent-Length: {SIZE}\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    assert_eq!(read_head(&mut s).0, "HTTP/1.1 100 Continue\r\n\r\n");
    let (mut pattern, mut sent) = (Pattern::new(7), Fnv::new());
    let mut chunk = vec![0u8; 1024 * 1024];
    for _ in 0..SIZE / chunk.len() {
        pattern.fill(&mut chunk);
        sent.update(&chunk);
        s.write_all(&chunk).unwrap();
    }
    let mut rest = Vec::new();
    s.read_to_end(&mut rest).unwrap();
    assert_eq!(parse_reply(&rest, false).status, 201);
    assert_eq!(std::fs::metadata(dir.join("big")).unwrap().len(), SIZE as u64);

    let mut s = TcpStream::connect(b.addr).unwrap();
    s.set_read_timeout(Some(REPLY_TIMEOUT)).unwrap();
    s.write_all(b"GET /big HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").unwrap();
    let (head, _) = read_head(&mut s);
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert!(head.contains(&format!("\r\nContent-Length: {SIZE}\r\n")), "{head}");
    let (mut got, mut received) = (Fnv::new(), 0usize);
    loop {
        let n = s.read(&mut chunk).unwrap();
        if n == 0 {
            break;
        }
        got.update(&chunk[..n]);
        received += n;
    }
    assert_eq!(received, SIZE);
    assert_eq!(got, sent, "checksum");

    // A client that resets in the middle of a download does not hurt the server (no SIGPIPE).
    let mut s = TcpStream::connect(b.addr).unwrap();
    s.write_all(b"GET /big HTTP/1.1\r\n\r\n").unwrap();
    read_head(&mut s);
    socket2::SockRef::from(&s).set_linger(Some(Duration::ZERO)).unwrap();
    drop(s);
    assert_eq!(b.health().0, 0);
    b.stop_quietly();
}

#[test]
fn silent_and_stalled_clients_time_out() {
    let b = Backend::start(&[]);
    let t = Instant::now();
    let silent = TcpStream::connect(b.addr).unwrap();
    let mut stalled = TcpStream::connect(b.addr).unwrap();
    stalled.write_all(b"GET /healthcheck HTTP/1.1\r\n").unwrap();
    for s in [&silent, &stalled] {
        s.set_read_timeout(Some(REPLY_TIMEOUT)).unwrap();
    }
    // The silent one is closed without a word.
    let mut all = Vec::new();
    (&silent).read_to_end(&mut all).unwrap();
    assert!(all.is_empty(), "{all:?}");
    // The stalled one gets 408.
    let mut all = Vec::new();
    stalled.read_to_end(&mut all).unwrap();
    assert_eq!(parse_reply(&all, false).status, 408);
    let took = t.elapsed();
    assert!(took >= Duration::from_secs(9), "closed after {took:?}");
    assert!(took < Duration::from_secs(13), "closed after {took:?}");
    // Only the 408 counted.
    assert_eq!(b.health(), (1, 1));
}

#[test]
fn sigterm_finishes_the_request_in_progress_and_exits_0() {
    let mut b = Backend::start(&["--delay-ms", "600"]);
    let addr = b.addr;
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || tx.send(request(addr, b"GET /api/v1/hello HTTP/1.1\r\n\r\n")));
    // Wait until the request is in progress (bounded in time; each check is a real request).
    let deadline = Instant::now() + Duration::from_secs(5);
    let seen = std::iter::from_fn(|| (Instant::now() < deadline).then(|| b.get("/inflight")))
        .any(|r| r.json()["current"] == 1);
    assert!(seen, "the delayed request never showed in /inflight");
    let status = b.signal_and_wait(Signal::SIGTERM);
    assert_eq!(status.code(), Some(0), "stderr {:?}", b.log());
    let reply = rx.recv_timeout(REPLY_TIMEOUT).expect("the request in progress was answered");
    assert_eq!(reply.status, 200);
    assert!(TcpStream::connect(addr).is_err(), "still accepting after SIGTERM");

    let mut b = Backend::start(&[]);
    assert_eq!(b.signal_and_wait(Signal::SIGINT).code(), Some(0));
}

#[test]
fn die_with_parent_leaves_no_orphan() {
    // sh starts the backend in the background, prints its pid, then becomes `sleep` (exec) with
    // stderr on /dev/null, so the backend is the only other writer of our stderr pipe.
    let mut sh = Command::new("sh")
        .arg("-c")
        .arg(r#""$0" --die-with-parent 0 >/dev/null & echo $!; exec sleep 30 2>/dev/null"#)
        .arg(BIN)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut pid = String::new();
    BufReader::new(sh.stdout.take().unwrap()).read_line(&mut pid).unwrap();
    let pid: i32 = pid.trim().parse().expect("the backend's pid");

    let stderr = sh.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            let _ = tx.send(line); // the test may have stopped listening
        }
        // Dropping `tx` here tells the test that every writer has closed: the backend exited.
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    let listening = std::iter::from_fn(|| rx.recv_timeout(deadline.saturating_duration_since(Instant::now())).ok())
        .any(|l| l.contains("listening on"));
    assert!(listening, "the backend never listened");

    sh.kill().unwrap(); // SIGKILL: no chance to clean up
    sh.wait().unwrap();
    // The backend gets SIGTERM from the kernel and exits: its end of the pipe closes.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(_) => continue, // its last log lines
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), Signal::SIGKILL);
                panic!("backend {pid} outlived its parent");
            }
        }
    }
    // Closing its fds is part of exiting; the exit itself is seen on a pidfd.
    assert!(crate::util::wait_gone(pid, Duration::from_secs(5)), "backend {pid} still running");
}

fn run_cli(args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(BIN).args(args).output().unwrap();
    (out.status.code(), String::from_utf8(out.stdout).unwrap(), String::from_utf8(out.stderr).unwrap())
}

#[test]
fn bad_command_lines_exit_2() {
    let dir = temp_dir("cli");
    let file = dir.join("f");
    std::fs::write(&file, b"").unwrap();
    let file = file.to_str().unwrap();
    for (args, word) in [
        (&[][..], "PORT"),
        (&["abc"][..], "abc"),
        (&["99999"][..], "99999"),
        (&["1", "2"][..], "2"),
        (&["--threads", "0", "1"][..], "--threads 0"),
        (&["--threads", "many", "1"][..], "--threads many"),
        (&["--fail-rate", "101", "1"][..], "--fail-rate 101"),
        (&["--fail-rate", "x", "1"][..], "--fail-rate x"),
        (&["--delay-ms", "-5", "1"][..], "--delay-ms -5"),
        (&["--seed", "1.5", "1"][..], "--seed 1.5"),
        (&["--errors", "e", "1"][..], "--errors e"),
        (&["--bogus", "1"][..], "--bogus"),
        (&["1", "--dir"][..], "--dir"),
        (&["--dir", "/nonexistent/dir", "1"][..], "--dir /nonexistent/dir"),
        (&["--dir", file, "1"][..], "not a directory"),
        (&["--name", "a\tb", "1"][..], "--name"),
        (&["--host", "no.such.host.invalid", "1"][..], "--host"),
    ] {
        let (code, stdout, stderr) = run_cli(args);
        assert_eq!(code, Some(2), "{args:?}: {stderr}");
        assert!(stdout.is_empty(), "{args:?}");
        let lines: Vec<_> = stderr.lines().collect();
        assert_eq!(lines.len(), 2, "{args:?}: {stderr}");
        assert!(lines[0].starts_with("backend: "), "{args:?}: {stderr}");
        assert!(lines[0].contains(word), "{args:?} should name {word}: {stderr}");
        assert!(lines[1].starts_with("Usage: backend "), "{args:?}: {stderr}");
    }
}

#[test]
fn help_version_and_port_in_use() {
    let (code, stdout, stderr) = run_cli(&["--help"]);
    assert_eq!(code, Some(0));
    assert!(stdout.starts_with("Usage: backend "), "{stdout}");
    assert!(stdout.contains("--die-with-parent") && stderr.is_empty());
    let (code, stdout, _) = run_cli(&["-V"]);
    assert_eq!(code, Some(0));
    assert!(stdout.starts_with("backend "), "{stdout}");

    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let (code, _, stderr) = run_cli(&[&port]);
    assert_eq!(code, Some(1), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains(&port) && stderr.contains("in use"), "{stderr}");
}
