//! The runner: probes the server, schedules cases concurrently (each isolated by its own
//! `{run}` prefix), repeats them for flakiness, and grades each into a [`CaseResult`].
//! Step semantics live in [`crate::case`]; reports never reach in here.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::Value;
use thiserror::Error;

use crate::case::{CaseOutcome, CaseRun};
use crate::client::{ConnectOptions, Connection, Inbound};
use crate::fixture::Fixture;
use crate::suite::LoadedFixture;
use crate::tokens::TokenSource;
use crate::transcript::Transcript;
use crate::validate::{FrameSchema, SchemaError};
use crate::verdict::{CaseResult, PartVerdict, Verdict};

/// Everything a run needs to reach and authenticate to the server under test.
#[derive(Debug, Clone)]
pub struct RunConfig {
    /// WebSocket URLs; clients are spread over them.
    pub urls: Vec<String>,
    /// HTTP base URL.
    pub http_url: String,
    /// The HTTP base of each node, in the order of `urls`, for requests a fixture sends
    /// to a given node (`server`); empty: every request goes to `http_url`.
    pub http_urls: Vec<String>,
    /// How client tokens are made.
    pub tokens: TokenSource,
    /// Extra headers on every upgrade and HTTP request (`--header`).
    pub headers: BTreeMap<String, String>,
    /// `--api-key` for the HTTP API.
    pub api_key: Option<String>,
    /// Multiplies every default and fixture time.
    pub timeout_scale: f64,
    /// Longest single wait a case may ask for (before scaling) before it is untestable.
    pub max_wait_ms: u64,
    /// Cases run at once.
    pub jobs: usize,
    /// Attempts per case.
    pub repeat: u32,
    /// Seed of the run (run prefix; property tests).
    pub seed: u64,
    /// Run skipped cases once to detect "answered but not announced".
    pub probe_unannounced: bool,
}

impl RunConfig {
    /// Defaults for one server URL.
    pub fn new(url: &str, tokens: TokenSource) -> Self {
        RunConfig {
            urls: vec![url.to_owned()],
            http_url: crate::http::http_base(url),
            http_urls: Vec::new(),
            tokens,
            headers: BTreeMap::new(),
            api_key: None,
            timeout_scale: 1.0,
            max_wait_ms: 10_000,
            jobs: 4,
            repeat: 1,
            seed: 0,
            probe_unannounced: true,
        }
    }

    /// The HTTP base a request pinned to node `server` goes to (`http_url` without one).
    pub fn http_base(&self, server: Option<usize>) -> &str {
        match server {
            Some(i) if !self.http_urls.is_empty() => &self.http_urls[i % self.http_urls.len()],
            _ => &self.http_url,
        }
    }

    /// The `{run}` prefix of one case attempt: lower-case, digits and `-` only.
    pub fn run_prefix(&self, case_no: usize, attempt: u32) -> String {
        let tag = format!("{:06x}", self.seed & 0xff_ffff);
        if attempt == 0 {
            format!("r{tag}-{case_no}")
        } else {
            format!("r{tag}-{case_no}-{attempt}")
        }
    }
}

/// The run cannot start.
#[derive(Debug, Error)]
pub enum RunError {
    /// The protocol schema could not be compiled (a bug).
    #[error(transparent)]
    Schema(#[from] SchemaError),
    /// No `--url`.
    #[error("no server URL")]
    NoUrl,
    /// The probe connection failed.
    #[error("probe connection to {url} failed: {message}")]
    Probe {
        /// The URL.
        url: String,
        /// What happened.
        message: String,
    },
    /// The server refused `--api-key`: every HTTP API case would fail for the harness's
    /// mistake, not the server's.
    #[error(
        "the server refused --api-key: {status} on GET {url} with that X-Api-Key. Pass the key \
         the server was started with (chorus serve --api-key KEY or CHORUS_API_KEY), or leave \
         --api-key out (the HTTP API cases are then untestable)"
    )]
    ApiKeyRefused {
        /// The URL probed.
        url: String,
        /// The status it answered.
        status: u16,
    },
}

/// A run in progress: config, compiled schemas, the probe's `welcome`.
pub struct Runner {
    /// The configuration.
    pub config: RunConfig,
    /// Server frame schema.
    pub server_schema: Arc<FrameSchema>,
    /// Client frame schema.
    pub client_schema: Arc<FrameSchema>,
    /// `welcome` of the probe connection.
    pub welcome: Value,
    /// Shared HTTP client.
    pub http: reqwest::Client,
    /// The server accepted the probe's connection without any token: it runs in
    /// development mode (CONN-11), where the authentication cases fail by design.
    pub dev_mode: bool,
}

