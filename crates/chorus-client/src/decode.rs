//! Lenient decoding of server frames (TRANS-27, VER-9) on the protocol crate's
//! `decode_server`: a frame of an unknown `type` is ignored, members a later v1.x server may
//! add are ignored, unknown capability tokens, limit keys and error codes are kept as
//! unknown. Nothing a server sends can make the client panic.
//!
//! All server input goes through [`decode`]; the rest of the client only sees
//! [`Inbound`].

use chorus_protocol::{
    decode_server_value, Capability, ErrorCode, ServerDecodeError, ServerMessage,
};
use serde_json::Value;

/// One decoded server frame.
#[derive(Debug, Clone, PartialEq)]
pub enum Inbound {
    /// A frame of a known type.
    Frame {
        /// The frame.
        message: Box<ServerMessage>,
        /// True when the frame carried members, capabilities or limit keys this client
        /// does not know (and ignored).
        had_unknown: bool,
    },
    /// A frame whose `type` this client does not know: ignored (TRANS-27).
    UnknownType(String),
    /// A frame of a known type whose known members are malformed: ignored, logged.
    Malformed {
        /// The frame's `type` (or `?`).
        kind: String,
        /// What is wrong.
        reason: String,
    },
}

/// The code of an error frame, `None` for a code this client does not know (handled like
/// `internal`, ERR-7).
pub fn error_code(frame: &chorus_protocol::ErrorFrame) -> Option<ErrorCode> {
    frame.code.known().copied()
}

/// The code of an error frame exactly as the server sent it.
pub fn error_code_text(frame: &chorus_protocol::ErrorFrame) -> String {
    frame.code.to_string()
}

/// Whether `welcome` announces `capability`.
pub fn announces(welcome: &chorus_protocol::Welcome, capability: Capability) -> bool {
    welcome.capabilities.iter().any(|c| *c == capability)
}

/// Decodes one text frame from the server with [`chorus_protocol::decode_server_value`].
pub fn decode(text: &str) -> Inbound {
    let value: Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(e) => {
            return Inbound::Malformed {
                kind: "?".into(),
                reason: format!("not JSON: {e}"),
            }
        }
    };
    match decode_server_value(value.clone()) {
        Ok(message) => {
            let had_unknown = unknown_tokens(&message) || has_unknown_members(&value, &message);
            Inbound::Frame {
                message: Box::new(message),
                had_unknown,
            }
        }
        Err(ServerDecodeError::UnknownType { kind }) => Inbound::UnknownType(kind),
        Err(ServerDecodeError::InvalidMessage { kind, reason }) => {
            Inbound::Malformed { kind, reason }
        }
        Err(e) => Inbound::Malformed {
            kind: "?".into(),
            reason: e.to_string(),
        },
    }
}

/// Capability tokens, limit keys or error codes of a later revision.
fn unknown_tokens(message: &ServerMessage) -> bool {
    match message {
        ServerMessage::Welcome(w) => {
            !w.limits.unknown.is_empty() || w.capabilities.iter().any(|c| c.known().is_none())
        }
        ServerMessage::Error(e) => e.code.known().is_none(),
        _ => false,
    }
}

/// Whether `raw` holds an object member that the decoded `message` does not carry.
fn has_unknown_members(raw: &Value, message: &ServerMessage) -> bool {
    let Ok(decoded) = serde_json::to_value(message) else {
        return false;
    };
    extra_keys(raw, &decoded)
}

fn extra_keys(raw: &Value, decoded: &Value) -> bool {
    match (raw, decoded) {
        (Value::Object(r), Value::Object(d)) => r.iter().any(|(k, v)| match d.get(k) {
            None => !v.is_null(),
            Some(dv) => extra_keys(v, dv),
        }),
        (Value::Object(r), _) => !r.is_empty(),
        (Value::Array(r), Value::Array(d)) if r.len() == d.len() => {
            r.iter().zip(d).any(|(a, b)| extra_keys(a, b))
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WELCOME: &str = r#"{"type":"welcome","protocol":"chorus.v1","connection_id":"c1","user":{"id":"ann","profile":{}},"tenant":"","heartbeat":{"interval_ms":30000,"timeout_ms":60000},"limits":{"max_frame_bytes":1048576,"max_subscriptions":100,"max_channel_name_len":200,"broadcast_rate_per_sec":50,"broadcast_burst":100,"max_presence_members":1000,"max_room_users":1000,"history_limit":100,"max_json_depth":32,"cursor_interval_ms":50,"presence_grace_ms":5000},"capabilities":["presence","state"],"server":"x/1"}"#;

    #[test]
    fn unknown_types_are_reported_not_decoded() {
        assert_eq!(
            decode(r#"{"type":"room:whatever","x":1}"#),
            Inbound::UnknownType("room:whatever".into())
        );
    }

    #[test]
    fn a_plain_welcome_has_nothing_unknown() {
        let Inbound::Frame { had_unknown, .. } = decode(WELCOME) else {
            panic!("welcome decodes");
        };
        assert!(!had_unknown);
    }

    #[test]
    fn unknown_capabilities_limits_and_members_are_ignored() {
        let mut v: Value = serde_json::from_str(WELCOME).unwrap();
        v["capabilities"] = serde_json::json!(["presence", "teleport"]);
        v["limits"]["max_wormholes"] = 3.into();
        v["future"] = serde_json::json!({"a": 1});
        v["heartbeat"]["jitter_ms"] = 5.into();
        let Inbound::Frame {
            message,
            had_unknown,
        } = decode(&v.to_string())
        else {
            panic!("decodes leniently");
        };
        assert!(had_unknown);
        let ServerMessage::Welcome(w) = *message else {
            panic!("a welcome")
        };
        assert!(announces(&w, Capability::Presence));
        assert_eq!(w.capabilities.len(), 2, "the unknown token is kept");
    }

    #[test]
    fn garbage_is_malformed_not_a_panic() {
        for text in ["", "[]", "{", "null", r#"{"type":5}"#, r#"{"type":"pong"}"#] {
            assert!(matches!(decode(text), Inbound::Malformed { .. }), "{text}");
        }
    }
}
