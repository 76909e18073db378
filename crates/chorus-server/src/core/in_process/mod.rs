//! The default engine: everything in this process, persisted through the [`Store`].

mod leases;
mod state_doc;

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::Arc;

use chorus_protocol::http::ChannelStats;
use chorus_protocol::{
    ChannelKind, ChannelName, Epoch, Member, Millis, PresenceStatus, StateSnapshot, StateVersion,
    StreamItem, StreamPosition,
};

use super::engine::{
    ChannelKey, Engine, GraceExpired, HistoryQuery, HistorySlice, LeaseTaken, RecordPage, Released,
    Room, StateWrite,
};
use super::faults::{Fault, Faults};
use super::{frame_of, ConnId, CoreError, Frame};
use crate::store::{ChannelRow, Store, StoredRoom};
use leases::{GraceTimer, Presence};
use state_doc::StateDoc;

/// Channels, presence, rooms and state in memory; streams, state, persistent rooms and
/// records also in the [`Store`].
pub struct InProcessEngine {
    store: Store,
    retention: usize,
    faults: Faults,
    channels: HashMap<ChannelKey, Channel>,
    grace: BTreeSet<GraceTimer>,
}

struct Channel {
    epoch: Epoch,
    seq: u64,
    retained: VecDeque<Retained>,
    subscribers: BTreeSet<ConnId>,
    state: StateDoc,
    room: Option<Room>,
    presence: Presence,
    /// The store holds this channel's row (its epoch).
    stored: bool,
}

struct Retained {
    item: StreamItem,
    frame: Frame,
}

impl Channel {
    fn new() -> Channel {
        Channel {
            epoch: new_epoch(),
            seq: 0,
            retained: VecDeque::new(),
            subscribers: BTreeSet::new(),
            state: StateDoc::default(),
            room: None,
            presence: Presence::default(),
            stored: false,
        }
    }

    fn position(&self) -> StreamPosition {
        StreamPosition {
            epoch: self.epoch.clone(),
            seq: self.seq,
        }
    }
}

/// A random epoch: never reused by a channel (HIST-3).
fn new_epoch() -> Epoch {
    Epoch(format!("e-{:016x}", rand::random::<u64>()))
}

impl InProcessEngine {
    /// Loads what `store` holds. `retention` is how many items each channel keeps.
    pub fn load(store: Store, retention: usize, faults: Faults) -> Result<Self, CoreError> {
        let mut engine = InProcessEngine {
            store,
            retention: retention.max(1),
            faults,
            channels: HashMap::new(),
            grace: BTreeSet::new(),
        };
        let loaded = engine.store.load()?;
        let mut rooms: HashMap<(String, String), StoredRoom> = loaded
            .rooms
            .into_iter()
            .map(|r| ((r.tenant.clone(), r.name.clone()), r))
            .collect();
        for stored in loaded.channels {
            let room = rooms.remove(&(stored.tenant.clone(), stored.name.clone()));
            let name = ChannelName(stored.name.clone());
            if name.kind() == ChannelKind::Presence && room.is_none() {
                // A non-persistent room does not outlive the process (ROOM-17, ROOM-21).
                engine.store.discard_channel(&stored.tenant, &stored.name)?;
                continue;
            }
            let key = ChannelKey {
                tenant: Arc::from(stored.tenant.as_str()),
                name,
            };
            let mut ch = Channel::new();
            ch.stored = true;
            ch.epoch = Epoch(stored.epoch);
            ch.seq = stored.seq;
            for text in stored.items {
                let item: StreamItem = serde_json::from_str(&text).map_err(|source| {
                    crate::store::StoreError::Corrupt {
                        table: "stream_items",
                        source,
                    }
                })?;
                ch.retained.push_back(Retained {
                    item,
                    frame: Arc::from(text),
                });
                if ch.retained.len() > engine.retention {
                    ch.retained.pop_front();
                }
            }
            ch.state.version = stored.state_version;
            for (k, v) in stored.state {
                ch.state.load(k, v);
            }
            ch.room = room.map(|r| Room {
                password_hash: r.password_hash,
                max_users: r.max_users,
                metadata: r.metadata,
                persist: true,
                created_at: r.created_at,
            });
            engine.channels.insert(key, ch);
        }
        Ok(engine)
    }

