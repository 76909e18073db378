//! Rooms (spec: rooms.md): the options of the creating subscribe, password before capacity,
//! and the room's lifetime: a non-persistent room goes with its last member (ROOM-17), a
//! persistent one stays with its state, history and epoch (ROOM-18).

use serde_json::{json, Value};

use super::channels::Channel;
use super::{Capture, Model};
use crate::property::ops::{ClientId, Password, RoomChoice, Slot};

/// The password rooms are created with.
pub const PASSWORD: &str = "pw";

/// A room's settings.
#[derive(Debug, Clone, PartialEq)]
pub struct Room {
    /// Whether it has a password.
    pub protected: bool,
    /// `max_users` option, if given.
    pub max_users: Option<u8>,
    /// Metadata (`{}` when none was given).
    pub metadata: Value,
    /// `persist`.
    pub persist: bool,
    /// `created_at`, captured when first seen.
    pub created: Capture,
}

impl Room {
    /// `RoomInfo` (ROOM-5, ROOM-6, ROOM-12).
    pub fn info(&mut self, max_room_users: u32) -> Value {
        let max = self.max_users.map_or(max_room_users, u32::from);
        json!({
            "metadata": {"$exact": self.metadata},
            "max_users": max,
            "persist": self.persist,
            "protected": self.protected,
            "created_at": self.created.matcher(json!("$uint")),
        })
    }

    fn capacity(&self, max_room_users: u32) -> usize {
        let max = self.max_users.map_or(max_room_users, u32::from);
        usize::try_from(max).unwrap_or(usize::MAX)
    }
}

/// Whether the room exists: it has a member or a persisted record (ROOM-3, ROOM-4).
pub fn exists(ch: &Channel) -> bool {
    ch.room.is_some()
}

/// The checks of a subscribe to an existing room, in the order of rooms.md: password, then
/// capacity (ROOM-10, ROOM-11, ROOM-14 to ROOM-16).
pub fn admit(
    ch: &Channel,
    c: ClientId,
    password: Password,
    max_room_users: u32,
) -> Result<(), (&'static str, &'static [&'static str])> {
    let Some(room) = &ch.room else {
        return Ok(());
    };
    if room.protected && password != Password::Right {
        return Err(("bad_password", &["ROOM-10", "ROOM-11", "ERR-2"]));
    }
    let member = ch.members.has(c.user());
    if !member && ch.members.len() >= room.capacity(max_room_users) {
        return Err(("room_full", &["ROOM-14", "ROOM-16", "ERR-2"]));
    }
    Ok(())
}

/// Creates the room from the creating subscribe's options (ROOM-3).
pub fn create(m: &mut Model, slot: Slot, options: Option<RoomChoice>) {
    let created = m.capture("ca");
    let o = options.unwrap_or(RoomChoice {
        password: false,
        max_users: None,
        metadata: None,
        persist: false,
    });
    m.chan_mut(slot).room = Some(Room {
        protected: o.password,
        max_users: o.max_users,
        metadata: o.metadata.map_or(json!({}), |n| json!({"topic": n})),
        persist: o.persist,
        created,
    });
}

/// The last member left: keep a persistent room as it is (ROOM-18); discard any other with
/// its state and history, so the name restarts under a new epoch (ROOM-17, STATE-26).
pub fn emptied(m: &mut Model, slot: Slot) {
    let ch = m.chan(slot);
    if ch.room.as_ref().is_some_and(|r| r.persist) {
        return;
    }
    let mut earlier = ch.earlier_epochs.clone();
    if ch.epoch.revealed() {
        earlier.push(ch.epoch.name.clone());
    }
    let generation = ch.generation;
    let fresh = Channel::new(m, slot, generation, earlier);
    m.chans.insert(slot, fresh);
}

/// `subscribe.room`.
pub fn options_frame(r: &RoomChoice) -> Value {
    let mut o = json!({});
    if r.password {
        o["password"] = json!(PASSWORD);
    }
    if let Some(n) = r.max_users {
        o["max_users"] = json!(n.max(1));
    }
    if let Some(n) = r.metadata {
        o["metadata"] = json!({"topic": n});
    }
    if r.persist {
        o["persist"] = json!(true);
    }
    o
}

/// `subscribe.password`.
pub fn password_value(p: Password) -> Option<&'static str> {
    match p {
        Password::None => None,
        Password::Right => Some(PASSWORD),
        Password::Wrong => Some("not-the-password"),
    }
}
