//! Views over the results: the comparison table with Chorus/baseline ratios (terminal and
//! Markdown), the targets checked against the medians, and the JSON document.

use serde::Serialize;

use crate::runner::ScenarioResult;
use crate::scenario::Scenario;
use crate::server::ServerKind;

/// Everything a run produced, as written to JSON.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The command line that produced it.
    pub command: String,
    /// CPU, memory, kernel.
    pub machine: String,
    /// When (UTC).
    pub date: String,
    /// One-minute load average before the first run.
    pub load_before: f64,
    /// How processes were pinned.
    pub pinning: String,
    /// Repetitions and warm-up rounds.
    pub reps: usize,
    /// Warm-up rounds.
    pub warmup: usize,
    /// Per-scenario results.
    pub results: Vec<ScenarioResult>,
    /// The targets.
    pub targets: Vec<TargetCheck>,
}

/// One target of the issue, checked.
#[derive(Debug, Clone, Serialize)]
pub struct TargetCheck {
    /// What is required.
    pub target: String,
    /// What was measured (human-readable).
    pub measured: String,
    /// Met, missed, or not measured in this run.
    pub verdict: Verdict,
}

/// A target's outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Met.
    Met,
    /// Missed.
    Missed,
    /// The scenario or a server was not part of this run.
    NotMeasured,
}

impl Verdict {
    fn label(self) -> &'static str {
        match self {
            Verdict::Met => "met",
            Verdict::Missed => "MISSED",
            Verdict::NotMeasured => "not measured",
        }
    }
}

/// A number for a table: integers without decimals, small values with 3 significant digits.
pub fn fmt_value(v: f64) -> String {
    if !v.is_finite() {
        return "-".to_owned();
    }
    let a = v.abs();
    if a >= 1000.0 || (v.fract() == 0.0 && a < 1e15) {
        format!("{v:.0}")
    } else if a >= 100.0 {
        format!("{v:.1}")
    } else if a >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

fn ratio(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if b != 0.0 => format!("{:.2}", a / b),
        _ => "-".to_owned(),
    }
}

/// Columns of a scenario's table: the figure, each server, then Chorus over each baseline.
const COLUMNS: usize = 2 + 2 * ServerKind::BASELINES.len();

/// Rows of one scenario's table: figure, chorus, bare, node, socketio, chorus/bare,
/// chorus/node, chorus/socketio.
fn rows(result: &ScenarioResult) -> Vec<[String; COLUMNS]> {
    let cell = |kind, name: &str| {
        result
            .median(kind, name)
            .map_or_else(|| "-".to_owned(), fmt_value)
    };
    result
        .scenario
        .key_figures()
        .iter()
        .map(|name| {
            let c = result.median(ServerKind::Chorus, name);
            let b = ServerKind::BASELINES;
            [
                (*name).to_owned(),
                cell(ServerKind::Chorus, name),
                cell(b[0], name),
                cell(b[1], name),
                cell(b[2], name),
                ratio(c, result.median(b[0], name)),
                ratio(c, result.median(b[1], name)),
                ratio(c, result.median(b[2], name)),
            ]
        })
        .collect()
}

const HEADER: [&str; COLUMNS] = [
    "figure (median)",
    "chorus",
    "bare",
    "node",
    "socketio",
    "chorus/bare",
    "chorus/node",
    "chorus/socketio",
];

/// The terminal table.
pub fn text(report: &Report) -> String {
    let mut out = String::new();
    for r in &report.results {
        out.push_str(&format!("\n{} — {}\n", r.name, r.description));
        let table: Vec<[String; COLUMNS]> = std::iter::once(HEADER.map(str::to_owned))
            .chain(rows(r))
            .collect();
        let widths: Vec<usize> = (0..COLUMNS)
            .map(|i| table.iter().map(|row| row[i].len()).max().unwrap_or(0))
            .collect();
        for row in &table {
            let line: Vec<String> = row
                .iter()
                .zip(&widths)
                .map(|(c, w)| format!("{c:>w$}", w = *w))
                .collect();
            out.push_str(&format!("  {}\n", line.join("  ")));
        }
        for f in &r.failures {
            out.push_str(&format!("  FAILED {f}\n"));
        }
    }
    out.push_str("\nTargets\n");
    for t in &report.targets {
        out.push_str(&format!(
            "  [{}] {} — {}\n",
            t.verdict.label(),
            t.target,
            t.measured
        ));
    }
    out
}

