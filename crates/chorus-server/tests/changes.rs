//! Change ingestion over HTTP (`POST /api/changes`, spec changes.md CHG-13 to CHG-18, CHG-22)
//! against the server itself: a retried report is delivered once, a key reused for another
//! change is refused, and keys are remembered across a restart of a durable server.

mod common;

use common::*;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

async fn report(server: &chorus_server::RunningServer, key: &str, body: &Value) -> (u16, Value) {
    let r = api(server, Method::POST, "/api/changes")
        .header("Idempotency-Key", key)
        .json(body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

fn shipped() -> Value {
    json!({"resource": "order", "record_id": "o1", "operation": "update",
           "data": {"status": "shipped"}})
}

/// A subscriber on both channels of record `order:o1`.
async fn watcher(server: &chorus_server::RunningServer) -> Client {
    let mut c = Client::user(server, "ann").await;
    c.subscribe("resource:order").await;
    c.subscribe("resource:order:o1").await;
    c
}

/// Reports a new change and checks that the next frames `c` gets are its pair, numbered
/// `feed_seq` on the feed: nothing was sent since the last pair (an event to wait for,
/// rather than a silence).
async fn nothing_before_the_next_report(
    server: &chorus_server::RunningServer,
    c: &mut Client,
    feed_seq: u64,
) {
    let key = format!("next-{feed_seq}");
    let mut body = shipped();
    body["data"]["status"] = json!(key);
    let (status, reply) = report(server, &key, &body).await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["feed_seq"], feed_seq, "{reply}");
    for _ in 0..2 {
        let f = c.recv_type("data_change").await;
        assert_eq!(
            f["data"]["status"], key,
            "only the new report's frames: {f}"
        );
        if f["channel"] == "resource:order" {
            assert_eq!(f["seq"], feed_seq, "{f}");
        }
    }
}

#[tokio::test]
async fn a_retried_report_is_delivered_once_with_the_first_reply() {
    let server = start().await;
    let mut c = watcher(&server).await;
    let (status, first) = report(&server, "retry-1", &shipped()).await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(first["feed_seq"], 1);
    let feed = c.recv_type("data_change").await;
    let record = c.recv_type("data_change").await;
    let mut channels = [feed["channel"].clone(), record["channel"].clone()];
    channels.sort_by_key(|v| v.to_string());
    assert_eq!(
        channels,
        [json!("resource:order"), json!("resource:order:o1")]
    );

    let (status, again) = report(&server, "retry-1", &shipped()).await;
    assert_eq!(status, 200, "CHG-14: {again}");
    assert_eq!(again, first, "CHG-14: the first report's reply, unchanged");
    nothing_before_the_next_report(&server, &mut c, 2).await;
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_key_reused_for_another_change_is_a_conflict_and_sends_nothing() {
    let server = start().await;
    let mut c = watcher(&server).await;
    let (status, _) = report(&server, "k-1", &shipped()).await;
    assert_eq!(status, 200);
    c.recv_type("data_change").await;
    c.recv_type("data_change").await;
    let mut other = shipped();
    other["data"]["status"] = json!("returned");
    let (status, body) = report(&server, "k-1", &other).await;
    assert_eq!(status, 409, "CHG-15: {body}");
    assert_eq!(body["error"]["code"], "conflict", "{body}");
    nothing_before_the_next_report(&server, &mut c, 2).await;
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn the_same_key_in_another_tenant_is_another_report() {
    let server = start().await;
    let (status, _) = report(&server, "k-t", &shipped()).await;
    assert_eq!(status, 200);
    let r = api(&server, Method::POST, "/api/changes")
        .header("Idempotency-Key", "k-t")
        .header("X-Chorus-Tenant", "acme")
        .json(
            &json!({"resource": "order", "record_id": "o1", "operation": "delete",
                      "data": {}}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK, "CHG-14/15 are per tenant");
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn keys_are_remembered_across_a_restart_of_a_durable_server() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config();
    config.memory = false;
    config.data_dir = dir.path().to_owned();
    let server = start_with(config.clone()).await;
    let (status, first) = report(&server, "durable-1", &shipped()).await;
    assert_eq!(status, 200);
    server.shutdown().await.unwrap();

    let server = start_with(config).await;
    let mut c = watcher(&server).await;
    let (status, again) = report(&server, "durable-1", &shipped()).await;
    assert_eq!((status, &again), (200, &first), "CHG-17");
    let mut other = shipped();
    other["operation"] = json!("delete");
    let (status, _) = report(&server, "durable-1", &other).await;
    assert_eq!(
        status, 409,
        "CHG-17: the key and its body survive the restart"
    );
    nothing_before_the_next_report(&server, &mut c, 2).await;
    server.shutdown().await.unwrap();
}
