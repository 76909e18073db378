//! Grading synthetic frames against the model's plans.

use std::time::{Duration, Instant};

use chorus_protocol::{Capability, Limits};
use serde_json::{json, Value};

use super::{Ctx, Failure, FailureKind, StepCheck};
use crate::fixture::CaseLevel;
use crate::property::model::{Model, Plan};
use crate::property::ops::{ClientId, Op, Password, Since, Slot, Step, SubscribeOp};

const ANN1: ClientId = ClientId(0);
const BOB: ClientId = ClientId(2);
const RUN: &str = "r1";

fn ctx() -> Ctx {
    let mut c = Ctx::default();
    c.scope.run = RUN.into();
    c
}

fn sub(chan: Slot, since: Since) -> Op {
    Op::Subscribe(SubscribeOp {
        chan,
        since,
        state: false,
        room: None,
        password: Password::None,
    })
}

fn apply(m: &mut Model, client: ClientId, op: Op) -> Plan {
    m.apply(&Step::new(client, op)).unwrap()
}

fn welcome(user: &str, profile: Value) -> Value {
    json!({"type": "welcome", "protocol": "chorus.v1", "connection_id": "c1",
        "user": {"id": user, "profile": profile}, "tenant": ""})
}

/// Feeds `frames` to `c` and finishes; the first failure.
fn grade(plan: &Plan, ctx: &mut Ctx, c: ClientId, frames: &[Value]) -> Result<(), Failure> {
    let mut check = StepCheck::new(plan, ctx).unwrap();
    let now = Instant::now();
    for f in frames {
        check.feed(c, f, now, ctx)?;
    }
    check.finish(c, 50, ctx)
}

fn subscribed(c: &mut Ctx, m: &mut Model, who: ClientId, channel: &str, epoch: &str) {
    let plan = apply(m, who, sub(Slot::Chat, Since::None));
    let profile = who.profile();
    let frames = [
        welcome(who.user(), profile),
        json!({"type": "subscribed", "id": plan_id(&plan), "channel": channel, "kind": "public",
            "position": {"epoch": epoch, "seq": 0}}),
    ];
    grade(&plan, c, who, &frames).unwrap();
}

fn plan_id(plan: &Plan) -> Value {
    plan.actions
        .iter()
        .find_map(|a| match a {
            crate::property::model::Action::Send(_, f) => f.get("id").cloned(),
            _ => None,
        })
        .unwrap_or(Value::Null)
}

fn two_subscribers() -> (Model, Ctx) {
    let mut m = Model::new(&Capability::ALL, Limits::default());
    let mut c = ctx();
    subscribed(&mut c, &mut m, ANN1, "chat-r1", "e-1");
    subscribed(&mut c, &mut m, BOB, "chat-r1", "e-1");
    (m, c)
}

fn broadcast(m: &mut Model) -> Plan {
    let op = Op::Broadcast {
        chan: Slot::Chat,
        event: 0,
        data: 7,
        echo: false,
    };
    apply(m, ANN1, op)
}

#[test]
fn the_expected_frames_pass_and_captures_carry_over() {
    let (mut m, mut c) = two_subscribers();
    let plan = broadcast(&mut m);
    let ack = json!({"type": "broadcast:ack", "id": plan_id(&plan), "channel": "chat-r1", "seq": 1, "ts": 1000});
    grade(&plan, &mut c, ANN1, &[ack]).unwrap();
    let msg = json!({"type": "message", "channel": "chat-r1", "event": "chat", "data": "text 7",
        "from": "ann", "ts": 1000, "seq": 1});
    grade(&plan, &mut c, BOB, std::slice::from_ref(&msg)).unwrap();
    let mut other_ts = msg;
    other_ts["ts"] = json!(999);
    let e = grade(&plan, &mut c, BOB, &[other_ts]).unwrap_err();
    assert_eq!(e.kind, FailureKind::Mismatch);
}

#[test]
fn a_sender_receiving_its_own_message_is_named() {
    let (mut m, mut c) = two_subscribers();
    let plan = broadcast(&mut m);
    let frames = [
        json!({"type": "broadcast:ack", "id": plan_id(&plan), "channel": "chat-r1", "seq": 1, "ts": 5}),
        json!({"type": "message", "channel": "chat-r1", "event": "chat", "data": "text 7", "from": "ann", "ts": 5, "seq": 1}),
    ];
    let e = grade(&plan, &mut c, ANN1, &frames).unwrap_err();
    assert_eq!(e.kind, FailureKind::Unexpected);
    assert!(e.requirements.contains(&"CHAN-26".to_owned()), "{e}");
}

#[test]
fn a_seq_gap_fails_the_ack() {
    let (mut m, mut c) = two_subscribers();
    let plan = broadcast(&mut m);
    let ack = json!({"type": "broadcast:ack", "id": plan_id(&plan), "channel": "chat-r1", "seq": 2, "ts": 5});
    let e = grade(&plan, &mut c, ANN1, &[ack]).unwrap_err();
    assert!(e.requirements.contains(&"CHAN-30".to_owned()), "{e}");
    assert!(e.message.contains("/seq"), "{e}");
}

