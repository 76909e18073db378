//! Shared versioned state of a channel (spec: state.md).

use chorus_protocol::{
    Capability, ChannelKind, ChannelName, Millis, ServerMessage, StateAck, StateDelete,
    StateDeleted, StateMerge, StateMerged, StateSync, StateSyncRequest, StateUpdate, StateUpdated,
    StateVersion,
};

use super::engine::{ChannelKey, StateWrite};
use super::faults::Fault;
use super::{frame_of, ConnId, Core, CoreError, Engine, Outbox};

/// Longest state key in characters (STATE-8).
const MAX_KEY_CHARS: usize = 256;
/// Room left in a frame around a full snapshot (STATE-9).
const SNAPSHOT_HEADROOM: u64 = 4096;

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
        let (key, user, v) = self.write(conn, &req.channel, &write, req.expected_version, now)?;
        self.ack(conn, req.id, &req.channel, &v, out);
        let StateWrite::Update { key: k, value } = write else {
            return Ok(());
        };
        let msg = ServerMessage::StateUpdate(StateUpdated {
            channel: req.channel,
            key: k,
            value,
            version: v.version,
            epoch: v.epoch,
            from: Some(user),
            ts: now,
        });
        self.fan_out_state(&key, conn, &msg, out);
        Ok(())
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
        let (key, user, v) = self.write(conn, &req.channel, &write, req.expected_version, now)?;
        self.ack(conn, req.id, &req.channel, &v, out);
        let StateWrite::Merge { data } = write else {
            return Ok(());
        };
        let msg = ServerMessage::StateMerge(StateMerged {
            channel: req.channel,
            data,
            version: v.version,
            epoch: v.epoch,
            from: Some(user),
            ts: now,
        });
        self.fan_out_state(&key, conn, &msg, out);
        Ok(())
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
        let write = StateWrite::Delete {
            key: req.key.clone(),
        };
        let (key, user, v) = self.write(conn, &req.channel, &write, req.expected_version, now)?;
        self.ack(conn, req.id, &req.channel, &v, out);
        let msg = ServerMessage::StateDelete(StateDeleted {
            channel: req.channel,
            key: req.key,
            version: v.version,
            epoch: v.epoch,
            from: Some(user),
            ts: now,
        });
        self.fan_out_state(&key, conn, &msg, out);
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

    /// The checks and the write shared by the three writes (STATE-3, STATE-9 to STATE-12,
    /// STATE-19, STATE-20).
    fn write(
        &mut self,
        conn: ConnId,
        channel: &ChannelName,
        write: &StateWrite,
        expected: Option<u64>,
        now: Millis,
    ) -> Result<(ChannelKey, String, StateVersion), CoreError> {
        self.require(Capability::State)?;
        let kind = self.check_name(channel)?;
        if channel.is_resource_feed() {
            return Err(CoreError::Forbidden(
                "resource: channels carry server changes only".into(),
            )); // STATE-11
        }
        let (key, user) = self.subscribed_key(conn, channel)?;
        let expected = expected.filter(|_| !self.fault(Fault::AcceptStaleCas));
        let max = self
            .config
            .limits
            .max_frame_bytes
            .saturating_sub(SNAPSHOT_HEADROOM) as usize;
        let version = self.engine.write_state(&key, write, expected, max)?;
        if kind == ChannelKind::Presence {
            self.engine.touch_member(&key, &user, now); // PRES-24
        }
        Ok((key, user, version))
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
    fn fan_out_state(
        &self,
        key: &ChannelKey,
        writer: ConnId,
        msg: &ServerMessage,
        out: &mut Outbox,
    ) {
        let except = self
            .fault(Fault::StateNoBroadcastToWriter)
            .then_some(writer);
        self.fan_out(key, &frame_of(msg), except, out);
    }
}

/// STATE-8: keys of 1 to 256 characters.
fn check_key(key: &str) -> Result<(), CoreError> {
    let n = key.chars().count();
    if n == 0 || n > MAX_KEY_CHARS {
        return Err(CoreError::InvalidMessage(format!(
            "state key must be 1 to {MAX_KEY_CHARS} characters"
        )));
    }
    Ok(())
}
