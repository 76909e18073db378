//! Properties: generated sequences of operations by four clients (two tabs of one user and
//! two other users) over a few channels, checked step by step against an executable model
//! of the spec ([`model`]). A failure shrinks to a minimal sequence, printed as readable
//! steps and turned into a fixture that replays it ([`reproduce`]).
//!
//! Flow: [`generate`] draws sequences with proptest from a fixed seed; [`search`] plays each
//! on a fresh `{run}` prefix through [`execute`], which acts out the model's [`model::Plan`]
//! for every step over real WebSockets ([`driver`]) and grades what arrives ([`check`]).
//! Results are the harness's [`CaseResult`], one per property ([`catalog`]).
//!
//! Only graceful operations are generated (unsubscribe, close 1000; no drops, no waits for
//! heartbeats or grace periods), so the model needs no clock and a correct server never
//! fails by timing. Every frame a client receives must be one the model expects; a frame it
//! must not receive fails the step that sent it, or at the latest the barrier after the
//! last step.
//!
//! Running: `chorus conform --seed S --cases N --save-failures DIR` (the CLI calls [`run`]);
//! in this crate's tests, `cargo test -p chorus-conformance --test property_reference`
//! (the reference server passes), `--test property_faults` (each server fault is caught)
//! and `--test property_replay` (replay fixtures fail on the fault, pass without it).

pub mod catalog;
pub mod check;
pub mod driver;
pub mod execute;
pub mod generate;
pub mod model;
pub mod ops;
pub mod reproduce;
pub mod search;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub use catalog::Property;
use check::{Failure, FailureKind};
use driver::Endpoint;
use execute::Server;
use search::{Budget, Searched};

use crate::fixture::{CaseLevel, Fixture};
use crate::runner::Runner;
use crate::verdict::{self, CaseResult, PartVerdict, Verdict};

/// Sequences tried per property by default. Against the local reference server, release
/// build, two properties at a time: about 5 s for all seven, most of it the cursor
/// property waiting for `cursor_interval_ms` flushes; every fault of the reference server
/// that the properties catch was caught within 24 sequences for seeds 0 to 3.
pub const DEFAULT_CASES: u32 = 48;
/// Most steps in one sequence by default.
pub const DEFAULT_MAX_STEPS: usize = 24;

/// How properties run.
#[derive(Debug, Clone)]
pub struct Options {
    /// Seed (`--seed`): the same seed generates the same sequences.
    pub seed: u64,
    /// Sequences per property (`--cases`).
    pub cases: u32,
    /// Most steps per sequence.
    pub max_steps: usize,
    /// Time allowed for shrinking one failure.
    pub shrink_time: Duration,
    /// Runs allowed for shrinking one failure.
    pub shrink_runs: u32,
    /// Properties to run.
    pub properties: Vec<Property>,
    /// Properties run at once (each plays its sequences one after another).
    pub jobs: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            seed: 0,
            cases: DEFAULT_CASES,
            max_steps: DEFAULT_MAX_STEPS,
            shrink_time: Duration::from_secs(15),
            shrink_runs: 400,
            properties: Property::ALL.to_vec(),
            jobs: 2,
        }
    }
}

/// The result of one property.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// Which.
    pub property: Property,
    /// The case result every report renders.
    pub result: CaseResult,
    /// The minimal failing sequence, one readable line per step.
    pub minimal: Vec<String>,
    /// The fixture replaying it.
    pub fixture: Option<Fixture>,
    /// Sequences played before the verdict (the failing one included).
    pub cases: u32,
}

impl Outcome {
    /// Writes the replay fixture into `dir` (`--save-failures`), if there is one.
    pub fn save(&self, dir: &Path) -> std::io::Result<Option<PathBuf>> {
        self.fixture
            .as_ref()
            .map(|f| reproduce::save(dir, f))
            .transpose()
    }
}

/// Runs the properties against the runner's server (its URLs, tokens, schema, `welcome`).
pub async fn run(runner: &Runner, opts: &Options) -> Vec<Outcome> {
    let server = Server {
        endpoint: Endpoint {
            urls: runner.config.urls.clone(),
            tokens: runner.config.tokens.clone(),
            headers: runner.config.headers.clone(),
            timeout_scale: runner.config.timeout_scale,
        },
        schema: runner.server_schema.clone(),
        welcome: runner.welcome.clone(),
    };
    run_on(&server, opts).await
}

/// Runs the properties against `server`, `jobs` at a time; outcomes in `properties` order.
pub async fn run_on(server: &Server, opts: &Options) -> Vec<Outcome> {
    use futures_util::StreamExt;
    futures_util::stream::iter(opts.properties.iter().copied())
        .map(|p| run_property(server, p, opts))
        .buffered(opts.jobs.max(1))
        .collect()
        .await
}

