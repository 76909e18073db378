//! Presence of the [`RedisEngine`]: leases in Redis (see
//! [`presence_scripts`](super::presence_scripts)), this node's grace timers, and the sweep
//! of dead nodes' leases (CLUS-8).

use std::sync::Arc;

use chorus_protocol::{
    Member, Millis, PresenceStatus, PresenceUpdated, ServerMessage, UserJoined, UserLeft,
};
use redis::{Script, Value};

use super::keys::Keys;
use super::presence_scripts::{self as scripts, with_helpers};
use super::redis_engine::{array, bytes, split_at_seq, RedisEngine, SEQ_PLACEHOLDER};
use super::NODE_SHIFT;
use crate::core::engine::{GraceExpired, LeaseTaken, Released};
use crate::core::{frame_of, ChannelKey, ConnId, Fault, Frame};

/// How often a node renews its liveness key and looks for dead nodes.
pub const LIVENESS_PERIOD_MS: Millis = 1000;
/// How long a liveness key lives without renewal: a node is dead this long after its last
/// renewal (CLUS-8 counts the grace period from when it was found dead).
pub const LIVENESS_TTL_MS: Millis = 3000;

/// The presence scripts, hashed once.
pub struct PresenceScripts {
    take: Script,
    release: Script,
    expire: Script,
    update: Script,
    drop_node: Script,
    read_members: Script,
}

impl Default for PresenceScripts {
    fn default() -> Self {
        PresenceScripts {
            take: Script::new(&with_helpers(scripts::TAKE)),
            release: Script::new(&with_helpers(scripts::RELEASE)),
            expire: Script::new(&with_helpers(scripts::EXPIRE)),
            update: Script::new(&with_helpers(scripts::UPDATE)),
            drop_node: Script::new(&with_helpers(scripts::DROP_NODE)),
            read_members: Script::new(scripts::READ_MEMBERS),
        }
    }
}

/// A grace lease of this node, waiting for its deadline.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct GraceTimer {
    pub deadline: Millis,
    pub conn: ConnId,
    pub key: ChannelKey,
    pub user: String,
}

/// `joined_at \t last_seen \t status \t profile \t data` back into a member.
fn member_of(user: &str, record: &[u8]) -> Result<Member, String> {
    let text = std::str::from_utf8(record).map_err(|e| e.to_string())?;
    let mut parts = text.splitn(5, '\t');
    let mut next = || {
        parts
            .next()
            .ok_or_else(|| format!("short member record {text:.60}"))
    };
    let joined_at = next()?.parse().map_err(|_| "bad joined_at".to_owned())?;
    let last_seen = next()?.parse().map_err(|_| "bad last_seen".to_owned())?;
    let status = serde_json::from_str(next()?).map_err(|e| e.to_string())?;
    let profile = serde_json::from_str(next()?).map_err(|e| e.to_string())?;
    let data = serde_json::from_str(next()?).map_err(|e| e.to_string())?;
    Ok(Member {
        user_id: user.to_owned(),
        profile,
        status,
        data,
        joined_at,
        last_seen,
    })
}

fn word(parts: &[Value], i: usize) -> String {
    parts
        .get(i)
        .cloned()
        .and_then(|v| bytes(v).ok())
        .and_then(|b| String::from_utf8(b).ok())
        .unwrap_or_default()
}

fn released(parts: &[Value], user: &str) -> Released {
    match word(parts, 0).as_str() {
        "kept" => Released::Kept,
        "left" => Released::Left {
            user_id: user.to_owned(),
            last_seen: word(parts, 1).parse().unwrap_or(0),
        },
        _ => Released::NoLease,
    }
}

/// `presence:updated` up to its member's `profile` value, which the update script completes
/// from the member's record (its fields in the order the server serializes them; a test
/// below holds the two together).
fn updated_head(key: &ChannelKey, user: &str) -> String {
    format!(
        r#"{{"type":"presence:updated","channel":{},"member":{{"user_id":{},"profile":"#,
        frame_of(&key.name),
        frame_of(&user)
    )
}

