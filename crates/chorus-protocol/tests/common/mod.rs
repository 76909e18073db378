//! One canonical instance of every message, shared by the round-trip and snapshot tests.

#![allow(dead_code)]

use chorus_protocol::*;
use serde_json::json;

pub fn epoch() -> Epoch {
    Epoch::from("e-5f3a")
}

pub fn member(user: &str) -> Member {
    Member {
        user_id: user.into(),
        profile: json!({"name": "Ann"}),
        status: PresenceStatus::Online,
        data: json!({"tool": "pen"}),
        joined_at: 1_700_000_000_000,
        last_seen: 1_700_000_000_500,
    }
}

fn data(pairs: serde_json::Value) -> StateData {
    pairs.as_object().cloned().unwrap_or_default()
}

/// One instance per client message type, in CLIENT_TYPES order.
pub fn client_messages() -> Vec<ClientMessage> {
    let ch = || ChannelName::from("presence-doc-1");
    vec![
        ClientMessage::Ping(Ping {
            id: Some("p1".into()),
        }),
        ClientMessage::AuthRefresh(AuthRefresh {
            id: Some(2u64.into()),
            token: "eyJhbGciOi.x.y".into(),
        }),
        ClientMessage::Subscribe(Subscribe {
            id: Some("s1".into()),
            channel: ch(),
            since: Some(StreamPosition {
                epoch: epoch(),
                seq: 41,
            }),
            password: Some("hunter2".into()),
            room: Some(RoomOptions {
                password: Some("hunter2".into()),
                max_users: Some(8),
                metadata: Some(json!({"title": "Doc"})),
                persist: Some(true),
            }),
            state: Some(true),
        }),
        ClientMessage::Unsubscribe(Unsubscribe {
            id: Some("u1".into()),
            channel: ch(),
        }),
        ClientMessage::Broadcast(Broadcast {
            id: Some("b1".into()),
            channel: "chat-1".into(),
            event: "chat:message".into(),
            data: json!({"text": "hi"}),
            echo: Some(false),
            message_id: Some("m-1".into()),
        }),
        ClientMessage::History(History {
            id: Some("h1".into()),
            channel: "chat-1".into(),
            limit: std::num::NonZeroU32::new(50),
            before_seq: Some(100),
            event: Some("typing".into()),
        }),
        ClientMessage::Presence(PresenceRequest {
            id: Some("pl".into()),
            channel: ch(),
        }),
        ClientMessage::PresenceUpdate(PresenceUpdate {
            id: Some("pu".into()),
            channel: ch(),
            status: Some(PresenceStatus::Away),
            data: Some(json!({"tool": "eraser"})),
        }),
        ClientMessage::CursorUpdate(CursorUpdate {
            channel: ch(),
            x: 120.5,
            y: 48.0,
            data: Some(json!({"selection": [3, 9]})),
        }),
        ClientMessage::StateUpdate(StateUpdate {
            id: Some("w1".into()),
            channel: ch(),
            key: "title".into(),
            value: json!("My Document"),
            expected_version: Some(6),
            expected_epoch: None,
        }),
        ClientMessage::StateMerge(StateMerge {
            id: Some("w2".into()),
            channel: ch(),
            data: data(json!({"title": "X", "content": "Y"})),
            expected_version: None,
            expected_epoch: None,
        }),
        ClientMessage::StateDelete(StateDelete {
            id: Some("w3".into()),
            channel: ch(),
            key: "draft".into(),
            expected_version: Some(8),
            expected_epoch: None,
        }),
        ClientMessage::StateSyncRequest(StateSyncRequest {
            id: Some("sy".into()),
            channel: ch(),
        }),
    ]
}

