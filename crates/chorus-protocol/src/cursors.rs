//! Live cursors on presence channels (spec: cursors.md, CURS requirements).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::channel::ChannelName;
use crate::ids::{Millis, UserId};

/// `cursor:update` (client): my pointer moved. No success reply; coalesced by the server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CursorUpdate {
    /// The presence channel.
    pub channel: ChannelName,
    /// Horizontal position (application units).
    pub x: f64,
    /// Vertical position (application units).
    pub y: f64,
    /// Optional extra (selection, tool, …).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::ids::non_null"
    )]
    #[schemars(extend("not" = {"type": "null"}))]
    pub data: Option<serde_json::Value>,
}

/// The latest cursor of one user.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CursorState {
    /// Whose cursor.
    pub user_id: UserId,
    /// Horizontal position.
    pub x: f64,
    /// Vertical position.
    pub y: f64,
    /// Extra data given with the position.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("not" = {"type": "null"}))]
    pub data: Option<serde_json::Value>,
    /// Server time the position was received.
    pub ts: Millis,
}

/// `cursor:moved` (server): the latest positions since the previous flush, one per user.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CursorMoved {
    /// The channel.
    pub channel: ChannelName,
    /// Latest position of each user that moved.
    pub cursors: Vec<CursorState>,
}
