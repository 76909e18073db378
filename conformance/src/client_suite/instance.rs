//! One instance of a case: a scripted server, an adapter, and the steps run between them.
//! Everything that arrives (client frames, adapter events, upgrade requests) is handled as
//! it comes (pings answered, token requests answered, frames checked against the client
//! schema) and buffered for the steps that wait for it.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::client_suite::adapter::Adapter;
use crate::client_suite::case::{Accept, ClientCase, Step, TokenPolicy};
use crate::client_suite::server::{Conn, ConnEvent, FakeServer, Upgrade};
use crate::matcher::{short, Matcher};
use crate::transcript::{EventKind, Transcript};
use crate::validate::FrameSchema;
use crate::verdict::{Failure, FailureKind};

/// Settings shared by every instance of a run.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The adapter command (`sh -c`).
    pub adapter: String,
    /// `--timeout-scale`.
    pub timeout_scale: f64,
    /// `--max-wait-ms`: cases needing longer are untestable.
    pub max_wait_ms: u64,
    /// Extra environment of the adapter (`CHORUS_CLIENT_FAULT` in a mutation run).
    pub env: Vec<(String, String)>,
}

/// What an instance produced.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Failures (the first ends the script).
    pub failures: Vec<Failure>,
    /// A harness problem (the adapter did not start).
    pub error: Option<String>,
    /// Named delay samples, ms.
    pub samples: BTreeMap<String, Vec<f64>>,
}

struct Instance<'a> {
    who: String,
    tolerance: Duration,
    tokens: TokenPolicy,
    server: FakeServer,
    adapter: Adapter,
    conn: Option<Conn>,
    conn_open: bool,
    connections: u32,
    frames: VecDeque<(Instant, Value)>,
    closes: VecDeque<(Instant, Option<u16>)>,
    events: VecDeque<(Instant, Value)>,
    upgrades: VecDeque<Upgrade>,
    silent: bool,
    issued_tokens: u32,
    next_ref: u32,
    /// `ref` -> `cmd`, for messages about unsupported commands.
    commands: BTreeMap<String, String>,
    matcher: Matcher,
    transcript: Transcript,
    schema: Option<&'a FrameSchema>,
    /// Problems found while handling arrivals (schema, binary frames, unsupported).
    background: Vec<(FailureKind, String, Option<String>)>,
    samples: BTreeMap<String, Vec<f64>>,
    /// Frames that arrived while `welcome` was held back.
    holding_welcome: bool,
}

type StepResult = Result<(), Box<Failure>>;

/// Runs one instance of `case`.
pub async fn run(
    case: &ClientCase,
    settings: &Settings,
    schema: Option<&FrameSchema>,
    who: String,
    transcript: Transcript,
) -> Outcome {
    let mut out = Outcome::default();
    let server = match FakeServer::start().await {
        Ok(s) => s,
        Err(e) => {
            out.error = Some(format!("cannot bind the scripted server: {e}"));
            return out;
        }
    };
    let adapter = match Adapter::spawn(
        &settings.adapter,
        &settings.env,
        &case.id,
        &who,
        &transcript,
    ) {
        Ok(a) => a,
        Err(e) => {
            out.error = Some(format!("cannot start the adapter: {e}"));
            return out;
        }
    };
    let scale = settings.timeout_scale.max(0.01);
    let mut inst = Instance {
        who,
        tolerance: Duration::from_millis((case.tolerance_ms as f64 * scale) as u64),
        tokens: case.tokens,
        server,
        adapter,
        conn: None,
        conn_open: false,
        connections: 0,
        frames: VecDeque::new(),
        closes: VecDeque::new(),
        events: VecDeque::new(),
        upgrades: VecDeque::new(),
        silent: false,
        issued_tokens: 0,
        next_ref: 0,
        commands: BTreeMap::new(),
        matcher: Matcher::default(),
        transcript,
        schema,
        background: Vec::new(),
        samples: BTreeMap::new(),
        holding_welcome: false,
    };
    inst.matcher
        .captures
        .insert("url".into(), json!(inst.server.url));
    if let Err(e) = inst.await_ready(scale).await {
        out.error = Some(format!("{}: {e}", inst.who));
        inst.adapter.finish(Duration::from_millis(500)).await;
        return out;
    }
    for (i, step) in case.steps.iter().enumerate() {
        let number = (i + 1).to_string();
        inst.transcript.push(
            "harness",
            EventKind::Step,
            serde_json::to_string(step).unwrap_or_default(),
        );
        let started = Instant::now();
        let result = inst.step(step, started, &number).await;
        // A problem seen on the way (an unsupported command, a frame breaking the schema)
        // explains a step that then timed out better than the timeout does.
        let result = match (result, inst.background_failure(&number, step)) {
            (_, Err(b)) => Err(b),
            (r, Ok(())) => r,
        };
        if let Err(f) = result {
            inst.transcript
                .push("harness", EventKind::Note, f.message.clone());
            out.failures.push(*f);
            break;
        }
    }
    out.samples = std::mem::take(&mut inst.samples);
    inst.adapter.finish(Duration::from_secs(2)).await;
    out
}

