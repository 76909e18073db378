//! The publish/subscribe engine behind fan-out, fan-in, many-channels and slow-consumer
//! runs: every member of a channel receives every message of every other member.
//!
//! Publishers are closed-loop with a window (at most `window` of a publisher's messages not
//! yet delivered to every receiver), optionally paced to a delivery rate. Receivers check
//! per-publisher order, record latency from the payload's send time, and count deliveries;
//! after the publishing time the run waits for the stragglers, and whatever never arrived
//! is counted as lost.

use std::cell::{Cell, RefCell};
use std::ops::Range;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;

use crate::client::{self, Ws};
use crate::dialect::{Dialect, Inbound};
use crate::error::BenchError;
use crate::metrics::{add_percentiles, latency_histogram, Figures};
use crate::payload::{clock_origin, now_ns, Payload};
use crate::sampler::RssSampler;
use crate::server::{Server, ServerKind, API_KEY};

/// Close code reported for a connection that ended without a close frame (RFC 6455 1006).
pub const CLOSED_WITHOUT_CODE: u16 = 1006;

/// Socket receive buffer of a stalled member, bytes.
const STALLED_RECV_BUFFER: u32 = 4096;

/// The shape of one publish/subscribe run.
#[derive(Debug, Clone)]
pub struct PubSubPlan {
    /// Number of channels.
    pub channels: usize,
    /// Publishing members per channel.
    pub publishers: usize,
    /// Receive-only members per channel.
    pub subscribers: usize,
    /// Extra members of channel 0 that never read until the end (slow consumers).
    pub stalled: usize,
    /// Publishing time.
    pub duration: Duration,
    /// Target deliveries per second over the whole run; `None` is as fast as the window
    /// allows.
    pub rate: Option<f64>,
    /// A publisher's messages in flight (not yet delivered to every receiver).
    pub window: u64,
    /// How long to wait for late deliveries after publishing stops.
    pub drain: Duration,
}

impl PubSubPlan {
    /// Receivers of each message (every other non-stalled member of the channel).
    pub fn fanout(&self) -> u64 {
        (self.publishers + self.subscribers).saturating_sub(1) as u64
    }

    fn validate(&self) -> Result<(), BenchError> {
        if self.channels == 0 || self.publishers == 0 || self.fanout() == 0 || self.window == 0 {
            return Err(BenchError::Options(format!(
                "empty publish/subscribe plan: {self:?}"
            )));
        }
        Ok(())
    }
}

/// Per-publisher progress shared by the tasks of one run (one thread: `Cell`s suffice).
struct PublisherState {
    sent: Cell<u64>,
    delivered: Cell<u64>,
    waiting: Cell<bool>,
    wake: Notify,
}

struct Shared {
    publishers: Vec<PublisherState>,
    latency: RefCell<Histogram<u64>>,
    delivered: Cell<u64>,
    last_delivery_ns: Cell<u64>,
    disorder: Cell<u64>,
    acks: Cell<u64>,
    errors: Cell<u64>,
    first_error: RefCell<Option<String>>,
}

impl Shared {
    fn new(publishers: usize) -> Self {
        Shared {
            publishers: (0..publishers)
                .map(|_| PublisherState {
                    sent: Cell::new(0),
                    delivered: Cell::new(0),
                    waiting: Cell::new(false),
                    wake: Notify::new(),
                })
                .collect(),
            latency: RefCell::new(latency_histogram()),
            delivered: Cell::new(0),
            last_delivery_ns: Cell::new(0),
            disorder: Cell::new(0),
            acks: Cell::new(0),
            errors: Cell::new(0),
            first_error: RefCell::new(None),
        }
    }

    fn sent(&self) -> u64 {
        self.publishers.iter().map(|p| p.sent.get()).sum()
    }

    fn on_delivery(&self, p: Payload, peers: &Range<u32>, next: &mut [u64]) {
        let now = now_ns();
        let Some(slot) = p.publisher.checked_sub(peers.start).map(|i| i as usize) else {
            bump(&self.disorder);
            return;
        };
        if !peers.contains(&p.publisher) || slot >= next.len() {
            bump(&self.disorder);
            return;
        }
        if p.seq != next[slot] {
            bump(&self.disorder);
        }
        next[slot] = p.seq + 1;
        let _ = self
            .latency
            .borrow_mut()
            .record(now.saturating_sub(p.sent_ns).max(1_000));
        bump(&self.delivered);
        self.last_delivery_ns.set(now);
        if let Some(state) = self.publishers.get(p.publisher as usize) {
            bump(&state.delivered);
            if state.waiting.get() {
                state.wake.notify_one();
            }
        }
    }

