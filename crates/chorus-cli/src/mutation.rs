//! `chorus conform --mutation`: the suite proves its own power. The whole suite (fixtures
//! and properties) runs against the reference server once per deliberate fault
//! (chorus-server's `faults` feature), each on its own in-process server, several at once.
//! A fault is caught when a MUST case fails, and caught for the right reason when a
//! failing case cites a requirement the fault breaks or one of the same area. The suite
//! also runs against the correct server, which must pass: otherwise every fault would look
//! caught. A fault's run puts the cases of the fault's requirements and area first and
//! stops at the first related failure, unless asked to run everything.

use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use chorus_conformance::property::{self, Property};
use chorus_conformance::runner::Runner;
use chorus_conformance::suite::LoadedFixture;
use chorus_conformance::verdict::{CaseResult, Verdict};
use chorus_server::core::{Fault, Faults};
use futures_util::StreamExt;
use tokio::sync::Notify;

use chorus_conformance::runner::RunConfig;

use crate::embedded::{Embedded, EmbeddedCluster};

/// Property sequences per property in a mutation run: enough for the properties to catch
/// the faults of their areas, few enough for dozens of suite runs.
pub const DEFAULT_CASES: u32 = 8;
/// Servers (faults) under test at once: cases mostly wait on timers, not on the CPU.
pub const DEFAULT_SERVERS: usize = 4;

/// How a mutation run goes.
#[derive(Debug, Clone)]
pub struct Options {
    /// The faults to inject, one per suite run.
    pub faults: Vec<Fault>,
    /// Seed of every run.
    pub seed: u64,
    /// Cases at once against one server.
    pub jobs: usize,
    /// Servers at once.
    pub servers: usize,
    /// Sequences per property.
    pub cases: u32,
    /// The properties run besides the fixtures.
    pub properties: Vec<Property>,
    /// Stop a fault's run at the first failing case that cites a related requirement (the
    /// usual "killed" rule of mutation testing); a fault that survives has had the whole
    /// suite run against it. Without it every case runs against every fault.
    pub stop_early: bool,
    /// Longest run of the suite against one server (a case a fault makes wait forever).
    pub trial_limit: Duration,
    /// Grade a cluster instead of one server: each trial starts these nodes.
    pub cluster: Option<Cluster>,
}

/// The nodes of a trial across a cluster.
#[derive(Debug, Clone)]
pub struct Cluster {
    /// The Redis the nodes share (each trial under a key prefix of its own).
    pub redis_url: String,
    /// Nodes per trial.
    pub nodes: usize,
}

/// The faults a run injects by default: those of one server, or with `cluster` those of
/// the cluster engine, which one server cannot show; not those only a test that controls
/// the deployment can catch (a node killed).
pub fn default_faults(cluster: bool) -> Vec<Fault> {
    Fault::ALL
        .iter()
        .copied()
        .filter(|f| f.is_cluster() == cluster && !f.needs_deployment_control())
        .collect()
}

impl Default for Options {
    fn default() -> Self {
        Options {
            faults: default_faults(false),
            seed: 1,
            jobs: 8,
            servers: DEFAULT_SERVERS,
            cases: DEFAULT_CASES,
            properties: Property::ALL.to_vec(),
            stop_early: true,
            trial_limit: Duration::from_secs(180),
            cluster: None,
        }
    }
}

/// A case that failed, with the requirements it cites.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failing {
    /// The case id.
    pub id: String,
    /// Its requirements (for a property: those its failure broke).
    pub requirements: Vec<String>,
    /// The first failure: step and message.
    pub why: String,
}

/// One run of the suite, against the correct server (`fault: None`) or with one fault.
#[derive(Debug, Clone)]
pub struct Trial {
    /// The fault switched on.
    pub fault: Option<Fault>,
    /// MUST cases that failed (before the run stopped, with [`Options::stop_early`]).
    pub failing: Vec<Failing>,
    /// Cases that neither passed nor failed cleanly: harness errors, untestable, warnings.
    pub troubled: Vec<String>,
    /// Why the run could not happen at all.
    pub error: Option<String>,
    /// How long it took.
    pub duration: Duration,
}

impl Trial {
    /// Whether a MUST case failed.
    pub fn caught(&self) -> bool {
        !self.failing.is_empty()
    }

    /// The failing cases citing a requirement the fault breaks or one of its area.
    pub fn relevant(&self) -> Vec<&Failing> {
        let Some(fault) = self.fault else {
            return Vec::new();
        };
        let broken = requirements_of(fault);
        self.failing
            .iter()
            .filter(|f| f.requirements.iter().any(|r| related(&broken, r)))
            .collect()
    }

