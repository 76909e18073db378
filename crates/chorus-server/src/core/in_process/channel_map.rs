//! The engine's channels with the indexes its budgets need, so that none of them is a scan
//! of every channel under the core's lock: channels per tenant (LIMIT-18), a queue of
//! deadlines for the idle expiry, and the channels ordered by retained bytes for the total
//! retention budget (HIST-19).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::Deref;
use std::sync::Arc;

use chorus_protocol::Millis;

use super::Channel;
use crate::core::engine::ChannelKey;

/// Channels by key; reads go through `Deref`, every change through a method that keeps the
/// indexes right.
#[derive(Default)]
pub(super) struct ChannelMap {
    map: HashMap<ChannelKey, Channel>,
    per_tenant: HashMap<Arc<str>, usize>,
    /// Channels used since the last sweep, each once (its `touched` flag is set).
    touched: Vec<ChannelKey>,
    /// When unused channels may be forgotten; a sweep visits these and the touched only.
    deadlines: BTreeMap<Millis, Vec<ChannelKey>>,
    /// `(retained bytes, key)` of every channel retaining something.
    by_size: BTreeSet<(usize, ChannelKey)>,
    /// Retained bytes of all channels.
    total_bytes: usize,
}

impl Deref for ChannelMap {
    type Target = HashMap<ChannelKey, Channel>;

    fn deref(&self) -> &Self::Target {
        &self.map
    }
}

impl ChannelMap {
    /// A loaded channel (at start).
    pub fn insert(&mut self, key: ChannelKey, ch: Channel) {
        self.remove(&key);
        *self.per_tenant.entry(key.tenant.clone()).or_default() += 1;
        let bytes = ch.retained_bytes;
        self.map.insert(key.clone(), ch);
        self.mark(&key);
        self.resized(&key, 0, bytes);
    }

    /// The channel, created when missing, marked as used.
    pub fn open(&mut self, key: &ChannelKey) -> &mut Channel {
        let tenants = &mut self.per_tenant;
        let ch = self.map.entry(key.clone()).or_insert_with(|| {
            *tenants.entry(key.tenant.clone()).or_default() += 1;
            Channel::new()
        });
        if !ch.touched {
            ch.touched = true;
            self.touched.push(key.clone());
        }
        ch
    }

    /// The channel when it exists, marked as used.
    pub fn used(&mut self, key: &ChannelKey) -> Option<&mut Channel> {
        let ch = self.map.get_mut(key)?;
        if !ch.touched {
            ch.touched = true;
            self.touched.push(key.clone());
        }
        Some(ch)
    }

    fn mark(&mut self, key: &ChannelKey) {
        let _ = self.used(key);
    }

    /// Forgets a channel; whether it was there.
    pub fn remove(&mut self, key: &ChannelKey) -> bool {
        let Some(ch) = self.map.remove(key) else {
            return false;
        };
        if let Some(n) = self.per_tenant.get_mut(&key.tenant) {
            *n -= 1;
            if *n == 0 {
                self.per_tenant.remove(&key.tenant);
            }
        }
        self.resized(key, ch.retained_bytes, 0);
        true
    }

    /// Channels `tenant` holds (LIMIT-18).
    pub fn of_tenant(&self, tenant: &str) -> usize {
        self.per_tenant.get(tenant).copied().unwrap_or(0)
    }

    /// Keeps the size index right after a channel's retained bytes went from `was` to `now`.
    pub fn resized(&mut self, key: &ChannelKey, was: usize, now: usize) {
        if was == now {
            return;
        }
        if was > 0 {
            self.by_size.remove(&(was, key.clone()));
        }
        if now > 0 {
            self.by_size.insert((now, key.clone()));
        }
        self.total_bytes = self.total_bytes - was + now;
    }

    /// Retained bytes of all channels.
    pub fn total_bytes(&self) -> usize {
        self.total_bytes
    }

    /// The channel retaining the most bytes.
    pub fn largest(&self) -> Option<ChannelKey> {
        self.by_size.last().map(|(_, k)| k.clone())
    }

    /// The channel for a change that must not count as a use (trimming its retention).
    pub fn get_mut_unmarked(&mut self, key: &ChannelKey) -> Option<&mut Channel> {
        self.map.get_mut(key)
    }

    /// The channels a sweep at `now` may forget, unused for `ttl` (between `ttl` and
    /// `ttl` plus the sweep interval after their last use). Work done: the channels used
    /// since the last sweep and the deadlines that are due, never every channel.
    pub fn idle(&mut self, now: Millis, ttl: Millis) -> Vec<ChannelKey> {
        for key in std::mem::take(&mut self.touched) {
            let Some(ch) = self.map.get_mut(&key) else {
                continue;
            };
            ch.touched = false;
            if ch.unused() {
                let deadline = now + ttl;
                ch.idle_deadline = Some(deadline);
                self.deadlines.entry(deadline).or_default().push(key);
            } else {
                ch.idle_deadline = None;
            }
        }
        let mut idle = Vec::new();
        while let Some(entry) = self.deadlines.first_entry() {
            if *entry.key() > now {
                break;
            }
            let (deadline, keys) = entry.remove_entry();
            for key in keys {
                // A deadline is stale once the channel was used again (it then has a newer
                // one, or none while in use).
                let due = self
                    .map
                    .get(&key)
                    .is_some_and(|ch| ch.idle_deadline == Some(deadline) && ch.unused());
                if due {
                    idle.push(key);
                }
            }
        }
        idle
    }

    /// Whether a sweep would have anything to look at.
    pub fn sweep_pending(&self) -> bool {
        !self.touched.is_empty() || !self.deadlines.is_empty()
    }

    /// A channel the store could not forget yet: looked at again by the next sweep.
    pub fn retry(&mut self, key: &ChannelKey) {
        self.mark(key);
    }
}
