//! Hostile but valid clients against a real `chorus serve` process (a child on an ephemeral
//! port, in memory): each attack runs while a victim client receives a paced stream on
//! another channel, and passes when (1) the attacker gets the spec's answer (`rate_limited`,
//! `limit_exceeded`, close 4202 or 4200), (2) the server's RSS (`/proc/PID/status` VmRSS)
//! stays under its budget, and (3) the victim's delivered count and p99 latency stay close
//! to what they were without the attack, measured in the same test.
//!
//! It is a test of this server's shell (process, sockets, budgets), not a conformance case:
//! RSS and a victim's latency are not observable through the protocol, so it lives here
//! rather than in the suite that grades any server by URL.
//!
//! Each attack runs against a server of its own (a fresh child process), after the
//! victim's baseline is measured on that server; an attack that fails or panics is reported
//! in its row and the others still run; the test fails at the end, naming every failed
//! attack. `CHORUS_ATTACK_ONLY=<part of a name>` runs the attacks whose name contains it
//! (e.g. `CHORUS_ATTACK_ONLY=slowloris`).
//!
//! `cargo test -p chorus-cli --test attacks` runs the short form (2 s windows; a loose bound
//! on the victim: at least 90% of its messages, p99 within 5 times the baseline or 200 ms
//! above it, since a 2-core machine shared by several builds cannot resolve 10%). The long
//! form with the issue's 10% criterion, eight rounds of 5 s windows (`CHORUS_ATTACK_ROUNDS`,
//! `CHORUS_ATTACK_WINDOW_MS` change them; `CHORUS_ATTACK_TRACE=1` tells where in each window
//! the slowest 1% fell):
//! `CHORUS_ATTACK_LONG=1 cargo test --release -p chorus-cli --test attacks -- --nocapture`.
//! Figures: docs/attacks.md.

use std::io::Write as _;
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Map, Value};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

const SECRET: &str = "attack-suite-secret-0123456789abcdef";
const PER_USER: usize = 20;
const PER_ADDRESS: usize = 150;
const MAX_CHANNELS: usize = 200;
/// Outbound queue bound per connection (at least max_frame_bytes, 1 MiB).
const QUEUE_BYTES: usize = 1024 * 1024;
/// The RSS the server may grow by during one attack: the never-reading client's queue, the
/// connections the attacks open (a few hundred, tens of KiB each) and allocator slack.
const RSS_BUDGET_KIB: u64 = 64 * 1024;

fn long() -> bool {
    std::env::var_os("CHORUS_ATTACK_LONG").is_some()
}

/// How long a victim is measured, with or without an attack: `CHORUS_ATTACK_WINDOW_MS`, or
/// 5 s in the long form and 2 s in the short.
fn window() -> Duration {
    std::env::var("CHORUS_ATTACK_WINDOW_MS")
        .ok()
        .and_then(|ms| ms.parse().ok())
        .filter(|&ms| ms >= 500)
        .map(Duration::from_millis)
        .unwrap_or(Duration::from_secs(if long() { 5 } else { 2 }))
}

fn epoch() -> Instant {
    static START: OnceLock<Instant> = OnceLock::new();
    *START.get_or_init(Instant::now)
}

fn micros() -> u64 {
    epoch().elapsed().as_micros() as u64
}

struct Server {
    child: Child,
    port: u16,
}

impl Server {
    fn start() -> Server {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port");
        let flags = [
            ("--host", "127.0.0.1".to_owned()),
            ("--port", port.to_string()),
            ("--memory", "true".to_owned()),
            ("--jwt-secret", SECRET.to_owned()),
            ("--max-channels", MAX_CHANNELS.to_string()),
            ("--max-connections-per-user", PER_USER.to_string()),
            ("--max-connections-per-address", PER_ADDRESS.to_string()),
            ("--queue-max-bytes", QUEUE_BYTES.to_string()),
            // A request budget a debug build can be held to: 100 pages of 100 history
            // items cost it more than a second of one core.
            ("--request-rate-per-sec", "50".to_owned()),
            ("--request-burst", "100".to_owned()),
            ("--log-level", "error".to_owned()),
        ];
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_chorus"));
        cmd.arg("serve");
        for (flag, value) in &flags {
            cmd.arg(flag).arg(value);
        }
        let child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chorus serve starts");
        Server { child, port }
    }

    fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("/proc status of the server");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS")
    }
}

/// Major page faults of process `pid` so far (`/proc/PID/stat`, field 12): a page of its
/// binary or of a file read back from disk, a stall of milliseconds each. For the trace.
fn major_faults(pid: &str) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The fields after the command, which is in parentheses and may hold spaces.
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    after
        .split_whitespace()
        .nth(9)
        .and_then(|f| f.parse().ok())
        .unwrap_or(0)
}

/// Time the hypervisor took from this VM's CPUs so far, in clock ticks (`/proc/stat`, the
/// `cpu` line's steal field). For the trace.
fn steal_ticks() -> u64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    stat.lines()
        .next()
        .and_then(|cpu| cpu.split_whitespace().nth(8))
        .and_then(|f| f.parse().ok())
        .unwrap_or(0)
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The victim has a tenant of its own, so that the channel budget the attackers exhaust
/// (per tenant, LIMIT-18) is not its own.
fn token(user: &str) -> String {
    let mut claims = Map::new();
    claims.insert("sub".into(), json!(user));
    if user.starts_with("victim-") {
        claims.insert("tenant".into(), json!("victims"));
    }
    chorus_conformance::tokens::sign(&claims, SECRET).expect("token")
}

/// Opens a connection for `user`: its `welcome`, or the close code that refused it.
async fn open(port: u16, user: &str) -> Result<Ws, u16> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let mut req = format!("ws://127.0.0.1:{port}/ws?token={}", token(user))
            .into_client_request()
            .expect("request");
        req.headers_mut().insert(
            "Sec-WebSocket-Protocol",
            "chorus.v1".parse().expect("header"),
        );
        match tokio_tungstenite::connect_async(req).await {
            Ok((mut ws, _)) => {
                return match next(&mut ws).await {
                    Frame::Json(w) if w["type"] == "welcome" => Ok(ws),
                    Frame::Closed(code) => Err(code),
                    other => panic!("no welcome: {other:?}"),
                }
            }
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await
            }
            Err(e) => panic!("server on port {port} did not accept: {e}"),
        }
    }
}

