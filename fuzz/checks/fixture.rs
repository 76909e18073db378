//! Checks of the conformance suite's fixture loader (target `fixture`), shared by the fuzz
//! target and the corpus replay test.
//!
//! The bytes are a fixture file: parsed and statically checked as the suite loads it
//! (`fixture::parse`), then put through the suite's static checks against the embedded
//! requirement registry (`Suite::problems`) and the helpers the runner calls on every case.
//! A fixture that loads serializes back to JSON that loads as the same case: the property
//! search prints its shrunk failures as fixture files (DESIGN: "can be dropped into
//! `fixtures/`").

use std::cell::RefCell;

use chorus_conformance::fixture::{self, Fixture};
use chorus_conformance::suite::{LoadedFixture, Suite};
use chorus_conformance::validate::FrameSchema;

/// Where the fuzzed case pretends to live: the area folder of its id, as the suite requires.
fn file_of(f: &Fixture) -> String {
    let area = f.id.split('.').next().unwrap_or_default();
    format!("fixtures/{area}/fuzzed.json")
}

thread_local! {
    /// The embedded suite (registry, unobservable list) and the client schema, built once.
    static SUITE: RefCell<Option<(Suite, FrameSchema)>> = const { RefCell::new(None) };
}

pub fn fixture(data: &[u8]) {
    // The suite reads fixture files as UTF-8 text.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(f) = fixture::parse("fixtures/fuzz/fuzzed.json", text) else {
        return;
    };
    runner_helpers(&f);
    round_trip(&f);
    static_checks(f);
}

/// What the runner asks of every case before it runs it.
fn runner_helpers(f: &Fixture) {
    let _ = fixture::unless_announced(f);
    let _ = fixture::means_silence(f);
    for step in &f.steps {
        let _ = (step.action(), step.matchers(), step.target());
    }
}

fn round_trip(f: &Fixture) {
    let text = serde_json::to_string(f).expect("a fixture serializes");
    match fixture::parse("fixtures/fuzz/again.json", &text) {
        Ok(back) => assert_eq!(&back, f, "re-encoded as {text}"),
        Err(e) => panic!("{f:?} re-encodes as {text}, which does not load: {e}"),
    }
}

fn static_checks(f: Fixture) {
    SUITE.with(|cell| {
        let mut cell = cell.borrow_mut();
        let (suite, schema) = cell.get_or_insert_with(|| {
            let suite = Suite::embedded().expect("the embedded suite loads");
            let schema = FrameSchema::client().expect("the client schema compiles");
            (suite, schema)
        });
        let file = file_of(&f);
        let all = std::mem::replace(
            &mut suite.fixtures,
            vec![LoadedFixture { file, fixture: f }],
        );
        let _ = suite.problems_against(Ok(schema));
        suite.fixtures = all;
    });
}
