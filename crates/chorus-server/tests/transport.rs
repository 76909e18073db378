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

/// LIMIT-19: past its burst, a connection is read at the announced rate; nothing is refused.
#[tokio::test]
async fn a_sender_past_its_inbound_burst_is_read_at_the_rate() {
    let mut config = test_config();
    config.max_frame_bytes = 64 * 1024;
    config.inbound_burst_bytes = 64 * 1024;
    config.inbound_bytes_per_sec = 128 * 1024;
    let server = start_with(config).await;
    let mut c = Client::user(&server, "u1").await;
    c.subscribe("bulk").await;
    let started = std::time::Instant::now();
    let data = "x".repeat(60_000);
    for i in 0..3 {
        c.send(json!({"type":"broadcast","id":i,"channel":"bulk","event":"e","data":data}))
            .await;
    }
    c.send(json!({"type":"ping","id":"last"})).await;
    let mut acks = 0;
    loop {
        let frame = c.recv().await;
        match frame["type"].as_str() {
            Some("broadcast:ack") => acks += 1,
            Some("pong") => break,
            _ => panic!("unexpected {frame}"),
        }
    }
    assert_eq!(acks, 3, "every frame accepted, only read slower");
    // 180 KB sent, 64 KiB of burst (already dented by the upgrade and the subscribe):
    // about 0.9 s at 128 KiB/s.
    let took = started.elapsed();
    assert!(took >= std::time::Duration::from_millis(800), "{took:?}");
}

/// A connection whose first request never completes its headers is closed.
#[tokio::test]
async fn a_half_open_upgrade_is_closed_after_the_header_timeout() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut config = test_config();
    config.http_header_timeout_ms = 300;
    let server = start_with(config).await;
    let mut tcp = tokio::net::TcpStream::connect(server.local_addr())
        .await
        .unwrap();
    tcp.write_all(b"GET /ws HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n")
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let mut buf = [0u8; 1024];
    let read = tokio::time::timeout(std::time::Duration::from_secs(5), tcp.read(&mut buf))
        .await
        .expect("closed by the server");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    assert!(started.elapsed() >= std::time::Duration::from_millis(200));
    assert_still_serving(&server).await;
}
