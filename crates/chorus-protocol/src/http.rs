//! Bodies of the HTTP API and the SSE stream (spec: http.md, sse.md).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::channel::ChannelName;
use crate::errors::ErrorCode;
use crate::ids::Millis;
use crate::presence::Member;

/// Header carrying the API key of the server-side HTTP API.
pub const API_KEY_HEADER: &str = "x-api-key";
/// Header naming the tenant of an HTTP API call (absent: the default tenant "").
pub const TENANT_HEADER: &str = "x-chorus-tenant";

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
    /// Its records, ordered by id.
    pub records: Vec<ResourceRecord>,
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
