//! SSE steps: open a stream, expect its events, comments and end, pause reading it.

use std::collections::BTreeMap;

use serde_json::{Map, Value};
use tokio::time::Instant;

use super::net::check_status;
use super::{CaseRun, Flow, StepResult};
use crate::client;
use crate::fixture::{
    CloseCodes, SseExpect, SseExpectComment, SseExpectEnd, SseExpectNone, SseOpen, TokenPlacement,
};
use crate::sse::{SseEvent, SseItem, SseStream};
use crate::transcript::EventKind;
use crate::verdict::FailureKind;

impl CaseRun<'_> {
    pub(super) async fn sse_open(&mut self, s: &SseOpen) -> StepResult {
        let mut query: BTreeMap<String, String> = BTreeMap::new();
        let mut url = format!("{}/sse", self.runner.config.http_url);
        for c in &s.channels {
            let name = match self.scope.value(c)? {
                Value::String(name) => name,
                other => return Err(Flow::Error(format!("a channel must be a string: {other}"))),
            };
            self.name_fits(&name)?;
            url = client::url_with_query(&url, &BTreeMap::from([("channel".to_owned(), name)]));
        }
        let token = s.client.as_deref().map(|c| self.token_of(c)).transpose()?;
        if let (Some(t), TokenPlacement::Query) = (&token, s.auth) {
            query.insert("token".into(), t.clone());
        }
        for (k, v) in &s.query {
            query.insert(k.clone(), self.scope.text(v)?);
        }
        let url = client::url_with_query(&url, &query);
        let mut req = self.runner.http.get(&url);
        for (k, v) in &self.runner.config.headers {
            req = req.header(k, v);
        }
        if let (Some(t), TokenPlacement::Bearer) = (&token, s.auth) {
            req = req.header("authorization", format!("Bearer {t}"));
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
        let headers: BTreeMap<String, String> = resp
            .headers()
            .iter()
            .map(|(k, v)| {
                let v = v.to_str().unwrap_or_default().to_owned();
                (k.as_str().to_owned(), v)
            })
            .collect();
        self.transcript
            .push(&s.sse_open, EventKind::Http, format!("HTTP {status}"));
        self.out.graded_message = true;
        let want = s.expect_status.clone().unwrap_or(CloseCodes::One(200));
        if !want.accepts(status) {
            // An unexpected 200 is a live event stream: read what arrives in time, no more.
            let body = match tokio::time::timeout(timeout, resp.text()).await {
                Ok(body) => body.unwrap_or_default(),
                Err(_) => "(a body still streaming when the step timed out)".to_owned(),
            };
            return check_status(Some(&want), status, &body);
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
        self.check_headers(&s.expect_headers, &headers, "SSE response headers")
    }

    fn stream(&mut self, name: &str) -> Result<&mut SseStream, Flow> {
        self.streams
            .get_mut(name)
            .ok_or_else(|| Flow::Error(format!("stream {name:?} is not open")))
    }

    pub(super) fn sse_pause(&mut self, name: &str, paused: bool) -> StepResult {
        self.stream(name)?.set_paused(paused);
        let shown = if paused {
            "[the harness stops reading]"
        } else {
            "[the harness reads again]"
        };
        self.transcript.push(name, EventKind::Note, shown);
        Ok(())
    }

    pub(super) async fn sse_expect(&mut self, s: &SseExpect) -> StepResult {
        self.out.graded_message = true;
        let deadline = self.deadline(s.within_ms.as_ref(), 1000)?;
        let expected = self.expected(&s.frame)?;
        let ignore = self.subst_all(&s.ignore)?;
        let wanted = [expected.clone()];
        let event = loop {
            match self.stream(&s.sse_expect)?.next_until(deadline).await {
                None => return Err(Flow::fail("SSE: no event in time")),
                Some(SseItem::End(why)) => return Err(Flow::fail(format!("SSE: {why}"))),
                Some(SseItem::Comment(_)) => {}
                Some(SseItem::Event(e)) => {
                    let skip = e
                        .json
                        .as_ref()
                        .is_some_and(|v| self.skippable(v, &ignore, &wanted));
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
        loop {
            match self.stream(&s.sse_expect_none)?.next_until(deadline).await {
                None | Some(SseItem::End(_)) => return Ok(()),
                // Comments are not events (keep-alives may come at any time).
                Some(SseItem::Comment(_)) => {}
                Some(SseItem::Event(e)) => {
                    return Err(Flow::Fail {
                        kind: FailureKind::Message,
                        message: "SSE: an event arrived, expected none".into(),
                        expected: Some("no event".into()),
                        actual: Some(e.data),
                    })
                }
            }
        }
    }

    /// An event arrived while waiting for something else: skipped when it matches `ignore`.
    fn stray_event(&self, e: &SseEvent, ignore: &[Value], waiting_for: &str) -> StepResult {
        if e.json
            .as_ref()
            .is_some_and(|v| self.skippable(v, ignore, &[]))
        {
            return Ok(());
        }
        Err(Flow::Fail {
            kind: FailureKind::Message,
            message: format!("SSE: an event arrived before {waiting_for}"),
            expected: Some(waiting_for.to_owned()),
            actual: Some(e.data.clone()),
        })
    }

    pub(super) async fn sse_expect_comment(&mut self, s: &SseExpectComment) -> StepResult {
        self.out.graded_message = true;
        let deadline = self.deadline(s.within_ms.as_ref(), 1000)?;
        let ignore = self.subst_all(&s.ignore)?;
        let pattern = s.text.as_ref().map(|m| self.expected(m)).transpose()?;
        let waited = self.waited(s.within_ms.as_ref(), 1000);
        loop {
            let item = self
                .stream(&s.sse_expect_comment)?
                .next_until(deadline)
                .await;
            match item {
                None => return Err(Flow::fail(format!("SSE: no comment line within {waited}"))),
                Some(SseItem::End(why)) => {
                    return Err(Flow::fail(format!("SSE: {why} before a comment line")))
                }
                Some(SseItem::Event(e)) => self.stray_event(&e, &ignore, "a comment line")?,
                Some(SseItem::Comment(text)) => {
                    let Some(p) = &pattern else {
                        return Ok(());
                    };
                    let actual = Value::String(text.clone());
                    return self
                        .check(p, &actual)
                        .map_err(|m| Flow::mismatch("SSE comment", &m, p, &format!(":{text}")));
                }
            }
        }
    }

    pub(super) async fn sse_expect_end(&mut self, s: &SseExpectEnd) -> StepResult {
        self.out.graded_message = true;
        let deadline = self.deadline(s.within_ms.as_ref(), 1000)?;
        let ignore = self.subst_all(&s.ignore)?;
        let waited = self.waited(s.within_ms.as_ref(), 1000);
        let started = Instant::now();
        loop {
            match self.stream(&s.sse_expect_end)?.next_until(deadline).await {
                None => {
                    return Err(Flow::fail(format!(
                        "SSE: the stream did not end within {waited}"
                    )))
                }
                Some(SseItem::End(why)) => {
                    let ms = started.elapsed().as_millis();
                    self.transcript.push(
                        &s.sse_expect_end,
                        EventKind::Note,
                        format!("ended after {ms} ms: {why}"),
                    );
                    return Ok(());
                }
                Some(SseItem::Comment(_)) => {}
                Some(SseItem::Event(e)) => {
                    self.stray_event(&e, &ignore, "the end of the stream")?
                }
            }
        }
    }
}
