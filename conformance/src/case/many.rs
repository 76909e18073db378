//! Steps that act in bulk: many generated clients (`connect_many`, PRES-31), many copies of
//! one frame (`send_many`, filling a server's outbound queue for LIMIT-8).

use serde_json::Value;

use super::{CaseRun, Flow, StepResult};
use crate::fixture::{ClientSpec, Connect, ConnectMany, Expect, Send, SendMany};

/// Most clients one `connect_many` may generate: beyond that a case would take too long for
/// the suite (and a server's limit that high is untestable here).
pub const MAX_GENERATED_CLIENTS: u64 = 200;

/// Most copies one `send_many` may send.
pub const MAX_SEND_MANY: u64 = 100_000;

impl CaseRun<'_> {
    pub(super) async fn connect_many(&mut self, s: &ConnectMany) -> StepResult {
        let count = self.scope.count(&s.count)?;
        if count > MAX_GENERATED_CLIENTS {
            return Err(Flow::Untestable(format!(
                "needs {count} clients, more than the harness generates \
                 ({MAX_GENERATED_CLIENTS}); run the server with a lower limit"
            )));
        }
        let outer = self.scope.iteration;
        let mut result = Ok(());
        for i in 0..count {
            self.scope.iteration = Some(i);
            result = self.connect_generated(s, i).await;
            if result.is_err() {
                break;
            }
        }
        self.scope.iteration = outer;
        result
    }

    /// Connects generated client number `i`, sends its frames and expects its replies.
    async fn connect_generated(&mut self, s: &ConnectMany, i: u64) -> StepResult {
        let name = format!("{}{i}", s.connect_many);
        let template = serde_json::to_value(s.client.clone().unwrap_or_default())
            .map_err(|e| Flow::Error(e.to_string()))?;
        let spec: ClientSpec = serde_json::from_value(self.scope.value(&template)?)
            .map_err(|e| Flow::Error(format!("client {name}: {e}")))?;
        let urls = &self.runner.config.urls;
        let index = spec
            .server
            .unwrap_or(self.fixture.clients.len() + i as usize);
        let url = urls[index % urls.len().max(1)].clone();
        let token = self.runner.config.tokens.token_for(&name, &spec).await;
        self.add_client(name.clone(), spec, url, token.map_err(|e| e.to_string()));
        let connect = Connect {
            connect: name.clone(),
            expect_welcome: None,
            welcome: None,
            protocols: None,
            expect_protocol: None,
            reject_status: None,
            query: Default::default(),
            headers: Default::default(),
            within_ms: s.within_ms.clone(),
        };
        let name_failure = |f: Flow| named(f, &name);
        self.connect(&connect).await.map_err(name_failure)?;
        for frame in &s.frames {
            let send = Send {
                send: name.clone(),
                frame: frame.clone(),
            };
            self.send(&send).await.map_err(name_failure)?;
        }
        for reply in &s.replies {
            let expect = Expect {
                expect: name.clone(),
                frame: Some(reply.clone()),
                any_of: None,
                ignore: s.ignore.clone(),
                within_ms: Some(
                    s.within_ms
                        .clone()
                        .unwrap_or(crate::fixture::NumExpr::Literal(2000)),
                ),
            };
            self.expect(&expect).await.map_err(name_failure)?;
        }
        Ok(())
    }

    pub(super) async fn send_many(&mut self, s: &SendMany) -> StepResult {
        let count = self.scope.count(&s.count)?;
        if count > MAX_SEND_MANY {
            return Err(Flow::Error(format!(
                "send_many of {count} frames; at most {MAX_SEND_MANY}"
            )));
        }
        let outer = self.scope.iteration;
        let texts = (0..count)
            .map(|i| {
                self.scope.iteration = Some(i);
                self.client_frame(&s.frame)
            })
            .collect::<Result<Vec<String>, Flow>>();
        self.scope.iteration = outer;
        let texts = texts?;
        let degraded = self.degraded;
        let conn = self.conn(&s.send_many)?;
        if conn.ended() {
            conn.note("not sent: the connection has ended");
            return if degraded {
                Ok(())
            } else {
                Err(Flow::fail(format!(
                    "{}'s connection has ended; cannot send",
                    s.send_many
                )))
            };
        }
        // A failed write means the server went away; the next expectation grades that.
        let _ = conn.send_texts(texts).await;
        Ok(())
    }

    /// A `send` frame substituted and checked against the client schema, serialized.
    pub(super) fn client_frame(&self, raw: &Value) -> Result<String, Flow> {
        let frame = self.scope.value(raw)?;
        if let Some(v) = self.runner.client_schema.check(&frame).first() {
            return Err(Flow::Error(format!(
                "the frame is not a valid client message ({v}); use send_raw for bad input"
            )));
        }
        let text = frame.to_string();
        self.within_announced(&frame, &text)?;
        Ok(text)
    }

    /// A valid frame the server's announced limits forbid (a legal server may announce a
    /// `max_json_depth` of 2 or a `max_frame_bytes` of 4096): sending it would grade the
    /// limit, not what the case is about, so the case is untestable on this server.
    fn within_announced(&self, frame: &Value, text: &str) -> Result<(), Flow> {
        let limits = &self.runner.welcome["limits"];
        let depth = json_depth(frame);
        if let Some(max) = limits["max_json_depth"].as_u64().filter(|m| depth > *m) {
            return Err(Flow::Untestable(format!(
                "the case sends a frame nested {depth} levels deep, the server announces \
                 max_json_depth = {max}"
            )));
        }
        if let Some(max) = limits["max_frame_bytes"]
            .as_u64()
            .filter(|m| text.len() as u64 > *m)
        {
            return Err(Flow::Untestable(format!(
                "the case sends a frame of {} bytes, the server announces max_frame_bytes = {max}",
                text.len()
            )));
        }
        match frame["channel"].as_str() {
            Some(name) => self.name_fits(name),
            None => Ok(()),
        }
    }

    /// Channel names carry the run prefix (about 20 characters): a server announcing
    /// shorter names cannot run the case, unless the case is about the name limit.
    pub(super) fn name_fits(&self, name: &str) -> Result<(), Flow> {
        let len = name.chars().count() as u64;
        let Some(max) = self.runner.welcome["limits"]["max_channel_name_len"].as_u64() else {
            return Ok(());
        };
        let grades_names = serde_json::to_string(&self.fixture.steps)
            .is_ok_and(|t| t.contains("\"invalid_channel\""));
        if len > max && !grades_names {
            return Err(Flow::Untestable(format!(
                "the case uses a channel name of {len} characters, the server announces \
                 max_channel_name_len = {max}"
            )));
        }
        Ok(())
    }
}

/// Nesting depth of a JSON value as TRANS-19 counts it (`{}` and `[]` are 1, a scalar 0).
fn json_depth(v: &Value) -> u64 {
    match v {
        Value::Array(a) => 1 + a.iter().map(json_depth).max().unwrap_or(0),
        Value::Object(m) => 1 + m.values().map(json_depth).max().unwrap_or(0),
        _ => 0,
    }
}

/// Names the generated client a failure or error is about.
fn named(f: Flow, name: &str) -> Flow {
    match f {
        Flow::Fail {
            kind,
            message,
            expected,
            actual,
        } => Flow::Fail {
            kind,
            message: format!("client {name}: {message}"),
            expected,
            actual,
        },
        Flow::Error(e) => Flow::Error(format!("client {name}: {e}")),
        other => other,
    }
}
