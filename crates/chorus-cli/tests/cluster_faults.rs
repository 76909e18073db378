//! Cluster faults (spec/cluster.md) against `chorus serve --engine redis` processes, each
//! test under its own key prefix, deleted at the end, on the local Redis (127.0.0.1:6379,
//! or `CHORUS_TEST_REDIS_URL`) or on a private `redis-server` of the test's own:
//! - a node killed with SIGKILL: its members leave on the other node within the grace
//!   period plus the liveness timeout (CLUS-8), and its client resumes on the other node
//!   with `since`, losing nothing acknowledged (CLUS-6, CLUS-13);
//! - a node drained with SIGTERM: its clients are closed with 4301 after the frames queued
//!   for them, and resume on the other node with nothing missing (CLUS-11);
//! - the broker's data deleted: the next publish starts a new epoch, every subscriber is
//!   closed with 4301 and told `recovered: false` when it resubscribes (CLUS-9, CLUS-12);
//! - the broker unreachable (a private Redis paused with SIGSTOP, or killed and started
//!   again on its append-only file): every client is closed with 4301, nothing is
//!   acknowledged that Redis did not store, nothing is served half-way meanwhile, and once
//!   Redis answers again clients resume with `since` and find every acknowledged write
//!   (CLUS-10, CLUS-13); and a node the others once took for dead during such an outage
//!   still gets the whole grace period when it really dies later (CLUS-8).

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

const GRACE_MS: u64 = 500;
/// chorus_server::cluster: a node is dead once its liveness key (3 s TTL) is gone; nodes
/// look once a second.
const LIVENESS_MS: u64 = 3000 + 1000;
/// chorus_server::cluster::link: how long a node waits for Redis before giving up.
const COMMAND_TIMEOUT_MS: u64 = 2000;
const RECONNECT: u16 = 4301;
const API_KEY: &str = "cluster-faults-api-key";

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

/// Sends `signal` to a process this test started, by its pid.
fn signal(pid: u32, signal: &str) {
    let status = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status()
        .expect("kill runs");
    assert!(status.success(), "kill -{signal} {pid}");
}

/// Whether a Redis on `port` answers `PING` (it is loaded once it does).
fn answers_ping(port: u16) -> bool {
    use std::io::{Read, Write};
    let Ok(mut tcp) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = tcp.set_read_timeout(Some(Duration::from_millis(500)));
    let mut reply = [0u8; 5];
    tcp.write_all(b"PING\r\n").is_ok() && tcp.read_exact(&mut reply).is_ok() && &reply == b"+PONG"
}

/// A private `redis-server` on an ephemeral port, persisting every write to its
/// append-only file before it answers (`appendfsync always`), so that a restart on the
/// same directory finds every acknowledged write; killed when dropped.
struct PrivateRedis {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl PrivateRedis {
    fn start() -> PrivateRedis {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let port = free_port();
        let child = PrivateRedis::spawn(port, dir.path());
        PrivateRedis { child, port, dir }
    }

