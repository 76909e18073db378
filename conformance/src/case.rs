//! One execution of one fixture: sets up clients and tokens, runs the steps in order and
//! records what failed (FIXTURES.md, "Steps" and "Grading").

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::Value;
use tokio::time::Instant;

use crate::client::{ConnectOptions, Connection};
use crate::fixture::{ClientSpec, Fixture, NumExpr, Step, TokenPlacement};
use crate::matcher::{Matcher, Mismatch};
use crate::runner::Runner;
use crate::sse::SseStream;
use crate::template::Scope;
use crate::transcript::{Event, EventKind, FrameViolation, Transcript};
use crate::verdict::{Failure, FailureKind};

mod expect;
mod many;
mod net;
mod send;
mod stream;

/// What one execution observed, before grading.
#[derive(Debug, Default)]
pub struct CaseOutcome {
    /// Failed expectations.
    pub failures: Vec<Failure>,
    /// Schema violations of server frames.
    pub violations: Vec<FrameViolation>,
    /// The transcript.
    pub transcript: Vec<Event>,
    /// Harness or fixture error that stopped the case.
    pub error: Option<String>,
    /// Why the case cannot be observed here.
    pub untestable: Option<String>,
    /// 0-based index of the first failing top-level step.
    pub failed_step: Option<usize>,
    /// Some message expectation was evaluated.
    pub graded_message: bool,
    /// Some close expectation was evaluated.
    pub graded_close: bool,
}

/// Why a step did not complete normally.
#[derive(Debug)]
pub(crate) enum Flow {
    /// An expectation failed.
    Fail {
        kind: FailureKind,
        message: String,
        expected: Option<String>,
        actual: Option<String>,
    },
    /// The fixture or the harness cannot go on.
    Error(String),
    /// A wait is out of the observable range.
    Untestable(String),
    /// A nested step already recorded why the case stops.
    Stop,
}

impl Flow {
    pub(crate) fn fail(message: impl Into<String>) -> Flow {
        Flow::Fail {
            kind: FailureKind::Message,
            message: message.into(),
            expected: None,
            actual: None,
        }
    }

    pub(crate) fn mismatch(what: &str, m: &Mismatch, expected: &Value, actual: &str) -> Flow {
        Flow::Fail {
            kind: FailureKind::Message,
            message: format!("{what}: {m}"),
            expected: Some(expected.to_string()),
            actual: Some(actual.to_owned()),
        }
    }
}

impl From<crate::template::TemplateError> for Flow {
    fn from(e: crate::template::TemplateError) -> Flow {
        Flow::Error(e.to_string())
    }
}

pub(crate) type StepResult = Result<(), Flow>;

struct ClientState {
    spec: ClientSpec,
    token: Result<String, String>,
    url: String,
    conn: Option<Connection>,
}

/// A case being executed.
pub struct CaseRun<'a> {
    runner: &'a Runner,
    fixture: &'a Fixture,
    scope: Scope,
    clients: BTreeMap<String, ClientState>,
    streams: BTreeMap<String, SseStream>,
    transcript: Transcript,
    /// After a message failure only actions and close expectations still run.
    degraded: bool,
    alive_counter: u32,
    out: CaseOutcome,
}

impl<'a> CaseRun<'a> {
    /// Prepares a case with its `{run}` prefix.
    pub fn new(runner: &'a Runner, fixture: &'a Fixture, run: String) -> Self {
        let mut scope = Scope {
            run,
            ..Scope::default()
        };
        for key in ["limits", "heartbeat", "capabilities", "server"] {
            if let Some(v) = runner.welcome.get(key) {
                scope.builtins.insert(key.into(), v.clone());
            }
        }
        CaseRun {
            runner,
            fixture,
            scope,
            clients: BTreeMap::new(),
            streams: BTreeMap::new(),
            transcript: Transcript::new(),
            degraded: false,
            alive_counter: 0,
            out: CaseOutcome::default(),
        }
    }

    /// Runs every step and returns what was observed.
    pub async fn run(mut self) -> CaseOutcome {
        if let Err(e) = self.setup_clients().await {
            self.out.error = Some(e);
            return self.finish();
        }
        let steps = self.fixture.steps.clone();
        for (i, step) in steps.iter().enumerate() {
            let path = (i + 1).to_string();
            if !self.step(step, &path, Some(i)).await {
                break;
            }
        }
        self.finish()
    }

