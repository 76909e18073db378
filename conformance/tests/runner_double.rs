//! The runner's grading logic checked against a scripted WebSocket peer: a test double
//! whose misbehaviours are chosen per test, not a Chorus server to grade.

// The handshake callback signature is tungstenite's; its large error type is not ours.
#![allow(clippy::result_large_err)]

use std::sync::{Arc, Mutex};

use chorus_conformance::fixture;
use chorus_conformance::runner::{RunConfig, Runner};
use chorus_conformance::suite::LoadedFixture;
use chorus_conformance::tokens::TokenSource;
use chorus_conformance::verdict::{PartVerdict, Verdict};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;

/// How the double answers.
#[derive(Clone, Copy, PartialEq)]
enum Script {
    Good,
    WrongPongId,
    StrayFrameAfterPong,
    StringTs,
    /// A `pong` with a member v1 does not define (allowed for a later revision only).
    ExtraMember,
    /// A `welcome` announcing a capability token v1 does not define.
    UnknownCapability,
    CloseOnBinary(u16),
}

fn welcome(script: Script) -> Value {
    let mut welcome = v1_welcome();
    if script == Script::UnknownCapability {
        welcome["capabilities"] = json!(["presence", "teleport"]);
    }
    welcome
}

fn v1_welcome() -> Value {
    json!({"type":"welcome","protocol":"chorus.v1","connection_id":"c-1",
        "user":{"id":"u","profile":{}},"tenant":"","heartbeat":{"interval_ms":30000,"timeout_ms":60000},
        "limits":{"max_frame_bytes":4096,"max_subscriptions":100,"max_channel_name_len":200,
        "broadcast_rate_per_sec":50,"broadcast_burst":100,"max_presence_members":1000,"max_room_users":1000,
        "history_limit":100,"max_json_depth":32,"cursor_interval_ms":50,"presence_grace_ms":5000,"dedup_window_ms":120000},
        "capabilities":["presence"],"server":"double/0"})
}

/// Starts the double; returns its URL and the sizes of text frames it received.
async fn double(script: Script) -> (String, Arc<Mutex<Vec<usize>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}/ws", listener.local_addr().unwrap());
    let sizes = Arc::new(Mutex::new(Vec::new()));
    let seen = sizes.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let seen = seen.clone();
            tokio::spawn(async move {
                let cb = |_: &Request, mut resp: Response| {
                    resp.headers_mut()
                        .insert("sec-websocket-protocol", "chorus.v1".parse().unwrap());
                    Ok(resp)
                };
                let Ok(mut ws) = tokio_tungstenite::accept_hdr_async(tcp, cb).await else {
                    return;
                };
                let _ = ws.send(Message::text(welcome(script).to_string())).await;
                while let Some(Ok(msg)) = ws.next().await {
                    match msg {
                        Message::Text(t) => {
                            seen.lock().unwrap().push(t.len());
                            let Ok(v) = serde_json::from_str::<Value>(t.as_str()) else {
                                continue;
                            };
                            if v["type"] != "ping" {
                                continue;
                            }
                            let mut pong = json!({"type":"pong","ts":1_700_000_000_000u64});
                            if let Some(id) = v.get("id") {
                                pong["id"] = id.clone();
                            }
                            match script {
                                Script::WrongPongId => pong["id"] = json!("other"),
                                Script::StringTs => pong["ts"] = json!("now"),
                                Script::ExtraMember => pong["debug"] = json!(true),
                                _ => {}
                            }
                            let _ = ws.send(Message::text(pong.to_string())).await;
                            if script == Script::StrayFrameAfterPong {
                                let _ = ws
                                    .send(Message::text(json!({"type":"pong","ts":2}).to_string()))
                                    .await;
                            }
                        }
                        Message::Binary(_) => {
                            if let Script::CloseOnBinary(code) = script {
                                let frame = CloseFrame {
                                    code: CloseCode::from(code),
                                    reason: "".into(),
                                };
                                let _ = ws.close(Some(frame)).await;
                            }
                        }
                        _ => {}
                    }
                }
            });
        }
    });
    (url, sizes)
}

async fn runner(script: Script) -> (Runner, Arc<Mutex<Vec<usize>>>) {
    let (url, sizes) = double(script).await;
    let mut config = RunConfig::new(&url, TokenSource::Secret("s".into()));
    config.max_wait_ms = 2000;
    (Runner::new(config).await.unwrap(), sizes)
}

