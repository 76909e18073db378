//! [`RedisEngine`]: streams and shared state in Redis, shared by every node; fan-out sets,
//! presence, rooms and resource records still in this node's [`InProcessEngine`] (see the
//! module docs of [`cluster`](super) for what is clustered yet).

use std::cell::RefCell;
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use chorus_protocol::http::ChannelStats;
use chorus_protocol::{
    Epoch, Member, Millis, PresenceStatus, StateData, StateSnapshot, StateVersion, StreamItem,
    StreamPosition,
};
use redis::{FromRedisValue, Script, Value};

use super::bus::Bus;
use super::keys::Keys;
use super::link::CommandLink;
use super::redis_presence::{GraceTimer, PresenceScripts};
use super::scripts;
use crate::core::engine::{
    Delivery, Expected, GraceExpired, HistoryQuery, HistorySlice, LeaseTaken, RecordPage, Released,
    Remote, Room, StateWrite,
};
use crate::core::{
    frame_of, ChannelKey, ConnId, CoreError, Engine, Fault, Faults, Frame, InProcessEngine,
};

/// The `seq` an item is serialized with before Redis numbers it; the script writes the real
/// one in its place. `seq` is the last member of both stream item types, so the last
/// occurrence of this number in a frame is the `seq` member, whatever `data` holds.
const SEQ_PLACEHOLDER: u64 = u64::MAX;

/// The scripts, hashed once (EVALSHA, loaded on first use).
struct Scripts {
    position: Script,
    append: Script,
    read_after: Script,
    write_state: Script,
    read_state: Script,
}

/// What this node has delivered of a channel it has subscribers on.
struct Delivered {
    epoch: Epoch,
    /// The last `seq` handed to this node's subscribers (or accounted for in `pending`).
    seq: u64,
    /// Stream items other nodes appended that an append of this node revealed, still to be
    /// sent before the next frame of the channel.
    pending: Vec<Frame>,
    /// The node lost the channel's continuity; its subscribers are evicted (CLUS-9).
    broken: bool,
}

/// The Redis engine of one node.
pub struct RedisEngine {
    local: InProcessEngine,
    pub(super) redis: RefCell<CommandLink>,
    pub(super) keys: Keys,
    pub(super) node: u64,
    pub(super) presence: PresenceScripts,
    /// This node's grace leases, by deadline.
    pub(super) grace: BTreeSet<GraceTimer>,
    /// The presence grace period: a dead node's leases end this long after it was found
    /// dead (CLUS-8).
    pub(super) grace_ms: Millis,
    /// When the liveness key is next renewed and dead nodes looked for.
    pub(super) next_liveness: Millis,
    retention: usize,
    bus: Arc<Bus>,
    scripts: Scripts,
    delivering: HashMap<ChannelKey, Delivered>,
    /// The frame of the last append: [`Engine::relay`] does not publish it again (the
    /// append script did).
    appended: Option<Frame>,
    /// A Redis call failed since the shell last asked: the node can no longer keep its
    /// promises and closes its connections with 4301 (CLUS-10).
    failed: RefCell<Option<String>>,
    /// Deliberate bugs (inert without the `faults` feature).
    pub(super) faults: Faults,
}

fn new_epoch() -> String {
    format!("e-{:016x}", rand::random::<u64>())
}

impl RedisEngine {
    /// An engine for node `node` over a command connection and the node's bus; `local`
    /// keeps what is not clustered yet.
    pub fn new(
        local: InProcessEngine,
        redis: CommandLink,
        keys: Keys,
        node: u64,
        retention: usize,
        bus: Arc<Bus>,
        grace_ms: Millis,
    ) -> RedisEngine {
        RedisEngine {
            local,
            redis: RefCell::new(redis),
            keys,
            node,
            presence: PresenceScripts::default(),
            grace: BTreeSet::new(),
            grace_ms,
            next_liveness: 0,
            retention: retention.max(1),
            bus,
            scripts: Scripts {
                position: Script::new(scripts::POSITION),
                append: Script::new(scripts::APPEND),
                read_after: Script::new(scripts::READ_AFTER),
                write_state: Script::new(scripts::WRITE_STATE),
                read_state: Script::new(scripts::READ_STATE),
            },
            delivering: HashMap::new(),
            appended: None,
            failed: RefCell::new(None),
            faults: Faults::default(),
        }
    }

