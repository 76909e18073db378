//! Expectation steps on WebSocket connections.

use serde_json::Value;
use tokio::time::Instant;

use super::{CaseRun, Flow, StepResult};
use crate::client::Inbound;
use crate::fixture::{Alive, Expect, ExpectClose, ExpectNone, ExpectSet};
use crate::verdict::FailureKind;

/// How a wait for a frame ended without one.
fn describe_end(ev: &Inbound) -> String {
    match ev {
        Inbound::Close {
            code: Some(c),
            reason,
        } => format!("the server closed the connection with {c} {reason:?}"),
        Inbound::Close { code: None, .. } => {
            "the server closed the connection without a code".into()
        }
        Inbound::Gone(why) => why.clone(),
        Inbound::Binary(b) => format!("a binary frame of {} bytes", b.len()),
        Inbound::Text { text, .. } => format!("a frame that is not JSON: {text}"),
    }
}

impl CaseRun<'_> {
    /// The next JSON frame not matching `ignore`, before `deadline`. A frame matching one of
    /// `wanted` is never ignored: `"ignore": ["$any"]` waits for the expected frame instead of
    /// skipping it too.
    pub(super) async fn next_frame(
        &mut self,
        client: &str,
        deadline: Instant,
        ignore: &[Value],
        wanted: &[Value],
        waited: &str,
    ) -> Result<(Value, String), Flow> {
        loop {
            let ev = self.conn(client)?.next_until(deadline).await;
            let Some(ev) = ev else {
                return Err(Flow::fail(format!("nothing arrived within {waited}")));
            };
            match ev {
                Inbound::Text {
                    text,
                    json: Some(v),
                } => {
                    if self.skippable(&v, ignore, wanted) {
                        continue;
                    }
                    return Ok((v, text));
                }
                other => {
                    if other.is_end() {
                        // Keep the end visible to a later expect_close.
                        self.conn(client)?.unread(vec![other.clone()]);
                    }
                    return Err(Flow::Fail {
                        kind: FailureKind::Message,
                        message: format!("expected a frame, got {}", describe_end(&other)),
                        expected: None,
                        actual: Some(describe_end(&other)),
                    });
                }
            }
        }
    }

    /// Whether a frame matches `ignore` and none of `wanted`.
    pub(super) fn skippable(&self, v: &Value, ignore: &[Value], wanted: &[Value]) -> bool {
        ignore.iter().any(|m| self.test(m, v)) && !wanted.iter().any(|m| self.test(m, v))
    }

    pub(super) fn subst_all(&self, ms: &[Value]) -> Result<Vec<Value>, Flow> {
        ms.iter().map(|m| self.expected(m)).collect()
    }

    pub(super) fn waited(
        &self,
        within: Option<&crate::fixture::NumExpr>,
        default_ms: u64,
    ) -> String {
        let ms = within
            .and_then(|e| self.scope.count(e).ok())
            .unwrap_or(default_ms);
        format!("{ms} ms")
    }

    pub(super) async fn expect(&mut self, s: &Expect) -> StepResult {
        self.out.graded_message = true;
        let deadline = self.deadline(s.within_ms.as_ref(), 1000)?;
        let ignore = self.subst_all(&s.ignore)?;
        let options = match (&s.frame, &s.any_of) {
            (Some(f), _) => vec![self.expected(f)?],
            (None, Some(a)) => self.subst_all(a)?,
            (None, None) => return Err(Flow::Error("expect needs frame or any_of".into())),
        };
        let waited = self.waited(s.within_ms.as_ref(), 1000);
        let (frame, text) = self
            .next_frame(&s.expect, deadline, &ignore, &options, &waited)
            .await
            .map_err(|f| with_expected(f, &options))?;
        let mut first_mismatch = None;
        for option in &options {
            match self.check(option, &frame) {
                Ok(()) => return Ok(()),
                Err(m) => {
                    first_mismatch.get_or_insert(m);
                }
            }
        }
        let m = first_mismatch.unwrap_or_else(|| crate::matcher::Mismatch {
            path: String::new(),
            expected: "one of no alternatives".into(),
            actual: text.clone(),
        });
        let expected = if options.len() == 1 {
            options[0].clone()
        } else {
            Value::Array(options)
        };
        Err(Flow::mismatch("unexpected frame", &m, &expected, &text))
    }

    pub(super) async fn expect_set(&mut self, s: &ExpectSet) -> StepResult {
        self.out.graded_message = true;
        let deadline = self.deadline(s.within_ms.as_ref(), 1000)?;
        let ignore = self.subst_all(&s.ignore)?;
        let wanted = self.subst_all(&s.frames)?;
        let waited = self.waited(s.within_ms.as_ref(), 1000);
        let mut got = Vec::new();
        let mut texts = Vec::new();
        while got.len() < wanted.len() {
            let expected = Value::Array(wanted.clone());
            let (frame, text) = self
                .next_frame(&s.expect_set, deadline, &ignore, &wanted, &waited)
                .await
                .map_err(|f| with_context(f, &expected, &texts, got.len()))?;
            got.push(frame);
            texts.push(text);
        }
        let expected = serde_json::json!({ "$unordered": wanted });
        match self.check(&expected, &Value::Array(got)) {
            Ok(()) => Ok(()),
            Err(m) => Err(Flow::mismatch(
                "the frames do not match the set one to one",
                &m,
                &expected,
                &texts.join("\n"),
            )),
        }
    }

    pub(super) async fn expect_none(&mut self, s: &ExpectNone) -> StepResult {
        self.out.graded_message = true;
        let deadline = self.deadline(s.within_ms.as_ref(), 300)?;
        let matching = s.matching.as_ref().map(|m| self.expected(m)).transpose()?;
        let mut kept = Vec::new();
        let result = loop {
            let Some(ev) = self.conn(&s.expect_none)?.next_until(deadline).await else {
                break Ok(());
            };
            let Some(pattern) = &matching else {
                break Err(Flow::Fail {
                    kind: FailureKind::Message,
                    message: "expected nothing, but something arrived".into(),
                    expected: Some("no frame".into()),
                    actual: Some(shown(&ev)),
                });
            };
            let hit = matches!(&ev, Inbound::Text { json: Some(v), .. } if self.test(pattern, v));
            let end = ev.is_end();
            if hit {
                break Err(Flow::Fail {
                    kind: FailureKind::Message,
                    message: "a frame arrived that must not".into(),
                    expected: Some(format!("no frame matching {pattern}")),
                    actual: Some(shown(&ev)),
                });
            }
            kept.push(ev);
            if end {
                break Ok(());
            }
        };
        self.conn(&s.expect_none)?.unread(kept);
        result
    }

    pub(super) async fn expect_close(&mut self, s: &ExpectClose) -> StepResult {
        self.out.graded_close = true;
        let started = Instant::now();
        let deadline = self.deadline(s.within_ms.as_ref(), 1000)?;
        let not_before = s
            .not_before_ms
            .as_ref()
            .map(|e| self.scope.count(e))
            .transpose()?;
        let ignore = self.subst_all(&s.ignore)?;
        let expected = serde_json::to_string(&s.code).unwrap_or_default();
        let fail = |message: String, actual: String| Flow::Fail {
            kind: FailureKind::Close,
            message,
            expected: Some(format!("close {expected}")),
            actual: Some(actual),
        };
        loop {
            let ev = self.conn(&s.expect_close)?.next_until(deadline).await;
            let elapsed = started.elapsed().as_millis() as u64;
            match ev {
                None => {
                    if let Some(why) = &s.open_is_untestable {
                        return Err(Flow::Untestable(format!(
                            "the connection stayed open: {why}"
                        )));
                    }
                    return Err(fail(
                        "the connection was not closed in time".into(),
                        "still open".into(),
                    ));
                }
                Some(Inbound::Close {
                    code: Some(code),
                    reason,
                }) => {
                    let actual = format!("close {code} {reason:?} after {elapsed} ms");
                    if !s.code.accepts(code) {
                        return Err(fail(format!("wrong close code {code}"), actual));
                    }
                    if let Some(nb) = not_before.filter(|nb| elapsed < *nb) {
                        return Err(fail(
                            format!("closed after {elapsed} ms, before {nb} ms"),
                            actual,
                        ));
                    }
                    return Ok(());
                }
                Some(Inbound::Close { code: None, .. }) => {
                    return Err(fail(
                        "close frame without a status code".into(),
                        "close without code".into(),
                    ))
                }
                Some(Inbound::Gone(why)) => {
                    return Err(fail(
                        "the connection ended without a close frame".into(),
                        why,
                    ))
                }
                Some(Inbound::Text {
                    json: Some(v),
                    text,
                }) => {
                    if self.degraded || ignore.iter().any(|m| self.test(m, &v)) {
                        continue;
                    }
                    return Err(fail("a frame arrived before the close".into(), text));
                }
                Some(other) => {
                    if self.degraded {
                        continue;
                    }
                    return Err(fail(
                        "unexpected input before the close".into(),
                        shown(&other),
                    ));
                }
            }
        }
    }

    pub(super) async fn alive(&mut self, s: &Alive) -> StepResult {
        self.out.graded_message = true;
        self.alive_counter += 1;
        let id = format!("alive-{}", self.alive_counter);
        let deadline = self.deadline(s.within_ms.as_ref(), 1000)?;
        let ping = serde_json::json!({"type": "ping", "id": id});
        let conn = self.conn(&s.alive)?;
        if conn.ended() {
            return Err(Flow::fail("the connection is closed: not alive"));
        }
        let _ = conn.send_text(&ping.to_string()).await;
        let waited = self.waited(s.within_ms.as_ref(), 1000);
        let skip_others = [
            serde_json::json!({"type": {"$ne": "pong"}}),
            serde_json::json!({"id": "$absent"}),
            serde_json::json!({"id": {"$ne": id}}),
        ];
        self.next_frame(&s.alive, deadline, &skip_others, &[], &waited)
            .await
            .map_err(|f| match f {
                Flow::Fail {
                    kind,
                    message,
                    actual,
                    ..
                } => Flow::Fail {
                    kind,
                    message: format!("liveness: no pong for {id}: {message}"),
                    expected: Some(format!("{{\"type\":\"pong\",\"id\":\"{id}\"}}")),
                    actual,
                },
                other => other,
            })?;
        Ok(())
    }
}

fn shown(ev: &Inbound) -> String {
    match ev {
        Inbound::Text { text, .. } => text.clone(),
        other => describe_end(other),
    }
}

fn with_expected(f: Flow, options: &[Value]) -> Flow {
    match f {
        Flow::Fail {
            kind,
            message,
            actual,
            ..
        } => {
            let expected = if options.len() == 1 {
                options[0].to_string()
            } else {
                Value::Array(options.to_vec()).to_string()
            };
            Flow::Fail {
                kind,
                message,
                expected: Some(expected),
                actual,
            }
        }
        other => other,
    }
}

fn with_context(f: Flow, expected: &Value, texts: &[String], n: usize) -> Flow {
    match f {
        Flow::Fail {
            kind,
            message,
            actual,
            ..
        } => Flow::Fail {
            kind,
            message: format!("{message} (after {n} of the set)"),
            expected: Some(expected.to_string()),
            actual: Some(
                texts
                    .iter()
                    .cloned()
                    .chain(actual)
                    .collect::<Vec<_>>()
                    .join("\n"),
            ),
        },
        other => other,
    }
}
