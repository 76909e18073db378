//! Identifiers and positions shared by several areas (spec: transport.md, history.md).

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize};

/// The largest integer request id: 2^53-1, exact in every JSON implementation (TRANS-8).
pub const MAX_SAFE_INTEGER: u64 = (1 << 53) - 1;

/// Request correlation id chosen by the client and echoed verbatim in the one reply to that
/// request (TRANS requirements): a string of 1 to 64 characters or a non-negative integer.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(untagged)]
pub enum RequestId {
    /// A non-negative integer id.
    Number(u64),
    /// A string id of 1 to 64 characters.
    Text(String),
}

impl JsonSchema for RequestId {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "RequestId".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "Request correlation id chosen by the client and echoed verbatim in the one reply to that request: a string of 1 to 64 characters or an integer from 0 to 2^53-1.",
            "oneOf": [
                { "type": "string", "minLength": 1, "maxLength": 64 },
                { "type": "integer", "minimum": 0, "maximum": 9007199254740991u64 }
            ]
        })
    }
}

impl<'de> Deserialize<'de> for RequestId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Number(u64),
            Text(String),
        }
        match Raw::deserialize(deserializer).map_err(|_| {
            serde::de::Error::custom(
                "id must be a string of 1 to 64 characters or a non-negative integer",
            )
        })? {
            Raw::Number(n) if n <= MAX_SAFE_INTEGER => Ok(RequestId::Number(n)),
            Raw::Number(_) => Err(serde::de::Error::custom(
                "an integer id must be at most 2^53-1 (TRANS-8)",
            )),
            Raw::Text(s) if (1..=64).contains(&s.chars().count()) => Ok(RequestId::Text(s)),
            Raw::Text(_) => Err(serde::de::Error::custom(
                "id must be a string of 1 to 64 characters or a non-negative integer",
            )),
        }
    }
}

impl std::fmt::Display for RequestId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RequestId::Number(n) => write!(f, "{n}"),
            RequestId::Text(s) => f.write_str(s),
        }
    }
}

impl From<&str> for RequestId {
    fn from(value: &str) -> Self {
        RequestId::Text(value.to_owned())
    }
}

impl From<u64> for RequestId {
    fn from(value: u64) -> Self {
        RequestId::Number(value)
    }
}

/// Deserializes an optional request id where an explicit `null` is an error, not an absent
/// id (TRANS-8). Use with `#[serde(default, deserialize_with = "crate::ids::non_null_id")]`.
pub fn non_null_id<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<RequestId>, D::Error> {
    RequestId::deserialize(deserializer).map(Some)
}

/// Deserializes an optional member of a client frame where an explicit `null` is an error,
/// not an absent member (TRANS-29): absence is spelled by omitting the member. Use with
/// `#[serde(default, deserialize_with = "crate::ids::non_null")]`; serde calls it only when
/// the member is present, so `None` here can only come from `null`.
pub fn non_null<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    deserializer: D,
) -> Result<Option<T>, D::Error> {
    match Option::<T>::deserialize(deserializer)? {
        Some(value) => Ok(Some(value)),
        None => Err(serde::de::Error::custom(
            "null is not a value of an optional member: omit the member (TRANS-29)",
        )),
    }
}

/// Opaque identifier of one numbering of a channel's stream and state. It changes whenever
/// the server can no longer continue the previous numbering (history or state lost, e.g. a
/// restart of a server that does not persist the channel); a client that sees a new epoch
/// knows its positions and versions are void (HIST, STATE requirements).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, JsonSchema)]
#[serde(transparent)]
pub struct Epoch(
    /// 1 to 64 characters (HIST-1).
    #[schemars(length(min = 1, max = 64))]
    pub String,
);

impl<'de> Deserialize<'de> for Epoch {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        if (1..=64).contains(&s.chars().count()) {
            Ok(Epoch(s))
        } else {
            Err(serde::de::Error::custom(
                "an epoch is 1 to 64 characters (HIST-1)",
            ))
        }
    }
}

impl Epoch {
    /// The epoch as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for Epoch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for Epoch {
    fn from(value: &str) -> Self {
        Epoch(value.to_owned())
    }
}

/// A point in a channel's stream: the epoch and the `seq` of the last message covered. A
/// channel whose stream is empty is at `seq` 0 (HIST requirements).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub struct StreamPosition {
    /// The numbering this position belongs to.
    pub epoch: Epoch,
    /// Sequence number of the last message at this position; 0 for an empty stream.
    pub seq: u64,
}

/// Deserializes `subscribe.since` strictly: a client frame with a member a position does not
/// have is `invalid_message` (TRANS-14), although [`StreamPosition`] itself, read by clients
/// in server frames, ignores unknown members (VER-9). Use with
/// `#[serde(default, deserialize_with = "crate::ids::strict_position")]`.
pub fn strict_position<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<StreamPosition>, D::Error> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Strict {
        epoch: Epoch,
        seq: u64,
    }
    non_null::<D, Strict>(deserializer)
        .map(|s| s.map(|Strict { epoch, seq }| StreamPosition { epoch, seq }))
}

/// Server time in milliseconds since the Unix epoch. Always set by the server, never taken
/// from a client.
pub type Millis = u64;

/// A user id: the JWT `sub` claim of the connection that acted.
pub type UserId = String;
