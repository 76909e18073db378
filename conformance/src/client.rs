//! A WebSocket client for the harness: connects with the options a fixture asks for, sends
//! well-formed and deliberately malformed frames, queues what the server sends, validates
//! every server frame against the schema, and records everything in a [`Transcript`].
//! Reusable outside fixtures (property tests drive it directly).

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Weak};
use std::time::Duration;

use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use thiserror::Error;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::{CloseFrame, Frame};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::fixture::TokenPlacement;
use crate::transcript::{EventKind, Transcript};
use crate::validate::{FrameSchema, Violation};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;
/// The sending half, shared with the keep-alive task.
type Sink = Arc<tokio::sync::Mutex<SplitSink<Ws, Message>>>;

/// The id prefix of the harness's own keep-alive pings; their pongs are not queued.
pub const KEEPALIVE_ID: &str = "harness-keepalive-";

/// How to open a connection.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// The WebSocket URL (`ws://host:port/ws`).
    pub url: String,
    /// The token, if any.
    pub token: Option<String>,
    /// Where the token goes.
    pub placement: TokenPlacement,
    /// Subprotocols offered (empty: no `Sec-WebSocket-Protocol` header).
    pub protocols: Vec<String>,
    /// Extra query parameters.
    pub query: BTreeMap<String, String>,
    /// Extra headers (the run's `--header`s and the step's).
    pub headers: BTreeMap<String, String>,
    /// Time allowed for the upgrade.
    pub timeout: Duration,
    /// Send a `ping` whenever the client has sent nothing for this long (the server's
    /// heartbeat interval), so that a client a case merely keeps waiting is not closed for
    /// silence (CONN-13). `None`: the client stays silent (a case that means silence).
    pub keepalive: Option<Duration>,
}

impl ConnectOptions {
    /// Defaults: `chorus.v1` offered, token in the query, 2 s.
    pub fn new(url: &str, token: Option<String>) -> Self {
        ConnectOptions {
            url: url.to_owned(),
            token,
            placement: TokenPlacement::Query,
            protocols: vec![chorus_protocol::PROTOCOL.to_owned()],
            query: BTreeMap::new(),
            headers: BTreeMap::new(),
            timeout: Duration::from_secs(2),
            keepalive: None,
        }
    }
}

/// The upgrade did not produce a connection.
#[derive(Debug, Clone, Error)]
pub enum ConnectError {
    /// The server answered the upgrade with a non-101 status.
    #[error("upgrade refused with HTTP {status}")]
    Rejected {
        /// The status.
        status: u16,
    },
    /// TCP, TLS or protocol failure.
    #[error("cannot connect: {0}")]
    Failed(String),
    /// No answer in time.
    #[error("upgrade timed out")]
    Timeout,
}

/// Something the server did, in arrival order.
#[derive(Debug, Clone, PartialEq)]
pub enum Inbound {
    /// A text frame; `json` when it parses.
    Text {
        /// The payload.
        text: String,
        /// The parsed JSON, if it is JSON.
        json: Option<Value>,
    },
    /// A binary frame (never valid from a Chorus server).
    Binary(Vec<u8>),
    /// A close frame.
    Close {
        /// The code (None: a close frame without status).
        code: Option<u16>,
        /// The reason.
        reason: String,
    },
    /// The connection ended without a close frame (TCP closed or an I/O error).
    Gone(String),
}

impl Inbound {
    /// Whether this ends the connection.
    pub fn is_end(&self) -> bool {
        matches!(self, Inbound::Close { .. } | Inbound::Gone(_))
    }
}

/// A close status for people: `4001`, or `no status` for a close frame without one (never
/// Rust's `Some(4001)`).
pub fn close_status(code: Option<u16>) -> String {
    code.map_or_else(|| "no status".to_owned(), |c| c.to_string())
}

/// An open (or ended) connection of one named client.
pub struct Connection {
    name: String,
    sink: Option<Sink>,
    keepalive: Option<JoinHandle<()>>,
    last_send: Arc<std::sync::Mutex<Instant>>,
    inbox: mpsc::UnboundedReceiver<Inbound>,
    pending: VecDeque<Inbound>,
    reader: JoinHandle<()>,
    transcript: Transcript,
    ended: bool,
    paused: watch::Sender<bool>,
    /// The subprotocol the server selected.
    pub protocol: Option<String>,
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.reader.abort();
        if let Some(k) = &self.keepalive {
            k.abort();
        }
    }
}

