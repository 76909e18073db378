//! # chorus-protocol
//!
//! The Chorus v1 wire protocol as Rust types: every client and server message, error and
//! close codes, capabilities and identifiers, plus JSON Schema generation and the
//! requirement registry parsed from `spec/`. A crate of nouns: no I/O, no runtime.
//!
//! Frames are JSON objects tagged on `type` ([`ClientMessage`], [`ServerMessage`]).
//!
//! ## Two directions, two rules (versioning.md)
//!
//! - **Servers decode client frames strictly** with [`decode_client`], which sorts failures
//!   into the spec's error codes: an unknown member (a forged `from`, `seq`, `ts`, state
//!   `version`) is `invalid_message` (TRANS-14).
//! - **Clients decode server frames leniently** with [`decode_server`] (typed error
//!   [`ServerDecodeError`]), because a later `chorus.v1` revision may add members,
//!   capability tokens, `limits` keys, error codes and close codes (VER-9):
//!   - members this revision does not define are ignored;
//!   - unknown capability tokens and error codes are kept as [`Extensible::Unknown`]
//!     (`welcome.capabilities`, [`ErrorFrame::code`]); compare known ones directly
//!     (`frame.code == ErrorCode::Conflict`);
//!   - unknown `welcome.limits` keys are kept in [`AnnouncedLimits::unknown`];
//!   - an unknown close number sorts with [`CloseCode::classify`] into
//!     `Extensible<CloseCode, u16>`, whose [`Extensible::action`] follows the registry's
//!     ranges.
//!
//! The same leniency is in the consumer schema, `schema/server.consumer.schema.json`
//! ([`schema::server_consumer_schema`]), the one to generate client types from. The strict
//! `schema/server.schema.json` ([`schema::server_schema`]) admits only what a v1 server may
//! send; the conformance suite grades servers with it.
//!
//! ## Example
//!
//! A client reading a server frame, including a member a later revision added:
//!
//! ```
//! use chorus_protocol::{decode_server, ServerMessage};
//!
//! let frame = r#"{"type":"message","channel":"chat","event":"say","data":{"text":"hi"},
//!                 "from":"ann","ts":1767225600000,"seq":58,"priority":"high"}"#;
//! match decode_server(frame)? {
//!     ServerMessage::Message(m) => {
//!         assert_eq!((m.channel.as_str(), m.seq), ("chat", 58));
//!         assert_eq!(m.from.as_deref(), Some("ann"));
//!     }
//!     other => panic!("unexpected {}", other.type_name()),
//! }
//! # Ok::<(), chorus_protocol::ServerDecodeError>(())
//! ```
//!
//! A server reading a client frame, strictly, and answering a bad one with the right code:
//!
//! ```
//! use chorus_protocol::{decode_client, ClientMessage, ErrorCode};
//!
//! let ok = decode_client(r#"{"type":"subscribe","id":1,"channel":"chat"}"#, 32).unwrap();
//! assert!(matches!(ok, ClientMessage::Subscribe(_)));
//!
//! let forged = r#"{"type":"broadcast","id":2,"channel":"chat","event":"e","data":1,"seq":9}"#;
//! let error = decode_client(forged, 32).unwrap_err();
//! assert_eq!(error.code(), ErrorCode::InvalidMessage);
//! let reply = error.to_error_frame(); // echoes id 2 (TRANS-22)
//! assert_eq!(reply.id, Some(2.into()));
//! ```
//!
//! ## Features
//!
//! - `schema` (default): [`schema`], the JSON Schema documents generated from the types.
//! - `requirements` (default): `requirements`, the parser of the specification's numbered
//!   requirements and tagged example frames.

#![deny(missing_docs)]

