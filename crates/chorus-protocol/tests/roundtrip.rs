//! Every message variant survives serialize -> schema validation -> deserialize, and its
//! canonical frame is snapshotted.

mod common;

use chorus_protocol::{schema, ClientMessage, ServerMessage, CLIENT_TYPES, SERVER_TYPES};

fn validator(schema: serde_json::Value) -> jsonschema::Validator {
    jsonschema::draft202012::new(&schema).expect("generated schema compiles")
}

#[test]
fn canonical_instances_cover_every_type() {
    let client: Vec<_> = common::client_messages()
        .iter()
        .map(|m| m.type_name())
        .collect();
    let server: Vec<_> = common::server_messages()
        .iter()
        .map(|m| m.type_name())
        .collect();
    assert_eq!(client, CLIENT_TYPES.to_vec());
    assert_eq!(server, SERVER_TYPES.to_vec());
}

#[test]
fn client_messages_round_trip_through_the_schema() {
    let v = validator(schema::client_schema());
    for msg in common::client_messages() {
        let value = serde_json::to_value(&msg).unwrap();
        let errors: Vec<String> = v.iter_errors(&value).map(|e| e.to_string()).collect();
        assert!(
            errors.is_empty(),
            "{} fails its schema: {errors:?}",
            msg.type_name()
        );
        let back: ClientMessage = serde_json::from_value(value).unwrap();
        assert_eq!(back, msg);
    }
}

#[test]
fn server_messages_round_trip_through_the_schema() {
    let v = validator(schema::server_schema());
    for msg in common::server_messages() {
        let value = serde_json::to_value(&msg).unwrap();
        let errors: Vec<String> = v.iter_errors(&value).map(|e| e.to_string()).collect();
        assert!(
            errors.is_empty(),
            "{} fails its schema: {errors:?}",
            msg.type_name()
        );
        let back: ServerMessage = serde_json::from_value(value).unwrap();
        assert_eq!(back, msg);
    }
}

#[test]
fn canonical_client_frames() {
    for msg in common::client_messages() {
        insta::assert_json_snapshot!(
            format!("client__{}", msg.type_name().replace(':', "_")),
            msg
        );
    }
}

#[test]
fn canonical_server_frames() {
    for msg in common::server_messages() {
        insta::assert_json_snapshot!(
            format!("server__{}", msg.type_name().replace(':', "_")),
            msg
        );
    }
}
