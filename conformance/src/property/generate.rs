//! Strategies for generated sequences: each property draws its operations from a few
//! channel slots with weights that make its area's interesting interleavings likely within
//! a couple of dozen steps (two tabs of one user, leave and rejoin, stale writes, bursts).
//! Only announced capabilities are exercised.

use std::collections::BTreeSet;

use chorus_protocol::Capability;
use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;
use proptest::strategy::{BoxedStrategy, Union};

use super::catalog::Property;
use super::ops::{
    Cas, ClientId, Op, Password, RoomChoice, Since, Slot, StatusChoice, Step, SubscribeOp, Write,
    CLIENT_COUNT,
};

/// What a strategy may use.
#[derive(Debug, Clone)]
pub struct Scope {
    caps: BTreeSet<Capability>,
}

impl Scope {
    /// The scope of a server announcing `caps`.
    pub fn new(caps: &[Capability]) -> Self {
        Scope {
            caps: caps.iter().copied().collect(),
        }
    }

    fn has(&self, c: Capability) -> bool {
        self.caps.contains(&c)
    }

    fn presence(&self) -> bool {
        self.has(Capability::Presence)
    }
}

/// Sequences of 1 to `max_steps` steps for `property`.
pub fn steps(property: Property, scope: &Scope, max_steps: usize) -> BoxedStrategy<Vec<Step>> {
    let clients = proptest::sample::select(actors(property));
    let step = (clients, op(property, scope), prop::bool::weighted(0.6))
        .prop_map(|(client, op, join)| Step { client, op, join });
    let generated = vec(step, 1..=max_steps.max(1));
    match keeper(property) {
        Some(first) => generated
            .prop_map(move |mut v| {
                v.insert(0, first.clone());
                v
            })
            .boxed(),
        None => generated.boxed(),
    }
}

/// A first step by a client that never acts again: Cat stays subscribed to the main
/// channel, so it never empties (and moves to a fresh name) between a leave and a rejoin
/// or between two writes, so positions and versions grow; Cat's copy of every frame is
/// graded too.
fn keeper(property: Property) -> Option<Step> {
    let keeps = matches!(
        property,
        Property::Channels | Property::History | Property::State
    );
    keeps.then_some(Step {
        client: ClientId(3),
        join: false,
        op: Op::Subscribe(SubscribeOp {
            chan: Slot::Chat,
            since: Since::None,
            state: false,
            room: None,
            password: Password::None,
        }),
    })
}

/// Who acts: fewer clients make their operations meet more often (a leave, a broadcast by
/// someone else, a rejoin); presence and rooms need two users besides the two tabs.
fn actors(property: Property) -> Vec<ClientId> {
    match property {
        Property::History => vec![ClientId(0), ClientId(2)],
        Property::Channels | Property::State | Property::Cursors => {
            vec![ClientId(0), ClientId(1), ClientId(2)]
        }
        Property::Presence | Property::Rooms | Property::Mixed => {
            (0..CLIENT_COUNT).map(ClientId).collect()
        }
    }
}

type Weighted = Vec<(u32, BoxedStrategy<Op>)>;

fn op(property: Property, s: &Scope) -> BoxedStrategy<Op> {
    let mut w: Weighted = vec![
        (1, Just(Op::Connect).boxed()),
        (2, Just(Op::Disconnect).boxed()),
    ];
    match property {
        // Mostly one channel, so that subscriptions meet; sometimes a second one.
        Property::Channels => channels(&mut w, s, &[Slot::Chat, Slot::Chat, Slot::News]),
        Property::History => history(&mut w, s, &[Slot::Chat]),
        Property::Presence => presence(&mut w, s, &[Slot::Doc], &[Slot::Doc, Slot::Chat]),
        Property::Rooms => rooms(&mut w, s),
        Property::State => state(&mut w, s, &[Slot::Chat, Slot::Chat, Slot::Doc]),
        Property::Cursors => cursors(&mut w, s, &[Slot::Doc]),
        Property::Mixed => mixed(&mut w, s),
    }
    Union::new_weighted(w).boxed()
}

fn usable(s: &Scope, slots: &[Slot]) -> Vec<Slot> {
    slots
        .iter()
        .copied()
        .filter(|x| !x.is_presence() || s.presence())
        .collect()
}

fn slot(slots: &[Slot]) -> BoxedStrategy<Slot> {
    let slots = if slots.is_empty() {
        vec![Slot::Chat]
    } else {
        slots.to_vec()
    };
    proptest::sample::select(slots).boxed()
}

fn plain_subscribe(slots: &[Slot]) -> BoxedStrategy<Op> {
    slot(slots)
        .prop_map(|chan| {
            Op::Subscribe(SubscribeOp {
                chan,
                since: Since::None,
                state: false,
                room: None,
                password: Password::None,
            })
        })
        .boxed()
}

