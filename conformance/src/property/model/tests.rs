//! The model's expectations for hand-written sequences.

use chorus_protocol::{Capability, Limits};
use serde_json::{json, Value};

use super::{Action, Model, Plan};
use crate::property::ops::{
    Cas, ClientId, Op, Password, RoomChoice, Since, Slot, StatusChoice, Step, SubscribeOp, Write,
};

const ANN1: ClientId = ClientId(0);
const ANN2: ClientId = ClientId(1);
const BOB: ClientId = ClientId(2);
const CAT: ClientId = ClientId(3);

fn model() -> Model {
    Model::new(&Capability::ALL, Limits::default())
}

fn sub(chan: Slot) -> Op {
    Op::Subscribe(SubscribeOp {
        chan,
        since: Since::None,
        state: false,
        room: None,
        password: Password::None,
    })
}

fn bcast(chan: Slot, echo: bool) -> Op {
    Op::Broadcast {
        chan,
        event: 0,
        data: 1,
        echo,
    }
}

fn apply(m: &mut Model, client: ClientId, op: Op) -> Plan {
    m.apply(&Step::new(client, op))
        .expect("the step does something")
}

fn types(plan: &Plan, c: ClientId) -> Vec<String> {
    plan.expect
        .get(&c)
        .map(|l| {
            l.iter()
                .map(|e| e.frame["type"].as_str().unwrap_or("?").to_owned())
                .collect()
        })
        .unwrap_or_default()
}

fn expected(plan: &Plan, c: ClientId, t: &str) -> Value {
    plan.expect[&c]
        .iter()
        .find(|e| e.frame["type"] == t)
        .map(|e| e.frame.clone())
        .unwrap_or_else(|| panic!("{} expects no {t}: {:?}", c.name(), types(plan, c)))
}

fn forbids(plan: &Plan, c: ClientId, req: &str) -> bool {
    plan.forbidden
        .iter()
        .any(|f| f.client == c && f.requirements.contains(&req))
}

#[test]
fn first_operation_connects_the_client() {
    let mut m = model();
    let p = apply(&mut m, BOB, sub(Slot::Chat));
    assert_eq!(p.actions[0], Action::Connect(BOB));
    assert_eq!(types(&p, BOB), ["welcome", "subscribed"]);
}

#[test]
fn connecting_twice_is_skipped() {
    let mut m = model();
    apply(&mut m, BOB, Op::Connect);
    assert!(m.apply(&Step::new(BOB, Op::Connect)).is_none());
}

#[test]
fn broadcast_acks_the_next_seq_and_excludes_only_the_sending_connection() {
    let mut m = model();
    for c in [ANN1, ANN2, BOB] {
        apply(&mut m, c, sub(Slot::Chat));
    }
    let p = apply(&mut m, ANN1, bcast(Slot::Chat, false));
    assert_eq!(types(&p, ANN1), ["broadcast:ack"]);
    assert_eq!(expected(&p, ANN1, "broadcast:ack")["seq"], json!(1));
    assert_eq!(expected(&p, ANN2, "message")["from"], json!("ann"));
    assert_eq!(expected(&p, BOB, "message")["seq"], json!(1));
    assert!(forbids(&p, ANN1, "CHAN-26"));
    let p = apply(&mut m, BOB, bcast(Slot::Chat, true));
    assert_eq!(types(&p, BOB), ["broadcast:ack", "message"]);
    assert_eq!(expected(&p, BOB, "message")["seq"], json!(2));
}

#[test]
fn message_ts_refers_to_the_ack_capture() {
    let mut m = model();
    apply(&mut m, ANN1, sub(Slot::Chat));
    apply(&mut m, BOB, sub(Slot::Chat));
    let p = apply(&mut m, ANN1, bcast(Slot::Chat, false));
    let capture = expected(&p, ANN1, "broadcast:ack")["ts"]["$capture"].clone();
    let reference = expected(&p, BOB, "message")["ts"].clone();
    assert_eq!(
        reference,
        json!(format!("${{{}}}", capture.as_str().unwrap()))
    );
}

