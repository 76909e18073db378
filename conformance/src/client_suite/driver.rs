//! The driver contract of `chorus conform-client` (conformance/CLIENT-DRIVER.md): the JSON
//! lines the suite writes to an adapter's stdin ([`Command`]) and reads from its stdout
//! ([`Event`]). Its JSON Schema is `schema/driver.schema.json`.
//!
//! The types are lenient where the adapter writes (unknown members of events are ignored,
//! so an adapter may add its own diagnostics) and strict where the suite writes.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Version of the driver contract; `ready.driver` must carry it.
pub const DRIVER_VERSION: u32 = 1;

/// A stream position as the client stores it (the wire's `{epoch, seq}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Position {
    /// The numbering the position belongs to.
    pub epoch: String,
    /// The last sequence number seen.
    pub seq: u64,
}

/// Presence fields of a `subscribe` or `presence_update` command.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PresenceFields {
    /// `online`, `away` or `busy`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// The member's data object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
}

/// A line the suite writes to the adapter's stdin: something the application asks the
/// client library to do. Every command but `token` carries a `ref`; the adapter answers it
/// with exactly one [`Event::Result`] carrying the same `ref`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "cmd", rename_all = "snake_case", deny_unknown_fields)]
pub enum Command {
    /// Create the client and let it connect to `url` (and keep it connected, reconnecting by
    /// its own rules, until `close`). The result is `ok` as soon as the client was started;
    /// the connection's progress is reported with `connection` events.
    Connect {
        /// Correlation of the command and its result.
        #[serde(rename = "ref")]
        reference: String,
        /// The WebSocket URL, e.g. `ws://127.0.0.1:40123/ws`.
        url: String,
        /// The first token. Later tokens (after a 4100-4199 close, before `expires_at`) the
        /// client asks its token provider for, which the adapter implements by writing a
        /// `token_request` event and waiting for the `token` command.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        token: Option<String>,
    },
    /// Subscribe to a channel (the client remembers it and resubscribes after reconnects).
    Subscribe {
        /// Correlation.
        #[serde(rename = "ref")]
        reference: String,
        /// The channel name.
        channel: String,
        /// Ask for the shared-state snapshot (`subscribe.state: true`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        state: Option<bool>,
        /// An explicit first position (`subscribe.since`), for applications that stored one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        since: Option<Position>,
        /// Presence channels: the initial status and data.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        presence: Option<PresenceFields>,
    },
    /// Leave a channel (the client forgets it).
    Unsubscribe {
        /// Correlation.
        #[serde(rename = "ref")]
        reference: String,
        /// The channel.
        channel: String,
    },
    /// Publish (`broadcast`) an event.
    Publish {
        /// Correlation.
        #[serde(rename = "ref")]
        reference: String,
        /// The channel.
        channel: String,
        /// The event name.
        event: String,
        /// The payload.
        data: Value,
        /// Ask for the message back (`broadcast.echo`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        echo: Option<bool>,
    },
    /// Change the own presence (`presence:update`).
    PresenceUpdate {
        /// Correlation.
        #[serde(rename = "ref")]
        reference: String,
        /// The channel.
        channel: String,
        /// Status and data.
        #[serde(flatten)]
        fields: PresenceFields,
    },
    /// Write one key of the shared state (`state:update`).
    StateSet {
        /// Correlation.
        #[serde(rename = "ref")]
        reference: String,
        /// The channel.
        channel: String,
        /// The key.
        key: String,
        /// The new value.
        value: Value,
        /// Compare-and-set: the version the value was computed from.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        expected_version: Option<u64>,
    },
    /// Merge keys into the shared state (`state:merge`).
    StateMerge {
        /// Correlation.
        #[serde(rename = "ref")]
        reference: String,
        /// The channel.
        channel: String,
        /// Keys and values.
        data: Value,
        /// Compare-and-set version.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        expected_version: Option<u64>,
    },
    /// Delete one key of the shared state (`state:delete`).
    StateDelete {
        /// Correlation.
        #[serde(rename = "ref")]
        reference: String,
        /// The channel.
        channel: String,
        /// The key.
        key: String,
        /// Compare-and-set version.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        expected_version: Option<u64>,
    },
    /// Move the own cursor (`cursor:update`; the client may throttle, CURS-18).
    CursorUpdate {
        /// Correlation.
        #[serde(rename = "ref")]
        reference: String,
        /// The channel.
        channel: String,
        /// X coordinate.
        x: f64,
        /// Y coordinate.
        y: f64,
        /// Extra cursor data.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        data: Option<Value>,
    },
    /// Fetch a history page (`history`).
    History {
        /// Correlation.
        #[serde(rename = "ref")]
        reference: String,
        /// The channel.
        channel: String,
        /// Page size.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        limit: Option<u32>,
        /// Only messages before this `seq`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        before_seq: Option<u64>,
    },
    /// Clear a stream's local message list (BCAST-5: local only, no frame).
    Clear {
        /// Correlation.
        #[serde(rename = "ref")]
        reference: String,
        /// The channel.
        channel: String,
    },
    /// The answer of the application's token provider to a `token_request`.
    Token {
        /// The `request` of the `token_request` answered.
        request: String,
        /// The new token; `null` when the application has none (the client stops).
        token: Option<String>,
    },
    /// End the session on purpose (close 1000, no reconnect).
    Close {
        /// Correlation.
        #[serde(rename = "ref")]
        reference: String,
    },
}

