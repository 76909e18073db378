//! The JSON report (`--report-json`), validated by `schema/report.schema.json`.

use crate::verdict::Report;

/// Pretty JSON with a trailing newline.
pub fn render(report: &Report) -> String {
    let text = serde_json::to_string_pretty(report).unwrap_or_default();
    format!("{text}\n")
}

/// Reads a report written by [`render`] (for combined HTML pages).
pub fn parse(text: &str) -> Result<Report, serde_json::Error> {
    serde_json::from_str(text)
}
