//! Channels, broadcast, grants and tenants end to end (channels.md, broadcast.md).

mod common;

use common::*;
use serde_json::json;

#[tokio::test]
async fn subscribed_reports_kind_and_position() {
    let server = start().await;
    let mut c = Client::user(&server, "u1").await;
    let s = c
        .request(json!({"type":"subscribe","id":1,"channel":"chat"}))
        .await;
    assert_eq!(s["type"], "subscribed");
    assert_eq!(s["id"], 1);
    assert_eq!(s["kind"], "public");
    assert_eq!(s["position"]["seq"], 0);
    assert!(s["position"]["epoch"]
        .as_str()
        .is_some_and(|e| !e.is_empty()));
}

#[tokio::test]
async fn broadcast_reaches_others_but_not_the_sender() {
    let server = start().await;
    let mut ann = Client::user(&server, "ann").await;
    let mut bob = Client::user(&server, "bob").await;
    ann.subscribe("chat").await;
    bob.subscribe("chat").await;
    let ack = ann
        .request(json!({"type":"broadcast","id":"b-17","channel":"chat","event":"chat:message","data":{"text":"Hello!"}}))
        .await;
    assert_eq!(ack["type"], "broadcast:ack");
    assert_eq!(ack["id"], "b-17");
    assert_eq!(ack["seq"], 1);
    let msg = bob.recv_type("message").await;
    assert_eq!(
        msg,
        json!({"type":"message","channel":"chat","event":"chat:message","data":{"text":"Hello!"},"from":"ann","ts":ack["ts"],"seq":1})
    );
    ann.silence(200).await;
}

#[tokio::test]
async fn echo_true_delivers_to_the_sender_too() {
    let server = start().await;
    let mut ann = Client::user(&server, "ann").await;
    ann.subscribe("chat").await;
    ann.send(json!({"type":"broadcast","id":1,"channel":"chat","event":"e","data":1,"echo":true}))
        .await;
    let mut kinds = vec![
        ann.recv().await["type"].clone(),
        ann.recv().await["type"].clone(),
    ];
    kinds.sort_by_key(|k| k.to_string());
    assert_eq!(kinds, [json!("broadcast:ack"), json!("message")]);
}

#[tokio::test]
async fn seq_increases_by_one_per_message() {
    let server = start().await;
    let mut ann = Client::user(&server, "ann").await;
    let mut bob = Client::user(&server, "bob").await;
    ann.subscribe("chat").await;
    bob.subscribe("chat").await;
    for i in 1..=5u64 {
        ann.send(json!({"type":"broadcast","channel":"chat","event":"n","data":i}))
            .await;
    }
    for i in 1..=5u64 {
        let m = bob.recv_type("message").await;
        assert_eq!((m["seq"].as_u64(), m["data"].as_u64()), (Some(i), Some(i)));
    }
}

#[tokio::test]
async fn broadcast_without_subscription_is_not_subscribed() {
    let server = start().await;
    let mut c = Client::user(&server, "u1").await;
    let e = c
        .request(json!({"type":"broadcast","id":"b-19","channel":"sports","event":"e","data":{}}))
        .await;
    assert_eq!(e["code"], "not_subscribed");
    assert_eq!(e["channel"], "sports");
}

#[tokio::test]
async fn private_channels_need_a_grant() {
    let server = start().await;
    let t = token(json!({"sub":"u1","channels":["private-team-*"]}));
    let mut c = Client::connect(&server, &t).await;
    c.subscribe("private-team-red").await;
    let e = c
        .request(json!({"type":"subscribe","id":5,"channel":"private-hr-payroll"}))
        .await;
    assert_eq!(e["code"], "forbidden");
    assert_eq!(e["id"], 5);
}

#[tokio::test]
async fn tenants_never_meet() {
    let server = start().await;
    let mut a = Client::connect(&server, &token(json!({"sub":"u1","tenant":"acme"}))).await;
    let mut b = Client::connect(&server, &token(json!({"sub":"u2","tenant":"globex"}))).await;
    let mut a2 = Client::connect(&server, &token(json!({"sub":"u3","tenant":"acme"}))).await;
    a.subscribe("chat").await;
    b.subscribe("chat").await;
    a2.subscribe("chat").await;
    a.send(json!({"type":"broadcast","channel":"chat","event":"e","data":"acme only"}))
        .await;
    assert_eq!(a2.recv_type("message").await["data"], "acme only");
    b.silence(300).await;
}

#[tokio::test]
async fn invalid_channel_names_are_refused() {
    let server = start().await;
    let mut c = Client::user(&server, "u1").await;
    let e = c
        .request(json!({"type":"subscribe","id":1,"channel":"a b"}))
        .await;
    assert_eq!(e["code"], "invalid_channel");
}

#[tokio::test]
async fn unsubscribe_stops_delivery() {
    let server = start().await;
    let mut ann = Client::user(&server, "ann").await;
    let mut bob = Client::user(&server, "bob").await;
    ann.subscribe("chat").await;
    bob.subscribe("chat").await;
    let u = bob
        .request(json!({"type":"unsubscribe","id":4,"channel":"chat"}))
        .await;
    assert_eq!(u, json!({"type":"unsubscribed","id":4,"channel":"chat"}));
    ann.request(json!({"type":"broadcast","channel":"chat","event":"e","data":0}))
        .await;
    bob.silence(200).await;
}

#[tokio::test]
async fn clients_cannot_broadcast_on_resource_feeds() {
    let server = start().await;
    let mut c = Client::user(&server, "u1").await;
    c.subscribe("resource:post").await;
    let e = c
        .request(
            json!({"type":"broadcast","id":"b-20","channel":"resource:post","event":"e","data":{}}),
        )
        .await;
    assert_eq!(e["code"], "forbidden");
}