async fn connect(port: u16, user: &str) -> Ws {
    open(port, user).await.expect("connection accepted")
}

#[derive(Debug)]
enum Frame {
    Json(Value),
    Closed(u16),
}

async fn next(ws: &mut Ws) -> Frame {
    loop {
        match tokio::time::timeout(Duration::from_secs(20), ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => {
                return Frame::Json(serde_json::from_str(&t).expect("JSON frame"))
            }
            Ok(Some(Ok(Message::Close(c)))) => {
                return Frame::Closed(c.map_or(1005, |c| u16::from(c.code)))
            }
            Ok(Some(Err(_))) | Ok(None) => return Frame::Closed(1006),
            Ok(Some(Ok(_))) => continue,
            Err(_) => panic!("no frame within 20 s"),
        }
    }
}

async fn send(ws: &mut Ws, frame: Value) {
    ws.send(Message::text(frame.to_string()))
        .await
        .expect("send");
}

/// Sends `frame` with `id` and returns the frame answering it.
async fn ask(ws: &mut Ws, id: &str, mut frame: Value) -> Value {
    frame["id"] = json!(id);
    send(ws, frame).await;
    loop {
        match next(ws).await {
            Frame::Json(f) if f["id"] == json!(id) => return f,
            Frame::Json(_) => continue,
            Frame::Closed(code) => panic!("closed {code} while waiting for {id}"),
        }
    }
}

/// What the victim saw in one window.
#[derive(Debug, Clone)]
struct Victim {
    delivered: usize,
    /// Messages published to it.
    expected: usize,
    p99_us: u64,
    /// Every latency measured, sorted, to pool rounds.
    latencies: Vec<u64>,
}

impl Victim {
    fn of(mut latencies: Vec<u64>, expected: usize) -> Victim {
        latencies.sort_unstable();
        let p99 = latencies
            .get((latencies.len() * 99 / 100).min(latencies.len().saturating_sub(1)))
            .copied()
            .unwrap_or(u64::MAX);
        Victim {
            delivered: latencies.len(),
            expected,
            p99_us: p99,
            latencies,
        }
    }

    /// The two windows' latencies as one window's.
    fn pooled(self, other: Victim) -> Victim {
        let expected = self.expected + other.expected;
        let mut all = self.latencies;
        all.extend(other.latencies);
        Victim::of(all, expected)
    }
}

/// Rounds per attack, each on a fresh server (a baseline window, then an attacked one),
/// their latencies pooled: `CHORUS_ATTACK_ROUNDS`, or eight in the long form and one in the
/// short. Many short rounds rather than a few long ones: servers started alike differ in
/// their victim's p99 by more than 10% (the same 60 KB publishers gave 401 and 736 us on two
/// servers of one run), and on a host whose hypervisor takes CPU time from the VM in bursts
/// the p99 of two consecutive quiet windows of 10 s differed threefold (513 and 1509 us,
/// 2026-12-07); alternating the two kinds of window every 5 s spreads that drift over both.
fn rounds() -> usize {
    std::env::var("CHORUS_ATTACK_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .filter(|&r| r > 0)
        .unwrap_or(if long() { 8 } else { 1 })
}

/// The victim's publishers, each paced at 40 broadcasts a second (within the request
/// budget of one connection, LIMIT-14): one in the short form; five in the long form, so
/// that its eight 5 s windows hold 8000 latencies and their p99 is the 80th largest, not
/// one scheduler hiccup.
fn victim_publishers() -> usize {
    if long() {
        5
    } else {
        1
    }
}

const VICTIM_INTERVAL: Duration = Duration::from_millis(25);

/// [`victim_alone`] on a thread and runtime of its own, at the test's own priority (see
/// [`ATTACKER_NICE`]): a victim is another client, on another machine as a rule, and
/// sharing the attacker's executor here would measure how the test process schedules its
/// tasks rather than how the server treats the victim.
async fn victim(port: u16, run: usize, span: Duration) -> Victim {
    let thread = at_test_priority(move || {
        std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("the victim's runtime")
                .block_on(victim_alone(port, run, span))
        })
    })
    .await;
    match tokio::task::spawn_blocking(move || thread.join()).await {
        Ok(Ok(v)) => v,
        Ok(Err(panic)) => std::panic::resume_unwind(panic),
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}

/// The niceness of the attacking clients' threads: every thread of the test's runtime,
/// where the attacks, the hose and the baselines' readers run. On the open internet an
/// attacker's CPU is not the server's; here the two share two cores, and an attacker at
/// the server's priority measured how the test process's own work (parsing, sending 60 KB
/// frames, reading 24 MB/s of SSE) delayed the victim's client. The servers and the
/// victims run at the test's priority, started by [`at_test_priority`].
const ATTACKER_NICE: libc::c_int = 10;

/// Sets the calling thread's niceness (threads and processes it starts inherit it). In a
/// test already niced beyond `nice` this fails without privilege, and the attackers stay
/// where the whole test is: the measurement loses its margin, the test still runs.
fn set_nice(nice: libc::c_int) {
    // SAFETY: gettid has no preconditions; setpriority only reads its integer arguments.
    let _ = unsafe {
        let tid = libc::gettid();
        libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, nice)
    };
}

type Job = Box<dyn FnOnce() + Send>;

/// A thread at the test's own priority that starts what must not inherit the attackers'
/// niceness: the servers and the victims' threads. Started by the test's main thread
/// before the runtime.
fn spawner() -> &'static std::sync::Mutex<std::sync::mpsc::Sender<Job>> {
    static SPAWNER: OnceLock<std::sync::Mutex<std::sync::mpsc::Sender<Job>>> = OnceLock::new();
    SPAWNER.get_or_init(|| {
        let (jobs, queue) = std::sync::mpsc::channel::<Job>();
        std::thread::spawn(move || {
            for job in queue {
                job();
            }
        });
        std::sync::Mutex::new(jobs)
    })
}

