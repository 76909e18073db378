//! The fixture format: one JSON file per case under `fixtures/<area>/`, described for people
//! in `conformance/FIXTURES.md` and for machines in `schema/fixture.schema.json`.
//!
//! A fixture is data: named clients and a list of steps. Expected frames are matcher trees
//! ([`crate::matcher`]); strings may carry placeholders ([`crate::template`]). The types here
//! only describe and parse; the runner gives them meaning.

use std::collections::BTreeMap;

use chorus_protocol::Capability;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use thiserror::Error;

/// One conformance case.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Fixture {
    /// Optional pointer to `schema/fixture.schema.json`, for editors.
    #[serde(rename = "$schema", default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<String>,
    /// Stable semantic id `<area>.<topic>.<behaviour>`; the first segment is the spec area
    /// and the fixture's folder.
    pub id: String,
    /// One line saying what the server must do.
    pub title: String,
    /// Longer explanation (why the case looks the way it does).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Requirement ids of `spec/` this case checks (at least one).
    pub requirements: Vec<String>,
    /// How a failure is graded: MUST fails, SHOULD and MAY warn.
    pub level: CaseLevel,
    /// Capabilities the server must announce in `welcome` for the case to run.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub capabilities: Vec<Capability>,
    /// Named clients; the name is used by steps and in transcripts.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub clients: BTreeMap<String, ClientSpec>,
    /// The conversation, run in order.
    pub steps: Vec<Step>,
}

/// Grading level of a case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum CaseLevel {
    /// A failure fails the run.
    #[serde(rename = "MUST")]
    Must,
    /// A failure is a warning (fails the run only with `--fail-on should`).
    #[serde(rename = "SHOULD")]
    Should,
    /// A failure is a warning.
    #[serde(rename = "MAY")]
    May,
}

impl CaseLevel {
    /// The level as written in fixtures and the spec.
    pub fn as_str(self) -> &'static str {
        match self {
            CaseLevel::Must => "MUST",
            CaseLevel::Should => "SHOULD",
            CaseLevel::May => "MAY",
        }
    }
}

/// How a client presents its token on the upgrade request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum TokenPlacement {
    /// `?token=` query parameter (the default, the browser path).
    #[default]
    Query,
    /// `Authorization: Bearer` header.
    Bearer,
    /// No token at all.
    None,
}

/// A named client: who it is (the claims of the token the harness mints) and how it connects.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ClientSpec {
    /// `sub` claim; defaults to the client's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// `profile` claim.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<Value>,
    /// `tenant` claim (absent = default tenant "").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// `channels` claim: glob patterns granting `private-` channels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channels: Option<Vec<String>>,
    /// `exp` claim = now + this many seconds (negative: already expired).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_in_s: Option<i64>,
    /// Raw claims merged over the ones above; a `null` value removes a claim.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claims: Option<serde_json::Map<String, Value>>,
    /// A literal token used instead of a minted one (e.g. `"not-a-jwt"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// Sign the minted token with this secret instead of the server's (a bad signature).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signing_secret: Option<String>,
    /// A near miss: the valid token with the last character of its signature changed (the
    /// signature's bits change, so it must be refused as badly signed).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub near_miss_signature: bool,
    /// Where the token goes on the upgrade request.
    #[serde(default, skip_serializing_if = "is_default_placement")]
    pub auth: TokenPlacement,
    /// Index into the `--url` list; defaults to spreading clients round-robin.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<usize>,
}

fn is_default_placement(p: &TokenPlacement) -> bool {
    *p == TokenPlacement::Query
}

/// A count or duration: a non-negative integer, or a template string evaluating to one
/// (`"${limits.max_frame_bytes}+1"`, `"${heartbeat.timeout_ms}"`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum NumExpr {
    /// A literal number.
    Literal(u64),
    /// A template: `${path}` with optional `+n`, `-n`, `*n`, `/n`, ` min n` or ` max n`,
    /// chained left to right, each `n` a number or another `${path}`.
    Template(String),
}

/// Who authenticates an HTTP request or SSE stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum HttpAuth {
    /// `"api_key"`: the `--api-key` in `X-Api-Key`; `"none"`: no credentials.
    Keyword(AuthKeyword),
    /// A client's token as `Authorization: Bearer` (or `token=` for SSE).
    Client {
        /// The client's name.
        client: String,
    },
    /// A literal API key (e.g. a wrong one).
    ApiKey {
        /// The key sent in `X-Api-Key`.
        api_key: String,
    },
}

/// Credential keywords of [`HttpAuth`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum AuthKeyword {
    /// The run's `--api-key`.
    ApiKey,
    /// A near miss: the run's `--api-key` without its last character.
    ApiKeyPrefix,
    /// A near miss: the run's `--api-key` with one character appended (SEC-14).
    ApiKeyExtended,
    /// A near miss: the run's `--api-key` with its last character changed.
    ApiKeyLastChanged,
    /// No credentials.
    None,
}

