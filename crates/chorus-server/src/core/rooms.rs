//! Rooms: presence channels with options fixed by the creating subscribe (spec: rooms.md).

use chorus_protocol::{
    Capability, ChannelKind, Millis, RoomInfo, RoomOptions, ServerMessage, Subscribe, Subscribed,
};

use super::engine::{ChannelKey, Room};
use super::faults::Fault;
use super::limits::check_size;
use super::room_password::{self, Checked, Done, Work};
use super::{ConnId, Core, CoreError, Engine, Outbox};

/// Longest room password in characters (ROOM-7a).
const MAX_PASSWORD_CHARS: usize = 128;

/// What a presence subscribe that passed the room checks will do.
#[derive(Debug)]
pub(super) enum Admission {
    /// Join the existing room.
    Join,
    /// Join the existing room, whose password hash is of the old kind: store it with this
    /// new hash (ROOM-24).
    Rehash(Room),
    /// Create the room with these settings (ROOM-3).
    Create(Room),
}

impl<E: Engine> Core<E> {
    /// The presence checks of a subscribe, in the order of rooms.md: options range,
    /// password, capacity, `max_presence_members` (the options' shape was checked first).
    pub(super) fn admit(
        &mut self,
        conn: ConnId,
        key: &ChannelKey,
        req: &Subscribe,
        user: &str,
        now: Millis,
    ) -> Result<Admission, CoreError> {
        let limits = self.config.limits;
        if let Some(opts) = &req.room {
            check_room_range(opts, limits.max_room_users)?; // ROOM-8
            if !self.fault(Fault::RoomMetadataUnbounded) {
                let max = limits.max_room_metadata_bytes;
                check_size(opts.metadata.as_ref(), max, "max_room_metadata_bytes")?;
                // ROOM-22
            }
        }
        let truncated;
        let req = if self.fault(Fault::PasswordTruncated) {
            truncated = bcrypt_like(req);
            &truncated
        } else if self.fault(Fault::PasswordCaseFolded) {
            truncated = normalised(req, str::to_lowercase);
            &truncated
        } else if self.fault(Fault::PasswordTrimmed) {
            truncated = normalised(req, |p| p.trim().to_owned());
            &truncated
        } else {
            req
        };
        let is_member = self.engine.member(key, user).is_some();
        let count = self.engine.member_count(key);
        let occupancy = if self.fault(Fault::CapacityCountsConnections) {
            self.engine.subscribers(key).count()
        } else {
            count
        };
        let admission = match self.engine.room(key) {
            Some(room) => {
                let checked = match (&room.password_hash, req.password.as_deref()) {
                    (None, _) => Checked::Right,
                    (Some(hash), Some(p)) => {
                        self.password_attempt_allowed(conn, now)?; // LIMIT-16
                        let checked = match self.passwords_done.remove(&conn) {
                            // The shell's verdict for this very hash and password.
                            Some(Done::Checked {
                                hash: h,
                                password: pw,
                                checked,
                            }) if h == *hash && pw == p => checked,
                            _ => room_password::check(hash, p),
                        };
                        if checked == Checked::Wrong {
                            self.password_attempt_failed(conn, now);
                        }
                        checked
                    }
                    (Some(_), None) => Checked::Wrong,
                };
                let password_ok = checked != Checked::Wrong;
                let skip = self.fault(Fault::RoomPasswordIgnored)
                    || (is_member && self.fault(Fault::PasswordOncePerUser));
                if !password_ok && !skip {
                    return Err(CoreError::BadPassword); // ROOM-10, ROOM-11, ROOM-16
                }
                let full = occupancy >= room.max_users as usize;
                if !is_member && full && !self.fault(Fault::IgnoreMaxUsers) {
                    return Err(CoreError::RoomFull); // ROOM-14, ROOM-15
                }
                match (checked, req.password.as_deref()) {
                    (Checked::RightLegacy, Some(p)) => Admission::Rehash(Room {
                        password_hash: Some(room_password::hash(p)),
                        ..room.clone()
                    }),
                    _ => Admission::Join,
                }
            }
            None => {
                let done = self.passwords_done.remove(&conn);
                Admission::Create(new_room(
                    req.room.as_ref(),
                    limits.max_room_users,
                    now,
                    done,
                ))
            }
        };
        if !is_member && count >= limits.max_presence_members as usize {
            return Err(CoreError::LimitExceeded {
                limit: "max_presence_members",
            }); // PRES-32, PRES-33
        }
        Ok(admission)
    }

