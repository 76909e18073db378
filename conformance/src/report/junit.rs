//! JUnit XML (`--report-junit`): one `testsuite` per spec area, one `testcase` per case.

use std::fmt::Write as _;

use crate::transcript::render as render_events;
use crate::verdict::{BaselineStatus, CaseResult, Report, Verdict};

/// Escapes text for XML content and attributes.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c if (c as u32) < 0x20 && !matches!(c, '\n' | '\r' | '\t') => {
                out.push_str(&format!("&#x{:x};", c as u32))
            }
            c => out.push(c),
        }
    }
    out
}

/// The document.
pub fn render(report: &Report) -> String {
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let s = &report.summary;
    let _ = writeln!(
        out,
        "<testsuites name=\"chorus-conformance\" tests=\"{}\" failures=\"{}\" errors=\"{}\" skipped=\"{}\" time=\"{:.3}\">",
        s.total,
        s.fail + s.warn,
        s.error,
        s.skipped + s.untestable,
        report.duration_ms as f64 / 1000.0
    );
    for (area, cases) in super::by_area(&report.cases) {
        let count = |f: &dyn Fn(&CaseResult) -> bool| cases.iter().filter(|c| f(c)).count();
        let _ = writeln!(
            out,
            "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{}\" errors=\"{}\" skipped=\"{}\">",
            escape(&area),
            cases.len(),
            count(&|c| matches!(c.verdict, Verdict::Fail | Verdict::Warn) && c.baseline.is_none()),
            count(&|c| c.verdict == Verdict::Error),
            count(
                &|c| matches!(c.verdict, Verdict::Skipped | Verdict::Untestable)
                    || c.baseline == Some(BaselineStatus::Known)
            ),
        );
        for c in cases {
            testcase(&mut out, c);
        }
        out.push_str("  </testsuite>\n");
    }
    out.push_str("</testsuites>\n");
    out
}

fn testcase(out: &mut String, c: &CaseResult) {
    let _ = write!(
        out,
        "    <testcase classname=\"chorus.{}\" name=\"{}\" time=\"{:.3}\">",
        escape(&c.area),
        escape(&c.id),
        c.duration_ms as f64 / 1000.0
    );
    let details = details(c);
    let first = c
        .failures
        .first()
        .map(|f| f.message.clone())
        .or_else(|| c.schema_violations.first().map(|v| v.violation.to_string()))
        .or_else(|| c.reason.clone())
        .unwrap_or_default();
    match (c.verdict, c.baseline) {
        (_, Some(BaselineStatus::Known)) => {
            let _ = write!(
                out,
                "<skipped message=\"known failure (baseline): {}\"/>",
                escape(&first)
            );
        }
        (_, Some(BaselineStatus::Stale)) => {
            out.push_str("<failure type=\"stale-baseline\" message=\"listed as a known failure but passes\"/>");
        }
        (Verdict::Pass, _) => {}
        (Verdict::Fail | Verdict::Warn, _) => {
            let _ = write!(
                out,
                "<failure type=\"{}\" message=\"{}\">{}</failure>",
                c.verdict.as_str(),
                escape(&first),
                escape(&details)
            );
        }
        (Verdict::Skipped | Verdict::Untestable, _) => {
            let _ = write!(
                out,
                "<skipped message=\"{}: {}\"/>",
                c.verdict.as_str(),
                escape(&first)
            );
        }
        (Verdict::Error, _) => {
            let _ = write!(
                out,
                "<error message=\"{}\">{}</error>",
                escape(&first),
                escape(&details)
            );
        }
    }
    out.push_str("</testcase>\n");
}

fn details(c: &CaseResult) -> String {
    let mut s = format!("{}\nrequirements: {}\n", c.title, c.requirements.join(", "));
    for f in &c.failures {
        s.push_str(&format!("step {} ({}): {}\n", f.step, f.action, f.message));
        if let Some(e) = &f.expected {
            s.push_str(&format!("  expected: {e}\n"));
        }
        if let Some(a) = &f.actual {
            s.push_str(&format!("  actual:   {a}\n"));
        }
    }
    for v in &c.schema_violations {
        s.push_str(&format!("schema: {} in {}\n", v.violation, v.frame));
    }
    if !c.transcript.is_empty() {
        s.push_str("transcript:\n");
        s.push_str(&render_events(&c.transcript));
    }
    s
}
