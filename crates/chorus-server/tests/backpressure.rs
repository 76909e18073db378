//! A client that stops reading is closed with 4200 while every other client gets every
//! message (LIMIT-7..9).

mod common;

use common::*;
use reqwest::{Method, StatusCode};
use serde_json::json;

fn firehose_config() -> chorus_server::Config {
    let mut config = test_config();
    config.queue_capacity = 16;
    config.queue_watermark = 8;
    config.max_frame_bytes = 256 * 1024;
    // The readers only read; a slow machine must not time them out.
    config.heartbeat_interval_ms = 30_000;
    config.heartbeat_timeout_ms = 60_000;
    config
}

/// Posts `count` messages of 64 KiB to `firehose` in the background.
fn firehose(server: &chorus_server::RunningServer, count: u64) -> tokio::task::JoinHandle<()> {
    let url = server.http_url();
    let payload = "x".repeat(64 * 1024);
    tokio::spawn(async move {
        for _ in 0..count {
            let r = http()
                .post(format!("{url}/api/broadcast"))
                .header("x-api-key", API_KEY)
                .json(&json!({"channel":"firehose","event":"blob","data":payload}))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), StatusCode::OK);
        }
    })
}

/// Waits until the server counts `n` connections.
async fn until_connections(server: &chorus_server::RunningServer, n: u64) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let stats: serde_json::Value = api(server, Method::GET, "/api/stats")
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if stats["connections"] == n {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "still {stats}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_stalled_sse_stream_is_ended() {
    let server = start_with(firehose_config()).await;
    let url = format!(
        "{}/sse?channel=firehose&token={}",
        server.http_url(),
        user("sse")
    );
    let stalled = http().get(url).send().await.unwrap();
    assert_eq!(stalled.status(), StatusCode::OK);
    until_connections(&server, 1).await;
    let publisher = firehose(&server, 200);
    until_connections(&server, 0).await;
    publisher.await.unwrap();
    drop(stalled);
}

#[tokio::test]
async fn a_stalled_client_is_closed_4200_and_the_others_get_everything() {
    let server = start_with(firehose_config()).await;
    let mut stalled = Client::user(&server, "stalled").await;
    stalled.subscribe("firehose").await;
    let mut readers = Vec::new();
    for i in 0..3 {
        let mut c = Client::user(&server, &format!("reader-{i}")).await;
        c.subscribe("firehose").await;
        readers.push(c);
    }
    let count = 200u64;
    let reading = readers
        .into_iter()
        .map(|mut c| {
            tokio::spawn(async move {
                for seq in 1..=count {
                    let m = c.recv_type("message").await;
                    assert_eq!(m["seq"], seq);
                }
            })
        })
        .collect::<Vec<_>>();
    let publisher = firehose(&server, count);
    // The stalled connection leaves the server while the others keep receiving.
    until_connections(&server, 3).await;
    // It now reads what was already on the wire, then the 4200 close.
    assert_eq!(stalled.closed().await, 4200);
    publisher.await.unwrap();
    for task in reading {
        task.await.unwrap();
    }
}

/// LIMIT-7: the queue's memory is bounded in bytes too. With room for 10,000 frames but
/// only 512 KiB, a client that stops reading 64 KiB messages is closed with 4200 long
/// before the frame bound could be reached (200 messages), and a reader gets them all.
#[tokio::test]
async fn the_byte_bound_closes_a_stalled_client_whatever_the_frame_bound() {
    let mut config = firehose_config();
    config.queue_capacity = 10_000;
    config.queue_watermark = 10_000;
    config.queue_max_bytes = 512 * 1024;
    let server = start_with(config).await;
    let mut stalled = Client::user(&server, "stalled").await;
    stalled.subscribe("firehose").await;
    let mut reader = Client::user(&server, "reader").await;
    reader.subscribe("firehose").await;
    let count = 200u64;
    let reading = tokio::spawn(async move {
        for seq in 1..=count {
            assert_eq!(reader.recv_type("message").await["seq"], seq);
        }
    });
    let publisher = firehose(&server, count);
    until_connections(&server, 1).await;
    assert_eq!(stalled.closed().await, 4200);
    publisher.await.unwrap();
    reading.await.unwrap();
}
