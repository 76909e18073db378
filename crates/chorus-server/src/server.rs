//! Starting and stopping the server: [`Server::start`] binds, builds the core over the store
//! and serves until its [`ShutdownHandle`] fires; shutdown drains every connection with 1001
//! after its queued frames (CONN-19).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chorus_protocol::Capability;
use std::future::IntoFuture;
use thiserror::Error;

use axum::serve::ListenerExt;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::auth::Authenticator;
use crate::cluster::{self, ServerEngine};
use crate::config::EngineKind;
use crate::config::{Config, ConfigError};
use crate::core::{Core, CoreConfig, CoreError, Fault, Faults, InProcessEngine};
use crate::net::{self, Page, Shared};
use crate::store::{Store, StoreError};

/// Why the server could not start or stopped with an error.
#[derive(Debug, Error)]
pub enum ServerError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The store could not be opened.
    #[error("cannot open the store: {0}")]
    Store(#[from] StoreError),
    /// The core could not load what the store holds.
    #[error("cannot load the persisted state: {0}")]
    Core(#[from] CoreError),
    /// The address could not be bound.
    #[error("cannot bind {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// Serving failed.
    #[error("server I/O: {0}")]
    Io(#[from] std::io::Error),
    /// A token verification key could not be read (CONN-26).
    #[error(transparent)]
    Keys(#[from] crate::auth::KeyError),
    /// The PostgreSQL change feed is misconfigured (changes.md "Database feeds").
    #[error("{0}")]
    Feed(String),
    /// The cluster engine could not join its Redis.
    #[error("cannot join the cluster: {0}")]
    Cluster(#[from] cluster::JoinError),
}

/// The reference server.
pub struct Server;

/// Asks a running server to shut down gracefully; cloneable.
#[derive(Debug, Clone)]
pub struct ShutdownHandle(watch::Sender<bool>);

impl ShutdownHandle {
    /// Starts the graceful shutdown (idempotent).
    pub fn shutdown(&self) {
        self.0.send_replace(true);
    }
}

/// A server serving in the background.
pub struct RunningServer {
    addr: SocketAddr,
    path: String,
    shutdown: ShutdownHandle,
    task: JoinHandle<Result<(), ServerError>>,
}

impl RunningServer {
    /// The bound address (with the real port when the config asked for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// `ws://addr/path`, for clients on this machine.
    pub fn ws_url(&self) -> String {
        format!("ws://{}{}", self.addr, self.path)
    }

    /// `http://addr`, for the HTTP API and SSE.
    pub fn http_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A handle that can start the shutdown from elsewhere.
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        self.shutdown.clone()
    }

    /// Starts the graceful shutdown and waits until it is done.
    pub async fn shutdown(self) -> Result<(), ServerError> {
        self.shutdown.shutdown();
        self.wait().await
    }

    /// Waits until the server stops (after a shutdown was requested).
    pub async fn wait(self) -> Result<(), ServerError> {
        match self.task.await {
            Ok(result) => result,
            Err(e) => Err(ServerError::Io(std::io::Error::other(e))),
        }
    }
}

impl Server {
    /// Validates `config`, opens the store, loads the core, binds and starts serving.
    pub async fn start(config: Config) -> Result<RunningServer, ServerError> {
        Server::start_with_faults(config, Faults::default()).await
    }

    /// [`Server::start`] with deliberate protocol bugs switched on (conformance self-test;
    /// inert unless built with the `faults` feature).
    pub async fn start_with_faults(
        config: Config,
        faults: Faults,
    ) -> Result<RunningServer, ServerError> {
        Server::start_with_pages(config, faults, Vec::new()).await
    }

    /// [`Server::start_with_faults`] that also serves static `pages` (`chorus serve --demo`).
    pub async fn start_with_pages(
        config: Config,
        faults: Faults,
        pages: Vec<Page>,
    ) -> Result<RunningServer, ServerError> {
        config.validate()?;
        let store = if config.memory {
            Store::volatile()?
        } else {
            Store::open_with(&config.data_dir, config.durability)?
        };
        // SEC-2 broken on purpose: development mode on although not configured.
        let dev = config.dev || faults.on(Fault::DevModeByDefault);
        let unchecked_rights = faults.on(Fault::RightsClaimUnchecked);
        let near_miss_signatures = faults.on(Fault::SignatureLastCharIgnored);
        let refuse_fractional_exp = faults.on(Fault::FractionalExpRefused);
        let profile_unbounded = faults.on(Fault::ProfileUnbounded);
        let core_config = core_config(&config, faults);
        let mut retention = core_config
            .retention
            .max(core_config.limits.history_limit as usize);
        if core_config.faults.on(Fault::RetentionBelowAnnounced) {
            retention = retention.saturating_sub(1); // HIST-19 broken on purpose
        }
        let local = InProcessEngine::load(store, retention, core_config.faults.clone())?
            .with_idle_ttl(core_config.channel_idle_ms)
            .with_retention_bytes(
                core_config.limits.retention_bytes,
                core_config.retention_total_bytes,
            );
        let (engine, node) = match config.engine {
            EngineKind::InProcess => (ServerEngine::InProcess(local), None),
            EngineKind::Redis => {
                let joined = cluster::join(
                    &config.redis_url,
                    &config.redis_prefix,
                    local,
                    retention,
                    config.presence_grace_ms,
                )?;
                tracing::info!(node = joined.node, "joined the cluster");
                let node = (joined.node, joined.events, joined.bus, joined.keys);
                let engine = joined.engine.with_faults(core_config.faults.clone());
                (ServerEngine::Redis(engine), Some(node))
            }
        };
        let core = Core::with_engine(core_config, engine);
        let addr = config.bind_addr();
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| ServerError::Bind { addr, source })?;
        let addr = listener.local_addr()?;
        warn_about_dev_mode(&config);
        let path = config.path.clone();
        #[cfg(feature = "pgfeed")]
        let feed = match crate::feed::FeedSettings::from_config(&config) {
            Some(settings) => {
                crate::feed::check(&settings)
                    .await
                    .map_err(|e| ServerError::Feed(e.to_string()))?;
                Some(settings)
            }
            None => None,
        };
        #[cfg(not(feature = "pgfeed"))]
        if config.pg_url.is_some() {
            return Err(ServerError::Feed(
                "pg_url is set but this server was built without the pgfeed feature".into(),
            ));
        }
        let mut auth = Authenticator::with_keys(Authenticator::keys_of(&config)?, dev);
        if !profile_unbounded {
            auth = auth.with_max_profile_bytes(config.limits().max_profile_bytes);
            // CONN-25
        }
        if unchecked_rights {
            auth = auth.dropping_bad_rights(); // CONN-23 broken on purpose
        }
        if near_miss_signatures {
            auth = auth.accepting_near_miss_signatures(); // CONN-4 broken on purpose
        }
        if refuse_fractional_exp {
            auth = auth.refusing_fractional_exp(); // CONN-24 broken on purpose
        }
        let first_conn = node
            .as_ref()
            .map_or(1, |n| (n.0 << cluster::NODE_SHIFT) + 1);
        let shared = Arc::new(Shared::new(config, auth, core, first_conn));
        let bus = node.map(|(_, events, bus, keys)| {
            let task = tokio::spawn(cluster::run_bus(shared.clone(), keys, bus.clone(), events));
            (bus, task)
        });
        let (stop_tx, stop_rx) = watch::channel(false);
        #[cfg(feature = "pgfeed")]
        let feed = feed.map(|s| tokio::spawn(crate::feed::run(shared.clone(), s, stop_rx.clone())));
        #[cfg(not(feature = "pgfeed"))]
        let feed = None;
        let task = tokio::spawn(async move {
            let served = serve(listener, shared, stop_rx, pages, feed).await;
            if let Some((bus, task)) = bus {
                bus.close();
                task.abort();
            }
            served
        });
        tracing::info!(%addr, %path, "chorus server listening");
        Ok(RunningServer {
            addr,
            path,
            shutdown: ShutdownHandle(stop_tx),
            task,
        })
    }
}

/// What the core is told: limits, heartbeat and the capabilities this configuration serves.
fn core_config(config: &Config, faults: Faults) -> CoreConfig {
    let mut capabilities = Capability::ALL.to_vec();
    capabilities.retain(|c| !config.disabled_capabilities().contains(c));
    if config.api_key.is_none() {
        // Without a key nobody can call the API-key endpoints: do not announce them.
        capabilities.retain(|c| *c != Capability::HttpApi);
    }
    if faults.on(Fault::DuplicateCapability) {
        // VER-4 broken on purpose.
        capabilities.push(Capability::ALL[0]);
    }
    CoreConfig {
        limits: config.limits(),
        heartbeat: config.heartbeat(),
        capabilities,
        retention: config.history_retention,
        channel_idle_ms: config.channel_idle_ms,
        retention_total_bytes: config.retention_total_bytes,
        faults,
        ..CoreConfig::default()
    }
}

fn warn_about_dev_mode(config: &Config) {
    if config.dev {
        tracing::warn!(
            "DEVELOPMENT MODE: connections without a token are accepted as anonymous users{}. \
             Never run this in production.",
            if config.jwt_secret.is_none() {
                ", and token signatures are NOT verified (no --jwt-secret)"
            } else {
                ""
            }
        );
    }
}

async fn serve(
    listener: TcpListener,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
    pages: Vec<Page>,
    feed: Option<JoinHandle<()>>,
) -> Result<(), ServerError> {
    let timer = tokio::spawn(net::run_timer(shared.clone(), stop.clone()));
    let syncer = tokio::spawn(shared.clone().run_syncer());
    let app = net::router(shared.clone(), &pages);
    let drain_shared = shared.clone();
    let stop_copy = stop.clone();
    let stopped = async move {
        let _ = stop.wait_for(|stop| *stop).await;
        tracing::info!("shutting down: draining connections");
        drain_shared.begin_shutdown();
    };
    // Frames are small and latency-bound: Nagle's algorithm would hold a frame written
    // behind an unacknowledged one for up to a delayed-ACK timeout (40 ms on Linux).
    // Every stream's read and write buffers exist only while bytes are in flight (an idle
    // WebSocket holds none, net/lean_io.rs).
    let config = &shared.config;
    let mut rules = config.inbound_rules();
    if shared.faults.on(Fault::InboundBytesUnpaced) {
        // LIMIT-19 broken on purpose.
        rules.pace = None;
    }
    let listener = net::lean_io::LeanListener::new(
        listener,
        config.ws_read_buffer_bytes,
        config.ws_write_buffer_bytes,
    )
    .with_rules(rules);
    let listener = listener.tap_io(|io| {
        if let Err(e) = io.get_ref().set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY");
        }
    });
    // The peer address feeds the per-address connection cap (SEC-7).
    let app = app.into_make_service_with_connect_info::<std::net::SocketAddr>();
    let http = axum::serve(listener, app)
        .with_graceful_shutdown(stopped)
        .into_future();
    let grace = Duration::from_millis(shared.config.shutdown_timeout_ms) + Duration::from_secs(1);
    let mut stop_seen = stop_copy;
    tokio::select! {
        served = http => served?,
        // SSE responses end on shutdown; this bounds a client that keeps one open anyway.
        _ = async {
            let _ = stop_seen.wait_for(|stop| *stop).await;
            tokio::time::sleep(grace).await;
        } => tracing::warn!("HTTP connections still open after the shutdown timeout"),
    }
    wait_for_connections(&shared).await;
    if let Some(feed) = feed {
        // The feed stops at the signal; once it is gone nothing writes to the store.
        let _ = feed.await;
    }
    timer.abort();
    syncer.abort();
    tracing::info!("server stopped");
    Ok(())
}

/// Waits until every WebSocket task has flushed and closed, bounded by the configured
/// shutdown timeout.
async fn wait_for_connections(shared: &Shared) {
    let deadline = Instant::now() + Duration::from_millis(shared.config.shutdown_timeout_ms);
    while shared.live() > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    if shared.live() > 0 {
        tracing::warn!(
            open = shared.live(),
            "shutdown timeout: dropping connections"
        );
    }
}
