//! The `chorus conform-client` adapter for this crate: JSON lines on stdin (commands) and
//! stdout (events), as conformance/CLIENT-DRIVER.md describes. It keeps no state the
//! library should keep; it only translates.
//!
//! ```sh
//! chorus conform-client --adapter 'target/debug/chorus-client-adapter'
//! # a faults build, with one deliberate bug:
//! chorus conform-client --adapter 'target/debug/chorus-client-adapter --fault no_jitter'
//! ```

use std::collections::HashMap;
use std::io::Write;
use std::sync::{Arc, Mutex};

use chorus_client::chorus_protocol::{PresenceStatus, StreamItem, StreamPosition};
use chorus_client::{
    ChannelEvent, ChannelHandle, Client, ClientEvent, Ending, HistoryQuery, Reaction, RequestError,
    StateError, StopReason, SubscribeOptions, TokenError,
};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::oneshot;

/// Writes one event line and flushes (the suite timestamps lines as they arrive).
fn emit(event: Value) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{event}");
    let _ = out.flush();
}

fn result(reference: &str, outcome: &str) -> Value {
    json!({"event": "result", "ref": reference, "outcome": outcome})
}

/// The `result` of a failed request.
fn failure(reference: &str, error: &RequestError) -> Value {
    match error {
        RequestError::Server(_) => {
            let mut r = result(reference, "error");
            r["code"] = json!(error.code_text());
            r
        }
        RequestError::OutcomeUnknown => result(reference, "unknown"),
        RequestError::Unsupported(_) => {
            let mut r = result(reference, "error");
            r["code"] = json!("unsupported");
            r
        }
        other => {
            let mut r = result(reference, "error");
            r["code"] = json!(format!("client: {other}"));
            r
        }
    }
}

fn state_failure(reference: &str, error: &StateError) -> Value {
    match error {
        StateError::Conflict { current } => {
            let mut r = result(reference, "error");
            r["code"] = json!("conflict");
            r["version"] = json!(current.version);
            r
        }
        StateError::Request(e) => failure(reference, e),
        other => failure(reference, &RequestError::Stopped(other.to_string())),
    }
}

/// Token requests waiting for the suite's `token` command.
#[derive(Default)]
struct Tokens {
    next: Mutex<u64>,
    waiting: Mutex<HashMap<String, oneshot::Sender<Option<String>>>>,
}

impl Tokens {
    async fn ask(self: Arc<Self>) -> Result<String, TokenError> {
        let request = {
            let mut n = self.next.lock().unwrap_or_else(|e| e.into_inner());
            *n += 1;
            format!("t{n}")
        };
        let (tx, rx) = oneshot::channel();
        self.waiting
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(request.clone(), tx);
        emit(json!({"event": "token_request", "request": request}));
        match rx.await {
            Ok(Some(token)) => Ok(token),
            _ => Err(TokenError("the application has no token".into())),
        }
    }

    fn answer(&self, request: &str, token: Option<String>) {
        let tx = self
            .waiting
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(request);
        if let Some(tx) = tx {
            let _ = tx.send(token);
        }
    }
}

fn ending_code(ending: &Ending) -> u16 {
    match ending {
        Ending::ClosedByClient => 1000,
        Ending::Closed { code, .. } => *code,
        Ending::Refused { status } => *status,
        _ => 1006,
    }
}

/// Translates the client's connection events into `connection` events.
async fn pump_connection(mut events: tokio::sync::broadcast::Receiver<ClientEvent>) {
    let mut last_code = None;
    loop {
        let event = match events.recv().await {
            Ok(e) => e,
            Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                emit(json!({"event": "log", "message": format!("lost {n} events")}));
                continue;
            }
            Err(_) => return,
        };
        let line = match event {
            ClientEvent::Connecting { attempt } => {
                json!({"event": "connection", "state": "connecting", "attempt": attempt})
            }
            ClientEvent::Open { .. } => json!({"event": "connection", "state": "open"}),
            ClientEvent::Disconnected { ending, reaction } => {
                last_code = Some(ending_code(&ending));
                match reaction {
                    // Reconnecting without a delay: report the loss with a zero delay.
                    Reaction::Immediately | Reaction::RefreshToken => json!({
                        "event": "connection", "state": "waiting",
                        "code": last_code, "delay_ms": 0
                    }),
                    _ => continue,
                }
            }
            ClientEvent::Waiting { attempt, delay } => json!({
                "event": "connection", "state": "waiting", "code": last_code,
                "delay_ms": delay.as_millis() as u64, "attempt": attempt
            }),
            ClientEvent::Stopped { reason } => match reason {
                StopReason::ClosedByClient => json!({"event": "connection", "state": "closed"}),
                StopReason::Terminal(ending) => json!({
                    "event": "connection", "state": "stopped", "code": ending_code(&ending)
                }),
                _ => json!({"event": "connection", "state": "stopped", "code": last_code}),
            },
            ClientEvent::ServerError(e) => {
                let mut line =
                    json!({"event": "error", "code": chorus_client::error_code_text(&e)});
                if let Some(channel) = &e.channel {
                    line["channel"] = json!(channel);
                }
                line
            }
            other => json!({"event": "log", "message": format!("{other:?}")}),
        };
        emit(line);
    }
}