impl Runner {
    /// Compiles the schemas and opens a probe connection to each URL for its `welcome`.
    pub async fn new(config: RunConfig) -> Result<Runner, RunError> {
        let server_schema = Arc::new(FrameSchema::server()?);
        let client_schema = Arc::new(FrameSchema::client()?);
        if config.urls.is_empty() {
            return Err(RunError::NoUrl);
        }
        let mut welcome = Value::Null;
        for url in &config.urls {
            let w = probe(&config, url, server_schema.clone()).await?;
            if welcome.is_null() {
                welcome = w;
            }
        }
        let http = reqwest::Client::new();
        let announces_api = welcome["capabilities"]
            .as_array()
            .is_some_and(|a| a.iter().any(|c| c == "http_api"));
        if announces_api {
            check_api_key(&config, &http).await?;
        }
        let dev_mode = accepts_no_token(&config, server_schema.clone()).await;
        Ok(Runner {
            config,
            server_schema,
            client_schema,
            welcome,
            http,
            dev_mode,
        })
    }

    /// How often the harness's clients ping when idle: the announced heartbeat interval
    /// (a client's duty, CONN-12), so that a client a case keeps waiting is never closed for
    /// silence. `None` when the server announced none.
    pub fn keepalive_interval(&self) -> Option<Duration> {
        self.welcome["heartbeat"]["interval_ms"]
            .as_u64()
            .filter(|ms| *ms > 0)
            .map(Duration::from_millis)
    }

