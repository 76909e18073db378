//! Lenient decoding of server frames (TRANS-27, VER-9): a frame of an unknown `type` is
//! ignored, members a later v1.x server may add are ignored, unknown capability tokens and
//! limit keys are dropped. Nothing a server sends can make the client panic.
//!
//! All server input goes through [`decode`]; the rest of the client only sees
//! [`Inbound`].

use chorus_protocol::{Capability, ErrorCode, Limits, ServerMessage, SERVER_TYPES};
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
    frame.code.as_str().to_owned()
}

/// Whether `welcome` announces `capability`.
pub fn announces(welcome: &chorus_protocol::Welcome, capability: Capability) -> bool {
    welcome.capabilities.iter().any(|c| *c == capability)
}

/// Decodes one text frame from the server.
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
    let Some(kind) = value.get("type").and_then(Value::as_str).map(str::to_owned) else {
        return Inbound::Malformed {
            kind: "?".into(),
            reason: "no string `type`".into(),
        };
    };
    if !SERVER_TYPES.contains(&kind.as_str()) {
        return Inbound::UnknownType(kind);
    }
    let unknown_tokens = kind == "welcome" && welcome_has_unknown_tokens(&value);
    match lenient(value.clone()) {
        Ok(message) => {
            let had_unknown = unknown_tokens || has_unknown_members(&value, &message);
            Inbound::Frame {
                message: Box::new(message),
                had_unknown,
            }
        }
        Err(reason) => Inbound::Malformed { kind, reason },
    }
}

/// Deserializes with unknown members, capability tokens and limit keys removed.
///
/// The protocol types reject unknown members; until they accept them, members that serde
/// names as unknown are removed and the frame decoded again.
fn lenient(mut value: Value) -> Result<ServerMessage, String> {
    match value.get("type").and_then(Value::as_str) {
        Some("welcome") => prune_welcome(&mut value),
        Some("error") => {
            // ERR-7: an unknown code reads as `internal`.
            let known = value
                .get("code")
                .is_some_and(|c| serde_json::from_value::<ErrorCode>(c.clone()).is_ok());
            if !known {
                value["code"] = Value::from("internal");
            }
        }
        _ => {}
    }
    let mut last = String::new();
    for _ in 0..64 {
        match serde_json::from_value::<ServerMessage>(value.clone()) {
            Ok(m) => return Ok(m),
            Err(e) => {
                let text = e.to_string();
                match unknown_name(&text) {
                    Some(name) if text.starts_with("unknown field") => {
                        if !remove_key(&mut value, &name, true) {
                            return Err(text);
                        }
                    }
                    _ => return Err(text),
                }
                last = text;
            }
        }
    }
    Err(last)
}

/// The name quoted in serde's "unknown field `x`" message.
fn unknown_name(text: &str) -> Option<String> {
    let start = text.find('`')? + 1;
    let len = text[start..].find('`')?;
    Some(text[start..start + len].to_owned())
}

/// Removes every member called `name` below the top level (the top level's `type` stays).
fn remove_key(value: &mut Value, name: &str, top: bool) -> bool {
    let mut removed = false;
    match value {
        Value::Object(map) => {
            if !(top && name == "type") && map.remove(name).is_some() {
                removed = true;
            }
            for v in map.values_mut() {
                removed |= remove_key(v, name, false);
            }
        }
        Value::Array(items) => {
            for v in items {
                removed |= remove_key(v, name, false);
            }
        }
        _ => {}
    }
    removed
}

fn known_limit_keys() -> Vec<String> {
    match serde_json::to_value(Limits::default()) {
        Ok(Value::Object(map)) => map.keys().cloned().collect(),
        _ => Vec::new(),
    }
}

/// VER-9: unknown capability tokens and limit keys are dropped before decoding.
fn prune_welcome(value: &mut Value) {
    if let Some(Value::Array(caps)) = value.get_mut("capabilities") {
        caps.retain(|c| {
            c.as_str()
                .is_some_and(|s| Capability::ALL.iter().any(|k| k.as_str() == s))
        });
    }
    let known = known_limit_keys();
    if let Some(Value::Object(limits)) = value.get_mut("limits") {
        limits.retain(|k, _| known.contains(k));
    }
}

fn welcome_has_unknown_tokens(value: &Value) -> bool {
    let caps = value
        .get("capabilities")
        .and_then(Value::as_array)
        .is_some_and(|caps| {
            caps.iter().any(|c| {
                !c.as_str()
                    .is_some_and(|s| Capability::ALL.iter().any(|k| k.as_str() == s))
            })
        });
    let known = known_limit_keys();
    let limits = value
        .get("limits")
        .and_then(Value::as_object)
        .is_some_and(|l| l.keys().any(|k| !known.contains(k)));
    caps || limits
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
        assert_eq!(
            w.capabilities,
            vec![chorus_protocol::Extensible::Known(Capability::Presence)]
        );
    }

    #[test]
    fn garbage_is_malformed_not_a_panic() {
        for text in ["", "[]", "{", "null", r#"{"type":5}"#, r#"{"type":"pong"}"#] {
            assert!(matches!(decode(text), Inbound::Malformed { .. }), "{text}");
        }
    }
}