    /// LIMIT-16: `rate_limited`, before any hash is computed, while the connection's
    /// password bucket is empty.
    fn password_attempt_allowed(&mut self, conn: ConnId, now: Millis) -> Result<(), CoreError> {
        if self.fault(Fault::PasswordAttemptsUnbounded) {
            return Ok(());
        }
        let l = self.config.limits;
        let (interval, burst) = (l.password_attempt_interval_ms, l.max_password_attempts);
        match self.conns.get_mut(&conn) {
            Some(c) => c
                .passwords
                .check_every(interval, burst, now)
                .map_err(|retry_after_ms| CoreError::RateLimited { retry_after_ms }),
            None => Ok(()),
        }
    }

    /// The work the shell may do off the core's lock before it hands `msg` in (ROOM-24):
    /// checking a `subscribe`'s password against the stored hash, when the room exists
    /// with a password and the connection has attempts left (LIMIT-16); hashing the
    /// password of the room a `subscribe` creates. A memory-hard hash under the lock would
    /// stall every other connection.
    pub fn password_work(
        &mut self,
        conn: ConnId,
        msg: &chorus_protocol::ClientMessage,
        now: Millis,
    ) -> Option<Work> {
        let chorus_protocol::ClientMessage::Subscribe(req) = msg else {
            return None;
        };
        let c = self.conns.get(&conn)?;
        let key = self.key(&c.tenant, &req.channel);
        match (self.engine.room(&key), &req.password, &req.room) {
            (Some(room), Some(password), _) => {
                let hash = room.password_hash?;
                self.password_attempt_allowed(conn, now).ok()?;
                Some(Work::Check {
                    hash,
                    password: password.clone(),
                })
            }
            (None, _, Some(opts)) => {
                let password = opts.password.clone()?;
                // A room the channel budget refuses (LIMIT-18) is not hashed for.
                if self.channel_budget_spent(&key) {
                    return None;
                }
                Some(Work::Hash { password })
            }
            _ => None,
        }
    }

    /// What the shell computed for [`Core::password_work`] on `conn`: the next admission
    /// of `conn` takes it for that very hash and password instead of hashing under the
    /// lock (a changed hash or password is hashed or checked anew).
    pub fn password_done(&mut self, conn: ConnId, done: Done) {
        if self.conns.contains_key(&conn) {
            self.passwords_done.insert(conn, done);
        }
    }

    /// A wrong password takes one attempt of the connection's bucket (LIMIT-16).
    fn password_attempt_failed(&mut self, conn: ConnId, now: Millis) {
        let l = self.config.limits;
        let (interval, burst) = (l.password_attempt_interval_ms, l.max_password_attempts);
        if let Some(c) = self.conns.get_mut(&conn) {
            let _ = c.passwords.take_every(interval, burst, now);
        }
    }

    /// `subscribed.room` (ROOM-5, ROOM-6, ROOM-12: no password, only `protected`).
    pub(super) fn room_info(&self, key: &ChannelKey) -> Option<RoomInfo> {
        self.engine.room(key).map(|r| RoomInfo {
            metadata: r.metadata.clone(),
            max_users: r.max_users,
            persist: r.persist,
            protected: r.password_hash.is_some(),
            created_at: r.created_at,
        })
    }

    /// Discards a non-persistent room whose last member is gone (ROOM-17).
    pub(super) fn discard_if_empty(
        &mut self,
        key: &ChannelKey,
        out: &mut Outbox,
    ) -> Result<(), CoreError> {
        let persistent = self.engine.room(key).is_some_and(|r| r.persist);
        let keep = self.fault(Fault::RoomOutlivesMembers);
        if self.engine.member_count(key) == 0 && !persistent && !keep {
            self.cursors.forget_channel(key);
            // Connections subscribed without a member (observers, CHAN-39) stay in the
            // channel's fan-out, now of the room's new epoch (ROOM-23).
            let watchers: Vec<ConnId> = self.engine.subscribers(key).collect();
            self.engine.discard(key)?;
            if !self.fault(Fault::DiscardDropsWatchers) {
                for &conn in &watchers {
                    self.engine.add_subscriber(key, conn);
                }
                if !self.fault(Fault::EpochChangeSilent) {
                    self.announce_new_epoch(key, &watchers, out);
                }
            }
        }
        Ok(())
    }
}

