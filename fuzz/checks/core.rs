//! Checks of the server's sans-IO core (target `core`), shared by the fuzz target and the
//! corpus replay test.
//!
//! The bytes become (through `arbitrary`) a sequence of operations by several connections:
//! connect, disconnect (graceful or abrupt), advance the clock (ticks run as they fall due),
//! a client frame built from a small vocabulary of channels, types and members (sometimes
//! with a stray member), raw text, and the HTTP API's server publish and record writes.
//! Every frame the core sends goes through the in-memory driver (`core::testkit`), which
//! parses it back as a `ServerMessage`, and is checked against the strict server schema and
//! these invariants, each a requirement of the spec, cheap enough for every execution:
//! - stream items (`message`, `data_change`) of a subscription arrive with contiguous `seq`
//!   from `subscribed.position` (or from `since` when recovered), only on subscribed
//!   channels, and every recipient and `history:page` sees the same item at the same
//!   (channel, epoch, seq) (CHAN-9, CHAN-10, HIST-6, HIST-7);
//! - state versions per (channel, epoch) never go back and grow by at most one per input,
//!   each subscription's state frames are contiguous from its snapshot, `state:sync`
//!   reflects exactly the frames sent before it, state epochs are the channel's epoch
//!   (STATE-2, STATE-3, STATE-17, STATE-21, STATE-24);
//! - one presence member per user: snapshots hold distinct users, the subscriber included,
//!   `user:joined` only for an absent user, `user:left` and `presence:updated` only for a
//!   present one, and `presence:list` equals the view built from the diffs (PRES-1, PRES-5,
//!   PRES-7, PRES-9, PRES-21);
//! - a request with an `id` gets exactly one reply echoing it (TRANS-9, TRANS-10).

use std::cell::RefCell;
use std::collections::{BTreeSet, HashMap};

use arbitrary::{Arbitrary, Unstructured};
use chorus_conformance::validate::FrameSchema;
use chorus_protocol::http::PublishRequest;
use chorus_protocol::{ChannelName, ClientMessage, Limits, ServerMessage, StreamItem};
use chorus_server::core::testkit::{session, Delivered, Driver};
use chorus_server::core::{ConnId, CoreConfig, Faults, ResourceOp};
use serde_json::{json, Value};

/// Channel names: every kind, the resource feeds, and names the core must refuse.
const CHANNELS: &[&str] = &[
    "chat",
    "presence-room",
    "posts:p1",
    "news",
    "presence-lobby",
    "private-ops",
    "private-presence-team",
    "resource:posts",
    "",
    "bad name",
    "c-0123456789-0123456789-0123456789",
];
/// How many of [`CHANNELS`] most picks land on, so that short inputs meet on a channel.
const BUSY_CHANNELS: usize = 3;
const USERS: &[&str] = &["u1", "u2", "u3", "u4"];
const TENANTS: &[&str] = &["", "t2"];
const KEYS: &[&str] = &["title", "cursor", "n", "", "id", "from", "version", "seq"];
const EVENTS: &[&str] = &["chat:message", "typing", "", "e"];
const STATUSES: &[&str] = &["online", "away", "busy", "offline", "gone"];

/// Limits small enough for a short input to reach them.
fn config() -> CoreConfig {
    CoreConfig {
        limits: Limits {
            max_frame_bytes: 8192,
            max_subscriptions: 4,
            max_channel_name_len: 32,
            broadcast_rate_per_sec: 5,
            broadcast_burst: 5,
            max_presence_members: 3,
            max_room_users: 2,
            history_limit: 4,
            max_json_depth: 8,
            cursor_interval_ms: 50,
            presence_grace_ms: 2000,
            dedup_window_ms: 1000,
            ..Limits::default()
        },
        retention: 6,
        channel_idle_ms: 10_000,
        ..CoreConfig::default()
    }
}

