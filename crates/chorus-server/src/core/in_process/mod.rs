//! The default engine: everything in this process, persisted through the [`Store`].

mod channel_map;
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
    ChannelKey, Engine, Expected, GraceExpired, HistoryQuery, HistorySlice, LeaseTaken, RecordPage,
    Released, Room, StateWrite,
};
use super::faults::{Fault, Faults};
use super::{frame_of, ConnId, CoreError, Frame};
use crate::store::{ChannelRow, Store, StoredRoom};
use channel_map::ChannelMap;
use leases::{GraceTimer, Presence};
use state_doc::StateDoc;

/// Channels, presence, rooms and state in memory; streams, state, persistent rooms and
/// records also in the [`Store`].
pub struct InProcessEngine {
    store: Store,
    retention: usize,
    /// Bytes of frames each channel retains at most, its newest item always (HIST-19).
    retention_bytes: usize,
    /// Bytes of frames all channels retain at most; above it the largest channel drops
    /// its oldest items first (HIST-20).
    retention_total_bytes: usize,
    faults: Faults,
    channels: ChannelMap,
    grace: BTreeSet<GraceTimer>,
    /// How long an unused channel is kept; see [`InProcessEngine::sweep_idle`].
    idle_ttl: Millis,
    next_sweep: Millis,
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
    /// Bytes of the retained frames.
    retained_bytes: usize,
    /// Used since the last idle sweep (any write, subscription change or presence change).
    touched: bool,
    /// When it may be forgotten, if it stays unused until then.
    idle_deadline: Option<Millis>,
}

/// A retained stream item: its frame as delivered plus what history filters on. The parsed
/// item is not kept (a `serde_json::Value` tree costs several allocations per message, times
/// `retention` per channel); the few a history page returns are parsed back from the frame.
struct Retained {
    seq: u64,
    /// The `event` of a `message`; `None` for a `data_change`.
    event: Option<Box<str>>,
    frame: Frame,
}

