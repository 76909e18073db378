//! Restarts over the same data directory: nothing acknowledged is lost, seq and versions
//! continue, epochs stay (history.md, state.md, changes.md).

mod common;

use common::*;
use reqwest::{Method, StatusCode};
use serde_json::json;

fn on_disk(dir: &std::path::Path) -> chorus_server::Config {
    let mut config = test_config();
    config.memory = false;
    config.data_dir = dir.to_owned();
    config
}

#[tokio::test]
async fn history_state_and_records_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_with(on_disk(dir.path())).await;
    let mut c = Client::user(&server, "ann").await;
    let before = c.subscribe("chat").await;
    for i in 1..=3 {
        c.request(json!({"type":"broadcast","channel":"chat","event":"n","data":i}))
            .await;
    }
    c.send(json!({"type":"state:update","id":1,"channel":"chat","key":"k","value":"v"}))
        .await;
    let ack = c.until("state:ack").await;
    c.recv_type("state:update").await;
    let r = api(&server, Method::POST, "/api/resources/post")
        .json(&json!({"id":"p1","title":"kept"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    c.close(1000).await;
    server.shutdown().await.unwrap();

    let server = start_with(on_disk(dir.path())).await;
    let mut c = Client::user(&server, "ann").await;
    let after = c
        .request(json!({"type":"subscribe","channel":"chat","since":before["position"]}))
        .await;
    assert_eq!(
        after["position"]["epoch"], before["position"]["epoch"],
        "{after}"
    );
    assert_eq!(after["position"]["seq"], 3);
    assert_eq!(after["recovered"], true);
    for i in 1..=3 {
        assert_eq!(c.recv_type("message").await["data"], i);
    }
    let next = c
        .request(json!({"type":"broadcast","channel":"chat","event":"n","data":4}))
        .await;
    assert_eq!(next["seq"], 4, "seq continues");
    let sync = c
        .request(json!({"type":"state:sync:request","channel":"chat"}))
        .await;
    assert_eq!(sync["data"], json!({"k":"v"}));
    assert_eq!(
        (sync["version"].clone(), sync["epoch"].clone()),
        (ack["version"].clone(), ack["epoch"].clone())
    );
    let got = api(&server, Method::GET, "/api/resources/post/p1")
        .send()
        .await
        .unwrap();
    assert_eq!(got.status(), StatusCode::OK);
    c.close(1000).await;
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn an_in_memory_server_starts_a_new_epoch() {
    let server = start().await;
    let mut c = Client::user(&server, "ann").await;
    let first = c.subscribe("chat").await;
    c.close(1000).await;
    server.shutdown().await.unwrap();
    let server = start().await;
    let mut c = Client::user(&server, "ann").await;
    let s = c
        .request(json!({"type":"subscribe","channel":"chat","since":first["position"]}))
        .await;
    assert_eq!(s["recovered"], false, "{s}");
}

/// Group commit (the default `--durability full` on a data directory): frames wait for one
/// log sync that covers many writes. Pipelined broadcasts from several connections are all
/// acknowledged, reach a subscriber in `seq` order with no gap, and all survive a restart.
#[tokio::test]
async fn pipelined_durable_writes_are_all_acknowledged_in_order_and_kept() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_with(on_disk(dir.path())).await;
    let mut watcher = Client::user(&server, "watcher").await;
    let before = watcher.subscribe("log").await;
    let (writers, each) = (3, 40);
    let mut clients = Vec::new();
    for w in 0..writers {
        let mut c = Client::user(&server, &format!("w{w}")).await;
        c.subscribe("log").await;
        clients.push(c);
    }
    // Every writer sends all its broadcasts before reading anything back.
    for (w, c) in clients.iter_mut().enumerate() {
        for i in 0..each {
            let frame =
                json!({"type":"broadcast","id":i,"channel":"log","event":"n","data":[w, i]});
            c.send(frame).await;
        }
    }
    for c in &mut clients {
        for i in 0..each {
            let ack = c.until("broadcast:ack").await;
            assert_eq!(ack["id"], i, "acks in request order: {ack}");
        }
    }
    let total = writers * each;
    for seq in 1..=total {
        let m = watcher.recv_type("message").await;
        assert_eq!(m["seq"], seq as u64, "no gap, no reordering: {m}");
    }
    for c in clients {
        c.close(1000).await;
    }
    watcher.close(1000).await;
    server.shutdown().await.unwrap();

    let server = start_with(on_disk(dir.path())).await;
    let mut c = Client::user(&server, "ann").await;
    let after = c
        .request(json!({"type":"subscribe","channel":"log","since":before["position"]}))
        .await;
    assert_eq!(after["recovered"], true, "{after}");
    assert_eq!(after["position"]["seq"], total as u64);
    c.close(1000).await;
    server.shutdown().await.unwrap();
}