    fn finish(mut self) -> CaseOutcome {
        for state in self.clients.values_mut() {
            if let Some(conn) = state.conn.as_mut() {
                conn.drop_now();
            }
        }
        self.streams.clear();
        self.out.transcript = self.transcript.events();
        self.out.violations = self.transcript.violations();
        self.out
    }

    async fn setup_clients(&mut self) -> Result<(), String> {
        let urls = &self.runner.config.urls;
        let mut specs = Vec::new();
        for (i, (name, raw)) in self.fixture.clients.iter().enumerate() {
            let spec_value = serde_json::to_value(raw).map_err(|e| e.to_string())?;
            let spec: ClientSpec =
                serde_json::from_value(self.scope.value(&spec_value).map_err(|e| e.to_string())?)
                    .map_err(|e| format!("client {name}: {e}"))?;
            let url = urls[spec.server.unwrap_or(i) % urls.len().max(1)].clone();
            specs.push((name.clone(), spec, url));
        }
        // Minted together: a --token-cmd may be slow, and expiring tokens must stay fresh.
        let tokens = &self.runner.config.tokens;
        let minted = futures_util::future::join_all(
            specs
                .iter()
                .map(|(name, spec, _)| tokens.token_for(name, spec)),
        )
        .await;
        for ((name, spec, url), token) in specs.into_iter().zip(minted) {
            self.add_client(name, spec, url, token.map_err(|e| e.to_string()));
        }
        Ok(())
    }

    /// Registers a client (declared, or generated by `connect_many`) with its token.
    pub(crate) fn add_client(
        &mut self,
        name: String,
        spec: ClientSpec,
        url: String,
        token: Result<String, String>,
    ) {
        let claims = crate::tokens::claims(&name, &spec);
        let sub = claims.get("sub").cloned().unwrap_or(Value::Null);
        self.scope.set_builtin("user", &name, sub);
        if let Ok(t) = &token {
            self.scope
                .set_builtin("token", &name, Value::String(t.clone()));
        }
        let state = ClientState {
            spec,
            token,
            url,
            conn: None,
        };
        self.clients.insert(name, state);
    }

    /// A client whose token expires gets a fresh one at each connect, so its expiry counts
    /// from the connect rather than from the start of the case.
    pub(crate) async fn refresh_expiring_token(&mut self, name: &str) {
        let Some(state) = self.clients.get(name) else {
            return;
        };
        if state.spec.expires_in_s.is_none() || state.spec.token.is_some() {
            return;
        }
        let token = self.runner.config.tokens.token_for(name, &state.spec).await;
        if let (Ok(t), Some(state)) = (token, self.clients.get_mut(name)) {
            self.scope
                .set_builtin("token", name, Value::String(t.clone()));
            state.token = Ok(t);
        }
    }

    /// Runs one step; false when the case must stop.
    async fn step(&mut self, step: &Step, path: &str, top: Option<usize>) -> bool {
        if self.degraded && is_message_expectation(step) {
            return true;
        }
        let shown = serde_json::to_string(step).unwrap_or_default();
        self.transcript
            .push("harness", EventKind::Step, format!("step {path}: {shown}"));
        let result = Box::pin(self.dispatch(step, path)).await;
        match result {
            Ok(()) => true,
            Err(Flow::Stop) => false,
            Err(Flow::Error(e)) if self.degraded => {
                // After a failed step a later one may miss what the failed step would have
                // captured: that is a consequence, not a second finding above the real one.
                let note = format!("step {path} not run after the failure above: {e}");
                self.transcript.push("harness", EventKind::Note, note);
                false
            }
            Err(Flow::Error(e)) => {
                self.out.error = Some(format!("step {path} ({}): {e}", step.action()));
                false
            }
            Err(Flow::Untestable(e)) => {
                self.out.untestable = Some(format!("step {path} ({}): {e}", step.action()));
                false
            }
            Err(Flow::Fail {
                kind,
                message,
                expected,
                actual,
            }) => {
                if self.degraded && kind == FailureKind::Message {
                    return true;
                }
                if let Some(why) = (!self.degraded)
                    .then(|| self.unmet_limit(actual.as_deref()))
                    .flatten()
                {
                    self.out.untestable = Some(format!("step {path} ({}): {why}", step.action()));
                    return false;
                }
                self.transcript.push(
                    "harness",
                    EventKind::Note,
                    format!("FAILED step {path}: {message}"),
                );
                self.out.failures.push(Failure {
                    step: path.to_owned(),
                    action: step.action().to_owned(),
                    kind,
                    message,
                    expected,
                    actual,
                });
                if self.out.failed_step.is_none() {
                    self.out.failed_step = top;
                }
                self.degraded = true;
                kind == FailureKind::Message
            }
        }
    }

