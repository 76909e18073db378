//! The network shell: one axum router on one port serving the WebSocket endpoint, the HTTP
//! API and the SSE stream (HTTP-1), plus the timer that drives the core's deadlines.

use std::sync::Arc;
use std::time::Duration;

use axum::http::{header, HeaderMap};
use axum::routing::get;
use axum::Router;
use tokio::sync::watch;

use crate::config::Config;

pub mod admission;
pub mod http;
pub mod hub;
pub mod lean_io;
pub mod outbound;
pub mod pages;
pub mod passwords;
pub mod resume;
pub mod rewrite;
pub mod sse;
pub mod ws;

pub use hub::{now_ms, Shared};
pub use pages::Page;

/// The router of every endpoint, plus the static `pages` (none unless `--demo`).
pub fn router(shared: Arc<Shared>, pages: &[pages::Page]) -> Router {
    Router::new()
        .route(&shared.config.path, get(ws::upgrade))
        .route("/sse", get(sse::stream))
        .merge(http::routes())
        .merge(pages::routes(pages))
        .fallback(http::not_found)
        .layer(axum::middleware::map_response(http::method_not_allowed))
        .with_state(shared)
}

/// Calls the core's `tick` at its deadlines until `stop` flips.
pub async fn run_timer(shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    loop {
        let next = shared.tick();
        let wait = next
            .map(|at| Duration::from_millis(at.saturating_sub(now_ms()).max(1)))
            .unwrap_or(Duration::from_secs(3600));
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shared.timer.notified() => {}
            _ = stop.changed() => return,
        }
    }
}

/// SEC-9: with configured origins, a present `Origin` must be one of them.
pub fn origin_allowed(config: &Config, headers: &HeaderMap) -> bool {
    if config.allowed_origins.is_empty() {
        return true;
    }
    match headers.get(header::ORIGIN).map(|o| o.to_str()) {
        None => true,
        Some(Ok(origin)) => config.allowed_origins.iter().any(|o| o == origin),
        Some(Err(_)) => false,
    }
}

/// Every value of query parameter `name`, percent-decoded, in order.
pub fn query_params(query: Option<&str>, name: &str) -> Vec<String> {
    form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .filter(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
        .collect()
}

/// The first value of query parameter `name`.
pub fn query_param(query: Option<&str>, name: &str) -> Option<String> {
    query_params(query, name).into_iter().next()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_params_are_decoded_and_repeatable() {
        let q = Some("channel=a&channel=resource%3Apost&token=t");
        assert_eq!(query_params(q, "channel"), ["a", "resource:post"]);
        assert_eq!(query_param(q, "token").as_deref(), Some("t"));
        assert_eq!(query_param(None, "token"), None);
    }

    #[test]
    fn origins_are_checked_only_when_configured() {
        let mut config = Config::default();
        let mut headers = HeaderMap::new();
        headers.insert(header::ORIGIN, "https://evil.example".parse().unwrap());
        assert!(origin_allowed(&config, &headers));
        config.allowed_origins = vec!["https://app.example".into()];
        assert!(!origin_allowed(&config, &headers));
        headers.insert(header::ORIGIN, "https://app.example".parse().unwrap());
        assert!(origin_allowed(&config, &headers));
    }
}
