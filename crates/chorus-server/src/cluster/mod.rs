//! Chorus on several nodes sharing one Redis (spec: cluster.md, `CLUS-n`).
//!
//! # The boundary
//! The core stays a deterministic state machine over the [`Engine`] trait. Every engine
//! call is one command with its result, made while the shell holds the core; the in-process
//! engine answers from memory, [`RedisEngine`] with one blocking round trip on its own
//! command connection (a server-side script where the spec needs atomicity). Handlers do
//! not know which engine runs. What only an I/O engine has enters the core as inputs: a
//! frame another node published arrives on the node's [`bus`](bus::Bus) and the shell hands
//! it to [`Core::deliver_remote`](crate::core::Core::deliver_remote); the engine orders it
//! against what this node delivered ([`Engine::accept_remote`]) and the core fans it out.
//! The engine never calls the shell back and never blocks on the runtime: its waits (a
//! command reply, a subscribe confirmation) are on sockets and threads of its own.
//!
//! Why not a command/result queue that suspends a handler mid-way (quinn-proto style):
//! every handler would become a resumable state machine split at each engine call; the
//! blocking boundary keeps each handler one atomic step with one lock, at the price of
//! one Redis round trip per engine call under that lock (figures in docs/).
//!
//! # One order per channel (CHAN-46, CLUS-1, CLUS-7)
//! Every frame of a channel, stream item or ephemeral (presence, state, cursor batches),
//! is published by one script that gives it the channel's next place in its bus order
//! (`bseq`), keeps the payload in `P:recent:C` and publishes it; Redis runs scripts one at
//! a time and delivers a channel's publishes in that order to every node. A node delivers
//! a channel strictly in `bseq` order: its own frame at once (no reply is held: TRANS-25
//! and TRANS-26 hold as on one server), after the frames of other nodes that precede it,
//! which the script returns from `P:recent:C` when this node has not received them yet;
//! a bus frame with a gap before it is filled the same way, and a bus frame at or below
//! what the node delivered is a duplicate (its own, or one a gap fill brought). A gap no
//! longer kept, or a frame of another epoch, closes the node's subscribers with 4301
//! (CLUS-9). A discard (ROOM-17, STATE-26) starts the new epoch at once and publishes a
//! reset (`bseq` 0, no frame) that nodes follow instead of taking it for a loss.
//!
//! Why not hold replies behind the bus (every frame delivered only when the bus brings it
//! back): it adds a Redis round trip of latency to every local delivery, and needs a
//! per-connection queue of replies waiting for their connection's own frames; the gap
//! fill costs one `LRANGE` only when a node is behind, and nothing when it is not.
//!
//! Snapshots: a state frame another node published can reach this node after a snapshot
//! taken here already holds its write (it was in flight, or the writer published it just
//! after the write); the core does not send it to a connection whose snapshot holds that
//! version (`core::state::Snapshots`, STATE-22).
//!
//! # What lives in Redis (prefix `P`, channel id `C` = `{tenant length}:{tenant}{name}`)
//! - `P:meta:C` hash `epoch`, `seq`, `sver`, `slen`, `bseq`: the stream position, the
//!   shared state's version and the channel's place in its bus order
//!   ([`scripts::POSITION`], [`scripts::append`], [`scripts::relay`],
//!   [`scripts::WRITE_STATE`]).
//! - `P:hist:C` list of the retained items, `m<len>:<event><frame>` or `d<frame>`.
//! - `P:recent:C` list of the last bus payloads (as many as the retention), one per
//!   `bseq`: what a node that is behind fills its gap from ([`scripts::READ_RECENT`]).
//! - `P:state:C` hash of the shared state, compact JSON values.
//! - `P:curs:C` hash user -> latest flushed cursor, for `subscribed.cursors` (CURS-14);
//!   forgotten when the member leaves (CURS-12).
//! - `P:bus:C` pub/sub channel: `origin\nbseq\nepoch\nseq\nexcept\nframe` (seq empty
//!   for ephemeral frames).
//! - `P:nodes` counter: node numbers, the high bits of every connection id (CLUS-5).
//! - `P:stats:N` hash of node N's share of `GET /api/stats` (`c:{tenant}` connections,
//!   `s:C` subscribers), expiring with its liveness; summed by [`scripts::STATS`].
//! - `P:pres:C`, `P:lease:C` hashes: presence members by user and their leases
//!   ([`presence_scripts`]); `P:alive:N` (TTL), `P:nodeset`, `P:nodechans:N`, `P:dead:N`:
//!   node liveness and the sweep of a dead node's leases (CLUS-8).
//! - `P:room:C` string: the room's settings as JSON, created with `SET NX` (the first
//!   node to create it wins; persistent rooms are as durable as Redis).
//! - `P:rec:R`, `P:recix:R`, `P:recn:R` (resource id `R` = `{tenant length}:{tenant}
//!   {resource}`): the resource's records by id, their ids by creation number, and the
//!   counter of those numbers; `P:mark:S`, `P:markat:S`: ingestion source `S`'s marks and
//!   their times (CLUS-14, [`redis_records`]).
//!
//! # Redis operations
//! - publish (a `broadcast`, an HTTP publish, a `data_change`): one `EVALSHA` (HSETNX,
//!   HGET, 2 HINCRBY, 2 RPUSH, 2 LTRIM, PUBLISH; LLEN and LRANGE only when this node is
//!   behind), delivered by Redis to the nodes subscribed to the channel's bus, and only
//!   those; a node receiving it with a gap before it adds one `EVALSHA` (LRANGE).
//! - a state write or a presence change (a join, a departure, an update): one `EVALSHA`
//!   that makes the change and publishes its event in the channel's one order at once, as
//!   the publish script does with `seq`: the node builds the event beforehand with
//!   placeholders for what only the script knows (a state write's version and epoch, a
//!   departure's `last_seen`, an updated member's record), so that the events of a
//!   channel reach every subscriber in the order of the changes (CHAN-46). The core's
//!   relay of that frame then publishes nothing (`announced` in the engine).
//! - a presence snapshot: one `EVALSHA` reading the members with the channel's `bseq`, so
//!   the presence events up to there that this node has not delivered yet are held back
//!   from that subscriber (PRES-7; `held` in the engine).
//! - any other ephemeral frame (a node's cursor flush, a dead node's departures): one
//!   `EVALSHA` of the publish script's shape without the history, after the change (an
//!   `HSET` of `P:curs:C`; the dead-node sweep).
//! - subscribe: one `EVALSHA` (HINCRBY of the node's statistics); the node's first
//!   subscriber of a channel adds a `SUBSCRIBE` (confirmed) and a position script; a
//!   recovery adds one read script; unsubscribe the same `HINCRBY`, and the node's last
//!   subscriber an `UNSUBSCRIBE`. A connection opened or closed: one `HINCRBY`.
//! - `GET /api/stats`: two `EVALSHA` reading every live node's statistics hash and set of
//!   channels with leases, and `HLEN` of each listed channel's members.
//! - a resource write: `HGET` of the record (the core reads it first), one `EVALSHA` (a
//!   put: HEXISTS, HSET, and INCR and ZADD for a create; a delete: ZREM, HDEL), then the
//!   publishes of its two `data_change` frames; a read: one `HGET`, a page one `EVALSHA`
//!   (ZSCORE, ZRANGEBYSCORE, one HGET per record). A reported change or a feed
//!   transaction: `HGET` of its mark, its publishes, one `MULTI` (HSET, ZADD) of its marks.
//!
//! # Known limits
//! A batch of ingested changes is not one Redis transaction (its marks follow its frames,
//! see [`redis_records`] and CLUS-14), and an idempotency key is looked up and written in
//! two steps, so two nodes given one new key at the same moment may both announce it. A
//! dead node's departures are announced after the sweep's script, so a user of the dead
//! node joining through another node at that moment may be announced joined, then left.
//! A dead node's last flushed cursors stay in `P:curs:C`
//! until its members' leases are swept and a member of the channel leaves. See
//! spec/cluster.md for the requirements and conformance/tests/cluster.rs for the
//! three-node run.

