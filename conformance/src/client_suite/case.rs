//! Client cases as data (`fixtures/client/<area>/*.json`, schema
//! `schema/client-case.schema.json`): what the scripted server and the application do, in
//! order, and what the client under test must do in reply.

use std::collections::BTreeSet;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::fixture::CaseLevel;

/// One client case.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ClientCase {
    /// Stable id, `<area>.<topic>.<name>`; the area is the fixture's folder.
    pub id: String,
    /// One line saying what the client must do.
    pub title: String,
    /// Why the case is built the way it is (optional).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// MUST cases fail the run; SHOULD and MAY cases warn.
    pub level: CaseLevel,
    /// Requirement ids checked (client requirements of spec/).
    pub requirements: Vec<String>,
    /// Adapters started at once, each with its own scripted server, all running `steps`
    /// (statistics pool their samples). Default 1.
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub instances: u32,
    /// Tolerance added to every `within_ms` and taken from every `not_before_ms` (times
    /// `--timeout-scale`). Default 150.
    #[serde(default = "default_tolerance")]
    pub tolerance_ms: u64,
    /// The case's expected run time when it needs long waits (the spec's 30 s windows):
    /// above `--max-wait-ms` the case is reported untestable instead of run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub needs_ms: Option<u64>,
    /// How the application's token provider answers `token_request`.
    #[serde(default)]
    pub tokens: TokenPolicy,
    /// The script, run in order; the first failed step ends an instance.
    pub steps: Vec<Step>,
    /// Checks over the samples of all instances, after the steps.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub statistics: Vec<Statistic>,
}

fn one() -> u32 {
    1
}

fn is_one(n: &u32) -> bool {
    *n == 1
}

fn default_tolerance() -> u64 {
    150
}

/// How `token_request` is answered.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum TokenPolicy {
    /// A new token each time: `tok-1`, `tok-2`… (`connect` gets `tok-0`).
    #[default]
    Fresh,
    /// `null`: the application has no token.
    None,
}

/// One step. Durations are milliseconds from the end of the previous step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Step {
    /// Write a command to the adapter. `ref` defaults to `c<n>` (and is captured as
    /// `ref`); `connect` defaults `url` to the scripted server and `token` to `tok-0`.
    /// Strings `${name}` are replaced by captures.
    Command(Value),
    /// Wait for an adapter event matching `match` (others are passed over).
    ExpectEvent {
        /// Matcher (FIXTURES.md), captures allowed.
        #[serde(rename = "match")]
        matcher: Value,
        /// Deadline.
        within_ms: u64,
    },
    /// No adapter event matching `match` arrives for `for_ms`.
    NoEvent {
        /// Matcher.
        #[serde(rename = "match")]
        matcher: Value,
        /// The window.
        for_ms: u64,
    },
    /// Wait for the client's next upgrade request and accept it, then send `welcome`.
    Accept(Accept),
    /// Wait for the client's next upgrade request and refuse it with an HTTP status.
    Refuse {
        /// 400, 403, 503…
        status: u16,
        /// Matcher of the request `{path, token, token_via, protocols}`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        request: Option<Value>,
        /// Deadline.
        within_ms: u64,
        /// The attempt must not come earlier.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        not_before_ms: Option<u64>,
        /// Record the delay into this sample.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        sample: Option<String>,
    },
    /// No upgrade request arrives for `for_ms` (the client does not reconnect).
    NoUpgrade {
        /// The window.
        for_ms: u64,
    },
    /// Wait for a client frame on the current connection matching `match` (others,
    /// pings included, are passed over; pings are answered unless `silence` was set).
    ExpectFrame {
        /// Matcher, captures allowed.
        #[serde(rename = "match")]
        matcher: Value,
        /// Deadline.
        within_ms: u64,
        /// The frame must not come earlier.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        not_before_ms: Option<u64>,
    },
    /// No client frame matching `match` arrives for `for_ms`.
    NoFrame {
        /// Matcher.
        #[serde(rename = "match")]
        matcher: Value,
        /// The window.
        for_ms: u64,
    },
    /// Send a server frame (captures substituted).
    Send(Value),
    /// Send raw text as a frame (not JSON, or JSON the schema does not know).
    SendText(String),
    /// Close the connection with a Close frame.
    Close {
        /// The code.
        code: u16,
        /// The reason text (never to be interpreted, ERR-11).
        #[serde(default)]
        reason: String,
    },
    /// Drop the TCP connection without a Close frame.
    Drop,
    /// Stop answering pings.
    Silence,
    /// The client closes the current connection (Close frame or TCP end) within the window.
    ExpectClose {
        /// The expected Close code (absent: any, or none).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        code: Option<u16>,
        /// Deadline.
        within_ms: u64,
        /// Not earlier than this.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        not_before_ms: Option<u64>,
    },
    /// The current connection stays open (no close, no new upgrade) for `for_ms`.
    NoClose {
        /// The window.
        for_ms: u64,
    },
    /// Let time pass (frames, events and pings are handled meanwhile).
    Wait {
        /// How long.
        ms: u64,
    },
}

/// The `accept` step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Accept {
    /// Deadline for the upgrade request.
    pub within_ms: u64,
    /// The request must not come earlier.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_before_ms: Option<u64>,
    /// Matcher of the request `{path, token, token_via, protocols}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<Value>,
    /// Merged into the default welcome (objects merge, other values replace; `null`
    /// removes a member).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub welcome: Option<Value>,
    /// Sets `welcome.expires_at` to now plus this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_in_ms: Option<u64>,
    /// Hold `welcome` back this long; a client frame meanwhile fails the case (CLIENT-1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub welcome_delay_ms: Option<u64>,
    /// Record the delay into this sample.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sample: Option<String>,
}

/// A check over pooled samples (ms).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Statistic {
    /// The samples look uniform on `[min_ms, max_ms]`: Kolmogorov-Smirnov distance below
    /// the critical value for a significance of 0.001 (so a correct client fails about
    /// once in a thousand runs, and fixed, unjittered or half-jittered delays fail).
    Uniform {
        /// Sample name.
        sample: String,
        /// Window start.
        min_ms: f64,
        /// Window end.
        max_ms: f64,
    },
    /// At least one sample exceeds `ms` (the window grew).
    MaxAbove {
        /// Sample name.
        sample: String,
        /// Threshold.
        ms: f64,
    },
}

impl ClientCase {
    /// The area: the id's first segment.
    pub fn area(&self) -> &str {
        self.id.split('.').next().unwrap_or_default()
    }

    /// Sample names used by steps.
    pub fn sample_names(&self) -> BTreeSet<&str> {
        self.steps
            .iter()
            .filter_map(|s| match s {
                Step::Accept(a) => a.sample.as_deref(),
                Step::Refuse { sample, .. } => sample.as_deref(),
                _ => None,
            })
            .collect()
    }
}

/// The JSON Schema of a client case (`schema/client-case.schema.json`).
pub fn schema() -> Value {
    let generator = schemars::generate::SchemaSettings::draft2020_12().into_generator();
    let mut value = generator.into_root_schema_for::<ClientCase>().to_value();
    if let Value::Object(map) = &mut value {
        map.insert(
            "$id".into(),
            Value::String(format!(
                "{}client-case.schema.json",
                chorus_protocol::schema::SCHEMA_BASE
            )),
        );
    }
    value
}
