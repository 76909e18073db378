//! Embedded persistence: SQLite in a data directory, or in memory for tests.

use std::path::Path;

use thiserror::Error;

/// A failure of the store.
#[derive(Debug, Error)]
pub enum StoreError {
    /// SQLite said no.
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The data directory could not be created.
    #[error("data directory: {0}")]
    Io(#[from] std::io::Error),
}

/// The durable store.
pub struct Store {
    _conn: rusqlite::Connection,
}

impl Store {
    /// An in-memory store (tests, `--memory`): nothing survives the process.
    pub fn memory() -> Result<Store, StoreError> {
        Ok(Store {
            _conn: rusqlite::Connection::open_in_memory()?,
        })
    }

    /// Opens (creating) `dir/chorus.db`.
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        std::fs::create_dir_all(dir)?;
        Ok(Store {
            _conn: rusqlite::Connection::open(dir.join("chorus.db"))?,
        })
    }
}
