//! `chorus bench`: the benchmark comparing this server with a Node.js `ws` and a bare
//! tokio-tungstenite baseline (the `chorus-bench` crate; docs/benchmarks.md).

use std::process::ExitCode;

pub use chorus_bench::BenchArgs;

/// Runs the comparison (or, with `--quick`, the CI smoke version).
pub fn run(args: BenchArgs) -> ExitCode {
    chorus_bench::run(args)
}
