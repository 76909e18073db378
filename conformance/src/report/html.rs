//! One self-contained HTML page (inline CSS, no external assets): every case with its
//! verdict, the requirement text, expected versus actual and the wire transcript of each
//! failure. Several reports render side by side (one column per server).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use crate::transcript::Event;
use crate::verdict::{BaselineStatus, CaseResult, Report, RequirementVerdict, Verdict};

const CSS: &str = "body{font:14px/1.45 system-ui,sans-serif;margin:2em;color:#1d1d1f}\
h1{font-size:1.5em}h2{margin-top:2em;border-bottom:1px solid #ddd}\
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ddd;padding:3px 8px;text-align:left;vertical-align:top}\
th{background:#f5f5f7}.v{font-weight:600;border-radius:3px;padding:0 6px;white-space:nowrap}\
.pass{background:#d8f5dc;color:#11621c}.fail{background:#fde0e0;color:#a11}.warn{background:#fff1cc;color:#7a5300}\
.skipped,.untestable,.not_run,.not_tested{background:#eee;color:#555}.error{background:#f3d9ff;color:#6a1b9a}\
.known{background:#e7eefc;color:#1f4a9c}pre{background:#f7f7f9;padding:8px;overflow:auto;font-size:12px}\
.req{color:#444;font-size:13px}details{margin:.4em 0}.meta{color:#666}";

/// Escapes text for HTML.
pub fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn badge(c: &CaseResult) -> String {
    let (class, text) = match c.baseline {
        Some(BaselineStatus::Known) => ("known", format!("known {}", c.verdict.as_str())),
        Some(BaselineStatus::Stale) => ("fail", "stale baseline".to_owned()),
        None => (c.verdict.as_str(), c.verdict.as_str().to_owned()),
    };
    let flaky = if c.flaky { " flaky" } else { "" };
    format!("<span class=\"v {class}\">{text}{flaky}</span>")
}

fn req_badge(v: RequirementVerdict) -> String {
    let name = serde_json::to_value(v)
        .ok()
        .and_then(|x| x.as_str().map(str::to_owned))
        .unwrap_or_default();
    format!("<span class=\"v {name}\">{}</span>", name.replace('_', " "))
}

fn label(r: &Report) -> String {
    format!("{} — {}", r.target.server, r.target.urls.join(", "))
}

/// The page for one or several reports.
pub fn render(reports: &[Report]) -> String {
    let mut out = String::new();
    let _ = write!(out, "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>Chorus conformance</title><style>{CSS}</style></head><body>");
    out.push_str("<h1>Chorus conformance report</h1>");
    summary_table(&mut out, reports);
    case_table(&mut out, reports);
    requirement_table(&mut out, reports);
    for (i, r) in reports.iter().enumerate() {
        failure_details(&mut out, r, i);
    }
    out.push_str("</body></html>\n");
    out
}

fn summary_table(out: &mut String, reports: &[Report]) {
    out.push_str("<table><tr><th>server</th><th>pass</th><th>fail</th><th>warn</th><th>skipped</th><th>untestable</th><th>error</th><th>exit</th></tr>");
    for r in reports {
        let s = &r.summary;
        let _ = write!(
            out,
            "<tr><td>{}<div class=\"meta\">{} · {} capabilities: {}</div></td><td>{}</td><td>{}</td><td>{}</td><td>{} ({} answered unannounced)</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&label(r)),
            esc(&r.tool),
            esc(&r.target.protocol),
            esc(&r.target.capabilities.join(", ")),
            s.pass, s.fail, s.warn, s.skipped, s.answered_unannounced, s.untestable, s.error, s.exit_code
        );
    }
    out.push_str("</table>");
}

fn case_table(out: &mut String, reports: &[Report]) {
    let mut areas: BTreeMap<&str, BTreeMap<&str, &CaseResult>> = BTreeMap::new();
    for r in reports {
        for c in &r.cases {
            areas
                .entry(c.area.as_str())
                .or_default()
                .entry(c.id.as_str())
                .or_insert(c);
        }
    }
    let texts = requirement_texts(reports);
    for (area, cases) in areas {
        let _ = write!(out, "<h2>{}</h2><table><tr><th>case</th>", esc(area));
        for r in reports {
            let _ = write!(
                out,
                "<th>{}<div class=\"meta\">{}</div></th>",
                esc(&r.target.server),
                esc(&r.target.urls.join(" "))
            );
        }
        out.push_str("</tr>");
        for (id, first) in cases {
            let _ = write!(
                out,
                "<tr><td><b>{}</b><br>{}<div class=\"req\">",
                esc(id),
                esc(&first.title)
            );
            for req in &first.requirements {
                let text = texts.get(req.as_str()).map(|t| esc(t)).unwrap_or_default();
                let _ = write!(out, "<div><b>{}</b> {}</div>", esc(req), text);
            }
            out.push_str("</div></td>");
            for (i, r) in reports.iter().enumerate() {
                match r.cases.iter().find(|c| c.id == id) {
                    Some(c) if has_details(c) => {
                        let _ = write!(
                            out,
                            "<td><a href=\"#r{i}-{}\">{}</a></td>",
                            esc(id),
                            badge(c)
                        );
                    }
                    Some(c) => {
                        let _ = write!(out, "<td>{}</td>", badge(c));
                    }
                    None => out.push_str("<td>—</td>"),
                }
            }
            out.push_str("</tr>");
        }
        out.push_str("</table>");
    }
}

