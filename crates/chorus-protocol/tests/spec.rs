//! The specification is consistent with the types: every example frame parses as its
//! message type and validates against the schema, every message has an example, and the
//! committed requirement registry matches the Markdown.

mod common;

use std::collections::BTreeSet;
use std::path::PathBuf;

use chorus_protocol::requirements::{
    extract_examples, registry_from_sources, registry_json, Direction, Level,
};
use chorus_protocol::{
    decode_server, schema, ClientMessage, ServerMessage, CLIENT_TYPES, SERVER_TYPES,
};

fn spec_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../spec")
}

fn spec_sources() -> Vec<(String, String)> {
    let mut files: Vec<_> = std::fs::read_dir(spec_dir())
        .expect("spec/ exists")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "md"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let name = format!("spec/{}", p.file_name().unwrap().to_string_lossy());
            (name, std::fs::read_to_string(&p).unwrap())
        })
        .collect()
}

#[test]
fn every_example_frame_parses_and_validates() {
    let client_v = jsonschema::draft202012::new(&schema::client_schema()).unwrap();
    let server_v = jsonschema::draft202012::new(&schema::server_schema()).unwrap();
    let consumer_v = jsonschema::draft202012::new(&schema::server_consumer_schema()).unwrap();
    let mut failures = Vec::new();
    let mut seen_client = BTreeSet::new();
    let mut seen_server = BTreeSet::new();
    for (file, text) in spec_sources() {
        for ex in extract_examples(&text) {
            let at = format!("{file}:{}", ex.line);
            let value: serde_json::Value = match serde_json::from_str(&ex.json) {
                Ok(v) => v,
                Err(e) => {
                    failures.push(format!("{at}: not JSON: {e}"));
                    continue;
                }
            };
            let (validator, parsed) = match ex.direction {
                Direction::Client => (
                    &client_v,
                    serde_json::from_value::<ClientMessage>(value.clone()).map(|m| {
                        seen_client.insert(m.type_name());
                    }),
                ),
                Direction::Server => (
                    &server_v,
                    serde_json::from_value::<ServerMessage>(value.clone()).map(|m| {
                        seen_server.insert(m.type_name());
                    }),
                ),
            };
            if let Err(e) = parsed {
                failures.push(format!("{at}: does not parse: {e}"));
            }
            // What a v1 server sends, a client reads: every server example also decodes
            // leniently and fits the consumer schema.
            if ex.direction == Direction::Server {
                if let Err(e) = decode_server(&ex.json) {
                    failures.push(format!("{at}: decode_server: {e}"));
                }
                for err in consumer_v.iter_errors(&value) {
                    failures.push(format!("{at}: consumer schema: {err}"));
                }
            }
            for err in validator.iter_errors(&value) {
                failures.push(format!("{at}: schema: {err} at {}", err.instance_path()));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} bad example frames:\n{}",
        failures.len(),
        failures.join("\n")
    );
    let missing_client: Vec<_> = CLIENT_TYPES
        .iter()
        .filter(|t| !seen_client.contains(*t))
        .collect();
    let missing_server: Vec<_> = SERVER_TYPES
        .iter()
        .filter(|t| !seen_server.contains(*t))
        .collect();
    assert!(
        missing_client.is_empty() && missing_server.is_empty(),
        "messages without an example frame in spec/: client {missing_client:?}, server {missing_server:?}"
    );
}

#[test]
fn requirement_registry_is_well_formed_and_committed() {
    let registry = registry_from_sources(&spec_sources()).expect("requirements parse");
    assert!(!registry.is_empty(), "spec/ holds no requirements");
    for r in &registry {
        assert!(!r.text.is_empty(), "{} has no text", r.id);
        assert!(!r.area.is_empty(), "{} has no area", r.id);
        if r.level != Level::Removed {
            let keyword = match r.level {
                Level::Must => "MUST",
                Level::Should => "SHOULD",
                _ => "MAY",
            };
            assert!(
                r.text.contains(keyword),
                "{} is {keyword} but its text does not say so",
                r.id
            );
        }
    }
    let committed =
        std::fs::read_to_string(spec_dir().join("requirements.json")).unwrap_or_default();
    assert!(
        committed == registry_json(&registry),
        "spec/requirements.json is stale: run `cargo run -p chorus-cli -- schema` and commit it"
    );
}