fn case(level: &str, extra: &str, steps: Value) -> LoadedFixture {
    let text = format!(
        r#"{{"id":"connection.double.case","title":"t","requirements":["CONN-12"],"level":"{level}",
        "clients":{{"a":{{}}}}{extra},"steps":{steps}}}"#
    );
    LoadedFixture {
        file: "fixtures/connection/double.json".into(),
        fixture: fixture::parse("double.json", &text).unwrap(),
    }
}

fn ping_case() -> LoadedFixture {
    case(
        "MUST",
        "",
        json!([{"connect": "a"}, {"send": "a", "frame": {"type": "ping", "id": "p1"}},
            {"expect": "a", "frame": {"type": "pong", "id": "p1", "ts": "$uint"}},
            {"expect_none": "a", "within_ms": 200}]),
    )
}

#[tokio::test]
async fn well_behaved_peer_passes() {
    let (r, _) = runner(Script::Good).await;
    let result = r.run_case(&ping_case(), 1).await;
    assert_eq!(result.verdict, Verdict::Pass, "{result:#?}");
    assert_eq!(result.message_verdict, PartVerdict::Pass);
    assert_eq!(result.close_verdict, PartVerdict::NotChecked);
}

#[tokio::test]
async fn wrong_frame_fails_with_path_and_transcript() {
    let (r, _) = runner(Script::WrongPongId).await;
    let result = r.run_case(&ping_case(), 1).await;
    assert_eq!(result.verdict, Verdict::Fail);
    let f = &result.failures[0];
    assert_eq!(f.step, "3");
    assert!(f.message.contains("/id"), "{}", f.message);
    assert!(f.actual.as_deref().unwrap().contains("other"));
    assert_eq!(result.failed_step, Some(2));
    assert!(
        result
            .transcript
            .iter()
            .any(|e| e.text.contains("\"other\"")),
        "transcript lacks the frame"
    );
}

#[tokio::test]
async fn expect_none_catches_a_stray_frame() {
    let (r, _) = runner(Script::StrayFrameAfterPong).await;
    let result = r.run_case(&ping_case(), 1).await;
    assert_eq!(result.verdict, Verdict::Fail);
    assert_eq!(result.failures[0].step, "4");
    assert_eq!(result.failures[0].action, "expect_none");
}

#[tokio::test]
async fn schema_violation_names_type_and_field() {
    let (r, _) = runner(Script::StringTs).await;
    let lf = case(
        "SHOULD",
        "",
        json!([{"connect": "a"}, {"send": "a", "frame": {"type": "ping", "id": 1}},
            {"expect": "a", "frame": {"type": "pong", "id": 1}}]),
    );
    let result = r.run_case(&lf, 1).await;
    // A schema violation fails even a SHOULD case.
    assert_eq!(result.verdict, Verdict::Fail);
    let v = &result.schema_violations[0].violation;
    assert_eq!(v.message_type.as_deref(), Some("pong"));
    assert_eq!(v.path, "/ts");
}

/// Leniency is for clients (VER-9): the suite grades a v1 server with the strict schema, so a
/// member or a capability token v1 does not define is still a failure.
#[tokio::test]
async fn a_member_v1_does_not_define_fails_the_case() {
    let (r, _) = runner(Script::ExtraMember).await;
    let result = r.run_case(&ping_case(), 1).await;
    assert_eq!(result.verdict, Verdict::Fail, "{result:#?}");
    let v = &result.schema_violations[0].violation;
    assert_eq!(v.message_type.as_deref(), Some("pong"));
    assert!(v.message.contains("debug"), "{}", v.message);
}

#[tokio::test]
async fn a_capability_v1_does_not_define_fails_the_case() {
    let (r, _) = runner(Script::UnknownCapability).await;
    let result = r.run_case(&ping_case(), 1).await;
    assert_eq!(result.verdict, Verdict::Fail, "{result:#?}");
    let v = &result.schema_violations[0].violation;
    assert_eq!(v.message_type.as_deref(), Some("welcome"));
    assert!(v.path.starts_with("/capabilities"), "{}", v.path);
}

