//! Presence on `presence-` channels (spec: presence.md, PRES requirements).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::channel::ChannelName;
use crate::ids::{Millis, RequestId, UserId};

/// A member's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum PresenceStatus {
    /// Active (the status of a new member).
    #[default]
    Online,
    /// Idle.
    Away,
    /// Do not disturb.
    Busy,
    // No `offline`: a server never sends it (PRES-4) and a client cannot set it (PRES-15);
    // it is what a client shows after `user:left`.
}

/// One user in a presence channel: keyed by user id, however many connections it holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Member {
    /// The user id.
    pub user_id: UserId,
    /// The profile from the user's token (or an empty object).
    pub profile: serde_json::Value,
    /// Current status.
    pub status: PresenceStatus,
    /// Custom presence data set with `presence:update`: an object, `{}` until set (PRES).
    pub data: serde_json::Value,
    /// When the member joined (its first lease), server ms.
    pub joined_at: Millis,
    /// Server ms of the member's last activity in the channel.
    pub last_seen: Millis,
}

/// `presence:update` (client): change one's own status and/or data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PresenceUpdate {
    /// Correlation id.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::ids::non_null_id"
    )]
    #[schemars(with = "RequestId")]
    pub id: Option<RequestId>,
    /// The presence channel.
    pub channel: ChannelName,
    /// New status (`online`, `away` or `busy`).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::ids::non_null"
    )]
    pub status: Option<PresenceStatus>,
    /// New custom data (replaces the previous data).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::ids::non_null"
    )]
    #[schemars(extend("not" = {"type": "null"}))]
    pub data: Option<serde_json::Value>,
}

/// `presence:ack` (server): the update is applied.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PresenceAck {
    /// The `presence:update`'s id.
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

/// `presence` (client): ask for the member list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PresenceRequest {
    /// Correlation id.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::ids::non_null_id"
    )]
    #[schemars(with = "RequestId")]
    pub id: Option<RequestId>,
    /// The presence channel.
    pub channel: ChannelName,
}

/// `presence:list` (server): every member of the channel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PresenceList {
    /// The `presence`'s id.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::ids::non_null_id"
    )]
    #[schemars(with = "RequestId")]
    pub id: Option<RequestId>,
    /// The channel.
    pub channel: ChannelName,
    /// The members.
    pub members: Vec<Member>,
}

/// `user:joined` (server): a user took its first lease in the channel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct UserJoined {
    /// The channel.
    pub channel: ChannelName,
    /// The new member.
    pub member: Member,
}

/// `user:left` (server): a user's last lease ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct UserLeft {
    /// The channel.
    pub channel: ChannelName,
    /// The user who left.
    pub user_id: UserId,
    /// Server ms of the user's last activity in the channel.
    pub last_seen: Millis,
}

/// `presence:updated` (server): a member's status or data changed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PresenceUpdated {
    /// The channel.
    pub channel: ChannelName,
    /// The member as it is now.
    pub member: Member,
}