    /// The engine with `faults` switched on (the mutation run across nodes).
    pub fn with_faults(mut self, faults: Faults) -> RedisEngine {
        self.faults = faults;
        self
    }

    /// This node's number.
    pub fn node(&self) -> u64 {
        self.node
    }

    /// The local part (its store carries the node's records and marks).
    pub fn local(&self) -> &InProcessEngine {
        &self.local
    }

    /// Counts `seq` of `key` as delivered.
    pub(super) fn mark_delivered(&mut self, key: &ChannelKey, seq: u64) {
        if let Some(d) = self.delivering.get_mut(key) {
            d.seq = seq;
        }
    }

    /// Forgets every channel this node delivered (the bus was lost, CLUS-9).
    pub fn forget_deliveries(&mut self) {
        self.delivering.clear();
        self.appended = None;
    }

    /// The failure since the last call, if any (the shell then closes every connection).
    pub fn take_failure(&mut self) -> Option<String> {
        self.failed.get_mut().take()
    }

    pub(super) fn fail(&self, what: &str, e: impl std::fmt::Display) {
        tracing::error!(error = %e, "redis {what} failed");
        self.failed
            .borrow_mut()
            .get_or_insert_with(|| format!("{what}: {e}"));
    }

    pub(super) fn run(
        &self,
        script: &Script,
        keys: &[String],
        args: &[Vec<u8>],
    ) -> Result<Value, String> {
        let mut call = script.prepare_invoke();
        for k in keys {
            call.key(k);
        }
        for a in args {
            call.arg(a.as_slice());
        }
        let mut conn = self.redis.borrow_mut();
        call.invoke::<Value>(&mut *conn).map_err(|e| e.to_string())
    }

    /// The channel's position in Redis, creating its epoch when missing.
    fn stored_position(&self, key: &ChannelKey) -> Result<StreamPosition, String> {
        let keys = [self.keys.meta(key)];
        let reply = self.run(&self.scripts.position, &keys, &[new_epoch().into_bytes()])?;
        let parts = array(reply)?;
        Ok(StreamPosition {
            epoch: Epoch(string(parts.first())?),
            seq: int(parts.get(1))? as u64,
        })
    }

