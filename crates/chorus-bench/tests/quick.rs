//! The CI smoke run of the whole comparison (`chorus-bench --quick`) against the real
//! `chorus serve`: zero lost deliveries, zero leaked connections and subscriptions after a
//! 30-second soak. Ignored by default because it needs the release `chorus` binary and
//! about a minute; run it with
//!
//! ```text
//! cargo build --release -p chorus-cli -p chorus-bench
//! cargo test --release -p chorus-bench --test quick -- --ignored
//! ```

use std::path::PathBuf;
use std::process::Command;

#[test]
#[ignore = "needs the release chorus binary; see the module docs"]
fn quick_bench_loses_nothing_and_leaks_nothing() {
    let bench = PathBuf::from(env!("CARGO_BIN_EXE_chorus-bench"));
    let chorus = bench.with_file_name("chorus");
    assert!(
        chorus.is_file(),
        "build {} first: cargo build --release -p chorus-cli",
        chorus.display()
    );
    let out = Command::new(&bench)
        .args(["--quick", "--servers", "chorus,bare", "--chorus-bin"])
        .arg(&chorus)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "quick bench failed\n{stdout}\n{stderr}"
    );
    assert!(
        stdout.contains("[met] soak: stats show zero connections and subscriptions"),
        "{stdout}"
    );
    assert!(
        stdout.contains("[met] chorus: zero deliveries lost in every run"),
        "{stdout}"
    );
}
