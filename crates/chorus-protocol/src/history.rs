//! History requests (spec: history.md, HIST requirements). Recovery itself rides on
//! `subscribe.since` (see [`crate::channels::Subscribe`]).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::channel::ChannelName;
use crate::ids::{RequestId, StreamPosition};
use crate::StreamItem;

/// `history` (client): ask for retained messages of a channel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct History {
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
    /// At most this many messages, at least 1; above `limits.history_limit` it is lowered
    /// to it (HIST-12, HIST-15).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::ids::non_null"
    )]
    pub limit: Option<std::num::NonZeroU32>,
    /// Only messages with `seq` below this (paging backwards).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::ids::non_null"
    )]
    pub before_seq: Option<u64>,
    /// Only messages with this event name (the seeds' broadcast sub-channels, BCAST).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::ids::non_null"
    )]
    pub event: Option<String>,
}

/// `history:page` (server): the newest matching messages, oldest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct HistoryPage {
    /// The `history`'s id.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::ids::non_null_id"
    )]
    #[schemars(with = "RequestId")]
    pub id: Option<RequestId>,
    /// The channel.
    pub channel: ChannelName,
    /// The channel's current position.
    pub position: StreamPosition,
    /// Matching stream items, ascending `seq`.
    pub messages: Vec<StreamItem>,
    /// True when older matching messages are retained beyond this page.
    pub has_more: bool,
}