fn request(opts: &ConnectOptions) -> Result<tungstenite::handshake::client::Request, ConnectError> {
    let mut url = url_with_query(&opts.url, &opts.query);
    if let (Some(t), TokenPlacement::Query) = (&opts.token, opts.placement) {
        url = url_with_query(&url, &BTreeMap::from([("token".to_owned(), t.clone())]));
    }
    let mut req = url
        .into_client_request()
        .map_err(|e| ConnectError::Failed(e.to_string()))?;
    let headers = req.headers_mut();
    let value = |s: &str| HeaderValue::from_str(s).map_err(|e| ConnectError::Failed(e.to_string()));
    if !opts.protocols.is_empty() {
        headers.insert("sec-websocket-protocol", value(&opts.protocols.join(", "))?);
    }
    if let (Some(t), TokenPlacement::Bearer) = (&opts.token, opts.placement) {
        headers.insert("authorization", value(&format!("Bearer {t}"))?);
    }
    for (k, v) in &opts.headers {
        let name = tungstenite::http::HeaderName::from_bytes(k.as_bytes())
            .map_err(|e| ConnectError::Failed(e.to_string()))?;
        headers.insert(name, value(v)?);
    }
    Ok(req)
}

/// Appends percent-encoded query parameters to a URL.
pub fn url_with_query(url: &str, query: &BTreeMap<String, String>) -> String {
    let mut out = url.to_owned();
    for (k, v) in query {
        out.push(if out.contains('?') { '&' } else { '?' });
        out.push_str(&encode(k));
        out.push('=');
        out.push_str(&encode(v));
    }
    out
}

