//! JSON Schema (draft 2020-12) generated from the types; committed under `schema/` and
//! checked for drift by a test and by `chorus schema --check`.
//!
//! Server frames have two schemas (schema/README.md, versioning.md):
//! - [`server_schema`], strict: exactly the members and tokens a v1 server may send
//!   (`additionalProperties: false`, closed enums). The conformance suite grades with it.
//! - [`server_consumer_schema`], lenient as a client must be (VER-9): objects admit
//!   members they do not define, capability tokens and error codes admit any string,
//!   `limits` admits further keys. Clients generate their types from it.
//!
//! Both come from the same types: the consumer schema is what the types generate; the
//! strict one closes every object and narrows every [`crate::Extensible`] to its known
//! tokens. Client frames have one, strict, schema.

use schemars::generate::SchemaSettings;
use schemars::JsonSchema;
use serde_json::Value;

use crate::http::{
    ChangeAccepted, ChangeReport, ChannelUsersResponse, Health, HttpErrorBody, PublishRequest,
    PublishResponse, ResourceList, ResourceRecord, StatsResponse,
};
use crate::{ClientMessage, ServerMessage};

/// Base URI of the published schemas.
pub const SCHEMA_BASE: &str = "https://chorus.dev/schema/v1/";

fn generate<T: JsonSchema>(file: &str) -> Value {
    let generator = SchemaSettings::draft2020_12().into_generator();
    let schema = generator.into_root_schema_for::<T>();
    let mut value = schema.to_value();
    drop_null(&mut value);
    if let Value::Object(map) = &mut value {
        map.insert("$id".into(), Value::String(format!("{SCHEMA_BASE}{file}")));
    }
    value
}

/// Removes `null` from every schema: an optional member is omitted when absent, never
/// `null` (TRANS-29), but schemars lets every `Option<T>` be `null`. `"type": [T, "null"]`
/// becomes `"type": T`, and an `anyOf` branch `{"type": "null"}` is dropped (the `anyOf`
/// collapses into its one remaining branch). Any-JSON members (`data`, `value`) keep `null`
/// as a value: their schema lists no type, so this never touches them.
fn drop_null(value: &mut Value) {
    match value {
        Value::Object(map) => {
            if let Some(Value::Array(types)) = map.get_mut("type") {
                types.retain(|t| t != "null");
                if types.len() == 1 {
                    let only = types.remove(0);
                    map.insert("type".into(), only);
                }
            }
            let null = serde_json::json!({"type": "null"});
            if let Some(Value::Array(branches)) = map.get_mut("anyOf") {
                branches.retain(|b| *b != null);
                if branches.len() == 1 {
                    if let Some(Value::Object(only)) = branches.pop() {
                        map.remove("anyOf");
                        for (k, v) in only {
                            map.entry(k).or_insert(v);
                        }
                    }
                }
            }
            map.values_mut().for_each(drop_null);
        }
        Value::Array(items) => items.iter_mut().for_each(drop_null),
        _ => {}
    }
}

/// Closes a generated schema (the strict view of the same types):
/// - a tagged variant written as `{"$ref": X, "properties": {"type": ..}}` is inlined, so
///   that one object lists every member of the frame;
/// - every object schema that lists `properties` and does not say otherwise gets
///   `additionalProperties: false`;
/// - every extensible token (an `anyOf` of the known tokens and [`crate::extensible`]'s
///   unknown branch) keeps only the known tokens;
/// - `$defs` no longer referenced are dropped.
fn strict(value: &mut Value) {
    let defs = value.get("$defs").cloned().unwrap_or(Value::Null);
    close(value, &defs);
    prune_defs(value);
}

fn close(value: &mut Value, defs: &Value) {
    match value {
        Value::Object(map) => {
            inline_tagged_variant(map, defs);
            let unknown = crate::extensible::unknown_token_schema();
            let narrowed = match map.get("anyOf") {
                Some(Value::Array(branches)) if branches.len() == 2 && branches[1] == unknown => {
                    Some(branches[0].clone())
                }
                _ => None,
            };
            if let Some(Value::Object(known)) = narrowed {
                map.remove("anyOf");
                map.extend(known);
            }
            if map.contains_key("properties") && !map.contains_key("additionalProperties") {
                map.insert("additionalProperties".into(), Value::Bool(false));
            }
            map.values_mut().for_each(|v| close(v, defs));
        }
        Value::Array(items) => items.iter_mut().for_each(|v| close(v, defs)),
        _ => {}
    }
}

/// `{"$ref": "#/$defs/X", "properties": P, "required": R}` becomes X with P and R added.
fn inline_tagged_variant(map: &mut serde_json::Map<String, Value>, defs: &Value) {
    if !map.contains_key("properties") {
        return;
    }
    let Some(name) = map
        .get("$ref")
        .and_then(Value::as_str)
        .and_then(|r| r.strip_prefix("#/$defs/"))
    else {
        return;
    };
    let Some(Value::Object(def)) = defs.get(name) else {
        return;
    };
    map.remove("$ref");
    for (key, field) in def {
        match (key.as_str(), map.get_mut(key)) {
            ("properties", Some(Value::Object(props))) => {
                if let Value::Object(more) = field {
                    props.extend(more.clone());
                }
            }
            ("required", Some(Value::Array(required))) => {
                if let Value::Array(more) = field {
                    required.extend(more.iter().cloned());
                }
            }
            (_, Some(_)) => {}
            (_, None) => {
                map.insert(key.clone(), field.clone());
            }
        }
    }
}

