//! The one result structure every report renders: verdicts per case and per requirement,
//! with failures, schema violations and transcripts. Versioned; its JSON Schema is
//! `schema/report.schema.json`.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::fixture::CaseLevel;
use crate::transcript::{Event, FrameViolation};

/// Version of the JSON report format; bumped on any incompatible change.
pub const REPORT_VERSION: u32 = 1;

/// A case's verdict.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Every expectation held.
    Pass,
    /// A SHOULD or MAY case failed.
    Warn,
    /// A MUST case failed, or a frame broke the schema.
    Fail,
    /// A capability the case needs is not announced.
    Skipped,
    /// The case's timing window is too long or too short to observe here.
    Untestable,
    /// The harness could not run the case (fixture bug, no route to the server).
    Error,
}

impl Verdict {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::Warn => "warn",
            Verdict::Fail => "fail",
            Verdict::Skipped => "skipped",
            Verdict::Untestable => "untestable",
            Verdict::Error => "error",
        }
    }

    /// Severity for choosing the worst of several attempts.
    pub fn severity(self) -> u8 {
        match self {
            Verdict::Pass => 0,
            Verdict::Skipped => 1,
            Verdict::Untestable => 2,
            Verdict::Warn => 3,
            Verdict::Fail => 4,
            Verdict::Error => 5,
        }
    }
}

/// The grade of one aspect (message or close behaviour) of a case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum PartVerdict {
    /// Graded and held.
    Pass,
    /// Graded and failed.
    Fail,
    /// Nothing of this aspect was graded (or the case did not run).
    NotChecked,
}

impl PartVerdict {
    /// For people: "passed", "failed", "not checked".
    pub fn as_words(self) -> &'static str {
        match self {
            PartVerdict::Pass => "passed",
            PartVerdict::Fail => "failed",
            PartVerdict::NotChecked => "not checked",
        }
    }
}

/// Which behaviour a failure concerns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum FailureKind {
    /// Frames, replies, HTTP responses, SSE events.
    Message,
    /// How and when a connection was closed.
    Close,
}

/// One failed expectation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Failure {
    /// The step, 1-based; nested `repeat` steps as `5.2` (iteration 2 of step 5's body)…
    pub step: String,
    /// The step's action key.
    pub action: String,
    /// Message or close behaviour.
    pub kind: FailureKind,
    /// What went wrong, in one sentence.
    pub message: String,
    /// The expectation (matcher or code), as JSON text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected: Option<String>,
    /// What was observed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actual: Option<String>,
}

/// Baseline status of a case (`--baseline`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum BaselineStatus {
    /// A listed known failure that still fails: does not fail the run.
    Known,
    /// A listed known failure that now passes: the baseline is stale, the run fails.
    Stale,
}

/// The result of one case.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CaseResult {
    /// The fixture's stable id.
    pub id: String,
    /// Its title.
    pub title: String,
    /// Spec area (the id's first segment).
    pub area: String,
    /// The fixture file.
    pub file: String,
    /// The case's level.
    pub level: CaseLevel,
    /// Requirement ids the case checks.
    pub requirements: Vec<String>,
    /// Capabilities the case needs.
    pub capabilities: Vec<String>,
    /// The verdict (the worst over `--repeat` attempts).
    pub verdict: Verdict,
    /// Message behaviour.
    pub message_verdict: PartVerdict,
    /// Close behaviour.
    pub close_verdict: PartVerdict,
    /// Skipped because not announced, but the server answered as if it were.
    #[serde(default)]
    pub answered_unannounced: bool,
    /// Why the case was skipped, untestable or an error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Failed expectations, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failures: Vec<Failure>,
    /// Server frames that broke the schema.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub schema_violations: Vec<FrameViolation>,
    /// The wire transcript (kept for cases that did not pass).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub transcript: Vec<Event>,
    /// Index (0-based) of the top-level step that failed first, for replay fixtures.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_step: Option<usize>,
    /// Wall time of the (last) attempt.
    pub duration_ms: u64,
    /// Verdict of every attempt, with `--repeat`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attempts: Vec<Verdict>,
    /// Attempts disagreed.
    #[serde(default)]
    pub flaky: bool,
    /// Baseline status, with `--baseline`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline: Option<BaselineStatus>,
}