#[tokio::test]
async fn close_is_graded_apart_from_messages() {
    let (r, _) = runner(Script::CloseOnBinary(1000)).await;
    let lf = case(
        "MUST",
        "",
        json!([{"connect": "a"}, {"send_binary": "a", "hex": "0001"},
            {"expect_close": "a", "code": 1003}]),
    );
    let result = r.run_case(&lf, 1).await;
    assert_eq!(result.verdict, Verdict::Fail);
    assert_eq!(result.close_verdict, PartVerdict::Fail);
    assert_eq!(result.message_verdict, PartVerdict::Pass);
    assert!(result.failures[0]
        .actual
        .as_deref()
        .unwrap()
        .contains("1000"));
}

#[tokio::test]
async fn right_close_code_passes() {
    let (r, _) = runner(Script::CloseOnBinary(1003)).await;
    let lf = case(
        "MUST",
        "",
        json!([{"connect": "a"}, {"send_binary": "a", "base64": "AAE="},
            {"expect_close": "a", "code": [1003, 1002]}]),
    );
    let result = r.run_case(&lf, 1).await;
    assert_eq!(result.verdict, Verdict::Pass, "{result:#?}");
    assert_eq!(result.close_verdict, PartVerdict::Pass);
}

#[tokio::test]
async fn should_case_failure_is_a_warning() {
    let (r, _) = runner(Script::WrongPongId).await;
    let mut lf = ping_case();
    lf.fixture.level = fixture::CaseLevel::Should;
    assert_eq!(r.run_case(&lf, 1).await.verdict, Verdict::Warn);
}

#[tokio::test]
async fn unannounced_capability_skips_but_notes_an_answer() {
    let (r, _) = runner(Script::Good).await;
    let lf = case(
        "MUST",
        r#","capabilities":["state"]"#,
        json!([{"connect": "a"}, {"alive": "a"}]),
    );
    let result = r.run_case(&lf, 1).await;
    assert_eq!(result.verdict, Verdict::Skipped);
    assert!(result.reason.as_deref().unwrap().contains("state"));
    assert!(result.answered_unannounced);
}

#[tokio::test]
async fn long_wait_is_untestable() {
    let (r, _) = runner(Script::Good).await;
    let lf = case(
        "MUST",
        "",
        json!([{"connect": "a"}, {"sleep_ms": "${heartbeat.timeout_ms}"}]),
    );
    let result = r.run_case(&lf, 1).await;
    assert_eq!(result.verdict, Verdict::Untestable);
    assert!(result.reason.as_deref().unwrap().contains("60000"));
}

#[tokio::test]
async fn unknown_placeholder_is_a_harness_error() {
    let (r, _) = runner(Script::Good).await;
    let lf = case(
        "MUST",
        "",
        json!([{"connect": "a"}, {"send": "a", "frame": {"type": "ping", "id": "${nope}"}}]),
    );
    let result = r.run_case(&lf, 1).await;
    assert_eq!(result.verdict, Verdict::Error);
    assert!(result.reason.as_deref().unwrap().contains("nope"));
}

#[tokio::test]
async fn oversize_frame_has_exactly_the_asked_size() {
    let (r, sizes) = runner(Script::Good).await;
    let lf = case(
        "MUST",
        "",
        json!([{"connect": "a"}, {"send_oversize": "a", "bytes": "${limits.max_frame_bytes}+1"}, {"alive": "a"}]),
    );
    let result = r.run_case(&lf, 1).await;
    assert_eq!(result.verdict, Verdict::Pass, "{result:#?}");
    assert!(
        sizes.lock().unwrap().contains(&4097),
        "{:?}",
        sizes.lock().unwrap()
    );
}

#[tokio::test]
async fn captures_flow_into_later_steps() {
    let (r, _) = runner(Script::Good).await;
    let lf = case(
        "MUST",
        "",
        json!([{"connect": "a", "welcome": {"connection_id": "$capture:cid"}},
            {"send": "a", "frame": {"type": "ping", "id": "${cid}"}},
            {"expect": "a", "frame": {"type": "pong", "id": "c-1"}},
            {"repeat": 2, "steps": [
                {"send": "a", "frame": {"type": "ping", "id": "r{i}"}},
                {"expect": "a", "frame": {"type": "pong", "id": "r{i}"}}]}]),
    );
    let result = r.run_case(&lf, 1).await;
    assert_eq!(result.verdict, Verdict::Pass, "{result:#?}");
}

