//! The engine: everything the protocol handlers share between connections (channel streams,
//! fan-out sets, presence, rooms, shared state, resource records), behind one trait.
//!
//! [`InProcessEngine`](super::in_process::InProcessEngine) keeps it in this process and
//! persists through the [`Store`](crate::store::Store). A scale-out engine on a broker
//! (Redis: streams for history, hashes for state and presence, pub/sub for fan-out) would
//! implement the same trait: `subscribers` then names this node's connections, and the
//! shell feeds what other nodes publish back in as inputs. The handlers never see which
//! engine runs. Cursors stay out of the engine on purpose: they are coalesced per node and
//! delivered through the same fan-out sets.

use std::sync::Arc;

use chorus_protocol::http::ChannelStats;
use chorus_protocol::{
    ChannelName, CursorState, Epoch, Member, Millis, PresenceStatus, StateData, StateSnapshot,
    StateVersion, StreamItem, StreamPosition, UserId,
};

use super::{ConnId, CoreError, Frame};

/// A channel: per tenant (CHAN-7), so the tenant is part of its identity.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChannelKey {
    /// The tenant ("" for the default tenant).
    pub tenant: Arc<str>,
    /// The channel name.
    pub name: ChannelName,
}

/// A room's settings (rooms.md). The password is kept only as a hash (ROOM-24).
#[derive(Debug, Clone, PartialEq)]
pub struct Room {
    /// An argon2id PHC string (ROOM-24), or a legacy `salt$hex(sha256(salt || password))`
    /// of a room persisted by an earlier version, when protected.
    pub password_hash: Option<String>,
    /// Effective capacity (ROOM-6).
    pub max_users: u32,
    /// Metadata object.
    pub metadata: serde_json::Value,
    /// Survives emptiness and restarts.
    pub persist: bool,
    /// Creation time.
    pub created_at: Millis,
}

/// The compare-and-set conditions of a state write (STATE-19, STATE-32): the write applies
/// only if the state is at `version` (when given) in `epoch` (when given).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Expected {
    /// `expected_version`.
    pub version: Option<u64>,
    /// `expected_epoch`.
    pub epoch: Option<Epoch>,
}

impl Expected {
    /// Whether the state at `current` meets the conditions.
    pub fn holds(&self, current: &StateVersion) -> bool {
        self.version.is_none_or(|v| v == current.version)
            && self.epoch.as_ref().is_none_or(|e| *e == current.epoch)
    }
}

/// One accepted state write (state.md).
#[derive(Debug, Clone, PartialEq)]
pub enum StateWrite {
    /// `state:update`.
    Update {
        /// Key.
        key: String,
        /// Value.
        value: serde_json::Value,
    },
    /// `state:merge`.
    Merge {
        /// Keys and values.
        data: StateData,
    },
    /// `state:delete`.
    Delete {
        /// Key.
        key: String,
    },
}

/// What taking a presence lease did (PRES-8, PRES-9, PRES-28).
#[derive(Debug, Clone, PartialEq)]
pub enum LeaseTaken {
    /// The user was not a member: announce this member.
    Joined(Member),
    /// Another lease of the user exists: nothing to announce.
    Added,
    /// A grace lease of the user was taken over: nothing to announce.
    TookOver,
}

/// What releasing a presence lease did.
#[derive(Debug, Clone, PartialEq)]
pub enum Released {
    /// The connection held no lease there.
    NoLease,
    /// The member keeps other leases, or this one now waits out its grace period.
    Kept,
    /// That was the member's last lease: the member is gone (PRES-11).
    Left {
        /// The user.
        user_id: UserId,
        /// The member's `last_seen` at removal (PRES-13).
        last_seen: Millis,
    },
}

/// A member removed because its last grace lease expired (PRES-29).
#[derive(Debug, Clone, PartialEq)]
pub struct GraceExpired {
    /// The channel.
    pub key: ChannelKey,
    /// The user.
    pub user_id: UserId,
    /// The member's `last_seen`.
    pub last_seen: Millis,
}

/// Which retained items a `history` request wants (HIST-14 to HIST-16, BCAST-1 to BCAST-3).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HistoryQuery<'a> {
    /// Only items with a lower `seq`.
    pub before_seq: Option<u64>,
    /// Only messages with this exact event (no `data_change`).
    pub event: Option<&'a str>,
    /// Page size.
    pub limit: usize,
}

