//! The AsyncAPI 3.0 description of Chorus v1 (`schema/asyncapi.json`), built from the same
//! JSON Schema the protocol crate generates (`chorus_protocol::schema`), so it cannot drift
//! from the Rust types; `chorus schema --check` compares it like every other artifact.
//!
//! One WebSocket channel (`/ws`) carries every client and server frame: a `send` operation
//! per client frame (with the replies it gets) and a `receive` operation per server frame.
//! The HTTP fallbacks are channels of their own: the SSE stream (`GET /sse`) and the two
//! publish endpoints.

use serde_json::{json, Map, Value};

use chorus_protocol::schema::{client_schema, http_schema, server_schema};

/// Client request type -> the server frame that answers it (each may also get `error`).
const REPLIES: &[(&str, &str)] = &[
    ("ping", "pong"),
    ("auth:refresh", "auth:refreshed"),
    ("subscribe", "subscribed"),
    ("unsubscribe", "unsubscribed"),
    ("broadcast", "broadcast:ack"),
    ("history", "history:page"),
    ("presence", "presence:list"),
    ("presence:update", "presence:ack"),
    ("state:update", "state:ack"),
    ("state:merge", "state:ack"),
    ("state:delete", "state:ack"),
    ("state:sync:request", "state:sync"),
];

/// The server frames an SSE stream carries (spec/sse.md).
const SSE_FRAMES: &[&str] = &[
    "welcome",
    "subscribed",
    "unsubscribed",
    "message",
    "data_change",
    "error",
];

/// `state:sync:request` -> `StateSyncRequest`.
fn camel(wire_type: &str) -> String {
    wire_type
        .split([':', '_'])
        .map(|part| {
            let mut chars = part.chars();
            match chars.next() {
                Some(first) => first.to_uppercase().chain(chars).collect::<String>(),
                None => String::new(),
            }
        })
        .collect()
}

/// The component key of a frame: `clientSubscribe`, `serverUserJoined`.
fn message_key(side: &str, wire_type: &str) -> String {
    format!("{side}{}", camel(wire_type))
}

