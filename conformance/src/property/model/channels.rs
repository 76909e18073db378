//! Channels (spec: channels.md): subscribe, unsubscribe, broadcast, `seq` numbering and the
//! fan-out set.
//!
//! A public channel that loses its last subscriber may keep its numbering or restart it under
//! a new epoch (retention is the server's choice, HIST-18 is only a SHOULD). The model cannot
//! know which, so it never reuses such a channel: the slot moves to a fresh name
//! (`chat-{run}-g1`, …). Presence channels of a server with rooms are different: ROOM-17 and
//! ROOM-18 fix what happens, and the model follows them (see [`super::rooms`]).

use std::collections::BTreeSet;

use serde_json::{json, Value};

use super::cursors::Cursors;
use super::history::{self, Item, SinceRef};
use super::presence::{self, Members};
use super::rooms::{self, Room};
use super::state::SharedState;
use super::{error, Capture, Model, Plan};
use crate::property::ops::{event, value, ClientId, Since, Slot, SubscribeOp};
use chorus_protocol::Capability;

/// One channel as the model knows it.
#[derive(Debug, Clone)]
pub struct Channel {
    /// The slot.
    pub slot: Slot,
    /// Name template (with `{run}`).
    pub name: String,
    /// How many times the slot moved to a fresh name.
    pub generation: u32,
    /// The current epoch (captured from the first `subscribed`).
    pub epoch: Capture,
    /// Earlier epochs of this name: the current one must differ from each (HIST-3).
    pub earlier_epochs: Vec<String>,
    /// `seq` of the last message (CHAN-30).
    pub seq: u64,
    /// Subscribed connections.
    pub subscribers: BTreeSet<ClientId>,
    /// Retained stream items of the epoch.
    pub items: Vec<Item>,
    /// Presence members (presence channels).
    pub members: Members,
    /// The room, once created (presence channels of a server with rooms).
    pub room: Option<Room>,
    /// Shared state of the epoch.
    pub state: SharedState,
    /// Cursors of members.
    pub cursors: Cursors,
}

impl Channel {
    /// A channel nobody has used, with a new epoch.
    pub(crate) fn new(m: &mut Model, slot: Slot, generation: u32, earlier: Vec<String>) -> Self {
        Channel {
            slot,
            name: slot.channel(generation),
            generation,
            epoch: m.capture(&format!("ep_{}", slot.short())),
            earlier_epochs: earlier,
            seq: 0,
            subscribers: BTreeSet::new(),
            items: Vec::new(),
            members: Members::default(),
            room: None,
            state: SharedState::default(),
            cursors: Cursors::default(),
        }
    }

    /// The epoch matcher: captured on first sight as a non-empty string of at most 64
    /// characters (HIST-1) unlike every earlier epoch of the name (HIST-3, ROOM-17).
    pub fn epoch_matcher(&mut self) -> Value {
        let mut all = vec![json!("$nonempty"), json!({"$len": {"$lte": 64}})];
        for e in &self.earlier_epochs {
            all.push(json!({"$ne": format!("${{{e}}}")}));
        }
        self.epoch.matcher(json!({"$all": all}))
    }

    /// `{epoch, seq}` as the channel is now.
    pub fn position(&mut self) -> Value {
        json!({"epoch": self.epoch_matcher(), "seq": self.seq})
    }

    /// The kind reported in `subscribed` (CHAN-35).
    pub fn kind(&self) -> &'static str {
        if self.slot.is_presence() {
            "presence"
        } else {
            "public"
        }
    }
}

/// `subscribe` (CHAN-8, CHAN-9, CHAN-12; presence, rooms, state, cursors and recovery parts
/// from their areas).
pub(crate) fn subscribe(m: &mut Model, plan: &mut Plan, c: ClientId, op: &SubscribeOp) {
    let id = m.next_id();
    let slot = op.chan;
    let since = since_ref(m, c, slot, op.since);
    let name = m.chan(slot).name.clone();
    let frame = subscribe_frame(m, id, &name, op, since.as_ref());
    plan.send(c, frame);
    if m.is_subscribed(c, slot) {
        let e = error(Some(id), &["already_subscribed"], &name);
        plan.expect(c, e, &["CHAN-12", "ERR-2"], "already_subscribed error");
        return;
    }
    if slot.is_presence() && m.has(Capability::Rooms) {
        let max = m.limits.max_room_users;
        if let Err((code, reqs)) = rooms::admit(m.chan(slot), c, op.password, max) {
            plan.expect(
                c,
                error(Some(id), &[code], &name),
                reqs,
                format!("{code} error"),
            );
            return;
        }
    }
    let reqs = snapshot_requirements(m, slot, op);
    if slot.is_presence() && m.has(Capability::Rooms) && !rooms::exists(m.chan(slot)) {
        rooms::create(m, slot, op.room);
    }
    let joined = join(m, c, slot);
    let (recovered, replay) = match &since {
        Some(s) => {
            let (ok, items) = history::recover(m.chan(slot), s);
            (Some(ok), items)
        }
        None => (None, Vec::new()),
    };
    let reply = subscribed_frame(m, c, slot, id, op.state, recovered);
    let e = plan.expect(c, reply.clone(), &reqs, "subscribed");
    match recovered {
        Some(true) => {
            e.requirements.push("HIST-7");
            let mut weaker = reply;
            weaker["recovered"] = json!(false);
            e.lenient = Some(Box::new(history::not_retained(weaker)));
        }
        Some(false) => e.requirements.push("HIST-8"),
        None => e.requirements.push("HIST-9"),
    }
    for item in &replay {
        let f = item.frame(&name);
        plan.expect(
            c,
            f,
            &["HIST-7", "HIST-6"],
            format!("replay of seq {}", item.seq),
        );
    }
    let seq = m.chan(slot).seq;
    see(m, c, slot, seq);
    if slot.is_presence() {
        presence::announce_join(m, plan, c, slot, joined);
    }
}

