//! How the load generator speaks to each kind of server: where to connect, how to join a
//! channel, how to publish, and how to recognise a delivery in a received frame.
//!
//! Three dialects: [`Minimal`] (the bare and Node `ws` baselines: the channel is the URL
//! path, the server answers `ok` once the connection is in the channel, and every text frame
//! a member sends goes verbatim to every other member), [`SocketIo`] (Engine.IO v4 /
//! Socket.IO v5 framing, bench/socketio) and [`ChorusDialect`] (spec/channels.md).

use std::net::SocketAddr;

use chorus_protocol::{Broadcast, ChannelName, Claims, ClientMessage, Subscribe, PROTOCOL};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::handshake::client::Request;
use tokio_tungstenite::tungstenite::http::HeaderValue;

use crate::error::BenchError;
use crate::payload::Payload;

/// What a received text frame means to a scenario.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inbound {
    /// The connection is now in the channel it asked for.
    Joined,
    /// A benchmark message from another member.
    Delivery(Payload),
    /// The server accepted one of this connection's publishes.
    PublishAck,
    /// The server refused a request.
    Error,
    /// Anything else (welcome, presence, state...).
    Other,
}

/// One server kind's dialect.
pub trait Dialect: Send + Sync {
    /// The WebSocket request of connection `user` that will join `channel`.
    fn request(&self, addr: SocketAddr, channel: &str, user: &str) -> Result<Request, BenchError>;
    /// Frames to send after the handshake to join `channel` (none when the URL joined it).
    fn join_frames(&self, channel: &str) -> Vec<String>;
    /// The frame that publishes `payload` on `channel`.
    fn publish_frame(&self, channel: &str, payload: &Payload) -> String;
    /// What a received text frame is.
    fn classify(&self, frame: &str) -> Inbound;
    /// Whether the server acknowledges each publish (then unacknowledged ones are counted).
    fn acks_publishes(&self) -> bool;
    /// The frame a live client answers `frame` with, if any (a heartbeat the server
    /// expects an answer to).
    fn reply(&self, _frame: &str) -> Option<&'static str> {
        None
    }
}

/// The baselines' dialect.
#[derive(Debug, Clone, Copy, Default)]
pub struct Minimal;

impl Dialect for Minimal {
    fn request(&self, addr: SocketAddr, channel: &str, _user: &str) -> Result<Request, BenchError> {
        Ok(format!("ws://{addr}/ch/{channel}").into_client_request()?)
    }

    fn join_frames(&self, _channel: &str) -> Vec<String> {
        Vec::new()
    }

    fn publish_frame(&self, _channel: &str, payload: &Payload) -> String {
        payload.encode()
    }

    fn classify(&self, frame: &str) -> Inbound {
        if frame == "ok" {
            return Inbound::Joined;
        }
        Payload::find(frame).map_or(Inbound::Other, Inbound::Delivery)
    }

    fn acks_publishes(&self) -> bool {
        false
    }
}

/// Socket.IO 4 over its WebSocket transport (Engine.IO protocol v4, Socket.IO protocol v5):
/// the server opens with `0{...}` (Engine.IO open), the client connects to the main
/// namespace with `40{"channel":..}` (its `auth` payload, which bench/socketio joins to that
/// room), and the server emits `42["ok"]` once it is in. A publish is the event
/// `42<id>["m",payload]` with an acknowledgement id, answered `43<id>[]`; deliveries are
/// `42["m",payload]`. The server pings with `2`, the client answers `3`.
#[derive(Debug, Clone, Copy, Default)]
pub struct SocketIo;

/// The acknowledgement id of every publish: the load generator counts acknowledgements, it
/// does not match them, so one id serves (the server answers each packet's own).
const SOCKETIO_ACK_ID: u32 = 1;

impl Dialect for SocketIo {
    fn request(
        &self,
        addr: SocketAddr,
        _channel: &str,
        _user: &str,
    ) -> Result<Request, BenchError> {
        Ok(format!("ws://{addr}/socket.io/?EIO=4&transport=websocket").into_client_request()?)
    }

    fn join_frames(&self, channel: &str) -> Vec<String> {
        vec![format!("40{}", serde_json::json!({ "channel": channel }))]
    }

