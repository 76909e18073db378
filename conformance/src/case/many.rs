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
        Ok(frame.to_string())
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
