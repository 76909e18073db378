//! Shared state (spec: state.md): versions assigned by the server, +1 per accepted write,
//! compare-and-set with `expected_version`, acknowledgement before fan-out, snapshots.

use serde_json::{json, Map, Value};

use super::{error, Model, Plan};
use crate::property::ops::{key, value, Cas, ClientId, Slot, Write};

/// A channel's state in its current epoch (STATE-1).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SharedState {
    /// Keys and values.
    pub data: Map<String, Value>,
    /// Version: 0 until the first accepted write.
    pub version: u64,
}

impl SharedState {
    /// `{data, version, epoch}` of a snapshot (STATE-21, STATE-22).
    pub fn snapshot(&self, epoch: Value) -> Value {
        json!({"data": {"$exact": self.data}, "version": self.version, "epoch": epoch})
    }

    /// A version the state is not at (for a stale compare-and-set).
    fn stale(&self) -> u64 {
        if self.version == 0 {
            1
        } else {
            self.version - 1
        }
    }

    /// Applies an accepted write (STATE-5 to STATE-7).
    fn apply(&mut self, w: &Write) {
        match w {
            Write::Update { key: k, value: v } => {
                self.data.insert(key(*k), value(*v));
            }
            Write::Merge { entries } => {
                for (k, v) in entries {
                    self.data.insert(key(*k), value(*v));
                }
            }
            Write::Delete { key: k } => {
                self.data.remove(&key(*k));
            }
        }
        self.version += 1;
    }
}

/// The client frame of a write, without `expected_version`.
fn write_frame(id: u64, channel: &str, w: &Write) -> Value {
    match w {
        Write::Update { key: k, value: v } => json!({"type": "state:update", "id": id,
            "channel": channel, "key": key(*k), "value": value(*v)}),
        Write::Merge { entries } => json!({"type": "state:merge", "id": id, "channel": channel,
            "data": merge_data(entries)}),
        Write::Delete { key: k } => json!({"type": "state:delete", "id": id,
            "channel": channel, "key": key(*k)}),
    }
}

fn merge_data(entries: &[(u8, u8)]) -> Map<String, Value> {
    entries.iter().map(|(k, v)| (key(*k), value(*v))).collect()
}

/// The server state frame announcing an accepted write (STATE-15, STATE-18).
fn change_frame(channel: &str, w: &Write, version: u64, epoch: &Value, from: &str) -> Value {
    let mut f = match w {
        Write::Update { key: k, value: v } => json!({"type": "state:update", "key": key(*k),
            "value": {"$exact": value(*v)}}),
        Write::Merge { entries } => {
            json!({"type": "state:merge", "data": {"$exact": merge_data(entries)}})
        }
        Write::Delete { key: k } => json!({"type": "state:delete", "key": key(*k)}),
    };
    f["channel"] = json!(channel);
    f["version"] = json!(version);
    f["epoch"] = epoch.clone();
    f["from"] = json!(from);
    f["ts"] = json!("$uint");
    f
}

/// `state:update`, `state:merge`, `state:delete` (STATE-3, STATE-10, STATE-14 to STATE-20).
pub(crate) fn write(m: &mut Model, plan: &mut Plan, c: ClientId, slot: Slot, w: &Write, cas: Cas) {
    let id = m.next_id();
    let name = m.chan(slot).name.clone();
    let mut frame = write_frame(id, &name, w);
    let current = m.chan(slot).state.version;
    let expected = match cas {
        Cas::None => None,
        Cas::Current => Some(current),
        Cas::Stale => Some(m.chan(slot).state.stale()),
    };
    if let Some(v) = expected {
        frame["expected_version"] = json!(v);
    }
    plan.send(c, frame);
    if !m.is_subscribed(c, slot) {
        let e = error(Some(id), &["not_subscribed"], &name);
        plan.expect(c, e, &["STATE-10", "ERR-2"], "not_subscribed error");
        return;
    }
    let ch = m.chan_mut(slot);
    let epoch = ch.epoch.reference();
    let subscribers: Vec<ClientId> = ch.subscribers.iter().copied().collect();
    if expected.is_some_and(|v| v != current) {
        let mut e = error(Some(id), &["conflict"], &name);
        e["current"] = json!({"version": current, "epoch": epoch});
        plan.expect(c, e, &["STATE-19", "ERR-3"], "conflict error");
        for o in subscribers {
            let any = json!({"type": {"$prefix": "state:"}, "channel": name});
            plan.forbid(
                o,
                any,
                &["STATE-19"],
                "a state frame for a write refused as a conflict",
            );
        }
        return;
    }
    ch.state.apply(w);
    let version = ch.state.version;
    let ack = json!({"type": "state:ack", "id": id, "channel": name, "version": version,
        "epoch": epoch});
    plan.expect(
        c,
        ack,
        &["STATE-14", "STATE-3", "STATE-2", "STATE-20"],
        format!("state:ack version {version}"),
    );
    let change = change_frame(&name, w, version, &epoch, c.user());
    for o in subscribers {
        let reqs = ["STATE-15", "STATE-16", "STATE-17", "STATE-18"];
        plan.expect(
            o,
            change.clone(),
            &reqs,
            format!("state change version {version}"),
        );
    }
}

/// `state:sync:request` (STATE-10, STATE-21).
pub(crate) fn sync(m: &mut Model, plan: &mut Plan, c: ClientId, slot: Slot) {
    let id = m.next_id();
    let name = m.chan(slot).name.clone();
    plan.send(
        c,
        json!({"type": "state:sync:request", "id": id, "channel": name}),
    );
    if !m.is_subscribed(c, slot) {
        let e = error(Some(id), &["not_subscribed"], &name);
        plan.expect(c, e, &["STATE-10", "ERR-2"], "not_subscribed error");
        return;
    }
    let ch = m.chan(slot);
    let mut f = ch.state.snapshot(ch.epoch.reference());
    f["type"] = json!("state:sync");
    f["id"] = json!(id);
    f["channel"] = json!(name);
    plan.expect(c, f, &["STATE-21", "STATE-24", "STATE-2"], "state:sync");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_is_shallow_and_takes_a_version() {
        let mut s = SharedState::default();
        s.apply(&Write::Update { key: 0, value: 2 });
        s.apply(&Write::Merge {
            entries: vec![(0, 0), (1, 3)],
        });
        assert_eq!(s.version, 2);
        assert_eq!(s.data["k0"], json!(0));
        assert_eq!(s.data["k1"], Value::Null);
    }

    #[test]
    fn deleting_a_missing_key_still_takes_a_version() {
        let mut s = SharedState::default();
        s.apply(&Write::Delete { key: 2 });
        assert_eq!(s.version, 1);
        assert!(s.data.is_empty());
    }

    #[test]
    fn stale_version_differs_from_current() {
        let mut s = SharedState::default();
        assert_ne!(s.stale(), s.version);
        s.apply(&Write::Delete { key: 0 });
        assert_ne!(s.stale(), s.version);
    }
}
