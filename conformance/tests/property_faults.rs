//! The properties prove their power: with each deliberate fault of the reference server
//! switched on (chorus-server's `faults` feature), the property of the fault's area fails,
//! cites the broken requirement, shrinks to a short sequence, and yields a fixture that
//! parses and passes the suite's static checks.

mod common;

use std::time::Duration;

use chorus_conformance::property::{self, Options, Outcome, Property};
use chorus_conformance::suite::{LoadedFixture, Suite};
use chorus_conformance::verdict::Verdict;
use common::start;

/// Runs `p` against a server with `fault` on and returns its outcome.
async fn run_with(fault: &str, p: Property) -> Outcome {
    let (server, runner) = start(fault).await;
    let opts = Options {
        seed: 1,
        cases: 64,
        properties: vec![p],
        shrink_time: Duration::from_secs(10),
        ..Options::default()
    };
    let mut outcomes = property::run(&runner, &opts).await;
    server.shutdown().await.unwrap();
    outcomes.remove(0)
}

/// The fault is caught with one of `requirements` cited, in at most `max_steps` steps.
async fn caught(fault: &str, p: Property, requirements: &[&str], max_steps: usize) {
    let o = run_with(fault, p).await;
    let message = o
        .result
        .failures
        .first()
        .map(|f| f.message.clone())
        .unwrap_or_default();
    eprintln!(
        "{fault}: {:?} after {} cases\n{message}",
        o.result.verdict, o.cases
    );
    assert_eq!(
        o.result.verdict,
        Verdict::Fail,
        "{fault} not caught: {:?}",
        o.result.reason
    );
    let cited = &o.result.requirements;
    assert!(
        requirements.iter().any(|r| cited.iter().any(|c| c == r)),
        "{fault}: cites {cited:?}, expected one of {requirements:?}\n{message}"
    );
    assert!(
        o.minimal.len() <= max_steps,
        "{fault}: {} steps\n{}",
        o.minimal.len(),
        o.minimal.join("\n")
    );
    let fixture = o.fixture.expect("a failure has a replay fixture");
    let mut suite = Suite::embedded().unwrap();
    let area = fixture.id.split('.').next().unwrap().to_owned();
    suite.fixtures = vec![LoadedFixture {
        file: format!("fixtures/{area}/{}.json", fixture.id),
        fixture,
    }];
    let problems = suite.problems();
    assert!(problems.is_empty(), "{fault}: {problems:#?}");
}

macro_rules! fault_test {
    ($name:ident, $fault:literal, $property:ident, [$($req:literal),+], $max:literal) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            caught($fault, Property::$property, &[$($req),+], $max).await;
        }
    };
}

fault_test!(seq_gap, "seq_gap", Channels, ["CHAN-30", "CHAN-24"], 6);
fault_test!(
    sender_gets_own_message,
    "echo_to_sender",
    Channels,
    ["CHAN-26"],
    4
);
fault_test!(
    unsubscribe_keeps_delivering,
    "unsubscribe_keeps_delivering",
    Channels,
    ["CHAN-34"],
    6
);
fault_test!(
    reply_without_id,
    "drop_reply_id",
    Channels,
    ["CHAN-8", "CHAN-9"],
    3
);
fault_test!(recovery_skips, "recovery_skips", History, ["HIST-7"], 8);
fault_test!(
    history_newest_first,
    "history_wrong_order",
    History,
    ["HIST-14"],
    6
);
fault_test!(skip_user_left, "skip_user_left", Presence, ["PRES-11"], 5);
fault_test!(
    update_as_leave_join,
    "update_as_leave_join",
    Presence,
    ["PRES-19", "PRES-17"],
    4
);
fault_test!(
    snapshot_without_self,
    "presence_no_snapshot_self",
    Presence,
    ["PRES-5"],
    3
);
fault_test!(
    snapshot_after_subscribed,
    "subscribed_before_snapshot",
    Presence,
    ["PRES-5"],
    3
);
fault_test!(
    room_password_ignored,
    "room_password_ignored",
    Rooms,
    ["ROOM-10"],
    4
);
fault_test!(
    room_over_capacity,
    "ignore_max_users",
    Rooms,
    ["ROOM-14"],
    4
);
fault_test!(
    version_reused,
    "reuse_version",
    State,
    ["STATE-3", "STATE-14", "STATE-15"],
    4
);
fault_test!(
    stale_cas_accepted,
    "accept_stale_cas",
    State,
    ["STATE-19"],
    4
);
fault_test!(
    writer_misses_its_write,
    "state_no_broadcast_to_writer",
    State,
    ["STATE-15"],
    3
);
fault_test!(
    cursors_uncoalesced,
    "cursors_uncoalesced",
    Cursors,
    ["CURS-7"],
    5
);
fault_test!(no_pong, "no_pong", Channels, ["CONN-12"], 2);
fault_test!(
    version_reused_after_conflict,
    "version_reused_after_conflict",
    State,
    ["STATE-3", "STATE-14"],
    5
);
fault_test!(seq_repeat, "seq_repeat", Channels, ["CHAN-30"], 4);
fault_test!(
    event_filter_ignored,
    "event_filter_ignored",
    History,
    ["BCAST-2"],
    5
);
