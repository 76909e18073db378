//! Deliberate protocol bugs, switched on by name, so that the conformance suite can prove
//! it catches each of them. The set is inert unless the crate is built with the `faults`
//! feature: [`Faults::on`] is then a constant `false` and every check folds away.
//!
//! Each fault is one small `if` at the place where a real server would get it wrong.

use std::collections::BTreeSet;

use chorus_protocol::Millis;

use super::{ChannelKey, ConnId, Frame};

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
    FirstTabLeaves = "first_tab_leaves": "a user's tab that unsubscribes announces user:left although another tab holds a lease (PRES-12)",
    TakeoverAnnouncesJoin = "takeover_announces_join": "a subscribe taking over a grace lease announces user:joined again (PRES-9)",
    EchoToSender = "echo_to_sender": "deliver a broadcast to its sender without echo (CHAN-25)",
    ReuseVersion = "reuse_version": "state:merge does not advance the version (STATE-3)",
    AcceptStaleCas = "accept_stale_cas": "ignore expected_version (STATE-19)",
    MergeDeep = "merge_deep": "state:merge merges nested objects into the stored ones instead of replacing them (STATE-6)",
    DeleteMissingKeyRefused = "delete_missing_key_refused": "state:delete of a key that does not exist is refused with invalid_message (STATE-7)",
    IgnoreExpectedEpoch = "ignore_expected_epoch": "ignore expected_epoch, so a version of an old epoch matches the new one (STATE-32)",
    DropReplyId = "drop_reply_id": "subscribed omits the request id (TRANS-9)",
    SeqGap = "seq_gap": "skip every third seq (CHAN-30)",
    RecoverySkips = "recovery_skips": "recovery replays all but the first missed item (HIST-7)",
    RecoveryAcceptsFutureSeq = "recovery_accepts_future_seq": "a since beyond the channel's seq is recovered with nothing to replay (HIST-8)",
    PrivateWithoutGrant = "private_without_grant": "private channels need no grant (CHAN-5)",
    TenantLeak = "tenant_leak": "channels are shared across tenants (CHAN-7)",
    GrantPrefixMatch = "grant_prefix_match": "a grant pattern also grants the names it is a prefix of (CHAN-5)",
    MaxSubscriptionsOffByOne = "max_subscriptions_off_by_one": "a connection may hold one subscription more than max_subscriptions (CHAN-13)",
    ChannelNameLimitOffByOne = "channel_name_limit_off_by_one": "a channel name of exactly max_channel_name_len characters is refused (LIMIT-3)",
    ResubscribeRefused = "resubscribe_refused": "unsubscribe leaves the channel in the connection's subscriptions, so subscribing again answers already_subscribed (CHAN-15)",
    IgnoreMaxUsers = "ignore_max_users": "rooms admit users beyond max_users (ROOM-14)",
    CapacityCountsConnections = "capacity_counts_connections": "a room's max_users counts subscribed connections, not users (ROOM-14)",
    PasswordTruncated = "password_truncated": "room passwords are compared on their first 72 bytes only, as bcrypt does (ROOM-10)",
    PasswordOncePerUser = "password_once_per_user": "a user who is already a member joins a protected room without the password (ROOM-11)",
    EpochChangeSilent = "epoch_change_silent": "connections still subscribed to a discarded room's channel get no subscribed frame for the new epoch (HIST-21)",
    DiscardDropsWatchers = "discard_drops_watchers": "discarding an emptied room drops the connections still subscribed without a member from its fan-out (ROOM-23)",
    RoomOutlivesMembers = "room_outlives_members": "an emptied non-persistent room is kept with its options for the next creator (ROOM-17)",
    NoPong = "no_pong": "ping gets no pong (CONN-12)",
    PongTsSeconds = "pong_ts_seconds": "pong carries the server time in seconds, not milliseconds (CONN-12)",
    ExpiresAtSeconds = "expires_at_seconds": "welcome.expires_at is the token's exp in seconds, not milliseconds (CONN-8)",
    RefreshAcceptsOtherUser = "refresh_accepts_other_user": "auth:refresh accepts a token naming another sub (CONN-16)",
    RefreshKeepsRevoked = "refresh_keeps_revoked": "auth:refresh keeps the private subscriptions the new grants no longer match (CONN-17)",
    UpdateAsLeaveJoin = "update_as_leave_join": "presence:update is sent as user:left + user:joined (PRES-19)",
    SubscribedBeforeSnapshot = "subscribed_before_snapshot": "the presence snapshot comes in a separate presence:list after subscribed (PRES-5)",
    CursorsUncoalesced = "cursors_uncoalesced": "every cursor:update is flushed at once (CURS-7)",
    CursorKeptAfterLeave = "cursor_kept_after_leave": "a departed member's cursor stays in later subscribed.cursors snapshots (CURS-12)",
    CursorSnapshotEmpty = "cursor_snapshot_empty": "subscribed.cursors is always empty (CURS-14)",
    CursorSkipsOwnTabs = "cursor_skips_own_tabs": "a user's other connections do not receive its cursor (CURS-10)",
    PresenceNoSnapshotSelf = "presence_no_snapshot_self": "the presence snapshot omits the subscriber's own member (PRES-5)",
    StateNoBroadcastToWriter = "state_no_broadcast_to_writer": "the writer gets no server state frame (STATE-15)",
    HistoryWrongOrder = "history_wrong_order": "history pages are newest first (HIST-14)",
    HistoryBeforeInclusive = "history_before_inclusive": "history before_seq includes the message at before_seq (HIST-14)",
    HistoryHasMoreOnFullPage = "history_has_more_on_full_page": "has_more is true on every full page, even when nothing older is retained (HIST-16)",
    HistoryLimitUncapped = "history_limit_uncapped": "a history limit above history_limit is not capped (HIST-15)",
    RoomPasswordIgnored = "room_password_ignored": "protected rooms admit any password (ROOM-10)",
    DataChangeMissingRecordChannel = "data_change_missing_record_channel": "data_change only on resource:{name}, never on the record channel resource:{name}:{id} (CHG-21)",
    UnsubscribeKeepsDelivering = "unsubscribe_keeps_delivering": "an unsubscribed connection still receives the channel (CHAN-34)",
    PutCreates = "put_creates": "PUT on a record that does not exist creates it (HTTP-29)",
    PatchNullDeletes = "patch_null_deletes": "PATCH deletes the keys it sets to null, as JSON Merge Patch does (HTTP-31)",
    ConflictOverwrites = "conflict_overwrites": "POST of an existing record id overwrites the record (HTTP-26)",
    DeleteAnswersEmpty = "delete_answers_empty": "DELETE answers with an empty data object instead of the deleted record (HTTP-33)",
    BroadcastCarriesFrom = "broadcast_carries_from": "messages of POST /api/broadcast carry from: \"server\" (HTTP-18)",
    PublishSkipsOwnConnections = "publish_skips_own_connections": "POST /api/publish does not deliver to the publishing user's own connections (HTTP-20)",
    VersionReusedAfterConflict = "version_reused_after_conflict": "a rejected conflicting write rolls the version back, so the next write reuses a version (STATE-3)",
    EventFilterIgnored = "event_filter_ignored": "history ignores its event filter (BCAST-2)",
    RecordChannelUnprefixed = "record_channel_unprefixed": "a record's data_change also goes to the ordinary channel {name}:{id}, the naming before CHG-21, so a resource chat takes over the public channel chat:general (CHG-23)",
    ReportedChangeSilent = "reported_change_silent": "POST /api/changes answers 200 but sends no data_change (CHG-22)",
    ChangeKeyOptional = "change_key_optional": "POST /api/changes is accepted without an Idempotency-Key (CHG-13)",
    ChangeKeyIgnored = "change_key_ignored": "a retried POST /api/changes with the same Idempotency-Key emits the change again (CHG-14)",
    ChangeKeyReuseAccepted = "change_key_reuse_accepted": "an Idempotency-Key reused for another change replays the first reply instead of 409 (CHG-15)",
    ChangeReportUnchecked = "change_report_unchecked": "POST /api/changes accepts a bad resource name or a data id other than record_id (CHG-16)",
    // The order of checks (ERR-12).
    PrecedenceNameBeforeShape = "precedence_name_before_shape": "a broadcast's channel name is checked before its event (ERR-12)",
    PrecedenceKindBeforeShape = "precedence_kind_before_shape": "a presence:update's channel kind is checked before its members (ERR-12)",
    PrecedenceSubscriptionBeforeKind = "precedence_subscription_before_kind": "a broadcast on a resource: channel gets not_subscribed before forbidden (ERR-12)",
    PrecedenceSizeBeforeConflict = "precedence_size_before_conflict": "a stale and oversized state write gets limit_exceeded instead of conflict (ERR-12)",
    BucketStartsEmpty = "bucket_starts_empty": "a connection's broadcast bucket starts empty, not full, and fills at the rate (LIMIT-5)",
    RetryAfterSeconds = "retry_after_seconds": "retry_after_ms of a refused broadcast is given in whole seconds (LIMIT-6)",
    // Rights, epochs, idempotent publish (issue 9 section 3).
    RightsSubscribeIgnored = "rights_subscribe_ignored": "subscribe ignores the token's rights.subscribe (CHAN-37)",
    RightsPublishIgnored = "rights_publish_ignored": "broadcast ignores the token's rights.publish (CHAN-38)",
    RightsPresenceIgnored = "rights_presence_ignored": "presence membership ignores the token's rights.presence (CHAN-39)",
    RightsStateIgnored = "rights_state_ignored": "state writes ignore the token's rights.state (CHAN-40)",
    RightsHistoryIgnored = "rights_history_ignored": "history ignores the token's rights.history (CHAN-41)",
    RefreshKeepsUnrighted = "refresh_keeps_unrighted": "auth:refresh keeps subscriptions the new rights.subscribe no longer allows (CHAN-42)",
    HttpPublishRightsIgnored = "http_publish_rights_ignored": "POST /api/publish ignores the token's rights.publish (HTTP-37)",
    DedupIgnored = "dedup_ignored": "a broadcast retried with the same message_id is published again (CHAN-44)",
    MessageIdUnbounded = "message_id_unbounded": "broadcast accepts a message_id of any length (CHAN-45)",
    HttpDedupIgnored = "http_dedup_ignored": "POST /api/publish retried with the same message_id is published again (HTTP-38)",
    PrivatePresenceWithoutGrant = "private_presence_without_grant": "private-presence- channels need no grant (CHAN-43)",
    // Bounds and retention (issue 9 section 3).
    PresenceDataUnbounded = "presence_data_unbounded": "presence:update accepts data of any size (PRES-34)",
    CursorDataUnbounded = "cursor_data_unbounded": "cursor:update accepts data of any size (CURS-21)",
    RoomMetadataUnbounded = "room_metadata_unbounded": "a room accepts metadata of any size (ROOM-22)",
    StateLimitOffByOne = "state_limit_off_by_one": "a write making the state exactly max_state_bytes is refused (STATE-34)",
    StateLimitUnclamped = "state_limit_unclamped": "welcome announces max_state_bytes above max_frame_bytes - 1024 (LIMIT-12)",
    LimitKeyZero = "limit_key_zero": "welcome.limits announces max_cursor_data_bytes 0 (LIMIT-11)",
    RetentionBelowAnnounced = "retention_below_announced": "channels retain one stream item fewer than limits.retention_items (HIST-19)",
    // One order across kinds (issue 9 section 3).
    PresenceLagsStream = "presence_lags_stream": "presence diffs are held back behind the channel's next push (or 200 ms), so a message published after a join overtakes it (CHAN-46)",
    // The shell's faults (net/, server.rs).
    ProfileUnbounded = "profile_unbounded": "tokens with a profile of any size are accepted (CONN-25)",
    NullAsAbsent = "null_as_absent": "a client member whose value is null is read as absent (TRANS-29)",
    DuplicateNameLastWins = "duplicate_name_last_wins": "a client frame with a repeated member name is read with the last one (TRANS-30)",
    LoneSurrogateReplaced = "lone_surrogate_replaced": "an escaped lone surrogate in a client string is read as U+FFFD (TRANS-31)",
    IntegralFloatAccepted = "integral_float_accepted": "an integer member written 7.0 is read as 7 (TRANS-32)",
    SeqRepeat = "seq_repeat": "fan-out delivers every message twice, repeating its seq (CHAN-30)",
    OversizeAccepted = "oversize_accepted": "frames over max_frame_bytes are read and processed (TRANS-16)",
    FrameLimitOffByOne = "frame_limit_off_by_one": "a frame of exactly max_frame_bytes is refused (LIMIT-3)",
    BinaryAccepted = "binary_accepted": "binary frames are ignored instead of closing with 1003 (TRANS-15)",
    ForeignSubprotocolAccepted = "foreign_subprotocol_accepted": "an upgrade offering only foreign subprotocols is accepted (TRANS-2)",
    SubprotocolOnlyFirst = "subprotocol_only_first": "chorus.v1 is selected only when it is the first subprotocol offered (TRANS-1)",
    NoSubprotocolRefused = "no_subprotocol_refused": "an upgrade offering no subprotocol is refused with 400 (TRANS-3)",
    Utf8Closes1002 = "utf8_closes_1002": "a text frame whose payload is not valid Unicode text closes with 1002 instead of 1007 (TRANS-17)",
    ProtocolErrorsUnbounded = "protocol_errors_unbounded": "consecutive protocol errors never close the connection (TRANS-24)",
    ErrorCountNotReset = "error_count_not_reset": "a valid frame does not reset the count of consecutive protocol errors (TRANS-24)",
    NoHeartbeatTimeout = "no_heartbeat_timeout": "a silent connection is never closed with 4300 (CONN-13)",
    TokenExpiryIgnored = "token_expiry_ignored": "a connection outlives its token's expiry (CONN-18)",
    ErrorsOvertakeAcks = "errors_overtake_acks": "with group commit, errors answering undecodable frames overtake held acknowledgements of earlier writes (TRANS-26)",
    QueryTokenWins = "query_token_wins": "the token query parameter wins over Authorization: Bearer (CONN-1)",
    ExpiryLeeway = "expiry_leeway": "tokens are accepted up to 60 s after their exp, a JWT library's default leeway (CONN-5)",
    RefreshKeepsOldExpiry = "refresh_keeps_old_expiry": "after auth:refresh the connection still closes at the old token's expiry (CONN-15)",
    RefreshAcceptsExpired = "refresh_accepts_expired": "auth:refresh accepts an expired token (CONN-16)",
    Close1001Graceful = "close_1001_graceful": "a client Close with 1001 releases presence at once, with no grace (PRES-26)",
    TerminalCloseKeepsGrace = "terminal_close_keeps_grace": "a server close with 1003, 1007 or 1009 keeps presence leases for the grace period (PRES-33)",
    ErrorWithoutChannel = "error_without_channel": "errors answering undecodable requests omit the request's channel (ERR-2)",
    SseResumeIgnored = "sse_resume_ignored": "SSE streams ignore Last-Event-ID and last_event_id (SSE-11)",
    SseQueryResumeIgnored = "sse_query_resume_ignored": "SSE streams ignore the last_event_id query parameter (SSE-11)",
    SseUndecodableRefused = "sse_undecodable_refused": "an SSE resume token that does not decode refuses the stream with 400 (SSE-14)",
    SsePresenceAllowed = "sse_presence_allowed": "SSE streams accept presence channels (SSE-2c)",
    SseNoCacheControl = "sse_no_cache_control": "SSE responses lack Cache-Control: no-cache (SSE-3)",
    SseExpiryIgnored = "sse_expiry_ignored": "an SSE stream outlives its token's expiry (SSE-16)",
    SseDataChangeUntracked = "sse_data_change_untracked": "data_change events do not advance the SSE resume token (SSE-7)",
    SseTokenEventChannelOnly = "sse_token_event_channel_only": "an SSE resume token holds only the position of its event's channel (SSE-7)",
    SseChannelsTruncated = "sse_channels_truncated": "a stream request naming more channels than max_subscriptions streams the first max_subscriptions of them instead of being refused (SSE-2e)",
    SseRecoveredIdAtHead = "sse_recovered_id_at_head": "the id of a recovered SSE subscribed holds the channel's newest position, so a stream dropped during the replay resumes past it (SSE-21)",
    SseRepeatedChannelTwice = "sse_repeated_channel_twice": "a channel repeated in the SSE query is subscribed twice, so the stream is refused (SSE-6)",
    HttpApiWithoutKey = "http_api_without_key": "the HTTP API accepts a missing or wrong X-Api-Key (HTTP-8)",
    ApiKeyExtensionAccepted = "api_key_extension_accepted": "the HTTP API accepts an X-Api-Key that starts with the configured key, compared over the key's length (SEC-14)",
    BodyLimitOffByOne = "body_limit_off_by_one": "an HTTP body of exactly max_frame_bytes is refused with 413 (HTTP-4)",
    BodyIdMismatchAccepted = "body_id_mismatch_accepted": "PUT and PATCH accept a body id different from the path's (HTTP-32)",
    ListAfterInclusive = "list_after_inclusive": "GET /api/resources/{name}?after= includes the record named by after (HTTP-28)",
    PublishQueryToken = "publish_query_token": "POST /api/publish takes its token from a token query parameter (HTTP-10)",
    PublishTenantFromHeader = "publish_tenant_from_header": "POST /api/publish takes the tenant from X-Chorus-Tenant instead of the token (HTTP-11)",
    DevModeByDefault = "dev_mode_by_default": "tokenless connections are accepted as anonymous without --dev (SEC-2)",
    FractionalExpRefused = "fractional_exp_refused": "a token whose exp has a fraction (RFC 7519 allows it) is refused with 4001 (CONN-24)",
    RightsClaimUnchecked = "rights_claim_unchecked": "a token whose rights claim is malformed is accepted (CONN-23)",
    DuplicateCapability = "duplicate_capability": "welcome lists a capability twice (VER-4)",
    ApiKeyPrefixAccepted = "api_key_prefix_accepted": "the HTTP API accepts an X-Api-Key that is a prefix of the configured key, compared over the given key's length (HTTP-8)",
    SignatureLastCharIgnored = "signature_last_char_ignored": "a token whose signature differs from the valid one only in its last character is accepted (CONN-4)",
    PasswordCaseFolded = "password_case_folded": "room passwords are compared case-insensitively (ROOM-10)",
    RequestBudgetIgnored = "request_budget_ignored": "only broadcast is rate limited: history, presence lists, state writes and subscribe churn take nothing from the request bucket (LIMIT-15)",
    InboundBytesUnpaced = "inbound_bytes_unpaced": "a connection's socket is read as fast as it sends: the inbound byte bucket announced in limits.inbound_bytes_per_sec and inbound_burst_bytes paces nothing (LIMIT-19)",
    PasswordAttemptsUnbounded = "password_attempts_unbounded": "wrong room passwords are never limited: every guess is verified (LIMIT-16)",
    RetentionBytesHalved = "retention_bytes_halved": "channels retain half the bytes announced in limits.retention_bytes (HIST-19)",
    PasswordTrimmed = "password_trimmed": "room passwords are trimmed of surrounding whitespace before they are compared, so \"s3cret \" opens a room protected by \"s3cret\" (ROOM-10)",
    // The cluster's faults (cluster/): inert on one server, graded by the mutation run
    // across two nodes (chorus-cli/tests/cluster_mutation.rs).
    ClusterRemoteItemLost = "cluster_remote_item_lost": "a node drops every second stream item published on another node, as a lossy cross-node delivery would (CLUS-1, CHAN-30)",
    ClusterSeqReadModifyWrite = "cluster_seq_read_modify_write": "a node numbers a stream item by reading the channel's seq and writing it back incremented in a second command, not in the append script, so nodes publishing at once reuse a seq (CLUS-1, CHAN-30)",
    ClusterEphemeralUnpublished = "cluster_ephemeral_unpublished": "state:updated and the other ephemeral frames reach only the subscribers on the writer's node (CLUS-7, STATE-15)",
    ClusterStateEventUnordered = "cluster_state_event_unordered": "a node writes shared state and publishes the write's event in a second Redis call (50 ms later after odd versions), so writes through two nodes at once reach subscribers out of version order (CLUS-7, CHAN-46, STATE-17)",
    ClusterNodeDeadLeasesKept = "cluster_node_dead_leases_kept": "the nodes never sweep a dead node's presence leases, so its members stay listed and no user:left is announced for them (CLUS-8)",
    ClusterPresenceEventUnordered = "cluster_presence_event_unordered": "a node changes a presence lease and publishes the resulting user:joined or user:left in a second Redis call (a departure 10 ms later), so a user leaving through one node while joining through another is announced joined, then left (CLUS-7, CHAN-46, PRES-8)",
    ClusterNodeSnapshotUnfiltered = "cluster_node_snapshot_unfiltered": "a node sends a subscriber the presence events of other nodes that its snapshot already reflects (a user:joined still on its way when the snapshot listed the member), so the member joins twice (PRES-7, CLUS-4)",
    ClusterStateNodeLocal = "cluster_state_node_local": "state snapshots (subscribed.state, state:sync) come from the node's own copy, not the deployment's (CLUS-2, STATE-21, STATE-22)",
    ClusterRecordsNodeLocal = "cluster_records_node_local": "records of the resource API are kept per node, so a record written through one node is not found through another (CLUS-14, HTTP-29)",
}

