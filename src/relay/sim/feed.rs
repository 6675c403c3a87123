//! The source thread of `eventsim`: makes events 1..=total in batches, records what each client
//! must receive, shuffles each batch and writes it to the relay in one `write`.
//!
//! Expectations for a batch are published (under each client's lock, see `expect`) before the
//! batch is written, so the checker can never see a correct line it does not expect yet.

use std::io::Write;
use std::net::{Shutdown, TcpStream};
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use super::args::SimConfig;
use super::expect::Shared;
use super::model::{Model, Rng};

pub struct Feeder {
    pub config: SimConfig,
    pub shared: Arc<Shared>,
    pub model: Model,
    pub rng: Rng,
    /// Written to once when the feeder stops, to wake the checker.
    pub wake: UnixStream,
}

impl Feeder {
    /// Feeds the whole stream, then marks the source done (or records why it stopped) and wakes
    /// the checker.
    pub fn run(mut self) {
        match self.feed() {
            Ok(()) => self.shared.source_done.store(true, Ordering::Release),
            Err(e) => *self.shared.source_error.lock() = Some(e),
        }
        // If the checker has already gone there is no one to wake: nothing to do about it.
        let _ = self.wake.write_all(b"!");
    }

    fn feed(&mut self) -> Result<(), String> {
        let addr = self.config.event_addr;
        let mut stream = TcpStream::connect(addr).map_err(|e| format!("cannot connect to the relay at {addr}: {e}"))?;
        // one write per batch is the flush; Nagle must not hold it back
        stream.set_nodelay(true).map_err(|e| format!("cannot set TCP_NODELAY on {addr}: {e}"))?;
        let total = self.config.total_events;
        let clients = self.model.clients.len();
        let (mut arena, mut offsets, mut targets, mut out) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let mut staged: Vec<Vec<u8>> = vec![Vec::new(); clients];
        let mut dirty: Vec<u32> = Vec::new();
        let interval = self.config.log_interval;
        let mut next_log = Instant::now() + interval;
        let mut seq = 1u64;
        while seq <= total {
            let size = (1 + self.rng.below(self.config.max_batch as u64)).min(total - seq + 1);
            arena.clear();
            offsets.clear();
            let mut lines = 0u64;
            for s in seq..seq + size {
                let a = arena.len();
                targets.clear();
                self.model.event(s, &mut self.rng, &mut arena, &mut targets);
                let b = arena.len();
                offsets.push((a, b));
                for &c in &targets {
                    let st = &mut staged[c as usize];
                    if st.is_empty() {
                        dirty.push(c);
                    }
                    st.extend_from_slice(&arena[a..b]);
                    lines += 1;
                }
            }
            let now = Instant::now();
            let mut bytes = 0u64;
            for &c in &dirty {
                let st = &mut staged[c as usize];
                bytes += st.len() as u64;
                self.shared.expects[c as usize].lock().append(st, now);
                st.clear();
            }
            dirty.clear();
            self.shared.expected_lines.fetch_add(lines, Ordering::Relaxed);
            self.shared.expected_bytes.fetch_add(bytes, Ordering::Release);
            self.rng.shuffle(&mut offsets);
            out.clear();
            for &(a, b) in offsets.iter() {
                out.extend_from_slice(&arena[a..b]);
            }
            stream.write_all(&out).map_err(|e| format!("writing events {seq}.. to {addr} failed: {e}"))?;
            seq += size;
            if now >= next_log {
                info!("source: sent {} events", seq - 1);
                while next_log <= now {
                    next_log += interval;
                }
            }
        }
        info!("source: sent all {total} events; closing");
        // closing is the end-of-stream signal; an error here changes nothing for the verdict
        let _ = stream.shutdown(Shutdown::Write);
        Ok(())
    }
}
