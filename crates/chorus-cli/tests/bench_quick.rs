//! The CI version of the benchmark (issue 5: "a 30-second version in CI"): `chorus bench
//! --quick` against the real `chorus serve` of this build, over real sockets. Every
//! Chorus-only scenario runs at small sizes (fan-out, fan-in, many channels, idle
//! connections in presence channels, presence churn, shared-state contention, history
//! recovery), then a 30-second soak of connect/subscribe/publish/disconnect churn. It fails
//! on any lost, reordered or refused delivery, and when `/api/stats` still shows a connection
//! or subscription after the soak (a leaked task or leaked state).
//!
//! It runs the `chorus` binary of the profile under test (a debug build under plain `cargo
//! test`), so it checks correctness under load, not speed: figures come from the release
//! run in docs/benchmarks.md.

use std::process::Command;

#[test]
fn quick_bench_loses_nothing_and_leaks_nothing() {
    let out = Command::new(env!("CARGO_BIN_EXE_chorus"))
        .args(["bench", "--quick", "--servers", "chorus"])
        .output()
        .expect("run chorus bench --quick");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "quick bench failed\n{stdout}\n{stderr}"
    );
    for verdict in [
        "[met] soak: stats show zero connections and subscriptions",
        "[met] chorus: zero deliveries lost in every run",
    ] {
        assert!(stdout.contains(verdict), "missing {verdict:?}\n{stdout}");
    }
    // The soak really churned: its table has a `cycles` row (the only one).
    let cycles = stdout
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|words| words.first() == Some(&"cycles"))
        .and_then(|words| words.get(1)?.parse::<u64>().ok());
    assert!(
        cycles.is_some_and(|c| c >= 100),
        "soak ran too few cycles: {cycles:?}\n{stdout}"
    );
}