    fn on_error(&self, frame: &str) {
        bump(&self.errors);
        self.first_error
            .borrow_mut()
            .get_or_insert_with(|| frame.to_owned());
    }
}

fn bump(cell: &Cell<u64>) {
    cell.set(cell.get() + 1);
}

/// What a run measured.
#[derive(Debug, Clone)]
pub struct PubSubOutcome {
    /// Messages published.
    pub sent: u64,
    /// Deliveries expected (sent × fan-out).
    pub expected: u64,
    /// Deliveries received.
    pub delivered: u64,
    /// Deliveries out of per-publisher order, duplicated or from a foreign channel.
    pub disorder: u64,
    /// Publishes acknowledged (dialects that acknowledge).
    pub acks: u64,
    /// Publishes never acknowledged (dialects that acknowledge; 0 otherwise).
    pub unacked: u64,
    /// `error` frames received.
    pub errors: u64,
    /// The first of them.
    pub first_error: Option<String>,
    /// From first publish to last delivery.
    pub elapsed: Duration,
    /// Server CPU over the same span.
    pub server_cpu: Duration,
    /// Send-to-receipt latency, ns.
    pub latency: Histogram<u64>,
    /// Highest server RSS seen during the run, KiB.
    pub peak_rss_kib: u64,
    /// Server RSS once everyone had joined, KiB.
    pub joined_rss_kib: u64,
    /// How each stalled member's connection ended: its close code, 1006 without a close
    /// frame, None when it was still open.
    pub stalled_closes: Vec<Option<u16>>,
    /// Connections opened.
    pub connections: usize,
    /// Per node of [`run_on`], its CPU over the measured span (one entry for [`run`]).
    pub node_cpu: Vec<Duration>,
    /// CPU of the watched processes of [`run_on`] (a broker) over the same span.
    pub watched_cpu: Vec<Duration>,
}

impl PubSubOutcome {
    /// Deliveries that never arrived.
    pub fn lost(&self) -> u64 {
        self.expected.saturating_sub(self.delivered)
    }

    /// The run's figures.
    pub fn figures(&self) -> Figures {
        let secs = self.elapsed.as_secs_f64().max(1e-9);
        let per_delivery_us = self.server_cpu.as_secs_f64() * 1e6 / (self.delivered.max(1) as f64);
        let mut f = Figures::from([
            ("delivered_per_sec".to_owned(), self.delivered as f64 / secs),
            ("server_cpu_us_per_delivery".to_owned(), per_delivery_us),
            (
                "server_cpu_util_pct".to_owned(),
                self.server_cpu.as_secs_f64() / secs * 100.0,
            ),
            ("delivered".to_owned(), self.delivered as f64),
            ("lost".to_owned(), self.lost() as f64),
            ("disorder".to_owned(), self.disorder as f64),
            ("errors".to_owned(), self.errors as f64),
            ("unacked".to_owned(), self.unacked as f64),
            ("peak_rss_kib".to_owned(), self.peak_rss_kib as f64),
            ("connections".to_owned(), self.connections as f64),
        ]);
        add_percentiles(&mut f, "latency", &self.latency);
        f
    }
}

type Sink = SplitSink<Ws, Message>;
type Stream = SplitStream<Ws>;

/// Runs `plan` against `server` (which must be idle: the run owns its CPU accounting).
pub async fn run(server: &Server, plan: &PubSubPlan) -> Result<PubSubOutcome, BenchError> {
    run_on(&[server], &|_, _| 0, &[], plan).await
}

/// Where a member connects among the nodes of [`run_on`]: given whether it publishes and
/// its index in its channel's roster (publishers first), the node's index.
pub type Placement = dyn Fn(bool, usize) -> usize;

