//! An in-memory driver for the core's tests: fake connections, a manual clock, and an
//! inbox per connection holding every frame sent to it, parsed back as [`ServerMessage`]
//! (so that a frame the protocol types reject fails the test).
//!
//! Public under the `testkit` feature for the fuzz targets (`fuzz/`), which drive the core
//! with generated frames through [`Driver::send_text`].

use std::collections::{HashMap, VecDeque};

use chorus_protocol::{decode_client, ClientMessage, DecodeError, Millis, ServerMessage};
use serde_json::{json, Value};

use super::{ConnId, Core, CoreConfig, Effect, Session};
use crate::store::Store;

/// Start of the test clock.
pub const T0: Millis = 1_767_225_600_000;

pub struct Driver {
    pub core: Core,
    pub now: Millis,
    next: ConnId,
    inbox: HashMap<ConnId, VecDeque<Delivered>>,
    pub closed: Vec<(ConnId, chorus_protocol::CloseCode)>,
}

#[derive(Debug, Clone)]
pub struct Delivered {
    pub msg: ServerMessage,
    pub json: Value,
    pub droppable: bool,
}

pub fn session(user: &str, tenant: &str) -> Session {
    Session {
        user_id: user.to_owned(),
        profile: json!({ "name": user }),
        tenant: tenant.to_owned(),
        grants: Vec::new(),
        rights: None,
        expires_at: None,
    }
}

impl Default for Driver {
    fn default() -> Self {
        Driver::new()
    }
}

impl Driver {
    pub fn new() -> Driver {
        Driver::with_config(CoreConfig::default())
    }

    pub fn with_config(config: CoreConfig) -> Driver {
        Driver::with_store(config, Store::memory().unwrap())
    }

    pub fn with_store(config: CoreConfig, store: Store) -> Driver {
        Driver {
            core: Core::new(config, store).unwrap(),
            now: T0,
            next: 1,
            inbox: HashMap::new(),
            closed: Vec::new(),
        }
    }

    /// Connects `user` in the default tenant and drops its `welcome`.
    pub fn connect(&mut self, user: &str) -> ConnId {
        self.connect_session(session(user, ""))
    }

    /// Connects with a full session and drops its `welcome`.
    pub fn connect_session(&mut self, s: Session) -> ConnId {
        let conn = self.next;
        self.next += 1;
        let effects = self.core.connect(conn, s, self.now);
        self.route(effects);
        let welcome = self.take(conn);
        assert_eq!(welcome.len(), 1);
        assert_eq!(welcome[0].type_name(), "welcome");
        conn
    }

    /// Sends one client frame, written as JSON, through the protocol decoder.
    pub fn send(&mut self, conn: ConnId, frame: Value) {
        let msg = decode_client(&frame.to_string(), 32).expect("test frame decodes");
        let effects = self.core.handle(conn, msg, self.now);
        self.route(effects);
    }

    /// Sends one text frame as the shell does: decoded with the configured depth limit, and
    /// handed to the core only when it decodes (the shell answers a decode error itself).
    /// Returns the message the core handled.
    pub fn send_text(&mut self, conn: ConnId, text: &str) -> Result<ClientMessage, DecodeError> {
        let depth = self.core.config().limits.max_json_depth as usize;
        let msg = decode_client(text, depth)?;
        let effects = self.core.handle(conn, msg.clone(), self.now);
        self.route(effects);
        Ok(msg)
    }

    /// Sends and returns what `conn` received.
    pub fn ask(&mut self, conn: ConnId, frame: Value) -> Vec<Value> {
        self.send(conn, frame);
        self.frames(conn)
    }

    pub fn disconnect(&mut self, conn: ConnId, graceful: bool) {
        let effects = self.core.disconnect(conn, graceful, self.now);
        self.route(effects);
        self.inbox.remove(&conn);
    }

    /// Moves the clock, running every tick that falls due on the way.
    pub fn advance(&mut self, ms: u64) {
        let end = self.now + ms;
        while let Some(at) = self.core.next_deadline().filter(|at| *at <= end) {
            self.now = self.now.max(at);
            let effects = self.core.tick(self.now);
            self.route(effects);
        }
        self.now = end;
    }

    pub fn route(&mut self, effects: Vec<Effect>) {
        for e in effects {
            match e {
                Effect::Send {
                    to,
                    frame,
                    droppable,
                } => {
                    let msg: ServerMessage = serde_json::from_str(&frame)
                        .unwrap_or_else(|e| panic!("frame {frame} does not parse: {e}"));
                    let json: Value = serde_json::from_str(&frame).unwrap();
                    self.inbox.entry(to).or_default().push_back(Delivered {
                        msg,
                        json,
                        droppable,
                    });
                }
                Effect::Close { conn, code } => self.closed.push((conn, code)),
            }
        }
    }

    pub fn delivered(&mut self, conn: ConnId) -> Vec<Delivered> {
        self.inbox.remove(&conn).map(Vec::from).unwrap_or_default()
    }

    pub fn take(&mut self, conn: ConnId) -> Vec<ServerMessage> {
        self.delivered(conn).into_iter().map(|d| d.msg).collect()
    }

    /// Every frame `conn` received since the last look, as JSON.
    pub fn frames(&mut self, conn: ConnId) -> Vec<Value> {
        self.delivered(conn).into_iter().map(|d| d.json).collect()
    }

    /// The frame types `conn` received since the last look.
    pub fn types(&mut self, conn: ConnId) -> Vec<&'static str> {
        self.take(conn)
            .iter()
            .map(ServerMessage::type_name)
            .collect()
    }

    pub fn assert_silent(&mut self, conn: ConnId) {
        let got = self.frames(conn);
        assert!(got.is_empty(), "conn {conn} received {got:?}");
    }

    /// Subscribes and returns the `subscribed` frame (asserting it came).
    pub fn subscribe(&mut self, conn: ConnId, channel: &str) -> Value {
        let got = self.ask(
            conn,
            json!({"type": "subscribe", "id": 1, "channel": channel}),
        );
        assert_eq!(got[0]["type"], "subscribed", "{got:?}");
        got[0].clone()
    }
}

/// A frame with its volatile members removed, for exact comparisons.
pub fn without(mut v: Value, keys: &[&str]) -> Value {
    if let Some(map) = v.as_object_mut() {
        for k in keys {
            map.remove(*k);
        }
    }
    v
}
