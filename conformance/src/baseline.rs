//! Baselines: the known failures of a server (`--baseline FILE`). A listed case that still
//! fails does not fail the run; a listed case that now passes is stale and does.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::verdict::{BaselineStatus, CaseResult, Report, Verdict};

/// The baseline file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Baseline {
    /// Always `chorus-conformance-baseline`.
    pub format: String,
    /// Format version (1).
    pub version: u32,
    /// Case id -> why it is known to fail.
    pub known_failures: BTreeMap<String, String>,
}

impl Baseline {
    /// A baseline listing every case of `report` that did not pass or skip.
    pub fn from_report(report: &Report) -> Baseline {
        let known_failures = report
            .cases
            .iter()
            .filter(|c| matches!(c.verdict, Verdict::Fail | Verdict::Warn | Verdict::Error))
            .map(|c| {
                let why = c
                    .failures
                    .first()
                    .map(|f| f.message.clone())
                    .or_else(|| c.reason.clone())
                    .or_else(|| c.schema_violations.first().map(|v| v.violation.to_string()))
                    .unwrap_or_default();
                (c.id.clone(), format!("{}: {why}", c.verdict.as_str()))
            })
            .collect();
        Baseline {
            format: "chorus-conformance-baseline".into(),
            version: 1,
            known_failures,
        }
    }

    /// Marks known and stale cases.
    pub fn apply(&self, cases: &mut [CaseResult]) {
        for c in cases {
            if !self.known_failures.contains_key(&c.id) {
                continue;
            }
            c.baseline = match c.verdict {
                Verdict::Fail | Verdict::Warn | Verdict::Error => Some(BaselineStatus::Known),
                Verdict::Pass => Some(BaselineStatus::Stale),
                Verdict::Skipped | Verdict::Untestable => None,
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixture::CaseLevel;
    use crate::verdict::PartVerdict;

    fn case(id: &str, verdict: Verdict) -> CaseResult {
        CaseResult {
            id: id.into(),
            title: String::new(),
            area: "a".into(),
            file: String::new(),
            level: CaseLevel::Must,
            requirements: vec![],
            capabilities: vec![],
            verdict,
            message_verdict: PartVerdict::NotChecked,
            close_verdict: PartVerdict::NotChecked,
            answered_unannounced: false,
            reason: None,
            failures: vec![],
            schema_violations: vec![],
            transcript: vec![],
            failed_step: None,
            duration_ms: 0,
            attempts: vec![],
            flaky: false,
            baseline: None,
        }
    }

    #[test]
    fn known_failure_does_not_fail_the_run_and_stale_does() {
        let b = Baseline {
            known_failures: [
                ("a.x.fails".to_owned(), String::new()),
                ("a.x.passes".to_owned(), String::new()),
            ]
            .into(),
            ..Default::default()
        };
        let mut cases = vec![
            case("a.x.fails", Verdict::Fail),
            case("a.x.passes", Verdict::Pass),
            case("a.x.new", Verdict::Fail),
        ];
        b.apply(&mut cases);
        assert!(!cases[0].fails_run(false));
        assert_eq!(cases[1].baseline, Some(BaselineStatus::Stale));
        assert!(cases[1].fails_run(false));
        assert!(cases[2].fails_run(false));
    }
}