/// What a successful `subscribe`'s reply grades besides CHAN-8 and CHAN-9: the kind, the
/// position, and the snapshots and room settings of the channel's areas.
fn snapshot_requirements(m: &Model, slot: Slot, op: &SubscribeOp) -> Vec<&'static str> {
    let ch = m.chan(slot);
    let mut reqs = vec!["CHAN-8", "CHAN-9", "CHAN-35", "HIST-1"];
    let new_epoch = !ch.epoch.revealed() && !ch.earlier_epochs.is_empty();
    if new_epoch {
        reqs.push("HIST-3");
    }
    if m.has(Capability::State) {
        reqs.push(if op.state { "STATE-22" } else { "STATE-23" });
    }
    if !slot.is_presence() {
        return reqs;
    }
    reqs.push("PRES-5");
    if m.has(Capability::Cursors) {
        reqs.push("CURS-14");
    }
    if m.has(Capability::Rooms) {
        reqs.extend(["ROOM-5", "ROOM-6"]);
        match &ch.room {
            None if new_epoch => reqs.extend(["ROOM-3", "ROOM-17"]),
            None => reqs.push("ROOM-3"),
            Some(r) if ch.members.is_empty() && r.persist => reqs.push("ROOM-18"),
            Some(_) if op.room.is_some() => reqs.push("ROOM-4"),
            Some(_) => {}
        }
    }
    reqs
}

fn subscribe_frame(
    m: &Model,
    id: u64,
    name: &str,
    op: &SubscribeOp,
    since: Option<&SinceRef>,
) -> Value {
    let mut frame = json!({"type": "subscribe", "id": id, "channel": name});
    if let Some(s) = since {
        frame["since"] = s.frame();
    }
    if op.state && m.has(Capability::State) {
        frame["state"] = json!(true);
    }
    if op.chan.is_presence() && m.has(Capability::Rooms) {
        if let Some(r) = &op.room {
            frame["room"] = rooms::options_frame(r);
        }
        if let Some(p) = rooms::password_value(op.password) {
            frame["password"] = json!(p);
        }
    }
    frame
}

/// Adds the lease and the subscription; returns whether a new member was created.
fn join(m: &mut Model, c: ClientId, slot: Slot) -> bool {
    m.conn_mut(c).subs.insert(slot);
    let ch = m.chan_mut(slot);
    ch.subscribers.insert(c);
    if slot.is_presence() {
        let created = !ch.members.has(c.user());
        if created {
            let capture = m.capture(&format!("ja_{}", c.user()));
            m.chan_mut(slot).members.create(c, capture);
        }
        m.chan_mut(slot).members.add_lease(c);
        created
    } else {
        false
    }
}

fn subscribed_frame(
    m: &mut Model,
    c: ClientId,
    slot: Slot,
    id: u64,
    state: bool,
    recovered: Option<bool>,
) -> Value {
    let want_state = state && m.has(Capability::State);
    let rooms_cap = m.has(Capability::Rooms);
    let cursors_cap = m.has(Capability::Cursors);
    let max_room_users = m.limits.max_room_users;
    let ch = m.chan_mut(slot);
    let first_sight = !ch.epoch.revealed();
    let mut f = json!({
        "type": "subscribed",
        "id": id,
        "channel": ch.name,
        "kind": ch.kind(),
        "position": ch.position(),
        "recovered": recovered.map_or(json!("$absent"), |r| json!(r)),
        "state": "$absent",
    });
    if want_state {
        // A matcher cannot refer to a capture of the same frame: when this `subscribed`
        // reveals the epoch, later state frames check STATE-2 against it instead.
        let epoch = if first_sight {
            json!("$nonempty")
        } else {
            ch.epoch.reference()
        };
        f["state"] = ch.state.snapshot(epoch);
    }
    if slot.is_presence() {
        f["presence"] = ch.members.snapshot();
        if rooms_cap {
            if let Some(room) = ch.room.as_mut() {
                f["room"] = room.info(max_room_users);
            }
        }
        if cursors_cap {
            f["cursors"] = ch.cursors.snapshot(&ch.members);
        }
    }
    let _ = c;
    f
}

