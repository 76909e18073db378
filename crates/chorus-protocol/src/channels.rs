//! Subscribing, broadcasting and delivery (spec: channels.md, CHAN requirements; recovery
//! fields: history.md).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::channel::{ChannelKind, ChannelName};
use crate::cursors::CursorState;
use crate::ids::{Millis, RequestId, StreamPosition, UserId};
use crate::presence::Member;
use crate::rooms::{RoomInfo, RoomOptions};
use crate::state::StateSnapshot;

/// `subscribe` (client): join a channel's fan-out, optionally recovering from a position.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Subscribe {
    /// Correlation id.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::ids::non_null_id"
    )]
    #[schemars(with = "RequestId")]
    pub id: Option<RequestId>,
    /// The channel.
    pub channel: ChannelName,
    /// Last position the client saw; the server replays what follows (HIST requirements).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::ids::strict_position"
    )]
    pub since: Option<StreamPosition>,
    /// Room password, for presence channels created with one (ROOM requirements).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::ids::non_null"
    )]
    pub password: Option<String>,
    /// Room options, applied only when this subscribe creates the room.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::ids::non_null"
    )]
    pub room: Option<RoomOptions>,
    /// Ask for the channel's shared-state snapshot inside `subscribed`.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::ids::non_null"
    )]
    pub state: Option<bool>,
}

/// `subscribed` (server): the connection is in the channel's fan-out; nothing after this
/// frame will be missed. Carries every snapshot the client needs before any diff.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Subscribed {
    /// The `subscribe`'s id.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::ids::non_null_id"
    )]
    #[schemars(with = "RequestId")]
    pub id: Option<RequestId>,
    /// The channel.
    pub channel: ChannelName,
    /// The channel's kind.
    pub kind: ChannelKind,
    /// The channel's current stream position (the last `seq` sent before this frame).
    pub position: StreamPosition,
    /// Present when `since` was given: true when every missed message follows this frame,
    /// false when the gap cannot be filled (new epoch or beyond retention).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovered: Option<bool>,
    /// Presence channels: every member, self included.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub presence: Option<Vec<Member>>,
    /// Presence channels: the room's settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub room: Option<RoomInfo>,
    /// Presence channels with the cursors capability: the latest cursor of each other member.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursors: Option<Vec<CursorState>>,
    /// Shared state, when the subscribe asked for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<StateSnapshot>,
}

/// `unsubscribe` (client): leave a channel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Unsubscribe {
    /// Correlation id.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::ids::non_null_id"
    )]
    #[schemars(with = "RequestId")]
    pub id: Option<RequestId>,
    /// The channel.
    pub channel: ChannelName,
}

/// `unsubscribed` (server): the connection left the channel, on request or (with a
/// `reason`, without `id`) because the server removed it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Unsubscribed {
    /// The `unsubscribe`'s id.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::ids::non_null_id"
    )]
    #[schemars(with = "RequestId")]
    pub id: Option<RequestId>,
    /// The channel.
    pub channel: ChannelName,
    /// Why the server removed the subscription, when it did so on its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// `broadcast` (client): publish an event on a channel the connection is subscribed to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Broadcast {
    /// Correlation id.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::ids::non_null_id"
    )]
    #[schemars(with = "RequestId")]
    pub id: Option<RequestId>,
    /// The channel.
    pub channel: ChannelName,
    /// Event name, 1 to 128 characters (e.g. `chat:message`).
    #[schemars(length(min = 1, max = 128))]
    pub event: String,
    /// Application payload.
    pub data: serde_json::Value,
    /// Also deliver the `message` to the sending connection.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::ids::non_null"
    )]
    pub echo: Option<bool>,
    /// Client-chosen id, 1 to 128 characters: a retry with the same id within
    /// `limits.dedup_window_ms` publishes nothing and gets the first ack (CHAN-44).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::ids::non_null"
    )]
    #[schemars(length(min = 1, max = 128))]
    pub message_id: Option<String>,
}

/// `broadcast:ack` (server): the message was accepted and numbered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct BroadcastAck {
    /// The `broadcast`'s id.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::ids::non_null_id"
    )]
    #[schemars(with = "RequestId")]
    pub id: Option<RequestId>,
    /// The channel.
    pub channel: ChannelName,
    /// The message's sequence number in the channel.
    pub seq: u64,
    /// Server time of acceptance.
    pub ts: Millis,
}

/// `message` (server): one event of a channel's stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Message {
    /// The channel.
    pub channel: ChannelName,
    /// Event name.
    pub event: String,
    /// Application payload.
    pub data: serde_json::Value,
    /// The sender's user id; absent for server-originated messages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<UserId>,
    /// Server time of acceptance.
    pub ts: Millis,
    /// Position in the channel: previous `seq` + 1.
    pub seq: u64,
}
