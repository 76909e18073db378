//! `chorus conform-client`: the suite plays a scripted Chorus v1 server and grades the client
//! library under test, which it drives through an adapter process speaking the driver
//! contract ([`driver`], conformance/CLIENT-DRIVER.md). Cases are data
//! (`fixtures/client/<area>/*.json`, [`case`]); results are the same [`CaseResult`]s the
//! server suite reports, so every report format, baselines and exit codes are shared.

pub mod adapter;
pub mod case;
pub mod driver;
pub mod instance;
pub mod server;
pub mod stats;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Instant;

use chorus_protocol::requirements::{Level, Requirement};
use futures_util::stream::{self, StreamExt};

use crate::suite::{glob_match, Suite, SuiteError};
use crate::transcript::{EventKind, Transcript};
use crate::validate::FrameSchema;
use crate::verdict::{CaseResult, Failure, FailureKind, PartVerdict, Verdict};
use case::{ClientCase, Statistic};
pub use instance::Settings;

/// A client case and its file.
#[derive(Debug, Clone)]
pub struct LoadedCase {
    /// Path relative to the repository root.
    pub file: String,
    /// The case.
    pub case: ClientCase,
}

/// The inputs of a client run: cases, the client requirements and why some cannot be graded.
#[derive(Debug, Clone, Default)]
pub struct ClientSuite {
    /// Cases, sorted by id.
    pub cases: Vec<LoadedCase>,
    /// The client requirements of the spec ([`is_client_requirement`]).
    pub requirements: Vec<Requirement>,
    /// Requirement id -> why a client suite cannot grade it (client-unobservable.json).
    pub unobservable: BTreeMap<String, String>,
}

/// A requirement on clients: its text starts with "A client" (CLIENT-n and the client
/// rules of the other areas), or it is of the client area.
pub fn is_client_requirement(r: &Requirement) -> bool {
    r.level != Level::Removed && (r.area == "client" || r.text.starts_with("A client"))
}

fn parse_cases<'a>(
    files: impl Iterator<Item = (String, &'a str)>,
) -> Result<Vec<LoadedCase>, SuiteError> {
    let mut out = Vec::new();
    for (file, text) in files {
        let case: ClientCase = serde_json::from_str(text).map_err(|e| SuiteError::Io {
            path: file.clone(),
            source: std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()),
        })?;
        out.push(LoadedCase { file, case });
    }
    out.sort_by(|a, b| a.case.id.cmp(&b.case.id));
    Ok(out)
}

impl ClientSuite {
    /// The cases, requirements and unobservable list compiled into this library.
    pub fn embedded() -> Result<ClientSuite, SuiteError> {
        let server = Suite::embedded()?;
        let cases = parse_cases(
            crate::suite::embedded::CLIENT_FIXTURES
                .iter()
                .map(|(f, t)| (f.to_string(), *t)),
        )?;
        let unobservable = match crate::suite::embedded::CLIENT_UNOBSERVABLE_JSON {
            Some(text) => serde_json::from_str(text).map_err(SuiteError::Unobservable)?,
            None => BTreeMap::new(),
        };
        Ok(ClientSuite {
            cases,
            requirements: server
                .requirements
                .into_iter()
                .filter(is_client_requirement)
                .collect(),
            unobservable,
        })
    }

    /// Replaces the cases with those under `dir` (recursively, `*.json`).
    pub fn with_case_dir(mut self, dir: &Path) -> Result<ClientSuite, SuiteError> {
        let mut texts = Vec::new();
        let mut stack = vec![dir.to_path_buf()];
        while let Some(d) = stack.pop() {
            let entries = std::fs::read_dir(&d).map_err(|source| SuiteError::Io {
                path: d.display().to_string(),
                source,
            })?;
            for p in entries.flatten().map(|e| e.path()) {
                if p.is_dir() {
                    stack.push(p);
                } else if p.extension().is_some_and(|e| e == "json") {
                    let text = std::fs::read_to_string(&p).map_err(|source| SuiteError::Io {
                        path: p.display().to_string(),
                        source,
                    })?;
                    texts.push((p.display().to_string(), text));
                }
            }
        }
        self.cases = parse_cases(texts.iter().map(|(f, t)| (f.clone(), t.as_str())))?;
        Ok(self)
    }

