//! Running one generated sequence against a live server: for each step, the model's plan is
//! acted out, the clients concerned are brought to a barrier, and what arrived is graded.
//!
//! Barrier: a server answers a connection's requests in order (TRANS-26), so once the
//! actor's `pong` arrives, its replies are in; then every other concerned client pings, and
//! a `pong` after the actor's means fan-out the server sent synchronously is in too. Frames a
//! server delivers later (another node, a flush timer) get a short settle window, and only
//! when something expected is still missing, so a correct server costs no waiting. After
//! the last step every connected client is barriered and must have received nothing more.

use std::sync::Arc;

use chorus_protocol::{Capability, Limits};
use serde_json::{json, Value};
use tokio::time::Instant;

use super::check::{Ctx, Failure, FailureKind, StepCheck};
use super::driver::{Endpoint, Ping, Received, Session};
use super::model::{Action, Model, Plan};
use super::ops::{ClientId, Step};
use crate::transcript::{EventKind, Transcript};
use crate::validate::FrameSchema;

/// How long a missing expected frame is awaited after the client's barrier `pong`.
const SETTLE_MS: u64 = 250;
/// How long a barrier `pong` is awaited.
const BARRIER_MS: u64 = 3000;

/// The server under test, as the properties see it.
#[derive(Clone)]
pub struct Server {
    /// Where it is and how to authenticate.
    pub endpoint: Endpoint,
    /// The server frame schema (every frame is checked, TRANS-6, TRANS-7).
    pub schema: Arc<FrameSchema>,
    /// The probe's `welcome`.
    pub welcome: Value,
}

impl Server {
    /// Capabilities the server announced.
    pub fn capabilities(&self) -> Vec<Capability> {
        self.welcome
            .get("capabilities")
            .cloned()
            .and_then(|v| serde_json::from_value::<Vec<Value>>(v).ok())
            .unwrap_or_default()
            .into_iter()
            .filter_map(|v| serde_json::from_value(v).ok())
            .collect()
    }

    /// Limits the server announced (defaults where the welcome lacks them).
    pub fn limits(&self) -> Limits {
        self.welcome
            .get("limits")
            .cloned()
            .and_then(|v| serde_json::from_value(v).ok())
            .unwrap_or_default()
    }
}

/// A step the model did not skip, with its plan.
#[derive(Debug, Clone)]
pub struct Executed {
    /// The generated step.
    pub step: Step,
    /// What the model said about it.
    pub plan: Plan,
}

/// The outcome of one sequence.
#[derive(Debug, Clone)]
pub struct Run {
    /// The `{run}` prefix used.
    pub prefix: String,
    /// Executed steps, up to the failing one.
    pub executed: Vec<Executed>,
    /// The first broken obligation.
    pub failure: Option<Failure>,
    /// Everything sent and received.
    pub transcript: Transcript,
}

/// Plays `steps` against the server with channel names under `prefix`.
pub async fn execute(server: &Server, steps: &[Step], prefix: &str) -> Run {
    let transcript = Transcript::new();
    let mut session = Session::new(&server.endpoint, server.schema.clone(), transcript.clone());
    let mut model = Model::new(&server.capabilities(), server.limits());
    let mut ctx = Ctx::default();
    ctx.scope.run = prefix.to_owned();
    ctx.scope
        .builtins
        .insert("limits".into(), json!(server.limits()));
    let mut executed: Vec<Executed> = Vec::new();
    let mut failure = None;
    for step in steps {
        let Some(plan) = model.apply(step) else {
            continue;
        };
        let n = executed.len() + 1;
        transcript.push("harness", EventKind::Step, format!("{n}. {step}"));
        let result = play(&mut session, &plan, &mut ctx, server, &transcript).await;
        executed.push(Executed {
            step: step.clone(),
            plan,
        });
        if let Err(mut f) = result {
            f.step = n;
            transcript.push("harness", EventKind::Note, f.to_string());
            failure = Some(f);
            break;
        }
    }
    if failure.is_none() {
        let quiet = model.quiet();
        let n = executed.len();
        let everyone = Reach::Everyone;
        if let Err(mut f) = barrier(
            &mut session,
            &quiet,
            everyone,
            &mut ctx,
            server,
            &transcript,
        )
        .await
        {
            f.step = n;
            f.message = format!("after the last step: {}", f.message);
            transcript.push("harness", EventKind::Note, f.to_string());
            failure = Some(f);
        }
    }
    session.shutdown().await;
    Run {
        prefix: prefix.to_owned(),
        executed,
        failure,
        transcript,
    }
}

