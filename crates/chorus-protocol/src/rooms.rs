//! Rooms: presence channels with options (spec: rooms.md, ROOM requirements).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::ids::Millis;

/// Options given by the `subscribe` that creates a room; ignored when the room exists.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RoomOptions {
    /// Password later joiners must give.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::ids::non_null"
    )]
    pub password: Option<String>,
    /// Most distinct users at once: at least 1 (ROOM-7), at most `limits.max_room_users`.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::ids::non_null"
    )]
    #[schemars(range(min = 1))]
    pub max_users: Option<u32>,
    /// Application metadata shown to every joiner.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::ids::non_null"
    )]
    #[schemars(extend("not" = {"type": "null"}))]
    pub metadata: Option<serde_json::Value>,
    /// Keep the room (options, metadata, state, history) across emptiness and restarts.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::ids::non_null"
    )]
    pub persist: Option<bool>,
}

/// A room's settings, as reported in `subscribed`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RoomInfo {
    /// Application metadata (an empty object when none was given).
    pub metadata: serde_json::Value,
    /// Most distinct users at once.
    pub max_users: u32,
    /// Whether the room survives emptiness and restarts.
    pub persist: bool,
    /// Whether joining needs a password.
    pub protected: bool,
    /// When the room was created, server ms.
    pub created_at: Millis,
}
