//! The budgets one hostile but valid client runs into (spec: limits.md, LIMIT-14 to
//! LIMIT-18): requests of every type, password guesses, channels per tenant, retained bytes.

use serde_json::json;

use super::testkit::{session, Driver};
use super::CoreConfig;

fn config(f: impl FnOnce(&mut CoreConfig)) -> CoreConfig {
    let mut c = CoreConfig::default();
    f(&mut c);
    c
}

#[test]
fn every_request_type_draws_from_one_request_bucket() {
    let mut d = Driver::with_config(config(|c| {
        c.limits.request_burst = 4;
        c.limits.request_rate_per_sec = 10;
    }));
    let a = d.connect("ann");
    d.subscribe(a, "presence-p"); // 1
    let list = json!({"type": "presence", "id": "l", "channel": "presence-p"});
    let hist = json!({"type": "history", "id": "h", "channel": "presence-p"});
    let state =
        json!({"type": "state:update", "id": "s", "channel": "presence-p", "key": "k", "value": 1});
    assert_eq!(d.ask(a, list.clone())[0]["type"], "presence:list"); // 2
    assert_eq!(d.ask(a, hist.clone())[0]["type"], "history:page"); // 3
    assert_eq!(d.ask(a, state.clone())[0]["type"], "state:ack"); // 4
    for req in [list, hist, state, json!({"type": "ping", "id": "p"})] {
        let got = d.ask(a, req);
        assert_eq!(got[0]["code"], "rate_limited", "{got:?}");
        assert_eq!(
            got[0]["retry_after_ms"], 100,
            "LIMIT-6's shape: one token at 10/s"
        );
    }
    d.advance(100);
    assert_eq!(
        d.ask(a, json!({"type": "ping", "id": "p"}))[0]["type"],
        "pong"
    );
}

#[test]
fn a_refused_request_changes_nothing() {
    let mut d = Driver::with_config(config(|c| {
        c.limits.request_burst = 2;
        c.limits.request_rate_per_sec = 1;
    }));
    let a = d.connect("ann");
    let b = d.connect("bob");
    d.subscribe(b, "chat");
    let got = d.ask(a, json!({"type": "subscribe", "id": 1, "channel": "chat"}));
    assert_eq!(got[0]["type"], "subscribed");
    assert_eq!(d.ask(a, json!({"type": "ping"}))[0]["type"], "pong");
    let got = d.ask(
        a,
        json!({"type": "unsubscribe", "id": 2, "channel": "chat"}),
    );
    assert_eq!(got[0]["code"], "rate_limited");
    assert_eq!(got[0]["channel"], "chat", "ERR-2: the request's channel");
    let got = d.ask(
        b,
        json!({"type": "broadcast", "id": 3, "channel": "chat", "event": "e", "data": 1}),
    );
    assert_eq!(got[0]["type"], "broadcast:ack");
    assert_eq!(
        d.frames(a).len(),
        1,
        "still subscribed: the message arrived"
    );
}

fn room_with_password(d: &mut Driver) {
    let owner = d.connect("own");
    let got = d.ask(
        owner,
        json!({"type": "subscribe", "channel": "presence-r", "room": {"password": "right"}}),
    );
    assert_eq!(got[0]["type"], "subscribed");
}

fn join(password: &str) -> serde_json::Value {
    json!({"type": "subscribe", "id": "j", "channel": "presence-r", "password": password})
}

#[test]
fn password_guesses_are_bounded_per_connection_then_refused_unverified() {
    let mut d = Driver::with_config(config(|c| {
        c.limits.max_password_attempts = 3;
        c.limits.password_attempt_interval_ms = 1000;
    }));
    room_with_password(&mut d);
    let eve = d.connect("eve");
    for _ in 0..3 {
        assert_eq!(d.ask(eve, join("guess"))[0]["code"], "bad_password");
    }
    let got = d.ask(eve, join("right"));
    assert_eq!(
        got[0]["code"], "rate_limited",
        "even the right one: not verified"
    );
    assert_eq!(got[0]["retry_after_ms"], 1000);
    // Another connection has its own budget.
    let bob = d.connect("bob");
    assert_eq!(d.ask(bob, join("guess"))[0]["code"], "bad_password");
    d.advance(1000);
    assert_eq!(d.ask(eve, join("right"))[0]["type"], "subscribed");
}