/// Runs `f` on the [`spawner`]'s thread.
async fn at_test_priority<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    let (done, result) = tokio::sync::oneshot::channel();
    spawner()
        .lock()
        .expect("the spawner")
        .send(Box::new(move || {
            let _ = done.send(f());
        }))
        .expect("the spawner runs");
    result.await.expect("the spawner's job")
}

/// [`victim_publishers`] publishers on `victim` for `span`, their sends spread evenly, and
/// a subscriber measuring each message's latency from the publisher's send instant.
async fn victim_alone(port: u16, run: usize, span: Duration) -> Victim {
    let channel = format!("victim-{run}");
    let sub = json!({"type": "subscribe", "channel": channel});
    let mut publishers = Vec::new();
    for p in 0..victim_publishers() {
        let mut publisher = connect(port, &format!("victim-pub-{run}-{p}")).await;
        assert_eq!(
            ask(&mut publisher, "s", sub.clone()).await["type"],
            "subscribed"
        );
        publishers.push(publisher);
    }
    let mut reader = connect(port, &format!("victim-reader-{run}")).await;
    assert_eq!(ask(&mut reader, "s", sub).await["type"], "subscribed");
    let per_publisher = (span.as_millis() / VICTIM_INTERVAL.as_millis()) as usize;
    let count = per_publisher * publishers.len();
    let offset = VICTIM_INTERVAL / publishers.len() as u32;
    let channel = &channel;
    let publish = futures_util::future::join_all(publishers.into_iter().enumerate().map(
        |(p, mut publisher)| async move {
            let start = tokio::time::Instant::now() + offset * p as u32;
            let mut tick = tokio::time::interval_at(start, VICTIM_INTERVAL);
            for _ in 0..per_publisher {
                tick.tick().await;
                let b = json!({"type": "broadcast", "channel": channel, "event": "t", "data": micros()});
                send(&mut publisher, b).await;
            }
            publisher
        },
    ));
    let read = async {
        let mut latencies = Vec::new();
        let mut sent_at = Vec::new();
        let until = Instant::now() + span + Duration::from_secs(2);
        while latencies.len() < count && Instant::now() < until {
            match tokio::time::timeout_at(until.into(), next(&mut reader)).await {
                Ok(Frame::Json(m)) if m["type"] == "message" => {
                    let sent = m["data"].as_u64().unwrap_or(0);
                    sent_at.push(sent);
                    latencies.push(micros().saturating_sub(sent))
                }
                Ok(Frame::Json(_)) => {}
                Ok(Frame::Closed(code)) => panic!("the victim was closed with {code}"),
                Err(_) => break,
            }
        }
        trace(run, &sent_at, &latencies);
        latencies
    };
    let (_, latencies) = tokio::join!(publish, read);
    Victim::of(latencies, count)
}

/// With `CHORUS_ATTACK_TRACE` set, where in a window its slowest 1% fell: per second of the
/// window, how many of them, and that second's largest latency. A tail made in one second
/// (a drain, a close) reads differently from one spread over all of them.
fn trace(run: usize, sent_at: &[u64], latencies: &[u64]) {
    if std::env::var_os("CHORUS_ATTACK_TRACE").is_none() || latencies.is_empty() {
        return;
    }
    let mut sorted = latencies.to_vec();
    sorted.sort_unstable();
    let p99 = sorted[(sorted.len() * 99 / 100).min(sorted.len() - 1)];
    let start = sent_at.iter().copied().min().unwrap_or(0);
    let mut seconds: Vec<(usize, u64)> = Vec::new();
    for (&at, &latency) in sent_at.iter().zip(latencies) {
        let s = ((at - start) / 1_000_000) as usize;
        if seconds.len() <= s {
            seconds.resize(s + 1, (0, 0));
        }
        seconds[s].0 += usize::from(latency >= p99);
        seconds[s].1 = seconds[s].1.max(latency);
    }
    let cells: Vec<String> = seconds
        .iter()
        .map(|(n, max)| format!("{n}/{max}"))
        .collect();
    let _ = writeln!(
        std::io::stderr(),
        "trace window {run} from {:.2} s: p99 {p99} us; per second, samples at or above it / max us: {}",
        start as f64 / 1e6,
        cells.join(" ")
    );
}

/// The outcome of one attack, for the table.
struct Outcome {
    answer: String,
    baseline: Victim,
    victim: Victim,
    rss_growth_kib: u64,
    /// CPU time the hypervisor took from this VM during the attacked windows and during
    /// the baselines, in clock ticks of 10 ms ([`steal_ticks`]): time the server, the
    /// victim and the attacker wanted and did not get.
    steal: (u64, u64),
}

/// Runs `attack` beside a victim measured for `span`.
async fn under_attack<F>(server: &Server, baseline: Victim, span: Duration, f: F) -> Outcome
where
    F: std::future::Future<Output = String>,
{
    let before = server.rss_kib();
    let (answer, seen) = tokio::join!(f, victim(server.port, 2, span));
    let growth = server.rss_kib().saturating_sub(before);
    Outcome {
        answer,
        baseline,
        victim: seen,
        rss_growth_kib: growth,
        steal: (0, 0),
    }
}

