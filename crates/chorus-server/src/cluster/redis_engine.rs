//! [`RedisEngine`]: streams, shared state, presence, rooms, resource records and ingestion
//! marks in Redis, shared by every node; this node's fan-out sets in its
//! [`InProcessEngine`] (see the module docs of [`cluster`](super)).

use std::cell::RefCell;
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use chorus_protocol::http::ChannelStats;
use chorus_protocol::{
    CursorState, Epoch, Member, Millis, PresenceStatus, StateData, StateSnapshot, StateVersion,
    StreamItem, StreamPosition,
};
use redis::{FromRedisValue, Script, Value};

use super::bus::Bus;
use super::keys::Keys;
use super::link::CommandLink;
use super::redis_presence::{GraceTimer, PresenceScripts};
use super::redis_records::RecordStore;
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
pub(super) const SEQ_PLACEHOLDER: u64 = u64::MAX;

/// The scripts, hashed once (EVALSHA, loaded on first use).
struct Scripts {
    position: Script,
    append: Script,
    relay: Script,
    read_recent: Script,
    discard: Script,
    share: Script,
    stats: Script,
    read_after: Script,
    write_state: Script,
    read_state: Script,
}

/// What this node has delivered of a channel it has subscribers on.
struct Delivered {
    epoch: Epoch,
    /// The last `seq` handed to this node's subscribers (or accounted for in `pending`).
    seq: u64,
    /// The last place in the channel's one order (`bseq`) handed to this node's subscribers
    /// (or accounted for in `pending`): every frame of the channel, stream item or not, is
    /// delivered in this order on every node (CLUS-7).
    order: u64,
    /// Frames other nodes published that an append of this node revealed, still to be
    /// sent before the next frame of the channel.
    pending: Vec<Frame>,
    /// The node lost the channel's continuity; its subscribers are evicted (CLUS-9).
    broken: bool,
    /// Connections sent a presence snapshot that reflects the channel's order up to a place
    /// this node has not delivered yet: the presence events up to there are held back from
    /// them (PRES-7 across nodes).
    held: Vec<(ConnId, u64)>,
}

impl Delivered {
    fn new(epoch: Epoch, seq: u64, order: u64) -> Delivered {
        Delivered {
            epoch,
            seq,
            order,
            pending: Vec::new(),
            broken: false,
            held: Vec::new(),
        }
    }
}

/// The Redis engine of one node.
pub struct RedisEngine {
    local: InProcessEngine,
    pub(super) redis: RefCell<CommandLink>,
    pub(super) keys: Keys,
    pub(super) node: u64,
    pub(super) presence: PresenceScripts,
    /// Resource records and ingestion marks (CLUS-14).
    pub(super) records: RecordStore,
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
    /// The frame of the last append or state write: [`Engine::relay`] does not publish it
    /// again (the append or write script did).
    appended: Option<Frame>,
    /// Presence events the lease and update scripts published with their change, oldest
    /// first, each with what this node's subscribers must get before it: the core's relay
    /// of the same frame does not publish it again.
    announced: Vec<(Frame, Delivery)>,
    /// Frames of the last delivery that some subscribers must not get (see
    /// [`Engine::take_held_back`]).
    held_back: Vec<(Frame, Vec<ConnId>)>,
    /// This node's share of the statistics (`c:{tenant}`, `s:C` -> count), as written to
    /// `P:stats:N`.
    share: HashMap<String, i64>,
    /// A write of the share failed: rewrite it whole at the next liveness renewal.
    share_dirty: std::cell::Cell<bool>,
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
    /// keeps what is per node (fan-out sets, idle sweeps).
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
            records: RecordStore::default(),
            grace: BTreeSet::new(),
            grace_ms,
            next_liveness: 0,
            retention: retention.max(1),
            bus,
            scripts: Scripts {
                position: Script::new(scripts::POSITION),
                append: Script::new(&scripts::append()),
                relay: Script::new(&scripts::relay()),
                read_recent: Script::new(scripts::READ_RECENT),
                discard: Script::new(scripts::DISCARD),
                share: Script::new(scripts::SHARE),
                stats: Script::new(scripts::STATS),
                read_after: Script::new(scripts::READ_AFTER),
                write_state: Script::new(&scripts::write_state()),
                read_state: Script::new(scripts::READ_STATE),
            },
            delivering: HashMap::new(),
            appended: None,
            announced: Vec::new(),
            held_back: Vec::new(),
            share: HashMap::new(),
            share_dirty: std::cell::Cell::new(false),
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