#[derive(Arbitrary, Debug)]
enum Op {
    Connect {
        user: u8,
        tenant: u8,
    },
    Disconnect {
        conn: u8,
        graceful: bool,
    },
    Advance {
        ms: u16,
    },
    Frame {
        conn: u8,
        frame: FrameSpec,
    },
    Raw {
        conn: u8,
        text: String,
    },
    Publish {
        channel: u8,
        event: u8,
        data: Data,
        message_id: Option<u8>,
    },
    Record {
        record: u8,
        data: Data,
        delete: bool,
    },
}

#[derive(Arbitrary, Debug)]
struct FrameSpec {
    id: Option<u8>,
    body: Body,
    /// A member set on top of the body: unknown, server-set or mistyped (TRANS-14).
    stray: Option<(u8, Data)>,
}

#[derive(Arbitrary, Debug)]
enum Body {
    Ping,
    AuthRefresh,
    Subscribe {
        channel: u8,
        since: Option<Since>,
        state: Option<bool>,
        room: Option<Room>,
    },
    Unsubscribe {
        channel: u8,
    },
    Broadcast {
        channel: u8,
        event: u8,
        data: Data,
        echo: Option<bool>,
        message_id: Option<u8>,
    },
    History {
        channel: u8,
        limit: Option<u8>,
        before_seq: Option<u8>,
        event: Option<u8>,
    },
    Presence {
        channel: u8,
    },
    PresenceUpdate {
        channel: u8,
        status: Option<u8>,
        data: Option<Data>,
    },
    Cursor {
        channel: u8,
        x: i16,
        y: i16,
        data: Option<Data>,
    },
    StateUpdate {
        channel: u8,
        key: u8,
        value: Data,
        expected: Option<Expected>,
    },
    StateMerge {
        channel: u8,
        data: Vec<(u8, Data)>,
        expected: Option<Expected>,
    },
    StateDelete {
        channel: u8,
        key: u8,
        expected: Option<Expected>,
    },
    StateSync {
        channel: u8,
    },
}

/// `since`: the channel's last seen epoch (or a made-up one) and a seq counted back from
/// the last seen seq, so that recovery is reached, and missed.
#[derive(Arbitrary, Debug)]
struct Since {
    known_epoch: bool,
    back: u8,
}

/// `expected_version`/`expected_epoch` near the last seen ones (conflicts and successes).
#[derive(Arbitrary, Debug)]
struct Expected {
    delta: i8,
    epoch: Option<bool>,
}

#[derive(Arbitrary, Debug)]
struct Room {
    password: Option<u8>,
    max_users: Option<u8>,
    metadata: Option<Data>,
    persist: Option<bool>,
}

#[derive(Arbitrary, Debug)]
enum Data {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Text(u8),
    /// A string of `n` x 256 bytes, to reach the size limits.
    Big(u8),
    Object(Vec<(u8, u8)>),
    /// Arrays nested `n` deep, to reach the depth limit.
    Deep(u8),
}

impl Data {
    fn json(&self) -> Value {
        match self {
            Data::Null => Value::Null,
            Data::Bool(b) => json!(b),
            Data::Int(i) => json!(i),
            Data::Float(f) => json!(f),
            Data::Text(n) => json!(format!("t{n}")),
            Data::Big(n) => json!("x".repeat(usize::from(*n) * 256)),
            Data::Object(kv) => Value::Object(
                kv.iter()
                    .map(|(k, v)| (pick(KEYS, *k).to_owned(), json!(v)))
                    .collect(),
            ),
            Data::Deep(n) => (0..*n % 16).fold(json!(1), |v, _| json!([v])),
        }
    }
}

fn pick<'a>(list: &[&'a str], i: u8) -> &'a str {
    list[usize::from(i) % list.len()]
}

/// Three picks in four land on a busy channel.
fn channel(i: u8) -> String {
    let n = if i < 192 {
        BUSY_CHANNELS
    } else {
        CHANNELS.len()
    };
    CHANNELS[usize::from(i) % n].to_owned()
}

