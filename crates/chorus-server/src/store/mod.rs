//! Embedded persistence: SQLite (rusqlite, bundled) in a data directory, or in memory.
//!
//! What must survive a restart lives here: channel streams within retention (epoch, last
//! `seq`, the retained frames exactly as delivered, HIST-4, HIST-6), shared state with its
//! version (STATE-25), persistent rooms (ROOM-19) and the records of the resource API
//! (HTTP-34), and the marks of changes ingested from outside (a database feed's position,
//! the idempotency keys of `POST /api/changes`), written in the same transaction as the
//! frames they produced ([`Store::begin_batch`]). Presence is never stored (ROOM-21).
//!
//! Every write is its own transaction and returns once SQLite committed it (WAL mode). What
//! "acknowledged only after it is durable" needs beyond that depends on [`Durability`]:
//!
//! - `Full` (the default) is group commit. SQLite commits without syncing
//!   (`synchronous=NORMAL`), and the server's hub holds every frame produced after a write
//!   until one [`sync_wal`] has made the log durable; that one sync covers every write made
//!   before it began. Writes keep flowing while a sync is in progress, so the disk bounds
//!   the latency of an acknowledgement (one or two syncs), not the number of writes per
//!   second. SQLite's own `synchronous=FULL` syncs at every commit: measured on the
//!   development machine, that capped a server at about 250 durable writes per second.
//! - `Normal`: nothing waits for the disk; a crash of the server loses nothing, a power cut
//!   may lose the last acknowledged writes.

mod channels;
mod marks;
mod resources;

use std::path::{Path, PathBuf};

use rusqlite::Connection;
use thiserror::Error;

pub use channels::{ChannelRow, Loaded, StoredChannel, StoredRoom, TRIM_EVERY};

/// File name of the database inside the data directory.
pub const DB_FILE: &str = "chorus.db";

/// A failure of the store.
#[derive(Debug, Error)]
pub enum StoreError {
    /// SQLite failed.
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The data directory could not be created.
    #[error("data directory {path}: {source}")]
    Io {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A stored JSON text no longer parses.
    #[error("corrupt stored JSON in {table}: {source}")]
    Corrupt {
        /// Where.
        table: &'static str,
        /// Why.
        source: serde_json::Error,
    },
}

/// How hard a commit waits for the disk (`chorus serve --durability`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Durability {
    /// `synchronous=FULL`: a commit survives a power loss (the default).
    #[default]
    Full,
    /// `synchronous=NORMAL`: a commit survives a crash of the process, not of the machine.
    Normal,
}

/// The durable store: one SQLite connection used only by the core's engine.
pub struct Store {
    conn: Connection,
    /// Stream items and state are not written: see [`Store::volatile`].
    volatile: bool,
    /// Group commit: the log to sync before acknowledging (see [`Store::open_with`]).
    wal: Option<PathBuf>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.conn.path())
            .finish()
    }
}

impl Store {
    /// An in-memory SQLite store that records everything a directory store does (tests):
    /// nothing survives the process.
    pub fn memory() -> Result<Store, StoreError> {
        let conn = Connection::open_in_memory()?;
        Store::init(conn, Durability::Normal)
    }

    /// The store of `chorus serve --memory`: nothing survives the process, so stream items
    /// and state, which the engine also holds in memory, are not copied into SQLite at all
    /// (a second copy of every message that nobody would ever load). Rooms and the records
    /// of the resource API, which the engine reads back from the store, are kept in an
    /// in-memory database.
    pub fn volatile() -> Result<Store, StoreError> {
        let mut store = Store::memory()?;
        store.volatile = true;
        Ok(store)
    }

    /// Opens (creating) `dir/chorus.db` with [`Durability::Full`].
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        Store::open_with(dir, Durability::Full)
    }

    /// Opens (creating) `dir/chorus.db` with the given durability.
    ///
    /// [`Durability::Full`] is group commit: SQLite commits without waiting for the disk
    /// (`synchronous=NORMAL`) and [`Store::wal_path`] names the log that
    /// [`sync_wal`] makes durable, once for every commit made before it. Whoever
    /// acknowledges a write (the server's hub) syncs first; one sync then covers every
    /// write that arrived meanwhile, instead of one sync per write.
    pub fn open_with(dir: &Path, durability: Durability) -> Result<Store, StoreError> {
        std::fs::create_dir_all(dir).map_err(|source| StoreError::Io {
            path: dir.to_owned(),
            source,
        })?;
        let db = dir.join(DB_FILE);
        let conn = Connection::open(&db)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        let mut store = Store::init(conn, Durability::Normal)?;
        if durability == Durability::Full {
            let mut wal = db.into_os_string();
            wal.push("-wal");
            store.wal = Some(PathBuf::from(wal));
        }
        Ok(store)
    }

    fn init(conn: Connection, durability: Durability) -> Result<Store, StoreError> {
        let sync = match durability {
            Durability::Full => "FULL",
            Durability::Normal => "NORMAL",
        };
        conn.pragma_update(None, "synchronous", sync)?;
        conn.execute_batch(SCHEMA)?;
        Ok(Store {
            conn,
            volatile: false,
            wal: None,
        })
    }

    /// The write-ahead log to sync before acknowledging, when the store is opened with
    /// [`Durability::Full`] (group commit).
    pub fn wal_path(&self) -> Option<&Path> {
        self.wal.as_deref()
    }

    /// A count that grows with every row written; a write is durable once a [`sync_wal`]
    /// begun after it has returned.
    pub fn written(&self) -> u64 {
        self.conn.total_changes()
    }
}

/// Makes every commit already in the write-ahead log durable (fsync). SQLite in WAL mode
/// with `synchronous=FULL` does exactly this after each commit; done once for many commits
/// it is group commit. A checkpoint syncs the log itself before copying it into the
/// database, so nothing committed is ever only in a log that was not synced.
pub fn sync_wal(path: &Path) -> std::io::Result<()> {
    match std::fs::File::open(path) {
        Ok(file) => file.sync_data(),
        // No log yet: nothing was ever written.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS channels (
    tenant TEXT NOT NULL,
    name TEXT NOT NULL,
    epoch TEXT NOT NULL,
    seq INTEGER NOT NULL DEFAULT 0,
    state_version INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant, name)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS stream_items (
    tenant TEXT NOT NULL,
    name TEXT NOT NULL,
    seq INTEGER NOT NULL,
    frame TEXT NOT NULL,
    PRIMARY KEY (tenant, name, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS state_entries (
    tenant TEXT NOT NULL,
    name TEXT NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (tenant, name, key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS rooms (
    tenant TEXT NOT NULL,
    name TEXT NOT NULL,
    password_hash TEXT,
    max_users INTEGER NOT NULL,
    metadata TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (tenant, name)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS ingest_marks (
    source TEXT NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    at INTEGER NOT NULL,
    PRIMARY KEY (source, key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS resources (
    tenant TEXT NOT NULL,
    resource TEXT NOT NULL,
    id TEXT NOT NULL,
    data TEXT NOT NULL,
    UNIQUE (tenant, resource, id)
);
";

/// SQLite integers are signed; our counters never reach 2^63.
fn int(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn uint(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

fn parse_json(text: &str, table: &'static str) -> Result<serde_json::Value, StoreError> {
    serde_json::from_str(text).map_err(|source| StoreError::Corrupt { table, source })
}
