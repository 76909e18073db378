//! The pure protocol core of the reference server (in the spirit of `quinn-proto`).
//!
//! The core owns channels, presence, rooms, cursors, shared state and history, and answers
//! each input with the [`Effect`]s the network shell must carry out, in order. It has no
//! sockets and no clock: every entry point takes `now` (server milliseconds), so it is
//! deterministic and tested through an in-memory driver (see the tests of each module).
//!
//! # The interface the shell drives
//! - [`Core::new`] loads what the [`Store`] persisted.
//! - [`Core::connect`] registers a verified [`Session`] and returns the `welcome`.
//! - [`Core::handle`] takes one decoded [`ClientMessage`]. The shell decodes frames itself
//!   (`chorus_protocol::decode_client`), answers decode errors, counts consecutive errors,
//!   runs heartbeats and token expiry. `auth:refresh` is verified by the shell too, which
//!   then calls [`Core::refresh`] with the new session (or answers `unauthorized` itself
//!   when the token does not verify).
//! - [`Core::disconnect`]: `graceful` is true for a client close 1000 or a server close
//!   that is terminal for the client (PRES-33); otherwise presence leases enter their grace
//!   period (PRES-26).
//! - [`Core::tick`] at [`Core::next_deadline`]: grace expiry and cursor flushes.
//! - [`Core::deliver_remote`]: a frame another node of a cluster published (the cluster
//!   module's bus receives it from the broker); the engine orders and deduplicates it.
//! - HTTP: [`Core::server_publish`], [`Core::resource_write`], [`Core::resource_read`],
//!   [`Core::stats`], [`Core::channel_users`], [`Core::report_change`].
//! - A database change feed (the shell's `feed` module): [`Core::feed_position`] at start,
//!   then [`Core::feed_transaction`] per committed transaction.
//!
//! The shell executes effects in order; a [`Frame`] is serialized once and shared by every
//! recipient (an `Arc<str>` clone per recipient, nothing else). SSE streams are core
//! connections too: the shell connects them and sends `subscribe` with `since`.
//! Connection ids must not be reused while the core runs (a grace lease outlives its
//! connection). The core does not emit [`Effect::Close`] today; closes are the shell's
//! (heartbeat, expiry, slow consumers), the variant is there for engines that must evict.
//!
//! Every handler validates fully before it changes anything (ERR-4), and a write reaches
//! the store inside the handler, before the effect that acknowledges it is produced
//! (durable before acknowledged: HIST-4, STATE-25, HTTP-34).
//!
//! # Layout
//! One module per spec area, named as the spec file: `connection` (welcome, ping,
//! refresh, disconnect), `channels`, `history`, `presence`, `rooms`, `cursors`, `state`,
//! `changes` (resource API and `data_change`), `http` (stats, channel users, server
//! publish) and `limits` (rate limit, grants). Fan-out, streams, presence, rooms, state and
//! records sit behind the [`Engine`] trait so that a scale-out engine can replace
//! [`InProcessEngine`] without touching the handlers. [`faults`] holds the deliberate bugs
//! of the conformance self-test (feature `faults`).

use std::collections::HashMap;
use std::sync::Arc;

use chorus_protocol::http::ResourceRecord;
use chorus_protocol::{
    Capability, ChannelKind, ChannelName, ClientMessage, CloseCode, Heartbeat, Limits, Millis,
    Right, Rights, ServerMessage, UserId,
};
use serde::Serialize;

use crate::store::Store;

mod changes;
mod channels;
mod connection;
mod cursors;
mod dedup;
pub mod engine;
mod errors;
pub mod faults;
mod history;
mod http;
mod in_process;
mod ingest;
mod limits;
mod presence;
pub mod room_password;
mod rooms;
mod state;
// The in-memory driver of the core's tests, public for the fuzz targets (feature `testkit`,
// never in default builds).
#[cfg(any(test, feature = "testkit"))]
pub mod testkit;

pub use changes::{is_record_id, is_resource_name};
pub use engine::{ChannelKey, Delivery, Engine, Remote};
pub use errors::CoreError;
pub use faults::{Fault, Faults};
pub use in_process::{InProcessEngine, DEFAULT_IDLE_TTL_MS};
pub use ingest::{ExternalChange, CHANGE_KEY_TTL_MS};
pub use limits::json_bytes;

use connection::Connection;
use cursors::Cursors;
use limits::TokenBucket;

/// The shell's handle on one connection (WebSocket or SSE stream).
pub type ConnId = u64;

/// A frame serialized once; recipients share it.
pub type Frame = Arc<str>;