async fn play(
    session: &mut Session<'_>,
    plan: &Plan,
    ctx: &mut Ctx,
    server: &Server,
    transcript: &Transcript,
) -> Result<(), Failure> {
    for action in &plan.actions {
        match action {
            Action::Connect(c) => session
                .connect(*c)
                .await
                .map_err(|m| Failure::harness(0, Some(*c), m))?,
            Action::Send(c, frame) => {
                let frame = ctx
                    .substitute(frame)
                    .map_err(|m| Failure::harness(0, Some(*c), m))?;
                session
                    .send(*c, &frame)
                    .await
                    .map_err(|m| Failure::harness(0, Some(*c), m))?;
            }
            Action::Close(c) => session.close(*c).await,
        }
    }
    barrier(session, plan, Reach::Concerned, ctx, server, transcript).await
}

/// Which clients a barrier reaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reach {
    /// The actor and every client the plan expects something of. A frame wrongly sent to
    /// another client stays queued and fails that client's next barrier (at the latest the
    /// one after the last step), so skipping them costs no detection, only precision.
    Concerned,
    /// Every connected client.
    Everyone,
}

/// Barriers the actor, then the others, grading what each received.
async fn barrier(
    session: &mut Session<'_>,
    plan: &Plan,
    reach: Reach,
    ctx: &mut Ctx,
    server: &Server,
    transcript: &Transcript,
) -> Result<(), Failure> {
    let violations = transcript.violations().len();
    let mut check = StepCheck::new(plan, ctx).map_err(|m| Failure::harness(0, None, m))?;
    let harness = |c: ClientId| move |m: String| Failure::harness(0, Some(c), m);
    let actor = plan.actor;
    if plan.connected.contains(&actor) {
        let ping = session.ping(actor).await.map_err(harness(actor))?;
        collect(session, &mut check, actor, ping, ctx, server).await?;
    }
    let concerned = |c: &ClientId| {
        reach == Reach::Everyone
            || plan.expect.contains_key(c)
            || plan.cursor_due.iter().any(|d| d.client == *c)
    };
    let others: Vec<ClientId> = plan
        .connected
        .iter()
        .copied()
        .filter(|c| *c != actor)
        .filter(concerned)
        .collect();
    let mut pending = Vec::new();
    for c in others {
        pending.push((c, session.ping(c).await.map_err(harness(c))?));
    }
    for (c, ping) in pending {
        collect(session, &mut check, c, ping, ctx, server).await?;
    }
    schema_clean(transcript, violations)
}

fn ended(c: ClientId, why: &str) -> Failure {
    let mut f = Failure::harness(0, Some(c), format!("connection ended: {why}"));
    f.kind = FailureKind::Closed;
    f.requirements = vec!["TRANS-23".into()];
    f
}

/// Reads `c`'s frames until its barrier `pong` has arrived and nothing it must receive is
/// missing (or the settle window ends), grading each frame.
async fn collect(
    session: &mut Session<'_>,
    check: &mut StepCheck<'_>,
    c: ClientId,
    ping: Ping,
    ctx: &mut Ctx,
    server: &Server,
) -> Result<(), Failure> {
    let ep = &server.endpoint;
    let interval = server.limits().cursor_interval_ms;
    let hard = Instant::now() + ep.scaled(BARRIER_MS);
    let mut pong: Option<Instant> = None;
    loop {
        if pong.is_some() && check.done(c) {
            break;
        }
        let until = match pong {
            None => hard,
            Some(t) if check.awaits_cursor(c) => t + ep.scaled(interval + SETTLE_MS),
            Some(t) => t + ep.scaled(SETTLE_MS),
        };
        match session.next(c, until).await {
            Received::Frame(v, at) if is_pong(&v, &ping.id) => pong = Some(at),
            Received::Frame(v, at) => check.feed(c, &v, at.into_std(), ctx)?,
            Received::Ended(why) => return Err(ended(c, &why)),
            Received::Timeout if pong.is_none() => {
                let mut f = Failure::harness(0, Some(c), "no pong to the barrier ping".to_owned());
                f.kind = FailureKind::Missing;
                f.requirements = vec!["CONN-12".into(), "TRANS-26".into()];
                return Err(f);
            }
            Received::Timeout => break,
        }
    }
    check.finish(c, interval, ctx)
}

fn is_pong(v: &Value, id: &str) -> bool {
    v.get("type").and_then(Value::as_str) == Some("pong")
        && v.get("id").and_then(Value::as_str) == Some(id)
}

/// A frame that broke the schema during the step fails it on its own (TRANS-6, TRANS-7).
fn schema_clean(transcript: &Transcript, before: usize) -> Result<(), Failure> {
    let all = transcript.violations();
    let Some(v) = all.get(before) else {
        return Ok(());
    };
    let mut f = Failure::harness(
        0,
        None,
        format!(
            "{} received a frame that breaks the schema: {}",
            v.who, v.violation
        ),
    );
    f.kind = FailureKind::Schema;
    f.requirements = vec!["TRANS-6".into(), "TRANS-7".into()];
    let frame = serde_json::from_str(&v.frame).unwrap_or_else(|_| Value::String(v.frame.clone()));
    f.actual = Some(Box::new(frame));
    Err(f)
}
