//! The scripted server: a loopback listener that hands every upgrade request to the case
//! runner, which accepts it (the suite then owns a WebSocket connection it drives frame by
//! frame), refuses it with an HTTP status, or lets it hang. No dependency on chorus-server:
//! the HTTP upgrade is answered by hand so that a refusal, a silent server and a dropped TCP
//! connection are all possible.

use std::time::Instant;

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::frame::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

/// An upgrade request the client made, waiting for the runner's answer.
pub struct Upgrade {
    /// When its headers arrived.
    pub at: Instant,
    /// `{path, token, token_via, protocols}` (`token_via`: `header`, `query` or `none`): what the matcher of an `accept`/`refuse` step sees.
    pub request: Value,
    key: String,
    stream: TcpStream,
}

/// Something that happened on an accepted connection.
#[derive(Debug, Clone)]
pub enum ConnEvent {
    /// A text frame.
    Text(String),
    /// A binary frame (a protocol error of the client, TRANS-5).
    Binary(usize),
    /// The client sent a Close frame.
    Closed(Option<u16>),
    /// The TCP connection ended without a Close frame.
    Ended,
}

/// What the runner asks an accepted connection to do.
#[derive(Debug)]
enum ConnOp {
    Send(String),
    Close(u16, String),
    Drop,
}

/// An accepted WebSocket connection, driven by the runner.
pub struct Conn {
    ops: mpsc::UnboundedSender<ConnOp>,
    /// Frames and closes, with the instant they arrived.
    pub events: mpsc::UnboundedReceiver<(Instant, ConnEvent)>,
}

impl Conn {
    /// Sends a text frame (ignored once the connection is gone).
    pub fn send(&self, text: String) {
        let _ = self.ops.send(ConnOp::Send(text));
    }

    /// Sends a Close frame with `code` and `reason`, then waits for the client's.
    pub fn close(&self, code: u16, reason: String) {
        let _ = self.ops.send(ConnOp::Close(code, reason));
    }

    /// Drops the TCP connection without a Close frame.
    pub fn drop_tcp(&self) {
        let _ = self.ops.send(ConnOp::Drop);
    }
}

/// The listener of one case instance.
pub struct FakeServer {
    /// `ws://127.0.0.1:PORT/ws`.
    pub url: String,
    upgrades: mpsc::UnboundedReceiver<Upgrade>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeServer {
    /// Binds an ephemeral loopback port.
    pub async fn start() -> std::io::Result<FakeServer> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("ws://{}/ws", listener.local_addr()?);
        let (tx, upgrades) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let _ = stream.set_nodelay(true);
                let tx = tx.clone();
                tokio::spawn(async move {
                    if let Some(u) = read_upgrade(stream).await {
                        let _ = tx.send(u);
                    }
                });
            }
        });
        Ok(FakeServer {
            url,
            upgrades,
            task,
        })
    }

    /// The next upgrade request, or `None` after `timeout`.
    pub async fn next_upgrade(&mut self, timeout: std::time::Duration) -> Option<Upgrade> {
        tokio::time::timeout(timeout, self.upgrades.recv())
            .await
            .ok()
            .flatten()
    }
}

/// Reads the HTTP request head (up to 16 KiB); `None` when it is not one.
async fn read_upgrade(mut stream: TcpStream) -> Option<Upgrade> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 2048];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 || buf.len() > 16 * 1024 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let at = Instant::now();
    let text = String::from_utf8_lossy(&buf).into_owned();
    let mut lines = text.split("\r\n");
    let target = lines.next()?.split(' ').nth(1)?.to_owned();
    let mut key = String::new();
    let mut protocols = Vec::new();
    let mut bearer = None;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        match name.trim().to_ascii_lowercase().as_str() {
            "sec-websocket-key" => key = value.to_owned(),
            "sec-websocket-protocol" => {
                protocols.extend(value.split(',').map(|p| Value::String(p.trim().to_owned())))
            }
            "authorization" => bearer = value.strip_prefix("Bearer ").map(str::to_owned),
            _ => {}
        }
    }
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    let query_token = query
        .split('&')
        .find_map(|kv| kv.strip_prefix("token="))
        .map(percent_decode);
    let via = match (&bearer, &query_token) {
        (Some(_), _) => "header",
        (None, Some(_)) => "query",
        (None, None) => "none",
    };
    let request = serde_json::json!({
        "path": path,
        "token": bearer.or(query_token),
        "token_via": via,
        "protocols": protocols,
    });
    Some(Upgrade {
        at,
        request,
        key,
        stream,
    })
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 3;
                        continue;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl Upgrade {
    /// Refuses the upgrade with an HTTP status and closes the TCP connection.
    pub async fn refuse(mut self, status: u16) {
        let body = "refused by the conform-client script";
        let head = format!(
            "HTTP/1.1 {status} Refused\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        let _ = self.stream.write_all(head.as_bytes()).await;
        let _ = self.stream.shutdown().await;
    }

    /// Completes the handshake (selecting `chorus.v1` when offered) and returns the
    /// connection, driven by a task of its own.
    pub async fn accept(mut self) -> Option<Conn> {
        let offered = self.request["protocols"]
            .as_array()
            .is_some_and(|p| p.iter().any(|v| v == "chorus.v1"));
        let protocol = if offered {
            "sec-websocket-protocol: chorus.v1\r\n"
        } else {
            ""
        };
        let head = format!(
            "HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\nsec-websocket-accept: {}\r\n{protocol}\r\n",
            derive_accept_key(self.key.as_bytes())
        );
        self.stream.write_all(head.as_bytes()).await.ok()?;
        let ws = WebSocketStream::from_raw_socket(self.stream, Role::Server, None).await;
        let (ops_tx, ops_rx) = mpsc::unbounded_channel();
        let (ev_tx, events) = mpsc::unbounded_channel();
        tokio::spawn(drive(ws, ops_rx, ev_tx));
        Some(Conn {
            ops: ops_tx,
            events,
        })
    }
}

async fn drive(
    mut ws: WebSocketStream<TcpStream>,
    mut ops: mpsc::UnboundedReceiver<ConnOp>,
    events: mpsc::UnboundedSender<(Instant, ConnEvent)>,
) {
    loop {
        tokio::select! {
            op = ops.recv() => match op {
                Some(ConnOp::Send(t)) => {
                    if ws.send(Message::text(t)).await.is_err() {
                        // The read side reports how it ended.
                    }
                }
                Some(ConnOp::Close(code, reason)) => {
                    let frame = CloseFrame { code: CloseCode::from(code), reason: reason.into() };
                    let _ = ws.send(Message::Close(Some(frame))).await;
                }
                Some(ConnOp::Drop) | None => return,
            },
            msg = ws.next() => {
                let now = Instant::now();
                let ev = match msg {
                    Some(Ok(Message::Text(t))) => ConnEvent::Text(t.to_string()),
                    Some(Ok(Message::Binary(b))) => ConnEvent::Binary(b.len()),
                    Some(Ok(Message::Close(f))) => {
                        let _ = events.send((now, ConnEvent::Closed(f.map(|f| u16::from(f.code)))));
                        // Let tungstenite answer the close, then end.
                        let _ = tokio::time::timeout(std::time::Duration::from_millis(500), ws.close(None)).await;
                        return;
                    }
                    Some(Ok(_)) => continue,
                    Some(Err(_)) | None => {
                        let _ = events.send((now, ConnEvent::Ended));
                        return;
                    }
                };
                let _ = events.send((now, ev));
            }
        }
    }
}
