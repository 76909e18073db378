//! History recovery: clients note their position, go away, miss `missed` messages, and come
//! back with `subscribe {since}`; every missed message must be replayed, in order, before
//! anything live (HIST).

use std::time::{Duration, Instant};

use chorus_protocol::{ServerMessage, StreamPosition};

use crate::dialect::{frame_type, ChorusDialect, Dialect};
use crate::error::{within, BenchError};
use crate::metrics::{add_percentiles, latency_histogram, Figures};
use crate::payload::{now_ns, Payload};
use crate::server::{Server, JWT_SECRET};
use crate::session::{decode, Session};

/// Miss-and-recover rounds per run.
const ROUNDS: usize = 3;

/// One run: `clients` clients each recover `missed` messages, [`ROUNDS`] times.
pub async fn run(server: &Server, clients: usize, missed: usize) -> Result<Figures, BenchError> {
    let channel = format!("hist-bench-{}", now_ns());
    let mut publisher = Session::open(server, "hist-publisher").await?;
    publisher
        .send_text(ChorusDialect::subscribe_frame(&channel, |_| {}))
        .await?;
    publisher.until(&["subscribed"], |_| {}).await?;
    let mut latency = latency_histogram();
    let (mut replayed, mut not_recovered, mut phase_cpu, mut phase_time) =
        (0u64, 0u64, Duration::ZERO, Duration::ZERO);
    for round in 0..ROUNDS {
        let positions = note_positions(server, &channel, clients, round).await?;
        publish(&mut publisher, &channel, missed).await?;
        let cpu_start = server.cpu()?;
        let start = Instant::now();
        let recoveries = positions
            .into_iter()
            .enumerate()
            .map(|(i, pos)| recover(server, &channel, format!("hist-{round}-{i}"), pos, missed));
        for r in futures_util::future::join_all(recoveries).await {
            let r = r?;
            replayed += r.replayed;
            not_recovered += u64::from(!r.recovered);
            let _ = latency.record(r.elapsed_ns.max(1_000));
        }
        phase_time += start.elapsed();
        phase_cpu += server.cpu()?.saturating_sub(cpu_start);
    }
    publisher.close().await;
    let expected = (ROUNDS * clients * missed) as u64;
    let mut f = Figures::from([
        ("replayed".to_owned(), replayed as f64),
        (
            "replayed_per_sec".to_owned(),
            replayed as f64 / phase_time.as_secs_f64().max(1e-9),
        ),
        (
            "server_cpu_us_per_replayed".to_owned(),
            phase_cpu.as_secs_f64() * 1e6 / replayed.max(1) as f64,
        ),
        ("not_recovered".to_owned(), not_recovered as f64),
        ("lost".to_owned(), expected.saturating_sub(replayed) as f64),
    ]);
    add_percentiles(&mut f, "recovery", &latency);
    Ok(f)
}

/// Subscribes `clients` fresh clients, keeps their positions, and closes them.
async fn note_positions(
    server: &Server,
    channel: &str,
    clients: usize,
    round: usize,
) -> Result<Vec<StreamPosition>, BenchError> {
    let mut positions = Vec::new();
    for i in 0..clients {
        let mut s = Session::open(server, &format!("hist-{round}-{i}")).await?;
        s.send_text(ChorusDialect::subscribe_frame(channel, |_| {}))
            .await?;
        let text = s.until(&["subscribed", "error"], |_| {}).await?;
        let ServerMessage::Subscribed(sub) = decode(&text)? else {
            return Err(BenchError::Protocol(text.to_string()));
        };
        positions.push(sub.position);
        s.close().await;
    }
    Ok(positions)
}

/// Publishes `count` messages and waits for every acknowledgement.
async fn publish(publisher: &mut Session, channel: &str, count: usize) -> Result<(), BenchError> {
    let dialect = ChorusDialect::new(JWT_SECRET);
    for seq in 0..count {
        let payload = Payload {
            publisher: 0,
            seq: seq as u64,
            sent_ns: now_ns(),
        };
        publisher
            .send_text(dialect.publish_frame(channel, &payload))
            .await?;
    }
    for _ in 0..count {
        let text = publisher.until(&["broadcast:ack", "error"], |_| {}).await?;
        if frame_type(&text) == "error" {
            return Err(BenchError::Protocol(text.to_string()));
        }
    }
    Ok(())
}

struct Recovery {
    replayed: u64,
    recovered: bool,
    elapsed_ns: u64,
}

/// Reconnects with `since` and reads the replay: `subscribed` then `missed` messages with
/// consecutive `seq` after the noted position.
async fn recover(
    server: &Server,
    channel: &str,
    user: String,
    since: StreamPosition,
    missed: usize,
) -> Result<Recovery, BenchError> {
    let mut s = Session::open(server, &user).await?;
    let t0 = now_ns();
    let first = since.seq + 1;
    s.send_text(ChorusDialect::subscribe_frame(channel, |sub| {
        sub.since = Some(since)
    }))
    .await?;
    let text = s.until(&["subscribed", "error"], |_| {}).await?;
    let recovered =
        matches!(decode(&text)?, ServerMessage::Subscribed(ref sub) if sub.recovered == Some(true));
    let mut replayed = 0u64;
    if recovered {
        replayed = within(Duration::from_secs(10), "reading the replay", async {
            let mut n = 0u64;
            while n < missed as u64 {
                let text = s.until(&["message"], |_| {}).await?;
                match decode(&text)? {
                    ServerMessage::Message(m) if m.seq == first + n => n += 1,
                    _ => return Ok(n),
                }
            }
            Ok(n)
        })
        .await
        .unwrap_or(0);
    }
    let elapsed_ns = now_ns().saturating_sub(t0);
    s.close().await;
    Ok(Recovery {
        replayed,
        recovered,
        elapsed_ns,
    })
}