impl CaseResult {
    /// Whether the case counts against the run (`fail_on_should`: warnings do too).
    pub fn fails_run(&self, fail_on_should: bool) -> bool {
        if self.baseline == Some(BaselineStatus::Known) {
            return false;
        }
        match self.verdict {
            Verdict::Fail => true,
            Verdict::Warn => fail_on_should,
            _ => self.baseline == Some(BaselineStatus::Stale),
        }
    }
}

/// A requirement's grade, from the cases that cite it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RequirementVerdict {
    /// Every case citing it that ran passed.
    Pass,
    /// A case citing it failed.
    Fail,
    /// A SHOULD/MAY case citing it failed.
    Warn,
    /// Its cases were all skipped, untestable or errors.
    NotRun,
    /// No case in this run cites it (see `reason` for unobservable ones).
    NotTested,
}

/// One requirement of the spec and how this run graded it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct RequirementResult {
    /// The id, e.g. `PRES-4`.
    pub id: String,
    /// MUST, SHOULD, MAY or REMOVED.
    pub level: String,
    /// Spec area.
    pub area: String,
    /// The requirement's text.
    pub text: String,
    /// The grade.
    pub verdict: RequirementVerdict,
    /// Cases citing it.
    pub cases: Vec<String>,
    /// Why it is not observable on the wire, when so.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unobservable: Option<String>,
}

/// What was tested.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Target {
    /// WebSocket URLs (several: a cluster graded as one server).
    pub urls: Vec<String>,
    /// HTTP base URL.
    pub http_url: String,
    /// `welcome.server` of the probe connection.
    pub server: String,
    /// `welcome.protocol`.
    pub protocol: String,
    /// Announced capabilities.
    pub capabilities: Vec<String>,
    /// The embedded reference server was started for this run.
    #[serde(default)]
    pub embedded: bool,
}

/// Counts over the cases.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Summary {
    /// Cases run or skipped.
    pub total: usize,
    /// Passed.
    pub pass: usize,
    /// Failed (MUST or schema).
    pub fail: usize,
    /// Warnings (SHOULD/MAY).
    pub warn: usize,
    /// Skipped (capability not announced).
    pub skipped: usize,
    /// Skipped, but answered though not announced.
    pub answered_unannounced: usize,
    /// Untestable.
    pub untestable: usize,
    /// Harness errors.
    pub error: usize,
    /// Failures listed in the baseline.
    pub known_failures: usize,
    /// Baseline entries that now pass.
    pub stale_baseline: usize,
    /// Cases whose attempts disagreed.
    pub flaky: usize,
    /// The process exit code this run yields.
    pub exit_code: u8,
}

/// The settings a run used (for reproducing it).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RunSettings {
    /// `--seed`.
    pub seed: u64,
    /// `--timeout-scale`.
    pub timeout_scale: f64,
    /// `--jobs`.
    pub jobs: usize,
    /// `--repeat`.
    pub repeat: u32,
    /// `--fail-on`: `must` or `should`.
    pub fail_on: String,
    /// `--run` globs.
    pub run: Vec<String>,
    /// `--skip` globs.
    pub skip: Vec<String>,
}

/// A whole run: the structure behind every report format.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Report {
    /// Always `chorus-conformance-report`.
    pub format: String,
    /// [`REPORT_VERSION`].
    pub version: u32,
    /// The harness, e.g. `chorus-conformance/0.1.0`.
    pub tool: String,
    /// Start, Unix milliseconds.
    pub started_at: u64,
    /// Wall time.
    pub duration_ms: u64,
    /// The server under test.
    pub target: Target,
    /// Settings.
    pub settings: RunSettings,
    /// Counts and exit code.
    pub summary: Summary,
    /// Every case, sorted by id.
    pub cases: Vec<CaseResult>,
    /// Every requirement of the spec with its grade.
    pub requirements: Vec<RequirementResult>,
}

/// The JSON Schema of a report (`schema/report.schema.json`).
pub fn schema() -> serde_json::Value {
    let generator = schemars::generate::SchemaSettings::draft2020_12().into_generator();
    let mut value = generator.into_root_schema_for::<Report>().to_value();
    if let serde_json::Value::Object(map) = &mut value {
        map.insert(
            "$id".into(),
            serde_json::Value::String(format!(
                "{}report.schema.json",
                chorus_protocol::schema::SCHEMA_BASE
            )),
        );
    }
    value
}