/// Percent-encodes a query component.
pub fn encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl Connection {
    /// Opens a connection; the reader validates every server frame against `schema`.
    pub async fn open(
        name: &str,
        opts: &ConnectOptions,
        schema: Arc<FrameSchema>,
        transcript: Transcript,
    ) -> Result<Connection, ConnectError> {
        let req = request(opts)?;
        let config = WebSocketConfig::default()
            .max_message_size(None)
            .max_frame_size(None);
        let attempt = tokio_tungstenite::connect_async_with_config(req, Some(config), true);
        let (ws, response) = match tokio::time::timeout(opts.timeout, attempt).await {
            Err(_) => return Err(ConnectError::Timeout),
            Ok(Err(tungstenite::Error::Http(resp))) => {
                let status = resp.status().as_u16();
                transcript.push(
                    name,
                    EventKind::Open,
                    format!("upgrade refused: HTTP {status}"),
                );
                return Err(ConnectError::Rejected { status });
            }
            Ok(Err(e)) => return Err(ConnectError::Failed(e.to_string())),
            Ok(Ok(pair)) => pair,
        };
        let protocol = response
            .headers()
            .get("sec-websocket-protocol")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        transcript.push(
            name,
            EventKind::Open,
            format!(
                "connected (subprotocol: {})",
                protocol.as_deref().unwrap_or("none")
            ),
        );
        let (sink, stream) = ws.split();
        let (tx, inbox) = mpsc::unbounded_channel();
        let (paused, paused_rx) = watch::channel(false);
        let reader = tokio::spawn(read_loop(
            name.to_owned(),
            stream,
            tx,
            schema,
            transcript.clone(),
            paused_rx,
        ));
        let sink = Arc::new(tokio::sync::Mutex::new(sink));
        let last_send = Arc::new(std::sync::Mutex::new(Instant::now()));
        let keepalive = opts.keepalive.map(|every| {
            tokio::spawn(keep_alive(
                name.to_owned(),
                Arc::downgrade(&sink),
                last_send.clone(),
                every,
                transcript.clone(),
            ))
        });
        Ok(Connection {
            name: name.to_owned(),
            sink: Some(sink),
            keepalive,
            last_send,
            inbox,
            pending: VecDeque::new(),
            reader,
            transcript,
            ended: false,
            paused,
            protocol,
        })
    }

    /// Stops (or restarts) reading the socket. While paused, what the server sends piles up
    /// in the socket buffers and then in the server's outbound queue (LIMIT-8); sending
    /// still works.
    pub fn set_paused(&self, paused: bool) {
        let shown = if paused {
            "[the harness stops reading]"
        } else {
            "[the harness reads again]"
        };
        self.transcript.push(&self.name, EventKind::Note, shown);
        self.paused.send_replace(paused);
    }

    /// The client's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether the connection has ended (close or drop observed, or dropped by us).
    pub fn ended(&self) -> bool {
        self.ended
    }

    async fn write(&mut self, msg: Message, shown: String) -> Result<(), String> {
        self.transcript.push(&self.name, EventKind::Send, shown);
        let Some(sink) = self.sink.clone() else {
            return Err("the connection is closed".into());
        };
        let sent = sink.lock().await.send(msg).await;
        self.touch();
        sent.map_err(|e| {
            let text = format!("send failed: {e}");
            self.transcript
                .push(&self.name, EventKind::Note, text.clone());
            text
        })
    }

    /// Sends a text frame.
    pub async fn send_text(&mut self, text: &str) -> Result<(), String> {
        self.write(Message::text(text.to_owned()), shown_text(text))
            .await
    }

    /// Sends text frames back to back, flushing once; recorded as one transcript line.
    pub async fn send_texts(&mut self, texts: Vec<String>) -> Result<(), String> {
        let shown = match texts.first() {
            Some(first) => format!("[{} frames like: {}]", texts.len(), shown_text(first)),
            None => return Ok(()),
        };
        self.transcript.push(&self.name, EventKind::Send, shown);
        let Some(sink) = self.sink.clone() else {
            return Err("the connection is closed".into());
        };
        let mut sink = sink.lock().await;
        let mut result = Ok(());
        for text in texts {
            result = sink.feed(Message::text(text)).await;
            if result.is_err() {
                break;
            }
        }
        if result.is_ok() {
            result = sink.flush().await;
        }
        drop(sink);
        self.touch();
        result.map_err(|e| {
            let text = format!("send failed: {e}");
            self.transcript
                .push(&self.name, EventKind::Note, text.clone());
            text
        })
    }

    /// Sends a binary frame.
    pub async fn send_binary(&mut self, bytes: Vec<u8>) -> Result<(), String> {
        let shown = format!("[binary frame, {} bytes: {}]", bytes.len(), hex(&bytes, 32));
        self.write(Message::binary(bytes), shown).await
    }

    /// Sends a text frame whose payload is arbitrary bytes (invalid UTF-8 on purpose).
    pub async fn send_text_bytes(&mut self, bytes: Vec<u8>) -> Result<(), String> {
        let shown = format!("[text frame with raw bytes: {}]", hex(&bytes, 64));
        let frame = Frame::message(bytes, OpCode::Data(Data::Text), true);
        self.write(Message::Frame(frame), shown).await
    }

    /// Sends a close frame and waits up to `wait` for the server's close; then drops.
    pub async fn close(&mut self, code: u16, reason: &str, wait: Duration) {
        let frame = CloseFrame {
            code: code.into(),
            reason: reason.to_owned().into(),
        };
        let _ = self
            .write(
                Message::Close(Some(frame)),
                format!("[close {code} {reason:?}]"),
            )
            .await;
        let deadline = Instant::now() + wait;
        while let Some(ev) = self.next_until(deadline).await {
            if ev.is_end() {
                break;
            }
        }
        self.abandon();
    }

    /// Drops the TCP connection without a close frame.
    pub fn drop_now(&mut self) {
        self.transcript.push(
            &self.name,
            EventKind::Close,
            "[dropped by the harness, no close frame]",
        );
        self.abandon();
    }

    /// Records that the client just sent something (the keep-alive waits a whole interval
    /// after it).
    fn touch(&self) {
        *self
            .last_send
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Instant::now();
    }

    fn abandon(&mut self) {
        self.reader.abort();
        if let Some(k) = self.keepalive.take() {
            k.abort();
        }
        self.sink = None;
        self.ended = true;
    }

    /// The next inbound event, waiting until `deadline`; `None` on timeout.
    pub async fn next_until(&mut self, deadline: Instant) -> Option<Inbound> {
        if let Some(ev) = self.pending.pop_front() {
            return Some(ev);
        }
        match tokio::time::timeout_at(deadline, self.inbox.recv()).await {
            Ok(Some(ev)) => {
                if ev.is_end() {
                    self.ended = true;
                }
                Some(ev)
            }
            // The reader is gone and the queue is empty: nothing more will come.
            Ok(None) => {
                tokio::time::sleep_until(deadline).await;
                None
            }
            Err(_) => None,
        }
    }

    /// Puts events back at the front of the queue, in order (for `expect_none … matching`).
    pub fn unread(&mut self, events: Vec<Inbound>) {
        for ev in events.into_iter().rev() {
            self.pending.push_front(ev);
        }
    }

    /// Records a harness note in the transcript under this client's name.
    pub fn note(&self, text: &str) {
        self.transcript.push(&self.name, EventKind::Note, text);
    }
}

/// A frame as the transcript shows it: cut after 300 characters when longer than 2000.
pub(crate) fn shown_text(text: &str) -> String {
    const MAX: usize = 2000;
    if text.len() > MAX {
        let cut: String = text.chars().take(300).collect();
        format!("{cut}… [{} bytes in all]", text.len())
    } else {
        text.to_owned()
    }
}

