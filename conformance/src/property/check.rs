//! Grading one step: every frame a client receives must be the next one the model expects
//! on its channel (frames of different channels may interleave), cursor frames must carry
//! only allowed entries and eventually the due ones, and nothing else may arrive.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Instant;

use serde_json::Value;

use super::model::{Expected, Plan};
use super::ops::ClientId;
use crate::fixture::CaseLevel;
use crate::matcher::{short, Matcher};
use crate::template::Scope;

/// What kind of obligation failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// A frame arrived where another was expected.
    Mismatch,
    /// An expected frame did not arrive in time.
    Missing,
    /// A frame arrived that nothing expected.
    Unexpected,
    /// The server closed a connection the model expected open.
    Closed,
    /// A frame broke the schema.
    Schema,
    /// The harness could not run the step (connection refused, model bug).
    Harness,
}

/// A broken obligation.
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    /// What kind.
    pub kind: FailureKind,
    /// 1-based index of the step among the executed steps.
    pub step: usize,
    /// The client concerned.
    pub client: Option<ClientId>,
    /// One-line explanation.
    pub message: String,
    /// Requirements broken.
    pub requirements: Vec<String>,
    /// Their level.
    pub level: CaseLevel,
    /// The expected frame (placeholders substituted), if any.
    pub expected: Option<Box<Value>>,
    /// The frame received, if any.
    pub actual: Option<Box<Value>>,
}

impl Failure {
    /// A failure of the harness itself (graded `error`, not `fail`).
    pub fn harness(step: usize, client: Option<ClientId>, message: impl Into<String>) -> Self {
        Failure {
            kind: FailureKind::Harness,
            step,
            client,
            message: message.into(),
            requirements: Vec::new(),
            level: CaseLevel::Must,
            expected: None,
            actual: None,
        }
    }

    fn new(kind: FailureKind, c: ClientId, message: String, reqs: &[&str]) -> Self {
        Failure {
            kind,
            step: 0,
            client: Some(c),
            message,
            requirements: reqs.iter().map(|r| (*r).to_owned()).collect(),
            level: CaseLevel::Must,
            expected: None,
            actual: None,
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let who = self.client.map_or("harness", ClientId::name);
        write!(f, "step {}, {who}: {}", self.step, self.message)?;
        if !self.requirements.is_empty() {
            write!(
                f,
                " [{} {}]",
                self.level.as_str(),
                self.requirements.join(", ")
            )?;
        }
        if let Some(e) = &self.expected {
            write!(f, "\n  expected: {}", short(e))?;
        }
        if let Some(a) = &self.actual {
            write!(f, "\n  received: {}", short(a))?;
        }
        Ok(())
    }
}

/// Matching state shared by all steps of a case: captures and the placeholder scope.
#[derive(Debug, Clone, Default)]
pub struct Ctx {
    /// Captures so far.
    pub matcher: Matcher,
    /// `{run}` and the builtins (`limits`, …).
    pub scope: Scope,
}

impl Ctx {
    /// Substitutes placeholders with the captures made so far.
    pub fn substitute(&mut self, v: &Value) -> Result<Value, String> {
        self.scope.captures.clone_from(&self.matcher.captures);
        self.scope.value(v).map_err(|e| format!("model bug: {e}"))
    }
}

#[derive(Debug, Default)]
struct ClientState {
    /// Channel (substituted, `None` for frames without one) -> indexes into the plan's
    /// expectations for this client, in order.
    queues: BTreeMap<Option<String>, VecDeque<usize>>,
    /// Due cursor positions: index into `plan.cursor_due`, seen.
    dues: Vec<(usize, bool)>,
    /// Arrival times of `cursor:moved` frames per channel.
    cursor_frames: BTreeMap<String, Vec<Instant>>,
    /// (channel, user) whose `user:left` this client received during the step.
    gone: BTreeSet<(String, String)>,
}

/// The grading state of one step.
#[derive(Debug)]
pub struct StepCheck<'p> {
    plan: &'p Plan,
    clients: BTreeMap<ClientId, ClientState>,
    /// Substituted channel -> template, for cursor allowances.
    channels: BTreeMap<String, String>,
}

impl<'p> StepCheck<'p> {
    /// Prepares grading of `plan`.
    pub fn new(plan: &'p Plan, ctx: &Ctx) -> Result<Self, String> {
        let mut clients: BTreeMap<ClientId, ClientState> = BTreeMap::new();
        let text = |t: &str| ctx.scope.text(t).map_err(|e| format!("model bug: {e}"));
        for (c, list) in &plan.expect {
            let st = clients.entry(*c).or_default();
            for (i, e) in list.iter().enumerate() {
                let key = match e.frame.get("channel").and_then(Value::as_str) {
                    Some(t) => Some(text(t)?),
                    None => None,
                };
                st.queues.entry(key).or_default().push_back(i);
            }
        }
        for (i, d) in plan.cursor_due.iter().enumerate() {
            clients.entry(d.client).or_default().dues.push((i, false));
        }
        let mut channels = BTreeMap::new();
        for (_, t) in plan.cursor_allowed.keys() {
            channels.insert(text(t)?, t.clone());
        }
        Ok(StepCheck {
            plan,
            clients,
            channels,
        })
    }

