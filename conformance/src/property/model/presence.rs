//! Presence (spec: presence.md): members keyed by user, one lease per subscribed connection,
//! `user:joined` on the first lease and `user:left` on the last, `presence:update` as
//! `presence:updated` to everyone, never as a leave and a join.
//!
//! Only graceful releases happen here (unsubscribe, close 1000), so the grace period never
//! matters and the model needs no clock.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Value};

use super::{error, Capture, Model, Plan};
use crate::property::ops::{ClientId, Slot, StatusChoice};

/// One member.
#[derive(Debug, Clone, PartialEq)]
pub struct Member {
    /// The profile of the token that created it (PRES-3).
    pub profile: Value,
    /// Status.
    pub status: &'static str,
    /// Custom data (`{}` until set).
    pub data: Value,
    /// `joined_at`, captured when first seen.
    pub joined: Capture,
    /// Connections holding a lease.
    pub leases: BTreeSet<ClientId>,
}

impl Member {
    /// The `Member` object (PRES-2): exact where the spec fixes the value; `last_seen` is
    /// server time, at least `joined_at` (PRES-23).
    fn matcher(&mut self, user: &str) -> Value {
        let last_seen = if self.joined.revealed() {
            json!({"$gte": self.joined.reference()})
        } else {
            json!("$uint")
        };
        json!({
            "user_id": user,
            "profile": {"$exact": self.profile},
            "status": self.status,
            "data": {"$exact": self.data},
            "joined_at": self.joined.matcher(json!("$uint")),
            "last_seen": last_seen,
        })
    }
}

/// The members of one presence channel.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Members {
    by_user: BTreeMap<&'static str, Member>,
}

impl Members {
    /// Whether `user` is a member.
    pub fn has(&self, user: &str) -> bool {
        self.by_user.contains_key(user)
    }

    /// Number of members (distinct users).
    pub fn len(&self) -> usize {
        self.by_user.len()
    }

    /// Whether there is no member.
    pub fn is_empty(&self) -> bool {
        self.by_user.is_empty()
    }

    /// Creates `c`'s user's member with the defaults of PRES-3.
    pub fn create(&mut self, c: ClientId, joined: Capture) {
        self.by_user.insert(
            c.user(),
            Member {
                profile: c.profile(),
                status: "online",
                data: json!({}),
                joined,
                leases: BTreeSet::new(),
            },
        );
    }

    /// Adds `c`'s lease.
    pub fn add_lease(&mut self, c: ClientId) {
        if let Some(m) = self.by_user.get_mut(c.user()) {
            m.leases.insert(c);
        }
    }

    /// Users, in key order.
    pub fn users(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.by_user.keys().copied()
    }

    /// The member array of a snapshot, in any order (PRES-10 is only a SHOULD).
    pub fn snapshot(&mut self) -> Value {
        let all: Vec<Value> = self.by_user.iter_mut().map(|(u, m)| m.matcher(u)).collect();
        json!({"$unordered": all})
    }

    fn matcher(&mut self, user: &str) -> Value {
        self.by_user
            .get_mut(user)
            .map_or(json!("$object"), |m| m.matcher(user))
    }
}

/// After a subscribe: `user:joined` to every other connection when a member was created
/// (PRES-8), and nothing to anyone for a second lease (PRES-9).
pub(crate) fn announce_join(
    m: &mut Model,
    plan: &mut Plan,
    c: ClientId,
    slot: Slot,
    created: bool,
) {
    let ch = m.chan_mut(slot);
    let name = ch.name.clone();
    let others: Vec<ClientId> = ch.subscribers.iter().copied().filter(|s| *s != c).collect();
    if created {
        let member = ch.members.matcher(c.user());
        for o in others {
            let f = json!({"type": "user:joined", "channel": name, "member": member});
            plan.expect(
                o,
                f,
                &["PRES-8", "PRES-2", "PRES-3", "PRES-7"],
                format!("user:joined {}", c.user()),
            );
        }
    } else {
        for o in others {
            let f = json!({"type": "user:joined", "channel": name});
            plan.forbid(o, f, &["PRES-9"], "a user:joined for a second lease");
        }
    }
}