/// The criteria `o` misses (none: the attack passed).
fn check(o: &Outcome) -> Vec<String> {
    let base = &o.baseline;
    let mut missed = Vec::new();
    if o.rss_growth_kib > RSS_BUDGET_KIB {
        missed.push(format!(
            "RSS grew by {} KiB, budget {RSS_BUDGET_KIB}",
            o.rss_growth_kib
        ));
    }
    let max_p99 = if long() {
        base.p99_us + base.p99_us / 10
    } else {
        (base.p99_us * 5).max(base.p99_us + 200_000)
    };
    // At least 90% of the share of its messages the victim got without the attack.
    let min_delivered = base.delivered * o.victim.expected * 9 / 10 / base.expected.max(1);
    if o.victim.delivered < min_delivered {
        missed.push(format!(
            "the victim got {} messages, {} without the attack",
            o.victim.delivered, base.delivered
        ));
    }
    if o.victim.p99_us > max_p99 {
        missed.push(format!(
            "victim p99 {} us, {} us without the attack (bound {max_p99})",
            o.victim.p99_us, base.p99_us
        ));
    }
    missed
}

/// Pipelines `frame` in bursts of `burst` (reading each burst's answers, so that the
/// flooder's own queue does not overflow) until one answer is `rate_limited`; how many were
/// sent by then.
async fn flood(ws: &mut Ws, frame: Value, burst: usize) -> usize {
    let until = Instant::now() + window();
    let mut sent = 0;
    while Instant::now() < until {
        for i in 0..burst {
            let mut f = frame.clone();
            f["id"] = json!(format!("f{sent}-{i}"));
            send(ws, f).await;
        }
        sent += burst;
        let mut limited = false;
        for _ in 0..burst {
            match next(ws).await {
                Frame::Json(f) if f["code"] == "rate_limited" => {
                    assert!(f["retry_after_ms"].as_u64().unwrap_or(0) >= 1, "{f}");
                    limited = true;
                }
                Frame::Json(_) => {}
                Frame::Closed(code) => panic!("the flooder was closed with {code}"),
            }
        }
        if limited {
            return sent;
        }
    }
    panic!("{sent} requests in one window and no rate_limited");
}

async fn churn(port: u16, crowd: &str) -> String {
    let mut ws = connect(port, "churner").await;
    let until = Instant::now() + window();
    let (mut cycles, mut limited) = (0, 0);
    while Instant::now() < until {
        let s = ask(&mut ws, "s", json!({"type": "subscribe", "channel": crowd})).await;
        let u = ask(
            &mut ws,
            "u",
            json!({"type": "unsubscribe", "channel": crowd}),
        )
        .await;
        limited += [&s, &u]
            .iter()
            .filter(|f| f["code"] == "rate_limited")
            .count();
        cycles += 1;
    }
    assert!(limited > 0, "{cycles} churn cycles and no rate_limited");
    format!("rate_limited after bursts; {cycles} cycles, {limited} refused")
}

async fn history_flood(port: u16) -> String {
    let sub = json!({"type": "subscribe", "channel": "archive"});
    // Another connection fills the archive: the historian starts with a full bucket.
    let mut archivist = connect(port, "archivist").await;
    assert_eq!(
        ask(&mut archivist, "s", sub.clone()).await["type"],
        "subscribed"
    );
    for i in 0..99 {
        let b = json!({"type": "broadcast", "channel": "archive", "event": "e", "data": "x".repeat(500)});
        ask(&mut archivist, &format!("b{i}"), b).await;
    }
    let mut ws = connect(port, "historian").await;
    assert_eq!(ask(&mut ws, "s", sub).await["type"], "subscribed");
    let n = flood(
        &mut ws,
        json!({"type": "history", "channel": "archive", "limit": 100}),
        10,
    )
    .await;
    format!("rate_limited after {n} pages of 100")
}

async fn presence_list_flood(port: u16, crowd: &str) -> String {
    let mut ws = connect(port, "lister").await;
    let sub = json!({"type": "subscribe", "channel": crowd});
    assert_eq!(ask(&mut ws, "s", sub).await["type"], "subscribed");
    let n = flood(&mut ws, json!({"type": "presence", "channel": crowd}), 100).await;
    format!("rate_limited after {n} lists")
}

async fn oversized_presence(port: u16, crowd: &str) -> String {
    let mut ws = connect(port, "bloater").await;
    let sub = json!({"type": "subscribe", "channel": crowd});
    assert_eq!(ask(&mut ws, "s", sub).await["type"], "subscribed");
    let until = Instant::now() + window();
    let mut refused = 0;
    while Instant::now() < until {
        let up = json!({"type": "presence:update", "channel": crowd, "data": {"blob": "x".repeat(100_000)}});
        let got = ask(&mut ws, "p", up).await;
        assert!(
            got["limit"] == "max_presence_data_bytes" || got["code"] == "rate_limited",
            "{got}"
        );
        refused += 1;
    }
    format!("limit_exceeded max_presence_data_bytes x{refused}")
}

async fn password_guessing(port: u16) -> String {
    let mut owner = connect(port, "owner").await;
    let room = json!({"type": "subscribe", "channel": "presence-vault", "room": {"password": "correct horse"}});
    assert_eq!(ask(&mut owner, "c", room).await["type"], "subscribed");
    let mut ws = connect(port, "guesser").await;
    let mut answers = Vec::new();
    for i in 0..20 {
        let guess = json!({"type": "subscribe", "channel": "presence-vault", "password": format!("guess {i}")});
        answers.push(ask(&mut ws, "g", guess).await["code"].clone());
    }
    let bad = answers.iter().filter(|c| **c == "bad_password").count();
    assert_eq!(bad, 5, "{answers:?}");
    assert!(
        answers[5..].iter().all(|c| *c == "rate_limited"),
        "{answers:?}"
    );
    let right =
        json!({"type": "subscribe", "channel": "presence-vault", "password": "correct horse"});
    assert_eq!(ask(&mut ws, "r", right).await["code"], "rate_limited");
    "5 bad_password, then rate_limited (the right password too)".into()
}

