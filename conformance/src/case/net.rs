//! Connection, HTTP and SSE steps.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::{CaseRun, Flow, StepResult};
use crate::client::{ConnectError, Connection};
use crate::fixture::{AuthKeyword, CloseCodes, Connect, HttpAuth, HttpStep};
use crate::http::{self, Request};

/// Most query parameters one `repeat_query` may generate (a URL stays a few KiB long).
pub const MAX_REPEATED_QUERY: u64 = 1000;

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
            .next_frame(name, deadline, &[], &[], "the welcome timeout")
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
            Some(HttpAuth::Keyword(keyword)) => {
                let key = self.runner.config.api_key.clone().ok_or_else(|| {
                    Flow::Untestable("the case needs the HTTP API key: pass --api-key".into())
                })?;
                headers.insert(
                    chorus_protocol::http::API_KEY_HEADER.into(),
                    near_miss(&key, *keyword),
                );
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

    pub(super) fn token_of(&self, client: &str) -> Result<String, Flow> {
        let state = self
            .clients
            .get(client)
            .ok_or_else(|| Flow::Error(format!("unknown client {client:?}")))?;
        state.token.clone().map_err(Flow::Error)
    }

    pub(super) async fn http(&mut self, s: &HttpStep) -> StepResult {
        let Some(n) = &s.concurrent else {
            let req = self.http_request(s)?;
            let resp = self.http_send(&req).await?;
            return self.check_response(s, &resp);
        };
        let n = self.scope.count(n)?;
        let outer = self.scope.iteration;
        let mut requests = Vec::new();
        for i in 0..n {
            self.scope.iteration = Some(i);
            let built = self.http_request(s);
            self.scope.iteration = outer;
            requests.push(built?);
        }
        let sent = futures_util::future::join_all(requests.iter().map(|r| self.http_send(r))).await;
        for (i, resp) in sent.into_iter().enumerate() {
            self.scope.iteration = Some(i as u64);
            let checked = resp.and_then(|resp| self.check_response(s, &resp));
            self.scope.iteration = outer;
            checked?;
        }
        Ok(())
    }

    fn http_request(&self, s: &HttpStep) -> Result<Request, Flow> {
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
            (Some(b), _) => {
                let body = self.scope.value(b)?;
                if let Some(name) = body["channel"].as_str() {
                    self.name_fits(name)?;
                }
                Some(body.to_string())
            }
            (None, Some(raw)) => Some(self.scope.text(raw)?),
            _ => None,
        };
        let mut path = self.scope.text(&r.path)?;
        if let Some(repeat) = &r.repeat_query {
            let count = self.scope.count(&repeat.count)?;
            if count > MAX_REPEATED_QUERY {
                return Err(Flow::Untestable(format!(
                    "needs {count} query parameters, more than the harness generates \
                     ({MAX_REPEATED_QUERY}); run the server with a lower limit"
                )));
            }
            let value = self.scope.text(&repeat.value)?;
            for i in 0..count {
                let sep = if path.contains('?') { '&' } else { '?' };
                path = format!("{path}{sep}{}={value}{i}", repeat.name);
            }
        }
        if let Some((_, query)) = path.split_once('?') {
            // Fixture names need no percent-decoding ([a-z0-9-:] and the run prefix).
            for pair in query.split('&') {
                if let Some(name) = pair.strip_prefix("channel=") {
                    self.name_fits(name)?;
                }
            }
        }
        let req = Request {
            method: r.method.clone(),
            url: format!("{}{}", self.runner.config.http_base(r.server), path),
            headers,
            body,
        };
        Ok(req)
    }

    async fn http_send(&self, req: &Request) -> Result<http::HttpResponse, Flow> {
        let timeout = self
            .wait(None, 2000)?
            .max(std::time::Duration::from_secs(2));
        http::send(&self.runner.http, req, timeout, &self.transcript, "http")
            .await
            .map_err(|e| Flow::fail(format!("HTTP {} {}: {e}", req.method, req.url)))
    }

    fn check_response(&mut self, s: &HttpStep, resp: &http::HttpResponse) -> StepResult {
        self.out.graded_message = true;
        check_status(s.expect_status.as_ref(), resp.status, &resp.body)?;
        if let Some(m) = &s.expect_body {
            let expected = self.expected(m)?;
            self.check(&expected, &resp.json())
                .map_err(|mm| Flow::mismatch("HTTP response body", &mm, &expected, &resp.body))?;
        }
        self.check_headers(&s.expect_headers, &resp.headers, "HTTP response headers")
    }

    /// Matches response headers (by lower-case name; the value is a string).
    pub(super) fn check_headers(
        &mut self,
        want: &BTreeMap<String, Value>,
        headers: &BTreeMap<String, String>,
        what: &str,
    ) -> StepResult {
        if want.is_empty() {
            return Ok(());
        }
        let mut expected = Map::new();
        for (k, v) in want {
            expected.insert(k.to_lowercase(), self.expected(v)?);
        }
        let expected = Value::Object(expected);
        let actual: Map<String, Value> = headers
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect();
        let actual = Value::Object(actual);
        self.check(&expected, &actual)
            .map_err(|mm| Flow::mismatch(what, &mm, &expected, &actual.to_string()))
    }
}

pub(super) fn check_status(want: Option<&CloseCodes>, status: u16, body: &str) -> StepResult {
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

/// The API key a keyword sends: the key itself or a near miss of it (SEC-14).
fn near_miss(key: &str, keyword: AuthKeyword) -> String {
    let mut chars: Vec<char> = key.chars().collect();
    match keyword {
        AuthKeyword::ApiKeyPrefix => {
            chars.pop();
        }
        AuthKeyword::ApiKeyExtended => chars.push('x'),
        AuthKeyword::ApiKeyLastChanged => {
            if let Some(last) = chars.last_mut() {
                *last = if *last == 'x' { 'y' } else { 'x' };
            }
        }
        AuthKeyword::ApiKey | AuthKeyword::None => {}
    }
    chars.into_iter().collect()
}
