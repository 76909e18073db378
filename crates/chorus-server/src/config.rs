//! The server's configuration: one typed [`Config`], loaded in one place from command-line
//! flags, `CHORUS_*` environment variables and an optional TOML file.
//!
//! Precedence, highest first: flag > environment variable > file > built-in default. Every
//! setting has the same name in all three places: flag `--max-frame-bytes`, variable
//! `CHORUS_MAX_FRAME_BYTES`, file key `max_frame_bytes`. `chorus.example.toml` beside this
//! crate's manifest lists every key with its default (a test keeps it in step).
//!
//! Defaults follow the spec (limits.md) and the seeds: port 3001, WebSocket path `/ws`,
//! heartbeat 30 s / 60 s, frames up to 1 MiB. The default bind address is `0.0.0.0`
//! (every interface), what people expect of a server they start in a container; use
//! `--host 127.0.0.1` to keep it local.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

use chorus_protocol::{Capability, Heartbeat, Limits};

use crate::store::Durability;
use serde::Deserialize;
use thiserror::Error;

/// Why the configuration could not be loaded.
#[derive(Debug, Error)]
pub enum ConfigError {
    /// The `--config` file could not be read.
    #[error("cannot read config file {path}: {source}")]
    ReadFile {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The `--config` file is not valid TOML for these settings.
    #[error("invalid config file {path}: {source}")]
    ParseFile {
        /// The file.
        path: PathBuf,
        /// The TOML error (names the unknown or mistyped key).
        source: Box<toml::de::Error>,
    },
    /// Neither a JWT secret nor development mode: no connection could ever authenticate.
    #[error(
        "no JWT secret configured: pass --jwt-secret (or CHORUS_JWT_SECRET, or jwt_secret in \
         the config file) or --jwt-public-key, or run with --dev to accept anonymous \
         connections"
    )]
    MissingJwtSecret,
    /// A setting is out of range or contradicts another one.
    #[error("invalid setting {setting}: {reason}")]
    Invalid {
        /// The setting's name (as in the config file).
        setting: &'static str,
        /// What is wrong.
        reason: String,
    },
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Which engine holds what connections share (cluster.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum EngineKind {
    /// Everything in this process (the embedded default).
    InProcess,
    /// Streams and shared state in Redis, shared by every node of a cluster.
    Redis,
}

/// Declares every setting once: its type, default and help text. Generates the clap flags
/// ([`ServeArgs`]), the file layer ([`FileSettings`]) and the merged [`Config`].
macro_rules! settings {
    ($(
        $(#[doc = $doc:literal])*
        $name:ident: $ty:ty = $default:expr, env = $env:literal $(, [$($arg:tt)*])?;
    )*) => {
        /// Flags of `chorus serve`. Each one can also come from its `CHORUS_*` environment
        /// variable or from the `--config` TOML file (same name, with underscores).
        #[derive(Debug, Clone, Default, clap::Args)]
        pub struct ServeArgs {
            /// TOML file with any of these settings (file keys use underscores, e.g.
            /// `max_frame_bytes = 65536`); flags and environment variables override it.
            #[arg(long, env = "CHORUS_CONFIG", value_name = "FILE")]
            pub config: Option<PathBuf>,
            $(
                $(#[doc = $doc])*
                #[arg(long, env = $env $(, $($arg)*)?)]
                pub $name: Option<$ty>,
            )*
        }

        /// The settings of a config file; every key optional, unknown keys refused.
        #[derive(Debug, Clone, Default, Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct FileSettings {
            $(
                #[allow(missing_docs)]
                pub $name: Option<$ty>,
            )*
        }

        /// The server's whole configuration (see the module docs for where each value comes
        /// from). Build it with [`Config::load`], or start from [`Config::default`] in code.
        #[derive(Debug, Clone, PartialEq)]
        pub struct Config {
            $(
                $(#[doc = $doc])*
                pub $name: $ty,
            )*
        }

        impl Default for Config {
            fn default() -> Self {
                Config { $( $name: $default, )* }
            }
        }

        impl Config {
            /// Layers flags/environment (already merged by clap) over the file over the
            /// defaults.
            fn layered(args: &ServeArgs, file: FileSettings) -> Config {
                let defaults = Config::default();
                Config {
                    $( $name: args.$name.clone().or(file.$name).unwrap_or(defaults.$name), )*
                }
            }
        }
    };
}

settings! {
    /// Address to bind [default: 0.0.0.0].
    host: IpAddr = IpAddr::V4(Ipv4Addr::UNSPECIFIED), env = "CHORUS_HOST",
        [value_parser = host_address];
    /// TCP port for WebSocket, HTTP API and SSE; 0 picks a free port [default: 3001].
    port: u16 = 3001, env = "CHORUS_PORT";
    /// Path of the WebSocket endpoint [default: /ws].
    path: String = "/ws".to_owned(), env = "CHORUS_PATH";
    /// Directory of the SQLite database (created if missing) [default: ./chorus-data].
    data_dir: PathBuf = PathBuf::from("./chorus-data"), env = "CHORUS_DATA_DIR";
    /// full: a write is acknowledged once synced to disk (survives a power cut; about 4 ms
    /// a write, serialized). normal: once handed to the OS (survives a crash of the server,
    /// not of the machine) [default: full].
    durability: Durability = Durability::Full, env = "CHORUS_DURABILITY";
    /// Keep everything in memory instead of --data-dir; nothing survives a restart
    /// [default: false].
    memory: bool = false, env = "CHORUS_MEMORY",
        [num_args = 0..=1, default_missing_value = "true", value_name = "BOOL",
         value_parser = clap::builder::BoolishValueParser::new()];
    /// HS256 secret that verifies connection tokens (required unless --dev).
    jwt_secret: Option<String> = None, env = "CHORUS_JWT_SECRET",
        [hide_env_values = true, num_args = 1, value_parser = non_empty_secret];
    /// Earlier HS256 secrets still accepted (repeatable), tried after --jwt-secret: rotate
    /// by making the new secret current and the old one previous until its tokens expired
    /// (CONN-26) [default: none].
    jwt_previous_secret: Vec<String> = Vec::new(), env = "CHORUS_JWT_PREVIOUS_SECRET",
        [hide_env_values = true, num_args = 1, value_parser = non_empty_secret,
         value_name = "SECRET"];
    /// PEM public key files that verify tokens too, `[KID=]PATH` (repeatable): an RSA key
    /// verifies RS256, an EC P-256 key ES256; a token whose `kid` header names a key is
    /// verified with that key only (CONN-26) [default: none].
    jwt_public_key: Vec<String> = Vec::new(), env = "CHORUS_JWT_PUBLIC_KEY",
        [num_args = 1, value_name = "[KID=]PATH"];
    /// Required `iss` claim of every token (CONN-27) [default: not checked].
    jwt_issuer: Option<String> = None, env = "CHORUS_JWT_ISSUER", [num_args = 1];
    /// Required audience: every token's `aud` is this string or an array holding it
    /// (CONN-28) [default: not checked].
    jwt_audience: Option<String> = None, env = "CHORUS_JWT_AUDIENCE", [num_args = 1];
    /// Key clients of the HTTP API send in X-Api-Key; without one the server does not
    /// announce http_api and the API's endpoints answer 404.
    api_key: Option<String> = None, env = "CHORUS_API_KEY",
        [hide_env_values = true, num_args = 1, value_parser = non_empty_secret];
    /// Development mode: accept connections without a token (anonymous users). Never in
    /// production [default: false].
    dev: bool = false, env = "CHORUS_DEV",
        [num_args = 0..=1, default_missing_value = "true", value_name = "BOOL",
         value_parser = clap::builder::BoolishValueParser::new()];
    /// Heartbeat interval announced in welcome, ms [default: 30000].
    heartbeat_interval_ms: u64 = 30_000, env = "CHORUS_HEARTBEAT_INTERVAL_MS";
    /// Silence after which a connection is closed with 4300, ms; at least twice the
    /// interval [default: 60000].
    heartbeat_timeout_ms: u64 = 60_000, env = "CHORUS_HEARTBEAT_TIMEOUT_MS";
    /// Largest accepted client frame in bytes; larger ones close with 1009 [default: 1048576].
    max_frame_bytes: u64 = 1024 * 1024, env = "CHORUS_MAX_FRAME_BYTES";
    /// Channels one connection may be subscribed to [default: 100].
    max_subscriptions: u32 = 100, env = "CHORUS_MAX_SUBSCRIPTIONS";
    /// Longest channel name in characters [default: 200].
    max_channel_name_len: u32 = 200, env = "CHORUS_MAX_CHANNEL_NAME_LEN";
    /// Sustained broadcasts per second per connection [default: 50].
    broadcast_rate_per_sec: u32 = 50, env = "CHORUS_BROADCAST_RATE_PER_SEC";
    /// Broadcast burst above the sustained rate [default: 100].
    broadcast_burst: u32 = 100, env = "CHORUS_BROADCAST_BURST";
    /// Members one presence channel may hold [default: 1000].
    max_presence_members: u32 = 1000, env = "CHORUS_MAX_PRESENCE_MEMBERS";
    /// Upper bound on a room's max_users [default: 1000].
    max_room_users: u32 = 1000, env = "CHORUS_MAX_ROOM_USERS";
    /// Messages retained per channel and returned per history page [default: 100].
    history_limit: u32 = 100, env = "CHORUS_HISTORY_LIMIT";
    /// Messages each channel retains for history and recovery; at least history_limit
    /// [default: 1000].
    history_retention: usize = crate::core::DEFAULT_RETENTION, env = "CHORUS_HISTORY_RETENTION";
    /// Bytes of stream frames each channel retains (with history_retention, whichever
    /// is reached first; HIST-19); at least max_frame_bytes [default: 8388608].
    retention_bytes: u64 = 8 * 1024 * 1024, env = "CHORUS_RETENTION_BYTES";
    /// Bytes of stream frames all channels together retain; above it the oldest items of
    /// the server go first (HIST-20); at least retention_bytes [default: 268435456].
    retention_total_bytes: u64 = 256 * 1024 * 1024, env = "CHORUS_RETENTION_TOTAL_BYTES";
    /// Channels one tenant may hold; a subscribe that would create one more is refused
    /// with limit_exceeded (LIMIT-18) [default: 100000].
    max_channels: u64 = 100_000, env = "CHORUS_MAX_CHANNELS";
    /// Sustained requests per second per connection, every type counted (LIMIT-14)
    /// [default: 200].
    request_rate_per_sec: u32 = 200, env = "CHORUS_REQUEST_RATE_PER_SEC";
    /// Requests a connection may send at once above the sustained rate (LIMIT-14)
    /// [default: 500].
    request_burst: u32 = 500, env = "CHORUS_REQUEST_BURST";
    /// Bytes per second read from one connection once its burst is spent; a faster sender
    /// is read slower (LIMIT-19) [default: 1048576].
    inbound_bytes_per_sec: u64 = 1024 * 1024, env = "CHORUS_INBOUND_BYTES_PER_SEC";
    /// Bytes one connection may send at once above the sustained inbound rate; at least
    /// max_frame_bytes (LIMIT-19) [default: 2097152].
    inbound_burst_bytes: u64 = 2 * 1024 * 1024, env = "CHORUS_INBOUND_BURST_BYTES";
    /// Time a connection's first HTTP request (a WebSocket upgrade too) has to send its
    /// complete headers before the connection is closed, ms [default: 5000].
    http_header_timeout_ms: u64 = 5000, env = "CHORUS_HTTP_HEADER_TIMEOUT_MS";
    /// Threads hashing and checking room passwords (each an argon2id of 19 MiB), at the
    /// idle scheduling priority; a subscribe waiting for one holds its connection's next
    /// frame (ROOM-24) [default: 1].
    password_hash_threads: u32 = 1, env = "CHORUS_PASSWORD_HASH_THREADS";
    /// Wrong room passwords one user may give before password attempts are refused with
    /// rate_limited (LIMIT-16) [default: 5].
    max_password_attempts: u32 = 5, env = "CHORUS_MAX_PASSWORD_ATTEMPTS";
    /// One more room password attempt is allowed per this many ms (LIMIT-16)
    /// [default: 10000].
    password_attempt_interval_ms: u64 = 10_000, env = "CHORUS_PASSWORD_ATTEMPT_INTERVAL_MS";
    /// How long a channel nobody uses (no subscriber, presence member, shared state or
    /// room, and no publish) keeps its retained stream before it is forgotten, ms; below
    /// 300000 departs from HIST-19 [default: 600000].
    channel_idle_ms: u64 = crate::core::DEFAULT_IDLE_TTL_MS, env = "CHORUS_CHANNEL_IDLE_MS";
    /// Deepest JSON nesting accepted in a client frame [default: 32].
    max_json_depth: u32 = 32, env = "CHORUS_MAX_JSON_DEPTH";
    /// Cursor coalescing interval, ms [default: 50].
    cursor_interval_ms: u64 = 50, env = "CHORUS_CURSOR_INTERVAL_MS";
    /// How long an abruptly closed connection keeps its presence, ms [default: 5000].
    presence_grace_ms: u64 = 5000, env = "CHORUS_PRESENCE_GRACE_MS";
    /// How long a publish's message_id is remembered for deduplication, ms; at least 1000
    /// [default: 120000].
    dedup_window_ms: u64 = 120_000, env = "CHORUS_DEDUP_WINDOW_MS";
    /// Largest presence data (presence:update), bytes of compact JSON [default: 4096].
    max_presence_data_bytes: u64 = 4096, env = "CHORUS_MAX_PRESENCE_DATA_BYTES";
    /// Largest token profile, bytes of compact JSON; larger tokens are invalid
    /// [default: 4096].
    max_profile_bytes: u64 = 4096, env = "CHORUS_MAX_PROFILE_BYTES";
    /// Largest cursor data (cursor:update), bytes of compact JSON [default: 1024].
    max_cursor_data_bytes: u64 = 1024, env = "CHORUS_MAX_CURSOR_DATA_BYTES";
    /// Largest room metadata, bytes of compact JSON [default: 4096].
    max_room_metadata_bytes: u64 = 4096, env = "CHORUS_MAX_ROOM_METADATA_BYTES";
    /// Largest shared state of one channel, bytes of compact JSON; announced as at most
    /// max_frame_bytes - 1024 [default: 1044480].
    max_state_bytes: u64 = 1024 * 1024 - 4096, env = "CHORUS_MAX_STATE_BYTES";
    /// Frames queued per connection before it is closed as a slow consumer (4200)
    /// [default: 1024].
    queue_capacity: usize = 1024, env = "CHORUS_QUEUE_CAPACITY";
    /// Bytes of frames queued per connection before it is closed as a slow consumer (4200);
    /// at least max_frame_bytes, and LIMIT-10 asks for 4 times that [default: 8388608].
    queue_max_bytes: usize = 8 * 1024 * 1024, env = "CHORUS_QUEUE_MAX_BYTES";
    /// Queue length above which droppable frames (cursor:moved) are dropped [default: 256].
    queue_watermark: usize = 256, env = "CHORUS_QUEUE_WATERMARK";
    /// Consecutive protocol errors that close a connection with 4005 [default: 20].
    max_protocol_errors: u32 = 20, env = "CHORUS_MAX_PROTOCOL_ERRORS";
    /// Open connections (WebSocket and SSE) above which new ones are closed with 4202
    /// [default: 100000].
    max_connections: usize = 100_000, env = "CHORUS_MAX_CONNECTIONS";
    /// Open connections of one user (tenant and user id) above which new ones are closed
    /// with 4202 (SEC-7) [default: 1000].
    max_connections_per_user: usize = 1000, env = "CHORUS_MAX_CONNECTIONS_PER_USER";
    /// Open connections from one remote address above which new ones are closed with 4202
    /// (SEC-7); behind a reverse proxy every connection comes from the proxy's address
    /// [default: 10000].
    max_connections_per_address: usize = 10_000, env = "CHORUS_MAX_CONNECTIONS_PER_ADDRESS";
    /// Origins allowed to open WebSockets and SSE streams (comma-separated); empty allows
    /// every origin [default: empty].
    allowed_origins: Vec<String> = Vec::new(), env = "CHORUS_ALLOWED_ORIGINS",
        [value_delimiter = ',', num_args = 1..];
    /// Capabilities not to serve or announce (comma-separated names as in `welcome`, e.g.
    /// `cursors,sse`); their requests get `unsupported` (VER-6a to VER-6e) [default: empty].
    disable_capabilities: Vec<String> = Vec::new(), env = "CHORUS_DISABLE_CAPABILITIES",
        [value_delimiter = ',', num_args = 1..];
    /// Bytes read from a connection's socket at once, into a buffer that exists only while
    /// they are in flight [default: 4096].
    ws_read_buffer_bytes: usize = 4096, env = "CHORUS_WS_READ_BUFFER_BYTES";
    /// Bytes of frames gathered per connection before a write reaches the socket (the
    /// buffer is freed after each flush) [default: 4096].
    ws_write_buffer_bytes: usize = 4096, env = "CHORUS_WS_WRITE_BUFFER_BYTES";
    /// How long shutdown waits for connections to flush and close, ms [default: 5000].
    shutdown_timeout_ms: u64 = 5000, env = "CHORUS_SHUTDOWN_TIMEOUT_MS";
    /// PostgreSQL to read changes from (logical replication), e.g.
    /// `postgres://chorus@127.0.0.1:5432/app`; unset: no database feed [default: none].
    pg_url: Option<String> = None, env = "CHORUS_PG_URL", [hide_env_values = true, num_args = 1];
    /// Tables whose committed changes become data_change frames (comma-separated; each
    /// table is the resource of the same name); empty publishes every table of --pg-schema
    /// [default: empty].
    pg_tables: Vec<String> = Vec::new(), env = "CHORUS_PG_TABLES",
        [value_delimiter = ',', num_args = 1..];
    /// Schema of the published tables [default: public].
    pg_schema: String = "public".to_owned(), env = "CHORUS_PG_SCHEMA";
    /// Column whose value is the record id [default: id].
    pg_key_column: String = "id".to_owned(), env = "CHORUS_PG_KEY_COLUMN";
    /// Tenant of every published change, unless --pg-tenant-column names one per row
    /// [default: "" (the default tenant)].
    pg_tenant: String = String::new(), env = "CHORUS_PG_TENANT";
    /// Column holding each row's tenant (NULL: the default tenant) [default: none].
    pg_tenant_column: Option<String> = None, env = "CHORUS_PG_TENANT_COLUMN", [num_args = 1];
    /// Logical replication slot of the feed (created when missing); its WAL is kept while
    /// the server is down [default: chorus].
    pg_slot: String = "chorus".to_owned(), env = "CHORUS_PG_SLOT";
    /// Publication of the feed (created, or set to --pg-tables) [default: chorus].
    pg_publication: String = "chorus".to_owned(), env = "CHORUS_PG_PUBLICATION";
    /// Engine: in-process (one server) or redis (a cluster of nodes sharing --redis-url)
    /// [default: in-process].
    engine: EngineKind = EngineKind::InProcess, env = "CHORUS_ENGINE", [value_enum];
    /// Redis of the cluster engine, redis://host:port [default: redis://127.0.0.1:6379].
    redis_url: String = "redis://127.0.0.1:6379".to_owned(), env = "CHORUS_REDIS_URL",
        [hide_env_values = true];
    /// Prefix of every Redis key of this deployment (several deployments may share one
    /// Redis) [default: chorus].
    redis_prefix: String = "chorus".to_owned(), env = "CHORUS_REDIS_PREFIX";
    /// Log filter, e.g. `info` or `chorus_server=debug` [default: info].
    log_level: String = "info".to_owned(), env = "CHORUS_LOG_LEVEL";
    /// Log format [default: text].
    log_format: LogFormat = LogFormat::Text, env = "CHORUS_LOG_FORMAT", [value_enum];
}

/// An IP address to bind, or `localhost` (the loopback address, 127.0.0.1).
fn host_address(s: &str) -> Result<IpAddr, String> {
    if s.eq_ignore_ascii_case("localhost") {
        return Ok(IpAddr::V4(Ipv4Addr::LOCALHOST));
    }
    s.parse().map_err(|_| {
        format!("{s:?} is not an IP address: give one (127.0.0.1, 0.0.0.0, ::1) or localhost")
    })
}

fn non_empty_secret(s: &str) -> Result<String, String> {
    if s.is_empty() {
        Err("must not be empty".into())
    } else {
        Ok(s.to_owned())
    }
}

impl Config {
    /// Loads the configuration from parsed flags (which clap already merged with the
    /// environment) and the file they name, then validates it.
    pub fn load(args: &ServeArgs) -> Result<Config, ConfigError> {
        let file = match &args.config {
            Some(path) => read_file(path)?,
            None => FileSettings::default(),
        };
        let config = Config::layered(args, file);
        config.validate()?;
        Ok(config)
    }

    /// A configuration for tests: loopback on a free port, in memory, with a JWT secret
    /// and an API key.
    pub fn for_tests(jwt_secret: &str, api_key: &str) -> Config {
        Config {
            host: IpAddr::V4(Ipv4Addr::LOCALHOST),
            port: 0,
            memory: true,
            jwt_secret: Some(jwt_secret.to_owned()),
            api_key: Some(api_key.to_owned()),
            ..Config::default()
        }
    }

    /// Checks every rule a setting must follow; [`Config::load`] calls it.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.jwt_secret.is_none() && self.jwt_public_key.is_empty() && !self.dev {
            return Err(ConfigError::MissingJwtSecret);
        }
        // SEC-1; development mode may use a toy secret.
        let short = self.jwt_secret.as_ref().is_some_and(|s| s.len() < 32);
        check(
            self.jwt_previous_secret.iter().all(|s| s.len() >= 32) || self.dev,
            "jwt_previous_secret",
            "must each be at least 32 bytes (HS256 keys shorter than the hash are weak)",
        )?;
        check(
            !short || self.dev,
            "jwt_secret",
            "must be at least 32 bytes (HS256 keys shorter than the hash are weak)",
        )?;
        // CONN-14: one lost ping must not close the connection.
        check(
            self.heartbeat_timeout_ms >= 2 * self.heartbeat_interval_ms,
            "heartbeat_timeout_ms",
            "must be at least twice heartbeat_interval_ms",
        )?;
        check(
            self.heartbeat_interval_ms > 0,
            "heartbeat_interval_ms",
            "must be positive",
        )?;
        check(
            self.queue_capacity > 0,
            "queue_capacity",
            "must be positive",
        )?;
        check(
            self.queue_watermark <= self.queue_capacity,
            "queue_watermark",
            "must not exceed queue_capacity",
        )?;
        if let Some(name) = self
            .disable_capabilities
            .iter()
            .find(|n| capability(n).is_none())
        {
            let valid: Vec<&str> = Capability::ALL.iter().map(|c| c.as_str()).collect();
            return Err(ConfigError::Invalid {
                setting: "disable_capabilities",
                reason: format!(
                    "{name:?} is not a capability of this server; valid names: {}",
                    valid.join(", ")
                ),
            });
        }
        check(
            self.max_connections_per_user >= 1,
            "max_connections_per_user",
            "must be at least 1",
        )?;
        check(
            self.max_connections_per_address >= 1,
            "max_connections_per_address",
            "must be at least 1",
        )?;
        check(
            self.queue_max_bytes as u64 >= self.max_frame_bytes,
            "queue_max_bytes",
            "must be at least max_frame_bytes",
        )?;
        check(
            self.max_frame_bytes >= 2048,
            "max_frame_bytes",
            "must be at least 2048 (max_state_bytes is announced as at most max_frame_bytes - 1024, LIMIT-12)",
        )?;
        check(
            self.max_json_depth >= 1,
            "max_json_depth",
            "must be at least 1",
        )?;
        for (value, setting) in [
            (self.max_presence_data_bytes, "max_presence_data_bytes"),
            (self.max_profile_bytes, "max_profile_bytes"),
            (self.max_cursor_data_bytes, "max_cursor_data_bytes"),
            (self.max_room_metadata_bytes, "max_room_metadata_bytes"),
        ] {
            // `{}` must fit: LIMIT-11 asks for positive values.
            check(value >= 2, setting, "must be at least 2")?;
        }
        check(
            self.max_state_bytes >= 2,
            "max_state_bytes",
            "must be at least 2",
        )?;
        check(
            self.history_retention >= self.history_limit as usize,
            "history_retention",
            "must be at least history_limit",
        )?;
        check(
            self.retention_bytes >= self.max_frame_bytes,
            "retention_bytes",
            "must be at least max_frame_bytes (a channel retains at least its newest item)",
        )?;
        check(
            self.retention_total_bytes >= self.retention_bytes,
            "retention_total_bytes",
            "must be at least retention_bytes",
        )?;
        // LIMIT-13 asks for positive values.
        for (ok, setting) in [
            (self.max_channels >= 1, "max_channels"),
            (self.request_rate_per_sec >= 1, "request_rate_per_sec"),
            (self.inbound_bytes_per_sec >= 1, "inbound_bytes_per_sec"),
            (self.http_header_timeout_ms >= 1, "http_header_timeout_ms"),
            (self.max_password_attempts >= 1, "max_password_attempts"),
            (self.password_hash_threads >= 1, "password_hash_threads"),
            (
                self.password_attempt_interval_ms >= 1,
                "password_attempt_interval_ms",
            ),
        ] {
            check(ok, setting, "must be at least 1")?;
        }
        check(
            self.request_burst >= self.broadcast_burst,
            "request_burst",
            "must be at least broadcast_burst (every broadcast is a request too)",
        )?;
        check(
            self.inbound_burst_bytes >= self.max_frame_bytes,
            "inbound_burst_bytes",
            "must be at least max_frame_bytes (a frame of the largest size passes at once)",
        )?;
        check(
            self.channel_idle_ms >= 1000,
            "channel_idle_ms",
            "must be at least 1000",
        )?;
        check(
            self.dedup_window_ms >= 1000,
            "dedup_window_ms",
            "must be at least 1000 (the limits table's floor, so a retry has time to come)",
        )?;
        check(
            self.max_protocol_errors >= 1,
            "max_protocol_errors",
            "must be at least 1",
        )?;
        self.validate_pg()?;
        self.validate_path()
    }

    /// The database feed's names are SQL identifiers the feed quotes, and tables are
    /// resource names (changes.md "Names").
    fn validate_pg(&self) -> Result<(), ConfigError> {
        let ident = |s: &str| {
            (1..=63).contains(&s.len())
                && s.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        };
        for (setting, value) in [
            ("pg_slot", &self.pg_slot),
            ("pg_publication", &self.pg_publication),
        ] {
            check(ident(value), setting, "must be 1..=63 of [a-z0-9_]")?;
        }
        let column = |s: &str| (1..=63).contains(&s.len()) && !s.contains('"');
        check(
            column(&self.pg_key_column),
            "pg_key_column",
            "must be a column name",
        )?;
        check(
            column(&self.pg_schema),
            "pg_schema",
            "must be a schema name",
        )?;
        if let Some(c) = &self.pg_tenant_column {
            check(column(c), "pg_tenant_column", "must be a column name")?;
        }
        for table in &self.pg_tables {
            let ok = (1..=63).contains(&table.len())
                && table
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
                && table != "resource";
            check(
                ok,
                "pg_tables",
                "a table must be a resource name ([A-Za-z0-9_-], not `resource`)",
            )?;
        }
        Ok(())
    }

    fn validate_path(&self) -> Result<(), ConfigError> {
        check(self.path.starts_with('/'), "path", "must start with /")?;
        let taken = ["/healthz", "/sse"];
        let clash = taken.contains(&self.path.as_str()) || self.path.starts_with("/api");
        check(
            !clash && self.path != "/",
            "path",
            "clashes with an HTTP endpoint (/, /healthz, /sse, /api/...)",
        )
    }

    /// The socket address to bind.
    pub fn bind_addr(&self) -> SocketAddr {
        SocketAddr::new(self.host, self.port)
    }

    /// The capabilities switched off by `disable_capabilities` (names validated at load).
    /// Without presence there are no rooms nor cursors either (VER-7: they are announced
    /// only together with presence).
    pub fn disabled_capabilities(&self) -> Vec<Capability> {
        let mut off: Vec<Capability> = self
            .disable_capabilities
            .iter()
            .filter_map(|n| capability(n))
            .collect();
        if off.contains(&Capability::Presence) {
            for dependent in [Capability::Rooms, Capability::Cursors] {
                if !off.contains(&dependent) {
                    off.push(dependent);
                }
            }
        }
        off
    }

    /// The bounds of each connection's outbound queue.
    pub fn queue_limits(&self) -> crate::net::outbound::QueueLimits {
        crate::net::outbound::QueueLimits {
            capacity: self.queue_capacity,
            watermark: self.queue_watermark,
            max_bytes: self.queue_max_bytes,
        }
    }

    /// The limits announced in `welcome` and enforced.
    pub fn limits(&self) -> Limits {
        Limits {
            max_frame_bytes: self.max_frame_bytes,
            max_subscriptions: self.max_subscriptions,
            max_channel_name_len: self.max_channel_name_len,
            broadcast_rate_per_sec: self.broadcast_rate_per_sec,
            broadcast_burst: self.broadcast_burst,
            max_presence_members: self.max_presence_members,
            max_room_users: self.max_room_users,
            history_limit: self.history_limit,
            max_json_depth: self.max_json_depth,
            cursor_interval_ms: self.cursor_interval_ms,
            presence_grace_ms: self.presence_grace_ms,
            dedup_window_ms: self.dedup_window_ms,
            max_presence_data_bytes: self.max_presence_data_bytes,
            max_profile_bytes: self.max_profile_bytes,
            max_cursor_data_bytes: self.max_cursor_data_bytes,
            max_room_metadata_bytes: self.max_room_metadata_bytes,
            // LIMIT-12: a snapshot of the whole state fits in one frame.
            max_state_bytes: self
                .max_state_bytes
                .min(self.max_frame_bytes.saturating_sub(1024)),
            // HIST-19: items are dropped only past this count, or with their channel after
            // channel_idle_ms without use (an item younger than that had a write after it).
            retention_items: self.history_retention.max(self.history_limit as usize) as u64,
            retention_ms: self.channel_idle_ms,
            retention_bytes: self.retention_bytes,
            request_rate_per_sec: self.request_rate_per_sec,
            request_burst: self.request_burst,
            max_password_attempts: self.max_password_attempts,
            password_attempt_interval_ms: self.password_attempt_interval_ms,
            max_channels: self.max_channels,
            inbound_bytes_per_sec: self.inbound_bytes_per_sec,
            inbound_burst_bytes: self.inbound_burst_bytes,
        }
    }

    /// What every accepted stream's reads are held to (net/lean_io.rs): the inbound byte
    /// bucket (LIMIT-19) and the first request's header deadline.
    pub fn inbound_rules(&self) -> crate::net::lean_io::InboundRules {
        crate::net::lean_io::InboundRules {
            pace: Some(crate::net::lean_io::InboundPace {
                bytes_per_sec: self.inbound_bytes_per_sec,
                burst_bytes: self.inbound_burst_bytes,
            }),
            header_timeout: Some(std::time::Duration::from_millis(
                self.http_header_timeout_ms,
            )),
        }
    }

    /// The heartbeat announced in `welcome` and enforced.
    pub fn heartbeat(&self) -> Heartbeat {
        Heartbeat {
            interval_ms: self.heartbeat_interval_ms,
            timeout_ms: self.heartbeat_timeout_ms,
        }
    }

    /// Copies every limit from `limits` (handy in tests).
    pub fn set_limits(&mut self, limits: Limits) {
        self.max_frame_bytes = limits.max_frame_bytes;
        self.max_subscriptions = limits.max_subscriptions;
        self.max_channel_name_len = limits.max_channel_name_len;
        self.broadcast_rate_per_sec = limits.broadcast_rate_per_sec;
        self.broadcast_burst = limits.broadcast_burst;
        self.max_presence_members = limits.max_presence_members;
        self.max_room_users = limits.max_room_users;
        self.history_limit = limits.history_limit;
        self.max_json_depth = limits.max_json_depth;
        self.cursor_interval_ms = limits.cursor_interval_ms;
        self.presence_grace_ms = limits.presence_grace_ms;
        self.dedup_window_ms = limits.dedup_window_ms;
        self.max_presence_data_bytes = limits.max_presence_data_bytes;
        self.max_profile_bytes = limits.max_profile_bytes;
        self.max_cursor_data_bytes = limits.max_cursor_data_bytes;
        self.max_room_metadata_bytes = limits.max_room_metadata_bytes;
        self.max_state_bytes = limits.max_state_bytes;
        self.history_retention = limits.retention_items as usize;
        self.channel_idle_ms = limits.retention_ms;
        self.retention_bytes = limits.retention_bytes;
        self.request_rate_per_sec = limits.request_rate_per_sec;
        self.request_burst = limits.request_burst;
        self.max_password_attempts = limits.max_password_attempts;
        self.password_attempt_interval_ms = limits.password_attempt_interval_ms;
        self.max_channels = limits.max_channels;
        self.inbound_bytes_per_sec = limits.inbound_bytes_per_sec;
        self.inbound_burst_bytes = limits.inbound_burst_bytes;
    }
}

fn check(ok: bool, setting: &'static str, reason: &str) -> Result<(), ConfigError> {
    if ok {
        Ok(())
    } else {
        Err(ConfigError::Invalid {
            setting,
            reason: reason.to_owned(),
        })
    }
}

fn read_file(path: &Path) -> Result<FileSettings, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::ReadFile {
        path: path.to_owned(),
        source,
    })?;
    toml::from_str(&text).map_err(|source| ConfigError::ParseFile {
        path: path.to_owned(),
        source: Box::new(source),
    })
}