    /// The store (for tests that inspect what was persisted).
    pub fn store(&self) -> &Store {
        &self.store
    }

    fn channel(&mut self, key: &ChannelKey) -> &mut Channel {
        self.channels
            .entry(key.clone())
            .or_insert_with(Channel::new)
    }
}

impl Engine for InProcessEngine {
    fn position(&mut self, key: &ChannelKey) -> StreamPosition {
        self.channel(key).position()
    }

    fn append(
        &mut self,
        key: &ChannelKey,
        build: &mut dyn FnMut(u64) -> StreamItem,
    ) -> Result<Frame, CoreError> {
        let retention = self.retention;
        let gap = self.faults.on(Fault::SeqGap);
        let ch = self
            .channels
            .entry(key.clone())
            .or_insert_with(Channel::new);
        let mut seq = ch.seq + 1;
        if gap && seq % 3 == 0 {
            seq += 1;
        }
        let item = build(seq);
        let frame = frame_of(&item);
        // Durable before anyone is told (HIST-4): the store first, then memory.
        let row = ChannelRow {
            tenant: &key.tenant,
            name: key.name.as_str(),
            epoch: ch.epoch.as_str(),
        };
        self.store
            .append_item(row, seq, &frame, retention as u64, !ch.stored)?;
        ch.stored = true;
        ch.seq = seq;
        ch.retained.push_back(Retained {
            item,
            frame: frame.clone(),
        });
        while ch.retained.len() > retention {
            ch.retained.pop_front();
        }
        Ok(frame)
    }

    fn replay_after(&self, key: &ChannelKey, seq: u64) -> Option<Vec<Frame>> {
        let ch = self.channels.get(key)?;
        if seq >= ch.seq {
            return Some(Vec::new());
        }
        let first = ch.retained.front()?.item.seq();
        if first > seq + 1 {
            return None;
        }
        Some(
            ch.retained
                .iter()
                .filter(|r| r.item.seq() > seq)
                .map(|r| r.frame.clone())
                .collect(),
        )
    }

    fn history(&self, key: &ChannelKey, q: HistoryQuery<'_>) -> HistorySlice {
        let Some(ch) = self.channels.get(key) else {
            return HistorySlice {
                items: Vec::new(),
                has_more: false,
            };
        };
        let matches = |r: &&Retained| {
            q.before_seq.is_none_or(|b| r.item.seq() < b)
                && match (q.event, &r.item) {
                    (None, _) => true,
                    (Some(e), StreamItem::Message(m)) => m.event == e,
                    (Some(_), StreamItem::DataChange(_)) => false,
                }
        };
        let mut newest: Vec<StreamItem> = Vec::new();
        let mut has_more = false;
        for r in ch.retained.iter().rev().filter(matches) {
            if newest.len() == q.limit {
                has_more = true;
                break;
            }
            newest.push(r.item.clone());
        }
        newest.reverse();
        HistorySlice {
            items: newest,
            has_more,
        }
    }

    fn discard(&mut self, key: &ChannelKey) -> Result<(), CoreError> {
        if self.channels.remove(key).is_some() {
            self.store.discard_channel(&key.tenant, key.name.as_str())?;
        }
        Ok(())
    }

    fn add_subscriber(&mut self, key: &ChannelKey, conn: ConnId) {
        self.channel(key).subscribers.insert(conn);
    }

    fn remove_subscriber(&mut self, key: &ChannelKey, conn: ConnId) {
        if let Some(ch) = self.channels.get_mut(key) {
            ch.subscribers.remove(&conn);
        }
    }