    /// The retained entries after `after`, with the epoch, top and first retained `seq`.
    fn read_after(&self, key: &ChannelKey, after: u64) -> Result<Retained, String> {
        let keys = [self.keys.meta(key), self.keys.history(key)];
        let parts = array(self.run(
            &self.scripts.read_after,
            &keys,
            &[after.to_string().into_bytes()],
        )?)?;
        let epoch = match parts.first() {
            Some(Value::Nil) | None => None,
            v => Some(Epoch(string(v)?)),
        };
        let top = int(parts.get(1))? as u64;
        let first = int(parts.get(2))?;
        let entries = parts
            .into_iter()
            .skip(3)
            .map(|v| bytes(v).and_then(|b| Entry::parse(&b)))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Retained {
            epoch,
            top,
            first: first.max(1) as u64,
            entries,
        })
    }

    fn write_state_script(
        &self,
        key: &ChannelKey,
        write: &StateWrite,
        expected: &Expected,
        max_bytes: usize,
    ) -> Result<(i64, StateVersion), String> {
        let mut args: Vec<Vec<u8>> = vec![
            new_epoch().into_bytes(),
            expected
                .version
                .map(|v| v.to_string())
                .unwrap_or_default()
                .into_bytes(),
            expected
                .epoch
                .as_ref()
                .map(|e| e.as_str().to_owned())
                .unwrap_or_default()
                .into_bytes(),
            max_bytes.to_string().into_bytes(),
        ];
        let mut change = |k: &str, v: Option<&serde_json::Value>| {
            let key_len = frame_of(&k).len();
            args.push(k.as_bytes().to_vec());
            args.push(key_len.to_string().into_bytes());
            args.push(match v {
                Some(v) => format!("s{}", frame_of(v)).into_bytes(),
                None => b"d".to_vec(),
            });
        };
        match write {
            StateWrite::Update { key, value } => change(key, Some(value)),
            StateWrite::Merge { data } => data.iter().for_each(|(k, v)| change(k, Some(v))),
            StateWrite::Delete { key } => change(key, None),
        }
        let keys = [self.keys.meta(key), self.keys.state(key)];
        let parts = array(self.run(&self.scripts.write_state, &keys, &args)?)?;
        let outcome = int(parts.first())?;
        let version = StateVersion {
            epoch: Epoch(string(parts.get(1))?),
            version: int(parts.get(2))? as u64,
        };
        Ok((outcome, version))
    }

    fn read_state(&self, key: &ChannelKey) -> Result<StateSnapshot, String> {
        let keys = [self.keys.meta(key), self.keys.state(key)];
        let parts =
            array(self.run(&self.scripts.read_state, &keys, &[new_epoch().into_bytes()])?)?;
        let epoch = Epoch(string(parts.first())?);
        let version = int(parts.get(1))? as u64;
        let mut data = StateData::new();
        let mut rest = parts.into_iter().skip(2);
        while let (Some(k), Some(v)) = (rest.next(), rest.next()) {
            let k = String::from_utf8(bytes(k)?).map_err(|e| e.to_string())?;
            let v = serde_json::from_slice(&bytes(v)?).map_err(|e| e.to_string())?;
            data.insert(k, v);
        }
        Ok(StateSnapshot {
            data,
            version,
            epoch,
        })
    }

    /// The items this node missed before `seq` of a channel it delivers, or `None` when
    /// some are no longer retained.
    fn missed_before(&self, key: &ChannelKey, delivered: u64, seq: u64) -> Option<Vec<Frame>> {
        let retained = match self.read_after(key, delivered) {
            Ok(r) => r,
            Err(e) => {
                self.fail("read", e);
                return None;
            }
        };
        if retained.first > delivered + 1 {
            return None;
        }
        Some(
            retained
                .entries
                .into_iter()
                .zip(retained.first.max(delivered + 1)..)
                .filter(|(_, s)| *s > delivered && *s < seq)
                .map(|(e, _)| e.frame)
                .collect(),
        )
    }

    /// An ephemeral frame's bus payload (stream items are published by the append script).
    fn bus_payload(&self, except: Option<ConnId>, frame: &str) -> Vec<u8> {
        let except = except.map(|c| c.to_string()).unwrap_or_default();
        format!("{}\n\n\n{except}\n{frame}", self.node).into_bytes()
    }
}

/// What [`RedisEngine::read_after`] found.
struct Retained {
    epoch: Option<Epoch>,
    top: u64,
    /// The `seq` of the first retained item.
    first: u64,
    /// From `max(first, after + 1)` on.
    entries: Vec<Entry>,
}

/// A history entry: the frame with what history filters on in front of it,
/// `m<event length>:<event><frame>` for a `message`, `d<frame>` for a `data_change`.
struct Entry {
    event: Option<String>,
    frame: Frame,
}

impl Entry {
    fn header(item: &StreamItem) -> String {
        match item {
            StreamItem::Message(m) => format!("m{}:{}", m.event.len(), m.event),
            StreamItem::DataChange(_) => "d".to_owned(),
        }
    }

    fn parse(raw: &[u8]) -> Result<Entry, String> {
        let text = std::str::from_utf8(raw).map_err(|e| e.to_string())?;
        let bad = || format!("malformed history entry {:.40}", text);
        if let Some(frame) = text.strip_prefix('d') {
            return Ok(Entry {
                event: None,
                frame: Arc::from(frame),
            });
        }
        let rest = text.strip_prefix('m').ok_or_else(bad)?;
        let (len, rest) = rest.split_once(':').ok_or_else(bad)?;
        let len: usize = len.parse().map_err(|_| bad())?;
        let event = rest.get(..len).ok_or_else(bad)?;
        let frame = rest.get(len..).ok_or_else(bad)?;
        Ok(Entry {
            event: Some(event.to_owned()),
            frame: Arc::from(frame),
        })
    }
}