/// Rooms created with passwords from every connection one user may open: each costs a
/// memory-hard hash and no wrong password (LIMIT-16 does not count it), so the hashes are
/// the server's to bound (`password_hash_threads`, off the core's lock).
async fn password_rooms(port: u16) -> String {
    let mut founders = Vec::new();
    for _ in 0..PER_USER {
        founders.push(connect(port, "founder").await);
    }
    let until = Instant::now() + window();
    let create = |(c, mut ws): (usize, Ws)| async move {
        let mut answers: Vec<String> = Vec::new();
        let mut i = 0;
        while Instant::now() < until {
            let room = json!({"type": "subscribe", "channel": format!("presence-lock-{c}-{i}"),
                              "room": {"password": format!("secret {c} {i}")}});
            let got = ask(&mut ws, "c", room).await;
            let answer = match got["type"].as_str() {
                Some("subscribed") => "subscribed".to_owned(),
                _ => got["code"].as_str().unwrap_or("?").to_owned(),
            };
            assert!(
                ["subscribed", "limit_exceeded", "rate_limited"].contains(&answer.as_str()),
                "{got}"
            );
            let refused = answer != "subscribed";
            answers.push(answer);
            if refused {
                // What is measured is the hashing; a flood of refusals is the floods' case.
                break;
            }
            i += 1;
        }
        answers
    };
    let all: Vec<String> =
        futures_util::future::join_all(founders.into_iter().enumerate().map(create))
            .await
            .into_iter()
            .flatten()
            .collect();
    let count = |a: &str| all.iter().filter(|x| *x == a).count();
    format!(
        "{} rooms created with a password from {PER_USER} connections, each until refused: {} limit_exceeded, {} rate_limited",
        count("subscribed"),
        count("limit_exceeded"),
        count("rate_limited")
    )
}

async fn many_connections_one_user(port: u16) -> String {
    let mut open_ones = Vec::new();
    let mut refused = Vec::new();
    for _ in 0..PER_USER + 10 {
        match open(port, "hog").await {
            Ok(ws) => open_ones.push(ws),
            Err(code) => refused.push(code),
        }
    }
    assert_eq!(open_ones.len(), PER_USER);
    assert!(refused.iter().all(|c| *c == 4202), "{refused:?}");
    format!("{PER_USER} accepted, {} closed with 4202", refused.len())
}

async fn many_connections_one_address(port: u16) -> String {
    let mut open_ones = Vec::new();
    let mut refused = 0;
    for i in 0..PER_ADDRESS + 10 {
        match open(port, &format!("crowd-user-{i}")).await {
            Ok(ws) => open_ones.push(ws),
            Err(code) => {
                assert_eq!(code, 4202);
                refused += 1;
            }
        }
    }
    assert!(refused >= 10, "{refused}");
    // The victim's two connections and the crowd's count too: the rest of the address's.
    format!("{} accepted, {refused} closed with 4202", open_ones.len())
}

async fn too_many_channels(port: u16) -> String {
    let mut conns = Vec::new();
    let mut refused = None;
    'outer: for c in 0..3 {
        let mut ws = connect(port, &format!("hoarder-{c}")).await;
        for i in 0..100 {
            let name = format!("hoard-{c}-{i}");
            let got = ask(&mut ws, "s", json!({"type": "subscribe", "channel": name})).await;
            if got["code"] == "limit_exceeded" {
                assert_eq!(got["limit"], "max_channels", "{got}");
                refused = Some(c * 100 + i);
                conns.push(ws);
                break 'outer;
            }
            assert_eq!(got["type"], "subscribed", "{got}");
        }
        conns.push(ws);
    }
    let n = refused.expect("limit_exceeded max_channels");
    format!("limit_exceeded max_channels at the {}th new channel", n + 1)
}

/// The channels of the 4 publishers of [`hose`]: one each, so that no publisher receives
/// the others' frames (that fan-out, not the attack, would cost the victim); the
/// never-reading clients subscribe to all of them.
const HOSES: usize = 4;

fn hose_channels(prefix: &str) -> Vec<String> {
    (0..HOSES).map(|h| format!("{prefix}-{h}")).collect()
}

/// 60 KB frames the hose sends in one window: 40 a second (2.4 MB/s), and at least 150 (9 MB,
/// past the 1 MiB queue and the socket buffers): 200 in the long form's 5 s, 150 in the
/// short form's 2 s.
fn hose_frames() -> usize {
    (window().as_millis() as usize * 40 / 1000).max(150)
}

/// Publishers that send [`hose_frames`] frames of 60 KB from 4 connections, each on its own
/// channel of [`hose_channels`], paced evenly over the window (one connection's inbound
/// byte bucket, LIMIT-19, would pace a single one to about 17 frames a second); how many
/// were sent. Paced, not as fast as acknowledgements come: sent back to back, the 400
/// frames of a 10 s window went out in its first 3.8 s, and the victim's slowest 1% fell in
/// those seconds with readers and never-readers alike (`CHORUS_ATTACK_TRACE`), so that the
/// row measured the burst, not the client that does not read.
async fn hose(port: u16, prefix: &str) -> usize {
    let mut hoses = Vec::new();
    for channel in hose_channels(prefix) {
        let mut ws = connect(port, &channel).await;
        let sub = json!({"type": "subscribe", "channel": channel});
        assert_eq!(ask(&mut ws, "s", sub).await["type"], "subscribed");
        hoses.push((ws, channel));
    }
    let each = hose_frames() / HOSES;
    let interval = window() / each as u32;
    let offset = interval / HOSES as u32;
    let started = micros();
    let publish = |(h, (mut ws, channel)): (usize, (Ws, String))| async move {
        let start = tokio::time::Instant::now() + offset * h as u32;
        let mut tick = tokio::time::interval_at(start, interval);
        let mut sent = 0;
        for i in 0..each {
            tick.tick().await;
            let b = json!({"type": "broadcast", "id": format!("b{i}"), "channel": channel, "event": "big", "data": "y".repeat(60_000)});
            let answer = publish_big(&mut ws, b).await;
            sent += usize::from(answer["type"] == "broadcast:ack");
        }
        (ws, sent)
    };
    let done = futures_util::future::join_all(hoses.into_iter().enumerate().map(publish)).await;
    if std::env::var_os("CHORUS_ATTACK_TRACE").is_some() {
        let _ = writeln!(
            std::io::stderr(),
            "trace hose {prefix}: {:.2} s to {:.2} s",
            started as f64 / 1e6,
            micros() as f64 / 1e6
        );
    }
    done.iter().map(|(_, sent)| sent).sum()
}