fn has_details(c: &CaseResult) -> bool {
    !c.failures.is_empty() || !c.schema_violations.is_empty() || c.reason.is_some()
}

fn requirement_texts(reports: &[Report]) -> BTreeMap<&str, &str> {
    reports
        .iter()
        .flat_map(|r| r.requirements.iter())
        .map(|q| (q.id.as_str(), q.text.as_str()))
        .collect()
}

fn requirement_table(out: &mut String, reports: &[Report]) {
    out.push_str("<h2>Requirements</h2><table><tr><th>id</th><th>level</th><th>text</th>");
    for r in reports {
        let _ = write!(out, "<th>{}</th>", esc(&r.target.server));
    }
    out.push_str("</tr>");
    let mut seen = BTreeSet::new();
    for r in reports {
        for q in &r.requirements {
            if !seen.insert(q.id.clone()) {
                continue;
            }
            let why = q
                .unobservable
                .as_deref()
                .map(|w| format!("<div class=\"meta\">unobservable: {}</div>", esc(w)))
                .unwrap_or_default();
            let _ = write!(
                out,
                "<tr><td>{}</td><td>{}</td><td class=\"req\">{}{why}</td>",
                esc(&q.id),
                esc(&q.level),
                esc(&q.text)
            );
            for other in reports {
                match other.requirements.iter().find(|x| x.id == q.id) {
                    Some(x) => {
                        let _ = write!(out, "<td>{}</td>", req_badge(x.verdict));
                    }
                    None => out.push_str("<td>—</td>"),
                }
            }
            out.push_str("</tr>");
        }
    }
    out.push_str("</table>");
}

fn failure_details(out: &mut String, r: &Report, i: usize) {
    let failing: Vec<&CaseResult> = r
        .cases
        .iter()
        .filter(|c| has_details(c) && c.verdict != Verdict::Pass)
        .collect();
    if failing.is_empty() {
        return;
    }
    let _ = write!(out, "<h2>Details: {}</h2>", esc(&label(r)));
    for c in failing {
        let _ = write!(
            out,
            "<h3 id=\"r{i}-{}\">{} {}</h3><p>{}</p>",
            esc(&c.id),
            badge(c),
            esc(&c.id),
            esc(&c.title)
        );
        let _ = write!(
            out,
            "<p class=\"meta\">message: {:?} · close: {:?} · {} · {}</p>",
            c.message_verdict,
            c.close_verdict,
            esc(&c.file),
            c.level.as_str()
        );
        if let Some(reason) = &c.reason {
            let _ = write!(out, "<p>{}</p>", esc(reason));
        }
        if !c.failures.is_empty() {
            out.push_str(
                "<table><tr><th>step</th><th>failure</th><th>expected</th><th>actual</th></tr>",
            );
            for f in &c.failures {
                let _ = write!(
                    out,
                    "<tr><td>{} {}</td><td>{}</td><td><pre>{}</pre></td><td><pre>{}</pre></td></tr>",
                    esc(&f.step),
                    esc(&f.action),
                    esc(&f.message),
                    esc(f.expected.as_deref().unwrap_or("")),
                    esc(f.actual.as_deref().unwrap_or(""))
                );
            }
            out.push_str("</table>");
        }
        for v in &c.schema_violations {
            let _ = write!(
                out,
                "<p>schema violation: <b>{}</b> in <code>{}</code></p>",
                esc(&v.violation.to_string()),
                esc(&v.frame)
            );
        }
        if !c.transcript.is_empty() {
            let _ = write!(
                out,
                "<details><summary>wire transcript ({} events)</summary><pre>{}</pre></details>",
                c.transcript.len(),
                esc(&transcript(&c.transcript))
            );
        }
    }
}

fn transcript(events: &[Event]) -> String {
    crate::transcript::render(events)
}