    /// Capabilities the probe's `welcome` announced.
    pub fn capabilities(&self) -> Vec<String> {
        self.welcome["capabilities"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|c| c.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Runs cases `jobs` at a time; `progress` sees each result as it completes. Results are
    /// returned sorted by id.
    pub async fn run_all(
        &self,
        cases: &[LoadedFixture],
        progress: impl Fn(&CaseResult),
    ) -> Vec<CaseResult> {
        let jobs = self.config.jobs.max(1);
        let mut stream = futures_util::stream::iter(cases.iter().enumerate())
            .map(|(n, lf)| self.run_case(lf, n + 1))
            .buffer_unordered(jobs);
        let mut out = Vec::new();
        while let Some(result) = stream.next().await {
            progress(&result);
            out.push(result);
        }
        out.sort_by(|a, b| a.id.cmp(&b.id));
        out
    }

    /// Runs one case `repeat` times and grades it.
    pub async fn run_case(&self, lf: &LoadedFixture, case_no: usize) -> CaseResult {
        let f = &lf.fixture;
        let announced = self.capabilities();
        let present: Vec<&str> = crate::fixture::unless_announced(f)
            .into_iter()
            .map(|c| c.as_str())
            .filter(|c| announced.iter().any(|a| a == c))
            .collect();
        if !present.is_empty() {
            let mut result = base_result(lf, Verdict::Skipped);
            result.reason = Some(format!(
                "capability announced: {} (the case grades a server without it)",
                present.join(", ")
            ));
            return result;
        }
        let missing: Vec<&str> = f
            .capabilities
            .iter()
            .map(|c| c.as_str())
            .filter(|c| !announced.iter().any(|a| a == c))
            .collect();
        if !missing.is_empty() {
            return self.skipped(lf, case_no, &missing).await;
        }
        let mut attempts = Vec::new();
        let mut worst: Option<CaseResult> = None;
        for attempt in 0..self.config.repeat.max(1) {
            let result = self.attempt(lf, case_no, attempt).await;
            attempts.push(result.verdict);
            let replace = worst
                .as_ref()
                .is_none_or(|w| result.verdict.severity() > w.verdict.severity());
            if replace {
                worst = Some(result);
            }
        }
        let mut result = worst.unwrap_or_else(|| base_result(lf, Verdict::Error));
        result.flaky = attempts.windows(2).any(|w| w[0] != w[1]);
        if attempts.len() > 1 {
            result.attempts = attempts;
        }
        result
    }

    async fn attempt(&self, lf: &LoadedFixture, case_no: usize, attempt: u32) -> CaseResult {
        let started = Instant::now();
        let prefix = self.config.run_prefix(case_no, attempt);
        // Every step has its own timeout; this bounds a case whose step waits on something
        // the server never ends (a stream body it should not have sent), so that one
        // misbehaving server cannot stall the whole run.
        let deadline = Duration::from_secs_f64(CASE_DEADLINE_SECS * self.config.timeout_scale);
        let run = CaseRun::new(self, &lf.fixture, prefix).run();
        match tokio::time::timeout(deadline, run).await {
            Ok(outcome) => grade(lf, outcome, started.elapsed()),
            Err(_) => {
                let mut result = base_result(lf, Verdict::Error);
                result.reason = Some(format!(
                    "the case did not finish within {} s",
                    deadline.as_secs()
                ));
                result.duration_ms = started.elapsed().as_millis() as u64;
                result
            }
        }
    }

    async fn skipped(&self, lf: &LoadedFixture, case_no: usize, missing: &[&str]) -> CaseResult {
        let mut result = base_result(lf, Verdict::Skipped);
        result.reason = Some(format!("capability not announced: {}", missing.join(", ")));
        if self.config.probe_unannounced {
            let probe = self.attempt(lf, case_no, 0).await;
            result.answered_unannounced = probe.verdict == Verdict::Pass;
        }
        result
    }
}

async fn probe(config: &RunConfig, url: &str, schema: Arc<FrameSchema>) -> Result<Value, RunError> {
    let err = |message: String| RunError::Probe {
        url: url.to_owned(),
        message,
    };
    let spec = crate::fixture::ClientSpec {
        user: Some("conformance-probe".into()),
        ..Default::default()
    };
    let token = config
        .tokens
        .token_for("probe", &spec)
        .await
        .map_err(|e| err(e.to_string()))?;
    let mut opts = ConnectOptions::new(url, Some(token));
    opts.headers = config.headers.clone();
    opts.timeout = Duration::from_secs_f64(5.0 * config.timeout_scale);
    let mut conn = Connection::open("probe", &opts, schema, Transcript::new())
        .await
        .map_err(|e| err(e.to_string()))?;
    let deadline = tokio::time::Instant::now() + opts.timeout;
    let welcome = match conn.next_until(deadline).await {
        Some(Inbound::Text { json: Some(v), .. }) if v["type"] == "welcome" => v,
        Some(Inbound::Close { code, reason }) => {
            return Err(err(format!(
                "closed with {} {reason:?} instead of welcome (is the token secret right?)",
                crate::client::close_status(code)
            )));
        }
        other => return Err(err(format!("expected welcome, got {other:?}"))),
    };
    conn.close(1000, "probe done", Duration::from_millis(200))
        .await;
    Ok(welcome)
}

/// `GET /api/stats` with the run's `--api-key` (HTTP-8 names it among the endpoints the key
/// opens; it changes nothing): a 401 means the key is wrong. Without `--api-key` nothing is
/// checked (the cases that need it are untestable, with that reason).
async fn check_api_key(config: &RunConfig, http: &reqwest::Client) -> Result<(), RunError> {
    let Some(key) = &config.api_key else {
        return Ok(());
    };
    let url = format!("{}/api/stats", config.http_url);
    let mut req = http
        .get(&url)
        .header(chorus_protocol::http::API_KEY_HEADER, key)
        .timeout(Duration::from_secs_f64(5.0 * config.timeout_scale));
    for (k, v) in &config.headers {
        req = req.header(k, v);
    }
    let status = req
        .send()
        .await
        .map_err(|e| RunError::Probe {
            url: url.clone(),
            message: format!("HTTP API probe: {e}"),
        })?
        .status()
        .as_u16();
    if status == 401 {
        return Err(RunError::ApiKeyRefused { url, status });
    }
    Ok(())
}

/// Whether the server welcomes a connection that carries no token at all (development
/// mode). A server that refuses it, whichever way, is not in development mode.
async fn accepts_no_token(config: &RunConfig, schema: Arc<FrameSchema>) -> bool {
    let Some(url) = config.urls.first() else {
        return false;
    };
    let mut opts = ConnectOptions::new(url, None);
    opts.headers = config.headers.clone();
    opts.timeout = Duration::from_secs_f64(5.0 * config.timeout_scale);
    let Ok(mut conn) = Connection::open("probe-no-token", &opts, schema, Transcript::new()).await
    else {
        return false;
    };
    let deadline = tokio::time::Instant::now() + opts.timeout;
    let welcomed = matches!(
        conn.next_until(deadline).await,
        Some(Inbound::Text { json: Some(v), .. }) if v["type"] == "welcome"
    );
    conn.close(1000, "probe done", Duration::from_millis(200))
        .await;
    welcomed
}

/// The longest a case may run (times `timeout_scale`); the slowest fixtures, waiting out
/// heartbeat timeouts and presence grace, take about 10 s.
const CASE_DEADLINE_SECS: f64 = 60.0;

fn base_result(lf: &LoadedFixture, verdict: Verdict) -> CaseResult {
    let f: &Fixture = &lf.fixture;
    CaseResult {
        id: f.id.clone(),
        title: f.title.clone(),
        area: f.id.split('.').next().unwrap_or_default().to_owned(),
        file: lf.file.clone(),
        level: f.level,
        requirements: f.requirements.clone(),
        capabilities: f
            .capabilities
            .iter()
            .map(|c| c.as_str().to_owned())
            .collect(),
        verdict,
        message_verdict: PartVerdict::NotChecked,
        close_verdict: PartVerdict::NotChecked,
        answered_unannounced: false,
        reason: None,
        failures: Vec::new(),
        schema_violations: Vec::new(),
        transcript: Vec::new(),
        failed_step: None,
        duration_ms: 0,
        attempts: Vec::new(),
        flaky: false,
        baseline: None,
    }
}

/// Turns what a case execution observed into a verdict.
pub fn grade(lf: &LoadedFixture, o: CaseOutcome, took: Duration) -> CaseResult {
    use crate::fixture::CaseLevel;
    use crate::verdict::FailureKind;
    let failed_kind = |k: FailureKind| o.failures.iter().any(|f| f.kind == k);
    let schema_bad = !o.violations.is_empty();
    // A failure graded before the harness could not go on (a later step needing a value the
    // failed step should have captured) is the finding; `error` is for cases with none.
    let verdict = if o.error.is_some() && o.failures.is_empty() && !schema_bad {
        Verdict::Error
    } else if o.untestable.is_some() && o.failures.is_empty() && !schema_bad {
        Verdict::Untestable
    } else if schema_bad || (!o.failures.is_empty() && lf.fixture.level == CaseLevel::Must) {
        Verdict::Fail
    } else if !o.failures.is_empty() {
        Verdict::Warn
    } else {
        Verdict::Pass
    };
    let part = |failed: bool, graded: bool| match (failed, graded) {
        (true, _) => PartVerdict::Fail,
        (false, true) => PartVerdict::Pass,
        _ => PartVerdict::NotChecked,
    };
    let mut r = base_result(lf, verdict);
    r.message_verdict = part(
        failed_kind(FailureKind::Message) || schema_bad,
        o.graded_message,
    );
    r.close_verdict = part(failed_kind(FailureKind::Close), o.graded_close);
    r.reason = o.error.or(o.untestable);
    r.failed_step = o.failed_step;
    r.failures = o.failures;
    r.schema_violations = o.violations;
    if verdict != Verdict::Pass {
        r.transcript = o.transcript;
    }
    r.duration_ms = took.as_millis() as u64;
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verdict::{Failure, FailureKind};

    fn must_case() -> LoadedFixture {
        let text = include_str!("../../fixtures/sse/stream.messages.json");
        LoadedFixture {
            file: "fixtures/sse/stream.messages.json".into(),
            fixture: serde_json::from_str(text).unwrap(),
        }
    }

    fn failure() -> Failure {
        Failure {
            step: "21".into(),
            action: "sse_expect".into(),
            kind: FailureKind::Message,
            message: "SSE event id too long".into(),
            expected: None,
            actual: None,
        }
    }

    #[test]
    fn a_graded_failure_outranks_a_later_harness_error() {
        let lf = must_case();
        let errored = |failures: Vec<Failure>| CaseOutcome {
            failures,
            error: Some("unknown placeholder ${lastid}".into()),
            ..CaseOutcome::default()
        };
        let r = grade(&lf, errored(vec![failure()]), Duration::ZERO);
        assert_eq!(r.verdict, Verdict::Fail);
        assert_eq!(r.reason.as_deref(), Some("unknown placeholder ${lastid}"));
        let r = grade(&lf, errored(Vec::new()), Duration::ZERO);
        assert_eq!(r.verdict, Verdict::Error);
    }
}