/// The Markdown tables (for docs/benchmarks.md).
pub fn markdown(report: &Report) -> String {
    let mut out = String::new();
    for r in &report.results {
        out.push_str(&format!("\n### {}\n\n{}.\n\n", r.name, r.description));
        out.push_str(&format!(
            "| {} |\n|{}\n",
            HEADER.join(" | "),
            "---|".repeat(COLUMNS)
        ));
        for row in rows(r) {
            out.push_str(&format!("| {} |\n", row.join(" | ")));
        }
        for f in &r.failures {
            out.push_str(&format!("\nFailed: {f}\n"));
        }
    }
    out.push_str("\n### Targets\n\n| target | measured | verdict |\n|---|---|---|\n");
    for t in &report.targets {
        out.push_str(&format!(
            "| {} | {} | {} |\n",
            t.target,
            t.measured,
            t.verdict.label()
        ));
    }
    out
}

fn find<'a>(results: &'a [ScenarioResult], family: &str) -> Vec<&'a ScenarioResult> {
    results
        .iter()
        .filter(|r| r.scenario.family() == family)
        .collect()
}

fn check(target: &str, measured: Option<(String, bool)>) -> TargetCheck {
    match measured {
        Some((measured, ok)) => TargetCheck {
            target: target.to_owned(),
            measured,
            verdict: if ok { Verdict::Met } else { Verdict::Missed },
        },
        None => TargetCheck {
            target: target.to_owned(),
            measured: "-".to_owned(),
            verdict: Verdict::NotMeasured,
        },
    }
}

/// The targets, checked against the medians.
pub fn targets(results: &[ScenarioResult]) -> Vec<TargetCheck> {
    let mut out = Vec::new();
    let fanout = find(results, "fanout").into_iter().next();
    let cpu = |kind| fanout.and_then(|r| r.median(kind, "server_cpu_us_per_delivery"));
    let (c, b, n) = (
        cpu(ServerKind::Chorus),
        cpu(ServerKind::Bare),
        cpu(ServerKind::Node),
    );
    out.push(check(
        "fan-out: server CPU per delivery <= 1.5x bare tokio-tungstenite",
        c.zip(b).map(|(c, b)| {
            (
                format!("{c:.3} us vs {b:.3} us = {:.2}x", c / b),
                c <= 1.5 * b,
            )
        }),
    ));
    out.push(check(
        "fan-out: server CPU per delivery >= 8x lower than Node ws",
        c.zip(n).map(|(c, n)| {
            (
                format!("{n:.3} us / {c:.3} us = {:.2}x lower", n / c),
                n >= 8.0 * c,
            )
        }),
    ));
    let paced = find(results, "paced").into_iter().next();
    let p99 = paced.and_then(|r| r.median(ServerKind::Chorus, "latency_p99_ms"));
    let lost = paced.and_then(|r| max_run(r, ServerKind::Chorus, "lost"));
    out.push(check(
        "paced fan-out 100k deliveries/s: p99 <= 10 ms, nothing lost",
        p99.zip(lost)
            .map(|(p, l)| (format!("p99 {p:.2} ms, lost {l}"), p <= 10.0 && l == 0.0)),
    ));
    let idle = find(results, "idle").into_iter().next();
    let per_conn = idle.and_then(|r| r.median(ServerKind::Chorus, "rss_kib_per_connection"));
    out.push(check(
        "idle connections in a presence channel: RSS per connection <= 16 KiB",
        per_conn.map(|k| (format!("{k:.2} KiB"), k <= 16.0)),
    ));
    out.extend(slow_targets(find(results, "slow").into_iter().next()));
    out.extend(soak_targets(find(results, "soak").into_iter().next()));
    for family in ["presence", "state"] {
        out.push(growth_target(results, family));
    }
    out.push(zero_loss_target(results));
    out
}

