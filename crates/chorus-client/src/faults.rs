//! Deliberate client bugs for the mutation run of `chorus conform-client`.
//!
//! Built only with the `faults` feature; without it [`Faults::has`] is always false and the
//! client cannot be told to misbehave. Each fault breaks one requirement, named in its doc,
//! and a conform-client case citing that requirement must catch it.

use std::fmt;

macro_rules! faults {
    ($( $(#[$doc:meta])* $variant:ident = $name:literal, [$($req:literal),*]; )*) => {
        /// One deliberate bug, selected at run time by its name.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum Fault {
            $( $(#[$doc])* $variant, )*
        }

        impl Fault {
            /// Every fault.
            pub const ALL: &'static [Fault] = &[$(Fault::$variant),*];

            /// The name used on the command line (`--fault NAME`).
            pub fn name(self) -> &'static str {
                match self {
                    $(Fault::$variant => $name,)*
                }
            }

            /// The requirements the fault breaks; a case citing one of them must catch it.
            pub fn requirements(self) -> &'static [&'static str] {
                match self {
                    $(Fault::$variant => &[$($req),*],)*
                }
            }
        }
    };
}

faults! {
    /// CLIENT-3: waits the whole window instead of a uniform draw in it.
    NoJitter = "no_jitter",
        ["CLIENT-3"];
    /// CLIENT-3: the window never grows past 1 s.
    NoBackoffGrowth = "no_backoff_growth",
        ["CLIENT-3"];
    /// CLIENT-3: the window is capped at 0.5 s instead of 30 s.
    BackoffCapLow = "backoff_cap_500ms",
        ["CLIENT-3"];
    /// CLIENT-3: the window is capped at 120 s instead of 30 s (visible from attempt 5 on:
    /// only a minute-long case sees it; unit-tested in backoff.rs too).
    BackoffCap120s = "backoff_cap_120s",
        ["CLIENT-3"];
    /// CLIENT-4: a stable connection never resets the attempt (only visible after a
    /// connection stayed up 30 s: caught by `client.stable-reset`, a 36 s case).
    NoStableReset = "no_stable_reset",
        ["CLIENT-4"];
    /// CLIENT-4: the attempt number resets at every `welcome`.
    EarlyStableReset = "early_stable_reset",
        ["CLIENT-4"];
    /// CLIENT-5: reconnects (with backoff) after a terminal close code.
    ReconnectAfterTerminal = "reconnect_after_terminal",
        ["CLIENT-5"];
    /// CLIENT-7: stops after a connection dropped without a Close frame.
    StopOnDrop = "stop_on_drop",
        ["CLIENT-7"];
    /// CLIENT-6: reconnects with the expired token after 4100.
    ReuseExpiredToken = "reuse_expired_token",
        ["CLIENT-6"];
    /// CLIENT-8: backs off after 4300-4399 instead of reconnecting at once.
    DelayAfter4300 = "delay_after_4300",
        ["CLIENT-8"];
    /// CLIENT-10: does not subscribe again after reconnecting.
    NoResubscribe = "no_resubscribe",
        ["CLIENT-10"];
    /// CLIENT-11: resubscribes without `since`.
    ResubscribeWithoutSince = "resubscribe_without_since",
        ["CLIENT-11"];
    /// CLIENT-11: the stored position ignores `broadcast:ack` replies.
    SinceIgnoresAcks = "since_ignores_acks",
        ["CLIENT-11"];
    /// CLIENT-12: does not report `recovered: false` or a new epoch as stale.
    HideUnrecovered = "hide_unrecovered",
        ["CLIENT-12"];
    /// CLIENT-20: takes a recovered `subscribed`'s position at once, before the replay.
    SinceFromRecoveredSubscribed = "since_from_recovered_subscribed",
        ["CLIENT-20"];
    /// STATE-28 / CLIENT-13: applies state frames of a new epoch without a new snapshot.
    NoStateResync = "no_state_resync",
        ["STATE-28", "CLIENT-13"];
    /// TRANS-27: stops the client on a frame of an unknown type.
    CrashOnUnknownType = "crash_on_unknown_type",
        ["TRANS-27"];
    /// TRANS-27 / VER-9 / VER-12: stops the client on an unknown member of a known frame.
    CrashOnUnknownMember = "crash_on_unknown_member",
        ["TRANS-27", "VER-9", "VER-12"];
    /// VER-9: stops the client on an unknown capability or limit in `welcome`.
    CrashOnUnknownCapability = "crash_on_unknown_capability",
        ["VER-9"];
    /// CLIENT-14: never sends `ping`.
    NoHeartbeat = "no_heartbeat",
        ["CLIENT-14"];
    /// CLIENT-15: never declares a silent connection dead.
    NoPongTimeout = "no_pong_timeout",
        ["CLIENT-15"];
    /// CLIENT-16: sends `auth:refresh` only after the token expired.
    RefreshAfterExpiry = "refresh_after_expiry",
        ["CLIENT-16"];
    /// CLIENT-16: never sends `auth:refresh`.
    NoRefresh = "no_refresh",
        ["CLIENT-16"];
    /// CURS-19: keeps a user's cursor after `user:left`.
    KeepCursorAfterLeave = "keep_cursor_after_leave",
        ["CURS-19"];
    /// CLIENT-17: ignores `retry_after_ms` of `rate_limited`.
    IgnoreRetryAfter = "ignore_retry_after",
        ["CLIENT-17"];
    /// STATE-33: a compare-and-set write carries no `expected_epoch`.
    NoExpectedEpoch = "no_expected_epoch",
        ["STATE-33"];
    /// CLIENT-19: a `broadcast` carries no `message_id` although the server deduplicates.
    NoMessageId = "no_message_id",
        ["CLIENT-19"];
    /// CLIENT-18: repeats an unanswered `broadcast` blindly after reconnecting.
    RetryUnknownOutcome = "retry_unknown_outcome",
        ["CLIENT-18"];
    /// ERR-11: treats a close whose reason text says "fatal" as terminal.
    ReadCloseReason = "read_close_reason",
        ["ERR-11"];
    /// CLIENT-1: sends requests before `welcome`.
    NoWelcomeWait = "no_welcome_wait",
        ["CLIENT-1"];
    /// CLIENT-9: ends a session on purpose without a 1000 Close (drops the socket).
    NoCloseFrame = "no_close_frame",
        ["CLIENT-9"];
}

impl Fault {
    /// The faults file of `chorus conform-client --mutation`: every fault with the
    /// requirements it breaks (`no_stable_reset` and `backoff_cap_120s` are caught only by
    /// cases that need `--max-wait-ms` of 36000 and 125000).
    pub fn mutation_file() -> serde_json::Value {
        let faults: Vec<serde_json::Value> = Fault::ALL
            .iter()
            .map(|f| serde_json::json!({"name": f.name(), "requirements": f.requirements()}))
            .collect();
        serde_json::json!({ "faults": faults })
    }

    /// The fault with this name.
    pub fn from_name(name: &str) -> Option<Fault> {
        Fault::ALL.iter().copied().find(|f| f.name() == name)
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The set of active faults: empty unless the `faults` feature is on and some were chosen.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Faults {
    #[cfg(feature = "faults")]
    active: Vec<Fault>,
}

impl Faults {
    /// No fault: the correct client.
    pub fn none() -> Self {
        Faults::default()
    }

    /// Whether `fault` is active. Always false without the `faults` feature.
    #[inline]
    pub fn has(&self, fault: Fault) -> bool {
        #[cfg(feature = "faults")]
        {
            self.active.contains(&fault)
        }
        #[cfg(not(feature = "faults"))]
        {
            let _ = fault;
            false
        }
    }

    /// Activates `fault`.
    #[cfg(feature = "faults")]
    pub fn insert(&mut self, fault: Fault) {
        if !self.active.contains(&fault) {
            self.active.push(fault);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_round_trip() {
        for f in Fault::ALL {
            assert_eq!(Fault::from_name(f.name()), Some(*f));
        }
        let names: std::collections::BTreeSet<_> = Fault::ALL.iter().map(|f| f.name()).collect();
        assert_eq!(names.len(), Fault::ALL.len());
        assert!(Fault::ALL.len() >= 15);
    }

    #[cfg(not(feature = "faults"))]
    #[test]
    fn faults_are_inert_without_the_feature() {
        let faults = Faults::none();
        assert!(Fault::ALL.iter().all(|f| !faults.has(*f)));
    }
}