/// A room stored by [`Engine::create_room`].
fn room_of(text: &str) -> Option<Room> {
    let v: serde_json::Value = serde_json::from_str(text).ok()?;
    Some(Room {
        password_hash: v["password_hash"].as_str().map(str::to_owned),
        max_users: u32::try_from(v["max_users"].as_u64()?).ok()?,
        metadata: v["metadata"].clone(),
        persist: v["persist"].as_bool()?,
        created_at: v["created_at"].as_u64()?,
    })
}

/// Splits a frame serialized with [`SEQ_PLACEHOLDER`] around the placeholder.
fn split_at_seq(frame: &str) -> Result<(&str, &str), CoreError> {
    let placeholder = SEQ_PLACEHOLDER.to_string();
    let at = frame
        .rfind(&placeholder)
        .filter(|at| frame[at + placeholder.len()..] == *"}")
        .ok_or_else(|| CoreError::Engine("stream item without a trailing seq".into()))?;
    Ok((&frame[..at], &frame[at + placeholder.len()..]))
}

pub(super) fn array(v: Value) -> Result<Vec<Value>, String> {
    match v {
        Value::Array(parts) => Ok(parts),
        other => Err(format!("unexpected reply {other:?}")),
    }
}

fn int(v: Option<&Value>) -> Result<i64, String> {
    let v = v.ok_or("short reply")?;
    i64::from_redis_value(v.clone()).map_err(|e| e.to_string())
}

fn string(v: Option<&Value>) -> Result<String, String> {
    let v = v.ok_or("short reply")?;
    String::from_redis_value(v.clone()).map_err(|e| e.to_string())
}

pub(super) fn bytes(v: Value) -> Result<Vec<u8>, String> {
    match v {
        Value::BulkString(b) => Ok(b),
        Value::SimpleString(s) => Ok(s.into_bytes()),
        other => Err(format!("unexpected reply {other:?}")),
    }
}

/// Parses a bus payload `origin\nepoch\nseq\nexcept\nframe` (epoch and seq empty for an
/// ephemeral frame, except empty when the frame is for every subscriber).
pub fn parse_payload(payload: &[u8]) -> Option<Remote> {
    let text = std::str::from_utf8(payload).ok()?;
    let mut parts = text.splitn(5, '\n');
    let origin = parts.next()?.parse().ok()?;
    let epoch = parts.next()?;
    let seq = parts.next()?;
    let except = match parts.next()? {
        "" => None,
        c => Some(c.parse().ok()?),
    };
    let frame = parts.next()?;
    let stream = if epoch.is_empty() {
        None
    } else {
        Some((Epoch(epoch.to_owned()), seq.parse().ok()?))
    };
    Some(Remote {
        origin,
        stream,
        except,
        frame: Arc::from(frame),
    })
}

impl Engine for RedisEngine {
    fn position(&mut self, key: &ChannelKey) -> StreamPosition {
        if let Some(d) = self.delivering.get(key) {
            // What this node has delivered: a subscriber told this position gets every
            // later item from the bus (CLUS-1).
            return StreamPosition {
                epoch: d.epoch.clone(),
                seq: d.seq,
            };
        }
        self.stored_position(key).unwrap_or_else(|e| {
            self.fail("position", e);
            StreamPosition {
                epoch: Epoch("e-unavailable".into()),
                seq: 0,
            }
        })
    }

