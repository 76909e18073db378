//! Shared versioned state of a channel (spec: state.md).

use chorus_protocol::{
    Capability, ChannelKind, ChannelName, Millis, Right, ServerMessage, StateAck, StateDelete,
    StateDeleted, StateMerge, StateMerged, StateSync, StateSyncRequest, StateUpdate, StateUpdated,
    StateVersion, UserId,
};

use std::collections::HashMap;

use super::engine::{ChannelKey, Expected, StateWrite};
use super::faults::Fault;
use super::{frame_of, ConnId, Core, CoreError, Engine, Frame, Outbox};

/// Longest state key in characters (STATE-8a).
const MAX_KEY_CHARS: usize = 256;
/// Room left in a frame around a full snapshot (STATE-34).
const SNAPSHOT_HEADROOM: u64 = 1024;

impl<E: Engine> Core<E> {
    /// `state:update`.
    pub(super) fn state_update(
        &mut self,
        conn: ConnId,
        req: StateUpdate,
        now: Millis,
        out: &mut Outbox,
    ) -> Result<(), CoreError> {
        check_key(&req.key)?;
        let write = StateWrite::Update {
            key: req.key,
            value: req.value,
        };
        let expected = expect(req.expected_version, req.expected_epoch);
        self.write_and_announce(conn, req.id, &req.channel, &write, expected, now, out)
    }

    /// `state:merge` (shallow, STATE-6).
    pub(super) fn state_merge(
        &mut self,
        conn: ConnId,
        req: StateMerge,
        now: Millis,
        out: &mut Outbox,
    ) -> Result<(), CoreError> {
        let write = StateWrite::Merge { data: req.data };
        let expected = expect(req.expected_version, req.expected_epoch);
        self.write_and_announce(conn, req.id, &req.channel, &write, expected, now, out)
    }

    /// `state:delete` (STATE-7).
    pub(super) fn state_delete(
        &mut self,
        conn: ConnId,
        req: StateDelete,
        now: Millis,
        out: &mut Outbox,
    ) -> Result<(), CoreError> {
        check_key(&req.key)?;
        let write = StateWrite::Delete { key: req.key };
        let expected = expect(req.expected_version, req.expected_epoch);
        self.write_and_announce(conn, req.id, &req.channel, &write, expected, now, out)
    }

    /// A write, its `state:ack` to the writer first (STATE-14, STATE-16), then its event to
    /// every subscriber.
    #[allow(clippy::too_many_arguments)]
    fn write_and_announce(
        &mut self,
        conn: ConnId,
        id: Option<chorus_protocol::RequestId>,
        channel: &ChannelName,
        write: &StateWrite,
        expected: Expected,
        now: Millis,
        out: &mut Outbox,
    ) -> Result<(), CoreError> {
        let (key, v, frame) = self.write(conn, channel, write, expected, now)?;
        self.ack(conn, id, channel, &v, out);
        self.fan_out_state(&key, conn, &frame, out);
        Ok(())
    }

    /// `state:sync:request` -> `state:sync` (STATE-21).
    pub(super) fn state_sync(
        &mut self,
        conn: ConnId,
        req: StateSyncRequest,
        out: &mut Outbox,
    ) -> Result<(), CoreError> {
        self.require(Capability::State)?;
        self.check_name(&req.channel)?;
        let (key, _) = self.subscribed_key(conn, &req.channel)?;
        let snap = self.engine.state(&key);
        let version = StateVersion {
            version: snap.version,
            epoch: snap.epoch.clone(),
        };
        self.snapshots.note(&key, conn, version);
        let sync = StateSync {
            id: req.id,
            channel: req.channel,
            data: snap.data,
            version: snap.version,
            epoch: snap.epoch,
        };
        out.send(conn, &ServerMessage::StateSync(sync));
        Ok(())
    }