/// Runs one property.
pub async fn run_property(server: &Server, p: Property, opts: &Options) -> Outcome {
    let started = Instant::now();
    let caps = server.capabilities();
    if !p.runs_with(&caps) {
        let mut result = base_result(p, Verdict::Skipped);
        let missing: Vec<&str> = p
            .needs()
            .iter()
            .filter(|c| !caps.contains(c))
            .map(|c| c.as_str())
            .collect();
        result.reason = Some(if missing.is_empty() {
            "capability not announced: history or recovery".into()
        } else {
            format!("capability not announced: {}", missing.join(", "))
        });
        return Outcome {
            property: p,
            result,
            minimal: Vec::new(),
            fixture: None,
            cases: 0,
        };
    }
    let srv = server.clone();
    let o = opts.clone();
    let searched = tokio::task::spawn_blocking(move || search_blocking(&srv, p, &o))
        .await
        .map_err(|e| format!("property task failed: {e}"))
        .and_then(|r| r);
    let interval = server.limits().cursor_interval_ms;
    let mut outcome = grade(p, opts.seed, searched, interval);
    outcome.result.duration_ms = started.elapsed().as_millis() as u64;
    outcome
}

/// The `{run}` prefix of the `n`-th sequence of a property.
pub fn prefix(seed: u64, p: Property, n: u32) -> String {
    format!("p{:06x}-{}-{n}", seed & 0xff_ffff, p.name())
}

fn search_blocking(server: &Server, p: Property, opts: &Options) -> Result<Searched, String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start a runtime: {e}"))?;
    let strategy = generate::steps(
        p,
        &generate::Scope::new(&server.capabilities()),
        opts.max_steps,
    );
    let budget = Budget {
        seed: opts.seed,
        cases: opts.cases,
        max_steps: opts.max_steps,
        shrink_time: opts.shrink_time,
        shrink_runs: opts.shrink_runs,
    };
    search::search(p, &strategy, &budget, |steps, n| {
        rt.block_on(execute::execute(server, steps, &prefix(opts.seed, p, n)))
    })
}

fn grade(p: Property, seed: u64, searched: Result<Searched, String>, interval_ms: u64) -> Outcome {
    let searched = match searched {
        Ok(s) => s,
        Err(reason) => {
            let mut result = base_result(p, Verdict::Error);
            result.reason = Some(reason);
            return Outcome {
                property: p,
                result,
                minimal: Vec::new(),
                fixture: None,
                cases: 0,
            };
        }
    };
    let Some(found) = searched.found else {
        let mut result = base_result(p, Verdict::Pass);
        result.message_verdict = PartVerdict::Pass;
        return Outcome {
            property: p,
            result,
            minimal: Vec::new(),
            fixture: None,
            cases: searched.cases,
        };
    };
    let failure = found.run.failure.clone().unwrap_or_else(|| {
        let mut f = Failure::harness(
            found.run.executed.len(),
            None,
            format!(
                "did not fail again when replayed (flaky): {}",
                found.message
            ),
        );
        f.kind = FailureKind::Unexpected;
        f
    });
    let minimal: Vec<String> = found
        .run
        .executed
        .iter()
        .enumerate()
        .map(|(i, e)| format!("{}. {}", i + 1, e.step))
        .collect();
    let verdict = match (failure.kind, failure.level) {
        (FailureKind::Harness, _) => Verdict::Error,
        (FailureKind::Schema, _) | (_, CaseLevel::Must) => Verdict::Fail,
        _ => Verdict::Warn,
    };
    let mut result = base_result(p, verdict);
    result.message_verdict = PartVerdict::Fail;
    if verdict == Verdict::Error {
        result.reason = Some(failure.message.clone());
    }
    let header = format!(
        "{failure}\nminimal sequence (seed {seed}, sequence {} of the search, {} steps before shrinking, {} shrinking runs):\n{}",
        searched.cases,
        found.original_len,
        found.shrink_runs,
        minimal.join("\n")
    );
    let action = found
        .run
        .executed
        .get(failure.step.saturating_sub(1))
        .map(|e| e.step.to_string())
        .unwrap_or_default();
    result.failures = vec![verdict::Failure {
        step: failure.step.to_string(),
        action,
        kind: verdict::FailureKind::Message,
        message: header,
        expected: failure.expected.as_ref().map(|v| v.to_string()),
        actual: failure.actual.as_ref().map(|v| v.to_string()),
    }];
    if !failure.requirements.is_empty() {
        result.requirements = failure.requirements.clone();
    }
    result.schema_violations = found.run.transcript.violations();
    result.transcript = found.run.transcript.events();
    let fixture = (verdict != Verdict::Error)
        .then(|| reproduce::fixture(p, seed, &found.run, &failure, interval_ms));
    Outcome {
        property: p,
        result,
        minimal,
        fixture,
        cases: searched.cases,
    }
}

fn base_result(p: Property, verdict: Verdict) -> CaseResult {
    CaseResult {
        id: p.id(),
        title: p.title().to_owned(),
        area: p.area().to_owned(),
        file: format!("property:{}", p.name()),
        level: p.level(),
        requirements: p.requirements().iter().map(|r| (*r).to_owned()).collect(),
        capabilities: p.needs().iter().map(|c| c.as_str().to_owned()).collect(),
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
