//! The WebSocket endpoint: upgrade checks (TRANS-1..3, SEC-9, CONN-1..5), then per
//! connection a reader (this task) and a writer task joined by the bounded outbound queue.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{ConnectInfo, FromRequestParts, RawQuery, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use chorus_protocol::{
    decode_client, AuthRefresh, ClientMessage, CloseAction, CloseCode, DecodeError, ErrorCode,
    ErrorFrame, RoomOptions, ServerMessage, Subscribe, PROTOCOL,
};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{Sink, SinkExt, StreamExt};
use hyper::upgrade::{OnUpgrade, Upgraded};
use hyper_util::rt::TokioIo;
use tokio::task::JoinHandle;
use tokio::time::{sleep_until, Instant};
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::{CloseFrame, Frame};
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{self, Bytes, Message, Utf8Bytes};
use tokio_tungstenite::WebSocketStream;

use crate::auth::{token_from_request, AuthError};
use crate::core::{ConnId, Fault, Faults, Session};

use super::hub::{deadline_at, now_ms, LiveGuard, Shared};
use super::outbound::{self, ConnHandle, ConnQueue, Outbound, WireFrame};
use super::{origin_allowed, query_param};

/// One connection's WebSocket: tokio-tungstenite straight on hyper's upgraded stream (which
/// is the accepted socket wrapped in `LeanIo`), without axum's `WebSocket` around it, which
/// can send neither fragments nor raw frames.
type Socket = WebSocketStream<TokioIo<Upgraded>>;

/// Frames the writer takes from the queue before one flush.
const WRITE_BATCH: usize = 64;
/// tungstenite's read buffer, allocated for the connection's life: a client frame of up to
/// this size is read into it without growing it.
const TUNGSTENITE_READ_BUFFER: usize = 128;
/// The largest payload of a data frame the server sends; a longer message goes out as
/// fragments (transport.md: a frame is a message after reassembly). tungstenite's write
/// buffer keeps, for the connection's life, the capacity of the largest frame it ever
/// formatted (the `subscribed` of a presence channel is 1.3 KiB): bounding the frame bounds
/// it at 512 bytes (a 4-byte header and this payload).
const FRAGMENT_BYTES: usize = 508;
/// How long a closing connection waits for the client's Close reply.
const CLOSE_HANDSHAKE: Duration = Duration::from_secs(2);

/// `GET {path}`: checks subprotocol and origin, upgrades, then authenticates.
pub async fn upgrade(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    upgrade: Upgrade,
) -> Response {
    let offered = offered_protocols(&headers);
    if offered.is_empty() && shared.faults.on(Fault::NoSubprotocolRefused) {
        return (StatusCode::BAD_REQUEST, "no subprotocol offered").into_response();
    }
    let foreign_ok = shared.faults.on(Fault::ForeignSubprotocolAccepted);
    if !offered.is_empty() && !offered.iter().any(|p| p == PROTOCOL) && !foreign_ok {
        // TRANS-2, with the error body of every refused HTTP request (HTTP-2).
        return super::http::ApiError::new(
            ErrorCode::InvalidMessage,
            "no supported subprotocol offered (this server speaks chorus.v1)",
        )
        .into_response();
    }
    if !origin_allowed(&shared.config, &headers) {
        // SEC-9, HTTP-2
        return super::http::ApiError::new(ErrorCode::Forbidden, "origin not allowed")
            .into_response();
    }
    let token = query_param(query.as_deref(), "token");
    let query_wins = token.is_some() && shared.faults.on(Fault::QueryTokenWins);
    let leeway = if shared.faults.on(Fault::ExpiryLeeway) {
        60_000
    } else {
        0
    };
    let presented = if query_wins {
        Ok(token.as_deref())
    } else {
        token_from_request(&headers, token.as_deref())
    };
    let verdict = presented.and_then(|token| {
        shared
            .auth
            .authenticate(token, now_ms().saturating_sub(leeway))
    });
    let frame_limit = frame_limit(&shared);
    let first_only = shared.faults.on(Fault::SubprotocolOnlyFirst);
    let selectable: &[&str] = match offered.first() {
        Some(first) if first_only && first != PROTOCOL => &[],
        _ => &[PROTOCOL],
    };
    let Upgrade {
        ws,
        on_upgrade,
        key,
    } = upgrade;
    let protocol = ws
        .protocols(selectable.iter().copied())
        .selected_protocol()
        .cloned();
    // The socket reads in chunks and gathers writes itself, with buffers that exist only
    // while bytes are in flight (net/lean_io.rs); tungstenite's own buffers, which live as
    // long as the connection, are kept small.
    let config = WebSocketConfig::default()
        .read_buffer_size(TUNGSTENITE_READ_BUFFER)
        .write_buffer_size(0)
        .max_message_size(Some(frame_limit))
        .max_frame_size(Some(frame_limit));
    let shared = shared.clone();
    let addr = peer.ip();
    tokio::spawn(async move {
        let upgraded = match on_upgrade.await {
            Ok(upgraded) => upgraded,
            Err(e) => {
                tracing::debug!(error = %e, "upgrade failed");
                return;
            }
        };
        let socket =
            WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, Some(config))
                .await;
        run(shared, socket, verdict, addr).await;
    });
    switching_protocols(&key, protocol)
}

