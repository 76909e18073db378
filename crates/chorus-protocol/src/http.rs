//! Bodies of the HTTP API and the SSE stream (spec: http.md, sse.md).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::changes::Operation;
use crate::channel::ChannelName;
use crate::errors::ErrorCode;
use crate::ids::Millis;
use crate::presence::Member;

/// Header carrying the API key of the server-side HTTP API.
pub const API_KEY_HEADER: &str = "x-api-key";
/// Header naming the tenant of an HTTP API call (absent: the default tenant "").
pub const TENANT_HEADER: &str = "x-chorus-tenant";
/// Header of `POST /api/changes` naming one reported change, so that a retry is
/// recognised (CHG-13, CHG-14).
pub const IDEMPOTENCY_KEY_HEADER: &str = "idempotency-key";
/// Longest `Idempotency-Key` value (CHG-13).
pub const MAX_IDEMPOTENCY_KEY_LEN: usize = 255;

/// One channel in `GET /api/stats`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ChannelStats {
    /// The channel.
    pub name: ChannelName,
    /// Subscribed connections.
    pub subscribers: u64,
    /// Distinct presence members (0 for non-presence channels).
    pub members: u64,
}

/// `GET /api/stats`: the server's live counters for the tenant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StatsResponse {
    /// Open connections of the tenant.
    pub connections: u64,
    /// Subscriptions of those connections.
    pub subscriptions: u64,
    /// Channels with at least one subscriber or member.
    pub channels: Vec<ChannelStats>,
}

/// `GET /api/channel/users?channel=…`: the members of a presence channel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ChannelUsersResponse {
    /// The channel.
    pub channel: ChannelName,
    /// Its members.
    pub users: Vec<Member>,
    /// How many.
    pub count: u64,
}

/// Body of `POST /api/broadcast` (API key) and `POST /api/publish` (user token).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PublishRequest {
    /// The channel.
    pub channel: ChannelName,
    /// Event name.
    pub event: String,
    /// Payload.
    pub data: serde_json::Value,
    /// Client-chosen id, 1 to 128 characters: a retry with the same id within
    /// `limits.dedup_window_ms` publishes nothing and gets the first reply (HTTP-38).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::ids::non_null"
    )]
    #[schemars(length(min = 1, max = 128))]
    pub message_id: Option<String>,
}

/// Reply of `POST /api/broadcast` and `POST /api/publish`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PublishResponse {
    /// The channel.
    pub channel: ChannelName,
    /// The message's sequence number.
    pub seq: u64,
    /// Server time of acceptance.
    pub ts: Millis,
}

/// A record of the resource API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ResourceRecord {
    /// The record id.
    pub id: String,
    /// The record's JSON body.
    pub data: serde_json::Value,
}

/// `GET /api/resources/{name}`: every record of a resource.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ResourceList {
    /// The resource name.
    pub resource: String,
    /// Its records in creation order, starting after the `after` parameter's record (HTTP-28).
    pub records: Vec<ResourceRecord>,
    /// Whether more records follow this page (HTTP-28).
    pub has_more: bool,
}

/// Body of `POST /api/changes` (API key): a change the application committed in its own
/// database, to be announced as a `data_change` pair (CHG-22).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangeReport {
    /// Resource name (`[A-Za-z0-9_-]{1,64}`, not `resource`).
    pub resource: String,
    /// Record id (`[A-Za-z0-9_\-.@=]{1,128}`).
    pub record_id: String,
    /// What happened to the record.
    pub operation: Operation,
    /// The whole record after the change (for `delete`, as it was); an object whose `id`,
    /// when present, equals `record_id` (CHG-16).
    pub data: serde_json::Value,
}

/// Reply of `POST /api/changes`: where the change was numbered. A retry with the same
/// `Idempotency-Key` gets the same reply (CHG-14).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangeAccepted {
    /// The resource name.
    pub resource: String,
    /// The record id.
    pub record_id: String,
    /// The operation.
    pub operation: Operation,
    /// `seq` of the change on `resource:{resource}`.
    pub feed_seq: u64,
    /// `seq` of the change on `resource:{resource}:{record_id}`.
    pub record_seq: u64,
    /// `ts` of both frames.
    pub ts: Millis,
}

/// The error inside an HTTP error body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HttpError {
    /// Machine-readable reason (the WebSocket error codes).
    pub code: ErrorCode,
    /// Human-readable explanation.
    pub message: String,
    /// With `rate_limited` (status 429): how long to wait before retrying (HTTP-7).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<u64>,
}

/// Body of every non-2xx HTTP reply: `{"error": {"code", "message"}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HttpErrorBody {
    /// The error.
    pub error: HttpError,
}

/// `GET /healthz`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Health {
    /// `ok` while the server accepts connections.
    pub status: String,
}
