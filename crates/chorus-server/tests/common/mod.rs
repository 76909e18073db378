//! Test kit for the integration tests: an in-process server on an ephemeral port, token
//! minting, a WebSocket client over real sockets and an HTTP client.
#![allow(dead_code)]

use std::time::Duration;

use chorus_server::{Config, RunningServer, Server};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub const SECRET: &str = "integration-test-secret-0123456789abcdef";
pub const API_KEY: &str = "test-api-key";
/// How long a test waits for an expected frame.
pub const WAIT: Duration = Duration::from_secs(3);

/// The configuration the tests start from: loopback, in memory, short grace.
pub fn test_config() -> Config {
    let mut config = Config::for_tests(SECRET, API_KEY);
    config.presence_grace_ms = 300;
    config.heartbeat_interval_ms = 5_000;
    config.heartbeat_timeout_ms = 10_000;
    config.shutdown_timeout_ms = 2_000;
    config
}

pub async fn start() -> RunningServer {
    start_with(test_config()).await
}

pub async fn start_with(config: Config) -> RunningServer {
    Server::start(config).await.expect("server starts")
}

/// A token signed with the test secret.
pub fn token(claims: Value) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

/// A token for user `sub` in the default tenant.
pub fn user(sub: &str) -> String {
    token(json!({"sub": sub, "profile": {"name": sub}}))
}

pub fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A WebSocket client speaking chorus.v1.
pub struct Client {
    pub ws: Ws,
    pub welcome: Value,
}

/// How a connection attempt ended before any frame.
#[derive(Debug)]
pub enum Refused {
    /// HTTP status before the upgrade.
    Http(u16),
    /// Upgraded, then closed with this code and no frame.
    Closed(u16),
}

impl Client {
    /// Connects with `token` in the query and reads `welcome`.
    pub async fn connect(server: &RunningServer, token: &str) -> Client {
        let url = format!("{}?token={token}", server.ws_url());
        let mut ws = open(&url, Some("chorus.v1")).await.expect("upgrade");
        let welcome = next_json(&mut ws).await.expect("welcome");
        assert_eq!(welcome["type"], "welcome", "{welcome}");
        Client { ws, welcome }
    }

    /// Connects as `sub` (default tenant).
    pub async fn user(server: &RunningServer, sub: &str) -> Client {
        Client::connect(server, &user(sub)).await
    }

    pub async fn send(&mut self, frame: Value) {
        self.ws
            .send(Message::text(frame.to_string()))
            .await
            .expect("send");
    }

    pub async fn send_text(&mut self, text: &str) {
        self.ws.send(Message::text(text)).await.expect("send");
    }

    /// Sends a raw text frame whose payload may be invalid UTF-8.
    pub async fn send_raw_text(&mut self, payload: Vec<u8>) {
        let frame = Frame::message(payload, OpCode::Data(Data::Text), true);
        self.ws.send(Message::Frame(frame)).await.expect("send");
    }

    pub async fn send_binary(&mut self, payload: Vec<u8>) {
        self.ws.send(Message::binary(payload)).await.expect("send");
    }

    /// The next frame as JSON; panics on timeout or close.
    pub async fn recv(&mut self) -> Value {
        match tokio::time::timeout(WAIT, next_json(&mut self.ws)).await {
            Ok(Ok(v)) => v,
            Ok(Err(close)) => panic!("connection closed ({close:?}) while expecting a frame"),
            Err(_) => panic!("no frame within {WAIT:?}"),
        }
    }

    /// The next frame, which must have this `type`.
    pub async fn recv_type(&mut self, kind: &str) -> Value {
        let frame = self.recv().await;
        assert_eq!(frame["type"], kind, "unexpected frame {frame}");
        frame
    }

    /// Skips frames until one of type `kind` arrives.
    pub async fn until(&mut self, kind: &str) -> Value {
        loop {
            let frame = self.recv().await;
            if frame["type"] == kind {
                return frame;
            }
        }
    }

    /// Sends a request and returns the next frame (its reply when nothing else is pending).
    pub async fn request(&mut self, frame: Value) -> Value {
        self.send(frame).await;
        self.recv().await
    }

    /// Subscribes and returns `subscribed`.
    pub async fn subscribe(&mut self, channel: &str) -> Value {
        let reply = self
            .request(json!({"type": "subscribe", "channel": channel}))
            .await;
        assert_eq!(reply["type"], "subscribed", "{reply}");
        reply
    }

    /// Asserts that no frame arrives for `ms`.
    pub async fn silence(&mut self, ms: u64) {
        if let Ok(next) =
            tokio::time::timeout(Duration::from_millis(ms), next_json(&mut self.ws)).await
        {
            panic!("expected silence, got {next:?}");
        }
    }

    /// Waits for the server's Close frame (skipping frames before it) and returns its code.
    pub async fn closed(&mut self) -> u16 {
        let wait = tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                match next_json(&mut self.ws).await {
                    Ok(_) => continue,
                    Err(code) => return code,
                }
            }
        });
        let code = wait
            .await
            .expect("no close within 5 s")
            .expect("connection ended without a Close frame");
        // Sends the Close reply tungstenite queued, so the server need not wait for it.
        let _ = self.ws.flush().await;
        code
    }

    /// Closes with `code` (1000: graceful).
    pub async fn close(mut self, code: u16) {
        use tokio_tungstenite::tungstenite::protocol::CloseFrame;
        let frame = CloseFrame {
            code: code.into(),
            reason: "".into(),
        };
        let _ = self.ws.send(Message::Close(Some(frame))).await;
        let _ = tokio::time::timeout(WAIT, async { while self.ws.next().await.is_some() {} }).await;
    }

    /// Drops the TCP connection without a Close frame.
    pub fn drop_abruptly(self) {
        drop(self.ws);
    }
}

/// Opens a WebSocket, offering `protocol` when given.
pub async fn open(url: &str, protocol: Option<&str>) -> Result<Ws, Refused> {
    let mut request = url.into_client_request().unwrap();
    if let Some(p) = protocol {
        request
            .headers_mut()
            .insert("sec-websocket-protocol", HeaderValue::from_str(p).unwrap());
    }
    match tokio_tungstenite::connect_async(request).await {
        Ok((ws, _)) => Ok(ws),
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            Err(Refused::Http(response.status().as_u16()))
        }
        Err(e) => panic!("connect failed: {e}"),
    }
}

/// Connects and expects a close before any frame; returns the close code.
pub async fn refused(url: &str) -> Refused {
    let mut ws = match open(url, Some("chorus.v1")).await {
        Ok(ws) => ws,
        Err(refused) => return refused,
    };
    match tokio::time::timeout(WAIT, next_json(&mut ws)).await {
        Ok(Err(Some(code))) => Refused::Closed(code),
        other => panic!("expected a close before any frame, got {other:?}"),
    }
}

/// The next text frame as JSON, or `Err(close code)` when the connection closed.
pub async fn next_json(ws: &mut Ws) -> Result<Value, Option<u16>> {
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(text))) => {
                return Ok(serde_json::from_str(text.as_str()).expect("server frame is JSON"))
            }
            Some(Ok(Message::Close(frame))) => return Err(frame.map(|f| u16::from(f.code))),
            Some(Ok(_)) => continue,
            Some(Err(_)) | None => return Err(None),
        }
    }
}

/// HTTP helpers.
pub fn http() -> reqwest::Client {
    reqwest::Client::new()
}

pub fn api(server: &RunningServer, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
    http()
        .request(method, format!("{}{path}", server.http_url()))
        .header("x-api-key", API_KEY)
}