pub mod changes;
pub mod channel;
pub mod channels;
pub mod connection;
pub mod cursors;
mod decode;
pub mod errors;
pub mod extensible;
pub mod history;
pub mod http;
pub mod ids;
pub mod presence;
#[cfg(feature = "requirements")]
pub mod requirements;
pub mod rooms;
#[cfg(feature = "schema")]
pub mod schema;
pub mod state;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use changes::{DataChange, Operation};
pub use channel::{ChannelKind, ChannelName, ChannelNameError};
pub use channels::{
    Broadcast, BroadcastAck, Message, Subscribe, Subscribed, Unsubscribe, Unsubscribed,
};
pub use connection::{
    AnnouncedLimits, AuthRefresh, AuthRefreshed, Capability, Claims, Heartbeat, Limits, Ping, Pong,
    Right, Rights, UserInfo, Welcome, PROTOCOL,
};
pub use cursors::{CursorMoved, CursorState, CursorUpdate};
pub use decode::{
    decode_client, decode_server, decode_server_value, json_depth, parse_frame, DecodeError,
    ServerDecodeError,
};
pub use errors::{CloseAction, CloseCode, ErrorCode, ErrorFrame};
pub use extensible::{Extensible, WireToken};
pub use history::{History, HistoryPage};
pub use ids::{Epoch, Millis, RequestId, StreamPosition, UserId};
pub use presence::{
    Member, PresenceAck, PresenceList, PresenceRequest, PresenceStatus, PresenceUpdate,
    PresenceUpdated, UserJoined, UserLeft,
};
pub use rooms::{RoomInfo, RoomOptions};
pub use state::{
    StateAck, StateData, StateDelete, StateDeleted, StateMerge, StateMerged, StateSnapshot,
    StateSync, StateSyncRequest, StateUpdate, StateUpdated, StateVersion,
};

/// Every frame a client may send, tagged on `type`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type")]
pub enum ClientMessage {
    /// Keep-alive and round-trip probe (CONN).
    #[serde(rename = "ping")]
    Ping(Ping),
    /// Replace the connection's token (CONN).
    #[serde(rename = "auth:refresh")]
    AuthRefresh(AuthRefresh),
    /// Join a channel, optionally recovering (CHAN, HIST, ROOM).
    #[serde(rename = "subscribe")]
    Subscribe(Subscribe),
    /// Leave a channel (CHAN).
    #[serde(rename = "unsubscribe")]
    Unsubscribe(Unsubscribe),
    /// Publish an event on a channel (CHAN).
    #[serde(rename = "broadcast")]
    Broadcast(Broadcast),
    /// Read a channel's retained messages (HIST, BCAST).
    #[serde(rename = "history")]
    History(History),
    /// Ask for a presence channel's members (PRES).
    #[serde(rename = "presence")]
    Presence(PresenceRequest),
    /// Change one's own presence status or data (PRES).
    #[serde(rename = "presence:update")]
    PresenceUpdate(PresenceUpdate),
    /// Move one's cursor (CURS).
    #[serde(rename = "cursor:update")]
    CursorUpdate(CursorUpdate),
    /// Set one state key (STATE).
    #[serde(rename = "state:update")]
    StateUpdate(StateUpdate),
    /// Set several state keys (STATE).
    #[serde(rename = "state:merge")]
    StateMerge(StateMerge),
    /// Remove a state key (STATE).
    #[serde(rename = "state:delete")]
    StateDelete(StateDelete),
    /// Ask for a state snapshot (STATE).
    #[serde(rename = "state:sync:request")]
    StateSyncRequest(StateSyncRequest),
}