    /// One line: the verdict, the fault, its requirements and the cases that caught it.
    pub fn line(&self) -> String {
        let Some(fault) = self.fault else {
            return self.reference_line();
        };
        let relevant = self.relevant();
        let verdict = match (self.caught(), relevant.is_empty()) {
            (false, _) => "NOT caught",
            (true, true) => "UNRELATED",
            (true, false) => "caught",
        };
        let mut line = format!(
            "{verdict:<10}  {:<34} {:<9}",
            fault.name(),
            requirements_of(fault).join(",")
        );
        if let Some(e) = &self.error {
            let _ = write!(line, " error: {e}");
        }
        // The relevant cases first, then the others.
        let mut shown: Vec<&Failing> = relevant.clone();
        shown.extend(self.failing.iter().filter(|f| !relevant.contains(f)));
        for (n, f) in shown.iter().take(3).enumerate() {
            let sep = if n == 0 { " by " } else { ", " };
            let _ = write!(line, "{sep}{} [{}]", f.id, f.requirements.join(", "));
        }
        if shown.len() > 3 {
            let _ = write!(line, " (+{} more)", shown.len() - 3);
        }
        line
    }

    fn reference_line(&self) -> String {
        if self.passed_clean() {
            return format!(
                "{:<10}  {:<34} every case passes",
                "clean", "(no fault: the reference server)"
            );
        }
        let mut bad: Vec<String> = self
            .failing
            .iter()
            .map(|f| format!("{} ({})", f.id, f.why))
            .collect();
        bad.extend(self.troubled.iter().cloned());
        if let Some(e) = &self.error {
            bad.push(e.clone());
        }
        format!(
            "{:<10}  {:<34} {}",
            "BROKEN",
            "(no fault: the reference server)",
            bad.join(", ")
        )
    }

    /// Whether every case passed (or was skipped).
    pub fn passed_clean(&self) -> bool {
        self.error.is_none() && self.failing.is_empty() && self.troubled.is_empty()
    }
}

/// The outcome of a mutation run.
#[derive(Debug, Clone)]
pub struct Mutation {
    /// The suite against the correct server.
    pub reference: Trial,
    /// One trial per fault, in the order of [`Options::faults`].
    pub trials: Vec<Trial>,
    /// Wall time of the whole run.
    pub duration: Duration,
}

impl Mutation {
    /// Faults caught, and faults in all.
    pub fn score(&self) -> (usize, usize) {
        let caught = self.trials.iter().filter(|t| t.caught()).count();
        (caught, self.trials.len())
    }

    /// The faults that no case caught.
    pub fn survivors(&self) -> Vec<Fault> {
        self.faults_where(|t| !t.caught())
    }

    /// The caught faults that no failing case relates to by requirement.
    pub fn unrelated(&self) -> Vec<Fault> {
        self.faults_where(|t| t.caught() && t.relevant().is_empty())
    }

    fn faults_where(&self, pick: impl Fn(&Trial) -> bool) -> Vec<Fault> {
        self.trials
            .iter()
            .filter(|t| pick(t))
            .filter_map(|t| t.fault)
            .collect()
    }

    /// The correct server passed, and every fault was caught for a related reason.
    pub fn passed(&self) -> bool {
        self.reference.passed_clean() && self.survivors().is_empty() && self.unrelated().is_empty()
    }

    /// The score line.
    pub fn score_line(&self) -> String {
        let (caught, total) = self.score();
        let percent = if total == 0 {
            100.0
        } else {
            caught as f64 * 100.0 / total as f64
        };
        let mut line = format!("mutation score: {caught}/{total} faults caught ({percent:.1}%)");
        let unrelated = self.unrelated().len();
        if unrelated > 0 {
            let _ = write!(line, ", {unrelated} only by cases of other areas");
        }
        if !self.reference.passed_clean() {
            line.push_str(", but the suite FAILS against the correct server");
        }
        let _ = write!(line, " in {:.1} s", self.duration.as_secs_f64());
        line
    }
}

/// The requirement ids a fault's description names.
pub fn requirements_of(fault: Fault) -> Vec<&'static str> {
    fault
        .description()
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
        .filter(|w| is_requirement_id(w))
        .collect()
}

/// `AREA-n`, or a split requirement's sub-id `AREA-na` (SSE-2c, VER-6a).
fn is_requirement_id(word: &str) -> bool {
    word.split_once('-').is_some_and(|(area, n)| {
        let digits = n.trim_end_matches(|c: char| c.is_ascii_lowercase());
        !area.is_empty()
            && area.bytes().all(|b| b.is_ascii_uppercase())
            && !digits.is_empty()
            && digits.bytes().all(|b| b.is_ascii_digit())
    })
}

/// Whether requirement `cited` is one of `broken` or of the same area (same prefix).
fn related(broken: &[&str], cited: &str) -> bool {
    let area = |id: &str| id.split_once('-').map(|(a, _)| a.to_owned());
    broken
        .iter()
        .any(|b| *b == cited || area(b).is_some_and(|a| Some(a) == area(cited)))
}

