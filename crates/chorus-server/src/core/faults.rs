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
    SeqGap = "seq_gap": "skip every third seq (CHAN-30)",
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
    UnsubscribeKeepsDelivering = "unsubscribe_keeps_delivering": "an unsubscribed connection still receives the channel (CHAN-34)",
    VersionReusedAfterConflict = "version_reused_after_conflict": "a rejected conflicting write rolls the version back, so the next write reuses a version (STATE-3)",
    EventFilterIgnored = "event_filter_ignored": "history ignores its event filter (BCAST-2)",
    ReportedChangeSilent = "reported_change_silent": "POST /api/changes answers 200 but sends no data_change (CHG-12)",
    ChangeKeyOptional = "change_key_optional": "POST /api/changes is accepted without an Idempotency-Key (CHG-13)",
    ChangeKeyIgnored = "change_key_ignored": "a retried POST /api/changes with the same Idempotency-Key emits the change again (CHG-14)",
    ChangeKeyReuseAccepted = "change_key_reuse_accepted": "an Idempotency-Key reused for another change replays the first reply instead of 409 (CHG-15)",
    ChangeReportUnchecked = "change_report_unchecked": "POST /api/changes accepts a bad resource name or a data id other than record_id (CHG-16)",
    // The order of checks (ERR-12).
    PrecedenceNameBeforeShape = "precedence_name_before_shape": "a broadcast's channel name is checked before its event (ERR-12)",
    PrecedenceKindBeforeShape = "precedence_kind_before_shape": "a presence:update's channel kind is checked before its members (ERR-12)",
    PrecedenceSubscriptionBeforeKind = "precedence_subscription_before_kind": "a broadcast on a resource: channel gets not_subscribed before forbidden (ERR-12)",
    PrecedenceSizeBeforeConflict = "precedence_size_before_conflict": "a stale and oversized state write gets limit_exceeded instead of conflict (ERR-12)",
    // The shell's faults (net/, server.rs).
    SeqRepeat = "seq_repeat": "fan-out delivers every message twice, repeating its seq (CHAN-30)",
    OversizeAccepted = "oversize_accepted": "frames over max_frame_bytes are read and processed (TRANS-16)",
    FrameLimitOffByOne = "frame_limit_off_by_one": "a frame of exactly max_frame_bytes is refused (LIMIT-3)",
    BinaryAccepted = "binary_accepted": "binary frames are ignored instead of closing with 1003 (TRANS-15)",
    ForeignSubprotocolAccepted = "foreign_subprotocol_accepted": "an upgrade offering only foreign subprotocols is accepted (TRANS-2)",
    ProtocolErrorsUnbounded = "protocol_errors_unbounded": "consecutive protocol errors never close the connection (TRANS-24)",
    NoHeartbeatTimeout = "no_heartbeat_timeout": "a silent connection is never closed with 4300 (CONN-13)",
    TokenExpiryIgnored = "token_expiry_ignored": "a connection outlives its token's expiry (CONN-18)",
    ErrorsOvertakeAcks = "errors_overtake_acks": "with group commit, errors answering undecodable frames overtake held acknowledgements of earlier writes (TRANS-26)",
    ErrorWithoutChannel = "error_without_channel": "errors answering undecodable requests omit the request's channel (ERR-2)",
    SseResumeIgnored = "sse_resume_ignored": "SSE streams ignore Last-Event-ID and last_event_id (SSE-11)",
    HttpApiWithoutKey = "http_api_without_key": "the HTTP API accepts a missing or wrong X-Api-Key (HTTP-8)",
    PublishTenantFromHeader = "publish_tenant_from_header": "POST /api/publish takes the tenant from X-Chorus-Tenant instead of the token (HTTP-11)",
    DevModeByDefault = "dev_mode_by_default": "tokenless connections are accepted as anonymous without --dev (SEC-2)",
    DuplicateCapability = "duplicate_capability": "welcome lists a capability twice (VER-4)",
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

    #[test]
    fn faults_are_inert_without_the_feature() {
        let faults = Faults::parse("no_pong").unwrap();
        assert_eq!(faults.on(Fault::NoPong), cfg!(feature = "faults"));
        assert!(!faults.on(Fault::SeqGap));
    }
}

