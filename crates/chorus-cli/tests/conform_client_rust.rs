//! The Rust client (crates/chorus-client) graded by `chorus conform-client` through its
//! adapter: it passes every case, and the mutation run catches every fault of its `faults`
//! build (crates/chorus-client/src/faults.rs) with a case citing the fault's requirement.
//!
//! The adapter is built here with the `faults` feature (faults are inert unless named).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Builds the adapter once; the runs of this file one at a time (timing cases).
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

fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
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
fn the_rust_client_passes_every_case() {
    let adapter = adapter();
    let _one = one_at_a_time();
    let out = Command::new(env!("CARGO_BIN_EXE_chorus"))
        .current_dir(root())
        .args(["conform-client", "--quiet", "--brief", "--adapter"])
        .arg(adapter)
        .output()
        .expect("run conform-client");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_mutation_run_catches_every_client_fault() {
    let adapter = adapter();
    let faults = faults_file(adapter);
    let _one = one_at_a_time();
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
    assert!(
        out.status.success() && text.contains(", 0 missed"),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
