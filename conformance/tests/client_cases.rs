//! The client cases (fixtures/client/) without any client: they parse, cite client
//! requirements only, sit in the folder of their area, and together with
//! client-unobservable.json cover every client requirement of the spec.

use std::path::PathBuf;

use chorus_conformance::client_suite::{is_client_requirement, ClientSuite};
use chorus_conformance::suite::Suite;

fn on_disk() -> ClientSuite {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fixtures/client");
    ClientSuite::embedded()
        .and_then(|s| s.with_case_dir(&dir))
        .unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn client_cases_have_no_static_problems() {
    let suite = on_disk();
    assert!(suite.cases.len() >= 40, "only {} cases", suite.cases.len());
    let problems = suite.problems();
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn every_client_requirement_is_covered_or_argued() {
    let suite = on_disk();
    assert!(
        suite.requirements.iter().any(|r| r.id == "CLIENT-3")
            && suite.requirements.iter().any(|r| r.id == "TRANS-27"),
        "the client requirements were not found in the registry"
    );
    let gaps = suite.coverage_gaps();
    assert!(
        gaps.is_empty(),
        "client requirements with no case and no reason: {}",
        gaps.join(", ")
    );
}

#[test]
fn unobservable_client_entries_are_client_requirements_with_reasons() {
    let suite = on_disk();
    let all = Suite::embedded().unwrap_or_else(|e| panic!("{e}"));
    for (id, why) in &suite.unobservable {
        let r = all
            .requirement(id)
            .unwrap_or_else(|| panic!("{id} is not a requirement"));
        assert!(is_client_requirement(r), "{id} is not a client requirement");
        assert!(why.trim().len() > 20, "{id} needs a real reason");
        let cited = suite.cases.iter().any(|c| c.case.requirements.contains(id));
        assert!(!cited, "{id} is argued unobservable but a case grades it");
    }
}

#[test]
fn the_embedded_cases_are_those_on_disk() {
    let embedded = ClientSuite::embedded().unwrap_or_else(|e| panic!("{e}"));
    let disk = on_disk();
    let ids = |s: &ClientSuite| {
        s.cases
            .iter()
            .map(|c| c.case.id.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(ids(&embedded), ids(&disk));
}

#[test]
fn server_fixtures_leave_the_client_folder_alone() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fixtures");
    let suite = Suite::embedded()
        .and_then(|s| s.with_fixture_dir(&dir))
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(suite
        .fixtures
        .iter()
        .all(|f| !f.file.contains("fixtures/client/")));
}