/// What the shell verified from the token.
#[derive(Debug, Clone, PartialEq)]
pub struct Session {
    /// `sub`.
    pub user_id: UserId,
    /// `profile`, or an empty object.
    pub profile: serde_json::Value,
    /// `tenant`, or "".
    pub tenant: String,
    /// `channels` glob patterns granting `private-` channels.
    pub grants: Vec<String>,
    /// `rights`: per-operation patterns; `None` allows every operation (CHAN-36).
    pub rights: Option<Rights>,
    /// `exp` × 1000.
    pub expires_at: Option<Millis>,
}

/// One thing the shell must do, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Queue `frame` for `to`. `droppable` frames (`cursor:moved`) may be dropped by the
    /// shell when that connection's queue is above its watermark (CURS-15).
    Send {
        /// Recipient.
        to: ConnId,
        /// The JSON text.
        frame: Frame,
        /// May be dropped under back-pressure.
        droppable: bool,
    },
    /// Close the connection with this code after flushing what is queued.
    Close {
        /// The connection.
        conn: ConnId,
        /// Close code.
        code: CloseCode,
    },
}

/// Default [`CoreConfig::retention`]: ten default pages, so that a reader can page back
/// past one page and a client that missed a burst still recovers.
pub const DEFAULT_RETENTION: usize = 1000;

/// Default [`CoreConfig::retention_total_bytes`]: 256 MiB.
pub const DEFAULT_RETENTION_TOTAL_BYTES: u64 = 256 * 1024 * 1024;

/// Everything the core needs to know about the server's settings.
#[derive(Debug, Clone)]
pub struct CoreConfig {
    /// Limits enforced and announced in `welcome`.
    pub limits: Limits,
    /// Heartbeat announced in `welcome` (enforced by the shell).
    pub heartbeat: Heartbeat,
    /// Capabilities announced; requests needing another one get `unsupported`.
    pub capabilities: Vec<Capability>,
    /// `welcome.server`, e.g. `chorus-server/0.1.0`.
    pub server_name: String,
    /// Stream items each channel retains for `history` and recovery (HIST-5: at least
    /// `limits.history_limit`, which only bounds one page).
    pub retention: usize,
    /// How long a channel nobody uses (no subscriber, member, state or room, no write) is
    /// kept before it is forgotten with its retained stream.
    pub channel_idle_ms: Millis,
    /// Bytes of stream frames all channels together retain (HIST-20; the per-channel
    /// budget is `limits.retention_bytes`).
    pub retention_total_bytes: u64,
    /// Deliberate bugs for the conformance suite's self-test (inert without the `faults`
    /// feature).
    pub faults: Faults,
}

impl Default for CoreConfig {
    fn default() -> Self {
        CoreConfig {
            limits: Limits::default(),
            heartbeat: Heartbeat {
                interval_ms: 30_000,
                timeout_ms: 60_000,
            },
            capabilities: Capability::ALL.to_vec(),
            server_name: format!("chorus-server/{}", env!("CARGO_PKG_VERSION")),
            retention: DEFAULT_RETENTION,
            channel_idle_ms: DEFAULT_IDLE_TTL_MS,
            retention_total_bytes: DEFAULT_RETENTION_TOTAL_BYTES,
            faults: Faults::default(),
        }
    }
}

/// A write of the HTTP resource API (CHG).
#[derive(Debug, Clone, PartialEq)]
pub enum ResourceOp {
    /// `POST /api/resources/{name}`: `id` from the body's `id` field when present.
    Create {
        /// Resource name.
        resource: String,
        /// Chosen id, or `None` for a server-generated one.
        id: Option<String>,
        /// The record body.
        data: serde_json::Value,
    },
    /// `PUT /api/resources/{name}/{id}`: replace (or create when absent).
    Replace {
        /// Resource name.
        resource: String,
        /// Record id.
        id: String,
        /// New body.
        data: serde_json::Value,
    },
    /// `PATCH /api/resources/{name}/{id}`: shallow merge of an object into the record.
    Patch {
        /// Resource name.
        resource: String,
        /// Record id.
        id: String,
        /// Members to set.
        data: serde_json::Value,
    },
    /// `DELETE /api/resources/{name}/{id}`.
    Delete {
        /// Resource name.
        resource: String,
        /// Record id.
        id: String,
    },
}