/// The parts of an upgrade request the endpoint needs. axum's `WebSocketUpgrade` checks the
/// request (method, `Connection`, `Upgrade`, `Sec-WebSocket-Version`, key) and answers a
/// bad one with its usual rejection, and negotiates the subprotocol; the upgrade itself is
/// done here, on hyper's `OnUpgrade`, taken before axum's extractor removes it.
pub struct Upgrade {
    ws: WebSocketUpgrade,
    on_upgrade: OnUpgrade,
    key: HeaderValue,
}

impl<S: Send + Sync> FromRequestParts<S> for Upgrade {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let on_upgrade = parts.extensions.get::<OnUpgrade>().cloned();
        let ws = WebSocketUpgrade::from_request_parts(parts, state)
            .await
            .map_err(IntoResponse::into_response)?;
        // axum accepted it, so both are there for an HTTP/1.1 upgrade (the only one routed:
        // the endpoint is a GET).
        let key = parts.headers.get(header::SEC_WEBSOCKET_KEY).cloned();
        match (on_upgrade, key) {
            (Some(on_upgrade), Some(key)) => Ok(Upgrade {
                ws,
                on_upgrade,
                key,
            }),
            _ => {
                Err((StatusCode::UPGRADE_REQUIRED, "not an upgradable connection").into_response())
            }
        }
    }
}

/// The 101 answer (RFC 6455 4.2.2), with the negotiated subprotocol (TRANS-1).
fn switching_protocols(key: &HeaderValue, protocol: Option<HeaderValue>) -> Response {
    let accept = tungstenite::handshake::derive_accept_key(key.as_bytes());
    let mut response = StatusCode::SWITCHING_PROTOCOLS.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    if let Ok(accept) = HeaderValue::from_str(&accept) {
        headers.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
    }
    if let Some(protocol) = protocol {
        headers.insert(header::SEC_WEBSOCKET_PROTOCOL, protocol);
    }
    response
}

/// The largest frame read (TRANS-16, LIMIT-3).
fn frame_limit(shared: &Shared) -> usize {
    let limit = usize::try_from(shared.config.max_frame_bytes).unwrap_or(usize::MAX);
    if shared.faults.on(Fault::OversizeAccepted) {
        limit.saturating_mul(16)
    } else if shared.faults.on(Fault::FrameLimitOffByOne) {
        limit.saturating_sub(1)
    } else {
        limit
    }
}

/// The subprotocols offered in `Sec-WebSocket-Protocol` (the header may repeat).
fn offered_protocols(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|p| p.trim().to_owned())
        .filter(|p| !p.is_empty())
        .collect()
}

async fn run(
    shared: Arc<Shared>,
    socket: Socket,
    verdict: Result<Session, AuthError>,
    addr: IpAddr,
) {
    let session = match verdict {
        Ok(session) => session,
        Err(e) => {
            tracing::debug!(error = %e, "connection refused");
            return reject(socket, e.close_code()).await;
        }
    };
    let live = match shared.track(&session, addr) {
        Ok(live) => live,
        Err(refused) => {
            // CONN-22, SEC-7
            tracing::debug!(reason = refused.reason(), "connection refused");
            return reject(socket, CloseCode::ServerOverloaded).await;
        }
    };
    if shared.shutting_down() {
        return reject(socket, CloseCode::GoingAway).await;
    }
    let config = &shared.config;
    let (handle, queue) = outbound::queue(config.queue_limits());
    let expires_at = session.expires_at;
    let identity = (session.user_id.clone(), session.tenant.clone());
    let conn = shared.connect(handle.clone(), session);
    tracing::debug!(conn, user = %identity.0, tenant = %identity.1, "connected");
    let (sink, stream) = socket.split();
    let writer = tokio::spawn(write_loop(sink, queue));
    let reader = Reader {
        shared: shared.clone(),
        conn,
        handle,
        identity,
        expires_at: expires_at.map(deadline_at),
        errors: 0,
        last_inbound: Instant::now(),
    };
    // A task of its own, so that axum's upgrade task (the handshake, refusals and this
    // set-up: 2.8 KiB of future) ends here instead of living as long as the connection.
    tokio::spawn(reader.run(stream, writer, live));
}

