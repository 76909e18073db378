//! `--save-failures DIR`: a failed case becomes a fixture that replays it: the original
//! clients and the steps up to and including the failing one, with the failure written
//! into its description. Drop it into `fixtures/` to keep the regression.

use crate::fixture::Fixture;
use crate::verdict::CaseResult;

/// The replay fixture of a failed case, or `None` if the case did not fail at a step.
pub fn replay_fixture(original: &Fixture, result: &CaseResult) -> Option<Fixture> {
    // A case failed only by schema violations replays whole.
    let last = match result.failed_step {
        Some(i) => i,
        None if !result.schema_violations.is_empty() => original.steps.len().checked_sub(1)?,
        None => return None,
    };
    let mut f = original.clone();
    f.steps.truncate(last + 1);
    let (head, tail) = f.id.rsplit_once('.').unwrap_or((f.id.as_str(), "case"));
    f.id = format!("{head}.{tail}-replay");
    f.title = format!("Replay: {}", original.title);
    let failure = result
        .failures
        .first()
        .map(|x| {
            let mut s = format!("step {} ({}) failed: {}", x.step, x.action, x.message);
            if let Some(a) = &x.actual {
                s.push_str(&format!("; actual: {a}"));
            }
            s
        })
        .or_else(|| {
            result
                .schema_violations
                .first()
                .map(|v| format!("schema violation: {}", v.violation))
        })
        .unwrap_or_default();
    f.description = Some(format!(
        "Minimal reproduction of {} — {failure}",
        original.id
    ));
    f.schema = Some("../../schema/fixture.schema.json".into());
    Some(f)
}

/// The replay as pretty JSON.
pub fn render(f: &Fixture) -> String {
    format!("{}\n", serde_json::to_string_pretty(f).unwrap_or_default())
}
