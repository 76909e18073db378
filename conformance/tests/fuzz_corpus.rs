//! The fuzz smoke: every committed corpus file and crash regression of the cargo-fuzz
//! targets (`fuzz/corpus/<target>/`, `fuzz/regressions/<target>/`) replayed through the very
//! checks the targets run (`fuzz/checks/`, included by path), in an ordinary test build.
//!
//! It proves the committed inputs still pass (no panic, no invariant violation) after a
//! change; it does not search for new inputs and runs without sanitizers. The long runs are
//! `cargo fuzz run` (fuzz/README.md). This file lives in the conformance crate because its
//! tests may link everything the checks need: the protocol, the server's core (feature
//! `testkit`) and the suite's fixture loader.

use std::path::{Path, PathBuf};

#[path = "../../fuzz/checks/core.rs"]
mod core_checks;
#[path = "../../fuzz/checks/fixture.rs"]
mod fixture_checks;
#[path = "../../fuzz/checks/http.rs"]
mod http_checks;
#[path = "../../fuzz/checks/protocol.rs"]
mod protocol_checks;
#[path = "../../fuzz/checks/resume.rs"]
mod resume_checks;

fn inputs(target: &str) -> Vec<PathBuf> {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
    let mut files = Vec::new();
    for dir in ["corpus", "regressions"] {
        let Ok(entries) = std::fs::read_dir(fuzz.join(dir).join(target)) else {
            continue;
        };
        files.extend(entries.flatten().map(|e| e.path()).filter(|p| p.is_file()));
    }
    files.sort();
    files
}

/// Runs `check` on every input of `target`, naming the file that fails.
fn replay(target: &str, check: fn(&[u8])) {
    let files = inputs(target);
    assert!(
        !files.is_empty(),
        "no committed corpus for fuzz target {target}"
    );
    for path in &files {
        let data = std::fs::read(path).expect("corpus file reads");
        let outcome = std::panic::catch_unwind(|| check(&data));
        assert!(
            outcome.is_ok(),
            "fuzz target {target} fails on {}",
            path.display()
        );
    }
}

#[test]
fn decode_client_corpus_passes() {
    replay("decode_client", protocol_checks::decode_client);
}

#[test]
fn decode_server_corpus_passes() {
    replay("decode_server", protocol_checks::decode_server);
}

#[test]
fn core_corpus_passes() {
    replay("core", core_checks::core);
}

#[test]
fn resume_corpus_passes() {
    replay("resume", resume_checks::resume);
}

#[test]
fn http_bodies_corpus_passes() {
    replay("http_bodies", http_checks::http_bodies);
}

#[test]
fn fixture_corpus_passes() {
    replay("fixture", fixture_checks::fixture);
}

/// The core's invariants are not vacuous: with a deliberate bug of the kind each one
/// guards against, some committed corpus input fails. (Needs the server's `faults`
/// feature, which this crate's tests enable.)
#[test]
fn core_checks_catch_deliberate_bugs() {
    let files = inputs("core");
    // The faults a committed input reaches today; the corpus does not yet reach the others
    // of the kind (recovery_skips, reuse_version, takeover_announces_join, first_tab_leaves,
    // update_as_leave_join): see fuzz/README.md.
    let missed: Vec<&str> = ["seq_gap", "presence_no_snapshot_self"]
        .into_iter()
        .filter(|name| {
            let faults = chorus_server::core::Faults::parse(name).expect("a known fault");
            !files.iter().any(|path| {
                let data = std::fs::read(path).expect("corpus file reads");
                std::panic::catch_unwind(|| core_checks::core_with(&data, faults.clone())).is_err()
            })
        })
        .collect();
    assert!(
        missed.is_empty(),
        "no core corpus input catches the faults {missed:?}"
    );
}
