//! `chorus conform`: grade a Chorus server (or the embedded reference server) against the
//! conformance fixtures.

use std::process::ExitCode;

use clap::Args;

/// Arguments of `chorus conform`.
#[derive(Debug, Args)]
pub struct ConformArgs {
    /// WebSocket URL of the server under test (repeat for a cluster). Without it, the
    /// embedded reference server is started in-process and tested.
    #[arg(long = "url")]
    pub urls: Vec<String>,
}

/// Runs the command.
pub fn run(_args: ConformArgs) -> ExitCode {
    eprintln!("chorus conform: not wired yet");
    ExitCode::from(2)
}