/// A live connection of the run.
struct Live {
    conn: ConnId,
    user: String,
    tenant: String,
}

/// What a connection has been told about one channel it is subscribed to.
struct Sub {
    epoch: String,
    next_seq: u64,
    /// Presence view: `Some` on presence channels (from `subscribed.presence` and diffs).
    members: Option<BTreeSet<String>>,
    /// Last state version this subscription saw (snapshot or state frame).
    state_version: Option<u64>,
}

/// Channel of a tenant, with an epoch: the scope of `seq` and state `version`.
type Scope = (String, String, String);

#[derive(Default)]
struct Checker {
    live: Vec<Live>,
    subs: HashMap<(ConnId, String), Sub>,
    /// Stream items seen by position (HIST-6: one item per position).
    items: HashMap<(Scope, u64), Value>,
    /// Highest state version seen per scope.
    versions: HashMap<Scope, u64>,
    /// Last position seen per (tenant, channel), for `since` and `expected_*` picks.
    positions: HashMap<(String, String), (String, u64)>,
    state_seen: HashMap<(String, String), (String, u64)>,
}

thread_local! {
    static SERVER_SCHEMA: RefCell<Option<FrameSchema>> = const { RefCell::new(None) };
}

pub fn core(data: &[u8]) {
    core_with(data, Faults::default());
}

/// [`core`] on a core with deliberate bugs switched on (a no-op without the server's
/// `faults` feature): the corpus replay test shows that the invariants catch them.
pub fn core_with(data: &[u8], faults: Faults) {
    // Operations until the bytes run out: every byte counts, which suits both libFuzzer's
    // mutations and plain random inputs.
    let mut u = Unstructured::new(data);
    let mut ops = Vec::new();
    while !u.is_empty() && ops.len() < 64 {
        match Op::arbitrary(&mut u) {
            Ok(op) => ops.push(op),
            Err(_) => break,
        }
    }
    let mut d = Driver::with_config(CoreConfig { faults, ..config() });
    let mut c = Checker::default();
    // Two tabs of u1, u2, and u3 in another tenant are there from the start.
    for (user, tenant) in [(0, 0), (0, 0), (1, 0), (2, 1)] {
        c.apply(&mut d, &Op::Connect { user, tenant });
    }
    for op in &ops {
        c.apply(&mut d, op);
    }
}

impl Checker {
    fn conn(&self, i: u8) -> Option<(ConnId, String)> {
        let n = self.live.len();
        (n > 0).then(|| {
            let l = &self.live[usize::from(i) % n];
            (l.conn, l.tenant.clone())
        })
    }

