//! Connection lifecycle: welcome, ping, token refresh, disconnect (spec: connection.md).

use std::sync::Arc;

use chorus_protocol::{
    AuthRefreshed, Extensible, Millis, Ping, Pong, RequestId, Right, ServerMessage, Unsubscribed,
    UserInfo, Welcome, PROTOCOL,
};

use super::faults::Fault;
use super::limits::{grants_match, rights_allow, TokenBucket};
use super::{ConnId, Core, CoreError, Effect, Engine, Outbox, Session};

/// What the core knows about one open connection.
#[derive(Debug)]
pub(super) struct Connection {
    pub session: Session,
    /// The tenant, shared by every key built for this connection.
    pub tenant: Arc<str>,
    pub subscriptions: Subscriptions,
    /// Broadcast rate limit (CHAN-22, LIMIT-5).
    pub bucket: TokenBucket,
    /// Request budget across every request type (LIMIT-14).
    pub requests: TokenBucket,
    /// Wrong room passwords left (LIMIT-16).
    pub passwords: TokenBucket,
    /// Channels left in the fan-out by the `unsubscribe_keeps_delivering` fault.
    pub ghosts: Vec<chorus_protocol::ChannelName>,
}

/// The channels a connection is subscribed to, in name order: a sorted `Vec` (a few
/// dozen bytes for the usual one or two channels, where a `BTreeSet` allocates a 280-byte
/// node for the first), searched in O(log n) up to `max_subscriptions`.
#[derive(Debug, Default)]
pub(super) struct Subscriptions(Vec<chorus_protocol::ChannelName>);

impl Subscriptions {
    pub fn new() -> Self {
        Subscriptions(Vec::new())
    }

