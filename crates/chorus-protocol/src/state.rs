//! Shared versioned state of a channel (spec: state.md, STATE requirements).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::channel::ChannelName;
use crate::ids::{Epoch, Millis, RequestId, UserId};

/// The state's object: top-level keys to JSON values.
pub type StateData = serde_json::Map<String, serde_json::Value>;

/// A state version: strictly increasing within an epoch, 0 for the empty initial state.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub struct StateVersion {
    /// The version number.
    pub version: u64,
    /// The numbering it belongs to.
    pub epoch: Epoch,
}

/// A full copy of a channel's state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct StateSnapshot {
    /// Every key and value.
    pub data: StateData,
    /// The version of this snapshot.
    pub version: u64,
    /// The numbering it belongs to.
    pub epoch: Epoch,
}

/// `state:update` (client): set one key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StateUpdate {
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
    /// The key.
    pub key: String,
    /// The new value.
    pub value: serde_json::Value,
    /// Compare-and-set: apply only if the state is at this version.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::ids::non_null"
    )]
    pub expected_version: Option<u64>,
    /// Compare-and-set across epochs: apply only if the state is in this epoch (STATE-32).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::ids::non_null"
    )]
    pub expected_epoch: Option<Epoch>,
}

/// `state:merge` (client): set several top-level keys at once (shallow).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StateMerge {
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
    /// Keys and their new values.
    pub data: StateData,
    /// Compare-and-set: apply only if the state is at this version.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::ids::non_null"
    )]
    pub expected_version: Option<u64>,
    /// Compare-and-set across epochs: apply only if the state is in this epoch (STATE-32).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::ids::non_null"
    )]
    pub expected_epoch: Option<Epoch>,
}

/// `state:delete` (client): remove one key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StateDelete {
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
    /// The key.
    pub key: String,
    /// Compare-and-set: apply only if the state is at this version.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::ids::non_null"
    )]
    pub expected_version: Option<u64>,
    /// Compare-and-set across epochs: apply only if the state is in this epoch (STATE-32).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::ids::non_null"
    )]
    pub expected_epoch: Option<Epoch>,
}

/// `state:sync:request` (client): ask for a snapshot.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StateSyncRequest {
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

/// `state:sync` (server): a snapshot; the next change carries `version + 1`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct StateSync {
    /// The request's id.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::ids::non_null_id"
    )]
    #[schemars(with = "RequestId")]
    pub id: Option<RequestId>,
    /// The channel.
    pub channel: ChannelName,
    /// Every key and value.
    pub data: StateData,
    /// The snapshot's version.
    pub version: u64,
    /// The numbering it belongs to.
    pub epoch: Epoch,
}

/// `state:ack` (server): the write was accepted at this version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct StateAck {
    /// The write's id.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::ids::non_null_id"
    )]
    #[schemars(with = "RequestId")]
    pub id: Option<RequestId>,
    /// The channel.
    pub channel: ChannelName,
    /// The version the write produced.
    pub version: u64,
    /// The numbering it belongs to.
    pub epoch: Epoch,
}

/// `state:update` (server): a key was set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct StateUpdated {
    /// The channel.
    pub channel: ChannelName,
    /// The key.
    pub key: String,
    /// The new value.
    pub value: serde_json::Value,
    /// The version this change produced.
    pub version: u64,
    /// The numbering it belongs to.
    pub epoch: Epoch,
    /// The writer's user id; absent for server-originated writes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<UserId>,
    /// Server time of the write.
    pub ts: Millis,
}

/// `state:merge` (server): several keys were set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct StateMerged {
    /// The channel.
    pub channel: ChannelName,
    /// Keys and their new values.
    pub data: StateData,
    /// The version this change produced.
    pub version: u64,
    /// The numbering it belongs to.
    pub epoch: Epoch,
    /// The writer's user id; absent for server-originated writes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<UserId>,
    /// Server time of the write.
    pub ts: Millis,
}

/// `state:delete` (server): a key was removed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct StateDeleted {
    /// The channel.
    pub channel: ChannelName,
    /// The key.
    pub key: String,
    /// The version this change produced.
    pub version: u64,
    /// The numbering it belongs to.
    pub epoch: Epoch,
    /// The writer's user id; absent for server-originated writes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<UserId>,
    /// Server time of the write.
    pub ts: Millis,
}
