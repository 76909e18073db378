//! The client task: owns the socket, the timers and the trackers; connects, runs a
//! session, and reacts to how it ended (spec/client.md). The application talks to it
//! through [`Command`]s.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use chorus_protocol::{
    AuthRefresh, Capability, ChannelName, ClientMessage, ErrorCode, Ping, RequestId, ServerMessage,
    StateSnapshot, StreamItem, Unsubscribe, Welcome,
};
use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode as WsCloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::backoff::{Backoff, STABLE_AFTER};
use crate::channel::{Channel, SubscribeOptions};
use crate::decode::{decode, error_code, Inbound};
use crate::error::{RequestError, TokenError};
use crate::faults::Fault;
use crate::reaction::{react, Ending, Reaction};
use crate::tracker::{Outcome, Tracked};
use crate::{ClientEvent, Options, Status, StopReason};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;
type Reply = oneshot::Sender<Result<ServerMessage, RequestError>>;

/// What the handles ask the task to do.
#[derive(Debug)]
pub(crate) enum Command {
    Subscribe {
        channel: ChannelName,
        options: SubscribeOptions,
        reply: oneshot::Sender<Result<Channel, RequestError>>,
    },
    Unsubscribe {
        channel: ChannelName,
        reply: oneshot::Sender<Result<(), RequestError>>,
    },
    Request {
        frame: ClientMessage,
        reply: Reply,
    },
    /// A frame without a reply (`cursor:update`); dropped while offline.
    Fire {
        frame: ClientMessage,
    },
    Close {
        reply: oneshot::Sender<()>,
    },
}

/// Why the client sent a request of its own.
#[derive(Debug)]
enum Internal {
    Subscribe(ChannelName),
    Resync(ChannelName),
    Ping,
    Refresh,
}

/// A request of the application, not yet sent.
#[derive(Debug)]
struct Outgoing {
    frame: ClientMessage,
    reply: Reply,
}

/// A request sent on the current connection, awaiting its reply.
#[derive(Debug)]
enum Pending {
    User(Outgoing),
    Unsubscribe(oneshot::Sender<Result<(), RequestError>>),
}

pub(crate) struct Driver {
    options: Options,
    commands: mpsc::UnboundedReceiver<Command>,
    /// A sender for the handles the driver creates ([`Channel`]).
    handle_tx: mpsc::UnboundedSender<Command>,
    status: watch::Sender<Status>,
    events: broadcast::Sender<ClientEvent>,
    tracked: BTreeMap<ChannelName, Tracked>,
    /// Requests waiting for an open connection.
    queue: VecDeque<Outgoing>,
    /// The client's own frames, sent before the queue.
    urgent: VecDeque<(ClientMessage, Option<Internal>)>,
    pending: HashMap<u64, Pending>,
    internal: HashMap<u64, Internal>,
    next_id: u64,
    backoff: Backoff,
    token: Option<String>,
    welcome: Option<Arc<Welcome>>,
    /// CLIENT-17: no `broadcast` before this instant.
    broadcast_hold: Option<Instant>,
    last_sent: Instant,
    last_recv: Instant,
    refresh_at: Option<Instant>,
    refreshing: Option<JoinHandle<Result<String, TokenError>>>,
    closing: Option<oneshot::Sender<()>>,
    /// CURS-18: when each channel's last `cursor:update` went out, and the newest position
    /// waiting for the next interval.
    cursor_sent: HashMap<ChannelName, Instant>,
    cursor_waiting: BTreeMap<ChannelName, ClientMessage>,
}

impl Driver {
    pub fn new(
        options: Options,
        commands: mpsc::UnboundedReceiver<Command>,
        handle_tx: mpsc::UnboundedSender<Command>,
        status: watch::Sender<Status>,
        events: broadcast::Sender<ClientEvent>,
    ) -> Self {
        let backoff = Backoff::new(options.seed, options.faults.clone());
        let token = options.token.clone();
        Driver {
            options,
            commands,
            handle_tx,
            status,
            events,
            tracked: BTreeMap::new(),
            queue: VecDeque::new(),
            urgent: VecDeque::new(),
            pending: HashMap::new(),
            internal: HashMap::new(),
            next_id: 1,
            backoff,
            token,
            welcome: None,
            broadcast_hold: None,
            last_sent: Instant::now(),
            last_recv: Instant::now(),
            refresh_at: None,
            refreshing: None,
            closing: None,
            cursor_sent: HashMap::new(),
            cursor_waiting: BTreeMap::new(),
        }
    }

    fn emit(&self, event: ClientEvent) {
        tracing::debug!(?event, "chorus client event");
        let _ = self.events.send(event);
    }

    fn has(&self, fault: Fault) -> bool {
        self.options.faults.has(fault)
    }