#[tokio::test]
async fn ignore_any_does_not_swallow_the_awaited_frame() {
    let (r, _) = runner(Script::Good).await;
    let lf = case(
        "MUST",
        "",
        json!([{"connect": "a"},
            {"send": "a", "frame": {"type": "ping", "id": "p1"}},
            {"send": "a", "frame": {"type": "ping", "id": "p2"}},
            {"expect": "a", "frame": {"type": "pong", "id": "p2"}, "ignore": ["$any"]},
            {"send": "a", "frame": {"type": "ping", "id": "p3"}},
            {"expect_set": "a", "frames": [{"type": "pong", "id": "p3"}], "ignore": ["$any"]}]),
    );
    let result = r.run_case(&lf, 1).await;
    assert_eq!(result.verdict, Verdict::Pass, "{result:#?}");
}

fn welcome_case(limits: Value) -> LoadedFixture {
    case(
        "MUST",
        "",
        json!([{"connect": "a", "welcome": {"limits": limits}}]),
    )
}

#[tokio::test]
async fn a_capture_is_compared_within_its_own_frame() {
    let (r, _) = runner(Script::Good).await;
    // The double announces max_presence_members = max_room_users = 1000, history_limit 100,
    // max_json_depth 32.
    let ok = welcome_case(json!({"max_presence_members": "$capture:m",
        "max_room_users": "${m}", "history_limit": {"$lt": "${m}"},
        "max_json_depth": {"$lte": "${m}-968"}, "max_frame_bytes": {"$not": "${m}"}}));
    let result = r.run_case(&ok, 1).await;
    assert_eq!(result.verdict, Verdict::Pass, "{result:#?}");
    let wrong = welcome_case(
        json!({"max_presence_members": "$capture:m", "history_limit": {"$gt": "${m}"}}),
    );
    let result = r.run_case(&wrong, 1).await;
    assert_eq!(result.verdict, Verdict::Fail, "{result:#?}");
    assert!(result.failures[0].message.contains("history_limit"));
}

#[tokio::test]
async fn a_reference_to_an_earlier_capture_means_the_earlier_value() {
    let (r, _) = runner(Script::Good).await;
    let successor = |second: u64| {
        case(
            "MUST",
            "",
            json!([{"connect": "a"},
                {"send": "a", "frame": {"type": "ping", "id": 1}},
                {"expect": "a", "frame": {"type": "pong", "id": "$capture:n"}},
                {"send": "a", "frame": {"type": "ping", "id": second}},
                {"expect": "a", "frame": {"type": "pong", "id": {"$capture": "n", "$match": "${n}+1"}}}]),
        )
    };
    assert_eq!(r.run_case(&successor(2), 1).await.verdict, Verdict::Pass);
    assert_eq!(r.run_case(&successor(3), 1).await.verdict, Verdict::Fail);
}

#[test]
fn placeholder_nested_in_an_optional_object_passes_the_static_check() {
    let text = r#"{"id":"rooms.options.nested-placeholder","title":"t","requirements":["ROOM-11"],
        "level":"MUST","clients":{"a":{}},"steps":[{"connect":"a"},
        {"send":"a","frame":{"type":"subscribe","id":1,"channel":"presence-{run}",
         "room":{"max_users":"${limits.max_room_users}+1"}}}]}"#;
    let mut suite = chorus_conformance::suite::Suite::embedded().unwrap();
    suite.fixtures = vec![LoadedFixture {
        file: "fixtures/rooms/nested-placeholder.json".into(),
        fixture: fixture::parse("f.json", text).unwrap(),
    }];
    assert_eq!(suite.problems(), Vec::<String>::new());
    // The same frame with a literal of the wrong type is still a problem.
    suite.fixtures[0].fixture = fixture::parse(
        "f.json",
        &text.replace("\"${limits.max_room_users}+1\"", "\"many\""),
    )
    .unwrap();
    assert_eq!(suite.problems().len(), 1, "{:?}", suite.problems());
}

