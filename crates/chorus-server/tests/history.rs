//! History pages and recovery with `since` (history.md).

mod common;

use common::*;
use serde_json::{json, Value};

async fn publish(c: &mut Client, channel: &str, n: u64) {
    for i in 1..=n {
        let ack = c
            .request(json!({"type":"broadcast","channel":channel,"event":"n","data":i}))
            .await;
        assert_eq!(ack["type"], "broadcast:ack", "{ack}");
    }
}

#[tokio::test]
async fn history_returns_the_latest_messages_ascending() {
    let server = start().await;
    let mut c = Client::user(&server, "u1").await;
    c.subscribe("chat").await;
    publish(&mut c, "chat", 5).await;
    let page = c
        .request(json!({"type":"history","id":20,"channel":"chat","limit":3}))
        .await;
    assert_eq!(page["type"], "history:page");
    let seqs: Vec<u64> = page["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, [3, 4, 5]);
    assert_eq!(page["has_more"], true);
    assert_eq!(page["position"]["seq"], 5);
}

#[tokio::test]
async fn recovery_replays_missed_messages_before_live_ones() {
    let server = start().await;
    let mut ann = Client::user(&server, "ann").await;
    let mut bob = Client::user(&server, "bob").await;
    ann.subscribe("chat").await;
    let s = bob.subscribe("chat").await;
    let position: Value = s["position"].clone();
    bob.close(1000).await;
    publish(&mut ann, "chat", 2).await;
    let mut bob = Client::user(&server, "bob").await;
    let s = bob
        .request(json!({"type":"subscribe","id":12,"channel":"chat","since":position}))
        .await;
    assert_eq!(s["recovered"], true, "{s}");
    assert_eq!(s["position"]["seq"], 2);
    assert_eq!(bob.recv_type("message").await["seq"], 1);
    assert_eq!(bob.recv_type("message").await["seq"], 2);
}

#[tokio::test]
async fn a_foreign_epoch_is_not_recovered() {
    let server = start().await;
    let mut c = Client::user(&server, "u1").await;
    let s = c
        .request(json!({"type":"subscribe","channel":"chat","since":{"epoch":"e-other","seq":3}}))
        .await;
    assert_eq!(s["recovered"], false, "{s}");
    c.silence(200).await;
}