    fn spawn(port: u16, dir: &Path) -> Child {
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args([
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
            ])
            .arg("--dir")
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server starts (is it installed?)");
        let deadline = Instant::now() + Duration::from_secs(10);
        while !answers_ping(port) {
            assert!(
                Instant::now() < deadline,
                "private redis on port {port} did not answer"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        child
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kills it (SIGKILL).
    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts it again on the same port and append-only file.
    fn restart(&mut self) {
        self.child = PrivateRedis::spawn(self.port, self.dir.path());
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The nodes' log: shown with `CHORUS_TEST_LOG=1`.
fn node_log() -> Stdio {
    if std::env::var_os("CHORUS_TEST_LOG").is_some() {
        Stdio::inherit()
    } else {
        Stdio::null()
    }
}

/// A node; killed (SIGKILL) when dropped.
struct Node {
    child: Child,
    port: u16,
}

impl Node {
    fn start(prefix: &str) -> Node {
        Node::start_on(&redis_url(), prefix)
    }

    fn start_on(url: &str, prefix: &str) -> Node {
        Node::start_with_grace(url, prefix, GRACE_MS)
    }

    fn start_with_grace(url: &str, prefix: &str, grace_ms: u64) -> Node {
        Node::start_with_faults(url, prefix, grace_ms, &[])
    }

    /// A node with deliberate bugs (`chorus serve --fault`).
    fn start_with_faults(url: &str, prefix: &str, grace_ms: u64, faults: &[&str]) -> Node {
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
            .args(["--engine", "redis", "--redis-url", url])
            .args(["--redis-prefix", prefix])
            .args(["--presence-grace-ms", &grace_ms.to_string()])
            .args(faults.iter().flat_map(|f| ["--fault", f]))
            .env("CHORUS_API_KEY", API_KEY)
            .stdout(Stdio::null())
            .stderr(node_log())
            .spawn()
            .expect("chorus serve starts");
        Node { child, port }
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM: the node drains; whether it then exited cleanly.
    fn drain(&mut self) -> bool {
        signal(self.child.id(), "TERM");
        self.child.wait().is_ok_and(|s| s.success())
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

async fn try_connect(port: u16) -> Option<(Ws, Value)> {
    let mut req = format!("ws://127.0.0.1:{port}/ws")
        .into_client_request()
        .expect("request");
    req.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        "chorus.v1".parse().expect("header"),
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(req).await.ok()?;
    match next(&mut ws).await {
        Got::Frame(welcome) if welcome["type"] == "welcome" => Some((ws, welcome)),
        _ => None,
    }
}

async fn connect(port: u16) -> (Ws, Value) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(connected) = try_connect(port).await {
            return connected;
        }
        assert!(
            Instant::now() < deadline,
            "node on port {port} did not accept"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
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

/// Every frame until the connection closes, and the close code.
async fn until_closed(ws: &mut Ws) -> (Vec<Value>, Option<u16>) {
    let mut frames = Vec::new();
    loop {
        match next(ws).await {
            Got::Frame(f) => frames.push(f),
            Got::Closed(code) => return (frames, code),
        }
    }
}

async fn send(ws: &mut Ws, frame: Value) {
    ws.send(Message::text(frame.to_string()))
        .await
        .expect("send");
}

fn subscribe_frame(channel: &str, since: Option<&Value>) -> Value {
    let mut req = json!({"type": "subscribe", "id": "s", "channel": channel, "state": true});
    if let Some(since) = since {
        req["since"] = since.clone();
    }
    req
}

async fn subscribe(ws: &mut Ws, channel: &str, since: Option<&Value>) -> Value {
    send(ws, subscribe_frame(channel, since)).await;
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

/// `state:update` of `key`, acknowledged.
async fn write_state(ws: &mut Ws, channel: &str, key: &str, value: Value) {
    send(
        ws,
        json!({"type": "state:update", "id": "w", "channel": channel, "key": key, "value": value}),
    )
    .await;
    frame_of(ws, "state:ack").await;
}

/// `POST /api/broadcast` to node `port`: the status, and the `seq` of a 200.
async fn http_broadcast(port: u16, channel: &str, data: Value) -> (u16, Option<u64>) {
    let reply = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{port}/api/broadcast"))
        .header("X-Api-Key", API_KEY)
        .json(&json!({"channel": channel, "event": "e", "data": data}))
        .timeout(Duration::from_secs(15))
        .send()
        .await;
    match reply {
        Ok(r) => {
            let status = r.status().as_u16();
            let body: Value = r.json().await.unwrap_or(Value::Null);
            (status, body["seq"].as_u64())
        }
        // A node that drops the request has not acknowledged it either.
        Err(_) => (0, None),
    }
}

/// Every frame until the answer to a ping: what the server sent before it.
async fn until_pong(ws: &mut Ws) -> Vec<Value> {
    send(ws, json!({"type": "ping", "id": "p"})).await;
    let mut frames = Vec::new();
    loop {
        match next(ws).await {
            Got::Frame(f) if f["type"] == "pong" => return frames,
            Got::Frame(f) => frames.push(f),
            Got::Closed(code) => panic!("closed ({code:?}) before the pong"),
        }
    }
}

/// The `seq` of each `message` among `frames`.
fn seqs(frames: &[Value]) -> Vec<u64> {
    frames
        .iter()
        .filter(|f| f["type"] == "message")
        .filter_map(|f| f["seq"].as_u64())
        .collect()
}

/// Subscribes with `since` on `port` until the node serves (a node that lost its broker
/// closes each attempt with 4301 until Redis answers again, never answering half-way):
/// the connection, the `subscribed` reply and the items replayed after it.
async fn resume(port: u16, channel: &str, since: &Value) -> (Ws, Value, Vec<Value>) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (mut ws, _) = connect(port).await;
        send(&mut ws, subscribe_frame(channel, Some(since))).await;
        loop {
            match next(&mut ws).await {
                Got::Frame(f) if f["type"] == "subscribed" => {
                    let replayed = until_pong(&mut ws).await;
                    return (ws, f, replayed);
                }
                Got::Frame(f) => assert_ne!(f["type"], "message", "before subscribed: {f}"),
                Got::Closed(code) => {
                    assert_eq!(code, Some(RECONNECT), "a refused resume closes with 4301");
                    break;
                }
            }
        }
        assert!(Instant::now() < deadline, "the node never served again");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn since(subscribed: &Value) -> Value {
    json!({"epoch": subscribed["position"]["epoch"], "seq": subscribed["position"]["seq"]})
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
    // Acknowledged by the node about to die: broadcasts, an HTTP broadcast, a state write.
    let mut acked = vec![
        broadcast(&mut ann, channel, json!(1)).await,
        broadcast(&mut ann, channel, json!(2)).await,
    ];
    let (status, seq) = http_broadcast(a.port, channel, json!(3)).await;
    assert_eq!(status, 200);
    acked.extend(seq);
    write_state(&mut ann, channel, "k", json!("kept")).await;
    for seq in &acked {
        assert_eq!(
            frame_of(&mut bob, "message").await["seq"].as_u64(),
            Some(*seq)
        );
    }

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
    let (_ann, resumed, replayed) = resume(b.port, channel, &since(&sub)).await;
    assert_eq!(resumed["recovered"], true, "{resumed}");
    assert_eq!(resumed["position"]["epoch"], watched["position"]["epoch"]);
    assert_eq!(seqs(&replayed), acked, "{replayed:?}");
    assert_eq!(resumed["state"]["data"]["k"], "kept", "{resumed}");
    drop(b);
    cleanup(&prefix);
}

/// The kill test's criterion catches a deployment that keeps a dead node's leases
/// (`cluster_node_dead_leases_kept`, CLUS-8): no `user:left` within the bound, and the dead
/// node's member still listed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deployment_keeping_a_dead_nodes_leases_is_caught() {
    let prefix = prefix("kept");
    let fault = ["cluster_node_dead_leases_kept"];
    let mut a = Node::start(&prefix);
    let b = Node::start_with_faults(&redis_url(), &prefix, GRACE_MS, &fault);
    let channel = "presence-kept";
    let (mut bob, _) = connect(b.port).await;
    subscribe(&mut bob, channel, None).await;
    let (mut ann, welcome) = connect(a.port).await;
    let ann_id = welcome["user"]["id"].clone();
    subscribe(&mut ann, channel, None).await;
    let joined = frame_of(&mut bob, "user:joined").await;
    assert_eq!(joined["member"]["user_id"], ann_id, "{joined}");

    a.kill();
    let bound = Duration::from_millis(GRACE_MS + LIVENESS_MS + 1500);
    let left = tokio::time::timeout(bound, frame_of(&mut bob, "user:left")).await;
    assert!(left.is_err(), "the fault is not caught: {left:?}");
    send(
        &mut bob,
        json!({"type": "presence", "id": "p", "channel": channel}),
    )
    .await;
    let list = frame_of(&mut bob, "presence:list").await;
    let listed = list["members"].as_array().cloned().unwrap_or_default();
    assert!(
        listed.iter().any(|m| m["user_id"] == ann_id),
        "the dead node's member is listed under the fault: {list}"
    );
    drop(b);
    cleanup(&prefix);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_draining_node_closes_with_4301_after_its_queued_frames() {
    let prefix = prefix("drain");
    let (mut a, b) = (Node::start(&prefix), Node::start(&prefix));
    let channel = "drained";
    let (mut ann, _) = connect(a.port).await;
    let sub = subscribe(&mut ann, channel, None).await;
    let (mut bob, _) = connect(b.port).await;
    subscribe(&mut bob, channel, None).await;
    // A burst from the other node, still arriving on the draining node when it drains.
    const BURST: usize = 40;
    for i in 0..BURST {
        send(
            &mut bob,
            json!({"type": "broadcast", "id": i, "channel": channel, "event": "e", "data": i}),
        )
        .await;
    }
    let first = frame_of(&mut ann, "message").await;
    let drained = tokio::task::spawn_blocking(move || a.drain());
    let (frames, code) = until_closed(&mut ann).await;
    assert_eq!(
        code,
        Some(RECONNECT),
        "CLUS-11: a drain asks to reconnect now"
    );
    let mut got = vec![first["seq"].as_u64().expect("seq")];
    got.extend(seqs(&frames));
    let from = sub["position"]["seq"].as_u64().expect("seq") + 1;
    let expected: Vec<u64> = (from..from + got.len() as u64).collect();
    assert_eq!(
        got, expected,
        "what came before the close is the stream without a gap"
    );
    let mut acked = Vec::new();
    while acked.len() < BURST {
        match next(&mut bob).await {
            Got::Frame(f) if f["type"] == "broadcast:ack" => acked.extend(f["seq"].as_u64()),
            Got::Frame(f) => assert_ne!(f["type"], "error", "{f}"),
            Got::Closed(code) => panic!("bob closed ({code:?})"),
        }
    }
    assert!(
        drained.await.expect("drain"),
        "the drained node exits cleanly"
    );

    // Ann resumes on the other node where the close left her: nothing is missing.
    let at = json!({"epoch": sub["position"]["epoch"], "seq": got.last()});
    let (_ann, resumed, replayed) = resume(b.port, channel, &at).await;
    assert_eq!(resumed["recovered"], true, "{resumed}");
    got.extend(seqs(&replayed));
    assert_eq!(got, acked, "every acknowledged item, once, in order");
    eprintln!(
        "CLUS-11: {} of {BURST} items delivered before the 4301, the rest recovered",
        got.len() - replayed.len()
    );
    drop(b);
    cleanup(&prefix);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_broker_closes_clients_and_acknowledges_nothing_it_did_not_store() {
    let redis = PrivateRedis::start();
    let prefix = prefix("paused");
    let (a, b) = (
        Node::start_on(&redis.url(), &prefix),
        Node::start_on(&redis.url(), &prefix),
    );
    let channel = "paused";
    let (mut bob, _) = connect(b.port).await;
    subscribe(&mut bob, channel, None).await;
    let (mut ann, _) = connect(a.port).await;
    let sub = subscribe(&mut ann, channel, None).await;
    let mut acked = vec![broadcast(&mut ann, channel, json!(1)).await];
    let (status, seq) = http_broadcast(b.port, channel, json!(2)).await;
    assert_eq!(status, 200);
    acked.extend(seq);
    write_state(&mut ann, channel, "k", json!("before")).await;

    signal(redis.child.id(), "STOP");
    let paused = Instant::now();
    // A write while Redis does not answer: no acknowledgement, a 4301 within the timeout.
    send(
        &mut ann,
        json!({"type": "broadcast", "id": "lost", "channel": channel, "event": "e", "data": 3}),
    )
    .await;
    let (frames, code) = until_closed(&mut ann).await;
    let took = paused.elapsed();
    assert_eq!(code, Some(RECONNECT), "CLUS-10");
    assert!(
        frames.iter().all(|f| f["type"] != "broadcast:ack"),
        "acknowledged while Redis was unreachable: {frames:?}"
    );
    // The other node, idle, finds out at its next liveness renewal.
    let (_, code) = until_closed(&mut bob).await;
    assert_eq!(code, Some(RECONNECT), "CLUS-10 on the idle node");
    let (status, _) = http_broadcast(b.port, channel, json!(4)).await;
    assert_ne!(
        status, 200,
        "an HTTP broadcast acknowledged while Redis was unreachable"
    );
    // A newcomer is not served half-way: no `subscribed` on a made-up position.
    let (mut carl, _) = connect(a.port).await;
    send(&mut carl, subscribe_frame(channel, None)).await;
    let (frames, code) = until_closed(&mut carl).await;
    assert_eq!(code, Some(RECONNECT));
    assert!(
        frames.iter().all(|f| f["type"] != "subscribed"),
        "{frames:?}"
    );
    eprintln!(
        "CLUS-10: closed with 4301 {} ms after Redis stopped answering",
        took.as_millis()
    );
    assert!(
        took < Duration::from_millis(COMMAND_TIMEOUT_MS + 2000),
        "{took:?}"
    );

    signal(redis.child.id(), "CONT");
    let (_ann, resumed, replayed) = resume(b.port, channel, &since(&sub)).await;
    assert_eq!(resumed["recovered"], true, "{resumed}");
    let got = seqs(&replayed);
    // A write Redis ran after it woke was never acknowledged; it may be there or not.
    assert!(got.starts_with(&acked), "{got:?} lacks {acked:?}");
    assert_eq!(resumed["state"]["data"]["k"], "before", "{resumed}");
    drop((a, b));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_broker_loses_nothing_acknowledged_and_the_nodes_reconnect() {
    let mut redis = PrivateRedis::start();
    let prefix = prefix("restarted");
    let (a, b) = (
        Node::start_on(&redis.url(), &prefix),
        Node::start_on(&redis.url(), &prefix),
    );
    let channel = "restarted";
    let (mut bob, _) = connect(b.port).await;
    subscribe(&mut bob, channel, None).await;
    let (mut ann, _) = connect(a.port).await;
    let sub = subscribe(&mut ann, channel, None).await;
    let mut acked = vec![broadcast(&mut ann, channel, json!(1)).await];
    let (status, seq) = http_broadcast(b.port, channel, json!(2)).await;
    assert_eq!(status, 200);
    acked.extend(seq);
    write_state(&mut ann, channel, "k", json!("stored")).await;

    redis.kill();
    // Both nodes lose the bus at once: every client is asked to reconnect.
    for ws in [&mut ann, &mut bob] {
        let (frames, code) = until_closed(ws).await;
        assert_eq!(code, Some(RECONNECT), "CLUS-10: {frames:?}");
    }
    let (status, _) = http_broadcast(a.port, channel, json!(3)).await;
    assert_ne!(status, 200, "an HTTP broadcast acknowledged without Redis");
    let (mut carl, _) = connect(a.port).await;
    send(&mut carl, subscribe_frame(channel, None)).await;
    let (frames, code) = until_closed(&mut carl).await;
    assert_eq!(code, Some(RECONNECT));
    assert!(
        frames.iter().all(|f| f["type"] != "subscribed"),
        "{frames:?}"
    );

    redis.restart();
    let (_ann, resumed, replayed) = resume(b.port, channel, &since(&sub)).await;
    assert_eq!(resumed["recovered"], true, "{resumed}");
    assert_eq!(
        seqs(&replayed),
        acked,
        "CLUS-13: every acknowledged item survived"
    );
    assert_eq!(resumed["state"]["data"]["k"], "stored", "{resumed}");
    // Delivery across the nodes works again (the bus subscribed anew).
    let (mut dan, subscribed, _) = resume(a.port, channel, &since(&resumed)).await;
    assert_eq!(subscribed["recovered"], true);
    let (mut eve, _) = connect(b.port).await;
    subscribe(&mut eve, channel, None).await;
    let seq = broadcast(&mut eve, channel, json!("again")).await;
    assert_eq!(
        frame_of(&mut dan, "message").await["seq"].as_u64(),
        Some(seq)
    );
    drop((a, b));
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
    assert_eq!(code, Some(RECONNECT), "CLUS-9");
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_once_taken_for_dead_keeps_its_grace_period() {
    const GRACE: u64 = 4000;
    let prefix = prefix("stamped");
    let (mut a, b) = (
        Node::start_with_grace(&redis_url(), &prefix, GRACE),
        Node::start_with_grace(&redis_url(), &prefix, GRACE),
    );
    for node in [&a, &b] {
        connect(node.port).await; // both nodes joined
    }
    // Node A stalls past its liveness TTL but within the grace period: B finds it dead,
    // then alive again before the grace is over, and must forget that it found it dead.
    signal(a.child.id(), "STOP");
    tokio::time::sleep(Duration::from_millis(LIVENESS_MS)).await;
    signal(a.child.id(), "CONT");
    let channel = "presence-stamped";
    let (mut bob, _) = connect(b.port).await;
    subscribe(&mut bob, channel, None).await;
    let (mut ann, welcome) = connect(a.port).await;
    subscribe(&mut ann, channel, None).await;
    let joined = frame_of(&mut bob, "user:joined").await;
    assert_eq!(joined["member"]["user_id"], welcome["user"]["id"]);
    // Past the grace period B would have applied to the stall: nothing was dropped.
    tokio::time::sleep(Duration::from_millis(GRACE)).await;

    let killed = Instant::now();
    a.kill();
    let left = frame_of(&mut bob, "user:left").await;
    let took = killed.elapsed();
    assert_eq!(left["user_id"], welcome["user"]["id"], "{left}");
    eprintln!(
        "CLUS-8: user:left {} ms after SIGKILL (grace {GRACE} ms), after a stall",
        took.as_millis()
    );
    // At least the TTL left after the node's last renewal (2 s or more), then the grace.
    assert!(
        took >= Duration::from_millis(GRACE + 1000),
        "user:left {took:?} after the kill: the grace of {GRACE} ms was cut short"
    );
    drop(b);
    cleanup(&prefix);
}
