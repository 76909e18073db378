//! Connection lifecycle messages: welcome, heartbeat, token refresh (spec: connection.md,
//! CONN requirements), and the JWT claims a server reads.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::extensible::Extensible;
use crate::ids::{Millis, RequestId, UserId};

/// The protocol token: the WebSocket subprotocol and `welcome.protocol`.
pub const PROTOCOL: &str = "chorus.v1";

/// Claims of the HS256 JWT that authenticates a connection (CONN requirements).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Claims {
    /// The user id. Required.
    pub sub: UserId,
    /// Public profile shown to other members (name, avatar, color, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<serde_json::Value>,
    /// Tenant; channels of different tenants never meet. Absent means the default tenant "".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// Glob patterns (`*` matches any run of characters) granting `private-` channels.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub channels: Vec<String>,
    /// Per-operation rights (CHAN-36 to CHAN-42); absent: every operation is allowed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rights: Option<Rights>,
    /// Expiry, seconds since the Unix epoch (standard JWT `exp`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exp: Option<u64>,
    /// Issued-at, seconds since the Unix epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<u64>,
}

/// The `rights` claim: for each operation, the glob patterns (as in `channels`, CHAN-6) of
/// the channels a token may do it on. A token that carries `rights` may do an operation
/// only on a channel one of that operation's patterns matches; an operation it does not
/// list is allowed nowhere (CHAN-36). Members this revision does not define are ignored, so
/// that a later revision can add rights.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Rights {
    /// `subscribe` (CHAN-37).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subscribe: Vec<String>,
    /// `broadcast` and `POST /api/publish` (CHAN-38, HTTP-37).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub publish: Vec<String>,
    /// Being a member of a presence channel: joining its presence, `presence:update`,
    /// `cursor:update` (CHAN-39).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub presence: Vec<String>,
    /// `state:update`, `state:merge`, `state:delete` (CHAN-40).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub state: Vec<String>,
    /// `history` and the replay of `subscribe` with `since` (CHAN-41).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<String>,
}

/// One operation a [`Rights`] claim governs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Right {
    /// [`Rights::subscribe`].
    Subscribe,
    /// [`Rights::publish`].
    Publish,
    /// [`Rights::presence`].
    Presence,
    /// [`Rights::state`].
    State,
    /// [`Rights::history`].
    History,
}

impl Right {
    /// The claim member's name, e.g. `publish`.
    pub fn as_str(self) -> &'static str {
        match self {
            Right::Subscribe => "subscribe",
            Right::Publish => "publish",
            Right::Presence => "presence",
            Right::State => "state",
            Right::History => "history",
        }
    }
}

impl Rights {
    /// The patterns that allow `right`.
    pub fn patterns(&self, right: Right) -> &[String] {
        match right {
            Right::Subscribe => &self.subscribe,
            Right::Publish => &self.publish,
            Right::Presence => &self.presence,
            Right::State => &self.state,
            Right::History => &self.history,
        }
    }
}

/// The identity a server took from the token, as announced in `welcome`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct UserInfo {
    /// The user id (`sub`).
    pub id: UserId,
    /// The profile claim, or an empty object.
    pub profile: serde_json::Value,
}

/// Heartbeat timing announced in `welcome`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Heartbeat {
    /// How often a client should send `ping` (default 30000).
    pub interval_ms: u64,
    /// Silence after which the server closes with 4300 (default 60000).
    pub timeout_ms: u64,
}

