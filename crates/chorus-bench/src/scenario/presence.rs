//! Presence churn: churners join, update and leave a presence channel that `members` static
//! members watch. Every cycle costs each static member three frames (`user:joined`,
//! `presence:updated`, `user:left`), so CPU per member-event should stay flat as the channel
//! grows (no quadratic blow-up).

use std::cell::Cell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use chorus_protocol::{ChannelName, ClientMessage, PresenceUpdate, Unsubscribe};
use futures_util::StreamExt;
use hdrhistogram::Histogram;
use tokio_tungstenite::tungstenite::Message;

use crate::client;
use crate::dialect::{frame_type, ChorusDialect};
use crate::error::BenchError;
use crate::metrics::{add_percentiles, latency_histogram, Figures};
use crate::payload::now_ns;
use crate::scenario::Timing;
use crate::server::Server;
use crate::session::Session;

const CHURNERS: usize = 4;
const CHURN_PREFIX: &str = "churn-";

/// One run with `members` static members.
pub async fn run(server: &Server, timing: Timing, members: usize) -> Result<Figures, BenchError> {
    run_on(&[server], &[], timing, members).await
}

/// [`run`] across the nodes of a cluster: the static members on the last node, churner `i`
/// on node `i % (nodes - 1)` (every node with one node), CPU summed over the nodes, and
/// the `watch`ed processes' CPU (the broker) per cycle as `watched_cpu_us_per_cycle`.
pub async fn run_on(
    nodes: &[&Server],
    watch: &[u32],
    timing: Timing,
    members: usize,
) -> Result<Figures, BenchError> {
    let server = *nodes
        .last()
        .ok_or_else(|| BenchError::Options("no server to run against".into()))?;
    let churn_nodes = &nodes[..nodes.len().saturating_sub(1).max(1)];
    // A fresh channel per run: leases of the previous run's members may still be in grace.
    let channel = format!("presence-bench-{members}-{}", now_ns());
    let roster: Vec<(String, String)> = (0..members)
        .map(|i| (channel.clone(), format!("member-{i}")))
        .collect();
    let events = Rc::new(Cell::new(0u64));
    // Members read from the moment they are in: later joins send them `user:joined`.
    let readers =
        client::connect_many_with(server.dialect.as_ref(), server.addr, &roster, 32, |ws| {
            tokio::task::spawn_local(count_churn_events(ws, events.clone()))
        })
        .await?;
    let mut churners = Vec::new();
    for i in 0..CHURNERS {
        let node = churn_nodes[i % churn_nodes.len()];
        churners.push(Session::open(node, &format!("{CHURN_PREFIX}{i}")).await?);
    }
    let cpu_of = |pids: &[u32]| -> Result<f64, BenchError> {
        let mut total = 0.0;
        for pid in pids {
            total += crate::procstat::cpu_time(*pid)?.as_secs_f64();
        }
        Ok(total)
    };
    let pids: Vec<u32> = nodes.iter().map(|n| n.pid).collect();
    let cpu_start = cpu_of(&pids)?;
    let watch_start = cpu_of(watch)?;
    let start = Instant::now();
    let deadline = start + timing.duration;
    let jobs: Vec<_> = churners
        .into_iter()
        .map(|s| tokio::task::spawn_local(churn(s, channel.clone(), deadline)))
        .collect();
    let mut latency = latency_histogram();
    let (mut cycles, mut errors) = (0u64, 0u64);
    for job in jobs {
        let out = job
            .await
            .map_err(|e| BenchError::Protocol(format!("churner: {e}")))??;
        latency
            .add(&out.latency)
            .map_err(|e| BenchError::Protocol(e.to_string()))?;
        cycles += out.cycles;
        errors += out.errors;
    }
    let expected = cycles * 3 * members as u64;
    let until = Instant::now() + timing.drain;
    while events.get() < expected && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let cpu = cpu_of(&pids)? - cpu_start;
    let watched = cpu_of(watch)? - watch_start;
    let elapsed = start.elapsed().as_secs_f64();
    for r in readers {
        r.abort();
    }
    let mut f = Figures::from([
        ("members".to_owned(), members as f64),
        ("cycles".to_owned(), cycles as f64),
        ("cycles_per_sec".to_owned(), cycles as f64 / elapsed),
        (
            "server_cpu_us_per_cycle".to_owned(),
            cpu * 1e6 / cycles.max(1) as f64,
        ),
        (
            "server_cpu_us_per_event".to_owned(),
            cpu * 1e6 / expected.max(1) as f64,
        ),
        ("events_delivered".to_owned(), events.get() as f64),
        (
            "lost".to_owned(),
            expected.saturating_sub(events.get()) as f64,
        ),
        ("errors".to_owned(), errors as f64),
    ]);
    if !watch.is_empty() {
        f.insert(
            "watched_cpu_us_per_cycle".to_owned(),
            watched * 1e6 / cycles.max(1) as f64,
        );
    }
    add_percentiles(&mut f, "op_latency", &latency);
    Ok(f)
}

async fn count_churn_events(mut ws: client::Ws, events: Rc<Cell<u64>>) {
    while let Some(Ok(msg)) = ws.next().await {
        if let Message::Text(t) = msg {
            if is_churn_event(&t) {
                events.set(events.get() + 1);
            }
        }
    }
}

fn is_churn_event(text: &str) -> bool {
    matches!(
        frame_type(text),
        "user:joined" | "presence:updated" | "user:left"
    ) && text.contains(&format!("\"{CHURN_PREFIX}"))
}

struct ChurnOutcome {
    cycles: u64,
    errors: u64,
    latency: Histogram<u64>,
}

/// Join, update, leave until the deadline; one request in flight.
async fn churn(
    mut s: Session,
    name: String,
    deadline: Instant,
) -> Result<ChurnOutcome, BenchError> {
    let mut out = ChurnOutcome {
        cycles: 0,
        errors: 0,
        latency: latency_histogram(),
    };
    let channel = ChannelName::from(name.as_str());
    while Instant::now() < deadline {
        let steps = [
            (ChorusDialect::subscribe_frame(&name, |_| {}), "subscribed"),
            (
                crate::dialect::to_json(&ClientMessage::PresenceUpdate(PresenceUpdate {
                    id: None,
                    channel: channel.clone(),
                    status: None,
                    data: Some(serde_json::json!({ "n": out.cycles })),
                })),
                "presence:ack",
            ),
            (
                crate::dialect::to_json(&ClientMessage::Unsubscribe(Unsubscribe {
                    id: None,
                    channel: channel.clone(),
                })),
                "unsubscribed",
            ),
        ];
        for (frame, reply) in steps {
            let t0 = now_ns();
            s.send_text(frame).await?;
            let got = s.until(&[reply, "error"], |_| {}).await?;
            if frame_type(&got) == "error" {
                out.errors += 1;
            }
            let _ = out.latency.record(now_ns().saturating_sub(t0).max(1_000));
        }
        out.cycles += 1;
    }
    s.close().await;
    Ok(out)
}
