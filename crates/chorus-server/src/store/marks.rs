//! Marks of changes ingested from outside the server (changes.md "Changes from the
//! application's database"): how far a database feed has been applied, and the idempotency
//! keys of `POST /api/changes` with their replies. A mark is written in the same SQLite
//! transaction as the frames its change produced ([`Store::begin_batch`]), so after a crash
//! either both are there or neither: a replayed change is recognised exactly when its frames
//! were kept.

use rusqlite::{params, OptionalExtension};

use super::{int, Store, StoreError};

impl Store {
    /// Starts a batch: every write until [`Store::end_batch`] commits or rolls back as one
    /// SQLite transaction (the stream writes nest as savepoints).
    pub fn begin_batch(&mut self) -> Result<(), StoreError> {
        self.conn.execute_batch("BEGIN IMMEDIATE")?;
        Ok(())
    }

    /// Ends the batch begun by [`Store::begin_batch`]: commits it, or rolls it back.
    pub fn end_batch(&mut self, commit: bool) -> Result<(), StoreError> {
        if self.conn.is_autocommit() {
            return Ok(());
        }
        self.conn
            .execute_batch(if commit { "COMMIT" } else { "ROLLBACK" })?;
        Ok(())
    }

    /// The mark `key` of `source`, if any.
    pub fn mark(&self, source: &str, key: &str) -> Result<Option<String>, StoreError> {
        Ok(self
            .conn
            .prepare_cached("SELECT value FROM ingest_marks WHERE source = ?1 AND key = ?2")?
            .query_row(params![source, key], |r| r.get(0))
            .optional()?)
    }

    /// Sets (or replaces) a mark, stamped with `at` (server ms).
    pub fn set_mark(
        &mut self,
        source: &str,
        key: &str,
        value: &str,
        at: u64,
    ) -> Result<(), StoreError> {
        self.conn
            .prepare_cached(
                "INSERT OR REPLACE INTO ingest_marks (source, key, value, at) VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![source, key, value, int(at)])?;
        Ok(())
    }

    /// Forgets the marks of `source` stamped before `before`; how many.
    pub fn forget_marks(&mut self, source: &str, before: u64) -> Result<usize, StoreError> {
        Ok(self
            .conn
            .prepare_cached("DELETE FROM ingest_marks WHERE source = ?1 AND at < ?2")?
            .execute(params![source, int(before)])?)
    }
}

#[cfg(test)]
mod tests {
    use crate::store::{ChannelRow, Store};

    #[test]
    fn a_rolled_back_batch_keeps_neither_frames_nor_mark() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(dir.path()).unwrap();
        let row = ChannelRow {
            tenant: "",
            name: "resource:post",
            epoch: "e",
        };
        s.begin_batch().unwrap();
        s.append_item(row, 1, "{}", 10, true).unwrap();
        s.set_mark("pg:slot", "lsn", "7", 1).unwrap();
        s.end_batch(false).unwrap();
        assert_eq!(s.mark("pg:slot", "lsn").unwrap(), None);
        s.begin_batch().unwrap();
        s.append_item(row, 1, "{}", 10, true).unwrap();
        s.set_mark("pg:slot", "lsn", "8", 1).unwrap();
        s.end_batch(true).unwrap();
        drop(s);
        let s = Store::open(dir.path()).unwrap();
        assert_eq!(s.mark("pg:slot", "lsn").unwrap().as_deref(), Some("8"));
        let loaded = s.load().unwrap();
        assert_eq!(loaded.channels[0].items, vec!["{}".to_owned()]);
    }

    #[test]
    fn old_marks_are_forgotten() {
        let mut s = Store::memory().unwrap();
        s.set_mark("http", "a", "1", 10).unwrap();
        s.set_mark("http", "b", "1", 20).unwrap();
        assert_eq!(s.forget_marks("http", 15).unwrap(), 1);
        assert_eq!(s.mark("http", "a").unwrap(), None);
        assert!(s.mark("http", "b").unwrap().is_some());
    }
}