/// Runs the suite against the correct server and against each fault; `done` sees each
/// trial as it ends (the reference run included).
pub async fn run(fixtures: &[LoadedFixture], opts: &Options, done: impl Fn(&Trial)) -> Mutation {
    let clock = Instant::now();
    // The correct server alone first, under the conditions of a plain `chorus conform`.
    let reference = trial(fixtures, opts, None).await;
    done(&reference);
    let mut trials: Vec<Trial> = futures_util::stream::iter(opts.faults.iter().copied())
        .map(|fault| trial(fixtures, opts, Some(fault)))
        .buffer_unordered(opts.servers.max(1))
        .inspect(|t| done(t))
        .collect()
        .await;
    let position = |t: &Trial| {
        t.fault
            .and_then(|f| opts.faults.iter().position(|g| *g == f))
    };
    trials.sort_by_key(position);
    Mutation {
        reference,
        trials,
        duration: clock.elapsed(),
    }
}

/// The suite against one server with `fault` on (or none).
pub async fn trial(fixtures: &[LoadedFixture], opts: &Options, fault: Option<Fault>) -> Trial {
    let clock = Instant::now();
    let (cases, error) = suite_against(fixtures, opts, fault).await;
    let failing = cases
        .iter()
        .filter(|c| c.verdict == Verdict::Fail)
        .map(|c| Failing {
            id: c.id.clone(),
            requirements: c.requirements.clone(),
            why: c
                .failures
                .first()
                .map(|f| format!("step {}: {}", f.step, f.message))
                .unwrap_or_default(),
        })
        .collect();
    let troubled = cases
        .iter()
        .filter(|c| {
            matches!(
                c.verdict,
                Verdict::Error | Verdict::Untestable | Verdict::Warn
            )
        })
        .map(|c| format!("{} ({})", c.id, c.verdict.as_str()))
        .collect();
    Trial {
        fault,
        failing,
        troubled,
        error,
        duration: clock.elapsed(),
    }
}

/// The cases graded so far, and whether one of them caught the fault for a related reason.
struct Seen {
    fault: Option<Fault>,
    cases: Mutex<Vec<CaseResult>>,
    caught: Notify,
}

impl Seen {
    fn record(&self, case: &CaseResult) {
        let related_failure = self.fault.is_some_and(|f| {
            let broken = requirements_of(f);
            case.verdict == Verdict::Fail && case.requirements.iter().any(|r| related(&broken, r))
        });
        self.cases
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(case.clone());
        if related_failure {
            self.caught.notify_one();
        }
    }

    fn take(self) -> Vec<CaseResult> {
        self.cases.into_inner().unwrap_or_else(|p| p.into_inner())
    }
}

/// The suite against a fresh embedded server: the cases graded (every case, or those
/// graded until one caught the fault), and why the run fell short, if it did.
async fn suite_against(
    fixtures: &[LoadedFixture],
    opts: &Options,
    fault: Option<Fault>,
) -> (Vec<CaseResult>, Option<String>) {
    let mut faults = Faults::default();
    if let Some(f) = fault {
        faults.insert(f);
    }
    let target = match Target::start(opts, faults).await {
        Ok(t) => t,
        Err(e) => return (Vec::new(), Some(e)),
    };
    let mut config = target.run_config();
    config.jobs = opts.jobs.max(1);
    config.seed = opts.seed;
    let seen = Seen {
        fault,
        cases: Mutex::new(Vec::new()),
        caught: Notify::new(),
    };
    let error = match Runner::new(config).await {
        Ok(runner) => {
            let ordered = by_relevance(fixtures, fault);
            let stop_early = opts.stop_early && fault.is_some();
            let work = play(&runner, &ordered, opts, &seen, stop_early);
            tokio::select! {
                _ = work => None,
                _ = seen.caught.notified(), if stop_early => None,
                _ = tokio::time::sleep(opts.trial_limit) => Some(format!(
                    "the suite did not finish within {} s",
                    opts.trial_limit.as_secs()
                )),
            }
        }
        Err(e) => Some(e.to_string()),
    };
    target.shutdown().await;
    (seen.take(), error)
}

/// What a trial grades: one embedded server or the nodes of a cluster.
enum Target {
    Server(Embedded),
    Cluster(EmbeddedCluster),
}

impl Target {
    async fn start(opts: &Options, faults: Faults) -> Result<Target, String> {
        Ok(match &opts.cluster {
            None => Target::Server(Embedded::start(opts.seed, faults).await?),
            Some(c) => Target::Cluster(
                EmbeddedCluster::start(opts.seed, faults, &c.redis_url, c.nodes).await?,
            ),
        })
    }

    fn run_config(&self) -> RunConfig {
        match self {
            Target::Server(s) => s.run_config(),
            Target::Cluster(c) => c.run_config(),
        }
    }

