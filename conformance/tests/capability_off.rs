//! The cases that grade a server without some capability (`unless_announced`) run against
//! the reference server configured without that capability, and pass. The reference server
//! can switch off only `http_api` (it is announced only with an API key); the other
//! conditions are skipped here, with the reason in the report.

use std::path::PathBuf;

use chorus_conformance::fixture;
use chorus_conformance::runner::{RunConfig, Runner};
use chorus_conformance::suite::Suite;
use chorus_conformance::tokens::TokenSource;
use chorus_conformance::verdict::Verdict;

const SECRET: &str = "capability-off-test-secret-0123456789abcdef";

#[tokio::test]
async fn unannounced_cases_pass_against_a_server_without_the_capability() {
    let mut config = chorus_server::Config::for_tests(SECRET, "unused");
    config.api_key = None;
    let server = chorus_server::Server::start(config).await.unwrap();
    let rc = RunConfig::new(&server.ws_url(), TokenSource::Secret(SECRET.into()));
    let runner = Runner::new(rc).await.unwrap();
    assert!(
        !runner.capabilities().iter().any(|c| c == "http_api"),
        "a server without an API key must not announce http_api"
    );
    let fixtures = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fixtures");
    let suite = Suite::embedded()
        .and_then(|s| s.with_fixture_dir(&fixtures))
        .unwrap();
    let conditional: Vec<_> = suite
        .fixtures
        .iter()
        .filter(|lf| !fixture::unless_announced(&lf.fixture).is_empty())
        .cloned()
        .collect();
    let results = runner.run_all(&conditional, |_| {}).await;
    let _ = server.shutdown().await;
    let mut ran = Vec::new();
    for r in &results {
        match r.verdict {
            Verdict::Pass => ran.push(r.id.as_str()),
            Verdict::Skipped => {
                let why = r.reason.as_deref().unwrap_or_default();
                assert!(why.contains("capability announced"), "{}: {why}", r.id);
            }
            other => panic!("{} is {other:?}: {:#?}", r.id, r.failures),
        }
    }
    assert!(
        ran.contains(&"http.unannounced.api-not-found"),
        "the http_api case did not run: {ran:?}"
    );
}