#[test]
fn unsubscribed_connection_is_an_outsider() {
    let mut m = model();
    apply(&mut m, ANN1, sub(Slot::Chat));
    apply(&mut m, BOB, sub(Slot::Chat));
    apply(&mut m, BOB, Op::Unsubscribe { chan: Slot::Chat });
    let p = apply(&mut m, ANN1, bcast(Slot::Chat, false));
    assert!(!p.expect.contains_key(&BOB));
    assert!(forbids(&p, BOB, "CHAN-34"));
}

#[test]
fn errors_for_requests_without_a_subscription() {
    let mut m = model();
    let p = apply(&mut m, BOB, bcast(Slot::Chat, false));
    let e = expected(&p, BOB, "error");
    assert_eq!(e["code"], json!("not_subscribed"));
    assert_eq!(e["channel"], json!("chat-{run}"));
    let p = apply(&mut m, BOB, Op::Unsubscribe { chan: Slot::News });
    assert_eq!(expected(&p, BOB, "error")["code"], json!("not_subscribed"));
    apply(&mut m, BOB, sub(Slot::News));
    let p = apply(&mut m, BOB, sub(Slot::News));
    assert_eq!(
        expected(&p, BOB, "error")["code"],
        json!("already_subscribed")
    );
}

#[test]
fn second_tab_does_not_announce_a_join() {
    let mut m = model();
    apply(&mut m, BOB, sub(Slot::Doc));
    let p = apply(&mut m, ANN1, sub(Slot::Doc));
    assert_eq!(
        expected(&p, BOB, "user:joined")["member"]["user_id"],
        json!("ann")
    );
    let p = apply(&mut m, ANN2, sub(Slot::Doc));
    assert!(!p.expect.contains_key(&BOB));
    assert!(forbids(&p, BOB, "PRES-9"));
}

#[test]
fn user_left_only_when_the_last_tab_closes() {
    let mut m = model();
    for c in [BOB, ANN1, ANN2] {
        apply(&mut m, c, sub(Slot::Doc));
    }
    let p = apply(&mut m, ANN1, Op::Disconnect);
    assert_eq!(p.actions, [Action::Close(ANN1)]);
    assert!(!p.expect.contains_key(&BOB));
    assert!(forbids(&p, BOB, "PRES-12"));
    let p = apply(&mut m, ANN2, Op::Unsubscribe { chan: Slot::Doc });
    assert_eq!(expected(&p, BOB, "user:left")["user_id"], json!("ann"));
    assert!(forbids(&p, ANN2, "PRES-14"));
}

#[test]
fn presence_update_is_one_updated_frame_for_everyone() {
    let mut m = model();
    for c in [BOB, ANN1, ANN2] {
        apply(&mut m, c, sub(Slot::Doc));
    }
    let op = Op::PresenceUpdate {
        chan: Slot::Doc,
        status: Some(StatusChoice::Away),
        data: Some(2),
    };
    let p = apply(&mut m, ANN1, op);
    assert_eq!(types(&p, ANN1), ["presence:ack", "presence:updated"]);
    let member = &expected(&p, BOB, "presence:updated")["member"];
    assert_eq!(member["status"], json!("away"));
    assert_eq!(member["data"], json!({"$exact": {"tool": 2}}));
    assert_eq!(types(&p, ANN2), ["presence:updated"]);
    assert!(forbids(&p, BOB, "PRES-19"));
}

#[test]
fn offline_status_is_refused() {
    let mut m = model();
    apply(&mut m, BOB, sub(Slot::Doc));
    let op = Op::PresenceUpdate {
        chan: Slot::Doc,
        status: Some(StatusChoice::Offline),
        data: None,
    };
    let p = apply(&mut m, BOB, op);
    assert_eq!(expected(&p, BOB, "error")["code"], json!("invalid_message"));
}

fn write(cas: Cas) -> Op {
    Op::StateWrite {
        chan: Slot::Chat,
        write: Write::Update { key: 0, value: 0 },
        cas,
    }
}