#[test]
fn a_missing_frame_cites_its_requirements() {
    let (mut m, mut c) = two_subscribers();
    let plan = broadcast(&mut m);
    let e = grade(&plan, &mut c, BOB, &[]).unwrap_err();
    assert_eq!(e.kind, FailureKind::Missing);
    assert!(e.requirements.contains(&"CHAN-25".to_owned()), "{e}");
}

fn three_frames_two_channels() -> Plan {
    let m = Model::new(&Capability::ALL, Limits::default());
    let mut plan = m.quiet();
    plan.connected = vec![BOB];
    let e = |frame: Value| crate::property::model::Expected {
        frame,
        requirements: vec!["CHAN-31"],
        level: CaseLevel::Must,
        what: "a frame".into(),
        lenient: None,
    };
    plan.expect.insert(
        BOB,
        vec![
            e(json!({"type": "message", "channel": "a-{run}", "seq": 1})),
            e(json!({"type": "message", "channel": "a-{run}", "seq": 2})),
            e(json!({"type": "message", "channel": "b-{run}", "seq": 1})),
        ],
    );
    plan
}

fn msg(channel: &str, seq: u64) -> Value {
    json!({"type": "message", "channel": channel, "seq": seq})
}

#[test]
fn frames_of_other_channels_may_interleave() {
    let plan = three_frames_two_channels();
    let frames = [msg("b-r1", 1), msg("a-r1", 1), msg("a-r1", 2)];
    grade(&plan, &mut ctx(), BOB, &frames).unwrap();
}

#[test]
fn frames_of_one_channel_keep_their_order() {
    let plan = three_frames_two_channels();
    let frames = [msg("a-r1", 2), msg("a-r1", 1), msg("b-r1", 1)];
    let e = grade(&plan, &mut ctx(), BOB, &frames).unwrap_err();
    assert_eq!(e.kind, FailureKind::Mismatch);
    assert_eq!(e.requirements, ["CHAN-31"]);
}

#[test]
fn a_lenient_outcome_fails_at_its_own_level() {
    let (mut m, mut c) = two_subscribers();
    let plan = broadcast(&mut m);
    grade(&plan, &mut c, ANN1, &[json!({"type": "broadcast:ack", "id": plan_id(&plan), "channel": "chat-r1", "seq": 1, "ts": 5})]).unwrap();
    apply(&mut m, BOB, Op::Unsubscribe { chan: Slot::Chat });
    broadcast(&mut m);
    let plan = apply(&mut m, BOB, sub(Slot::Chat, Since::Last));
    let id = plan_id(&plan);
    let frame = json!({"type": "subscribed", "id": id, "channel": "chat-r1", "kind": "public",
        "position": {"epoch": "e-1", "seq": 2}, "recovered": false});
    let e = grade(&plan, &mut c, BOB, &[frame]).unwrap_err();
    assert_eq!(e.level, CaseLevel::Should);
    assert_eq!(e.requirements, ["HIST-18"]);
}

fn cursor_plan() -> (Model, Plan, Ctx) {
    let mut m = Model::new(&Capability::ALL, Limits::default());
    let c = ctx();
    for who in [ANN1, BOB] {
        apply(&mut m, who, sub(Slot::Doc, Since::None));
    }
    let op = Op::CursorMove {
        chan: Slot::Doc,
        x: 1,
        y: 2,
        burst: 4,
        data: false,
    };
    let plan = apply(&mut m, ANN1, op);
    (m, plan, c)
}

fn moved(x: u32) -> Value {
    json!({"type": "cursor:moved", "channel": "presence-r1-doc",
        "cursors": [{"user_id": "ann", "x": x, "y": 2, "ts": 1}]})
}

#[test]
fn the_last_cursor_position_is_due() {
    let (_m, plan, mut c) = cursor_plan();
    let mut check = StepCheck::new(&plan, &c).unwrap();
    let t = Instant::now();
    check.feed(BOB, &moved(2), t, &mut c).unwrap();
    assert!(!check.done(BOB));
    check
        .feed(BOB, &moved(4), t + Duration::from_millis(50), &mut c)
        .unwrap();
    assert!(check.done(BOB));
    check.finish(BOB, 50, &mut c).unwrap();
}

#[test]
fn uncoalesced_cursor_frames_break_curs_7() {
    let (_m, plan, mut c) = cursor_plan();
    let mut check = StepCheck::new(&plan, &c).unwrap();
    let t = Instant::now();
    for x in 1..=4 {
        check
            .feed(
                BOB,
                &moved(x),
                t + Duration::from_millis(u64::from(x)),
                &mut c,
            )
            .unwrap();
    }
    let e = check.finish(BOB, 50, &mut c).unwrap_err();
    assert_eq!(e.requirements, ["CURS-7"]);
}

#[test]
fn a_connection_never_gets_its_own_cursor() {
    let (_m, plan, mut c) = cursor_plan();
    let mut check = StepCheck::new(&plan, &c).unwrap();
    let e = check
        .feed(ANN1, &moved(4), Instant::now(), &mut c)
        .unwrap_err();
    assert!(e.requirements.contains(&"CURS-10".to_owned()), "{e}");
}
