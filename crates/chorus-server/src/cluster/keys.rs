//! Where a channel lives in Redis. Every key starts with the deployment's prefix, so that
//! several deployments (or parallel test runs) share one Redis without meeting.
//!
//! A channel's id is `{tenant length}:{tenant}{name}`: tenants come from tokens and may
//! contain any character, so the length, not a separator, tells where the tenant ends.

use std::sync::Arc;

use chorus_protocol::ChannelName;

use crate::core::ChannelKey;

/// The key names of one deployment.
#[derive(Debug, Clone)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    /// The deployment's prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Keys under `prefix` (e.g. `chorus`).
    pub fn new(prefix: &str) -> Keys {
        Keys {
            prefix: prefix.to_owned(),
        }
    }

    fn channel(&self, kind: &str, key: &ChannelKey) -> String {
        format!("{}:{kind}:{}", self.prefix, Keys::channel_id(key))
    }

    /// Hash: `epoch`, `seq` (the stream's top), `sver` and `slen` (shared state's version
    /// and summed entry lengths, STATE-9), `bseq` (the last place in the channel's one bus
    /// order, CLUS-7).
    pub fn meta(&self, key: &ChannelKey) -> String {
        self.channel("meta", key)
    }

    /// List: the retained stream items, oldest first, each an [`entry`](super::entry).
    pub fn history(&self, key: &ChannelKey) -> String {
        self.channel("hist", key)
    }

    /// List: the last bus payloads of the channel, oldest first, one per `bseq` (a node
    /// that sees a gap in the bus order fills it from here, CLUS-7).
    pub fn recent(&self, key: &ChannelKey) -> String {
        self.channel("recent", key)
    }

    /// Hash: shared-state key -> compact JSON value.
    pub fn state(&self, key: &ChannelKey) -> String {
        self.channel("state", key)
    }

    /// Pub/sub channel of the channel's frames; a node subscribes while it has subscribers.
    pub fn bus(&self, key: &ChannelKey) -> String {
        self.channel("bus", key)
    }

    /// The channel a bus name stands for.
    pub fn channel_of_bus(&self, bus: &str) -> Option<ChannelKey> {
        Keys::channel_of_id(bus.strip_prefix(&self.prefix)?.strip_prefix(":bus:")?)
    }

    /// Hash: user -> member record (see [`presence_scripts`](super::presence_scripts)).
    pub fn presence(&self, key: &ChannelKey) -> String {
        self.channel("pres", key)
    }

    /// Hash: user -> the member's leases.
    pub fn leases(&self, key: &ChannelKey) -> String {
        self.channel("lease", key)
    }

    /// Hash of a node's share of the statistics (HTTP-14a, HTTP-14b): `c:{tenant}` ->
    /// its open connections of the tenant, `s:{channel id}` -> its subscribers of the
    /// channel; expires with the node's liveness, so a dead node's share goes with it.
    pub fn stats(&self, node: u64) -> String {
        format!("{}:stats:{node}", self.prefix)
    }

    /// Hash: user -> the user's latest flushed cursor, as in `cursor:moved` (CURS-14).
    pub fn cursors(&self, key: &ChannelKey) -> String {
        self.channel("curs", key)
    }

    /// String: the room of a presence channel, JSON.
    pub fn room(&self, key: &ChannelKey) -> String {
        self.channel("room", key)
    }

    /// A key of a resource: `P:{kind}:{tenant length}:{tenant}{resource}`, the tenant told
    /// apart by its length as in [`Keys::channel_id`] (resource names are `[A-Za-z0-9_-]`,
    /// HTTP-27).
    fn resource(&self, kind: &str, tenant: &str, resource: &str) -> String {
        format!("{}:{kind}:{}:{tenant}{resource}", self.prefix, tenant.len())
    }

    /// Hash: record id -> the record's JSON, of one resource of one tenant (HTTP-34,
    /// CLUS-14; see [`redis_records`](super::redis_records)).
    pub fn records(&self, tenant: &str, resource: &str) -> String {
        self.resource("rec", tenant, resource)
    }

    /// Sorted set: the resource's record ids scored by their creation number, the order
    /// `GET /api/resources/{name}` pages in (HTTP-28).
    pub fn record_order(&self, tenant: &str, resource: &str) -> String {
        self.resource("recix", tenant, resource)
    }

    /// Counter: the resource's last creation number.
    pub fn record_counter(&self, tenant: &str, resource: &str) -> String {
        self.resource("recn", tenant, resource)
    }

    /// Hash: mark key -> value, of one ingestion source (a feed's position, the
    /// idempotency keys of `POST /api/changes`, CHG-14, CHG-19).
    pub fn marks(&self, source: &str) -> String {
        format!("{}:mark:{source}", self.prefix)
    }

    /// Sorted set: the source's mark keys scored by the time they were set (`at`), so that
    /// old ones are forgotten without a scan (CHG-17).
    pub fn mark_times(&self, source: &str) -> String {
        format!("{}:markat:{source}", self.prefix)
    }

    /// A channel's id inside other keys' values.
    pub fn channel_id(key: &ChannelKey) -> String {
        format!("{}:{}{}", key.tenant.len(), key.tenant, key.name.as_str())
    }

    /// The channel of an id from [`Keys::channel_id`].
    pub fn channel_of_id(id: &str) -> Option<ChannelKey> {
        let (len, rest) = id.split_once(':')?;
        let len: usize = len.parse().ok()?;
        Some(ChannelKey {
            tenant: Arc::from(rest.get(..len)?),
            name: ChannelName(rest.get(len..)?.to_owned()),
        })
    }

    /// Set: ids of the channels where `node` holds (or held) leases.
    pub fn node_channels(&self, node: u64) -> String {
        format!("{}:nodechans:{node}", self.prefix)
    }

    /// String with a TTL: `node` is alive while it exists (CLUS-8).
    pub fn alive(&self, node: u64) -> String {
        format!("{}:alive:{node}", self.prefix)
    }

    /// Set: the numbers of the nodes that joined and were not yet swept.
    pub fn node_set(&self) -> String {
        format!("{}:nodeset", self.prefix)
    }

    /// String: when a node was first found dead (the grace period counts from then).
    pub fn dead(&self, node: u64) -> String {
        format!("{}:dead:{node}", self.prefix)
    }

    /// Counter handing out node numbers (connection ids embed them, CLUS-5).
    pub fn node_counter(&self) -> String {
        format!("{}:nodes", self.prefix)
    }

    /// Every key of the deployment, for `SCAN MATCH` (tests clean up with it).
    pub fn pattern(&self) -> String {
        format!("{}:*", self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bus_name_gives_back_its_channel_whatever_the_tenant_holds() {
        let keys = Keys::new("t1");
        for tenant in ["", "acme", "a:b:3:c"] {
            let key = ChannelKey {
                tenant: Arc::from(tenant),
                name: ChannelName("chat:1".into()),
            };
            assert_eq!(keys.channel_of_bus(&keys.bus(&key)), Some(key));
        }
        assert_eq!(keys.channel_of_bus("other:bus:0:x"), None);
    }
}