impl Retained {
    fn new(item: &StreamItem, frame: Frame) -> Retained {
        Retained {
            seq: item.seq(),
            event: match item {
                StreamItem::Message(m) => Some(m.event.as_str().into()),
                StreamItem::DataChange(_) => None,
            },
            frame,
        }
    }
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
            retained_bytes: 0,
            touched: false,
            idle_deadline: None,
        }
    }

    /// Nothing would be lost by forgetting it but its retained stream: no subscriber, no
    /// presence member (grace leases included), no shared state, no room.
    fn unused(&self) -> bool {
        self.subscribers.is_empty()
            && self.presence.members.is_empty()
            && self.state.data.is_empty()
            && self.room.is_none()
    }

    /// Drops the oldest retained items past `items` or `bytes` (the newest always stays).
    fn trim(&mut self, items: usize, bytes: usize) {
        while self.retained.len() > items
            || (self.retained_bytes > bytes && self.retained.len() > 1)
        {
            self.drop_oldest();
        }
    }

    fn drop_oldest(&mut self) {
        if let Some(r) = self.retained.pop_front() {
            self.retained_bytes -= r.frame.len();
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
/// The `merge_deep` fault: nested objects of `data` merged into the stored ones.
fn deep_merge(
    stored: &chorus_protocol::StateData,
    data: &chorus_protocol::StateData,
) -> chorus_protocol::StateData {
    let mut out = data.clone();
    for (k, v) in out.iter_mut() {
        if let (Some(serde_json::Value::Object(old)), serde_json::Value::Object(new)) =
            (stored.get(k), &*v)
        {
            let mut both = old.clone();
            both.extend(new.iter().map(|(a, b)| (a.clone(), b.clone())));
            *v = serde_json::Value::Object(both);
        }
    }
    out
}

fn new_epoch() -> Epoch {
    Epoch(format!("e-{:016x}", rand::random::<u64>()))
}

impl InProcessEngine {
    /// Loads what `store` holds. `retention` is how many items each channel keeps.
    pub fn load(store: Store, retention: usize, faults: Faults) -> Result<Self, CoreError> {
        let mut engine = InProcessEngine {
            store,
            retention: retention.max(1),
            retention_bytes: usize::MAX,
            retention_total_bytes: usize::MAX,
            faults,
            channels: ChannelMap::default(),
            grace: BTreeSet::new(),
            idle_ttl: DEFAULT_IDLE_TTL_MS,
            next_sweep: 0,
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
                ch.retained.push_back(Retained::new(&item, Arc::from(text)));
                ch.retained_bytes += ch.retained.back().map_or(0, |r| r.frame.len());
                ch.trim(engine.retention, usize::MAX);
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

    /// Sets how long an unused channel is kept before [`InProcessEngine::sweep_idle`]
    /// forgets it (at least 1 s).
    pub fn with_idle_ttl(mut self, ttl_ms: Millis) -> Self {
        self.idle_ttl = ttl_ms.max(1000);
        self
    }

    /// Sets the byte budgets of retention (HIST-19): per channel (its newest item is kept
    /// whatever its size) and across channels.
    pub fn with_retention_bytes(mut self, per_channel: u64, total: u64) -> Self {
        self.retention_bytes = usize::try_from(per_channel).unwrap_or(usize::MAX);
        self.retention_total_bytes = usize::try_from(total).unwrap_or(usize::MAX);
        let keys: Vec<ChannelKey> = self.channels.keys().cloned().collect();
        for key in keys {
            self.trim(&key);
        }
        self.trim_total();
        self
    }

    fn channel(&mut self, key: &ChannelKey) -> &mut Channel {
        self.channels.open(key)
    }

    /// Applies the per-channel budgets to one channel.
    fn trim(&mut self, key: &ChannelKey) {
        let (items, bytes) = (self.retention, self.retention_bytes);
        if let Some(ch) = self.channels.get_mut_unmarked(key) {
            let was = ch.retained_bytes;
            ch.trim(items, bytes);
            let now = ch.retained_bytes;
            self.channels.resized(key, was, now);
        }
    }

    /// Applies the total budget: the channel retaining most drops its oldest item until
    /// the total fits (every channel keeps its newest item).
    fn trim_total(&mut self) {
        while self.channels.total_bytes() > self.retention_total_bytes {
            let Some(key) = self.channels.largest() else {
                return;
            };
            let Some(ch) = self.channels.get_mut_unmarked(&key) else {
                return;
            };
            let was = ch.retained_bytes;
            if ch.retained.len() <= 1 {
                return; // the largest holds one item: every other one does too
            }
            ch.drop_oldest();
            let now = ch.retained_bytes;
            self.channels.resized(&key, was, now);
        }
    }

    /// Channels the engine holds (tests and diagnostics).
    pub fn channel_count(&self) -> usize {
        self.channels.len()
    }
}

/// Default [`InProcessEngine::with_idle_ttl`]: HIST-19 asks for every item to be kept at least
/// 5 minutes after it was published; an unused channel is kept twice that.
pub const DEFAULT_IDLE_TTL_MS: Millis = 600_000;

impl Engine for InProcessEngine {
    fn position(&mut self, key: &ChannelKey) -> StreamPosition {
        self.channel(key).position()
    }

    fn append(
        &mut self,
        key: &ChannelKey,
        build: &mut dyn FnMut(u64) -> StreamItem,
    ) -> Result<(u64, Frame), CoreError> {
        let retention = self.retention;
        let gap = self.faults.on(Fault::SeqGap);
        let ch = self.channels.open(key);
        let mut seq = ch.seq + 1;
        if gap && seq.is_multiple_of(3) {
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
        ch.retained.push_back(Retained::new(&item, frame.clone()));
        let was = ch.retained_bytes;
        ch.retained_bytes += frame.len();
        let mut bytes = self.retention_bytes;
        if self.faults.on(Fault::RetentionBytesHalved) {
            bytes /= 2; // HIST-19 broken on purpose
        }
        ch.trim(retention, bytes);
        let now = ch.retained_bytes;
        self.channels.resized(key, was, now);
        self.trim_total();
        Ok((seq, frame))
    }

    fn replay_after(&self, key: &ChannelKey, seq: u64) -> Option<Vec<Frame>> {
        let ch = self.channels.get(key)?;
        if seq >= ch.seq {
            return Some(Vec::new());
        }
        let first = ch.retained.front()?.seq;
        if first > seq + 1 {
            return None;
        }
        Some(
            ch.retained
                .iter()
                .filter(|r| r.seq > seq)
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
        let inclusive = self.faults.on(Fault::HistoryBeforeInclusive);
        let matches = |r: &&Retained| {
            q.before_seq
                .is_none_or(|b| r.seq < b || (inclusive && r.seq == b))
                && match (q.event, &r.event) {
                    (None, _) => true,
                    (Some(e), Some(event)) => **event == *e,
                    (Some(_), None) => false,
                }
        };
        let mut newest: Vec<StreamItem> = Vec::new();
        let mut has_more = false;
        for r in ch.retained.iter().rev().filter(matches) {
            if newest.len() == q.limit {
                has_more = true;
                break;
            }
            // The frame was serialized from a StreamItem by this process (or loaded as one),
            // so it parses back; a frame that did not would be skipped, not invented.
            if let Ok(item) = serde_json::from_str::<StreamItem>(&r.frame) {
                newest.push(item);
            }
        }
        newest.reverse();
        if self.faults.on(Fault::HistoryHasMoreOnFullPage) && newest.len() == q.limit {
            has_more = true;
        }
        HistorySlice {
            items: newest,
            has_more,
        }
    }

    fn discard(&mut self, key: &ChannelKey) -> Result<(), CoreError> {
        if self.channels.remove(key) {
            self.store.discard_channel(&key.tenant, key.name.as_str())?;
        }
        Ok(())
    }

    fn add_subscriber(&mut self, key: &ChannelKey, conn: ConnId) {
        self.channel(key).subscribers.insert(conn);
    }

    fn remove_subscriber(&mut self, key: &ChannelKey, conn: ConnId) {
        if let Some(ch) = self.channels.used(key) {
            ch.subscribers.remove(&conn);
        }
    }

    fn subscribers(&self, key: &ChannelKey) -> impl Iterator<Item = ConnId> + '_ {
        self.channels
            .get(key)
            .into_iter()
            .flat_map(|ch| ch.subscribers.iter().copied())
    }

    fn room(&self, key: &ChannelKey) -> Option<Room> {
        self.channels.get(key)?.room.clone()
    }

    fn create_room(&mut self, key: &ChannelKey, room: Room) -> Result<(), CoreError> {
        let ch = self.channels.open(key);
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

    fn member(&self, key: &ChannelKey, user: &str) -> Option<Member> {
        Some(
            self.channels
                .get(key)?
                .presence
                .members
                .get(user)?
                .member
                .clone(),
        )
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
        let Some(ch) = self.channels.used(key) else {
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
        let ch = self.channels.used(key)?;
        ch.presence.update(user, status, data, now)
    }

    fn touch_member(&mut self, key: &ChannelKey, user: &str, now: Millis) {
        if let Some(ch) = self.channels.used(key) {
            ch.presence.touch(user, now);
        }
    }

    fn expire_grace(&mut self, now: Millis) -> Vec<GraceExpired> {
        let mut gone = Vec::new();
        while let Some(t) = self.grace.first().filter(|t| t.deadline <= now).cloned() {
            self.grace.remove(&t);
            let Some(ch) = self.channels.used(&t.key) else {
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

    fn sweep_idle(&mut self, now: Millis) -> usize {
        if now < self.next_sweep {
            return 0;
        }
        // Two sweeps per idle time: a channel goes between `idle_ttl` and 1.5 times that
        // after its last use.
        self.next_sweep = now + self.idle_ttl / 2;
        let mut forgotten = 0;
        for key in self.channels.idle(now, self.idle_ttl) {
            let stored = self.channels.get(&key).is_some_and(|ch| ch.stored);
            // A store that cannot forget it now keeps it in memory too, for the next sweep.
            if stored
                && self
                    .store
                    .discard_channel(&key.tenant, key.name.as_str())
                    .is_err()
            {
                self.channels.retry(&key);
                continue;
            }
            self.channels.remove(&key);
            forgotten += 1;
        }
        forgotten
    }

    fn next_sweep(&self) -> Option<Millis> {
        self.channels.sweep_pending().then_some(self.next_sweep)
    }

    fn holds_channel(&self, key: &ChannelKey) -> bool {
        self.channels.contains_key(key)
    }

    fn tenant_channels(&self, tenant: &str) -> usize {
        self.channels.of_tenant(tenant)
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
        expected: &Expected,
        max_bytes: usize,
        event: &mut dyn FnMut(&StateVersion) -> Frame,
    ) -> Result<(StateVersion, Frame), CoreError> {
        let reuse = self.faults.on(Fault::ReuseVersion);
        let deep = self.faults.on(Fault::MergeDeep);
        let refuse_missing = self.faults.on(Fault::DeleteMissingKeyRefused);
        let ch = self.channels.open(key);
        if let StateWrite::Delete { key } = write {
            if refuse_missing && !ch.state.data.contains_key(key) {
                return Err(CoreError::InvalidMessage(format!("no key {key:?}")));
            }
        }
        let merged;
        let write = match write {
            StateWrite::Merge { data } if deep => {
                merged = StateWrite::Merge {
                    data: deep_merge(&ch.state.data, data),
                };
                &merged
            }
            _ => write,
        };
        let current = StateVersion {
            version: ch.state.version,
            epoch: ch.epoch.clone(),
        };
        // ERR-12: a stale write is a conflict whatever its size.
        if self.faults.on(Fault::PrecedenceSizeBeforeConflict)
            && ch.state.len_after(write) > max_bytes
        {
            return Err(CoreError::LimitExceeded {
                limit: "max_frame_bytes",
            });
        }
        if !expected.holds(&current) {
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
        let version = StateVersion {
            version,
            epoch: ch.epoch.clone(),
        };
        let frame = event(&version);
        Ok((version, frame))
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

    fn begin_batch(&mut self) -> Result<(), CoreError> {
        Ok(self.store.begin_batch()?)
    }

    fn end_batch(&mut self, commit: bool) -> Result<(), CoreError> {
        Ok(self.store.end_batch(commit)?)
    }

    fn mark(&self, source: &str, key: &str) -> Result<Option<String>, CoreError> {
        Ok(self.store.mark(source, key)?)
    }

    fn set_mark(
        &mut self,
        source: &str,
        key: &str,
        value: &str,
        at: Millis,
    ) -> Result<(), CoreError> {
        Ok(self.store.set_mark(source, key, value, at)?)
    }

    fn forget_marks(&mut self, source: &str, before: Millis) -> Result<usize, CoreError> {
        Ok(self.store.forget_marks(source, before)?)
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

    fn publish(e: &mut InProcessEngine, k: &ChannelKey, event: &str) {
        e.append(k, &mut |seq| {
            StreamItem::Message(chorus_protocol::Message {
                channel: k.name.clone(),
                event: event.into(),
                data: json!(seq),
                from: None,
                ts: 0,
                seq,
            })
        })
        .unwrap();
    }

    fn engine(retention: usize) -> InProcessEngine {
        InProcessEngine::load(Store::memory().unwrap(), retention, Faults::default())
            .unwrap()
            .with_idle_ttl(10_000)
    }

    /// Sweeps at every due deadline up to `until`.
    fn sweep_until(e: &mut InProcessEngine, until: Millis) -> usize {
        let mut forgotten = 0;
        while let Some(at) = e.next_sweep().filter(|at| *at <= until) {
            forgotten += e.sweep_idle(at);
        }
        forgotten
    }

    #[test]
    fn an_unused_channel_is_forgotten_after_the_idle_time_and_starts_a_new_epoch() {
        let mut e = engine(10);
        let k = key("c");
        publish(&mut e, &k, "e");
        let before = e.position(&k);
        // First sweep sees it freshly used; nothing goes before the idle time has passed.
        assert_eq!(sweep_until(&mut e, 9_999), 0);
        assert_eq!(e.channel_count(), 1);
        assert_eq!(sweep_until(&mut e, 20_000), 1);
        assert_eq!(e.channel_count(), 0);
        assert_eq!(e.next_sweep(), None, "no channel, no sweep");
        let after = e.position(&k);
        assert_ne!(after.epoch, before.epoch, "HIST-3: a new epoch");
        assert_eq!(after.seq, 0);
    }

    #[test]
    fn a_channel_in_use_is_kept() {
        let mut e = engine(10);
        let (sub, state, busy) = (key("sub"), key("state"), key("busy"));
        e.add_subscriber(&sub, 1);
        let write = StateWrite::Update {
            key: "k".into(),
            value: json!(1),
        };
        e.write_state(&state, &write, &Expected::default(), 1 << 20, &mut |_| {
            Frame::from("{}")
        })
        .unwrap();
        publish(&mut e, &busy, "e");
        let mut at = 0;
        for _ in 0..10 {
            at += 5_000;
            publish(&mut e, &busy, "e");
            assert_eq!(e.sweep_idle(at), 0);
        }
        assert_eq!(e.channel_count(), 3);
        // Once the subscriber leaves, the idle time starts over from that use.
        e.remove_subscriber(&sub, 1);
        assert_eq!(sweep_until(&mut e, at + 9_999), 0);
        assert_eq!(sweep_until(&mut e, at + 40_000), 2, "sub and busy");
        assert_eq!(e.channel_count(), 1, "state is kept");
    }

    #[test]
    fn channels_in_use_and_untouched_cost_a_sweep_nothing() {
        let mut e = engine(10);
        for conn in 0..100 {
            e.add_subscriber(&key(&format!("c{conn}")), conn);
        }
        assert_eq!(e.sweep_idle(0), 0);
        assert_eq!(
            e.next_sweep(),
            None,
            "nothing used since and no deadline: no sweep is due, whatever the channel count"
        );
        e.remove_subscriber(&key("c7"), 7);
        assert!(e.next_sweep().is_some());
        assert_eq!(sweep_until(&mut e, 30_000), 1, "only c7 goes");
        assert_eq!(e.channel_count(), 99);
        assert_eq!(e.tenant_channels("t"), 99);
    }

    #[test]
    fn history_filters_on_the_event_without_keeping_parsed_items() {
        let mut e = engine(10);
        let k = key("c");
        for event in ["a", "b", "a", "b", "a"] {
            publish(&mut e, &k, event);
        }
        let q = HistoryQuery {
            before_seq: Some(5),
            event: Some("a"),
            limit: 1,
        };
        let page = e.history(&k, q);
        assert_eq!(page.items.len(), 1);
        assert_eq!(page.items[0].seq(), 3);
        assert!(page.has_more);
    }

    #[test]
    fn replay_needs_every_item_after_since() {
        let mut e = InProcessEngine::load(Store::memory().unwrap(), 2, Faults::default()).unwrap();
        let k = key("c");
        for _ in 0..4 {
            publish(&mut e, &k, "e");
        }
        assert_eq!(e.replay_after(&k, 2).map(|f| f.len()), Some(2));
        assert_eq!(e.replay_after(&k, 1), None);
        assert_eq!(e.replay_after(&k, 4), Some(Vec::new()));
    }
}