pub mod bus;
mod fault_hooks;
pub mod keys;
pub mod link;
pub mod presence_scripts;
pub mod redis_engine;
mod redis_presence;
mod redis_records;
pub mod scripts;

use chorus_protocol::http::ChannelStats;
use chorus_protocol::{
    CursorState, Member, Millis, PresenceStatus, StateSnapshot, StateVersion, StreamItem,
    StreamPosition,
};

use crate::core::engine::{
    Delivery, Expected, GraceExpired, HistoryQuery, HistorySlice, LeaseTaken, RecordPage, Released,
    Remote, Room, StateWrite,
};
use crate::core::{ChannelKey, ConnId, CoreError, Engine, Frame, InProcessEngine};
use crate::store::Store;
pub use redis_engine::RedisEngine;

/// Bits of a connection id below the node number (CLUS-5): 2^40 connections per node run.
pub const NODE_SHIFT: u32 = 40;

/// The engine a server runs: the embedded default or the Redis cluster engine.
// One engine per server, never moved: the size difference costs nothing, and unboxed the
// in-process engine is reached without an indirection on every call.
#[allow(clippy::large_enum_variant)]
pub enum ServerEngine {
    /// Everything in this process.
    InProcess(InProcessEngine),
    /// Streams, state, presence, rooms, records and marks in Redis.
    Redis(RedisEngine),
}