    /// Runs until the application closes the client or a terminal condition stops it.
    pub async fn run(mut self) {
        if self.token.is_none() && self.options.provider.is_some() {
            if let Err(e) = self.fetch_token().await {
                return self.stop(StopReason::NoToken(e.0));
            }
        }
        loop {
            let attempt = self.backoff.attempt();
            self.set_status(Status::Connecting { attempt });
            self.emit(ClientEvent::Connecting { attempt });
            let ending = match self.connect().await {
                Ok(mut ws) => {
                    let ending = self.session(&mut ws).await;
                    self.end_connection(&mut ws, &ending).await;
                    ending
                }
                Err(ending) => ending,
            };
            self.disconnected();
            if self.closing.is_some() {
                return self.stop(StopReason::ClosedByClient);
            }
            let reaction = react(&ending, &self.options.faults);
            tracing::info!(?ending, ?reaction, "chorus connection ended");
            self.emit(ClientEvent::Disconnected {
                ending: ending.clone(),
                reaction,
            });
            match reaction {
                Reaction::Stop => return self.stop(StopReason::Terminal(ending)),
                Reaction::RefreshToken => {
                    if self.has(Fault::ReuseExpiredToken) {
                        continue;
                    }
                    match self.options.provider {
                        Some(_) => {
                            if let Err(e) = self.fetch_token().await {
                                return self.stop(StopReason::NoToken(e.0));
                            }
                        }
                        _ => {
                            return self.stop(StopReason::NoToken(
                                "the token expired and no token provider is set".into(),
                            ))
                        }
                    }
                }
                Reaction::Immediately => {}
                Reaction::Backoff => {
                    let attempt = self.backoff.attempt();
                    let delay = self.backoff.next_delay();
                    self.set_status(Status::Waiting { attempt, delay });
                    self.emit(ClientEvent::Waiting { attempt, delay });
                    if !self.wait(delay).await {
                        return self.stop(StopReason::ClosedByClient);
                    }
                }
            }
        }
    }

    fn set_status(&self, status: Status) {
        self.status.send_replace(status);
    }

    fn stop(&mut self, reason: StopReason) {
        let reason = match reason {
            StopReason::NoToken(_) if self.closing.is_some() => StopReason::ClosedByClient,
            other => other,
        };
        let text = reason.to_string();
        for (_, out) in self.queue.drain(..).map(|o| ((), o)) {
            let _ = out.reply.send(Err(RequestError::Stopped(text.clone())));
        }
        for (_, p) in self.pending.drain() {
            match p {
                Pending::User(o) => {
                    let _ = o.reply.send(Err(RequestError::Stopped(text.clone())));
                }
                Pending::Unsubscribe(r) => {
                    let _ = r.send(Ok(()));
                }
            }
        }
        for t in self.tracked.values_mut() {
            t.stop(&text);
        }
        // Dropping the trackers ends every channel's event stream.
        self.tracked.clear();
        self.set_status(Status::Stopped(reason.clone()));
        self.emit(ClientEvent::Stopped { reason });
        if let Some(reply) = self.closing.take() {
            let _ = reply.send(());
        }
    }

    async fn fetch_token(&mut self) -> Result<(), TokenError> {
        let Some(provider) = self.options.provider.clone() else {
            return Ok(());
        };
        // Keep serving the handles while the application finds a token.
        let fetch = provider.token();
        tokio::pin!(fetch);
        let token = loop {
            tokio::select! {
                t = &mut fetch => break t?,
                cmd = self.commands.recv() => {
                    self.command(cmd, false);
                    if self.closing.is_some() {
                        return Err(TokenError("closed while waiting for a token".into()));
                    }
                }
            }
        };
        self.token = Some(token);
        Ok(())
    }