/// An HTTP request made by the harness.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HttpRequest {
    /// `GET`, `POST`, `PUT`, `PATCH`, `DELETE`.
    pub method: String,
    /// Path and query relative to the HTTP base, e.g. `/api/broadcast`.
    pub path: String,
    /// Credentials; default `"none"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<HttpAuth>,
    /// Sent as `X-Chorus-Tenant`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// Extra request headers.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// JSON body (placeholders substituted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<Value>,
    /// Raw body text, sent as is with `Content-Type: application/json` (bad input).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw_body: Option<String>,
    /// Query parameters appended to `path`, generated: `count` pairs `{name}={value}{i}`
    /// for i in 0..count, e.g. one channel more than `limits.max_subscriptions` (SSE-2e).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repeat_query: Option<RepeatQuery>,
    /// Index into the `--url` list (modulo its length): the request goes to that node's
    /// HTTP base, so that one case's requests cross a deployment's nodes (CLUS-14).
    /// Default: the HTTP base (`--http-url`, or derived from the first URL).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<usize>,
}

/// `repeat_query` of an HTTP request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RepeatQuery {
    /// The parameter's name, e.g. `channel`.
    pub name: String,
    /// How many pairs (at most 1000).
    pub count: NumExpr,
    /// The value's prefix (placeholders substituted); the pair's index is appended.
    pub value: String,
}

/// One step of a case. Each variant is recognised by its action key (`connect`, `send`, …),
/// whose value names the client (or stream) it acts on.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum Step {
    /// Open a WebSocket connection (again, after `close`/`drop`, to reconnect).
    Connect(Connect),
    /// Send a protocol frame (checked against `schema/client.schema.json`).
    Send(Send),
    /// Send a text frame as is: malformed JSON, forged fields, unknown types (not checked).
    SendRaw(SendRaw),
    /// Send a binary frame.
    SendBinary(SendBinary),
    /// Send a text frame whose payload is the given bytes (invalid UTF-8).
    SendBytesAsText(SendBytesAsText),
    /// Send a valid-looking text frame padded to exactly `bytes` bytes.
    SendOversize(SendOversize),
    /// Send a frame nested `depth` levels deep.
    SendDeep(SendDeep),
    /// The next frame(s) must match.
    Expect(Expect),
    /// The next frames must match a set, in any order.
    ExpectSet(ExpectSet),
    /// Nothing (or nothing matching) arrives within a window.
    ExpectNone(ExpectNone),
    /// The server closes the connection with a given code.
    ExpectClose(ExpectClose),
    /// `ping` with a fresh id gets its `pong`: the connection is alive and served.
    Alive(Alive),
    /// Close the connection gracefully (close frame).
    Close(Close),
    /// Drop the TCP connection without a close frame.
    Drop(DropStep),
    /// Wait.
    Sleep(Sleep),
    /// Run nested steps several times, `{i}` = 0-based iteration.
    Repeat(Repeat),
    /// An HTTP request and the response it must get.
    Http(HttpStep),
    /// Open an SSE stream.
    SseOpen(SseOpen),
    /// The next SSE event must match.
    SseExpect(SseExpect),
    /// No SSE event within a window.
    SseExpectNone(SseExpectNone),
    /// Close an SSE stream.
    SseClose(SseClose),
    /// A case condition: the case is skipped when the server announces any of these.
    UnlessAnnounced(UnlessAnnounced),
    /// A precondition on announced values: the case is untestable when it does not hold.
    Require(Require),
    /// Connect `count` generated clients, each sending and expecting the same frames.
    ConnectMany(ConnectMany),
    /// Send the same frame many times in a row (one transcript line).
    SendMany(SendMany),
    /// Stop reading a client's socket: what the server sends piles up in buffers.
    PauseReading(PauseReading),
    /// Read a paused client's socket again.
    ResumeReading(ResumeReading),
    /// The next SSE comment line (`:`) must arrive.
    SseExpectComment(SseExpectComment),
    /// The SSE stream must end.
    SseExpectEnd(SseExpectEnd),
    /// Stop reading an SSE stream.
    SsePauseReading(SsePauseReading),
    /// Read a paused SSE stream again.
    SseResumeReading(SseResumeReading),
}

