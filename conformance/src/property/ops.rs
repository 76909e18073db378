//! The operations a property generates: small enums chosen so that proptest shrinks toward
//! simpler steps (earlier variants, fewer options), with a readable one-line form.

use std::fmt;

use serde_json::{json, Value};

/// One of the four simulated clients: two tabs of Ann, Bob and Cat.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ClientId(pub u8);

/// Number of simulated clients.
pub const CLIENT_COUNT: u8 = 4;

impl ClientId {
    /// Every client, in roster order.
    pub fn all() -> impl Iterator<Item = ClientId> {
        (0..CLIENT_COUNT).map(ClientId)
    }

    /// The client's name in transcripts and fixtures.
    pub fn name(self) -> &'static str {
        match self.0 {
            0 => "ann1",
            1 => "ann2",
            2 => "bob",
            _ => "cat",
        }
    }

    /// The user id (`sub`) of the client's token; `ann1` and `ann2` share one.
    pub fn user(self) -> &'static str {
        match self.0 {
            0 | 1 => "ann",
            2 => "bob",
            _ => "cat",
        }
    }

    /// The token's `profile` claim, if any.
    pub fn profile_claim(self) -> Option<Value> {
        match self.0 {
            0 | 1 => Some(json!({"name": "Ann"})),
            2 => Some(json!({"name": "Bob", "color": "#3366ff"})),
            _ => None,
        }
    }

    /// The profile a member of this client's user shows (`{}` without a claim, PRES-3).
    pub fn profile(self) -> Value {
        self.profile_claim().unwrap_or_else(|| json!({}))
    }
}

/// A channel the operations can name. Public slots change their name when they empty
/// (see `model::channels`), presence slots keep it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Slot {
    /// A public channel, `chat-{run}`.
    Chat,
    /// A second public channel, `news-{run}`.
    News,
    /// A presence channel, `presence-{run}-doc`.
    Doc,
    /// A presence channel mostly created with room options, `presence-{run}-room`.
    Room,
}

impl Slot {
    /// Every slot.
    pub const ALL: [Slot; 4] = [Slot::Chat, Slot::News, Slot::Doc, Slot::Room];

    /// Short name used in capture names and readable steps.
    pub fn short(self) -> &'static str {
        match self {
            Slot::Chat => "chat",
            Slot::News => "news",
            Slot::Doc => "doc",
            Slot::Room => "room",
        }
    }

    /// Whether the slot is a `presence-` channel.
    pub fn is_presence(self) -> bool {
        matches!(self, Slot::Doc | Slot::Room)
    }

    /// The channel name template (with `{run}`) of the slot's `generation`-th name.
    pub fn channel(self, generation: u32) -> String {
        let base = match self {
            Slot::Chat => "chat-{run}".to_owned(),
            Slot::News => "news-{run}".to_owned(),
            Slot::Doc => "presence-{run}-doc".to_owned(),
            Slot::Room => "presence-{run}-room".to_owned(),
        };
        if generation == 0 {
            base
        } else {
            format!("{base}-g{generation}")
        }
    }
}

/// Where a `subscribe` asks to resume from (HIST-7, HIST-8).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Since {
    /// No `since`.
    None,
    /// The last position this client saw on the channel.
    Last,
    /// The channel's epoch as the client knows it, seq 0.
    Zero,
    /// The client's epoch, a seq beyond anything the channel reached.
    Ahead,
    /// An epoch the channel never had.
    OtherEpoch,
}

/// A room password choice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Password {
    /// No top-level `password`.
    None,
    /// The password rooms are created with (`"pw"`).
    Right,
    /// Another one.
    Wrong,
}

/// `room` options of a subscribe (ROOM-3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoomChoice {
    /// Create the room with password `"pw"`.
    pub password: bool,
    /// `max_users` (1 or 2 when set).
    pub max_users: Option<u8>,
    /// `metadata: {"topic": n}` when set.
    pub metadata: Option<u8>,
    /// `persist: true`.
    pub persist: bool,
}

/// A `subscribe`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubscribeOp {
    /// The channel.
    pub chan: Slot,
    /// Recovery position choice.
    pub since: Since,
    /// `state: true`.
    pub state: bool,
    /// Room options (presence slots only).
    pub room: Option<RoomChoice>,
    /// Top-level password.
    pub password: Password,
}

impl SubscribeOp {
    /// A subscribe without options.
    pub fn plain(chan: Slot) -> Self {
        SubscribeOp {
            chan,
            since: Since::None,
            state: false,
            room: None,
            password: Password::None,
        }
    }
}

/// A presence status choice; `Offline` is invalid for clients (PRES-15).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusChoice {
    /// `online`.
    Online,
    /// `away`.
    Away,
    /// `busy`.
    Busy,
    /// `offline` (refused).
    Offline,
}

