//! A `redis-server` of the test's own, for the shared-limit tests: on 127.0.0.1, with nothing
//! saved to disk, killed when dropped (`Proc`).
#![allow(dead_code)] // each test file uses a different part

use crate::util::{Proc, dead_port};
use nix::sys::signal::Signal;
use std::time::Duration;

pub struct Redis {
    pub proc: Proc,
    pub port: u16,
}

impl Redis {
    pub fn start() -> Redis {
        Redis::on(dead_port())
    }

    /// Redis does not take `--port 0`: the caller picks a port that was free a moment ago. Its
    /// log goes to stderr, where `Proc` reads it.
    pub fn on(port: u16) -> Redis {
        let cmd = format!("exec redis-server --port {port} --bind 127.0.0.1 --save '' --appendonly no 1>&2");
        let proc = Proc::spawn("sh", &["-c", &cmd]);
        proc.wait_line("Ready to accept connections", Duration::from_secs(10));
        Redis { proc, port }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// SIGKILL: its data is gone with it.
    pub fn kill(&mut self) {
        self.proc.signal(Signal::SIGKILL);
        self.proc.wait_exit(Duration::from_secs(5));
    }

    /// Kills it and starts an empty one on the same port.
    pub fn restart_empty(&mut self) {
        self.kill();
        *self = Redis::on(self.port);
    }
}