/// [`run`] across the nodes of a cluster: each member connects to `nodes[place(..)]`; the
/// CPU of every node and of the `watch`ed processes (the broker) is measured over the same
/// span. Stalled members and the RSS figures are those of the first node.
pub async fn run_on(
    nodes: &[&Server],
    place: &Placement,
    watch: &[u32],
    plan: &PubSubPlan,
) -> Result<PubSubOutcome, BenchError> {
    plan.validate()?;
    let server = *nodes
        .first()
        .ok_or_else(|| BenchError::Options("no server to run against".into()))?;
    let dialect = server.dialect.clone();
    let roster = roster(plan);
    let node_of = |m: &Member| nodes[place(m.publisher.is_some(), m.slot) % nodes.len()];
    let dialect_ref = dialect.as_ref();
    let mut sockets: Vec<Ws> = futures_util::stream::iter(roster.iter().filter(|m| !m.stalled))
        .map(|m| client::connect(dialect_ref, node_of(m).addr, &m.channel, &m.user))
        .buffered(32)
        .collect::<Vec<Result<Ws, BenchError>>>()
        .await
        .into_iter()
        .collect::<Result<_, _>>()?;
    for m in roster.iter().filter(|m| m.stalled) {
        let ws = client::connect_with(
            dialect.as_ref(),
            server.addr,
            &m.channel,
            &m.user,
            Some(STALLED_RECV_BUFFER),
        )
        .await?;
        sockets.push(ws);
    }
    let joined_rss_kib = server.rss_kib()?;
    let shared = Rc::new(Shared::new(plan.channels * plan.publishers));
    let mut sinks = Vec::new();
    let mut readers = Vec::new();
    let mut publisher_sinks = Vec::new();
    let mut stalled = Vec::new();
    for (member, ws) in roster.iter().zip(sockets) {
        if member.stalled {
            stalled.push(ws);
            continue;
        }
        let (sink, stream) = ws.split();
        readers.push(spawn_reader(
            stream,
            shared.clone(),
            dialect.clone(),
            member.peers.clone(),
        ));
        match member.publisher {
            Some(id) => publisher_sinks.push((id, member.channel.clone(), sink)),
            None => sinks.push(sink),
        }
    }
    let stop_stalling = Rc::new(Cell::new(false));
    let stalled = (!stalled.is_empty()).then(|| {
        let probe = (server.kind == ServerKind::Chorus).then_some(server.addr);
        tokio::task::spawn_local(watch_stalled(probe, stalled, stop_stalling.clone()))
    });
    let sampler = RssSampler::start(server.pid);
    let cpu_start = nodes
        .iter()
        .map(|n| n.cpu())
        .collect::<Result<Vec<_>, _>>()?;
    let watch_start = watch
        .iter()
        .map(|pid| crate::procstat::cpu_time(*pid))
        .collect::<Result<Vec<_>, _>>()?;
    let start = Instant::now();
    let start_ns = now_ns();
    let total_publishers = publisher_sinks.len();
    let publishers: Vec<JoinHandle<Result<Sink, BenchError>>> = publisher_sinks
        .into_iter()
        .map(|(id, channel, sink)| {
            let job = PublishJob {
                shared: shared.clone(),
                dialect: dialect.clone(),
                id,
                channel,
                fanout: plan.fanout(),
                window: plan.window,
                start,
                deadline: start + plan.duration,
                interval: plan.rate.map(|r| {
                    Duration::from_secs_f64(total_publishers as f64 * plan.fanout() as f64 / r)
                }),
            };
            tokio::task::spawn_local(job.run(sink))
        })
        .collect();
    for handle in publishers {
        sinks.push(join(handle).await??);
    }
    let expected = shared.sent() * plan.fanout();
    let acks_expected = dialect.acks_publishes().then(|| shared.sent());
    wait_for(&shared, expected, acks_expected, plan.drain).await;
    let mut node_cpu = Vec::new();
    for (node, start) in nodes.iter().zip(&cpu_start) {
        node_cpu.push(node.cpu()?.saturating_sub(*start));
    }
    let mut watched_cpu = Vec::new();
    for (pid, start) in watch.iter().zip(&watch_start) {
        watched_cpu.push(crate::procstat::cpu_time(*pid)?.saturating_sub(*start));
    }
    let server_cpu = node_cpu.iter().sum();
    let peak_rss_kib = sampler.stop().await;
    let end_ns = shared.last_delivery_ns.get().max(start_ns + 1);
    stop_stalling.set(true);
    let stalled_closes = match stalled {
        Some(task) => join(task).await?,
        None => Vec::new(),
    };
    close_all(sinks, readers).await;
    let outcome = PubSubOutcome {
        sent: shared.sent(),
        expected,
        delivered: shared.delivered.get(),
        disorder: shared.disorder.get(),
        acks: shared.acks.get(),
        unacked: if dialect.acks_publishes() {
            shared.sent().saturating_sub(shared.acks.get())
        } else {
            0
        },
        errors: shared.errors.get(),
        first_error: shared.first_error.borrow().clone(),
        elapsed: Duration::from_nanos(end_ns - start_ns),
        server_cpu,
        latency: shared.latency.borrow().clone(),
        peak_rss_kib,
        joined_rss_kib,
        stalled_closes,
        connections: roster.len(),
        node_cpu,
        watched_cpu,
    };
    Ok(outcome)
}