impl Command {
    /// The command's `ref` (`None` for `token`).
    pub fn reference(&self) -> Option<&str> {
        match self {
            Command::Connect { reference, .. }
            | Command::Subscribe { reference, .. }
            | Command::Unsubscribe { reference, .. }
            | Command::Publish { reference, .. }
            | Command::PresenceUpdate { reference, .. }
            | Command::StateSet { reference, .. }
            | Command::StateMerge { reference, .. }
            | Command::StateDelete { reference, .. }
            | Command::CursorUpdate { reference, .. }
            | Command::History { reference, .. }
            | Command::Clear { reference, .. }
            | Command::Close { reference } => Some(reference),
            Command::Token { .. } => None,
        }
    }
}

/// The connection state a `connection` event reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ConnectionState {
    /// An upgrade request is under way.
    Connecting,
    /// `welcome` arrived.
    Open,
    /// The connection ended; the client waits `delay_ms` before the next attempt.
    Waiting,
    /// The connection ended and the client will not reconnect (terminal code, refused
    /// upgrade, no token): reported to the application (CLIENT-5).
    Stopped,
    /// The application closed the client (`close`).
    Closed,
}

/// How a command ended, in its `result` event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Done (the reply arrived, or the command needs none).
    Ok,
    /// The server answered with an `error` (its `code` in the event).
    Error,
    /// The connection ended before the reply arrived: the outcome is unknown (CLIENT-18).
    Unknown,
    /// The client library (or the adapter) cannot do this.
    Unsupported,
}

/// A member in a `members` event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct MemberView {
    /// The member's user id.
    pub user_id: String,
    /// Its status, when the library keeps it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// Its data, when the library keeps it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
}

/// A cursor in a `cursors` event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CursorView {
    /// Whose cursor.
    pub user_id: String,
    /// X coordinate.
    pub x: f64,
    /// Y coordinate.
    pub y: f64,
}

