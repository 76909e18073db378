//! Decoding frames: client frames into [`ClientMessage`] strictly, sorted into the spec's
//! error codes (transport.md: invalid_json, unknown_type, invalid_message); server frames
//! into [`ServerMessage`] leniently, as a client must read them (versioning.md, VER-9).

use thiserror::Error;

use crate::errors::ErrorCode;
use crate::ids::RequestId;
use crate::{ClientMessage, ServerMessage, CLIENT_TYPES, SERVER_TYPES};

/// Why a text frame is not a valid client message.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum DecodeError {
    /// Not JSON, not an object, or nested too deeply.
    #[error("invalid JSON: {0}")]
    InvalidJson(String),
    /// `type` names no client message.
    #[error("unknown message type {kind:?}")]
    UnknownType {
        /// The unknown `type`.
        kind: String,
        /// The request id, when it could be read, so the error can echo it (TRANS-22).
        id: Option<RequestId>,
        /// The frame's `channel` string, so the error can echo it (ERR-2).
        channel: Option<String>,
    },
    /// A known type whose fields are wrong.
    #[error("invalid {kind} message: {reason}")]
    InvalidMessage {
        /// The frame's `type`, or `?` when it has none.
        kind: String,
        /// What is wrong.
        reason: String,
        /// The request id, when it could be read, so the error can echo it.
        id: Option<RequestId>,
        /// The frame's `channel` string, so the error can echo it (ERR-2).
        channel: Option<String>,
    },
}

impl DecodeError {
    /// The error code a server answers with.
    pub fn code(&self) -> ErrorCode {
        match self {
            DecodeError::InvalidJson(_) => ErrorCode::InvalidJson,
            DecodeError::UnknownType { .. } => ErrorCode::UnknownType,
            DecodeError::InvalidMessage { .. } => ErrorCode::InvalidMessage,
        }
    }

    /// The `channel` string to echo, when the frame had one (ERR-2).
    pub fn channel(&self) -> Option<&str> {
        match self {
            DecodeError::InvalidMessage { channel, .. }
            | DecodeError::UnknownType { channel, .. } => channel.as_deref(),
            DecodeError::InvalidJson(_) => None,
        }
    }

    /// The error frame a server answers with: code, message, and the id and channel echoed.
    pub fn to_error_frame(&self) -> crate::errors::ErrorFrame {
        let mut frame = crate::errors::ErrorFrame::new(
            self.request_id().cloned(),
            self.code(),
            self.to_string(),
        );
        frame.channel = self.channel().map(str::to_owned);
        frame
    }

    /// The request id to echo, when it could be read.
    pub fn request_id(&self) -> Option<&RequestId> {
        match self {
            DecodeError::InvalidMessage { id, .. } | DecodeError::UnknownType { id, .. } => {
                id.as_ref()
            }
            _ => None,
        }
    }
}

/// Nesting depth of a JSON value: 0 for a scalar, 1 for a flat object or array.
pub fn json_depth(value: &serde_json::Value) -> usize {
    // Iterative so that a hostile depth cannot overflow the stack.
    let mut max = 0;
    let mut stack = vec![(value, 0usize)];
    while let Some((v, d)) = stack.pop() {
        match v {
            serde_json::Value::Array(items) => {
                max = max.max(d + 1);
                stack.extend(items.iter().map(|i| (i, d + 1)));
            }
            serde_json::Value::Object(map) => {
                max = max.max(d + 1);
                stack.extend(map.values().map(|i| (i, d + 1)));
            }
            _ => {}
        }
    }
    max
}

/// Parses the JSON text of one client frame into a value, refusing what RFC 8259 leaves
/// to the parser: an object with a repeated member name (TRANS-30; parsers disagree on which
/// one wins, so a proxy and a server could read different frames) and a string escaping a
/// lone surrogate (TRANS-31; it is no Unicode text). Trailing content is refused too.
pub fn parse_frame(text: &str) -> Result<serde_json::Value, String> {
    use serde::de::DeserializeSeed;
    let mut de = serde_json::Deserializer::from_str(text);
    let value = unique::UniqueValue
        .deserialize(&mut de)
        .map_err(|e| e.to_string())?;
    de.end().map_err(|e| e.to_string())?;
    Ok(value)
}

