//! Channel streams, shared state and persistent rooms.

use std::collections::HashMap;

use rusqlite::{params, OptionalExtension};

use super::{int, parse_json, uint, Store, StoreError};

/// How often an append also deletes the items that fell out of retention.
pub const TRIM_EVERY: u64 = 32;

/// The identity and epoch of a channel, as the store's writes take them.
#[derive(Debug, Clone, Copy)]
pub struct ChannelRow<'a> {
    /// Tenant.
    pub tenant: &'a str,
    /// Channel name.
    pub name: &'a str,
    /// Current epoch.
    pub epoch: &'a str,
}

/// A channel as persisted: its numbering, retained frames and state.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredChannel {
    /// Tenant.
    pub tenant: String,
    /// Channel name.
    pub name: String,
    /// Current epoch.
    pub epoch: String,
    /// Last `seq` published.
    pub seq: u64,
    /// State version.
    pub state_version: u64,
    /// Retained frames (JSON text exactly as delivered), ascending `seq`; possibly more
    /// than the retention (trimming is periodic).
    pub items: Vec<String>,
    /// State entries.
    pub state: Vec<(String, serde_json::Value)>,
}

/// A persistent room's settings.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredRoom {
    /// Tenant.
    pub tenant: String,
    /// Channel name (`presence-…`).
    pub name: String,
    /// Salted hash of the password (never the password).
    pub password_hash: Option<String>,
    /// Capacity.
    pub max_users: u32,
    /// Metadata object.
    pub metadata: serde_json::Value,
    /// Creation time, server ms.
    pub created_at: u64,
}

/// Everything loaded at start.
#[derive(Debug, Default)]
pub struct Loaded {
    /// Channels with their streams and state.
    pub channels: Vec<StoredChannel>,
    /// Persistent rooms.
    pub rooms: Vec<StoredRoom>,
}