impl RedisEngine {
    fn presence_keys(&self, key: &ChannelKey) -> Vec<String> {
        vec![self.keys.presence(key), self.keys.leases(key)]
    }

    /// The keys of the release and expiry scripts.
    fn leave_keys(&self, key: &ChannelKey) -> Vec<String> {
        let mut keys = self.presence_keys(key);
        keys.extend(self.announce_keys(key));
        keys
    }

    /// The release and expiry scripts' arguments after their own three: the `user:left`
    /// they announce split around its `last_seen`, which the script fills in (CHAN-46).
    fn leave_args(
        &self,
        key: &ChannelKey,
        own: [Vec<u8>; 3],
        user: &str,
    ) -> (Vec<Vec<u8>>, Option<(String, String)>) {
        let text = frame_of(&ServerMessage::UserLeft(UserLeft {
            channel: key.name.clone(),
            user_id: user.to_owned(),
            last_seen: SEQ_PLACEHOLDER,
        }));
        let left = split_at_seq(&text)
            .ok()
            .filter(|_| !self.presence_detached())
            .map(|(before, after)| (before.to_owned(), after.to_owned()));
        let mut args = own.to_vec();
        args.extend(self.announce_args(key, None));
        let (before, after) = left.clone().unwrap_or_default();
        args.push(before.into_bytes());
        args.push(after.into_bytes());
        (args, left)
    }

    /// What a release or expiry did; a departure's announcement noted.
    fn released_announced(
        &mut self,
        key: &ChannelKey,
        mut parts: Vec<Value>,
        user: &str,
        left: Option<(String, String)>,
    ) -> Released {
        let r = released(&parts, user);
        if matches!(r, Released::Left { .. }) {
            self.delay_detached_departure();
        }
        if let (Released::Left { last_seen, .. }, Some((before, after))) = (&r, left) {
            let frame: Frame = Arc::from(format!("{before}{last_seen}{after}"));
            let reply = parts.split_off(2.min(parts.len()));
            self.note_announced(key, frame, reply);
        }
        r
    }

    /// The frame as a script argument: none (nothing published) under the deliberate bugs
    /// that leave presence events to the core's relay.
    fn announced_bytes(&self, frame: &Frame) -> Vec<u8> {
        if self.presence_detached() {
            Vec::new()
        } else {
            frame.as_bytes().to_vec()
        }
    }

    pub(super) fn redis_member(&self, key: &ChannelKey, user: &str) -> Option<Member> {
        let got: Result<Option<Vec<u8>>, _> = redis::cmd("HGET")
            .arg(self.keys.presence(key))
            .arg(user)
            .query(&mut *self.redis.borrow_mut());
        match got {
            Ok(record) => record.and_then(|r| member_of(user, &r).ok()),
            Err(e) => {
                self.fail("member", e);
                None
            }
        }
    }

    pub(super) fn redis_members(&self, key: &ChannelKey) -> Vec<Member> {
        let got: Result<Vec<(String, Vec<u8>)>, _> = redis::cmd("HGETALL")
            .arg(self.keys.presence(key))
            .query(&mut *self.redis.borrow_mut());
        let mut members: Vec<Member> = match got {
            Ok(all) => all
                .iter()
                .filter_map(|(u, r)| member_of(u, r).ok())
                .collect(),
            Err(e) => {
                self.fail("members", e);
                Vec::new()
            }
        };
        members.sort_by(|a, b| (a.joined_at, &a.user_id).cmp(&(b.joined_at, &b.user_id)));
        members
    }