/// A JSON value whose objects have unique member names.
mod unique {
    use serde::de::{DeserializeSeed, Deserializer, Error, MapAccess, SeqAccess, Visitor};
    use serde_json::{Map, Number, Value};
    use std::fmt;

    pub struct UniqueValue;

    impl<'de> DeserializeSeed<'de> for UniqueValue {
        type Value = Value;
        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
            d.deserialize_any(self)
        }
    }

    impl<'de> Visitor<'de> for UniqueValue {
        type Value = Value;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a JSON value")
        }
        fn visit_bool<E: Error>(self, v: bool) -> Result<Value, E> {
            Ok(Value::Bool(v))
        }
        fn visit_i64<E: Error>(self, v: i64) -> Result<Value, E> {
            Ok(Value::Number(v.into()))
        }
        fn visit_u64<E: Error>(self, v: u64) -> Result<Value, E> {
            Ok(Value::Number(v.into()))
        }
        fn visit_f64<E: Error>(self, v: f64) -> Result<Value, E> {
            Ok(Number::from_f64(v).map_or(Value::Null, Value::Number))
        }
        fn visit_str<E: Error>(self, v: &str) -> Result<Value, E> {
            Ok(Value::String(v.to_owned()))
        }
        fn visit_string<E: Error>(self, v: String) -> Result<Value, E> {
            Ok(Value::String(v))
        }
        fn visit_unit<E: Error>(self) -> Result<Value, E> {
            Ok(Value::Null)
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
            let mut items = Vec::new();
            while let Some(item) = seq.next_element_seed(UniqueValue)? {
                items.push(item);
            }
            Ok(Value::Array(items))
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
            let mut members = Map::new();
            while let Some(name) = map.next_key::<String>()? {
                if members.contains_key(&name) {
                    return Err(A::Error::custom(format!(
                        "duplicate member name {name:?} (TRANS-30)"
                    )));
                }
                let value = map.next_value_seed(UniqueValue)?;
                members.insert(name, value);
            }
            Ok(Value::Object(members))
        }
    }
}

/// Decodes one text frame. `max_depth` is the server's `limits.max_json_depth`.
pub fn decode_client(text: &str, max_depth: usize) -> Result<ClientMessage, DecodeError> {
    let value = parse_frame(text).map_err(DecodeError::InvalidJson)?;
    let depth = json_depth(&value);
    if depth > max_depth {
        return Err(DecodeError::InvalidJson(format!(
            "nesting depth {depth} exceeds the limit {max_depth}"
        )));
    }
    let serde_json::Value::Object(map) = &value else {
        return Err(DecodeError::InvalidJson(
            "a frame must be a JSON object".into(),
        ));
    };
    let id = map
        .get("id")
        .and_then(|v| serde_json::from_value::<RequestId>(v.clone()).ok());
    let channel = map
        .get("channel")
        .and_then(|v| v.as_str())
        .map(str::to_owned);
    let kind = match map.get("type") {
        Some(serde_json::Value::String(t)) => t.clone(),
        Some(_) => {
            return Err(DecodeError::InvalidMessage {
                kind: "?".into(),
                reason: "`type` must be a string".into(),
                id,
                channel,
            })
        }
        None => {
            return Err(DecodeError::InvalidMessage {
                kind: "?".into(),
                reason: "missing `type`".into(),
                id,
                channel,
            })
        }
    };
    if !CLIENT_TYPES.contains(&kind.as_str()) {
        return Err(DecodeError::UnknownType { kind, id, channel });
    }
    serde_json::from_value(value).map_err(|e| DecodeError::InvalidMessage {
        kind,
        reason: e.to_string(),
        // A malformed id did not parse above, so it is not echoed (TRANS-8).
        id,
        channel,
    })
}

/// Why a text frame from a server could not be read as a [`ServerMessage`].
#[derive(Debug, Clone, PartialEq, Error)]
pub enum ServerDecodeError {
    /// Not JSON, or not a JSON object.
    #[error("invalid JSON: {0}")]
    InvalidJson(String),
    /// `type` names no server message this crate knows. A client ignores such a frame
    /// (TRANS-27): a later revision may add message types for a new capability.
    #[error("unknown server message type {kind:?}")]
    UnknownType {
        /// The unknown `type`.
        kind: String,
    },
    /// A known type whose members this revision defines are missing or mistyped. Members
    /// it does not define are ignored, never a cause of this error.
    #[error("invalid {kind} message: {reason}")]
    InvalidMessage {
        /// The frame's `type`, or `?` when it has none.
        kind: String,
        /// What is wrong.
        reason: String,
    },
}