/// Completes a refused upgrade: the close code is the whole answer (CONN-4, CONN-5).
async fn reject(mut socket: Socket, code: CloseCode) {
    let _ = tokio::time::timeout(CLOSE_HANDSHAKE, async {
        let _ = socket.send(close_message(code)).await;
        while let Some(Ok(_)) = socket.next().await {}
    })
    .await;
}

fn close_message(code: CloseCode) -> Message {
    Message::Close(Some(CloseFrame {
        code: code.code().into(),
        reason: Utf8Bytes::from_static(code.reason()),
    }))
}

/// How a connection ended, which decides whether presence is released at once (PRES-26).
#[derive(Debug, Clone, Copy, PartialEq)]
enum End {
    /// The client sent a Close frame (its code, if any).
    Client(Option<u16>),
    /// The server closed with this code.
    Server(CloseCode),
    /// The connection vanished without a Close frame.
    Lost,
}

impl End {
    /// PRES-33: released at once after a client close 1000 or a server close whose code
    /// tells the client not to reconnect (4000-4099, 1002, 1003, 1007, 1009); every other
    /// end starts the grace period.
    fn graceful(self, faults: &Faults) -> bool {
        match self {
            End::Client(code) => code == Some(CloseCode::Normal.code()),
            End::Server(code) if faults.on(Fault::TerminalCloseKeepsGrace) => {
                (4000..=4099).contains(&code.code())
            }
            End::Server(code) => code.action() == CloseAction::Stop,
            End::Lost => false,
        }
    }
}

/// The reading half of one connection, with its heartbeat and token-expiry timers.
struct Reader {
    shared: Arc<Shared>,
    conn: ConnId,
    handle: ConnHandle,
    identity: (String, String),
    expires_at: Option<Instant>,
    errors: u32,
    last_inbound: Instant,
}

/// What one turn of the read loop decided.
enum Step {
    Continue,
    Close(CloseCode),
    Ended(End),
    /// A `subscribe` with a room password, to be checked or hashed off the core's lock
    /// first.
    Password(Box<ClientMessage>),
}

impl Reader {
    async fn run(
        mut self,
        mut stream: SplitStream<Socket>,
        mut writer: JoinHandle<Option<CloseCode>>,
        live: LiveGuard,
    ) {
        let timeout = Duration::from_millis(self.shared.config.heartbeat_timeout_ms);
        let heartbeat_on = !self.shared.faults.on(Fault::NoHeartbeatTimeout);
        let expiry_on = !self.shared.faults.on(Fault::TokenExpiryIgnored);
        let mut writer_done = false;
        let end = loop {
            let heartbeat = heartbeat_on.then(|| self.last_inbound + timeout);
            let expiry = self.expires_at.filter(|_| expiry_on);
            // One timer for both deadlines (a timer is some 100 bytes of every idle
            // connection's task): the earlier one.
            let deadline = heartbeat.into_iter().chain(expiry).min();
            let step = tokio::select! {
                msg = stream.next() => self.on_message(msg),
                _ = sleep_until(deadline.unwrap_or_else(Instant::now)), if deadline.is_some() => {
                    if expiry.is_some_and(|at| at <= Instant::now()) {
                        Step::Close(CloseCode::TokenExpired) // CONN-18
                    } else {
                        Step::Close(CloseCode::HeartbeatTimeout) // CONN-13
                    }
                }
                // LIMIT-8: leave the core at once; the writer still tries to deliver the
                // Close frame for a while.
                code = self.handle.closing() => Step::Ended(End::Server(code)),
                closed = &mut writer => {
                    writer_done = true;
                    match closed {
                        Ok(Some(code)) => Step::Ended(End::Server(code)),
                        _ => Step::Ended(End::Lost),
                    }
                }
            };
            // Awaited boxed, so that the check's state does not widen every connection's
            // task for a frame few connections send.
            let step = match step {
                Step::Password(msg) => Box::pin(self.subscribe_with_password(*msg)).await,
                step => step,
            };
            match step {
                Step::Continue | Step::Password(_) => {}
                Step::Close(code) => {
                    // Through the hub: after any acknowledgement it still holds (TRANS-26).
                    self.shared.close(self.conn, code);
                    break End::Server(code);
                }
                Step::Ended(end) => break end,
            }
        };
        tracing::debug!(conn = self.conn, ?end, "connection ending");
        let graceful = end.graceful(&self.shared.faults)
            || (end == End::Client(Some(1001)) && self.shared.faults.on(Fault::Close1001Graceful));
        self.shared.disconnect(self.conn, graceful);
        drop(self.handle);
        if !writer_done {
            // Bounded: the writer gives up on a client that does not read.
            let _ = tokio::time::timeout(CLOSE_HANDSHAKE * 3, &mut writer).await;
            writer.abort();
        }
        drain(stream).await;
        drop(live);
    }