/// Every frame a server may send, tagged on `type`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type")]
pub enum ServerMessage {
    /// First frame of every connection (CONN).
    #[serde(rename = "welcome")]
    Welcome(Welcome),
    /// Reply to `ping` (CONN).
    #[serde(rename = "pong")]
    Pong(Pong),
    /// Reply to `auth:refresh` (CONN).
    #[serde(rename = "auth:refreshed")]
    AuthRefreshed(AuthRefreshed),
    /// Reply to `subscribe` (CHAN, HIST, PRES, ROOM).
    #[serde(rename = "subscribed")]
    Subscribed(Subscribed),
    /// Reply to `unsubscribe`, or a server-side removal (CHAN).
    #[serde(rename = "unsubscribed")]
    Unsubscribed(Unsubscribed),
    /// Reply to `broadcast` (CHAN).
    #[serde(rename = "broadcast:ack")]
    BroadcastAck(BroadcastAck),
    /// A channel event (CHAN).
    #[serde(rename = "message")]
    Message(Message),
    /// Reply to `history` (HIST).
    #[serde(rename = "history:page")]
    HistoryPage(HistoryPage),
    /// Reply to `presence` (PRES).
    #[serde(rename = "presence:list")]
    PresenceList(PresenceList),
    /// Reply to `presence:update` (PRES).
    #[serde(rename = "presence:ack")]
    PresenceAck(PresenceAck),
    /// A user's first lease in a presence channel (PRES).
    #[serde(rename = "user:joined")]
    UserJoined(UserJoined),
    /// A user's last lease ended (PRES).
    #[serde(rename = "user:left")]
    UserLeft(UserLeft),
    /// A member's status or data changed (PRES).
    #[serde(rename = "presence:updated")]
    PresenceUpdated(PresenceUpdated),
    /// Coalesced cursor positions (CURS).
    #[serde(rename = "cursor:moved")]
    CursorMoved(CursorMoved),
    /// Reply to a state write (STATE).
    #[serde(rename = "state:ack")]
    StateAck(StateAck),
    /// Reply to `state:sync:request` (STATE).
    #[serde(rename = "state:sync")]
    StateSync(StateSync),
    /// A key was set (STATE).
    #[serde(rename = "state:update")]
    StateUpdate(StateUpdated),
    /// Several keys were set (STATE).
    #[serde(rename = "state:merge")]
    StateMerge(StateMerged),
    /// A key was removed (STATE).
    #[serde(rename = "state:delete")]
    StateDelete(StateDeleted),
    /// A committed database change (CHG).
    #[serde(rename = "data_change")]
    DataChange(DataChange),
    /// A request failed (ERR).
    #[serde(rename = "error")]
    Error(ErrorFrame),
}

/// One entry of a channel's stream: what takes a `seq` and is replayed on recovery.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type")]
pub enum StreamItem {
    /// A broadcast event.
    #[serde(rename = "message")]
    Message(Message),
    /// A database change.
    #[serde(rename = "data_change")]
    DataChange(DataChange),
}

impl StreamItem {
    /// The item's sequence number.
    pub fn seq(&self) -> u64 {
        match self {
            StreamItem::Message(m) => m.seq,
            StreamItem::DataChange(d) => d.seq,
        }
    }

    /// The item as the frame delivered live.
    pub fn into_server_message(self) -> ServerMessage {
        match self {
            StreamItem::Message(m) => ServerMessage::Message(m),
            StreamItem::DataChange(d) => ServerMessage::DataChange(d),
        }
    }
}

/// The `type` names of [`ClientMessage`], in declaration order.
pub const CLIENT_TYPES: [&str; 13] = [
    "ping",
    "auth:refresh",
    "subscribe",
    "unsubscribe",
    "broadcast",
    "history",
    "presence",
    "presence:update",
    "cursor:update",
    "state:update",
    "state:merge",
    "state:delete",
    "state:sync:request",
];

/// The `type` names of [`ServerMessage`], in declaration order.
pub const SERVER_TYPES: [&str; 21] = [
    "welcome",
    "pong",
    "auth:refreshed",
    "subscribed",
    "unsubscribed",
    "broadcast:ack",
    "message",
    "history:page",
    "presence:list",
    "presence:ack",
    "user:joined",
    "user:left",
    "presence:updated",
    "cursor:moved",
    "state:ack",
    "state:sync",
    "state:update",
    "state:merge",
    "state:delete",
    "data_change",
    "error",
];