    fn publish_frame(&self, _channel: &str, payload: &Payload) -> String {
        // The payload is ASCII without quotes or backslashes: a JSON string as it is.
        format!(r#"42{SOCKETIO_ACK_ID}["m","{}"]"#, payload.encode())
    }

    fn classify(&self, frame: &str) -> Inbound {
        if let Some(event) = frame.strip_prefix("42") {
            if event == r#"["ok"]"# {
                return Inbound::Joined;
            }
            return Payload::find(event).map_or(Inbound::Other, Inbound::Delivery);
        }
        match frame.get(..2) {
            Some("43") => Inbound::PublishAck,
            // CONNECT_ERROR, DISCONNECT of the namespace, Engine.IO close.
            Some("44") | Some("41") => Inbound::Error,
            _ if frame == "1" => Inbound::Error,
            _ => Inbound::Other,
        }
    }

    fn acks_publishes(&self) -> bool {
        true
    }

    fn reply(&self, frame: &str) -> Option<&'static str> {
        (frame == "2").then_some("3")
    }
}

/// The Chorus v1 dialect: HS256 tokens, `subscribe`/`subscribed`, `broadcast`/`message`.
#[derive(Debug, Clone)]
pub struct ChorusDialect {
    key: jsonwebtoken::EncodingKey,
}

impl ChorusDialect {
    /// A dialect minting tokens with the server's `--jwt-secret`.
    pub fn new(jwt_secret: &str) -> Self {
        ChorusDialect {
            key: jsonwebtoken::EncodingKey::from_secret(jwt_secret.as_bytes()),
        }
    }

    /// A connection token for `user`.
    pub fn token(&self, user: &str) -> Result<String, BenchError> {
        let claims = Claims {
            sub: user.to_owned(),
            profile: None,
            tenant: None,
            channels: Vec::new(),
            rights: None,
            exp: None,
            iat: None,
        };
        let header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
        Ok(jsonwebtoken::encode(&header, &claims, &self.key)?)
    }

    /// The `subscribe` frame for `channel`, with extra fields set by `edit`.
    pub fn subscribe_frame(channel: &str, edit: impl FnOnce(&mut Subscribe)) -> String {
        let mut sub = Subscribe {
            id: None,
            channel: ChannelName::from(channel),
            since: None,
            password: None,
            room: None,
            state: None,
        };
        edit(&mut sub);
        to_json(&ClientMessage::Subscribe(sub))
    }
}

/// A client frame as JSON text.
pub fn to_json(msg: &ClientMessage) -> String {
    // Client messages hold only strings, numbers and JSON values: serializing cannot fail.
    serde_json::to_string(msg).unwrap_or_default()
}

/// The `type` of a server frame. Serde writes an internally tagged enum's tag first, so this
/// is a prefix check in practice; it falls back to a search for other writers.
pub fn frame_type(frame: &str) -> &str {
    const TAG: &str = "\"type\":\"";
    let Some(at) = frame.find(TAG) else { return "" };
    let rest = &frame[at + TAG.len()..];
    rest.find('"').map_or("", |end| &rest[..end])
}

impl Dialect for ChorusDialect {
    fn request(&self, addr: SocketAddr, _channel: &str, user: &str) -> Result<Request, BenchError> {
        let token = self.token(user)?;
        let mut req = format!("ws://{addr}/ws?token={token}").into_client_request()?;
        req.headers_mut()
            .insert("Sec-WebSocket-Protocol", HeaderValue::from_static(PROTOCOL));
        Ok(req)
    }

    fn join_frames(&self, channel: &str) -> Vec<String> {
        vec![Self::subscribe_frame(channel, |_| {})]
    }

    fn publish_frame(&self, channel: &str, payload: &Payload) -> String {
        to_json(&ClientMessage::Broadcast(Broadcast {
            id: None,
            channel: ChannelName::from(channel),
            event: "m".to_owned(),
            data: serde_json::Value::String(payload.encode()),
            echo: None,
            message_id: None,
        }))
    }