/// Sends `frame` and returns its answer, skipping the other publishers' messages unparsed:
/// parsing 60 KB frames in this (debug) test process would cost the victim, measured in
/// the same process, more than the server does.
async fn publish_big(ws: &mut Ws, frame: Value) -> Value {
    send(ws, frame).await;
    loop {
        match tokio::time::timeout(Duration::from_secs(20), ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) if t.starts_with(r#"{"type":"message""#) => {}
            Ok(Some(Ok(Message::Text(t)))) => return serde_json::from_str(&t).expect("JSON"),
            Ok(Some(Ok(_))) => {}
            other => panic!("a publisher lost its connection: {other:?}"),
        }
    }
}

/// A client subscribed to the hose's channels that never reads. The server closes it with
/// 4200 when its queue overflows (LIMIT-8); the Close frame waits behind the megabytes in
/// the socket, and the server drops the connection when the client has not taken it
/// within the close handshake's 2 s, as it must with a client that never reads. So the
/// sleeper, reading everything once the hose is done (seconds later), sees the connection
/// end: with 4200 when it came in time, without a Close frame (1006) otherwise. That a
/// client reading again in time gets 4200 is tests/backpressure.rs's (chorus-server).
async fn never_reads(port: u16) -> String {
    let mut sleeper = connect(port, "sleeper").await;
    for channel in hose_channels("firehose") {
        let sub = json!({"type": "subscribe", "channel": channel});
        assert_eq!(ask(&mut sleeper, "s", sub).await["type"], "subscribed");
    }
    let sent = hose(port, "firehose").await;
    // Now read: what was on the wire, then the end.
    let mut frames = 0;
    loop {
        match next(&mut sleeper).await {
            Frame::Json(_) => frames += 1,
            Frame::Closed(code) => {
                if std::env::var_os("CHORUS_ATTACK_TRACE").is_some() {
                    let at = micros() as f64 / 1e6;
                    let _ = writeln!(
                        std::io::stderr(),
                        "trace never-reader closed {code} at {at:.2} s"
                    );
                }
                assert!(
                    code == 4200 || code == 1006,
                    "a client that never reads is closed with 4200 or, past the close handshake, dropped; got {code}"
                );
                let how = if code == 4200 {
                    "closed with 4200"
                } else {
                    "dropped 2 s after its 4200 Close (1006 to it)"
                };
                // The queue bound held: far fewer frames reached it than were sent.
                assert!(
                    frames < sent,
                    "the never-reader got {frames} of {sent} frames: it was not cut off"
                );
                return format!("{how} after {frames} of {sent} frames of 60 KB from 4 publishers");
            }
        }
    }
}

/// The time half-open upgrades are kept at: past the server's header timeout (5 s default).
fn slowloris_window() -> Duration {
    window().max(Duration::from_secs(6))
}

async fn slowloris_upgrade(port: u16) -> String {
    let mut socks = Vec::new();
    for _ in 0..100 {
        let mut s = TcpStream::connect(("127.0.0.1", port)).await.expect("tcp");
        s.write_all(b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            .await
            .expect("write");
        socks.push(s);
    }
    let started = Instant::now();
    let until = started + slowloris_window();
    // A header line every 300 ms from each, for as long as the server takes them.
    let mut last_write = vec![None; socks.len()];
    while Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(300)).await;
        for (s, last) in socks.iter_mut().zip(&mut last_write) {
            if last.is_none() && s.write_all(b"X-Slow: 1\r\n").await.is_err() {
                *last = Some(started.elapsed());
            }
        }
    }
    // Closed by the server: the read sees its end (or the reset a write provoked).
    let mut closed = 0;
    for s in &mut socks {
        let mut buf = [0u8; 256];
        let end = tokio::time::timeout(Duration::from_millis(200), async {
            loop {
                match tokio::io::AsyncReadExt::read(s, &mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => continue,
                }
            }
        })
        .await;
        closed += usize::from(end.is_ok());
    }
    // The server still accepts and serves a new client.
    let mut fresh = connect(port, "fresh").await;
    assert_eq!(
        ask(&mut fresh, "p", json!({"type": "ping"})).await["type"],
        "pong"
    );
    assert_eq!(
        closed,
        socks.len(),
        "every half-open upgrade must be closed by the server"
    );
    let first_refused = last_write
        .iter()
        .flatten()
        .min()
        .map_or(0.0, |d| d.as_secs_f64());
    format!(
        "{closed} of 100 half-open upgrades closed by the server within {:.0} s (first write refused at {first_refused:.1} s); new clients served",
        slowloris_window().as_secs_f64()
    )
}

/// SSE streams that never read while their channel carries large frames: each is ended
/// when its queue reaches the bound (LIMIT-8), and the server keeps serving others.
async fn slowloris_sse(port: u16) -> String {
    // A small receive window: the kernel buffers a few KiB for the sleeper, not MiBs, so
    // what it does not read stays in the server's queue.
    let mut socks = sse_streams(port, "sse-hose", "sse-sleeper", Some(4096)).await;
    let sent = hose(port, "sse-hose").await;
    // Read each stream to its end: the server must have ended every one.
    let mut ended = 0;
    for s in &mut socks {
        let mut buf = vec![0u8; 1 << 16];
        let end = tokio::time::timeout(Duration::from_secs(5), async {
            // The end of the response: the connection's end, or the last chunk of the
            // chunked body (HTTP/1.1 keeps the connection for another request).
            let mut tail = Vec::new();
            loop {
                match tokio::io::AsyncReadExt::read(s, &mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => {
                        tail.extend_from_slice(&buf[..n]);
                        if tail.ends_with(b"\r\n0\r\n\r\n") {
                            return;
                        }
                        let keep = tail.len().saturating_sub(16);
                        tail.drain(..keep);
                    }
                }
            }
        })
        .await;
        ended += usize::from(end.is_ok());
    }
    if std::env::var_os("CHORUS_ATTACK_TRACE").is_some() {
        let at = micros() as f64 / 1e6;
        let _ = writeln!(
            std::io::stderr(),
            "trace SSE never-readers read to their end at {at:.2} s"
        );
    }
    assert_eq!(
        ended,
        socks.len(),
        "SSE streams that never read must be ended: {ended} of them after {sent} frames"
    );
    format!("{ended} of 10 unread SSE streams ended after {sent} frames of 60 KB from 4 publishers")
}

