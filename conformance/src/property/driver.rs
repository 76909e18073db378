//! The clients of one property case over real WebSockets (the harness's [`Connection`]):
//! connect with a minted token, send frames, ping barriers, read frames with their arrival
//! time, close gracefully.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::time::Instant;

use super::ops::ClientId;
use crate::client::{ConnectOptions, Connection, Inbound};
use crate::fixture::ClientSpec;
use crate::tokens::TokenSource;
use crate::transcript::Transcript;
use crate::validate::FrameSchema;

/// How to reach and authenticate to the server.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// WebSocket URLs; client `i` uses `urls[i % len]`.
    pub urls: Vec<String>,
    /// Token minting.
    pub tokens: TokenSource,
    /// Extra upgrade headers.
    pub headers: BTreeMap<String, String>,
    /// Multiplies waits.
    pub timeout_scale: f64,
}

impl Endpoint {
    /// `ms` milliseconds, scaled.
    pub fn scaled(&self, ms: u64) -> Duration {
        Duration::from_secs_f64(ms as f64 * self.timeout_scale.max(0.01) / 1000.0)
    }
}

/// What reading a connection produced.
#[derive(Debug, Clone, PartialEq)]
pub enum Received {
    /// A JSON frame and when it arrived.
    Frame(Value, Instant),
    /// The connection ended (close code or how).
    Ended(String),
    /// Nothing before the deadline.
    Timeout,
}

/// The claims a simulated client's token carries.
pub fn client_spec(c: ClientId) -> ClientSpec {
    ClientSpec {
        user: Some(c.user().to_owned()),
        profile: c.profile_claim(),
        ..Default::default()
    }
}

/// The open connections of one case.
pub struct Session<'e> {
    endpoint: &'e Endpoint,
    schema: Arc<FrameSchema>,
    transcript: Transcript,
    conns: BTreeMap<ClientId, Connection>,
    tokens: BTreeMap<ClientId, String>,
    barriers: u64,
}

/// A barrier `ping` in flight.
#[derive(Debug, Clone)]
pub struct Ping {
    /// Its id.
    pub id: String,
}

impl<'e> Session<'e> {
    /// A session without connections.
    pub fn new(endpoint: &'e Endpoint, schema: Arc<FrameSchema>, transcript: Transcript) -> Self {
        Session {
            endpoint,
            schema,
            transcript,
            conns: BTreeMap::new(),
            tokens: BTreeMap::new(),
            barriers: 0,
        }
    }

    /// Opens `c`'s connection (its `welcome` is read like any other frame).
    pub async fn connect(&mut self, c: ClientId) -> Result<(), String> {
        let token = match self.tokens.get(&c) {
            Some(t) => t.clone(),
            None => {
                let t = self
                    .endpoint
                    .tokens
                    .token_for(c.name(), &client_spec(c))
                    .await
                    .map_err(|e| e.to_string())?;
                self.tokens.insert(c, t.clone());
                t
            }
        };
        let urls = &self.endpoint.urls;
        let url = urls
            .get(usize::from(c.0) % urls.len().max(1))
            .ok_or("no server URL")?;
        let mut opts = ConnectOptions::new(url, Some(token));
        opts.headers = self.endpoint.headers.clone();
        opts.timeout = self.endpoint.scaled(5000);
        let conn = Connection::open(
            c.name(),
            &opts,
            self.schema.clone(),
            self.transcript.clone(),
        )
        .await
        .map_err(|e| format!("{} cannot connect: {e}", c.name()))?;
        self.conns.insert(c, conn);
        Ok(())
    }

    fn conn(&mut self, c: ClientId) -> Result<&mut Connection, String> {
        self.conns
            .get_mut(&c)
            .ok_or_else(|| format!("{} is not connected", c.name()))
    }

    /// Sends one frame.
    pub async fn send(&mut self, c: ClientId, frame: &Value) -> Result<(), String> {
        let text = frame.to_string();
        self.conn(c)?.send_text(&text).await
    }

    /// Sends a `ping` whose `pong` marks that every earlier reply to `c` was sent
    /// (TRANS-26).
    pub async fn ping(&mut self, c: ClientId) -> Result<Ping, String> {
        self.barriers += 1;
        let id = format!("barrier-{}", self.barriers);
        let frame = json!({"type": "ping", "id": id});
        self.send(c, &frame).await?;
        Ok(Ping { id })
    }

    /// The next frame of `c`, waiting until `deadline`.
    pub async fn next(&mut self, c: ClientId, deadline: Instant) -> Received {
        let Ok(conn) = self.conn(c) else {
            return Received::Ended("not connected".into());
        };
        loop {
            match conn.next_until(deadline).await {
                None => return Received::Timeout,
                Some(Inbound::Text { json: Some(v), .. }) => {
                    return Received::Frame(v, Instant::now())
                }
                Some(Inbound::Text { text, json: None }) => {
                    // Not JSON: the transcript holds the schema violation; grade it as a frame.
                    return Received::Frame(Value::String(text), Instant::now());
                }
                Some(Inbound::Binary(_)) => continue,
                Some(Inbound::Close { code, reason }) => {
                    return Received::Ended(format!(
                        "closed by the server: {} {reason:?}",
                        crate::client::close_status(code)
                    ))
                }
                Some(Inbound::Gone(why)) => return Received::Ended(why),
            }
        }
    }

    /// Closes `c` with 1000 and waits briefly for the server's close.
    pub async fn close(&mut self, c: ClientId) {
        if let Some(mut conn) = self.conns.remove(&c) {
            conn.close(1000, "", self.endpoint.scaled(1000)).await;
        }
    }

    /// Closes every connection with 1000 without waiting.
    pub async fn shutdown(&mut self) {
        for (_, mut conn) in std::mem::take(&mut self.conns) {
            conn.close(1000, "", Duration::ZERO).await;
        }
    }
}
