//! Reports: [`assemble`] builds the one [`Report`] from case results; each format is a view
//! over it (terminal, JSON, JUnit, HTML). Adding a format never touches the runner.

pub mod html;
pub mod json;
pub mod junit;
pub mod markdown;
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
    /// Nothing failed, but the grade is incomplete: some cases were untestable (a missing
    /// `--api-key`, timers longer than `--max-wait-ms`, limits a case cannot work within).
    /// Not "conformant": the summary lists why.
    pub const INCOMPLETE: u8 = 3;
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
    } else if s.untestable > 0 {
        exit::INCOMPLETE
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

/// An area's tally: "12/14 passed" (graded cases only in the fraction, skipped and
/// untestable ones left out), then "2 failed", "1 warning" … for every verdict present.
/// The HTML and terminal reports render the same tally.
pub fn area_tally(cases: &[&CaseResult]) -> (String, Vec<(Verdict, String)>) {
    let n = |v: Verdict| cases.iter().filter(|c| c.verdict == v).count();
    let graded = n(Verdict::Pass) + n(Verdict::Fail) + n(Verdict::Warn) + n(Verdict::Error);
    let head = if graded == 0 {
        "nothing graded".to_owned()
    } else {
        format!("{}/{graded} passed", n(Verdict::Pass))
    };
    let mut rest = Vec::new();
    for (v, word) in [
        (Verdict::Fail, "failed"),
        (Verdict::Warn, "warning"),
        (Verdict::Error, "error"),
        (Verdict::Untestable, "untestable"),
        (Verdict::Skipped, "skipped"),
    ] {
        let k = n(v);
        if k > 0 {
            let plural = if k > 1 && matches!(v, Verdict::Warn | Verdict::Error) {
                "s"
            } else {
                ""
            };
            rest.push((v, format!("{k} {word}{plural}")));
        }
    }
    (head, rest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixture::CaseLevel;
    use crate::transcript::{Event, EventKind};
    use crate::verdict::{Failure, FailureKind, PartVerdict};

    fn failing_case() -> CaseResult {
        CaseResult {
            id: "presence.join.x".into(),
            title: "joins <once> & only once".into(),
            area: "presence".into(),
            file: "fixtures/presence/join.x.json".into(),
            level: CaseLevel::Must,
            requirements: vec!["PRES-3".into()],
            capabilities: vec![],
            verdict: Verdict::Fail,
            message_verdict: PartVerdict::Fail,
            close_verdict: PartVerdict::NotChecked,
            answered_unannounced: false,
            reason: None,
            failures: vec![Failure {
                step: "3".into(),
                action: "expect".into(),
                kind: FailureKind::Message,
                message: "at /type: expected \"user:joined\", got \"<pong>\"".into(),
                expected: Some("{\"type\":\"user:joined\"}".into()),
                actual: Some("{\"type\":\"pong\"}".into()),
            }],
            schema_violations: vec![],
            transcript: vec![Event {
                at_ms: 3,
                who: "bob".into(),
                kind: EventKind::Recv,
                text: "{\"type\":\"pong\",\"ts\":1}".into(),
            }],
            failed_step: Some(2),
            duration_ms: 12,
            attempts: vec![],
            flaky: false,
            baseline: None,
        }
    }

    fn report(server: &str) -> Report {
        let suite = Suite {
            requirements: vec![chorus_protocol::requirements::Requirement {
                id: "PRES-3".into(),
                level: Level::Must,
                area: "presence".into(),
                text: "A server MUST announce a join once.".into(),
                file: "spec/presence.md".into(),
            }],
            ..Suite::default()
        };
        let info = RunInfo {
            target: Target {
                server: server.into(),
                urls: vec!["ws://127.0.0.1:1/ws".into()],
                ..Target::default()
            },
            settings: RunSettings::default(),
            started_at: 0,
            duration_ms: 5,
            suite: &suite,
            baseline: None,
            fail_on_should: false,
        };
        assemble(info, vec![failing_case()])
    }

    #[test]
    fn a_failed_must_sets_exit_code_and_requirement_verdict() {
        let r = report("s");
        assert_eq!(r.summary.exit_code, exit::FAILED);
        assert_eq!(r.requirements[0].verdict, RequirementVerdict::Fail);
        assert_eq!(r.requirements[0].cases, vec!["presence.join.x".to_owned()]);
    }

    #[test]
    fn terminal_groups_by_area_and_shows_the_transcript() {
        let text = terminal::render(
            &report("s"),
            terminal::TerminalOptions {
                transcripts: true,
                verbose: false,
            },
        );
        assert!(text.contains("presence     0/1 passed, 1 failed"), "{text}");
        assert!(text.contains("FAILED (1):"), "{text}");
        assert!(text.contains("expected: {\"type\":\"user:joined\"}"));
        assert!(
            text.contains("bob        <- {\"type\":\"pong\",\"ts\":1}"),
            "{text}"
        );
    }

    #[test]
    fn junit_escapes_and_reports_the_failure() {
        let xml = junit::render(&report("s"));
        assert!(xml.contains("<testcase classname=\"chorus.presence\" name=\"presence.join.x\""));
        assert!(xml.contains("<failure type=\"fail\""));
        assert!(xml.contains("&lt;pong&gt;") && !xml.contains("<pong>"));
    }

    #[test]
    fn html_is_self_contained_and_shows_requirement_and_transcript() {
        let page = html::render(&[report("s")]);
        for forbidden in ["<script", "<link", " src="] {
            assert!(!page.contains(forbidden), "{forbidden}");
        }
        assert!(page.contains("A server MUST announce a join once."));
        assert!(page.contains("&quot;pong&quot;"));
        assert!(page.contains("joins &lt;once&gt; &amp; only once"));
        assert!(
            page.contains("messages: failed · close: not checked"),
            "{page}"
        );
        // Failures come before the area tables.
        assert!(page.find("<h2>Failures").unwrap() < page.find("<h2>Areas").unwrap());
    }

    #[test]
    fn combined_html_has_one_column_per_server() {
        let page = html::render(&[report("alpha/1"), report("beta/2")]);
        assert!(page.contains("<th>alpha/1<div") && page.contains("<th>beta/2<div"));
    }

    #[test]
    fn json_round_trips() {
        let r = report("s");
        assert_eq!(json::parse(&json::render(&r)).unwrap(), r);
    }
}
