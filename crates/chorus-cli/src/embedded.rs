//! The reference server that `chorus conform` starts in-process when given no `--url`.

use chorus_conformance::runner::RunConfig;
use chorus_conformance::tokens::TokenSource;
use chorus_server::config::EngineKind;
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
        let mut config = harness_config(&secret, &api_key);
        config.memory = false;
        config.data_dir = data.path().to_owned();
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
    ///
    /// (See [`EmbeddedCluster::run_config`] for a cluster.)
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

/// The settings every embedded server runs with: short timers and a small presence limit,
/// so heartbeat, expiry, grace and full-channel cases fit in the suite's budget (the server
/// announces them in `welcome`; fixtures adapt).
fn harness_config(secret: &str, api_key: &str) -> Config {
    let mut config = Config::for_tests(secret, api_key);
    config.heartbeat_interval_ms = 1000;
    // Three intervals: a client that the harness keeps silent for a while on a loaded
    // machine is not closed before the case is over.
    config.heartbeat_timeout_ms = 3000;
    config.presence_grace_ms = 1000;
    config.shutdown_timeout_ms = 1000;
    // A full presence channel within the harness's 200 generated clients (PRES-31/32).
    config.max_presence_members = 16;
    // Retention in bytes within reach of a fixture (HIST-19): 1 MiB, max_frame_bytes.
    config.retention_bytes = config.max_frame_bytes;
    config
}

/// Reference server nodes on the Redis cluster engine, sharing one Redis under a key
/// prefix of their own (deleted at shutdown): the suite graded across nodes.
pub struct EmbeddedCluster {
    /// The running nodes.
    pub nodes: Vec<RunningServer>,
    secret: String,
    api_key: String,
    redis_url: String,
    prefix: String,
}

impl EmbeddedCluster {
    /// Starts `nodes` nodes on `redis_url` with `faults` switched on in each.
    pub async fn start(
        seed: u64,
        faults: Faults,
        redis_url: &str,
        nodes: usize,
    ) -> Result<EmbeddedCluster, String> {
        let secret = format!("chorus-conformance-embedded-secret-{seed:016x}");
        let api_key = format!("conform-key-{seed:x}");
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let prefix = format!("chorus-conform-{}-{nanos:x}", std::process::id());
        let mut cluster = EmbeddedCluster {
            nodes: Vec::new(),
            secret,
            api_key,
            redis_url: redis_url.to_owned(),
            prefix,
        };
        for _ in 0..nodes.max(1) {
            let mut config = harness_config(&cluster.secret, &cluster.api_key);
            config.engine = EngineKind::Redis;
            config.redis_url = cluster.redis_url.clone();
            config.redis_prefix = cluster.prefix.clone();
            match Server::start_with_faults(config, faults.clone()).await {
                Ok(node) => cluster.nodes.push(node),
                Err(e) => {
                    cluster.shutdown().await;
                    return Err(format!("cannot start a cluster node: {e}"));
                }
            }
        }
        Ok(cluster)
    }

    /// The harness configuration: each case's clients spread over the nodes, HTTP to the
    /// first unless a request names its node.
    pub fn run_config(&self) -> RunConfig {
        let urls: Vec<String> = self.nodes.iter().map(|n| n.ws_url()).collect();
        let mut c = RunConfig::new(&urls[0], TokenSource::Secret(self.secret.clone()));
        c.urls = urls;
        c.http_url = self.nodes[0].http_url();
        c.http_urls = self.nodes.iter().map(|n| n.http_url()).collect();
        c.api_key = Some(self.api_key.clone());
        c
    }

    /// Shuts the nodes down and deletes the deployment's keys.
    pub async fn shutdown(self) {
        for node in self.nodes {
            let _ = node.shutdown().await;
        }
        let (url, prefix) = (self.redis_url, self.prefix);
        let deleted = tokio::task::spawn_blocking(move || {
            chorus_server::cluster::delete_deployment(&url, &prefix)
        })
        .await;
        if let Ok(Err(e)) = deleted {
            tracing::warn!(error = %e, "cannot delete the cluster run's keys");
        }
    }
}