    async fn shutdown(self) {
        match self {
            Target::Server(s) => s.shutdown().await,
            Target::Cluster(c) => c.shutdown().await,
        }
    }
}

/// Plays the fixtures and the properties: side by side for a full run, else the fixtures
/// first and then the properties one at a time, so that the run can stop at the first
/// related failure without leaving property searches behind.
async fn play(
    runner: &Runner,
    fixtures: &[LoadedFixture],
    opts: &Options,
    seen: &Seen,
    stop_early: bool,
) {
    let popts = |properties: Vec<Property>| property::Options {
        seed: opts.seed,
        cases: opts.cases,
        properties,
        // The verdict is all a mutation run needs: shrink briefly.
        shrink_time: Duration::from_secs(1),
        shrink_runs: 16,
        ..property::Options::default()
    };
    let record = |c: &CaseResult| seen.record(c);
    if !stop_early {
        let generated = async {
            if !opts.properties.is_empty() {
                for o in property::run(runner, &popts(opts.properties.clone())).await {
                    record(&o.result);
                }
            }
        };
        tokio::join!(runner.run_all(fixtures, record), generated);
        return;
    }
    runner.run_all(fixtures, record).await;
    for p in &opts.properties {
        for o in property::run(runner, &popts(vec![*p])).await {
            record(&o.result);
        }
    }
}

/// The fixtures citing a requirement the fault breaks first, then those of its area, then
/// the others (each group in suite order).
fn by_relevance(fixtures: &[LoadedFixture], fault: Option<Fault>) -> Vec<LoadedFixture> {
    let mut ordered = fixtures.to_vec();
    if let Some(f) = fault {
        let broken = requirements_of(f);
        let rank = |lf: &LoadedFixture| {
            let reqs = &lf.fixture.requirements;
            if reqs.iter().any(|r| broken.contains(&r.as_str())) {
                0
            } else if reqs.iter().any(|r| related(&broken, r)) {
                1
            } else {
                2
            }
        };
        ordered.sort_by_key(rank);
    }
    ordered
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_fault_names_a_requirement() {
        for f in Fault::ALL {
            assert!(!requirements_of(*f).is_empty(), "{}", f.name());
        }
        assert_eq!(requirements_of(Fault::NoPong), ["CONN-12"]);
        assert_eq!(requirements_of(Fault::SsePresenceAllowed), ["SSE-2c"]);
    }

    #[test]
    fn requirements_relate_by_id_or_area() {
        assert!(related(&["PRES-11"], "PRES-11"));
        assert!(related(&["PRES-11"], "PRES-2"));
        assert!(!related(&["PRES-11"], "CHAN-7"));
        assert!(!related(&["CHAN-7"], "CHANX-7"));
    }

    fn made(fault: Option<Fault>, failing: &[(&str, &[&str])]) -> Trial {
        Trial {
            fault,
            failing: failing
                .iter()
                .map(|(id, reqs)| Failing {
                    id: (*id).into(),
                    requirements: reqs.iter().map(|r| (*r).to_owned()).collect(),
                    why: String::new(),
                })
                .collect(),
            troubled: Vec::new(),
            error: None,
            duration: Duration::ZERO,
        }
    }

    #[test]
    fn lines_name_the_verdict_and_relevant_cases_first() {
        let t = made(
            Some(Fault::NoPong),
            &[("a.x", &["CHAN-1"]), ("connection.ping", &["CONN-12"])],
        );
        let line = t.line();
        assert!(line.starts_with("caught "), "{line}");
        assert!(
            line.find("connection.ping [CONN-12]") < line.find("a.x [CHAN-1]"),
            "{line}"
        );
        assert!(made(Some(Fault::NoPong), &[])
            .line()
            .starts_with("NOT caught"));
        assert!(made(Some(Fault::NoPong), &[("a.x", &["CHAN-1"])])
            .line()
            .starts_with("UNRELATED"));
    }

    #[test]
    fn a_run_passes_only_with_a_clean_reference_and_every_fault_caught() {
        let caught = made(Some(Fault::NoPong), &[("c.p", &["CONN-12"])]);
        let mut m = Mutation {
            reference: made(None, &[]),
            trials: vec![caught.clone()],
            duration: Duration::ZERO,
        };
        assert!(m.passed());
        assert_eq!(m.score(), (1, 1));
        m.reference = made(None, &[("c.p", &["CONN-12"])]);
        assert!(!m.passed());
        m.reference = made(None, &[]);
        m.trials.push(made(Some(Fault::SeqGap), &[]));
        assert!(!m.passed());
        assert_eq!(m.survivors(), [Fault::SeqGap]);
        assert!(m
            .score_line()
            .starts_with("mutation score: 1/2 faults caught (50.0%)"));
    }
}
