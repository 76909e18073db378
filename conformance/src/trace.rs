//! Traceability: every MUST of the spec is checked by at least one case, or carries a written
//! reason why it cannot be observed on the wire (`conformance/unobservable.json`).

use std::collections::BTreeMap;

use chorus_protocol::requirements::Level;

use crate::suite::Suite;

/// One row of the coverage table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoverageRow {
    /// Requirement id.
    pub id: String,
    /// Its level.
    pub level: Level,
    /// Spec area.
    pub area: String,
    /// Case ids citing it.
    pub cases: Vec<String>,
    /// Why it is not observable, if listed.
    pub unobservable: Option<String>,
}

impl CoverageRow {
    /// A MUST with neither a case nor a reason.
    pub fn is_gap(&self) -> bool {
        self.level == Level::Must && self.cases.is_empty() && self.unobservable.is_none()
    }
}

/// The coverage table, in registry order.
pub fn coverage(suite: &Suite) -> Vec<CoverageRow> {
    let mut by_req: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for lf in &suite.fixtures {
        for r in &lf.fixture.requirements {
            by_req
                .entry(r.as_str())
                .or_default()
                .push(lf.fixture.id.clone());
        }
    }
    suite
        .requirements
        .iter()
        .map(|r| CoverageRow {
            id: r.id.clone(),
            level: r.level,
            area: r.area.clone(),
            cases: by_req.get(r.id.as_str()).cloned().unwrap_or_default(),
            unobservable: suite.unobservable.get(&r.id).cloned(),
        })
        .collect()
}

/// Renders the table as text, with a closing line counting the gaps.
pub fn render(rows: &[CoverageRow]) -> String {
    let mut out = String::new();
    let mut area = "";
    for r in rows {
        if r.area != area {
            area = &r.area;
            out.push_str(&format!("\n{area}\n"));
        }
        let level = format!("{:?}", r.level).to_uppercase();
        let what = match (&r.cases.is_empty(), &r.unobservable) {
            (false, _) => r.cases.join(", "),
            (true, Some(why)) => format!("(unobservable: {why})"),
            (true, None) if r.level == Level::Must => "UNCOVERED".to_owned(),
            (true, None) => "-".to_owned(),
        };
        out.push_str(&format!("  {:<10} {:<7} {what}\n", r.id, level));
    }
    let musts = rows.iter().filter(|r| r.level == Level::Must).count();
    let gaps = rows.iter().filter(|r| r.is_gap()).count();
    let covered = rows.iter().filter(|r| !r.cases.is_empty()).count();
    out.push_str(&format!(
        "\n{} requirements, {covered} checked by a case; {musts} MUST, {gaps} MUST uncovered\n",
        rows.len()
    ));
    out
}