impl StatusChoice {
    /// The wire value.
    pub fn as_str(self) -> &'static str {
        match self {
            StatusChoice::Online => "online",
            StatusChoice::Away => "away",
            StatusChoice::Busy => "busy",
            StatusChoice::Offline => "offline",
        }
    }
}

/// A shared-state write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Write {
    /// `state:update` of key `k{key}` to value number `value`.
    Update {
        /// Key index.
        key: u8,
        /// Value index (see [`value`]).
        value: u8,
    },
    /// `state:merge` of these keys and values (possibly none).
    Merge {
        /// Key and value indexes.
        entries: Vec<(u8, u8)>,
    },
    /// `state:delete` of key `k{key}`.
    Delete {
        /// Key index.
        key: u8,
    },
}

/// Compare-and-set choice of a state write (STATE-19).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cas {
    /// No `expected_version`.
    None,
    /// The channel's current version.
    Current,
    /// A version the channel is not at.
    Stale,
}

/// One operation of one client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Open the connection (a no-op when open; every other operation opens it first).
    Connect,
    /// Close the connection gracefully with 1000 (a no-op when closed).
    Disconnect,
    /// Subscribe.
    Subscribe(SubscribeOp),
    /// Unsubscribe.
    Unsubscribe {
        /// The channel.
        chan: Slot,
    },
    /// Broadcast event `event` with payload number `data`.
    Broadcast {
        /// The channel.
        chan: Slot,
        /// Event index (see [`event`]).
        event: u8,
        /// Payload index (see [`value`]).
        data: u8,
        /// `echo: true`.
        echo: bool,
    },
    /// Ask for history.
    History {
        /// The channel.
        chan: Slot,
        /// `limit`.
        limit: Option<u8>,
        /// Seed for `before_seq` (reduced modulo the channel's seq + 2).
        before: Option<u8>,
        /// `event` filter index.
        event: Option<u8>,
    },
    /// Update one's presence.
    PresenceUpdate {
        /// The channel.
        chan: Slot,
        /// New status.
        status: Option<StatusChoice>,
        /// New data number (`{"tool": n}`).
        data: Option<u8>,
    },
    /// Ask for the member list.
    PresenceList {
        /// The channel.
        chan: Slot,
    },
    /// Write shared state.
    StateWrite {
        /// The channel.
        chan: Slot,
        /// The write.
        write: Write,
        /// Compare-and-set.
        cas: Cas,
    },
    /// Ask for a state snapshot.
    StateSync {
        /// The channel.
        chan: Slot,
    },
    /// Move one's cursor `burst` times in a row (positions `x`, `x+1`, …).
    CursorMove {
        /// The channel.
        chan: Slot,
        /// First x.
        x: u16,
        /// y.
        y: u16,
        /// Number of back-to-back updates (at least 1).
        burst: u8,
        /// Attach `data: {"tool": "pen"}`.
        data: bool,
    },
}

/// One generated step: a client and what it does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// Who acts.
    pub client: ClientId,
    /// What it does.
    pub op: Op,
    /// Subscribe to the operation's channel first if the client is not subscribed (so that
    /// most generated operations act on a channel instead of being refused).
    pub join: bool,
}

impl Step {
    /// A step without joining first.
    pub fn new(client: ClientId, op: Op) -> Self {
        Step {
            client,
            op,
            join: false,
        }
    }
}

impl Op {
    /// The channel an operation acts on as a subscriber (not `subscribe`/`unsubscribe`).
    pub fn target(&self) -> Option<Slot> {
        match self {
            Op::Broadcast { chan, .. }
            | Op::History { chan, .. }
            | Op::PresenceUpdate { chan, .. }
            | Op::PresenceList { chan }
            | Op::StateWrite { chan, .. }
            | Op::StateSync { chan }
            | Op::CursorMove { chan, .. } => Some(*chan),
            Op::Connect | Op::Disconnect | Op::Subscribe(_) | Op::Unsubscribe { .. } => None,
        }
    }
}

/// Event names broadcasts use.
pub const EVENTS: [&str; 3] = ["chat", "typing", "notice"];

/// The event name of index `i`.
pub fn event(i: u8) -> &'static str {
    EVENTS[usize::from(i) % EVENTS.len()]
}

/// A JSON payload of index `i`: numbers, strings, null, nested values and the largest safe
/// integer (CHAN-29).
pub fn value(i: u8) -> Value {
    match i % 6 {
        0 => json!(i),
        1 => json!(format!("text {i}")),
        2 => json!({"n": i, "nested": {"list": [i, null, true]}}),
        3 => Value::Null,
        4 => json!([i, "x", false]),
        _ => json!(9_007_199_254_740_991_u64),
    }
}