#[test]
fn stale_compare_and_set_conflicts_and_the_next_write_takes_the_next_version() {
    let mut m = model();
    apply(&mut m, ANN1, sub(Slot::Chat));
    apply(&mut m, BOB, sub(Slot::Chat));
    let p = apply(&mut m, ANN1, write(Cas::Current));
    assert_eq!(expected(&p, ANN1, "state:ack")["version"], json!(1));
    assert_eq!(types(&p, ANN1), ["state:ack", "state:update"]);
    assert_eq!(types(&p, BOB), ["state:update"]);
    let p = apply(&mut m, BOB, write(Cas::Stale));
    let e = expected(&p, BOB, "error");
    assert_eq!(e["code"], json!("conflict"));
    assert_eq!(e["current"]["version"], json!(1));
    assert!(!p.expect.contains_key(&ANN1));
    assert!(forbids(&p, ANN1, "STATE-19"));
    let p = apply(&mut m, BOB, write(Cas::None));
    assert_eq!(expected(&p, BOB, "state:ack")["version"], json!(2));
}

#[test]
fn state_snapshot_only_when_asked() {
    let mut m = model();
    let p = apply(&mut m, ANN1, sub(Slot::Chat));
    assert_eq!(expected(&p, ANN1, "subscribed")["state"], json!("$absent"));
    let op = Op::Subscribe(SubscribeOp {
        chan: Slot::Chat,
        since: Since::None,
        state: true,
        room: None,
        password: Password::None,
    });
    let p = apply(&mut m, BOB, op);
    assert_eq!(
        expected(&p, BOB, "subscribed")["state"]["version"],
        json!(0)
    );
}

fn since(chan: Slot, since: Since) -> Op {
    Op::Subscribe(SubscribeOp {
        chan,
        since,
        state: false,
        room: None,
        password: Password::None,
    })
}

#[test]
fn recovery_replays_exactly_what_was_missed() {
    let mut m = model();
    apply(&mut m, ANN1, sub(Slot::Chat));
    apply(&mut m, BOB, sub(Slot::Chat));
    apply(&mut m, BOB, bcast(Slot::Chat, false));
    apply(&mut m, ANN1, Op::Unsubscribe { chan: Slot::Chat });
    apply(&mut m, BOB, bcast(Slot::Chat, false));
    apply(&mut m, BOB, bcast(Slot::Chat, false));
    let p = apply(&mut m, ANN1, since(Slot::Chat, Since::Last));
    assert_eq!(types(&p, ANN1), ["subscribed", "message", "message"]);
    let s = &p.expect[&ANN1][0];
    assert_eq!(s.frame["recovered"], json!(true));
    assert_eq!(s.frame["position"]["seq"], json!(3));
    assert!(s.lenient.is_some());
    let seqs: Vec<Value> = p.expect[&ANN1][1..]
        .iter()
        .map(|e| e.frame["seq"].clone())
        .collect();
    assert_eq!(seqs, [json!(2), json!(3)]);
}

#[test]
fn recovery_from_a_future_seq_or_another_epoch_is_refused() {
    let mut m = model();
    apply(&mut m, ANN1, sub(Slot::Chat));
    apply(&mut m, BOB, sub(Slot::Chat));
    apply(&mut m, ANN1, Op::Unsubscribe { chan: Slot::Chat });
    for s in [Since::Ahead, Since::OtherEpoch] {
        let p = apply(&mut m, ANN1, since(Slot::Chat, s));
        assert_eq!(expected(&p, ANN1, "subscribed")["recovered"], json!(false));
        apply(&mut m, ANN1, Op::Unsubscribe { chan: Slot::Chat });
    }
}

#[test]
fn an_emptied_public_channel_is_not_reused() {
    let mut m = model();
    apply(&mut m, ANN1, sub(Slot::Chat));
    apply(&mut m, ANN1, Op::Unsubscribe { chan: Slot::Chat });
    let p = apply(&mut m, ANN1, sub(Slot::Chat));
    assert_eq!(
        expected(&p, ANN1, "subscribed")["channel"],
        json!("chat-{run}-g1")
    );
}

fn room(options: Option<RoomChoice>, password: Password) -> Op {
    Op::Subscribe(SubscribeOp {
        chan: Slot::Room,
        since: Since::None,
        state: false,
        room: options,
        password,
    })
}

