//! Typed errors and close codes (spec: errors.md, ERR requirements).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::channel::ChannelName;
use crate::extensible::Extensible;
use crate::ids::RequestId;
use crate::state::StateVersion;

/// The closed list of error codes. A client acts on the code, never on the message text.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The frame is not a JSON object, or nests deeper than `limits.max_json_depth`. Fix the sender.
    InvalidJson,
    /// The `type` is not a client message of this protocol version. Check capabilities/version.
    UnknownType,
    /// A known type with missing, extra (including server-set) or mistyped fields. Fix the sender.
    InvalidMessage,
    /// The channel name breaks the naming rules. Fix the name.
    InvalidChannel,
    /// A token given on the connection (e.g. `auth:refresh`) is invalid or for another identity.
    Unauthorized,
    /// The identity lacks a grant (private channel) or may not do this (broadcast to `resource:`).
    Forbidden,
    /// The room needs a password and the one given is missing or wrong.
    BadPassword,
    /// The room already holds `max_users` distinct users.
    RoomFull,
    /// The request needs a subscription to the channel first.
    NotSubscribed,
    /// The connection is already subscribed to the channel.
    AlreadySubscribed,
    /// Compare-and-set failed: `current` carries the state's version. Resync, then retry.
    Conflict,
    /// Too many requests: wait `retry_after_ms`, then retry.
    RateLimited,
    /// A configured limit (named in `limit`) would be exceeded.
    LimitExceeded,
    /// The request needs a capability this server does not announce.
    Unsupported,
    /// The thing asked for does not exist.
    NotFound,
    /// The server failed; the request may be retried.
    Internal,
}

impl ErrorCode {
    /// Every error code of this revision.
    pub const ALL: [ErrorCode; 16] = [
        ErrorCode::InvalidJson,
        ErrorCode::UnknownType,
        ErrorCode::InvalidMessage,
        ErrorCode::InvalidChannel,
        ErrorCode::Unauthorized,
        ErrorCode::Forbidden,
        ErrorCode::BadPassword,
        ErrorCode::RoomFull,
        ErrorCode::NotSubscribed,
        ErrorCode::AlreadySubscribed,
        ErrorCode::Conflict,
        ErrorCode::RateLimited,
        ErrorCode::LimitExceeded,
        ErrorCode::Unsupported,
        ErrorCode::NotFound,
        ErrorCode::Internal,
    ];

    /// The wire name, e.g. `invalid_json`.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidJson => "invalid_json",
            ErrorCode::UnknownType => "unknown_type",
            ErrorCode::InvalidMessage => "invalid_message",
            ErrorCode::InvalidChannel => "invalid_channel",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::BadPassword => "bad_password",
            ErrorCode::RoomFull => "room_full",
            ErrorCode::NotSubscribed => "not_subscribed",
            ErrorCode::AlreadySubscribed => "already_subscribed",
            ErrorCode::Conflict => "conflict",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::LimitExceeded => "limit_exceeded",
            ErrorCode::Unsupported => "unsupported",
            ErrorCode::NotFound => "not_found",
            ErrorCode::Internal => "internal",
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `error` (server): a request failed, or a frame could not be understood.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ErrorFrame {
    /// The failed request's id, when it had one and it could be read.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::ids::non_null_id"
    )]
    #[schemars(with = "RequestId")]
    pub id: Option<RequestId>,
    /// Machine-readable reason. A client handles a code it does not know like `internal`
    /// (client.md).
    pub code: Extensible<ErrorCode>,
    /// Human-readable explanation; not stable.
    pub message: String,
    /// The `channel` string of the request answered, verbatim, even when it is not a valid
    /// channel name (ERR-2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
    /// With `conflict`: the state's current version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current: Option<StateVersion>,
    /// With `limit_exceeded`: the name of the limit, as in `welcome.limits`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<String>,
    /// With `rate_limited`: how long to wait before retrying.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<u64>,
}

impl ErrorFrame {
    /// An error with just a code, message and the request id.
    pub fn new(id: Option<RequestId>, code: ErrorCode, message: impl Into<String>) -> Self {
        ErrorFrame {
            id,
            code: Extensible::Known(code),
            message: message.into(),
            channel: None,
            current: None,
            limit: None,
            retry_after_ms: None,
        }
    }

    /// Names the channel concerned.
    pub fn with_channel(mut self, channel: &ChannelName) -> Self {
        self.channel = Some(channel.as_str().to_owned());
        self
    }
}

/// What a client should do after a close code (the ranges of the close-code registry).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum CloseAction {
    /// Do not reconnect (normal close, or nothing will change by retrying).
    Stop,
    /// Get fresh credentials, then reconnect.
    RefreshCredentials,
    /// Reconnect after an exponential back-off with jitter.
    Backoff,
    /// Reconnect at once.
    ReconnectNow,
}