/// The state key of index `i`.
pub fn key(i: u8) -> String {
    format!("k{}", i % 3)
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.client.name())?;
        if let (true, Some(slot)) = (self.join, self.op.target()) {
            write!(f, "(subscribed to {} if not yet) ", slot.short())?;
        }
        write!(f, "{}", self.op)
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Op::Connect => write!(f, "connect"),
            Op::Disconnect => write!(f, "close 1000"),
            Op::Subscribe(s) => write!(f, "{s}"),
            Op::Unsubscribe { chan } => write!(f, "unsubscribe {}", chan.short()),
            Op::Broadcast {
                chan,
                event: e,
                data,
                echo,
            } => {
                let echo = if *echo { " echo" } else { "" };
                write!(
                    f,
                    "broadcast {} {} {}{echo}",
                    chan.short(),
                    event(*e),
                    value(*data)
                )
            }
            Op::History {
                chan,
                limit,
                before,
                event: e,
            } => {
                write!(f, "history {}", chan.short())?;
                if let Some(l) = limit {
                    write!(f, " limit {l}")?;
                }
                if let Some(b) = before {
                    write!(f, " before#{b}")?;
                }
                if let Some(e) = e {
                    write!(f, " event {}", event(*e))?;
                }
                Ok(())
            }
            Op::PresenceUpdate { chan, status, data } => {
                write!(f, "presence:update {}", chan.short())?;
                if let Some(s) = status {
                    write!(f, " status {}", s.as_str())?;
                }
                if let Some(d) = data {
                    write!(f, " data tool={d}")?;
                }
                Ok(())
            }
            Op::PresenceList { chan } => write!(f, "presence {}", chan.short()),
            Op::StateWrite { chan, write, cas } => {
                match write {
                    Write::Update { key: k, value: v } => {
                        write!(f, "state:update {} {}={}", chan.short(), key(*k), value(*v))?
                    }
                    Write::Merge { entries } => {
                        let parts: Vec<String> = entries
                            .iter()
                            .map(|(k, v)| format!("{}={}", key(*k), value(*v)))
                            .collect();
                        write!(f, "state:merge {} {{{}}}", chan.short(), parts.join(", "))?
                    }
                    Write::Delete { key: k } => {
                        write!(f, "state:delete {} {}", chan.short(), key(*k))?
                    }
                }
                match cas {
                    Cas::None => Ok(()),
                    Cas::Current => write!(f, " expecting the current version"),
                    Cas::Stale => write!(f, " expecting a stale version"),
                }
            }
            Op::StateSync { chan } => write!(f, "state:sync:request {}", chan.short()),
            Op::CursorMove {
                chan,
                x,
                y,
                burst,
                data,
            } => {
                write!(f, "cursor:update {} x={x} y={y}", chan.short())?;
                if *burst > 1 {
                    write!(f, " ×{burst}")?;
                }
                if *data {
                    write!(f, " with data")?;
                }
                Ok(())
            }
        }
    }
}

impl fmt::Display for SubscribeOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "subscribe {}", self.chan.short())?;
        match self.since {
            Since::None => {}
            Since::Last => write!(f, " since last seen")?,
            Since::Zero => write!(f, " since seq 0")?,
            Since::Ahead => write!(f, " since a future seq")?,
            Since::OtherEpoch => write!(f, " since another epoch")?,
        }
        if self.state {
            write!(f, " with state")?;
        }
        if let Some(r) = &self.room {
            write!(f, " room{{")?;
            let mut parts = Vec::new();
            if r.password {
                parts.push("password".to_owned());
            }
            if let Some(m) = r.max_users {
                parts.push(format!("max_users {m}"));
            }
            if let Some(m) = r.metadata {
                parts.push(format!("metadata {m}"));
            }
            if r.persist {
                parts.push("persist".to_owned());
            }
            write!(f, "{}}}", parts.join(", "))?;
        }
        match self.password {
            Password::None => Ok(()),
            Password::Right => write!(f, " password right"),
            Password::Wrong => write!(f, " password wrong"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_tabs_share_a_user() {
        assert_eq!(ClientId(0).user(), ClientId(1).user());
        assert_ne!(ClientId(0).name(), ClientId(1).name());
    }

    #[test]
    fn later_generations_get_new_names() {
        assert_eq!(Slot::Chat.channel(0), "chat-{run}");
        assert_eq!(Slot::Chat.channel(2), "chat-{run}-g2");
        assert!(Slot::Doc.channel(0).starts_with("presence-"));
    }

    #[test]
    fn steps_read_as_one_line() {
        let s = Step::new(
            ClientId(2),
            Op::Broadcast {
                chan: Slot::Chat,
                event: 1,
                data: 0,
                echo: true,
            },
        );
        assert_eq!(s.to_string(), "bob: broadcast chat typing 0 echo");
    }
}