impl<E: Engine> Core<E> {
    /// HIST-21: tells the connections still subscribed to `key` that its epoch changed, with
    /// a `subscribed` without `id` holding the new position and snapshots.
    pub(super) fn announce_new_epoch(&mut self, key: &ChannelKey, to: &[ConnId], out: &mut Outbox) {
        let kind = key.name.kind();
        let presence = kind == ChannelKind::Presence;
        for &conn in to {
            let frame = Subscribed {
                id: None,
                channel: key.name.clone(),
                kind,
                position: self.engine.position(key),
                recovered: Some(false),
                presence: presence.then(|| self.presence_snapshot(key, conn)),
                room: None,
                cursors: (presence && self.has(Capability::Cursors)).then(Vec::new),
                state: None,
            };
            out.send(conn, &ServerMessage::Subscribed(frame));
        }
    }
}

/// The `password_truncated` fault: passwords cut to their first 72 bytes (on a char
/// boundary), when the room is created and when it is joined.
/// The `password_case_folded` and `password_trimmed` faults: passwords "normalised" before
/// they are hashed and compared.
fn normalised(req: &Subscribe, f: impl Fn(&str) -> String) -> Subscribe {
    let mut req = req.clone();
    req.password = req.password.as_deref().map(&f);
    if let Some(room) = req.room.as_mut() {
        room.password = room.password.as_deref().map(&f);
    }
    req
}

fn bcrypt_like(req: &Subscribe) -> Subscribe {
    let cut = |p: &String| {
        let mut end = p.len().min(72);
        while !p.is_char_boundary(end) {
            end -= 1;
        }
        p[..end].to_owned()
    };
    let mut req = req.clone();
    req.password = req.password.as_ref().map(cut);
    if let Some(room) = req.room.as_mut() {
        room.password = room.password.as_ref().map(cut);
    }
    req
}

/// ROOM-7a to ROOM-7e: the shape of `room` options, checked with the rest of the message's shape,
/// before anything else and whether or not the options would be applied.
pub(super) fn check_room_shape(opts: &RoomOptions) -> Result<(), CoreError> {
    if let Some(p) = &opts.password {
        let n = p.chars().count();
        if n == 0 || n > MAX_PASSWORD_CHARS {
            return Err(CoreError::InvalidMessage(format!(
                "room password must be 1 to {MAX_PASSWORD_CHARS} characters"
            )));
        }
    }
    if opts.metadata.as_ref().is_some_and(|m| !m.is_object()) {
        return Err(CoreError::InvalidMessage(
            "room metadata must be an object".into(),
        ));
    }
    if opts.max_users == Some(0) {
        return Err(CoreError::InvalidMessage(
            "room max_users must be at least 1".into(),
        ));
    }
    Ok(())
}

/// ROOM-8: the range of `max_users`, checked with the presence checks.
fn check_room_range(opts: &RoomOptions, max_room_users: u32) -> Result<(), CoreError> {
    match opts.max_users {
        Some(n) if n > max_room_users => Err(CoreError::LimitExceeded {
            limit: "max_room_users",
        }),
        _ => Ok(()),
    }
}

/// ROOM-3: options of the creating subscribe, with the defaults.
/// `done` is the shell's hash of the password, taken when it is of this very password.
fn new_room(
    opts: Option<&RoomOptions>,
    max_room_users: u32,
    now: Millis,
    done: Option<Done>,
) -> Room {
    let opts = opts.cloned().unwrap_or_default();
    let hash = |p: &str| match done {
        Some(Done::Hashed { password, hash }) if password == p => hash,
        _ => room_password::hash(p),
    };
    Room {
        password_hash: opts.password.as_deref().map(hash),
        max_users: opts.max_users.unwrap_or(max_room_users),
        metadata: opts.metadata.unwrap_or_else(|| serde_json::json!({})),
        persist: opts.persist.unwrap_or(false),
        created_at: now,
    }
}

#[cfg(test)]
mod room_tests {
    use serde_json::json;

    use super::super::testkit::{Driver, T0};

    fn create(d: &mut Driver, conn: u64, room: serde_json::Value) -> serde_json::Value {
        d.ask(
            conn,
            json!({"type": "subscribe", "id": 1, "channel": "presence-p", "room": room}),
        )
        .remove(0)
    }