    fn on_message(&mut self, msg: Option<Result<Message, tungstenite::Error>>) -> Step {
        match msg {
            Some(Ok(Message::Text(text))) => {
                self.last_inbound = Instant::now();
                self.on_text(text.as_str())
            }
            // TRANS-15
            Some(Ok(Message::Binary(_))) if !self.shared.faults.on(Fault::BinaryAccepted) => {
                Step::Close(CloseCode::UnsupportedData)
            }
            Some(Ok(Message::Binary(_))) => Step::Continue,
            // Control frames are not activity (transport.md notes).
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => Step::Continue,
            Some(Ok(Message::Close(frame))) => {
                Step::Ended(End::Client(frame.map(|f| u16::from(f.code))))
            }
            // Never read: tungstenite gives messages, not raw frames.
            Some(Ok(Message::Frame(_))) => Step::Continue,
            Some(Err(e)) => read_error(e, &self.shared.faults),
            None => Step::Ended(End::Lost),
        }
    }

    fn on_text(&mut self, text: &str) -> Step {
        let depth = self.shared.config.max_json_depth as usize;
        let text = super::rewrite::client_text(text, &self.shared.faults);
        let protocol_error = match decode_client(&text, depth) {
            Ok(ClientMessage::AuthRefresh(refresh)) => {
                self.refresh(refresh);
                false
            }
            Ok(
                msg @ ClientMessage::Subscribe(Subscribe {
                    password: Some(_), ..
                }),
            ) => return Step::Password(Box::new(msg)),
            Ok(
                msg @ ClientMessage::Subscribe(Subscribe {
                    room:
                        Some(RoomOptions {
                            password: Some(_), ..
                        }),
                    ..
                }),
            ) => return Step::Password(Box::new(msg)),
            Ok(msg) => self.shared.handle(self.conn, msg),
            Err(e) => {
                let mut frame = decode_error_frame(&e);
                if self.shared.faults.on(Fault::ErrorWithoutChannel) {
                    frame.channel = None;
                }
                self.reply_error(frame);
                true
            }
        };
        self.after_frame(protocol_error)
    }

    /// TRANS-24: counts consecutive protocol errors.
    fn after_frame(&mut self, protocol_error: bool) -> Step {
        let keep_count = self.shared.faults.on(Fault::ErrorCountNotReset);
        self.errors = match (protocol_error, keep_count) {
            (true, _) => self.errors + 1,
            (false, true) => self.errors,
            (false, false) => 0,
        };
        let unbounded = self.shared.faults.on(Fault::ProtocolErrorsUnbounded);
        if self.errors >= self.shared.config.max_protocol_errors && !unbounded {
            Step::Close(CloseCode::TooManyErrors)
        } else {
            Step::Continue
        }
    }

    /// A `subscribe` with a room password: checked, then handed to the core.
    async fn subscribe_with_password(&mut self, msg: ClientMessage) -> Step {
        self.check_password(&msg).await;
        let protocol_error = self.shared.handle(self.conn, msg);
        self.after_frame(protocol_error)
    }