const PROTECTED_PAIR: RoomChoice = RoomChoice {
    password: true,
    max_users: Some(2),
    metadata: Some(1),
    persist: false,
};

#[test]
fn room_checks_password_then_capacity() {
    let mut m = model();
    let p = apply(&mut m, ANN1, room(Some(PROTECTED_PAIR), Password::None));
    let info = &expected(&p, ANN1, "subscribed")["room"];
    assert_eq!(info["protected"], json!(true));
    assert_eq!(info["max_users"], json!(2));
    let p = apply(&mut m, BOB, room(None, Password::Wrong));
    assert_eq!(expected(&p, BOB, "error")["code"], json!("bad_password"));
    apply(&mut m, BOB, room(None, Password::Right));
    let p = apply(&mut m, CAT, room(None, Password::Right));
    assert_eq!(expected(&p, CAT, "error")["code"], json!("room_full"));
    let p = apply(&mut m, ANN2, room(None, Password::Right));
    assert_eq!(types(&p, ANN2), ["welcome", "subscribed"]);
}

#[test]
fn a_discarded_room_restarts_under_a_new_epoch_and_a_persistent_one_continues() {
    let mut m = model();
    apply(&mut m, ANN1, room(None, Password::None));
    apply(&mut m, ANN1, bcast(Slot::Room, false));
    apply(&mut m, ANN1, Op::Unsubscribe { chan: Slot::Room });
    let persistent = RoomChoice {
        password: false,
        max_users: None,
        metadata: None,
        persist: true,
    };
    let p = apply(&mut m, BOB, room(Some(persistent), Password::None));
    let s = expected(&p, BOB, "subscribed");
    assert_eq!(s["channel"], json!("presence-{run}-room"));
    assert_eq!(s["position"]["seq"], json!(0));
    let constraint = s["position"]["epoch"]["$match"]["$all"].to_string();
    assert!(constraint.contains("$ne"), "{constraint}");
    apply(&mut m, BOB, bcast(Slot::Room, false));
    apply(&mut m, BOB, Op::Unsubscribe { chan: Slot::Room });
    let p = apply(&mut m, CAT, room(None, Password::None));
    let s = expected(&p, CAT, "subscribed");
    assert_eq!(s["position"]["seq"], json!(1));
    assert_eq!(s["room"]["persist"], json!(true));
}

#[test]
fn cursor_positions_are_due_to_other_connections_only() {
    let mut m = model();
    for c in [ANN1, ANN2, BOB] {
        apply(&mut m, c, sub(Slot::Doc));
    }
    let op = Op::CursorMove {
        chan: Slot::Doc,
        x: 10,
        y: 20,
        burst: 3,
        data: false,
    };
    let p = apply(&mut m, ANN1, op);
    let due: Vec<ClientId> = p.cursor_due.iter().map(|d| d.client).collect();
    assert_eq!(due, [ANN2, BOB]);
    assert_eq!(p.cursor_due[0].entry["x"], json!(12));
    let own = &p.cursor_allowed[&(ANN1, "presence-{run}-doc".to_owned())];
    assert!(own.is_empty(), "{own:?}");
    let cat = apply(&mut m, CAT, sub(Slot::Doc));
    let snapshot = &expected(&cat, CAT, "subscribed")["cursors"]["$unordered"];
    assert_eq!(snapshot[0]["x"], json!(12));
}

#[test]
fn history_pages_the_newest_matching_items() {
    let mut m = model();
    apply(&mut m, BOB, sub(Slot::Chat));
    for _ in 0..4 {
        apply(&mut m, BOB, bcast(Slot::Chat, false));
    }
    let op = Op::History {
        chan: Slot::Chat,
        limit: Some(2),
        before: None,
        event: None,
    };
    let p = apply(&mut m, BOB, op);
    let page = expected(&p, BOB, "history:page");
    let seqs: Vec<Value> = page["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["seq"].clone())
        .collect();
    assert_eq!(seqs, [json!(3), json!(4)]);
    assert_eq!(page["has_more"], json!(true));
}