    /// Whether everything `c` must receive has arrived.
    pub fn done(&self, c: ClientId) -> bool {
        self.clients
            .get(&c)
            .is_none_or(|s| s.queues.values().all(VecDeque::is_empty) && s.dues.iter().all(|d| d.1))
    }

    /// Whether `c` still waits for a cursor position (which may take `cursor_interval_ms`).
    pub fn awaits_cursor(&self, c: ClientId) -> bool {
        self.clients
            .get(&c)
            .is_some_and(|s| s.dues.iter().any(|d| !d.1))
    }

    /// Grades one frame `c` received at `at`.
    pub fn feed(
        &mut self,
        c: ClientId,
        frame: &Value,
        at: Instant,
        ctx: &mut Ctx,
    ) -> Result<(), Failure> {
        if frame.get("type").and_then(Value::as_str) == Some("cursor:moved") {
            return self.feed_cursor(c, frame, at, ctx);
        }
        let key = frame
            .get("channel")
            .and_then(Value::as_str)
            .map(str::to_owned);
        let next = self
            .clients
            .get(&c)
            .and_then(|s| s.queues.get(&key))
            .and_then(|q| q.front().copied());
        let Some(i) = next else {
            return Err(self.unexpected(c, frame, ctx));
        };
        let exp = &self.plan.expect[&c][i];
        let want = ctx
            .substitute(&exp.frame)
            .map_err(|m| Failure::harness(0, Some(c), m))?;
        if let Err(mismatch) = ctx.matcher.check(&want, frame) {
            return Err(self.mismatch(c, exp, want, frame, &mismatch.to_string(), ctx));
        }
        let st = self.clients.entry(c).or_default();
        if let Some(q) = st.queues.get_mut(&key) {
            q.pop_front();
        }
        if frame.get("type").and_then(Value::as_str) == Some("user:left") {
            let user = frame
                .get("user_id")
                .and_then(Value::as_str)
                .unwrap_or_default();
            st.gone.insert((key.unwrap_or_default(), user.to_owned()));
        }
        Ok(())
    }

    fn mismatch(
        &self,
        c: ClientId,
        exp: &Expected,
        want: Value,
        frame: &Value,
        why: &str,
        ctx: &mut Ctx,
    ) -> Failure {
        if let Some(l) = &exp.lenient {
            if let Ok(weaker) = ctx.substitute(&l.frame) {
                if ctx.matcher.test(&weaker, frame) {
                    let mut f =
                        Failure::new(FailureKind::Mismatch, c, l.what.clone(), &l.requirements);
                    f.level = l.level;
                    f.expected = Some(Box::new(want));
                    f.actual = Some(Box::new(frame.clone()));
                    return f;
                }
            }
        }
        let mut reqs: Vec<&str> = exp.requirements.clone();
        let mut message = format!("expected {}, {why}", exp.what);
        for (what, r) in self.forbidden_matches(c, frame, ctx, false) {
            message.push_str(&format!("; received {what}"));
            reqs.extend(r);
        }
        let mut f = Failure::new(FailureKind::Mismatch, c, message, &dedup(reqs));
        f.level = exp.level;
        f.expected = Some(Box::new(want));
        f.actual = Some(Box::new(frame.clone()));
        f
    }

    fn unexpected(&self, c: ClientId, frame: &Value, ctx: &mut Ctx) -> Failure {
        let found = self.forbidden_matches(c, frame, ctx, true);
        let (message, reqs) = if found.is_empty() {
            let t = frame.get("type").and_then(Value::as_str).unwrap_or("?");
            (
                format!("unexpected `{t}` frame"),
                vec![generic_requirement(t)],
            )
        } else {
            let whats: Vec<&str> = found.iter().map(|(w, _)| w.as_str()).collect();
            let reqs = found.iter().flat_map(|(_, r)| r.iter().copied()).collect();
            (format!("received {}", whats.join("; ")), reqs)
        };
        let mut f = Failure::new(FailureKind::Unexpected, c, message, &dedup(reqs));
        f.actual = Some(Box::new(frame.clone()));
        f
    }

    /// Forbidden frames of this step that `frame` is; `catch_all` includes the blanket
    /// rules.
    fn forbidden_matches(
        &self,
        c: ClientId,
        frame: &Value,
        ctx: &mut Ctx,
        catch_all: bool,
    ) -> Vec<(String, Vec<&'static str>)> {
        let mut out = Vec::new();
        let relevant =
            |f: &&crate::property::model::Forbidden| f.client == c && (catch_all || !f.catch_all);
        for fb in self.plan.forbidden.iter().filter(relevant) {
            if let Ok(m) = ctx.substitute(&fb.frame) {
                if ctx.matcher.test(&m, frame) {
                    out.push((fb.what.clone(), fb.requirements.clone()));
                }
            }
        }
        out
    }