    /// ROOM-24: a room password is checked, or a new room's password hashed, on a hashing
    /// thread (net/passwords.rs), off the core's lock, and the result handed to the core before the
    /// `subscribe` it belongs to: the connection's next frame waits, the other connections
    /// do not.
    async fn check_password(&self, msg: &ClientMessage) {
        let Some(work) = self.shared.password_work(self.conn, msg) else {
            return;
        };
        if let Some(done) = self.shared.password_hashers.run(work).await {
            self.shared.password_done(self.conn, done);
        }
    }

    /// CONN-15/16: the shell verifies the token, the core applies it.
    fn refresh(&mut self, refresh: AuthRefresh) {
        let now = if self.shared.faults.on(Fault::RefreshAcceptsExpired) {
            0
        } else {
            now_ms()
        };
        match self.shared.auth.verify(&refresh.token, now) {
            Ok(session) => {
                let same =
                    (&session.user_id, &session.tenant) == (&self.identity.0, &self.identity.1);
                if same && !self.shared.faults.on(Fault::RefreshKeepsOldExpiry) {
                    self.expires_at = session.expires_at.map(deadline_at);
                }
                self.shared.refresh(self.conn, refresh.id, session);
            }
            Err(e) => {
                let frame = ErrorFrame::new(refresh.id, ErrorCode::Unauthorized, e.to_string());
                self.reply_error(frame);
            }
        }
    }

    fn reply_error(&self, frame: ErrorFrame) {
        // Through the hub, never straight into the queue: an earlier write's held
        // acknowledgement goes first (TRANS-26).
        let text = ServerMessage::Error(frame).to_json();
        if self.shared.faults.on(Fault::ErrorsOvertakeAcks) {
            self.handle.send(WireFrame::from(text), false);
            return;
        }
        self.shared.reply(self.conn, text);
    }
}

/// The `error` answering an undecodable frame (TRANS-18..22), echoing id and channel (ERR-2).
fn decode_error_frame(e: &DecodeError) -> ErrorFrame {
    e.to_error_frame()
}

/// Maps a read error onto the close code the spec gives it.
fn read_error(e: tungstenite::Error, faults: &Faults) -> Step {
    match e {
        tungstenite::Error::Utf8(_) if faults.on(Fault::Utf8Closes1002) => {
            Step::Close(CloseCode::ProtocolError)
        }
        // TRANS-17
        tungstenite::Error::Utf8(_) => Step::Close(CloseCode::InvalidPayload),
        // TRANS-16, SEC-6: tungstenite stops at the header of an oversized frame.
        tungstenite::Error::Capacity(_) => Step::Close(CloseCode::MessageTooBig),
        // Broken framing (unmasked, reserved bits, bad opcode...): 1002.
        tungstenite::Error::Protocol(p) if !is_reset(&p) => {
            tracing::debug!(error = %p, "websocket protocol error");
            Step::Close(CloseCode::ProtocolError)
        }
        other => {
            tracing::debug!(error = ?other, "read error");
            Step::Ended(End::Lost)
        }
    }
}

/// The peer vanished: no Close frame will come.
fn is_reset(p: &tungstenite::error::ProtocolError) -> bool {
    matches!(
        p,
        tungstenite::error::ProtocolError::ResetWithoutClosingHandshake
            | tungstenite::error::ProtocolError::HandshakeIncomplete
    )
}

/// Reads until the client's Close reply or EOF, bounded in time.
async fn drain(mut stream: SplitStream<Socket>) {
    let _ = tokio::time::timeout(CLOSE_HANDSHAKE, async {
        while let Some(Ok(_)) = stream.next().await {}
    })
    .await;
}

/// Writes queued frames, several per flush; ends after writing a Close frame (returning its
/// code) or when the socket fails or the queue is dropped (returning `None`).
async fn write_loop(mut sink: SplitSink<Socket, Message>, queue: ConnQueue) -> Option<CloseCode> {
    let mut queue = queue;
    let closer = queue.closer.clone();
    loop {
        let item = tokio::select! {
            biased;
            code = closer.wait() => Outbound::Close(code),
            item = queue.recv() => item?,
        };
        let close = match item {
            Outbound::Close(code) => Some(code),
            Outbound::Frame(frame) => tokio::select! {
                biased;
                // The client stopped reading and the queue overflowed meanwhile.
                code = closer.wait() => Some(code),
                written = write_batch(&mut sink, &mut queue, frame) => written.ok()?,
            },
        };
        if let Some(code) = close {
            // Boxed: the rare close path would otherwise widen every idle writer's task.
            return Box::pin(send_close(&mut sink, code)).await;
        }
    }
}

