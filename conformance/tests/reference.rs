//! The whole fixture suite against the reference server started in-process (as
//! `chorus conform` without `--url` does), once; each test reads the one report.

use std::path::PathBuf;
use std::sync::OnceLock;

use chorus_conformance::report::{self, RunInfo};
use chorus_conformance::runner::{RunConfig, Runner};
use chorus_conformance::suite::Suite;
use chorus_conformance::tokens::TokenSource;
use chorus_conformance::verdict::{Report, RunSettings, Target, Verdict};

const SECRET: &str = "reference-test-secret-0123456789abcdef";
const KEY: &str = "reference-test-key";

fn suite() -> Suite {
    let fixtures = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fixtures");
    Suite::embedded()
        .and_then(|s| s.with_fixture_dir(&fixtures))
        .unwrap_or_else(|e| panic!("{e}"))
}

async fn run(urls_per_server: usize) -> Report {
    let mut config = chorus_server::Config::for_tests(SECRET, KEY);
    config.heartbeat_interval_ms = 1000;
    config.heartbeat_timeout_ms = 2000;
    config.presence_grace_ms = 1000;
    // Small enough for connect_many to fill a presence channel (PRES-31, PRES-32).
    config.max_presence_members = 16;
    let server = chorus_server::Server::start(config).await.unwrap();
    let mut rc = RunConfig::new(&server.ws_url(), TokenSource::Secret(SECRET.into()));
    rc.urls = vec![server.ws_url(); urls_per_server];
    rc.api_key = Some(KEY.into());
    rc.seed = 7;
    let runner = Runner::new(rc).await.unwrap();
    let suite = suite();
    let selected = suite.select(&[], &[]);
    let cases = runner.run_all(&selected, |_| {}).await;
    let info = RunInfo {
        target: Target::default(),
        settings: RunSettings::default(),
        started_at: 0,
        duration_ms: 0,
        suite: &suite,
        baseline: None,
        fail_on_should: false,
    };
    let report = report::assemble(info, cases);
    let _ = server.shutdown().await;
    report
}

/// The suite run once over two URLs of the same server (the cluster path).
fn report() -> &'static Report {
    static REPORT: OnceLock<Report> = OnceLock::new();
    REPORT.get_or_init(|| {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(run(2))
    })
}

fn listing(report: &Report, pick: impl Fn(Verdict) -> bool) -> Vec<String> {
    report
        .cases
        .iter()
        .filter(|c| pick(c.verdict))
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

#[test]
fn every_fixture_runs_without_harness_error() {
    let errors = listing(report(), |v| v == Verdict::Error);
    assert!(errors.is_empty(), "{}", errors.join("\n"));
}

#[test]
fn nothing_is_untestable_with_short_server_timers() {
    let untestable = listing(report(), |v| v == Verdict::Untestable);
    assert!(untestable.is_empty(), "{}", untestable.join("\n"));
}

#[test]
fn json_report_validates_against_its_schema() {
    let schema = chorus_conformance::verdict::schema();
    let validator = jsonschema::validator_for(&schema).unwrap();
    let value: serde_json::Value = serde_json::from_str(&report::json::render(report())).unwrap();
    let errors: Vec<String> = validator
        .iter_errors(&value)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .take(5)
        .collect();
    assert!(errors.is_empty(), "{}", errors.join("\n"));
}

#[test]
fn reference_server_passes_every_case() {
    let failed = listing(report(), |v| matches!(v, Verdict::Fail | Verdict::Warn));
    assert!(failed.is_empty(), "{}", failed.join("\n"));
}
