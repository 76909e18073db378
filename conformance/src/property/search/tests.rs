//! Searching and shrinking with a synthetic "server": a sequence fails when Bob broadcasts
//! after Cat subscribed, whatever else happens. Shrinking must find exactly those two steps.

use std::time::Duration;

use proptest::strategy::Strategy;

use super::{search, Budget};
use crate::property::catalog::Property;
use crate::property::check::Failure;
use crate::property::execute::Run;
use crate::property::generate::{steps, Scope};
use crate::property::ops::{ClientId, Op, Step};
use crate::transcript::Transcript;

fn budget(seed: u64) -> Budget {
    Budget {
        seed,
        cases: 200,
        max_steps: 24,
        shrink_time: Duration::from_secs(20),
        shrink_runs: 2000,
    }
}

fn fails(steps: &[Step]) -> bool {
    let cat_subscribed = steps
        .iter()
        .position(|s| s.client == ClientId(3) && matches!(s.op, Op::Subscribe(_)));
    let bob_broadcasts = steps
        .iter()
        .rposition(|s| s.client == ClientId(2) && matches!(s.op, Op::Broadcast { .. }));
    matches!((cat_subscribed, bob_broadcasts), (Some(a), Some(b)) if a < b)
}

fn play(steps: &[Step], _n: u32) -> Run {
    Run {
        prefix: "t".into(),
        executed: Vec::new(),
        failure: fails(steps).then(|| Failure::harness(1, None, "synthetic")),
        transcript: Transcript::new(),
    }
}

fn strategy() -> impl Strategy<Value = Vec<Step>> {
    steps(Property::Channels, &Scope::new(&[]), 24)
}

#[test]
fn shrinks_to_the_two_steps_that_matter() {
    let found = search(Property::Channels, &strategy(), &budget(1), play)
        .unwrap()
        .found
        .expect("200 cases find the failure");
    assert_eq!(found.steps.len(), 2, "{:?}", found.steps);
    assert!(fails(&found.steps));
    assert!(found.original_len >= 2);
}

#[test]
fn the_same_seed_finds_the_same_minimum() {
    let a = search(Property::Channels, &strategy(), &budget(9), play).unwrap();
    let b = search(Property::Channels, &strategy(), &budget(9), play).unwrap();
    assert_eq!(a.cases, b.cases);
    assert_eq!(a.found.map(|f| f.steps), b.found.map(|f| f.steps));
}

#[test]
fn a_passing_search_plays_every_case() {
    let never = |_: &[Step], _: u32| Run {
        prefix: "t".into(),
        executed: Vec::new(),
        failure: None,
        transcript: Transcript::new(),
    };
    let s = search(Property::Channels, &strategy(), &budget(3), never).unwrap();
    assert!(s.found.is_none());
    assert_eq!(s.cases, 200);
}

#[test]
fn shrinking_stops_at_its_time_budget_with_the_smallest_failure_so_far() {
    let slow = |steps: &[Step], n: u32| {
        std::thread::sleep(Duration::from_millis(20));
        play(steps, n)
    };
    let mut b = budget(1);
    b.shrink_time = Duration::from_millis(100);
    let started = std::time::Instant::now();
    let found = search(Property::Channels, &strategy(), &b, slow)
        .unwrap()
        .found
        .expect("a failure");
    assert!(fails(&found.steps));
    assert!(
        found.shrink_runs <= 10,
        "{} shrinking runs",
        found.shrink_runs
    );
    assert!(started.elapsed() < Duration::from_secs(10));
}