    /// The members for `conn`'s snapshot, read with the channel's place in its order: the
    /// presence events up to there that this node has not delivered yet are held back
    /// from `conn` (PRES-7 across nodes).
    pub(super) fn redis_snapshot_members(&mut self, key: &ChannelKey, conn: ConnId) -> Vec<Member> {
        let keys = [self.keys.presence(key), self.keys.meta(key)];
        let parts = match self
            .run(&self.presence.read_members, &keys, &[])
            .and_then(array)
        {
            Ok(p) => p,
            Err(e) => {
                self.fail("members", e);
                return Vec::new();
            }
        };
        let mut parts = parts.into_iter();
        let epoch = parts.next().and_then(|v| bytes(v).ok());
        let at: u64 = parts
            .next()
            .and_then(|v| redis::from_redis_value(v).ok())
            .unwrap_or(0);
        let rest: Vec<Value> = parts.collect();
        let mut members: Vec<Member> = rest
            .chunks(2)
            .filter_map(|pair| {
                let user = String::from_utf8(bytes(pair.first()?.clone()).ok()?).ok()?;
                member_of(&user, &bytes(pair.get(1)?.clone()).ok()?).ok()
            })
            .collect();
        members.sort_by(|a, b| (a.joined_at, &a.user_id).cmp(&(b.joined_at, &b.user_id)));
        if let Some(epoch) = epoch.and_then(|e| String::from_utf8(e).ok()) {
            self.hold_back_until(key, conn, &epoch, at);
        }
        members
    }

    pub(super) fn redis_member_count(&self, key: &ChannelKey) -> usize {
        redis::cmd("HLEN")
            .arg(self.keys.presence(key))
            .query(&mut *self.redis.borrow_mut())
            .unwrap_or_else(|e| {
                self.fail("member count", e);
                0
            })
    }

    pub(super) fn redis_take(
        &mut self,
        key: &ChannelKey,
        conn: ConnId,
        user: &str,
        profile: &serde_json::Value,
        now: Millis,
    ) -> LeaseTaken {
        let profile = if profile.is_object() {
            profile.clone()
        } else {
            serde_json::json!({})
        };
        // The member a join creates is known beforehand: its `user:joined` is published by
        // the lease script itself, in the channel's one order (CHAN-46, CLUS-7).
        let joined = frame_of(&ServerMessage::UserJoined(UserJoined {
            channel: key.name.clone(),
            member: Member {
                user_id: user.to_owned(),
                profile: profile.clone(),
                status: PresenceStatus::Online,
                data: serde_json::json!({}),
                joined_at: now,
                last_seen: now,
            },
        }));
        let mut keys = self.presence_keys(key);
        keys.push(self.keys.node_channels(self.node));
        keys.extend(self.announce_keys(key));
        let mut args = vec![
            conn.to_string().into_bytes(),
            user.as_bytes().to_vec(),
            now.to_string().into_bytes(),
            frame_of(&profile).as_bytes().to_vec(),
            Keys::channel_id(key).into_bytes(),
        ];
        args.extend(self.announce_args(key, Some(conn)));
        args.push(self.announced_bytes(&joined));
        let mut parts = match self.run(&self.presence.take, &keys, &args).and_then(array) {
            Ok(p) => p,
            Err(e) => {
                self.fail("lease", e);
                return LeaseTaken::Added;
            }
        };
        match word(&parts, 0).as_str() {
            "joined" => match member_of(user, word(&parts, 1).as_bytes()) {
                Ok(m) => {
                    if !self.presence_detached() {
                        let reply = parts.split_off(2.min(parts.len()));
                        self.note_announced(key, joined, reply);
                    }
                    LeaseTaken::Joined(m)
                }
                Err(e) => {
                    self.fail("lease", e);
                    LeaseTaken::Added
                }
            },
            "took_over" => LeaseTaken::TookOver,
            _ => LeaseTaken::Added,
        }
    }

    pub(super) fn redis_release(
        &mut self,
        key: &ChannelKey,
        conn: ConnId,
        user: &str,
        grace_until: Option<Millis>,
    ) -> Released {
        let (args, left) = self.leave_args(
            key,
            [
                conn.to_string().into_bytes(),
                user.as_bytes().to_vec(),
                grace_until
                    .map(|g| g.to_string())
                    .unwrap_or_default()
                    .into_bytes(),
            ],
            user,
        );
        let keys = self.leave_keys(key);
        match self
            .run(&self.presence.release, &keys, &args)
            .and_then(array)
        {
            Ok(parts) => {
                let r = self.released_announced(key, parts, user, left);
                if let (Some(deadline), Released::Kept) = (grace_until, &r) {
                    self.grace.insert(GraceTimer {
                        deadline,
                        conn,
                        key: key.clone(),
                        user: user.to_owned(),
                    });
                }
                r
            }
            Err(e) => {
                self.fail("release", e);
                Released::NoLease
            }
        }
    }

