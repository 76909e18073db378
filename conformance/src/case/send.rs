//! Sending steps: protocol frames and deliberately bad input.

use base64::Engine as _;
use serde_json::Value;

use super::{CaseRun, Flow, StepResult};
use crate::fixture::{Send, SendBinary, SendBytesAsText, SendDeep, SendOversize, SendRaw};

/// Marker replaced by the padding or nesting in serialized frames.
const MARK: &str = "CHORUSMARK7f3e9a";

impl CaseRun<'_> {
    async fn write_text(&mut self, client: &str, text: &str) -> StepResult {
        let degraded = self.degraded;
        let conn = self.conn(client)?;
        if conn.ended() {
            conn.note("not sent: the connection has ended");
            return if degraded {
                Ok(())
            } else {
                Err(Flow::fail(format!(
                    "{client}'s connection has ended; cannot send"
                )))
            };
        }
        // A failed write means the server went away; the next expectation grades that.
        let _ = conn.send_text(text).await;
        Ok(())
    }

    pub(super) async fn send(&mut self, s: &Send) -> StepResult {
        let text = self.client_frame(&s.frame)?;
        self.write_text(&s.send, &text).await
    }

    pub(super) async fn send_raw(&mut self, s: &SendRaw) -> StepResult {
        let text = match (&s.text, &s.json) {
            (Some(t), _) => self.scope.text(t)?,
            (None, Some(j)) => {
                let frame = self.scope.value(j)?;
                if let Some(name) = frame["channel"].as_str() {
                    self.name_fits(name)?;
                }
                frame.to_string()
            }
            (None, None) => return Err(Flow::Error("send_raw needs text or json".into())),
        };
        self.write_text(&s.send_raw, &text).await
    }

    pub(super) async fn send_binary(&mut self, s: &SendBinary) -> StepResult {
        let bytes = match (&s.base64, &s.hex) {
            (Some(b), _) => base64::engine::general_purpose::STANDARD
                .decode(b)
                .map_err(|e| Flow::Error(format!("bad base64: {e}")))?,
            (None, Some(h)) => decode_hex(h).map_err(Flow::Error)?,
            (None, None) => return Err(Flow::Error("send_binary needs base64 or hex".into())),
        };
        let _ = self.conn(&s.send_binary)?.send_binary(bytes).await;
        Ok(())
    }

    pub(super) async fn send_bytes_as_text(&mut self, s: &SendBytesAsText) -> StepResult {
        let bytes = decode_hex(&s.hex).map_err(Flow::Error)?;
        let _ = self
            .conn(&s.send_bytes_as_text)?
            .send_text_bytes(bytes)
            .await;
        Ok(())
    }

    pub(super) async fn send_oversize(&mut self, s: &SendOversize) -> StepResult {
        let size = self.scope.count(&s.bytes)? as usize;
        let template = s.frame.clone().unwrap_or_else(|| {
            serde_json::json!({"type": "broadcast", "channel": "pad-{run}", "event": "pad", "data": "$pad"})
        });
        let text = self.filled(&template, "$pad")?;
        // The marker's quotes stay: the padding is the string's content.
        let base = text.len() - MARK.len();
        let pad = size.checked_sub(base).ok_or_else(|| {
            Flow::Error(format!(
                "the frame is already {base} bytes, more than {size}"
            ))
        })?;
        let text = text.replacen(MARK, &"x".repeat(pad), 1);
        self.write_text(&s.send_oversize, &text).await
    }

    pub(super) async fn send_deep(&mut self, s: &SendDeep) -> StepResult {
        let depth = self.scope.count(&s.depth)? as usize;
        let template = s.frame.clone().unwrap_or_else(|| {
            serde_json::json!({"type": "broadcast", "channel": "deep-{run}", "event": "deep", "data": "$nest"})
        });
        let substituted = self.scope.value(&template)?;
        let enclosing = containers_above(&substituted, "$nest")
            .ok_or_else(|| Flow::Error("the frame has no \"$nest\" placeholder".into()))?;
        let nest = depth
            .checked_sub(enclosing)
            .filter(|n| *n >= 1)
            .ok_or_else(|| {
                Flow::Error(format!(
                    "depth {depth} is not above the frame's own depth {enclosing}"
                ))
            })?;
        let text = self.filled(&template, "$nest")?;
        let nested = format!("{}{}", "[".repeat(nest), "]".repeat(nest));
        let text = text.replacen(&format!("\"{MARK}\""), &nested, 1);
        self.write_text(&s.send_deep, &text).await
    }

    /// Substitutes the template and serializes it with `placeholder` replaced by [`MARK`].
    fn filled(&self, template: &Value, placeholder: &str) -> Result<String, Flow> {
        let v = self.scope.value(template)?;
        let marked = replace_string(&v, placeholder, MARK);
        Ok(marked.to_string())
    }
}

fn replace_string(v: &Value, from: &str, to: &str) -> Value {
    match v {
        Value::String(s) if s == from => Value::String(to.to_owned()),
        Value::Array(a) => Value::Array(a.iter().map(|x| replace_string(x, from, to)).collect()),
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, x)| (k.clone(), replace_string(x, from, to)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// How many objects/arrays enclose the string `marker` (the root counts).
fn containers_above(v: &Value, marker: &str) -> Option<usize> {
    match v {
        Value::String(s) if s == marker => Some(0),
        Value::Array(a) => a
            .iter()
            .find_map(|x| containers_above(x, marker))
            .map(|d| d + 1),
        Value::Object(m) => m
            .values()
            .find_map(|x| containers_above(x, marker))
            .map(|d| d + 1),
        _ => None,
    }
}

/// Decodes hex (whitespace allowed).
pub fn decode_hex(h: &str) -> Result<Vec<u8>, String> {
    let clean: String = h.chars().filter(|c| !c.is_whitespace()).collect();
    if !clean.len().is_multiple_of(2) {
        return Err(format!("odd-length hex {h:?}"));
    }
    (0..clean.len())
        .step_by(2)
        .map(|i| {
            u8::from_str_radix(&clean[i..i + 2], 16).map_err(|e| format!("bad hex {h:?}: {e}"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn nest_depth_counts_enclosing_containers() {
        let v = json!({"type": "broadcast", "data": "$nest"});
        assert_eq!(containers_above(&v, "$nest"), Some(1));
        let total = format!("{{\"data\":{}{}}}", "[".repeat(3), "]".repeat(3));
        let parsed: Value = serde_json::from_str(&total).unwrap();
        assert_eq!(chorus_protocol::json_depth(&parsed), 4);
    }

    #[test]
    fn hex_decodes() {
        assert_eq!(decode_hex("c3 28").unwrap(), vec![0xc3, 0x28]);
        assert!(decode_hex("c").is_err());
    }
}
