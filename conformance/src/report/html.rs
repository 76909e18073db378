//! One self-contained HTML page (inline CSS, no external assets): every case with its
//! verdict, the requirement text, expected versus actual and the wire transcript of each
//! failure. Several reports render side by side (one column per server).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use crate::transcript::Event;
use crate::verdict::{BaselineStatus, CaseResult, Report, RequirementVerdict, Verdict};

const CSS: &str = "body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:1200px;padding:0 1em;color:#1d1d1f}\
h1{font-size:1.5em}h2{margin-top:2em;border-bottom:1px solid #ddd}h3{margin:1.6em 0 .3em}\
table{border-collapse:collapse;margin:1em 0;width:100%}td,th{border:1px solid #ddd;padding:3px 8px;text-align:left;vertical-align:top}\
th{background:#f5f5f7}.v{font-weight:600;border-radius:3px;padding:0 6px;white-space:nowrap}\
.pass{background:#d8f5dc;color:#11621c}.fail{background:#fde0e0;color:#a11}.warn{background:#fff1cc;color:#7a5300}\
.skipped,.untestable,.not_run,.not_tested{background:#eee;color:#555}.error{background:#f3d9ff;color:#6a1b9a}\
.known{background:#e7eefc;color:#1f4a9c}\
pre{background:#f7f7f9;padding:8px;margin:0;font-size:12px;white-space:pre-wrap;overflow-wrap:anywhere}\
code{background:#f0f0f3;padding:0 3px;border-radius:3px;font-size:.92em}\
.req{color:#444;font-size:13px}details{margin:.4em 0}.meta{color:#666}\
.attention li{margin:.35em 0}.attention .why{color:#444;font-size:13px}\
table.fixed{table-layout:fixed}table.fixed th:first-child{width:6em}table.fixed th:nth-child(2){width:22%}\
.verdict{font-size:1.15em;margin:.6em 0}.num{text-align:right;white-space:nowrap}";

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
    for (i, r) in reports.iter().enumerate() {
        attention(&mut out, r, i, reports.len() > 1);
    }
    area_table(&mut out, reports);
    case_table(&mut out, reports);
    for (i, r) in reports.iter().enumerate() {
        failure_details(&mut out, r, i);
    }
    requirement_table(&mut out, reports);
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

