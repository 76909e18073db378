//! Shared versioned state end to end (state.md).

mod common;

use common::*;
use serde_json::json;

#[tokio::test]
async fn updates_are_acked_and_fanned_out_with_versions() {
    let server = start().await;
    let mut ann = Client::user(&server, "ann").await;
    let mut bob = Client::user(&server, "bob").await;
    ann.subscribe("doc").await;
    bob.subscribe("doc").await;
    ann.send(
        json!({"type":"state:update","id":31,"channel":"doc","key":"title","value":"My Document"}),
    )
    .await;
    let ack = ann.until("state:ack").await;
    assert_eq!(ack["version"], 1);
    assert_eq!(ack["id"], 31);
    let update = bob.recv_type("state:update").await;
    assert_eq!(update["version"], 1);
    assert_eq!(update["from"], "ann");
    assert_eq!(update["value"], "My Document");
    assert_eq!(update["epoch"], ack["epoch"]);
}

#[tokio::test]
async fn a_stale_expected_version_is_a_conflict() {
    let server = start().await;
    let mut c = Client::user(&server, "ann").await;
    c.subscribe("game").await;
    c.send(json!({"type":"state:merge","id":1,"channel":"game","data":{"x":1}}))
        .await;
    c.until("state:ack").await;
    c.recv_type("state:merge").await;
    let e = c
        .request(json!({"type":"state:merge","id":34,"channel":"game","data":{"x":2},"expected_version":0}))
        .await;
    assert_eq!(e["code"], "conflict");
    assert_eq!(e["current"]["version"], 1);
    let sync = c
        .request(json!({"type":"state:sync:request","id":35,"channel":"game"}))
        .await;
    assert_eq!(sync["data"], json!({"x":1}));
    assert_eq!(sync["version"], 1);
}

#[tokio::test]
async fn clients_cannot_forge_a_version() {
    let server = start().await;
    let mut c = Client::user(&server, "ann").await;
    c.subscribe("doc").await;
    let e = c
        .request(
            json!({"type":"state:update","id":1,"channel":"doc","key":"k","value":1,"version":99}),
        )
        .await;
    assert_eq!(e["code"], "invalid_message");
}
