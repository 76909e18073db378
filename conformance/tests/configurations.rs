//! The whole suite against the reference server in the configurations people run and in
//! the ones the spec allows at its edges: every case passes, or is skipped or untestable
//! with a reason. (tests/reference.rs grades the in-memory configuration with short timers.)

use std::path::PathBuf;

use chorus_conformance::runner::{RunConfig, Runner};
use chorus_conformance::suite::Suite;
use chorus_conformance::tokens::TokenSource;
use chorus_conformance::verdict::{CaseResult, Verdict};
use chorus_server::Config;

const SECRET: &str = "configurations-test-secret-0123456789abcdef";
const KEY: &str = "configurations-test-key";

/// Every fixture against a server started with `config`.
async fn grade(config: Config) -> Vec<CaseResult> {
    let server = chorus_server::Server::start(config).await.unwrap();
    let mut rc = RunConfig::new(&server.ws_url(), TokenSource::Secret(SECRET.into()));
    rc.http_url = server.http_url();
    rc.api_key = Some(KEY.into());
    rc.seed = 11;
    let runner = Runner::new(rc).await.unwrap();
    let fixtures = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fixtures");
    let suite = Suite::embedded()
        .and_then(|s| s.with_fixture_dir(&fixtures))
        .unwrap();
    let cases = runner.run_all(&suite.select(&[], &[]), |_| {}).await;
    let _ = server.shutdown().await;
    cases
}

/// The cases that neither passed nor were set aside with a reason.
fn unfair(cases: &[CaseResult]) -> Vec<String> {
    cases
        .iter()
        .filter(|c| match c.verdict {
            Verdict::Pass => false,
            Verdict::Skipped | Verdict::Untestable => c.reason.as_deref().unwrap_or("").is_empty(),
            _ => true,
        })
        .map(|c| {
            let why = c
                .failures
                .first()
                .map(|f| format!("step {}: {}", f.step, f.message))
                .or_else(|| c.schema_violations.first().map(|v| v.violation.to_string()))
                .or_else(|| c.reason.clone())
                .unwrap_or_default();
            format!("{} ({}): {why}", c.id, c.verdict.as_str())
        })
        .collect()
}

/// `chorus serve`'s defaults: a data directory, `--durability full` (group commit), the
/// default timers (cases needing long waits are untestable, with the reason).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_on_disk_configuration_passes() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::for_tests(SECRET, KEY);
    config.memory = false;
    config.data_dir = dir.path().join("data");
    let cases = grade(config).await;
    let bad = unfair(&cases);
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}