    fn apply(&mut self, d: &mut Driver, op: &Op) {
        let mut request = None;
        match op {
            Op::Connect { user, tenant } => {
                if self.live.len() >= 7 {
                    return;
                }
                let user = pick(USERS, *user).to_owned();
                let tenant = pick(TENANTS, *tenant).to_owned();
                let mut s = session(&user, &tenant);
                if user == "u1" {
                    s.grants = vec!["private-*".into()];
                }
                let conn = d.connect_session(s);
                self.live.push(Live { conn, user, tenant });
            }
            Op::Disconnect { conn, graceful } => {
                let Some((conn, _)) = self.conn(*conn) else {
                    return;
                };
                d.disconnect(conn, *graceful);
                self.live.retain(|l| l.conn != conn);
                self.subs.retain(|(c, _), _| *c != conn);
            }
            Op::Advance { ms } => d.advance(u64::from(*ms)),
            Op::Frame { conn, frame } => {
                let Some((conn, tenant)) = self.conn(*conn) else {
                    return;
                };
                let text = self.frame(&tenant, frame).to_string();
                if let Ok(msg) = d.send_text(conn, &text) {
                    request = Some((conn, msg));
                }
            }
            Op::Raw { conn, text } => {
                let Some((conn, _)) = self.conn(*conn) else {
                    return;
                };
                if let Ok(msg) = d.send_text(conn, text) {
                    request = Some((conn, msg));
                }
            }
            Op::Publish {
                channel,
                event,
                data,
                message_id,
            } => {
                let req = PublishRequest {
                    channel: ChannelName(self::channel(*channel)),
                    event: pick(EVENTS, *event).to_owned(),
                    data: data.json(),
                    message_id: message_id.map(|m| format!("m{m}")),
                };
                let now = d.now;
                if let Ok((reply, effects)) = d.core.server_publish("", req, None, now) {
                    assert!(reply.seq >= 1, "publish took seq {}", reply.seq);
                    d.route(effects);
                }
            }
            Op::Record {
                record,
                data,
                delete,
            } => {
                let resource = "posts".to_owned();
                let id = format!("p{}", record % 3);
                let op = if *delete {
                    ResourceOp::Delete { resource, id }
                } else {
                    let mut data = json!({"v": data.json()});
                    data["id"] = json!(id);
                    ResourceOp::Replace { resource, id, data }
                };
                let now = d.now;
                let create = if let ResourceOp::Replace { resource, id, data } = &op {
                    Some(ResourceOp::Create {
                        resource: resource.clone(),
                        id: Some(id.clone()),
                        data: data.clone(),
                    })
                } else {
                    None
                };
                match d.core.resource_write("", op, now) {
                    Ok((_, effects)) => d.route(effects),
                    Err(_) => {
                        if let Some(create) = create {
                            if let Ok((_, effects)) = d.core.resource_write("", create, now) {
                                d.route(effects);
                            }
                        }
                    }
                }
            }
        }
        self.drain(d, request.as_ref());
    }