    /// Cases whose id matches one of `run` (all when empty) and none of `skip`.
    pub fn select(&self, run: &[String], skip: &[String]) -> Vec<LoadedCase> {
        self.cases
            .iter()
            .filter(|c| run.is_empty() || run.iter().any(|g| glob_match(g, &c.case.id)))
            .filter(|c| !skip.iter().any(|g| glob_match(g, &c.case.id)))
            .cloned()
            .collect()
    }

    /// Static problems: duplicate ids, an id whose area is not its folder, requirement ids
    /// that are not client requirements, statistics over samples no step records.
    pub fn problems(&self) -> Vec<String> {
        let known: BTreeSet<&str> = self.requirements.iter().map(|r| r.id.as_str()).collect();
        let mut out = Vec::new();
        let mut ids = BTreeSet::new();
        for lc in &self.cases {
            let c = &lc.case;
            if !ids.insert(c.id.as_str()) {
                out.push(format!("{}: duplicate id {}", lc.file, c.id));
            }
            let folder = Path::new(&lc.file)
                .parent()
                .and_then(|p| p.file_name())
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            if folder != c.area() {
                out.push(format!(
                    "{}: id {} is not in folder {}/",
                    lc.file,
                    c.id,
                    c.area()
                ));
            }
            if c.requirements.is_empty() {
                out.push(format!("{}: cites no requirement", lc.file));
            }
            for r in &c.requirements {
                if !known.contains(r.as_str()) {
                    out.push(format!("{}: {r} is not a client requirement", lc.file));
                }
            }
            let samples = c.sample_names();
            for s in &c.statistics {
                let (Statistic::Uniform { sample, .. } | Statistic::MaxAbove { sample, .. }) = s;
                if !samples.contains(sample.as_str()) {
                    out.push(format!("{}: no step records sample {sample}", lc.file));
                }
            }
        }
        out
    }

    /// Client requirements with neither a case nor a reason.
    pub fn coverage_gaps(&self) -> Vec<String> {
        let cited: BTreeSet<&str> = self
            .cases
            .iter()
            .flat_map(|c| c.case.requirements.iter().map(String::as_str))
            .collect();
        self.requirements
            .iter()
            .filter(|r| !cited.contains(r.id.as_str()) && !self.unobservable.contains_key(&r.id))
            .map(|r| r.id.clone())
            .collect()
    }

    /// The coverage table as text.
    pub fn coverage_table(&self) -> String {
        let mut out = String::new();
        for r in &self.requirements {
            let cases: Vec<&str> = self
                .cases
                .iter()
                .filter(|c| c.case.requirements.contains(&r.id))
                .map(|c| c.case.id.as_str())
                .collect();
            let what = match (cases.is_empty(), self.unobservable.get(&r.id)) {
                (false, _) => cases.join(", "),
                (true, Some(why)) => format!("(not graded: {why})"),
                (true, None) => "UNCOVERED".into(),
            };
            let level = crate::report::level_name(r.level);
            out.push_str(&format!("  {:<10} {level:<7} {what}\n", r.id));
        }
        let gaps = self.coverage_gaps();
        out.push_str(&format!(
            "\n{} client requirements, {} uncovered\n",
            self.requirements.len(),
            gaps.len()
        ));
        out
    }

    /// A [`Suite`] holding the client requirements, for [`crate::report::assemble`].
    pub fn report_suite(&self) -> Suite {
        Suite {
            fixtures: Vec::new(),
            requirements: self.requirements.clone(),
            unobservable: self.unobservable.clone(),
        }
    }
}

/// Runs every case (`jobs` at once, each `repeat` times), calling `done` after each.
pub async fn run_all(
    settings: &Settings,
    cases: &[LoadedCase],
    jobs: usize,
    repeat: u32,
    done: impl Fn(&CaseResult),
) -> Vec<CaseResult> {
    let schema = FrameSchema::client().ok();
    let schema = schema.as_ref();
    // Cases of many instances start many adapters at once and grade their timing as a
    // distribution: each runs alone, so the others' load does not skew it.
    let (crowds, singles): (Vec<&LoadedCase>, Vec<&LoadedCase>) =
        cases.iter().partition(|lc| lc.case.instances > 1);
    let mut results = Vec::new();
    for lc in crowds {
        let r = run_repeated(settings, lc, schema, repeat.max(1)).await;
        done(&r);
        results.push(r);
    }
    let rest: Vec<CaseResult> = stream::iter(singles)
        .map(|lc| async move { run_repeated(settings, lc, schema, repeat.max(1)).await })
        .buffer_unordered(jobs.max(1))
        .inspect(|r| done(r))
        .collect()
        .await;
    results.extend(rest);
    results
}

