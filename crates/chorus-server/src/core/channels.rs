//! Subscribing, unsubscribing and broadcasting (spec: channels.md).

use chorus_protocol::{
    Broadcast, BroadcastAck, Capability, ChannelKind, ChannelName, Message, Millis, PresenceList,
    Right, ServerMessage, StreamItem, StreamPosition, Subscribe, Subscribed, Unsubscribe,
    Unsubscribed,
};

use super::dedup::{check_message_id, PublishKey, Published};
use super::engine::{ChannelKey, LeaseTaken};
use super::faults::Fault;
use super::limits::grants_match;
use super::rooms::{check_room_shape, Admission};
use super::{ConnId, Core, CoreError, Engine, Frame, Outbox};

/// Longest `event` in characters (CHAN-21).
const MAX_EVENT_CHARS: usize = 128;

impl<E: Engine> Core<E> {
    /// LIMIT-18: whether subscribing to `key` would create one channel more than its
    /// tenant may hold.
    pub(super) fn channel_budget_spent(&self, key: &ChannelKey) -> bool {
        let channels = self.engine.tenant_channels(&key.tenant) as u64;
        channels >= self.config.limits.max_channels && !self.engine.holds_channel(key)
    }

    /// `subscribe`, checked in the order of ERR-12: shape, capability, name, kind, grant,
    /// `already_subscribed`, `max_subscriptions`, then the presence channel's checks.
    pub(super) fn subscribe(
        &mut self,
        conn: ConnId,
        req: Subscribe,
        now: Millis,
        out: &mut Outbox,
    ) -> Result<(), CoreError> {
        if let Some(opts) = &req.room {
            check_room_shape(opts)?; // ROOM-7a to ROOM-7e: shape comes first
        }
        self.check_subscribe_capabilities(&req)?;
        let kind = self.check_name(&req.channel)?;
        if (req.room.is_some() || req.password.is_some()) && kind != ChannelKind::Presence {
            return Err(CoreError::InvalidChannel(
                "room options need a presence- channel".into(),
            )); // ROOM-2
        }
        let c = self.connection(conn)?;
        let prefix_granted = self.fault(Fault::GrantPrefixMatch)
            && c.session
                .grants
                .iter()
                .any(|g| req.channel.as_str().starts_with(g.as_str()));
        let private_ok = grants_match(&c.session.grants, &req.channel)
            || prefix_granted
            || self.fault(Fault::PrivateWithoutGrant);
        let skip_grant =
            kind == ChannelKind::Presence && self.fault(Fault::PrivatePresenceWithoutGrant);
        if req.channel.needs_grant() && !private_ok && !skip_grant {
            return Err(CoreError::Forbidden(format!(
                "no grant matches {}",
                req.channel
            ))); // CHAN-5, CHAN-43
        }
        self.authorize(conn, Right::Subscribe, &req.channel)?; // CHAN-37
        let member =
            kind == ChannelKind::Presence && self.may(&c.session, Right::Presence, &req.channel); // CHAN-39
        let replay_allowed = self.may(&c.session, Right::History, &req.channel); // CHAN-41
        if c.subscriptions.contains(&req.channel) {
            return Err(CoreError::AlreadySubscribed); // CHAN-12
        }
        let extra = usize::from(self.fault(Fault::MaxSubscriptionsOffByOne));
        if c.subscriptions.len() >= self.config.limits.max_subscriptions as usize + extra {
            return Err(CoreError::LimitExceeded {
                limit: "max_subscriptions",
            }); // CHAN-13
        }
        let key = self.key(&c.tenant, &req.channel);
        let user = c.session.user_id.clone();
        if self.channel_budget_spent(&key) {
            return Err(CoreError::LimitExceeded {
                limit: "max_channels",
            }); // LIMIT-18
        }
        let admission = match kind {
            ChannelKind::Presence => Some(self.admit(conn, &key, &req, &user, now)?),
            _ => None,
        };
        // Every check passed: from here on the subscribe happens (CHAN-14).
        if let Some(Admission::Create(room) | Admission::Rehash(room)) = admission {
            self.engine.create_room(&key, room)?;
        }
        self.engine.add_subscriber(&key, conn); // CHAN-9: in the fan-out before `subscribed`
        if let Some(c) = self.conns.get_mut(&conn) {
            c.subscriptions.insert(req.channel.clone());
        }
        // A subscriber without the presence right watches the members without being one.
        let joined = member.then(|| self.take_lease(&key, conn, now));
        self.reply_subscribed(conn, &key, kind, &req, replay_allowed, out);
        if let Some(LeaseTaken::Joined(member)) = joined {
            self.announce_join(&key, conn, member, out);
        } else if let Some(LeaseTaken::TookOver) = joined {
            if self.fault(Fault::TakeoverAnnouncesJoin) {
                if let Some(member) = self.engine.member(&key, &user) {
                    self.announce_join(&key, conn, member, out);
                }
            }
        }
        Ok(())
    }