    /// Why an unexpected refusal means the announced limits cannot meet the case's
    /// preconditions (the case is then untestable, not failed): the server answered with
    /// `limit_exceeded`, `room_full` or `rate_limited`, and the case expects that code
    /// nowhere, so it grades something else and merely needs more room than this server
    /// announces (a smaller plan is legal, LIMIT-11). A case about the limit expects the code
    /// and fails as usual; LIMIT-3 cases catch a server stricter than it announces.
    fn unmet_limit(&self, actual: Option<&str>) -> Option<String> {
        // The frame (or HTTP `status body`, or the frames of a set, one per line) refused.
        let actual = actual?;
        let candidates = std::iter::once(actual)
            .chain(actual.split_once(' ').map(|(_, body)| body))
            .chain(actual.lines());
        let parsed: Value = candidates
            .filter_map(|t| serde_json::from_str::<Value>(t.trim()).ok())
            .find(|v| v["type"] == "error" || v["error"].is_object())?;
        let error = if parsed["type"] == "error" {
            &parsed
        } else {
            &parsed["error"]
        };
        let code = error["code"].as_str()?;
        let limits: &[&str] = match code {
            "limit_exceeded" => &[],
            "room_full" => &["max_room_users", "max_presence_members"],
            "rate_limited" => &["broadcast_burst", "broadcast_rate_per_sec"],
            _ => return None,
        };
        // A case citing a limits or errors requirement (boundaries, precedence) grades
        // refusals themselves.
        let grades_refusals = self
            .fixture
            .requirements
            .iter()
            .any(|r| r.starts_with("LIMIT-") || r.starts_with("ERR-") || r == "HTTP-4");
        let fixture = serde_json::to_string(&self.fixture.steps).unwrap_or_default();
        if grades_refusals || fixture.contains(&format!("\"{code}\"")) {
            return None;
        }
        let announced = &self.runner.welcome["limits"];
        let named: Vec<&str> = match error["limit"].as_str() {
            Some(limit) => vec![limit],
            None => limits.to_vec(),
        };
        let values: Vec<String> = named
            .iter()
            .map(|l| format!("{l} = {}", announced[*l]))
            .collect();
        // An HTTP or SSE refusal names no limit: its message is the best account of it.
        let what = if values.is_empty() {
            format!("{:?}", error["message"].as_str().unwrap_or(""))
        } else {
            format!("announced {}", values.join(", "))
        };
        Some(format!(
            "the server refused a request with {code} ({what}): the case needs more than \
             these limits allow and grades something else; a server announcing larger \
             limits tests it"
        ))
    }

    async fn dispatch(&mut self, step: &Step, path: &str) -> StepResult {
        match step {
            Step::Connect(s) => self.connect(s).await,
            Step::Send(s) => self.send(s).await,
            Step::SendRaw(s) => self.send_raw(s).await,
            Step::SendBinary(s) => self.send_binary(s).await,
            Step::SendBytesAsText(s) => self.send_bytes_as_text(s).await,
            Step::SendOversize(s) => self.send_oversize(s).await,
            Step::SendDeep(s) => self.send_deep(s).await,
            Step::Expect(s) => self.expect(s).await,
            Step::ExpectSet(s) => self.expect_set(s).await,
            Step::ExpectNone(s) => self.expect_none(s).await,
            Step::ExpectClose(s) => self.expect_close(s).await,
            Step::Alive(s) => self.alive(s).await,
            Step::Close(s) => {
                let wait = self.wait(None, 1000)?;
                let conn = self.conn(&s.close)?;
                conn.close(
                    s.code.unwrap_or(1000),
                    s.reason.as_deref().unwrap_or(""),
                    wait,
                )
                .await;
                Ok(())
            }
            Step::Drop(s) => {
                self.conn(&s.drop)?.drop_now();
                Ok(())
            }
            Step::Sleep(s) => {
                let d = self.wait(Some(&s.sleep_ms), 0)?;
                tokio::time::sleep(d).await;
                Ok(())
            }
            Step::Repeat(r) => self.repeat(r, path).await,
            Step::Http(s) => self.http(s).await,
            Step::SseOpen(s) => self.sse_open(s).await,
            Step::SseExpect(s) => self.sse_expect(s).await,
            Step::SseExpectNone(s) => self.sse_expect_none(s).await,
            Step::SseClose(s) => {
                if let Some(mut st) = self.streams.remove(&s.sse_close) {
                    st.close();
                    self.transcript.push(
                        &s.sse_close,
                        EventKind::Close,
                        "SSE stream closed by the harness",
                    );
                }
                Ok(())
            }
            // Evaluated by the runner before the case starts.
            Step::UnlessAnnounced(_) => Ok(()),
            Step::Require(r) => self.require(r),
            Step::ConnectMany(s) => self.connect_many(s).await,
            Step::SendMany(s) => self.send_many(s).await,
            Step::PauseReading(s) => {
                self.conn(&s.pause_reading)?.set_paused(true);
                Ok(())
            }
            Step::ResumeReading(s) => {
                self.conn(&s.resume_reading)?.set_paused(false);
                Ok(())
            }
            Step::SseExpectComment(s) => self.sse_expect_comment(s).await,
            Step::SseExpectEnd(s) => self.sse_expect_end(s).await,
            Step::SsePauseReading(s) => self.sse_pause(&s.sse_pause_reading, true),
            Step::SseResumeReading(s) => self.sse_pause(&s.sse_resume_reading, false),
        }
    }

