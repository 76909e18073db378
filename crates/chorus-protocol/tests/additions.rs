//! Forward compatibility (versioning.md, VER-9): frames with additions a later `chorus.v1`
//! revision may make decode with `decode_server` and validate against the consumer schema,
//! while the strict schema that grades v1 servers rejects each of them.

use chorus_protocol::{
    decode_client, decode_server, schema, Capability, ErrorCode, Extensible, ServerDecodeError,
    ServerMessage,
};
use serde_json::{json, Value};

fn additions() -> Vec<(String, Value)> {
    let text = include_str!("data/additions.json");
    let doc: Value = serde_json::from_str(text).unwrap();
    doc["frames"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f["name"].as_str().unwrap().to_owned(), f["frame"].clone()))
        .collect()
}

fn frame(name: &str) -> Value {
    additions()
        .into_iter()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("no frame {name:?} in data/additions.json"))
        .1
}

fn validator(schema: Value) -> jsonschema::Validator {
    jsonschema::draft202012::new(&schema).unwrap()
}

#[test]
fn every_addition_decodes_and_fits_the_consumer_schema() {
    let consumer = validator(schema::server_consumer_schema());
    let all = additions();
    assert!(all.len() >= 6);
    for (name, frame) in all {
        if let Err(e) = decode_server(&frame.to_string()) {
            panic!("{name}: decode_server refused it: {e}");
        }
        let errors: Vec<String> = consumer
            .iter_errors(&frame)
            .map(|e| e.to_string())
            .collect();
        assert!(errors.is_empty(), "{name}: consumer schema: {errors:?}");
    }
}

#[test]
fn the_strict_schema_rejects_every_addition() {
    let strict = validator(schema::server_schema());
    for (name, frame) in additions() {
        assert!(
            !strict.is_valid(&frame),
            "{name}: the grading schema accepted a member or token v1 does not define"
        );
    }
}

#[test]
fn an_unknown_capability_is_kept_beside_the_known_ones() {
    let ServerMessage::Welcome(w) =
        decode_server(&frame("welcome with an unknown capability").to_string()).unwrap()
    else {
        panic!("not a welcome");
    };
    assert_eq!(
        w.capabilities,
        vec![
            Extensible::Known(Capability::Presence),
            Extensible::Unknown("teleport".to_owned())
        ]
    );
}

#[test]
fn an_unknown_limit_is_kept_by_name() {
    let ServerMessage::Welcome(w) =
        decode_server(&frame("welcome with an unknown limit").to_string()).unwrap()
    else {
        panic!("not a welcome");
    };
    assert_eq!(w.limits.max_frame_bytes, 1_048_576);
    assert_eq!(
        w.limits.unknown.get("max_teleports_per_sec"),
        Some(&json!(3))
    );
    assert_eq!(w.limits.unknown.len(), 1);
}

#[test]
fn an_unknown_member_is_ignored() {
    let ServerMessage::Message(m) =
        decode_server(&frame("message with an unknown member").to_string()).unwrap()
    else {
        panic!("not a message");
    };
    assert_eq!(m.seq, 7);
    assert_eq!(m.data, json!({"text": "hi"}));
}

#[test]
fn an_unknown_error_code_is_kept_verbatim() {
    let ServerMessage::Error(e) =
        decode_server(&frame("error with an unknown code").to_string()).unwrap()
    else {
        panic!("not an error");
    };
    assert_eq!(
        e.code,
        Extensible::Unknown("teleport_unavailable".to_owned())
    );
    assert_ne!(e.code, ErrorCode::Internal);
    assert_eq!(e.code.as_str(), "teleport_unavailable");
}

#[test]
fn known_codes_still_compare_with_the_closed_enum() {
    let text =
        r#"{"type":"error","code":"conflict","message":"m","current":{"version":3,"epoch":"e"}}"#;
    let ServerMessage::Error(e) = decode_server(text).unwrap() else {
        panic!("not an error");
    };
    assert_eq!(e.code, ErrorCode::Conflict);
}

#[test]
fn an_unknown_server_type_is_a_typed_error() {
    assert_eq!(
        decode_server(r#"{"type":"teleport:done","channel":"c"}"#).unwrap_err(),
        ServerDecodeError::UnknownType {
            kind: "teleport:done".into()
        }
    );
}

#[test]
fn a_missing_v1_member_is_still_an_error() {
    let err = decode_server(r#"{"type":"message","channel":"c","event":"e","data":1,"ts":1}"#)
        .unwrap_err();
    assert!(matches!(err, ServerDecodeError::InvalidMessage { ref kind, .. } if kind == "message"));
    assert!(matches!(
        decode_server("[1]").unwrap_err(),
        ServerDecodeError::InvalidJson(_)
    ));
}

#[test]
fn client_frames_stay_strict_inside_positions() {
    let text = r#"{"type":"subscribe","id":1,"channel":"chat","since":{"epoch":"e-1","seq":4,"retained_from":2}}"#;
    assert_eq!(
        decode_client(text, 32).unwrap_err().code(),
        ErrorCode::InvalidMessage
    );
    let v = validator(schema::client_schema());
    assert!(!v.is_valid(&serde_json::from_str::<Value>(text).unwrap()));
}

/// The HTTP bodies have a consumer schema too: an error body with a later revision's code
/// and member fits it, and the strict schema rejects it.
#[test]
fn http_error_body_with_additions_fits_only_the_consumer_schema() {
    let body =
        json!({"error": {"code": "quota_exceeded", "message": "m", "quota": 3}, "trace": "t"});
    let with_defs =
        |s: Value| validator(json!({"$defs": s["$defs"], "$ref": "#/$defs/HttpErrorBody"}));
    assert!(with_defs(schema::http_consumer_schema()).is_valid(&body));
    assert!(!with_defs(schema::http_schema()).is_valid(&body));
    let known = json!({"error": {"code": "forbidden", "message": "m"}});
    assert!(with_defs(schema::http_schema()).is_valid(&known));
}
