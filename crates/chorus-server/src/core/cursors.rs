//! Live cursors: latest position per user, coalesced per channel (spec: cursors.md).
//!
//! Coalescing is per node by design (CLUS-7 allows once per node): a node's flush goes to
//! its own subscribers as below, and through the engine to the other nodes' subscribers
//! (none of which produced its entries), in the channel's one order.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chorus_protocol::{Capability, ChannelKind, CursorState, CursorUpdate, Millis, Right};

use super::engine::{ChannelKey, Delivery};
use super::faults::Fault;
use super::limits::check_size;
use super::{frame_of, ConnId, Core, CoreError, Engine, Frame, Outbox};

/// Every channel's cursors and the pending flushes.
#[derive(Debug, Default)]
pub(super) struct Cursors {
    boards: HashMap<ChannelKey, Board>,
    /// `(when, channel)` of scheduled flushes.
    due: BTreeSet<(Millis, ChannelKey)>,
}

#[derive(Debug, Default)]
struct Board {
    /// The latest cursor per user (CURS-6), for `subscribed.cursors`.
    latest: BTreeMap<String, CursorState>,
    /// Users whose latest cursor is not flushed yet, with the connection that produced it.
    pending: BTreeMap<String, ConnId>,
    last_flush: Option<Millis>,
    due: Option<Millis>,
}

impl Cursors {
    /// The current cursors of a channel (CURS-14).
    pub fn snapshot(&self, key: &ChannelKey) -> Vec<CursorState> {
        self.boards
            .get(key)
            .map(|b| b.latest.values().cloned().collect())
            .unwrap_or_default()
    }

    /// Removes a user's cursor, pending entry included (CURS-12, CURS-13).
    pub fn forget_user(&mut self, key: &ChannelKey, user: &str) {
        if let Some(b) = self.boards.get_mut(key) {
            b.latest.remove(user);
            b.pending.remove(user);
        }
    }

    /// Forgets a discarded channel.
    pub fn forget_channel(&mut self, key: &ChannelKey) {
        if let Some(b) = self.boards.remove(key) {
            if let Some(at) = b.due {
                self.due.remove(&(at, key.clone()));
            }
        }
    }

    /// The earliest scheduled flush.
    pub fn next_due(&self) -> Option<Millis> {
        self.due.first().map(|(at, _)| *at)
    }

    /// Keeps `cursor` as its user's latest and schedules a flush no sooner than one
    /// interval after the previous one (CURS-7); returns when the flush is due.
    fn record(
        &mut self,
        key: &ChannelKey,
        cursor: CursorState,
        conn: ConnId,
        interval: u64,
    ) -> Millis {
        let b = self.boards.entry(key.clone()).or_default();
        let now = cursor.ts;
        b.pending.insert(cursor.user_id.clone(), conn);
        b.latest.insert(cursor.user_id.clone(), cursor);
        if let Some(at) = b.due {
            return at;
        }
        let at = b
            .last_flush
            .map_or(now, |t| now.max(t.saturating_add(interval)));
        b.due = Some(at);
        self.due.insert((at, key.clone()));
        at
    }

    /// Channels whose flush is due by `now`.
    fn take_due(&mut self, now: Millis) -> Vec<ChannelKey> {
        let mut keys = Vec::new();
        while let Some((at, key)) = self.due.first().filter(|(at, _)| *at <= now).cloned() {
            self.due.remove(&(at, key.clone()));
            keys.push(key);
        }
        keys
    }

