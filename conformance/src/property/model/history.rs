//! History and recovery (spec: history.md, broadcast.md): retained items, `subscribe` with
//! `since`, the `history` request.
//!
//! The model assumes what HIST-18 asks (at least `history_limit` items retained for five
//! minutes) and only asks for gaps within that; a server that retains less is graded on the
//! SHOULD, not on HIST-7.

use serde_json::{json, Value};

use super::{error, Expected, Model, Plan};
use crate::fixture::CaseLevel;
use crate::property::ops::{event, ClientId, Slot};

/// One retained `message`.
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    /// Its seq.
    pub seq: u64,
    /// Event name.
    pub event: &'static str,
    /// Payload.
    pub data: Value,
    /// Sender's user id.
    pub from: &'static str,
    /// Capture name of its `ts` (from the `broadcast:ack`).
    pub ts: String,
}

impl Item {
    /// The `message` frame as delivered live, replayed and paged (HIST-6).
    pub fn frame(&self, channel: &str) -> Value {
        json!({
            "type": "message",
            "channel": channel,
            "event": self.event,
            "data": {"$exact": self.data},
            "from": self.from,
            "ts": format!("${{{}}}", self.ts),
            "seq": self.seq,
        })
    }
}

/// The epoch a `since` names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SinceEpoch {
    /// An epoch captured earlier (capture name).
    Known(String),
    /// One no channel ever had.
    Bogus,
}

/// A `since` position offered by a `subscribe`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SinceRef {
    /// The epoch.
    pub epoch: SinceEpoch,
    /// The seq.
    pub seq: u64,
}

impl SinceRef {
    /// A position in a captured epoch.
    pub fn known(epoch: String, seq: u64) -> Self {
        SinceRef {
            epoch: SinceEpoch::Known(epoch),
            seq,
        }
    }

    /// A position in an epoch the server never issued.
    pub fn bogus() -> Self {
        SinceRef {
            epoch: SinceEpoch::Bogus,
            seq: 1,
        }
    }

    /// The `since` member of the frame.
    pub fn frame(&self) -> Value {
        let epoch = match &self.epoch {
            SinceEpoch::Known(e) => format!("${{{e}}}"),
            SinceEpoch::Bogus => "e-bogus-{run}".to_owned(),
        };
        json!({"epoch": epoch, "seq": self.seq})
    }
}

/// The recovery decision of history.md's table: recovered, and the items replayed.
pub fn recover(ch: &super::channels::Channel, since: &SinceRef) -> (bool, Vec<Item>) {
    let same_epoch = since.epoch == SinceEpoch::Known(ch.epoch.name.clone());
    if !same_epoch || since.seq > ch.seq {
        return (false, Vec::new());
    }
    let replay = ch
        .items
        .iter()
        .filter(|i| i.seq > since.seq)
        .cloned()
        .collect();
    (true, replay)
}

/// The weaker outcome of a recovery: `recovered: false` is allowed only by retaining less
/// than HIST-18 asks.
pub fn not_retained(frame: Value) -> Expected {
    Expected {
        frame,
        requirements: vec!["HIST-18"],
        level: CaseLevel::Should,
        what: "subscribed with recovered: false although the gap is within history_limit".into(),
        lenient: None,
    }
}

/// `history` (HIST-11, HIST-13 to HIST-16, BCAST-1 to BCAST-3).
pub(crate) fn request(
    m: &mut Model,
    plan: &mut Plan,
    c: ClientId,
    slot: Slot,
    limit: Option<u8>,
    before: Option<u8>,
    ev: Option<u8>,
) {
    let id = m.next_id();
    let name = m.chan(slot).name.clone();
    let before_seq = before.map(|b| u64::from(b) % (m.chan(slot).seq + 2));
    let mut frame = json!({"type": "history", "id": id, "channel": name});
    if let Some(l) = limit {
        frame["limit"] = json!(l.max(1));
    }
    if let Some(b) = before_seq {
        frame["before_seq"] = json!(b);
    }
    if let Some(e) = ev {
        frame["event"] = json!(event(e));
    }
    plan.send(c, frame);
    if !m.is_subscribed(c, slot) {
        let e = error(Some(id), &["not_subscribed"], &name);
        plan.expect(c, e, &["HIST-11", "ERR-2"], "not_subscribed error");
        return;
    }
    let history_limit = u64::from(m.limits.history_limit);
    let ch = m.chan_mut(slot);
    let matching: Vec<&Item> = ch
        .items
        .iter()
        .filter(|i| before_seq.is_none_or(|b| i.seq < b))
        .filter(|i| ev.is_none_or(|e| i.event == event(e)))
        .collect();
    let size = limit.map_or(history_limit, |l| u64::from(l.max(1)).min(history_limit));
    let size = usize::try_from(size).unwrap_or(usize::MAX);
    let start = matching.len().saturating_sub(size);
    let page: Vec<Value> = matching[start..].iter().map(|i| i.frame(&name)).collect();
    // Beyond history_limit items retention is the server's choice: only the shape is known.
    let retained_all = ch.items.len() as u64 <= history_limit;
    let (messages, has_more) = if retained_all {
        (json!(page), json!(start > 0))
    } else {
        (json!("$array"), json!("$bool"))
    };
    let position = ch.position();
    let reply = json!({"type": "history:page", "id": id, "channel": name, "position": position,
        "messages": messages, "has_more": has_more});
    let mut reqs = vec!["HIST-13", "HIST-14", "HIST-15", "HIST-16", "HIST-6"];
    if ev.is_some() {
        reqs.extend(["BCAST-1", "BCAST-2", "BCAST-3"]);
    }
    plan.expect(c, reply, &reqs, "history:page");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bogus_since_names_the_run() {
        let f = SinceRef::bogus().frame();
        assert_eq!(f["epoch"], json!("e-bogus-{run}"));
        assert_eq!(f["seq"], json!(1));
    }

    #[test]
    fn known_since_refers_to_the_capture() {
        let f = SinceRef::known("ep_chat_1".into(), 3).frame();
        assert_eq!(f["epoch"], json!("${ep_chat_1}"));
    }
}