    /// VER-6a to VER-6e, ROOM-9: the capability is read from the members and the name's prefix, before
    /// the name is validated (ERR-12).
    fn check_subscribe_capabilities(&self, req: &Subscribe) -> Result<(), CoreError> {
        let room_options = req.room.is_some() || req.password.is_some();
        if req.channel.kind() == ChannelKind::Presence {
            self.require(Capability::Presence)?;
        }
        if room_options {
            self.require(Capability::Rooms)?;
        }
        if req.since.is_some() {
            self.require(Capability::Recovery)?;
        }
        if req.state == Some(true) {
            self.require(Capability::State)?;
        }
        if req.channel.is_resource_feed() {
            self.require(Capability::DataChange)?;
        }
        Ok(())
    }

    /// `subscribed` with every snapshot, then the recovery replay (HIST-7).
    fn reply_subscribed(
        &mut self,
        conn: ConnId,
        key: &ChannelKey,
        kind: ChannelKind,
        req: &Subscribe,
        replay_allowed: bool,
        out: &mut Outbox,
    ) {
        let position = self.engine.position(key);
        let replay = req.since.as_ref().map(|since| {
            replay_allowed
                .then(|| self.recover(key, since, &position))
                .flatten()
        });
        let presence = kind == ChannelKind::Presence;
        let mut reply = Subscribed {
            id: req.id.clone(),
            channel: req.channel.clone(),
            kind,
            position,
            recovered: replay.as_ref().map(Option::is_some),
            presence: presence.then(|| self.presence_snapshot(key, conn)),
            room: None,
            cursors: None,
            state: (req.state == Some(true)).then(|| self.engine.state(key)),
        };
        if let Some(s) = &reply.state {
            let version = chorus_protocol::StateVersion {
                version: s.version,
                epoch: s.epoch.clone(),
            };
            self.snapshots.note(key, conn, version);
        }
        if presence && self.has(Capability::Rooms) {
            reply.room = self.room_info(key); // ROOM-5
        }
        if presence && self.has(Capability::Cursors) {
            let mut cursors = self.cursor_snapshot(key); // CURS-14
            if self.fault(Fault::CursorSnapshotEmpty) {
                cursors.clear();
            }
            reply.cursors = Some(cursors);
        }
        let late_snapshot = presence && self.fault(Fault::SubscribedBeforeSnapshot);
        let members = if late_snapshot {
            reply.presence.take()
        } else {
            None
        };
        if self.fault(Fault::DropReplyId) {
            reply.id = None;
        }
        out.send(conn, &ServerMessage::Subscribed(reply));
        if let Some(members) = members {
            let list = PresenceList {
                id: None,
                channel: req.channel.clone(),
                members,
            };
            out.send(conn, &ServerMessage::PresenceList(list));
        }
        for frame in replay.flatten().unwrap_or_default() {
            out.frame(conn, frame, false);
        }
    }

    /// The frames to replay after `since`, or `None` when recovery fails (HIST-7, HIST-8).
    fn recover(
        &self,
        key: &ChannelKey,
        since: &StreamPosition,
        position: &StreamPosition,
    ) -> Option<Vec<Frame>> {
        let future_ok = self.fault(Fault::RecoveryAcceptsFutureSeq);
        if since.epoch != position.epoch || (since.seq > position.seq && !future_ok) {
            return None;
        }
        let mut frames = self.engine.replay_after(key, since.seq)?;
        if self.fault(Fault::RecoverySkips) && !frames.is_empty() {
            frames.remove(0);
        }
        Some(frames)
    }

