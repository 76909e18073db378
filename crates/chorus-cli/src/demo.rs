//! The files of the collaborative demo page (`chorus serve --demo`), built from
//! clients/typescript/demo with esbuild and committed (npm test checks the build is current).

use chorus_server::net::Page;

/// The demo's pages, embedded in the binary.
pub fn pages() -> Vec<Page> {
    vec![
        Page {
            path: "/",
            content_type: "text/html; charset=utf-8",
            body: include_bytes!("../../../clients/typescript/demo/dist/index.html"),
        },
        Page {
            path: "/demo.js",
            content_type: "text/javascript; charset=utf-8",
            body: include_bytes!("../../../clients/typescript/demo/dist/demo.js"),
        },
        Page {
            path: "/demo.css",
            content_type: "text/css; charset=utf-8",
            body: include_bytes!("../../../clients/typescript/demo/dist/demo.css"),
        },
    ]
}
