//! Presence on `presence-` channels: members keyed by user, one lease per connection, the
//! grace period (spec: presence.md).

use chorus_protocol::{
    Capability, ChannelKind, Member, Millis, PresenceAck, PresenceList, PresenceRequest,
    PresenceUpdate, PresenceUpdated, Right, ServerMessage, UserJoined, UserLeft,
};

use super::engine::{ChannelKey, LeaseTaken, Released};
use super::faults::Fault;
use super::limits::check_size;
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
        &mut self,
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
    pub(super) fn presence_snapshot(&mut self, key: &ChannelKey, conn: ConnId) -> Vec<Member> {
        let mut members = self.engine.snapshot_members(key, conn);
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
        match self.engine.release_lease(key, conn, user, grace_until) {
            Released::Left { user_id, last_seen } => {
                self.member_left(key, &user_id, last_seen, out);
            }
            Released::Kept if graceful && self.fault(Fault::FirstTabLeaves) => {
                let last_seen = self.engine.member(key, user).map_or(now, |m| m.last_seen);
                let left = ServerMessage::UserLeft(UserLeft {
                    channel: key.name.clone(),
                    user_id: user.to_owned(),
                    last_seen,
                });
                self.fan_out(key, &frame_of(&left), None, out);
            }
            _ => {}
        }
    }

    /// A member is gone: its cursor goes (CURS-12), the others learn it (PRES-11), and an
    /// emptied non-persistent room is discarded (ROOM-17).
    fn member_left(&mut self, key: &ChannelKey, user: &str, last_seen: Millis, out: &mut Outbox) {
        if !self.fault(Fault::CursorKeptAfterLeave) {
            self.cursors.forget_user(key, user);
            self.engine.forget_cursor(key, user);
        }
        if !self.fault(Fault::SkipUserLeft) {
            let left = ServerMessage::UserLeft(UserLeft {
                channel: key.name.clone(),
                user_id: user.to_owned(),
                last_seen,
            });
            self.fan_out(key, &frame_of(&left), None, out);
        }
        // A store failure here leaves the room in memory; it is retried at the next leave.
        let _ = self.discard_if_empty(key, out);
    }

    /// Grace leases that ran out (PRES-29).
    pub(super) fn expire_grace(&mut self, now: Millis, out: &mut Outbox) {
        for gone in self.engine.expire_grace(now) {
            self.member_left(&gone.key, &gone.user_id, gone.last_seen, out);
        }
    }

    /// The checks shared by `presence` and `presence:update` (VER-6a, PRES-22a, PRES-22b, PRES-23), with
    /// the right the request needs, if any (CHAN-39).
    fn presence_key(
        &self,
        conn: ConnId,
        channel: &chorus_protocol::ChannelName,
        right: Option<Right>,
    ) -> Result<(ChannelKey, String), CoreError> {
        self.require(Capability::Presence)?;
        if self.check_name(channel)? != ChannelKind::Presence {
            return Err(CoreError::InvalidChannel(format!(
                "{channel} is not a presence channel"
            )));
        }
        if let Some(right) = right {
            self.authorize(conn, right, channel)?;
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
        let (key, _) = self.presence_key(conn, &req.channel, None)?;
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
        if !self.fault(Fault::PrecedenceKindBeforeShape) {
            check_update(&req)?; // ERR-12: shape first
        }
        let (key, user) = self.presence_key(conn, &req.channel, Some(Right::Presence))?; // CHAN-39
        check_update(&req)?;
        if !self.fault(Fault::PresenceDataUnbounded) {
            let max = self.config.limits.max_presence_data_bytes;
            check_size(req.data.as_ref(), max, "max_presence_data_bytes")?; // PRES-34
        }
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

/// PRES-15: something to change, `data` an object (`offline` does not decode).
fn check_update(req: &PresenceUpdate) -> Result<(), CoreError> {
    if req.status.is_none() && req.data.is_none() {
        return Err(CoreError::InvalidMessage(
            "presence:update needs status or data".into(),
        ));
    }
    if req.data.as_ref().is_some_and(|d| !d.is_object()) {
        return Err(CoreError::InvalidMessage(
            "presence data must be an object".into(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::testkit::{Driver, T0};
    use super::super::CoreConfig;

    fn member(user: &str, joined_at: u64, last_seen: u64) -> serde_json::Value {
        json!({"user_id": user, "profile": {"name": user}, "status": "online", "data": {},
               "joined_at": joined_at, "last_seen": last_seen})
    }

    #[test]
    fn snapshot_holds_everyone_self_included_in_join_order() {
        let mut d = Driver::new();
        let b = d.connect("bob");
        d.subscribe(b, "presence-doc");
        d.advance(10);
        let a = d.connect("ann");
        let sub = d.subscribe(a, "presence-doc");
        assert_eq!(
            sub["presence"],
            json!([member("bob", T0, T0), member("ann", T0 + 10, T0 + 10)])
        );
        assert_eq!(
            d.frames(b),
            vec![json!({"type": "user:joined", "channel": "presence-doc",
                        "member": member("ann", T0 + 10, T0 + 10)})]
        );
        d.assert_silent(a);
    }

    #[test]
    fn second_tab_does_not_announce_join_or_leave() {
        let mut d = Driver::new();
        let b = d.connect("bob");
        d.subscribe(b, "presence-doc");
        let (a1, a2) = (d.connect("ann"), d.connect("ann"));
        d.subscribe(a1, "presence-doc");
        assert_eq!(d.types(b), ["user:joined"]);
        let sub = d.subscribe(a2, "presence-doc");
        assert_eq!(
            sub["presence"].as_array().unwrap().len(),
            2,
            "one member per user"
        );
        d.assert_silent(b);
        d.send(
            a1,
            json!({"type": "unsubscribe", "channel": "presence-doc"}),
        );
        d.assert_silent(b);
        d.disconnect(a2, true);
        assert_eq!(
            d.frames(b),
            vec![
                json!({"type": "user:left", "channel": "presence-doc", "user_id": "ann",
                        "last_seen": T0})
            ]
        );
    }

    #[test]
    fn unsubscriber_gets_only_unsubscribed() {
        let mut d = Driver::new();
        let (a, b) = (d.connect("ann"), d.connect("bob"));
        d.subscribe(a, "presence-doc");
        d.subscribe(b, "presence-doc");
        d.frames(a);
        assert_eq!(
            d.ask(b, json!({"type": "unsubscribe", "channel": "presence-doc"}))
                .len(),
            1
        );
        assert_eq!(d.types(a), ["user:left"]);
    }

    #[test]
    fn abrupt_end_within_grace_is_taken_over_silently() {
        let mut d = Driver::new();
        let b = d.connect("bob");
        d.subscribe(b, "presence-doc");
        let a1 = d.connect("ann");
        d.subscribe(a1, "presence-doc");
        d.send(
            a1,
            json!({"type": "presence:update", "channel": "presence-doc", "status": "busy"}),
        );
        d.frames(b);
        d.disconnect(a1, false);
        d.advance(4_000);
        d.assert_silent(b);
        let a2 = d.connect("ann");
        let sub = d.subscribe(a2, "presence-doc");
        let ann = &sub["presence"][0];
        assert_eq!(ann["user_id"], "ann", "(joined_at, user_id) order");
        assert_eq!(ann["status"], "busy", "member kept through takeover");
        assert_eq!(ann["joined_at"], T0);
        d.advance(10_000);
        d.assert_silent(b);
        d.disconnect(a2, false);
        d.advance(4_999);
        d.assert_silent(b);
        d.advance(1);
        assert_eq!(d.types(b), ["user:left"]);
    }

    #[test]
    fn graceful_close_leaves_at_once() {
        let mut d = Driver::new();
        let (a, b) = (d.connect("ann"), d.connect("bob"));
        d.subscribe(b, "presence-doc");
        d.subscribe(a, "presence-doc");
        d.frames(b);
        d.disconnect(a, true);
        assert_eq!(d.types(b), ["user:left"]);
    }

    #[test]
    fn grace_members_stay_in_snapshots_and_count() {
        let mut d = Driver::new();
        let a = d.connect("ann");
        d.subscribe(a, "presence-doc");
        d.disconnect(a, false);
        let b = d.connect("bob");
        let sub = d.subscribe(b, "presence-doc");
        assert_eq!(sub["presence"][0]["user_id"], "ann");
        let users = d.core.channel_users("", &"presence-doc".into()).unwrap();
        assert_eq!(users.count, 2);
    }

    #[test]
    fn update_acks_then_reaches_everyone_including_the_updater() {
        let mut d = Driver::new();
        let (a1, a2, b) = (d.connect("ann"), d.connect("ann"), d.connect("bob"));
        for c in [a1, a2, b] {
            d.subscribe(c, "presence-doc");
        }
        for c in [a1, a2, b] {
            d.frames(c);
        }
        d.advance(5);
        let got = d.ask(
            a1,
            json!({"type": "presence:update", "id": 7, "channel": "presence-doc",
                   "status": "away", "data": {"tool": "pen"}}),
        );
        let mut ann = member("ann", T0, T0 + 5);
        ann["status"] = json!("away");
        ann["data"] = json!({"tool": "pen"});
        let updated = json!({"type": "presence:updated", "channel": "presence-doc", "member": ann});
        assert_eq!(
            got,
            vec![
                json!({"type": "presence:ack", "id": 7, "channel": "presence-doc"}),
                updated.clone()
            ]
        );
        assert_eq!(d.frames(a2), vec![updated.clone()]);
        assert_eq!(d.frames(b), vec![updated]);
    }

    #[test]
    fn empty_updates_are_invalid() {
        let mut d = Driver::new();
        let a = d.connect("ann");
        d.subscribe(a, "presence-doc");
        for bad in [
            // `offline` does not decode at all (PRES-15): see chorus-protocol's tests.
            json!({"type": "presence:update", "id": 8, "channel": "presence-doc"}),
            json!({"type": "presence:update", "id": 8, "channel": "presence-doc", "data": [1]}),
        ] {
            let got = d.ask(a, bad);
            assert_eq!((got.len(), &got[0]["code"]), (1, &json!("invalid_message")));
            assert_eq!(got[0]["channel"], "presence-doc");
        }
        let list = d.ask(
            a,
            json!({"type": "presence", "id": 1, "channel": "presence-doc"}),
        );
        assert_eq!(list[0]["members"][0]["status"], "online");
    }

    #[test]
    fn presence_requests_need_a_subscribed_presence_channel() {
        let mut d = Driver::new();
        let a = d.connect("ann");
        d.subscribe(a, "chat");
        let got = d.ask(a, json!({"type": "presence", "id": 1, "channel": "chat"}));
        assert_eq!(got[0]["code"], "invalid_channel");
        let got = d.ask(
            a,
            json!({"type": "presence", "id": 1, "channel": "presence-x"}),
        );
        assert_eq!(got[0]["code"], "not_subscribed");
    }

    #[test]
    fn last_seen_advances_silently() {
        let mut d = Driver::new();
        let (a, b) = (d.connect("ann"), d.connect("bob"));
        d.subscribe(a, "presence-doc");
        d.subscribe(b, "presence-doc");
        d.frames(a);
        d.advance(100);
        d.send(
            a,
            json!({"type": "cursor:update", "channel": "presence-doc", "x": 1, "y": 2}),
        );
        d.advance(100);
        assert_eq!(
            d.types(b),
            ["cursor:moved"],
            "no presence frame for last_seen"
        );
        let list = d.ask(b, json!({"type": "presence", "channel": "presence-doc"}));
        assert_eq!(list[0]["members"][0]["last_seen"], T0 + 100);
    }

    #[test]
    fn max_presence_members_spares_existing_members() {
        let mut config = CoreConfig::default();
        config.limits.max_presence_members = 1;
        let mut d = Driver::with_config(config);
        let (a1, a2, b) = (d.connect("ann"), d.connect("ann"), d.connect("bob"));
        d.subscribe(a1, "presence-doc");
        d.subscribe(a2, "presence-doc");
        let got = d.ask(b, json!({"type": "subscribe", "channel": "presence-doc"}));
        assert_eq!(got[0]["limit"], "max_presence_members");
        d.assert_silent(a1);
    }
}