/// Each fault, switched on alone, changes what a client observes in the scenario that its
/// requirement describes (the conformance suite must catch the same change over the wire).
#[cfg(all(test, feature = "faults"))]
mod fault_tests {
    use serde_json::{json, Value};

    use super::super::testkit::{session, Driver};
    use super::super::{CoreConfig, ResourceOp};
    use super::Faults;

    fn with(fault: &str) -> Driver {
        Driver::with_config(CoreConfig {
            faults: Faults::parse(fault).unwrap(),
            ..CoreConfig::default()
        })
    }

    fn pair(d: &mut Driver, channel: &str) -> (u64, u64) {
        let (a, b) = (d.connect("ann"), d.connect("bob"));
        d.subscribe(a, channel);
        d.subscribe(b, channel);
        d.frames(a);
        (a, b)
    }

    fn bcast(channel: &str) -> Value {
        json!({"type": "broadcast", "id": 1, "channel": channel, "event": "e", "data": 1})
    }

    #[test]
    fn skip_user_left() {
        let mut d = with("skip_user_left");
        let (a, b) = pair(&mut d, "presence-r");
        d.disconnect(a, true);
        d.assert_silent(b);
    }

    #[test]
    fn echo_to_sender() {
        let mut d = with("echo_to_sender");
        let (a, _) = pair(&mut d, "c");
        assert_eq!(d.ask(a, bcast("c")).len(), 2);
    }

    #[test]
    fn reuse_version() {
        let mut d = with("reuse_version");
        let (a, _) = pair(&mut d, "c");
        let got = d.ask(
            a,
            json!({"type": "state:merge", "channel": "c", "data": {}}),
        );
        assert_eq!(got[0]["version"], 0);
    }

    #[test]
    fn accept_stale_cas() {
        let mut d = with("accept_stale_cas");
        let (a, _) = pair(&mut d, "c");
        let w = json!({"type": "state:merge", "channel": "c", "data": {}, "expected_version": 0});
        d.ask(a, w.clone());
        assert_eq!(d.ask(a, w)[0]["type"], "state:ack");
    }

    #[test]
    fn drop_reply_id() {
        let mut d = with("drop_reply_id");
        let a = d.connect("ann");
        assert!(d.subscribe(a, "c").get("id").is_none());
    }

    #[test]
    fn seq_gap() {
        let mut d = with("seq_gap");
        let (a, _) = pair(&mut d, "c");
        let seqs: Vec<_> = (0..3)
            .map(|_| d.ask(a, bcast("c"))[0]["seq"].clone())
            .collect();
        assert_eq!(seqs, [1, 2, 4]);
    }

    #[test]
    fn recovery_skips() {
        let mut d = with("recovery_skips");
        let (a, b) = pair(&mut d, "c");
        d.disconnect(b, false);
        d.send(a, bcast("c"));
        d.send(a, bcast("c"));
        let got = d.ask(a, json!({"type": "history", "channel": "c"}));
        let epoch = got.last().unwrap()["position"]["epoch"].clone();
        let b = d.connect("bob");
        let since = json!({"epoch": epoch, "seq": 0});
        let got = d.ask(
            b,
            json!({"type": "subscribe", "channel": "c", "since": since}),
        );
        assert_eq!(got[0]["recovered"], true);
        assert_eq!(got.len(), 2, "one of the two missed messages");
    }

    #[test]
    fn private_without_grant() {
        let mut d = with("private_without_grant");
        let a = d.connect("ann");
        assert_eq!(d.subscribe(a, "private-x")["kind"], "private");
    }

    #[test]
    fn tenant_leak() {
        let mut d = with("tenant_leak");
        let a = d.connect_session(session("ann", "acme"));
        let b = d.connect_session(session("bob", "globex"));
        d.subscribe(a, "c");
        d.subscribe(b, "c");
        d.send(a, bcast("c"));
        assert_eq!(d.types(b), ["message"]);
    }