/// Feeds `first` and whatever else is queued (up to a batch), then flushes once. Returns an
/// ordered close found in the queue.
async fn write_batch(
    sink: &mut SplitSink<Socket, Message>,
    queue: &mut ConnQueue,
    first: WireFrame,
) -> Result<Option<CloseCode>, tungstenite::Error> {
    feed_text(sink, first).await?;
    let mut close = None;
    for _ in 0..WRITE_BATCH {
        match queue.try_recv() {
            Some(Outbound::Frame(frame)) => feed_text(sink, frame).await?,
            Some(Outbound::Close(code)) => {
                close = Some(code);
                break;
            }
            None => break,
        }
    }
    sink.flush().await?;
    Ok(close)
}

/// Feeds one text message: one frame, or fragments of at most [`FRAGMENT_BYTES`] when
/// longer, so that tungstenite's write buffer never grows past a fragment.
async fn feed_text<S>(sink: &mut S, text: WireFrame) -> Result<(), tungstenite::Error>
where
    S: Sink<Message, Error = tungstenite::Error> + Unpin,
{
    if text.len() <= FRAGMENT_BYTES {
        sink.feed(Message::Text(text)).await
    } else {
        // Boxed: the rarer path would otherwise widen every idle writer's task.
        Box::pin(feed_fragments(sink, text)).await
    }
}

async fn feed_fragments<S>(sink: &mut S, text: WireFrame) -> Result<(), tungstenite::Error>
where
    S: Sink<Message, Error = tungstenite::Error> + Unpin,
{
    // A clone is a reference count: the fragments share the queued bytes.
    let bytes = Bytes::from(text.clone());
    let cuts = fragment_ends(text.as_str(), FRAGMENT_BYTES);
    let mut start = 0;
    for end in cuts {
        let opcode = if start == 0 {
            OpCode::Data(Data::Text)
        } else {
            OpCode::Data(Data::Continue)
        };
        let last = end == bytes.len();
        let frame = Frame::message(bytes.slice(start..end), opcode, last);
        sink.feed(Message::Frame(frame)).await?;
        start = end;
    }
    Ok(())
}

/// Where the fragments of `text` end: each at most `max` bytes (at least 4, the longest
/// UTF-8 character), cut at character boundaries so that every fragment is valid UTF-8 on
/// its own (RFC 6455 allows a cut inside a character; not every client takes one).
fn fragment_ends(text: &str, max: usize) -> impl Iterator<Item = usize> + '_ {
    let max = max.max(4);
    let mut start = 0;
    std::iter::from_fn(move || {
        if start >= text.len() {
            return None;
        }
        let mut end = (start + max).min(text.len());
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        start = end;
        Some(end)
    })
}

