//! Deliberate protocol bugs, switched on by name, so that the conformance suite can prove
//! it catches each of them. The set is inert unless the crate is built with the `faults`
//! feature: [`Faults::on`] is then a constant `false` and every check folds away.
//!
//! Each fault is one small `if` at the place where a real server would get it wrong.

use std::collections::BTreeSet;

macro_rules! faults {
    ($($variant:ident = $name:literal : $doc:literal,)*) => {
        /// One deliberate bug.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum Fault {
            $(#[doc = $doc] $variant,)*
        }

        impl Fault {
            /// Every fault.
            pub const ALL: &'static [Fault] = &[$(Fault::$variant,)*];

            /// The fault's name, as given on the command line.
            pub fn name(self) -> &'static str {
                match self {
                    $(Fault::$variant => $name,)*
                }
            }

            /// What the fault breaks.
            pub fn description(self) -> &'static str {
                match self {
                    $(Fault::$variant => $doc,)*
                }
            }
        }
    };
}

faults! {
    SkipUserLeft = "skip_user_left": "never send user:left (PRES-11)",
    EchoToSender = "echo_to_sender": "deliver a broadcast to its sender without echo (CHAN-25)",
    ReuseVersion = "reuse_version": "state:merge does not advance the version (STATE-3)",
    AcceptStaleCas = "accept_stale_cas": "ignore expected_version (STATE-19)",
    DropReplyId = "drop_reply_id": "subscribed omits the request id (TRANS-9)",
    SeqGap = "seq_gap": "skip every third seq (CHAN-29)",
    RecoverySkips = "recovery_skips": "recovery replays all but the first missed item (HIST-7)",
    PrivateWithoutGrant = "private_without_grant": "private channels need no grant (CHAN-5)",
    TenantLeak = "tenant_leak": "channels are shared across tenants (CHAN-7)",
    IgnoreMaxUsers = "ignore_max_users": "rooms admit users beyond max_users (ROOM-14)",
    NoPong = "no_pong": "ping gets no pong (CONN-12)",
    UpdateAsLeaveJoin = "update_as_leave_join": "presence:update is sent as user:left + user:joined (PRES-19)",
    SubscribedBeforeSnapshot = "subscribed_before_snapshot": "the presence snapshot comes in a separate presence:list after subscribed (PRES-5)",
    CursorsUncoalesced = "cursors_uncoalesced": "every cursor:update is flushed at once (CURS-7)",
    PresenceNoSnapshotSelf = "presence_no_snapshot_self": "the presence snapshot omits the subscriber's own member (PRES-5)",
    StateNoBroadcastToWriter = "state_no_broadcast_to_writer": "the writer gets no server state frame (STATE-15)",
    HistoryWrongOrder = "history_wrong_order": "history pages are newest first (HIST-14)",
    RoomPasswordIgnored = "room_password_ignored": "protected rooms admit any password (ROOM-10)",
    DataChangeMissingRecordChannel = "data_change_missing_record_channel": "data_change only on resource:{name} (CHG-2)",
    UnsubscribeKeepsDelivering = "unsubscribe_keeps_delivering": "an unsubscribed connection still receives the channel (CHAN-17)",
}

impl Fault {
    /// The fault with this name.
    pub fn from_name(name: &str) -> Option<Fault> {
        Fault::ALL.iter().copied().find(|f| f.name() == name)
    }
}

/// The faults switched on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Faults(BTreeSet<Fault>);

impl Faults {
    /// Switches `fault` on.
    pub fn insert(&mut self, fault: Fault) {
        self.0.insert(fault);
    }

    /// Parses comma-separated fault names; the unknown name on failure.
    pub fn parse(names: &str) -> Result<Faults, String> {
        let mut faults = Faults::default();
        for name in names.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            faults.insert(Fault::from_name(name).ok_or_else(|| name.to_owned())?);
        }
        Ok(faults)
    }

    /// Whether `fault` is on; always false without the `faults` feature.
    pub fn on(&self, fault: Fault) -> bool {
        cfg!(feature = "faults") && self.0.contains(&fault)
    }

    /// Whether no fault is switched on.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_are_unique() {
        for f in Fault::ALL {
            assert_eq!(Fault::from_name(f.name()), Some(*f));
        }
        assert_eq!(Faults::parse("no_pong, bogus"), Err("bogus".to_owned()));
    }
}
