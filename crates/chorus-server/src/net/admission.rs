//! Who may open one more connection: the server-wide cap (CONN-22) and the caps per user and
//! per remote address (SEC-7). WebSocket and SSE connections count alike; the excess is
//! refused with 4202 after the upgrade (or HTTP 400 `limit_exceeded` before an SSE stream).

use std::collections::HashMap;
use std::net::IpAddr;

/// The caps in force.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caps {
    /// Open connections in all.
    pub total: usize,
    /// Open connections of one user (tenant and user id).
    pub per_user: usize,
    /// Open connections from one remote address.
    pub per_address: usize,
}

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The server holds `max_connections`.
    ServerFull,
    /// The user holds `max_connections_per_user`.
    UserFull,
    /// The address holds `max_connections_per_address`.
    AddressFull,
}

impl Refused {
    /// Words for logs and error bodies.
    pub fn reason(self) -> &'static str {
        match self {
            Refused::ServerFull => "server at capacity",
            Refused::UserFull => "too many connections for this user",
            Refused::AddressFull => "too many connections from this address",
        }
    }
}

/// A user as the caps see it: tenant and user id.
pub type UserKey = (String, String);

/// Open connections per user and per address.
#[derive(Debug, Default)]
pub struct Peers {
    total: usize,
    users: HashMap<UserKey, usize>,
    addrs: HashMap<IpAddr, usize>,
}

impl Peers {
    /// Counts one more connection, unless a cap is reached.
    pub fn admit(&mut self, caps: Caps, user: &UserKey, addr: IpAddr) -> Result<(), Refused> {
        if self.total >= caps.total {
            return Err(Refused::ServerFull);
        }
        if self.users.get(user).copied().unwrap_or(0) >= caps.per_user {
            return Err(Refused::UserFull);
        }
        if self.addrs.get(&addr).copied().unwrap_or(0) >= caps.per_address {
            return Err(Refused::AddressFull);
        }
        *self.addrs.entry(addr).or_default() += 1;
        *self.users.entry(user.clone()).or_default() += 1;
        self.total += 1;
        Ok(())
    }

    /// A connection counted by [`Peers::admit`] ended.
    pub fn release(&mut self, user: &UserKey, addr: IpAddr) {
        self.total = self.total.saturating_sub(1);
        decrement(&mut self.users, user);
        decrement(&mut self.addrs, &addr);
    }

    /// Open connections in all.
    pub fn total(&self) -> usize {
        self.total
    }
}

/// Decrements a count, forgetting the key at zero (so the maps hold only open peers).
fn decrement<K: std::hash::Hash + Eq>(counts: &mut HashMap<K, usize>, key: &K) {
    if let Some(n) = counts.get_mut(key) {
        *n = n.saturating_sub(1);
        if *n == 0 {
            counts.remove(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CAPS: Caps = Caps {
        total: 4,
        per_user: 2,
        per_address: 3,
    };

    fn user(name: &str) -> UserKey {
        (String::new(), name.to_owned())
    }

    #[test]
    fn each_cap_refuses_the_excess_and_frees_on_release() {
        let mut p = Peers::default();
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        assert_eq!(p.admit(CAPS, &user("ann"), a), Ok(()));
        assert_eq!(p.admit(CAPS, &user("ann"), a), Ok(()));
        assert_eq!(p.admit(CAPS, &user("ann"), b), Err(Refused::UserFull));
        assert_eq!(p.admit(CAPS, &user("bob"), a), Ok(()));
        assert_eq!(p.admit(CAPS, &user("cy"), a), Err(Refused::AddressFull));
        assert_eq!(p.admit(CAPS, &user("cy"), b), Ok(()));
        assert_eq!(p.admit(CAPS, &user("dee"), b), Err(Refused::ServerFull));
        p.release(&user("ann"), a);
        assert_eq!(p.admit(CAPS, &user("ann"), b), Ok(()));
        assert_eq!(p.total(), 4);
    }

    #[test]
    fn tenants_are_different_users_and_nothing_is_kept_for_closed_peers() {
        let mut p = Peers::default();
        let t1 = ("t1".to_owned(), "ann".to_owned());
        let t2 = ("t2".to_owned(), "ann".to_owned());
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        p.admit(CAPS, &t1, a).unwrap();
        p.admit(CAPS, &t1, b).unwrap();
        assert_eq!(p.admit(CAPS, &t2, a), Ok(()));
        for (key, addr) in [(&t1, a), (&t1, b), (&t2, a)] {
            p.release(key, addr);
        }
        assert!(p.users.is_empty() && p.addrs.is_empty());
        assert_eq!(p.total(), 0);
    }
}
