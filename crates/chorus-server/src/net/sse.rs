//! `GET /sse` (spec: sse.md): a receive-only stream of the frames of one or more channels.
//! The stream is a core connection like a WebSocket; each event carries the exact frame, and
//! `id:` is a resume token holding every channel's position (SSE-7, SSE-11).

use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use chorus_protocol::{
    Capability, ChannelKind, ChannelName, ClientMessage, Epoch, ErrorCode, ErrorFrame,
    ServerMessage, StreamPosition, Subscribe,
};
use futures_util::Stream;
use serde_json::Value;
use tokio::time::{sleep_until, Instant};

use crate::auth::token_from_request;
use crate::core::{ConnId, Fault, Faults, Session};

use super::http::{status_of, ApiError};
use super::hub::{deadline_at, now_ms, LiveGuard, Shared};
use super::outbound::{self, ConnQueue, Outbound};
use super::resume::{self, Positions, Resume};
use super::{origin_allowed, query_param, query_params};

/// Header carrying the last event id a reconnecting `EventSource` saw.
const LAST_EVENT_ID: &str = "last-event-id";

/// `GET /sse?channel=…&token=…`.
pub async fn stream(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    match open(&shared, query.as_deref(), &headers, peer.ip()).await {
        Ok(stream) => {
            let interval = Duration::from_millis(shared.config.heartbeat_interval_ms);
            let mut response = Sse::new(stream)
                .keep_alive(KeepAlive::new().interval(interval).text("keep-alive"))
                .into_response();
            if shared.faults.on(Fault::SseNoCacheControl) {
                response
                    .headers_mut()
                    .remove(axum::http::header::CACHE_CONTROL);
            }
            response
        }
        Err(e) => e.into_response(),
    }
}

/// Everything checked before streaming (SSE-2a to SSE-2e), then the subscriptions.
async fn open(
    shared: &Arc<Shared>,
    query: Option<&str>,
    headers: &HeaderMap,
    addr: IpAddr,
) -> Result<impl Stream<Item = Result<Event, Infallible>>, ApiError> {
    if !shared.has(Capability::Sse) {
        return Err(ApiError::new(
            ErrorCode::NotFound,
            "capability not announced",
        ));
    }
    if !origin_allowed(&shared.config, headers) {
        return Err(ApiError::new(ErrorCode::Forbidden, "origin not allowed"));
    }
    let session = authenticate(shared, query, headers)?;
    let channels = requested_channels(shared, query)?;
    let resume = resume_token(query, headers, &shared.faults)
        .filter(|_| !shared.faults.on(Fault::SseResumeIgnored))
        .map(|t| resume::decode(&t));
    if matches!(resume, Some(None)) && shared.faults.on(Fault::SseUndecodableRefused) {
        return Err(ApiError::new(
            ErrorCode::InvalidMessage,
            "unreadable resume token",
        ));
    }
    let live = shared
        .track(&session, addr)
        .map_err(|refused| ApiError::new(ErrorCode::LimitExceeded, refused.reason()))?;
    let config = &shared.config;
    let (handle, queue) = outbound::queue(config.queue_limits());
    let expires_at = session
        .expires_at
        .filter(|_| !shared.faults.on(Fault::SseExpiryIgnored));
    let conn = shared.connect(handle, session);
    let mut state = StreamState {
        shared: shared.clone(),
        conn,
        queue,
        prefix: VecDeque::new(),
        positions: Positions::new(),
        resumed_from: Positions::new(),
        faults: shared.faults.clone(),
        expires_at: expires_at.map(deadline_at),
        done: false,
        _live: live,
    };
    for channel in channels {
        let since = since_for(resume.as_ref(), &channel);
        if let Some(since) = &since {
            state.resumed_from.insert(
                channel.as_str().to_owned(),
                (since.epoch.0.clone(), since.seq),
            );
        }
        state.subscribe(channel, since).await?;
    }
    Ok(futures_util::stream::unfold(
        state,
        |mut state| async move {
            let event = state.next_event().await?;
            Some((Ok(event), state))
        },
    ))
}

fn authenticate(
    shared: &Shared,
    query: Option<&str>,
    headers: &HeaderMap,
) -> Result<Session, ApiError> {
    let unauthorized = |m: String| ApiError::new(ErrorCode::Unauthorized, m);
    let query_token = query_param(query, "token");
    let token = token_from_request(headers, query_token.as_deref())
        .map_err(|e| unauthorized(e.to_string()))?;
    shared
        .auth
        .authenticate(token, now_ms())
        .map_err(|e| unauthorized(e.to_string()))
}