/// `connect`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Connect {
    /// The client.
    pub connect: String,
    /// Wait for `welcome` as the first frame (default true). When false nothing is read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expect_welcome: Option<bool>,
    /// Matcher for the `welcome` frame (besides its schema).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub welcome: Option<Value>,
    /// Subprotocols offered (default `["chorus.v1"]`; `[]` offers none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocols: Option<Vec<String>>,
    /// Matcher for the selected subprotocol (`"$absent"` when none was selected).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expect_protocol: Option<Value>,
    /// The upgrade must be refused with this HTTP status (no connection results).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reject_status: Option<u16>,
    /// Extra query parameters on the upgrade URL.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub query: BTreeMap<String, String>,
    /// Extra upgrade request headers.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// Time allowed for the upgrade and `welcome`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub within_ms: Option<NumExpr>,
}

/// `send`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Send {
    /// The client.
    pub send: String,
    /// The frame, a valid client message once placeholders are substituted.
    pub frame: Value,
}

/// `send_raw`: exactly one of `text` or `json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SendRaw {
    /// The client.
    pub send_raw: String,
    /// Frame payload, sent verbatim (placeholders substituted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// A JSON value serialized as the payload, never schema-checked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub json: Option<Value>,
}

/// `send_binary`: exactly one of `base64` or `hex`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SendBinary {
    /// The client.
    pub send_binary: String,
    /// Payload in standard base64.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base64: Option<String>,
    /// Payload in hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hex: Option<String>,
}

/// `send_bytes_as_text`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SendBytesAsText {
    /// The client.
    pub send_bytes_as_text: String,
    /// Payload in hex (e.g. `"7b22c328"`: invalid UTF-8).
    pub hex: String,
}

/// `send_oversize`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SendOversize {
    /// The client.
    pub send_oversize: String,
    /// Payload size in bytes, e.g. `"${limits.max_frame_bytes}+1"`.
    pub bytes: NumExpr,
    /// The frame to pad (default: a `broadcast` on `pad-{run}`); the string `"$pad"` inside
    /// it is replaced by the padding.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frame: Option<Value>,
}

/// `send_deep`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SendDeep {
    /// The client.
    pub send_deep: String,
    /// Nesting depth of the whole frame, e.g. `"${limits.max_json_depth}+1"`.
    pub depth: NumExpr,
    /// The frame; the string `"$nest"` inside it is replaced by nested arrays so the frame
    /// reaches `depth` (default: a `broadcast` whose `data` is `"$nest"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frame: Option<Value>,
}

/// `expect`: exactly one of `frame` or `any_of`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    /// The client.
    pub expect: String,
    /// Matcher the next frame must satisfy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frame: Option<Value>,
    /// Alternatives the spec allows: the next frame must satisfy one (the first that matches
    /// wins; its captures are kept).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub any_of: Option<Vec<Value>>,
    /// Frames matching any of these are skipped (still recorded and schema-checked).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ignore: Vec<Value>,
    /// Time allowed (default 1000 ms, scaled).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub within_ms: Option<NumExpr>,
}

/// `expect_set`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExpectSet {
    /// The client.
    pub expect_set: String,
    /// The next `frames.len()` frames must match these, one each, in any order.
    pub frames: Vec<Value>,
    /// Frames matching any of these are skipped.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ignore: Vec<Value>,
    /// Time allowed for the whole set (default 1000 ms, scaled).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub within_ms: Option<NumExpr>,
}

/// `expect_none`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExpectNone {
    /// The client.
    pub expect_none: String,
    /// Window length (default 300 ms, scaled).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub within_ms: Option<NumExpr>,
    /// Only frames matching this are forbidden; others stay queued for later steps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub matching: Option<Value>,
}

/// A close code or several acceptable ones.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum CloseCodes {
    /// One code.
    One(u16),
    /// Any of these codes.
    Any(Vec<u16>),
}

impl CloseCodes {
    /// Whether `code` is acceptable.
    pub fn accepts(&self, code: u16) -> bool {
        match self {
            CloseCodes::One(c) => *c == code,
            CloseCodes::Any(cs) => cs.contains(&code),
        }
    }
}

/// `expect_close`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExpectClose {
    /// The client.
    pub expect_close: String,
    /// Acceptable close code(s).
    pub code: CloseCodes,
    /// Time allowed (default 1000 ms, scaled).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub within_ms: Option<NumExpr>,
    /// The close must not come before this many ms after the step starts (timing checks).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_before_ms: Option<NumExpr>,
    /// Frames matching any of these may arrive before the close; any other frame fails.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ignore: Vec<Value>,
    /// When the connection simply stays open, the case is untestable for this reason
    /// instead of failed: the spec calls that outcome inconclusive (a server whose bound is
    /// larger than the case can reach).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub open_is_untestable: Option<String>,
}

/// `alive`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Alive {
    /// The client.
    pub alive: String,
    /// Time allowed for the `pong` (default 1000 ms, scaled).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub within_ms: Option<NumExpr>,
}