    pub(super) fn redis_update(
        &mut self,
        key: &ChannelKey,
        user: &str,
        status: Option<PresenceStatus>,
        data: Option<serde_json::Value>,
        now: Millis,
    ) -> Option<Member> {
        // A change is announced by the script (PRES-16); a touch (PRES-24) is not.
        let announce = (status.is_some() || data.is_some()) && !self.presence_detached();
        let mut args = vec![
            user.as_bytes().to_vec(),
            status
                .map(|s| frame_of(&s).to_string())
                .unwrap_or_default()
                .into_bytes(),
            data.map(|d| frame_of(&d).to_string())
                .unwrap_or_default()
                .into_bytes(),
            now.to_string().into_bytes(),
        ];
        args.extend(self.announce_args(key, None));
        args.push(if announce {
            updated_head(key, user).into_bytes()
        } else {
            Vec::new()
        });
        let mut keys = vec![self.keys.presence(key)];
        keys.extend(self.announce_keys(key));
        let parts = match self.run(&self.presence.update, &keys, &args) {
            Ok(Value::Nil) => return None,
            Ok(v) => array(v),
            Err(e) => Err(e),
        };
        let member = parts.and_then(|mut parts| {
            let reply = parts.split_off(1.min(parts.len()));
            let record = parts.into_iter().next().ok_or("no record")?;
            let member = member_of(user, &bytes(record)?)?;
            Ok((member, reply))
        });
        match member {
            Ok((member, reply)) => {
                if announce {
                    let updated = frame_of(&ServerMessage::PresenceUpdated(PresenceUpdated {
                        channel: key.name.clone(),
                        member: member.clone(),
                    }));
                    self.note_announced(key, updated, reply);
                }
                Some(member)
            }
            Err(e) => {
                self.fail("presence update", e);
                None
            }
        }
    }

    /// Grace leases of this node due at `now`, then (once a period) the liveness renewal
    /// and the sweep of dead nodes.
    pub(super) fn redis_expire(&mut self, now: Millis) -> Vec<GraceExpired> {
        let mut gone = Vec::new();
        while let Some(t) = self.grace.first().filter(|t| t.deadline <= now).cloned() {
            self.grace.remove(&t);
            let (args, left) = self.leave_args(
                &t.key,
                [
                    t.conn.to_string().into_bytes(),
                    t.user.as_bytes().to_vec(),
                    t.deadline.to_string().into_bytes(),
                ],
                &t.user,
            );
            let keys = self.leave_keys(&t.key);
            match self
                .run(&self.presence.expire, &keys, &args)
                .and_then(array)
            {
                Ok(parts) => {
                    if let Released::Left { user_id, last_seen } =
                        self.released_announced(&t.key, parts, &t.user, left)
                    {
                        gone.push(GraceExpired {
                            key: t.key,
                            user_id,
                            last_seen,
                        });
                    }
                }
                Err(e) => self.fail("grace expiry", e),
            }
        }
        if now >= self.next_liveness {
            self.next_liveness = now + LIVENESS_PERIOD_MS;
            if let Err(e) = self.renew_liveness() {
                self.fail("liveness", e);
            }
            match self.sweep_dead_nodes(now) {
                Ok(mut left) => gone.append(&mut left),
                Err(e) => self.fail("dead-node sweep", e),
            }
        }
        gone
    }

    /// Announces this node alive for [`LIVENESS_TTL_MS`].
    pub(super) fn renew_liveness(&self) -> Result<(), String> {
        let mut conn = self.redis.borrow_mut();
        redis::pipe()
            .cmd("SET")
            .arg(self.keys.alive(self.node))
            .arg(1)
            .arg("PX")
            .arg(LIVENESS_TTL_MS)
            .ignore()
            .cmd("SADD")
            .arg(self.keys.node_set())
            .arg(self.node)
            .ignore()
            // Another node may have found this one dead during a stall: it is alive, and
            // when it really dies its grace period counts from then, not from the stall.
            .cmd("DEL")
            .arg(self.keys.dead(self.node))
            .ignore()
            .cmd("PEXPIRE")
            .arg(self.keys.stats(self.node))
            .arg(LIVENESS_TTL_MS)
            .ignore()
            .query::<()>(&mut *conn)
            .map_err(|e| e.to_string())?;
        drop(conn);
        self.rewrite_share_if_needed();
        Ok(())
    }