    /// The local part (records and marks live in Redis, CLUS-14; its store holds only
    /// what the node keeps for itself).
    pub fn local(&self) -> &InProcessEngine {
        &self.local
    }

    /// Counts `seq` of `key`, at `order` in the channel's bus order, as delivered.
    pub(super) fn mark_delivered(&mut self, key: &ChannelKey, seq: u64, order: u64) {
        if let Some(d) = self.delivering.get_mut(key) {
            d.seq = seq;
            d.order = order;
        }
    }

    /// Forgets every channel this node delivered (the bus was lost, CLUS-9).
    pub fn forget_deliveries(&mut self) {
        self.delivering.clear();
        self.appended = None;
        self.announced.clear();
    }

    /// The arguments of the Lua `announce` (scripts.rs) after the keys: candidate epoch,
    /// origin node, bus channel, length of the recent list, what this node delivers, and
    /// the connection the frame is not for.
    pub(super) fn announce_args(&self, key: &ChannelKey, except: Option<ConnId>) -> [Vec<u8>; 7] {
        let (known, delivered) = self.delivered_args(key);
        [
            new_epoch().into_bytes(),
            self.node.to_string().into_bytes(),
            self.keys.bus(key).into_bytes(),
            self.retention.to_string().into_bytes(),
            known,
            delivered,
            except
                .map(|c| c.to_string())
                .unwrap_or_default()
                .into_bytes(),
        ]
    }

    /// The keys of the Lua `announce`: meta, history, recent.
    pub(super) fn announce_keys(&self, key: &ChannelKey) -> [String; 3] {
        [
            self.keys.meta(key),
            self.keys.history(key),
            self.keys.recent(key),
        ]
    }

    /// A script published `frame` with its change (`announce`'s reply `{epoch, bseq,
    /// complete, missed...}`): what must be delivered before it waits for the core's relay.
    pub(super) fn note_announced(&mut self, key: &ChannelKey, frame: Frame, reply: Vec<Value>) {
        let mut reply = reply.into_iter();
        let parsed = string(reply.next().as_ref())
            .and_then(|epoch| parse_published(Epoch(epoch), reply.collect()));
        match parsed {
            Ok(published) => {
                let delivery = self.deliver_published(key, published);
                self.announced.push((frame, delivery));
            }
            Err(e) => self.fail("announce", e),
        }
    }

    /// `conn` was sent a presence snapshot of `key` reflecting the channel's order up to
    /// `at` in `epoch`: what this node has not delivered of it yet is held back from `conn`.
    pub(super) fn hold_back_until(&mut self, key: &ChannelKey, conn: ConnId, epoch: &str, at: u64) {
        if self.faults.on(Fault::ClusterNodeSnapshotUnfiltered) {
            return; // PRES-7 broken on purpose across nodes
        }
        if let Some(d) = self.delivering.get_mut(key) {
            if d.epoch.as_str() == epoch && at > d.order {
                d.held.push((conn, at));
            }
        }
    }

