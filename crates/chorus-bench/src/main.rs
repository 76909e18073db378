//! `chorus-bench`: the same as `chorus bench`, for use without the `chorus` binary's other
//! commands.

use std::process::ExitCode;

use clap::Parser;

/// Benchmark the Chorus server against Node.js `ws` and bare tokio-tungstenite baselines.
#[derive(Debug, Parser)]
#[command(name = "chorus-bench", version, about)]
struct Cli {
    #[command(flatten)]
    args: chorus_bench::BenchArgs,
}

fn main() -> ExitCode {
    chorus_bench::run(Cli::parse().args)
}