fn max_run(r: &ScenarioResult, kind: ServerKind, figure: &str) -> Option<f64> {
    r.runs
        .get(&kind)?
        .iter()
        .filter_map(|f| f.get(figure).copied())
        .reduce(f64::max)
}

/// Memory growth with a stalled subscriber above which it is not "bounded" (the Chorus
/// queue bound is ~1,024 frames, well under this).
const SLOW_MEMORY_BUDGET_KIB: f64 = 32.0 * 1024.0;

fn slow_targets(slow: Option<&ScenarioResult>) -> Vec<TargetCheck> {
    let m = |f| slow.and_then(|r| r.median(ServerKind::Chorus, f));
    let change = m("rate_change_pct");
    let grown = m("stalled_peak_rss_kib")
        .zip(m("control_peak_rss_kib"))
        .map(|(s, c)| s - c);
    let code = slow.and_then(|r| {
        r.runs
            .get(&ServerKind::Chorus)?
            .iter()
            .map(|f| f.get("stalled_close_code").copied())
            .collect::<Option<Vec<f64>>>()
    });
    vec![
        check(
            "slow consumer: others' delivered rate changes < 10%",
            change.map(|c| (format!("{c:+.1}%"), c.abs() < 10.0)),
        ),
        check(
            "slow consumer: server memory stays bounded",
            grown.map(|g| {
                (
                    format!("peak {:+.0} KiB vs no stalled client", g),
                    g < SLOW_MEMORY_BUDGET_KIB,
                )
            }),
        ),
        check(
            "slow consumer: stalled client closed with 4200",
            code.map(|codes| {
                let ok = !codes.is_empty() && codes.iter().all(|c| *c == 4200.0);
                (format!("close codes {codes:?} (0 = still open, 1006 = dropped without close frame)"), ok)
            }),
        ),
    ]
}

fn soak_targets(soak: Option<&ScenarioResult>) -> Vec<TargetCheck> {
    let m = |f| soak.and_then(|r| r.median(ServerKind::Chorus, f));
    vec![
        check(
            "soak: RSS returns within 10% of (warm) idle",
            m("rss_after_over_idle")
                .zip(m("idle_rss_kib"))
                .zip(m("after_rss_kib"))
                .map(|((r, i), a)| {
                    (
                        format!("{i:.0} KiB warm idle -> {a:.0} KiB after ({r:.3}x)"),
                        r <= 1.10,
                    )
                }),
        ),
        check(
            "soak: stats show zero connections and subscriptions",
            m("stats_connections")
                .zip(m("stats_subscriptions"))
                .map(|(c, s)| {
                    (
                        format!("connections {c}, subscriptions {s}"),
                        c == 0.0 && s == 0.0,
                    )
                }),
        ),
    ]
}

/// CPU per delivered event at the largest size over the smallest: flat is linear work per
/// event; quadratic work would grow with the size ratio (100x from 10 to 1,000 members).
fn growth_target(results: &[ScenarioResult], family: &str) -> TargetCheck {
    let figure = if family == "presence" {
        "server_cpu_us_per_event"
    } else {
        "server_cpu_us_per_delivery"
    };
    let mut points: Vec<(f64, f64)> = find(results, family)
        .iter()
        .filter_map(|r| {
            let size = match r.scenario {
                Scenario::Presence { members } => members,
                Scenario::State { writers } => writers,
                _ => return None,
            };
            Some((size as f64, r.median(ServerKind::Chorus, figure)?))
        })
        .collect();
    points.sort_by(|a, b| a.0.total_cmp(&b.0));
    let measured = match (points.first(), points.last()) {
        (Some(lo), Some(hi)) if points.len() > 1 => {
            let growth = hi.1 / lo.1;
            let list: Vec<String> = points
                .iter()
                .map(|(s, v)| format!("{s}: {v:.3} us"))
                .collect();
            Some((
                format!(
                    "{} ({growth:.2}x from {} to {})",
                    list.join(", "),
                    lo.0,
                    hi.0
                ),
                growth <= 3.0,
            ))
        }
        _ => None,
    };
    check(
        &format!("{family}: no quadratic blow-up ({figure} grows < 3x over sizes)"),
        measured,
    )
}