fn action(step: &Step) -> String {
    serde_json::to_value(step)
        .ok()
        .and_then(|v| match v {
            Value::Object(m) => m.keys().next().cloned(),
            Value::String(s) => Some(s),
            _ => None,
        })
        .unwrap_or_default()
}

fn failure(step: &str, s: &Step, kind: FailureKind, message: String) -> Box<Failure> {
    Box::new(Failure {
        step: step.to_owned(),
        action: action(s),
        kind,
        message,
        expected: None,
        actual: None,
    })
}

impl Instance<'_> {
    fn ms(&self, ms: u64) -> Duration {
        Duration::from_millis(ms)
    }

    async fn await_ready(&mut self, scale: f64) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_millis((30_000.0 * scale) as u64);
        loop {
            if let Some(pos) = self.events.iter().position(|(_, e)| e["event"] == "ready") {
                let e = self.events.remove(pos).map(|(_, e)| e).unwrap_or_default();
                if e["driver"] != json!(super::driver::DRIVER_VERSION) {
                    return Err(format!(
                        "the adapter speaks driver version {}, the suite version {}",
                        e["driver"],
                        super::driver::DRIVER_VERSION
                    ));
                }
                return Ok(());
            }
            if !self.pump(deadline).await {
                return Err("the adapter wrote no `ready` line within 30 s".into());
            }
        }
    }

    fn background_failure(&mut self, number: &str, step: &Step) -> StepResult {
        match self.background.first().cloned() {
            None => Ok(()),
            Some((kind, message, actual)) => {
                let mut f = failure(number, step, kind, message);
                f.actual = actual;
                Err(f)
            }
        }
    }

    /// Waits for one arrival until `deadline`; false on timeout.
    async fn pump(&mut self, deadline: Instant) -> bool {
        let sleep = tokio::time::sleep_until(deadline.into());
        tokio::pin!(sleep);
        let conn = self.conn.as_mut();
        let conn_events = async move {
            match conn {
                Some(c) => c.events.recv().await,
                None => std::future::pending().await,
            }
        };
        enum Arrival {
            Event(Option<(Instant, Value)>),
            Conn(Option<(Instant, ConnEvent)>),
            Upgrade(Option<Upgrade>),
            Timeout,
        }
        let arrival = tokio::select! {
            e = self.adapter.events.recv() => Arrival::Event(e),
            c = conn_events => Arrival::Conn(c),
            u = self.server.next_upgrade(Duration::from_secs(3600)) => Arrival::Upgrade(u),
            _ = &mut sleep => Arrival::Timeout,
        };
        match arrival {
            Arrival::Timeout => return false,
            Arrival::Event(Some((at, e))) => self.on_event(at, e).await,
            Arrival::Event(None) => {
                // The adapter's stdout ended (it exited): nothing more will come from it.
                if !self.background.iter().any(|(_, m, _)| m.contains("exited")) {
                    self.transcript
                        .push(&self.who, EventKind::Note, "the adapter's stdout ended");
                }
                tokio::time::sleep_until(deadline.into()).await;
                return false;
            }
            Arrival::Conn(Some((at, ev))) => self.on_conn(at, ev),
            Arrival::Conn(None) => {
                self.conn = None;
                if self.conn_open {
                    self.conn_open = false;
                    self.closes.push_back((Instant::now(), None));
                }
            }
            Arrival::Upgrade(Some(u)) => {
                self.transcript
                    .push("server", EventKind::Open, format!("upgrade {}", u.request));
                self.upgrades.push_back(u);
            }
            Arrival::Upgrade(None) => {}
        }
        true
    }

    async fn on_event(&mut self, at: Instant, e: Value) {
        if e["event"] == "token_request" {
            let token = match self.tokens {
                TokenPolicy::Fresh => {
                    self.issued_tokens += 1;
                    json!(format!("tok-{}", self.issued_tokens))
                }
                TokenPolicy::None => Value::Null,
            };
            let cmd = json!({"cmd": "token", "request": e["request"], "token": token});
            if let Err(m) = self.adapter.send(&cmd).await {
                self.background.push((FailureKind::Message, m, None));
            }
        }
        if e["event"] == "result" && e["outcome"] == "unsupported" {
            self.background.push((
                FailureKind::Message,
                format!(
                    "the client does not support `{}` (outcome `unsupported`)",
                    e["ref"]
                        .as_str()
                        .and_then(|r| self.commands.get(r))
                        .map(String::as_str)
                        .unwrap_or("?")
                ),
                Some(e.to_string()),
            ));
        }
        self.events.push_back((at, e));
    }

    fn on_conn(&mut self, at: Instant, ev: ConnEvent) {
        match ev {
            ConnEvent::Text(t) => {
                self.transcript.push("server", EventKind::Recv, t.clone());
                self.on_text(at, &t);
            }
            ConnEvent::Binary(n) => {
                self.transcript.push(
                    "server",
                    EventKind::Recv,
                    format!("binary frame, {n} bytes"),
                );
                self.background.push((
                    FailureKind::Message,
                    format!("the client sent a binary frame of {n} bytes (TRANS-5)"),
                    None,
                ));
            }
            ConnEvent::Closed(code) => {
                self.transcript.push(
                    "server",
                    EventKind::Close,
                    format!("client closed: {}", crate::client::close_status(code)),
                );
                self.conn_open = false;
                self.closes.push_back((at, code));
            }
            ConnEvent::Ended => {
                self.transcript.push(
                    "server",
                    EventKind::Close,
                    "TCP ended without a Close frame",
                );
                self.conn_open = false;
                self.closes.push_back((at, None));
            }
        }
    }

    fn on_text(&mut self, at: Instant, text: &str) {
        let frame: Value = match serde_json::from_str(text) {
            Ok(v @ Value::Object(_)) if v["type"].is_string() => v,
            _ => {
                self.background.push((
                    FailureKind::Message,
                    "a client frame is not one JSON object with a string `type` (TRANS-5)".into(),
                    Some(text.to_owned()),
                ));
                return;
            }
        };
        if self.holding_welcome {
            self.background.push((
                FailureKind::Message,
                "the client sent a request before `welcome` (CLIENT-1)".into(),
                Some(text.to_owned()),
            ));
        }
        if let Some(schema) = self.schema {
            if let Some(v) = schema.check(&frame).into_iter().next() {
                self.background.push((
                    FailureKind::Message,
                    format!("a client frame breaks schema/client.schema.json: {v} (TRANS-5)"),
                    Some(text.to_owned()),
                ));
            }
        }
        if frame["type"] == "ping" && !self.silent {
            let mut pong = json!({"type": "pong", "ts": now_ms()});
            if !frame["id"].is_null() {
                pong["id"] = frame["id"].clone();
            }
            self.send_frame(pong.to_string());
        }
        self.frames.push_back((at, frame));
    }

    fn send_frame(&mut self, text: String) {
        if let Some(c) = &self.conn {
            self.transcript
                .push("server", EventKind::Send, text.clone());
            c.send(text);
        }
    }

    async fn step(&mut self, step: &Step, started: Instant, n: &str) -> StepResult {
        let fail = |kind, message: String| Err(failure(n, step, kind, message));
        match step {
            Step::Command(c) => {
                let cmd = self.command(c);
                if let Err(m) = self.adapter.send(&cmd).await {
                    return fail(FailureKind::Message, m);
                }
                Ok(())
            }
            Step::ExpectEvent { matcher, within_ms } => {
                let m = substitute(matcher, &self.matcher.captures);
                let deadline = started + self.ms(*within_ms) + self.tolerance;
                loop {
                    if let Some(i) = self.find_event(&m) {
                        self.events.drain(..=i);
                        return Ok(());
                    }
                    if !self.pump(deadline).await {
                        let seen = self.events.iter().map(|(_, e)| short(e)).next_back();
                        let mut f = failure(
                            n,
                            step,
                            FailureKind::Message,
                            format!(
                                "no adapter event matching {} within {within_ms} ms",
                                short(&m)
                            ),
                        );
                        f.expected = Some(short(&m));
                        f.actual = seen;
                        return Err(f);
                    }
                }
            }
            Step::NoEvent { matcher, for_ms } => {
                let m = substitute(matcher, &self.matcher.captures);
                let deadline = started + self.ms(*for_ms);
                loop {
                    if let Some(i) = self.find_event(&m) {
                        let e = self.events[i].1.clone();
                        let mut f = failure(
                            n,
                            step,
                            FailureKind::Message,
                            format!("an adapter event matching {} arrived", short(&m)),
                        );
                        f.actual = Some(short(&e));
                        return Err(f);
                    }
                    if !self.pump(deadline).await {
                        return Ok(());
                    }
                }
            }
            Step::Accept(a) => self.accept(a, started, n, step).await,
            Step::Refuse {
                status,
                request,
                within_ms,
                not_before_ms,
                sample,
            } => {
                let u = self
                    .next_upgrade(
                        started,
                        *within_ms,
                        *not_before_ms,
                        request.as_ref(),
                        n,
                        step,
                    )
                    .await?;
                self.record(sample.as_deref(), started, u.at);
                self.transcript.push(
                    "server",
                    EventKind::Close,
                    format!("refused with HTTP {status}"),
                );
                u.refuse(*status).await;
                Ok(())
            }
            Step::NoUpgrade { for_ms } => {
                let deadline = started + self.ms(*for_ms);
                loop {
                    if let Some(u) = self.upgrades.front() {
                        let after = u.at.saturating_duration_since(started).as_millis();
                        return fail(
                            FailureKind::Close,
                            format!("the client reconnected after {after} ms; no reconnect was expected within {for_ms} ms"),
                        );
                    }
                    if !self.pump(deadline).await {
                        return Ok(());
                    }
                }
            }
            Step::ExpectFrame {
                matcher,
                within_ms,
                not_before_ms,
            } => {
                let m = substitute(matcher, &self.matcher.captures);
                let deadline = started + self.ms(*within_ms) + self.tolerance;
                loop {
                    if let Some(i) = self.find_frame(&m) {
                        let (at, _) = self.frames[i];
                        self.frames.drain(..=i);
                        return self.not_before(at, started, *not_before_ms, n, step);
                    }
                    if !self.pump(deadline).await {
                        let mut f = failure(
                            n,
                            step,
                            FailureKind::Message,
                            format!(
                                "no client frame matching {} within {within_ms} ms",
                                short(&m)
                            ),
                        );
                        f.expected = Some(short(&m));
                        f.actual = self.frames.back().map(|(_, v)| short(v));
                        return Err(f);
                    }
                }
            }
            Step::NoFrame { matcher, for_ms } => {
                let m = substitute(matcher, &self.matcher.captures);
                let deadline = started + self.ms(*for_ms);
                loop {
                    if let Some(i) = self.find_frame(&m) {
                        let (at, v) = self.frames[i].clone();
                        let after = at.saturating_duration_since(started).as_millis();
                        let mut f = failure(
                            n,
                            step,
                            FailureKind::Message,
                            format!("a client frame matching {} arrived after {after} ms (none expected within {for_ms} ms)", short(&m)),
                        );
                        f.actual = Some(short(&v));
                        return Err(f);
                    }
                    if !self.pump(deadline).await {
                        return Ok(());
                    }
                }
            }
            Step::Send(frame) => {
                let f = substitute(frame, &self.matcher.captures);
                self.send_frame(f.to_string());
                Ok(())
            }
            Step::SendText(t) => {
                self.send_frame(t.clone());
                Ok(())
            }
            Step::Close { code, reason } => {
                self.transcript.push(
                    "server",
                    EventKind::Close,
                    format!("server closes: {code} {reason:?}"),
                );
                if let Some(c) = &self.conn {
                    c.close(*code, reason.clone());
                }
                Ok(())
            }
            Step::Drop => {
                self.transcript.push(
                    "server",
                    EventKind::Close,
                    "server drops the TCP connection",
                );
                if let Some(c) = self.conn.take() {
                    c.drop_tcp();
                }
                self.conn_open = false;
                Ok(())
            }
            Step::Silence => {
                self.silent = true;
                Ok(())
            }
            Step::ExpectClose {
                code,
                within_ms,
                not_before_ms,
            } => {
                let deadline = started + self.ms(*within_ms) + self.tolerance;
                loop {
                    if let Some((at, got)) = self.closes.pop_front() {
                        if code.is_some() && *code != got {
                            let mut f = failure(
                                n,
                                step,
                                FailureKind::Close,
                                format!(
                                    "the client closed with {}, expected {}",
                                    crate::client::close_status(got),
                                    crate::client::close_status(*code)
                                ),
                            );
                            f.expected = code.map(|c| c.to_string());
                            f.actual = Some(crate::client::close_status(got));
                            return Err(f);
                        }
                        return self.not_before(at, started, *not_before_ms, n, step);
                    }
                    if !self.upgrades.is_empty() {
                        return fail(
                            FailureKind::Close,
                            "the client opened a new connection without closing the old one".into(),
                        );
                    }
                    if !self.pump(deadline).await {
                        return fail(
                            FailureKind::Close,
                            format!(
                                "the client did not close the connection within {within_ms} ms"
                            ),
                        );
                    }
                }
            }
            Step::NoClose { for_ms } => {
                let deadline = started + self.ms(*for_ms);
                loop {
                    if let Some((at, code)) = self.closes.front() {
                        let after = at.saturating_duration_since(started).as_millis();
                        return fail(
                            FailureKind::Close,
                            format!(
                                "the client closed the connection ({}) after {after} ms",
                                crate::client::close_status(*code)
                            ),
                        );
                    }
                    if !self.upgrades.is_empty() {
                        return fail(FailureKind::Close, "the client reconnected".into());
                    }
                    if !self.pump(deadline).await {
                        return Ok(());
                    }
                }
            }
            Step::Wait { ms } => {
                let deadline = started + self.ms(*ms);
                while self.pump(deadline).await {}
                Ok(())
            }
        }
    }

    fn not_before(
        &self,
        at: Instant,
        started: Instant,
        not_before_ms: Option<u64>,
        n: &str,
        step: &Step,
    ) -> StepResult {
        let Some(min) = not_before_ms else {
            return Ok(());
        };
        let elapsed = at.saturating_duration_since(started);
        if elapsed + self.tolerance < self.ms(min) {
            return Err(failure(
                n,
                step,
                FailureKind::Message,
                format!(
                    "it came after {} ms, earlier than {min} ms",
                    elapsed.as_millis()
                ),
            ));
        }
        Ok(())
    }

    fn command(&mut self, c: &Value) -> Value {
        let mut cmd = substitute(c, &self.matcher.captures);
        if let Value::Object(m) = &mut cmd {
            if m.get("cmd").and_then(Value::as_str) != Some("token") && !m.contains_key("ref") {
                self.next_ref += 1;
                m.insert("ref".into(), json!(format!("c{}", self.next_ref)));
            }
            if m.get("cmd").and_then(Value::as_str) == Some("connect") {
                m.entry("url").or_insert(json!(self.server.url));
                m.entry("token").or_insert(json!("tok-0"));
            }
            if let Some(r) = m.get("ref") {
                self.matcher.captures.insert("ref".into(), r.clone());
                let name = m.get("cmd").and_then(Value::as_str).unwrap_or_default();
                self.commands
                    .insert(r.as_str().unwrap_or_default().to_owned(), name.to_owned());
            }
        }
        cmd
    }

    fn find_event(&mut self, m: &Value) -> Option<usize> {
        self.matcher.now_ms = now_ms();
        let i = self
            .events
            .iter()
            .position(|(_, e)| self.matcher.test(m, e))?;
        let e = self.events[i].1.clone();
        let _ = self.matcher.check(m, &e);
        Some(i)
    }

    fn find_frame(&mut self, m: &Value) -> Option<usize> {
        self.matcher.now_ms = now_ms();
        let i = self
            .frames
            .iter()
            .position(|(_, f)| self.matcher.test(m, f))?;
        let f = self.frames[i].1.clone();
        let _ = self.matcher.check(m, &f);
        Some(i)
    }

    fn record(&mut self, sample: Option<&str>, started: Instant, at: Instant) {
        if let Some(name) = sample {
            let ms = at.saturating_duration_since(started).as_secs_f64() * 1000.0;
            self.samples.entry(name.to_owned()).or_default().push(ms);
        }
    }

    async fn next_upgrade(
        &mut self,
        started: Instant,
        within_ms: u64,
        not_before_ms: Option<u64>,
        request: Option<&Value>,
        n: &str,
        step: &Step,
    ) -> Result<Upgrade, Box<Failure>> {
        let deadline = started + self.ms(within_ms) + self.tolerance;
        loop {
            if let Some(u) = self.upgrades.pop_front() {
                self.not_before(u.at, started, not_before_ms, n, step)?;
                if let Some(m) = request {
                    let m = substitute(m, &self.matcher.captures);
                    if let Err(mm) = self.matcher.check(&m, &u.request) {
                        let mut f = failure(
                            n,
                            step,
                            FailureKind::Close,
                            format!("the upgrade request does not match: {mm}"),
                        );
                        f.expected = Some(short(&m));
                        f.actual = Some(short(&u.request));
                        return Err(f);
                    }
                }
                return Ok(u);
            }
            if !self.pump(deadline).await {
                return Err(failure(
                    n,
                    step,
                    FailureKind::Close,
                    format!("the client made no connection attempt within {within_ms} ms"),
                ));
            }
        }
    }

    async fn accept(&mut self, a: &Accept, started: Instant, n: &str, step: &Step) -> StepResult {
        let u = self
            .next_upgrade(
                started,
                a.within_ms,
                a.not_before_ms,
                a.request.as_ref(),
                n,
                step,
            )
            .await?;
        self.record(a.sample.as_deref(), started, u.at);
        if let Some(old) = self.conn.take() {
            old.drop_tcp();
        }
        let Some(conn) = u.accept().await else {
            return Err(failure(
                n,
                step,
                FailureKind::Close,
                "the client went away during the handshake".into(),
            ));
        };
        self.connections += 1;
        self.conn = Some(conn);
        self.conn_open = true;
        self.frames.clear();
        self.closes.clear();
        if let Some(ms) = a.welcome_delay_ms {
            self.holding_welcome = true;
            let deadline = Instant::now() + self.ms(ms);
            while self.pump(deadline).await {}
            self.holding_welcome = false;
        }
        let mut welcome = default_welcome(self.connections);
        if let Some(over) = &a.welcome {
            merge(&mut welcome, &substitute(over, &self.matcher.captures));
        }
        if let Some(ms) = a.expires_in_ms {
            welcome["expires_at"] = json!(now_ms() + ms);
        }
        self.send_frame(welcome.to_string());
        Ok(())
    }
}

