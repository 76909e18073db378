//! The reference server that `chorus conform` starts in-process when given no `--url`.

use chorus_conformance::runner::RunConfig;
use chorus_conformance::tokens::TokenSource;
use chorus_server::core::Faults;
use chorus_server::{Config, RunningServer, Server};

/// A reference server on a free local port, with the secrets the harness needs.
pub struct Embedded {
    /// The running server.
    pub server: RunningServer,
    /// The HS256 secret the harness mints its tokens with.
    pub secret: String,
    /// The HTTP API key.
    pub api_key: String,
    /// The server's data directory, removed when the embedded server goes.
    _data: tempfile::TempDir,
}

impl Embedded {
    /// Starts the server in its default storage configuration (a data directory, here a
    /// fresh temporary one, with `--durability full`: group commit, as `chorus serve` runs),
    /// with short timers and a small presence limit, so heartbeat, expiry,
    /// grace and full-channel cases fit in the suite's budget (the server announces them in
    /// `welcome`; fixtures adapt), and
    /// with `faults` switched on (inert unless chorus-server is built with `faults`).
    pub async fn start(seed: u64, faults: Faults) -> Result<Embedded, String> {
        let secret = format!("chorus-conformance-embedded-secret-{seed:016x}");
        let api_key = format!("conform-key-{seed:x}");
        let data = tempfile::Builder::new()
            .prefix("chorus-conform-")
            .tempdir()
            .map_err(|e| format!("cannot create a data directory for the embedded server: {e}"))?;
        let mut config = Config::for_tests(&secret, &api_key);
        config.memory = false;
        config.data_dir = data.path().to_owned();
        config.heartbeat_interval_ms = 1000;
        // Three intervals: a client that the harness keeps silent for a while on a loaded
        // machine is not closed before the case is over.
        config.heartbeat_timeout_ms = 3000;
        config.presence_grace_ms = 1000;
        config.shutdown_timeout_ms = 1000;
        // A full presence channel within the harness's 200 generated clients (PRES-31/32).
        config.max_presence_members = 16;
        let server = Server::start_with_faults(config, faults)
            .await
            .map_err(|e| format!("cannot start the embedded reference server: {e}"))?;
        Ok(Embedded {
            server,
            secret,
            api_key,
            _data: data,
        })
    }

    /// The harness configuration reaching this server (defaults otherwise).
    pub fn run_config(&self) -> RunConfig {
        let mut c = RunConfig::new(
            &self.server.ws_url(),
            TokenSource::Secret(self.secret.clone()),
        );
        c.http_url = self.server.http_url();
        c.api_key = Some(self.api_key.clone());
        c
    }

    /// Shuts the server down (its errors are of no interest once the run is over).
    pub async fn shutdown(self) {
        let _ = self.server.shutdown().await;
    }
}