/// A read of the HTTP resource API.
#[derive(Debug, Clone, PartialEq)]
pub enum ResourceRead {
    /// `GET /api/resources/{name}?limit=&after=` (HTTP-28).
    List {
        /// Resource name.
        resource: String,
        /// Page size, 1..=1000 (the shell defaults it to 100).
        limit: u64,
        /// Start after this record id.
        after: Option<String>,
    },
    /// `GET /api/resources/{name}/{id}`.
    Get {
        /// Resource name.
        resource: String,
        /// Record id.
        id: String,
    },
}

/// What a resource write did.
#[derive(Debug, Clone, PartialEq)]
pub struct ResourceWritten {
    /// True when the record did not exist before (201 for `POST`/`PUT`).
    pub created: bool,
    /// The record after the write; for a delete, as it was.
    pub record: ResourceRecord,
}

/// What a resource read found.
#[derive(Debug, Clone, PartialEq)]
pub enum ResourceFound {
    /// A page of records in creation order.
    List {
        /// The resource name.
        resource: String,
        /// The records.
        records: Vec<ResourceRecord>,
        /// More records follow.
        has_more: bool,
    },
    /// One record.
    Record(ResourceRecord),
}

/// The protocol core. See the module docs for how the shell drives it.
pub struct Core<E: Engine = InProcessEngine> {
    config: CoreConfig,
    engine: E,
    /// Boxed: a table of 300-byte values keeps up to twice their room empty after it grows.
    conns: HashMap<ConnId, Box<Connection>>,
    cursors: Cursors,
    /// State snapshots sent, against which other nodes' state frames are filtered.
    snapshots: state::Snapshots,
    /// Room password work the shell did off the core's lock, by connection (ROOM-24 costs
    /// a memory-hard hash; see `password_work`).
    passwords_done: HashMap<ConnId, room_password::Done>,
    /// `POST /api/publish` rate limit per (tenant, user) (HTTP-24).
    publish_buckets: HashMap<(Arc<str>, UserId), TokenBucket>,
    /// When expired `Idempotency-Key`s of `POST /api/changes` are next forgotten.
    key_sweep_at: Millis,
    /// Message ids of recent publishes (CHAN-44, HTTP-38).
    publish_ids: dedup::PublishIds,
    /// Presence diffs the `presence_lags_stream` fault holds back; empty without it.
    presence_lag: faults::PresenceLag,
}

impl Core {
    /// Builds a core over `store` with the in-process engine, loading everything it
    /// persisted (HIST-4, STATE-25, ROOM-19).
    pub fn new(config: CoreConfig, store: Store) -> Result<Core, CoreError> {
        let mut retention = config.retention.max(config.limits.history_limit as usize);
        if config.faults.on(Fault::RetentionBelowAnnounced) {
            retention = retention.saturating_sub(1); // HIST-19 broken on purpose
        }
        let engine = InProcessEngine::load(store, retention, config.faults.clone())?
            .with_idle_ttl(config.channel_idle_ms)
            .with_retention_bytes(config.limits.retention_bytes, config.retention_total_bytes);
        Ok(Core::with_engine(config, engine))
    }
}

impl<E: Engine> Core<E> {
    /// Builds a core over any engine.
    pub fn with_engine(config: CoreConfig, engine: E) -> Core<E> {
        Core {
            config,
            engine,
            conns: HashMap::new(),
            cursors: Cursors::default(),
            snapshots: state::Snapshots::default(),
            passwords_done: HashMap::new(),
            publish_buckets: HashMap::new(),
            key_sweep_at: 0,
            publish_ids: dedup::PublishIds::default(),
            presence_lag: faults::PresenceLag::default(),
        }
    }

    /// The configuration in force.
    pub fn config(&self) -> &CoreConfig {
        &self.config
    }

    /// The engine (tests inspect it).
    pub fn engine(&self) -> &E {
        &self.engine
    }

    /// The engine, to collect what it reports to the shell (a cluster engine's failures).
    pub fn engine_mut(&mut self) -> &mut E {
        &mut self.engine
    }

