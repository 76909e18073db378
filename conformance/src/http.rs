//! HTTP requests of the harness (resource API, server broadcast, publish, stats), recorded
//! in the transcript.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::Value;

use crate::transcript::{EventKind, Transcript};

/// A response as the steps see it.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpResponse {
    /// Status code.
    pub status: u16,
    /// Headers by lower-case name (the last value of repeated headers).
    pub headers: BTreeMap<String, String>,
    /// The body text.
    pub body: String,
}

impl HttpResponse {
    /// The body as JSON, or as a JSON string when it is not JSON.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|_| Value::String(self.body.clone()))
    }
}

/// A request, ready to send (placeholders substituted).
#[derive(Debug, Clone, Default)]
pub struct Request {
    /// Method.
    pub method: String,
    /// Full URL.
    pub url: String,
    /// Headers.
    pub headers: BTreeMap<String, String>,
    /// Body text (JSON).
    pub body: Option<String>,
}

/// Derives the HTTP base from a WebSocket URL: scheme ws->http, wss->https, path dropped.
pub fn http_base(ws_url: &str) -> String {
    let (scheme, rest) = ws_url.split_once("://").unwrap_or(("ws", ws_url));
    let scheme = if scheme == "wss" { "https" } else { "http" };
    let host = rest.split(['/', '?']).next().unwrap_or(rest);
    format!("{scheme}://{host}")
}

/// Sends a request; the exchange is recorded under `who`.
pub async fn send(
    client: &reqwest::Client,
    req: &Request,
    timeout: Duration,
    transcript: &Transcript,
    who: &str,
) -> Result<HttpResponse, String> {
    let method = reqwest::Method::from_bytes(req.method.to_uppercase().as_bytes())
        .map_err(|e| format!("bad method {:?}: {e}", req.method))?;
    let mut builder = client.request(method, &req.url).timeout(timeout);
    for (k, v) in &req.headers {
        builder = builder.header(k, v);
    }
    if let Some(body) = &req.body {
        builder = builder
            .header("content-type", "application/json")
            .body(body.clone());
    }
    let shown_body = crate::client::shown_text(req.body.as_deref().unwrap_or(""));
    transcript.push(
        who,
        EventKind::Http,
        format!("{} {} {shown_body}", req.method, req.url),
    );
    let resp = builder.send().await.map_err(|e| {
        let text = format!("request failed: {e}");
        transcript.push(who, EventKind::Note, text.clone());
        text
    })?;
    let status = resp.status().as_u16();
    let headers = resp
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_owned(),
                v.to_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    let body = resp
        .text()
        .await
        .map_err(|e| format!("reading the body: {e}"))?;
    transcript.push(
        who,
        EventKind::Http,
        format!("HTTP {status} {}", crate::client::shown_text(&body)),
    );
    Ok(HttpResponse {
        status,
        headers,
        body,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derives_http_base_from_ws_url() {
        assert_eq!(http_base("ws://127.0.0.1:9000/ws"), "http://127.0.0.1:9000");
        assert_eq!(
            http_base("wss://chat.example/ws?x=1"),
            "https://chat.example"
        );
    }
}
