//! Presence, rooms and cursors end to end (presence.md, rooms.md, cursors.md).

mod common;

use common::*;
use serde_json::json;

#[tokio::test]
async fn snapshot_includes_self_and_others_see_the_join() {
    let server = start().await;
    let mut ann = Client::user(&server, "ann").await;
    ann.subscribe("presence-doc").await;
    let mut bob = Client::user(&server, "bob").await;
    let s = bob.subscribe("presence-doc").await;
    let mut users: Vec<String> = s["presence"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["user_id"].as_str().unwrap().to_owned())
        .collect();
    users.sort();
    assert_eq!(users, ["ann", "bob"]);
    let joined = ann.recv_type("user:joined").await;
    assert_eq!(joined["member"]["user_id"], "bob");
    assert_eq!(joined["member"]["profile"], json!({"name":"bob"}));
}

#[tokio::test]
async fn a_second_tab_does_not_announce_a_join() {
    let server = start().await;
    let mut ann = Client::user(&server, "ann").await;
    ann.subscribe("presence-doc").await;
    let mut bob1 = Client::user(&server, "bob").await;
    bob1.subscribe("presence-doc").await;
    ann.recv_type("user:joined").await;
    let mut bob2 = Client::user(&server, "bob").await;
    bob2.subscribe("presence-doc").await;
    ann.silence(300).await;
}

#[tokio::test]
async fn graceful_close_announces_the_leave_at_once() {
    let server = start().await;
    let mut ann = Client::user(&server, "ann").await;
    ann.subscribe("presence-doc").await;
    let mut bob = Client::user(&server, "bob").await;
    bob.subscribe("presence-doc").await;
    ann.recv_type("user:joined").await;
    let started = std::time::Instant::now();
    bob.close(1000).await;
    let left = ann.recv_type("user:left").await;
    assert_eq!(left["user_id"], "bob");
    assert!(
        started.elapsed().as_millis() < 250,
        "grace must not apply to close 1000"
    );
}

#[tokio::test]
async fn abrupt_disconnect_waits_for_the_grace_period() {
    let server = start().await;
    let mut ann = Client::user(&server, "ann").await;
    ann.subscribe("presence-doc").await;
    let mut bob = Client::user(&server, "bob").await;
    bob.subscribe("presence-doc").await;
    ann.recv_type("user:joined").await;
    let started = std::time::Instant::now();
    bob.drop_abruptly();
    let left = ann.recv_type("user:left").await;
    let waited = started.elapsed().as_millis();
    assert_eq!(left["user_id"], "bob");
    assert!(
        (250..=1500).contains(&waited),
        "user:left after {waited} ms (grace 300)"
    );
}

#[tokio::test]
async fn reconnect_within_grace_is_invisible() {
    let server = start().await;
    let mut ann = Client::user(&server, "ann").await;
    ann.subscribe("presence-doc").await;
    let mut bob = Client::user(&server, "bob").await;
    bob.subscribe("presence-doc").await;
    ann.recv_type("user:joined").await;
    bob.drop_abruptly();
    let mut bob = Client::user(&server, "bob").await;
    bob.subscribe("presence-doc").await;
    ann.silence(700).await;
}

#[tokio::test]
async fn presence_update_reaches_everyone() {
    let server = start().await;
    let mut ann = Client::user(&server, "ann").await;
    ann.subscribe("presence-doc").await;
    let mut bob = Client::user(&server, "bob").await;
    bob.subscribe("presence-doc").await;
    ann.recv_type("user:joined").await;
    bob.send(json!({"type":"presence:update","id":7,"channel":"presence-doc","status":"away","data":{"tool":"pen"}}))
        .await;
    assert_eq!(
        bob.recv_type("presence:ack").await,
        json!({"type":"presence:ack","id":7,"channel":"presence-doc"})
    );
    bob.recv_type("presence:updated").await;
    let updated = ann.recv_type("presence:updated").await;
    assert_eq!(updated["member"]["status"], "away");
    assert_eq!(updated["member"]["data"], json!({"tool":"pen"}));
}

#[tokio::test]
async fn room_password_and_capacity_are_enforced() {
    let server = start().await;
    let mut ann = Client::user(&server, "ann").await;
    let s = ann
        .request(json!({"type":"subscribe","id":1,"channel":"presence-room","room":{"password":"s3cret","max_users":1}}))
        .await;
    assert_eq!(s["room"]["protected"], true, "{s}");
    assert_eq!(s["room"]["max_users"], 1);
    let mut bob = Client::user(&server, "bob").await;
    let e = bob
        .request(json!({"type":"subscribe","id":5,"channel":"presence-room","password":"wrong"}))
        .await;
    assert_eq!(e["code"], "bad_password");
    let e = bob
        .request(json!({"type":"subscribe","id":6,"channel":"presence-room","password":"s3cret"}))
        .await;
    assert_eq!(e["code"], "room_full");
}

#[tokio::test]
async fn cursors_reach_others_but_not_their_author() {
    let server = start().await;
    let mut ann = Client::user(&server, "ann").await;
    ann.subscribe("presence-canvas").await;
    let mut bob = Client::user(&server, "bob").await;
    bob.subscribe("presence-canvas").await;
    ann.recv_type("user:joined").await;
    bob.send(json!({"type":"cursor:update","channel":"presence-canvas","x":312.5,"y":88,"data":{"tool":"pen"}}))
        .await;
    let moved = ann.recv_type("cursor:moved").await;
    assert_eq!(moved["cursors"][0]["user_id"], "bob");
    assert_eq!(moved["cursors"][0]["x"], 312.5);
    bob.silence(200).await;
}
