//! What the client knows about one channel, kept from snapshots and diffs: the stream
//! position, the presence member map, the cursors and the shared state.

use std::collections::BTreeMap;

use chorus_protocol::{
    ChannelKind, CursorState, Member, RoomInfo, StateData, StateSnapshot, StreamPosition, UserId,
};

/// The member map of a presence channel: one entry per user, however many connections
/// (tabs) the user holds, since the server announces only a user's first join and last
/// leave (PRES).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PresenceView {
    members: BTreeMap<UserId, Member>,
}

impl PresenceView {
    /// Every member, by user id.
    pub fn members(&self) -> &BTreeMap<UserId, Member> {
        &self.members
    }

    /// One member.
    pub fn get(&self, user_id: &str) -> Option<&Member> {
        self.members.get(user_id)
    }

    /// How many distinct users are present.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Whether nobody is present.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    pub(crate) fn replace(&mut self, members: Vec<Member>) {
        self.members = members
            .into_iter()
            .map(|m| (m.user_id.clone(), m))
            .collect();
    }

    pub(crate) fn upsert(&mut self, member: Member) {
        self.members.insert(member.user_id.clone(), member);
    }

    pub(crate) fn remove(&mut self, user_id: &str) {
        self.members.remove(user_id);
    }
}

/// The client's copy of a channel's shared state.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StateView {
    snapshot: Option<StateSnapshot>,
}

impl StateView {
    /// The current copy, or `None` while there is none or it is being replaced by a new
    /// snapshot (after a reconnect or an epoch change, CLIENT-13, STATE-28).
    pub fn snapshot(&self) -> Option<&StateSnapshot> {
        self.snapshot.as_ref()
    }

    /// The current data, when there is a copy.
    pub fn data(&self) -> Option<&StateData> {
        self.snapshot.as_ref().map(|s| &s.data)
    }

    /// The current version, when there is a copy.
    pub fn version(&self) -> Option<u64> {
        self.snapshot.as_ref().map(|s| s.version)
    }

    pub(crate) fn set(&mut self, snapshot: Option<StateSnapshot>) {
        self.snapshot = snapshot;
    }

    pub(crate) fn snapshot_mut(&mut self) -> Option<&mut StateSnapshot> {
        self.snapshot.as_mut()
    }
}

/// Everything the client keeps about one subscribed channel.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ChannelView {
    /// The channel's kind, once subscribed.
    pub kind: Option<ChannelKind>,
    /// The last stream position seen (CLIENT-11).
    pub position: Option<StreamPosition>,
    /// The members, on presence channels.
    pub presence: PresenceView,
    /// The latest cursor of each other member (CURS).
    pub cursors: BTreeMap<UserId, CursorState>,
    /// The shared state, when the subscription asked for it.
    pub state: StateView,
    /// The room's settings, on presence channels.
    pub room: Option<RoomInfo>,
}
