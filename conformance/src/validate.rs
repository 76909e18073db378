//! Frame validation against the protocol's JSON Schema, branch by branch: a frame is
//! checked against the `oneOf` branch whose `type` const matches, so a violation names the
//! message type and the field path instead of "oneOf failed" (TRANS-6, TRANS-7).

use std::collections::BTreeMap;

use jsonschema::Validator;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use thiserror::Error;

/// One way a frame breaks the schema.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Violation {
    /// The frame's `type`, when it has a known one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_type: Option<String>,
    /// JSON pointer of the offending member (`""` for the frame itself).
    pub path: String,
    /// What is wrong.
    pub message: String,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let path = if self.path.is_empty() {
            "/"
        } else {
            &self.path
        };
        match &self.message_type {
            Some(t) => write!(f, "`{t}` at {path}: {}", self.message),
            None => write!(f, "at {path}: {}", self.message),
        }
    }
}

/// The schema could not be split into branches or compiled.
#[derive(Debug, Error)]
pub enum SchemaError {
    /// The root has no `oneOf` of branches with a `type` const.
    #[error("schema has no oneOf branches tagged by a `type` const")]
    NoBranches,
    /// A branch does not compile.
    #[error("branch `{branch}` does not compile: {message}")]
    Compile {
        /// The branch's type.
        branch: String,
        /// The compiler's message.
        message: String,
    },
}

/// A message schema split into one compiled validator per `type`.
pub struct FrameSchema {
    branches: BTreeMap<String, Validator>,
}

impl FrameSchema {
    /// Splits a `oneOf`-of-tagged-objects schema (as generated for the message enums).
    pub fn new(root: &Value) -> Result<Self, SchemaError> {
        let defs = root
            .get("$defs")
            .cloned()
            .unwrap_or(Value::Object(Map::new()));
        let branches = root
            .get("oneOf")
            .and_then(Value::as_array)
            .ok_or(SchemaError::NoBranches)?;
        let mut out = BTreeMap::new();
        for branch in branches {
            let Some(tag) = branch
                .pointer("/properties/type/const")
                .and_then(Value::as_str)
            else {
                return Err(SchemaError::NoBranches);
            };
            let mut schema = branch.clone();
            if let Value::Object(map) = &mut schema {
                map.insert("$defs".into(), defs.clone());
                map.insert(
                    "$schema".into(),
                    Value::String("https://json-schema.org/draft/2020-12/schema".into()),
                );
            }
            let validator =
                jsonschema::validator_for(&schema).map_err(|e| SchemaError::Compile {
                    branch: tag.into(),
                    message: e.to_string(),
                })?;
            out.insert(tag.to_owned(), validator);
        }
        Ok(FrameSchema { branches: out })
    }

    /// The server message schema of the protocol crate (= `schema/server.schema.json`).
    pub fn server() -> Result<Self, SchemaError> {
        Self::new(&chorus_protocol::schema::server_schema())
    }

    /// The client message schema of the protocol crate (= `schema/client.schema.json`).
    pub fn client() -> Result<Self, SchemaError> {
        Self::new(&chorus_protocol::schema::client_schema())
    }

    /// Whether `t` names a branch.
    pub fn knows(&self, t: &str) -> bool {
        self.branches.contains_key(t)
    }

    /// Every violation of `frame`, each with the paths of the values that cause it (inside
    /// optional fields: the inner values, not the field). The static fixture check uses the
    /// paths to exempt violations caused only by placeholders.
    pub fn check_with_paths(&self, frame: &Value) -> Vec<(Violation, Vec<String>)> {
        let Some(validator) = frame
            .get("type")
            .and_then(Value::as_str)
            .and_then(|t| self.branches.get(t))
        else {
            return self
                .check(frame)
                .into_iter()
                .map(|v| {
                    let path = v.path.clone();
                    (v, vec![path])
                })
                .collect();
        };
        let tag = frame["type"].as_str().unwrap_or_default();
        validator
            .iter_errors(frame)
            .map(|e| {
                let mut paths = Vec::new();
                leaf_paths(&e, &mut paths);
                let v = Violation {
                    message_type: Some(tag.to_owned()),
                    path: e.instance_path().as_str().to_owned(),
                    message: cut(explain(&e)),
                };
                (v, paths)
            })
            .collect()
    }

