//! The pure protocol core of the reference server (in the spirit of `quinn-proto`).
//!
//! The core owns channels, presence, rooms, cursors, shared state and history, and answers
//! each input with the [`Effect`]s the network shell must carry out, in order. It has no
//! sockets and no clock: every entry point takes `now` (server milliseconds), so it is
//! deterministic and tested through an in-memory driver (see the tests of each module).
//!
//! # The interface the shell drives
//! - [`Core::new`] loads what the [`Store`](crate::store::Store) persisted.
//! - [`Core::connect`] registers a verified [`Session`] and returns the `welcome`.
//! - [`Core::handle`] takes one decoded [`ClientMessage`]. The shell decodes frames itself
//!   (`chorus_protocol::decode_client`), answers decode errors, counts consecutive errors,
//!   runs heartbeats and token expiry. `auth:refresh` is verified by the shell too, which
//!   then calls [`Core::refresh`] with the new session (or answers `unauthorized` itself
//!   when the token does not verify).
//! - [`Core::disconnect`]: `graceful` is true for a client close 1000 or a server close in
//!   4000-4099 (PRES-26); otherwise presence leases enter their grace period (PRES-27).
//! - [`Core::tick`] at [`Core::next_deadline`]: grace expiry and cursor flushes.
//! - HTTP: [`Core::server_publish`], [`Core::resource_write`], [`Core::resource_read`],
//!   [`Core::stats`], [`Core::channel_users`].
//!
//! The shell executes effects in order; a [`Frame`] is serialized once and shared by every
//! recipient. SSE streams are core connections too: the shell connects them and sends
//! `subscribe` with `since`.
//!
//! Fan-out, streams, presence, rooms and state sit behind the [`Engine`] trait so that a
//! scale-out engine can replace [`InProcessEngine`] without touching the handlers.

use std::sync::Arc;

use chorus_protocol::http::{
    ChannelUsersResponse, PublishRequest, PublishResponse, ResourceList, ResourceRecord,
    StatsResponse,
};
use chorus_protocol::{
    Capability, ChannelName, ClientMessage, CloseCode, Heartbeat, Limits, Millis, RequestId,
    UserId,
};

use crate::store::Store;

mod errors;
pub mod faults;

pub use errors::CoreError;
pub use faults::{Fault, Faults};

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
    /// `GET /api/resources/{name}`.
    List {
        /// Resource name.
        resource: String,
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
    /// Every record of the resource.
    List(ResourceList),
    /// One record.
    Record(ResourceRecord),
}

/// The protocol core. See the module docs for how the shell drives it.
pub struct Core {
    config: CoreConfig,
    _store: Store,
}

impl Core {
    /// Builds a core over `store`, loading everything it persisted.
    pub fn new(config: CoreConfig, store: Store) -> Result<Core, CoreError> {
        Ok(Core {
            config,
            _store: store,
        })
    }

    /// The configuration in force.
    pub fn config(&self) -> &CoreConfig {
        &self.config
    }

    /// Registers a connection whose token the shell verified; returns its `welcome`.
    pub fn connect(&mut self, _conn: ConnId, _session: Session, _now: Millis) -> Vec<Effect> {
        Vec::new()
    }

    /// Handles one decoded client frame.
    pub fn handle(&mut self, _conn: ConnId, _msg: ClientMessage, _now: Millis) -> Vec<Effect> {
        Vec::new()
    }

    /// Applies a refreshed session after the shell verified an `auth:refresh` token (CONN-15):
    /// answers `auth:refreshed` (or `unauthorized` when `sub`/tenant differ, CONN-16) and ends
    /// private subscriptions the new grants no longer cover (CONN-17).
    pub fn refresh(
        &mut self,
        _conn: ConnId,
        _id: Option<RequestId>,
        _session: Session,
        _now: Millis,
    ) -> Vec<Effect> {
        Vec::new()
    }

    /// The connection is gone. `graceful`: client close 1000 or server close 4000-4099.
    pub fn disconnect(&mut self, _conn: ConnId, _graceful: bool, _now: Millis) -> Vec<Effect> {
        Vec::new()
    }

    /// Expires grace leases and flushes cursors that are due.
    pub fn tick(&mut self, _now: Millis) -> Vec<Effect> {
        Vec::new()
    }

    /// When [`Core::tick`] is next needed, if ever.
    pub fn next_deadline(&self) -> Option<Millis> {
        None
    }

    /// `POST /api/broadcast` (`from`/`grants` = None) or `POST /api/publish` (the token's
    /// user and grants).
    pub fn server_publish(
        &mut self,
        _tenant: &str,
        req: PublishRequest,
        _from: Option<UserId>,
        _grants: Option<&[String]>,
        now: Millis,
    ) -> Result<(PublishResponse, Vec<Effect>), CoreError> {
        Ok((
            PublishResponse {
                channel: req.channel,
                seq: 0,
                ts: now,
            },
            Vec::new(),
        ))
    }

    /// A write of the resource API: stored durably, then `data_change` fanned out.
    pub fn resource_write(
        &mut self,
        _tenant: &str,
        _op: ResourceOp,
        _now: Millis,
    ) -> Result<(ResourceWritten, Vec<Effect>), CoreError> {
        Err(CoreError::NotFound("resource".into()))
    }

    /// A read of the resource API.
    pub fn resource_read(
        &self,
        _tenant: &str,
        _read: ResourceRead,
    ) -> Result<ResourceFound, CoreError> {
        Err(CoreError::NotFound("resource".into()))
    }

    /// `GET /api/stats`.
    pub fn stats(&self, _tenant: &str) -> StatsResponse {
        StatsResponse {
            connections: 0,
            subscriptions: 0,
            channels: Vec::new(),
        }
    }

    /// `GET /api/channel/users`.
    pub fn channel_users(
        &self,
        _tenant: &str,
        channel: &ChannelName,
    ) -> Result<ChannelUsersResponse, CoreError> {
        Ok(ChannelUsersResponse {
            channel: channel.clone(),
            users: Vec::new(),
            count: 0,
        })
    }
}