    /// Sends the pending cursors of `key` to `subscribers`: one shared frame for every
    /// recipient that produced none of them, a filtered frame for each producer (CURS-10),
    /// never an empty one (CURS-11). Cursor frames are droppable (CURS-15). Returns the
    /// shared frame and the flushed entries by user, for the other nodes of a cluster.
    fn flush(
        &mut self,
        key: &ChannelKey,
        now: Millis,
        subscribers: impl Iterator<Item = ConnId>,
        out: &mut Outbox,
    ) -> Option<Flushed> {
        let b = self.boards.get_mut(key)?;
        if let Some(at) = b.due.take() {
            self.due.remove(&(at, key.clone()));
        }
        let pending = std::mem::take(&mut b.pending);
        if pending.is_empty() {
            return None;
        }
        b.last_flush = Some(now);
        // Each entry is serialized once; a producer's filtered frame is spliced from the
        // same texts, so that a flush where every member moved costs copies, not n² encodes.
        let entries: Vec<(String, ConnId)> = pending
            .iter()
            .filter_map(|(user, conn)| b.latest.get(user).map(|c| (entry_json(c), *conn)))
            .collect();
        let head = format!(
            r#"{{"type":"cursor:moved","channel":{},"cursors":["#,
            frame_of(&key.name)
        );
        let moved = |skip: Option<ConnId>| -> Frame {
            let mut text = head.clone();
            let mut first = true;
            for (json, _) in entries.iter().filter(|(_, p)| Some(*p) != skip) {
                if !first {
                    text.push(',');
                }
                text.push_str(json);
                first = false;
            }
            text.push_str("]}");
            Frame::from(text)
        };
        let all = moved(None);
        let producers: BTreeSet<ConnId> = entries.iter().map(|(_, p)| *p).collect();
        for to in subscribers {
            if !producers.contains(&to) {
                out.frame(to, all.clone(), true);
            } else if entries.iter().any(|(_, p)| *p != to) {
                out.frame(to, moved(Some(to)), true);
            }
        }
        let users = pending.keys().filter(|u| b.latest.contains_key(*u));
        let by_user = users.cloned().zip(entries.into_iter().map(|(j, _)| j));
        Some(Flushed {
            frame: all,
            entries: by_user.collect(),
        })
    }
}

/// What one flush sent, for the other nodes of a cluster.
struct Flushed {
    /// The frame with every flushed entry.
    frame: Frame,
    /// `(user, entry JSON)` of each flushed cursor.
    entries: Vec<(String, String)>,
}

/// One cursor as it appears inside `cursor:moved`.
fn entry_json(cursor: &CursorState) -> String {
    // A cursor always serializes (non-finite numbers cannot come from JSON).
    serde_json::to_string(cursor).unwrap_or_else(|_| "null".into())
}

impl<E: Engine> Core<E> {
    /// `cursor:update`: no success reply (CURS-2); errors per CURS-1a to CURS-1c, CURS-3 to CURS-5.
    pub(super) fn cursor_update(
        &mut self,
        conn: ConnId,
        req: CursorUpdate,
        now: Millis,
        out: &mut Outbox,
    ) -> Result<(), CoreError> {
        if req.data.as_ref().is_some_and(|d| !d.is_object()) {
            return Err(CoreError::InvalidMessage(
                "cursor data must be an object".into(),
            )); // CURS-1b, shape first (ERR-12)
        }
        self.require(Capability::Cursors)?;
        if self.check_name(&req.channel)? != ChannelKind::Presence {
            return Err(CoreError::InvalidChannel(format!(
                "{} is not a presence channel",
                req.channel
            )));
        }
        self.authorize(conn, Right::Presence, &req.channel)?; // CHAN-39
        let (key, user) = self.subscribed_key(conn, &req.channel)?;
        if !self.fault(Fault::CursorDataUnbounded) {
            let max = self.config.limits.max_cursor_data_bytes;
            check_size(req.data.as_ref(), max, "max_cursor_data_bytes")?; // CURS-21
        }
        self.engine.touch_member(&key, &user, now); // PRES-23, without a frame (PRES-24)
        let cursor = CursorState {
            user_id: user,
            x: req.x,
            y: req.y,
            data: req.data,
            ts: now,
        };
        let interval = self.config.limits.cursor_interval_ms;
        let due = self.cursors.record(&key, cursor, conn, interval);
        if due <= now || self.fault(Fault::CursorsUncoalesced) {
            self.flush_channel_cursors(&key, now, out);
        }
        Ok(())
    }