    /// The JSON of a generated frame.
    fn frame(&self, tenant: &str, spec: &FrameSpec) -> Value {
        let channel = |i: &u8| channel(*i);
        let mut v = match &spec.body {
            Body::Ping => json!({"type": "ping"}),
            Body::AuthRefresh => json!({"type": "auth:refresh", "token": "not-a-token"}),
            Body::Subscribe {
                channel: ch,
                since,
                state,
                room,
            } => {
                let name = channel(ch);
                let mut v = json!({"type": "subscribe", "channel": name});
                if let Some(s) = since {
                    let known = self.positions.get(&(tenant.to_owned(), name.clone()));
                    let (epoch, seq) = match (known, s.known_epoch) {
                        (Some((e, seq)), true) => {
                            (e.clone(), seq.saturating_sub(u64::from(s.back)))
                        }
                        (Some((_, seq)), false) => ("e-elsewhere".to_owned(), *seq),
                        (None, _) => ("e-0000000000000000".to_owned(), u64::from(s.back)),
                    };
                    v["since"] = json!({"epoch": epoch, "seq": seq});
                }
                if let Some(s) = state {
                    v["state"] = json!(s);
                }
                if let Some(r) = room {
                    let mut o = json!({});
                    if let Some(p) = r.password {
                        o["password"] = json!(format!("pw{}", p % 2));
                    }
                    if let Some(m) = r.max_users {
                        o["max_users"] = json!(m % 4);
                    }
                    if let Some(m) = &r.metadata {
                        o["metadata"] = m.json();
                    }
                    if let Some(p) = r.persist {
                        o["persist"] = json!(p);
                    }
                    v["room"] = o;
                }
                v
            }
            Body::Unsubscribe { channel: ch } => {
                json!({"type": "unsubscribe", "channel": channel(ch)})
            }
            Body::Broadcast {
                channel: ch,
                event,
                data,
                echo,
                message_id,
            } => {
                let mut v = json!({"type": "broadcast", "channel": channel(ch),
                    "event": pick(EVENTS, *event), "data": data.json()});
                if let Some(e) = echo {
                    v["echo"] = json!(e);
                }
                if let Some(m) = message_id {
                    v["message_id"] = json!(format!("m{m}"));
                }
                v
            }
            Body::History {
                channel: ch,
                limit,
                before_seq,
                event,
            } => {
                let mut v = json!({"type": "history", "channel": channel(ch)});
                if let Some(l) = limit {
                    v["limit"] = json!(l % 8);
                }
                if let Some(b) = before_seq {
                    v["before_seq"] = json!(b);
                }
                if let Some(e) = event {
                    v["event"] = json!(pick(EVENTS, *e));
                }
                v
            }
            Body::Presence { channel: ch } => json!({"type": "presence", "channel": channel(ch)}),
            Body::PresenceUpdate {
                channel: ch,
                status,
                data,
            } => {
                let mut v = json!({"type": "presence:update", "channel": channel(ch)});
                if let Some(s) = status {
                    v["status"] = json!(pick(STATUSES, *s));
                }
                if let Some(data) = data {
                    v["data"] = data.json();
                }
                v
            }
            Body::Cursor {
                channel: ch,
                x,
                y,
                data,
            } => {
                let mut v = json!({"type": "cursor:update", "channel": channel(ch),
                    "x": f64::from(*x) / 7.0, "y": y});
                if let Some(data) = data {
                    v["data"] = data.json();
                }
                v
            }
            Body::StateUpdate {
                channel: ch,
                key,
                value,
                expected,
            } => {
                let name = channel(ch);
                let mut v = json!({"type": "state:update", "channel": name,
                    "key": pick(KEYS, *key), "value": value.json()});
                self.expect(tenant, &name, expected, &mut v);
                v
            }
            Body::StateMerge {
                channel: ch,
                data,
                expected,
            } => {
                let name = channel(ch);
                let data: serde_json::Map<String, Value> = data
                    .iter()
                    .map(|(k, v)| (pick(KEYS, *k).to_owned(), v.json()))
                    .collect();
                let mut v = json!({"type": "state:merge", "channel": name, "data": data});
                self.expect(tenant, &name, expected, &mut v);
                v
            }
            Body::StateDelete {
                channel: ch,
                key,
                expected,
            } => {
                let name = channel(ch);
                let mut v = json!({"type": "state:delete", "channel": name,
                    "key": pick(KEYS, *key)});
                self.expect(tenant, &name, expected, &mut v);
                v
            }
            Body::StateSync { channel: ch } => {
                json!({"type": "state:sync:request", "channel": channel(ch)})
            }
        };
        if let Some(id) = spec.id {
            v["id"] = if id % 2 == 0 {
                json!(id)
            } else {
                json!(format!("r{id}"))
            };
        }
        if let Some((key, data)) = &spec.stray {
            v[pick(KEYS, *key)] = data.json();
        }
        v
    }

    fn expect(&self, tenant: &str, name: &str, expected: &Option<Expected>, v: &mut Value) {
        let Some(e) = expected else {
            return;
        };
        let (epoch, version) = self
            .state_seen
            .get(&(tenant.to_owned(), name.to_owned()))
            .cloned()
            .unwrap_or_else(|| ("e-0000000000000000".to_owned(), 0));
        v["expected_version"] = json!(version.saturating_add_signed(i64::from(e.delta % 3)));
        match e.epoch {
            Some(true) => v["expected_epoch"] = json!(epoch),
            Some(false) => v["expected_epoch"] = json!("e-elsewhere"),
            None => {}
        }
    }

