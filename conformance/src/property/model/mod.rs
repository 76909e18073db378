//! An executable reading of the spec: given the operations applied so far, what each client
//! must receive for the next one, and what it must not. Written from `spec/*.md`, one module
//! per area, never from a server's code.
//!
//! The model is deterministic and knows nothing of time: values a server chooses (epochs,
//! timestamps, `joined_at`, `created_at`) are captured the first time they appear and
//! referred to afterwards (`${name}`), so one expectation can say "the same epoch as the
//! `subscribed` reply" or "the `ts` of the `broadcast:ack`". Where the spec leaves a server a
//! choice the model cannot predict, it avoids the situation rather than guess: a public
//! channel that empties is never reused (its slot moves to a fresh name, see
//! [`channels`]), recovery is only asked for within `history_limit` items (HIST-10).

pub mod channels;
pub mod cursors;
pub mod history;
pub mod presence;
pub mod rooms;
pub mod state;

use std::collections::{BTreeMap, BTreeSet};

use chorus_protocol::{Capability, Limits};
use serde_json::{json, Value};

use crate::fixture::CaseLevel;
use crate::property::ops::{ClientId, Op, Slot, Step, SubscribeOp};

use channels::Channel;

/// A frame one client must receive during a step.
#[derive(Debug, Clone, PartialEq)]
pub struct Expected {
    /// Matcher tree (FIXTURES.md "Matchers") with `{run}` and `${capture}` placeholders.
    pub frame: Value,
    /// Requirements a mismatch breaks.
    pub requirements: Vec<&'static str>,
    /// Level of those requirements.
    pub level: CaseLevel,
    /// What the frame is, for failure messages.
    pub what: String,
    /// A weaker outcome the spec allows only at a lower level: a frame matching it instead
    /// fails with its level and requirements (e.g. `recovered: false` where retention per
    /// HIST-18 would have allowed recovery).
    pub lenient: Option<Box<Expected>>,
}

/// A frame one client must not receive during a step (a sharper message than "unexpected").
#[derive(Debug, Clone, PartialEq)]
pub struct Forbidden {
    /// The client.
    pub client: ClientId,
    /// Matcher of the forbidden frame.
    pub frame: Value,
    /// Requirements such a frame breaks.
    pub requirements: Vec<&'static str>,
    /// What it would mean.
    pub what: String,
    /// A blanket rule (anything about a channel the client is not subscribed to) rather
    /// than one about this step: it explains unexpected frames, not mismatched ones.
    pub catch_all: bool,
}

/// A cursor position a client must see in some `cursor:moved` of the step (CURS-9).
#[derive(Debug, Clone, PartialEq)]
pub struct CursorDue {
    /// The recipient.
    pub client: ClientId,
    /// The channel template.
    pub channel: String,
    /// Matcher of the cursor entry.
    pub entry: Value,
    /// How many updates produced it back to back (coalescing is graded from 3 on, CURS-7).
    pub burst: u8,
}

/// What the harness does for a step, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Open the client's connection; its `welcome` is among the expectations.
    Connect(ClientId),
    /// Send a frame (a template: `{run}`, `${capture}`).
    Send(ClientId, Value),
    /// Close the connection with status 1000 (a graceful release, PRES-33).
    Close(ClientId),
}

/// Everything the model says about one step.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// The acting client.
    pub actor: ClientId,
    /// What to do.
    pub actions: Vec<Action>,
    /// Frames each client must receive, in order within one channel.
    pub expect: BTreeMap<ClientId, Vec<Expected>>,
    /// Frames that must not arrive.
    pub forbidden: Vec<Forbidden>,
    /// Cursor positions that must arrive.
    pub cursor_due: Vec<CursorDue>,
    /// Cursor entries a client may receive per channel (template): anything else breaks
    /// CURS-8, CURS-10 or CURS-13.
    pub cursor_allowed: BTreeMap<(ClientId, String), Vec<Value>>,
    /// Clients connected after the step.
    pub connected: Vec<ClientId>,
}

impl Plan {
    fn new(actor: ClientId) -> Plan {
        Plan {
            actor,
            actions: Vec::new(),
            expect: BTreeMap::new(),
            forbidden: Vec::new(),
            cursor_due: Vec::new(),
            cursor_allowed: BTreeMap::new(),
            connected: Vec::new(),
        }
    }

    fn send(&mut self, client: ClientId, frame: Value) {
        self.actions.push(Action::Send(client, frame));
    }