/// The welcome every accept starts from: every capability, spec limits, short heartbeat.
pub fn default_welcome(connection: u32) -> Value {
    json!({
        "type": "welcome",
        "protocol": "chorus.v1",
        "connection_id": format!("conn-{connection}"),
        "user": {"id": "alice", "profile": {"name": "Alice"}},
        "tenant": "",
        "heartbeat": {"interval_ms": 5000, "timeout_ms": 15000},
        "limits": serde_json::to_value(chorus_protocol::connection::Limits::default()).unwrap_or_default(),
        "capabilities": chorus_protocol::connection::Capability::ALL.iter().map(|c| c.as_str()).collect::<Vec<_>>(),
        "server": format!("chorus-conform-client/{}", env!("CARGO_PKG_VERSION")),
    })
}

/// Deep merge: objects merge key by key, `null` removes, anything else replaces.
pub fn merge(base: &mut Value, over: &Value) {
    match (base, over) {
        (Value::Object(b), Value::Object(o)) => {
            for (k, v) in o {
                if v.is_null() {
                    b.remove(k);
                } else {
                    merge(b.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        (b, o) => *b = o.clone(),
    }
}

/// Replaces strings `${name}` (the whole string: the captured value; inside a longer
/// string: its text) by captures; `${name.key}` reaches into a captured object.
pub fn substitute(v: &Value, caps: &BTreeMap<String, Value>) -> Value {
    match v {
        Value::String(s) => {
            if let Some(name) = s.strip_prefix("${").and_then(|r| r.strip_suffix('}')) {
                if !name.contains("${") {
                    if let Some(found) = lookup(caps, name) {
                        return found;
                    }
                }
            }
            if !s.contains("${") {
                return v.clone();
            }
            let mut out = String::new();
            let mut rest = s.as_str();
            while let Some(start) = rest.find("${") {
                out.push_str(&rest[..start]);
                let after = &rest[start + 2..];
                match after.find('}') {
                    Some(end) => {
                        match lookup(caps, &after[..end]) {
                            Some(Value::String(t)) => out.push_str(&t),
                            Some(other) => out.push_str(&other.to_string()),
                            None => out.push_str(&rest[start..start + 3 + end]),
                        }
                        rest = &after[end + 1..];
                    }
                    None => {
                        out.push_str(&rest[start..]);
                        rest = "";
                    }
                }
            }
            out.push_str(rest);
            Value::String(out)
        }
        Value::Array(items) => Value::Array(items.iter().map(|i| substitute(i, caps)).collect()),
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, x)| (k.clone(), substitute(x, caps)))
                .collect(),
        ),
        other => other.clone(),
    }
}

fn lookup(caps: &BTreeMap<String, Value>, path: &str) -> Option<Value> {
    let mut parts = path.split('.');
    let mut cur = caps.get(parts.next()?)?;
    for p in parts {
        cur = cur.get(p)?;
    }
    Some(cur.clone())
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn substitution_keeps_types_and_fills_text() {
        let caps: BTreeMap<String, Value> = [
            ("sub".to_owned(), json!({"id": 7})),
            ("ref".to_owned(), json!("c1")),
        ]
        .into();
        let v = substitute(&json!({"id": "${sub.id}", "t": "r=${ref}"}), &caps);
        assert_eq!(v, json!({"id": 7, "t": "r=c1"}));
    }

    #[test]
    fn merge_replaces_removes_and_recurses() {
        let mut w = default_welcome(1);
        merge(
            &mut w,
            &json!({"heartbeat": {"interval_ms": 300}, "server": null, "extra": 1}),
        );
        assert_eq!(
            w["heartbeat"],
            json!({"interval_ms": 300, "timeout_ms": 15000})
        );
        assert!(w.get("server").is_none());
        assert_eq!(w["extra"], 1);
    }
}