fn position(p: &StreamPosition) -> Value {
    json!({"epoch": p.epoch.as_str(), "seq": p.seq})
}

fn message_event(item: &StreamItem) -> Value {
    match item {
        StreamItem::Message(m) => {
            let mut e = json!({"event": "message", "channel": m.channel.as_str(),
                "name": m.event, "data": m.data, "seq": m.seq});
            if let Some(from) = &m.from {
                e["from"] = json!(from);
            }
            e
        }
        StreamItem::DataChange(d) => json!({"event": "message", "channel": d.channel.as_str(),
            "name": "data_change", "data": d.data, "seq": d.seq}),
    }
}

fn members_event(h: &ChannelHandle) -> Value {
    let members: Vec<Value> = h
        .presence()
        .members()
        .values()
        .map(|m| json!({"user_id": m.user_id, "status": m.status, "data": m.data}))
        .collect();
    json!({"event": "members", "channel": h.name().as_str(), "members": members})
}

fn cursors_event(h: &ChannelHandle) -> Value {
    let cursors: Vec<Value> = h
        .cursors()
        .values()
        .map(|c| json!({"user_id": c.user_id, "x": c.x, "y": c.y}))
        .collect();
    json!({"event": "cursors", "channel": h.name().as_str(), "cursors": cursors})
}

fn state_event(h: &ChannelHandle) -> Option<Value> {
    let view = h.state();
    let s = view.snapshot()?;
    Some(json!({"event": "state_view", "channel": h.name().as_str(),
        "epoch": s.epoch.as_str(), "version": s.version, "data": s.data}))
}

/// Translates one channel's events.
async fn pump_channel(handle: ChannelHandle, mut events: chorus_client::ChannelEvents) {
    let channel = handle.name().as_str().to_owned();
    while let Some(event) = events.next().await {
        match event {
            ChannelEvent::Subscribed {
                position: p,
                recovered,
                stale,
                ..
            } => {
                let mut e =
                    json!({"event": "subscribed", "channel": channel, "position": position(&p)});
                if let Some(r) = recovered {
                    e["recovered"] = json!(r);
                }
                emit(e);
                if stale {
                    emit(json!({"event": "stale", "channel": channel}));
                }
                let view = handle.view();
                if view.kind == Some(chorus_client::chorus_protocol::ChannelKind::Presence) {
                    emit(members_event(&handle));
                    emit(cursors_event(&handle));
                }
            }
            ChannelEvent::Message(d) => emit(message_event(&d.item)),
            ChannelEvent::MemberJoined(_) | ChannelEvent::MemberUpdated(_) => {
                emit(members_event(&handle))
            }
            ChannelEvent::MemberLeft { .. } => {
                emit(members_event(&handle));
                emit(cursors_event(&handle));
            }
            ChannelEvent::CursorsMoved(_) => emit(cursors_event(&handle)),
            ChannelEvent::StateChanged { .. } => {
                if let Some(e) = state_event(&handle) {
                    emit(e);
                }
            }
            ChannelEvent::Removed { reason } => {
                let mut e = json!({"event": "unsubscribed", "channel": channel});
                if let Some(r) = reason {
                    e["reason"] = json!(r);
                }
                emit(e);
            }
            other => emit(json!({"event": "log", "message": format!("{other:?}")})),
        }
    }
}

type Channels = Arc<Mutex<HashMap<String, ChannelHandle>>>;