/// What a server author reads first: one line saying whether the server passed, then the
/// failures, warnings, errors and untestable cases, each linking to its details.
fn attention(out: &mut String, r: &Report, i: usize, several: bool) {
    let s = &r.summary;
    let verdict = if s.fail > 0 {
        format!(
            "<span class=\"v fail\">{} failed</span> MUST cases: not conformant",
            s.fail
        )
    } else if s.error > 0 {
        format!(
            "<span class=\"v error\">{} errors</span>: the harness could not run every case",
            s.error
        )
    } else if s.untestable > 0 {
        format!(
            "<span class=\"v untestable\">incomplete grade</span>: nothing failed, but {} cases \
             could not be tested here (reasons below)",
            s.untestable
        )
    } else {
        "<span class=\"v pass\">conformant</span>: every case graded here passed".to_owned()
    };
    let whose = if several {
        format!(" ({})", esc(&label(r)))
    } else {
        String::new()
    };
    let _ = write!(out, "<p class=\"verdict\">{verdict}{whose}</p>");
    // One broken rule often fails many cases: the requirements failed by the most cases
    // first point at the cause.
    let mut by_req: BTreeMap<&str, usize> = BTreeMap::new();
    for c in r.cases.iter().filter(|c| c.verdict == Verdict::Fail) {
        for q in &c.requirements {
            *by_req.entry(q.as_str()).or_default() += 1;
        }
    }
    if !by_req.is_empty() {
        let mut reqs: Vec<(&str, usize)> = by_req.into_iter().collect();
        reqs.sort_by_key(|(_, n)| std::cmp::Reverse(*n));
        let links: Vec<String> = reqs
            .iter()
            .map(|(q, n)| format!("<a href=\"#req-{0}\">{0}</a> ({n})", esc(q)))
            .collect();
        let _ = write!(
            out,
            "<p>Requirements failed, by the number of failing cases: {}</p>",
            links.join(", ")
        );
    }
    let texts = requirement_texts(std::slice::from_ref(r));
    let groups: [(&str, &[Verdict]); 4] = [
        ("Failures", &[Verdict::Fail]),
        ("Warnings (SHOULD)", &[Verdict::Warn]),
        (
            "Errors (the harness could not run these)",
            &[Verdict::Error],
        ),
        ("Untestable here", &[Verdict::Untestable]),
    ];
    for (title, verdicts) in groups {
        let cases: Vec<&CaseResult> = r
            .cases
            .iter()
            .filter(|c| verdicts.contains(&c.verdict))
            .collect();
        if cases.is_empty() {
            continue;
        }
        let _ = write!(
            out,
            "<h2>{title}{whose} <span class=\"meta\">{}</span></h2><ul class=\"attention\">",
            cases.len()
        );
        for c in cases {
            let why = c
                .failures
                .first()
                .map(|f| format!("step {} ({}): {}", f.step, f.action, f.message))
                .or_else(|| {
                    c.schema_violations
                        .first()
                        .map(|v| format!("schema: {}", v.violation))
                })
                .or_else(|| c.reason.clone())
                .unwrap_or_default();
            let why = shorten(&why, 240);
            let reqs: Vec<String> = c
                .requirements
                .iter()
                .map(|q| {
                    let text = texts.get(q.as_str()).copied().unwrap_or("");
                    format!(
                        "<span title=\"{}\">{}</span>",
                        esc(&super::markdown::plain(text)),
                        esc(q)
                    )
                })
                .collect();
            let _ = write!(
                out,
                "<li>{} <a href=\"#r{i}-{}\"><b>{}</b></a> {} <span class=\"meta\">[{}]</span>\
                 <div class=\"why\">{}</div></li>",
                badge(c),
                esc(&c.id),
                esc(&c.id),
                esc(&c.title),
                reqs.join(", "),
                esc(&why)
            );
        }
        out.push_str("</ul>");
    }
}

/// Per area: passed out of the graded cases (skipped and untestable ones are not in the
/// denominator: a server without `state` has not failed the state cases).
fn area_table(out: &mut String, reports: &[Report]) {
    let mut areas: BTreeSet<&str> = BTreeSet::new();
    for r in reports {
        areas.extend(r.cases.iter().map(|c| c.area.as_str()));
    }
    out.push_str("<h2>Areas</h2><table><tr><th>area</th>");
    for r in reports {
        let _ = write!(out, "<th>{}</th>", esc(&r.target.server));
    }
    out.push_str("</tr>");
    for area in areas {
        let _ = write!(out, "<tr><td><a href=\"#area-{0}\">{0}</a></td>", esc(area));
        for r in reports {
            let cases: Vec<&CaseResult> = r.cases.iter().filter(|c| c.area == area).collect();
            let _ = write!(out, "<td>{}</td>", area_counts(&cases));
        }
        out.push_str("</tr>");
    }
    out.push_str("</table>");
}

