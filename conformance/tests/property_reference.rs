//! The properties against the reference server, in-process over real sockets: a correct
//! server passes every property, and each deliberate fault in the server is caught and
//! shrunk to a short sequence whose fixture parses.

mod common;

use std::time::{Duration, Instant};

use chorus_conformance::property::{self, Options, Outcome, Property};
use chorus_conformance::verdict::Verdict;
use common::start;

fn options(properties: &[Property], cases: u32) -> Options {
    Options {
        seed: 7,
        cases,
        properties: properties.to_vec(),
        shrink_time: Duration::from_secs(20),
        ..Options::default()
    }
}

fn describe(o: &Outcome) -> String {
    let failure = o
        .result
        .failures
        .first()
        .map(|f| f.message.clone())
        .unwrap_or_default();
    format!(
        "{} {:?} {:?}\n{failure}",
        o.result.id, o.result.verdict, o.result.reason
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reference_server_passes_every_property() {
    let (server, runner) = start("").await;
    let started = Instant::now();
    let outcomes = property::run(&runner, &options(&Property::ALL, property::DEFAULT_CASES)).await;
    let took = started.elapsed();
    for o in &outcomes {
        eprintln!(
            "{} {:?} {} cases {} ms",
            o.result.id, o.result.verdict, o.cases, o.result.duration_ms
        );
    }
    for o in &outcomes {
        assert_eq!(o.result.verdict, Verdict::Pass, "{}", describe(o));
    }
    eprintln!("all properties: {took:?}");
    server.shutdown().await.unwrap();
}
