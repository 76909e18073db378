//! Graceful shutdown: queued frames are flushed, then every connection gets 1001 (CONN-19).

mod common;

use common::*;
use serde_json::json;

#[tokio::test]
async fn shutdown_flushes_then_closes_1001() {
    let server = start().await;
    let mut a = Client::user(&server, "ann").await;
    let mut b = Client::user(&server, "bob").await;
    a.subscribe("chat").await;
    b.subscribe("chat").await;
    a.send(json!({"type":"broadcast","id":1,"channel":"chat","event":"e","data":"last words"}))
        .await;
    assert_eq!(a.recv_type("broadcast:ack").await["id"], 1);
    let handle = server.shutdown_handle();
    let stopped = tokio::spawn(server.wait());
    handle.shutdown();
    assert_eq!(b.recv_type("message").await["data"], "last words");
    assert_eq!(b.closed().await, 1001);
    assert_eq!(a.closed().await, 1001);
    stopped.await.unwrap().unwrap();
}

#[tokio::test]
async fn healthz_reports_shutting_down_and_new_connections_are_refused() {
    let server = start().await;
    let url = server.http_url();
    let ws_url = server.ws_url();
    let _held = Client::user(&server, "ann").await;
    server.shutdown_handle().shutdown();
    // The listener is closed: new connections fail.
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    assert!(http().get(format!("{url}/healthz")).send().await.is_err());
    let request = format!("{ws_url}?token={}", user("late"));
    assert!(tokio_tungstenite::connect_async(request).await.is_err());
}
