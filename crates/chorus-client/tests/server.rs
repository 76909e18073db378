//! The client against the real reference server, in-process on an ephemeral port:
//! subscribe/publish, presence, shared state, history, terminal closes, and a reconnect
//! across a server restart on a data directory with nothing lost.

use std::time::Duration;

use chorus_client::{
    ChannelEvent, Client, Ending, HistoryQuery, StateError, Status, StopReason, SubscribeOptions,
};
use chorus_protocol::StreamItem;
use chorus_server::{Config, RunningServer, Server};
use serde_json::{json, Value};

const SECRET: &str = "client-integration-secret-0123456789abcdef";
const WAIT: Duration = Duration::from_secs(10);

fn config() -> Config {
    let mut config = Config::for_tests(SECRET, "test-api-key");
    config.presence_grace_ms = 200;
    config.shutdown_timeout_ms = 1_000;
    config
}

fn token(claims: Value) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .expect("token")
}

fn client(server: &RunningServer, user: &str) -> Client {
    client_at(&server.ws_url(), user)
}

fn client_at(url: &str, user: &str) -> Client {
    Client::builder(url)
        .token(token(json!({"sub": user, "profile": {"name": user}})))
        .seed(11)
        .connect()
        .expect("client")
}

async fn next(channel: &mut chorus_client::Channel) -> ChannelEvent {
    tokio::time::timeout(WAIT, channel.next())
        .await
        .expect("an event in time")
        .expect("the channel is open")
}

/// The next event matching `pick`, skipping others.
async fn until<T>(
    channel: &mut chorus_client::Channel,
    mut pick: impl FnMut(ChannelEvent) -> Option<T>,
) -> T {
    loop {
        if let Some(t) = pick(next(channel).await) {
            return t;
        }
    }
}

fn data_of(event: ChannelEvent) -> Option<(u64, Value)> {
    match event {
        ChannelEvent::Message(d) => match d.item {
            StreamItem::Message(m) => Some((m.seq, m.data)),
            StreamItem::DataChange(c) => Some((c.seq, c.data)),
        },
        _ => None,
    }
}