fn zero_loss_target(results: &[ScenarioResult]) -> TargetCheck {
    let mut total = 0.0;
    let mut runs = 0;
    for r in results {
        for f in r.runs.get(&ServerKind::Chorus).into_iter().flatten() {
            total += f.get("lost").copied().unwrap_or(0.0);
            runs += 1;
        }
    }
    check(
        "chorus: zero deliveries lost in every run",
        (runs > 0).then(|| (format!("{total} lost over {runs} runs"), total == 0.0)),
    )
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::metrics::Figures;

    fn result(scenario: Scenario, per_kind: &[(ServerKind, &[(&str, f64)])]) -> ScenarioResult {
        let mut runs = BTreeMap::new();
        let mut medians = BTreeMap::new();
        for (kind, figs) in per_kind {
            let f: Figures = figs.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect();
            runs.insert(*kind, vec![f.clone()]);
            medians.insert(*kind, f);
        }
        ScenarioResult {
            name: scenario.name(),
            description: scenario.description(),
            scenario,
            runs,
            medians,
            failures: Vec::new(),
        }
    }

    #[test]
    fn fanout_cpu_target_uses_the_ratio_to_bare() {
        let r = result(
            Scenario::Fanout { subscribers: 200 },
            &[
                (ServerKind::Chorus, &[("server_cpu_us_per_delivery", 0.6)]),
                (ServerKind::Bare, &[("server_cpu_us_per_delivery", 0.43)]),
                (ServerKind::Node, &[("server_cpu_us_per_delivery", 5.0)]),
            ],
        );
        let t = targets(&[r]);
        assert_eq!(t[0].verdict, Verdict::Met, "{:?}", t[0]);
        assert_eq!(t[1].verdict, Verdict::Met, "{:?}", t[1]);
        let r = result(
            Scenario::Fanout { subscribers: 200 },
            &[
                (ServerKind::Chorus, &[("server_cpu_us_per_delivery", 0.7)]),
                (ServerKind::Bare, &[("server_cpu_us_per_delivery", 0.43)]),
                (ServerKind::Node, &[("server_cpu_us_per_delivery", 5.0)]),
            ],
        );
        let t = targets(&[r]);
        assert_eq!(t[0].verdict, Verdict::Missed);
        assert_eq!(t[1].verdict, Verdict::Missed);
    }

    #[test]
    fn missing_scenarios_are_not_measured() {
        let t = targets(&[]);
        assert!(t.iter().all(|t| t.verdict == Verdict::NotMeasured));
    }

    #[test]
    fn any_lost_delivery_misses_the_zero_loss_target() {
        let r = result(
            Scenario::Channels { pairs: 2 },
            &[(ServerKind::Chorus, &[("lost", 1.0)])],
        );
        let t = targets(&[r]);
        assert_eq!(t.last().map(|t| t.verdict), Some(Verdict::Missed));
    }

    #[test]
    fn table_shows_ratios() {
        let r = result(
            Scenario::Fanout { subscribers: 10 },
            &[
                (ServerKind::Chorus, &[("delivered_per_sec", 2000.0)]),
                (ServerKind::Bare, &[("delivered_per_sec", 1000.0)]),
                (ServerKind::SocketIo, &[("delivered_per_sec", 500.0)]),
            ],
        );
        let row = &rows(&r)[0];
        assert_eq!(row[3], "-", "node not measured");
        assert_eq!(row[4], "500");
        assert_eq!(row[5], "2.00");
        assert_eq!(row[6], "-");
        assert_eq!(row[7], "4.00");
    }

    #[test]
    fn values_format_by_magnitude() {
        assert_eq!(fmt_value(123_456.7), "123457");
        assert_eq!(fmt_value(0.4321), "0.432");
        assert_eq!(fmt_value(12.345), "12.35");
        assert_eq!(fmt_value(0.0), "0");
    }
}
