//! The probe thread: asks every server `GET /healthcheck` in rounds and reports the counts.
//!
//! A round is started by the dispatcher (`Dispatcher::next_round`): at startup before any
//! client is routed, after every R dispatched connections (dispatch waits for that round), after
//! a reload adds servers, and 5 s after the previous round ended. All servers, up or down, are
//! probed in parallel, one short-lived thread each, so a silent server costs the round at most
//! the 2 s probe timeout, not 2 s per server. A server is up only after a complete `200` reply
//! whose body is `<errors>\n<entries>`; anything else (refused, timed out, other status, short
//! or malformed body) makes it down, with the reason logged when its state flips.

use crate::config::{CONNECT_TIMEOUT, PROBE_TIMEOUT};
use crate::http;
use crate::sched::{Dispatcher, ProbeResult};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Instant;

pub struct Health {
    pub dispatcher: Arc<Dispatcher>,
}

impl Health {
    pub fn run(self) {
        while let Some((round, addrs)) = self.dispatcher.next_round() {
            let results = probe_all(&addrs);
            let lines: Vec<String> = results
                .iter()
                .map(|(addr, r)| match r {
                    ProbeResult::Up { errors, entries } => {
                        format!("probe {addr}: up, errors={errors} entries={entries}")
                    }
                    ProbeResult::Down(why) => format!("probe {addr}: down: {why}"),
                })
                .collect();
            // Applied before it is logged, so a log line means the counts are in use.
            let flips = self.dispatcher.finish_round(round, results);
            for line in lines {
                crate::debug!("{line}");
            }
            for flip in flips {
                if flip.up {
                    crate::info!("server {} is up", flip.addr);
                } else {
                    crate::warn!("server: {} is down: {}", flip.addr, flip.reason);
                }
            }
        }
    }
}

/// Probes every address at once; results in the same order.
pub fn probe_all(addrs: &[SocketAddr]) -> Vec<(SocketAddr, ProbeResult)> {
    std::thread::scope(|scope| {
        let handles: Vec<_> = addrs.iter().map(|a| (*a, scope.spawn(move || probe(*a)))).collect();
        handles
            .into_iter()
            .map(|(a, h)| (a, h.join().unwrap_or_else(|_| ProbeResult::Down("internal: probe thread panicked".into()))))
            .collect()
    })
}

/// One probe, bounded by the 2 s probe timeout overall.
pub fn probe(addr: SocketAddr) -> ProbeResult {
    let deadline = Instant::now() + PROBE_TIMEOUT;
    match exchange(addr, deadline) {
        Ok(reply) => match http::parse_health(&reply) {
            Ok((errors, entries)) => ProbeResult::Up { errors, entries },
            Err(bad) => ProbeResult::Down(bad.to_string()),
        },
        Err(e) => ProbeResult::Down(e),
    }
}

fn exchange(addr: SocketAddr, deadline: Instant) -> Result<Vec<u8>, String> {
    let mut s = TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT.min(PROBE_TIMEOUT))
        .map_err(|e| format!("connect failed: {e}"))?;
    let request = format!("GET /healthcheck HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: loadbalancer\r\n\r\n");
    let timed_out = || format!("no complete reply within {}s", PROBE_TIMEOUT.as_secs());
    let left = || deadline.checked_duration_since(Instant::now()).filter(|d| !d.is_zero());
    s.set_write_timeout(Some(left().ok_or_else(timed_out)?)).map_err(|e| e.to_string())?;
    s.write_all(request.as_bytes()).map_err(|e| format!("send failed: {e}"))?;
    let mut reply = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let remaining = left().ok_or_else(timed_out)?;
        s.set_read_timeout(Some(remaining)).map_err(|e| e.to_string())?;
        match s.read(&mut chunk) {
            Ok(0) => return Ok(reply),
            Ok(n) => {
                reply.extend_from_slice(&chunk[..n]);
                if http::reply_complete(&reply) {
                    return Ok(reply);
                }
                if reply.len() > 64 * 1024 {
                    return Err("reply over 64 KiB".into());
                }
            }
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                return Err(timed_out());
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("receive failed: {e}")),
        }
    }
}