    fn append(
        &mut self,
        key: &ChannelKey,
        build: &mut dyn FnMut(u64) -> StreamItem,
    ) -> Result<(u64, Frame), CoreError> {
        let item = build(SEQ_PLACEHOLDER);
        let text = frame_of(&item);
        let (before, after) = split_at_seq(&text)?;
        let (known, delivered) = match self.delivering.get(key) {
            Some(d) => (d.epoch.as_str().to_owned(), d.seq as i64),
            None => (String::new(), -1),
        };
        let keys = [self.keys.meta(key), self.keys.history(key)];
        let args = [
            new_epoch().into_bytes(),
            before.as_bytes().to_vec(),
            after.as_bytes().to_vec(),
            Entry::header(&item).into_bytes(),
            self.retention.to_string().into_bytes(),
            known.into_bytes(),
            delivered.to_string().into_bytes(),
            self.keys.bus(key).into_bytes(),
            self.node.to_string().into_bytes(),
        ];
        let stale = self.stale_seq(key); // None unless cluster_seq_read_modify_write
        let parts = self
            .run(&self.scripts.append, &keys, &args)
            .and_then(array)
            .map_err(|e| CoreError::Engine(format!("redis append: {e}")))?;
        self.write_back_seq(key, stale);
        let parsed = (|| -> Result<_, String> {
            let epoch = Epoch(string(parts.first())?);
            let seq = int(parts.get(1))? as u64;
            let complete = int(parts.get(2))? == 1;
            let missed = parts
                .iter()
                .skip(3)
                .map(|v| {
                    bytes(v.clone())
                        .and_then(|b| Entry::parse(&b))
                        .map(|e| e.frame)
                })
                .collect::<Result<Vec<_>, _>>()?;
            Ok((epoch, seq, complete, missed))
        })()
        .map_err(|e| CoreError::Engine(format!("redis append: {e}")))?;
        let (epoch, seq, complete, missed) = parsed;
        let frame: Frame = Arc::from(format!("{before}{seq}{after}"));
        if let Some(d) = self.delivering.get_mut(key) {
            if d.epoch != epoch || !complete {
                d.broken = true; // CLUS-9: the broker lost the stream, or we lagged too far
            } else {
                d.pending.extend(missed);
            }
            d.epoch = epoch;
            d.seq = seq;
        }
        self.appended = Some(frame.clone());
        Ok((seq, frame))
    }

    fn replay_after(&self, key: &ChannelKey, seq: u64) -> Option<Vec<Frame>> {
        let upto = self.delivering.get(key).map(|d| (d.epoch.clone(), d.seq));
        let retained = match self.read_after(key, seq) {
            Ok(r) => r,
            Err(e) => {
                self.fail("replay", e);
                return None;
            }
        };
        let (epoch, top) = match upto {
            Some(position) => position,
            None => (retained.epoch.clone()?, retained.top),
        };
        if retained.epoch.as_ref() != Some(&epoch) || retained.first > seq + 1 {
            return None;
        }
        let from = retained.first.max(seq + 1);
        Some(
            retained
                .entries
                .into_iter()
                .zip(from..)
                .filter(|(_, s)| *s > seq && *s <= top)
                .map(|(e, _)| e.frame)
                .collect(),
        )
    }

    fn history(&self, key: &ChannelKey, q: HistoryQuery<'_>) -> HistorySlice {
        let retained = match self.read_after(key, 0) {
            Ok(r) => r,
            Err(e) => {
                self.fail("history", e);
                return HistorySlice {
                    items: Vec::new(),
                    has_more: false,
                };
            }
        };
        let top = self.delivering.get(key).map_or(retained.top, |d| d.seq);
        let mut newest = Vec::new();
        let mut has_more = false;
        let numbered: Vec<(Entry, u64)> =
            retained.entries.into_iter().zip(retained.first..).collect();
        let matching = numbered.into_iter().rev().filter(|(e, s)| {
            *s <= top
                && q.before_seq.is_none_or(|b| *s < b)
                && match (q.event, &e.event) {
                    (None, _) => true,
                    (Some(want), Some(event)) => want == event,
                    (Some(_), None) => false,
                }
        });
        for (entry, _) in matching {
            if newest.len() == q.limit {
                has_more = true;
                break;
            }
            if let Ok(item) = serde_json::from_str::<StreamItem>(&entry.frame) {
                newest.push(item);
            }
        }
        newest.reverse();
        HistorySlice {
            items: newest,
            has_more,
        }
    }