/// Opens a generated schema (the HTTP bodies' types deny unknown members, which their
/// schemas say with `additionalProperties: false`): every object admits further members.
fn open(value: &mut Value) {
    match value {
        Value::Object(map) => {
            if map.get("additionalProperties") == Some(&Value::Bool(false)) {
                map.remove("additionalProperties");
            }
            map.values_mut().for_each(open);
        }
        Value::Array(items) => items.iter_mut().for_each(open),
        _ => {}
    }
}

/// Drops `$defs` entries that nothing reachable from the root refers to.
fn prune_defs(value: &mut Value) {
    fn refs(value: &Value, out: &mut Vec<String>) {
        match value {
            Value::Object(map) => {
                if let Some(r) = map.get("$ref").and_then(Value::as_str) {
                    if let Some(name) = r.strip_prefix("#/$defs/") {
                        out.push(name.to_owned());
                    }
                }
                map.iter()
                    .filter(|(k, _)| k.as_str() != "$defs")
                    .for_each(|(_, v)| refs(v, out));
            }
            Value::Array(items) => items.iter().for_each(|v| refs(v, out)),
            _ => {}
        }
    }
    let Some(Value::Object(defs)) = value.get("$defs").cloned() else {
        return;
    };
    let mut pending = Vec::new();
    refs(value, &mut pending);
    let mut reachable = std::collections::BTreeSet::new();
    while let Some(name) = pending.pop() {
        if reachable.insert(name.clone()) {
            if let Some(def) = defs.get(&name) {
                refs(def, &mut pending);
            }
        }
    }
    if let Some(Value::Object(defs)) = value.get_mut("$defs") {
        defs.retain(|name, _| reachable.contains(name));
    }
}

/// Schema of every frame a client may send (strict: servers reject anything else).
pub fn client_schema() -> Value {
    let mut value = generate::<ClientMessage>("client.schema.json");
    strict(&mut value);
    value
}

/// Strict schema of every frame a v1 server may send: only the members and tokens this
/// revision defines. The conformance suite validates server frames against it.
pub fn server_schema() -> Value {
    let mut value = generate::<ServerMessage>("server.schema.json");
    strict(&mut value);
    value
}

/// Consumer schema of server frames: what a client must accept from any `chorus.v1`
/// server, this revision or a later one (VER-9). Generate client types from this one.
pub fn server_consumer_schema() -> Value {
    let mut value = generate::<ServerMessage>("server.consumer.schema.json");
    if let Value::Object(map) = &mut value {
        map.insert(
            "description".into(),
            Value::String(
                "Every frame a chorus.v1 server may send, as a client must read it (VER-9): \
                 objects admit members this revision does not define, capability tokens and \
                 error codes admit any string, `limits` admits further keys. Generate client \
                 types from this schema; servers are graded with server.schema.json."
                    .into(),
            ),
        );
    }
    value
}

/// The bodies of the HTTP API, gathered under `$defs` of one document (strict).
pub fn http_schema() -> Value {
    let mut value = http_bodies("http.schema.json");
    strict(&mut value);
    // The root only gathers the bodies; nothing is validated against it.
    if let Value::Object(map) = &mut value {
        map.remove("additionalProperties");
    }
    value
}

fn http_bodies(file: &str) -> Value {
    #[derive(JsonSchema)]
    #[allow(dead_code)]
    /// Bodies of the Chorus HTTP API (http.md); each is a `$defs` entry.
    struct HttpBodies {
        stats: StatsResponse,
        channel_users: ChannelUsersResponse,
        publish_request: PublishRequest,
        publish_response: PublishResponse,
        resource_record: ResourceRecord,
        resource_list: ResourceList,
        change_report: ChangeReport,
        change_accepted: ChangeAccepted,
        error: HttpErrorBody,
        health: Health,
    }
    generate::<HttpBodies>(file)
}

/// Consumer schema of the HTTP bodies: the responses as a client must read them from any
/// `chorus.v1` server (VER-9), objects admitting members this revision does not define and
/// error codes admitting any string. Generate client types from this one; servers are
/// graded, and request bodies validated, with [`http_schema`].
pub fn http_consumer_schema() -> Value {
    let mut value = http_bodies("http.consumer.schema.json");
    open(&mut value);
    if let Some(Value::Object(code)) = value.pointer_mut("/$defs/ErrorCode") {
        let known = Value::Object(std::mem::take(code));
        code.insert(
            "anyOf".into(),
            Value::Array(vec![known, crate::extensible::unknown_token_schema()]),
        );
    }
    if let Value::Object(map) = &mut value {
        map.insert(
            "description".into(),
            Value::String(
                "Bodies of the Chorus HTTP API as a client must read them (VER-9): objects \
                 admit members this revision does not define, error codes admit any string. \
                 Generate client types from this schema; servers are graded with \
                 http.schema.json."
                    .into(),
            ),
        );
    }
    value
}

/// Every committed schema file, by file name, as pretty JSON with a trailing newline.
pub fn files() -> Vec<(&'static str, String)> {
    [
        ("client.schema.json", client_schema()),
        ("server.schema.json", server_schema()),
        ("server.consumer.schema.json", server_consumer_schema()),
        ("http.schema.json", http_schema()),
        ("http.consumer.schema.json", http_consumer_schema()),
    ]
    .into_iter()
    .map(|(name, value)| {
        let text = serde_json::to_string_pretty(&value).unwrap_or_default();
        (name, format!("{text}\n"))
    })
    .collect()
}