    /// Flushes `key`'s pending cursors here and hands the shared frame to the engine for
    /// the other nodes; what the engine says precedes it in the channel's order is sent to
    /// this node's subscribers first (CLUS-7).
    fn flush_channel_cursors(&mut self, key: &ChannelKey, now: Millis, out: &mut Outbox) {
        let to = self.cursor_recipients(key);
        let mut flushed = Outbox::default();
        let Some(done) = self.cursors.flush(key, now, to.into_iter(), &mut flushed) else {
            return;
        };
        self.engine.keep_cursors(key, &done.entries);
        match self.engine.relay(key, &done.frame, None) {
            Delivery::Frames(earlier) => {
                for frame in &earlier {
                    self.deliver_local(key, frame, None, out);
                }
            }
            Delivery::Relayed | Delivery::NewEpoch => {}
            Delivery::Discontinuity => self.evict_subscribers(key, out),
        }
        out.effects.append(&mut flushed.effects);
    }

    /// The current cursors of a channel (CURS-14): those the engine shares across nodes,
    /// with this node's own latest ones over them.
    pub(super) fn cursor_snapshot(&self, key: &ChannelKey) -> Vec<CursorState> {
        let local = self.cursors.snapshot(key);
        let Some(shared) = self.engine.shared_cursors(key) else {
            return local;
        };
        let mut by_user: BTreeMap<String, CursorState> =
            shared.into_iter().map(|c| (c.user_id.clone(), c)).collect();
        by_user.extend(local.into_iter().map(|c| (c.user_id.clone(), c)));
        by_user.into_values().collect()
    }

    /// The connections a flush of `key` goes to: every subscriber, except, with the
    /// `cursor_skips_own_tabs` fault, the other connections of a user with a pending cursor.
    fn cursor_recipients(&self, key: &ChannelKey) -> Vec<ConnId> {
        let subscribers = self.engine.subscribers(key);
        if !self.fault(Fault::CursorSkipsOwnTabs) {
            return subscribers.collect();
        }
        let pending = self.cursors.boards.get(key).map(|b| &b.pending);
        let user_of = |conn: &ConnId| self.conns.get(conn).map(|c| c.session.user_id.as_str());
        subscribers
            .filter(|to| {
                pending.is_none_or(|p| {
                    !p.iter()
                        .any(|(user, producer)| producer != to && user_of(to) == Some(user))
                })
            })
            .collect()
    }