    /// The scripts' announcement of `frame`, if one published it: what must be delivered
    /// before it, with what announcements the core did not relay left before that (a
    /// deliberate bug's frame in their place).
    fn take_announced(&mut self, frame: &Frame) -> Option<Delivery> {
        let at = self.announced.iter().position(|(f, _)| **f == **frame)?;
        let mut frames = Vec::new();
        for (_, delivery) in self.announced.drain(..=at) {
            match delivery {
                Delivery::Frames(mut f) => frames.append(&mut f),
                _ => return Some(Delivery::Discontinuity),
            }
        }
        Some(Delivery::Frames(frames))
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

    /// The channel's position in Redis, creating its epoch when missing, with its place in
    /// the bus order.
    fn stored_position(&self, key: &ChannelKey) -> Result<(StreamPosition, u64), String> {
        let keys = [self.keys.meta(key)];
        let reply = self.run(&self.scripts.position, &keys, &[new_epoch().into_bytes()])?;
        let parts = array(reply)?;
        let position = StreamPosition {
            epoch: Epoch(string(parts.first())?),
            seq: int(parts.get(1))? as u64,
        };
        Ok((position, int(parts.get(2))? as u64))
    }

    /// The recent payloads of `key` after `after` and up to `upto` in the bus order, or
    /// `None` when some are no longer kept (or the epoch moved on).
    fn recent_between(
        &self,
        key: &ChannelKey,
        epoch: &Epoch,
        after: u64,
        upto: u64,
    ) -> Option<Vec<Remote>> {
        let keys = [self.keys.meta(key), self.keys.recent(key)];
        let args = [
            after.to_string().into_bytes(),
            upto.to_string().into_bytes(),
        ];
        let parsed = (|| -> Result<Option<Vec<Remote>>, String> {
            let parts = array(self.run(&self.scripts.read_recent, &keys, &args)?)?;
            let same = match parts.first() {
                Some(Value::Nil) | None => false,
                v => string(v)? == epoch.as_str(),
            };
            if !same || int(parts.get(2))? != 1 {
                return Ok(None);
            }
            Ok(Some(missed_of(parts.into_iter().skip(3))?))
        })();
        parsed.unwrap_or_else(|e| {
            self.fail("read recent", e);
            None
        })
    }

    /// Accounts for `missed` (frames of other nodes, in the bus order) and `frame` at
    /// `order`: the frames this node's subscribers must get, in order, or `None` when the
    /// channel's continuity is lost (CLUS-9).
    fn advance(
        &mut self,
        key: &ChannelKey,
        epoch: &Epoch,
        missed: Vec<Remote>,
        last: Option<(Frame, u64, Option<u64>)>,
    ) -> Option<Vec<Frame>> {
        let d = self.delivering.get_mut(key)?;
        if d.broken || d.epoch != *epoch {
            tracing::warn!(channel = %key.name, have = %d.epoch.as_str(), got = %epoch.as_str(), "the channel moved to another epoch: evicting subscribers");
            d.broken = true;
            return None;
        }
        let mut frames = std::mem::take(&mut d.pending);
        for m in missed {
            if m.order.0 != d.epoch {
                d.broken = true;
                return None;
            }
            if m.order.1 <= d.order {
                continue;
            }
            if let Some((_, seq)) = m.stream {
                d.seq = d.seq.max(seq);
            }
            d.order = m.order.1;
            hold_back(&mut self.held_back, &d.held, &m.frame, m.order.1);
            frames.push(m.frame);
        }
        if let Some((frame, order, seq)) = last {
            if order > d.order {
                d.order = order;
                if let Some(seq) = seq {
                    d.seq = d.seq.max(seq);
                }
                hold_back(&mut self.held_back, &d.held, &frame, order);
                frames.push(frame);
            }
        }
        let delivered = d.order;
        d.held.retain(|(_, at)| *at > delivered);
        Some(frames)
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

    /// Runs the write script with the event split around its version and epoch; the
    /// outcome, the version, and (when applied) the publish's reply after them.
    fn write_state_script(
        &self,
        key: &ChannelKey,
        write: &StateWrite,
        expected: &Expected,
        max_bytes: usize,
        event: (&str, &str, &str),
    ) -> Result<(i64, StateVersion, Vec<Value>), String> {
        let (known, delivered) = self.delivered_args(key);
        let mut args: Vec<Vec<u8>> = vec![
            new_epoch().into_bytes(),
            if self.event_detached() {
                b"quiet".to_vec() // CLUS-7 broken on purpose (fault_hooks.rs)
            } else {
                Vec::new()
            },
            self.node.to_string().into_bytes(),
            self.keys.bus(key).into_bytes(),
            self.retention.to_string().into_bytes(),
            known,
            delivered,
            Vec::new(), // every subscriber gets a state event, the writer too (STATE-15)
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
            event.0.as_bytes().to_vec(),
            event.1.as_bytes().to_vec(),
            event.2.as_bytes().to_vec(),
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
        let keys = [
            self.keys.meta(key),
            self.keys.history(key),
            self.keys.recent(key),
            self.keys.state(key),
        ];
        let mut parts = array(self.run(&self.scripts.write_state, &keys, &args)?)?;
        let outcome = int(parts.first())?;
        let version = StateVersion {
            epoch: Epoch(string(parts.get(1))?),
            version: int(parts.get(2))? as u64,
        };
        let published = parts.split_off(parts.len().min(3));
        Ok((outcome, version, published))
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

    /// Adds `delta` to this node's share of a statistic (HTTP-14a, HTTP-14b) and writes
    /// the new count to Redis. The node's own counts are the truth: a write that fails
    /// (Redis away) only marks the share for a full rewrite at the next liveness renewal,
    /// and closes nobody (statistics are no acknowledged write).
    fn count(&mut self, field: String, delta: i64) {
        let n = self.share.entry(field.clone()).or_insert(0);
        *n = n.saturating_add(delta).max(0);
        let n = *n;
        if n == 0 {
            self.share.remove(&field);
        }
        if let Err(e) = self.write_share(false, &[(field, n)]) {
            tracing::warn!(error = %e, "redis statistics write failed; rewritten later");
            self.share_dirty.set(true);
        }
    }

    fn write_share(&self, whole: bool, fields: &[(String, i64)]) -> Result<Value, String> {
        let ttl = super::redis_presence::LIVENESS_TTL_MS.to_string();
        let mut args = vec![
            if whole { b"1".to_vec() } else { b"0".to_vec() },
            ttl.into_bytes(),
        ];
        for (field, n) in fields {
            args.push(field.as_bytes().to_vec());
            args.push(n.to_string().into_bytes());
        }
        self.run(&self.scripts.share, &[self.keys.stats(self.node)], &args)
    }

    /// Rewrites this node's whole share of the statistics when a write of it failed.
    pub(super) fn rewrite_share_if_needed(&self) {
        if !self.share_dirty.get() {
            return;
        }
        let all: Vec<(String, i64)> = self.share.iter().map(|(f, n)| (f.clone(), *n)).collect();
        if self.write_share(true, &all).is_ok() {
            self.share_dirty.set(false);
        }
    }

    /// The tenant's statistics summed over the live nodes.
    fn deployment_stats(&self, tenant: &str) -> Result<((u64, u64), Vec<ChannelStats>), String> {
        let ids = format!("{}:{tenant}", tenant.len());
        let args = [
            self.keys.prefix().as_bytes().to_vec(),
            tenant.as_bytes().to_vec(),
            ids.into_bytes(),
        ];
        let parts = array(self.run(&self.scripts.stats, &[], &args)?)?;
        let totals = (int(parts.first())? as u64, int(parts.get(1))? as u64);
        let mut channels = Vec::new();
        for entry in parts[2.min(parts.len())..].chunks(3) {
            let id = string(entry.first())?;
            let key = Keys::channel_of_id(&id).ok_or("bad channel id")?;
            channels.push(ChannelStats {
                name: key.name,
                subscribers: int(entry.get(1))? as u64,
                members: int(entry.get(2))? as u64,
            });
        }
        channels.sort_by(|a, b| a.name.cmp(&b.name));
        Ok((totals, channels))
    }

    /// What this node delivers of `key`, as the scripts' ARGV 6 and 7.
    fn delivered_args(&self, key: &ChannelKey) -> (Vec<u8>, Vec<u8>) {
        match self.delivering.get(key) {
            Some(d) => (
                d.epoch.as_str().as_bytes().to_vec(),
                d.order.to_string().into_bytes(),
            ),
            None => (Vec::new(), b"-1".to_vec()),
        }
    }

    /// Publishes an ephemeral frame in the channel's bus order; what this node's
    /// subscribers must get before it.
    fn publish_ephemeral(
        &mut self,
        key: &ChannelKey,
        frame: &Frame,
        except: Option<ConnId>,
    ) -> Delivery {
        let keys = self.announce_keys(key);
        let mut args = self.announce_args(key, except).to_vec();
        args.push(frame.as_bytes().to_vec());
        let parsed = (|| -> Result<_, String> {
            let mut parts = array(self.run(&self.scripts.relay, &keys, &args)?)?;
            let rest = parts.split_off(parts.len().min(1));
            let epoch = Epoch(string(parts.first())?);
            parse_published(epoch, rest)
        })();
        match parsed {
            Ok(published) => self.deliver_published(key, published),
            Err(e) => {
                self.fail("publish", e);
                Delivery::Frames(Vec::new())
            }
        }
    }

    /// What this node's subscribers of `key` must get before a frame this node just
    /// published (CLUS-7).
    fn deliver_published(&mut self, key: &ChannelKey, published: Published) -> Delivery {
        let Published {
            epoch,
            order,
            complete,
            missed,
        } = published;
        if !self.delivering.contains_key(key) {
            return Delivery::Frames(Vec::new()); // no subscriber here
        }
        if !complete {
            if let Some(d) = self.delivering.get_mut(key) {
                d.broken = true;
            }
            return Delivery::Discontinuity;
        }
        // The frame itself is delivered by the core after the missed ones.
        match self.advance(key, &epoch, missed, None) {
            Some(frames) => {
                if let Some(d) = self.delivering.get_mut(key) {
                    d.order = d.order.max(order);
                }
                Delivery::Frames(frames)
            }
            None => Delivery::Discontinuity,
        }
    }
}

/// Notes that `frame`, at `order`, is held back from the connections whose snapshot
/// reflects it, when it is a presence event.
fn hold_back(
    out: &mut Vec<(Frame, Vec<ConnId>)>,
    held: &[(ConnId, u64)],
    frame: &Frame,
    order: u64,
) {
    if held.is_empty() || !is_presence_event(frame) {
        return;
    }
    let conns: Vec<ConnId> = held
        .iter()
        .filter(|(_, at)| *at >= order)
        .map(|(c, _)| *c)
        .collect();
    if !conns.is_empty() {
        out.push((frame.clone(), conns));
    }
}

/// `user:joined`, `user:left`, `presence:updated`: the changes a presence snapshot reflects.
fn is_presence_event(frame: &str) -> bool {
    [
        r#"{"type":"user:joined""#,
        r#"{"type":"user:left""#,
        r#"{"type":"presence:updated""#,
    ]
    .iter()
    .any(|p| frame.starts_with(p))
}

/// A publishing script's reply: the frame's place in the channel's one order, and what
/// this node missed before it.
struct Published {
    epoch: Epoch,
    order: u64,
    complete: bool,
    missed: Vec<Remote>,
}

/// Parses `{bseq, complete, missed payloads...}` (after the epoch and what else a script
/// returns first).
fn parse_published(epoch: Epoch, parts: Vec<Value>) -> Result<Published, String> {
    let order = int(parts.first())? as u64;
    let complete = int(parts.get(1))? == 1;
    let missed = missed_of(parts.into_iter().skip(2))?;
    Ok(Published {
        epoch,
        order,
        complete,
        missed,
    })
}

/// Splits a state event serialized at [`StateVersion`] `u64::MAX` with an empty epoch
/// around the version and the epoch: the last such pair is the event's own (user data
/// comes before it; the fields after it, `from` and `ts`, cannot hold it).
fn split_at_version(frame: &str) -> Result<(&str, &str, &str), CoreError> {
    let marker = format!(r#""version":{},"epoch":"""#, SEQ_PLACEHOLDER);
    let at = frame
        .rfind(&marker)
        .ok_or_else(|| CoreError::Engine("state event without its version".into()))?;
    let version_at = at + r#""version":"#.len();
    let epoch_at = at + marker.len() - 1;
    Ok((
        &frame[..version_at],
        &frame[version_at + SEQ_PLACEHOLDER.to_string().len()..epoch_at],
        &frame[epoch_at..],
    ))
}

/// Parses the missed payloads a script returned.
fn missed_of(values: impl Iterator<Item = Value>) -> Result<Vec<Remote>, String> {
    values
        .map(|v| {
            bytes(v).and_then(|b| {
                parse_payload(&b).ok_or_else(|| "unreadable recent payload".to_owned())
            })
        })
        .collect()
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
pub(super) fn split_at_seq(frame: &str) -> Result<(&str, &str), CoreError> {
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

pub(super) fn string(v: Option<&Value>) -> Result<String, String> {
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

/// Parses a bus payload `origin\nbseq\nepoch\nseq\nexcept\nframe` (seq empty for an
/// ephemeral frame, except empty when the frame is for every subscriber).
pub fn parse_payload(payload: &[u8]) -> Option<Remote> {
    let text = std::str::from_utf8(payload).ok()?;
    let mut parts = text.splitn(6, '\n');
    let origin = parts.next()?.parse().ok()?;
    let order: u64 = parts.next()?.parse().ok()?;
    let epoch = Epoch(parts.next()?.to_owned());
    let seq = parts.next()?;
    let except = match parts.next()? {
        "" => None,
        c => Some(c.parse().ok()?),
    };
    let frame = parts.next()?;
    let stream = if seq.is_empty() {
        None
    } else {
        Some((epoch.clone(), seq.parse().ok()?))
    };
    Some(Remote {
        origin,
        stream,
        order: (epoch, order),
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
        self.stored_position(key)
            .map(|(p, _)| p)
            .unwrap_or_else(|e| {
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
        let (known, delivered) = self.delivered_args(key);
        let keys = [
            self.keys.meta(key),
            self.keys.history(key),
            self.keys.recent(key),
        ];
        let args = [
            new_epoch().into_bytes(),
            before.as_bytes().to_vec(),
            self.node.to_string().into_bytes(),
            self.keys.bus(key).into_bytes(),
            self.retention.to_string().into_bytes(),
            known,
            delivered,
            after.as_bytes().to_vec(),
            Entry::header(&item).into_bytes(),
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
            let order = int(parts.get(2))? as u64;
            let complete = int(parts.get(3))? == 1;
            let missed = missed_of(parts.into_iter().skip(4))?;
            Ok((epoch, seq, order, complete, missed))
        })()
        .map_err(|e| CoreError::Engine(format!("redis append: {e}")))?;
        let (epoch, seq, order, complete, missed) = parsed;
        let frame: Frame = Arc::from(format!("{before}{seq}{after}"));
        if self.delivering.contains_key(key) {
            // CLUS-9: the broker lost the stream, or this node lagged too far.
            let frames = complete
                .then(|| self.advance(key, &epoch, missed, None))
                .flatten();
            if let Some(d) = self.delivering.get_mut(key) {
                match frames {
                    Some(frames) => d.pending = frames,
                    None => d.broken = true,
                }
                d.epoch = epoch;
                d.seq = seq;
                d.order = d.order.max(order);
            }
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
            self.keys.recent(key),
            self.keys.state(key),
            self.keys.presence(key),
            self.keys.leases(key),
            self.keys.room(key),
            self.keys.cursors(key),
        ];
        let epoch = new_epoch();
        let args = [
            epoch.clone().into_bytes(),
            self.keys.bus(key).into_bytes(),
            self.node.to_string().into_bytes(),
        ];
        self.run(&self.scripts.discard, &keys, &args)
            .map_err(|e| CoreError::Engine(format!("redis discard: {e}")))?;
        if let Some(d) = self.delivering.get_mut(key) {
            // Watchers stay subscribed: this node delivers the new epoch from its start, as
            // the other nodes do once the reset reaches them.
            *d = Delivered::new(Epoch(epoch), 0, 0);
        }
        // The fan-out set is the node's, not the channel's data: it stays (ROOM-23).
        let watchers: Vec<ConnId> = self.local.subscribers(key).collect();
        self.local.discard(key)?;
        for conn in watchers {
            self.local.add_subscriber(key, conn);
        }
        Ok(())
    }

    fn add_subscriber(&mut self, key: &ChannelKey, conn: ConnId) {
        if !self.local.subscribers(key).any(|c| c == conn) {
            self.count(format!("s:{}", Keys::channel_id(key)), 1);
        }
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
            Ok((p, order)) => {
                self.delivering
                    .insert(key.clone(), Delivered::new(p.epoch, p.seq, order));
            }
            Err(e) => self.fail("position", e),
        }
    }

    fn remove_subscriber(&mut self, key: &ChannelKey, conn: ConnId) {
        if self.local.subscribers(key).any(|c| c == conn) {
            self.count(format!("s:{}", Keys::channel_id(key)), -1);
        }
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
        if let Some(delivery) = self.take_announced(frame) {
            return delivery; // published by the presence change's own script
        }
        let appended = self.appended.take().is_some_and(|a| Arc::ptr_eq(&a, frame));
        if !appended && self.faults.on(Fault::ClusterEphemeralUnpublished) {
            return Delivery::Frames(Vec::new()); // CLUS-7 broken on purpose: this node only
        }
        if !appended {
            // An ephemeral frame: published with its place in the channel's one order and
            // delivered here at once, after what other nodes published before it (CLUS-7).
            return self.publish_ephemeral(key, frame, except);
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
        let (epoch, order) = remote.order.clone();
        if order == 0 && remote.frame.is_empty() && !d.broken {
            // A node discarded the channel (ROOM-17, STATE-26): a new epoch on purpose,
            // announced on the bus before any frame of it, not a loss (CLUS-9).
            let fresh = Delivered::new(epoch, 0, 0);
            self.delivering.insert(key.clone(), fresh);
            return Delivery::NewEpoch;
        }
        if d.broken || epoch != d.epoch {
            tracing::warn!(channel = %key.name, have = %d.epoch.as_str(), got = %epoch.as_str(), "bus frame of another epoch: evicting subscribers");
            return Delivery::Discontinuity; // CLUS-9
        }
        if order <= d.order {
            // Already delivered (this node's own frame, or one a gap fill brought).
            return Delivery::Frames(Vec::new());
        }
        if let Some((_, seq)) = remote
            .stream
            .as_ref()
            .filter(|_| self.faults.on(Fault::ClusterRemoteItemLost))
        {
            if seq % 2 == 0 {
                return self.lose_remote(key, *seq, order); // CLUS-1 broken on purpose
            }
        }
        let delivered = d.order;
        let missed = if order > delivered + 1 {
            match self.recent_between(key, &epoch, delivered, order - 1) {
                Some(missed) => missed,
                None => {
                    tracing::warn!(channel = %key.name, delivered, order, "missed bus frames no longer kept: evicting subscribers");
                    return Delivery::Discontinuity;
                }
            }
        } else {
            Vec::new()
        };
        let seq = remote.stream.map(|(_, s)| s);
        match self.advance(key, &epoch, missed, Some((remote.frame, order, seq))) {
            Some(frames) => Delivery::Frames(frames),
            None => Delivery::Discontinuity,
        }
    }

    fn keep_cursors(&mut self, key: &ChannelKey, entries: &[(String, String)]) {
        if entries.is_empty() {
            return;
        }
        let mut hset = redis::cmd("HSET");
        hset.arg(self.keys.cursors(key));
        for (user, json) in entries {
            hset.arg(user).arg(json);
        }
        if let Err(e) = hset.query::<i64>(&mut *self.redis.borrow_mut()) {
            self.fail("cursors", e);
        }
    }

    fn forget_cursor(&mut self, key: &ChannelKey, user: &str) {
        let done = redis::cmd("HDEL")
            .arg(self.keys.cursors(key))
            .arg(user)
            .query::<i64>(&mut *self.redis.borrow_mut());
        if let Err(e) = done {
            self.fail("cursors", e);
        }
    }

    fn shared_cursors(&self, key: &ChannelKey) -> Option<Vec<CursorState>> {
        let got: Result<Vec<(String, String)>, _> = redis::cmd("HGETALL")
            .arg(self.keys.cursors(key))
            .query(&mut *self.redis.borrow_mut());
        match got {
            Ok(all) => Some(
                all.iter()
                    .filter_map(|(_, json)| serde_json::from_str(json).ok())
                    .collect(),
            ),
            Err(e) => {
                self.fail("cursors", e);
                None
            }
        }
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

    fn snapshot_members(&mut self, key: &ChannelKey, conn: ConnId) -> Vec<Member> {
        self.redis_snapshot_members(key, conn)
    }

    fn take_held_back(&mut self) -> Vec<(Frame, Vec<ConnId>)> {
        std::mem::take(&mut self.held_back)
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
        event: &mut dyn FnMut(&StateVersion) -> Frame,
    ) -> Result<(StateVersion, Frame), CoreError> {
        let placeholder = StateVersion {
            version: SEQ_PLACEHOLDER,
            epoch: Epoch(String::new()),
        };
        let text = event(&placeholder);
        let parts = split_at_version(&text)?;
        let (outcome, version, published) = self
            .write_state_script(key, write, expected, max_bytes, parts)
            .map_err(|e| CoreError::Engine(format!("redis state write: {e}")))?;
        match outcome {
            1 => {
                let (before, between, after) = parts;
                let frame: Frame = Arc::from(format!(
                    "{before}{}{between}{}{after}",
                    version.version,
                    version.epoch.as_str()
                ));
                if self.event_detached() {
                    self.delay_detached_event(version.version);
                    return Ok((version, frame)); // relayed apart (or not at all) by relay()
                }
                // The write published its event (CLUS-7): what must be delivered before it
                // waits for the core's relay of the frame.
                let published = parse_published(version.epoch.clone(), published)
                    .map_err(|e| CoreError::Engine(format!("redis state write: {e}")))?;
                let delivery = self.deliver_published(key, published);
                if let Some(d) = self.delivering.get_mut(key) {
                    match delivery {
                        Delivery::Frames(frames) => d.pending = frames,
                        _ => d.broken = true,
                    }
                }
                self.appended = Some(frame.clone());
                Ok((version, frame))
            }
            0 => Err(CoreError::Conflict { current: version }),
            _ => Err(CoreError::LimitExceeded {
                limit: "max_frame_bytes",
            }),
        }
    }

    fn active_channels(&self, tenant: &str) -> Vec<ChannelStats> {
        self.deployment_stats(tenant).map_or_else(
            |e| {
                self.fail("statistics", e);
                Vec::new()
            },
            |(_, channels)| channels,
        )
    }

    fn count_connection(&mut self, tenant: &str, delta: i64) {
        self.count(format!("c:{tenant}"), delta);
    }

    fn totals(&self, tenant: &str, _local: (u64, u64)) -> (u64, u64) {
        self.deployment_stats(tenant).map_or_else(
            |e| {
                self.fail("statistics", e);
                (0, 0)
            },
            |(totals, _)| totals,
        )
    }

    fn record(
        &self,
        tenant: &str,
        resource: &str,
        id: &str,
    ) -> Result<Option<serde_json::Value>, CoreError> {
        if self.faults.on(Fault::ClusterRecordsNodeLocal) {
            return self.local.record(tenant, resource, id); // CLUS-14 broken on purpose
        }
        self.shared_record(tenant, resource, id)
    }

    fn records(
        &self,
        tenant: &str,
        resource: &str,
        after: Option<&str>,
        limit: u64,
    ) -> Result<RecordPage, CoreError> {
        if self.faults.on(Fault::ClusterRecordsNodeLocal) {
            return self.local.records(tenant, resource, after, limit);
        }
        self.shared_records(tenant, resource, after, limit)
    }

    fn put_record(
        &mut self,
        tenant: &str,
        resource: &str,
        id: &str,
        data: &serde_json::Value,
        create: bool,
    ) -> Result<(), CoreError> {
        if self.faults.on(Fault::ClusterRecordsNodeLocal) {
            return self.local.put_record(tenant, resource, id, data, create);
        }
        self.put_shared_record(tenant, resource, id, data, create)
    }

    fn delete_record(&mut self, tenant: &str, resource: &str, id: &str) -> Result<(), CoreError> {
        if self.faults.on(Fault::ClusterRecordsNodeLocal) {
            return self.local.delete_record(tenant, resource, id);
        }
        self.delete_shared_record(tenant, resource, id)
    }

    fn begin_batch(&mut self) -> Result<(), CoreError> {
        self.begin_shared_batch();
        Ok(())
    }

    fn end_batch(&mut self, commit: bool) -> Result<(), CoreError> {
        self.end_shared_batch(commit)
    }

    fn mark(&self, source: &str, key: &str) -> Result<Option<String>, CoreError> {
        self.shared_mark(source, key)
    }

    fn set_mark(
        &mut self,
        source: &str,
        key: &str,
        value: &str,
        at: Millis,
    ) -> Result<(), CoreError> {
        self.set_shared_mark(source, key, value, at)
    }

    fn forget_marks(&mut self, source: &str, before: Millis) -> Result<usize, CoreError> {
        self.forget_shared_marks(source, before)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chorus_protocol::{ChannelName, Message, ServerMessage};

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
    fn the_state_placeholders_are_found_after_values_that_contain_them() {
        let marker = serde_json::json!({"version": SEQ_PLACEHOLDER, "epoch": ""});
        let msg = ServerMessage::StateUpdate(chorus_protocol::StateUpdated {
            channel: ChannelName("s".into()),
            key: "k".into(),
            value: marker.clone(),
            version: SEQ_PLACEHOLDER,
            epoch: Epoch(String::new()),
            from: Some(r#"","version":1,"epoch":""#.to_owned()),
            ts: 1,
        });
        let text = frame_of(&msg);
        let (before, between, after) = split_at_version(&text).unwrap();
        let frame = format!("{before}7{between}e-9{after}");
        let ServerMessage::StateUpdate(back) = serde_json::from_str(&frame).unwrap() else {
            panic!("not a state:update: {frame}");
        };
        assert_eq!((back.version, back.epoch.as_str()), (7, "e-9"));
        assert_eq!(back.value, marker, "the value is kept");
        assert!(split_at_version("{}").is_err());
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
        let r = parse_payload(b"3\n9\ne-1\n42\n\n{\"a\":\"x\\ny\"}").unwrap();
        assert_eq!(r.origin, 3);
        assert_eq!(r.stream, Some((Epoch("e-1".into()), 42)));
        assert_eq!(r.order, (Epoch("e-1".into()), 9));
        assert_eq!(r.except, None);
        assert_eq!(&*r.frame, "{\"a\":\"x\\ny\"}");
        let r = parse_payload(b"3\n10\ne-1\n\n7\n{}").unwrap();
        assert_eq!((r.stream, r.except), (None, Some(7)));
        assert!(
            parse_payload(b"3\n\ne-1\n\n\n{}").is_none(),
            "no place in the order"
        );
    }
}
