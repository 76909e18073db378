//! The cluster engine's deliberate bugs that take more than one line (see
//! [`Fault`](crate::core::Fault)); inert without the `faults` feature, where every check
//! folds away.

use super::redis_engine::RedisEngine;
use crate::core::engine::Delivery;
use crate::core::{ChannelKey, Fault};

impl RedisEngine {
    /// `cluster_seq_read_modify_write`: the channel's seq as read before the append.
    pub(super) fn stale_seq(&self, key: &ChannelKey) -> Option<u64> {
        if !self.faults.on(Fault::ClusterSeqReadModifyWrite) {
            return None;
        }
        let read = redis::cmd("HGET")
            .arg(self.keys.meta(key))
            .arg("seq")
            .query::<Option<u64>>(&mut *self.redis.borrow_mut())
            .ok()
            .flatten();
        // The race a read-modify-write loses, made wide enough that two pipelining
        // publishers on two nodes meet it every run, not only on an unlucky schedule.
        std::thread::sleep(std::time::Duration::from_millis(10));
        read
    }

    /// `cluster_seq_read_modify_write`: writes back what was read plus one, undoing the
    /// increments other nodes made meanwhile (CLUS-1 broken on purpose).
    pub(super) fn write_back_seq(&self, key: &ChannelKey, stale: Option<u64>) {
        if let Some(read) = stale {
            let _ = redis::cmd("HSET")
                .arg(self.keys.meta(key))
                .arg("seq")
                .arg(read + 1)
                .query::<i64>(&mut *self.redis.borrow_mut());
        }
    }
}

impl RedisEngine {
    /// `cluster_remote_item_lost`: the item counts as delivered but reaches no one.
    pub(super) fn lose_remote(&mut self, key: &ChannelKey, seq: u64, order: u64) -> Delivery {
        self.mark_delivered(key, seq, order);
        Delivery::Frames(Vec::new())
    }
}

impl RedisEngine {
    /// `cluster_ephemeral_unpublished`, `cluster_state_event_unordered`: a state write's
    /// event is not published by the write script; [`Engine::relay`](crate::core::Engine)
    /// publishes it apart (or, for the first, not at all).
    pub(super) fn event_detached(&self) -> bool {
        self.faults.on(Fault::ClusterEphemeralUnpublished)
            || self.faults.on(Fault::ClusterStateEventUnordered)
    }

    /// `cluster_state_event_unordered`: the gap between a write and its publish, made wide
    /// enough (and uneven: after odd versions only, so a later write through the other node
    /// overtakes) that writers on two nodes meet it every run.
    pub(super) fn delay_detached_event(&self, version: u64) {
        if self.faults.on(Fault::ClusterStateEventUnordered) && version % 2 == 1 {
            // 10 ms missed the overtaking write once on a loaded machine (6/7 in a run).
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }
}

impl RedisEngine {
    /// `cluster_ephemeral_unpublished`, `cluster_presence_event_unordered`: a presence
    /// change's event is not published by the lease or update script; the core's relay
    /// publishes it apart (or, for the first, not at all).
    pub(super) fn presence_detached(&self) -> bool {
        self.faults.on(Fault::ClusterEphemeralUnpublished)
            || self.faults.on(Fault::ClusterPresenceEventUnordered)
    }

    /// `cluster_presence_event_unordered`: a departure's publish comes 10 ms after the
    /// lease change, wide enough for a join through another node to overtake it.
    pub(super) fn delay_detached_departure(&self) {
        if self.faults.on(Fault::ClusterPresenceEventUnordered) {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }
}
