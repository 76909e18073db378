//! Soak: workers connect, subscribe (public or presence), publish, sometimes write state,
//! and disconnect (one in five abruptly, without a close frame), over and over. Afterwards
//! the server must be back to nothing: zero connections and subscriptions in `/api/stats`
//! and RSS near its (warm) idle level.

use std::cell::Cell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use chorus_protocol::{ChannelName, ClientMessage, StateUpdate};

use crate::dialect::{frame_type, ChorusDialect, Dialect};
use crate::error::BenchError;
use crate::metrics::Figures;
use crate::payload::{now_ns, Payload};
use crate::sampler::RssSampler;
use crate::server::{Server, JWT_SECRET};
use crate::session::Session;

const WORKERS: usize = 32;
const CHANNELS: usize = 8;
const MESSAGES_PER_CYCLE: usize = 10;
/// Longer than the presence grace the bench gives the server (1 s) plus slack.
const SETTLE: Duration = Duration::from_secs(2);

#[derive(Default)]
struct Counts {
    cycles: Cell<u64>,
    messages: Cell<u64>,
    errors: Cell<u64>,
}

/// Churns for `length`, then checks for leaks. The first tenth of the churn warms the server
/// (allocator pools, channel tables, full histories) and is followed by an idle reading: a
/// server that handled traffic once never returns to its freshly started size, and the
/// leak check compares against that warm idle level. The fresh level is reported too.
pub async fn run(server: &Server, length: Duration) -> Result<Figures, BenchError> {
    tokio::time::sleep(Duration::from_secs(1)).await;
    let fresh_rss = server.rss_kib()?;
    let sampler = RssSampler::start(server.pid);
    let counts = Rc::new(Counts::default());
    churn(server, length / 10, &counts).await?;
    tokio::time::sleep(SETTLE).await;
    let warm_rss = server.rss_kib()?;
    churn(server, length - length / 10, &counts).await?;
    tokio::time::sleep(SETTLE).await;
    let stats = server.stats().await?;
    let after_rss = server.rss_kib()?;
    let peak = sampler.stop().await;
    let num = |v: &serde_json::Value| v.as_f64().unwrap_or(-1.0);
    Ok(Figures::from([
        ("cycles".to_owned(), counts.cycles.get() as f64),
        ("messages".to_owned(), counts.messages.get() as f64),
        ("errors".to_owned(), counts.errors.get() as f64),
        ("fresh_rss_kib".to_owned(), fresh_rss as f64),
        ("idle_rss_kib".to_owned(), warm_rss as f64),
        ("after_rss_kib".to_owned(), after_rss as f64),
        (
            "rss_after_over_idle".to_owned(),
            after_rss as f64 / warm_rss.max(1) as f64,
        ),
        (
            "rss_after_over_fresh".to_owned(),
            after_rss as f64 / fresh_rss.max(1) as f64,
        ),
        ("peak_rss_kib".to_owned(), peak as f64),
        ("stats_connections".to_owned(), num(&stats["connections"])),
        (
            "stats_subscriptions".to_owned(),
            num(&stats["subscriptions"]),
        ),
        ("seconds".to_owned(), length.as_secs_f64()),
    ]))
}

async fn churn(server: &Server, length: Duration, counts: &Rc<Counts>) -> Result<(), BenchError> {
    let deadline = Instant::now() + length;
    let workers: Vec<_> = (0..WORKERS)
        .map(|w| tokio::task::spawn_local(worker(server_view(server), w, deadline, counts.clone())))
        .collect();
    for w in workers {
        w.await
            .map_err(|e| BenchError::Protocol(format!("soak worker: {e}")))??;
    }
    Ok(())
}

/// What a worker needs of the server (the `Server` itself is not `'static`).
#[derive(Clone)]
struct ServerView {
    addr: std::net::SocketAddr,
}

fn server_view(server: &Server) -> ServerView {
    ServerView { addr: server.addr }
}

async fn worker(
    server: ServerView,
    w: usize,
    deadline: Instant,
    counts: Rc<Counts>,
) -> Result<(), BenchError> {
    let dialect = ChorusDialect::new(JWT_SECRET);
    let mut n = 0u64;
    while Instant::now() < deadline {
        n += 1;
        let user = format!("soak-{w}-{n}");
        let channel = if n.is_multiple_of(2) {
            format!("presence-soak-{}", w % CHANNELS)
        } else {
            format!("soak-{}", w % CHANNELS)
        };
        match cycle(&server, &dialect, &user, &channel, n).await {
            Ok(sent) => {
                counts.messages.set(counts.messages.get() + sent);
                counts.cycles.set(counts.cycles.get() + 1);
            }
            Err(_) => counts.errors.set(counts.errors.get() + 1),
        }
    }
    Ok(())
}

/// One connect/subscribe/publish/disconnect cycle; returns the messages acknowledged.
async fn cycle(
    server: &ServerView,
    dialect: &ChorusDialect,
    user: &str,
    channel: &str,
    n: u64,
) -> Result<u64, BenchError> {
    let ws = crate::client::open(dialect, server.addr, channel, user).await?;
    let mut s = Session { ws };
    s.until(&["welcome"], |_| {}).await?;
    s.send_text(ChorusDialect::subscribe_frame(channel, |_| {}))
        .await?;
    expect(&mut s, "subscribed").await?;
    for seq in 0..MESSAGES_PER_CYCLE {
        let payload = Payload {
            publisher: 0,
            seq: seq as u64,
            sent_ns: now_ns(),
        };
        s.send_text(dialect.publish_frame(channel, &payload))
            .await?;
    }
    for _ in 0..MESSAGES_PER_CYCLE {
        expect(&mut s, "broadcast:ack").await?;
    }
    if n.is_multiple_of(3) {
        s.send(&ClientMessage::StateUpdate(StateUpdate {
            id: None,
            channel: ChannelName::from(channel),
            key: "soak".to_owned(),
            value: serde_json::json!(n),
            expected_version: None,
            expected_epoch: None,
        }))
        .await?;
        expect(&mut s, "state:ack").await?;
    }
    if n.is_multiple_of(5) {
        drop(s); // abrupt: no close frame
    } else {
        s.close().await;
    }
    Ok(MESSAGES_PER_CYCLE as u64)
}

async fn expect(s: &mut Session, reply: &str) -> Result<(), BenchError> {
    let text = s.until(&[reply, "error"], |_| {}).await?;
    if frame_type(&text) == "error" {
        return Err(BenchError::Protocol(text.to_string()));
    }
    Ok(())
}