/// The newest matching items, ascending, and whether older matching ones remain.
#[derive(Debug, Clone, PartialEq)]
pub struct HistorySlice {
    /// Items, ascending `seq`.
    pub items: Vec<StreamItem>,
    /// An older matching item is retained.
    pub has_more: bool,
}

/// A page of resource records.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordPage {
    /// `(id, data)` in creation order.
    pub records: Vec<(String, serde_json::Value)>,
    /// More records follow.
    pub has_more: bool,
}

/// What a node's subscribers of a channel must be sent (see [`Engine::relay`]).
#[derive(Debug, Clone, PartialEq)]
pub enum Delivery {
    /// These frames, in order.
    Frames(Vec<Frame>),
    /// Nothing now: the broker delivers the frame to this node as to every other, in the
    /// order all nodes see (an ephemeral frame, CLUS-7).
    Relayed,
    /// This node lost the channel's continuity (a new epoch under live subscribers, or items
    /// it missed that are no longer retained): its subscribers are closed with 4301 so that
    /// they resubscribe with `since` and learn of the gap (CLUS-9), never a silent one.
    Discontinuity,
    /// Another node started the channel's next epoch on purpose (a room discarded,
    /// ROOM-17): this node's subscribers are told with a `subscribed` of the new epoch
    /// (HIST-21). Only [`Engine::accept_remote`] answers it.
    NewEpoch,
}

/// A frame another node published for a channel's subscribers.
#[derive(Debug, Clone, PartialEq)]
pub struct Remote {
    /// The node that published it.
    pub origin: u64,
    /// For a stream item: its epoch and `seq`; `None` for an ephemeral frame (presence,
    /// state, cursors), which has no place in the stream.
    pub stream: Option<(Epoch, u64)>,
    /// The frame's place in the one order of every frame of the channel, whatever its kind
    /// (CLUS-7): the channel's epoch and the broker's count of the channel's frames.
    pub order: (Epoch, u64),
    /// The connection the frame is not for (the sender of an echo-less frame).
    pub except: Option<ConnId>,
    /// The frame as the origin serialized it.
    pub frame: Frame,
}

/// Shared channel data behind one interface. Methods taking `&mut self` on a key create
/// the channel (with a fresh epoch, HIST-3) when it does not exist yet.
pub trait Engine {
    // --- streams (history.md) ---

