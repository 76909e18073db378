//! Shared-state contention: `writers` subscribed connections write one key with
//! compare-and-set (`expected_version`), each learning the latest version from acks,
//! conflicts and the `state:update` fan-out. Every accepted write reaches every writer.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::{Duration, Instant};

use chorus_protocol::{ChannelName, ClientMessage, ErrorCode, ServerMessage, StateUpdate};
use hdrhistogram::Histogram;

use crate::dialect::{frame_type, to_json, ChorusDialect};
use crate::error::BenchError;
use crate::metrics::{add_percentiles, latency_histogram, Figures};
use crate::payload::now_ns;
use crate::scenario::Timing;
use crate::server::Server;
use crate::session::{decode, Session};

struct Shared {
    writers: usize,
    accepted: Cell<u64>,
    conflicts: Cell<u64>,
    errors: Cell<u64>,
    delivered: Cell<u64>,
    finished: Cell<usize>,
    latency: RefCell<Histogram<u64>>,
}

fn bump(c: &Cell<u64>) {
    c.set(c.get() + 1);
}

/// One run with `writers` writers.
pub async fn run(server: &Server, timing: Timing, writers: usize) -> Result<Figures, BenchError> {
    let channel = format!("state-bench-{writers}-{}", now_ns());
    let mut sessions = Vec::new();
    for i in 0..writers {
        let mut s = Session::open(server, &format!("writer-{i}")).await?;
        s.send_text(ChorusDialect::subscribe_frame(&channel, |_| {}))
            .await?;
        s.until(&["subscribed"], |_| {}).await?;
        sessions.push(s);
    }
    let shared = Rc::new(Shared {
        writers,
        accepted: Cell::new(0),
        conflicts: Cell::new(0),
        errors: Cell::new(0),
        delivered: Cell::new(0),
        finished: Cell::new(0),
        latency: RefCell::new(latency_histogram()),
    });
    let cpu_start = server.cpu()?;
    let start = Instant::now();
    let deadline = start + timing.duration;
    let drain_until = deadline + timing.drain;
    let jobs: Vec<_> = sessions
        .into_iter()
        .map(|s| {
            let job = Writer {
                shared: shared.clone(),
                channel: ChannelName::from(channel.as_str()),
                known: 0,
                received: 0,
            };
            tokio::task::spawn_local(job.run(s, deadline, drain_until))
        })
        .collect();
    for job in jobs {
        job.await
            .map_err(|e| BenchError::Protocol(format!("writer: {e}")))??;
    }
    let cpu = server.cpu()?.saturating_sub(cpu_start).as_secs_f64();
    let elapsed = start.elapsed().as_secs_f64();
    let accepted = shared.accepted.get();
    let attempts = accepted + shared.conflicts.get();
    let expected = accepted * writers as u64;
    let mut f = Figures::from([
        ("writers".to_owned(), writers as f64),
        ("accepted_writes".to_owned(), accepted as f64),
        (
            "accepted_writes_per_sec".to_owned(),
            accepted as f64 / elapsed,
        ),
        (
            "conflict_pct".to_owned(),
            shared.conflicts.get() as f64 * 100.0 / attempts.max(1) as f64,
        ),
        (
            "server_cpu_us_per_accepted_write".to_owned(),
            cpu * 1e6 / accepted.max(1) as f64,
        ),
        (
            "server_cpu_us_per_delivery".to_owned(),
            cpu * 1e6 / expected.max(1) as f64,
        ),
        (
            "lost".to_owned(),
            expected.saturating_sub(shared.delivered.get()) as f64,
        ),
        ("errors".to_owned(), shared.errors.get() as f64),
    ]);
    add_percentiles(&mut f, "op_latency", &shared.latency.borrow());
    Ok(f)
}

struct Writer {
    shared: Rc<Shared>,
    channel: ChannelName,
    known: u64,
    received: u64,
}

impl Writer {
    async fn run(
        mut self,
        mut s: Session,
        deadline: Instant,
        drain_until: Instant,
    ) -> Result<(), BenchError> {
        let mut n = 0u64;
        while Instant::now() < deadline {
            n += 1;
            let frame = to_json(&ClientMessage::StateUpdate(StateUpdate {
                id: None,
                channel: self.channel.clone(),
                key: "k".to_owned(),
                value: serde_json::json!(n),
                expected_version: Some(self.known),
                expected_epoch: None,
            }));
            let t0 = now_ns();
            s.send_text(frame).await?;
            loop {
                let text = s.recv().await?;
                if self.on_frame(&text)? {
                    break;
                }
            }
            let _ = self
                .shared
                .latency
                .borrow_mut()
                .record(now_ns().saturating_sub(t0).max(1_000));
        }
        self.shared.finished.set(self.shared.finished.get() + 1);
        self.drain(&mut s, drain_until).await?;
        s.close().await;
        Ok(())
    }

    /// Handles one frame; true when it is the reply to the write in flight.
    fn on_frame(&mut self, text: &str) -> Result<bool, BenchError> {
        match frame_type(text) {
            "state:update" => {
                if let ServerMessage::StateUpdate(u) = decode(text)? {
                    self.known = self.known.max(u.version);
                }
                self.received += 1;
                bump(&self.shared.delivered);
                Ok(false)
            }
            "state:ack" => {
                if let ServerMessage::StateAck(a) = decode(text)? {
                    self.known = self.known.max(a.version);
                }
                bump(&self.shared.accepted);
                Ok(true)
            }
            "error" => {
                if let ServerMessage::Error(e) = decode(text)? {
                    match (e.code.known().copied(), e.current) {
                        (Some(ErrorCode::Conflict), Some(cur)) => {
                            self.known = self.known.max(cur.version);
                            bump(&self.shared.conflicts);
                        }
                        _ => bump(&self.shared.errors),
                    }
                }
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    /// Keeps reading until every accepted write has reached this writer.
    async fn drain(&mut self, s: &mut Session, until: Instant) -> Result<(), BenchError> {
        loop {
            let all_done = self.shared.finished.get() == self.shared.writers;
            if all_done && self.received >= self.shared.accepted.get() {
                return Ok(());
            }
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(());
            }
            match tokio::time::timeout(left.min(Duration::from_millis(20)), s.recv()).await {
                Ok(text) => {
                    self.on_frame(&text?)?;
                }
                Err(_) => continue,
            }
        }
    }
}