    #[test]
    fn creator_sets_the_options_and_others_cannot_change_them() {
        let mut d = Driver::new();
        let a = d.connect("ann");
        let sub = create(
            &mut d,
            a,
            json!({"password": "s3cret", "max_users": 8, "metadata": {"title": "Plan"}}),
        );
        let info = json!({"metadata": {"title": "Plan"}, "max_users": 8, "persist": false,
                          "protected": true, "created_at": T0});
        assert_eq!(sub["room"], info);
        assert!(!sub.to_string().contains("s3cret"));
        let b = d.connect("bob");
        let got = d.ask(
            b,
            json!({"type": "subscribe", "channel": "presence-p", "password": "s3cret",
                   "room": {"max_users": 50}}),
        );
        assert_eq!(got[0]["room"], info);
    }

    #[test]
    fn protected_room_checks_every_joiner() {
        let mut d = Driver::new();
        let a1 = d.connect("ann");
        create(&mut d, a1, json!({"password": "s3cret"}));
        let b = d.connect("bob");
        for password in [None, Some("nope")] {
            let mut req = json!({"type": "subscribe", "id": 2, "channel": "presence-p"});
            if let Some(p) = password {
                req["password"] = json!(p);
            }
            let got = d.ask(b, req);
            assert_eq!(got[0]["code"], "bad_password");
        }
        d.assert_silent(a1);
        let a2 = d.connect("ann");
        let got = d.ask(a2, json!({"type": "subscribe", "channel": "presence-p"}));
        assert_eq!(got[0]["code"], "bad_password", "ROOM-11: a second tab too");
    }

    #[test]
    fn full_room_refuses_new_users_but_not_members() {
        let mut d = Driver::new();
        let a1 = d.connect("ann");
        create(&mut d, a1, json!({"max_users": 1, "password": "pw"}));
        let b = d.connect("bob");
        let got = d.ask(
            b,
            json!({"type": "subscribe", "channel": "presence-p", "password": "pw"}),
        );
        assert_eq!(got[0]["code"], "room_full");
        let got = d.ask(
            b,
            json!({"type": "subscribe", "channel": "presence-p", "password": "x"}),
        );
        assert_eq!(
            got[0]["code"], "bad_password",
            "ROOM-16: password before capacity"
        );
        let a2 = d.connect("ann");
        let got = d.ask(
            a2,
            json!({"type": "subscribe", "channel": "presence-p", "password": "pw"}),
        );
        assert_eq!(got[0]["type"], "subscribed");
        d.assert_silent(a1);
    }

    #[test]
    fn room_options_are_validated() {
        let mut d = Driver::new();
        let a = d.connect("ann");
        let got = create(&mut d, a, json!({"max_users": 1001}));
        assert_eq!(
            (&got["code"], &got["limit"]),
            (&json!("limit_exceeded"), &json!("max_room_users"))
        );
        let got = create(&mut d, a, json!({"max_users": 0}));
        assert_eq!(got["code"], "invalid_message");
        let got = create(&mut d, a, json!({"metadata": [1]}));
        assert_eq!(got["code"], "invalid_message");
        let got = d.ask(
            a,
            json!({"type": "subscribe", "channel": "chat", "room": {}}),
        );
        assert_eq!(got[0]["code"], "invalid_channel");
    }

    #[test]
    fn emptied_room_is_discarded_unless_it_persists() {
        let mut d = Driver::new();
        let a = d.connect("ann");
        let first = create(&mut d, a, json!({"metadata": {"v": 1}}));
        d.send(
            a,
            json!({"type": "state:update", "channel": "presence-p", "key": "k", "value": 1}),
        );
        d.send(a, json!({"type": "unsubscribe", "channel": "presence-p"}));
        d.frames(a);
        d.advance(10);
        let second = create(&mut d, a, json!({"metadata": {"v": 2}, "persist": true}));
        assert_ne!(first["position"]["epoch"], second["position"]["epoch"]);
        assert_eq!(second["room"]["metadata"], json!({"v": 2}));
        assert_eq!(second["room"]["created_at"], T0 + 10);
        d.send(
            a,
            json!({"type": "state:update", "channel": "presence-p", "key": "k", "value": 2}),
        );
        d.send(a, json!({"type": "unsubscribe", "channel": "presence-p"}));
        d.frames(a);
        let got = d.ask(
            a,
            json!({"type": "subscribe", "channel": "presence-p", "state": true,
                                  "room": {"metadata": {"v": 3}}}),
        );
        assert_eq!(got[0]["position"]["epoch"], second["position"]["epoch"]);
        assert_eq!(got[0]["room"]["metadata"], json!({"v": 2}));
        assert_eq!(got[0]["state"]["data"], json!({"k": 2}));
    }
}