    /// Checks everything delivered since the last operation, connection by connection.
    fn drain(&mut self, d: &mut Driver, request: Option<&(ConnId, ClientMessage)>) {
        let mut batch_versions: HashMap<Scope, Vec<u64>> = HashMap::new();
        let conns: Vec<(ConnId, String, String)> = self
            .live
            .iter()
            .map(|l| (l.conn, l.user.clone(), l.tenant.clone()))
            .collect();
        for (conn, user, tenant) in conns {
            let delivered = d.delivered(conn);
            let asked = request.filter(|(c, _)| *c == conn).map(|(_, m)| m);
            if let Some(id) = asked.and_then(ClientMessage::id) {
                let id = serde_json::to_value(id).expect("an id serializes");
                let replies = delivered
                    .iter()
                    .filter(|f| f.json.get("id") == Some(&id))
                    .count();
                assert_eq!(
                    replies, 1,
                    "TRANS-10: {asked:?} got {replies} replies: {delivered:?}"
                );
            }
            for f in &delivered {
                schema_valid(f);
                self.frame_to(conn, &user, &tenant, asked, f, &mut batch_versions);
            }
        }
        for (scope, seen) in batch_versions {
            let before = self.versions.get(&scope).copied();
            for v in &seen {
                if let Some(b) = before {
                    assert!(*v >= b, "STATE-3: version {v} after {b} in {scope:?}");
                    assert!(
                        *v <= b + 1,
                        "STATE-3: version {v} jumps from {b} in {scope:?}"
                    );
                }
            }
            let max = seen
                .iter()
                .copied()
                .max()
                .unwrap_or(0)
                .max(before.unwrap_or(0));
            self.versions.insert(scope, max);
        }
    }

