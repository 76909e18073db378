//! Traceability: every MUST of spec/ is checked by at least one fixture or has a written
//! reason in conformance/unobservable.json why the wire cannot show it; no fixture cites an
//! unknown id (that part is in fixtures_static.rs).

use std::path::PathBuf;

use chorus_conformance::suite::Suite;
use chorus_conformance::trace;

#[test]
fn every_must_is_covered_or_unobservable() {
    let fixtures = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fixtures");
    let suite = Suite::embedded()
        .and_then(|s| s.with_fixture_dir(&fixtures))
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        !suite.requirements.is_empty(),
        "no requirements parsed from spec/"
    );
    let gaps: Vec<String> = trace::coverage(&suite)
        .into_iter()
        .filter(|r| r.is_gap())
        .map(|r| r.id)
        .collect();
    assert!(
        gaps.is_empty(),
        "MUST requirements with no fixture and no unobservable reason: {}",
        gaps.join(", ")
    );
}

#[test]
fn unobservable_entries_have_reasons() {
    let suite = Suite::embedded().unwrap_or_else(|e| panic!("{e}"));
    for (id, why) in &suite.unobservable {
        assert!(
            why.trim().len() > 10,
            "{id} needs a real reason, got {why:?}"
        );
    }
}
