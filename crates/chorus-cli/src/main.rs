//! `chorus`: the project's one binary.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// A server's heap churns through millions of short-lived frames and connections. glibc's
/// allocator kept the RSS of a long churn run growing (18 % above warm idle after 120 s of
/// soak, with a flat live heap under massif); mimalloc returns freed pages to the OS.
#[cfg(not(feature = "system-allocator"))]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod asyncapi;
mod bench;
mod conform;
mod conform_client;
mod demo;
#[cfg(feature = "faults")]
mod faults;
mod schema;
mod serve;

/// Chorus: an open realtime protocol for the web, its reference server and its conformance suite.
#[derive(Debug, Parser)]
#[command(name = "chorus", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Regenerate schema/*.json and spec/requirements.json (or check them with --check).
    Schema(schema::SchemaArgs),
    /// Grade a server against the conformance suite (no --url: the embedded reference server).
    Conform(conform::ConformArgs),
    /// Grade a client library through its adapter (conformance/CLIENT-DRIVER.md); the
    /// suite plays the server.
    ConformClient(conform_client::ConformClientArgs),
    /// Run the reference server (WebSocket, HTTP API and SSE on one port).
    // Boxed: the server's flags outweigh every other command's.
    Serve(Box<serve::ServeCmd>),
    /// Benchmark this server against Node.js ws and bare tokio-tungstenite (docs/benchmarks.md).
    Bench(bench::BenchArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Schema(args) => schema::run(args),
        Command::Conform(args) => conform::run(args),
        Command::ConformClient(args) => conform_client::run(args),
        Command::Serve(cmd) => serve::run(*cmd),
        Command::Bench(args) => bench::run(args),
    }
}