    pub fn contains(&self, name: &chorus_protocol::ChannelName) -> bool {
        self.0.binary_search(name).is_ok()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Adds `name`; false when it was there already.
    pub fn insert(&mut self, name: chorus_protocol::ChannelName) -> bool {
        match self.0.binary_search(&name) {
            Ok(_) => false,
            Err(at) => {
                self.0.insert(at, name);
                true
            }
        }
    }

    /// Removes `name`; false when it was not there.
    pub fn remove(&mut self, name: &chorus_protocol::ChannelName) -> bool {
        match self.0.binary_search(name) {
            Ok(at) => {
                self.0.remove(at);
                true
            }
            Err(_) => false,
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = &chorus_protocol::ChannelName> {
        self.0.iter()
    }
}

impl<E: Engine> Core<E> {
    /// Registers a connection whose token the shell verified; returns its `welcome`
    /// (CONN-6 to CONN-9). Connection ids must not be reused while the core runs.
    pub fn connect(&mut self, conn: ConnId, session: Session, now: Millis) -> Vec<Effect> {
        let mut limits = self.config.limits;
        if self.fault(Fault::StateLimitUnclamped) {
            limits.max_state_bytes = limits.max_frame_bytes; // LIMIT-12 broken on purpose
        }
        if self.fault(Fault::LimitKeyZero) {
            limits.max_cursor_data_bytes = 0; // LIMIT-11 broken on purpose
        }
        let welcome = Welcome {
            protocol: PROTOCOL.to_owned(),
            connection_id: format!("c-{conn:x}"),
            user: UserInfo {
                id: session.user_id.clone(),
                profile: if session.profile.is_object() {
                    session.profile.clone()
                } else {
                    serde_json::json!({})
                },
            },
            tenant: session.tenant.clone(),
            heartbeat: self.config.heartbeat,
            limits: limits.into(),
            capabilities: self
                .config
                .capabilities
                .iter()
                .copied()
                .map(Extensible::Known)
                .collect(),
            server: self.config.server_name.clone(),
            expires_at: session.expires_at.map(|at| {
                if self.fault(Fault::ExpiresAtSeconds) {
                    at / 1000
                } else {
                    at
                }
            }),
        };
        let tenant: Arc<str> = Arc::from(session.tenant.as_str());
        self.engine.count_connection(&tenant, 1); // HTTP-14a across nodes
        self.conns.insert(
            conn,
            Box::new(Connection {
                session,
                tenant,
                subscriptions: Subscriptions::new(),
                bucket: TokenBucket::full(
                    if self.config.faults.on(Fault::BucketStartsEmpty) {
                        0
                    } else {
                        limits.broadcast_burst
                    },
                    now,
                ),
                requests: TokenBucket::full(limits.request_burst, now),
                passwords: TokenBucket::full(limits.max_password_attempts, now),
                ghosts: Vec::new(),
            }),
        );
        let mut out = Outbox::default();
        out.send(conn, &ServerMessage::Welcome(welcome));
        out.effects
    }

    /// CONN-12.
    pub(super) fn ping(
        &mut self,
        conn: ConnId,
        m: Ping,
        now: Millis,
        out: &mut Outbox,
    ) -> Result<(), CoreError> {
        if !self.fault(Fault::NoPong) {
            let ts = if self.fault(Fault::PongTsSeconds) {
                now / 1000
            } else {
                now
            };
            out.send(conn, &ServerMessage::Pong(Pong { id: m.id, ts }));
        }
        Ok(())
    }

    /// Applies a refreshed session after the shell verified an `auth:refresh` token
    /// (CONN-15): answers `auth:refreshed`, or `unauthorized` when `sub` or tenant differ
    /// (CONN-16), then ends the private subscriptions the new grants no longer cover
    /// (CONN-17). A token that does not verify is answered by the shell itself.
    pub fn refresh(
        &mut self,
        conn: ConnId,
        id: Option<RequestId>,
        session: Session,
        now: Millis,
    ) -> Vec<Effect> {
        let mut out = Outbox::default();
        let Some(c) = self.conns.get_mut(&conn) else {
            return out.effects;
        };
        let same_user = c.session.user_id == session.user_id
            || self.config.faults.on(Fault::RefreshAcceptsOtherUser);
        if !same_user || c.session.tenant != session.tenant {
            let e = CoreError::Unauthorized("the new token names another user or tenant".into());
            out.send(conn, &ServerMessage::Error(e.to_frame(id, None)));
            return out.effects;
        }
        let expires_at = session.expires_at;
        c.session = session;
        let keep = self.config.faults.on(Fault::RefreshKeepsRevoked);
        let keep_unrighted = self.config.faults.on(Fault::RefreshKeepsUnrighted);
        let revoked: Vec<_> = c
            .subscriptions
            .iter()
            .filter(|name| {
                let granted = !name.needs_grant() || grants_match(&c.session.grants, name);
                let righted = keep_unrighted
                    || rights_allow(c.session.rights.as_ref(), Right::Subscribe, name);
                !granted || !righted // CONN-17, CHAN-42
            })
            .filter(|_| !keep)
            .cloned()
            .collect();
        out.send(
            conn,
            &ServerMessage::AuthRefreshed(AuthRefreshed { id, expires_at }),
        );
        for name in revoked {
            self.leave(conn, &name, true, now, &mut out);
            let gone = Unsubscribed {
                id: None,
                channel: name,
                reason: Some("forbidden".into()),
            };
            out.send(conn, &ServerMessage::Unsubscribed(gone));
        }
        out.effects
    }

    /// The connection is gone. `graceful`: the client closed with 1000, or the server
    /// closed with 4000-4099 (PRES-26); otherwise leases wait out the grace period
    /// (PRES-27).
    pub fn disconnect(&mut self, conn: ConnId, graceful: bool, now: Millis) -> Vec<Effect> {
        let mut out = Outbox::default();
        self.passwords_done.remove(&conn);
        let Some(c) = self.conns.get(&conn) else {
            return out.effects;
        };
        let names: Vec<_> = c.subscriptions.iter().cloned().collect();
        let ghosts: Vec<_> = c.ghosts.iter().map(|n| self.key(&c.tenant, n)).collect();
        let tenant = c.tenant.clone();
        for name in names {
            self.leave(conn, &name, graceful, now, &mut out);
        }
        for key in ghosts {
            self.engine.remove_subscriber(&key, conn);
        }
        self.conns.remove(&conn);
        self.engine.count_connection(&tenant, -1);
        // The gone connection receives nothing more.
        out.effects
            .retain(|e| !matches!(e, Effect::Send { to, .. } if *to == conn));
        out.effects
    }
}

#[cfg(test)]
mod tests {
    use super::Subscriptions;
    use chorus_protocol::ChannelName;

    #[test]
    fn subscriptions_are_a_set_in_name_order() {
        let mut s = Subscriptions::new();
        for name in ["presence-b", "a", "presence-b", "c"] {
            s.insert(ChannelName::from(name));
        }
        assert_eq!(s.len(), 3);
        let names: Vec<&str> = s.iter().map(|n| n.as_str()).collect();
        assert_eq!(names, ["a", "c", "presence-b"]);
        assert!(s.remove(&ChannelName::from("c")));
        assert!(!s.remove(&ChannelName::from("c")));
        assert!(!s.contains(&ChannelName::from("c")));
        assert!(s.contains(&ChannelName::from("a")));
    }
}