/// `unsubscribe` (CHAN-15, CHAN-16).
pub(crate) fn unsubscribe(m: &mut Model, plan: &mut Plan, c: ClientId, slot: Slot) {
    let id = m.next_id();
    let name = m.chan(slot).name.clone();
    let frame = json!({"type": "unsubscribe", "id": id, "channel": name});
    plan.send(c, frame);
    if !m.is_subscribed(c, slot) {
        let e = error(Some(id), &["not_subscribed"], &name);
        plan.expect(c, e, &["CHAN-16", "ERR-2"], "not_subscribed error");
        return;
    }
    let reply = json!({"type": "unsubscribed", "id": id, "channel": name, "reason": "$absent"});
    plan.expect(c, reply, &["CHAN-15"], "unsubscribed");
    leave(m, plan, c, slot);
}

/// Removes `c` from the channel (unsubscribe or graceful close): releases its lease and
/// empties the channel if it was the last subscriber.
pub(crate) fn leave(m: &mut Model, plan: &mut Plan, c: ClientId, slot: Slot) {
    m.conn_mut(c).subs.remove(&slot);
    m.chan_mut(slot).subscribers.remove(&c);
    if slot.is_presence() {
        presence::release(m, plan, c, slot);
    }
    if m.chan(slot).subscribers.is_empty() {
        emptied(m, slot);
    }
}

/// The last subscriber left: a room follows ROOM-17/ROOM-18; any other channel's slot
/// moves to a fresh name (see the module docs).
fn emptied(m: &mut Model, slot: Slot) {
    if slot.is_presence() && m.has(Capability::Rooms) {
        rooms::emptied(m, slot);
        return;
    }
    let generation = m.chan(slot).generation + 1;
    let fresh = Channel::new(m, slot, generation, Vec::new());
    m.chans.insert(slot, fresh);
}

/// `broadcast` (CHAN-20, CHAN-24 to CHAN-31).
pub(crate) fn broadcast(
    m: &mut Model,
    plan: &mut Plan,
    c: ClientId,
    slot: Slot,
    ev: u8,
    data: u8,
    echo: bool,
) {
    let id = m.next_id();
    let name = m.chan(slot).name.clone();
    let mut frame = json!({"type": "broadcast", "id": id, "channel": name,
        "event": event(ev), "data": value(data)});
    if echo {
        frame["echo"] = json!(true);
    }
    plan.send(c, frame);
    if !m.is_subscribed(c, slot) {
        let e = error(Some(id), &["not_subscribed"], &name);
        plan.expect(c, e, &["CHAN-20", "ERR-2"], "not_subscribed error");
        return;
    }
    let mut ts = m.capture("ts");
    let ch = m.chan_mut(slot);
    ch.seq += 1;
    let seq = ch.seq;
    let ack = json!({"type": "broadcast:ack", "id": id, "channel": name, "seq": seq,
        "ts": ts.matcher(json!("$uint"))});
    plan.expect(
        c,
        ack,
        &["CHAN-24", "CHAN-30"],
        format!("broadcast:ack seq {seq}"),
    );
    let item = Item {
        seq,
        event: event(ev),
        data: value(data),
        from: c.user(),
        ts: ts.name.clone(),
    };
    let message = item.frame(&name);
    ch.items.push(item);
    let others: Vec<ClientId> = ch.subscribers.iter().copied().filter(|s| *s != c).collect();
    if echo {
        plan.expect(
            c,
            message.clone(),
            &["CHAN-27"],
            format!("echo of seq {seq}"),
        );
    } else {
        let own = json!({"type": "message", "channel": name});
        plan.forbid(
            c,
            own,
            &["CHAN-26"],
            "the sender's own message without echo",
        );
    }
    for o in others {
        let reqs = ["CHAN-25", "CHAN-28", "CHAN-29", "CHAN-30", "CHAN-31"];
        plan.expect(o, message.clone(), &reqs, format!("message seq {seq}"));
        see(m, o, slot, seq);
    }
    see(m, c, slot, seq);
}

/// Records that `c` saw position `seq` of the channel's current epoch.
pub(crate) fn see(m: &mut Model, c: ClientId, slot: Slot, seq: u64) {
    let ch = m.chan(slot);
    let (name, epoch) = (ch.name.clone(), ch.epoch.name.clone());
    m.conn_mut(c).seen.insert(name, (epoch, seq));
}

/// The position a `subscribe` resumes from, when the client has one to offer and the model
/// can predict the outcome (HIST-10 lets a server refuse gaps above `history_limit`).
fn since_ref(m: &Model, c: ClientId, slot: Slot, since: Since) -> Option<SinceRef> {
    if since == Since::None || !m.has(Capability::Recovery) {
        return None;
    }
    let ch = m.chan(slot);
    if since == Since::OtherEpoch {
        return Some(SinceRef::bogus());
    }
    let (epoch, last) = m.conn(c).seen.get(&ch.name)?.clone();
    let seq = match since {
        Since::Last => last,
        Since::Zero => 0,
        _ => ch.seq + 5,
    };
    let same_epoch = epoch == ch.epoch.name;
    let limit = u64::from(m.limits.history_limit);
    if same_epoch && seq <= ch.seq && ch.seq - seq > limit {
        return None;
    }
    Some(SinceRef::known(epoch, seq))
}
