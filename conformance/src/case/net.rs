//! Connection, HTTP and SSE steps.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::{CaseRun, Flow, StepResult};
use crate::client::{self, ConnectError, Connection};
use crate::fixture::{
    AuthKeyword, CloseCodes, Connect, HttpAuth, HttpStep, SseExpect, SseExpectNone, SseOpen,
};
use crate::http::{self, Request};
use crate::sse::{SseItem, SseStream};
use crate::transcript::EventKind;

impl CaseRun<'_> {
    pub(super) async fn connect(&mut self, s: &Connect) -> StepResult {
        let name = s.connect.as_str();
        if self
            .clients
            .get(name)
            .and_then(|c| c.conn.as_ref())
            .is_some_and(|c| !c.ended())
        {
            return Err(Flow::Error(format!("client {name:?} is already connected")));
        }
        self.refresh_expiring_token(name).await;
        let opts = self.connect_options(name, s)?;
        let opened = Connection::open(
            name,
            &opts,
            self.runner.server_schema.clone(),
            self.transcript.clone(),
        )
        .await;
        if let Some(want) = s.reject_status {
            self.out.graded_message = true;
            return match opened {
                Err(ConnectError::Rejected { status }) if status == want => Ok(()),
                Err(e) => Err(Flow::fail(format!(
                    "expected the upgrade to be refused with HTTP {want}: {e}"
                ))),
                Ok(_) => Err(Flow::fail(format!(
                    "the upgrade was accepted; expected HTTP {want}"
                ))),
            };
        }
        let conn = opened.map_err(|e| Flow::fail(format!("connecting {name}: {e}")))?;
        let protocol = conn.protocol.clone();
        if let Some(state) = self.clients.get_mut(name) {
            state.conn = Some(conn);
        }
        if let Some(m) = &s.expect_protocol {
            self.out.graded_message = true;
            let expected = serde_json::json!({ "protocol": self.expected(m)? });
            let actual = serde_json::json!({ "protocol": protocol });
            let actual = match protocol {
                Some(_) => actual,
                None => Value::Object(Map::new()),
            };
            self.check(&expected, &actual).map_err(|mm| {
                Flow::mismatch("selected subprotocol", &mm, &expected, &actual.to_string())
            })?;
        }
        if s.expect_welcome == Some(false) {
            return Ok(());
        }
        self.out.graded_message = true;
        let deadline = self.deadline(s.within_ms.as_ref(), 2000)?;
        let base = serde_json::json!({"type": "welcome"});
        let (frame, text) = self
            .next_frame(name, deadline, &[], "the welcome timeout")
            .await
            .map_err(|f| match f {
                Flow::Fail {
                    kind,
                    message,
                    actual,
                    ..
                } => Flow::Fail {
                    kind,
                    message: format!("no welcome: {message}"),
                    expected: Some(base.to_string()),
                    actual,
                },
                other => other,
            })?;
        let expected = match &s.welcome {
            Some(w) => serde_json::json!({ "$all": [base, self.expected(w)?] }),
            None => base,
        };
        self.check(&expected, &frame)
            .map_err(|m| Flow::mismatch("welcome", &m, &expected, &text))?;
        self.scope.set_builtin("welcome", name, frame);
        Ok(())
    }

    fn auth_headers(
        &self,
        auth: Option<&HttpAuth>,
        headers: &mut BTreeMap<String, String>,
    ) -> Result<(), Flow> {
        match auth {
            None | Some(HttpAuth::Keyword(AuthKeyword::None)) => {}
            Some(HttpAuth::Keyword(AuthKeyword::ApiKey)) => {
                let key = self.runner.config.api_key.clone().ok_or_else(|| {
                    Flow::Untestable("the case needs the HTTP API key: pass --api-key".into())
                })?;
                headers.insert(chorus_protocol::http::API_KEY_HEADER.into(), key);
            }
            Some(HttpAuth::ApiKey { api_key }) => {
                headers.insert(
                    chorus_protocol::http::API_KEY_HEADER.into(),
                    self.scope.text(api_key)?,
                );
            }
            Some(HttpAuth::Client { client }) => {
                headers.insert(
                    "authorization".into(),
                    format!("Bearer {}", self.token_of(client)?),
                );
            }
        }
        Ok(())
    }

    fn token_of(&self, client: &str) -> Result<String, Flow> {
        let state = self
            .clients
            .get(client)
            .ok_or_else(|| Flow::Error(format!("unknown client {client:?}")))?;
        state.token.clone().map_err(Flow::Error)
    }

    pub(super) async fn http(&mut self, s: &HttpStep) -> StepResult {
        let r = &s.http;
        let mut headers = self.runner.config.headers.clone();
        self.auth_headers(r.auth.as_ref(), &mut headers)?;
        if let Some(t) = &r.tenant {
            headers.insert(
                chorus_protocol::http::TENANT_HEADER.into(),
                self.scope.text(t)?,
            );
        }
        for (k, v) in &r.headers {
            headers.insert(k.clone(), self.scope.text(v)?);
        }
        let body = match (&r.body, &r.raw_body) {
            (Some(b), _) => Some(self.scope.value(b)?.to_string()),
            (None, Some(raw)) => Some(self.scope.text(raw)?),
            _ => None,
        };
        let req = Request {
            method: r.method.clone(),
            url: format!(
                "{}{}",
                self.runner.config.http_url,
                self.scope.text(&r.path)?
            ),
            headers,
            body,
        };
        let timeout = self
            .wait(None, 2000)?
            .max(std::time::Duration::from_secs(2));
        let resp = http::send(&self.runner.http, &req, timeout, &self.transcript, "http")
            .await
            .map_err(|e| Flow::fail(format!("HTTP {} {}: {e}", req.method, req.url)))?;
        self.out.graded_message = true;
        check_status(s.expect_status.as_ref(), resp.status, &resp.body)?;
        if let Some(m) = &s.expect_body {
            let expected = self.expected(m)?;
            self.check(&expected, &resp.json())
                .map_err(|mm| Flow::mismatch("HTTP response body", &mm, &expected, &resp.body))?;
        }
        if !s.expect_headers.is_empty() {
            let mut expected = Map::new();
            for (k, v) in &s.expect_headers {
                expected.insert(k.to_lowercase(), self.expected(v)?);
            }
            let expected = Value::Object(expected);
            let actual: Map<String, Value> = resp
                .headers
                .iter()
                .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                .collect();
            let actual = Value::Object(actual);
            self.check(&expected, &actual).map_err(|mm| {
                Flow::mismatch("HTTP response headers", &mm, &expected, &actual.to_string())
            })?;
        }
        Ok(())
    }

    pub(super) async fn sse_open(&mut self, s: &SseOpen) -> StepResult {
        let mut query: BTreeMap<String, String> = BTreeMap::new();
        let mut url = format!("{}/sse", self.runner.config.http_url);
        for c in &s.channels {
            url = client::url_with_query(
                &url,
                &BTreeMap::from([("channel".to_owned(), self.scope.text(c)?)]),
            );
        }
        if let Some(c) = &s.client {
            query.insert("token".into(), self.token_of(c)?);
        }
        for (k, v) in &s.query {
            query.insert(k.clone(), self.scope.text(v)?);
        }
        let url = client::url_with_query(&url, &query);
        let mut req = self.runner.http.get(&url);
        for (k, v) in &self.runner.config.headers {
            req = req.header(k, v);
        }
        if let Some(id) = &s.last_event_id {
            req = req.header("last-event-id", self.scope.text(id)?);
        }
        self.transcript
            .push(&s.sse_open, EventKind::Http, format!("GET {url}"));
        let timeout = self.wait(None, 2000)?;
        let resp = tokio::time::timeout(timeout, req.send())
            .await
            .map_err(|_| Flow::fail("SSE: no response headers in time"))?
            .map_err(|e| Flow::fail(format!("SSE request failed: {e}")))?;
        let status = resp.status().as_u16();
        self.transcript
            .push(&s.sse_open, EventKind::Http, format!("HTTP {status}"));
        self.out.graded_message = true;
        let want = s.expect_status.clone().unwrap_or(CloseCodes::One(200));
        if !want.accepts(status) {
            let body = resp.text().await.unwrap_or_default();
            return Err(Flow::Fail {
                kind: crate::verdict::FailureKind::Message,
                message: format!("SSE: unexpected HTTP status {status}"),
                expected: Some(serde_json::to_string(&want).unwrap_or_default()),
                actual: Some(format!("{status} {body}")),
            });
        }
        if status == 200 {
            let stream = SseStream::start(
                &s.sse_open,
                resp,
                self.runner.server_schema.clone(),
                self.transcript.clone(),
            );
            self.streams.insert(s.sse_open.clone(), stream);
        }
        Ok(())
    }

    pub(super) async fn sse_expect(&mut self, s: &SseExpect) -> StepResult {
        self.out.graded_message = true;
        let deadline = self.deadline(s.within_ms.as_ref(), 1000)?;
        let expected = self.expected(&s.frame)?;
        let ignore: Vec<Value> = s
            .ignore
            .iter()
            .map(|m| self.expected(m))
            .collect::<Result<_, _>>()?;
        let event = loop {
            let stream = self
                .streams
                .get_mut(&s.sse_expect)
                .ok_or_else(|| Flow::Error(format!("stream {:?} is not open", s.sse_expect)))?;
            match stream.next_until(deadline).await {
                None => return Err(Flow::fail("SSE: no event in time")),
                Some(SseItem::End(why)) => return Err(Flow::fail(format!("SSE: {why}"))),
                Some(SseItem::Event(e)) => {
                    let skip = e
                        .json
                        .as_ref()
                        .is_some_and(|v| ignore.iter().any(|m| self.test(m, v)));
                    if !skip {
                        break e;
                    }
                }
            }
        };
        let Some(frame) = &event.json else {
            return Err(Flow::fail(format!("SSE: data is not JSON: {}", event.data)));
        };
        self.check(&expected, frame)
            .map_err(|m| Flow::mismatch("SSE event data", &m, &expected, &event.data))?;
        if frame["type"].as_str() != Some(event.event.as_str()) {
            return Err(Flow::fail(format!(
                "SSE: event name {:?} differs from the frame type {}",
                event.event, frame["type"]
            )));
        }
        if let Some(m) = &s.id {
            let expected = serde_json::json!({ "id": self.expected(m)? });
            let actual = match &event.id {
                Some(id) => serde_json::json!({ "id": id }),
                None => Value::Object(Map::new()),
            };
            self.check(&expected, &actual).map_err(|mm| {
                Flow::mismatch("SSE event id", &mm, &expected, &actual.to_string())
            })?;
        }
        Ok(())
    }

    pub(super) async fn sse_expect_none(&mut self, s: &SseExpectNone) -> StepResult {
        self.out.graded_message = true;
        let deadline = self.deadline(s.within_ms.as_ref(), 300)?;
        let stream = self
            .streams
            .get_mut(&s.sse_expect_none)
            .ok_or_else(|| Flow::Error(format!("stream {:?} is not open", s.sse_expect_none)))?;
        match stream.next_until(deadline).await {
            None | Some(SseItem::End(_)) => Ok(()),
            Some(SseItem::Event(e)) => Err(Flow::Fail {
                kind: crate::verdict::FailureKind::Message,
                message: "SSE: an event arrived, expected none".into(),
                expected: Some("no event".into()),
                actual: Some(e.data),
            }),
        }
    }
}

fn check_status(want: Option<&CloseCodes>, status: u16, body: &str) -> StepResult {
    let ok = match want {
        Some(w) => w.accepts(status),
        None => (200..300).contains(&status),
    };
    if ok {
        return Ok(());
    }
    let expected = want.map_or("2xx".to_owned(), |w| {
        serde_json::to_string(w).unwrap_or_default()
    });
    Err(Flow::Fail {
        kind: crate::verdict::FailureKind::Message,
        message: format!("unexpected HTTP status {status}"),
        expected: Some(format!("status {expected}")),
        actual: Some(format!("{status} {body}")),
    })
}