/// The server's limits, announced so a client can stay under them (spec: limits.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Limits {
    /// Largest accepted frame in bytes; larger frames close the connection with 1009.
    pub max_frame_bytes: u64,
    /// Channels one connection may be subscribed to at once.
    pub max_subscriptions: u32,
    /// Longest channel name in characters.
    pub max_channel_name_len: u32,
    /// Sustained `broadcast` rate per connection, per second.
    pub broadcast_rate_per_sec: u32,
    /// Burst of `broadcast` a connection may send above the sustained rate.
    pub broadcast_burst: u32,
    /// Members one presence channel may hold.
    pub max_presence_members: u32,
    /// Upper bound on a room's `max_users`.
    pub max_room_users: u32,
    /// Most items in one `history:page`, and its default size (HIST-15); a server announcing
    /// `history` or `recovery` retains at least this many items per channel (HIST-5).
    pub history_limit: u32,
    /// Deepest JSON nesting accepted in a frame.
    pub max_json_depth: u32,
    /// Cursor coalescing interval: at most one `cursor:moved` per channel per interval.
    pub cursor_interval_ms: u64,
    /// How long an abruptly closed connection keeps its presence leases.
    pub presence_grace_ms: u64,
    /// How long a publish's `message_id` is remembered, so that a retry publishes nothing
    /// (CHAN-44). Decodes as 0 from a server of an earlier revision that does not announce
    /// it: such a server deduplicates nothing.
    #[serde(default)]
    pub dedup_window_ms: u64,
    /// Largest `presence:update` `data`, in bytes of its compact JSON (PRES-34). Like the
    /// other keys below, it decodes as 0 from a server of an earlier revision: unknown.
    #[serde(default)]
    pub max_presence_data_bytes: u64,
    /// Largest token `profile`, in bytes of its compact JSON (CONN-25).
    #[serde(default)]
    pub max_profile_bytes: u64,
    /// Largest `cursor:update` `data`, in bytes of its compact JSON (CURS-21).
    #[serde(default)]
    pub max_cursor_data_bytes: u64,
    /// Largest room `metadata`, in bytes of its compact JSON (ROOM-22).
    #[serde(default)]
    pub max_room_metadata_bytes: u64,
    /// Largest shared state of one channel, in bytes of its compact JSON; at most
    /// `max_frame_bytes` - 1024, so that a `state:sync` fits in one frame (STATE-34, LIMIT-12).
    #[serde(default)]
    pub max_state_bytes: u64,
    /// Stream items each channel retains, newest first, for `history` and recovery (HIST-19).
    #[serde(default)]
    pub retention_items: u64,
    /// How long after its publication a retained item is kept at least, ms (HIST-19).
    #[serde(default)]
    pub retention_ms: u64,
    /// Bytes of stream frames each channel retains, newest first: retention stops at
    /// `retention_items` or at this many bytes, whichever comes first (HIST-19).
    #[serde(default)]
    pub retention_bytes: u64,
    /// Sustained rate of requests of every type one connection may send, per second: the
    /// refill of its request bucket (LIMIT-14).
    #[serde(default)]
    pub request_rate_per_sec: u32,
    /// Requests one connection may send at once: the capacity of its request bucket
    /// (LIMIT-14).
    #[serde(default)]
    pub request_burst: u32,
    /// Wrong room passwords one user may give in a row before further password attempts
    /// are refused with `rate_limited` (LIMIT-16).
    #[serde(default)]
    pub max_password_attempts: u32,
    /// Time after which one more password attempt is allowed again, ms (LIMIT-16).
    #[serde(default)]
    pub password_attempt_interval_ms: u64,
    /// Channels one tenant may hold at once; a subscribe that would create one more is
    /// refused with `limit_exceeded` `"max_channels"` (LIMIT-18).
    #[serde(default)]
    pub max_channels: u64,
    /// Bytes per second the server reads from one connection once its burst is spent: the
    /// refill of its inbound byte bucket; a faster sender is read slower, with no error
    /// (LIMIT-19).
    #[serde(default)]
    pub inbound_bytes_per_sec: u64,
    /// Bytes the server reads from one connection at once: the capacity of its inbound
    /// byte bucket, at least `max_frame_bytes` (LIMIT-19).
    #[serde(default)]
    pub inbound_burst_bytes: u64,
}

impl Default for Limits {
    /// The defaults of the spec (limits.md), taken from the seed documents where they say.
    fn default() -> Self {
        Limits {
            max_frame_bytes: 1024 * 1024,
            max_subscriptions: 100,
            max_channel_name_len: 200,
            broadcast_rate_per_sec: 50,
            broadcast_burst: 100,
            max_presence_members: 1000,
            max_room_users: 1000,
            history_limit: 100,
            max_json_depth: 32,
            cursor_interval_ms: 50,
            presence_grace_ms: 5000,
            dedup_window_ms: 120_000,
            max_presence_data_bytes: 4096,
            max_profile_bytes: 4096,
            max_cursor_data_bytes: 1024,
            max_room_metadata_bytes: 4096,
            max_state_bytes: 1024 * 1024 - 4096,
            retention_items: 1000,
            retention_ms: 600_000,
            retention_bytes: 8 * 1024 * 1024,
            request_rate_per_sec: 200,
            request_burst: 500,
            max_password_attempts: 5,
            password_attempt_interval_ms: 10_000,
            max_channels: 100_000,
            inbound_bytes_per_sec: 1024 * 1024,
            inbound_burst_bytes: 2 * 1024 * 1024,
        }
    }
}

/// `welcome.limits` as a client reads it: the limits of this revision, and the keys a later
/// revision added, kept by name (VER-9). A v1 server sends exactly the keys of [`Limits`].
/// Dereferences to [`Limits`], so `welcome.limits.max_frame_bytes` reads as before.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct AnnouncedLimits {
    /// The limits of this revision.
    #[serde(flatten)]
    pub known: Limits,
    /// Keys this crate does not know, with their values.
    #[serde(flatten)]
    pub unknown: std::collections::BTreeMap<String, serde_json::Value>,
}