fn unsubscribe(slots: &[Slot]) -> BoxedStrategy<Op> {
    slot(slots)
        .prop_map(|chan| Op::Unsubscribe { chan })
        .boxed()
}

fn broadcast(slots: &[Slot]) -> BoxedStrategy<Op> {
    (slot(slots), 0..3u8, any::<u8>(), prop::bool::weighted(0.25))
        .prop_map(|(chan, event, data, echo)| Op::Broadcast {
            chan,
            event,
            data,
            echo,
        })
        .boxed()
}

fn channels(w: &mut Weighted, s: &Scope, slots: &[Slot]) {
    let slots = usable(s, slots);
    w.push((5, plain_subscribe(&slots)));
    w.push((2, unsubscribe(&slots)));
    w.push((7, broadcast(&slots)));
}

fn since() -> BoxedStrategy<Since> {
    prop_oneof![
        1 => Just(Since::None),
        5 => Just(Since::Last),
        2 => Just(Since::Zero),
        1 => Just(Since::Ahead),
        1 => Just(Since::OtherEpoch),
    ]
    .boxed()
}

fn history(w: &mut Weighted, s: &Scope, slots: &[Slot]) {
    let slots = usable(s, slots);
    w.push((3, unsubscribe(&slots)));
    w.push((6, broadcast(&slots)));
    if s.has(Capability::Recovery) {
        let sub = (slot(&slots), since()).prop_map(|(chan, since)| {
            Op::Subscribe(SubscribeOp {
                chan,
                since,
                state: false,
                room: None,
                password: Password::None,
            })
        });
        w.push((5, sub.boxed()));
    } else {
        w.push((4, plain_subscribe(&slots)));
    }
    if s.has(Capability::History) {
        let h = (
            slot(&slots),
            option::weighted(0.4, 1..=5u8),
            option::weighted(0.3, any::<u8>()),
            option::weighted(0.3, 0..3u8),
        )
            .prop_map(|(chan, limit, before, event)| Op::History {
                chan,
                limit,
                before,
                event,
            });
        w.push((2, h.boxed()));
    }
}

fn status() -> BoxedStrategy<StatusChoice> {
    prop_oneof![
        3 => Just(StatusChoice::Away),
        2 => Just(StatusChoice::Online),
        2 => Just(StatusChoice::Busy),
        1 => Just(StatusChoice::Offline),
    ]
    .boxed()
}

fn presence(w: &mut Weighted, s: &Scope, subscribable: &[Slot], targets: &[Slot]) {
    let subscribable = usable(s, subscribable);
    w.push((5, plain_subscribe(&subscribable)));
    w.push((3, unsubscribe(&subscribable)));
    w.push((1, broadcast(&subscribable)));
    let update = (slot(targets), option::of(status()), option::of(0..4u8))
        .prop_map(|(chan, status, data)| Op::PresenceUpdate { chan, status, data });
    w.push((4, update.boxed()));
    let list = slot(targets).prop_map(|chan| Op::PresenceList { chan });
    w.push((2, list.boxed()));
}

fn room_choice() -> BoxedStrategy<RoomChoice> {
    (
        prop::bool::weighted(0.4),
        option::of(1..=2u8),
        option::of(0..3u8),
        prop::bool::weighted(0.3),
    )
        .prop_map(|(password, max_users, metadata, persist)| RoomChoice {
            password,
            max_users,
            metadata,
            persist,
        })
        .boxed()
}

fn password() -> BoxedStrategy<Password> {
    prop_oneof![2 => Just(Password::None), 3 => Just(Password::Right), 1 => Just(Password::Wrong)]
        .boxed()
}

fn rooms(w: &mut Weighted, s: &Scope) {
    let slots = [Slot::Room];
    let sub = (option::weighted(0.7, room_choice()), password()).prop_map(|(room, password)| {
        Op::Subscribe(SubscribeOp {
            chan: Slot::Room,
            since: Since::None,
            state: false,
            room,
            password,
        })
    });
    w.push((6, sub.boxed()));
    w.push((3, unsubscribe(&slots)));
    w.push((1, broadcast(&slots)));
    w.push((1, Just(Op::PresenceList { chan: Slot::Room }).boxed()));
    if s.has(Capability::State) {
        w.push((1, state_write(&slots)));
    }
}

fn write() -> BoxedStrategy<Write> {
    prop_oneof![
        3 => (0..3u8, any::<u8>()).prop_map(|(key, value)| Write::Update { key, value }),
        2 => vec((0..3u8, any::<u8>()), 0..3).prop_map(|entries| Write::Merge { entries }),
        1 => (0..3u8).prop_map(|key| Write::Delete { key }),
    ]
    .boxed()
}