/// Starts the adapter once and returns the `client` of its `ready` line: a misconfigured
/// adapter command is reported before any case runs.
pub async fn probe(settings: &Settings) -> Result<String, String> {
    let t = Transcript::new();
    let mut a = adapter::Adapter::spawn(&settings.adapter, &settings.env, "probe", "probe", &t)
        .map_err(|e| format!("cannot start the adapter: {e}"))?;
    let wait = std::time::Duration::from_millis((30_000.0 * settings.timeout_scale) as u64);
    let ready = tokio::time::timeout(wait, async {
        while let Some((_, e)) = a.events.recv().await {
            if e["event"] == "ready" {
                return Some(e);
            }
        }
        None
    })
    .await
    .ok()
    .flatten();
    a.finish(std::time::Duration::from_secs(2)).await;
    let stderr: Vec<String> = t
        .events()
        .into_iter()
        .filter(|e| e.who.ends_with("stderr"))
        .map(|e| e.text)
        .collect();
    match ready {
        Some(e) if e["driver"] == serde_json::json!(driver::DRIVER_VERSION) => {
            Ok(e["client"].as_str().unwrap_or("unnamed client").to_owned())
        }
        Some(e) => Err(format!(
            "the adapter speaks driver version {}, this suite version {}",
            e["driver"],
            driver::DRIVER_VERSION
        )),
        None => Err(format!(
            "the adapter `{}` wrote no `ready` line{}",
            settings.adapter,
            if stderr.is_empty() {
                String::new()
            } else {
                format!("; its stderr:\n{}", stderr.join("\n"))
            }
        )),
    }
}

async fn run_repeated(
    settings: &Settings,
    lc: &LoadedCase,
    schema: Option<&FrameSchema>,
    repeat: u32,
) -> CaseResult {
    if let Some(needs) = lc.case.needs_ms.filter(|n| *n > settings.max_wait_ms) {
        let mut r = base_result(lc, Verdict::Untestable, 0);
        r.reason = Some(format!(
            "needs about {needs} ms of waiting (the spec's windows), more than --max-wait-ms {}",
            settings.max_wait_ms
        ));
        return r;
    }
    let mut attempts = Vec::new();
    let mut worst: Option<CaseResult> = None;
    for _ in 0..repeat {
        let r = run_case(settings, lc, schema).await;
        attempts.push(r.verdict);
        if worst
            .as_ref()
            .is_none_or(|w| r.verdict.severity() >= w.verdict.severity())
        {
            worst = Some(r);
        }
    }
    let mut r = worst.unwrap_or_else(|| unreachable_result(lc));
    if repeat > 1 {
        r.flaky = attempts.iter().any(|v| *v != attempts[0]);
        r.attempts = attempts;
    }
    r
}

fn unreachable_result(lc: &LoadedCase) -> CaseResult {
    base_result(lc, Verdict::Error, 0)
}

fn base_result(lc: &LoadedCase, verdict: Verdict, duration_ms: u64) -> CaseResult {
    let c = &lc.case;
    CaseResult {
        id: c.id.clone(),
        title: c.title.clone(),
        area: c.area().to_owned(),
        file: lc.file.clone(),
        level: c.level,
        requirements: c.requirements.clone(),
        capabilities: Vec::new(),
        verdict,
        message_verdict: PartVerdict::NotChecked,
        close_verdict: PartVerdict::NotChecked,
        answered_unannounced: false,
        reason: None,
        failures: Vec::new(),
        schema_violations: Vec::new(),
        transcript: Vec::new(),
        failed_step: None,
        duration_ms,
        attempts: Vec::new(),
        flaky: false,
        baseline: None,
    }
}