    fn discard(&mut self, key: &ChannelKey) -> Result<(), CoreError> {
        let keys = [
            self.keys.meta(key),
            self.keys.history(key),
            self.keys.state(key),
            self.keys.presence(key),
            self.keys.leases(key),
            self.keys.room(key),
        ];
        redis::cmd("DEL")
            .arg(&keys)
            .query::<i64>(&mut *self.redis.borrow_mut())
            .map_err(|e| CoreError::Engine(format!("redis discard: {e}")))?;
        self.delivering.remove(key);
        self.local.discard(key)
    }

    fn add_subscriber(&mut self, key: &ChannelKey, conn: ConnId) {
        self.local.add_subscriber(key, conn);
        if self.delivering.contains_key(key) {
            return;
        }
        // Subscribed to the bus before the position is read: every item after it arrives.
        if let Err(e) = self.bus.subscribe(&self.keys.bus(key)) {
            self.fail("subscribe", e);
            return;
        }
        match self.stored_position(key) {
            Ok(p) => {
                self.delivering.insert(
                    key.clone(),
                    Delivered {
                        epoch: p.epoch,
                        seq: p.seq,
                        pending: Vec::new(),
                        broken: false,
                    },
                );
            }
            Err(e) => self.fail("position", e),
        }
    }

    fn remove_subscriber(&mut self, key: &ChannelKey, conn: ConnId) {
        self.local.remove_subscriber(key, conn);
        if self.local.subscribers(key).next().is_none() && self.delivering.remove(key).is_some() {
            if let Err(e) = self.bus.unsubscribe(&self.keys.bus(key)) {
                self.fail("unsubscribe", e);
            }
        }
    }