/// One connection of a run.
struct Member {
    channel: String,
    user: String,
    /// Global publisher id, for publishers.
    publisher: Option<u32>,
    /// Publisher ids of the member's channel.
    peers: Range<u32>,
    stalled: bool,
    /// Index in its channel's roster (publishers first).
    slot: usize,
}

fn roster(plan: &PubSubPlan) -> Vec<Member> {
    // Fresh channel names per run, so nothing left of an earlier run can receive.
    let run = now_ns();
    let mut out = Vec::new();
    for c in 0..plan.channels {
        let first = (c * plan.publishers) as u32;
        let peers = first..first + plan.publishers as u32;
        let channel = format!("bench-{run}-{c}");
        for i in 0..plan.publishers + plan.subscribers {
            out.push(Member {
                channel: channel.clone(),
                user: format!("u{c}-{i}"),
                publisher: (i < plan.publishers).then(|| first + i as u32),
                peers: peers.clone(),
                stalled: false,
                slot: i,
            });
        }
    }
    // Stalled members join last (after everyone else, in the roster order of sockets).
    for i in 0..plan.stalled {
        out.push(Member {
            channel: format!("bench-{run}-0"),
            user: format!("stalled-{i}"),
            publisher: None,
            peers: 0..plan.publishers as u32,
            stalled: true,
            slot: plan.publishers + plan.subscribers + i,
        });
    }
    out
}

fn spawn_reader(
    mut stream: Stream,
    shared: Rc<Shared>,
    dialect: Arc<dyn Dialect>,
    peers: Range<u32>,
) -> JoinHandle<()> {
    tokio::task::spawn_local(async move {
        let mut next = vec![0u64; peers.len()];
        while let Some(Ok(msg)) = stream.next().await {
            let Message::Text(text) = msg else { continue };
            match dialect.classify(&text) {
                Inbound::Delivery(p) => shared.on_delivery(p, &peers, &mut next),
                Inbound::PublishAck => bump(&shared.acks),
                Inbound::Error => shared.on_error(&text),
                Inbound::Joined | Inbound::Other => {}
            }
        }
    })
}

struct PublishJob {
    shared: Rc<Shared>,
    dialect: Arc<dyn Dialect>,
    id: u32,
    channel: String,
    fanout: u64,
    window: u64,
    start: Instant,
    deadline: Instant,
    interval: Option<Duration>,
}

impl PublishJob {
    async fn run(self, mut sink: Sink) -> Result<Sink, BenchError> {
        let state = &self.shared.publishers[self.id as usize];
        for seq in 0u64.. {
            if !self.wait_window(state).await {
                break;
            }
            let sent_ns = match self.interval {
                Some(interval) => {
                    let at = self.start + interval.mul_f64(seq as f64);
                    if at >= self.deadline {
                        break;
                    }
                    tokio::time::sleep_until(at.into()).await;
                    // Latency counts from the scheduled time, so a late send is not hidden.
                    u64::try_from(at.duration_since(clock_origin()).as_nanos()).unwrap_or(0)
                }
                None if Instant::now() >= self.deadline => break,
                None => now_ns(),
            };
            let payload = Payload {
                publisher: self.id,
                seq,
                sent_ns,
            };
            bump(&state.sent);
            sink.send(Message::text(
                self.dialect.publish_frame(&self.channel, &payload),
            ))
            .await?;
        }
        Ok(sink)
    }

    /// Waits until the window has room; false when the deadline passed meanwhile.
    async fn wait_window(&self, state: &PublisherState) -> bool {
        let limit = self.window * self.fanout;
        while state.sent.get() * self.fanout
            - state.delivered.get().min(state.sent.get() * self.fanout)
            >= limit
        {
            state.waiting.set(true);
            let woke = tokio::time::timeout_at(self.deadline.into(), state.wake.notified()).await;
            state.waiting.set(false);
            if woke.is_err() {
                return false;
            }
        }
        true
    }
}

async fn join<T>(handle: JoinHandle<T>) -> Result<T, BenchError> {
    handle
        .await
        .map_err(|e| BenchError::Protocol(format!("task failed: {e}")))
}