    /// `unsubscribe` (CHAN-15, CHAN-16).
    pub(super) fn unsubscribe(
        &mut self,
        conn: ConnId,
        req: Unsubscribe,
        now: Millis,
        out: &mut Outbox,
    ) -> Result<(), CoreError> {
        self.check_name(&req.channel)?;
        if !self.connection(conn)?.subscriptions.contains(&req.channel) {
            return Err(CoreError::NotSubscribed);
        }
        let reply = Unsubscribed {
            id: req.id,
            channel: req.channel.clone(),
            reason: None,
        };
        out.send(conn, &ServerMessage::Unsubscribed(reply));
        self.leave(conn, &req.channel, true, now, out);
        if self.fault(Fault::UnsubscribeKeepsDelivering) {
            self.keep_delivering(conn, &req.channel);
        }
        Ok(())
    }

    /// Takes `conn` out of a channel: fan-out, presence lease (released now when
    /// `graceful`, else kept for the grace period, PRES-26, PRES-27).
    pub(super) fn leave(
        &mut self,
        conn: ConnId,
        name: &ChannelName,
        graceful: bool,
        now: Millis,
        out: &mut Outbox,
    ) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        if !(graceful && self.config.faults.on(Fault::ResubscribeRefused)) {
            c.subscriptions.remove(name);
        }
        let tenant = c.tenant.clone();
        let user = c.session.user_id.clone();
        let key = self.key(&tenant, name);
        self.engine.remove_subscriber(&key, conn); // CHAN-34
        self.snapshots.forget(&key, conn);
        if name.kind() == ChannelKind::Presence {
            self.release_lease(&key, conn, &user, graceful, now, out);
        }
    }

    /// The `unsubscribe_keeps_delivering` fault: back into the fan-out, until disconnect.
    fn keep_delivering(&mut self, conn: ConnId, name: &ChannelName) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        c.ghosts.push(name.clone());
        let tenant = c.tenant.clone();
        let key = self.key(&tenant, name);
        self.engine.add_subscriber(&key, conn);
    }

    /// `broadcast` (CHAN-20 to CHAN-27).
    pub(super) fn broadcast(
        &mut self,
        conn: ConnId,
        req: Broadcast,
        now: Millis,
        out: &mut Outbox,
    ) -> Result<(), CoreError> {
        if !self.fault(Fault::PrecedenceNameBeforeShape) {
            check_event(&req.event)?; // ERR-12: shape before name
        }
        if !self.fault(Fault::MessageIdUnbounded) {
            check_message_id(req.message_id.as_deref())?; // CHAN-45, shape
        }
        let kind = self.check_name(&req.channel)?;
        if self.fault(Fault::PrecedenceNameBeforeShape) {
            check_event(&req.event)?;
        }
        if self.fault(Fault::PrecedenceSubscriptionBeforeKind) {
            self.subscribed_key(conn, &req.channel)?;
        }
        if req.channel.is_resource_feed() {
            return Err(CoreError::Forbidden(
                "clients cannot broadcast on resource: channels".into(),
            )); // CHAN-21
        }
        self.authorize(conn, Right::Publish, &req.channel)?; // CHAN-38
        let (key, user) = self.subscribed_key(conn, &req.channel)?; // CHAN-20
        let publish_key = req
            .message_id
            .clone()
            .filter(|_| !self.fault(Fault::DedupIgnored))
            .map(|id| (key.clone(), Some(user.clone()), id));
        if let Some(earlier) = self.earlier_publish(publish_key.as_ref(), now) {
            let ack = BroadcastAck {
                id: req.id,
                channel: req.channel,
                seq: earlier.seq,
                ts: earlier.ts,
            };
            out.send(conn, &ServerMessage::BroadcastAck(ack)); // CHAN-44: a retry
            return Ok(());
        }
        let limits = self.config.limits;
        let burst = limits.broadcast_burst;
        let seconds = self.fault(Fault::RetryAfterSeconds);
        if let Some(c) = self.conns.get_mut(&conn) {
            c.bucket
                .take(limits.broadcast_rate_per_sec, burst, now)
                .map_err(|ms| CoreError::RateLimited {
                    retry_after_ms: if seconds { ms / 1000 } else { ms },
                })?;
        }
        let (seq, frame) = self.publish(&key, req.event, req.data, Some(user.clone()), now)?;
        self.remember_publish(publish_key, seq, now);
        if kind == ChannelKind::Presence {
            self.engine.touch_member(&key, &user, now); // PRES-24
        }
        let ack = BroadcastAck {
            id: req.id,
            channel: req.channel,
            seq,
            ts: now,
        };
        out.send(conn, &ServerMessage::BroadcastAck(ack));
        let echo = req.echo == Some(true) || self.fault(Fault::EchoToSender);
        self.fan_out(&key, &frame, (!echo).then_some(conn), out);
        Ok(())
    }

    /// Numbers and stores a `message`; its seq and its frame, ready to fan out.
    pub(super) fn publish(
        &mut self,
        key: &ChannelKey,
        event: String,
        data: serde_json::Value,
        from: Option<String>,
        now: Millis,
    ) -> Result<(u64, Frame), CoreError> {
        // The engine calls `build` once; moving the payload in saves a copy of `data`.
        let mut payload = Some((event, data, from));
        self.engine.append(key, &mut |s| {
            let (event, data, from) = payload.take().unwrap_or_default();
            StreamItem::Message(Message {
                channel: key.name.clone(),
                event,
                data,
                from,
                ts: now,
                seq: s,
            })
        })
    }
}