    fn subscribers(&self, key: &ChannelKey) -> impl Iterator<Item = ConnId> + '_ {
        self.local.subscribers(key)
    }

    fn relay(&mut self, key: &ChannelKey, frame: &Frame, except: Option<ConnId>) -> Delivery {
        let appended = self.appended.take().is_some_and(|a| Arc::ptr_eq(&a, frame));
        if !appended && self.faults.on(Fault::ClusterEphemeralUnpublished) {
            return Delivery::Frames(Vec::new()); // CLUS-7 broken on purpose: this node only
        }
        if !appended {
            // An ephemeral frame: no place in the stream, published as it is, and delivered
            // here when the bus brings it back, in the order every node sees (CLUS-7).
            let payload = self.bus_payload(except, frame);
            let published = redis::cmd("PUBLISH")
                .arg(self.keys.bus(key))
                .arg(payload)
                .query::<i64>(&mut *self.redis.borrow_mut());
            if let Err(e) = published {
                self.fail("publish", e);
            }
            // Missed stream items stay pending: the next item of the channel sends them.
            return match self.delivering.get(key) {
                Some(d) if d.broken => Delivery::Discontinuity,
                _ => Delivery::Relayed,
            };
        }
        match self.delivering.get_mut(key) {
            Some(d) if d.broken => Delivery::Discontinuity,
            Some(d) => Delivery::Frames(std::mem::take(&mut d.pending)),
            None => Delivery::Frames(Vec::new()),
        }
    }

    fn accept_remote(&mut self, key: &ChannelKey, remote: Remote) -> Delivery {
        let Some(d) = self.delivering.get(key) else {
            return Delivery::Frames(Vec::new()); // no subscriber here any more
        };
        let Some((epoch, seq)) = remote.stream else {
            return Delivery::Frames(vec![remote.frame]);
        };
        if d.broken || epoch != d.epoch {
            return Delivery::Discontinuity; // CLUS-9
        }
        if seq <= d.seq {
            return Delivery::Frames(Vec::new()); // already delivered
        }
        if self.faults.on(Fault::ClusterRemoteItemLost) && seq % 2 == 0 {
            return self.lose_remote(key, seq); // CLUS-1 broken on purpose
        }
        let (delivered, mut frames) = (d.seq, Vec::new());
        if seq > delivered + 1 {
            match self.missed_before(key, delivered, seq) {
                Some(missed) => frames = missed,
                None => return Delivery::Discontinuity,
            }
        }
        if let Some(d) = self.delivering.get_mut(key) {
            let mut all = std::mem::take(&mut d.pending);
            all.append(&mut frames);
            all.push(remote.frame);
            d.seq = seq;
            return Delivery::Frames(all);
        }
        Delivery::Frames(Vec::new())
    }

    fn room(&self, key: &ChannelKey) -> Option<Room> {
        let got: Result<Option<String>, _> = redis::cmd("GET")
            .arg(self.keys.room(key))
            .query(&mut *self.redis.borrow_mut());
        match got {
            Ok(text) => text.and_then(|t| room_of(&t)),
            Err(e) => {
                self.fail("room", e);
                None
            }
        }
    }

    fn create_room(&mut self, key: &ChannelKey, room: Room) -> Result<(), CoreError> {
        let text = serde_json::json!({
            "password_hash": room.password_hash,
            "max_users": room.max_users,
            "metadata": room.metadata,
            "persist": room.persist,
            "created_at": room.created_at,
        })
        .to_string();
        // NX: of two nodes creating the room at once, the first one's settings stand.
        redis::cmd("SET")
            .arg(self.keys.room(key))
            .arg(text)
            .arg("NX")
            .query::<Option<String>>(&mut *self.redis.borrow_mut())
            .map_err(|e| CoreError::Engine(format!("redis room: {e}")))?;
        Ok(())
    }

    fn member(&self, key: &ChannelKey, user: &str) -> Option<Member> {
        self.redis_member(key, user)
    }

    fn member_count(&self, key: &ChannelKey) -> usize {
        self.redis_member_count(key)
    }

    fn members(&self, key: &ChannelKey) -> Vec<Member> {
        self.redis_members(key)
    }

    fn take_lease(
        &mut self,
        key: &ChannelKey,
        conn: ConnId,
        user: &str,
        profile: &serde_json::Value,
        now: Millis,
    ) -> LeaseTaken {
        self.redis_take(key, conn, user, profile, now)
    }

    fn release_lease(
        &mut self,
        key: &ChannelKey,
        conn: ConnId,
        user: &str,
        grace_until: Option<Millis>,
    ) -> Released {
        self.redis_release(key, conn, user, grace_until)
    }

    fn update_member(
        &mut self,
        key: &ChannelKey,
        user: &str,
        status: Option<PresenceStatus>,
        data: Option<serde_json::Value>,
        now: Millis,
    ) -> Option<Member> {
        self.redis_update(key, user, status, data, now)
    }

    fn touch_member(&mut self, key: &ChannelKey, user: &str, now: Millis) {
        self.redis_update(key, user, None, None, now);
    }

    fn expire_grace(&mut self, now: Millis) -> Vec<GraceExpired> {
        self.redis_expire(now)
    }

    fn next_grace_deadline(&self) -> Option<Millis> {
        let own = self.grace.first().map(|t| t.deadline);
        Some(own.map_or(self.next_liveness, |d| d.min(self.next_liveness)))
    }

    fn sweep_idle(&mut self, now: Millis) -> usize {
        self.local.sweep_idle(now)
    }

    fn next_sweep(&self) -> Option<Millis> {
        self.local.next_sweep()
    }

    fn holds_channel(&self, key: &ChannelKey) -> bool {
        self.local.holds_channel(key)
    }

    fn tenant_channels(&self, tenant: &str) -> usize {
        self.local.tenant_channels(tenant)
    }

    fn state(&mut self, key: &ChannelKey) -> StateSnapshot {
        if self.faults.on(Fault::ClusterStateNodeLocal) {
            return self.local.state(key); // CLUS-2 broken on purpose
        }
        self.read_state(key).unwrap_or_else(|e| {
            self.fail("state", e);
            StateSnapshot {
                data: StateData::new(),
                version: 0,
                epoch: Epoch("e-unavailable".into()),
            }
        })
    }

    fn write_state(
        &mut self,
        key: &ChannelKey,
        write: &StateWrite,
        expected: &Expected,
        max_bytes: usize,
    ) -> Result<StateVersion, CoreError> {
        let (outcome, version) = self
            .write_state_script(key, write, expected, max_bytes)
            .map_err(|e| CoreError::Engine(format!("redis state write: {e}")))?;
        match outcome {
            1 => Ok(version),
            0 => Err(CoreError::Conflict { current: version }),
            _ => Err(CoreError::LimitExceeded {
                limit: "max_frame_bytes",
            }),
        }
    }

    fn active_channels(&self, tenant: &str) -> Vec<ChannelStats> {
        self.local.active_channels(tenant)
    }

    fn record(
        &self,
        tenant: &str,
        resource: &str,
        id: &str,
    ) -> Result<Option<serde_json::Value>, CoreError> {
        self.local.record(tenant, resource, id)
    }

    fn records(
        &self,
        tenant: &str,
        resource: &str,
        after: Option<&str>,
        limit: u64,
    ) -> Result<RecordPage, CoreError> {
        self.local.records(tenant, resource, after, limit)
    }

    fn put_record(
        &mut self,
        tenant: &str,
        resource: &str,
        id: &str,
        data: &serde_json::Value,
        create: bool,
    ) -> Result<(), CoreError> {
        self.local.put_record(tenant, resource, id, data, create)
    }

    fn delete_record(&mut self, tenant: &str, resource: &str, id: &str) -> Result<(), CoreError> {
        self.local.delete_record(tenant, resource, id)
    }

    fn begin_batch(&mut self) -> Result<(), CoreError> {
        self.local.begin_batch()
    }

    fn end_batch(&mut self, commit: bool) -> Result<(), CoreError> {
        self.local.end_batch(commit)
    }

    fn mark(&self, source: &str, key: &str) -> Result<Option<String>, CoreError> {
        self.local.mark(source, key)
    }

    fn set_mark(
        &mut self,
        source: &str,
        key: &str,
        value: &str,
        at: Millis,
    ) -> Result<(), CoreError> {
        self.local.set_mark(source, key, value, at)
    }

    fn forget_marks(&mut self, source: &str, before: Millis) -> Result<usize, CoreError> {
        self.local.forget_marks(source, before)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chorus_protocol::{ChannelName, Message};

    #[test]
    fn the_placeholder_is_found_after_data_that_contains_it() {
        let item = StreamItem::Message(Message {
            channel: ChannelName("c".into()),
            event: "e".into(),
            data: serde_json::json!({"seq": SEQ_PLACEHOLDER, "s": SEQ_PLACEHOLDER.to_string()}),
            from: None,
            ts: 1,
            seq: SEQ_PLACEHOLDER,
        });
        let text = frame_of(&item);
        let (before, after) = split_at_seq(&text).unwrap();
        let frame = format!("{before}7{after}");
        let back: StreamItem = serde_json::from_str(&frame).unwrap();
        assert_eq!(back.seq(), 7);
        assert!(frame.contains(&SEQ_PLACEHOLDER.to_string()), "data kept");
    }

    #[test]
    fn history_entries_keep_their_event() {
        let e = Entry::parse(b"m3:a:b{\"x\":1}").unwrap();
        assert_eq!(e.event.as_deref(), Some("a:b"));
        assert_eq!(&*e.frame, "{\"x\":1}");
        assert!(Entry::parse(b"d{}").unwrap().event.is_none());
        assert!(Entry::parse(b"m9:ab").is_err());
    }

    #[test]
    fn bus_payloads_parse_back() {
        let r = parse_payload(b"3\ne-1\n42\n\n{\"a\":\"x\\ny\"}").unwrap();
        assert_eq!(r.origin, 3);
        assert_eq!(r.stream, Some((Epoch("e-1".into()), 42)));
        assert_eq!(r.except, None);
        let r = parse_payload(b"3\n\n\n7\n{}").unwrap();
        assert_eq!((r.stream, r.except), (None, Some(7)));
    }
}
