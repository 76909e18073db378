//! Checks of the frame decoders (targets `decode_client` and `decode_server`), shared by the
//! fuzz targets and the corpus replay test (`conformance/tests/fuzz_corpus.rs`).
//!
//! A panic or a failed assertion here is a finding: the decoders take whatever a peer sends.

use chorus_protocol::{json_depth, ClientMessage, DecodeError, Limits, ServerMessage};

/// `decode_client` on the bytes as a socket would hand them over: strict UTF-8 at the
/// default depth limit (a WebSocket text frame is valid UTF-8, TRANS-17), and the lossy
/// reading at a small limit so that the depth check is reached often.
pub fn decode_client(data: &[u8]) {
    let default_depth = Limits::default().max_json_depth as usize;
    if let Ok(text) = std::str::from_utf8(data) {
        client_frame(text, default_depth);
    }
    client_frame(&String::from_utf8_lossy(data), 4);
}

fn client_frame(text: &str, max_depth: usize) {
    match chorus_protocol::decode_client(text, max_depth) {
        Ok(msg) => accepted(text, &msg, max_depth),
        Err(e) => refused(&e),
    }
}

/// An accepted frame is within the depth limit and re-encodes to JSON that decodes to the
/// same message (what a client library sends is what the server reads).
fn accepted(text: &str, msg: &ClientMessage, max_depth: usize) {
    let value: serde_json::Value = serde_json::from_str(text).expect("accepted text is JSON");
    let depth = json_depth(&value);
    assert!(depth <= max_depth, "depth {depth} > {max_depth} accepted");
    let again = serde_json::to_string(msg).expect("client message serializes");
    match chorus_protocol::decode_client(&again, usize::MAX) {
        Ok(back) => assert_eq!(&back, msg, "re-encoded as {again}"),
        Err(e) => panic!("{msg:?} re-encodes as {again}, which does not decode: {e}"),
    }
}

/// The `error` a server answers an undecodable frame with is itself a valid server frame
/// with the decode error's code, id and channel (TRANS-18..22, ERR-2).
fn refused(e: &DecodeError) {
    let frame = e.to_error_frame();
    let text = ServerMessage::Error(frame.clone()).to_json();
    match chorus_protocol::decode_server(&text) {
        Ok(ServerMessage::Error(back)) => {
            assert_eq!(back, frame, "error frame {text}");
            assert_eq!(back.id.as_ref(), e.request_id());
            assert_eq!(back.channel.as_deref(), e.channel());
        }
        other => panic!("the error frame {text} reads back as {other:?}"),
    }
}

/// `decode_server` on strict and lossy UTF-8: whatever decodes re-encodes to JSON that
/// decodes to the same value (a client that stores and forwards a frame keeps it, VER-9
/// unknown members aside, which the lenient reading drops on purpose).
pub fn decode_server(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        server_frame(text);
    }
    server_frame(&String::from_utf8_lossy(data));
}

fn server_frame(text: &str) {
    let Ok(msg) = chorus_protocol::decode_server(text) else {
        return;
    };
    let again = msg.to_json();
    match chorus_protocol::decode_server(&again) {
        Ok(back) => assert_eq!(back, msg, "re-encoded as {again}"),
        Err(e) => panic!("{msg:?} re-encodes as {again}, which does not decode: {e}"),
    }
}
