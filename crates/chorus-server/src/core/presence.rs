//! Presence on `presence-` channels: members keyed by user, one lease per connection, the
//! grace period (spec: presence.md).

use chorus_protocol::{
    Capability, ChannelKind, Member, Millis, PresenceAck, PresenceList, PresenceRequest,
    PresenceStatus, PresenceUpdate, PresenceUpdated, ServerMessage, UserJoined, UserLeft,
};

use super::engine::{ChannelKey, LeaseTaken, Released};
use super::faults::Fault;
use super::{frame_of, ConnId, Core, CoreError, Engine, Outbox};

impl<E: Engine> Core<E> {
    /// Gives a subscribing connection its lease (PRES-8, PRES-9, PRES-28).
    pub(super) fn take_lease(&mut self, key: &ChannelKey, conn: ConnId, now: Millis) -> LeaseTaken {
        let Some(c) = self.conns.get(&conn) else {
            return LeaseTaken::Added;
        };
        let (user, profile) = (c.session.user_id.clone(), c.session.profile.clone());
        self.engine.take_lease(key, conn, &user, &profile, now)
    }

    /// `user:joined` to every other subscriber (PRES-8).
    pub(super) fn announce_join(
        &self,
        key: &ChannelKey,
        conn: ConnId,
        member: Member,
        out: &mut Outbox,
    ) {
        let joined = ServerMessage::UserJoined(UserJoined {
            channel: key.name.clone(),
            member,
        });
        self.fan_out(key, &frame_of(&joined), Some(conn), out);
    }

    /// `subscribed.presence`: every member, self included (PRES-5).
    pub(super) fn presence_snapshot(&self, key: &ChannelKey, conn: ConnId) -> Vec<Member> {
        let mut members = self.engine.members(key);
        if self.fault(Fault::PresenceNoSnapshotSelf) {
            if let Some(c) = self.conns.get(&conn) {
                members.retain(|m| m.user_id != c.session.user_id);
            }
        }
        members
    }

    /// Releases a lease now or into grace; announces the member's departure when that was
    /// its last lease (PRES-11, PRES-26, PRES-27).
    pub(super) fn release_lease(
        &mut self,
        key: &ChannelKey,
        conn: ConnId,
        user: &str,
        graceful: bool,
        now: Millis,
        out: &mut Outbox,
    ) {
        let grace = self.config.limits.presence_grace_ms;
        let grace_until = (!graceful && grace > 0).then(|| now.saturating_add(grace));
        if let Released::Left { user_id, last_seen } =
            self.engine.release_lease(key, conn, user, grace_until)
        {
            self.member_left(key, &user_id, last_seen, out);
        }
    }

    /// A member is gone: its cursor goes (CURS-12), the others learn it (PRES-11), and an
    /// emptied non-persistent room is discarded (ROOM-17).
    fn member_left(&mut self, key: &ChannelKey, user: &str, last_seen: Millis, out: &mut Outbox) {
        self.cursors.forget_user(key, user);
        if !self.fault(Fault::SkipUserLeft) {
            let left = ServerMessage::UserLeft(UserLeft {
                channel: key.name.clone(),
                user_id: user.to_owned(),
                last_seen,
            });
            self.fan_out(key, &frame_of(&left), None, out);
        }
        // A store failure here leaves the room in memory; it is retried at the next leave.
        let _ = self.discard_if_empty(key);
    }

    /// Grace leases that ran out (PRES-29).
    pub(super) fn expire_grace(&mut self, now: Millis, out: &mut Outbox) {
        for gone in self.engine.expire_grace(now) {
            self.member_left(&gone.key, &gone.user_id, gone.last_seen, out);
        }
    }

    /// The checks shared by `presence` and `presence:update` (VER-6, PRES-22, PRES-23).
    fn presence_key(
        &self,
        conn: ConnId,
        channel: &chorus_protocol::ChannelName,
    ) -> Result<(ChannelKey, String), CoreError> {
        self.require(Capability::Presence)?;
        if self.check_name(channel)? != ChannelKind::Presence {
            return Err(CoreError::InvalidChannel(format!(
                "{channel} is not a presence channel"
            )));
        }
        self.subscribed_key(conn, channel)
    }

    /// `presence` -> `presence:list` (PRES-21).
    pub(super) fn presence_list(
        &mut self,
        conn: ConnId,
        req: PresenceRequest,
        out: &mut Outbox,
    ) -> Result<(), CoreError> {
        let (key, _) = self.presence_key(conn, &req.channel)?;
        let list = PresenceList {
            id: req.id,
            channel: req.channel,
            members: self.engine.members(&key),
        };
        out.send(conn, &ServerMessage::PresenceList(list));
        Ok(())
    }

    /// `presence:update` -> `presence:ack`, then `presence:updated` to everyone
    /// (PRES-15 to PRES-19).
    pub(super) fn presence_update(
        &mut self,
        conn: ConnId,
        req: PresenceUpdate,
        now: Millis,
        out: &mut Outbox,
    ) -> Result<(), CoreError> {
        let (key, user) = self.presence_key(conn, &req.channel)?;
        check_update(&req)?;
        let member = self
            .engine
            .update_member(&key, &user, req.status, req.data, now)
            .ok_or(CoreError::NotSubscribed)?;
        let ack = PresenceAck {
            id: req.id,
            channel: req.channel.clone(),
        };
        out.send(conn, &ServerMessage::PresenceAck(ack));
        if self.fault(Fault::UpdateAsLeaveJoin) {
            let left = ServerMessage::UserLeft(UserLeft {
                channel: req.channel.clone(),
                user_id: user,
                last_seen: member.last_seen,
            });
            self.fan_out(&key, &frame_of(&left), None, out);
            let joined = ServerMessage::UserJoined(UserJoined {
                channel: req.channel,
                member,
            });
            self.fan_out(&key, &frame_of(&joined), None, out);
            return Ok(());
        }
        let updated = ServerMessage::PresenceUpdated(PresenceUpdated {
            channel: req.channel,
            member,
        });
        self.fan_out(&key, &frame_of(&updated), None, out);
        Ok(())
    }
}

/// PRES-15: something to change, no `offline`, `data` an object.
fn check_update(req: &PresenceUpdate) -> Result<(), CoreError> {
    if req.status.is_none() && req.data.is_none() {
        return Err(CoreError::InvalidMessage(
            "presence:update needs status or data".into(),
        ));
    }
    if req.status == Some(PresenceStatus::Offline) {
        return Err(CoreError::InvalidMessage(
            "status \"offline\" cannot be set; unsubscribe to leave".into(),
        ));
    }
    if req.data.as_ref().is_some_and(|d| !d.is_object()) {
        return Err(CoreError::InvalidMessage(
            "presence data must be an object".into(),
        ));
    }
    Ok(())
}