impl ServerEngine {
    /// The node's local store (everything for the in-process engine; for the Redis engine
    /// nothing the deployment shares: records and marks are in Redis, CLUS-14).
    pub fn store(&self) -> &Store {
        match self {
            ServerEngine::InProcess(e) => e.store(),
            ServerEngine::Redis(e) => e.local().store(),
        }
    }

    /// The broker's pub/sub connection was lost: what this node delivered is no longer
    /// known to be complete, so it is forgotten (the next subscriber of a channel subscribes
    /// to its bus again and reads its position afresh).
    pub fn forget_deliveries(&mut self) {
        if let ServerEngine::Redis(e) = self {
            e.forget_deliveries();
        }
    }

    /// Whether this node is one of a cluster (a drain then closes with 4301, CLUS-11).
    pub fn is_clustered(&self) -> bool {
        matches!(self, ServerEngine::Redis(_))
    }

    /// A broker failure since the last call (always `None` in process).
    pub fn take_failure(&mut self) -> Option<String> {
        match self {
            ServerEngine::InProcess(_) => None,
            ServerEngine::Redis(e) => e.take_failure(),
        }
    }
}

/// Either engine's subscriber iterator, without boxing on the fan-out path.
pub enum Either<A, B> {
    /// The first.
    A(A),
    /// The second.
    B(B),
}

impl<A: Iterator<Item = ConnId>, B: Iterator<Item = ConnId>> Iterator for Either<A, B> {
    type Item = ConnId;
    fn next(&mut self) -> Option<ConnId> {
        match self {
            Either::A(a) => a.next(),
            Either::B(b) => b.next(),
        }
    }
}

macro_rules! both {
    ($self:expr, $e:ident => $call:expr) => {
        match $self {
            ServerEngine::InProcess($e) => $call,
            ServerEngine::Redis($e) => $call,
        }
    };
}