impl Store {
    /// Appends one frame to a channel's stream, in one transaction. `register` writes the
    /// channel's row (its epoch) too; the engine asks for it on the first write of a
    /// channel only, so that a steady stream costs one insert per item. Items that fell
    /// out of retention (`seq <= seq - retain`) are deleted every [`TRIM_EVERY`] items; the
    /// load keeps only the newest `retain`.
    pub fn append_item(
        &mut self,
        channel: ChannelRow<'_>,
        seq: u64,
        frame: &str,
        retain: u64,
        register: bool,
    ) -> Result<(), StoreError> {
        if self.volatile {
            return Ok(());
        }
        let ChannelRow {
            tenant,
            name,
            epoch,
        } = channel;
        let tx = self.conn.savepoint()?;
        if register {
            tx.prepare_cached(
                "INSERT INTO channels (tenant, name, epoch, seq) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (tenant, name) DO UPDATE SET epoch = excluded.epoch, seq = excluded.seq",
            )?
            .execute(params![tenant, name, epoch, int(seq)])?;
        }
        tx.prepare_cached(
            "INSERT OR REPLACE INTO stream_items (tenant, name, seq, frame) VALUES (?1, ?2, ?3, ?4)",
        )?
        .execute(params![tenant, name, int(seq), frame])?;
        if seq > retain && seq.is_multiple_of(TRIM_EVERY) {
            tx.prepare_cached(
                "DELETE FROM stream_items WHERE tenant = ?1 AND name = ?2 AND seq <= ?3",
            )?
            .execute(params![tenant, name, int(seq - retain)])?;
            tx.prepare_cached("UPDATE channels SET seq = ?3 WHERE tenant = ?1 AND name = ?2")?
                .execute(params![tenant, name, int(seq)])?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Records a state write: the new version and the changed keys (`None` removes a key).
    pub fn write_state(
        &mut self,
        tenant: &str,
        name: &str,
        epoch: &str,
        version: u64,
        changes: &[(&str, Option<&serde_json::Value>)],
    ) -> Result<(), StoreError> {
        if self.volatile {
            return Ok(());
        }
        let tx = self.conn.savepoint()?;
        tx.prepare_cached(
            "INSERT INTO channels (tenant, name, epoch, state_version) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (tenant, name) DO UPDATE SET epoch = excluded.epoch,
             state_version = excluded.state_version",
        )?
        .execute(params![tenant, name, epoch, int(version)])?;
        for (key, value) in changes {
            match value {
                Some(v) => {
                    tx.prepare_cached(
                        "INSERT OR REPLACE INTO state_entries (tenant, name, key, value)
                         VALUES (?1, ?2, ?3, ?4)",
                    )?
                    .execute(params![tenant, name, key, v.to_string()])?;
                }
                None => {
                    tx.prepare_cached(
                        "DELETE FROM state_entries WHERE tenant = ?1 AND name = ?2 AND key = ?3",
                    )?
                    .execute(params![tenant, name, key])?;
                }
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Stores a persistent room (its channel row too, so that the epoch is kept, ROOM-19).
    pub fn save_room(&mut self, room: &StoredRoom, epoch: &str) -> Result<(), StoreError> {
        let tx = self.conn.savepoint()?;
        tx.execute(
            "INSERT INTO channels (tenant, name, epoch) VALUES (?1, ?2, ?3)
             ON CONFLICT (tenant, name) DO UPDATE SET epoch = excluded.epoch",
            params![room.tenant, room.name, epoch],
        )?;
        tx.execute(
            "INSERT OR REPLACE INTO rooms (tenant, name, password_hash, max_users, metadata, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                room.tenant,
                room.name,
                room.password_hash,
                room.max_users,
                room.metadata.to_string(),
                int(room.created_at)
            ],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Forgets a channel entirely: stream, state, room (ROOM-17).
    pub fn discard_channel(&mut self, tenant: &str, name: &str) -> Result<(), StoreError> {
        let tx = self.conn.savepoint()?;
        for table in ["channels", "stream_items", "state_entries", "rooms"] {
            tx.execute(
                &format!("DELETE FROM {table} WHERE tenant = ?1 AND name = ?2"),
                params![tenant, name],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Whether a channel row exists (for tests and diagnostics).
    pub fn has_channel(&self, tenant: &str, name: &str) -> Result<bool, StoreError> {
        Ok(self
            .conn
            .query_row(
                "SELECT 1 FROM channels WHERE tenant = ?1 AND name = ?2",
                params![tenant, name],
                |_| Ok(()),
            )
            .optional()?
            .is_some())
    }

    /// Loads every channel and persistent room.
    pub fn load(&self) -> Result<Loaded, StoreError> {
        let mut channels: Vec<StoredChannel> = Vec::new();
        let mut index: HashMap<(String, String), usize> = HashMap::new();
        let mut stmt = self
            .conn
            .prepare("SELECT tenant, name, epoch, seq, state_version FROM channels")?;
        let rows = stmt.query_map([], |r| {
            Ok(StoredChannel {
                tenant: r.get(0)?,
                name: r.get(1)?,
                epoch: r.get(2)?,
                seq: uint(r.get(3)?),
                state_version: uint(r.get(4)?),
                items: Vec::new(),
                state: Vec::new(),
            })
        })?;
        for row in rows {
            let ch = row?;
            index.insert((ch.tenant.clone(), ch.name.clone()), channels.len());
            channels.push(ch);
        }
        let mut stmt = self.conn.prepare(
            "SELECT tenant, name, frame, seq FROM stream_items ORDER BY tenant, name, seq",
        )?;
        let mut rows = stmt.query([])?;
        while let Some(r) = rows.next()? {
            let key: (String, String) = (r.get(0)?, r.get(1)?);
            if let Some(&i) = index.get(&key) {
                let seq = uint(r.get(3)?);
                let ch = &mut channels[i];
                ch.seq = ch.seq.max(seq);
                ch.items.push(r.get(2)?);
            }
        }
        let mut stmt = self.conn.prepare(
            "SELECT tenant, name, key, value FROM state_entries ORDER BY tenant, name, key",
        )?;
        let mut rows = stmt.query([])?;
        while let Some(r) = rows.next()? {
            let key: (String, String) = (r.get(0)?, r.get(1)?);
            let value: String = r.get(3)?;
            if let Some(&i) = index.get(&key) {
                channels[i]
                    .state
                    .push((r.get(2)?, parse_json(&value, "state_entries")?));
            }
        }
        Ok(Loaded {
            channels,
            rooms: self.load_rooms()?,
        })
    }

    fn load_rooms(&self) -> Result<Vec<StoredRoom>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT tenant, name, password_hash, max_users, metadata, created_at FROM rooms",
        )?;
        let mut rows = stmt.query([])?;
        let mut rooms = Vec::new();
        while let Some(r) = rows.next()? {
            let metadata: String = r.get(4)?;
            rooms.push(StoredRoom {
                tenant: r.get(0)?,
                name: r.get(1)?,
                password_hash: r.get(2)?,
                max_users: r.get(3)?,
                metadata: parse_json(&metadata, "rooms")?,
                created_at: uint(r.get(5)?),
            });
        }
        Ok(rooms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn append_keeps_only_retained_items() {
        let mut s = Store::memory().unwrap();
        let row = ChannelRow {
            tenant: "t",
            name: "c",
            epoch: "e-1",
        };
        let n = TRIM_EVERY + 1;
        for seq in 1..=n {
            s.append_item(row, seq, &format!("{{\"seq\":{seq}}}"), 2, seq == 1)
                .unwrap();
        }
        let loaded = s.load().unwrap();
        assert_eq!(loaded.channels.len(), 1);
        let ch = &loaded.channels[0];
        assert_eq!(
            (ch.epoch.as_str(), ch.seq),
            ("e-1", n),
            "seq from the newest item"
        );
        let expected: Vec<_> = (n - 2..=n).map(|q| format!("{{\"seq\":{q}}}")).collect();
        assert_eq!(ch.items, expected, "trimmed at a multiple of TRIM_EVERY");
    }

    fn room() -> StoredRoom {
        StoredRoom {
            tenant: "t".into(),
            name: "presence-r".into(),
            password_hash: None,
            max_users: 3,
            metadata: serde_json::json!({}),
            created_at: 9,
        }
    }

    #[test]
    fn a_volatile_store_keeps_no_stream_or_state_but_keeps_rooms() {
        let mut s = Store::volatile().unwrap();
        let row = ChannelRow {
            tenant: "t",
            name: "c",
            epoch: "e-1",
        };
        s.append_item(row, 1, "{}", 10, true).unwrap();
        let v = serde_json::json!(1);
        s.write_state("t", "s", "e-2", 1, &[("k", Some(&v))])
            .unwrap();
        assert!(s.load().unwrap().channels.is_empty());
        s.save_room(&room(), "e-3").unwrap();
        assert_eq!(s.load().unwrap().rooms.len(), 1);
    }

    #[test]
    fn state_writes_and_deletes_keys() {
        let mut s = Store::memory().unwrap();
        let v = serde_json::json!({"a": 1});
        s.write_state("t", "c", "e-1", 1, &[("k", Some(&v)), ("x", Some(&v))])
            .unwrap();
        s.write_state("t", "c", "e-1", 2, &[("x", None)]).unwrap();
        let ch = &s.load().unwrap().channels[0];
        assert_eq!(ch.state_version, 2);
        assert_eq!(ch.state, vec![("k".to_owned(), v)]);
    }

    #[test]
    fn discard_forgets_everything_of_the_channel() {
        let mut s = Store::memory().unwrap();
        let room = room();
        s.save_room(&room, "e-1").unwrap();
        let row = ChannelRow {
            tenant: "t",
            name: "presence-r",
            epoch: "e-1",
        };
        s.append_item(row, 1, "{}", 10, false).unwrap();
        assert_eq!(s.load().unwrap().rooms, vec![room]);
        s.discard_channel("t", "presence-r").unwrap();
        let loaded = s.load().unwrap();
        assert!(loaded.channels.is_empty() && loaded.rooms.is_empty());
    }
}