    fn subscribers(&self, key: &ChannelKey) -> impl Iterator<Item = ConnId> + '_ {
        self.channels
            .get(key)
            .into_iter()
            .flat_map(|ch| ch.subscribers.iter().copied())
    }

    fn room(&self, key: &ChannelKey) -> Option<&Room> {
        self.channels.get(key)?.room.as_ref()
    }

    fn create_room(&mut self, key: &ChannelKey, room: Room) -> Result<(), CoreError> {
        let ch = self
            .channels
            .entry(key.clone())
            .or_insert_with(Channel::new);
        if room.persist {
            let stored = StoredRoom {
                tenant: key.tenant.to_string(),
                name: key.name.0.clone(),
                password_hash: room.password_hash.clone(),
                max_users: room.max_users,
                metadata: room.metadata.clone(),
                created_at: room.created_at,
            };
            self.store.save_room(&stored, ch.epoch.as_str())?;
            ch.stored = true;
        }
        ch.room = Some(room);
        Ok(())
    }

    fn member(&self, key: &ChannelKey, user: &str) -> Option<&Member> {
        Some(&self.channels.get(key)?.presence.members.get(user)?.member)
    }

    fn member_count(&self, key: &ChannelKey) -> usize {
        self.channels
            .get(key)
            .map_or(0, |ch| ch.presence.members.len())
    }

    fn members(&self, key: &ChannelKey) -> Vec<Member> {
        self.channels
            .get(key)
            .map(|ch| ch.presence.ordered().cloned().collect())
            .unwrap_or_default()
    }

    fn take_lease(
        &mut self,
        key: &ChannelKey,
        conn: ConnId,
        user: &str,
        profile: &serde_json::Value,
        now: Millis,
    ) -> LeaseTaken {
        self.channel(key).presence.take(conn, user, profile, now)
    }

    fn release_lease(
        &mut self,
        key: &ChannelKey,
        conn: ConnId,
        user: &str,
        grace_until: Option<Millis>,
    ) -> Released {
        let Some(ch) = self.channels.get_mut(key) else {
            return Released::NoLease;
        };
        let released = ch.presence.release(conn, user, grace_until);
        if let (Some(deadline), Released::Kept) = (grace_until, &released) {
            self.grace.insert(GraceTimer {
                deadline,
                conn,
                key: key.clone(),
                user: user.to_owned(),
            });
        }
        released
    }

    fn update_member(
        &mut self,
        key: &ChannelKey,
        user: &str,
        status: Option<PresenceStatus>,
        data: Option<serde_json::Value>,
        now: Millis,
    ) -> Option<Member> {
        let ch = self.channels.get_mut(key)?;
        ch.presence.update(user, status, data, now)
    }

    fn touch_member(&mut self, key: &ChannelKey, user: &str, now: Millis) {
        if let Some(ch) = self.channels.get_mut(key) {
            ch.presence.touch(user, now);
        }
    }

    fn expire_grace(&mut self, now: Millis) -> Vec<GraceExpired> {
        let mut gone = Vec::new();
        while let Some(t) = self.grace.first().filter(|t| t.deadline <= now).cloned() {
            self.grace.remove(&t);
            let Some(ch) = self.channels.get_mut(&t.key) else {
                continue;
            };
            if let Released::Left { user_id, last_seen } =
                ch.presence.expire(t.conn, &t.user, t.deadline)
            {
                gone.push(GraceExpired {
                    key: t.key,
                    user_id,
                    last_seen,
                });
            }
        }
        gone
    }

    fn next_grace_deadline(&self) -> Option<Millis> {
        self.grace.first().map(|t| t.deadline)
    }

    fn state(&mut self, key: &ChannelKey) -> StateSnapshot {
        let ch = self.channel(key);
        StateSnapshot {
            data: ch.state.data.clone(),
            version: ch.state.version,
            epoch: ch.epoch.clone(),
        }
    }

    fn write_state(
        &mut self,
        key: &ChannelKey,
        write: &StateWrite,
        expected: Option<u64>,
        max_bytes: usize,
    ) -> Result<StateVersion, CoreError> {
        let reuse = self.faults.on(Fault::ReuseVersion);
        let ch = self
            .channels
            .entry(key.clone())
            .or_insert_with(Channel::new);
        let current = StateVersion {
            version: ch.state.version,
            epoch: ch.epoch.clone(),
        };
        if expected.is_some_and(|v| v != current.version) {
            if self.faults.on(Fault::VersionReusedAfterConflict) {
                ch.state.version = ch.state.version.saturating_sub(1);
            }
            return Err(CoreError::Conflict { current });
        }
        if ch.state.len_after(write) > max_bytes {
            return Err(CoreError::LimitExceeded {
                limit: "max_frame_bytes",
            });
        }
        let version = if reuse && matches!(write, StateWrite::Merge { .. }) {
            current.version
        } else {
            current.version + 1
        };
        let changes: Vec<(&str, Option<&serde_json::Value>)> = match write {
            StateWrite::Update { key, value } => vec![(key.as_str(), Some(value))],
            StateWrite::Merge { data } => data.iter().map(|(k, v)| (k.as_str(), Some(v))).collect(),
            StateWrite::Delete { key } => vec![(key.as_str(), None)],
        };
        self.store.write_state(
            &key.tenant,
            key.name.as_str(),
            ch.epoch.as_str(),
            version,
            &changes,
        )?;
        ch.stored = true;
        ch.state.apply(write);
        ch.state.version = version;
        Ok(StateVersion {
            version,
            epoch: ch.epoch.clone(),
        })
    }

    fn active_channels(&self, tenant: &str) -> Vec<ChannelStats> {
        let mut out: Vec<ChannelStats> = self
            .channels
            .iter()
            .filter(|(k, ch)| {
                &*k.tenant == tenant
                    && (!ch.subscribers.is_empty() || !ch.presence.members.is_empty())
            })
            .map(|(k, ch)| ChannelStats {
                name: k.name.clone(),
                subscribers: ch.subscribers.len() as u64,
                members: ch.presence.members.len() as u64,
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    fn record(
        &self,
        tenant: &str,
        resource: &str,
        id: &str,
    ) -> Result<Option<serde_json::Value>, CoreError> {
        Ok(self.store.resource_get(tenant, resource, id)?)
    }

    fn records(
        &self,
        tenant: &str,
        resource: &str,
        after: Option<&str>,
        limit: u64,
    ) -> Result<RecordPage, CoreError> {
        let (records, has_more) = self.store.resource_list(tenant, resource, after, limit)?;
        Ok(RecordPage { records, has_more })
    }

    fn put_record(
        &mut self,
        tenant: &str,
        resource: &str,
        id: &str,
        data: &serde_json::Value,
        create: bool,
    ) -> Result<(), CoreError> {
        if create {
            self.store.resource_insert(tenant, resource, id, data)?;
        } else {
            self.store.resource_update(tenant, resource, id, data)?;
        }
        Ok(())
    }

    fn delete_record(&mut self, tenant: &str, resource: &str, id: &str) -> Result<(), CoreError> {
        Ok(self.store.resource_delete(tenant, resource, id)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn key(name: &str) -> ChannelKey {
        ChannelKey {
            tenant: Arc::from("t"),
            name: ChannelName::from(name),
        }
    }

    #[test]
    fn replay_needs_every_item_after_since() {
        let mut e = InProcessEngine::load(Store::memory().unwrap(), 2, Faults::default()).unwrap();
        let k = key("c");
        for _ in 0..4 {
            e.append(&k, &mut |seq| {
                StreamItem::Message(chorus_protocol::Message {
                    channel: k.name.clone(),
                    event: "e".into(),
                    data: json!(seq),
                    from: None,
                    ts: 0,
                    seq,
                })
            })
            .unwrap();
        }
        assert_eq!(e.replay_after(&k, 2).map(|f| f.len()), Some(2));
        assert_eq!(e.replay_after(&k, 1), None);
        assert_eq!(e.replay_after(&k, 4), Some(Vec::new()));
    }
}
