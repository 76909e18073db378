//! `chorus serve`: runs the reference server until SIGTERM or SIGINT, then drains every
//! connection (queued frames, then close 1001) and exits.

use std::process::ExitCode;

use chorus_server::core::Faults;
use chorus_server::net::Page;
use chorus_server::{logging, Config, ServeArgs, Server};

/// Runs the server with flags, `CHORUS_*` variables and an optional `--config` file.
#[derive(Debug, clap::Args)]
pub struct ServeCmd {
    #[command(flatten)]
    args: ServeArgs,
    /// Serve the collaborative demo page at / (clients/typescript/demo). IMPLIES --dev WITH
    /// UNVERIFIED TOKENS (unless --jwt-secret is given): anyone who can reach the port may
    /// connect under any name. Binds 127.0.0.1 unless --host is given. Never in production.
    #[arg(long)]
    demo: bool,
    /// Switch deliberate protocol bugs on (comma-separated or repeated; see `chorus conform
    /// --list-faults`). For testing conformance suites only.
    #[cfg(feature = "faults")]
    #[arg(long = "fault", value_name = "NAME[,NAME]")]
    fault: Vec<String>,
}

/// Loads the configuration, serves, and shuts down gracefully on a signal.
pub fn run(mut cmd: ServeCmd) -> ExitCode {
    if cmd.demo {
        cmd.args.dev = Some(true);
        if cmd.args.host.is_none() {
            cmd.args.host = Some(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST));
        }
    }
    let config = match Config::load(&cmd.args) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("chorus serve: {e}");
            return ExitCode::from(2);
        }
    };
    let faults = match injected_faults(&cmd) {
        Ok(faults) => faults,
        Err(e) => {
            eprintln!("chorus serve: {e}");
            return ExitCode::from(2);
        }
    };
    logging::init(&config);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("chorus serve: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let pages = if cmd.demo {
        crate::demo::pages()
    } else {
        Vec::new()
    };
    match runtime.block_on(serve(config, faults, pages)) {
        Ok(()) => ExitCode::SUCCESS,
        // Said once, on stderr (not also as a log line: the same error twice reads as two).
        Err(e) => {
            eprintln!("chorus serve: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The faults of `--fault` (none without the `faults` feature).
fn injected_faults(_cmd: &ServeCmd) -> Result<Faults, String> {
    #[cfg(feature = "faults")]
    return crate::faults::parse(&_cmd.fault);
    #[cfg(not(feature = "faults"))]
    Ok(Faults::default())
}

async fn serve(
    config: Config,
    faults: Faults,
    pages: Vec<Page>,
) -> Result<(), chorus_server::ServerError> {
    if !faults.is_empty() {
        tracing::warn!(
            ?faults,
            "DELIBERATE PROTOCOL BUGS ARE ON: this server is not conformant"
        );
    }
    let demo = !pages.is_empty();
    let server = Server::start_with_pages(config, faults, pages).await?;
    if demo {
        let url = server.http_url().replace("127.0.0.1", "localhost");
        tracing::warn!(
            "DEMO: open {url}/ in two browser windows. Anyone reaching this port may connect \
             under any name: never expose it."
        );
        println!("Chorus demo: open {url}/ in two browser windows (Ctrl-C stops the server)");
    }
    let handle = server.shutdown_handle();
    tokio::spawn(async move {
        shutdown_signal().await;
        handle.shutdown();
    });
    server.wait().await
}

/// SIGTERM (service managers, containers) or SIGINT (Ctrl-C).
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
