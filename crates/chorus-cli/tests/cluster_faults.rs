//! Cluster faults (spec/cluster.md) against `chorus serve --engine redis` processes on the
//! local Redis (127.0.0.1:6379, or `CHORUS_TEST_REDIS_URL`), each test under its own key
//! prefix, deleted at the end:
//! - a node killed with SIGKILL: its members leave on the other node within the grace
//!   period plus the liveness timeout (CLUS-8), and its client resumes on the other node
//!   with `since`, losing nothing acknowledged (CLUS-6);
//! - the broker's data deleted: the next publish starts a new epoch, every subscriber is
//!   closed with 4301 and told `recovered: false` when it resubscribes (CLUS-9, CLUS-12).

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

const GRACE_MS: u64 = 500;
/// chorus_server::cluster: a node is dead once its liveness key (3 s TTL) is gone; nodes
/// look once a second.
const LIVENESS_MS: u64 = 3000 + 1000;

fn redis_url() -> String {
    std::env::var("CHORUS_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

fn prefix(test: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("chorus-test-{test}-{}-{nanos:x}", std::process::id())
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A node; killed (SIGKILL) when dropped.
struct Node {
    child: Child,
    port: u16,
}

impl Node {
    fn start(prefix: &str) -> Node {
        let port = free_port();
        let child = Command::new(env!("CARGO_BIN_EXE_chorus"))
            .args([
                "serve",
                "--dev",
                "--memory",
                "--host",
                "127.0.0.1",
                "--port",
            ])
            .arg(port.to_string())
            .args(["--engine", "redis", "--redis-url", &redis_url()])
            .args(["--redis-prefix", prefix])
            .args(["--presence-grace-ms", &GRACE_MS.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chorus serve starts");
        Node { child, port }
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

/// What arrived: a frame, or the close code.
#[derive(Debug)]
enum Got {
    Frame(Value),
    Closed(Option<u16>),
}

async fn connect(port: u16) -> (Ws, Value) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let mut req = format!("ws://127.0.0.1:{port}/ws")
            .into_client_request()
            .expect("request");
        req.headers_mut().insert(
            "Sec-WebSocket-Protocol",
            "chorus.v1".parse().expect("header"),
        );
        match tokio_tungstenite::connect_async(req).await {
            Ok((mut ws, _)) => match next(&mut ws).await {
                Got::Frame(welcome) if welcome["type"] == "welcome" => return (ws, welcome),
                other => panic!("no welcome: {other:?}"),
            },
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await
            }
            Err(e) => panic!("node on port {port} did not accept: {e}"),
        }
    }
}

async fn next(ws: &mut Ws) -> Got {
    loop {
        match tokio::time::timeout(Duration::from_secs(15), ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => {
                return Got::Frame(serde_json::from_str(&t).expect("JSON frame"))
            }
            Ok(Some(Ok(Message::Close(c)))) => return Got::Closed(c.map(|c| u16::from(c.code))),
            Ok(Some(Err(_))) | Ok(None) => return Got::Closed(None),
            Ok(Some(Ok(_))) => continue,
            Err(_) => panic!("nothing within 15 s"),
        }
    }
}

/// The next frame of `type`, skipping others.
async fn frame_of(ws: &mut Ws, kind: &str) -> Value {
    loop {
        match next(ws).await {
            Got::Frame(f) if f["type"] == kind => return f,
            Got::Frame(_) => {}
            Got::Closed(code) => panic!("closed ({code:?}) while waiting for {kind}"),
        }
    }
}

async fn send(ws: &mut Ws, frame: Value) {
    ws.send(Message::text(frame.to_string()))
        .await
        .expect("send");
}

async fn subscribe(ws: &mut Ws, channel: &str, since: Option<&Value>) -> Value {
    let mut req = json!({"type": "subscribe", "id": "s", "channel": channel});
    if let Some(since) = since {
        req["since"] = since.clone();
    }
    send(ws, req).await;
    let reply = frame_of(ws, "subscribed").await;
    assert_eq!(reply["channel"], channel, "{reply}");
    reply
}

async fn broadcast(ws: &mut Ws, channel: &str, data: Value) -> u64 {
    send(
        ws,
        json!({"type": "broadcast", "id": "b", "channel": channel, "event": "e", "data": data}),
    )
    .await;
    let ack = frame_of(ws, "broadcast:ack").await;
    ack["seq"].as_u64().expect("an acknowledged seq")
}

fn cleanup(prefix: &str) {
    let deleted = chorus_server::cluster::delete_deployment(&redis_url(), prefix)
        .expect("keys of the run deleted");
    assert!(deleted > 0, "the nodes wrote nothing under {prefix}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_nodes_members_leave_and_its_clients_resume_elsewhere() {
    let prefix = prefix("kill");
    let (mut a, b) = (Node::start(&prefix), Node::start(&prefix));
    let channel = "presence-kill";
    let (mut bob, _) = connect(b.port).await;
    let watched = subscribe(&mut bob, channel, None).await;
    let (mut ann, welcome) = connect(a.port).await;
    let ann_id = welcome["user"]["id"].clone();
    let sub = subscribe(&mut ann, channel, None).await;
    let joined = frame_of(&mut bob, "user:joined").await;
    assert_eq!(joined["member"]["user_id"], ann_id, "{joined}");
    let seq = broadcast(&mut ann, channel, json!("acknowledged")).await;
    let got = frame_of(&mut bob, "message").await;
    assert_eq!(
        (got["seq"].as_u64(), &got["data"]),
        (Some(seq), &json!("acknowledged"))
    );

    let killed = Instant::now();
    a.kill();
    let left = frame_of(&mut bob, "user:left").await;
    let took = killed.elapsed();
    assert_eq!(left["user_id"], ann_id, "{left}");
    let bound = Duration::from_millis(GRACE_MS + LIVENESS_MS + 1500);
    assert!(
        took <= bound,
        "user:left {took:?} after the kill, bound {bound:?}"
    );
    eprintln!(
        "CLUS-8: user:left {} ms after SIGKILL (grace {GRACE_MS} ms)",
        took.as_millis()
    );

    // Ann's client resumes on the surviving node: nothing acknowledged is lost (CLUS-6).
    let (mut ann, _) = connect(b.port).await;
    let since = json!({"epoch": sub["position"]["epoch"], "seq": sub["position"]["seq"]});
    let resumed = subscribe(&mut ann, channel, Some(&since)).await;
    assert_eq!(resumed["recovered"], true, "{resumed}");
    assert_eq!(resumed["position"]["epoch"], watched["position"]["epoch"]);
    let replayed = frame_of(&mut ann, "message").await;
    assert_eq!(replayed["seq"].as_u64(), Some(seq), "{replayed}");
    drop(b);
    cleanup(&prefix);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flushed_broker_starts_a_new_epoch_and_says_so() {
    let prefix = prefix("flush");
    let (a, b) = (Node::start(&prefix), Node::start(&prefix));
    let channel = "flushed";
    let (mut bob, _) = connect(b.port).await;
    let before = subscribe(&mut bob, channel, None).await;
    let (mut ann, _) = connect(a.port).await;
    subscribe(&mut ann, channel, None).await;
    let seq = broadcast(&mut ann, channel, json!(1)).await;
    assert_eq!(
        frame_of(&mut bob, "message").await["seq"].as_u64(),
        Some(seq)
    );

    // The broker loses everything (a FLUSHALL or a restart without persistence).
    chorus_server::cluster::delete_deployment(&redis_url(), &prefix).expect("flush");
    send(
        &mut ann,
        json!({"type": "broadcast", "id": "b", "channel": channel, "event": "e", "data": 2}),
    )
    .await;
    // Bob must not get seq 1 of the new epoch as if it followed seq 1 of the old one.
    let code = loop {
        match next(&mut bob).await {
            Got::Closed(code) => break code,
            Got::Frame(f) => {
                assert_ne!(
                    f["type"], "message",
                    "delivered across the discontinuity: {f}"
                )
            }
        }
    };
    assert_eq!(code, Some(u16::from(CloseCode::from(4301))), "CLUS-9");
    let (mut bob, _) = connect(a.port).await;
    let since = json!({"epoch": before["position"]["epoch"], "seq": seq});
    let after = subscribe(&mut bob, channel, Some(&since)).await;
    assert_eq!(after["recovered"], false, "{after}");
    assert_ne!(
        after["position"]["epoch"], before["position"]["epoch"],
        "CLUS-12"
    );
    drop((a, b));
    cleanup(&prefix);
}