fn channels(c: &Channels) -> std::sync::MutexGuard<'_, HashMap<String, ChannelHandle>> {
    c.lock().unwrap_or_else(|e| e.into_inner())
}

struct Adapter {
    client: Option<Client>,
    channels: Channels,
    tokens: Arc<Tokens>,
    faults: Vec<String>,
}

fn str_of<'a>(cmd: &'a Value, key: &str) -> &'a str {
    cmd.get(key).and_then(Value::as_str).unwrap_or_default()
}

fn status_of(v: &Value) -> Option<PresenceStatus> {
    serde_json::from_value(v.get("status")?.clone()).ok()
}

impl Adapter {
    fn connect(&mut self, cmd: &Value) -> Value {
        let reference = str_of(cmd, "ref");
        let tokens = self.tokens.clone();
        let mut builder =
            Client::builder(str_of(cmd, "url")).token_provider(move || tokens.clone().ask());
        if let Some(token) = cmd.get("token").and_then(Value::as_str) {
            builder = builder.token(token);
        }
        for name in &self.faults {
            #[cfg(feature = "faults")]
            {
                builder = builder.fault(name);
            }
            #[cfg(not(feature = "faults"))]
            {
                let _ = name;
            }
        }
        match builder.connect() {
            Ok(client) => {
                tokio::spawn(pump_connection(client.events()));
                self.client = Some(client);
                result(reference, "ok")
            }
            Err(e) => {
                let mut r = result(reference, "error");
                r["code"] = json!(format!("client: {e}"));
                r
            }
        }
    }

    /// Handles one command; whatever waits for the server runs in its own task, so a
    /// `token` answer is never stuck behind a request that needs it.
    async fn command(&mut self, cmd: Value) {
        let kind = str_of(&cmd, "cmd").to_owned();
        let reference = str_of(&cmd, "ref").to_owned();
        if kind == "token" {
            let token = cmd.get("token").and_then(Value::as_str).map(str::to_owned);
            return self.tokens.answer(str_of(&cmd, "request"), token);
        }
        if kind == "connect" {
            return emit(self.connect(&cmd));
        }
        let Some(client) = self.client.clone() else {
            return emit(result(&reference, "unsupported"));
        };
        let channel = str_of(&cmd, "channel").to_owned();
        match kind.as_str() {
            "subscribe" => {
                let options = SubscribeOptions {
                    state: cmd.get("state").and_then(Value::as_bool).unwrap_or(false),
                    since: cmd
                        .get("since")
                        .and_then(|s| serde_json::from_value(s.clone()).ok()),
                    ..SubscribeOptions::default()
                };
                let presence = cmd.get("presence").cloned();
                let map = self.channels.clone();
                tokio::spawn(async move {
                    match client.subscribe_with(&channel, options).await {
                        Ok(ch) => {
                            let (handle, events) = ch.into_split();
                            channels(&map).insert(channel, handle.clone());
                            let mut line = result(&reference, "ok");
                            if let Some(p) = presence
                                .filter(|p| p.get("status").is_some() || p.get("data").is_some())
                            {
                                let data = p.get("data").cloned();
                                if let Err(e) = handle.update_presence(status_of(&p), data).await {
                                    line = failure(&reference, &e);
                                }
                            }
                            // The result first: the channel's events (kept queued meanwhile)
                            // follow it, as the suite reads them.
                            emit(line);
                            tokio::spawn(pump_channel(handle, events));
                        }
                        Err(e) => emit(failure(&reference, &e)),
                    }
                });
            }
            "close" => {
                tokio::spawn(async move {
                    client.close().await;
                    emit(result(&reference, "ok"));
                });
            }
            _ => {
                let handle = channels(&self.channels).get(&channel).cloned();
                let Some(handle) = handle else {
                    let mut r = result(&reference, "error");
                    r["code"] = json!("client: not subscribed");
                    return emit(r);
                };
                if kind == "unsubscribe" {
                    channels(&self.channels).remove(&channel);
                }
                tokio::spawn(on_channel(kind, reference, handle, cmd));
            }
        }
    }
}

