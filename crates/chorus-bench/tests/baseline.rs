//! The harness against the bare tokio-tungstenite baseline over real loopback sockets:
//! short, reliable, run by default.

use std::path::PathBuf;
use std::time::Duration;

use chorus_bench::pubsub::{self, PubSubPlan};
use chorus_bench::server::{Launcher, Server, ServerKind};

fn launcher() -> Launcher {
    Launcher {
        chorus_bin: PathBuf::from("chorus-not-used"),
        bare_bin: PathBuf::from(env!("CARGO_BIN_EXE_chorus-bench-bare")),
        node_bin: PathBuf::from("node"),
        node_dir: PathBuf::from("not-used"),
        socketio_dir: PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../bench/socketio"),
        server_core: 0,
        chorus_extra: Vec::new(),
        pg_url: String::new(),
    }
}

fn local<F: std::future::Future>(fut: F) -> F::Output {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    tokio::task::LocalSet::new().block_on(&rt, fut)
}

fn plan(channels: usize, publishers: usize, subscribers: usize) -> PubSubPlan {
    PubSubPlan {
        channels,
        publishers,
        subscribers,
        stalled: 0,
        duration: Duration::from_millis(300),
        rate: None,
        window: 8,
        drain: Duration::from_secs(5),
    }
}

fn bare() -> Server {
    launcher().start(ServerKind::Bare).unwrap()
}

#[test]
fn fanout_to_bare_delivers_everything_in_order() {
    let server = bare();
    let out = local(pubsub::run(&server, &plan(1, 1, 5))).unwrap();
    assert!(out.sent > 0);
    assert_eq!(out.expected, out.sent * 5);
    assert_eq!(out.delivered, out.expected, "lost {}", out.lost());
    assert_eq!(out.disorder, 0);
    assert!(out.latency.len() as u64 == out.delivered);
}

#[test]
fn fanin_counts_every_other_member_as_a_receiver() {
    let server = bare();
    let out = local(pubsub::run(&server, &plan(1, 3, 1))).unwrap();
    assert_eq!(out.expected, out.sent * 3);
    assert_eq!(out.lost(), 0);
    assert_eq!(out.disorder, 0);
}

#[test]
fn channels_do_not_leak_into_each_other() {
    let server = bare();
    let out = local(pubsub::run(&server, &plan(4, 1, 1))).unwrap();
    assert_eq!(out.lost(), 0);
    assert_eq!(out.disorder, 0, "a delivery crossed channels");
}

#[test]
fn server_cpu_and_memory_come_from_the_server_process() {
    let server = bare();
    let out = local(pubsub::run(&server, &plan(1, 1, 20))).unwrap();
    assert!(
        out.server_cpu > Duration::ZERO,
        "no CPU accounted to the server"
    );
    assert!(out.peak_rss_kib > 0);
    let f = out.figures();
    assert!(f["server_cpu_us_per_delivery"] > 0.0);
    assert!(f["delivered_per_sec"] > 0.0);
}

#[test]
fn paced_run_keeps_close_to_its_rate() {
    let server = bare();
    let mut p = plan(1, 1, 10);
    p.rate = Some(20_000.0);
    p.window = 10_000;
    p.duration = Duration::from_millis(500);
    let out = local(pubsub::run(&server, &p)).unwrap();
    assert_eq!(out.lost(), 0);
    // 20,000 deliveries/s for 0.5 s over 10 subscribers: 1,000 messages, give or take one.
    assert!((995..=1001).contains(&out.sent), "sent {}", out.sent);
}

/// The Socket.IO dialect against the real Socket.IO 4 server. Needs Node.js and
/// `npm ci` in bench/socketio, so it is not part of `cargo test`:
/// `(cd bench/socketio && npm ci) && cargo test -p chorus-bench --test baseline -- --ignored`.
#[test]
#[ignore]
fn socketio_rooms_deliver_and_acknowledge_everything() {
    let server = launcher().start(ServerKind::SocketIo).unwrap();
    let out = local(pubsub::run(&server, &plan(2, 1, 5))).unwrap();
    assert!(out.sent > 0);
    assert_eq!(out.delivered, out.expected, "lost {}", out.lost());
    assert_eq!(out.disorder, 0, "a delivery crossed rooms");
    assert_eq!(out.acks, out.sent, "every publish is acknowledged");
    assert_eq!(out.errors, 0);
}
