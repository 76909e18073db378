//! The PostgreSQL change feed (spec: changes.md "Database feeds"): every committed insert,
//! update and delete of the published tables becomes a `data_change` pair, read from
//! PostgreSQL's logical replication stream (`pgoutput` through a replication slot).
//!
//! A shell component like the HTTP API: it owns the database connections and feeds the
//! core one whole committed transaction at a time ([`Core::feed_transaction`]), which
//! numbers, stores and fans out its changes together with the transaction's log position
//! in one store transaction. The position is acknowledged to PostgreSQL only once a sync
//! of the store covers it, so the slot keeps (and after any restart or dropped connection
//! sends again) exactly what Chorus could lose; what Chorus already kept is recognised by
//! its position and skipped (CHG-19). Transport: `pgwire-replication`; set-up SQL:
//! `tokio-postgres`; the `pgoutput` decoding is [`pgoutput`].
//!
//! [`Core::feed_transaction`]: crate::core::Core::feed_transaction

pub mod pgoutput;
mod rows;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use pgwire_replication::{Lsn, ReplicationClient, ReplicationConfig, ReplicationEvent};
use thiserror::Error;
use tokio::sync::watch;
use tokio_postgres::config::Host;
use tokio_postgres::NoTls;

use crate::config::Config;
use crate::core::ExternalChange;
use crate::net::Shared;

use pgoutput::{Message, Relations};