    /// The checks and the write shared by the three writes (STATE-3, STATE-34 to STATE-12,
    /// STATE-19, STATE-20).
    fn write(
        &mut self,
        conn: ConnId,
        channel: &ChannelName,
        write: &StateWrite,
        mut expected: Expected,
        now: Millis,
    ) -> Result<(ChannelKey, StateVersion, Frame), CoreError> {
        self.require(Capability::State)?;
        let kind = self.check_name(channel)?;
        if channel.is_resource_feed() {
            return Err(CoreError::Forbidden(
                "resource: channels carry server changes only".into(),
            )); // STATE-11
        }
        self.authorize(conn, Right::State, channel)?; // CHAN-40
        let (key, user) = self.subscribed_key(conn, channel)?;
        if self.fault(Fault::AcceptStaleCas) {
            expected.version = None;
        }
        if self.fault(Fault::IgnoreExpectedEpoch) {
            expected.epoch = None;
        }
        // STATE-34: the announced bound (itself within max_frame_bytes - 1024, LIMIT-12).
        let limits = self.config.limits;
        let mut max = limits
            .max_state_bytes
            .min(limits.max_frame_bytes.saturating_sub(SNAPSHOT_HEADROOM));
        if self.fault(Fault::StateLimitOffByOne) {
            max = max.saturating_sub(1);
        }
        let mut event = |v: &StateVersion| frame_of(&event_of(channel, write, v, &user, now));
        let (version, frame) = self
            .engine
            .write_state(&key, write, &expected, max as usize, &mut event)
            .map_err(|e| match e {
                // The engine knows the bound, not its name.
                CoreError::LimitExceeded { .. } => CoreError::LimitExceeded {
                    limit: "max_state_bytes",
                },
                e => e,
            })?;
        if kind == ChannelKind::Presence {
            self.engine.touch_member(&key, &user, now); // PRES-24
        }
        Ok((key, version, frame))
    }

    /// `state:ack` to the writer first (STATE-14, STATE-16).
    fn ack(
        &self,
        conn: ConnId,
        id: Option<chorus_protocol::RequestId>,
        channel: &ChannelName,
        v: &StateVersion,
        out: &mut Outbox,
    ) {
        let ack = StateAck {
            id,
            channel: channel.clone(),
            version: v.version,
            epoch: v.epoch.clone(),
        };
        out.send(conn, &ServerMessage::StateAck(ack));
    }

    /// The server state frame to every subscriber, the writer included (STATE-15).
    fn fan_out_state(&mut self, key: &ChannelKey, writer: ConnId, frame: &Frame, out: &mut Outbox) {
        let except = self
            .fault(Fault::StateNoBroadcastToWriter)
            .then_some(writer);
        self.fan_out(key, frame, except, out);
    }
}

/// The event announcing `write` at version `v` (STATE-15).
fn event_of(
    channel: &ChannelName,
    write: &StateWrite,
    v: &StateVersion,
    from: &UserId,
    ts: Millis,
) -> ServerMessage {
    let (channel, version, epoch, from) = (
        channel.clone(),
        v.version,
        v.epoch.clone(),
        Some(from.clone()),
    );
    match write {
        StateWrite::Update { key, value } => ServerMessage::StateUpdate(StateUpdated {
            channel,
            key: key.clone(),
            value: value.clone(),
            version,
            epoch,
            from,
            ts,
        }),
        StateWrite::Merge { data } => ServerMessage::StateMerge(StateMerged {
            channel,
            data: data.clone(),
            version,
            epoch,
            from,
            ts,
        }),
        StateWrite::Delete { key } => ServerMessage::StateDelete(StateDeleted {
            channel,
            key: key.clone(),
            version,
            epoch,
            from,
            ts,
        }),
    }
}

/// The state version each connection was last sent in a snapshot, by channel. In a cluster
/// a write's `state:*` frame can reach this node after a snapshot taken here already holds
/// the write (it was in flight on the bus, or published just after the write): such a
/// frame is not sent to that connection, which gets exactly the versions after its
/// snapshot (STATE-22, STATE-23 across nodes). One process never sends one.
#[derive(Debug, Default)]
pub(super) struct Snapshots(HashMap<ChannelKey, HashMap<ConnId, StateVersion>>);

impl Snapshots {
    /// `conn` was sent the snapshot at `version` of `key`.
    pub fn note(&mut self, key: &ChannelKey, conn: ConnId, version: StateVersion) {
        self.0.entry(key.clone()).or_default().insert(conn, version);
    }

    /// `conn` left `key`.
    pub fn forget(&mut self, key: &ChannelKey, conn: ConnId) {
        if let Some(by_conn) = self.0.get_mut(key) {
            by_conn.remove(&conn);
            if by_conn.is_empty() {
                self.0.remove(key);
            }
        }
    }