    async fn repeat(&mut self, r: &crate::fixture::Repeat, path: &str) -> StepResult {
        let n = self.scope.count(&r.repeat)?;
        let outer = self.scope.iteration;
        for i in 0..n {
            self.scope.iteration = Some(i);
            for (j, step) in r.steps.iter().enumerate() {
                let inner = format!("{path}.{}.{}", i + 1, j + 1);
                if !self.step(step, &inner, None).await {
                    self.scope.iteration = outer;
                    return Err(Flow::Stop);
                }
            }
        }
        self.scope.iteration = outer;
        Ok(())
    }

    /// A precondition on announced values (FIXTURES.md, "Conditions").
    fn require(&self, r: &crate::fixture::Require) -> StepResult {
        let have = self.scope.count(&r.require)?;
        let need = self.scope.count(&r.at_least)?;
        if have >= need {
            return Ok(());
        }
        let shown = match &r.require {
            NumExpr::Template(t) => t.trim_start_matches("${").replace('}', ""),
            NumExpr::Literal(n) => n.to_string(),
        };
        Err(Flow::Untestable(format!(
            "the case needs {shown} >= {need}, the server announces {have}: {}",
            r.reason
        )))
    }

    /// A duration from a fixture value (or default), scaled; untestable beyond the max wait.
    pub(crate) fn wait(&self, e: Option<&NumExpr>, default_ms: u64) -> Result<Duration, Flow> {
        let ms = match e {
            Some(e) => self.scope.count(e)?,
            None => default_ms,
        };
        let max = self.runner.config.max_wait_ms;
        if ms > max {
            return Err(Flow::Untestable(format!(
                "waits {ms} ms, more than --max-wait-ms {max}"
            )));
        }
        Ok(Duration::from_secs_f64(
            ms as f64 * self.runner.config.timeout_scale / 1000.0,
        ))
    }

    pub(crate) fn deadline(&self, e: Option<&NumExpr>, default_ms: u64) -> Result<Instant, Flow> {
        Ok(Instant::now() + self.wait(e, default_ms)?)
    }

    /// The open connection of a client.
    pub(crate) fn conn(&mut self, name: &str) -> Result<&mut Connection, Flow> {
        let state = self
            .clients
            .get_mut(name)
            .ok_or_else(|| Flow::Error(format!("unknown client {name:?}")))?;
        state
            .conn
            .as_mut()
            .ok_or_else(|| Flow::Error(format!("client {name:?} never connected")))
    }

    /// A matcher with placeholders substituted, except references to captures the matcher
    /// itself makes (resolved by [`CaseRun::check`] once those are taken).
    pub(crate) fn expected(&self, raw: &Value) -> Result<Value, Flow> {
        let own = crate::matcher::capture_names(raw);
        Ok(self
            .scope
            .value_keeping(raw, &|root| own.iter().any(|c| c == root))?)
    }