    /// Every violation of `frame`; empty when valid.
    pub fn check(&self, frame: &Value) -> Vec<Violation> {
        let bare = |path: &str, message: String| {
            vec![Violation {
                message_type: None,
                path: path.into(),
                message,
            }]
        };
        let Value::Object(map) = frame else {
            return bare("", "a frame must be a JSON object".into());
        };
        let Some(tag) = map.get("type") else {
            return bare("", "missing member `type`".into());
        };
        let Some(tag) = tag.as_str() else {
            return bare("/type", format!("`type` must be a string, got {tag}"));
        };
        let Some(validator) = self.branches.get(tag) else {
            return bare("/type", format!("unknown message type {tag:?}"));
        };
        validator
            .iter_errors(frame)
            .map(|e| Violation {
                message_type: Some(tag.to_owned()),
                path: e.instance_path().as_str().to_owned(),
                message: cut(explain(&e)),
            })
            .collect()
    }
}

/// A message cut to a readable length (the validator quotes whole values, which may be
/// megabytes of padding).
fn cut(message: String) -> String {
    const MAX: usize = 400;
    if message.chars().count() <= MAX {
        return message;
    }
    let head: String = message.chars().take(MAX).collect();
    format!("{head}…")
}

/// Where an error really is: for `anyOf`/`oneOf` failures (an optional field), the paths of
/// the inner errors of each non-null alternative, else the error's own path.
fn leaf_paths(e: &jsonschema::ValidationError<'_>, out: &mut Vec<String>) {
    use jsonschema::error::ValidationErrorKind as K;
    let context = match e.kind() {
        K::AnyOf { context } | K::OneOfNotValid { context } => context,
        _ => {
            out.push(e.instance_path().as_str().to_owned());
            return;
        }
    };
    let before = out.len();
    for alt in context.iter().filter(|alt| !only_null_type(alt)) {
        alt.iter().for_each(|x| leaf_paths(x, out));
    }
    if out.len() == before {
        out.push(e.instance_path().as_str().to_owned());
    }
}

fn only_null_type(alt: &[jsonschema::ValidationError<'_>]) -> bool {
    alt.iter()
        .all(|x| x.to_string().ends_with("is not of type \"null\""))
}

/// The error's message; for `anyOf`/`oneOf` failures, also why each non-null alternative
/// failed (an optional field's real constraint, rather than "not valid under any of").
fn explain(e: &jsonschema::ValidationError<'_>) -> String {
    use jsonschema::error::ValidationErrorKind as K;
    let context = match e.kind() {
        K::AnyOf { context } | K::OneOfNotValid { context } => context,
        _ => return e.to_string(),
    };
    let reasons: Vec<String> = context
        .iter()
        .filter(|alt| !only_null_type(alt))
        .flat_map(|alt| alt.iter().map(explain))
        .collect();
    if reasons.is_empty() {
        e.to_string()
    } else {
        reasons.join("; ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn valid_pong_has_no_violation() {
        let s = FrameSchema::server().unwrap();
        assert!(s
            .check(&json!({"type": "pong", "id": 1, "ts": 5}))
            .is_empty());
    }

    #[test]
    fn violation_names_type_and_field_path() {
        let s = FrameSchema::server().unwrap();
        let v = s.check(&json!({"type": "pong", "ts": "soon"}));
        assert_eq!(v.len(), 1, "{v:?}");
        assert_eq!(v[0].message_type.as_deref(), Some("pong"));
        assert_eq!(v[0].path, "/ts");
    }

    #[test]
    fn unknown_member_is_a_violation() {
        let s = FrameSchema::server().unwrap();
        let v = s.check(&json!({"type": "pong", "ts": 1, "extra": true}));
        assert!(!v.is_empty());
        assert!(v[0].message.contains("extra"), "{}", v[0].message);
    }

    #[test]
    fn optional_field_reports_the_inner_constraint() {
        let s = FrameSchema::server().unwrap();
        let v = s.check(&json!({"type": "pong", "id": "", "ts": 1}));
        assert_eq!(v[0].path, "/id");
        assert!(
            !v[0].message.contains("any of the schemas"),
            "{}",
            v[0].message
        );
    }

    #[test]
    fn unknown_type_is_named() {
        let s = FrameSchema::server().unwrap();
        let v = s.check(&json!({"type": "ping"}));
        assert_eq!(v[0].path, "/type");
        assert!(v[0].message.contains("ping"));
    }

    #[test]
    fn nested_field_path_is_reported() {
        let s = FrameSchema::server().unwrap();
        let v = s.check(
            &json!({"type": "subscribed", "channel": "c", "kind": "public",
            "position": {"epoch": "e", "seq": -1}}),
        );
        assert!(v.iter().any(|v| v.path == "/position/seq"), "{v:?}");
    }
}