/// One instance per server message type, in SERVER_TYPES order.
pub fn server_messages() -> Vec<ServerMessage> {
    let ch = || ChannelName::from("presence-doc-1");
    let message = Message {
        channel: "chat-1".into(),
        event: "chat:message".into(),
        data: json!({"text": "hi"}),
        from: Some("u1".into()),
        ts: 1_700_000_000_000,
        seq: 42,
    };
    vec![
        ServerMessage::Welcome(Welcome {
            protocol: PROTOCOL.into(),
            connection_id: "c-7f2a".into(),
            user: UserInfo {
                id: "u1".into(),
                profile: json!({"name": "Ann"}),
            },
            tenant: "acme".into(),
            heartbeat: Heartbeat {
                interval_ms: 30_000,
                timeout_ms: 60_000,
            },
            limits: Limits::default().into(),
            capabilities: Capability::ALL.map(Into::into).to_vec(),
            server: "chorus-server/0.1.0".into(),
            expires_at: Some(1_790_000_000_000),
        }),
        ServerMessage::Pong(Pong {
            id: Some("p1".into()),
            ts: 1_700_000_000_000,
        }),
        ServerMessage::AuthRefreshed(AuthRefreshed {
            id: Some(2u64.into()),
            expires_at: Some(1_790_000_000_000),
        }),
        ServerMessage::Subscribed(Subscribed {
            id: Some("s1".into()),
            channel: ch(),
            kind: ChannelKind::Presence,
            position: StreamPosition {
                epoch: epoch(),
                seq: 42,
            },
            recovered: Some(true),
            presence: Some(vec![member("u1")]),
            room: Some(RoomInfo {
                metadata: json!({"title": "Doc"}),
                max_users: 8,
                persist: true,
                protected: true,
                created_at: 1_700_000_000_000,
            }),
            cursors: Some(vec![CursorState {
                user_id: "u2".into(),
                x: 1.0,
                y: 2.0,
                data: None,
                ts: 1_700_000_000_100,
            }]),
            state: Some(StateSnapshot {
                data: data(json!({"title": "Doc"})),
                version: 7,
                epoch: epoch(),
            }),
        }),
        ServerMessage::Unsubscribed(Unsubscribed {
            id: None,
            channel: ch(),
            reason: Some("grant revoked".into()),
        }),
        ServerMessage::BroadcastAck(BroadcastAck {
            id: Some("b1".into()),
            channel: "chat-1".into(),
            seq: 42,
            ts: 1_700_000_000_000,
        }),
        ServerMessage::Message(message.clone()),
        ServerMessage::HistoryPage(HistoryPage {
            id: Some("h1".into()),
            channel: "chat-1".into(),
            position: StreamPosition {
                epoch: epoch(),
                seq: 42,
            },
            messages: vec![StreamItem::Message(message)],
            has_more: false,
        }),
        ServerMessage::PresenceList(PresenceList {
            id: Some("pl".into()),
            channel: ch(),
            members: vec![member("u1"), member("u2")],
        }),
        ServerMessage::PresenceAck(PresenceAck {
            id: Some("pu".into()),
            channel: ch(),
        }),
        ServerMessage::UserJoined(UserJoined {
            channel: ch(),
            member: member("u2"),
        }),
        ServerMessage::UserLeft(UserLeft {
            channel: ch(),
            user_id: "u2".into(),
            last_seen: 1_700_000_000_900,
        }),
        ServerMessage::PresenceUpdated(PresenceUpdated {
            channel: ch(),
            member: member("u2"),
        }),
        ServerMessage::CursorMoved(CursorMoved {
            channel: ch(),
            cursors: vec![CursorState {
                user_id: "u2".into(),
                x: 120.5,
                y: 48.0,
                data: Some(json!({"selection": [3, 9]})),
                ts: 1_700_000_000_100,
            }],
        }),
        ServerMessage::StateAck(StateAck {
            id: Some("w1".into()),
            channel: ch(),
            version: 7,
            epoch: epoch(),
        }),
        ServerMessage::StateSync(StateSync {
            id: Some("sy".into()),
            channel: ch(),
            data: data(json!({"title": "Doc"})),
            version: 7,
            epoch: epoch(),
        }),
        ServerMessage::StateUpdate(StateUpdated {
            channel: ch(),
            key: "title".into(),
            value: json!("My Document"),
            version: 7,
            epoch: epoch(),
            from: Some("u1".into()),
            ts: 1_700_000_000_000,
        }),
        ServerMessage::StateMerge(StateMerged {
            channel: ch(),
            data: data(json!({"title": "X", "content": "Y"})),
            version: 8,
            epoch: epoch(),
            from: Some("u1".into()),
            ts: 1_700_000_000_000,
        }),
        ServerMessage::StateDelete(StateDeleted {
            channel: ch(),
            key: "draft".into(),
            version: 9,
            epoch: epoch(),
            from: Some("u1".into()),
            ts: 1_700_000_000_000,
        }),
        ServerMessage::DataChange(DataChange {
            channel: "resource:post".into(),
            operation: Operation::Create,
            resource: "post".into(),
            record_id: "post-123".into(),
            data: json!({"id": "post-123", "title": "Hello"}),
            ts: 1_700_000_000_000,
            seq: 5,
        }),
        ServerMessage::Error(ErrorFrame {
            id: Some("w1".into()),
            code: ErrorCode::Conflict.into(),
            message: "expected version 6, state is at 7".into(),
            channel: Some("presence-doc-1".into()),
            current: Some(StateVersion {
                version: 7,
                epoch: epoch(),
            }),
            limit: None,
            retry_after_ms: None,
        }),
    ]
}