/// "12/14 passed · 2 failed · 3 skipped" ([`super::area_tally`]).
pub fn area_counts(cases: &[&CaseResult]) -> String {
    let (head, rest) = super::area_tally(cases);
    let mut parts = vec![head];
    for (v, text) in rest {
        parts.push(format!("<span class=\"v {}\">{text}</span>", v.as_str()));
    }
    parts.join(" ")
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
        let _ = write!(
            out,
            "<h2 id=\"area-{0}\">{0}</h2><table><tr><th>case</th>",
            esc(area)
        );
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
            // Requirement ids only (their text on hover, in full in the details of a case
            // that did not pass and in the requirements table): a page a person can scan.
            let reqs: Vec<String> = first
                .requirements
                .iter()
                .map(|q| {
                    let text = texts.get(q.as_str()).copied().unwrap_or("");
                    format!(
                        "<span title=\"{}\">{}</span>",
                        esc(&super::markdown::plain(text)),
                        esc(q)
                    )
                })
                .collect();
            let _ = write!(
                out,
                "<tr><td><b>{}</b> {} <span class=\"req\">[{}]</span></td>",
                esc(id),
                esc(&first.title),
                reqs.join(", ")
            );
            for (i, r) in reports.iter().enumerate() {
                match r.cases.iter().find(|c| c.id == id) {
                    Some(c) if has_details(c) && c.verdict != Verdict::Skipped => {
                        let _ = write!(
                            out,
                            "<td><a href=\"#r{i}-{}\">{}</a></td>",
                            esc(id),
                            badge(c)
                        );
                    }
                    Some(c) => {
                        let why = c.reason.as_deref().unwrap_or("");
                        let _ = write!(out, "<td title=\"{}\">{}</td>", esc(why), badge(c));
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
                "<tr><td id=\"req-{0}\">{0}</td><td>{1}</td><td class=\"req\">{2}{why}</td>",
                esc(&q.id),
                esc(&q.level),
                super::markdown::inline(&q.text)
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
        .filter(|c| has_details(c) && !matches!(c.verdict, Verdict::Pass | Verdict::Skipped))
        .collect();
    if failing.is_empty() {
        return;
    }
    let texts = requirement_texts(std::slice::from_ref(r));
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
        out.push_str("<div class=\"req\">");
        for q in &c.requirements {
            let text = texts.get(q.as_str()).copied().unwrap_or("");
            let _ = write!(
                out,
                "<div><b>{}</b> {}</div>",
                esc(q),
                super::markdown::inline(text)
            );
        }
        out.push_str("</div>");
        let _ = write!(
            out,
            "<p class=\"meta\">messages: {} · close: {} · {} · {} · run it alone: \
             <code>chorus conform --run {} --url … (your credentials) -v</code></p>",
            c.message_verdict.as_words(),
            c.close_verdict.as_words(),
            esc(&c.file),
            c.level.as_str(),
            esc(&c.id)
        );
        if let Some(reason) = &c.reason {
            let _ = write!(out, "<p>{}</p>", esc(reason));
        }
        if !c.failures.is_empty() {
            out.push_str(
                "<table class=\"fixed\"><tr><th>step</th><th>failure</th><th>expected</th><th>actual</th></tr>",
            );
            for f in &c.failures {
                let _ = write!(
                    out,
                    "<tr><td>{} {}</td><td>{}</td><td><pre>{}</pre></td><td><pre>{}</pre></td></tr>",
                    esc(&f.step),
                    esc(&f.action),
                    esc(&f.message),
                    esc(&pretty(f.expected.as_deref().unwrap_or(""))),
                    esc(&pretty(f.actual.as_deref().unwrap_or("")))
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

/// At most `max` characters, with an ellipsis when cut (the details show it whole).
fn shorten(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text.to_owned(),
    }
}

/// JSON indented for reading (the frames are compact on the wire), an object's `type` and
/// `id` first as the spec writes frames; other text as it is.
fn pretty(text: &str) -> String {
    let Ok(v) = serde_json::from_str::<serde_json::Value>(text) else {
        return text.to_owned();
    };
    let Some(map) = v.as_object() else {
        return serde_json::to_string_pretty(&v).unwrap_or_else(|_| text.to_owned());
    };
    let first = ["type", "id"];
    let ordered = first
        .iter()
        .filter_map(|k| map.get_key_value(*k))
        .chain(map.iter().filter(|(k, _)| !first.contains(&k.as_str())));
    let members: Vec<String> = ordered
        .map(|(k, v)| {
            let value = serde_json::to_string_pretty(v)
                .unwrap_or_default()
                .replace('\n', "\n  ");
            format!("  {}: {value}", serde_json::Value::String(k.clone()))
        })
        .collect();
    if members.is_empty() {
        return "{}".to_owned();
    }
    format!("{{\n{}\n}}", members.join(",\n"))
}

fn transcript(events: &[Event]) -> String {
    crate::transcript::render(events)
}
