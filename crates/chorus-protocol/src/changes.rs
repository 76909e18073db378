//! Database change events (spec: changes.md, CHG requirements).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::channel::ChannelName;
use crate::ids::Millis;

/// What happened to a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Operation {
    /// The record was inserted.
    Create,
    /// The record was changed.
    Update,
    /// The record was removed.
    Delete,
}

/// `data_change` (server): a committed change of a record, delivered on `resource:{name}` and
/// on `resource:{name}:{record_id}` (CHG-21); it takes a `seq` in each channel like a `message`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct DataChange {
    /// The channel this copy was delivered on.
    pub channel: ChannelName,
    /// What happened.
    pub operation: Operation,
    /// Resource name, e.g. `post`.
    pub resource: String,
    /// The record's id (the seeds' `id`; renamed because `id` is request correlation).
    pub record_id: String,
    /// The record after the change; for `delete`, the record as it was.
    pub data: serde_json::Value,
    /// Server time of the commit.
    pub ts: Millis,
    /// Position in this channel.
    pub seq: u64,
}