impl Engine for ServerEngine {
    fn position(&mut self, key: &ChannelKey) -> StreamPosition {
        both!(self, e => e.position(key))
    }
    fn append(
        &mut self,
        key: &ChannelKey,
        build: &mut dyn FnMut(u64) -> StreamItem,
    ) -> Result<(u64, Frame), CoreError> {
        both!(self, e => e.append(key, build))
    }
    fn replay_after(&self, key: &ChannelKey, seq: u64) -> Option<Vec<Frame>> {
        both!(self, e => e.replay_after(key, seq))
    }
    fn history(&self, key: &ChannelKey, query: HistoryQuery<'_>) -> HistorySlice {
        both!(self, e => e.history(key, query))
    }
    fn discard(&mut self, key: &ChannelKey) -> Result<(), CoreError> {
        both!(self, e => e.discard(key))
    }
    fn add_subscriber(&mut self, key: &ChannelKey, conn: ConnId) {
        both!(self, e => e.add_subscriber(key, conn))
    }
    fn remove_subscriber(&mut self, key: &ChannelKey, conn: ConnId) {
        both!(self, e => e.remove_subscriber(key, conn))
    }
    fn subscribers(&self, key: &ChannelKey) -> impl Iterator<Item = ConnId> + '_ {
        match self {
            ServerEngine::InProcess(e) => Either::A(e.subscribers(key)),
            ServerEngine::Redis(e) => Either::B(e.subscribers(key)),
        }
    }
    fn relay(&mut self, key: &ChannelKey, frame: &Frame, except: Option<ConnId>) -> Delivery {
        both!(self, e => e.relay(key, frame, except))
    }
    fn accept_remote(&mut self, key: &ChannelKey, remote: Remote) -> Delivery {
        both!(self, e => e.accept_remote(key, remote))
    }
    fn keep_cursors(&mut self, key: &ChannelKey, entries: &[(String, String)]) {
        both!(self, e => e.keep_cursors(key, entries))
    }
    fn forget_cursor(&mut self, key: &ChannelKey, user: &str) {
        both!(self, e => e.forget_cursor(key, user))
    }
    fn shared_cursors(&self, key: &ChannelKey) -> Option<Vec<CursorState>> {
        both!(self, e => e.shared_cursors(key))
    }
    fn room(&self, key: &ChannelKey) -> Option<Room> {
        both!(self, e => e.room(key))
    }
    fn create_room(&mut self, key: &ChannelKey, room: Room) -> Result<(), CoreError> {
        both!(self, e => e.create_room(key, room))
    }
    fn member(&self, key: &ChannelKey, user: &str) -> Option<Member> {
        both!(self, e => e.member(key, user))
    }
    fn member_count(&self, key: &ChannelKey) -> usize {
        both!(self, e => e.member_count(key))
    }
    fn members(&self, key: &ChannelKey) -> Vec<Member> {
        both!(self, e => e.members(key))
    }
    fn snapshot_members(&mut self, key: &ChannelKey, conn: ConnId) -> Vec<Member> {
        both!(self, e => e.snapshot_members(key, conn))
    }
    fn take_held_back(&mut self) -> Vec<(Frame, Vec<ConnId>)> {
        both!(self, e => e.take_held_back())
    }
    fn take_lease(
        &mut self,
        key: &ChannelKey,
        conn: ConnId,
        user: &str,
        profile: &serde_json::Value,
        now: Millis,
    ) -> LeaseTaken {
        both!(self, e => e.take_lease(key, conn, user, profile, now))
    }
    fn release_lease(
        &mut self,
        key: &ChannelKey,
        conn: ConnId,
        user: &str,
        grace_until: Option<Millis>,
    ) -> Released {
        both!(self, e => e.release_lease(key, conn, user, grace_until))
    }
    fn update_member(
        &mut self,
        key: &ChannelKey,
        user: &str,
        status: Option<PresenceStatus>,
        data: Option<serde_json::Value>,
        now: Millis,
    ) -> Option<Member> {
        both!(self, e => e.update_member(key, user, status, data, now))
    }
    fn touch_member(&mut self, key: &ChannelKey, user: &str, now: Millis) {
        both!(self, e => e.touch_member(key, user, now))
    }
    fn expire_grace(&mut self, now: Millis) -> Vec<GraceExpired> {
        both!(self, e => e.expire_grace(now))
    }
    fn next_grace_deadline(&self) -> Option<Millis> {
        both!(self, e => e.next_grace_deadline())
    }
    fn sweep_idle(&mut self, now: Millis) -> usize {
        both!(self, e => e.sweep_idle(now))
    }
    fn next_sweep(&self) -> Option<Millis> {
        both!(self, e => e.next_sweep())
    }
    fn holds_channel(&self, key: &ChannelKey) -> bool {
        both!(self, e => e.holds_channel(key))
    }
    fn tenant_channels(&self, tenant: &str) -> usize {
        both!(self, e => e.tenant_channels(tenant))
    }
    fn state(&mut self, key: &ChannelKey) -> StateSnapshot {
        both!(self, e => e.state(key))
    }
    fn write_state(
        &mut self,
        key: &ChannelKey,
        write: &StateWrite,
        expected: &Expected,
        max_bytes: usize,
        event: &mut dyn FnMut(&StateVersion) -> Frame,
    ) -> Result<(StateVersion, Frame), CoreError> {
        both!(self, e => e.write_state(key, write, expected, max_bytes, event))
    }
    fn active_channels(&self, tenant: &str) -> Vec<ChannelStats> {
        both!(self, e => e.active_channels(tenant))
    }
    fn count_connection(&mut self, tenant: &str, delta: i64) {
        both!(self, e => e.count_connection(tenant, delta))
    }
    fn totals(&self, tenant: &str, local: (u64, u64)) -> (u64, u64) {
        both!(self, e => e.totals(tenant, local))
    }
    fn record(
        &self,
        tenant: &str,
        resource: &str,
        id: &str,
    ) -> Result<Option<serde_json::Value>, CoreError> {
        both!(self, e => e.record(tenant, resource, id))
    }
    fn records(
        &self,
        tenant: &str,
        resource: &str,
        after: Option<&str>,
        limit: u64,
    ) -> Result<RecordPage, CoreError> {
        both!(self, e => e.records(tenant, resource, after, limit))
    }
    fn put_record(
        &mut self,
        tenant: &str,
        resource: &str,
        id: &str,
        data: &serde_json::Value,
        create: bool,
    ) -> Result<(), CoreError> {
        both!(self, e => e.put_record(tenant, resource, id, data, create))
    }
    fn delete_record(&mut self, tenant: &str, resource: &str, id: &str) -> Result<(), CoreError> {
        both!(self, e => e.delete_record(tenant, resource, id))
    }
    fn begin_batch(&mut self) -> Result<(), CoreError> {
        both!(self, e => e.begin_batch())
    }
    fn end_batch(&mut self, commit: bool) -> Result<(), CoreError> {
        both!(self, e => e.end_batch(commit))
    }
    fn mark(&self, source: &str, key: &str) -> Result<Option<String>, CoreError> {
        both!(self, e => e.mark(source, key))
    }
    fn set_mark(
        &mut self,
        source: &str,
        key: &str,
        value: &str,
        at: Millis,
    ) -> Result<(), CoreError> {
        both!(self, e => e.set_mark(source, key, value, at))
    }
    fn forget_marks(&mut self, source: &str, before: Millis) -> Result<usize, CoreError> {
        both!(self, e => e.forget_marks(source, before))
    }
}