    fn classify(&self, frame: &str) -> Inbound {
        match frame_type(frame) {
            "message" => Payload::find(frame).map_or(Inbound::Other, Inbound::Delivery),
            "broadcast:ack" => Inbound::PublishAck,
            "subscribed" => Inbound::Joined,
            "error" => Inbound::Error,
            _ => Inbound::Other,
        }
    }

    fn acks_publishes(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chorus_message_frame_is_a_delivery() {
        let p = Payload {
            publisher: 3,
            seq: 9,
            sent_ns: 77,
        };
        let frame = format!(
            r#"{{"type":"message","channel":"b","event":"m","data":"{}","from":"u","ts":1,"seq":4}}"#,
            p.encode()
        );
        assert_eq!(
            ChorusDialect::new("s").classify(&frame),
            Inbound::Delivery(p)
        );
    }

    #[test]
    fn chorus_replies_are_classified_by_type() {
        let d = ChorusDialect::new("s");
        assert_eq!(
            d.classify(r#"{"type":"broadcast:ack","channel":"b","seq":1,"ts":2}"#),
            Inbound::PublishAck
        );
        assert_eq!(
            d.classify(r#"{"type":"subscribed","channel":"b"}"#),
            Inbound::Joined
        );
        assert_eq!(
            d.classify(r#"{"type":"error","code":"rate_limited"}"#),
            Inbound::Error
        );
        assert_eq!(d.classify(r#"{"type":"welcome"}"#), Inbound::Other);
    }

    #[test]
    fn chorus_publish_is_a_valid_broadcast_with_the_payload_as_data() {
        let p = Payload {
            publisher: 1,
            seq: 2,
            sent_ns: 3,
        };
        let frame = ChorusDialect::new("s").publish_frame("bench", &p);
        let msg = chorus_protocol::decode_client(&frame, 32).unwrap();
        let ClientMessage::Broadcast(b) = msg else {
            panic!("not a broadcast: {frame}")
        };
        assert_eq!(b.data.as_str().map(str::len), Some(64));
    }

    #[test]
    fn chorus_token_is_hs256_with_the_user_as_subject() {
        let token = ChorusDialect::new("secret").token("u7").unwrap();
        let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
        validation.required_spec_claims.clear();
        let key = jsonwebtoken::DecodingKey::from_secret(b"secret");
        let data = jsonwebtoken::decode::<Claims>(&token, &key, &validation).unwrap();
        assert_eq!(data.claims.sub, "u7");
    }

    #[test]
    fn socketio_publish_asks_for_an_ack_and_deliveries_carry_the_payload() {
        let p = Payload {
            publisher: 4,
            seq: 5,
            sent_ns: 6,
        };
        let frame = SocketIo.publish_frame("c", &p);
        assert!(frame.starts_with(r#"421["m",""#), "{frame}");
        let delivered = format!(r#"42["m","{}"]"#, p.encode());
        assert_eq!(SocketIo.classify(&delivered), Inbound::Delivery(p));
        assert_eq!(SocketIo.classify("431[]"), Inbound::PublishAck);
    }

    #[test]
    fn socketio_join_open_and_heartbeat_frames() {
        assert_eq!(SocketIo.join_frames("a\"b"), [r#"40{"channel":"a\"b"}"#]);
        assert_eq!(SocketIo.classify(r#"42["ok"]"#), Inbound::Joined);
        assert_eq!(
            SocketIo.classify(r#"0{"sid":"x","pingInterval":25000}"#),
            Inbound::Other
        );
        assert_eq!(SocketIo.classify(r#"40{"sid":"y"}"#), Inbound::Other);
        assert_eq!(SocketIo.classify(r#"44{"message":"no"}"#), Inbound::Error);
        assert_eq!(SocketIo.reply("2"), Some("3"));
        assert_eq!(SocketIo.reply(r#"42["ok"]"#), None);
    }

    #[test]
    fn minimal_frames_are_the_bare_payload() {
        let p = Payload {
            publisher: 1,
            seq: 2,
            sent_ns: 3,
        };
        let frame = Minimal.publish_frame("c", &p);
        assert_eq!(frame.len(), 64);
        assert_eq!(Minimal.classify(&frame), Inbound::Delivery(p));
        assert_eq!(Minimal.classify("ok"), Inbound::Joined);
    }
}