    fn feed_cursor(
        &mut self,
        c: ClientId,
        frame: &Value,
        at: Instant,
        ctx: &mut Ctx,
    ) -> Result<(), Failure> {
        let fail = |message: &str, reqs: &[&str]| {
            let mut f = Failure::new(FailureKind::Unexpected, c, message.to_owned(), reqs);
            f.actual = Some(Box::new(frame.clone()));
            f
        };
        let channel = frame
            .get("channel")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let allowed = self
            .channels
            .get(&channel)
            .and_then(|t| self.plan.cursor_allowed.get(&(c, t.clone())));
        let Some(allowed) = allowed else {
            return Err(fail(
                "cursor:moved for a channel it is not subscribed to",
                &["CHAN-34", "CURS-13"],
            ));
        };
        let entries = frame
            .get("cursors")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        if entries.is_empty() {
            return Err(fail("cursor:moved with no cursor", &["CURS-11"]));
        }
        let mut users = BTreeSet::new();
        let st = self.clients.entry(c).or_default();
        for e in &entries {
            let user = e
                .get("user_id")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned();
            if st.gone.contains(&(channel.clone(), user.clone())) {
                return Err(fail(
                    &format!("a cursor of {user} after its user:left"),
                    &["CURS-13", "CURS-12"],
                ));
            }
            if !users.insert(user.clone()) {
                return Err(fail(
                    &format!("two entries for {user} in one frame"),
                    &["CURS-8"],
                ));
            }
            let ok = allowed.iter().any(|a| ctx.matcher.test(a, e));
            if !ok {
                let msg = format!(
                    "cursor entry {} is not allowed: its own position, a superseded one, or not a member's",
                    short(e)
                );
                return Err(fail(&msg, &["CURS-10", "CURS-8", "CURS-13"]));
            }
        }
        st.cursor_frames
            .entry(channel.clone())
            .or_default()
            .push(at);
        for (i, seen) in st.dues.iter_mut() {
            let due = &self.plan.cursor_due[*i];
            let due_channel = ctx.scope.text(&due.channel).unwrap_or_default();
            if due_channel == channel && entries.iter().any(|e| ctx.matcher.test(&due.entry, e)) {
                *seen = true;
            }
        }
        Ok(())
    }

    /// What `c` still lacks at the end of the step, and the coalescing bound of CURS-7.
    pub fn finish(&self, c: ClientId, interval_ms: u64, ctx: &mut Ctx) -> Result<(), Failure> {
        let Some(st) = self.clients.get(&c) else {
            return Ok(());
        };
        if let Some(i) = st.queues.values().find_map(|q| q.front()) {
            let exp = &self.plan.expect[&c][*i];
            let mut f = Failure::new(
                FailureKind::Missing,
                c,
                format!("{} did not arrive", exp.what),
                &exp.requirements,
            );
            f.level = exp.level;
            f.expected = ctx.substitute(&exp.frame).ok().map(Box::new);
            return Err(f);
        }
        for (i, seen) in &st.dues {
            let due = &self.plan.cursor_due[*i];
            if !seen {
                let mut f = Failure::new(
                    FailureKind::Missing,
                    c,
                    "the latest cursor position did not arrive".into(),
                    &["CURS-9"],
                );
                f.expected = Some(Box::new(due.entry.clone()));
                return Err(f);
            }
            let channel = ctx.scope.text(&due.channel).unwrap_or_default();
            let times = st
                .cursor_frames
                .get(&channel)
                .map(Vec::as_slice)
                .unwrap_or_default();
            coalesced(c, due.burst, times, interval_ms)?;
        }
        Ok(())
    }
}

/// CURS-7 with slack for scheduling jitter (arrival times are taken when the harness reads
/// a frame, so a busy machine bunches them): `n` back-to-back updates fail the step only if
/// every one of them got its own frame and the frames came faster than one per interval,
/// with room for one flush in the middle of the burst.
fn coalesced(c: ClientId, burst: u8, times: &[Instant], interval_ms: u64) -> Result<(), Failure> {
    if burst < 3 || times.len() < usize::from(burst) {
        return Ok(());
    }
    let span = times[times.len() - 1].duration_since(times[0]).as_millis() as u64;
    let allowed = 2 + span / interval_ms.max(1);
    if times.len() as u64 > allowed {
        let msg = format!(
            "{} cursor:moved frames within {span} ms for {burst} back-to-back updates (interval {interval_ms} ms)",
            times.len()
        );
        return Err(Failure::new(FailureKind::Unexpected, c, msg, &["CURS-7"]));
    }
    Ok(())
}

/// The requirement an unpredicted frame of type `t` most directly breaks.
fn generic_requirement(t: &str) -> &'static str {
    match t {
        "message" | "data_change" => "CHAN-30",
        "user:joined" | "user:left" | "presence:updated" => "PRES-7",
        "state:update" | "state:merge" | "state:delete" => "STATE-17",
        _ => "TRANS-10",
    }
}

fn dedup(reqs: Vec<&str>) -> Vec<&str> {
    let mut seen = BTreeSet::new();
    reqs.into_iter().filter(|r| seen.insert(*r)).collect()
}

#[cfg(test)]
mod tests;