async fn wait_for(shared: &Shared, expected: u64, acks: Option<u64>, limit: Duration) {
    let until = Instant::now() + limit;
    let done = || shared.delivered.get() >= expected && shared.acks.get() >= acks.unwrap_or(0);
    while !done() && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Keeps the stalled members from reading until the server drops one of its connections
/// (Chorus: `/api/stats` shows one fewer, the slow-consumer close) or the run ends, then
/// reads what they were sent. A client that never reads again could never see the close
/// frame; this one stays stalled exactly until the server gave up on it.
async fn watch_stalled(
    stats: Option<std::net::SocketAddr>,
    stalled: Vec<Ws>,
    stop: Rc<Cell<bool>>,
) -> Vec<Option<u16>> {
    let connections = |addr| async move {
        let stats = crate::http::get_json(addr, "/api/stats", &[("X-Api-Key", API_KEY)]).await;
        stats.ok().and_then(|s| s["connections"].as_u64())
    };
    let base = match stats {
        Some(addr) => connections(addr).await,
        None => None,
    };
    while !stop.get() {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if let (Some(addr), Some(base)) = (stats, base) {
            if connections(addr).await.is_some_and(|n| n < base) {
                break;
            }
        }
    }
    drain_stalled(stalled).await
}

/// Reads what each stalled member was sent, up to its close frame (or until nothing more
/// comes: the baselines never close a slow reader).
async fn drain_stalled(stalled: Vec<Ws>) -> Vec<Option<u16>> {
    let mut closes = Vec::new();
    for mut ws in stalled {
        let until = tokio::time::Instant::now() + Duration::from_secs(20);
        let mut code = None;
        loop {
            let limit = until.min(tokio::time::Instant::now() + Duration::from_secs(2));
            match tokio::time::timeout_at(limit, ws.next()).await {
                Ok(Some(Ok(Message::Close(frame)))) => {
                    code = Some(frame.map_or(CLOSED_WITHOUT_CODE, |f| u16::from(f.code)));
                    break;
                }
                Ok(Some(Ok(_))) => {}
                // Dropped without a close frame.
                Ok(Some(Err(_)) | None) => {
                    code = Some(CLOSED_WITHOUT_CODE);
                    break;
                }
                // Silent: still open.
                Err(_) => break,
            }
        }
        closes.push(code);
        client::close(ws, Duration::from_millis(200)).await;
    }
    closes
}

async fn close_all(sinks: Vec<Sink>, readers: Vec<JoinHandle<()>>) {
    for mut sink in sinks {
        let _ = tokio::time::timeout(Duration::from_millis(500), sink.close()).await;
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    for mut handle in readers {
        if tokio::time::timeout_at(deadline, &mut handle)
            .await
            .is_err()
        {
            handle.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(channels: usize, publishers: usize, subscribers: usize) -> PubSubPlan {
        PubSubPlan {
            channels,
            publishers,
            subscribers,
            stalled: 0,
            duration: Duration::from_secs(1),
            rate: None,
            window: 8,
            drain: Duration::from_secs(1),
        }
    }

    #[test]
    fn fanout_counts_every_other_member() {
        assert_eq!(plan(1, 1, 200).fanout(), 200);
        assert_eq!(plan(1, 50, 1).fanout(), 50);
        assert_eq!(plan(100, 1, 1).fanout(), 1);
    }

    #[test]
    fn roster_numbers_publishers_per_channel() {
        let r = roster(&plan(2, 2, 1));
        assert_eq!(r.len(), 6);
        assert_eq!(r[3].publisher, Some(2));
        assert_eq!(r[3].peers, 2..4);
        assert_eq!(r[5].publisher, None);
        assert!(r[5].channel.ends_with("-1"));
        assert_eq!(r[5].channel, r[4].channel);
        assert_ne!(r[5].channel, r[0].channel);
    }

    #[test]
    fn out_of_order_delivery_is_counted() {
        let shared = Shared::new(2);
        let mut next = vec![0, 0];
        let p = |seq| Payload {
            publisher: 1,
            seq,
            sent_ns: now_ns(),
        };
        shared.on_delivery(p(0), &(0..2), &mut next);
        shared.on_delivery(p(2), &(0..2), &mut next);
        assert_eq!(shared.disorder.get(), 1);
        assert_eq!(shared.delivered.get(), 2);
        assert_eq!(shared.publishers[1].delivered.get(), 2);
    }

    #[test]
    fn delivery_from_another_channel_is_disorder() {
        let shared = Shared::new(4);
        let mut next = vec![0, 0];
        shared.on_delivery(
            Payload {
                publisher: 3,
                seq: 0,
                sent_ns: 0,
            },
            &(0..2),
            &mut next,
        );
        assert_eq!(shared.disorder.get(), 1);
        assert_eq!(shared.delivered.get(), 0);
    }
}
