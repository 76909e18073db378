//! The terminal summary: cases grouped by spec area, each failure with its minimal
//! reproduction (the transcript up to the failing step), then the totals.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::transcript::render as render_events;
use crate::verdict::{BaselineStatus, CaseResult, Report, Verdict};

/// Options of the terminal view.
#[derive(Debug, Clone, Copy, Default)]
pub struct TerminalOptions {
    /// Print transcripts of failures.
    pub transcripts: bool,
    /// List passing cases too.
    pub verbose: bool,
}

fn mark(c: &CaseResult) -> &'static str {
    match (c.verdict, c.baseline) {
        (_, Some(BaselineStatus::Known)) => "KNOWN",
        (_, Some(BaselineStatus::Stale)) => "STALE",
        (Verdict::Pass, _) => "pass",
        (Verdict::Fail, _) => "FAIL",
        (Verdict::Warn, _) => "WARN",
        (Verdict::Skipped, _) => "skip",
        (Verdict::Untestable, _) => "untestable",
        (Verdict::Error, _) => "ERROR",
    }
}

/// The whole summary as text: the areas with their counts (graded cases only in the
/// fraction), then failures, warnings, errors and untestable cases (each with its
/// reproduction), the skipped ones grouped by reason, and the totals last.
pub fn render(report: &Report, opts: TerminalOptions) -> String {
    let mut out = String::new();
    let t = &report.target;
    let _ = writeln!(
        out,
        "Chorus conformance: {} ({}) at {}",
        t.server,
        t.protocol,
        t.urls.join(", ")
    );
    let _ = writeln!(
        out,
        "\nareas (passed/graded; skipped and untestable cases are not graded):"
    );
    for (area, cases) in super::by_area(&report.cases) {
        let _ = writeln!(out, "  {area:<12} {}", area_counts(&cases));
    }
    let groups: [(&str, Verdict); 4] = [
        ("FAILED", Verdict::Fail),
        ("WARNINGS (SHOULD)", Verdict::Warn),
        ("ERRORS (the harness could not run these)", Verdict::Error),
        ("UNTESTABLE here", Verdict::Untestable),
    ];
    for (title, verdict) in groups {
        let cases: Vec<&CaseResult> = report
            .cases
            .iter()
            .filter(|c| c.verdict == verdict)
            .collect();
        if cases.is_empty() {
            continue;
        }
        let _ = writeln!(out, "\n{title} ({}):", cases.len());
        for c in cases {
            case_lines(&mut out, c, opts);
        }
    }
    let others: Vec<&CaseResult> = report
        .cases
        .iter()
        .filter(|c| {
            matches!(c.verdict, Verdict::Pass | Verdict::Skipped)
                && (opts.verbose || c.baseline.is_some() || c.flaky)
        })
        .collect();
    if !others.is_empty() {
        let _ = writeln!(out, "\nothers:");
        for c in others {
            case_lines(&mut out, c, opts);
        }
    }
    skipped(&mut out, report);
    totals(&mut out, report);
    out
}