/// `close`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Close {
    /// The client.
    pub close: String,
    /// Close code (default 1000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<u16>,
    /// Close reason.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// `drop`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DropStep {
    /// The client.
    pub drop: String,
}

/// `sleep_ms`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Sleep {
    /// Milliseconds (scaled by `--timeout-scale`).
    pub sleep_ms: NumExpr,
}

/// `repeat`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Repeat {
    /// Iterations.
    pub repeat: NumExpr,
    /// Steps run per iteration.
    pub steps: Vec<Step>,
}

/// `http`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HttpStep {
    /// The request.
    pub http: HttpRequest,
    /// Acceptable status(es).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expect_status: Option<CloseCodes>,
    /// Matcher for the JSON response body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expect_body: Option<Value>,
    /// Matchers for response headers (lower-case names).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub expect_headers: BTreeMap<String, Value>,
    /// Send this many copies of the request at once (`{i}` is the copy's index) and check
    /// every response: a burst whose arrival rate does not depend on how long the server
    /// takes to answer one request (a server syncing each write to disk).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrent: Option<NumExpr>,
}

/// `sse_open`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SseOpen {
    /// Stream name (its own namespace; often the client's name).
    pub sse_open: String,
    /// Channels (`channel=` query parameters): strings, or `{"$pad": n, "prefix": …}` for
    /// a name sized from the announced limits.
    pub channels: Vec<Value>,
    /// Whose token opens the stream (`token=` query); absent: no token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<String>,
    /// `Last-Event-ID` header to resume from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_event_id: Option<String>,
    /// Extra query parameters.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub query: BTreeMap<String, String>,
    /// Acceptable status(es) (default 200; other statuses leave no stream).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expect_status: Option<CloseCodes>,
    /// Where the client's token goes: `token=` query (default) or `Authorization: Bearer`.
    #[serde(default, skip_serializing_if = "is_default_placement")]
    pub auth: TokenPlacement,
    /// Matchers for response headers (lower-case names), e.g. `content-type`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub expect_headers: BTreeMap<String, Value>,
}

/// `sse_expect`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SseExpect {
    /// The stream.
    pub sse_expect: String,
    /// Matcher for the event's `data` (a server frame; its `event:` must equal its `type`).
    pub frame: Value,
    /// Matcher for the event's `id:` (e.g. `"$capture:lastid"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<Value>,
    /// Events whose data matches any of these are skipped.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ignore: Vec<Value>,
    /// Time allowed (default 1000 ms, scaled).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub within_ms: Option<NumExpr>,
}

/// `sse_expect_none`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SseExpectNone {
    /// The stream.
    pub sse_expect_none: String,
    /// Window length (default 300 ms, scaled).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub within_ms: Option<NumExpr>,
}

/// `sse_close`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SseClose {
    /// The stream.
    pub sse_close: String,
}

/// `unless_announced`: a condition on the server rather than an action; it must come before
/// every other step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UnlessAnnounced {
    /// The case runs only when the server's `welcome` announces none of these (it grades
    /// how a server without them answers, e.g. `error unsupported`).
    pub unless_announced: Vec<Capability>,
}

/// `require`: a precondition on what the server announced (a limit, a timer). When
/// `require` is below `at_least` the case is `untestable` with `reason`: a legal server
/// announcing that little cannot show the behaviour the case grades, which is not a
/// failure of the server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Require {
    /// The announced value, e.g. `"${limits.history_limit}"`.
    pub require: NumExpr,
    /// The least value the case can work with.
    pub at_least: NumExpr,
    /// What the case needs the room for (shown with the verdict).
    pub reason: String,
}

/// `connect_many`: `count` clients named `<prefix>0`, `<prefix>1`, … connect one after the
/// other; each then sends `frames` and expects `replies`. They stay connected to the end of
/// the case and read nothing more.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ConnectMany {
    /// Name prefix of the generated clients (also their default user ids).
    pub connect_many: String,
    /// How many, e.g. `"${limits.max_presence_members}-1"`. More than the harness's cap
    /// (200) makes the case untestable.
    pub count: NumExpr,
    /// Template of every generated client; `{i}` is the client's index.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<ClientSpec>,
    /// Frames each client sends after its `welcome`, in order (`{i}` = its index); each
    /// must be a valid client message.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub frames: Vec<Value>,
    /// Matchers for the frames each client must then receive, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub replies: Vec<Value>,
    /// Frames matching any of these are skipped while waiting for a reply.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ignore: Vec<Value>,
    /// Time allowed per client for its `welcome` and its replies (default 2000 ms, scaled).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub within_ms: Option<NumExpr>,
}

/// `send_many`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SendMany {
    /// The client.
    pub send_many: String,
    /// How many copies.
    pub count: NumExpr,
    /// The frame (a valid client message; `{i}` is the copy's index).
    pub frame: Value,
}