#[tokio::test]
async fn unless_announced_skips_when_the_capability_is_announced() {
    let (r, _) = runner(Script::Good).await;
    let steps = |cap: &str| json!([{"unless_announced": [cap]}, {"connect": "a"}, {"alive": "a"}]);
    let result = r.run_case(&case("MUST", "", steps("presence")), 1).await;
    assert_eq!(result.verdict, Verdict::Skipped);
    assert!(result
        .reason
        .as_deref()
        .unwrap()
        .contains("announced: presence"));
    assert!(!result.answered_unannounced);
    let result = r.run_case(&case("MUST", "", steps("rooms")), 1).await;
    assert_eq!(result.verdict, Verdict::Pass, "{result:#?}");
}

#[test]
fn unless_announced_must_lead_the_steps() {
    let text = r#"{"id":"connection.x.y","title":"t","requirements":["CONN-12"],"level":"MUST",
        "clients":{"a":{}},"steps":[{"connect":"a"},{"unless_announced":["rooms"]}]}"#;
    let e = fixture::parse("f.json", text).unwrap_err().to_string();
    assert!(e.contains("must come before every other step"), "{e}");
}

#[tokio::test]
async fn pad_builds_a_payload_from_the_announced_limit() {
    let (r, sizes) = runner(Script::Good).await;
    let lf = case(
        "MUST",
        "",
        json!([{"connect": "a"},
            {"send": "a", "frame": {"type": "broadcast", "channel": "c", "event": "e",
                "data": {"$pad": "${limits.max_frame_bytes}-96"}}},
            {"send": "a", "frame": {"type": "ping", "id": {"$pad": "${limits.max_json_depth}", "prefix": "p-"}}},
            {"expect": "a", "frame": {"type": "pong", "id": {"$pad": 32, "prefix": "p-"}}}]),
    );
    let result = r.run_case(&lf, 1).await;
    assert_eq!(result.verdict, Verdict::Pass, "{result:#?}");
    let sizes = sizes.lock().unwrap();
    let empty = r#"{"channel":"c","data":"","event":"e","type":"broadcast"}"#;
    // 4096 - 96: a frame padded to the whole announced 4096 would exceed it, which makes
    // a case untestable (the harness never sends a frame over max_frame_bytes).
    assert_eq!(sizes[0], empty.len() + 4000, "{sizes:?}");
    assert_eq!(sizes[1], r#"{"id":"","type":"ping"}"#.len() + 32);
}

#[tokio::test]
async fn send_many_sends_every_copy() {
    let (r, sizes) = runner(Script::Good).await;
    let lf = case(
        "MUST",
        "",
        json!([{"connect": "a"},
            {"send_many": "a", "count": 40, "frame": {"type": "ping", "id": "m{i}"}},
            {"expect": "a", "frame": {"type": "pong", "id": "m39"}, "ignore": [{"type": "pong"}]}]),
    );
    let result = r.run_case(&lf, 1).await;
    assert_eq!(result.verdict, Verdict::Pass, "{result:#?}");
    assert_eq!(sizes.lock().unwrap().len(), 40);
}

#[tokio::test]
async fn paused_client_reads_nothing_until_resumed() {
    let (r, _) = runner(Script::Good).await;
    let lf = case(
        "MUST",
        "",
        json!([{"connect": "a"}, {"pause_reading": "a"},
            {"send": "a", "frame": {"type": "ping", "id": 1}},
            {"expect_none": "a", "within_ms": 300},
            {"resume_reading": "a"},
            {"expect": "a", "frame": {"type": "pong", "id": 1}}]),
    );
    let result = r.run_case(&lf, 1).await;
    assert_eq!(result.verdict, Verdict::Pass, "{result:#?}");
    // Without the pause the same case fails at expect_none.
    let mut unpaused = lf.clone();
    unpaused.fixture.steps.remove(1);
    let result = r.run_case(&unpaused, 1).await;
    assert_eq!(result.verdict, Verdict::Fail);
    assert_eq!(result.failures[0].action, "expect_none");
}

#[tokio::test]
async fn connect_many_generates_clients_up_to_the_cap() {
    let (r, _) = runner(Script::Good).await;
    let many = |count: Value| {
        case(
            "MUST",
            "",
            json!([{"connect_many": "m", "count": count, "client": {"user": "user-{i}"},
                "frames": [{"type": "ping", "id": "g{i}"}],
                "replies": [{"type": "pong", "id": "g{i}"}]}]),
        )
    };
    let result = r.run_case(&many(json!(3)), 1).await;
    assert_eq!(result.verdict, Verdict::Pass, "{result:#?}");
    assert!(
        result.transcript.is_empty(),
        "passing cases keep no transcript"
    );
    let result = r
        .run_case(&many(json!("${limits.max_presence_members}")), 1)
        .await;
    assert_eq!(result.verdict, Verdict::Untestable);
    assert!(
        result.reason.as_deref().unwrap().contains("1000"),
        "{:?}",
        result.reason
    );
    // A wrong reply names the generated client.
    let mut wrong = many(json!(2));
    if let fixture::Step::ConnectMany(m) = &mut wrong.fixture.steps[0] {
        m.replies = vec![json!({"type": "pong", "id": "g0"})];
    }
    let result = r.run_case(&wrong, 1).await;
    assert_eq!(result.verdict, Verdict::Fail);
    assert!(
        result.failures[0].message.starts_with("client m1:"),
        "{:?}",
        result.failures
    );
}

/// A one-shot SSE peer: answers any request with an event stream of `welcome`, a comment,
/// and (120 ms later) a `pong`, then ends. Returns its base URL and the request it saw.
async fn sse_double() -> (String, Arc<Mutex<String>>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(String::new()));
    let request = seen.clone();
    tokio::spawn(async move {
        let Ok((mut tcp, _)) = listener.accept().await else {
            return;
        };
        let mut buf = vec![0u8; 8192];
        let mut got = Vec::new();
        while !got.windows(4).any(|w| w == b"\r\n\r\n") {
            let Ok(n) = tcp.read(&mut buf).await else {
                return;
            };
            if n == 0 {
                return;
            }
            got.extend_from_slice(&buf[..n]);
        }
        *request.lock().unwrap() = String::from_utf8_lossy(&got).to_lowercase();
        let head = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\nconnection: close\r\n\r\n";
        let first = format!(
            "{head}event: welcome\ndata: {}\n\n: keep-alive\n\n",
            v1_welcome()
        );
        let _ = tcp.write_all(first.as_bytes()).await;
        tokio::time::sleep(std::time::Duration::from_millis(120)).await;
        let _ = tcp
            .write_all(b"event: pong\ndata: {\"type\":\"pong\",\"ts\":1}\n\n")
            .await;
        let _ = tcp.shutdown().await;
    });
    (url, seen)
}