/// A node joining the cluster: its number, its engine and the bus events to feed the core.
pub struct Joined {
    /// The node's number (CLUS-5).
    pub node: u64,
    /// The engine.
    pub engine: RedisEngine,
    /// What the bus receives.
    pub events: tokio::sync::mpsc::UnboundedReceiver<bus::BusEvent>,
    /// The bus (closed at shutdown).
    pub bus: std::sync::Arc<bus::Bus>,
    /// The deployment's key names.
    pub keys: keys::Keys,
}

/// Why the node could not join.
#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    /// Redis refused or could not be reached.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// The pub/sub connection failed.
    #[error(transparent)]
    Bus(#[from] bus::BusError),
    /// The node could not announce itself alive.
    #[error("redis: {0}")]
    Liveness(String),
    /// Only plain TCP Redis URLs are supported.
    #[error("unsupported redis address {0} (only redis://host:port)")]
    Address(String),
}

/// Connects to Redis at `url`, takes a node number and opens the bus.
pub fn join(
    url: &str,
    prefix: &str,
    local: InProcessEngine,
    retention: usize,
    grace_ms: Millis,
) -> Result<Joined, JoinError> {
    let client = redis::Client::open(url)?;
    let mut conn = link::CommandLink::open(client.clone())?;
    let keys = keys::Keys::new(prefix);
    let node: u64 = redis::cmd("INCR")
        .arg(keys.node_counter())
        .query(&mut conn)?;
    let info = client.get_connection_info();
    let addr = match info.addr() {
        redis::ConnectionAddr::Tcp(host, port) => format!("{host}:{port}"),
        other => return Err(JoinError::Address(format!("{other:?}"))),
    };
    let settings = info.redis_settings();
    let password = settings
        .password()
        .map(|p| (settings.username().unwrap_or(""), p));
    let (tx, events) = tokio::sync::mpsc::unbounded_channel();
    let bus = bus::Bus::connect(&addr, password, tx)?;
    let engine = RedisEngine::new(
        local,
        conn,
        keys.clone(),
        node,
        retention,
        bus.clone(),
        grace_ms,
    );
    engine.renew_liveness().map_err(JoinError::Liveness)?;
    Ok(Joined {
        node,
        engine,
        events,
        bus,
        keys,
    })
}