/// Why the feed could not run.
#[derive(Debug, Error)]
pub enum FeedError {
    /// PostgreSQL is not reachable or failed (retried).
    #[error("postgres: {0}")]
    Postgres(#[from] tokio_postgres::Error),
    /// The replication stream failed (retried).
    #[error("replication: {0}")]
    Replication(#[from] pgwire_replication::PgWireError),
    /// The database is not set up as the feed needs, or the settings are wrong (not
    /// retried at start: the server refuses to start).
    #[error("{0}")]
    Setup(String),
    /// A replication message could not be decoded (the session restarts).
    #[error(transparent)]
    Decode(#[from] pgoutput::DecodeError),
    /// The core refused a transaction (the session restarts).
    #[error("core: {0}")]
    Core(#[from] crate::core::CoreError),
}

/// The feed's settings, from the `pg_*` settings of [`Config`].
#[derive(Debug, Clone, PartialEq)]
pub struct FeedSettings {
    /// Connection URL.
    pub url: String,
    /// Published tables; empty: every table of `schema`.
    pub tables: Vec<String>,
    /// Schema of the tables.
    pub schema: String,
    /// Record id column.
    pub key_column: String,
    /// Fixed tenant.
    pub tenant: String,
    /// Per-row tenant column.
    pub tenant_column: Option<String>,
    /// Replication slot.
    pub slot: String,
    /// Publication.
    pub publication: String,
}

impl FeedSettings {
    /// The feed of `config`, when `pg_url` is set.
    pub fn from_config(config: &Config) -> Option<FeedSettings> {
        Some(FeedSettings {
            url: config.pg_url.clone()?,
            tables: config.pg_tables.clone(),
            schema: config.pg_schema.clone(),
            key_column: config.pg_key_column.clone(),
            tenant: config.pg_tenant.clone(),
            tenant_column: config.pg_tenant_column.clone(),
            slot: config.pg_slot.clone(),
            publication: config.pg_publication.clone(),
        })
    }

    /// The feed's name in the store's marks.
    fn source(&self) -> String {
        format!("pg:{}", self.slot)
    }
}

/// Checks and prepares the database once at start: a [`FeedError::Setup`] means the server
/// must not start; an unreachable database only delays the feed (it retries).
pub async fn check(settings: &FeedSettings) -> Result<(), FeedError> {
    match prepare(settings).await {
        Err(FeedError::Postgres(e)) => {
            tracing::warn!(error = %e, "postgres feed: database unreachable; retrying in the background");
            Ok(())
        }
        other => other,
    }
}

/// Runs the feed until `stop`: one replication session after another, with a growing
/// pause after a failure (a restart of PostgreSQL, a dropped connection).
pub async fn run(shared: Arc<Shared>, settings: FeedSettings, mut stop: watch::Receiver<bool>) {
    let mut pause = Duration::from_millis(100);
    loop {
        let started = std::time::Instant::now();
        // The stop signal also ends a session still preparing or connecting (PostgreSQL
        // slow or restarting): shutdown waits for the feed, so it must never wait on them.
        let mut stopped = stop.clone();
        let outcome = tokio::select! {
            outcome = session(&shared, &settings, &mut stop) => outcome,
            _ = stopped.wait_for(|s| *s) => return,
        };
        match outcome {
            Ok(()) => return,
            Err(e) => tracing::warn!(error = %e, "postgres feed: session ended; reconnecting"),
        }
        if started.elapsed() > Duration::from_secs(10) {
            pause = Duration::from_millis(100);
        }
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        pause = (pause * 2).min(Duration::from_secs(5));
    }
}

/// Publication, slot and replica identity, created or checked (idempotent).
async fn prepare(s: &FeedSettings) -> Result<(), FeedError> {
    let (client, connection) = tokio_postgres::connect(&s.url, NoTls).await?;
    let conn = tokio::spawn(connection);
    let result = prepare_with(&client, s).await;
    drop(client);
    conn.abort();
    result
}

async fn prepare_with(client: &tokio_postgres::Client, s: &FeedSettings) -> Result<(), FeedError> {
    let wal_level: String = client.query_one("SHOW wal_level", &[]).await?.get(0);
    if wal_level != "logical" {
        return Err(FeedError::Setup(format!(
            "postgres feed: wal_level is {wal_level}; set wal_level = logical and restart PostgreSQL"
        )));
    }
    let rows = client
        .query(
            "SELECT c.relname::text, c.relreplident::text FROM pg_class c
             JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname = $1 AND c.relkind IN ('r', 'p')",
            &[&s.schema],
        )
        .await?;
    let found: Vec<(String, String)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    for table in &s.tables {
        if !found.iter().any(|(name, _)| name == table) {
            return Err(FeedError::Setup(format!(
                "postgres feed: table {}.{table} does not exist",
                s.schema
            )));
        }
    }
    let published = |name: &str| s.tables.is_empty() || s.tables.iter().any(|t| t == name);
    for (name, identity) in found.iter().filter(|(name, _)| published(name)) {
        if identity != "f" {
            return Err(FeedError::Setup(format!(
                "postgres feed: table {0}.{1} needs whole old rows for deletes and TOASTed \
                 columns: ALTER TABLE {2}.{3} REPLICA IDENTITY FULL",
                s.schema,
                name,
                quote(&s.schema),
                quote(name)
            )));
        }
    }
    let target = if s.tables.is_empty() {
        format!("TABLES IN SCHEMA {}", quote(&s.schema))
    } else {
        let list: Vec<_> = s
            .tables
            .iter()
            .map(|t| format!("{}.{}", quote(&s.schema), quote(t)))
            .collect();
        format!("TABLE {}", list.join(", "))
    };
    let exists = client
        .query_opt(
            "SELECT 1 FROM pg_publication WHERE pubname = $1",
            &[&s.publication],
        )
        .await?
        .is_some();
    let sql = if exists {
        format!("ALTER PUBLICATION {} SET {target}", quote(&s.publication))
    } else {
        format!("CREATE PUBLICATION {} FOR {target}", quote(&s.publication))
    };
    client.batch_execute(&sql).await?;
    let slot = client
        .query_opt(
            "SELECT plugin::text FROM pg_replication_slots WHERE slot_name = $1",
            &[&s.slot],
        )
        .await?;
    match slot {
        Some(row) if row.get::<_, String>(0) != "pgoutput" => Err(FeedError::Setup(format!(
            "postgres feed: slot {} exists with another plugin",
            s.slot
        ))),
        Some(_) => Ok(()),
        None => {
            client
                .execute(
                    "SELECT pg_create_logical_replication_slot($1, 'pgoutput')",
                    &[&s.slot],
                )
                .await?;
            tracing::info!(slot = %s.slot, "postgres feed: replication slot created");
            Ok(())
        }
    }
}

/// A quoted SQL identifier.
fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The replication connection's settings, from the URL.
fn replication_config(s: &FeedSettings, done: Option<u64>) -> Result<ReplicationConfig, FeedError> {
    let pg: tokio_postgres::Config = s.url.parse()?;
    let host = match pg.get_hosts().first() {
        Some(Host::Tcp(host)) => host.clone(),
        #[cfg(unix)]
        Some(Host::Unix(path)) => path.display().to_string(),
        None => "localhost".to_owned(),
    };
    let user = pg.get_user().unwrap_or("postgres").to_owned();
    let password = pg
        .get_password()
        .map(|p| String::from_utf8_lossy(p).into_owned())
        .unwrap_or_default();
    let database = pg.get_dbname().unwrap_or(&user).to_owned();
    let port = pg.get_ports().first().copied().unwrap_or(5432);
    let mut cfg = ReplicationConfig::new(
        host,
        user,
        password,
        database,
        &s.slot,
        s.publication.as_str(),
    )
    .with_port(port)
    .with_status_interval(Duration::from_millis(500))
    .with_application_name("chorus-feed")
    .with_options("-c client_encoding=UTF8");
    if let Some(done) = done {
        // Resume after what the store holds; acknowledge nothing beyond it.
        cfg = cfg
            .with_start_lsn(Lsn::from_u64(done))
            .with_ack_lsn(Lsn::from_u64(done));
    }
    Ok(cfg)
}

type Durable<'a> = Pin<Box<dyn Future<Output = ()> + Send + 'a>>;

/// One replication session: prepares, streams, and applies each committed transaction.
async fn session(
    shared: &Arc<Shared>,
    s: &FeedSettings,
    stop: &mut watch::Receiver<bool>,
) -> Result<(), FeedError> {
    prepare(s).await?;
    let source = s.source();
    let done = shared.read_core(|core| core.feed_position(&source))?;
    let mut repl = ReplicationClient::connect(replication_config(s, done)?).await?;
    tracing::info!(slot = %s.slot, resume_after = ?done, "postgres feed: streaming");
    let mut relations = Relations::default();
    let mut txn: Vec<ExternalChange> = Vec::new();
    // Acknowledgement: the newest applied commit, and the sync that will cover it.
    let mut applied: Option<Lsn> = None;
    let mut acking: Option<(Lsn, Durable<'_>)> = None;
    // Between a transaction's Begin and its Commit.
    let mut open = false;
    loop {
        let event = tokio::select! {
            event = repl.recv() => event?,
            () = async { if let Some((_, d)) = acking.as_mut() { d.await } }, if acking.is_some() => {
                if let Some((lsn, _)) = acking.take() {
                    repl.update_applied_lsn(lsn);
                }
                if let Some(lsn) = applied.take() {
                    acking = Some((lsn, Box::pin(shared.durable())));
                }
                continue;
            }
            _ = stop.wait_for(|s| *s) => {
                repl.stop();
                return Ok(());
            }
        };
        let Some(event) = event else {
            return Err(FeedError::Setup("replication stream ended".into()));
        };
        match event {
            ReplicationEvent::Begin { .. } => {
                txn.clear();
                open = true;
            }
            // An idle feed (no change of a published table for a while, other tables
            // busy): the walsender read the WAL up to `wal_end` and had nothing of ours
            // before it (it sends a transaction at its commit), so once nothing applied
            // awaits its sync, acknowledging `wal_end` keeps the slot from holding WAL
            // that only unpublished tables wrote.
            ReplicationEvent::KeepAlive { wal_end, .. }
                if !open && acking.is_none() && applied.is_none() =>
            {
                repl.update_applied_lsn(wal_end);
            }
            ReplicationEvent::XLogData { data, .. } => match pgoutput::decode(&data)? {
                Message::Relation(oid, relation) => {
                    rows::check_identity(&relation);
                    relations.describe(oid, relation);
                }
                Message::Truncate(rels) => tracing::warn!(
                    relations = ?rels,
                    "postgres feed: TRUNCATE has no per-row changes; nothing announced"
                ),
                Message::Other => {}
                change => {
                    if let Some(change) = rows::to_change(&relations, change, s)? {
                        txn.push(change);
                    }
                }
            },
            ReplicationEvent::Commit { end_lsn, .. } => {
                open = false;
                let changes = std::mem::take(&mut txn);
                let position = end_lsn.as_u64();
                if !changes.is_empty() {
                    shared.with_core(|core, now| {
                        core.feed_transaction(&source, position, changes, now)
                            .map(|effects| ((), effects))
                    })?;
                }
                if acking.is_none() {
                    acking = Some((end_lsn, Box::pin(shared.durable())));
                } else {
                    applied = Some(end_lsn);
                }
            }
            _ => {}
        }
    }
}