/// A command on a subscribed channel.
async fn on_channel(kind: String, reference: String, h: ChannelHandle, cmd: Value) {
    let r = &reference;
    let expected = cmd.get("expected_version").and_then(Value::as_u64);
    let ok_or = |res: Result<(), RequestError>| match res {
        Ok(()) => result(r, "ok"),
        Err(e) => failure(r, &e),
    };
    let state = |res: Result<chorus_client::StateWrite, StateError>| match res {
        Ok(v) => {
            let mut line = result(r, "ok");
            line["version"] = json!(v.version);
            line
        }
        Err(e) => state_failure(r, &e),
    };
    let line = match kind.as_str() {
        "unsubscribe" => ok_or(h.unsubscribe().await),
        "publish" => {
            let echo = cmd.get("echo").and_then(Value::as_bool).unwrap_or(false);
            let data = cmd.get("data").cloned().unwrap_or(Value::Null);
            ok_or(
                h.publish_with(str_of(&cmd, "event"), data, echo)
                    .await
                    .map(|_| ()),
            )
        }
        "presence_update" => ok_or(
            h.update_presence(status_of(&cmd), cmd.get("data").cloned())
                .await,
        ),
        "state_set" => {
            let value = cmd.get("value").cloned().unwrap_or(Value::Null);
            state(match expected {
                Some(v) => h.set_if(str_of(&cmd, "key"), value, v).await,
                None => h.set(str_of(&cmd, "key"), value).await,
            })
        }
        "state_merge" => {
            let data = cmd
                .get("data")
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default();
            state(h.merge(data, expected).await)
        }
        "state_delete" => state(h.delete(str_of(&cmd, "key"), expected).await),
        "cursor_update" => {
            let x = cmd.get("x").and_then(Value::as_f64).unwrap_or(0.0);
            let y = cmd.get("y").and_then(Value::as_f64).unwrap_or(0.0);
            h.move_cursor(x, y, cmd.get("data").cloned());
            result(r, "ok")
        }
        "history" => {
            let query = HistoryQuery {
                limit: cmd
                    .get("limit")
                    .and_then(Value::as_u64)
                    .and_then(|n| std::num::NonZeroU32::new(n.min(u32::MAX as u64) as u32)),
                before_seq: cmd.get("before_seq").and_then(Value::as_u64),
                event: None,
            };
            match h.history(query).await {
                Ok(page) => {
                    let mut line = result(r, "ok");
                    line["messages"] = page.messages.iter().map(message_event).collect();
                    line
                }
                Err(e) => failure(r, &e),
            }
        }
        // BCAST-5: the library's clear is local; the adapter holds no list of its own.
        "clear" => result(r, "ok"),
        _ => result(r, "unsupported"),
    };
    emit(line);
}

#[tokio::main]
async fn main() {
    // `chorus conform-client --mutation` names the fault in the environment.
    let mut faults: Vec<String> = std::env::var("CHORUS_CLIENT_FAULT")
        .map(|v| {
            v.split(',')
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    if !faults.is_empty() && !cfg!(feature = "faults") {
        eprintln!("CHORUS_CLIENT_FAULT needs a build with the `faults` feature");
        std::process::exit(2);
    }
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--mutation-file" => {
                // The faults file for `chorus conform-client --mutation`.
                println!("{:#}", chorus_client::faults::Fault::mutation_file());
                return;
            }
            "--fault" => match args.next() {
                Some(name) if cfg!(feature = "faults") => faults.push(name),
                Some(_) => {
                    eprintln!("--fault needs a build with the `faults` feature");
                    std::process::exit(2);
                }
                None => {
                    eprintln!("--fault needs a name");
                    std::process::exit(2);
                }
            },
            other => {
                eprintln!("unknown argument {other:?}");
                std::process::exit(2);
            }
        }
    }
    emit(json!({"event": "ready", "driver": 1,
        "client": format!("chorus-client/{}", env!("CARGO_PKG_VERSION"))}));
    let mut adapter = Adapter {
        client: None,
        channels: Channels::default(),
        tokens: Arc::default(),
        faults,
    };
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let commands = tokio::sync::mpsc::unbounded_channel::<Value>();
    tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            match serde_json::from_str::<Value>(&line) {
                Ok(v) => {
                    let _ = commands.0.send(v);
                }
                Err(e) => emit(json!({"event": "log", "message": format!("bad command: {e}")})),
            }
        }
    });
    let mut rx = commands.1;
    while let Some(cmd) = rx.recv().await {
        adapter.command(cmd).await;
    }
    if let Some(client) = adapter.client {
        let _ = tokio::time::timeout(std::time::Duration::from_secs(1), client.close()).await;
    }
}