/// Releases `c`'s lease; when it was the member's last, removes the member and its cursor
/// and sends `user:left` to everyone still subscribed (PRES-11, PRES-14, PRES-33, CURS-12).
pub(crate) fn release(m: &mut Model, plan: &mut Plan, c: ClientId, slot: Slot) {
    let ch = m.chan_mut(slot);
    let name = ch.name.clone();
    let user = c.user();
    let Some(member) = ch.members.by_user.get_mut(user) else {
        return;
    };
    member.leases.remove(&c);
    let left = member.leases.is_empty();
    let joined = member.joined.clone();
    let stay: Vec<ClientId> = ch.subscribers.iter().copied().collect();
    if !left {
        for o in stay {
            let f = json!({"type": "user:left", "channel": name, "user_id": user});
            plan.forbid(
                o,
                f,
                &["PRES-12"],
                "user:left while the user still holds a lease",
            );
        }
        return;
    }
    ch.members.by_user.remove(user);
    ch.cursors.remove(user);
    let last_seen = if joined.revealed() {
        json!({"$gte": joined.reference()})
    } else {
        json!("$uint")
    };
    for o in stay {
        let f =
            json!({"type": "user:left", "channel": name, "user_id": user, "last_seen": last_seen});
        plan.expect(
            o,
            f,
            &["PRES-11", "PRES-33", "PRES-13"],
            format!("user:left {user}"),
        );
    }
    let own = json!({"type": "user:left", "channel": name});
    plan.forbid(
        c,
        own,
        &["PRES-14"],
        "user:left to the connection that left",
    );
}

/// Checks that precede presence requests (PRES-22a, PRES-22b).
fn refused(m: &Model, c: ClientId, slot: Slot) -> Option<(&'static str, Vec<&'static str>)> {
    let (code, req) = if !slot.is_presence() {
        ("invalid_channel", "PRES-22a")
    } else if !m.is_subscribed(c, slot) {
        ("not_subscribed", "PRES-22b")
    } else {
        return None;
    };
    Some((code, vec![req, "ERR-2"]))
}

/// `presence:update` (PRES-15 to PRES-19, PRES-22a, PRES-22b).
pub(crate) fn update(
    m: &mut Model,
    plan: &mut Plan,
    c: ClientId,
    slot: Slot,
    status: Option<StatusChoice>,
    data: Option<u8>,
) {
    let id = m.next_id();
    let name = m.chan(slot).name.clone();
    let mut frame = json!({"type": "presence:update", "id": id, "channel": name});
    if let Some(s) = status {
        frame["status"] = json!(s.as_str());
    }
    let data = data.map(|d| json!({"tool": d}));
    if let Some(d) = &data {
        frame["data"] = d.clone();
    }
    plan.send(c, frame);
    let invalid = status == Some(StatusChoice::Offline) || (status.is_none() && data.is_none());
    if let Some((code, reqs)) = refused(m, c, slot) {
        // The spec does not order PRES-15 and PRES-22a/b: an invalid update may get either.
        let codes: &[&str] = if invalid {
            &[code, "invalid_message"]
        } else {
            &[code]
        };
        plan.expect(
            c,
            error(Some(id), codes, &name),
            &reqs,
            format!("{code} error"),
        );
        return;
    }
    if invalid {
        let e = error(Some(id), &["invalid_message"], &name);
        plan.expect(c, e, &["PRES-15", "ERR-2"], "invalid_message error");
        return;
    }
    let ch = m.chan_mut(slot);
    if let Some(mb) = ch.members.by_user.get_mut(c.user()) {
        if let Some(s) = status {
            mb.status = s.as_str();
        }
        if let Some(d) = data {
            mb.data = d;
        }
    }
    let member = ch.members.matcher(c.user());
    let subscribers: Vec<ClientId> = ch.subscribers.iter().copied().collect();
    let ack = json!({"type": "presence:ack", "id": id, "channel": name});
    plan.expect(c, ack, &["PRES-17", "PRES-18"], "presence:ack");
    for o in subscribers {
        let f = json!({"type": "presence:updated", "channel": name, "member": member});
        let reqs = ["PRES-17", "PRES-16", "PRES-18"];
        plan.expect(o, f, &reqs, format!("presence:updated {}", c.user()));
        let left = json!({"type": "user:left", "channel": name, "user_id": c.user()});
        let joined = json!({"type": "user:joined", "channel": name,
            "member": {"user_id": c.user()}});
        for f in [left, joined] {
            plan.forbid(
                o,
                f,
                &["PRES-19"],
                "a presence update sent as a leave and a join",
            );
        }
    }
}

/// `presence` (PRES-21, PRES-22a, PRES-22b).
pub(crate) fn list(m: &mut Model, plan: &mut Plan, c: ClientId, slot: Slot) {
    let id = m.next_id();
    let name = m.chan(slot).name.clone();
    plan.send(c, json!({"type": "presence", "id": id, "channel": name}));
    if let Some((code, reqs)) = refused(m, c, slot) {
        plan.expect(
            c,
            error(Some(id), &[code], &name),
            &reqs,
            format!("{code} error"),
        );
        return;
    }
    let members = m.chan_mut(slot).members.snapshot();
    let f = json!({"type": "presence:list", "id": id, "channel": name, "members": members});
    plan.expect(c, f, &["PRES-21", "PRES-1", "PRES-2"], "presence:list");
}