/// 10 SSE streams of users `{user}-{i}`, each on the channels of [`hose_channels`]`(prefix)`,
/// their receive buffers set to `recv_buffer` bytes when given.
async fn sse_streams(
    port: u16,
    prefix: &str,
    user: &str,
    recv_buffer: Option<u32>,
) -> Vec<TcpStream> {
    let channels: Vec<String> = hose_channels(prefix)
        .iter()
        .map(|c| format!("channel={c}"))
        .collect();
    let channels = channels.join("&");
    let mut socks = Vec::new();
    for i in 0..10 {
        let sock = tokio::net::TcpSocket::new_v4().expect("socket");
        if let Some(bytes) = recv_buffer {
            sock.set_recv_buffer_size(bytes).expect("SO_RCVBUF");
        }
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        let mut s = sock.connect(addr).await.expect("tcp");
        let req = format!(
            "GET /sse?{channels}&token={} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n",
            token(&format!("{user}-{i}"))
        );
        s.write_all(req.as_bytes()).await.expect("write");
        socks.push(s);
    }
    socks
}

/// The baseline of a never-reading attack: the same publishers, and in place of the
/// never-readers clients of the same kind that read everything (their bytes discarded
/// unparsed), so that what is compared is a client that does not read against one that
/// does.
async fn baseline_with_readers(port: u16, attack: Attack) -> Victim {
    const PREFIX: &str = "calm-hose";
    let mut readers = Vec::new();
    if attack == Attack::SseNeverRead {
        for mut s in sse_streams(port, PREFIX, "sse-reader", None).await {
            readers.push(tokio::spawn(async move {
                let mut buf = vec![0u8; 1 << 16];
                while let Ok(n) = tokio::io::AsyncReadExt::read(&mut s, &mut buf).await {
                    if n == 0 {
                        break;
                    }
                }
            }));
        }
    } else {
        let mut reader = connect(port, "reader").await;
        for channel in hose_channels(PREFIX) {
            let sub = json!({"type": "subscribe", "channel": channel});
            assert_eq!(ask(&mut reader, "s", sub).await["type"], "subscribed");
        }
        readers.push(tokio::spawn(async move {
            while let Some(Ok(_)) = reader.next().await {}
        }));
    }
    let (victim, _) = tokio::join!(victim(port, 1, window()), hose(port, PREFIX));
    for r in readers {
        r.abort();
    }
    victim
}

/// The attacks, each run against a server of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Attack {
    /// No attack: a second window of the victim beside its baseline, which shows what the
    /// criterion makes of the machine's own noise.
    Control,
    Churn,
    HistoryFlood,
    PresenceListFlood,
    OversizedPresence,
    PasswordGuessing,
    PasswordRooms,
    ManyConnectionsOneUser,
    SseNeverRead,
    NeverReads,
    SlowlorisUpgrade,
    TooManyChannels,
    ManyConnectionsOneAddress,
}

impl Attack {
    const ALL: [Attack; 13] = [
        Attack::Control,
        Attack::Churn,
        Attack::HistoryFlood,
        Attack::PresenceListFlood,
        Attack::OversizedPresence,
        Attack::PasswordGuessing,
        Attack::PasswordRooms,
        Attack::ManyConnectionsOneUser,
        Attack::SseNeverRead,
        Attack::NeverReads,
        Attack::SlowlorisUpgrade,
        Attack::TooManyChannels,
        Attack::ManyConnectionsOneAddress,
    ];

    fn name(self) -> &'static str {
        match self {
            Attack::Control => "none (the control)",
            Attack::Churn => "subscribe/unsubscribe churn on a crowded presence channel",
            Attack::HistoryFlood => "history flood",
            Attack::PresenceListFlood => "presence list flood",
            Attack::OversizedPresence => "oversized presence data",
            Attack::PasswordGuessing => "room password guessing",
            Attack::PasswordRooms => "rooms created with passwords",
            Attack::ManyConnectionsOneUser => "many connections of one user",
            Attack::SseNeverRead => "SSE streams that never read",
            Attack::NeverReads => "a client that never reads",
            Attack::SlowlorisUpgrade => "slowloris on the HTTP upgrade",
            Attack::TooManyChannels => "channels created without end",
            Attack::ManyConnectionsOneAddress => "many connections from one address",
        }
    }

    /// Whether the attack rides on legitimate load, which its baseline then has too: the
    /// never-reading clients subscribe to 4 publishers of 60 KB frames, and their baseline
    /// has the same publishers with clients that read ([`baseline_with_readers`]).
    fn rides_on_publishers(self) -> bool {
        matches!(self, Attack::NeverReads | Attack::SseNeverRead)
    }

    /// How long the attack lasts, and the victim beside it.
    fn span(self) -> Duration {
        match self {
            Attack::SlowlorisUpgrade => slowloris_window(),
            _ => window(),
        }
    }

    async fn run(self, port: u16, crowd: &str) -> String {
        match self {
            Attack::Control => {
                tokio::time::sleep(window()).await;
                "nothing to answer".to_owned()
            }
            Attack::Churn => churn(port, crowd).await,
            Attack::HistoryFlood => history_flood(port).await,
            Attack::PresenceListFlood => presence_list_flood(port, crowd).await,
            Attack::OversizedPresence => oversized_presence(port, crowd).await,
            Attack::PasswordGuessing => password_guessing(port).await,
            Attack::PasswordRooms => password_rooms(port).await,
            Attack::ManyConnectionsOneUser => many_connections_one_user(port).await,
            Attack::SseNeverRead => slowloris_sse(port).await,
            Attack::NeverReads => never_reads(port).await,
            Attack::SlowlorisUpgrade => slowloris_upgrade(port).await,
            Attack::TooManyChannels => too_many_channels(port).await,
            Attack::ManyConnectionsOneAddress => many_connections_one_address(port).await,
        }
    }
}