/// `pause_reading`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PauseReading {
    /// The client.
    pub pause_reading: String,
}

/// `resume_reading`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ResumeReading {
    /// The client.
    pub resume_reading: String,
}

/// `sse_expect_comment`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SseExpectComment {
    /// The stream.
    pub sse_expect_comment: String,
    /// Matcher for the comment's text (after the `:` and one optional space).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<Value>,
    /// Events whose data matches any of these may come first; any other event fails.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ignore: Vec<Value>,
    /// Time allowed (default 1000 ms, scaled).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub within_ms: Option<NumExpr>,
}

/// `sse_expect_end`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SseExpectEnd {
    /// The stream.
    pub sse_expect_end: String,
    /// Events whose data matches any of these may come first; any other event fails.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ignore: Vec<Value>,
    /// Time allowed (default 1000 ms, scaled).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub within_ms: Option<NumExpr>,
}

/// `sse_pause_reading`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SsePauseReading {
    /// The stream.
    pub sse_pause_reading: String,
}

/// `sse_resume_reading`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SseResumeReading {
    /// The stream.
    pub sse_resume_reading: String,
}

/// The action keys, in the order they are tried; a step must have exactly one.
pub const ACTIONS: [&str; 31] = [
    "connect",
    "send",
    "send_raw",
    "send_binary",
    "send_bytes_as_text",
    "send_oversize",
    "send_deep",
    "expect",
    "expect_set",
    "expect_none",
    "expect_close",
    "alive",
    "close",
    "drop",
    "sleep_ms",
    "repeat",
    "http",
    "sse_open",
    "sse_expect",
    "sse_expect_none",
    "sse_close",
    "unless_announced",
    "connect_many",
    "send_many",
    "pause_reading",
    "resume_reading",
    "sse_expect_comment",
    "sse_expect_end",
    "sse_pause_reading",
    "sse_resume_reading",
    "require",
];

impl<'de> Deserialize<'de> for Step {
    /// Dispatches on the one action key present, so an error names the step kind and field
    /// instead of "data did not match any variant".
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let value = Value::deserialize(d)?;
        let Value::Object(map) = &value else {
            return Err(D::Error::custom("a step must be a JSON object"));
        };
        let found: Vec<&str> = ACTIONS
            .iter()
            .copied()
            .filter(|a| map.contains_key(*a))
            .collect();
        let action = match found.as_slice() {
            [one] => *one,
            [] => {
                return Err(D::Error::custom(format!(
                    "a step needs one action key among {}",
                    ACTIONS.join(", ")
                )))
            }
            many => {
                return Err(D::Error::custom(format!(
                    "a step has several action keys: {}",
                    many.join(", ")
                )))
            }
        };
        step_from(action, value).map_err(|e| D::Error::custom(format!("`{action}` step: {e}")))
    }
}

fn step_from(action: &str, v: Value) -> Result<Step, serde_json::Error> {
    use serde_json::from_value as f;
    Ok(match action {
        "connect" => Step::Connect(f(v)?),
        "send" => Step::Send(f(v)?),
        "send_raw" => Step::SendRaw(f(v)?),
        "send_binary" => Step::SendBinary(f(v)?),
        "send_bytes_as_text" => Step::SendBytesAsText(f(v)?),
        "send_oversize" => Step::SendOversize(f(v)?),
        "send_deep" => Step::SendDeep(f(v)?),
        "expect" => Step::Expect(f(v)?),
        "expect_set" => Step::ExpectSet(f(v)?),
        "expect_none" => Step::ExpectNone(f(v)?),
        "expect_close" => Step::ExpectClose(f(v)?),
        "alive" => Step::Alive(f(v)?),
        "close" => Step::Close(f(v)?),
        "drop" => Step::Drop(f(v)?),
        "sleep_ms" => Step::Sleep(f(v)?),
        "repeat" => Step::Repeat(f(v)?),
        "http" => Step::Http(f(v)?),
        "sse_open" => Step::SseOpen(f(v)?),
        "sse_expect" => Step::SseExpect(f(v)?),
        "sse_expect_none" => Step::SseExpectNone(f(v)?),
        "sse_close" => Step::SseClose(f(v)?),
        "unless_announced" => Step::UnlessAnnounced(f(v)?),
        "connect_many" => Step::ConnectMany(f(v)?),
        "send_many" => Step::SendMany(f(v)?),
        "pause_reading" => Step::PauseReading(f(v)?),
        "resume_reading" => Step::ResumeReading(f(v)?),
        "sse_expect_comment" => Step::SseExpectComment(f(v)?),
        "sse_expect_end" => Step::SseExpectEnd(f(v)?),
        "sse_pause_reading" => Step::SsePauseReading(f(v)?),
        "require" => Step::Require(f(v)?),
        _ => Step::SseResumeReading(f(v)?),
    })
}