impl ClientMessage {
    /// The frame's `type` name.
    pub fn type_name(&self) -> &'static str {
        match self {
            ClientMessage::Ping(_) => "ping",
            ClientMessage::AuthRefresh(_) => "auth:refresh",
            ClientMessage::Subscribe(_) => "subscribe",
            ClientMessage::Unsubscribe(_) => "unsubscribe",
            ClientMessage::Broadcast(_) => "broadcast",
            ClientMessage::History(_) => "history",
            ClientMessage::Presence(_) => "presence",
            ClientMessage::PresenceUpdate(_) => "presence:update",
            ClientMessage::CursorUpdate(_) => "cursor:update",
            ClientMessage::StateUpdate(_) => "state:update",
            ClientMessage::StateMerge(_) => "state:merge",
            ClientMessage::StateDelete(_) => "state:delete",
            ClientMessage::StateSyncRequest(_) => "state:sync:request",
        }
    }

    /// The request's correlation id, if it has one.
    pub fn id(&self) -> Option<&RequestId> {
        match self {
            ClientMessage::Ping(m) => m.id.as_ref(),
            ClientMessage::AuthRefresh(m) => m.id.as_ref(),
            ClientMessage::Subscribe(m) => m.id.as_ref(),
            ClientMessage::Unsubscribe(m) => m.id.as_ref(),
            ClientMessage::Broadcast(m) => m.id.as_ref(),
            ClientMessage::History(m) => m.id.as_ref(),
            ClientMessage::Presence(m) => m.id.as_ref(),
            ClientMessage::PresenceUpdate(m) => m.id.as_ref(),
            ClientMessage::CursorUpdate(_) => None,
            ClientMessage::StateUpdate(m) => m.id.as_ref(),
            ClientMessage::StateMerge(m) => m.id.as_ref(),
            ClientMessage::StateDelete(m) => m.id.as_ref(),
            ClientMessage::StateSyncRequest(m) => m.id.as_ref(),
        }
    }
}

impl ServerMessage {
    /// The frame's `type` name.
    pub fn type_name(&self) -> &'static str {
        match self {
            ServerMessage::Welcome(_) => "welcome",
            ServerMessage::Pong(_) => "pong",
            ServerMessage::AuthRefreshed(_) => "auth:refreshed",
            ServerMessage::Subscribed(_) => "subscribed",
            ServerMessage::Unsubscribed(_) => "unsubscribed",
            ServerMessage::BroadcastAck(_) => "broadcast:ack",
            ServerMessage::Message(_) => "message",
            ServerMessage::HistoryPage(_) => "history:page",
            ServerMessage::PresenceList(_) => "presence:list",
            ServerMessage::PresenceAck(_) => "presence:ack",
            ServerMessage::UserJoined(_) => "user:joined",
            ServerMessage::UserLeft(_) => "user:left",
            ServerMessage::PresenceUpdated(_) => "presence:updated",
            ServerMessage::CursorMoved(_) => "cursor:moved",
            ServerMessage::StateAck(_) => "state:ack",
            ServerMessage::StateSync(_) => "state:sync",
            ServerMessage::StateUpdate(_) => "state:update",
            ServerMessage::StateMerge(_) => "state:merge",
            ServerMessage::StateDelete(_) => "state:delete",
            ServerMessage::DataChange(_) => "data_change",
            ServerMessage::Error(_) => "error",
        }
    }

    /// Serializes the frame as the JSON text sent on the wire.
    pub fn to_json(&self) -> String {
        // Serializing these types cannot fail: every map key is a string and no custom
        // serializer returns an error.
        serde_json::to_string(self).unwrap_or_else(|e| {
            format!(r#"{{"type":"error","code":"internal","message":"serialize: {e}"}}"#)
        })
    }
}

/// The README's examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