    /// CLUS-8: the leases of every node whose liveness key expired at least the grace
    /// period ago are removed; the members that had no other lease left.
    fn sweep_dead_nodes(&mut self, now: Millis) -> Result<Vec<GraceExpired>, String> {
        if self.faults.on(Fault::ClusterNodeDeadLeasesKept) {
            return Ok(Vec::new()); // CLUS-8 broken on purpose
        }
        let nodes: Vec<u64> = redis::cmd("SMEMBERS")
            .arg(self.keys.node_set())
            .query(&mut *self.redis.borrow_mut())
            .map_err(|e| e.to_string())?;
        let mut gone = Vec::new();
        let me = self.node;
        for node in nodes.into_iter().filter(|n| *n != me) {
            let alive: bool = redis::cmd("EXISTS")
                .arg(self.keys.alive(node))
                .query(&mut *self.redis.borrow_mut())
                .map_err(|e| e.to_string())?;
            if alive {
                continue;
            }
            // The first node to find it dead stamps the time; every node reads the stamp.
            // The stamp outlives the grace period by a few sweeps, no more: one left by a
            // node that came back (and raced its own renewal) does not cut a later grace.
            let (_, since): (bool, Millis) = redis::pipe()
                .cmd("SET")
                .arg(self.keys.dead(node))
                .arg(now)
                .arg("NX")
                .arg("PX")
                .arg(self.grace_ms + 3 * LIVENESS_PERIOD_MS)
                .cmd("GET")
                .arg(self.keys.dead(node))
                .query(&mut *self.redis.borrow_mut())
                .map_err(|e| e.to_string())?;
            if now < since + self.grace_ms {
                continue;
            }
            gone.extend(self.drop_node(node)?);
        }
        Ok(gone)
    }