/// The attacks `CHORUS_ATTACK_ONLY` selects (a part of their name), or all of them.
fn selected() -> Vec<Attack> {
    let only = std::env::var("CHORUS_ATTACK_ONLY").unwrap_or_default();
    Attack::ALL
        .into_iter()
        .filter(|a| a.name().contains(only.as_str()))
        .collect()
}

/// One attack on a fresh server: a crowded presence channel, a warm-up, the victim's
/// baseline, then the attack beside the victim.
async fn isolated(attack: Attack) -> Outcome {
    let server = at_test_priority(Server::start).await;
    let port = server.port;
    // A crowded presence channel: every join and leave of the churner fans out to 15.
    let crowd = "presence-crowd";
    let mut members = Vec::new();
    for i in 0..15 {
        let mut m = connect(port, &format!("member-{i}")).await;
        let got = ask(&mut m, "s", json!({"type": "subscribe", "channel": crowd})).await;
        assert_eq!(got["type"], "subscribed");
        members.push(m);
    }
    // Members must read (their presence diffs), or they become the slow consumers.
    let drain = tokio::spawn(async move {
        let mut streams = futures_util::stream::select_all(members.into_iter().map(|m| m.boxed()));
        while streams.next().await.is_some() {}
    });
    let _warmup = victim(port, 0, Duration::from_millis(500)).await;
    let pid = server.child.id().to_string();
    let faults = || (major_faults(&pid), major_faults("self"), steal_ticks());
    let at_start = faults();
    let baseline = if attack.rides_on_publishers() {
        baseline_with_readers(port, attack).await
    } else {
        victim(port, 1, window()).await
    };
    let at_attack = faults();
    let mut outcome = under_attack(&server, baseline, attack.span(), attack.run(port, crowd)).await;
    let at_end = faults();
    outcome.steal = (at_end.2 - at_attack.2, at_attack.2 - at_start.2);
    if std::env::var_os("CHORUS_ATTACK_TRACE").is_some() {
        let _ = writeln!(
            std::io::stderr(),
            "trace major page faults: server {} in the baseline, {} under attack; test process {}, {}; steal ticks {}, {}",
            at_attack.0 - at_start.0,
            at_end.0 - at_attack.0,
            at_attack.1 - at_start.1,
            at_end.1 - at_attack.1,
            at_attack.2 - at_start.2,
            at_end.2 - at_attack.2
        );
    }
    drain.abort();
    outcome
}

/// [`rounds`] rounds of `attack`, pooled: the baselines' latencies together, the attacked
/// windows' together, the larger RSS growth, the last answer.
async fn pooled_rounds(attack: Attack) -> Outcome {
    let mut o = isolated(attack).await;
    for _ in 1..rounds() {
        let next = isolated(attack).await;
        o = Outcome {
            answer: next.answer,
            baseline: o.baseline.pooled(next.baseline),
            victim: o.victim.pooled(next.victim),
            rss_growth_kib: o.rss_growth_kib.max(next.rss_growth_kib),
            steal: (o.steal.0 + next.steal.0, o.steal.1 + next.steal.1),
        };
    }
    o
}

fn panic_text(e: tokio::task::JoinError) -> String {
    match e.try_into_panic() {
        Ok(p) => p
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| p.downcast_ref::<&str>().map(|s| (*s).to_owned()))
            .unwrap_or_else(|| "panicked".to_owned()),
        Err(e) => e.to_string(),
    }
}

#[test]
fn hostile_clients_get_the_specs_answer_and_spare_the_others() {
    let _ = epoch();
    // From this thread, at the test's priority, before any thread of the runtime exists.
    let _ = spawner();
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .on_thread_start(|| set_nice(ATTACKER_NICE))
        .build()
        .expect("the attackers' runtime")
        .block_on(every_attack());
}

async fn every_attack() {
    let started = Instant::now();
    let attacks = selected();
    assert!(!attacks.is_empty(), "CHORUS_ATTACK_ONLY selects no attack");
    let mut rows = Vec::new();
    let mut failed = Vec::new();
    for attack in attacks {
        // Its own task: a failed assertion inside one attack ends that attack only.
        let row = match tokio::spawn(pooled_rounds(attack)).await {
            Ok(o) => {
                let missed = check(&o);
                let row = format!(
                    "| {} | {} | {} ({} without) | {} ({} without) | {} | {} ({} without) |{}",
                    attack.name(),
                    o.answer,
                    o.victim.delivered,
                    o.baseline.delivered,
                    o.victim.p99_us,
                    o.baseline.p99_us,
                    o.rss_growth_kib,
                    o.steal.0,
                    o.steal.1,
                    if missed.is_empty() {
                        String::new()
                    } else {
                        format!(" FAILED: {}", missed.join("; "))
                    }
                );
                if !missed.is_empty() {
                    failed.push(format!("{}: {}", attack.name(), missed.join("; ")));
                }
                row
            }
            Err(e) => {
                let why = panic_text(e);
                failed.push(format!("{}: {why}", attack.name()));
                format!("| {} | FAILED: {why} | | | | |", attack.name())
            }
        };
        let _ = writeln!(std::io::stderr(), "{row}");
        rows.push(row);
    }
    let table = format!(
        "| attack | attacker's answer | victim delivered | victim p99 us | RSS growth KiB | steal ticks |\n|---|---|---|---|---|---|\n{}\ntotal {:.1} s",
        rows.join("\n"),
        started.elapsed().as_secs_f64()
    );
    let _ = writeln!(std::io::stderr(), "{table}");
    assert!(failed.is_empty(), "attacks failed:\n{}", failed.join("\n"));
}
