//! Unknown types and unknown fields of client frames are rejected, by the types and by the
//! schema alike (TRANS: server-set fields are never accepted from clients). Server frames
//! with unknown fields are rejected by the strict (grading) schema only; clients read them
//! leniently (tests/additions.rs).

use chorus_protocol::{decode_client, decode_server, schema, ErrorCode};
use serde_json::json;

fn client_validator() -> jsonschema::Validator {
    jsonschema::draft202012::new(&schema::client_schema()).unwrap()
}

#[test]
fn unknown_client_type_is_rejected_by_both() {
    let frame = json!({"type": "room:join", "room": "r"});
    assert!(!client_validator().is_valid(&frame));
    let err = decode_client(&frame.to_string(), 32).unwrap_err();
    assert_eq!(err.code(), ErrorCode::UnknownType);
}

#[test]
fn forged_server_fields_are_rejected_by_both() {
    for forged in ["from", "ts", "seq", "version"] {
        let mut frame =
            json!({"type": "broadcast", "id": "1", "channel": "c", "event": "e", "data": {}});
        frame[forged] = json!(1);
        assert!(
            !client_validator().is_valid(&frame),
            "schema accepted forged {forged}"
        );
        let err = decode_client(&frame.to_string(), 32).unwrap_err();
        assert_eq!(
            err.code(),
            ErrorCode::InvalidMessage,
            "decoder accepted forged {forged}"
        );
    }
}

#[test]
fn forged_state_version_is_rejected() {
    let frame =
        json!({"type": "state:update", "channel": "c", "key": "k", "value": 1, "version": 9});
    assert!(!client_validator().is_valid(&frame));
    assert_eq!(
        decode_client(&frame.to_string(), 32).unwrap_err().code(),
        ErrorCode::InvalidMessage
    );
}

#[test]
fn unknown_field_in_server_frame_fails_the_grading_schema_only() {
    let frame = json!({"type": "pong", "ts": 1, "debug": true});
    assert!(decode_server(&frame.to_string()).is_ok());
    let v = jsonschema::draft202012::new(&schema::server_schema()).unwrap();
    assert!(!v.is_valid(&frame));
}

#[test]
fn bad_request_ids_are_rejected() {
    for id in [
        json!(""),
        json!("x".repeat(65)),
        json!(-1),
        json!(1.5),
        json!(9007199254740992u64),
    ] {
        let frame = json!({"type": "ping", "id": id});
        assert_eq!(
            decode_client(&frame.to_string(), 32).unwrap_err().code(),
            ErrorCode::InvalidMessage,
            "id {id} accepted"
        );
    }
}