    /// Waits out a backoff delay while serving the handles; false when the client closed.
    async fn wait(&mut self, delay: Duration) -> bool {
        let deadline = Instant::now() + delay;
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => return true,
                cmd = self.commands.recv() => {
                    self.command(cmd, false);
                    if self.closing.is_some() {
                        return false;
                    }
                }
            }
        }
    }

    fn request_url(&self) -> Result<tungstenite::handshake::client::Request, String> {
        let mut url = self.options.url.clone();
        if let (Some(token), false) = (&self.token, self.options.token_in_header) {
            let sep = if url.contains('?') { '&' } else { '?' };
            url = format!("{url}{sep}token={}", encode_query(token));
        }
        let mut request = url.into_client_request().map_err(|e| e.to_string())?;
        let headers = request.headers_mut();
        headers.insert(
            "Sec-WebSocket-Protocol",
            HeaderValue::from_static(chorus_protocol::PROTOCOL),
        );
        if let (Some(token), true) = (&self.token, self.options.token_in_header) {
            let value = HeaderValue::from_str(&format!("Bearer {token}"))
                .map_err(|e| format!("token is not a header value: {e}"))?;
            headers.insert("Authorization", value);
        }
        Ok(request)
    }

    /// Opens a connection and reads its `welcome` (CLIENT-1), serving the handles meanwhile.
    async fn connect(&mut self) -> Result<Ws, Ending> {
        let request = self
            .request_url()
            .map_err(|reason| Ending::ConnectFailed { reason })?;
        let deadline = Instant::now() + self.options.connect_timeout;
        let upgrade = tokio_tungstenite::connect_async(request);
        tokio::pin!(upgrade);
        let mut ws = loop {
            tokio::select! {
                r = &mut upgrade => match r {
                    Ok((ws, _)) => break ws,
                    Err(tungstenite::Error::Http(response)) => {
                        return Err(Ending::Refused { status: response.status().as_u16() })
                    }
                    Err(e) => return Err(Ending::ConnectFailed { reason: e.to_string() }),
                },
                _ = tokio::time::sleep_until(deadline) => {
                    return Err(Ending::ConnectFailed { reason: "connect timeout".into() })
                }
                cmd = self.commands.recv() => {
                    self.command(cmd, false);
                    if self.closing.is_some() {
                        return Err(Ending::ClosedByClient);
                    }
                }
            }
        };
        self.last_recv = Instant::now();
        self.last_sent = Instant::now();
        if self.has(Fault::NoWelcomeWait) {
            self.resubscribe();
            self.flush(&mut ws).await?;
        }
        loop {
            tokio::select! {
                frame = ws.next() => match frame {
                    Some(Ok(Message::Text(text))) => match decode(text.as_str()) {
                        Inbound::Frame { message, had_unknown } => match *message {
                            ServerMessage::Welcome(w) => {
                                if had_unknown && self.has(Fault::CrashOnUnknownCapability) {
                                    return Err(self.crash("unknown capability or limit in welcome"));
                                }
                                self.welcomed(w);
                                return Ok(ws);
                            }
                            other => tracing::warn!(kind = other.type_name(), "frame before welcome ignored"),
                        },
                        other => tracing::warn!(?other, "frame before welcome ignored"),
                    },
                    Some(Ok(Message::Close(frame))) => return Err(closed(frame)),
                    Some(Ok(_)) => {}
                    Some(Err(_)) | None => return Err(Ending::Dropped),
                },
                _ = tokio::time::sleep_until(deadline) => {
                    return Err(Ending::ConnectFailed { reason: "no welcome in time".into() })
                }
                cmd = self.commands.recv() => {
                    self.command(cmd, false);
                    if self.closing.is_some() {
                        return Ok(ws);
                    }
                }
            }
        }
    }

    /// A fault that stops the client as a crash would; the application sees it stopped.
    fn crash(&mut self, why: &str) -> Ending {
        tracing::error!(why, "fault: client crashes");
        self.closing = None;
        Ending::Closed {
            code: 1002,
            reason: format!("client crashed: {why}"),
        }
    }

    fn welcomed(&mut self, welcome: Welcome) {
        self.backoff.welcomed();
        self.schedule_refresh(welcome.expires_at);
        let welcome = Arc::new(welcome);
        self.welcome = Some(welcome.clone());
        self.set_status(Status::Open(welcome.clone()));
        self.emit(ClientEvent::Open { welcome });
    }

    fn capable(&self, capability: Capability) -> bool {
        self.welcome
            .as_ref()
            .is_some_and(|w| crate::decode::announces(w, capability))
    }

    /// One open connection, until it ends.
    async fn session(&mut self, ws: &mut Ws) -> Ending {
        if self.closing.is_some() {
            return Ending::ClosedByClient;
        }
        let Some(welcome) = self.welcome.clone() else {
            return Ending::ConnectFailed {
                reason: "no welcome".into(),
            };
        };
        let interval = Duration::from_millis(welcome.heartbeat.interval_ms.max(1));
        let timeout = Duration::from_millis(welcome.heartbeat.timeout_ms.max(1));
        let cursor_interval = Duration::from_millis(welcome.limits.cursor_interval_ms);
        let mut stable_at = Some(Instant::now() + STABLE_AFTER);
        if !self.has(Fault::NoWelcomeWait) {
            self.resubscribe();
        }
        loop {
            self.release_cursors(cursor_interval);
            if let Err(ending) = self.flush(ws).await {
                return ending;
            }
            if self.closing.is_some() {
                return Ending::ClosedByClient;
            }
            let ping_at = self.last_sent + interval;
            let dead_at = self.last_recv + timeout;
            let hold = self.broadcast_hold.filter(|_| self.queue_has_broadcast());
            let refresh_at = self.refresh_at.filter(|_| self.refreshing.is_none());
            let cursor_at = self.cursor_due(cursor_interval);
            tokio::select! {
                frame = ws.next() => {
                    self.last_recv = Instant::now();
                    match frame {
                        Some(Ok(Message::Text(text))) => {
                            if let Some(ending) = self.on_text(text.as_str()) {
                                return ending;
                            }
                        }
                        Some(Ok(Message::Close(frame))) => return closed(frame),
                        Some(Ok(_)) => {}
                        Some(Err(e)) => {
                            tracing::debug!(error = %e, "socket error");
                            return Ending::Dropped;
                        }
                        None => return Ending::Dropped,
                    }
                }
                cmd = self.commands.recv() => self.command(cmd, true),
                _ = tokio::time::sleep_until(ping_at), if !self.has(Fault::NoHeartbeat) => {
                    // CLIENT-14: nothing sent for a whole interval.
                    self.urgent.push_back((ClientMessage::Ping(Ping { id: None }), Some(Internal::Ping)));
                }
                _ = tokio::time::sleep_until(dead_at), if !self.has(Fault::NoPongTimeout) => {
                    tracing::warn!(?timeout, "nothing received: connection dead");
                    return Ending::HeartbeatTimeout; // CLIENT-15
                }
                _ = sleep_opt(stable_at), if stable_at.is_some() => {
                    self.backoff.stable(); // CLIENT-4
                    stable_at = None;
                }
                _ = sleep_opt(hold), if hold.is_some() => self.broadcast_hold = None,
                _ = sleep_opt(cursor_at), if cursor_at.is_some() => {}
                _ = sleep_opt(refresh_at), if refresh_at.is_some() => self.start_refresh(),
                token = join_opt(&mut self.refreshing), if self.refreshing.is_some() => {
                    self.refreshing = None;
                    self.refresh_at = None;
                    match token {
                        Ok(Ok(token)) => {
                            self.token = Some(token.clone());
                            self.urgent.push_back((
                                ClientMessage::AuthRefresh(AuthRefresh { id: None, token }),
                                Some(Internal::Refresh),
                            ));
                        }
                        Ok(Err(e)) => self.emit(ClientEvent::TokenRefreshFailed { reason: e.0 }),
                        Err(e) => self.emit(ClientEvent::TokenRefreshFailed { reason: e.to_string() }),
                    }
                }
            }
        }
    }

    /// Closes the socket the way the ending calls for.
    async fn end_connection(&mut self, ws: &mut Ws, ending: &Ending) {
        match ending {
            Ending::ClosedByClient if self.has(Fault::NoCloseFrame) => {}
            Ending::ClosedByClient => {
                // CLIENT-9: 1000, then wait briefly for the server's Close.
                let frame = CloseFrame {
                    code: WsCloseCode::Normal,
                    reason: "".into(),
                };
                let _ = tokio::time::timeout(Duration::from_secs(2), async {
                    let _ = ws.close(Some(frame)).await;
                    while let Some(Ok(_)) = ws.next().await {}
                })
                .await;
            }
            Ending::Closed { .. } => {
                // Send the Close reply tungstenite queued.
                let _ = tokio::time::timeout(Duration::from_millis(500), ws.flush()).await;
            }
            Ending::HeartbeatTimeout => {
                // CLIENT-15: close the dead connection before opening the next one, with the
                // registry's code for silence; no wait for a reply that will not come.
                let frame = CloseFrame {
                    code: WsCloseCode::from(4300),
                    reason: "".into(),
                };
                let _ =
                    tokio::time::timeout(Duration::from_millis(200), ws.close(Some(frame))).await;
                if let MaybeTlsStream::Plain(tcp) = ws.get_mut() {
                    use tokio::io::AsyncWriteExt;
                    let _ = tokio::time::timeout(Duration::from_millis(100), tcp.shutdown()).await;
                }
                // A short grace for the peer's Close or EOF, so that the close is seen before
                // the next upgrade; a dead peer costs these 50 ms.
                let _ = tokio::time::timeout(Duration::from_millis(50), async {
                    while let Some(Ok(_)) = ws.next().await {}
                })
                .await;
            }
            _ => {}
        }
    }

    /// The connection is gone: in-flight requests have an unknown outcome (CLIENT-18).
    fn disconnected(&mut self) {
        self.welcome = None;
        self.urgent.clear();
        self.cursor_waiting.clear();
        self.internal.clear();
        self.refresh_at = None;
        if let Some(task) = self.refreshing.take() {
            task.abort();
        }
        let mut pending: Vec<(u64, Pending)> = self.pending.drain().collect();
        pending.sort_by_key(|(id, _)| *id);
        let mut retry = Vec::new();
        for (_, p) in pending {
            match p {
                Pending::User(o)
                    if self.has(Fault::RetryUnknownOutcome)
                        && matches!(o.frame, ClientMessage::Broadcast(_)) =>
                {
                    retry.push(o)
                }
                Pending::User(o) => {
                    let _ = o.reply.send(Err(RequestError::OutcomeUnknown));
                }
                Pending::Unsubscribe(r) => {
                    let _ = r.send(Ok(()));
                }
            }
        }
        for o in retry.into_iter().rev() {
            self.queue.push_front(o);
        }
        let faults = self.options.faults.clone();
        for t in self.tracked.values_mut() {
            t.disconnected(&faults);
        }
    }

    /// Queues a subscribe for every tracked channel (CLIENT-10, CLIENT-11, CLIENT-13).
    fn resubscribe(&mut self) {
        let recovery = self.capable(Capability::Recovery);
        let state = self.capable(Capability::State);
        let faults = self.options.faults.clone();
        for t in self.tracked.values() {
            if t.ever_subscribed && faults.has(Fault::NoResubscribe) {
                continue;
            }
            self.urgent.push_back((
                t.subscribe_frame(recovery, state, &faults),
                Some(Internal::Subscribe(t.name.clone())),
            ));
        }
    }

    /// The earliest instant a waiting cursor may go out.
    fn cursor_due(&self, interval: Duration) -> Option<Instant> {
        self.cursor_waiting
            .keys()
            .map(|c| {
                self.cursor_sent
                    .get(c)
                    .map_or_else(Instant::now, |t| *t + interval)
            })
            .min()
    }

    /// Moves the waiting cursors whose interval has passed to the send queue.
    fn release_cursors(&mut self, interval: Duration) {
        let now = Instant::now();
        let due: Vec<ChannelName> = self
            .cursor_waiting
            .keys()
            .filter(|c| {
                self.cursor_sent
                    .get(*c)
                    .is_none_or(|t| *t + interval <= now)
            })
            .cloned()
            .collect();
        for channel in due {
            if let Some(frame) = self.cursor_waiting.remove(&channel) {
                self.cursor_sent.insert(channel, now);
                self.urgent.push_back((frame, None));
            }
        }
    }

    fn queue_has_broadcast(&self) -> bool {
        self.queue
            .iter()
            .any(|o| matches!(o.frame, ClientMessage::Broadcast(_)))
    }

    /// One command from a handle. `open`: a connection with `welcome` is up.
    fn command(&mut self, cmd: Option<Command>, open: bool) {
        let Some(cmd) = cmd else {
            // Every handle is gone: nobody can use the client any more.
            let (reply, _) = oneshot::channel();
            self.closing = Some(reply);
            return;
        };
        match cmd {
            Command::Close { reply } => self.closing = Some(reply),
            Command::Subscribe {
                channel,
                options,
                reply,
            } => {
                if self.tracked.contains_key(&channel) {
                    let _ = reply.send(Err(RequestError::AlreadySubscribed));
                    return;
                }
                let t = Tracked::new(channel.clone(), options, self.handle_tx.clone(), reply);
                if open {
                    let frame = t.subscribe_frame(
                        self.capable(Capability::Recovery),
                        self.capable(Capability::State),
                        &self.options.faults,
                    );
                    self.urgent
                        .push_back((frame, Some(Internal::Subscribe(channel.clone()))));
                }
                self.tracked.insert(channel, t);
            }
            Command::Unsubscribe { channel, reply } => {
                let was = self
                    .tracked
                    .remove(&channel)
                    .is_some_and(|t| t.ever_subscribed);
                if open && was {
                    let id = self.take_id();
                    let frame = ClientMessage::Unsubscribe(Unsubscribe {
                        id: Some(RequestId::Number(id)),
                        channel,
                    });
                    self.pending.insert(id, Pending::Unsubscribe(reply));
                    self.urgent.push_back((frame, None));
                } else {
                    let _ = reply.send(Ok(()));
                }
            }
            Command::Request { mut frame, reply } => {
                self.stamp_epoch(&mut frame);
                self.queue.push_back(Outgoing { frame, reply })
            }
            Command::Fire { frame } => {
                if let (true, ClientMessage::CursorUpdate(c)) = (open, &frame) {
                    // Coalesced: the newest position replaces one still waiting (CURS-18).
                    self.cursor_waiting.insert(c.channel.clone(), frame);
                }
            }
        }
    }

    fn take_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    /// Sends the client's own frames, then the application's requests the connection can
    /// take now.
    async fn flush(&mut self, ws: &mut Ws) -> Result<(), Ending> {
        while let Some((mut frame, internal)) = self.urgent.pop_front() {
            if let Some(why) = internal {
                if get_id(&frame).is_none() && set_id(&mut frame, RequestId::Number(self.next_id)) {
                    let id = self.take_id();
                    self.internal.insert(id, why);
                }
            }
            self.send(ws, &frame).await?;
        }
        let held = self
            .broadcast_hold
            .is_some_and(|t| t > Instant::now() && !self.has(Fault::IgnoreRetryAfter));
        let mut keep = VecDeque::new();
        while let Some(out) = self.queue.pop_front() {
            if held && matches!(out.frame, ClientMessage::Broadcast(_)) {
                keep.push_back(out);
                continue;
            }
            if let Some(missing) = self.missing_capability(&out.frame) {
                let _ = out.reply.send(Err(RequestError::Unsupported(missing)));
                continue;
            }
            let mut out = out;
            self.stamp_message_id(&mut out.frame);
            let id = self.take_id();
            set_id(&mut out.frame, RequestId::Number(id));
            let text = to_json(&out.frame);
            if let Some(limit) = self.welcome.as_ref().map(|w| w.limits.max_frame_bytes) {
                if text.len() as u64 > limit {
                    let _ = out.reply.send(Err(RequestError::TooLarge {
                        bytes: text.len() as u64,
                        limit,
                    }));
                    continue;
                }
            }
            let frame = out.frame.clone();
            self.pending.insert(id, Pending::User(out));
            self.send(ws, &frame).await?;
        }
        self.queue = keep;
        Ok(())
    }

    /// A compare-and-set write carries the epoch of the state its version was read from
    /// (STATE-33), taken when the application asks: a snapshot of a new epoch arriving while
    /// the write waits must not make an old version match.
    fn stamp_epoch(&self, frame: &mut ClientMessage) {
        if self.has(Fault::NoExpectedEpoch) {
            return;
        }
        let (channel, expected, epoch) = match frame {
            ClientMessage::StateUpdate(m) => {
                (&m.channel, m.expected_version, &mut m.expected_epoch)
            }
            ClientMessage::StateMerge(m) => (&m.channel, m.expected_version, &mut m.expected_epoch),
            ClientMessage::StateDelete(m) => {
                (&m.channel, m.expected_version, &mut m.expected_epoch)
            }
            _ => return,
        };
        if expected.is_none() || epoch.is_some() {
            return;
        }
        if let Some(t) = self.tracked.get(channel) {
            *epoch = t.state_epoch();
        }
    }

    /// A `broadcast` gets a `message_id` of its own when the server deduplicates (CLIENT-19),
    /// so that the application can repeat it safely after an unknown outcome; a server that
    /// announces no `dedup_window_ms` may predate the member and is sent none.
    fn stamp_message_id(&mut self, frame: &mut ClientMessage) {
        let ClientMessage::Broadcast(b) = frame else {
            return;
        };
        let dedup = self
            .welcome
            .as_ref()
            .is_some_and(|w| w.limits.dedup_window_ms > 0);
        if b.message_id.is_none() && dedup && !self.has(Fault::NoMessageId) {
            b.message_id = Some(format!(
                "{:016x}{:016x}",
                rand::random::<u64>(),
                rand::random::<u64>()
            ));
        }
    }

    fn missing_capability(&self, frame: &ClientMessage) -> Option<&'static str> {
        let (cap, name) = match frame {
            ClientMessage::History(_) => (Capability::History, "history"),
            ClientMessage::StateUpdate(_)
            | ClientMessage::StateMerge(_)
            | ClientMessage::StateDelete(_)
            | ClientMessage::StateSyncRequest(_) => (Capability::State, "state"),
            ClientMessage::Presence(_) | ClientMessage::PresenceUpdate(_) => {
                (Capability::Presence, "presence")
            }
            _ => return None,
        };
        (!self.capable(cap)).then_some(name)
    }

    async fn send(&mut self, ws: &mut Ws, frame: &ClientMessage) -> Result<(), Ending> {
        let text = to_json(frame);
        tracing::trace!(%text, "chorus send");
        ws.send(Message::text(text)).await.map_err(|e| {
            tracing::debug!(error = %e, "send failed");
            Ending::Dropped
        })?;
        self.last_sent = Instant::now();
        Ok(())
    }

    fn schedule_refresh(&mut self, expires_at: Option<u64>) {
        self.refresh_at = None;
        let (Some(expires_at), Some(_)) = (expires_at, &self.options.provider) else {
            return;
        };
        if self.has(Fault::NoRefresh) {
            return;
        }
        let now = (self.options.clock)();
        let left = Duration::from_millis(expires_at.saturating_sub(now));
        let wait = if self.has(Fault::RefreshAfterExpiry) {
            left + Duration::from_millis(1_000)
        } else {
            left.mul_f64(self.options.refresh_fraction)
        };
        self.refresh_at = Some(Instant::now() + wait);
    }

    fn start_refresh(&mut self) {
        let Some(provider) = self.options.provider.clone() else {
            return;
        };
        self.refreshing = Some(tokio::spawn(async move { provider.token().await }));
    }

    /// One text frame; `Some` when it ends the connection (only ever through a fault).
    fn on_text(&mut self, text: &str) -> Option<Ending> {
        match decode(text) {
            Inbound::Frame {
                message,
                had_unknown,
            } => {
                if had_unknown && self.has(Fault::CrashOnUnknownMember) {
                    return Some(self.crash("unknown member"));
                }
                self.on_message(*message);
                None
            }
            Inbound::UnknownType(kind) => {
                // TRANS-27: ignore it and keep the connection.
                tracing::debug!(%kind, "unknown frame type ignored");
                self.emit(ClientEvent::UnknownFrame { kind });
                if self.has(Fault::CrashOnUnknownType) {
                    return Some(self.crash("unknown frame type"));
                }
                None
            }
            Inbound::Malformed { kind, reason } => {
                tracing::warn!(%kind, %reason, "malformed server frame ignored");
                self.emit(ClientEvent::MalformedFrame { kind, reason });
                None
            }
        }
    }

    fn on_message(&mut self, message: ServerMessage) {
        let id = reply_id(&message).and_then(|id| match id {
            RequestId::Number(n) => Some(*n),
            RequestId::Text(_) => None,
        });
        let internal = id.and_then(|id| self.internal.remove(&id));
        let faults = self.options.faults.clone();
        let mut outcome = Outcome::default();
        let channel = match &message {
            ServerMessage::Error(e) => e.channel.as_deref().map(ChannelName::from),
            m => message_channel(m).cloned(),
        };
        match (&message, internal) {
            (ServerMessage::Subscribed(s), Some(Internal::Subscribe(name))) => {
                if let Some(t) = self.tracked.get_mut(&name) {
                    t.on_subscribed(s.clone(), &faults);
                }
                return;
            }
            // HIST-21: the channel's epoch changed under the subscription; the frame is read
            // like the reply to a resubscribe whose recovery failed.
            (ServerMessage::Subscribed(s), None) if s.id.is_none() => {
                if let Some(t) = self.tracked.get_mut(&s.channel) {
                    t.on_subscribed(s.clone(), &faults);
                }
                return;
            }
            (ServerMessage::Error(e), Some(Internal::Subscribe(name))) => {
                if let Some(t) = self.tracked.get_mut(&name) {
                    outcome = t.on_subscribe_error(RequestError::Server(Box::new(e.clone())));
                }
                if outcome.removed {
                    self.tracked.remove(&name);
                }
                return;
            }
            (ServerMessage::StateSync(s), Some(Internal::Resync(name))) => {
                if let Some(t) = self.tracked.get_mut(&name) {
                    t.on_snapshot(StateSnapshot {
                        data: s.data.clone(),
                        version: s.version,
                        epoch: s.epoch.clone(),
                    });
                }
                return;
            }
            (_, Some(Internal::Resync(name))) => {
                if let Some(t) = self.tracked.get_mut(&name) {
                    t.resync_pending = false;
                }
            }
            (ServerMessage::AuthRefreshed(r), _) => {
                self.schedule_refresh(r.expires_at);
                self.emit(ClientEvent::TokenRefreshed {
                    expires_at: r.expires_at,
                });
            }
            (ServerMessage::Error(e), Some(Internal::Refresh)) => {
                self.emit(ClientEvent::TokenRefreshFailed {
                    reason: crate::decode::error_code_text(e),
                });
                return;
            }
            (_, Some(_)) => return,
            _ => {}
        }
        if let Some(t) = channel.as_ref().and_then(|c| self.tracked.get_mut(c)) {
            outcome = match &message {
                ServerMessage::Message(m) => {
                    t.on_item(StreamItem::Message(m.clone()));
                    Outcome::default()
                }
                ServerMessage::DataChange(d) => {
                    t.on_item(StreamItem::DataChange(d.clone()));
                    Outcome::default()
                }
                ServerMessage::BroadcastAck(a) => {
                    t.on_ack(a.seq, &faults);
                    Outcome::default()
                }
                ServerMessage::HistoryPage(p) => {
                    t.on_history(&p.position);
                    Outcome::default()
                }
                ServerMessage::UserJoined(_)
                | ServerMessage::UserLeft(_)
                | ServerMessage::PresenceUpdated(_)
                | ServerMessage::PresenceList(_)
                | ServerMessage::CursorMoved(_) => {
                    t.on_presence(message.clone(), &faults);
                    Outcome::default()
                }
                ServerMessage::StateSync(s) => {
                    t.on_snapshot(StateSnapshot {
                        data: s.data.clone(),
                        version: s.version,
                        epoch: s.epoch.clone(),
                    });
                    Outcome::default()
                }
                ServerMessage::StateAck(a) => t.check_epoch(&a.epoch, &faults),
                ServerMessage::StateUpdate(u) => t.on_state_change(
                    &u.epoch,
                    u.version,
                    |d| {
                        d.insert(u.key.clone(), u.value.clone());
                    },
                    &faults,
                ),
                ServerMessage::StateMerge(m) => {
                    t.on_state_change(&m.epoch, m.version, |d| d.extend(m.data.clone()), &faults)
                }
                ServerMessage::StateDelete(x) => t.on_state_change(
                    &x.epoch,
                    x.version,
                    |d| {
                        d.remove(&x.key);
                    },
                    &faults,
                ),
                ServerMessage::Error(e) if error_code(e) == Some(ErrorCode::Conflict) => {
                    match &e.current {
                        Some(current) => t.check_epoch(&current.epoch, &faults),
                        None => Outcome::default(),
                    }
                }
                ServerMessage::Unsubscribed(u) if u.id.is_none() => {
                    // CLIENT-10: a channel the server removed is not renewed.
                    t.on_removed(u.reason.clone());
                    Outcome {
                        removed: true,
                        ..Outcome::default()
                    }
                }
                _ => Outcome::default(),
            };
            if outcome.resync {
                let frame = t.resync_frame();
                self.urgent
                    .push_back((frame, Some(Internal::Resync(t.name.clone()))));
            }
            if outcome.removed {
                if let Some(c) = &channel {
                    self.tracked.remove(c);
                }
            }
        }
        if let ServerMessage::Error(e) = &message {
            if error_code(e) == Some(ErrorCode::RateLimited) {
                // CLIENT-17: hold broadcasts for retry_after_ms.
                let wait = Duration::from_millis(e.retry_after_ms.unwrap_or(1_000));
                self.broadcast_hold = Some(Instant::now() + wait);
            }
        }
        match id.and_then(|id| self.pending.remove(&id)) {
            Some(Pending::User(o)) => {
                let _ = o.reply.send(Ok(message));
            }
            Some(Pending::Unsubscribe(reply)) => {
                let _ = reply.send(match message {
                    ServerMessage::Error(e) => Err(RequestError::Server(Box::new(e))),
                    _ => Ok(()),
                });
            }
            None => {
                if let ServerMessage::Error(e) = message {
                    self.emit(ClientEvent::ServerError(Box::new(e)));
                }
            }
        }
    }
}