    /// Matches with the case's captures; on success the captures are kept. A matcher that
    /// still refers to its own captures is matched twice: once with those references as
    /// `$any` (taking the captures), then with them substituted.
    pub(crate) fn check(&mut self, expected: &Value, actual: &Value) -> Result<(), Mismatch> {
        let mut m = Matcher {
            captures: std::mem::take(&mut self.scope.captures),
            now_ms: now_ms(),
        };
        let r = if has_reference(expected) {
            let first = m.check(&any_for_references(expected), actual);
            let resolved = Scope {
                captures: m.captures.clone(),
                ..self.scope.clone()
            }
            .value(expected);
            match (first, resolved) {
                (Err(e), _) => Err(e),
                (Ok(()), Ok(exp)) => m.check(&exp, actual),
                (Ok(()), Err(e)) => Err(Mismatch {
                    path: String::new(),
                    expected: e.to_string(),
                    actual: crate::matcher::short(actual),
                }),
            }
        } else {
            m.check(expected, actual)
        };
        self.scope.captures = m.captures;
        r
    }

    /// Whether `actual` matches, without keeping any capture.
    pub(crate) fn test(&self, expected: &Value, actual: &Value) -> bool {
        let mut probe = CaseRun {
            scope: self.scope.clone(),
            ..CaseRun::new(self.runner, self.fixture, String::new())
        };
        probe.check(expected, actual).is_ok()
    }

    pub(crate) fn connect_options(
        &self,
        name: &str,
        s: &crate::fixture::Connect,
    ) -> Result<ConnectOptions, Flow> {
        let state = self
            .clients
            .get(name)
            .ok_or_else(|| Flow::Error(format!("unknown client {name:?}")))?;
        let token = match state.spec.auth {
            TokenPlacement::None => None,
            _ => Some(state.token.clone().map_err(Flow::Error)?),
        };
        let mut opts = ConnectOptions::new(&state.url, token);
        opts.placement = state.spec.auth;
        if let Some(p) = &s.protocols {
            opts.protocols = p
                .iter()
                .map(|x| self.scope.text(x))
                .collect::<Result<_, _>>()?;
        }
        for (k, v) in &s.query {
            opts.query.insert(k.clone(), self.scope.text(v)?);
        }
        opts.headers = self.runner.config.headers.clone();
        for (k, v) in &s.headers {
            opts.headers.insert(k.clone(), self.scope.text(v)?);
        }
        opts.timeout = self.wait(s.within_ms.as_ref(), 2000)?;
        if !crate::fixture::means_silence(self.fixture) {
            opts.keepalive = self.runner.keepalive_interval();
        }
        Ok(opts)
    }
}

fn has_reference(v: &Value) -> bool {
    match v {
        Value::String(s) => s.contains("${"),
        Value::Array(a) => a.iter().any(has_reference),
        Value::Object(m) => m.values().any(has_reference),
        _ => false,
    }
}

/// Operators whose arguments are matchers in their own right: a reference inside them is
/// replaced on its own. Any other operator over a reference (`{"$gt": "${seq}"}`,
/// `{"$not": "${x}"}`) cannot be evaluated before the capture exists and becomes `$any`.
const STRUCTURAL_OPERATORS: [&str; 5] = ["$capture", "$all", "$any_of", "$unordered", "$contains"];

fn any_for_references(v: &Value) -> Value {
    let any = || Value::String("$any".into());
    match v {
        Value::String(s) if s.contains("${") => any(),
        Value::Array(a) => Value::Array(a.iter().map(any_for_references).collect()),
        Value::Object(m) => {
            let op = m.keys().next().filter(|k| k.starts_with('$'));
            if op.is_some_and(|op| !STRUCTURAL_OPERATORS.contains(&op.as_str())) && has_reference(v)
            {
                return any();
            }
            Value::Object(
                m.iter()
                    .map(|(k, x)| (k.clone(), any_for_references(x)))
                    .collect(),
            )
        }
        other => other.clone(),
    }
}

/// Steps that only grade messages: skipped once a message expectation has failed.
fn is_message_expectation(step: &Step) -> bool {
    matches!(
        step,
        Step::Expect(_)
            | Step::ExpectSet(_)
            | Step::ExpectNone(_)
            | Step::Alive(_)
            | Step::SseExpect(_)
            | Step::SseExpectNone(_)
            | Step::SseExpectComment(_)
            | Step::SseExpectEnd(_)
    )
}

/// Unix milliseconds now.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default()
}
