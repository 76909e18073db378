//! The suite proves its own power: the whole conformance suite runs against the reference
//! server once per deliberate fault (chorus-server's `faults` feature, switched on for this
//! crate's tests by its dev-dependency on itself), and every fault must be caught by a
//! failing case that cites a requirement the fault breaks or one of the same area. This is
//! `chorus conform --mutation`, called as a library; the score is printed. The command
//! line itself is checked over a few faults at the end.

use std::io::Write;
use std::process::Command;
use std::sync::{Mutex, MutexGuard};

use chorus_cli::mutation::{self, Mutation};
use chorus_conformance::suite::Suite;
use chorus_server::core::Fault;

/// One test at a time: the suite's timing cases must not compete for the two cores with
/// another suite run of this file.
fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|p| p.into_inner())
}

/// Writes past the test harness's output capture, so that CI logs show the score.
fn show(text: &str) {
    let _ = writeln!(std::io::stderr(), "{text}");
}

fn mutation_run() -> Mutation {
    let suite = Suite::embedded().unwrap();
    let selected = suite.select(&[], &[]);
    let opts = mutation::Options::default();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(mutation::run(&selected, &opts, |_| {}))
}

#[test]
fn every_fault_is_caught_for_a_related_requirement() {
    let _one = serial();
    let m = mutation_run();
    let mut report = vec![m.reference.line()];
    report.extend(m.trials.iter().map(|t| t.line()));
    report.push(m.score_line());
    show(&report.join("\n"));
    // The cluster engine's faults are graded across nodes (tests/cluster_mutation.rs).
    assert_eq!(m.trials.len(), mutation::default_faults(false).len());
    assert!(
        m.reference.passed_clean(),
        "the suite fails against the correct server: {}",
        m.reference.line()
    );
    let names = |faults: Vec<Fault>| faults.iter().map(|f| f.name()).collect::<Vec<_>>();
    assert!(
        m.survivors().is_empty(),
        "faults not caught: {:?}",
        names(m.survivors())
    );
    assert!(
        m.unrelated().is_empty(),
        "faults caught only by cases of other areas: {:?}",
        names(m.unrelated())
    );
}

fn chorus(args: &[&str]) -> (i32, String, String) {
    let _one = serial();
    let out = Command::new(env!("CARGO_BIN_EXE_chorus"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn list_faults_names_each_fault_with_its_requirement() {
    let (code, out, _) = chorus(&["conform", "--list-faults"]);
    assert_eq!(code, 0);
    assert_eq!(out.lines().count(), Fault::ALL.len());
    assert!(out
        .lines()
        .any(|l| l.starts_with("no_pong ") && l.contains("CONN-12")));
}

#[test]
fn conform_with_a_fault_fails_naming_its_requirement() {
    let (code, out, _) = chorus(&[
        "conform",
        "--fault",
        "no_pong",
        "--run",
        "connection.ping.*",
        "--no-properties",
        "--quiet",
        "--brief",
    ]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("requirements failed: CONN-12"), "{out}");
}

#[test]
fn mutation_command_prints_each_fault_and_the_score() {
    let (code, out, _) = chorus(&[
        "conform",
        "--mutation",
        "--fault",
        "no_pong,binary_accepted",
        "--run",
        "connection.*",
        "--run",
        "transport.malformed.*",
        "--no-properties",
        "--quiet",
    ]);
    assert_eq!(code, 0, "{out}");
    assert!(out.lines().any(|l| l.starts_with("clean ")), "{out}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("caught ") && l.contains("binary_accepted")),
        "{out}"
    );
    assert!(
        out.contains("mutation score: 2/2 faults caught (100.0%)"),
        "{out}"
    );
}

#[test]
fn a_surviving_fault_fails_the_mutation_command() {
    // Only the versioning cases: nothing there can see a missing user:left.
    let (code, out, _) = chorus(&[
        "conform",
        "--mutation",
        "--fault",
        "skip_user_left",
        "--run",
        "versioning.*",
        "--no-properties",
        "--quiet",
    ]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("NOT caught") && l.contains("skip_user_left")),
        "{out}"
    );
    assert!(out.contains("mutation score: 0/1"), "{out}");
}

#[test]
fn unknown_faults_are_refused() {
    let (code, _, err) = chorus(&[
        "conform",
        "--fault",
        "bogus",
        "--run",
        "transport.order.replies-in-order",
    ]);
    assert_eq!(code, 2);
    assert!(err.contains("unknown fault \"bogus\""), "{err}");
    let (code, _, err) = chorus(&["serve", "--dev", "--fault", "bogus", "--port", "0"]);
    assert_eq!(code, 2);
    assert!(err.contains("unknown fault \"bogus\""), "{err}");
}
