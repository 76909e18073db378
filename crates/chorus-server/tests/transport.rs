//! Bad input: every malformed frame gets the spec's error or close code, the server keeps
//! serving the other connections (transport.md, TRANS-15..24).

mod common;

use common::*;
use serde_json::json;

fn small_frames() -> chorus_server::Config {
    let mut config = test_config();
    config.max_frame_bytes = 4096;
    config.max_json_depth = 8;
    config
}

async fn assert_still_serving(server: &chorus_server::RunningServer) {
    let mut other = Client::user(server, "bystander").await;
    assert_eq!(
        other.request(json!({"type":"ping","id":1})).await["type"],
        "pong"
    );
}

#[tokio::test]
async fn malformed_json_is_invalid_json_without_id() {
    let server = start().await;
    let mut c = Client::user(&server, "u1").await;
    c.send_text(r#"{"type":"subscribe","channel":"#).await;
    let e = c.recv_type("error").await;
    assert_eq!(e["code"], "invalid_json");
    assert!(e.get("id").is_none());
    assert_eq!(c.request(json!({"type":"ping"})).await["type"], "pong");
}

#[tokio::test]
async fn non_objects_are_invalid_json() {
    let server = start().await;
    let mut c = Client::user(&server, "u1").await;
    for text in ["[1,2]", "42", "\"ping\"", "{} {}"] {
        c.send_text(text).await;
        assert_eq!(c.recv_type("error").await["code"], "invalid_json", "{text}");
    }
}

#[tokio::test]
async fn unknown_type_echoes_the_id() {
    let server = start().await;
    let mut c = Client::user(&server, "u1").await;
    let e = c
        .request(json!({"type":"room:join","id":"j1","roomId":"project-123"}))
        .await;
    assert_eq!(e["code"], "unknown_type");
    assert_eq!(e["id"], "j1");
}

#[tokio::test]
async fn missing_type_is_invalid_message() {
    let server = start().await;
    let mut c = Client::user(&server, "u1").await;
    let e = c.request(json!({"id":"x","channel":"a"})).await;
    assert_eq!(e["code"], "invalid_message");
}

#[tokio::test]
async fn missing_and_mistyped_fields_are_invalid_message() {
    let server = start().await;
    let mut c = Client::user(&server, "u1").await;
    let e = c.request(json!({"type":"subscribe","id":3})).await;
    assert_eq!(
        (e["code"].clone(), e["id"].clone()),
        (json!("invalid_message"), json!(3))
    );
    let e = c
        .request(json!({"type":"subscribe","id":4,"channel":17}))
        .await;
    assert_eq!(
        (e["code"].clone(), e["id"].clone()),
        (json!("invalid_message"), json!(4))
    );
}

#[tokio::test]
async fn forged_server_fields_are_refused() {
    let server = start().await;
    let mut c = Client::user(&server, "u1").await;
    c.subscribe("chat").await;
    for forged in ["from", "ts", "seq"] {
        let mut frame =
            json!({"type":"broadcast","id":"b1","channel":"chat","event":"say","data":{}});
        frame[forged] = json!("admin");
        let e = c.request(frame).await;
        assert_eq!(e["code"], "invalid_message", "{forged}");
        assert_eq!(e["id"], "b1");
    }
}

#[tokio::test]
async fn invalid_ids_are_refused_without_an_id() {
    let server = start().await;
    let mut c = Client::user(&server, "u1").await;
    let e = c.request(json!({"type":"ping","id":-1})).await;
    assert_eq!(e["code"], "invalid_message");
    assert!(e.get("id").is_none());
}

#[tokio::test]
async fn deep_nesting_is_invalid_json() {
    let server = start_with(small_frames()).await;
    let mut c = Client::user(&server, "u1").await;
    // Depth 8 is accepted, depth 9 refused (LIMIT-3).
    let ok = format!(
        r#"{{"type":"ping","id":"d","x":{}1{}}}"#,
        "[".repeat(7),
        "]".repeat(7)
    );
    c.send_text(&ok).await;
    // The extra member makes it invalid_message, but not invalid_json.
    assert_eq!(c.recv_type("error").await["code"], "invalid_message");
    let deep = format!(
        r#"{{"type":"ping","x":{}1{}}}"#,
        "[".repeat(8),
        "]".repeat(8)
    );
    c.send_text(&deep).await;
    let e = c.recv_type("error").await;
    assert_eq!(e["code"], "invalid_json");
    assert!(e.get("id").is_none());
}

#[tokio::test]
async fn hostile_nesting_does_not_crash_the_server() {
    let server = start().await;
    let mut c = Client::user(&server, "u1").await;
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    c.send_text(&deep).await;
    assert_eq!(c.recv_type("error").await["code"], "invalid_json");
    assert_still_serving(&server).await;
}

#[tokio::test]
async fn binary_frames_close_1003() {
    let server = start().await;
    let mut c = Client::user(&server, "u1").await;
    c.send_binary(vec![1, 2, 3]).await;
    assert_eq!(c.closed().await, 1003);
    assert_still_serving(&server).await;
}

#[tokio::test]
async fn invalid_utf8_closes_1007() {
    let server = start().await;
    let mut c = Client::user(&server, "u1").await;
    c.send_raw_text(vec![b'{', 0xff, 0xfe, b'}']).await;
    assert_eq!(c.closed().await, 1007);
    assert_still_serving(&server).await;
}

#[tokio::test]
async fn oversize_frames_close_1009() {
    let server = start_with(small_frames()).await;
    let mut c = Client::user(&server, "u1").await;
    let big = format!(r#"{{"type":"ping","id":"{}"}}"#, "x".repeat(5000));
    c.send_text(&big).await;
    assert_eq!(c.closed().await, 1009);
    assert_still_serving(&server).await;
}

#[tokio::test]
async fn a_frame_of_exactly_the_limit_is_accepted() {
    let server = start_with(small_frames()).await;
    let mut c = Client::user(&server, "u1").await;
    let head = r#"{"type":"ping","pad":""#;
    let tail = r#""}"#;
    let text = format!("{head}{}{tail}", "x".repeat(4096 - head.len() - tail.len()));
    assert_eq!(text.len(), 4096);
    c.send_text(&text).await;
    // Not closed: answered (pad is not a ping field).
    assert_eq!(c.recv_type("error").await["code"], "invalid_message");
}

#[tokio::test]
async fn twenty_consecutive_errors_close_4005() {
    let server = start().await;
    let mut c = Client::user(&server, "u1").await;
    for _ in 0..19 {
        c.send_text("nope").await;
        assert_eq!(c.recv_type("error").await["code"], "invalid_json");
    }
    c.send_text("nope").await;
    // The 20th error frame comes before the close (TRANS-24).
    assert_eq!(c.recv_type("error").await["code"], "invalid_json");
    assert_eq!(c.closed().await, 4005);
    assert_still_serving(&server).await;
}

#[tokio::test]
async fn a_good_frame_resets_the_error_count() {
    let server = start().await;
    let mut c = Client::user(&server, "u1").await;
    for round in 0..2 {
        for _ in 0..19 {
            c.send_text("nope").await;
            c.recv_type("error").await;
        }
        assert_eq!(
            c.request(json!({"type":"ping"})).await["type"],
            "pong",
            "round {round}"
        );
    }
}

#[tokio::test]
async fn pipelined_requests_are_answered_in_order() {
    let server = start().await;
    let mut c = Client::user(&server, "u1").await;
    c.send(json!({"type":"subscribe","id":1,"channel":"chat"}))
        .await;
    c.send(json!({"type":"broadcast","id":2,"channel":"chat","event":"e","data":1}))
        .await;
    c.send(json!({"type":"ping","id":3})).await;
    assert_eq!(c.recv().await["id"], 1);
    let ack = c.recv().await;
    assert_eq!(
        (ack["type"].clone(), ack["id"].clone()),
        (json!("broadcast:ack"), json!(2))
    );
    assert_eq!(c.recv().await["id"], 3);
}