/// A line the adapter writes to stdout: something the client library reported to the
/// application. Lines that are not JSON objects with a known `event` are recorded in the
/// transcript and otherwise ignored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// The adapter is ready for commands (its first line).
    Ready {
        /// [`DRIVER_VERSION`].
        driver: u32,
        /// The client library and version, e.g. `chorus-client/0.1.0`.
        client: String,
    },
    /// The connection changed state.
    Connection {
        /// The new state.
        state: ConnectionState,
        /// With `waiting`/`stopped`: the close code (1006 for a connection lost without a
        /// Close frame, or the HTTP status of a refused upgrade).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        code: Option<u16>,
        /// With `waiting`: the delay before the next attempt.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        delay_ms: Option<u64>,
        /// With `waiting`: the reconnect attempt number n the delay was drawn for.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        attempt: Option<u32>,
    },
    /// The answer to a command.
    Result {
        /// The command's `ref`.
        #[serde(rename = "ref")]
        reference: String,
        /// How it ended.
        outcome: Outcome,
        /// With `error`: the error code (as received, even one the library does not know).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        code: Option<String>,
        /// State writes: the version the server reported (ack, or the current version of a
        /// `conflict`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        version: Option<u64>,
        /// `history`: the messages of the page, oldest first (each like a `message` event).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        messages: Option<Vec<Value>>,
    },
    /// A subscription is active (first subscribe or resubscribe).
    Subscribed {
        /// The channel.
        channel: String,
        /// The position the server reported.
        position: Position,
        /// `subscribed.recovered`, when present.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        recovered: Option<bool>,
    },
    /// What the application derived from the channel is stale (CLIENT-12): a resubscribe
    /// returned `recovered: false` or a new epoch.
    Stale {
        /// The channel.
        channel: String,
    },
    /// The server removed the subscription (unsolicited `unsubscribed`).
    Unsubscribed {
        /// The channel.
        channel: String,
        /// The reason as received.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// A message the application receives (a `message` frame, or a `data_change`).
    Message {
        /// The channel.
        channel: String,
        /// The message's `event` name (`data_change` for change feeds).
        name: String,
        /// The payload.
        #[serde(default)]
        data: Value,
        /// The sender.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        from: Option<String>,
        /// Its `seq`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        seq: Option<u64>,
    },
    /// The whole member list of a presence channel, after every change.
    Members {
        /// The channel.
        channel: String,
        /// Every member, in any order.
        members: Vec<MemberView>,
    },
    /// The whole shared-state view of a channel, after every change.
    StateView {
        /// The channel.
        channel: String,
        /// The epoch of the copy.
        epoch: String,
        /// Its version.
        version: u64,
        /// Every key and value.
        data: Value,
    },
    /// The whole cursor map of a channel, after every change.
    Cursors {
        /// The channel.
        channel: String,
        /// Every cursor, in any order.
        cursors: Vec<CursorView>,
    },
    /// An `error` not answering a command (or one the library reports on its own).
    Error {
        /// The code as received.
        code: String,
        /// The channel, when the error names one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        channel: Option<String>,
    },
    /// The client asks its token provider for a token; answer with the `token` command.
    TokenRequest {
        /// Correlation, echoed in `token`.
        request: String,
    },
    /// A diagnostic line (kept in the transcript, never graded).
    Log {
        /// The text.
        message: String,
    },
}

/// The JSON Schema of the driver contract (`schema/driver.schema.json`): both directions.
pub fn schema() -> Value {
    #[derive(JsonSchema)]
    #[allow(dead_code)]
    /// One line of the `chorus conform-client` driver contract: a command (suite -> adapter)
    /// or an event (adapter -> suite).
    #[serde(untagged)]
    enum DriverLine {
        /// Suite -> adapter.
        Command(Command),
        /// Adapter -> suite.
        Event(Event),
    }
    let generator = schemars::generate::SchemaSettings::draft2020_12().into_generator();
    let mut value = generator.into_root_schema_for::<DriverLine>().to_value();
    if let Value::Object(map) = &mut value {
        map.insert(
            "$id".into(),
            Value::String(format!(
                "{}driver.schema.json",
                chorus_protocol::schema::SCHEMA_BASE
            )),
        );
    }
    value
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_round_trip_with_ref() {
        let line = r#"{"cmd":"state_set","ref":"c3","channel":"doc","key":"k","value":1,"expected_version":4}"#;
        let c: Command = serde_json::from_str(line).unwrap();
        assert_eq!(c.reference(), Some("c3"));
        let back = serde_json::to_value(&c).unwrap();
        assert_eq!(back, serde_json::from_str::<Value>(line).unwrap());
    }

    #[test]
    fn events_ignore_unknown_members() {
        let e: Event = serde_json::from_str(
            r#"{"event":"connection","state":"waiting","delay_ms":12,"attempt":0,"extra":true}"#,
        )
        .unwrap();
        assert!(matches!(
            e,
            Event::Connection {
                state: ConnectionState::Waiting,
                delay_ms: Some(12),
                ..
            }
        ));
    }

    #[test]
    fn every_example_of_the_contract_document_parses() {
        let doc = include_str!("../../CLIENT-DRIVER.md");
        let mut checked = 0;
        let mut lines = doc.lines();
        while let Some(line) = lines.next() {
            if line.trim() != "```json" {
                continue;
            }
            let body: Vec<&str> = lines
                .by_ref()
                .take_while(|l| !l.starts_with("```"))
                .collect();
            let text = body.join("\n");
            let ok = serde_json::from_str::<Command>(&text).is_ok()
                || serde_json::from_str::<Event>(&text).is_ok();
            assert!(ok, "not a command or event: {text}");
            checked += 1;
        }
        assert!(checked >= 3, "only {checked} examples found");
    }
}