/// The capability named `name` as in `welcome` (`http_api`), if there is one.
fn capability(name: &str) -> Option<Capability> {
    serde_json::from_value(serde_json::Value::String(name.trim().to_owned())).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        args: ServeArgs,
    }

    fn parse(flags: &[&str]) -> ServeArgs {
        let mut argv = vec!["chorus"];
        argv.extend_from_slice(flags);
        Cli::try_parse_from(argv).unwrap().args
    }

    fn file_with(text: &str) -> tempfile::NamedTempFile {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), text).unwrap();
        file
    }

    #[test]
    fn defaults_follow_the_seeds() {
        let c = Config::default();
        assert_eq!(c.port, 3001);
        assert_eq!(c.path, "/ws");
        assert_eq!(c.data_dir, PathBuf::from("./chorus-data"));
        assert_eq!(c.heartbeat().interval_ms, 30_000);
        assert_eq!(c.heartbeat().timeout_ms, 60_000);
        assert_eq!(c.limits(), Limits::default());
        assert_eq!(c.max_protocol_errors, 20);
        assert!(!c.dev);
    }

    #[test]
    fn refuses_to_start_without_a_secret_outside_dev() {
        let err = Config::load(&parse(&[])).unwrap_err();
        assert!(matches!(err, ConfigError::MissingJwtSecret), "{err}");
        assert!(Config::load(&parse(&["--dev"])).unwrap().dev);
    }

    #[test]
    fn flags_override_the_file_which_overrides_defaults() {
        let file = file_with(
            "port = 4000\npath = \"/rt\"\njwt_secret = \"0123456789abcdef0123456789abcdef\"\n",
        );
        let path = file.path().to_str().unwrap();
        let c = Config::load(&parse(&["--config", path, "--port", "5000"])).unwrap();
        assert_eq!(c.port, 5000);
        assert_eq!(c.path, "/rt");
        assert_eq!(c.max_frame_bytes, 1024 * 1024);
    }

    #[test]
    fn short_secrets_are_refused_outside_dev() {
        let err = Config::load(&parse(&["--jwt-secret", "short"])).unwrap_err();
        assert!(matches!(
            err,
            ConfigError::Invalid {
                setting: "jwt_secret",
                ..
            }
        ));
        assert!(Config::load(&parse(&["--jwt-secret", "short", "--dev"])).is_ok());
    }

    #[test]
    fn durability_comes_from_a_flag_or_the_file() {
        assert_eq!(Config::default().durability, Durability::Full);
        assert_eq!(
            parse(&["--durability", "normal"]).durability,
            Some(Durability::Normal)
        );
        assert!(Cli::try_parse_from(["chorus", "--durability", "sometimes"]).is_err());
        let file = file_with("durability = \"normal\"\n");
        let path = file.path().to_str().unwrap();
        let c = Config::load(&parse(&["--dev", "--config", path])).unwrap();
        assert_eq!(c.durability, Durability::Normal);
    }

    #[test]
    fn capabilities_can_be_switched_off_by_name() {
        let c = Config::load(&parse(&["--dev", "--disable-capabilities", "cursors,sse"])).unwrap();
        assert_eq!(
            c.disabled_capabilities(),
            vec![Capability::Cursors, Capability::Sse]
        );
        let err = Config::load(&parse(&["--dev", "--disable-capabilities", "telepathy"]))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("\"telepathy\"") && err.contains("valid names: presence, rooms"),
            "{err}"
        );
    }

    #[test]
    fn without_presence_rooms_and_cursors_are_off_too() {
        let c = Config::load(&parse(&["--dev", "--disable-capabilities", "presence"])).unwrap();
        assert_eq!(
            c.disabled_capabilities(),
            vec![Capability::Presence, Capability::Rooms, Capability::Cursors]
        );
    }

    #[test]
    fn localhost_is_a_host() {
        assert_eq!(
            parse(&["--host", "localhost"]).host,
            Some(IpAddr::V4(Ipv4Addr::LOCALHOST))
        );
    }

    #[test]
    fn bool_flags_take_one_and_yes() {
        assert!(parse(&["--dev=1"]).dev.unwrap());
        assert!(parse(&["--memory=yes"]).memory.unwrap());
        assert!(!parse(&["--dev=0"]).dev.unwrap());
    }

    #[test]
    fn bool_flags_take_an_optional_value() {
        assert!(parse(&["--memory"]).memory.unwrap());
        assert!(!parse(&["--memory=false"]).memory.unwrap());
        assert_eq!(parse(&[]).memory, None);
    }

    #[test]
    fn the_example_file_holds_the_defaults() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/chorus.example.toml");
        let c = Config::load(&parse(&["--dev", "--config", path])).unwrap();
        assert_eq!(
            c,
            Config {
                dev: true,
                ..Config::default()
            }
        );
    }

    #[test]
    fn unknown_file_keys_are_refused() {
        let file = file_with("prot = 4000\n");
        let args = parse(&["--dev", "--config", file.path().to_str().unwrap()]);
        assert!(matches!(
            Config::load(&args),
            Err(ConfigError::ParseFile { .. })
        ));
    }

    #[test]
    fn heartbeat_timeout_must_cover_two_intervals() {
        let args = parse(&[
            "--dev",
            "--heartbeat-interval-ms",
            "1000",
            "--heartbeat-timeout-ms",
            "1500",
        ]);
        assert!(matches!(
            Config::load(&args),
            Err(ConfigError::Invalid {
                setting: "heartbeat_timeout_ms",
                ..
            })
        ));
    }

    #[test]
    fn the_inbound_burst_holds_a_frame_of_the_largest_size() {
        let args = parse(&[
            "--dev",
            "--max-frame-bytes",
            "65536",
            "--inbound-burst-bytes",
            "65535",
        ]);
        assert!(matches!(
            Config::load(&args),
            Err(ConfigError::Invalid {
                setting: "inbound_burst_bytes",
                ..
            })
        ));
        let ok = parse(&[
            "--dev",
            "--max-frame-bytes",
            "65536",
            "--inbound-burst-bytes",
            "65536",
        ]);
        let c = Config::load(&ok).unwrap();
        assert_eq!(c.limits().inbound_burst_bytes, 65536);
        assert_eq!(c.limits().inbound_bytes_per_sec, 1024 * 1024);
    }

    #[test]
    fn inbound_settings_come_from_the_file_too() {
        let file = file_with("inbound_bytes_per_sec = 4096\nhttp_header_timeout_ms = 250\n");
        let c = Config::load(&parse(&[
            "--dev",
            "--config",
            file.path().to_str().unwrap(),
        ]))
        .unwrap();
        assert_eq!(c.inbound_bytes_per_sec, 4096);
        let rules = c.inbound_rules();
        assert_eq!(rules.pace.map(|p| p.bytes_per_sec), Some(4096));
        assert_eq!(
            rules.header_timeout,
            Some(std::time::Duration::from_millis(250))
        );
    }

    #[test]
    fn path_may_not_shadow_http_endpoints() {
        let args = parse(&["--dev", "--path", "/api/ws"]);
        assert!(matches!(
            Config::load(&args),
            Err(ConfigError::Invalid {
                setting: "path",
                ..
            })
        ));
    }

    #[test]
    fn origins_are_comma_separated() {
        let args = parse(&[
            "--dev",
            "--allowed-origins",
            "https://a.example,https://b.example",
        ]);
        let c = Config::load(&args).unwrap();
        assert_eq!(c.allowed_origins.len(), 2);
    }
}