#[test]
fn right_passwords_take_no_attempt() {
    let mut d = Driver::with_config(config(|c| c.limits.max_password_attempts = 1));
    room_with_password(&mut d);
    for user in ["a", "b", "c"] {
        let conn = d.connect(user);
        for _ in 0..2 {
            let got = d.ask(conn, join("right"));
            assert_ne!(got[0]["code"], "rate_limited", "{got:?}");
            d.ask(
                conn,
                json!({"type": "unsubscribe", "channel": "presence-r"}),
            );
        }
    }
}

#[test]
fn a_subscribe_creating_one_channel_too_many_for_the_tenant_is_refused() {
    let mut d = Driver::with_config(config(|c| c.limits.max_channels = 2));
    let a = d.connect("ann");
    d.subscribe(a, "one");
    d.subscribe(a, "two");
    let got = d.ask(a, json!({"type": "subscribe", "id": 3, "channel": "three"}));
    assert_eq!(got[0]["code"], "limit_exceeded");
    assert_eq!(got[0]["limit"], "max_channels");
    // An existing channel is still open to everyone of the tenant.
    let b = d.connect("bob");
    assert_eq!(d.subscribe(b, "one")["type"], "subscribed");
    // Another tenant has its own count.
    let t = d.connect_session(session("tom", "other"));
    assert_eq!(d.subscribe(t, "three")["type"], "subscribed");
}

fn publish(d: &mut Driver, conn: super::ConnId, channel: &str, bytes: usize) {
    let got = d.ask(
        conn,
        json!({"type": "broadcast", "id": 1, "channel": channel, "event": "e", "data": "x".repeat(bytes)}),
    );
    assert_eq!(got[0]["type"], "broadcast:ack", "{got:?}");
}

fn retained(d: &mut Driver, conn: super::ConnId, channel: &str) -> Vec<u64> {
    let got = d.ask(
        conn,
        json!({"type": "history", "id": "h", "channel": channel, "limit": 100}),
    );
    got[0]["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["seq"].as_u64().unwrap())
        .collect()
}

#[test]
fn a_channel_retains_at_most_retention_bytes_but_always_its_newest_item() {
    let mut d = Driver::with_config(config(|c| c.limits.retention_bytes = 3000));
    let a = d.connect("ann");
    d.subscribe(a, "c");
    for _ in 0..5 {
        publish(&mut d, a, "c", 900); // about 1000 bytes a frame
    }
    assert_eq!(retained(&mut d, a, "c"), vec![3, 4, 5]);
    publish(&mut d, a, "c", 5000);
    assert_eq!(
        retained(&mut d, a, "c"),
        vec![6],
        "the newest stays whatever its size"
    );
}

#[test]
fn above_the_total_the_largest_channel_gives_up_its_oldest_items_first() {
    let mut d = Driver::with_config(config(|c| {
        c.limits.retention_bytes = 100_000;
        c.retention_total_bytes = 10_000;
    }));
    let a = d.connect("ann");
    d.subscribe(a, "small");
    d.subscribe(a, "big");
    publish(&mut d, a, "small", 900);
    publish(&mut d, a, "small", 900);
    for _ in 0..9 {
        publish(&mut d, a, "big", 900);
    }
    assert_eq!(
        retained(&mut d, a, "small"),
        vec![1, 2],
        "the small channel keeps all"
    );
    let big = retained(&mut d, a, "big");
    assert!(big.len() < 9 && big.len() >= 6, "{big:?}");
    assert_eq!(big.last(), Some(&9));
}