    /// The channel's current position.
    fn position(&mut self, key: &ChannelKey) -> StreamPosition;
    /// Numbers, stores (durably) and retains one item built by `build` (called exactly
    /// once); returns the item's `seq` and its frame, serialized once for every recipient.
    /// `build` receives the `seq` when the engine knows it beforehand; an engine that numbers
    /// the item elsewhere (a broker script, CLUS-1) passes a placeholder and writes the real
    /// `seq` into the frame, so callers take the `seq` from the result, never from `build`.
    fn append(
        &mut self,
        key: &ChannelKey,
        build: &mut dyn FnMut(u64) -> StreamItem,
    ) -> Result<(u64, Frame), CoreError>;
    /// The frames after `seq`, ascending, when every one of them is retained (HIST-7).
    fn replay_after(&self, key: &ChannelKey, seq: u64) -> Option<Vec<Frame>>;
    /// A history page.
    fn history(&self, key: &ChannelKey, query: HistoryQuery<'_>) -> HistorySlice;
    /// Forgets the channel's stream, state and room; the next use starts a new epoch
    /// (ROOM-17, STATE-26).
    fn discard(&mut self, key: &ChannelKey) -> Result<(), CoreError>;

    // --- fan-out (channels.md) ---

    /// Adds a connection to the channel's fan-out set.
    fn add_subscriber(&mut self, key: &ChannelKey, conn: ConnId);
    /// Removes a connection from the channel's fan-out set.
    fn remove_subscriber(&mut self, key: &ChannelKey, conn: ConnId);
    /// The channel's subscribed connections (on this node).
    fn subscribers(&self, key: &ChannelKey) -> impl Iterator<Item = ConnId> + '_;
    /// Hands `frame`, about to be sent to this node's subscribers of `key` (but `except`),
    /// to the other nodes of a cluster, and says what this node's subscribers must get
    /// before it: stream items other nodes appended that this node has not delivered yet
    /// (CLUS-1), or a discontinuity (CLUS-9); or that the broker delivers it to this node
    /// too, in the one order every node sees (CLUS-7). A single-process engine has nothing
    /// to relay.
    fn relay(&mut self, _key: &ChannelKey, _frame: &Frame, _except: Option<ConnId>) -> Delivery {
        Delivery::Frames(Vec::new())
    }
    /// A frame another node relayed for `key`: what this node's subscribers must get, in
    /// order (duplicates dropped, missed stream items filled in from the retained stream).
    fn accept_remote(&mut self, _key: &ChannelKey, _remote: Remote) -> Delivery {
        Delivery::Frames(Vec::new())
    }

    // --- cursors (cursors.md) ---

    /// Keeps the users' latest flushed cursors, `(user, entry JSON)` as they appear in
    /// `cursor:moved`, where every node reads them (CURS-14 across nodes); one process keeps
    /// them in the core only.
    fn keep_cursors(&mut self, _key: &ChannelKey, _entries: &[(String, String)]) {}
    /// Forgets a user's kept cursor (CURS-12).
    fn forget_cursor(&mut self, _key: &ChannelKey, _user: &str) {}
    /// The cursors kept by [`Engine::keep_cursors`] on any node; `None` in one process.
    fn shared_cursors(&self, _key: &ChannelKey) -> Option<Vec<CursorState>> {
        None
    }

    // --- rooms (rooms.md) ---

    /// The room of a presence channel, when it exists (owned: a cluster engine reads it
    /// from its broker).
    fn room(&self, key: &ChannelKey) -> Option<Room>;
    /// Creates the room (stored when it persists, ROOM-19).
    fn create_room(&mut self, key: &ChannelKey, room: Room) -> Result<(), CoreError>;

    // --- presence (presence.md) ---

    /// One member (owned: a cluster engine reads it from its broker).
    fn member(&self, key: &ChannelKey, user: &str) -> Option<Member>;
    /// How many members (live and grace).
    fn member_count(&self, key: &ChannelKey) -> usize;
    /// Every member, by `joined_at` then `user_id` (PRES-10).
    fn members(&self, key: &ChannelKey) -> Vec<Member>;
    /// The members as a presence snapshot for `conn` (PRES-5): an engine whose presence
    /// changes reach this node later than the snapshot reads them (a cluster) holds back
    /// from `conn` the events the snapshot already reflects (PRES-7; see
    /// [`Engine::take_held_back`]).
    fn snapshot_members(&mut self, key: &ChannelKey, _conn: ConnId) -> Vec<Member> {
        self.members(key)
    }
    /// The frames of the last [`Engine::relay`] or [`Engine::accept_remote`] that some of the
    /// node's subscribers must not get, with those subscribers: presence events their
    /// snapshot already reflects (PRES-7 across nodes).
    fn take_held_back(&mut self) -> Vec<(Frame, Vec<ConnId>)> {
        Vec::new()
    }
    /// Gives `conn` a lease on its user's member, creating the member when needed.
    fn take_lease(
        &mut self,
        key: &ChannelKey,
        conn: ConnId,
        user: &str,
        profile: &serde_json::Value,
        now: Millis,
    ) -> LeaseTaken;
    /// Releases `conn`'s lease now, or keeps it as a grace lease until `grace_until`.
    fn release_lease(
        &mut self,
        key: &ChannelKey,
        conn: ConnId,
        user: &str,
        grace_until: Option<Millis>,
    ) -> Released;
    /// Replaces status and/or data (PRES-16) and sets `last_seen`; the updated member.
    fn update_member(
        &mut self,
        key: &ChannelKey,
        user: &str,
        status: Option<PresenceStatus>,
        data: Option<serde_json::Value>,
        now: Millis,
    ) -> Option<Member>;
    /// Advances `last_seen` (PRES-24) without anything else.
    fn touch_member(&mut self, key: &ChannelKey, user: &str, now: Millis);
    /// Ends grace leases due at `now`; the members that left because of it.
    fn expire_grace(&mut self, now: Millis) -> Vec<GraceExpired>;
    /// The earliest pending grace deadline.
    fn next_grace_deadline(&self) -> Option<Millis>;

    // --- lifetime ---

    /// Forgets channels that have been unused (no subscriber, member, state or room, and no
    /// write) for the engine's idle time, when a sweep is due at `now`; how many it forgot.
    /// A forgotten channel starts a new epoch when used again (HIST-3), so a late `since`
    /// gets `recovered: false` (HIST-8).
    fn sweep_idle(&mut self, now: Millis) -> usize;
    /// When [`Engine::sweep_idle`] is next due, while any channel exists.
    fn next_sweep(&self) -> Option<Millis>;
    /// Whether the channel exists (a subscribe to it creates none, LIMIT-18).
    fn holds_channel(&self, key: &ChannelKey) -> bool;
    /// How many channels `tenant` holds (on this node, for a cluster engine; LIMIT-18).
    fn tenant_channels(&self, tenant: &str) -> usize;

    // --- shared state (state.md) ---

    /// The whole state.
    fn state(&mut self, key: &ChannelKey) -> StateSnapshot;
    /// Applies a write atomically when `expected` holds (STATE-19, STATE-20, STATE-32) and the
    /// state stays within `max_bytes` (STATE-34); stores it durably; the new version and the
    /// write's event frame, built by `event` (called once, on success). An engine that
    /// publishes the event with the write, so that a channel's state events keep version
    /// order across nodes (CLUS-7, CHAN-46), passes a placeholder version (`u64::MAX`, an
    /// empty epoch) and writes the real ones into the frame; the frame is then relayed
    /// already, and [`Engine::relay`] of it only says what must be delivered before it.
    fn write_state(
        &mut self,
        key: &ChannelKey,
        write: &StateWrite,
        expected: &Expected,
        max_bytes: usize,
        event: &mut dyn FnMut(&StateVersion) -> Frame,
    ) -> Result<(StateVersion, Frame), CoreError>;

    // --- HTTP views ---

    /// Channels of the tenant with a subscriber or a member, by name (HTTP-14b, HTTP-15).
    fn active_channels(&self, tenant: &str) -> Vec<ChannelStats>;
    /// A connection of `tenant` opened (`delta` 1) or closed (-1) on this node; a cluster
    /// engine counts it for the deployment's statistics (HTTP-14a).
    fn count_connection(&mut self, _tenant: &str, _delta: i64) {}
    /// The tenant's `(connections, subscriptions)` in the whole deployment, given this
    /// node's own (HTTP-14a); one process has only its own.
    fn totals(&self, _tenant: &str, local: (u64, u64)) -> (u64, u64) {
        local
    }

    // --- resource records (http.md, changes.md) ---

    /// One record.
    fn record(
        &self,
        tenant: &str,
        resource: &str,
        id: &str,
    ) -> Result<Option<serde_json::Value>, CoreError>;
    /// Records in creation order after `after`.
    fn records(
        &self,
        tenant: &str,
        resource: &str,
        after: Option<&str>,
        limit: u64,
    ) -> Result<RecordPage, CoreError>;
    /// Stores a record (`create`: it must not exist yet), durably.
    fn put_record(
        &mut self,
        tenant: &str,
        resource: &str,
        id: &str,
        data: &serde_json::Value,
        create: bool,
    ) -> Result<(), CoreError>;
    /// Removes a record, durably.
    fn delete_record(&mut self, tenant: &str, resource: &str, id: &str) -> Result<(), CoreError>;

    // --- changes ingested from outside (changes.md) ---

    /// Starts an atomic batch: the stream items and marks written until
    /// [`Engine::end_batch`] are stored all or none (a database transaction's changes and
    /// its feed position, a reported change and its idempotency key). The Redis engine
    /// promises less: the marks after the items, never without them (CLUS-14).
    fn begin_batch(&mut self) -> Result<(), CoreError>;
    /// Commits (or rolls back) the batch.
    fn end_batch(&mut self, commit: bool) -> Result<(), CoreError>;
    /// An ingestion mark (a feed's position, an idempotency key's reply).
    fn mark(&self, source: &str, key: &str) -> Result<Option<String>, CoreError>;
    /// Sets a mark, stamped `at`.
    fn set_mark(
        &mut self,
        source: &str,
        key: &str,
        value: &str,
        at: Millis,
    ) -> Result<(), CoreError>;
    /// Forgets the marks of `source` stamped before `before`.
    fn forget_marks(&mut self, source: &str, before: Millis) -> Result<usize, CoreError>;
}
