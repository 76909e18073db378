//! The default engine: everything in this process, persisted through the [`Store`].

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::Arc;

use chorus_protocol::http::ChannelStats;
use chorus_protocol::{
    ChannelKind, ChannelName, Epoch, Member, Millis, PresenceStatus, StateData, StateSnapshot,
    StateVersion, StreamItem, StreamPosition,
};

use super::engine::{
    ChannelKey, Engine, GraceExpired, HistoryQuery, HistorySlice, LeaseTaken, RecordPage, Released,
    Room, StateWrite,
};
use super::faults::{Fault, Faults};
use super::{frame_of, ConnId, CoreError, Frame};
use crate::store::{ChannelRow, Store, StoredRoom};

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

/// The state with the length of its compact JSON kept up to date, so that STATE-9 costs
/// the size of the write, not of the whole state.
#[derive(Default)]
struct StateDoc {
    data: StateData,
    version: u64,
    entries_len: usize,
}

#[derive(Default)]
struct Presence {
    members: HashMap<String, MemberEntry>,
    /// `(joined_at, user_id)`: the order of member arrays (PRES-10).
    order: BTreeSet<(Millis, String)>,
}

struct MemberEntry {
    member: Member,
    leases: Vec<Lease>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct Lease {
    conn: ConnId,
    grace_until: Option<Millis>,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct GraceTimer {
    deadline: Millis,
    conn: ConnId,
    key: ChannelKey,
    user: String,
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
                ch.state.entries_len += entry_len(&k, &v);
                ch.state.data.insert(k, v);
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
        let Some(ch) = self.channels.get(key) else {
            return Vec::new();
        };
        let p = &ch.presence;
        p.order
            .iter()
            .filter_map(|(_, user)| p.members.get(user).map(|e| e.member.clone()))
            .collect()
    }

    fn take_lease(
        &mut self,
        key: &ChannelKey,
        conn: ConnId,
        user: &str,
        profile: &serde_json::Value,
        now: Millis,
    ) -> LeaseTaken {
        let p = &mut self.channel(key).presence;
        let live = Lease {
            conn,
            grace_until: None,
        };
        if let Some(entry) = p.members.get_mut(user) {
            entry.member.last_seen = entry.member.last_seen.max(now);
            // PRES-31: one subscribe takes over at most one grace lease, the oldest.
            let oldest_grace = entry
                .leases
                .iter()
                .enumerate()
                .filter_map(|(i, l)| l.grace_until.map(|g| (g, i)))
                .min();
            return match oldest_grace {
                Some((_, i)) => {
                    entry.leases[i] = live;
                    LeaseTaken::TookOver
                }
                None => {
                    entry.leases.push(live);
                    LeaseTaken::Added
                }
            };
        }
        let member = Member {
            user_id: user.to_owned(),
            profile: if profile.is_object() {
                profile.clone()
            } else {
                serde_json::json!({})
            },
            status: PresenceStatus::Online,
            data: serde_json::json!({}),
            joined_at: now,
            last_seen: now,
        };
        p.order.insert((now, user.to_owned()));
        p.members.insert(
            user.to_owned(),
            MemberEntry {
                member: member.clone(),
                leases: vec![live],
            },
        );
        LeaseTaken::Joined(member)
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
        let p = &mut ch.presence;
        let Some(entry) = p.members.get_mut(user) else {
            return Released::NoLease;
        };
        let Some(i) = entry
            .leases
            .iter()
            .position(|l| l.conn == conn && l.grace_until.is_none())
        else {
            return Released::NoLease;
        };
        if let Some(deadline) = grace_until {
            entry.leases[i].grace_until = Some(deadline);
            self.grace.insert(GraceTimer {
                deadline,
                conn,
                key: key.clone(),
                user: user.to_owned(),
            });
            return Released::Kept;
        }
        entry.leases.remove(i);
        if !entry.leases.is_empty() {
            return Released::Kept;
        }
        remove_member(p, user)
    }

    fn update_member(
        &mut self,
        key: &ChannelKey,
        user: &str,
        status: Option<PresenceStatus>,
        data: Option<serde_json::Value>,
        now: Millis,
    ) -> Option<Member> {
        let entry = self.channels.get_mut(key)?.presence.members.get_mut(user)?;
        let m = &mut entry.member;
        if let Some(s) = status {
            m.status = s;
        }
        if let Some(d) = data {
            m.data = d;
        }
        m.last_seen = m.last_seen.max(now);
        Some(m.clone())
    }

    fn touch_member(&mut self, key: &ChannelKey, user: &str, now: Millis) {
        if let Some(entry) = self
            .channels
            .get_mut(key)
            .and_then(|ch| ch.presence.members.get_mut(user))
        {
            entry.member.last_seen = entry.member.last_seen.max(now);
        }
    }

    fn expire_grace(&mut self, now: Millis) -> Vec<GraceExpired> {
        let mut gone = Vec::new();
        while let Some(t) = self.grace.first().filter(|t| t.deadline <= now).cloned() {
            self.grace.remove(&t);
            let Some(ch) = self.channels.get_mut(&t.key) else {
                continue;
            };
            let p = &mut ch.presence;
            let Some(entry) = p.members.get_mut(&t.user) else {
                continue;
            };
            let before = entry.leases.len();
            // A taken-over lease is live now and no longer matches (PRES-28).
            entry
                .leases
                .retain(|l| !(l.conn == t.conn && l.grace_until == Some(t.deadline)));
            if entry.leases.len() == before || !entry.leases.is_empty() {
                continue;
            }
            if let Released::Left { user_id, last_seen } = remove_member(p, &t.user) {
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
            return Err(CoreError::Conflict { current });
        }
        let (count, entries_len) = ch.state.measure(write);
        if doc_len(count, entries_len) > max_bytes {
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
        ch.state.entries_len = entries_len;
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

fn remove_member(p: &mut Presence, user: &str) -> Released {
    match p.members.remove(user) {
        Some(entry) => {
            p.order.remove(&(entry.member.joined_at, user.to_owned()));
            Released::Left {
                user_id: entry.member.user_id,
                last_seen: entry.member.last_seen,
            }
        }
        None => Released::NoLease,
    }
}

impl StateDoc {
    /// Key count and summed entry lengths after `write`, without applying it.
    fn measure(&self, write: &StateWrite) -> (usize, usize) {
        let mut count = self.data.len();
        let mut len = self.entries_len;
        let mut set = |k: &str, v: Option<&serde_json::Value>| {
            if let Some(old) = self.data.get(k) {
                len -= entry_len(k, old);
                count -= 1;
            }
            if let Some(v) = v {
                len += entry_len(k, v);
                count += 1;
            }
        };
        match write {
            StateWrite::Update { key, value } => set(key, Some(value)),
            StateWrite::Merge { data } => data.iter().for_each(|(k, v)| set(k, Some(v))),
            StateWrite::Delete { key } => set(key, None),
        }
        (count, len)
    }

    fn apply(&mut self, write: &StateWrite) {
        match write {
            StateWrite::Update { key, value } => {
                self.data.insert(key.clone(), value.clone());
            }
            StateWrite::Merge { data } => {
                for (k, v) in data {
                    self.data.insert(k.clone(), v.clone());
                }
            }
            StateWrite::Delete { key } => {
                self.data.remove(key);
            }
        }
    }
}

/// Length of `"key":value` in compact JSON.
fn entry_len(key: &str, value: &serde_json::Value) -> usize {
    json_len(&serde_json::Value::String(key.to_owned())) + 1 + json_len(value)
}

/// Length of `{entries}` with `count` entries whose lengths sum to `entries_len`.
fn doc_len(count: usize, entries_len: usize) -> usize {
    2 + entries_len + count.saturating_sub(1)
}

fn json_len(value: &serde_json::Value) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut c = Count(0);
    // Writing a Value into a counter cannot fail.
    let _ = serde_json::to_writer(&mut c, value);
    c.0
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
    fn doc_len_matches_serialization() {
        let mut doc = StateDoc::default();
        let writes = [
            StateWrite::Update {
                key: "a\"b".into(),
                value: json!({"x": [1, 2, "é"]}),
            },
            StateWrite::Merge {
                data: json!({"c": null, "d": 1.5}).as_object().cloned().unwrap(),
            },
            StateWrite::Delete { key: "c".into() },
        ];
        for w in &writes {
            let (n, len) = doc.measure(w);
            doc.apply(w);
            doc.entries_len = len;
            assert_eq!(n, doc.data.len());
            let text = serde_json::to_string(&doc.data).unwrap();
            assert_eq!(doc_len(n, len), text.len(), "{text}");
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

    #[test]
    fn grace_timer_of_a_taken_over_lease_does_nothing() {
        let mut e = InProcessEngine::load(Store::memory().unwrap(), 2, Faults::default()).unwrap();
        let k = key("presence-x");
        e.take_lease(&k, 1, "ann", &json!({}), 10);
        assert_eq!(e.release_lease(&k, 1, "ann", Some(100)), Released::Kept);
        assert_eq!(
            e.take_lease(&k, 2, "ann", &json!({}), 20),
            LeaseTaken::TookOver
        );
        assert!(e.expire_grace(100).is_empty());
        assert_eq!(e.member_count(&k), 1);
    }
}