/// Feeds what the bus receives to the core until the node shuts down. A lost pub/sub
/// connection means publishes may have been missed: every connection is closed with 4301
/// and the engine forgets what it delivered (CLUS-9, CLUS-10); the bus then connects again
/// until Redis answers, and the node serves as soon as it does.
pub async fn run_bus(
    shared: std::sync::Arc<crate::net::Shared>,
    keys: keys::Keys,
    bus: std::sync::Arc<bus::Bus>,
    mut events: tokio::sync::mpsc::UnboundedReceiver<bus::BusEvent>,
) {
    while let Some(event) = events.recv().await {
        match event {
            bus::BusEvent::Message { channel, payload } => {
                let key = keys.channel_of_bus(&channel);
                let remote = redis_engine::parse_payload(&payload);
                match (key, remote) {
                    (Some(key), Some(remote)) => shared.deliver_remote(&key, remote),
                    _ => tracing::warn!(%channel, "unreadable bus message dropped"),
                }
            }
            bus::BusEvent::Lost => {
                if shared.shutting_down() {
                    return;
                }
                tracing::error!("redis pub/sub lost: closing every connection with 4301");
                shared.broker_lost();
                loop {
                    tokio::time::sleep(RECONNECT_PERIOD).await;
                    if shared.shutting_down() {
                        return;
                    }
                    let again = bus.clone();
                    match tokio::task::spawn_blocking(move || again.reconnect()).await {
                        Ok(Ok(())) => break,
                        Ok(Err(e)) => tracing::debug!(error = %e, "redis pub/sub still down"),
                        Err(e) => tracing::error!(error = %e, "redis pub/sub reconnect panicked"),
                    }
                }
                tracing::info!("redis pub/sub connected again");
            }
        }
    }
}

/// How often a node that lost its pub/sub connection tries to connect again.
const RECONNECT_PERIOD: std::time::Duration = std::time::Duration::from_millis(200);

/// Deletes every key of the deployment under `prefix` (tests and operators resetting a
/// deployment); how many it deleted.
pub fn delete_deployment(url: &str, prefix: &str) -> Result<usize, redis::RedisError> {
    let mut conn = redis::Client::open(url)?.get_connection()?;
    let pattern = keys::Keys::new(prefix).pattern();
    let mut cursor: u64 = 0;
    let mut deleted = 0;
    loop {
        let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(&pattern)
            .arg("COUNT")
            .arg(500)
            .query(&mut conn)?;
        if !batch.is_empty() {
            deleted += redis::cmd("DEL").arg(&batch).query::<usize>(&mut conn)?;
        }
        if next == 0 {
            return Ok(deleted);
        }
        cursor = next;
    }
}
