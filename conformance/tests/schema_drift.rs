//! The committed schema/fixture.schema.json and schema/report.schema.json equal what the
//! types generate. Regenerate with `chorus schema`, or `CHORUS_WRITE_SCHEMA=1 cargo test -p
//! chorus-conformance --test schema_drift`.

use std::path::PathBuf;

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

#[test]
fn committed_schema_matches_the_types() {
    let write = std::env::var_os("CHORUS_WRITE_SCHEMA").is_some();
    for (name, generated) in chorus_conformance::schema::files() {
        let path = repo_root().join("schema").join(name);
        if write {
            std::fs::write(&path, &generated).unwrap();
        }
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == generated,
            "schema/{name} is stale: run `chorus schema` (or CHORUS_WRITE_SCHEMA=1 cargo test -p chorus-conformance --test schema_drift) and commit"
        );
    }
}

#[test]
fn generated_schemas_are_valid_draft_2020_12() {
    for (name, text) in chorus_conformance::schema::files() {
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert!(
            jsonschema::draft202012::meta::is_valid(&value),
            "{name} is not a valid 2020-12 schema"
        );
    }
}
