//! The SSE stream end to end (sse.md): welcome, subscribed per channel, frames identical to
//! the WebSocket ones, resume tokens and Last-Event-ID.

mod common;

use std::time::Duration;

use common::*;
use futures_util::StreamExt;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

/// One parsed SSE event.
#[derive(Debug, Clone)]
struct Event {
    event: String,
    id: Option<String>,
    data: Value,
}

struct SseClient {
    body: std::pin::Pin<Box<dyn futures_util::Stream<Item = reqwest::Result<bytes::Bytes>> + Send>>,
    buffer: String,
    comments: usize,
}

impl SseClient {
    async fn open(
        server: &chorus_server::RunningServer,
        query: &str,
        last_id: Option<&str>,
    ) -> Result<SseClient, (StatusCode, Value)> {
        let mut request = http().get(format!("{}/sse?{query}", server.http_url()));
        if let Some(id) = last_id {
            request = request.header("last-event-id", id);
        }
        let response = request.send().await.unwrap();
        if response.status() != StatusCode::OK {
            let status = response.status();
            return Err((status, response.json().await.unwrap_or(Value::Null)));
        }
        assert_eq!(response.headers()["content-type"], "text/event-stream");
        Ok(SseClient {
            body: Box::pin(response.bytes_stream()),
            buffer: String::new(),
            comments: 0,
        })
    }

    async fn next(&mut self) -> Option<Event> {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                if let Some(event) = self.parse(&block) {
                    return Some(event);
                }
                continue;
            }
            let chunk = tokio::time::timeout(WAIT, self.body.next())
                .await
                .expect("sse event in time")?;
            self.buffer
                .push_str(std::str::from_utf8(&chunk.ok()?).unwrap());
        }
    }

    fn parse(&mut self, block: &str) -> Option<Event> {
        let (mut event, mut id, mut data) = (String::new(), None, None);
        for line in block.lines() {
            if line.starts_with(':') {
                self.comments += 1;
            } else if let Some(v) = line
                .strip_prefix("event: ")
                .or_else(|| line.strip_prefix("event:"))
            {
                event = v.to_owned();
            } else if let Some(v) = line
                .strip_prefix("id: ")
                .or_else(|| line.strip_prefix("id:"))
            {
                id = Some(v.to_owned());
            } else if let Some(v) = line
                .strip_prefix("data: ")
                .or_else(|| line.strip_prefix("data:"))
            {
                data = Some(serde_json::from_str(v).expect("data is one JSON frame"));
            }
        }
        Some(Event {
            event,
            id,
            data: data?,
        })
    }
}

fn query(token: &str, channels: &[&str]) -> String {
    let mut q = format!("token={token}");
    for c in channels {
        q.push_str(&format!("&channel={}", c.replace(':', "%3A")));
    }
    q
}

async fn broadcast(server: &chorus_server::RunningServer, channel: &str, data: Value) {
    let r = api(server, Method::POST, "/api/broadcast")
        .json(&json!({"channel":channel,"event":"e","data":data}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
}

#[tokio::test]
async fn stream_starts_with_welcome_then_one_subscribed_per_channel() {
    let server = start().await;
    let mut s = SseClient::open(
        &server,
        &query(&user("ann"), &["news", "resource:post", "news"]),
        None,
    )
    .await
    .unwrap();
    let welcome = s.next().await.unwrap();
    assert_eq!(welcome.event, "welcome");
    assert_eq!(welcome.data["user"]["id"], "ann");
    let first = s.next().await.unwrap();
    assert_eq!(
        (first.event.as_str(), first.data["channel"].as_str()),
        ("subscribed", Some("news"))
    );
    assert!(first.id.is_some());
    let second = s.next().await.unwrap();
    assert_eq!(second.data["channel"], "resource:post");
    broadcast(&server, "news", json!(1)).await;
    let m = s.next().await.unwrap();
    assert_eq!(m.event, "message");
    assert_eq!(m.data["seq"], 1);
    assert_ne!(m.id, second.id);
}

#[tokio::test]
async fn last_event_id_resumes_every_channel() {
    let server = start().await;
    let q = query(&user("ann"), &["news"]);
    let mut s = SseClient::open(&server, &q, None).await.unwrap();
    s.next().await.unwrap();
    s.next().await.unwrap();
    broadcast(&server, "news", json!(1)).await;
    let last = s.next().await.unwrap().id.unwrap();
    drop(s);
    broadcast(&server, "news", json!(2)).await;
    broadcast(&server, "news", json!(3)).await;
    let mut s = SseClient::open(&server, &q, Some(&last)).await.unwrap();
    assert_eq!(s.next().await.unwrap().event, "welcome");
    let sub = s.next().await.unwrap();
    assert_eq!(sub.data["recovered"], true, "{:?}", sub.data);
    assert_eq!(s.next().await.unwrap().data["data"], 2);
    assert_eq!(s.next().await.unwrap().data["data"], 3);
}

#[tokio::test]
async fn an_unreadable_resume_token_is_not_recovered() {
    let server = start().await;
    let mut s = SseClient::open(&server, &query(&user("ann"), &["news"]), Some("garbage"))
        .await
        .unwrap();
    s.next().await.unwrap();
    assert_eq!(s.next().await.unwrap().data["recovered"], false);
}

#[tokio::test]
async fn errors_before_streaming_are_http_errors() {
    let server = start().await;
    let (status, b) = SseClient::open(&server, "channel=news", None)
        .await
        .err()
        .unwrap();
    assert_eq!(
        (status, b["error"]["code"].clone()),
        (StatusCode::UNAUTHORIZED, json!("unauthorized"))
    );
    let (status, b) = SseClient::open(&server, &query(&user("a"), &[]), None)
        .await
        .err()
        .unwrap();
    assert_eq!(
        (status, b["error"]["code"].clone()),
        (StatusCode::BAD_REQUEST, json!("invalid_message"))
    );
    let (status, b) = SseClient::open(&server, &query(&user("a"), &["presence-x"]), None)
        .await
        .err()
        .unwrap();
    assert_eq!(
        (status, b["error"]["code"].clone()),
        (StatusCode::BAD_REQUEST, json!("invalid_channel"))
    );
    let (status, b) = SseClient::open(&server, &query(&user("a"), &["private-x"]), None)
        .await
        .err()
        .unwrap();
    assert_eq!(
        (status, b["error"]["code"].clone()),
        (StatusCode::FORBIDDEN, json!("forbidden"))
    );
}

#[tokio::test]
async fn idle_streams_get_keep_alive_comments() {
    let mut config = test_config();
    config.heartbeat_interval_ms = 100;
    config.heartbeat_timeout_ms = 200;
    let server = start_with(config).await;
    let mut s = SseClient::open(&server, &query(&user("ann"), &["news"]), None)
        .await
        .unwrap();
    s.next().await.unwrap();
    s.next().await.unwrap();
    tokio::time::sleep(Duration::from_millis(350)).await;
    broadcast(&server, "news", json!(1)).await;
    s.next().await.unwrap();
    assert!(s.comments >= 1, "no keep-alive comment");
}

#[tokio::test]
async fn expiry_ends_the_stream_with_unauthorized() {
    let server = start().await;
    let t = token(json!({"sub":"ann","exp": now_secs() + 1}));
    let mut s = SseClient::open(&server, &query(&t, &["news"]), None)
        .await
        .unwrap();
    s.next().await.unwrap();
    s.next().await.unwrap();
    let e = s.next().await.unwrap();
    assert_eq!(
        (e.event.as_str(), e.data["code"].as_str()),
        ("error", Some("unauthorized"))
    );
    assert!(s.next().await.is_none());
}
