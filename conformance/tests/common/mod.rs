//! What the property tests share: an in-process reference server with chosen faults and a
//! runner pointed at it.

use chorus_conformance::runner::{RunConfig, Runner};
use chorus_conformance::tokens::TokenSource;
use chorus_server::core::Faults;
use chorus_server::{Config, RunningServer, Server};

/// The token secret of the servers these tests start.
pub const SECRET: &str = "property-tests-secret-of-32-bytes!!";

/// A reference server with `faults` (comma-separated names, "" for none) and a runner for it.
pub async fn start(faults: &str) -> (RunningServer, Runner) {
    let config = Config::for_tests(SECRET, "api-key");
    let faults = Faults::parse(faults).unwrap();
    let server = Server::start_with_faults(config, faults).await.unwrap();
    let runner = Runner::new(RunConfig::new(
        &server.ws_url(),
        TokenSource::Secret(SECRET.into()),
    ))
    .await
    .unwrap();
    (server, runner)
}