fn closed(frame: Option<CloseFrame>) -> Ending {
    match frame {
        Some(f) => Ending::Closed {
            code: u16::from(f.code),
            reason: f.reason.to_string(),
        },
        None => Ending::Closed {
            code: 1005,
            reason: String::new(),
        },
    }
}

async fn sleep_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

async fn join_opt<T>(task: &mut Option<JoinHandle<T>>) -> Result<T, tokio::task::JoinError> {
    match task {
        Some(t) => t.await,
        None => std::future::pending().await,
    }
}

fn to_json(frame: &ClientMessage) -> String {
    // TRANS-5: one JSON object per text frame. Serializing these types cannot fail.
    serde_json::to_string(frame).unwrap_or_else(|_| r#"{"type":"ping"}"#.to_owned())
}

/// Percent-encodes a token for the query string.
fn encode_query(token: &str) -> String {
    let mut out = String::with_capacity(token.len());
    for b in token.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

fn get_id(frame: &ClientMessage) -> Option<&RequestId> {
    frame.id()
}

/// Sets a request's id; false for frames without one (`cursor:update`).
fn set_id(frame: &mut ClientMessage, id: RequestId) -> bool {
    let slot = match frame {
        ClientMessage::Ping(m) => &mut m.id,
        ClientMessage::AuthRefresh(m) => &mut m.id,
        ClientMessage::Subscribe(m) => &mut m.id,
        ClientMessage::Unsubscribe(m) => &mut m.id,
        ClientMessage::Broadcast(m) => &mut m.id,
        ClientMessage::History(m) => &mut m.id,
        ClientMessage::Presence(m) => &mut m.id,
        ClientMessage::PresenceUpdate(m) => &mut m.id,
        ClientMessage::StateUpdate(m) => &mut m.id,
        ClientMessage::StateMerge(m) => &mut m.id,
        ClientMessage::StateDelete(m) => &mut m.id,
        ClientMessage::StateSyncRequest(m) => &mut m.id,
        ClientMessage::CursorUpdate(_) => return false,
    };
    *slot = Some(id);
    true
}

/// The id a reply echoes.
fn reply_id(m: &ServerMessage) -> Option<&RequestId> {
    match m {
        ServerMessage::Pong(x) => x.id.as_ref(),
        ServerMessage::AuthRefreshed(x) => x.id.as_ref(),
        ServerMessage::Subscribed(x) => x.id.as_ref(),
        ServerMessage::Unsubscribed(x) => x.id.as_ref(),
        ServerMessage::BroadcastAck(x) => x.id.as_ref(),
        ServerMessage::HistoryPage(x) => x.id.as_ref(),
        ServerMessage::PresenceList(x) => x.id.as_ref(),
        ServerMessage::PresenceAck(x) => x.id.as_ref(),
        ServerMessage::StateAck(x) => x.id.as_ref(),
        ServerMessage::StateSync(x) => x.id.as_ref(),
        ServerMessage::Error(x) => x.id.as_ref(),
        _ => None,
    }
}

/// The channel a frame concerns.
fn message_channel(m: &ServerMessage) -> Option<&ChannelName> {
    Some(match m {
        ServerMessage::Subscribed(x) => &x.channel,
        ServerMessage::Unsubscribed(x) => &x.channel,
        ServerMessage::BroadcastAck(x) => &x.channel,
        ServerMessage::Message(x) => &x.channel,
        ServerMessage::HistoryPage(x) => &x.channel,
        ServerMessage::PresenceList(x) => &x.channel,
        ServerMessage::PresenceAck(x) => &x.channel,
        ServerMessage::UserJoined(x) => &x.channel,
        ServerMessage::UserLeft(x) => &x.channel,
        ServerMessage::PresenceUpdated(x) => &x.channel,
        ServerMessage::CursorMoved(x) => &x.channel,
        ServerMessage::StateAck(x) => &x.channel,
        ServerMessage::StateSync(x) => &x.channel,
        ServerMessage::StateUpdate(x) => &x.channel,
        ServerMessage::StateMerge(x) => &x.channel,
        ServerMessage::StateDelete(x) => &x.channel,
        ServerMessage::DataChange(x) => &x.channel,
        _ => return None,
    })
}