    /// Adds an expectation at MUST level.
    fn expect(
        &mut self,
        client: ClientId,
        frame: Value,
        requirements: &[&'static str],
        what: impl Into<String>,
    ) -> &mut Expected {
        let list = self.expect.entry(client).or_default();
        list.push(Expected {
            frame,
            requirements: requirements.to_vec(),
            level: CaseLevel::Must,
            what: what.into(),
            lenient: None,
        });
        let last = list.len() - 1;
        &mut list[last]
    }

    fn forbid(
        &mut self,
        client: ClientId,
        frame: Value,
        requirements: &[&'static str],
        what: impl Into<String>,
    ) {
        self.forbidden.push(Forbidden {
            client,
            frame,
            requirements: requirements.to_vec(),
            what: what.into(),
            catch_all: false,
        });
    }

    /// Every requirement this plan can cite.
    pub fn requirements(&self) -> BTreeSet<&'static str> {
        let mut out = BTreeSet::new();
        for e in self.expect.values().flatten() {
            out.extend(e.requirements.iter().copied());
            if let Some(l) = &e.lenient {
                out.extend(l.requirements.iter().copied());
            }
        }
        for f in &self.forbidden {
            out.extend(f.requirements.iter().copied());
        }
        out
    }
}

/// A server-chosen value: captured where it first appears, referred to afterwards.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Capture {
    /// Capture name (unique within a case).
    pub name: String,
    revealed: bool,
}

impl Capture {
    fn new(name: String) -> Self {
        Capture {
            name,
            revealed: false,
        }
    }

    /// The matcher for this value: a capture constrained by `first` the first time, an
    /// exact reference afterwards.
    pub fn matcher(&mut self, first: Value) -> Value {
        if self.revealed {
            self.reference()
        } else {
            self.revealed = true;
            json!({"$capture": self.name, "$match": first})
        }
    }

    /// `"${name}"` (only valid once revealed).
    pub fn reference(&self) -> Value {
        Value::String(format!("${{{}}}", self.name))
    }

    /// Whether an expectation already captured it.
    pub fn revealed(&self) -> bool {
        self.revealed
    }
}

/// One client's view: whether it is connected, where it is subscribed, and the last stream
/// position it saw per channel name (what a client library would resume from).
#[derive(Debug, Clone, Default)]
pub(crate) struct Conn {
    pub connected: bool,
    pub subs: BTreeSet<Slot>,
    /// Channel template -> (epoch capture name, seq).
    pub seen: BTreeMap<String, (String, u64)>,
}

/// The model of one server as far as one case's clients can see it.
#[derive(Debug, Clone)]
pub struct Model {
    pub(crate) caps: BTreeSet<Capability>,
    pub(crate) limits: Limits,
    pub(crate) conns: BTreeMap<ClientId, Conn>,
    pub(crate) chans: BTreeMap<Slot, Channel>,
    next_id: u64,
    next_capture: u64,
}

impl Model {
    /// A fresh server state for a server announcing these capabilities and limits.
    pub fn new(caps: &[Capability], limits: Limits) -> Model {
        let mut m = Model {
            caps: caps.iter().copied().collect(),
            limits,
            conns: ClientId::all().map(|c| (c, Conn::default())).collect(),
            chans: BTreeMap::new(),
            next_id: 0,
            next_capture: 0,
        };
        for slot in Slot::ALL {
            let ch = Channel::new(&mut m, slot, 0, Vec::new());
            m.chans.insert(slot, ch);
        }
        m
    }

    /// Whether the server announced `cap`.
    pub fn has(&self, cap: Capability) -> bool {
        self.caps.contains(&cap)
    }

    /// The plan for the next step, or `None` when the step does nothing (connecting a
    /// connected client, closing a closed one).
    pub fn apply(&mut self, step: &Step) -> Option<Plan> {
        let c = step.client;
        let connected = self.conn(c).connected;
        let mut plan = Plan::new(c);
        let before = cursors::allowances(self);
        let names_before: Vec<String> = self.chans.values().map(|ch| ch.name.clone()).collect();
        match &step.op {
            Op::Connect if connected => return None,
            Op::Disconnect if !connected => return None,
            Op::Connect => self.connect(&mut plan, c),
            Op::Disconnect => self.disconnect(&mut plan, c),
            op => {
                if !connected {
                    self.connect(&mut plan, c);
                }
                if let (true, Some(slot)) = (step.join, op.target()) {
                    if !self.is_subscribed(c, slot) {
                        channels::subscribe(self, &mut plan, c, &SubscribeOp::plain(slot));
                    }
                }
                self.dispatch(&mut plan, c, op);
            }
        }
        plan.cursor_allowed = cursors::merge(before, cursors::allowances(self));
        plan.connected = self.connected();
        self.forbid_outsiders(&mut plan, names_before);
        Some(plan)
    }

    /// The plan of "nothing happens": every connected client must stay quiet (the check
    /// after the last step, for frames that would arrive late).
    pub fn quiet(&self) -> Plan {
        let mut plan = Plan::new(ClientId(0));
        plan.cursor_allowed = cursors::allowances(self);
        plan.connected = self.connected();
        let names = self.chans.values().map(|ch| ch.name.clone()).collect();
        self.forbid_outsiders(&mut plan, names);
        plan
    }

