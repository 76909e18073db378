//! Presence of one channel: members keyed by user, one lease per subscribed connection,
//! grace leases for connections that ended abruptly (presence.md).

use std::collections::{BTreeSet, HashMap};

use chorus_protocol::{Member, Millis, PresenceStatus};

use crate::core::engine::{ChannelKey, LeaseTaken, Released};
use crate::core::ConnId;

#[derive(Debug, Default)]
pub(super) struct Presence {
    pub members: HashMap<String, MemberEntry>,
    /// `(joined_at, user_id)`: the order of member arrays (PRES-10).
    order: BTreeSet<(Millis, String)>,
}

#[derive(Debug)]
pub(super) struct MemberEntry {
    pub member: Member,
    leases: Vec<Lease>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct Lease {
    conn: ConnId,
    /// Set while the lease waits out its grace period.
    grace_until: Option<Millis>,
}

/// When a grace lease ends, if it was not taken over by then.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct GraceTimer {
    pub deadline: Millis,
    pub conn: ConnId,
    pub key: ChannelKey,
    pub user: String,
}

impl Presence {
    /// Members in PRES-10 order.
    pub fn ordered(&self) -> impl Iterator<Item = &Member> + '_ {
        self.order
            .iter()
            .filter_map(|(_, user)| self.members.get(user).map(|e| &e.member))
    }

    /// Gives `conn` a lease: on the existing member (taking over its oldest grace lease,
    /// PRES-28, PRES-31), or on a new one (PRES-3).
    pub fn take(
        &mut self,
        conn: ConnId,
        user: &str,
        profile: &serde_json::Value,
        now: Millis,
    ) -> LeaseTaken {
        let live = Lease {
            conn,
            grace_until: None,
        };
        if let Some(entry) = self.members.get_mut(user) {
            entry.member.last_seen = entry.member.last_seen.max(now); // PRES-24
            let oldest_grace = entry
                .leases
                .iter()
                .enumerate()
                .filter_map(|(i, l)| l.grace_until.map(|g| (g, i)))
                .min();
            return match oldest_grace {
                Some((_, i)) => {
                    entry.leases[i] = live;
                    LeaseTaken::TookOver
                }
                None => {
                    entry.leases.push(live);
                    LeaseTaken::Added
                }
            };
        }
        let member = Member {
            user_id: user.to_owned(),
            profile: if profile.is_object() {
                profile.clone()
            } else {
                serde_json::json!({})
            },
            status: PresenceStatus::Online,
            data: serde_json::json!({}),
            joined_at: now,
            last_seen: now,
        };
        self.order.insert((now, user.to_owned()));
        let entry = MemberEntry {
            member: member.clone(),
            leases: vec![live],
        };
        self.members.insert(user.to_owned(), entry);
        LeaseTaken::Joined(member)
    }

    /// Releases `conn`'s live lease now, or turns it into a grace lease until
    /// `grace_until` (the caller arms the timer when this returns `Kept`).
    pub fn release(&mut self, conn: ConnId, user: &str, grace_until: Option<Millis>) -> Released {
        let Some(entry) = self.members.get_mut(user) else {
            return Released::NoLease;
        };
        let Some(i) = entry
            .leases
            .iter()
            .position(|l| l.conn == conn && l.grace_until.is_none())
        else {
            return Released::NoLease;
        };
        if grace_until.is_some() {
            entry.leases[i].grace_until = grace_until;
            return Released::Kept;
        }
        entry.leases.remove(i);
        if entry.leases.is_empty() {
            self.remove(user)
        } else {
            Released::Kept
        }
    }

    /// Ends the grace lease a timer was armed for; a lease taken over since is live and no
    /// longer matches (PRES-28). `Left` when that was the member's last lease (PRES-29).
    pub fn expire(&mut self, conn: ConnId, user: &str, deadline: Millis) -> Released {
        let Some(entry) = self.members.get_mut(user) else {
            return Released::NoLease;
        };
        let before = entry.leases.len();
        entry
            .leases
            .retain(|l| !(l.conn == conn && l.grace_until == Some(deadline)));
        if entry.leases.len() == before {
            return Released::NoLease;
        }
        if entry.leases.is_empty() {
            self.remove(user)
        } else {
            Released::Kept
        }
    }

    /// Replaces status and/or data (PRES-16) and advances `last_seen`.
    pub fn update(
        &mut self,
        user: &str,
        status: Option<PresenceStatus>,
        data: Option<serde_json::Value>,
        now: Millis,
    ) -> Option<Member> {
        let m = &mut self.members.get_mut(user)?.member;
        if let Some(s) = status {
            m.status = s;
        }
        if let Some(d) = data {
            m.data = d;
        }
        m.last_seen = m.last_seen.max(now);
        Some(m.clone())
    }

    /// Advances `last_seen` (PRES-24).
    pub fn touch(&mut self, user: &str, now: Millis) {
        if let Some(entry) = self.members.get_mut(user) {
            entry.member.last_seen = entry.member.last_seen.max(now);
        }
    }

    fn remove(&mut self, user: &str) -> Released {
        match self.members.remove(user) {
            Some(entry) => {
                self.order
                    .remove(&(entry.member.joined_at, user.to_owned()));
                Released::Left {
                    user_id: entry.member.user_id,
                    last_seen: entry.member.last_seen,
                }
            }
            None => Released::NoLease,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn second_lease_and_release_keep_the_member() {
        let mut p = Presence::default();
        assert!(matches!(
            p.take(1, "ann", &json!({}), 5),
            LeaseTaken::Joined(_)
        ));
        assert_eq!(p.take(2, "ann", &json!({}), 6), LeaseTaken::Added);
        assert_eq!(p.release(1, "ann", None), Released::Kept);
        assert_eq!(
            p.release(2, "ann", None),
            Released::Left {
                user_id: "ann".into(),
                last_seen: 6
            }
        );
        assert_eq!(p.ordered().count(), 0);
    }

    #[test]
    fn expiry_of_a_taken_over_lease_does_nothing() {
        let mut p = Presence::default();
        p.take(1, "ann", &json!({}), 5);
        assert_eq!(p.release(1, "ann", Some(100)), Released::Kept);
        assert_eq!(p.take(2, "ann", &json!({}), 6), LeaseTaken::TookOver);
        assert_eq!(p.expire(1, "ann", 100), Released::NoLease);
        assert_eq!(p.ordered().count(), 1);
    }
}