    fn frame_to(
        &mut self,
        conn: ConnId,
        user: &str,
        tenant: &str,
        asked: Option<&ClientMessage>,
        f: &Delivered,
        versions: &mut HashMap<Scope, Vec<u64>>,
    ) {
        let scope = |channel: &ChannelName, epoch: &str| -> Scope {
            (tenant.to_owned(), channel.0.clone(), epoch.to_owned())
        };
        match &f.msg {
            ServerMessage::Subscribed(s) => {
                let since = match asked {
                    Some(ClientMessage::Subscribe(m)) if m.channel == s.channel => m.since.clone(),
                    other => panic!("subscribed {s:?} answers {other:?}"),
                };
                let epoch = s.position.epoch.0.clone();
                let next_seq = match (&since, s.recovered) {
                    (None, None) => s.position.seq + 1,
                    (None, Some(_)) => panic!("HIST-9: recovered without since: {s:?}"),
                    (Some(_), None) => panic!("HIST-7/8: since without recovered: {s:?}"),
                    (Some(p), Some(true)) => {
                        assert_eq!(p.epoch.0, epoch, "HIST-7: recovered across epochs");
                        assert!(p.seq <= s.position.seq, "HIST-7: recovered from the future");
                        p.seq + 1
                    }
                    (Some(_), Some(false)) => s.position.seq + 1,
                };
                let members = s.presence.as_ref().map(|list| {
                    let set: BTreeSet<String> = list.iter().map(|m| m.user_id.clone()).collect();
                    assert_eq!(set.len(), list.len(), "PRES-1: {list:?}");
                    assert!(set.contains(user), "PRES-5: {user} not in {list:?}");
                    set
                });
                let state_version = s.state.as_ref().map(|st| {
                    assert_eq!(st.epoch.0, epoch, "STATE-2: {s:?}");
                    versions
                        .entry(scope(&s.channel, &epoch))
                        .or_default()
                        .push(st.version);
                    st.version
                });
                self.note_position(tenant, &s.channel, &epoch, s.position.seq);
                self.subs.insert(
                    (conn, s.channel.0.clone()),
                    Sub {
                        epoch,
                        next_seq,
                        members,
                        state_version,
                    },
                );
            }
            ServerMessage::Unsubscribed(u) => {
                self.subs.remove(&(conn, u.channel.0.clone()));
            }
            ServerMessage::Message(m) => {
                self.stream_item(conn, tenant, &m.channel, m.seq, &f.json);
            }
            ServerMessage::DataChange(c) => {
                self.stream_item(conn, tenant, &c.channel, c.seq, &f.json);
            }
            ServerMessage::BroadcastAck(a) => {
                let Some(ClientMessage::Broadcast(b)) = asked else {
                    panic!("broadcast:ack {a:?} answers {asked:?}");
                };
                let Some(sub) = self.subs.get_mut(&(conn, a.channel.0.clone())) else {
                    return;
                };
                if a.seq < sub.next_seq {
                    // CHAN-44: only a deduplicated retry gets an earlier seq.
                    assert!(
                        b.message_id.is_some(),
                        "ack seq {} < {}",
                        a.seq,
                        sub.next_seq
                    );
                } else {
                    assert_eq!(a.seq, sub.next_seq, "CHAN-10: ack skips a seq");
                    if b.echo != Some(true) {
                        sub.next_seq += 1;
                    }
                }
                let epoch = sub.epoch.clone();
                self.note_position(tenant, &a.channel, &epoch, a.seq);
            }
            ServerMessage::HistoryPage(h) => {
                let epoch = h.position.epoch.0.clone();
                let mut last = 0;
                for item in &h.messages {
                    let seq = item.seq();
                    assert!(seq > last, "history page not ascending: {h:?}");
                    assert!(
                        seq <= h.position.seq,
                        "history item past the position: {h:?}"
                    );
                    last = seq;
                    let json = match item {
                        StreamItem::Message(m) => {
                            serde_json::to_value(ServerMessage::Message(m.clone()))
                        }
                        StreamItem::DataChange(c) => {
                            serde_json::to_value(ServerMessage::DataChange(c.clone()))
                        }
                    }
                    .expect("an item serializes");
                    self.same_item(scope(&h.channel, &epoch), seq, &json);
                }
            }
            ServerMessage::StateAck(a) => {
                versions
                    .entry(scope(&a.channel, &a.epoch.0))
                    .or_default()
                    .push(a.version);
                self.note_state(tenant, &a.channel, &a.epoch.0, a.version);
                if let Some(sub) = self.subs.get(&(conn, a.channel.0.clone())) {
                    assert_eq!(sub.epoch, a.epoch.0, "STATE-2: {a:?}");
                }
            }
            ServerMessage::StateUpdate(s) => {
                self.state_frame(conn, tenant, &s.channel, &s.epoch.0, s.version, versions)
            }
            ServerMessage::StateMerge(s) => {
                self.state_frame(conn, tenant, &s.channel, &s.epoch.0, s.version, versions)
            }
            ServerMessage::StateDelete(s) => {
                self.state_frame(conn, tenant, &s.channel, &s.epoch.0, s.version, versions)
            }
            ServerMessage::StateSync(s) => {
                versions
                    .entry(scope(&s.channel, &s.epoch.0))
                    .or_default()
                    .push(s.version);
                self.note_state(tenant, &s.channel, &s.epoch.0, s.version);
                let sub = self.sub(conn, &s.channel, "state:sync");
                assert_eq!(sub.epoch, s.epoch.0, "STATE-2: {s:?}");
                if let Some(v) = sub.state_version {
                    assert_eq!(s.version, v, "STATE-21: sync after frame {v}: {s:?}");
                }
                sub.state_version = Some(s.version);
            }
            ServerMessage::Error(e) => {
                if let (Some(cur), Some(channel)) = (&e.current, &e.channel) {
                    let name = ChannelName(channel.clone());
                    versions
                        .entry(scope(&name, &cur.epoch.0))
                        .or_default()
                        .push(cur.version);
                    self.note_state(tenant, &name, &cur.epoch.0, cur.version);
                }
            }
            ServerMessage::UserJoined(j) => {
                let members = self.members(conn, &j.channel, "user:joined");
                let fresh = members.insert(j.member.user_id.clone());
                assert!(fresh, "PRES-1/PRES-9: {} joined twice", j.member.user_id);
            }
            ServerMessage::UserLeft(l) => {
                let members = self.members(conn, &l.channel, "user:left");
                assert!(
                    members.remove(&l.user_id),
                    "PRES-7: {} left unseen",
                    l.user_id
                );
            }
            ServerMessage::PresenceUpdated(p) => {
                let members = self.members(conn, &p.channel, "presence:updated");
                assert!(
                    members.contains(&p.member.user_id),
                    "PRES-7: update of absent {p:?}"
                );
            }
            ServerMessage::PresenceList(p) => {
                let list: BTreeSet<String> = p.members.iter().map(|m| m.user_id.clone()).collect();
                assert_eq!(list.len(), p.members.len(), "PRES-1: {p:?}");
                let members = self.members(conn, &p.channel, "presence:list");
                assert_eq!(
                    &list, members,
                    "PRES-7/PRES-21: list differs from the diffs"
                );
            }
            _ => {}
        }
    }

