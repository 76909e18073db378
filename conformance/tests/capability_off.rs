//! The cases that grade a server without some capability (`unless_announced`) run against
//! the reference server configured without that capability (`disable_capabilities`), and
//! pass: none of them is left skipped. Without an API key the server does not announce
//! `http_api` either.

use std::collections::BTreeSet;
use std::path::PathBuf;

use chorus_conformance::fixture;
use chorus_conformance::runner::{RunConfig, Runner};
use chorus_conformance::suite::{LoadedFixture, Suite};
use chorus_conformance::tokens::TokenSource;
use chorus_conformance::verdict::Verdict;

const SECRET: &str = "capability-off-test-secret-0123456789abcdef";

async fn runner_for(config: chorus_server::Config) -> (chorus_server::RunningServer, Runner) {
    let server = chorus_server::Server::start(config).await.unwrap();
    let rc = RunConfig::new(&server.ws_url(), TokenSource::Secret(SECRET.into()));
    let rc = RunConfig {
        http_url: server.http_url(),
        api_key: Some("key".into()),
        ..rc
    };
    let runner = Runner::new(rc).await.unwrap();
    (server, runner)
}

fn conditional_cases() -> Vec<LoadedFixture> {
    let fixtures = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fixtures");
    let suite = Suite::embedded()
        .and_then(|s| s.with_fixture_dir(&fixtures))
        .unwrap();
    suite
        .fixtures
        .into_iter()
        .filter(|lf| !fixture::unless_announced(&lf.fixture).is_empty())
        .collect()
}

#[tokio::test]
async fn unannounced_cases_pass_against_a_server_without_the_capability() {
    let cases = conditional_cases();
    let capabilities: BTreeSet<String> = cases
        .iter()
        .flat_map(|lf| fixture::unless_announced(&lf.fixture))
        .map(|c| c.as_str().to_owned())
        .collect();
    assert!(capabilities.len() >= 10, "{capabilities:?}");
    let mut passed = 0;
    for capability in &capabilities {
        let mut config = chorus_server::Config::for_tests(SECRET, "key");
        config.disable_capabilities = vec![capability.clone()];
        let (server, runner) = runner_for(config).await;
        assert!(
            !runner.capabilities().iter().any(|c| c == capability),
            "{capability} still announced"
        );
        let mine: Vec<LoadedFixture> = cases
            .iter()
            .filter(|lf| {
                let off = fixture::unless_announced(&lf.fixture);
                off.iter().any(|c| c.as_str() == capability)
            })
            .cloned()
            .collect();
        for r in runner.run_all(&mine, |_| {}).await {
            assert_eq!(
                r.verdict,
                Verdict::Pass,
                "{} without {capability}: {:?} {:#?}",
                r.id,
                r.reason,
                r.failures
            );
            passed += 1;
        }
        let _ = server.shutdown().await;
    }
    assert!(passed >= capabilities.len(), "{passed} cases ran");
}

#[tokio::test]
async fn without_an_api_key_http_api_is_not_announced() {
    let mut config = chorus_server::Config::for_tests(SECRET, "unused");
    config.api_key = None;
    let (server, runner) = runner_for(config).await;
    assert!(!runner.capabilities().iter().any(|c| c == "http_api"));
    let _ = server.shutdown().await;
}
