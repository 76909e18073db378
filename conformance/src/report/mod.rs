//! Reports: [`assemble`] builds the one [`Report`] from case results; each format is a view
//! over it (terminal, JSON, JUnit, HTML). Adding a format never touches the runner.

pub mod html;
pub mod json;
pub mod junit;
pub mod terminal;

use std::collections::BTreeMap;

use chorus_protocol::requirements::Level;

use crate::baseline::Baseline;
use crate::suite::Suite;
use crate::verdict::{
    BaselineStatus, CaseResult, Report, RequirementResult, RequirementVerdict, RunSettings,
    Summary, Target, Verdict, REPORT_VERSION,
};

/// Exit codes of `chorus conform`.
pub mod exit {
    /// Every graded case passed (known failures and warnings aside).
    pub const OK: u8 = 0;
    /// A MUST failed (or a SHOULD with `--fail-on should`, or a stale baseline entry).
    pub const FAILED: u8 = 1;
    /// The harness could not run (setup failure or cases in error).
    pub const HARNESS: u8 = 2;
}

/// Inputs of [`assemble`] besides the cases.
pub struct RunInfo<'a> {
    /// The server under test.
    pub target: Target,
    /// The settings.
    pub settings: RunSettings,
    /// Start, Unix ms.
    pub started_at: u64,
    /// Wall time.
    pub duration_ms: u64,
    /// Registry and unobservable list.
    pub suite: &'a Suite,
    /// Known failures.
    pub baseline: Option<&'a Baseline>,
    /// Warnings fail the run.
    pub fail_on_should: bool,
}

/// Builds the report: applies the baseline, grades requirements, counts, picks the exit code.
pub fn assemble(info: RunInfo<'_>, mut cases: Vec<CaseResult>) -> Report {
    if let Some(b) = info.baseline {
        b.apply(&mut cases);
    }
    cases.sort_by(|a, b| a.id.cmp(&b.id));
    let requirements = grade_requirements(info.suite, &cases);
    let summary = summarize(&cases, info.fail_on_should);
    Report {
        format: "chorus-conformance-report".into(),
        version: REPORT_VERSION,
        tool: format!("chorus-conformance/{}", env!("CARGO_PKG_VERSION")),
        started_at: info.started_at,
        duration_ms: info.duration_ms,
        target: info.target,
        settings: info.settings,
        summary,
        cases,
        requirements,
    }
}

fn summarize(cases: &[CaseResult], fail_on_should: bool) -> Summary {
    let count = |v: Verdict| cases.iter().filter(|c| c.verdict == v).count();
    let mut s = Summary {
        total: cases.len(),
        pass: count(Verdict::Pass),
        fail: count(Verdict::Fail),
        warn: count(Verdict::Warn),
        skipped: count(Verdict::Skipped),
        answered_unannounced: cases.iter().filter(|c| c.answered_unannounced).count(),
        untestable: count(Verdict::Untestable),
        error: count(Verdict::Error),
        known_failures: cases
            .iter()
            .filter(|c| c.baseline == Some(BaselineStatus::Known))
            .count(),
        stale_baseline: cases
            .iter()
            .filter(|c| c.baseline == Some(BaselineStatus::Stale))
            .count(),
        flaky: cases.iter().filter(|c| c.flaky).count(),
        exit_code: exit::OK,
    };
    let errors = cases
        .iter()
        .any(|c| c.verdict == Verdict::Error && c.baseline != Some(BaselineStatus::Known));
    s.exit_code = if cases.iter().any(|c| c.fails_run(fail_on_should)) {
        exit::FAILED
    } else if errors {
        exit::HARNESS
    } else {
        exit::OK
    };
    s
}

fn grade_requirements(suite: &Suite, cases: &[CaseResult]) -> Vec<RequirementResult> {
    let mut by_req: BTreeMap<&str, Vec<&CaseResult>> = BTreeMap::new();
    for c in cases {
        for r in &c.requirements {
            by_req.entry(r.as_str()).or_default().push(c);
        }
    }
    suite
        .requirements
        .iter()
        .map(|r| {
            let citing = by_req.get(r.id.as_str()).cloned().unwrap_or_default();
            let has = |v: Verdict| citing.iter().any(|c| c.verdict == v);
            let verdict = if citing.is_empty() {
                RequirementVerdict::NotTested
            } else if has(Verdict::Fail) {
                RequirementVerdict::Fail
            } else if has(Verdict::Warn) {
                RequirementVerdict::Warn
            } else if has(Verdict::Pass) {
                RequirementVerdict::Pass
            } else {
                RequirementVerdict::NotRun
            };
            RequirementResult {
                id: r.id.clone(),
                level: level_name(r.level).into(),
                area: r.area.clone(),
                text: r.text.clone(),
                verdict,
                cases: citing.iter().map(|c| c.id.clone()).collect(),
                unobservable: suite.unobservable.get(&r.id).cloned(),
            }
        })
        .collect()
}

/// `MUST`, `SHOULD`, `MAY`, `REMOVED`.
pub fn level_name(l: Level) -> &'static str {
    match l {
        Level::Must => "MUST",
        Level::Should => "SHOULD",
        Level::May => "MAY",
        Level::Removed => "REMOVED",
    }
}

/// Cases grouped by area, areas in first-seen order of the sorted cases.
pub fn by_area(cases: &[CaseResult]) -> Vec<(String, Vec<&CaseResult>)> {
    let mut out: Vec<(String, Vec<&CaseResult>)> = Vec::new();
    for c in cases {
        match out.iter_mut().find(|(a, _)| *a == c.area) {
            Some((_, v)) => v.push(c),
            None => out.push((c.area.clone(), vec![c])),
        }
    }
    out
}