    fn drop_node(&mut self, node: u64) -> Result<Vec<GraceExpired>, String> {
        let channels: Vec<String> = redis::cmd("SMEMBERS")
            .arg(self.keys.node_channels(node))
            .query(&mut *self.redis.borrow_mut())
            .map_err(|e| e.to_string())?;
        let mut gone = Vec::new();
        for id in channels {
            let Some(key) = Keys::channel_of_id(&id) else {
                continue;
            };
            let args = [
                node.to_string().into_bytes(),
                NODE_SHIFT.to_string().into_bytes(),
            ];
            let keys = self.presence_keys(&key);
            let parts = array(self.run(&self.presence.drop_node, &keys, &args)?)?;
            for pair in parts.chunks(2) {
                gone.push(GraceExpired {
                    key: key.clone(),
                    user_id: word(pair, 0),
                    last_seen: word(pair, 1).parse().unwrap_or(0),
                });
            }
        }
        // Whoever removes the node from the set announces; a node that raced and found
        // the leases already gone got nothing back from the script.
        redis::pipe()
            .cmd("SREM")
            .arg(self.keys.node_set())
            .arg(node)
            .ignore()
            .cmd("DEL")
            .arg(self.keys.node_channels(node))
            .arg(self.keys.dead(node))
            .ignore()
            .query::<()>(&mut *self.redis.borrow_mut())
            .map_err(|e| e.to_string())?;
        Ok(gone)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::engine::Delivery;
    use crate::core::{Engine, Faults, InProcessEngine};
    use crate::store::Store;
    use chorus_protocol::ChannelName;

    fn redis_url() -> String {
        std::env::var("CHORUS_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
    }

    /// Node A announces a join that node B has not received when B takes a snapshot for a
    /// new subscriber: what B holds back of it, once a publish of B's own brings it.
    fn held_back_after_a_join_in_flight(test: &str, faults: Faults) -> Vec<(Frame, Vec<ConnId>)> {
        let prefix = format!("chorus-unit-{test}-{}", std::process::id());
        let node = |faults: Faults| {
            let local = InProcessEngine::load(Store::memory().unwrap(), 10, Faults::default());
            let joined = super::super::join(&redis_url(), &prefix, local.unwrap(), 10, 1000);
            let mut joined = joined.unwrap();
            joined.engine = joined.engine.with_faults(faults);
            joined
        };
        let (mut a, mut b) = (node(Faults::default()), node(faults));
        let key = ChannelKey {
            tenant: Arc::from(""),
            name: ChannelName("presence-inflight".into()),
        };
        let (old, new) = (b.node << NODE_SHIFT | 1, b.node << NODE_SHIFT | 2);
        b.engine.add_subscriber(&key, old);
        let joined = a.engine.take_lease(
            &key,
            a.node << NODE_SHIFT | 1,
            "uma",
            &serde_json::json!({}),
            5,
        );
        assert!(matches!(joined, LeaseTaken::Joined(_)), "{joined:?}");
        b.engine.add_subscriber(&key, new);
        let members = b.engine.snapshot_members(&key, new);
        assert_eq!(members.len(), 1, "the snapshot lists uma: {members:?}");
        // B's own publish brings what it missed, uma's user:joined among it.
        let mine: Frame = Arc::from(r#"{"type":"cursor:moved","channel":"presence-inflight"}"#);
        let Delivery::Frames(missed) = b.engine.relay(&key, &mine, None) else {
            panic!("not delivered");
        };
        assert!(
            missed
                .iter()
                .any(|f| f.starts_with(r#"{"type":"user:joined""#)),
            "{missed:?}"
        );
        let held = b.engine.take_held_back();
        for n in [&a, &b] {
            n.bus.close();
        }
        let _ = super::super::delete_deployment(&redis_url(), &prefix);
        assert!(
            held.iter().all(|(_, conns)| !conns.contains(&old)),
            "the older subscriber gets it"
        );
        held
    }

    #[test]
    fn a_join_the_snapshot_reflects_is_held_back_from_that_subscriber_only() {
        let held = held_back_after_a_join_in_flight("held", Faults::default());
        assert_eq!(held.len(), 1, "{held:?}");
        assert!(held[0].0.starts_with(r#"{"type":"user:joined""#));
        assert_eq!(held[0].1.len(), 1);
    }

    #[cfg(feature = "faults")]
    #[test]
    fn the_unfiltered_snapshot_fault_is_caught() {
        let mut faults = Faults::default();
        faults.insert(Fault::ClusterNodeSnapshotUnfiltered);
        let held = held_back_after_a_join_in_flight("unheld", faults);
        assert!(
            held.is_empty(),
            "cluster_node_snapshot_unfiltered holds nothing back"
        );
    }

    #[test]
    fn the_update_the_script_completes_is_the_frame_the_server_serializes() {
        let key = ChannelKey {
            tenant: Arc::from("t"),
            name: ChannelName("presence-\"x\"".into()),
        };
        let member = Member {
            user_id: "ann \"a\"".into(),
            profile: serde_json::json!({"name": "Ann", "n": 1.5}),
            status: PresenceStatus::Away,
            data: serde_json::json!({"z": [1, {"b": null}], "a": "\t"}),
            joined_at: 5,
            last_seen: 9,
        };
        // The record as the scripts keep it, and the update script's concatenation.
        let (status, profile, data) = (
            frame_of(&member.status),
            frame_of(&member.profile),
            frame_of(&member.data),
        );
        let lua = format!(
            "{}{profile},\"status\":{status},\"data\":{data},\"joined_at\":{},\"last_seen\":{}}}}}",
            updated_head(&key, &member.user_id),
            member.joined_at,
            member.last_seen
        );
        let served = frame_of(&ServerMessage::PresenceUpdated(PresenceUpdated {
            channel: key.name.clone(),
            member,
        }));
        assert_eq!(lua, *served);
    }
}
