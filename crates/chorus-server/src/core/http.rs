//! The HTTP API's views and server-side publishing (spec: http.md).

use std::sync::Arc;

use chorus_protocol::http::{ChannelUsersResponse, PublishRequest, PublishResponse, StatsResponse};
use chorus_protocol::{ChannelKind, ChannelName, Millis, Right};

use super::channels::check_event;
use super::dedup::check_message_id;
use super::faults::Fault;
use super::limits::{grants_match, rights_allow, TokenBucket};
use super::{Core, CoreError, Effect, Engine, Outbox, Session};

/// Idle publish buckets are forgotten once there are this many.
const MAX_IDLE_BUCKETS: usize = 10_000;

impl<E: Engine> Core<E> {
    /// `POST /api/broadcast` (`from` and `grants` = None, HTTP-18) or `POST /api/publish`
    /// (the token's user and grants, HTTP-20 to HTTP-24). The message goes to every
    /// subscriber, the publishing user's connections included.
    pub fn server_publish(
        &mut self,
        tenant: &str,
        req: PublishRequest,
        publisher: Option<&Session>,
        now: Millis,
    ) -> Result<(PublishResponse, Vec<Effect>), CoreError> {
        let kind = self.check_name(&req.channel)?;
        check_event(&req.event)?;
        check_message_id(req.message_id.as_deref())?;
        if req.channel.is_resource_feed() {
            return Err(CoreError::Forbidden(
                "resource: channels carry server changes only".into(),
            )); // CHG-10
        }
        let tenant: Arc<str> = Arc::from(tenant);
        let key = self.key(&tenant, &req.channel);
        let from = publisher.map(|s| s.user_id.clone());
        if let (Some(user), Some(session)) = (&from, publisher) {
            if req.channel.needs_grant() && !grants_match(&session.grants, &req.channel) {
                return Err(CoreError::Forbidden(format!(
                    "no grant matches {}",
                    req.channel
                )));
            }
            let ignore_rights = self.fault(Fault::HttpPublishRightsIgnored);
            if !ignore_rights
                && !rights_allow(session.rights.as_ref(), Right::Publish, &req.channel)
            {
                return Err(CoreError::Forbidden(format!(
                    "the token's rights do not allow publish on {}",
                    req.channel
                ))); // HTTP-37
            }
            if kind == ChannelKind::Presence && self.engine.member(&key, user).is_none() {
                return Err(CoreError::Forbidden(format!(
                    "not a member of {}",
                    req.channel
                ))); // HTTP-22
            }
        }
        let publish_key = req
            .message_id
            .clone()
            .filter(|_| !self.fault(Fault::HttpDedupIgnored))
            .map(|id| (key.clone(), from.clone(), id));
        if let Some(earlier) = self.earlier_publish(publish_key.as_ref(), now) {
            let reply = PublishResponse {
                channel: req.channel,
                seq: earlier.seq,
                ts: earlier.ts,
            };
            return Ok((reply, Vec::new())); // HTTP-38: a retry
        }
        if let Some(user) = &from {
            self.take_publish_token(&tenant, user, now)?;
        }
        let publisher = from.clone();
        let from = match from {
            None if self.fault(Fault::BroadcastCarriesFrom) => Some("server".to_owned()),
            from => from,
        };
        let (seq, frame) = self.publish(&key, req.event, req.data, from, now)?;
        self.remember_publish(publish_key, seq, now);
        let mut out = Outbox::default();
        self.fan_out(&key, &frame, None, &mut out);
        if let Some(user) = publisher.filter(|_| self.fault(Fault::PublishSkipsOwnConnections)) {
            let conns = &self.conns;
            out.effects.retain(|e| match e {
                Effect::Send { to, .. } => conns.get(to).is_none_or(|c| c.session.user_id != user),
                Effect::Close { .. } => true,
            });
        }
        let reply = PublishResponse {
            channel: req.channel,
            seq,
            ts: now,
        };
        Ok((reply, out.effects))
    }

    /// HTTP-24: the broadcast rate limit, per user.
    fn take_publish_token(
        &mut self,
        tenant: &Arc<str>,
        user: &str,
        now: Millis,
    ) -> Result<(), CoreError> {
        let l = self.config.limits;
        let (rate, burst) = (l.broadcast_rate_per_sec, l.broadcast_burst);
        if self.publish_buckets.len() >= MAX_IDLE_BUCKETS {
            self.publish_buckets
                .retain(|_, b| !b.is_full(rate, burst, now));
        }
        self.publish_buckets
            .entry((tenant.clone(), user.to_owned()))
            .or_insert_with(|| TokenBucket::full(burst, now))
            .take(rate, burst, now)
            .map_err(|retry_after_ms| CoreError::RateLimited { retry_after_ms })
    }

    /// `GET /api/stats` for one tenant (HTTP-14a, HTTP-14b, HTTP-15).
    pub fn stats(&self, tenant: &str) -> StatsResponse {
        let conns = self.conns.values().filter(|c| &*c.tenant == tenant);
        let (connections, subscriptions) = conns.fold((0, 0), |(n, s), c| {
            (n + 1, s + c.subscriptions.len() as u64)
        });
        // A cluster engine sums every node's (HTTP-14a, CLUS-4); one process has its own.
        let (connections, subscriptions) = self.engine.totals(tenant, (connections, subscriptions));
        StatsResponse {
            connections,
            subscriptions,
            channels: self.engine.active_channels(tenant),
        }
    }

    /// `GET /api/channel/users` (HTTP-16, HTTP-17).
    pub fn channel_users(
        &self,
        tenant: &str,
        channel: &ChannelName,
    ) -> Result<ChannelUsersResponse, CoreError> {
        if self.check_name(channel)? != ChannelKind::Presence {
            return Err(CoreError::InvalidChannel(format!(
                "{channel} is not a presence channel"
            )));
        }
        let users = self.engine.members(&self.key(&Arc::from(tenant), channel));
        Ok(ChannelUsersResponse {
            channel: channel.clone(),
            count: users.len() as u64,
            users,
        })
    }
}