impl Step {
    /// The step's action key.
    pub fn action(&self) -> &'static str {
        match self {
            Step::Connect(_) => "connect",
            Step::Send(_) => "send",
            Step::SendRaw(_) => "send_raw",
            Step::SendBinary(_) => "send_binary",
            Step::SendBytesAsText(_) => "send_bytes_as_text",
            Step::SendOversize(_) => "send_oversize",
            Step::SendDeep(_) => "send_deep",
            Step::Expect(_) => "expect",
            Step::ExpectSet(_) => "expect_set",
            Step::ExpectNone(_) => "expect_none",
            Step::ExpectClose(_) => "expect_close",
            Step::Alive(_) => "alive",
            Step::Close(_) => "close",
            Step::Drop(_) => "drop",
            Step::Sleep(_) => "sleep_ms",
            Step::Repeat(_) => "repeat",
            Step::Http(_) => "http",
            Step::SseOpen(_) => "sse_open",
            Step::SseExpect(_) => "sse_expect",
            Step::SseExpectNone(_) => "sse_expect_none",
            Step::SseClose(_) => "sse_close",
            Step::UnlessAnnounced(_) => "unless_announced",
            Step::Require(_) => "require",
            Step::ConnectMany(_) => "connect_many",
            Step::SendMany(_) => "send_many",
            Step::PauseReading(_) => "pause_reading",
            Step::ResumeReading(_) => "resume_reading",
            Step::SseExpectComment(_) => "sse_expect_comment",
            Step::SseExpectEnd(_) => "sse_expect_end",
            Step::SsePauseReading(_) => "sse_pause_reading",
            Step::SseResumeReading(_) => "sse_resume_reading",
        }
    }

    /// Every matcher tree the step holds (nested `repeat` steps excluded).
    pub fn matchers(&self) -> Vec<&Value> {
        let mut out: Vec<&Value> = Vec::new();
        match self {
            Step::Connect(s) => out.extend(s.welcome.iter().chain(&s.expect_protocol)),
            Step::Expect(s) => {
                out.extend(s.frame.iter().chain(s.any_of.iter().flatten()));
                out.extend(&s.ignore);
            }
            Step::ExpectSet(s) => out.extend(s.frames.iter().chain(&s.ignore)),
            Step::ExpectNone(s) => out.extend(&s.matching),
            Step::ExpectClose(s) => out.extend(&s.ignore),
            Step::Http(s) => out.extend(s.expect_body.iter().chain(s.expect_headers.values())),
            Step::SseExpect(s) => {
                out.push(&s.frame);
                out.extend(s.id.iter().chain(&s.ignore));
            }
            Step::SseOpen(s) => out.extend(s.expect_headers.values()),
            Step::ConnectMany(s) => out.extend(s.replies.iter().chain(&s.ignore)),
            Step::SseExpectComment(s) => out.extend(s.text.iter().chain(&s.ignore)),
            Step::SseExpectEnd(s) => out.extend(&s.ignore),
            _ => {}
        }
        out
    }

    /// The client (or SSE stream) the step acts on, if any.
    pub fn target(&self) -> Option<&str> {
        Some(match self {
            Step::Connect(s) => &s.connect,
            Step::Send(s) => &s.send,
            Step::SendRaw(s) => &s.send_raw,
            Step::SendBinary(s) => &s.send_binary,
            Step::SendBytesAsText(s) => &s.send_bytes_as_text,
            Step::SendOversize(s) => &s.send_oversize,
            Step::SendDeep(s) => &s.send_deep,
            Step::Expect(s) => &s.expect,
            Step::ExpectSet(s) => &s.expect_set,
            Step::ExpectNone(s) => &s.expect_none,
            Step::ExpectClose(s) => &s.expect_close,
            Step::Alive(s) => &s.alive,
            Step::Close(s) => &s.close,
            Step::Drop(s) => &s.drop,
            Step::SseOpen(s) => &s.sse_open,
            Step::SseExpect(s) => &s.sse_expect,
            Step::SseExpectNone(s) => &s.sse_expect_none,
            Step::SseClose(s) => &s.sse_close,
            Step::SendMany(s) => &s.send_many,
            Step::PauseReading(s) => &s.pause_reading,
            Step::ResumeReading(s) => &s.resume_reading,
            Step::SseExpectComment(s) => &s.sse_expect_comment,
            Step::SseExpectEnd(s) => &s.sse_expect_end,
            Step::SsePauseReading(s) => &s.sse_pause_reading,
            Step::SseResumeReading(s) => &s.sse_resume_reading,
            Step::Sleep(_)
            | Step::Repeat(_)
            | Step::Http(_)
            | Step::UnlessAnnounced(_)
            | Step::Require(_)
            | Step::ConnectMany(_) => return None,
        })
    }
}

