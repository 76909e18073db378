//! The harness's own JSON Schemas: the fixture format and the JSON report, committed under
//! `schema/` next to the protocol's.

/// Every schema file this crate owns, by file name, as pretty JSON with a trailing newline.
pub fn files() -> Vec<(&'static str, String)> {
    [
        (
            "client-case.schema.json",
            crate::client_suite::case::schema(),
        ),
        ("driver.schema.json", crate::client_suite::driver::schema()),
        ("fixture.schema.json", crate::fixture::schema()),
        ("report.schema.json", crate::verdict::schema()),
    ]
    .into_iter()
    .map(|(name, value)| {
        let text = serde_json::to_string_pretty(&value).unwrap_or_default();
        (name, format!("{text}\n"))
    })
    .collect()
}
