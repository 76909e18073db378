//! Idle connections: how much server memory each one costs once it is authenticated and in
//! a channel (a presence channel for Chorus, so its member record counts too).

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

use crate::client;
use crate::error::BenchError;
use crate::metrics::Figures;
use crate::server::{Server, ServerKind};

/// Time for the server to settle before a memory reading.
const SETTLE: Duration = Duration::from_millis(1000);

/// Opens `connections` connections, `per_channel` per channel, and reads RSS growth.
pub async fn run(
    server: &Server,
    connections: usize,
    per_channel: usize,
) -> Result<Figures, BenchError> {
    tokio::time::sleep(SETTLE).await;
    let idle_rss = server.rss_kib()?;
    let cpu_start = server.cpu()?;
    let prefix = if server.kind == ServerKind::Chorus {
        "presence-idle"
    } else {
        "idle"
    };
    let members: Vec<(String, String)> = (0..connections)
        .map(|i| {
            (
                format!("{prefix}-{}", i / per_channel.max(1)),
                format!("idle-{i}"),
            )
        })
        .collect();
    let sockets = client::connect_many(server.dialect.as_ref(), server.addr, &members, 64).await?;
    // Keep reading (presence joins of later members) and answering heartbeats (Socket.IO's
    // Engine.IO pings) as a live client would.
    let readers: Vec<_> = sockets
        .into_iter()
        .map(|mut ws| {
            let dialect = server.dialect.clone();
            tokio::task::spawn_local(async move {
                while let Some(Ok(msg)) = ws.next().await {
                    let answer = msg.to_text().ok().and_then(|t| dialect.reply(t));
                    if let Some(answer) = answer {
                        if ws.send(Message::text(answer)).await.is_err() {
                            break;
                        }
                    }
                }
            })
        })
        .collect();
    let connect_cpu = server.cpu()?.saturating_sub(cpu_start);
    tokio::time::sleep(SETTLE).await;
    let connected_rss = server.rss_kib()?;
    let mut f = Figures::from([
        ("connections".to_owned(), connections as f64),
        ("idle_rss_kib".to_owned(), idle_rss as f64),
        ("connected_rss_kib".to_owned(), connected_rss as f64),
        (
            "rss_kib_per_connection".to_owned(),
            connected_rss.saturating_sub(idle_rss) as f64 / connections.max(1) as f64,
        ),
        (
            "server_cpu_us_per_connect".to_owned(),
            connect_cpu.as_secs_f64() * 1e6 / connections.max(1) as f64,
        ),
    ]);
    if server.kind == ServerKind::Chorus {
        let stats = server.stats().await?;
        f.insert(
            "stats_connections".into(),
            stats["connections"].as_f64().unwrap_or(-1.0),
        );
    }
    // The server is stopped after this run: dropping the sockets is enough.
    for r in readers {
        r.abort();
    }
    Ok(f)
}