    fn dispatch(&mut self, plan: &mut Plan, c: ClientId, op: &Op) {
        match op {
            Op::Connect | Op::Disconnect => {}
            Op::Subscribe(s) => channels::subscribe(self, plan, c, s),
            Op::Unsubscribe { chan } => channels::unsubscribe(self, plan, c, *chan),
            Op::Broadcast {
                chan,
                event,
                data,
                echo,
            } => channels::broadcast(self, plan, c, *chan, *event, *data, *echo),
            Op::History {
                chan,
                limit,
                before,
                event,
            } => history::request(self, plan, c, *chan, *limit, *before, *event),
            Op::PresenceUpdate { chan, status, data } => {
                presence::update(self, plan, c, *chan, *status, *data)
            }
            Op::PresenceList { chan } => presence::list(self, plan, c, *chan),
            Op::StateWrite { chan, write, cas } => state::write(self, plan, c, *chan, write, *cas),
            Op::StateSync { chan } => state::sync(self, plan, c, *chan),
            Op::CursorMove {
                chan,
                x,
                y,
                burst,
                data,
            } => cursors::moved(self, plan, c, *chan, (*x, *y), *burst, *data),
        }
    }

    /// Clients whose connection is open.
    pub fn connected(&self) -> Vec<ClientId> {
        self.conns
            .iter()
            .filter(|(_, v)| v.connected)
            .map(|(k, _)| *k)
            .collect()
    }

    fn connect(&mut self, plan: &mut Plan, c: ClientId) {
        plan.actions.push(Action::Connect(c));
        let welcome = json!({
            "type": "welcome",
            "protocol": chorus_protocol::PROTOCOL,
            "user": {"id": c.user(), "profile": {"$exact": c.profile()}},
        });
        plan.expect(c, welcome, &["CONN-6", "CONN-7"], "welcome");
        self.conn_mut(c).connected = true;
    }

    fn disconnect(&mut self, plan: &mut Plan, c: ClientId) {
        plan.actions.push(Action::Close(c));
        let subs: Vec<Slot> = self.conn(c).subs.iter().copied().collect();
        for slot in subs {
            channels::leave(self, plan, c, slot);
        }
        self.conn_mut(c).connected = false;
    }

    pub(crate) fn conn(&self, c: ClientId) -> &Conn {
        // Every ClientId has an entry from `new`.
        &self.conns[&c]
    }

    pub(crate) fn conn_mut(&mut self, c: ClientId) -> &mut Conn {
        self.conns.entry(c).or_default()
    }

    pub(crate) fn chan(&self, slot: Slot) -> &Channel {
        &self.chans[&slot]
    }

    pub(crate) fn chan_mut(&mut self, slot: Slot) -> &mut Channel {
        self.chans
            .get_mut(&slot)
            .unwrap_or_else(|| unreachable!("every slot has a channel from Model::new"))
    }

    pub(crate) fn is_subscribed(&self, c: ClientId, slot: Slot) -> bool {
        self.conn(c).subs.contains(&slot)
    }

    /// The next request id of the case.
    pub(crate) fn next_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    /// A fresh capture named `{prefix}_{n}`.
    pub(crate) fn capture(&mut self, prefix: &str) -> Capture {
        self.next_capture += 1;
        Capture::new(format!("{prefix}_{}", self.next_capture))
    }

    /// Any frame about a channel a connected client is not subscribed to after the step is
    /// forbidden (CHAN-33, CHAN-34), under the channel's old name too if its slot moved.
    fn forbid_outsiders(&self, plan: &mut Plan, mut names: Vec<String>) {
        names.extend(self.chans.values().map(|ch| ch.name.clone()));
        names.sort();
        names.dedup();
        for c in self.connected() {
            let subscribed: BTreeSet<&str> = self
                .conn(c)
                .subs
                .iter()
                .map(|s| self.chan(*s).name.as_str())
                .collect();
            for n in names.iter().filter(|n| !subscribed.contains(n.as_str())) {
                let f = json!({"channel": n});
                let what = format!("a frame about {n}, which it is not subscribed to");
                plan.forbid(c, f, &["CHAN-34", "CHAN-33"], what);
                if let Some(last) = plan.forbidden.last_mut() {
                    last.catch_all = true;
                }
            }
        }
    }
}

/// An `error` reply: `id` echoed (or absent), the code (one of `codes`), the request's
/// `channel` (ERR-2), and none of the members reserved for other codes (ERR-3).
pub(crate) fn error(id: Option<u64>, codes: &[&str], channel: &str) -> Value {
    let code = match codes {
        [one] => json!(one),
        many => json!({"$any_of": many}),
    };
    json!({
        "type": "error",
        "id": id.map_or(json!("$absent"), |i| json!(i)),
        "code": code,
        "message": "$string",
        "channel": channel,
        "current": "$absent",
        "limit": "$absent",
        "retry_after_ms": "$absent",
    })
}

#[cfg(test)]
mod tests;