    /// Handles one decoded client frame: exactly one reply per request (TRANS-10), which
    /// echoes the request's `id` (TRANS-9) and, for an error, its channel (ERR-2).
    pub fn handle(&mut self, conn: ConnId, msg: ClientMessage, now: Millis) -> Vec<Effect> {
        let mut out = Outbox::default();
        if !self.conns.contains_key(&conn) {
            return out.effects;
        }
        let id = msg.id().cloned();
        let channel = request_channel(&msg).cloned();
        if let Err(e) = self.take_request_token(conn, now) {
            out.send(conn, &ServerMessage::Error(e.to_frame(id, channel)));
            return out.effects;
        }
        let result = match msg {
            ClientMessage::Ping(m) => self.ping(conn, m, now, &mut out),
            ClientMessage::AuthRefresh(_) => Err(CoreError::Unauthorized(
                "token refresh is verified by the network layer".into(),
            )),
            ClientMessage::Subscribe(m) => self.subscribe(conn, m, now, &mut out),
            ClientMessage::Unsubscribe(m) => self.unsubscribe(conn, m, now, &mut out),
            ClientMessage::Broadcast(m) => self.broadcast(conn, m, now, &mut out),
            ClientMessage::History(m) => self.history(conn, m, &mut out),
            ClientMessage::Presence(m) => self.presence_list(conn, m, &mut out),
            ClientMessage::PresenceUpdate(m) => self.presence_update(conn, m, now, &mut out),
            ClientMessage::CursorUpdate(m) => self.cursor_update(conn, m, now, &mut out),
            ClientMessage::StateUpdate(m) => self.state_update(conn, m, now, &mut out),
            ClientMessage::StateMerge(m) => self.state_merge(conn, m, now, &mut out),
            ClientMessage::StateDelete(m) => self.state_delete(conn, m, now, &mut out),
            ClientMessage::StateSyncRequest(m) => self.state_sync(conn, m, &mut out),
        };
        if let Err(e) = result {
            out.send(conn, &ServerMessage::Error(e.to_frame(id, channel)));
        }
        out.effects
    }

    /// Expires grace leases and flushes cursors that are due.
    pub fn tick(&mut self, now: Millis) -> Vec<Effect> {
        let mut out = Outbox::default();
        self.expire_grace(now, &mut out);
        self.flush_cursors(now, &mut out);
        for (frame, to) in self.presence_lag.due(now) {
            to.into_iter()
                .for_each(|conn| out.frame(conn, frame.clone(), false));
        }
        self.engine.sweep_idle(now);
        out.effects
    }