/// Decodes one text frame a server sent, as a client must read it (VER-9): members this
/// revision does not define are ignored; capability tokens and error codes it does not know
/// are kept as [`crate::Extensible::Unknown`]; `welcome.limits` keys it does not know are
/// kept in [`crate::AnnouncedLimits::unknown`].
///
/// This is the entry point for clients. It does not grade a server: the conformance suite
/// validates every server frame against the strict schema ([`crate::schema::server_schema`]).
pub fn decode_server(text: &str) -> Result<ServerMessage, ServerDecodeError> {
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| ServerDecodeError::InvalidJson(e.to_string()))?;
    decode_server_value(value)
}

/// [`decode_server`] for a frame already parsed as JSON.
pub fn decode_server_value(value: serde_json::Value) -> Result<ServerMessage, ServerDecodeError> {
    let serde_json::Value::Object(map) = &value else {
        return Err(ServerDecodeError::InvalidJson(
            "a frame must be a JSON object".into(),
        ));
    };
    let kind = match map.get("type") {
        Some(serde_json::Value::String(t)) => t.clone(),
        _ => {
            return Err(ServerDecodeError::InvalidMessage {
                kind: "?".into(),
                reason: "missing or non-string `type`".into(),
            })
        }
    };
    if !SERVER_TYPES.contains(&kind.as_str()) {
        return Err(ServerDecodeError::UnknownType { kind });
    }
    serde_json::from_value(value).map_err(|e| ServerDecodeError::InvalidMessage {
        kind,
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_json_is_invalid_json() {
        assert_eq!(
            decode_client("{nope", 32).unwrap_err().code(),
            ErrorCode::InvalidJson
        );
        assert_eq!(
            decode_client("[1]", 32).unwrap_err().code(),
            ErrorCode::InvalidJson
        );
    }

    #[test]
    fn deep_nesting_is_invalid_json() {
        let deep = format!(
            r#"{{"type":"ping","x":{}{}}}"#,
            "[".repeat(40),
            "]".repeat(40)
        );
        assert_eq!(
            decode_client(&deep, 32).unwrap_err().code(),
            ErrorCode::InvalidJson
        );
    }

    #[test]
    fn unknown_type_is_reported_as_such() {
        let e = decode_client(r#"{"type":"room:join","id":"1"}"#, 32).unwrap_err();
        assert_eq!(
            e,
            DecodeError::UnknownType {
                kind: "room:join".into(),
                id: Some("1".into()),
                channel: None
            }
        );
    }

    #[test]
    fn forged_server_field_is_invalid_message_with_id() {
        let e = decode_client(
            r#"{"type":"broadcast","id":"7","channel":"c","event":"e","data":1,"from":"mallory"}"#,
            32,
        )
        .unwrap_err();
        assert_eq!(e.code(), ErrorCode::InvalidMessage);
        assert_eq!(e.request_id(), Some(&RequestId::from("7")));
    }

    #[test]
    fn missing_field_is_invalid_message() {
        let e = decode_client(r#"{"type":"subscribe"}"#, 32).unwrap_err();
        assert_eq!(e.code(), ErrorCode::InvalidMessage);
    }

    #[test]
    fn null_id_is_invalid_message_without_id() {
        let e = decode_client(r#"{"type":"ping","id":null}"#, 32).unwrap_err();
        assert_eq!(e.code(), ErrorCode::InvalidMessage);
        assert_eq!(e.request_id(), None);
    }

    #[test]
    fn error_frame_echoes_channel_even_when_invalid() {
        let e = decode_client(r#"{"type":"cursor:update","channel":"bad name","y":1}"#, 32)
            .unwrap_err();
        assert_eq!(e.to_error_frame().channel.as_deref(), Some("bad name"));
    }

    #[test]
    fn valid_frame_decodes() {
        let m = decode_client(r#"{"type":"subscribe","id":1,"channel":"chat"}"#, 32).unwrap();
        assert_eq!(m.type_name(), "subscribe");
        assert_eq!(m.id(), Some(&RequestId::Number(1)));
    }
}