    #[test]
    fn ignore_max_users() {
        let mut d = with("ignore_max_users");
        let a = d.connect("ann");
        d.send(
            a,
            json!({"type": "subscribe", "channel": "presence-r", "room": {"max_users": 1}}),
        );
        let b = d.connect("bob");
        assert_eq!(
            d.subscribe(b, "presence-r")["presence"]
                .as_array()
                .unwrap()
                .len(),
            2
        );
    }

    #[test]
    fn no_pong() {
        let mut d = with("no_pong");
        let a = d.connect("ann");
        d.send(a, json!({"type": "ping", "id": 1}));
        d.assert_silent(a);
    }

    #[test]
    fn update_as_leave_join() {
        let mut d = with("update_as_leave_join");
        let (a, b) = pair(&mut d, "presence-r");
        d.send(
            a,
            json!({"type": "presence:update", "channel": "presence-r", "status": "away"}),
        );
        assert_eq!(d.types(b), ["user:left", "user:joined"]);
    }

    #[test]
    fn subscribed_before_snapshot() {
        let mut d = with("subscribed_before_snapshot");
        let a = d.connect("ann");
        let got = d.ask(a, json!({"type": "subscribe", "channel": "presence-r"}));
        assert!(got[0].get("presence").is_none());
        assert_eq!(got[1]["type"], "presence:list");
    }

    #[test]
    fn cursors_uncoalesced() {
        let mut d = with("cursors_uncoalesced");
        let (a, b) = pair(&mut d, "presence-r");
        d.frames(b);
        for x in 0..3 {
            d.send(
                a,
                json!({"type": "cursor:update", "channel": "presence-r", "x": x, "y": 0}),
            );
        }
        assert_eq!(d.frames(b).len(), 3);
    }

    #[test]
    fn presence_no_snapshot_self() {
        let mut d = with("presence_no_snapshot_self");
        let a = d.connect("ann");
        assert_eq!(d.subscribe(a, "presence-r")["presence"], json!([]));
    }

    #[test]
    fn state_no_broadcast_to_writer() {
        let mut d = with("state_no_broadcast_to_writer");
        let (a, _) = pair(&mut d, "c");
        let got = d.ask(
            a,
            json!({"type": "state:update", "channel": "c", "key": "k", "value": 1}),
        );
        assert_eq!(got.len(), 1);
    }

    #[test]
    fn history_wrong_order() {
        let mut d = with("history_wrong_order");
        let (a, _) = pair(&mut d, "c");
        d.send(a, bcast("c"));
        d.send(a, bcast("c"));
        d.frames(a);
        let page = d.ask(a, json!({"type": "history", "channel": "c"}));
        assert_eq!(page[0]["messages"][0]["seq"], 2);
    }

    #[test]
    fn room_password_ignored() {
        let mut d = with("room_password_ignored");
        let a = d.connect("ann");
        d.send(
            a,
            json!({"type": "subscribe", "channel": "presence-r", "room": {"password": "pw"}}),
        );
        let b = d.connect("bob");
        d.subscribe(b, "presence-r");
    }

    #[test]
    fn data_change_missing_record_channel() {
        let mut d = with("data_change_missing_record_channel");
        let r = d.connect("ann");
        d.subscribe(r, "post:p");
        let op = ResourceOp::Create {
            resource: "post".into(),
            id: Some("p".into()),
            data: json!({}),
        };
        let (_, effects) = d.core.resource_write("", op, d.now).unwrap();
        d.route(effects);
        d.assert_silent(r);
    }

    #[test]
    fn unsubscribe_keeps_delivering() {
        let mut d = with("unsubscribe_keeps_delivering");
        let (a, b) = pair(&mut d, "c");
        d.send(b, json!({"type": "unsubscribe", "channel": "c"}));
        d.frames(b);
        d.send(a, bcast("c"));
        assert_eq!(d.types(b), ["message"]);
        d.disconnect(b, true);
        d.send(a, bcast("c"));
        assert_eq!(d.core.stats("").channels[0].subscribers, 1);
    }
}
