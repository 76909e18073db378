//! Static pages served next to the protocol endpoints, for `chorus serve --demo`: the
//! embedding program hands in the files (path, content type, bytes); the server only serves
//! them with `GET`. Without pages no route is added.

use std::sync::Arc;

use axum::http::header;
use axum::routing::get;
use axum::Router;

use super::hub::Shared;

/// One static file.
#[derive(Debug, Clone, Copy)]
pub struct Page {
    /// Request path, e.g. `/` or `/demo.js`.
    pub path: &'static str,
    /// `Content-Type` of the response.
    pub content_type: &'static str,
    /// The body.
    pub body: &'static [u8],
}

/// A `GET` route for each page.
pub fn routes(pages: &[Page]) -> Router<Arc<Shared>> {
    pages.iter().fold(Router::new(), |router, page| {
        let page = *page;
        router.route(
            page.path,
            get(move || async move {
                (
                    [
                        (header::CONTENT_TYPE, page.content_type),
                        (header::CACHE_CONTROL, "no-cache"),
                    ],
                    page.body,
                )
            }),
        )
    })
}