impl<E: Engine> Core<E> {
    /// The accepted publish a `message_id` retries, within the window and the epoch.
    pub(super) fn earlier_publish(
        &mut self,
        key: Option<&PublishKey>,
        now: Millis,
    ) -> Option<Published> {
        let key = key?;
        let epoch = self.engine.position(&key.0).epoch;
        let window = self.config.limits.dedup_window_ms;
        self.publish_ids.earlier(key, &epoch, now, window)
    }

    /// Remembers where a publish with a `message_id` landed.
    pub(super) fn remember_publish(&mut self, key: Option<PublishKey>, seq: u64, now: Millis) {
        if let Some(key) = key {
            let epoch = self.engine.position(&key.0).epoch;
            let published = Published {
                seq,
                ts: now,
                epoch,
            };
            self.publish_ids.remember(key, published, now);
        }
    }
}

/// `event` is 1 to 128 characters (CHAN-21, HTTP-19).
pub(super) fn check_event(event: &str) -> Result<(), CoreError> {
    let n = event.chars().count();
    if n == 0 || n > MAX_EVENT_CHARS {
        return Err(CoreError::InvalidMessage(format!(
            "event must be 1 to {MAX_EVENT_CHARS} characters"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::testkit::{session, without, Driver, T0};
    use super::super::CoreConfig;

    /// ERR-12: capability comes before name and kind, so a server without `presence` and
    /// `rooms` answers `unsupported` even when the name or its kind is wrong too.
    #[test]
    fn capability_is_checked_before_name_and_kind() {
        use chorus_protocol::Capability;
        let config = CoreConfig {
            capabilities: vec![Capability::State],
            ..CoreConfig::default()
        };
        let mut d = Driver::with_config(config);
        let a = d.connect("ann");
        for frame in [
            json!({"type": "subscribe", "id": 1, "channel": "presence-bad name"}),
            json!({"type": "subscribe", "id": 2, "channel": "chat", "room": {"max_users": 2}}),
        ] {
            let got = d.ask(a, frame);
            assert_eq!(got[0]["code"], "unsupported", "{got:?}");
        }
    }

    #[test]
    fn subscribed_carries_kind_and_position() {
        let mut d = Driver::new();
        let a = d.connect("ann");
        let got = d.ask(
            a,
            json!({"type": "subscribe", "id": "s1", "channel": "chat"}),
        );
        assert_eq!(got.len(), 1);
        let epoch = got[0]["position"]["epoch"].clone();
        assert!(epoch
            .as_str()
            .is_some_and(|e| !e.is_empty() && e.len() <= 64));
        assert_eq!(
            got[0],
            json!({"type": "subscribed", "id": "s1", "channel": "chat", "kind": "public",
                   "position": {"epoch": epoch, "seq": 0}})
        );
    }

    #[test]
    fn broadcast_skips_the_sender_but_reaches_its_other_tabs() {
        let mut d = Driver::new();
        let (a1, a2, b) = (d.connect("ann"), d.connect("ann"), d.connect("bob"));
        for c in [a1, a2, b] {
            d.subscribe(c, "chat");
        }
        let got = d.ask(
            a1,
            json!({"type": "broadcast", "id": 7, "channel": "chat", "event": "hi", "data": {"t": 1}}),
        );
        assert_eq!(
            got,
            vec![json!({"type": "broadcast:ack", "id": 7, "channel": "chat", "seq": 1, "ts": T0})]
        );
        let message = json!({"type": "message", "channel": "chat", "event": "hi",
                             "data": {"t": 1}, "from": "ann", "ts": T0, "seq": 1});
        assert_eq!(d.frames(a2), vec![message.clone()]);
        assert_eq!(d.frames(b), vec![message]);
    }

    /// CHAN-46: the pushes of every kind on one channel reach each subscriber in the order
    /// the core applied them.
    #[test]
    fn pushes_of_every_kind_share_one_order() {
        let mut d = Driver::new();
        let (a, b, c) = (d.connect("ann"), d.connect("bob"), d.connect("cid"));
        for conn in [a, b] {
            d.subscribe(conn, "presence-mix");
        }
        d.frames(a);
        let say = json!({"type": "broadcast", "channel": "presence-mix", "event": "e", "data": 1});
        d.send(a, say.clone());
        d.subscribe(c, "presence-mix");
        d.send(
            c,
            json!({"type": "state:update", "channel": "presence-mix", "key": "k", "value": 1}),
        );
        d.send(
            c,
            json!({"type": "presence:update", "channel": "presence-mix", "status": "away"}),
        );
        d.send(a, say);
        assert_eq!(
            d.types(b),
            [
                "message",
                "user:joined",
                "state:update",
                "presence:updated",
                "message"
            ]
        );
    }

    #[test]
    fn echo_sends_the_message_after_the_ack() {
        let mut d = Driver::new();
        let a = d.connect("ann");
        d.subscribe(a, "chat");
        let got = d.ask(
            a,
            json!({"type": "broadcast", "channel": "chat", "event": "e", "data": null, "echo": true}),
        );
        let types: Vec<_> = got.iter().map(|f| f["type"].as_str().unwrap()).collect();
        assert_eq!(types, ["broadcast:ack", "message"]);
        assert!(got[0].get("id").is_none(), "no id asked, none echoed");
    }

    #[test]
    fn seq_counts_per_channel() {
        let mut d = Driver::new();
        let a = d.connect("ann");
        d.subscribe(a, "x");
        d.subscribe(a, "y");
        let send = |d: &mut Driver, ch: &str| {
            d.ask(
                a,
                json!({"type": "broadcast", "channel": ch, "event": "e", "data": 1}),
            )[0]["seq"]
                .clone()
        };
        assert_eq!(send(&mut d, "x"), 1);
        assert_eq!(send(&mut d, "x"), 2);
        assert_eq!(send(&mut d, "y"), 1);
        let b = d.connect("bob");
        assert_eq!(d.subscribe(b, "x")["position"]["seq"], 2);
    }

    #[test]
    fn private_channels_need_a_matching_grant() {
        let mut d = Driver::new();
        let a = d.connect("ann");
        let got = d.ask(
            a,
            json!({"type": "subscribe", "id": 5, "channel": "private-hr"}),
        );
        assert_eq!(
            without(got[0].clone(), &["message"]),
            json!({"type": "error", "id": 5, "code": "forbidden", "channel": "private-hr"})
        );
        let mut s = session("bob", "");
        s.grants = vec!["private-team-*".into()];
        let b = d.connect_session(s);
        assert_eq!(d.subscribe(b, "private-team-red")["kind"], "private");
        let got = d.ask(b, json!({"type": "subscribe", "channel": "private-hr"}));
        assert_eq!(got[0]["code"], "forbidden");
    }

    #[test]
    fn tenants_do_not_share_channels() {
        let mut d = Driver::new();
        let a = d.connect_session(session("ann", "acme"));
        let b = d.connect_session(session("bob", "globex"));
        d.subscribe(a, "chat");
        d.subscribe(b, "chat");
        d.send(
            a,
            json!({"type": "broadcast", "channel": "chat", "event": "e", "data": 1}),
        );
        d.assert_silent(b);
        let got = d.ask(
            b,
            json!({"type": "broadcast", "channel": "chat", "event": "e", "data": 1}),
        );
        assert_eq!(got[0]["seq"], 1, "own numbering per tenant");
    }

    #[test]
    fn double_subscribe_is_refused_and_keeps_the_subscription() {
        let mut d = Driver::new();
        let a = d.connect("ann");
        d.subscribe(a, "chat");
        let got = d.ask(a, json!({"type": "subscribe", "id": 2, "channel": "chat"}));
        assert_eq!(got[0]["code"], "already_subscribed");
        let got = d.ask(
            a,
            json!({"type": "broadcast", "channel": "chat", "event": "e", "data": 1}),
        );
        assert_eq!(got[0]["type"], "broadcast:ack");
    }

    #[test]
    fn max_subscriptions_is_enforced_exactly() {
        let mut config = CoreConfig::default();
        config.limits.max_subscriptions = 2;
        let mut d = Driver::with_config(config);
        let a = d.connect("ann");
        d.subscribe(a, "a");
        d.subscribe(a, "b");
        let got = d.ask(a, json!({"type": "subscribe", "channel": "c"}));
        assert_eq!(
            without(got[0].clone(), &["message"]),
            json!({"type": "error", "code": "limit_exceeded", "channel": "c",
                   "limit": "max_subscriptions"})
        );
    }

    #[test]
    fn unsubscribe_stops_delivery() {
        let mut d = Driver::new();
        let (a, b) = (d.connect("ann"), d.connect("bob"));
        d.subscribe(a, "chat");
        d.subscribe(b, "chat");
        let got = d.ask(
            b,
            json!({"type": "unsubscribe", "id": 3, "channel": "chat"}),
        );
        assert_eq!(
            got,
            vec![json!({"type": "unsubscribed", "id": 3, "channel": "chat"})]
        );
        d.send(
            a,
            json!({"type": "broadcast", "channel": "chat", "event": "e", "data": 1}),
        );
        d.assert_silent(b);
        let got = d.ask(
            b,
            json!({"type": "unsubscribe", "id": 4, "channel": "chat"}),
        );
        assert_eq!(got[0]["code"], "not_subscribed");
        assert_eq!(got[0]["id"], 4);
    }

    #[test]
    fn broadcast_needs_a_subscription_and_never_targets_resource_feeds() {
        let mut d = Driver::new();
        let a = d.connect("ann");
        let got = d.ask(
            a,
            json!({"type": "broadcast", "id": "b", "channel": "sports", "event": "e", "data": 1}),
        );
        assert_eq!(got[0]["code"], "not_subscribed");
        assert_eq!(got[0]["channel"], "sports");
        d.subscribe(a, "resource:post");
        let got = d.ask(
            a,
            json!({"type": "broadcast", "channel": "resource:post", "event": "e", "data": 1}),
        );
        assert_eq!(got[0]["code"], "forbidden");
    }

    #[test]
    fn bad_names_and_events_are_refused() {
        let mut d = Driver::new();
        let a = d.connect("ann");
        for name in ["", "a b", "private-", &"x".repeat(201)] {
            let got = d.ask(a, json!({"type": "subscribe", "id": 1, "channel": name}));
            assert_eq!(got[0]["code"], "invalid_channel", "{name}");
        }
        assert_eq!(d.subscribe(a, &"x".repeat(200))["kind"], "public");
        d.subscribe(a, "chat");
        let got = d.ask(
            a,
            json!({"type": "broadcast", "channel": "chat", "event": "", "data": 1}),
        );
        assert_eq!(got[0]["code"], "invalid_message");
    }

    #[test]
    fn rate_limit_refuses_without_consuming_seq() {
        let mut config = CoreConfig::default();
        config.limits.broadcast_burst = 2;
        config.limits.broadcast_rate_per_sec = 4;
        let mut d = Driver::with_config(config);
        let a = d.connect("ann");
        d.subscribe(a, "chat");
        let b = json!({"type": "broadcast", "id": 1, "channel": "chat", "event": "e", "data": 1});
        assert_eq!(d.ask(a, b.clone())[0]["seq"], 1);
        assert_eq!(d.ask(a, b.clone())[0]["seq"], 2);
        let got = d.ask(a, b.clone());
        assert_eq!(
            without(got[0].clone(), &["message"]),
            json!({"type": "error", "id": 1, "code": "rate_limited", "channel": "chat",
                   "retry_after_ms": 250})
        );
        d.advance(250);
        assert_eq!(d.ask(a, b)[0]["seq"], 3);
    }

    #[test]
    fn refresh_ends_private_subscriptions_no_longer_granted() {
        let mut d = Driver::new();
        let mut s = session("ann", "");
        s.grants = vec!["private-*".into()];
        let a = d.connect_session(s.clone());
        d.subscribe(a, "private-a");
        d.subscribe(a, "private-b");
        s.grants = vec!["private-a".into()];
        s.expires_at = Some(T0 + 60_000);
        let effects = d.core.refresh(a, Some(9.into()), s, d.now);
        d.route(effects);
        assert_eq!(
            d.frames(a),
            vec![
                json!({"type": "auth:refreshed", "id": 9, "expires_at": T0 + 60_000}),
                json!({"type": "unsubscribed", "channel": "private-b", "reason": "forbidden"}),
            ]
        );
        let effects = d.core.refresh(a, None, session("mallory", ""), d.now);
        d.route(effects);
        assert_eq!(d.frames(a)[0]["code"], "unauthorized");
    }

    #[test]
    fn a_subscriber_without_the_presence_right_only_watches() {
        let mut d = Driver::new();
        let b = d.connect("bob");
        d.subscribe(b, "presence-doc");
        let mut s = session("eve", "");
        s.rights = Some(chorus_protocol::Rights {
            subscribe: vec!["*".into()],
            ..Default::default()
        });
        let e = d.connect_session(s);
        let got = d.subscribe(e, "presence-doc");
        assert_eq!(got["presence"].as_array().map(Vec::len), Some(1));
        assert!(d.frames(b).is_empty(), "no user:joined for a watcher");
        let got = d.ask(
            e,
            json!({"type": "presence:update", "channel": "presence-doc", "status": "away"}),
        );
        assert_eq!(got[0]["code"], "forbidden");
        let got = d.ask(
            e,
            json!({"type": "broadcast", "channel": "presence-doc", "event": "e", "data": 1}),
        );
        assert_eq!(got[0]["code"], "forbidden", "no publish right either");
        d.send(e, json!({"type": "unsubscribe", "channel": "presence-doc"}));
        assert!(d.frames(b).is_empty(), "no user:left for a watcher");
    }

    #[test]
    fn fan_out_shares_one_serialization() {
        let mut d = Driver::new();
        let a = d.connect("ann");
        d.subscribe(a, "chat");
        let subs: Vec<_> = (0..200).map(|i| d.connect(&format!("u{i}"))).collect();
        for &c in &subs {
            d.subscribe(c, "chat");
        }
        let msg = chorus_protocol::decode_client(
            r#"{"type":"broadcast","channel":"chat","event":"e","data":1}"#,
            32,
        )
        .unwrap();
        let effects = d.core.handle(a, msg, d.now);
        let frames: Vec<_> = effects
            .iter()
            .filter_map(|e| match e {
                super::super::Effect::Send { to, frame, .. } if *to != a => Some(frame.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(frames.len(), 200);
        assert!(frames.iter().all(|f| std::sync::Arc::ptr_eq(f, &frames[0])));
    }
}