    /// Flushes every channel whose interval is over.
    pub(super) fn flush_cursors(&mut self, now: Millis, out: &mut Outbox) {
        for key in self.cursors.take_due(now) {
            if let Some(b) = self.cursors.boards.get_mut(&key) {
                b.due = None;
            }
            self.flush_channel_cursors(&key, now, out);
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::testkit::{Driver, T0};

    fn cursor(d: &mut Driver, conn: u64, x: i32) {
        d.send(
            conn,
            json!({"type": "cursor:update", "channel": "presence-c", "x": x, "y": 0}),
        );
    }

    #[test]
    fn updates_coalesce_to_one_frame_per_interval() {
        let mut d = Driver::new();
        let (a1, a2, b) = (d.connect("ann"), d.connect("ann"), d.connect("bob"));
        for c in [a1, a2, b] {
            d.subscribe(c, "presence-c");
        }
        for c in [a1, a2, b] {
            d.frames(c);
        }
        cursor(&mut d, a1, 1);
        let first = d.delivered(b);
        assert_eq!(first.len(), 1, "the first position goes out at once");
        assert!(first[0].droppable);
        assert_eq!(
            first[0].json,
            json!({"type": "cursor:moved", "channel": "presence-c",
                   "cursors": [{"user_id": "ann", "x": 1.0, "y": 0.0, "ts": T0}]})
        );
        d.advance(10);
        cursor(&mut d, a1, 2);
        d.advance(10);
        cursor(&mut d, a1, 3);
        d.assert_silent(b);
        d.advance(29);
        d.assert_silent(b);
        d.advance(1);
        let got = d.frames(b);
        assert_eq!(got.len(), 1);
        assert_eq!(
            got[0]["cursors"],
            json!([{"user_id": "ann", "x": 3.0, "y": 0.0, "ts": T0 + 20}])
        );
        assert_eq!(
            d.frames(a2).len(),
            2,
            "the user's other tab sees its cursor"
        );
        d.assert_silent(a1);
    }

    #[test]
    fn producer_gets_the_others_but_not_its_own() {
        let mut d = Driver::new();
        let (a, b) = (d.connect("ann"), d.connect("bob"));
        d.subscribe(a, "presence-c");
        d.subscribe(b, "presence-c");
        d.frames(a);
        cursor(&mut d, a, 1);
        d.frames(b);
        cursor(&mut d, a, 2);
        cursor(&mut d, b, 5);
        d.advance(50);
        let to_a = d.frames(a);
        let to_b = d.frames(b);
        assert_eq!(to_a.len(), 1);
        assert_eq!(to_a[0]["cursors"][0]["user_id"], "bob");
        assert_eq!(to_a[0]["cursors"].as_array().unwrap().len(), 1);
        assert_eq!(to_b[0]["cursors"][0]["user_id"], "ann");
        assert_eq!(to_b[0]["cursors"].as_array().unwrap().len(), 1);
    }

    #[test]
    fn leaving_removes_the_cursor_and_its_pending_entry() {
        let mut d = Driver::new();
        let (a, b) = (d.connect("ann"), d.connect("bob"));
        d.subscribe(a, "presence-c");
        d.subscribe(b, "presence-c");
        cursor(&mut d, a, 1);
        cursor(&mut d, a, 2);
        d.frames(b);
        d.send(a, json!({"type": "unsubscribe", "channel": "presence-c"}));
        d.advance(100);
        assert_eq!(d.types(b), ["user:left"]);
        let c = d.connect("cid");
        assert_eq!(d.subscribe(c, "presence-c")["cursors"], json!([]));
    }

    #[test]
    fn spliced_frame_matches_the_protocol_encoding() {
        let mut d = Driver::new();
        let (a, b, c) = (d.connect("ann"), d.connect("bob"), d.connect("cid"));
        for conn in [a, b, c] {
            d.subscribe(conn, "presence-c");
        }
        cursor(&mut d, a, 1);
        d.frames(c);
        cursor(&mut d, a, 2);
        d.send(
            b,
            json!({"type": "cursor:update", "channel": "presence-c", "x": 0.5, "y": -1,
                         "data": {"k": "\"q\""}}),
        );
        d.advance(50);
        let got = d.delivered(c);
        let expected = chorus_protocol::ServerMessage::CursorMoved(chorus_protocol::CursorMoved {
            channel: "presence-c".into(),
            cursors: vec![
                chorus_protocol::CursorState {
                    user_id: "ann".into(),
                    x: 2.0,
                    y: 0.0,
                    data: None,
                    ts: T0,
                },
                chorus_protocol::CursorState {
                    user_id: "bob".into(),
                    x: 0.5,
                    y: -1.0,
                    data: Some(json!({"k": "\"q\""})),
                    ts: T0,
                },
            ],
        });
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].msg, expected);
        assert_eq!(
            got[0].json.to_string(),
            serde_json::to_value(&expected).unwrap().to_string()
        );
    }

    #[test]
    fn snapshot_holds_current_cursors() {
        let mut d = Driver::new();
        let a = d.connect("ann");
        d.subscribe(a, "presence-c");
        d.send(
            a,
            json!({"type": "cursor:update", "channel": "presence-c", "x": 1, "y": 2,
                         "data": {"tool": "pen"}}),
        );
        let b = d.connect("bob");
        assert_eq!(
            d.subscribe(b, "presence-c")["cursors"],
            json!([{"user_id": "ann", "x": 1.0, "y": 2.0, "data": {"tool": "pen"}, "ts": T0}])
        );
    }

    #[test]
    fn cursor_errors() {
        let mut d = Driver::new();
        let a = d.connect("ann");
        d.subscribe(a, "chat");
        let got = d.ask(
            a,
            json!({"type": "cursor:update", "channel": "chat", "x": 1, "y": 2}),
        );
        assert_eq!(got[0]["code"], "invalid_channel");
        let got = d.ask(
            a,
            json!({"type": "cursor:update", "channel": "presence-c", "x": 1, "y": 2}),
        );
        assert_eq!(got[0]["code"], "not_subscribed");
        d.subscribe(a, "presence-c");
        let got = d.ask(
            a,
            json!({"type": "cursor:update", "channel": "presence-c", "x": 1, "y": 2, "data": 3}),
        );
        assert_eq!(got[0]["code"], "invalid_message");
    }
}