    /// The snapshots sent on `key`, when `frame` is a state frame: `(its version, them)`.
    pub fn against<'a>(
        &'a self,
        key: &ChannelKey,
        frame: &str,
    ) -> Option<(StateVersion, &'a HashMap<ConnId, StateVersion>)> {
        let by_conn = self.0.get(key)?;
        if !frame.starts_with(r#"{"type":"state:"#) {
            return None;
        }
        // Another node's frame: read back for its version, ignoring the other members.
        let version: StateVersion = serde_json::from_str(frame).ok()?;
        Some((version, by_conn))
    }
}

/// Whether a connection sent the snapshot `seen` already holds the write of `frame`.
pub(super) fn held_by(seen: Option<&StateVersion>, frame: &StateVersion) -> bool {
    seen.is_some_and(|s| s.epoch == frame.epoch && s.version >= frame.version)
}

/// The compare-and-set conditions of a write (STATE-19, STATE-32).
fn expect(version: Option<u64>, epoch: Option<chorus_protocol::Epoch>) -> Expected {
    Expected { version, epoch }
}

/// STATE-8a: keys of 1 to 256 characters.
fn check_key(key: &str) -> Result<(), CoreError> {
    let n = key.chars().count();
    if n == 0 || n > MAX_KEY_CHARS {
        return Err(CoreError::InvalidMessage(format!(
            "state key must be 1 to {MAX_KEY_CHARS} characters"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::testkit::{without, Driver, T0};
    use super::super::CoreConfig;

    fn two_subscribers(d: &mut Driver) -> (u64, u64, serde_json::Value) {
        let (a, b) = (d.connect("ann"), d.connect("bob"));
        let epoch = d.subscribe(a, "doc")["position"]["epoch"].clone();
        d.subscribe(b, "doc");
        (a, b, epoch)
    }

    #[test]
    fn writer_gets_ack_then_the_frame_like_everyone() {
        let mut d = Driver::new();
        let (a, b, epoch) = two_subscribers(&mut d);
        let got = d.ask(
            a,
            json!({"type": "state:update", "id": 31, "channel": "doc", "key": "title", "value": "T"}),
        );
        let update = json!({"type": "state:update", "channel": "doc", "key": "title",
                            "value": "T", "version": 1, "epoch": epoch, "from": "ann", "ts": T0});
        assert_eq!(
            got,
            vec![
                json!({"type": "state:ack", "id": 31, "channel": "doc", "version": 1, "epoch": epoch}),
                update.clone()
            ]
        );
        assert_eq!(d.frames(b), vec![update]);
    }

    #[test]
    fn versions_count_every_write_and_merge_is_shallow() {
        let mut d = Driver::new();
        let (a, _, _) = two_subscribers(&mut d);
        d.send(
            a,
            json!({"type": "state:merge", "channel": "doc", "data": {"o": {"x": 1}, "k": 1}}),
        );
        d.send(
            a,
            json!({"type": "state:merge", "channel": "doc", "data": {"o": {"y": 2}}}),
        );
        d.send(
            a,
            json!({"type": "state:delete", "channel": "doc", "key": "missing"}),
        );
        d.send(
            a,
            json!({"type": "state:update", "channel": "doc", "key": "n", "value": null}),
        );
        d.frames(a);
        let got = d.ask(
            a,
            json!({"type": "state:sync:request", "id": 1, "channel": "doc"}),
        );
        assert_eq!(
            without(got[0].clone(), &["epoch"]),
            json!({"type": "state:sync", "id": 1, "channel": "doc",
                   "data": {"o": {"y": 2}, "k": 1, "n": null}, "version": 4})
        );
    }

    #[test]
    fn stale_expected_version_conflicts_and_writes_nothing() {
        let mut d = Driver::new();
        let (a, b, epoch) = two_subscribers(&mut d);
        let w = |v: u64| {
            json!({"type": "state:merge", "id": 34, "channel": "doc",
                                "data": {"x": v}, "expected_version": v})
        };
        assert_eq!(d.ask(a, w(0))[0]["version"], 1);
        d.frames(b);
        let got = d.ask(b, w(0));
        assert_eq!(
            without(got[0].clone(), &["message"]),
            json!({"type": "error", "id": 34, "code": "conflict", "channel": "doc",
                   "current": {"version": 1, "epoch": epoch}})
        );
        d.assert_silent(a);
        assert_eq!(d.ask(b, w(1))[0]["version"], 2);
    }

    #[test]
    fn subscribe_with_state_carries_the_snapshot() {
        let mut d = Driver::new();
        let (a, _, epoch) = two_subscribers(&mut d);
        d.send(
            a,
            json!({"type": "state:update", "channel": "doc", "key": "k", "value": [1]}),
        );
        let c = d.connect("cid");
        let got = d.ask(
            c,
            json!({"type": "subscribe", "channel": "doc", "state": true}),
        );
        assert_eq!(
            got[0]["state"],
            json!({"data": {"k": [1]}, "version": 1, "epoch": epoch})
        );
        assert!(d.subscribe(c, "other").get("state").is_none());
    }

    #[test]
    fn writes_need_a_subscription_and_a_sane_key() {
        let mut d = Driver::new();
        let a = d.connect("ann");
        let got = d.ask(
            a,
            json!({"type": "state:update", "channel": "doc", "key": "k", "value": 1}),
        );
        assert_eq!(got[0]["code"], "not_subscribed");
        d.subscribe(a, "doc");
        let got = d.ask(
            a,
            json!({"type": "state:update", "channel": "doc", "key": "", "value": 1}),
        );
        assert_eq!(got[0]["code"], "invalid_message");
        d.subscribe(a, "resource:post");
        let got = d.ask(
            a,
            json!({"type": "state:update", "channel": "resource:post", "key": "k", "value": 1}),
        );
        assert_eq!(got[0]["code"], "forbidden");
    }

    #[test]
    fn state_may_not_outgrow_max_state_bytes() {
        let mut config = CoreConfig::default();
        config.limits.max_state_bytes = 20;
        let mut d = Driver::with_config(config);
        let a = d.connect("ann");
        d.subscribe(a, "doc");
        // {"k":"0123456789"} is 18 bytes: fits; one more key does not.
        let got = d.ask(
            a,
            json!({"type": "state:update", "channel": "doc", "key": "k", "value": "0123456789"}),
        );
        assert_eq!(got[0]["type"], "state:ack");
        let got = d.ask(
            a,
            json!({"type": "state:update", "channel": "doc", "key": "j", "value": 1}),
        );
        assert_eq!(
            (&got[0]["code"], &got[0]["limit"]),
            (&json!("limit_exceeded"), &json!("max_state_bytes"))
        );
    }
}

#[cfg(test)]
mod snapshot_tests {
    use std::sync::Arc;

    use chorus_protocol::{ChannelName, Epoch, StateVersion};

    use super::{held_by, ChannelKey, Snapshots};

    fn key() -> ChannelKey {
        ChannelKey {
            tenant: Arc::from(""),
            name: ChannelName("doc".into()),
        }
    }

    fn v(epoch: &str, version: u64) -> StateVersion {
        StateVersion {
            version,
            epoch: Epoch(epoch.into()),
        }
    }

    #[test]
    fn a_state_frame_the_snapshot_holds_is_held_back_and_a_later_one_is_not() {
        let mut s = Snapshots::default();
        s.note(&key(), 7, v("e-1", 5));
        let frame = r#"{"type":"state:update","channel":"doc","key":"x","value":{"version":99},"version":5,"epoch":"e-1","from":"ann","ts":1}"#;
        let (version, seen) = s.against(&key(), frame).unwrap();
        assert_eq!(
            version,
            v("e-1", 5),
            "the frame's own version, not one in its value"
        );
        assert!(held_by(seen.get(&7), &version));
        assert!(
            !held_by(seen.get(&8), &version),
            "another connection gets it"
        );
        assert!(!held_by(seen.get(&7), &v("e-1", 6)));
        assert!(
            !held_by(seen.get(&7), &v("e-2", 1)),
            "another epoch is never held"
        );
        let message = r#"{"type":"message","channel":"doc","event":"e","data":1,"ts":1,"seq":5}"#;
        assert!(s.against(&key(), message).is_none());
        s.forget(&key(), 7);
        assert!(s.against(&key(), frame).is_none(), "nothing noted any more");
    }
}