/// The close codes of the registry (errors.md). Numbers live only in [`CloseCode::code`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum CloseCode {
    /// 1000: the client or server ended the session normally.
    Normal,
    /// 1001: the server is shutting down; pending frames were flushed. Back off and reconnect.
    GoingAway,
    /// 1002: the peer broke the WebSocket protocol itself (WebSocket libraries send it).
    ProtocolError,
    /// 1003: a binary frame was received; Chorus speaks text frames only.
    UnsupportedData,
    /// 1007: a text frame held invalid UTF-8.
    InvalidPayload,
    /// 1009: a frame exceeded `limits.max_frame_bytes`.
    MessageTooBig,
    /// 1011: the server hit an unexpected condition. Back off and reconnect.
    InternalError,
    /// 4001: the token is missing, malformed or badly signed (an expired one gets 4100).
    Unauthorized,
    /// 4003: the identity may not connect at all (e.g. tenant disabled).
    Forbidden,
    /// 4005: too many consecutive protocol errors.
    TooManyErrors,
    /// 4100: the token is expired, at connect or during the session. Refresh it, then reconnect.
    TokenExpired,
    /// 4200: the client did not read fast enough and its outbound queue overflowed.
    SlowConsumer,
    /// 4202: the server is at its connection capacity.
    ServerOverloaded,
    /// 4300: nothing was received for `heartbeat.timeout_ms`.
    HeartbeatTimeout,
    /// 4301: the server asks the client to reconnect now (e.g. rebalancing).
    ReconnectRequested,
}

impl CloseCode {
    /// Every registered close code.
    pub const ALL: [CloseCode; 15] = [
        CloseCode::Normal,
        CloseCode::GoingAway,
        CloseCode::ProtocolError,
        CloseCode::UnsupportedData,
        CloseCode::InvalidPayload,
        CloseCode::MessageTooBig,
        CloseCode::InternalError,
        CloseCode::Unauthorized,
        CloseCode::Forbidden,
        CloseCode::TooManyErrors,
        CloseCode::TokenExpired,
        CloseCode::SlowConsumer,
        CloseCode::ServerOverloaded,
        CloseCode::HeartbeatTimeout,
        CloseCode::ReconnectRequested,
    ];

    /// The number sent in the WebSocket close frame: the one table of close-code numbers.
    pub fn code(self) -> u16 {
        match self {
            CloseCode::Normal => 1000,
            CloseCode::GoingAway => 1001,
            CloseCode::ProtocolError => 1002,
            CloseCode::UnsupportedData => 1003,
            CloseCode::InvalidPayload => 1007,
            CloseCode::MessageTooBig => 1009,
            CloseCode::InternalError => 1011,
            CloseCode::Unauthorized => 4001,
            CloseCode::Forbidden => 4003,
            CloseCode::TooManyErrors => 4005,
            CloseCode::TokenExpired => 4100,
            CloseCode::SlowConsumer => 4200,
            CloseCode::ServerOverloaded => 4202,
            CloseCode::HeartbeatTimeout => 4300,
            CloseCode::ReconnectRequested => 4301,
        }
    }

    /// The registered code with this number, if any.
    pub fn from_code(code: u16) -> Option<CloseCode> {
        CloseCode::ALL.into_iter().find(|c| c.code() == code)
    }

    /// Short reason text sent with the close frame.
    pub fn reason(self) -> &'static str {
        match self {
            CloseCode::Normal => "normal",
            CloseCode::GoingAway => "going away",
            CloseCode::ProtocolError => "protocol error",
            CloseCode::UnsupportedData => "binary frames are not accepted",
            CloseCode::InvalidPayload => "invalid utf-8",
            CloseCode::MessageTooBig => "frame too big",
            CloseCode::InternalError => "internal error",
            CloseCode::Unauthorized => "unauthorized",
            CloseCode::Forbidden => "forbidden",
            CloseCode::TooManyErrors => "too many errors",
            CloseCode::TokenExpired => "token expired",
            CloseCode::SlowConsumer => "slow consumer",
            CloseCode::ServerOverloaded => "server overloaded",
            CloseCode::HeartbeatTimeout => "heartbeat timeout",
            CloseCode::ReconnectRequested => "reconnect requested",
        }
    }

    /// What a client should do, by the registry's ranges: 4000-4099 stop, 4100-4199 refresh
    /// credentials, 4200-4299 back off, 4300-4399 reconnect now.
    pub fn action(self) -> CloseAction {
        match self.code() {
            1000 | 1002 | 1003 | 1007 | 1009 => CloseAction::Stop,
            1001 | 1011 => CloseAction::Backoff,
            4000..=4099 => CloseAction::Stop,
            4100..=4199 => CloseAction::RefreshCredentials,
            4200..=4299 => CloseAction::Backoff,
            _ => CloseAction::ReconnectNow,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_codes_are_unique_and_round_trip() {
        for c in CloseCode::ALL {
            assert_eq!(CloseCode::from_code(c.code()), Some(c));
        }
        assert_eq!(CloseCode::from_code(4999), None);
    }

    #[test]
    fn every_error_code_is_listed_once_under_its_wire_name() {
        let names: std::collections::BTreeSet<_> =
            ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(names.len(), ErrorCode::ALL.len());
        for c in ErrorCode::ALL {
            assert_eq!(serde_json::to_value(c).unwrap(), c.as_str());
        }
    }

    #[test]
    fn close_ranges_tell_the_action() {
        assert_eq!(CloseCode::Unauthorized.action(), CloseAction::Stop);
        assert_eq!(
            CloseCode::TokenExpired.action(),
            CloseAction::RefreshCredentials
        );
        assert_eq!(CloseCode::SlowConsumer.action(), CloseAction::Backoff);
        assert_eq!(
            CloseCode::HeartbeatTimeout.action(),
            CloseAction::ReconnectNow
        );
    }
}