/// How long the `presence_lags_stream` fault holds a presence diff when no other push of its
/// channel comes to release it.
const PRESENCE_LAG_MS: Millis = 200;

/// The `presence_lags_stream` fault's queue (CHAN-46 broken on purpose): presence diffs held
/// back until the next push of their channel has gone out, as a server that batched presence
/// on a path of its own would. Always empty without the fault.
#[derive(Debug, Default)]
pub(super) struct PresenceLag {
    held: Vec<HeldDiff>,
}

#[derive(Debug)]
struct HeldDiff {
    key: ChannelKey,
    frame: Frame,
    /// The subscribers when the diff was produced (a later subscriber has it in its
    /// snapshot).
    to: Vec<ConnId>,
    /// Stamped by the first tick after the diff was held (fan-out has no clock).
    due: Option<Millis>,
}

impl PresenceLag {
    /// Whether `frame` is a presence diff the fault holds back.
    pub(super) fn holds(frame: &str) -> bool {
        ["user:joined", "user:left", "presence:updated"]
            .iter()
            .any(|t| frame.starts_with(&format!(r#"{{"type":"{t}""#)))
    }

    pub(super) fn hold(&mut self, key: &ChannelKey, frame: &Frame, to: Vec<ConnId>) {
        self.held.push(HeldDiff {
            key: key.clone(),
            frame: frame.clone(),
            to,
            due: None,
        });
    }

    /// The diffs held for `key`, released after another push of it.
    pub(super) fn release(&mut self, key: &ChannelKey) -> Vec<(Frame, Vec<ConnId>)> {
        if self.held.is_empty() {
            return Vec::new();
        }
        let (out, keep) = std::mem::take(&mut self.held)
            .into_iter()
            .partition(|h| &h.key == key);
        self.held = keep;
        out.into_iter().map(|h| (h.frame, h.to)).collect()
    }

    /// The diffs whose time is up; stamps the new ones.
    pub(super) fn due(&mut self, now: Millis) -> Vec<(Frame, Vec<ConnId>)> {
        for h in &mut self.held {
            h.due.get_or_insert(now + PRESENCE_LAG_MS);
        }
        let (out, keep) = std::mem::take(&mut self.held)
            .into_iter()
            .partition(|h| h.due.is_some_and(|d| d <= now));
        self.held = keep;
        out.into_iter().map(|h| (h.frame, h.to)).collect()
    }

    /// When a tick is next needed: at once to stamp a new diff, else the earliest due.
    pub(super) fn next_due(&self) -> Option<Millis> {
        self.held.iter().map(|h| h.due.unwrap_or(0)).min()
    }
}

impl Fault {
    /// Whether the fault lives in the cluster engine (observable only across nodes; a
    /// mutation run of one server leaves it out).
    pub fn is_cluster(self) -> bool {
        self.name().starts_with("cluster_")
    }

    /// Whether catching the fault needs control over the deployment that a black-box run
    /// does not have (a node killed, a frame held on the bus while a snapshot is read): the
    /// reference server's own tests catch it (crates/chorus-cli/tests/cluster_faults.rs,
    /// the cluster module's unit tests), a mutation run leaves it out.
    pub fn needs_deployment_control(self) -> bool {
        self.name().starts_with("cluster_node_")
    }

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
    fn presence_lags_stream() {
        let mut d = with("presence_lags_stream");
        let (a, b) = pair(&mut d, "presence-r");
        d.frames(b);
        let c = d.connect("cid");
        d.subscribe(c, "presence-r");
        d.assert_silent(b);
        d.send(a, bcast("presence-r"));
        assert_eq!(d.types(b), ["message", "user:joined"]);
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
        d.subscribe(r, "resource:post:p");
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
    fn record_channel_unprefixed() {
        let mut d = with("record_channel_unprefixed");
        let r = d.connect("ann");
        d.subscribe(r, "chat:general");
        let op = ResourceOp::Create {
            resource: "chat".into(),
            id: Some("general".into()),
            data: json!({}),
        };
        let (_, effects) = d.core.resource_write("", op, d.now).unwrap();
        d.route(effects);
        assert_eq!(d.types(r), ["data_change"]);
    }

    #[test]
    fn epoch_change_silent() {
        let mut d = with("epoch_change_silent");
        let a = d.connect("ann");
        let mut watcher = super::super::testkit::session("wat", "");
        watcher.rights = Some(serde_json::from_value(json!({"subscribe": ["*"]})).unwrap());
        let w = d.connect_session(watcher);
        d.subscribe(a, "presence-r");
        d.subscribe(w, "presence-r");
        d.send(a, json!({"type": "unsubscribe", "channel": "presence-r"}));
        assert_eq!(d.types(w), ["user:left"]);
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
