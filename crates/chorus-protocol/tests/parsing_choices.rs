//! The choices RFC 8259 leaves to parsers, made once for every Chorus implementation
//! (transport.md, TRANS-29 to TRANS-32), and the schemas agreeing with the decoder.

use chorus_protocol::schema::{
    client_schema, http_consumer_schema, http_schema, server_consumer_schema, server_schema,
};
use chorus_protocol::{decode_client, ErrorCode};
use serde_json::Value;

fn code(text: &str) -> Option<ErrorCode> {
    decode_client(text, 32).err().map(|e| e.code())
}

#[test]
fn null_for_an_optional_member_is_invalid_message() {
    for text in [
        r#"{"type":"subscribe","channel":"c","since":null}"#,
        r#"{"type":"subscribe","channel":"c","state":null}"#,
        r#"{"type":"subscribe","channel":"presence-r","room":{"password":null}}"#,
        r#"{"type":"subscribe","channel":"presence-r","room":{"metadata":null}}"#,
        r#"{"type":"broadcast","channel":"c","event":"e","data":1,"echo":null}"#,
        r#"{"type":"history","channel":"c","limit":null}"#,
        r#"{"type":"presence:update","channel":"presence-r","data":null}"#,
        r#"{"type":"cursor:update","channel":"presence-r","x":1,"y":2,"data":null}"#,
        r#"{"type":"state:delete","channel":"c","key":"k","expected_epoch":null}"#,
    ] {
        assert_eq!(code(text), Some(ErrorCode::InvalidMessage), "{text}");
    }
}

#[test]
fn null_is_a_value_of_any_json_members() {
    for text in [
        r#"{"type":"broadcast","channel":"c","event":"e","data":null}"#,
        r#"{"type":"broadcast","channel":"c","event":"e","data":{"a":null}}"#,
        r#"{"type":"state:update","channel":"c","key":"k","value":null}"#,
        r#"{"type":"presence:update","channel":"presence-r","data":{"a":null}}"#,
    ] {
        assert_eq!(code(text), None, "{text}");
    }
}

#[test]
fn a_repeated_member_name_is_invalid_json_at_any_depth() {
    assert_eq!(
        code(r#"{"type":"ping","id":1,"id":2}"#),
        Some(ErrorCode::InvalidJson)
    );
    assert_eq!(
        code(r#"{"type":"broadcast","channel":"c","event":"e","data":{"a":{"b":1,"b":1}}}"#),
        Some(ErrorCode::InvalidJson)
    );
    assert_eq!(
        code(r#"{"type":"ping","id":1,"x":{"a":1},"y":{"a":1}}"#),
        Some(ErrorCode::InvalidMessage)
    );
}

#[test]
fn a_lone_surrogate_is_invalid_json_and_a_pair_is_text() {
    assert_eq!(
        code(r#"{"type":"ping","id":"\ud800"}"#),
        Some(ErrorCode::InvalidJson)
    );
    assert_eq!(
        code(r#"{"type":"ping","id":"\udc00"}"#),
        Some(ErrorCode::InvalidJson)
    );
    assert_eq!(code(r#"{"type":"ping","id":"\ud83d\ude00"}"#), None);
}

#[test]
fn integers_written_with_a_fraction_or_exponent_are_invalid_message() {
    for text in [
        r#"{"type":"ping","id":7.0}"#,
        r#"{"type":"history","channel":"c","limit":5.0}"#,
        r#"{"type":"history","channel":"c","before_seq":1e1}"#,
        r#"{"type":"state:update","channel":"c","key":"k","value":1,"expected_version":3.0}"#,
    ] {
        assert_eq!(code(text), Some(ErrorCode::InvalidMessage), "{text}");
    }
    assert_eq!(
        code(r#"{"type":"broadcast","channel":"c","event":"e","data":7.0}"#),
        None
    );
}

/// No schema admits `null` except any-JSON members, whose schema names no type.
#[test]
fn schemas_admit_null_nowhere() {
    fn walk(v: &Value, path: &str, out: &mut Vec<String>) {
        match v {
            Value::Object(map) => {
                let nullable = match map.get("type") {
                    Some(Value::String(t)) => t == "null",
                    Some(Value::Array(ts)) => ts.iter().any(|t| t == "null"),
                    _ => false,
                };
                if nullable {
                    out.push(path.to_owned());
                }
                // `{"not": {"type": "null"}}` is how a schema refuses null.
                for (k, x) in map.iter().filter(|(k, _)| k.as_str() != "not") {
                    walk(x, &format!("{path}/{k}"), out);
                }
            }
            Value::Array(items) => {
                for (i, x) in items.iter().enumerate() {
                    walk(x, &format!("{path}/{i}"), out);
                }
            }
            _ => {}
        }
    }
    for schema in [
        client_schema(),
        server_schema(),
        server_consumer_schema(),
        http_schema(),
        http_consumer_schema(),
    ] {
        let mut out = Vec::new();
        walk(&schema, "", &mut out);
        assert!(
            out.is_empty(),
            "{}: null admitted at {out:?}",
            schema["$id"]
        );
    }
}
