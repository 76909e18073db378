//! JSON Schema (draft 2020-12) generated from the types; committed under `schema/` and
//! checked for drift by a test and by `chorus schema --check`.

use schemars::generate::SchemaSettings;
use schemars::JsonSchema;
use serde_json::Value;

use crate::http::{
    ChannelUsersResponse, Health, HttpErrorBody, PublishRequest, PublishResponse, ResourceList,
    ResourceRecord, StatsResponse,
};
use crate::{ClientMessage, ServerMessage};

/// Base URI of the published schemas.
pub const SCHEMA_BASE: &str = "https://chorus.dev/schema/v1/";

fn generate<T: JsonSchema>(file: &str) -> Value {
    let generator = SchemaSettings::draft2020_12().into_generator();
    let schema = generator.into_root_schema_for::<T>();
    let mut value = schema.to_value();
    if let Value::Object(map) = &mut value {
        map.insert("$id".into(), Value::String(format!("{SCHEMA_BASE}{file}")));
    }
    value
}

/// Schema of every frame a client may send.
pub fn client_schema() -> Value {
    generate::<ClientMessage>("client.schema.json")
}

/// Schema of every frame a server may send.
pub fn server_schema() -> Value {
    generate::<ServerMessage>("server.schema.json")
}

/// The bodies of the HTTP API, gathered under `$defs` of one document.
pub fn http_schema() -> Value {
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
        error: HttpErrorBody,
        health: Health,
    }
    generate::<HttpBodies>("http.schema.json")
}

/// Every committed schema file, by file name, as pretty JSON with a trailing newline.
pub fn files() -> Vec<(&'static str, String)> {
    [
        ("client.schema.json", client_schema()),
        ("server.schema.json", server_schema()),
        ("http.schema.json", http_schema()),
    ]
    .into_iter()
    .map(|(name, value)| {
        let text = serde_json::to_string_pretty(&value).unwrap_or_default();
        (name, format!("{text}\n"))
    })
    .collect()
}
