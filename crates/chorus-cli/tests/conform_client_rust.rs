//! The Rust client (crates/chorus-client) graded by `chorus conform-client` through its
//! adapter: it passes every case, and the mutation run catches every fault of its `faults`
//! build (crates/chorus-client/src/faults.rs) with a case citing the fault's requirement.
//!
//! Every case is graded on the clean client and every fault caught across the three tests,
//! which run side by side (the long cases mostly wait). The main mutation run starts with a
//! clean run of every case (and fails if one does not pass) except the two that need the
//! spec's long windows (the 30 s backoff cap, about two minutes of waiting, and the 30 s
//! stability reset), untestable at the default `--max-wait-ms`; it reports the two faults
//! only those cases see as untested. The two other tests each grade one long case with
//! `--max-wait-ms 130000`, clean first, then with its fault (`backoff_cap_120s`,
//! `no_stable_reset`).
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

/// One long-window case (`--max-wait-ms 130000`) and the one fault only it can see: the
/// mutation run grades the case on the clean client first (it must pass), then catches the
/// fault with it.
fn long_window(case: &str, fault: &str) {
    let adapter = adapter();
    let requirements = match fault {
        "backoff_cap_120s" => ["CLIENT-3"],
        _ => ["CLIENT-4"],
    };
    let faults = std::env::temp_dir().join(format!(
        "chorus-client-fault-{fault}-{}.json",
        std::process::id()
    ));
    let file = serde_json::json!({"faults": [{"name": fault, "requirements": requirements}]});
    std::fs::write(&faults, file.to_string()).expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_chorus"))
        .current_dir(root())
        .args([
            "conform-client",
            "--quiet",
            "--max-wait-ms",
            "130000",
            "--run",
            case,
        ])
        .arg("--adapter")
        .arg(adapter)
        .arg("--mutation")
        .arg(&faults)
        .arg("--mutation-adapter")
        .arg(format!("{} --fault {{fault}}", adapter.display()))
        .output()
        .expect("run conform-client --mutation");
    let _ = std::fs::remove_file(&faults);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains(&format!("caught  {fault}")) && text.contains(case),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_backoff_cap_case_passes_and_catches_a_120s_cap() {
    long_window("client.backoff-cap-30s", "backoff_cap_120s");
}

#[test]
fn the_stable_reset_case_passes_and_catches_no_reset() {
    long_window("client.stable-reset", "no_stable_reset");
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