/// A fixture file that does not parse or breaks a static rule.
#[derive(Debug, Error)]
pub enum FixtureError {
    /// Not valid JSON or not the fixture shape.
    #[error("{file}: {source}")]
    Parse {
        /// The file.
        file: String,
        /// The parse error.
        source: serde_json::Error,
    },
    /// A static rule of FIXTURES.md is broken.
    #[error("{file}: {message}")]
    Invalid {
        /// The file.
        file: String,
        /// What is wrong.
        message: String,
    },
}

/// Parses one fixture file's text and checks the static rules that need no registry.
pub fn parse(file: &str, text: &str) -> Result<Fixture, FixtureError> {
    let fixture: Fixture = serde_json::from_str(text).map_err(|source| FixtureError::Parse {
        file: file.into(),
        source,
    })?;
    let invalid = |message: String| FixtureError::Invalid {
        file: file.into(),
        message,
    };
    check_static(&fixture).map_err(invalid)?;
    Ok(fixture)
}

/// Rules the JSON shape alone cannot state: id shape, known client names, one of two
/// alternative fields.
pub fn check_static(f: &Fixture) -> Result<(), String> {
    let segments: Vec<&str> = f.id.split('.').collect();
    let id_ok = segments.len() >= 2
        && segments.iter().all(|s| {
            !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        });
    if !id_ok {
        return Err(format!(
            "id {:?} must be <area>.<topic>.<behaviour> in lower-case kebab segments",
            f.id
        ));
    }
    if f.requirements.is_empty() {
        return Err("requirements must list at least one id".into());
    }
    if f.steps.is_empty() {
        return Err("steps must not be empty".into());
    }
    let mut streams = std::collections::BTreeSet::new();
    check_steps(f, &f.steps, &mut streams, true)
}

/// The capabilities of the leading `unless_announced` steps: the case is skipped when the
/// server announces any of them.
pub fn unless_announced(f: &Fixture) -> Vec<Capability> {
    f.steps
        .iter()
        .map_while(|s| match s {
            Step::UnlessAnnounced(u) => Some(u.unless_announced.clone()),
            _ => None,
        })
        .flatten()
        .collect()
}

/// The requirements of the server's heartbeat timeout: a case citing one grades what a
/// silent client sees, so the harness does not keep its clients alive in it.
pub const SILENCE_REQUIREMENTS: &[&str] = &["CONN-13", "CONN-14"];

/// Whether the case means its clients to be silent (it grades the heartbeat timeout): its
/// clients get no keep-alive pings from the harness.
pub fn means_silence(f: &Fixture) -> bool {
    f.requirements
        .iter()
        .any(|r| SILENCE_REQUIREMENTS.contains(&r.as_str()))
}

fn check_steps(
    f: &Fixture,
    steps: &[Step],
    streams: &mut std::collections::BTreeSet<String>,
    top: bool,
) -> Result<(), String> {
    let leading = steps
        .iter()
        .take_while(|s| matches!(s, Step::UnlessAnnounced(_)))
        .count();
    for (i, step) in steps.iter().enumerate() {
        let here = |m: &str| format!("step {} ({}): {m}", i + 1, step.action());
        match step {
            Step::UnlessAnnounced(_) => {
                if !top || i >= leading {
                    return Err(here("a case condition must come before every other step"));
                }
            }
            Step::ConnectMany(m) => {
                generated_names_free(f, &m.connect_many).map_err(|e| here(&e))?
            }
            Step::SseOpen(s) => {
                streams.insert(s.sse_open.clone());
                if let Some(c) = &s.client {
                    known_client(f, c).map_err(|m| here(&m))?;
                }
            }
            Step::SseExpect(_)
            | Step::SseExpectNone(_)
            | Step::SseClose(_)
            | Step::SseExpectComment(_)
            | Step::SseExpectEnd(_)
            | Step::SsePauseReading(_)
            | Step::SseResumeReading(_) => {
                let name = step.target().unwrap_or_default();
                if !streams.contains(name) {
                    return Err(here(&format!("stream {name:?} is not opened before")));
                }
            }
            Step::Repeat(r) => check_steps(f, &r.steps, streams, false)?,
            Step::Http(h) => {
                if let Some(HttpAuth::Client { client }) = &h.http.auth {
                    known_client(f, client).map_err(|m| here(&m))?;
                }
                if h.http.body.is_some() && h.http.raw_body.is_some() {
                    return Err(here("give body or raw_body, not both"));
                }
            }
            _ => {
                if let Some(name) = step.target() {
                    known_client(f, name).map_err(|m| here(&m))?;
                }
            }
        }
        exclusive_fields(step).map_err(|m| here(&m))?;
    }
    Ok(())
}