async fn send_close(sink: &mut SplitSink<Socket, Message>, code: CloseCode) -> Option<CloseCode> {
    // A client that does not read may never take the Close frame; give up after a while.
    let _ = tokio::time::timeout(CLOSE_HANDSHAKE, sink.send(close_message(code))).await;
    Some(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_close_1000_and_terminal_server_codes_are_graceful() {
        let none = Faults::default();
        assert!(End::Client(Some(1000)).graceful(&none));
        assert!(!End::Client(Some(1001)).graceful(&none));
        assert!(!End::Client(None).graceful(&none));
        for terminal in [
            CloseCode::TooManyErrors,
            CloseCode::Unauthorized,
            CloseCode::Forbidden,
            CloseCode::ProtocolError,
            CloseCode::UnsupportedData,
            CloseCode::InvalidPayload,
            CloseCode::MessageTooBig,
        ] {
            assert!(End::Server(terminal).graceful(&none), "{terminal:?}");
        }
        for back in [
            CloseCode::GoingAway,
            CloseCode::InternalError,
            CloseCode::TokenExpired,
            CloseCode::SlowConsumer,
            CloseCode::ServerOverloaded,
            CloseCode::HeartbeatTimeout,
            CloseCode::ReconnectRequested,
        ] {
            assert!(!End::Server(back).graceful(&none), "{back:?}");
        }
        assert!(!End::Lost.graceful(&none));
    }

    #[test]
    fn fragments_are_bounded_cut_at_characters_and_cover_the_text() {
        let text = "é".repeat(300) + "a" + &"😀".repeat(200);
        let ends: Vec<usize> = fragment_ends(&text, FRAGMENT_BYTES).collect();
        assert!(ends.len() > 1);
        let mut start = 0;
        let mut joined = String::new();
        for &end in &ends {
            assert!(
                end > start && end - start <= FRAGMENT_BYTES,
                "{start}..{end}"
            );
            joined.push_str(&text[start..end]); // panics off a character boundary
            start = end;
        }
        assert_eq!(joined, text);
        assert_eq!(fragment_ends("", FRAGMENT_BYTES).count(), 0);
        let short: Vec<usize> = fragment_ends("abc", FRAGMENT_BYTES).collect();
        assert_eq!(short, [3]);
    }

    /// The frames a server sent, read off the wire: (opcode, fin, payload).
    async fn raw_frames(peer: &mut tokio::io::DuplexStream) -> Vec<(u8, bool, Vec<u8>)> {
        use tokio::io::AsyncReadExt;
        let mut frames = Vec::new();
        loop {
            let mut head = [0u8; 2];
            peer.read_exact(&mut head).await.unwrap();
            assert_eq!(head[1] & 0x80, 0, "server frames are not masked");
            let len = match head[1] & 0x7f {
                126 => usize::from(peer.read_u16().await.unwrap()),
                127 => usize::try_from(peer.read_u64().await.unwrap()).unwrap(),
                n => usize::from(n),
            };
            let mut payload = vec![0u8; len];
            peer.read_exact(&mut payload).await.unwrap();
            let fin = head[0] & 0x80 != 0;
            frames.push((head[0] & 0x0f, fin, payload));
            if fin {
                return frames;
            }
        }
    }

    #[tokio::test]
    async fn long_text_goes_out_as_bounded_fragments_and_short_text_whole() {
        let (mut peer, io) = tokio::io::duplex(64 * 1024);
        let config = WebSocketConfig::default().write_buffer_size(0);
        let mut socket = WebSocketStream::from_raw_socket(io, Role::Server, Some(config)).await;
        let long = "é".repeat(700) + "x";
        feed_text(&mut socket, WireFrame::from(long.clone()))
            .await
            .unwrap();
        socket.flush().await.unwrap();
        let frames = raw_frames(&mut peer).await;
        assert!(frames.len() >= 3, "{} frames", frames.len());
        let mut joined = Vec::new();
        for (i, (opcode, fin, payload)) in frames.iter().enumerate() {
            assert_eq!(
                *opcode,
                if i == 0 { 1 } else { 0 },
                "text, then continuations"
            );
            assert_eq!(*fin, i == frames.len() - 1);
            assert!(payload.len() <= FRAGMENT_BYTES);
            assert!(std::str::from_utf8(payload).is_ok(), "cut at a character");
            joined.extend_from_slice(payload);
        }
        assert_eq!(joined, long.as_bytes());
        feed_text(&mut socket, WireFrame::from("short"))
            .await
            .unwrap();
        socket.flush().await.unwrap();
        assert_eq!(raw_frames(&mut peer).await, [(1, true, b"short".to_vec())]);
    }

    #[tokio::test]
    async fn a_client_reassembles_the_fragments() {
        let (client_io, server_io) = tokio::io::duplex(64 * 1024);
        let config = WebSocketConfig::default().write_buffer_size(0);
        let mut server =
            WebSocketStream::from_raw_socket(server_io, Role::Server, Some(config)).await;
        let mut client = WebSocketStream::from_raw_socket(client_io, Role::Client, None).await;
        let long = "a".repeat(3 * FRAGMENT_BYTES + 7);
        feed_text(&mut server, WireFrame::from(long.clone()))
            .await
            .unwrap();
        server.flush().await.unwrap();
        match client.next().await {
            Some(Ok(Message::Text(text))) => assert_eq!(text.as_str(), long),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn offered_protocols_are_split_and_trimmed() {
        let mut headers = HeaderMap::new();
        headers.append(
            header::SEC_WEBSOCKET_PROTOCOL,
            "mqtt, v1.stomp".parse().unwrap(),
        );
        headers.append(header::SEC_WEBSOCKET_PROTOCOL, "chorus.v1".parse().unwrap());
        assert_eq!(
            offered_protocols(&headers),
            ["mqtt", "v1.stomp", "chorus.v1"]
        );
    }
}