/// "12/14 passed, 2 failed, 3 skipped" ([`super::area_tally`]).
fn area_counts(cases: &[&CaseResult]) -> String {
    let (head, rest) = super::area_tally(cases);
    std::iter::once(head)
        .chain(rest.into_iter().map(|(_, text)| text))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Skipped cases by reason (a capability not announced, or announced for a case about a
/// server without it): one line each, not one per case (`--verbose` lists them).
fn skipped(out: &mut String, r: &Report) {
    let mut by_reason: BTreeMap<&str, usize> = BTreeMap::new();
    for c in r.cases.iter().filter(|c| c.verdict == Verdict::Skipped) {
        *by_reason
            .entry(c.reason.as_deref().unwrap_or("no reason given"))
            .or_default() += 1;
    }
    if by_reason.is_empty() {
        return;
    }
    let _ = writeln!(out, "\nskipped:");
    for (why, n) in by_reason {
        let _ = writeln!(out, "  {n:>3} x {why}");
    }
}

fn case_lines(out: &mut String, c: &CaseResult, opts: TerminalOptions) {
    let flaky = if c.flaky { " (flaky)" } else { "" };
    let _ = writeln!(
        out,
        "  {:<10} {} [{}] {}{flaky}",
        mark(c),
        c.id,
        c.requirements.join(", "),
        c.title
    );
    if let Some(r) = &c.reason {
        let note = if c.answered_unannounced {
            " (answered but not announced)"
        } else {
            ""
        };
        let _ = writeln!(out, "             {r}{note}");
    }
    for f in &c.failures {
        let _ = writeln!(
            out,
            "             step {} ({}): {}",
            f.step, f.action, f.message
        );
        if let Some(e) = &f.expected {
            let _ = writeln!(out, "               expected: {e}");
        }
        if let Some(a) = &f.actual {
            let _ = writeln!(out, "               actual:   {a}");
        }
    }
    for v in &c.schema_violations {
        let _ = writeln!(
            out,
            "             schema: {} ({}) in {}",
            v.violation, v.who, v.frame
        );
    }
    if opts.transcripts && !c.transcript.is_empty() && c.verdict != Verdict::Skipped {
        let _ = writeln!(out, "             transcript:");
        for line in render_events(&c.transcript).lines() {
            let _ = writeln!(out, "             {line}");
        }
    }
}

fn totals(out: &mut String, r: &Report) {
    let s = &r.summary;
    let _ = writeln!(
        out,
        "\n{} cases: {} passed, {} failed, {} warnings, {} skipped ({} answered but not announced), {} untestable, {} errors",
        s.total, s.pass, s.fail, s.warn, s.skipped, s.answered_unannounced, s.untestable, s.error
    );
    if s.known_failures + s.stale_baseline + s.flaky > 0 {
        let _ = writeln!(
            out,
            "baseline: {} known failures, {} stale entries; {} flaky",
            s.known_failures, s.stale_baseline, s.flaky
        );
    }
    let reqs = &r.requirements;
    let failed: Vec<&str> = reqs
        .iter()
        .filter(|q| q.verdict == crate::verdict::RequirementVerdict::Fail)
        .map(|q| q.id.as_str())
        .collect();
    if !failed.is_empty() {
        let _ = writeln!(out, "requirements failed: {}", failed.join(", "));
    }
    incomplete(out, r);
    let _ = writeln!(
        out,
        "exit code {} in {:.1} s",
        s.exit_code,
        r.duration_ms as f64 / 1000.0
    );
}

/// The loud line of an incomplete grade: how many cases were untestable, and why (the
/// reasons without their step prefix, most frequent first).
fn incomplete(out: &mut String, r: &Report) {
    let untestable: Vec<&str> = r
        .cases
        .iter()
        .filter(|c| c.verdict == crate::verdict::Verdict::Untestable)
        .map(|c| {
            let why = c.reason.as_deref().unwrap_or("no reason given");
            // "step 3 (http): the case needs ..." -> "the case needs ..."
            why.split_once("): ").map_or(why, |(_, rest)| rest)
        })
        .collect();
    if untestable.is_empty() {
        return;
    }
    let mut by_reason: BTreeMap<&str, usize> = BTreeMap::new();
    for why in &untestable {
        *by_reason.entry(why).or_default() += 1;
    }
    let mut reasons: Vec<(&str, usize)> = by_reason.into_iter().collect();
    reasons.sort_by_key(|r| std::cmp::Reverse(r.1));
    let _ = writeln!(
        out,
        "INCOMPLETE GRADE: {} cases untestable, so this run does not show conformance (exit code 3):",
        untestable.len()
    );
    for (why, n) in reasons.iter().take(5) {
        let _ = writeln!(out, "  {n:>3} x {why}");
    }
}
