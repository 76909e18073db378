//! `chorus conform-client` grades the deliberately incomplete Python adapter
//! (conformance/adapters/python/): what it implements passes, what it leaves out fails.

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

/// Cases the minimal client implements.
const PASSES: &[&str] = &[
    "transport.unknown-frame-type",
    "transport.text-json-frames",
    "versioning.unknown-capabilities-limits",
    "errors.unknown-code",
    "client.terminal-4001",
    "client.token-after-4101",
    "client.unknown-outcome-after-drop",
    "client.resubscribe",
];

/// Cases it leaves out on purpose, and the verdict each gets.
const FAILS: &[(&str, &str)] = &[
    ("client.since-last-seq", "warn"),
    ("client.ping-interval", "warn"),
    ("client.stale-on-recovered-false", "warn"),
    ("client.retry-after", "warn"),
    ("state.resync-on-new-epoch", "fail"),
    ("broadcast.clear-is-local", "fail"),
];

#[test]
fn the_python_adapter_passes_what_it_implements_and_fails_the_rest() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let report = std::env::temp_dir().join(format!("chorus-cc-{}.json", std::process::id()));
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_chorus"));
    cmd.current_dir(&root)
        .args(["conform-client", "--quiet", "--brief", "--adapter"])
        .arg("python3 conformance/adapters/python/adapter.py")
        .arg("--report-json")
        .arg(&report);
    for id in PASSES.iter().chain(FAILS.iter().map(|(id, _)| id)) {
        cmd.args(["--run", id]);
    }
    let out = cmd.output().expect("run chorus conform-client");
    let text = std::fs::read_to_string(&report).unwrap_or_else(|e| {
        panic!(
            "no report ({e}); stderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let _ = std::fs::remove_file(&report);
    let report: Value = serde_json::from_str(&text).expect("JSON report");
    let verdict = |id: &str| {
        report["cases"]
            .as_array()
            .and_then(|cases| cases.iter().find(|c| c["id"] == id))
            .map(|c| c["verdict"].as_str().unwrap_or_default().to_owned())
            .unwrap_or_else(|| panic!("{id} not in the report"))
    };
    let summary = String::from_utf8_lossy(&out.stdout);
    for id in PASSES {
        assert_eq!(verdict(id), "pass", "{id} should pass:\n{summary}");
    }
    for (id, expected) in FAILS {
        assert_eq!(verdict(id), *expected, "{id}:\n{summary}");
    }
    // A failed MUST (state, broadcast) makes the exit code 1.
    assert_eq!(out.status.code(), Some(1), "{summary}");
}
