//! A client that stops reading is closed with 4200 while every other client gets every
//! message (LIMIT-7..9).

mod common;

use common::*;
use reqwest::{Method, StatusCode};
use serde_json::json;

#[tokio::test]
async fn a_stalled_client_is_closed_4200_and_the_others_get_everything() {
    let mut config = test_config();
    config.queue_capacity = 16;
    config.queue_watermark = 8;
    config.max_frame_bytes = 256 * 1024;
    let server = start_with(config).await;
    let mut stalled = Client::user(&server, "stalled").await;
    stalled.subscribe("firehose").await;
    let mut readers = Vec::new();
    for i in 0..3 {
        let mut c = Client::user(&server, &format!("reader-{i}")).await;
        c.subscribe("firehose").await;
        readers.push(c);
    }
    let count = 200u64;
    let payload = "x".repeat(64 * 1024);
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
    let publisher = {
        let url = server.http_url();
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
    };
    // The stalled connection leaves the server while the others keep receiving.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let stats: serde_json::Value = api(&server, Method::GET, "/api/stats")
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if stats["connections"] == 3 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "stalled client never dropped"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    // It now reads what was already on the wire, then the 4200 close.
    assert_eq!(stalled.closed().await, 4200);
    publisher.await.unwrap();
    for task in reading {
        task.await.unwrap();
    }
}
