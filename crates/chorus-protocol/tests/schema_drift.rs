//! The committed schema/ equals what the types generate (regenerate with `chorus schema`).

use std::path::PathBuf;

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

#[test]
fn committed_schema_matches_the_types() {
    for (name, generated) in chorus_protocol::schema::files() {
        let path = repo_root().join("schema").join(name);
        let committed = std::fs::read_to_string(&path).unwrap_or_else(|e| {
            panic!(
                "{}: {e}; run `cargo run -p chorus-cli -- schema`",
                path.display()
            )
        });
        assert!(
            committed == generated,
            "schema/{name} is stale: run `cargo run -p chorus-cli -- schema` and commit the result"
        );
    }
}

#[test]
fn generated_schemas_are_draft_2020_12() {
    for (name, text) in chorus_protocol::schema::files() {
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            value["$schema"], "https://json-schema.org/draft/2020-12/schema",
            "{name}"
        );
        assert!(
            jsonschema::draft202012::meta::is_valid(&value),
            "{name} is not a valid 2020-12 schema"
        );
    }
}