/// Rewrites `#/$defs/X` references to `#/components/schemas/X`.
fn rewrite_refs(value: &mut Value) {
    match value {
        Value::Object(map) => {
            if let Some(Value::String(r)) = map.get_mut("$ref") {
                if let Some(name) = r.strip_prefix("#/$defs/") {
                    *r = format!("#/components/schemas/{name}");
                }
            }
            for v in map.values_mut() {
                rewrite_refs(v);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(rewrite_refs),
        _ => {}
    }
}

/// Adds a document's `$defs` to `schemas`. The three documents share their common types
/// (`ChannelName`, `Member`, ...); a name defined differently twice is an error of the
/// generator, reported as such.
fn collect_defs(doc: &Value, schemas: &mut Map<String, Value>) -> Result<(), String> {
    let Some(defs) = doc.get("$defs").and_then(Value::as_object) else {
        return Ok(());
    };
    for (name, def) in defs {
        let mut def = def.clone();
        rewrite_refs(&mut def);
        match schemas.get(name) {
            Some(existing) if *existing != def => {
                return Err(format!(
                    "schema `{name}` is defined differently in two documents"
                ))
            }
            Some(_) => {}
            None => {
                schemas.insert(name.clone(), def);
            }
        }
    }
    Ok(())
}

/// The frames of a message schema's `oneOf`: (wire type, variant schema).
fn variants(doc: &Value) -> Vec<(String, Value)> {
    doc.get("oneOf")
        .and_then(Value::as_array)
        .map(|variants| {
            variants
                .iter()
                .filter_map(|v| {
                    let t = v.pointer("/properties/type/const")?.as_str()?.to_string();
                    let mut v = v.clone();
                    rewrite_refs(&mut v);
                    Some((t, v))
                })
                .collect()
        })
        .unwrap_or_default()
}

fn message(side: &str, wire_type: &str, payload: Value) -> Value {
    let summary = payload
        .get("description")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .lines()
        .next()
        .unwrap_or_default()
        .to_string();
    let mut m = json!({
        "name": wire_type,
        "title": format!("{wire_type} ({side})"),
        "contentType": "application/json",
        "payload": payload,
    });
    if !summary.is_empty() {
        m["summary"] = Value::String(summary);
    }
    m
}

fn msg_ref(channel: &str, key: &str) -> Value {
    json!({ "$ref": format!("#/channels/{channel}/messages/{key}") })
}

/// The AsyncAPI 3.0 document.
pub fn document() -> Result<Value, String> {
    let (client, server, http) = (client_schema(), server_schema(), http_schema());
    let mut schemas = Map::new();
    for doc in [&client, &server, &http] {
        collect_defs(doc, &mut schemas)?;
    }
    let mut messages = Map::new();
    let mut ws_messages = Map::new();
    let mut operations = Map::new();
    let client_frames = variants(&client);
    let server_frames = variants(&server);
    for (side, frames) in [("client", &client_frames), ("server", &server_frames)] {
        for (t, payload) in frames.iter() {
            let key = message_key(side, t);
            messages.insert(key.clone(), message(side, t, payload.clone()));
            ws_messages.insert(
                key.clone(),
                json!({ "$ref": format!("#/components/messages/{key}") }),
            );
        }
    }
    for (t, _) in &client_frames {
        let key = message_key("client", t);
        let mut op = json!({
            "action": "send",
            "channel": { "$ref": "#/channels/ws" },
            "summary": format!("The client sends `{t}`."),
            "messages": [msg_ref("ws", &key)],
        });
        if let Some((_, reply)) = REPLIES.iter().find(|(req, _)| req == t) {
            op["reply"] = json!({
                "channel": { "$ref": "#/channels/ws" },
                "messages": [
                    msg_ref("ws", &message_key("server", reply)),
                    msg_ref("ws", "serverError"),
                ],
            });
        }
        operations.insert(format!("send{}", camel(t)), op);
    }
    for (t, _) in &server_frames {
        operations.insert(
            format!("receive{}", camel(t)),
            json!({
                "action": "receive",
                "channel": { "$ref": "#/channels/ws" },
                "summary": format!("The server sends `{t}`."),
                "messages": [msg_ref("ws", &message_key("server", t))],
            }),
        );
    }
    let sse_messages: Map<String, Value> = SSE_FRAMES
        .iter()
        .map(|t| {
            let key = message_key("server", t);
            (
                key.clone(),
                json!({ "$ref": format!("#/components/messages/{key}") }),
            )
        })
        .collect();
    operations.insert(
        "receiveSse".into(),
        json!({
            "action": "receive",
            "channel": { "$ref": "#/channels/sse" },
            "summary": "The SSE fallback: one Server-Sent Event per server frame; the event name is the frame's `type`, the event id a resume token (spec/sse.md).",
            "messages": SSE_FRAMES.iter().map(|t| msg_ref("sse", &message_key("server", t))).collect::<Vec<_>>(),
            "bindings": { "http": {
                "method": "GET",
                "query": {
                    "type": "object",
                    "properties": {
                        "channel": { "type": "string", "description": "A channel to stream; repeat for several (percent-encoded)." },
                        "token": { "type": "string", "description": "The user's JWT (or `Authorization: Bearer`)." },
                        "last_event_id": { "type": "string", "description": "Resume token when the `Last-Event-ID` header cannot be set." }
                    },
                    "required": ["channel"]
                },
                "bindingVersion": "0.3.0"
            } }
        }),
    );
    for (name, address, summary, security) in [
        (
            "publish",
            "/api/publish",
            "A user publishes without a WebSocket (same rules as `broadcast`, no subscription needed).",
            "bearer",
        ),
        (
            "broadcast",
            "/api/broadcast",
            "The application server publishes as the server itself (no `from`).",
            "apiKey",
        ),
    ] {
        operations.insert(
            format!("http{}", camel(name)),
            json!({
                "action": "send",
                "channel": { "$ref": format!("#/channels/{name}") },
                "summary": format!("POST {address}: {summary}"),
                "security": [{ "$ref": format!("#/components/securitySchemes/{security}") }],
                "messages": [msg_ref(name, "publishRequest")],
                "bindings": { "http": { "method": "POST", "bindingVersion": "0.3.0" } },
                "reply": {
                    "channel": { "$ref": format!("#/channels/{name}") },
                    "messages": [msg_ref(name, "publishResponse"), msg_ref(name, "httpError")]
                }
            }),
        );
    }
    for (key, schema, summary) in [
        ("publishRequest", "PublishRequest", "A message to publish."),
        (
            "publishResponse",
            "PublishResponse",
            "200: where the message was stored.",
        ),
        (
            "httpError",
            "HttpErrorBody",
            "Any non-2xx answer of the HTTP API (spec/http.md).",
        ),
    ] {
        messages.insert(
            key.into(),
            json!({
                "name": key,
                "contentType": "application/json",
                "summary": summary,
                "payload": { "$ref": format!("#/components/schemas/{schema}") },
            }),
        );
    }
    let http_channel = |address: &str| {
        json!({
            "address": address,
            "messages": {
                "publishRequest": { "$ref": "#/components/messages/publishRequest" },
                "publishResponse": { "$ref": "#/components/messages/publishResponse" },
                "httpError": { "$ref": "#/components/messages/httpError" },
            },
            "servers": [{ "$ref": "#/servers/http" }],
        })
    };
    Ok(json!({
        "asyncapi": "3.0.0",
        "id": "urn:chorus:v1",
        "info": {
            "title": "Chorus",
            "version": "1.0.0",
            "description": "Chorus v1, an open realtime protocol for the web: channels with pub/sub, presence, rooms, live cursors, shared versioned state and database change feeds over WebSocket, with an SSE and HTTP fallback. Generated by `chorus schema` from the same types as schema/*.schema.json; the specification (spec/) is normative.",
            "license": { "name": "Apache-2.0" }
        },
        "defaultContentType": "application/json",
        "servers": {
            "ws": {
                "host": "localhost:3001",
                "protocol": "ws",
                "protocolVersion": "13",
                "description": "The reference server (`chorus serve`); use `wss` in production. Offer the subprotocol `chorus.v1`.",
                "security": [
                    { "$ref": "#/components/securitySchemes/queryToken" },
                    { "$ref": "#/components/securitySchemes/bearer" }
                ]
            },
            "http": {
                "host": "localhost:3001",
                "protocol": "http",
                "description": "The same server's HTTP API and SSE stream."
            }
        },
        "channels": {
            "ws": {
                "address": "/ws",
                "title": "The WebSocket connection",
                "description": "One JSON object per text frame, tagged on `type`. The first server frame is `welcome`.",
                "servers": [{ "$ref": "#/servers/ws" }],
                "messages": ws_messages,
                "bindings": { "ws": {
                    "method": "GET",
                    "headers": {
                        "type": "object",
                        "properties": {
                            "Sec-WebSocket-Protocol": { "type": "string", "const": "chorus.v1", "description": "The subprotocol token of Chorus v1." },
                            "Authorization": { "type": "string", "pattern": "^Bearer ", "description": "`Bearer <JWT>`; wins over `?token=` (CONN-1)." }
                        },
                        "required": ["Sec-WebSocket-Protocol"]
                    },
                    "query": {
                        "type": "object",
                        "properties": {
                            "token": { "type": "string", "description": "The user's JWT, for clients that cannot set headers (browsers)." }
                        }
                    },
                    "bindingVersion": "0.1.0"
                } }
            },
            "sse": {
                "address": "/sse",
                "title": "The SSE fallback stream",
                "servers": [{ "$ref": "#/servers/http" }],
                "messages": sse_messages
            },
            "publish": http_channel("/api/publish"),
            "broadcast": http_channel("/api/broadcast")
        },
        "operations": operations,
        "components": {
            "schemas": schemas,
            "messages": messages,
            "securitySchemes": {
                "queryToken": { "type": "httpApiKey", "in": "query", "name": "token", "description": "JWT (HS256 by default) in `?token=`." },
                "bearer": { "type": "http", "scheme": "bearer", "bearerFormat": "JWT", "description": "JWT in `Authorization: Bearer`." },
                "apiKey": { "type": "httpApiKey", "in": "header", "name": "X-Api-Key", "description": "The application server's API key (spec/http.md)." }
            }
        }
    }))
}

/// The document as committed: pretty JSON with a trailing newline.
pub fn file() -> Result<String, String> {
    let doc = document()?;
    serde_json::to_string_pretty(&doc)
        .map(|text| format!("{text}\n"))
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_frame_has_an_operation_and_every_reply_exists() {
        let doc = document().unwrap();
        let ops = doc["operations"].as_object().unwrap();
        let msgs = doc["channels"]["ws"]["messages"].as_object().unwrap();
        for (t, _) in variants(&client_schema()) {
            assert!(ops.contains_key(&format!("send{}", camel(&t))), "{t}");
        }
        for (t, _) in variants(&server_schema()) {
            assert!(ops.contains_key(&format!("receive{}", camel(&t))), "{t}");
        }
        for (_, reply) in REPLIES {
            assert!(msgs.contains_key(&message_key("server", reply)), "{reply}");
        }
        for t in SSE_FRAMES {
            assert!(msgs.contains_key(&message_key("server", t)), "{t}");
        }
        assert!(!doc.to_string().contains("#/$defs/"));
    }

    #[test]
    fn names_are_component_keys() {
        assert_eq!(
            message_key("client", "state:sync:request"),
            "clientStateSyncRequest"
        );
        assert_eq!(message_key("server", "data_change"), "serverDataChange");
    }
}
