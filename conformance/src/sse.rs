//! An SSE (`text/event-stream`) reader: parses events, validates each `data` as a server
//! frame, and queues them like WebSocket frames, with the comment lines (keep-alives, SSE-10)
//! in between. Reading can be paused, so a server's buffering becomes observable (SSE-17).

use std::collections::VecDeque;
use std::sync::Arc;

use futures_util::StreamExt;
use serde_json::Value;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::client::check_frame;
use crate::transcript::{EventKind, Transcript};
use crate::validate::FrameSchema;

/// One server-sent event.
#[derive(Debug, Clone, PartialEq)]
pub struct SseEvent {
    /// `event:` (default `message`).
    pub event: String,
    /// `data:` lines joined by newlines.
    pub data: String,
    /// `data` parsed as JSON.
    pub json: Option<Value>,
    /// `id:`, if the event had one.
    pub id: Option<String>,
}

/// What the stream delivered.
#[derive(Debug, Clone, PartialEq)]
pub enum SseItem {
    /// An event.
    Event(SseEvent),
    /// A comment line (`:`), its text after the colon and one optional space.
    Comment(String),
    /// The stream ended.
    End(String),
}

/// What the parser completes from a chunk.
#[derive(Debug, Clone, PartialEq)]
pub enum Parsed {
    /// An event: `event`, `data` and `id`.
    Event(String, String, Option<String>),
    /// A comment line.
    Comment(String),
}

/// An open stream.
pub struct SseStream {
    inbox: mpsc::UnboundedReceiver<SseItem>,
    pending: VecDeque<SseItem>,
    reader: JoinHandle<()>,
    paused: watch::Sender<bool>,
}

impl Drop for SseStream {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

impl SseStream {
    /// Starts reading a response whose status was accepted.
    pub fn start(
        name: &str,
        resp: reqwest::Response,
        schema: Arc<FrameSchema>,
        transcript: Transcript,
    ) -> SseStream {
        let (tx, inbox) = mpsc::unbounded_channel();
        let (paused, paused_rx) = watch::channel(false);
        let reader = tokio::spawn(read_loop(
            name.to_owned(),
            resp,
            tx,
            schema,
            transcript,
            paused_rx,
        ));
        SseStream {
            inbox,
            pending: VecDeque::new(),
            reader,
            paused,
        }
    }

    /// Stops (or restarts) reading the response body: while paused, what the server writes
    /// stays in its buffers and the sockets'.
    pub fn set_paused(&self, paused: bool) {
        self.paused.send_replace(paused);
    }

    /// The next item before `deadline`.
    pub async fn next_until(&mut self, deadline: Instant) -> Option<SseItem> {
        if let Some(item) = self.pending.pop_front() {
            return Some(item);
        }
        match tokio::time::timeout_at(deadline, self.inbox.recv()).await {
            Ok(Some(item)) => Some(item),
            Ok(None) => {
                tokio::time::sleep_until(deadline).await;
                None
            }
            Err(_) => None,
        }
    }

    /// Stops reading.
    pub fn close(&mut self) {
        self.reader.abort();
    }
}

/// Accumulates lines into events (WHATWG event-stream parsing, minus `retry:`).
#[derive(Debug, Default)]
pub struct Parser {
    buffer: String,
    event: Option<String>,
    data: Vec<String>,
    id: Option<String>,
}

impl Parser {
    /// Feeds text; returns the events and comments completed by it.
    pub fn feed(&mut self, chunk: &str) -> Vec<Parsed> {
        self.buffer.push_str(chunk);
        let mut out = Vec::new();
        while let Some(pos) = self.buffer.find('\n') {
            let line: String = self.buffer.drain(..=pos).collect();
            let line = line.trim_end_matches(['\n', '\r']);
            if line.is_empty() {
                if !self.data.is_empty() {
                    let event = self.event.take().unwrap_or_else(|| "message".into());
                    out.push(Parsed::Event(event, self.data.join("\n"), self.id.clone()));
                }
                self.data.clear();
                self.event = None;
                continue;
            }
            if let Some(comment) = line.strip_prefix(':') {
                let text = comment.strip_prefix(' ').unwrap_or(comment);
                out.push(Parsed::Comment(text.to_owned()));
                continue;
            }
            let (field, value) = line.split_once(':').unwrap_or((line, ""));
            let value = value.strip_prefix(' ').unwrap_or(value);
            match field {
                "event" => self.event = Some(value.to_owned()),
                "data" => self.data.push(value.to_owned()),
                "id" => self.id = Some(value.to_owned()),
                _ => {}
            }
        }
        out
    }
}

async fn read_loop(
    name: String,
    resp: reqwest::Response,
    tx: mpsc::UnboundedSender<SseItem>,
    schema: Arc<FrameSchema>,
    transcript: Transcript,
    mut paused: watch::Receiver<bool>,
) {
    let mut parser = Parser::default();
    let mut stream = resp.bytes_stream();
    let mut carry: Vec<u8> = Vec::new();
    loop {
        // Paused: the body is not polled, so the connection is not read either.
        if paused.wait_for(|p| !*p).await.is_err() {
            return;
        }
        let next = tokio::select! {
            chunk = stream.next() => Some(chunk),
            _ = paused.wait_for(|p| *p) => None,
        };
        let Some(chunk) = next else {
            continue;
        };
        let Some(chunk) = chunk else {
            break;
        };
        let bytes = match chunk {
            Ok(b) => b,
            Err(e) => {
                let _ = tx.send(SseItem::End(format!("stream failed: {e}")));
                return;
            }
        };
        carry.extend_from_slice(&bytes);
        // Keep an incomplete UTF-8 sequence for the next chunk.
        let valid = match std::str::from_utf8(&carry) {
            Ok(_) => carry.len(),
            Err(e) => e.valid_up_to(),
        };
        let text = String::from_utf8_lossy(&carry[..valid]).into_owned();
        carry.drain(..valid);
        for parsed in parser.feed(&text) {
            let (event, data, id) = match parsed {
                Parsed::Event(event, data, id) => (event, data, id),
                Parsed::Comment(c) => {
                    transcript.push(&name, EventKind::Sse, format!(":{c}"));
                    if tx.send(SseItem::Comment(c)).is_err() {
                        return;
                    }
                    continue;
                }
            };
            let shown = format!(
                "event: {event} id: {} data: {data}",
                id.as_deref().unwrap_or("-")
            );
            transcript.push(&name, EventKind::Sse, shown);
            let json = check_frame(&name, &data, &schema, &transcript);
            if tx
                .send(SseItem::Event(SseEvent {
                    event,
                    data,
                    json,
                    id,
                }))
                .is_err()
            {
                return;
            }
        }
    }
    transcript.push(&name, EventKind::Close, "SSE stream ended");
    let _ = tx.send(SseItem::End("the stream ended".into()));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_events_across_chunks_and_reports_comments() {
        let mut p = Parser::default();
        assert_eq!(
            p.feed(": keepalive\n\nevent: message\nid: 4\nda"),
            vec![Parsed::Comment("keepalive".into())]
        );
        let out = p.feed("ta: {\"a\":1}\n\n:x\n");
        assert_eq!(
            out,
            vec![
                Parsed::Event("message".into(), "{\"a\":1}".into(), Some("4".into())),
                Parsed::Comment("x".into())
            ]
        );
    }

    #[test]
    fn multi_line_data_is_joined() {
        let mut p = Parser::default();
        let out = p.feed("data: a\ndata: b\n\n");
        assert_eq!(
            out,
            vec![Parsed::Event("message".into(), "a\nb".into(), None)]
        );
    }
}
