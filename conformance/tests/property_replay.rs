//! The fixture a property writes for its minimal failure replays it through the harness's
//! fixture runner: it fails against the faulty server and passes against a correct one.

mod common;

use std::time::Duration;

use chorus_conformance::fixture::Fixture;
use chorus_conformance::property::{self, Options, Property};
use chorus_conformance::suite::LoadedFixture;
use chorus_conformance::verdict::Verdict;
use common::start;

/// The replay fixture of `p`'s minimal failure against a server with `fault`.
async fn replay_fixture(fault: &str, p: Property) -> Fixture {
    let (server, runner) = start(fault).await;
    let opts = Options {
        seed: 3,
        cases: 64,
        properties: vec![p],
        shrink_time: Duration::from_secs(10),
        ..Options::default()
    };
    let outcome = property::run(&runner, &opts).await.remove(0);
    server.shutdown().await.unwrap();
    assert_eq!(outcome.result.verdict, Verdict::Fail, "{fault} not caught");
    outcome.fixture.expect("a failure has a replay fixture")
}

async fn verdict_of(fixture: &Fixture, fault: &str) -> Verdict {
    let (server, runner) = start(fault).await;
    let lf = LoadedFixture {
        file: format!("replay/{}.json", fixture.id),
        fixture: fixture.clone(),
    };
    let result = runner.run_case(&lf, 1).await;
    server.shutdown().await.unwrap();
    if result.verdict != Verdict::Pass {
        eprintln!("{fault:?}: {:?} {:?}", result.failures, result.reason);
    }
    result.verdict
}

async fn replays(fault: &str, p: Property) {
    let fixture = replay_fixture(fault, p).await;
    eprintln!("{}", chorus_conformance::replay::render(&fixture));
    assert_eq!(
        verdict_of(&fixture, fault).await,
        Verdict::Fail,
        "{fault}: the replay passes on the faulty server"
    );
    assert_eq!(
        verdict_of(&fixture, "").await,
        Verdict::Pass,
        "{fault}: the replay fails on a correct server"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_user_left_replays() {
    replays("skip_user_left", Property::Presence).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn own_message_replays() {
    replays("echo_to_sender", Property::Channels).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_compare_and_set_replays() {
    replays("accept_stale_cas", Property::State).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skipped_recovery_replays() {
    replays("recovery_skips", Property::History).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uncoalesced_cursors_replay() {
    replays("cursors_uncoalesced", Property::Cursors).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivery_after_unsubscribe_replays() {
    replays("unsubscribe_keeps_delivering", Property::Channels).await;
}