/// Generated clients are `<prefix><n>`: no declared client may have such a name.
fn generated_names_free(f: &Fixture, prefix: &str) -> Result<(), String> {
    if prefix.is_empty() {
        return Err("the name prefix must not be empty".into());
    }
    let clash = f.clients.keys().find(|name| {
        name.strip_prefix(prefix)
            .is_some_and(|rest| !rest.is_empty() && rest.chars().all(|c| c.is_ascii_digit()))
    });
    match clash {
        Some(name) => Err(format!(
            "declared client {name:?} has the name of a generated client {prefix}<n>"
        )),
        None => Ok(()),
    }
}

fn known_client(f: &Fixture, name: &str) -> Result<(), String> {
    if f.clients.contains_key(name) {
        Ok(())
    } else {
        Err(format!("client {name:?} is not declared in clients"))
    }
}

fn exclusive_fields(step: &Step) -> Result<(), String> {
    let one_of = |a: bool, b: bool, names: &str| {
        if a == b {
            Err(format!("give exactly one of {names}"))
        } else {
            Ok(())
        }
    };
    match step {
        Step::SendRaw(s) => one_of(s.text.is_some(), s.json.is_some(), "text, json"),
        Step::SendBinary(s) => one_of(s.base64.is_some(), s.hex.is_some(), "base64, hex"),
        Step::Expect(s) => one_of(s.frame.is_some(), s.any_of.is_some(), "frame, any_of"),
        _ => Ok(()),
    }
}

/// The JSON Schema of a fixture file (`schema/fixture.schema.json`).
pub fn schema() -> Value {
    let generator = schemars::generate::SchemaSettings::draft2020_12().into_generator();
    let mut value = generator.into_root_schema_for::<Fixture>().to_value();
    if let Value::Object(map) = &mut value {
        map.insert(
            "$id".into(),
            Value::String(format!(
                "{}fixture.schema.json",
                chorus_protocol::schema::SCHEMA_BASE
            )),
        );
    }
    value
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(steps: &str) -> String {
        format!(
            r#"{{"id":"connection.ping.pong","title":"t","requirements":["CONN-12"],"level":"MUST",
            "clients":{{"a":{{}}}},"steps":{steps}}}"#
        )
    }

    #[test]
    fn parses_each_step_kind_by_its_action_key() {
        let text = fixture(
            r#"[{"connect":"a"},{"send":"a","frame":{"type":"ping","id":1}},
            {"expect":"a","frame":{"type":"pong","id":1,"ts":"$uint"}},{"sleep_ms":"${x}+1"}]"#,
        );
        let f = parse("f.json", &text).unwrap();
        let actions: Vec<_> = f.steps.iter().map(Step::action).collect();
        assert_eq!(actions, ["connect", "send", "expect", "sleep_ms"]);
    }

    #[test]
    fn unknown_field_names_the_step_kind() {
        let text = fixture(r#"[{"connect":"a","expect_welcom":false}]"#);
        let e = parse("f.json", &text).unwrap_err().to_string();
        assert!(
            e.contains("`connect` step") && e.contains("expect_welcom"),
            "{e}"
        );
    }

    #[test]
    fn two_action_keys_are_rejected() {
        let text = fixture(r#"[{"connect":"a","drop":"a"}]"#);
        let e = parse("f.json", &text).unwrap_err().to_string();
        assert!(e.contains("several action keys"), "{e}");
    }

    #[test]
    fn undeclared_client_is_rejected() {
        let text = fixture(r#"[{"connect":"zed"}]"#);
        let e = parse("f.json", &text).unwrap_err().to_string();
        assert!(e.contains("\"zed\" is not declared"), "{e}");
    }

    #[test]
    fn expect_needs_frame_or_any_of() {
        let text = fixture(r#"[{"connect":"a"},{"expect":"a"}]"#);
        let e = parse("f.json", &text).unwrap_err().to_string();
        assert!(e.contains("exactly one of frame, any_of"), "{e}");
    }

    #[test]
    fn bad_id_shape_is_rejected() {
        let text = fixture(r#"[{"connect":"a"}]"#).replace("connection.ping.pong", "Ping");
        assert!(parse("f.json", &text).is_err());
    }

    #[test]
    fn round_trips_through_serialize() {
        let text =
            fixture(r#"[{"connect":"a","protocols":[]},{"expect_close":"a","code":[4001,4100]}]"#);
        let f = parse("f.json", &text).unwrap();
        let again: Fixture = serde_json::from_value(serde_json::to_value(&f).unwrap()).unwrap();
        assert_eq!(f, again);
    }
}