fn hex(bytes: &[u8], max: usize) -> String {
    let mut s: String = bytes.iter().take(max).map(|b| format!("{b:02x}")).collect();
    if bytes.len() > max {
        s.push('…');
    }
    s
}

/// Sends `{"type":"ping","id":"harness-keepalive-N"}` whenever the client sent nothing for
/// `every`; ends with the connection (the sink is held weakly so that dropping the
/// connection closes the socket at once).
async fn keep_alive(
    name: String,
    sink: Weak<tokio::sync::Mutex<SplitSink<Ws, Message>>>,
    last_send: Arc<std::sync::Mutex<Instant>>,
    every: Duration,
    transcript: Transcript,
) {
    let last = || *last_send.lock().unwrap_or_else(|p| p.into_inner());
    for n in 0u64.. {
        loop {
            let due = last() + every;
            if Instant::now() >= due {
                break;
            }
            tokio::time::sleep_until(due).await;
        }
        let Some(sink) = sink.upgrade() else {
            return;
        };
        let text = format!(r#"{{"type":"ping","id":"{KEEPALIVE_ID}{n}"}}"#);
        transcript.push(&name, EventKind::Note, format!("[keep-alive] {text}"));
        if sink.lock().await.send(Message::text(text)).await.is_err() {
            return;
        }
        *last_send.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
    }
}

/// Whether `json` is the `pong` answering one of the harness's keep-alive pings.
fn is_keepalive_pong(json: Option<&Value>) -> bool {
    json.is_some_and(|v| {
        v["type"] == "pong"
            && v["id"]
                .as_str()
                .is_some_and(|id| id.starts_with(KEEPALIVE_ID))
    })
}

async fn read_loop(
    name: String,
    mut stream: SplitStream<Ws>,
    tx: mpsc::UnboundedSender<Inbound>,
    schema: Arc<FrameSchema>,
    transcript: Transcript,
    mut paused: watch::Receiver<bool>,
) {
    loop {
        // Paused: the socket is not polled at all (a read in progress is abandoned; the
        // stream keeps its partial frame).
        if paused.wait_for(|p| !*p).await.is_err() {
            return;
        }
        let next = tokio::select! {
            item = stream.next() => Some(item),
            _ = paused.wait_for(|p| *p) => None,
        };
        let Some(item) = next else {
            continue;
        };
        let Some(item) = item else {
            break;
        };
        let ev = match item {
            Ok(Message::Text(t)) => {
                let text = t.as_str().to_owned();
                transcript.push(&name, EventKind::Recv, shown_text(&text));
                let json = check_frame(&name, &text, &schema, &transcript);
                if is_keepalive_pong(json.as_ref()) {
                    continue;
                }
                Inbound::Text { text, json }
            }
            Ok(Message::Binary(b)) => {
                transcript.push(
                    &name,
                    EventKind::Recv,
                    format!("[binary frame, {} bytes]", b.len()),
                );
                transcript.violation(
                    &name,
                    "[binary frame]",
                    Violation {
                        message_type: None,
                        path: String::new(),
                        message: "a server must send text frames only (TRANS-6)".into(),
                    },
                );
                Inbound::Binary(b.to_vec())
            }
            Ok(Message::Close(frame)) => {
                let (code, reason) = frame
                    .map(|f| (Some(u16::from(f.code)), f.reason.as_str().to_owned()))
                    .unwrap_or((None, String::new()));
                let shown = code.map_or("close frame without code".to_owned(), |c| {
                    format!("close {c} {reason:?}")
                });
                transcript.push(&name, EventKind::Close, shown);
                let _ = tx.send(Inbound::Close { code, reason });
                return;
            }
            Ok(_) => continue,
            Err(e) => {
                let text = format!("connection ended without a close frame: {e}");
                transcript.push(&name, EventKind::Close, text.clone());
                let _ = tx.send(Inbound::Gone(text));
                return;
            }
        };
        if tx.send(ev).is_err() {
            return;
        }
    }
    let text = "connection ended without a close frame".to_owned();
    transcript.push(&name, EventKind::Close, text.clone());
    let _ = tx.send(Inbound::Gone(text));
}

/// Parses and validates one server frame, recording violations.
pub fn check_frame(
    who: &str,
    text: &str,
    schema: &FrameSchema,
    transcript: &Transcript,
) -> Option<Value> {
    match serde_json::from_str::<Value>(text) {
        Ok(v) => {
            for violation in schema.check(&v) {
                transcript.violation(who, text, violation);
            }
            Some(v)
        }
        Err(e) => {
            transcript.violation(
                who,
                text,
                Violation {
                    message_type: None,
                    path: String::new(),
                    message: format!("not JSON: {e}"),
                },
            );
            None
        }
    }
}