#[tokio::test]
async fn sse_comments_pause_and_end_are_observable() {
    let (ws_url, _) = double(Script::Good).await;
    let (http_url, request) = sse_double().await;
    let mut config = RunConfig::new(&ws_url, TokenSource::Secret("s".into()));
    config.http_url = http_url;
    let r = Runner::new(config).await.unwrap();
    let lf = case(
        "MUST",
        "",
        json!([{"sse_open": "s", "channels": ["c"], "client": "a", "auth": "bearer",
                "expect_headers": {"content-type": {"$prefix": "text/event-stream"},
                                   "cache-control": "no-cache"}},
            {"sse_expect": "s", "frame": {"type": "welcome"}},
            {"sse_expect_comment": "s", "text": "keep-alive"},
            {"sse_pause_reading": "s"},
            {"sse_expect_none": "s", "within_ms": 400},
            {"sse_resume_reading": "s"},
            {"sse_expect": "s", "frame": {"type": "pong", "ts": 1}},
            {"sse_expect_end": "s"}]),
    );
    let result = r.run_case(&lf, 1).await;
    assert_eq!(result.verdict, Verdict::Pass, "{result:#?}");
    let seen = request.lock().unwrap().clone();
    assert!(seen.contains("authorization: bearer "), "{seen}");
    assert!(!seen.contains("token="), "{seen}");
}

#[tokio::test]
async fn sse_expect_comment_fails_on_an_event_first() {
    let (ws_url, _) = double(Script::Good).await;
    let (http_url, _) = sse_double().await;
    let mut config = RunConfig::new(&ws_url, TokenSource::Secret("s".into()));
    config.http_url = http_url;
    let r = Runner::new(config).await.unwrap();
    let lf = case(
        "MUST",
        "",
        json!([{"sse_open": "s", "channels": ["c"], "client": "a"},
            {"sse_expect_comment": "s"}]),
    );
    let result = r.run_case(&lf, 1).await;
    assert_eq!(result.verdict, Verdict::Fail, "{result:#?}");
    assert!(result.failures[0].message.contains("before a comment line"));
}
