//! Every fixture under fixtures/ parses, sits in its area's folder, has a unique id, cites
//! known requirement ids, and sends only valid client frames (FIXTURES.md). Runs on the
//! checkout's files, not the embedded copy, so a new fixture is checked without a rebuild.

use std::path::PathBuf;

use chorus_conformance::suite::Suite;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

#[test]
fn fixtures_pass_static_checks() {
    let suite = Suite::embedded()
        .and_then(|s| s.with_fixture_dir(&root().join("fixtures")))
        .unwrap_or_else(|e| panic!("{e}"));
    let problems = suite.problems();
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
