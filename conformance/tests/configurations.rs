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
                .map(|f| {
                    format!(
                        "step {}: {} [{}]",
                        f.step,
                        f.message,
                        f.actual
                            .as_deref()
                            .unwrap_or("")
                            .chars()
                            .take(160)
                            .collect::<String>()
                    )
                })
                .or_else(|| c.schema_violations.first().map(|v| v.violation.to_string()))
                .or_else(|| c.reason.clone())
                .unwrap_or_default();
            format!("{} ({}): {why}", c.id, c.verdict.as_str())
        })
        .collect()
}

/// Prints the untestable cases with their reasons (for the CI log) and checks that most
/// cases were graded: a configuration that made everything untestable would prove nothing.
fn enough_passed(cases: &[CaseResult]) {
    for c in cases.iter().filter(|c| c.verdict == Verdict::Untestable) {
        eprintln!("untestable {}: {}", c.id, c.reason.as_deref().unwrap_or(""));
    }
    let passed = cases.iter().filter(|c| c.verdict == Verdict::Pass).count();
    assert!(
        passed * 10 >= cases.len() * 8,
        "{passed} of {} passed",
        cases.len()
    );
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
    enough_passed(&cases);
}

/// Every announced limit at a small legal value (a server on a small plan), with short
/// timers and a large outbound queue: cases whose preconditions these limits cannot meet
/// are untestable with the reason, none fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_smallest_limits_and_a_large_queue_pass() {
    let mut config = Config::for_tests(SECRET, KEY);
    config.max_frame_bytes = 65_536;
    config.max_subscriptions = 3;
    config.max_channel_name_len = 180;
    config.broadcast_rate_per_sec = 10;
    config.broadcast_burst = 30;
    config.max_presence_members = 3;
    config.max_room_users = 2;
    config.history_limit = 10;
    config.max_json_depth = 6;
    config.cursor_interval_ms = 200;
    config.presence_grace_ms = 1000;
    config.heartbeat_interval_ms = 500;
    config.heartbeat_timeout_ms = 1000;
    config.queue_max_bytes = 16 * 1024 * 1024;
    config.queue_capacity = 65_536;
    config.queue_watermark = 256;
    let cases = grade(config).await;
    let bad = unfair(&cases);
    assert!(bad.is_empty(), "{}", bad.join("\n"));
    enough_passed(&cases);
}

/// The least a legal server may announce (LIMIT-1 asks only for positive values): one
/// subscription, one member, a burst of one, a page of one, nesting of two, 4 KiB frames,
/// 40-character names. Most cases cannot run; none may fail, and each says why it cannot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tiniest_limits_pass_or_are_untestable() {
    let mut config = Config::for_tests(SECRET, KEY);
    config.max_frame_bytes = 4096;
    config.queue_max_bytes = 64 * 1024;
    config.max_subscriptions = 1;
    config.max_channel_name_len = 40;
    config.broadcast_rate_per_sec = 1;
    config.broadcast_burst = 1;
    config.max_presence_members = 1;
    config.max_room_users = 1;
    config.history_limit = 1;
    config.history_retention = 1;
    config.max_json_depth = 2;
    config.presence_grace_ms = 1000;
    config.heartbeat_interval_ms = 500;
    config.heartbeat_timeout_ms = 1000;
    let cases = grade(config).await;
    let bad = unfair(&cases);
    assert!(bad.is_empty(), "{}", bad.join("\n"));
    let passed = cases.iter().filter(|c| c.verdict == Verdict::Pass).count();
    assert!(
        passed * 2 >= cases.len(),
        "{passed} of {} passed",
        cases.len()
    );
}

/// A core-only server (no optional capability at all): every case needing one is skipped,
/// the rest pass; a case that fails here lacks its `capabilities` gate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_core_only_server_passes_every_ungated_case() {
    let mut config = Config::for_tests(SECRET, KEY);
    config.disable_capabilities = chorus_protocol::Capability::ALL
        .iter()
        .map(|c| c.as_str().to_owned())
        .collect();
    let cases = grade(config).await;
    let bad = unfair(&cases);
    assert!(bad.is_empty(), "{}", bad.join("\n"));
    assert!(cases.iter().any(|c| c.verdict == Verdict::Pass));
}