/// Distinct requested channels in query order (SSE-6), each valid and not a presence
/// channel, at most `max_subscriptions` of them (SSE-2e).
fn requested_channels(shared: &Shared, query: Option<&str>) -> Result<Vec<ChannelName>, ApiError> {
    let mut channels: Vec<ChannelName> = Vec::new();
    let twice = shared.faults.on(Fault::SseRepeatedChannelTwice);
    for name in query_params(query, "channel") {
        let channel = ChannelName(name);
        if twice || !channels.contains(&channel) {
            channels.push(channel);
        }
    }
    if channels.is_empty() {
        return Err(ApiError::new(
            ErrorCode::InvalidMessage,
            "no channel parameter",
        ));
    }
    let max_len = shared.config.max_channel_name_len as usize;
    for channel in &channels {
        let kind = channel
            .validate(max_len)
            .map_err(|e| ApiError::new(ErrorCode::InvalidChannel, e.to_string()))?;
        if kind == ChannelKind::Presence && !shared.faults.on(Fault::SsePresenceAllowed) {
            return Err(ApiError::new(
                ErrorCode::InvalidChannel,
                format!("{channel} is a presence channel, not available over SSE"),
            ));
        }
    }
    let max = shared.config.max_subscriptions as usize;
    if channels.len() > max && shared.faults.on(Fault::SseChannelsTruncated) {
        channels.truncate(max);
    }
    if channels.len() > max {
        return Err(ApiError::new(
            ErrorCode::LimitExceeded,
            "more channels than max_subscriptions",
        ));
    }
    Ok(channels)
}

/// The header wins over the query parameter (SSE-11).
fn resume_token(query: Option<&str>, headers: &HeaderMap, faults: &Faults) -> Option<String> {
    let header = headers
        .get(LAST_EVENT_ID)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    if faults.on(Fault::SseQueryResumeIgnored) {
        return header;
    }
    header.or_else(|| query_param(query, "last_event_id"))
}

/// The `since` of one channel: its position in a readable token (SSE-11), none when the token
/// does not hold it (SSE-13), and a position that cannot match when the token is unreadable,
/// so that the channel answers `recovered: false` (SSE-14).
fn since_for(resume: Option<&Option<Resume>>, channel: &ChannelName) -> Option<StreamPosition> {
    match resume? {
        Some(resume) => resume
            .position(channel.as_str())
            .map(|(epoch, seq)| StreamPosition {
                epoch: Epoch(epoch),
                seq,
            }),
        None => Some(StreamPosition {
            epoch: Epoch("unreadable-resume-token".into()),
            seq: 0,
        }),
    }
}

/// One open stream. Dropping it (the client went away) disconnects it from the core.
struct StreamState {
    shared: Arc<Shared>,
    conn: ConnId,
    queue: ConnQueue,
    /// Items taken from the queue while checking the subscriptions.
    prefix: VecDeque<Outbound>,
    positions: Positions,
    /// The position each channel was resumed from: a recovered `subscribed` carries it in
    /// its id, and the replay advances it (SSE-21).
    resumed_from: Positions,
    expires_at: Option<Instant>,
    faults: crate::core::Faults,
    done: bool,
    _live: LiveGuard,
}

impl Drop for StreamState {
    fn drop(&mut self) {
        // A stream has no Close frame: its end is abrupt (PRES-27 does not apply, as SSE
        // has no presence).
        self.shared.disconnect(self.conn, false);
    }
}

impl StreamState {
    /// Subscribes one channel; an `error` reply becomes the HTTP error of the request.
    async fn subscribe(
        &mut self,
        channel: ChannelName,
        since: Option<StreamPosition>,
    ) -> Result<(), ApiError> {
        let msg = ClientMessage::Subscribe(Subscribe {
            id: None,
            channel,
            since,
            password: None,
            room: None,
            state: None,
        });
        self.shared.handle(self.conn, msg);
        // Group commit may hold the reply behind a pending sync; it is queued after this.
        self.shared.durable().await;
        while let Some(item) = self.queue.try_recv() {
            if let Outbound::Frame(frame) = &item {
                if let Some(error) = error_of(frame) {
                    return Err(error);
                }
            }
            self.prefix.push_back(item);
        }
        Ok(())
    }

    async fn next_event(&mut self) -> Option<Event> {
        if self.done {
            return None;
        }
        let item = match self.prefix.pop_front() {
            Some(item) => item,
            None => self.next_item().await?,
        };
        match item {
            Outbound::Frame(frame) => Some(self.event(&frame)),
            Outbound::Close(_) => None,
        }
    }

    async fn next_item(&mut self) -> Option<Outbound> {
        let expiry = self.expires_at;
        let closer = self.queue.closer.clone();
        tokio::select! {
            biased;
            // SSE-17: a stream that is not read fast enough ends.
            _ = closer.wait() => None,
            item = self.queue.recv() => item,
            // SSE-16
            _ = sleep_until(expiry.unwrap_or_else(Instant::now)), if expiry.is_some() => {
                self.done = true;
                let frame = ErrorFrame::new(None, ErrorCode::Unauthorized, "token expired");
                Some(Outbound::Frame(ServerMessage::Error(frame).to_json().into()))
            }
        }
    }