fn cas() -> BoxedStrategy<Cas> {
    prop_oneof![2 => Just(Cas::None), 2 => Just(Cas::Current), 2 => Just(Cas::Stale)].boxed()
}

fn state_write(slots: &[Slot]) -> BoxedStrategy<Op> {
    (slot(slots), write(), cas())
        .prop_map(|(chan, write, cas)| Op::StateWrite { chan, write, cas })
        .boxed()
}

fn state(w: &mut Weighted, s: &Scope, slots: &[Slot]) {
    let slots = usable(s, slots);
    let sub = (slot(&slots), prop::bool::weighted(0.5)).prop_map(|(chan, state)| {
        Op::Subscribe(SubscribeOp {
            chan,
            since: Since::None,
            state,
            room: None,
            password: Password::None,
        })
    });
    w.push((4, sub.boxed()));
    w.push((1, unsubscribe(&slots)));
    w.push((7, state_write(&slots)));
    let sync = slot(&slots).prop_map(|chan| Op::StateSync { chan });
    w.push((2, sync.boxed()));
}

fn cursor_move(slots: &[Slot]) -> BoxedStrategy<Op> {
    let burst = prop_oneof![3 => Just(1u8), 2 => Just(6u8)];
    (
        slot(slots),
        0..500u16,
        0..500u16,
        burst,
        prop::bool::weighted(0.3),
    )
        .prop_map(|(chan, x, y, burst, data)| Op::CursorMove {
            chan,
            x,
            y,
            burst,
            data,
        })
        .boxed()
}

fn cursors(w: &mut Weighted, s: &Scope, slots: &[Slot]) {
    let slots = usable(s, slots);
    w.push((4, plain_subscribe(&slots)));
    w.push((2, unsubscribe(&slots)));
    w.push((5, cursor_move(&slots)));
    // Now and then on a channel that is not a presence channel (CURS-3).
    w.push((1, cursor_move(&[Slot::Chat])));
    let update = slot(&slots).prop_map(|chan| Op::PresenceUpdate {
        chan,
        status: Some(StatusChoice::Away),
        data: None,
    });
    w.push((1, update.boxed()));
}

fn mixed(w: &mut Weighted, s: &Scope) {
    channels(w, s, &Slot::ALL);
    if s.has(Capability::History) || s.has(Capability::Recovery) {
        history(w, s, &[Slot::Chat, Slot::Doc]);
    }
    if s.presence() {
        presence(w, s, &[Slot::Doc, Slot::Room], &[Slot::Doc, Slot::Chat]);
        if s.has(Capability::Rooms) {
            rooms(w, s);
        }
        if s.has(Capability::Cursors) {
            w.push((3, cursor_move(&[Slot::Doc, Slot::Room, Slot::Chat])));
        }
    }
    if s.has(Capability::State) {
        state(w, s, &Slot::ALL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;

    fn sample(p: Property, caps: &[Capability]) -> Vec<Vec<Step>> {
        let mut runner = TestRunner::deterministic();
        let s = steps(p, &Scope::new(caps), 20);
        (0..50)
            .map(|_| s.new_tree(&mut runner).unwrap().current())
            .collect()
    }

    #[test]
    fn unannounced_areas_are_not_exercised() {
        for seq in sample(Property::Mixed, &[]) {
            for st in seq {
                let presence_slot = match &st.op {
                    Op::Subscribe(s) => s.chan.is_presence(),
                    Op::CursorMove { .. } | Op::StateWrite { .. } | Op::History { .. } => true,
                    _ => false,
                };
                assert!(!presence_slot, "{st}");
            }
        }
    }

    #[test]
    fn history_property_asks_for_recovery_when_announced() {
        let caps = [Capability::History, Capability::Recovery];
        let found = sample(Property::History, &caps)
            .into_iter()
            .flatten()
            .any(|s| {
                matches!(
                    s.op,
                    Op::Subscribe(SubscribeOp {
                        since: Since::Last,
                        ..
                    })
                )
            });
        assert!(found);
    }

    #[test]
    fn sequences_respect_the_length_bound() {
        for seq in sample(Property::Presence, &[Capability::Presence]) {
            assert!((1..=20).contains(&seq.len()));
        }
    }

    #[test]
    fn the_keeper_subscribes_first_and_never_acts_again() {
        for seq in sample(Property::History, &[Capability::History]) {
            assert_eq!(seq[0].client, ClientId(3), "{}", seq[0]);
            assert!(seq[1..].iter().all(|s| s.client != ClientId(3)));
            assert!((2..=21).contains(&seq.len()));
        }
    }
}