#[tokio::test]
async fn a_published_message_reaches_the_other_subscriber_with_its_position() {
    let server = Server::start(config()).await.unwrap();
    let ann = client(&server, "ann");
    let bob = client(&server, "bob");
    let ann_chat = ann.subscribe("chat").await.unwrap();
    let mut bob_chat = bob.subscribe("chat").await.unwrap();
    let published = ann_chat
        .publish("say", json!({"text": "hi"}))
        .await
        .unwrap();
    let delivery = until(&mut bob_chat, |e| match e {
        ChannelEvent::Message(d) => Some(d),
        _ => None,
    })
    .await;
    let StreamItem::Message(m) = &delivery.item else {
        panic!("a message")
    };
    assert_eq!((m.event.as_str(), &m.data), ("say", &json!({"text": "hi"})));
    assert_eq!(m.from.as_deref(), Some("ann"));
    assert_eq!(delivery.position.seq, published.seq);
    assert_eq!(
        ann_chat.position().unwrap().seq,
        published.seq,
        "acks move the position"
    );
    ann.close().await;
    bob.close().await;
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn presence_counts_a_user_with_two_tabs_once() {
    let server = Server::start(config()).await.unwrap();
    let bob = client(&server, "bob");
    let mut room = bob.subscribe("presence-room").await.unwrap();
    let tab1 = client(&server, "ann");
    let tab2 = client(&server, "ann");
    let _t1 = tab1.subscribe("presence-room").await.unwrap();
    until(&mut room, |e| match e {
        ChannelEvent::MemberJoined(m) if m.user_id == "ann" => Some(()),
        _ => None,
    })
    .await;
    let _t2 = tab2.subscribe("presence-room").await.unwrap();
    assert_eq!(_t2.presence().len(), 2, "the snapshot holds ann and bob");
    // The close waits for the server's Close reply; bob's publish round trip then flushes
    // anything the server sent bob about it.
    tab1.close().await;
    room.publish("noop", json!(null)).await.unwrap();
    while let Some(e) = room.try_next() {
        assert!(
            !matches!(&e, ChannelEvent::MemberLeft { user_id } if user_id == "ann"),
            "closing one of two tabs announced a leave"
        );
    }
    assert!(
        room.presence().get("ann").is_some(),
        "ann keeps her second tab"
    );
    tab2.close().await;
    until(&mut room, |e| match e {
        ChannelEvent::MemberLeft { user_id } if user_id == "ann" => Some(()),
        _ => None,
    })
    .await;
    assert_eq!(room.presence().len(), 1);
    bob.close().await;
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn state_writes_update_the_view_and_a_stale_compare_and_set_conflicts() {
    let server = Server::start(config()).await.unwrap();
    let ann = client(&server, "ann");
    let mut doc = ann
        .subscribe_with("doc", SubscribeOptions::with_state())
        .await
        .unwrap();
    let v1 = doc.set("title", json!("draft")).await.unwrap();
    until(&mut doc, |e| match e {
        ChannelEvent::StateChanged { version } if version == v1.version => Some(()),
        _ => None,
    })
    .await;
    assert_eq!(doc.state().data().unwrap()["title"], "draft");
    let v2 = doc
        .set_if("title", json!("final"), v1.version)
        .await
        .unwrap();
    assert_eq!(v2.version, v1.version + 1);
    match doc.set_if("title", json!("late"), v1.version).await {
        Err(StateError::Conflict { current }) => assert_eq!(current, v2),
        other => panic!("expected a conflict, got {other:?}"),
    }
    ann.close().await;
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn history_pages_hold_what_was_published() {
    let server = Server::start(config()).await.unwrap();
    let ann = client(&server, "ann");
    let chat = ann.subscribe("chat").await.unwrap();
    for i in 1..=3 {
        chat.publish("n", json!(i)).await.unwrap();
    }
    let page = chat.history(HistoryQuery::default()).await.unwrap();
    let data: Vec<Value> = page
        .messages
        .iter()
        .map(|m| match m {
            StreamItem::Message(m) => m.data.clone(),
            StreamItem::DataChange(c) => c.data.clone(),
        })
        .collect();
    assert_eq!(data, [json!(1), json!(2), json!(3)]);
    ann.close().await;
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_bad_token_stops_the_client_without_reconnecting() {
    let server = Server::start(config()).await.unwrap();
    let client = Client::builder(server.ws_url())
        .token("not-a-jwt")
        .connect()
        .unwrap();
    let reason = tokio::time::timeout(WAIT, client.wait_open())
        .await
        .expect("stops in time")
        .expect_err("never opens");
    match reason {
        StopReason::Terminal(Ending::Closed { code, .. }) => assert_eq!(code, 4001),
        other => panic!("expected a terminal 4001, got {other:?}"),
    }
    assert!(matches!(client.status(), Status::Stopped(_)));
    server.shutdown().await.unwrap();
}

fn on_disk(dir: &std::path::Path, port: u16) -> Config {
    let mut config = config();
    config.memory = false;
    config.data_dir = dir.to_owned();
    config.port = port;
    config
}

#[tokio::test]
async fn a_restart_on_the_same_data_loses_and_duplicates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(on_disk(dir.path(), 0)).await.unwrap();
    let port = server.local_addr().port();
    let url = server.ws_url();
    let reader = client_at(&url, "reader");
    let writer = client_at(&url, "writer");
    let mut inbox = reader.subscribe("feed").await.unwrap();
    let outbox = writer.subscribe("feed").await.unwrap();
    let epoch = inbox.position().unwrap().epoch;
    for i in 1..=10 {
        outbox.publish("n", json!(i)).await.unwrap();
    }
    server.shutdown().await.unwrap();
    let server = Server::start(on_disk(dir.path(), port)).await.unwrap();
    // Published after the restart, possibly before the reader is back: it must be replayed.
    for i in 11..=20 {
        outbox.publish("n", json!(i)).await.unwrap();
    }
    let mut got = Vec::new();
    let mut resumed = None;
    while got.len() < 20 {
        match next(&mut inbox).await {
            ChannelEvent::Subscribed {
                resumed: true,
                recovered,
                stale,
                position,
            } => resumed = Some((recovered, stale, position.epoch)),
            other => {
                if let Some((seq, data)) = data_of(other) {
                    got.push((seq, data));
                }
            }
        }
    }
    let data: Vec<Value> = got.iter().map(|(_, d)| d.clone()).collect();
    assert_eq!(data, (1..=20).map(Value::from).collect::<Vec<_>>());
    assert!(got.windows(2).all(|w| w[0].0 < w[1].0), "seq ascends");
    assert_eq!(resumed, Some((Some(true), false, epoch)));
    // Nothing else is pending: a further message is the next one delivered.
    outbox.publish("n", json!(21)).await.unwrap();
    let after = until(&mut inbox, data_of).await;
    assert_eq!(after.1, json!(21));
    reader.close().await;
    writer.close().await;
    server.shutdown().await.unwrap();
}