    fn sub(&mut self, conn: ConnId, channel: &ChannelName, what: &str) -> &mut Sub {
        self.subs
            .get_mut(&(conn, channel.0.clone()))
            .unwrap_or_else(|| panic!("{what} on {channel} to a connection not subscribed"))
    }

    fn members(
        &mut self,
        conn: ConnId,
        channel: &ChannelName,
        what: &str,
    ) -> &mut BTreeSet<String> {
        self.sub(conn, channel, what)
            .members
            .as_mut()
            .unwrap_or_else(|| panic!("{what} on {channel}, whose subscribed had no presence"))
    }

    fn stream_item(
        &mut self,
        conn: ConnId,
        tenant: &str,
        channel: &ChannelName,
        seq: u64,
        json: &Value,
    ) {
        let sub = self.sub(conn, channel, "stream item");
        assert_eq!(
            seq,
            sub.next_seq,
            "CHAN-10/HIST-7: {json} after {}",
            sub.next_seq - 1
        );
        sub.next_seq += 1;
        let epoch = sub.epoch.clone();
        self.note_position(tenant, channel, &epoch, seq);
        self.same_item((tenant.to_owned(), channel.0.clone(), epoch), seq, json);
    }

    /// HIST-6: every delivery of the item at a position, live or replayed, is the same.
    fn same_item(&mut self, scope: Scope, seq: u64, json: &Value) {
        let kept = self
            .items
            .entry((scope, seq))
            .or_insert_with(|| json.clone());
        assert_eq!(kept, json, "HIST-6: two items at seq {seq}");
    }

    fn state_frame(
        &mut self,
        conn: ConnId,
        tenant: &str,
        channel: &ChannelName,
        epoch: &str,
        version: u64,
        versions: &mut HashMap<Scope, Vec<u64>>,
    ) {
        let scope = (tenant.to_owned(), channel.0.clone(), epoch.to_owned());
        versions.entry(scope).or_default().push(version);
        self.note_state(tenant, channel, epoch, version);
        let sub = self.sub(conn, channel, "state frame");
        assert_eq!(
            sub.epoch, epoch,
            "STATE-2: state epoch {epoch} on a subscription of {}",
            sub.epoch
        );
        if let Some(v) = sub.state_version {
            assert_eq!(version, v + 1, "STATE-17/24: version {version} after {v}");
        }
        sub.state_version = Some(version);
    }

    fn note_position(&mut self, tenant: &str, channel: &ChannelName, epoch: &str, seq: u64) {
        let key = (tenant.to_owned(), channel.0.clone());
        let entry = self
            .positions
            .entry(key)
            .or_insert_with(|| (epoch.to_owned(), seq));
        if entry.0 != epoch || entry.1 < seq {
            *entry = (epoch.to_owned(), seq);
        }
    }

    fn note_state(&mut self, tenant: &str, channel: &ChannelName, epoch: &str, version: u64) {
        self.state_seen.insert(
            (tenant.to_owned(), channel.0.clone()),
            (epoch.to_owned(), version),
        );
    }
}

/// Every frame validates against the strict server schema, as the suite grades it.
fn schema_valid(f: &Delivered) {
    SERVER_SCHEMA.with(|cell| {
        let mut cell = cell.borrow_mut();
        let schema =
            cell.get_or_insert_with(|| FrameSchema::server().expect("the schema compiles"));
        let violations = schema.check(&f.json);
        assert!(
            violations.is_empty(),
            "{} violates the schema: {violations:?}",
            f.json
        );
    });
}
