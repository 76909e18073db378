//! Cursors (spec: cursors.md): the latest position per user, coalesced `cursor:moved` frames
//! to everyone but the producing connection, removed with the member.
//!
//! Coalescing makes the frames a recipient gets depend on timing, so the model does not
//! predict frames: it says which position each recipient must eventually see (CURS-9) and
//! which entries it may see at all (CURS-8, CURS-10, CURS-13). Positions the user held just
//! before stay allowed, since a frame built before an update may arrive after it.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::presence::Members;
use super::{error, CursorDue, Model, Plan};
use crate::property::ops::{ClientId, Slot};
use chorus_protocol::Capability;

/// One accepted position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    /// x.
    pub x: u32,
    /// y.
    pub y: u32,
    /// Whether `data: {"tool": "pen"}` was given.
    pub data: bool,
    /// The connection that sent it.
    pub producer: ClientId,
}

/// A user's cursor and the positions a late frame may still carry.
#[derive(Debug, Clone, PartialEq)]
pub struct Cursor {
    /// The latest position (CURS-6).
    pub current: Position,
    /// Positions accepted just before it (the previous one, the burst's earlier ones).
    pub recent: Vec<Position>,
}

/// The cursors of one presence channel.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Cursors {
    by_user: BTreeMap<&'static str, Cursor>,
}

impl Cursors {
    /// Removes a user's cursor (CURS-12).
    pub fn remove(&mut self, user: &str) {
        self.by_user.remove(user);
    }

    /// `subscribed.cursors`: the current cursor of each member (CURS-14).
    pub fn snapshot(&self, members: &Members) -> Value {
        let all: Vec<Value> = self
            .by_user
            .iter()
            .filter(|(u, _)| members.has(u))
            .map(|(u, c)| entry(u, &c.current))
            .collect();
        json!({"$unordered": all})
    }
}

/// A cursor entry of `cursor:moved` or a snapshot.
fn entry(user: &str, p: &Position) -> Value {
    let data = if p.data {
        json!({"$exact": {"tool": "pen"}})
    } else {
        json!("$absent")
    };
    json!({"user_id": user, "x": p.x, "y": p.y, "data": data, "ts": "$uint"})
}

/// Cursor entries each subscribed connection may receive, per channel template.
pub(crate) fn allowances(m: &Model) -> BTreeMap<(ClientId, String), Vec<Value>> {
    let mut out = BTreeMap::new();
    if !m.has(Capability::Cursors) {
        return out;
    }
    for ch in m.chans.values().filter(|ch| ch.slot.is_presence()) {
        for r in &ch.subscribers {
            let mut allowed = Vec::new();
            for (user, cursor) in &ch.cursors.by_user {
                let positions = std::iter::once(&cursor.current).chain(&cursor.recent);
                for p in positions.filter(|p| p.producer != *r) {
                    allowed.push(entry(user, p));
                }
            }
            out.insert((*r, ch.name.clone()), allowed);
        }
    }
    out
}

/// The union of two allowance maps (before and after a step).
pub(crate) fn merge(
    mut a: BTreeMap<(ClientId, String), Vec<Value>>,
    b: BTreeMap<(ClientId, String), Vec<Value>>,
) -> BTreeMap<(ClientId, String), Vec<Value>> {
    for (k, v) in b {
        let list = a.entry(k).or_default();
        for e in v {
            if !list.contains(&e) {
                list.push(e);
            }
        }
    }
    a
}

/// `burst` back-to-back `cursor:update` frames (CURS-2 to CURS-10).
pub(crate) fn moved(
    m: &mut Model,
    plan: &mut Plan,
    c: ClientId,
    slot: Slot,
    (x, y): (u16, u16),
    burst: u8,
    data: bool,
) {
    let name = m.chan(slot).name.clone();
    let n = burst.max(1);
    let positions: Vec<Position> = (0..n)
        .map(|i| Position {
            x: u32::from(x) + u32::from(i),
            y: u32::from(y),
            data,
            producer: c,
        })
        .collect();
    for p in &positions {
        let mut f = json!({"type": "cursor:update", "channel": name, "x": p.x, "y": p.y});
        if data {
            f["data"] = json!({"tool": "pen"});
        }
        plan.send(c, f);
    }
    let refusal = if !m.has(Capability::Cursors) {
        Some(("unsupported", "CURS-5"))
    } else if !slot.is_presence() {
        Some(("invalid_channel", "CURS-3"))
    } else if !m.is_subscribed(c, slot) {
        Some(("not_subscribed", "CURS-4"))
    } else {
        None
    };
    if let Some((code, req)) = refusal {
        for _ in &positions {
            let e = error(None, &[code], &name);
            plan.expect(c, e, &[req, "CURS-2", "ERR-2"], format!("{code} error"));
        }
        return;
    }
    let Some((last, earlier)) = positions.split_last() else {
        return;
    };
    let ch = m.chan_mut(slot);
    let mut recent = earlier.to_vec();
    if let Some(old) = ch.cursors.by_user.get(c.user()) {
        recent.push(old.current);
    }
    ch.cursors.by_user.insert(
        c.user(),
        Cursor {
            current: *last,
            recent,
        },
    );
    for r in ch.subscribers.iter().filter(|r| **r != c) {
        plan.cursor_due.push(CursorDue {
            client: *r,
            channel: name.clone(),
            entry: entry(c.user(), last),
            burst: n,
        });
    }
}
