//! The wire transcript of one case: every step, frame, close, HTTP exchange and SSE event in
//! the order the harness saw them, plus the schema violations found on the way. It is the
//! "minimal reproduction" a failure prints.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::validate::Violation;

/// What an event records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// A step starts (text: the step as JSON).
    Step,
    /// The harness sent a frame.
    Send,
    /// The server sent a frame.
    Recv,
    /// A connection opened (text: selected subprotocol) or was refused.
    Open,
    /// A connection closed (text: code and reason, or how it ended).
    Close,
    /// An HTTP request and its response.
    Http,
    /// An SSE event.
    Sse,
    /// A remark of the harness (a failure, a skipped frame).
    Note,
}

/// One line of a transcript.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Event {
    /// Milliseconds since the case started.
    pub at_ms: u64,
    /// The client, stream, or `harness`.
    pub who: String,
    /// The kind.
    pub kind: EventKind,
    /// The payload (frame text, close code…).
    pub text: String,
}

/// A schema violation in a frame the server sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct FrameViolation {
    /// The client or stream that received it.
    pub who: String,
    /// The frame as received.
    pub frame: String,
    /// What is wrong, with the message type and field path.
    pub violation: Violation,
}

#[derive(Debug, Default)]
struct Inner {
    events: Vec<Event>,
    violations: Vec<FrameViolation>,
}

/// A shared, append-only transcript (cheap to clone; every connection of a case holds one).
#[derive(Debug, Clone)]
pub struct Transcript {
    start: Instant,
    inner: Arc<Mutex<Inner>>,
}

impl Default for Transcript {
    fn default() -> Self {
        Transcript::new()
    }
}

impl Transcript {
    /// An empty transcript whose clock starts now.
    pub fn new() -> Self {
        Transcript {
            start: Instant::now(),
            inner: Arc::default(),
        }
    }

    /// Appends an event.
    pub fn push(&self, who: &str, kind: EventKind, text: impl Into<String>) {
        let at_ms = self.start.elapsed().as_millis() as u64;
        if let Ok(mut g) = self.inner.lock() {
            g.events.push(Event {
                at_ms,
                who: who.to_owned(),
                kind,
                text: text.into(),
            });
        }
    }

    /// Records a schema violation.
    pub fn violation(&self, who: &str, frame: &str, violation: Violation) {
        if let Ok(mut g) = self.inner.lock() {
            g.violations.push(FrameViolation {
                who: who.to_owned(),
                frame: frame.to_owned(),
                violation,
            });
        }
    }

    /// A copy of the events so far.
    pub fn events(&self) -> Vec<Event> {
        self.inner
            .lock()
            .map(|g| g.events.clone())
            .unwrap_or_default()
    }

    /// A copy of the violations so far.
    pub fn violations(&self) -> Vec<FrameViolation> {
        self.inner
            .lock()
            .map(|g| g.violations.clone())
            .unwrap_or_default()
    }
}

/// Renders events as plain text lines (`  +12ms bob <- {"type":"pong"}`).
pub fn render(events: &[Event]) -> String {
    let mut out = String::new();
    for e in events {
        let arrow = match e.kind {
            EventKind::Step => "==",
            EventKind::Send => "->",
            EventKind::Recv => "<-",
            EventKind::Open => "++",
            EventKind::Close => "xx",
            EventKind::Http => "<>",
            EventKind::Sse => "<~",
            EventKind::Note => "!!",
        };
        out.push_str(&format!(
            "{:>7}ms {:<10} {arrow} {}\n",
            e.at_ms, e.who, e.text
        ));
    }
    out
}