impl From<Limits> for AnnouncedLimits {
    fn from(known: Limits) -> Self {
        AnnouncedLimits {
            known,
            unknown: Default::default(),
        }
    }
}

impl std::ops::Deref for AnnouncedLimits {
    type Target = Limits;
    fn deref(&self) -> &Limits {
        &self.known
    }
}

impl JsonSchema for AnnouncedLimits {
    fn inline_schema() -> bool {
        true
    }

    fn schema_name() -> std::borrow::Cow<'static, str> {
        "AnnouncedLimits".into()
    }

    // The wire object is `Limits`: open to further keys in the consumer schema, closed in
    // the strict one (crate::schema).
    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        generator.subschema_for::<Limits>()
    }
}

/// Optional parts of the protocol a server may implement; it announces them in `welcome`
/// and a conformance suite grades only what is announced (spec: versioning.md).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Capability {
    /// Presence channels: members, statuses, data (presence.md).
    Presence,
    /// Room options on presence channels: password, max users, metadata, persist (rooms.md).
    Rooms,
    /// Live cursors with server-side coalescing (cursors.md).
    Cursors,
    /// Shared versioned state (state.md).
    State,
    /// The `history` request (history.md).
    History,
    /// `subscribe` with `since` (history.md).
    Recovery,
    /// `data_change` feeds (changes.md).
    DataChange,
    /// The SSE stream (sse.md).
    Sse,
    /// The HTTP API with an API key: `/api/stats`, `/api/channel/users` and `/api/broadcast`
    /// (HTTP-5; the resource API belongs to `data_change`).
    HttpApi,
    /// HTTP publish for clients without a WebSocket (http.md).
    HttpPublish,
}

impl Capability {
    /// Every capability, in wire order.
    pub const ALL: [Capability; 10] = [
        Capability::Presence,
        Capability::Rooms,
        Capability::Cursors,
        Capability::State,
        Capability::History,
        Capability::Recovery,
        Capability::DataChange,
        Capability::Sse,
        Capability::HttpApi,
        Capability::HttpPublish,
    ];

    /// The wire name, e.g. `data_change`.
    pub fn as_str(self) -> &'static str {
        match self {
            Capability::Presence => "presence",
            Capability::Rooms => "rooms",
            Capability::Cursors => "cursors",
            Capability::State => "state",
            Capability::History => "history",
            Capability::Recovery => "recovery",
            Capability::DataChange => "data_change",
            Capability::Sse => "sse",
            Capability::HttpApi => "http_api",
            Capability::HttpPublish => "http_publish",
        }
    }
}

/// `welcome`: the first frame on every accepted connection (CONN requirements).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Welcome {
    /// Always `chorus.v1`.
    pub protocol: String,
    /// Server-chosen id of this connection.
    pub connection_id: String,
    /// The authenticated identity.
    pub user: UserInfo,
    /// The tenant this connection lives in ("" for the default tenant).
    pub tenant: String,
    /// Heartbeat interval and timeout.
    pub heartbeat: Heartbeat,
    /// The limits this server enforces, with any key a later revision added (VER-9).
    pub limits: AnnouncedLimits,
    /// Optional capabilities this server implements. A v1 server sends only the tokens of
    /// this revision (VER-4); a client keeps or ignores one it does not know (VER-9).
    pub capabilities: Vec<Extensible<Capability>>,
    /// Server software and version, e.g. `chorus-server/0.1.0`.
    pub server: String,
    /// When the token expires (ms); absent for tokens without `exp`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Millis>,
}

/// `ping` (client): keeps the connection alive and measures round trips.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Ping {
    /// Correlation id, echoed in `pong`.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::ids::non_null_id"
    )]
    #[schemars(with = "RequestId")]
    pub id: Option<RequestId>,
}

/// `pong` (server): the reply to `ping`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Pong {
    /// The `ping`'s id.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::ids::non_null_id"
    )]
    #[schemars(with = "RequestId")]
    pub id: Option<RequestId>,
    /// Server time.
    pub ts: Millis,
}

/// `auth:refresh` (client): replaces the connection's token before it expires.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AuthRefresh {
    /// Correlation id.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::ids::non_null_id"
    )]
    #[schemars(with = "RequestId")]
    pub id: Option<RequestId>,
    /// The new JWT; same `sub` and `tenant` as the connection's.
    pub token: String,
}

/// `auth:refreshed` (server): the new token is in force.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct AuthRefreshed {
    /// The `auth:refresh`'s id.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::ids::non_null_id"
    )]
    #[schemars(with = "RequestId")]
    pub id: Option<RequestId>,
    /// The new expiry (ms); absent for a token without `exp`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Millis>,
}