    /// The SSE event of one frame (SSE-4), with the resume token when positions moved.
    fn event(&mut self, frame: &str) -> Event {
        let value = head_of(frame);
        let kind = value
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("message");
        let event = Event::default().event(kind).data(frame);
        if !self.track(kind, &value) {
            return event;
        }
        if self.faults.on(Fault::SseTokenEventChannelOnly) {
            let channel = value["channel"].as_str().unwrap_or_default();
            let mut own = Positions::new();
            if let Some(p) = self.positions.get(channel) {
                own.insert(channel.to_owned(), p.clone());
            }
            return event.id(resume::encode(&own));
        }
        event.id(resume::encode(&self.positions))
    }

    /// Updates the positions from a frame; true when the frame carries an id (SSE-7).
    fn track(&mut self, kind: &str, value: &Value) -> bool {
        let Some(channel) = value.get("channel").and_then(Value::as_str) else {
            return false;
        };
        match kind {
            "subscribed" => {
                let epoch = value["position"]["epoch"].as_str().unwrap_or_default();
                let seq = value["position"]["seq"].as_u64().unwrap_or(0);
                let mut position = (epoch.to_owned(), seq);
                // A replay follows a recovered subscribed: until it arrives, the stream is
                // at the resume point, not at the channel's newest position (SSE-21).
                if value["recovered"] == Value::Bool(true)
                    && !self.faults.on(Fault::SseRecoveredIdAtHead)
                {
                    if let Some(from) = self.resumed_from.remove(channel) {
                        if from.0 == position.0 {
                            position = from;
                        }
                    }
                }
                self.positions.insert(channel.to_owned(), position);
                true
            }
            "data_change" if self.faults.on(Fault::SseDataChangeUntracked) => true,
            "message" | "data_change" => {
                let seq = value["seq"].as_u64().unwrap_or(0);
                if let Some(position) = self.positions.get_mut(channel) {
                    position.1 = seq;
                }
                true
            }
            _ => false,
        }
    }
}

/// The top-level fields of `frame` that its SSE event reads (`type`, `channel`, `seq`,
/// `position`, `recovered`), every other one skipped unparsed: a message's `data` can be as
/// large as a frame, and this runs once per frame for every stream. `Null` when the frame
/// is not a JSON object.
fn head_of(frame: &str) -> Value {
    #[derive(serde::Deserialize)]
    struct Head {
        #[serde(rename = "type")]
        kind: Option<Value>,
        channel: Option<Value>,
        seq: Option<Value>,
        position: Option<Value>,
        recovered: Option<Value>,
    }
    let Ok(head) = serde_json::from_str::<Head>(frame) else {
        return Value::Null;
    };
    let fields = [
        ("type", head.kind),
        ("channel", head.channel),
        ("seq", head.seq),
        ("position", head.position),
        ("recovered", head.recovered),
    ];
    Value::Object(
        fields
            .into_iter()
            .filter_map(|(name, value)| Some((name.to_owned(), value?)))
            .collect(),
    )
}

/// The HTTP error matching an `error` frame, if the frame is one.
fn error_of(frame: &str) -> Option<ApiError> {
    if !frame.starts_with(r#"{"type":"error""#) {
        return None;
    }
    let value: Value = serde_json::from_str(frame).ok()?;
    let code: ErrorCode = serde_json::from_value(value.get("code")?.clone()).ok()?;
    let message = value["message"].as_str().unwrap_or_default();
    debug_assert!(status_of(code) != StatusCode::OK);
    Some(ApiError::new(code, message))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unreadable_tokens_force_a_non_matching_since() {
        let channel = ChannelName::from("news");
        let since = since_for(Some(&None), &channel).unwrap();
        assert_eq!(since.seq, 0);
        assert_eq!(since_for(None, &channel), None);
        let empty = Resume::Named(Positions::new());
        assert_eq!(since_for(Some(&Some(empty)), &channel), None);
    }

    #[test]
    fn a_frames_head_is_its_top_level_fields_that_events_read() {
        let frame = serde_json::json!({
            "type": "message", "channel": "news", "seq": 7, "event": "e",
            "data": {"type": "inner", "channel": "other", "seq": 1, "big": "y".repeat(1000)},
            "position": {"epoch": "e1", "seq": 7}, "recovered": true,
        });
        let mut whole = frame.clone();
        for skipped in ["event", "data"] {
            whole.as_object_mut().unwrap().remove(skipped);
        }
        assert_eq!(head_of(&frame.to_string()), whole);
        // Fields of any type are kept as they are; what is not an object has no head.
        let odd = r#"{"type":"subscribed","channel":3,"position":[1],"recovered":"yes"}"#;
        assert_eq!(
            head_of(odd),
            serde_json::json!({"type": "subscribed", "channel": 3, "position": [1], "recovered": "yes"})
        );
        assert_eq!(head_of("[1,2]"), Value::Null);
        assert_eq!(head_of("not json"), Value::Null);
    }

    #[test]
    fn error_frames_become_http_errors() {
        let e = error_of(r#"{"type":"error","code":"forbidden","message":"no grant"}"#).unwrap();
        assert_eq!(e.into_response().status(), StatusCode::FORBIDDEN);
        assert!(error_of(r#"{"type":"subscribed"}"#).is_none());
    }
}