/// Runs one case once: its instances at once, then its statistics.
pub async fn run_case(
    settings: &Settings,
    lc: &LoadedCase,
    schema: Option<&FrameSchema>,
) -> CaseResult {
    let clock = Instant::now();
    let c = &lc.case;
    let transcripts: Vec<Transcript> = (0..c.instances).map(|_| Transcript::new()).collect();
    let runs = transcripts.iter().enumerate().map(|(i, t)| {
        let who = if c.instances > 1 {
            format!("client{}", i + 1)
        } else {
            "client".to_owned()
        };
        instance::run(c, settings, schema, who, t.clone())
    });
    let outcomes = futures_util::future::join_all(runs).await;
    let mut failures: Vec<Failure> = Vec::new();
    let mut error = None;
    let mut samples: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    let mut failed_instance = None;
    for (i, o) in outcomes.into_iter().enumerate() {
        if error.is_none() && o.error.is_some() {
            failed_instance = Some(i);
            error = o.error;
        }
        if failures.is_empty() && !o.failures.is_empty() && error.is_none() {
            failed_instance = Some(i);
            failures = o.failures;
        }
        for (k, v) in o.samples {
            samples.entry(k).or_default().extend(v);
        }
    }
    if failures.is_empty() && error.is_none() {
        for s in &c.statistics {
            if let Err(f) = check_statistic(s, &samples, c.instances) {
                failures.push(*f);
                break;
            }
        }
    }
    let duration_ms = clock.elapsed().as_millis() as u64;
    let verdict = match (&error, failures.is_empty()) {
        (Some(_), _) => Verdict::Error,
        (None, true) => Verdict::Pass,
        (None, false) if c.level == crate::fixture::CaseLevel::Must => Verdict::Fail,
        (None, false) => Verdict::Warn,
    };
    let mut r = base_result(lc, verdict, duration_ms);
    r.reason = error;
    let part = |kind| {
        if failures.is_empty() {
            PartVerdict::Pass
        } else if failures.iter().any(|f| f.kind == kind) {
            PartVerdict::Fail
        } else {
            PartVerdict::NotChecked
        }
    };
    r.message_verdict = part(FailureKind::Message);
    r.close_verdict = part(FailureKind::Close);
    if verdict != Verdict::Pass {
        let t = &transcripts[failed_instance.unwrap_or(0)];
        if failures.first().is_some_and(|f| f.action == "statistics") {
            t.push("harness", EventKind::Note, format!("samples: {samples:?}"));
        }
        r.transcript = t.events();
    }
    r.failures = failures;
    r
}

fn check_statistic(
    s: &Statistic,
    samples: &BTreeMap<String, Vec<f64>>,
    instances: u32,
) -> Result<(), Box<Failure>> {
    let fail = |message: String, actual: &[f64]| {
        Box::new(Failure {
            step: "statistics".into(),
            action: "statistics".into(),
            kind: FailureKind::Close,
            message,
            expected: None,
            actual: Some(format!("{:?}", stats::rounded(actual))),
        })
    };
    let empty = Vec::new();
    match s {
        Statistic::Uniform {
            sample,
            min_ms,
            max_ms,
        } => {
            let xs = samples.get(sample).unwrap_or(&empty);
            if xs.len() < (instances as usize).min(8) {
                return Err(fail(format!("only {} samples of {sample}", xs.len()), xs));
            }
            let d = stats::ks_uniform(xs, *min_ms, *max_ms);
            let crit = stats::ks_critical_001(xs.len());
            if d > crit {
                return Err(fail(
                    format!(
                        "the {} delays of {sample} are not spread uniformly over [{min_ms}, {max_ms}] ms \
                         (Kolmogorov-Smirnov distance {d:.3} > {crit:.3}, significance 0.001; mean {:.0} ms)",
                        xs.len(),
                        stats::mean(xs)
                    ),
                    xs,
                ));
            }
            Ok(())
        }
        Statistic::MaxAbove { sample, ms } => {
            let xs = samples.get(sample).unwrap_or(&empty);
            let max = xs.iter().cloned().fold(f64::MIN, f64::max);
            if xs.is_empty() || max <= *ms {
                return Err(fail(
                    format!(
                        "no delay of {sample} exceeds {ms} ms (largest {max:.0} ms of {}): the window did not grow",
                        xs.len()
                    ),
                    xs,
                ));
            }
            Ok(())
        }
    }
}
