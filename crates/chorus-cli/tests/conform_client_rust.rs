//! The Rust client (crates/chorus-client) graded by `chorus conform-client` through its
//! adapter: it passes every case, and the mutation run catches every fault of its `faults`
//! build (crates/chorus-client/src/faults.rs) with a case citing the fault's requirement.
//!
//! Every case is graded on the clean client between the two tests: the mutation run starts
//! with a clean run of every case (and fails if one does not pass), except the two cases
//! that need the spec's long windows (the 30 s backoff cap, about two minutes of waiting,
//! and the 30 s stability reset), which are untestable at the default `--max-wait-ms`; the
//! other test grades those two with `--max-wait-ms 130000`. The two tests run side by side:
//! the long cases mostly wait. The two faults only those cases can see, `backoff_cap_120s`
//! and `no_stable_reset`, are reported untested by the mutation run here and caught by the
//! documented long run (README, "Grading a client") and the unit tests of backoff.rs.
//!
//! The adapter is built here with the `faults` feature (faults are inert unless named).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Builds the adapter once.
fn adapter() -> &'static Path {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .current_dir(root())
            .args([
                "build",
                "-q",
                "-p",
                "chorus-client",
                "--features",
                "faults",
                "--bin",
                "chorus-client-adapter",
            ])
            .status()
            .expect("run cargo build");
        assert!(status.success(), "cannot build chorus-client-adapter");
        let target = std::env::var("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|_| root().join("target"));
        target.join("debug/chorus-client-adapter")
    })
}

/// The faults file of `--mutation`, as the adapter prints it (`--mutation-file`): every
/// gradable fault of faults.rs with the requirements it breaks.
fn faults_file(adapter: &Path) -> PathBuf {
    let out = Command::new(adapter)
        .arg("--mutation-file")
        .output()
        .expect("run chorus-client-adapter --mutation-file");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let faults: serde_json::Value = serde_json::from_slice(&out.stdout).expect("faults JSON");
    let n = faults["faults"].as_array().map_or(0, Vec::len);
    assert!(n >= 20, "only {n} faults listed");
    let path =
        std::env::temp_dir().join(format!("chorus-client-faults-{}.json", std::process::id()));
    std::fs::write(&path, &out.stdout).expect("write");
    path
}

#[test]
fn the_rust_client_passes_the_long_window_cases() {
    let adapter = adapter();
    let out = Command::new(env!("CARGO_BIN_EXE_chorus"))
        .current_dir(root())
        .args([
            "conform-client",
            "--quiet",
            "--brief",
            "--max-wait-ms",
            "130000",
        ])
        .args([
            "--run",
            "client.backoff-cap-30s",
            "--run",
            "client.stable-reset",
        ])
        .arg("--adapter")
        .arg(adapter)
        .output()
        .expect("run conform-client");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("2 cases: 2 passed"),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_mutation_run_catches_every_client_fault() {
    let adapter = adapter();
    let faults = faults_file(adapter);
    let out = Command::new(env!("CARGO_BIN_EXE_chorus"))
        .current_dir(root())
        .args(["conform-client", "--quiet", "--adapter"])
        .arg(adapter)
        .arg("--mutation")
        .arg(&faults)
        .arg("--mutation-adapter")
        .arg(format!("{} --fault {{fault}}", adapter.display()))
        .output()
        .expect("run conform-client --mutation");
    let _ = std::fs::remove_file(&faults);
    let text = String::from_utf8_lossy(&out.stdout);
    // Only the faults that need the long-window cases may go untested (see the module doc).
    let untested: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("UNTESTED"))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert!(
        out.status.success()
            && text.contains(", 0 missed")
            && untested
                .iter()
                .all(|f| ["backoff_cap_120s", "no_stable_reset"].contains(f)),
        "untested {untested:?}\n{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