    /// When [`Core::tick`] is next needed, if ever.
    pub fn next_deadline(&self) -> Option<Millis> {
        [
            self.engine.next_grace_deadline(),
            self.cursors.next_due(),
            self.engine.next_sweep(),
            self.presence_lag.next_due(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    // --- helpers shared by the areas ---

    /// LIMIT-14: every request takes one token of the connection's request bucket.
    fn take_request_token(&mut self, conn: ConnId, now: Millis) -> Result<(), CoreError> {
        if self.fault(Fault::RequestBudgetIgnored) {
            return Ok(());
        }
        let l = self.config.limits;
        match self.conns.get_mut(&conn) {
            Some(c) => c
                .requests
                .take(l.request_rate_per_sec, l.request_burst, now)
                .map_err(|retry_after_ms| CoreError::RateLimited { retry_after_ms }),
            None => Ok(()),
        }
    }

    fn fault(&self, fault: Fault) -> bool {
        self.config.faults.on(fault)
    }

    fn connection(&self, conn: ConnId) -> Result<&Connection, CoreError> {
        self.conns
            .get(&conn)
            .map(|c| &**c)
            .ok_or_else(|| CoreError::NotFound("connection".into()))
    }

    /// The channel of `name` in `tenant` (CHAN-7).
    fn key(&self, tenant: &Arc<str>, name: &ChannelName) -> ChannelKey {
        let tenant = if self.fault(Fault::TenantLeak) {
            Arc::from("")
        } else {
            tenant.clone()
        };
        ChannelKey {
            tenant,
            name: name.clone(),
        }
    }

    /// CHAN-1.
    fn check_name(&self, name: &ChannelName) -> Result<ChannelKind, CoreError> {
        let max = self.config.limits.max_channel_name_len as usize;
        let max = max - usize::from(self.fault(Fault::ChannelNameLimitOffByOne));
        Ok(name.validate(max)?)
    }

    /// VER-6a to VER-6e: a request of a capability this server does not announce.
    fn require(&self, cap: Capability) -> Result<(), CoreError> {
        if self.config.capabilities.contains(&cap) {
            Ok(())
        } else {
            Err(CoreError::Unsupported(format!(
                "this server does not announce {}",
                cap.as_str()
            )))
        }
    }

    /// CHAN-36 to CHAN-41: whether the connection's `rights` allow `right` on `name`.
    fn may(&self, session: &Session, right: Right, name: &ChannelName) -> bool {
        let ignored = match right {
            Right::Subscribe => Fault::RightsSubscribeIgnored,
            Right::Publish => Fault::RightsPublishIgnored,
            Right::Presence => Fault::RightsPresenceIgnored,
            Right::State => Fault::RightsStateIgnored,
            Right::History => Fault::RightsHistoryIgnored,
        };
        if self.fault(ignored) {
            return true;
        }
        limits::rights_allow(session.rights.as_ref(), right, name)
    }

    /// `forbidden` unless the connection's `rights` allow `right` on `name`.
    fn authorize(&self, conn: ConnId, right: Right, name: &ChannelName) -> Result<(), CoreError> {
        if self.may(&self.connection(conn)?.session, right, name) {
            Ok(())
        } else {
            Err(CoreError::Forbidden(format!(
                "the token's rights do not allow {} on {name}",
                right.as_str()
            )))
        }
    }

    fn has(&self, cap: Capability) -> bool {
        self.config.capabilities.contains(&cap)
    }

    /// The key of a channel `conn` is subscribed to, with its user, or `not_subscribed`.
    fn subscribed_key(
        &self,
        conn: ConnId,
        name: &ChannelName,
    ) -> Result<(ChannelKey, UserId), CoreError> {
        let c = self.connection(conn)?;
        if !c.subscriptions.contains(name) {
            return Err(CoreError::NotSubscribed);
        }
        Ok((self.key(&c.tenant, name), c.session.user_id.clone()))
    }

    /// Sends one frame to every subscriber of `key` except `except`, on every node: the
    /// engine relays it and names what this node's subscribers must get first (CLUS-1).
    fn fan_out(
        &mut self,
        key: &ChannelKey,
        frame: &Frame,
        except: Option<ConnId>,
        out: &mut Outbox,
    ) {
        match self.engine.relay(key, frame, except) {
            Delivery::Frames(missed) => {
                let held = self.engine.take_held_back();
                for earlier in &missed {
                    let skip = held_from(&held, earlier);
                    for to in self.engine.subscribers(key) {
                        if !skip.contains(&to) {
                            out.frame(to, earlier.clone(), false);
                        }
                    }
                }
                if self.fault(Fault::PresenceLagsStream) && faults::PresenceLag::holds(frame) {
                    let to = self.engine.subscribers(key);
                    let to = to.into_iter().filter(|c| Some(*c) != except).collect();
                    self.presence_lag.hold(key, frame, to);
                    return;
                }
                self.deliver_local(key, frame, except, out);
                for (held, to) in self.presence_lag.release(key) {
                    to.into_iter()
                        .for_each(|conn| out.frame(conn, held.clone(), false));
                }
            }
            Delivery::Relayed | Delivery::NewEpoch => {}
            Delivery::Discontinuity => self.evict_subscribers(key, out),
        }
    }

    /// Sends one frame to this node's subscribers of `key` except `except`.
    fn deliver_local(
        &self,
        key: &ChannelKey,
        frame: &Frame,
        except: Option<ConnId>,
        out: &mut Outbox,
    ) {
        for to in self.engine.subscribers(key) {
            if Some(to) != except {
                out.frame(to, frame.clone(), false);
            }
        }
    }

    /// CLUS-9: closes this node's subscribers of `key` with 4301, so that each resubscribes
    /// with `since` and is told `recovered: false` instead of missing items silently.
    fn evict_subscribers(&self, key: &ChannelKey, out: &mut Outbox) {
        for conn in self.engine.subscribers(key) {
            out.effects.push(Effect::Close {
                conn,
                code: CloseCode::ReconnectRequested,
            });
        }
    }

    /// A frame another node of the cluster published for `key` (the shell receives it from
    /// the broker): delivered to this node's subscribers in stream order, once.
    pub fn deliver_remote(&mut self, key: &ChannelKey, remote: Remote) -> Vec<Effect> {
        let mut out = Outbox::default();
        let except = remote.except;
        match self.engine.accept_remote(key, remote) {
            Delivery::Frames(frames) => {
                let held = self.engine.take_held_back();
                // Only the relayed frame itself (the last) skips `except`.
                let last = frames.len().saturating_sub(1);
                for (i, frame) in frames.iter().enumerate() {
                    let skip = if i == last { except } else { None };
                    let held = held_from(&held, frame);
                    // Another node's cursor batch stays droppable here too (CURS-15).
                    let droppable = frame.starts_with(r#"{"type":"cursor:moved""#);
                    let against = self.snapshots.against(key, frame);
                    for to in self.engine.subscribers(key) {
                        let seen = against
                            .as_ref()
                            .is_some_and(|(v, seen)| state::held_by(seen.get(&to), v));
                        if Some(to) != skip && !seen && !held.contains(&to) {
                            out.frame(to, frame.clone(), droppable);
                        }
                    }
                }
            }
            Delivery::Relayed => {}
            Delivery::Discontinuity => self.evict_subscribers(key, &mut out),
            Delivery::NewEpoch => {
                // The discarding node told its own watchers; these are this node's (HIST-21).
                self.cursors.forget_channel(key);
                if !self.fault(Fault::EpochChangeSilent) {
                    let to: Vec<ConnId> = self.engine.subscribers(key).collect();
                    self.announce_new_epoch(key, &to, &mut out);
                }
            }
        }
        out.effects
    }
}

/// The subscribers `frame` is held back from (see [`Engine::take_held_back`]).
fn held_from(held: &[(Frame, Vec<ConnId>)], frame: &Frame) -> Vec<ConnId> {
    held.iter()
        .filter(|(f, _)| Arc::ptr_eq(f, frame))
        .flat_map(|(_, conns)| conns.iter().copied())
        .collect()
}

/// Serializes a frame once (every recipient shares the bytes).
pub fn frame_of<T: Serialize>(msg: &T) -> Frame {
    // Serializing protocol types cannot fail: every map key is a string.
    match serde_json::to_string(msg) {
        Ok(text) => Arc::from(text),
        Err(e) => Arc::from(format!(
            r#"{{"type":"error","code":"internal","message":"serialize: {e}"}}"#
        )),
    }
}

/// Effects collected while handling one input.
#[derive(Debug, Default)]
struct Outbox {
    effects: Vec<Effect>,
}

impl Outbox {
    fn send(&mut self, to: ConnId, msg: &ServerMessage) {
        self.frame(to, frame_of(msg), false);
    }

    fn frame(&mut self, to: ConnId, frame: Frame, droppable: bool) {
        self.effects.push(Effect::Send {
            to,
            frame,
            droppable,
        });
    }
}

/// The `channel` of a request, for ERR-2.
fn request_channel(msg: &ClientMessage) -> Option<&ChannelName> {
    match msg {
        ClientMessage::Ping(_) | ClientMessage::AuthRefresh(_) => None,
        ClientMessage::Subscribe(m) => Some(&m.channel),
        ClientMessage::Unsubscribe(m) => Some(&m.channel),
        ClientMessage::Broadcast(m) => Some(&m.channel),
        ClientMessage::History(m) => Some(&m.channel),
        ClientMessage::Presence(m) => Some(&m.channel),
        ClientMessage::PresenceUpdate(m) => Some(&m.channel),
        ClientMessage::CursorUpdate(m) => Some(&m.channel),
        ClientMessage::StateUpdate(m) => Some(&m.channel),
        ClientMessage::StateMerge(m) => Some(&m.channel),
        ClientMessage::StateDelete(m) => Some(&m.channel),
        ClientMessage::StateSyncRequest(m) => Some(&m.channel),
    }
}

#[cfg(test)]
mod budget_tests;

#[cfg(test)]
mod room_password_tests {
    use serde_json::json;

    use super::testkit::Driver;
    use super::CoreConfig;
    use crate::store::{Store, DB_FILE};

    fn stored_hash(dir: &std::path::Path) -> String {
        rusqlite::Connection::open(dir.join(DB_FILE))
            .unwrap()
            .query_row("SELECT password_hash FROM rooms", [], |r| r.get(0))
            .unwrap()
    }

    /// The shell checks a password off the lock and the core takes its verdict for that
    /// very hash and password, and checks anything else itself.
    #[test]
    fn a_password_verdict_from_the_shell_is_taken_for_its_own_password_only() {
        use super::room_password::{Checked, Done, Work};
        let mut d = Driver::new();
        let a = d.connect("ann");
        let room = json!({"type": "subscribe", "channel": "presence-pw",
                          "room": {"password": "pw"}});
        assert_eq!(d.ask(a, room)[0]["type"], "subscribed");
        let b = d.connect("bob");
        let join = |password: &str| {
            let frame =
                json!({"type": "subscribe", "channel": "presence-pw", "password": password});
            serde_json::from_value::<chorus_protocol::ClientMessage>(frame).unwrap()
        };
        let Some(Work::Check { hash, password }) = d.core.password_work(b, &join("pw"), d.now)
        else {
            panic!("a check of the room's hash is due");
        };
        assert_eq!(password, "pw");
        // A verdict the core could not have computed itself shows it was taken.
        let wrong = |password: &str| Done::Checked {
            hash: hash.clone(),
            password: password.into(),
            checked: Checked::Wrong,
        };
        d.core.password_done(b, wrong("pw"));
        let refused = d.ask(b, serde_json::to_value(join("pw")).unwrap());
        assert_eq!(refused[0]["code"], "bad_password");
        // Taken once; a verdict for another password is not used for this one.
        d.core.password_done(b, wrong("other"));
        assert_eq!(
            d.ask(b, serde_json::to_value(join("pw")).unwrap())[0]["type"],
            "subscribed"
        );
        assert!(d.core.password_work(a, &join("pw"), d.now).is_some());
    }

    /// The password of a room a subscribe creates is hashed by the shell off the lock, and
    /// the core stores that hash when it is of this very password.
    #[test]
    fn a_new_rooms_password_hashed_by_the_shell_is_stored_for_its_own_password_only() {
        use super::room_password::{self, Done, Work};
        let mut d = Driver::new();
        let a = d.connect("ann");
        let create = |channel: &str| {
            let frame = json!({"type": "subscribe", "channel": channel,
                               "room": {"password": "pw"}});
            serde_json::from_value::<chorus_protocol::ClientMessage>(frame).unwrap()
        };
        let work = d.core.password_work(a, &create("presence-new"), d.now);
        assert_eq!(
            work,
            Some(Work::Hash {
                password: "pw".into()
            })
        );
        // A hash of another password, which the core could not have made for "pw": stored,
        // it lets "other" in and refuses "pw", which shows the shell's hash was taken.
        let other = room_password::hash("other");
        d.core.password_done(
            a,
            Done::Hashed {
                password: "pw".into(),
                hash: other,
            },
        );
        let created = d.ask(a, serde_json::to_value(create("presence-new")).unwrap());
        assert_eq!(created[0]["type"], "subscribed");
        let b = d.connect("bob");
        let join = |channel: &str, password: &str| json!({"type": "subscribe", "channel": channel, "password": password});
        assert_eq!(
            d.ask(b, join("presence-new", "pw"))[0]["code"],
            "bad_password"
        );
        assert_eq!(
            d.ask(b, join("presence-new", "other"))[0]["type"],
            "subscribed"
        );
        // A hash handed in for another password is not stored for this one.
        d.core.password_done(
            a,
            Done::Hashed {
                password: "else".into(),
                hash: room_password::hash("else"),
            },
        );
        let created = d.ask(a, serde_json::to_value(create("presence-next")).unwrap());
        // After the user:joined of bob on presence-new.
        assert!(
            created.iter().any(|f| f["type"] == "subscribed"),
            "{created:?}"
        );
        assert_eq!(
            d.ask(b, join("presence-next", "pw"))[0]["type"],
            "subscribed"
        );
        // An existing room's subscribe without a password has nothing to hash.
        assert_eq!(
            d.core.password_work(a, &create("presence-new"), d.now),
            None
        );
    }

    /// ROOM-24: a persisted room of an earlier version keeps its salted SHA-256 hash until
    /// its password is next given right, which stores an argon2id hash instead.
    #[test]
    fn a_legacy_room_hash_still_verifies_and_is_replaced_at_the_first_join() {
        let dir = tempfile::tempdir().unwrap();
        let open = || Driver::with_store(CoreConfig::default(), Store::open(dir.path()).unwrap());
        let room = json!({"type": "subscribe", "channel": "presence-old",
                          "room": {"persist": true, "password": "pw"}});
        let mut d = open();
        let a = d.connect("ann");
        assert_eq!(d.ask(a, room)[0]["type"], "subscribed");
        drop(d);
        assert!(stored_hash(dir.path()).starts_with("$argon2id$"));
        // What the server stored before ROOM-24: salt$hex(sha256(salt || "pw")).
        let salt = "00112233445566778899aabbccddeeff";
        let legacy = format!(
            "{salt}${}",
            <sha2::Sha256 as sha2::Digest>::digest(format!("{salt}pw").as_bytes())
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        );
        rusqlite::Connection::open(dir.path().join(DB_FILE))
            .unwrap()
            .execute("UPDATE rooms SET password_hash = ?1", [&legacy])
            .unwrap();

        let mut d = open();
        let b = d.connect("bob");
        let join = |password: &str| json!({"type": "subscribe", "channel": "presence-old", "password": password});
        assert_eq!(d.ask(b, join("pw!"))[0]["code"], "bad_password");
        assert_eq!(
            stored_hash(dir.path()),
            legacy,
            "a wrong password changes nothing"
        );
        assert_eq!(d.ask(b, join("pw"))[0]["type"], "subscribed");
        let new = stored_hash(dir.path());
        assert!(new.starts_with("$argon2id$"), "{new}");
        let c = d.connect("cid");
        assert_eq!(
            d.ask(c, join("pw"))[0]["type"],
            "subscribed",
            "the new hash verifies"
        );
        assert_eq!(d.ask(c, join("pw"))[0]["code"], "already_subscribed");
        drop(d);
        let mut d = open();
        let e = d.connect("eve");
        assert_eq!(d.ask(e, join("nope"))[0]["code"], "bad_password");
        assert_eq!(
            d.ask(e, join("pw"))[0]["type"],
            "subscribed",
            "and survives a restart"
        );
    }
}

#[cfg(test)]
mod restart_tests {
    use serde_json::json;

    use super::testkit::Driver;
    use super::{CoreConfig, ResourceFound, ResourceOp, ResourceRead};
    use crate::store::Store;

    /// Everything that must survive a restart does, through a SQLite store in a directory.
    #[test]
    fn restart_keeps_streams_state_persistent_rooms_and_records() {
        let dir = tempfile::tempdir().unwrap();
        let open = || Driver::with_store(CoreConfig::default(), Store::open(dir.path()).unwrap());
        let mut d = open();
        let a = d.connect("ann");
        let chat = d.subscribe(a, "chat")["position"].clone();
        for n in 1..=2 {
            d.send(
                a,
                json!({"type": "broadcast", "channel": "chat", "event": "e", "data": n}),
            );
            d.send(
                a,
                json!({"type": "state:merge", "channel": "chat", "data": {"n": n}}),
            );
        }
        d.frames(a);
        let keep = d.ask(
            a,
            json!({"type": "subscribe", "channel": "presence-keep",
            "room": {"persist": true, "password": "pw", "metadata": {"m": 1}}}),
        )[0]
        .clone();
        d.send(
            a,
            json!({"type": "state:update", "channel": "presence-keep", "key": "k", "value": 1}),
        );
        d.frames(a);
        let temp = d.ask(a, json!({"type": "subscribe", "channel": "presence-temp"}))[0].clone();
        d.send(
            a,
            json!({"type": "broadcast", "channel": "presence-temp", "event": "e", "data": 1}),
        );
        let (_, effects) = d
            .core
            .resource_write(
                "",
                ResourceOp::Create {
                    resource: "post".into(),
                    id: Some("p".into()),
                    data: json!({"t": 1}),
                },
                d.now,
            )
            .unwrap();
        assert!(effects.is_empty());
        drop(d);

        let mut d = open();
        d.now += 1000;
        let b = d.connect("bob");
        let since = json!({"epoch": chat["epoch"], "seq": 1});
        let got = d.ask(
            b,
            json!({"type": "subscribe", "channel": "chat", "since": since, "state": true}),
        );
        assert_eq!(
            got[0]["position"],
            json!({"epoch": chat["epoch"], "seq": 2})
        );
        assert_eq!(got[0]["recovered"], true);
        assert_eq!(
            got[0]["state"],
            json!({"data": {"n": 2}, "version": 2, "epoch": chat["epoch"]})
        );
        assert_eq!(
            (got[1]["seq"].clone(), got[1]["data"].clone()),
            (json!(2), json!(2))
        );
        let ack = d.ask(
            b,
            json!({"type": "broadcast", "channel": "chat", "event": "e", "data": 3}),
        );
        assert_eq!(ack[0]["seq"], 3);
        let ack = d.ask(
            b,
            json!({"type": "state:update", "channel": "chat", "key": "x", "value": 0}),
        );
        assert_eq!(ack[0]["version"], 3);

        let got = d.ask(b, json!({"type": "subscribe", "channel": "presence-keep"}));
        assert_eq!(got[0]["code"], "bad_password");
        let got = d.ask(b, json!({"type": "subscribe", "channel": "presence-keep", "password": "pw", "state": true}));
        assert_eq!(got[0]["room"], keep["room"]);
        assert_eq!(got[0]["position"], keep["position"]);
        assert_eq!(got[0]["state"]["data"], json!({"k": 1}));
        assert_eq!(
            got[0]["presence"].as_array().unwrap().len(),
            1,
            "presence is not persisted"
        );

        let got = d.ask(b, json!({"type": "subscribe", "channel": "presence-temp"}));
        assert_ne!(got[0]["position"]["epoch"], temp["position"]["epoch"]);
        assert_eq!(got[0]["position"]["seq"], 0);

        let found = d.core.resource_read(
            "",
            ResourceRead::Get {
                resource: "post".into(),
                id: "p".into(),
            },
        );
        assert!(
            matches!(found, Ok(ResourceFound::Record(r)) if r.data == json!({"id": "p", "t": 1}))
        );
    }
}
