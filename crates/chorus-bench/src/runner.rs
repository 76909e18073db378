//! Runs the chosen scenarios against each server: warm-up rounds, then repetitions, the
//! servers alternating within each round, medians at the end.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

use crate::error::BenchError;
use crate::metrics::{medians, Figures};
use crate::scenario::{Scenario, Timing};
use crate::server::{Launcher, Server, ServerKind};

/// What to run.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Servers to compare.
    pub kinds: Vec<ServerKind>,
    /// Scenarios in order.
    pub scenarios: Vec<Scenario>,
    /// Measured repetitions per scenario and server.
    pub reps: usize,
    /// Unmeasured warm-up rounds before them.
    pub warmup: usize,
    /// Publish/subscribe timing.
    pub timing: Timing,
    /// How servers are started.
    pub launcher: Launcher,
}

/// A scenario's runs and medians per server.
#[derive(Debug, Clone, Serialize)]
pub struct ScenarioResult {
    /// Scenario name.
    pub name: String,
    /// What it measures.
    pub description: String,
    /// Its parameters.
    pub scenario: Scenario,
    /// Measured runs per server.
    pub runs: BTreeMap<ServerKind, Vec<Figures>>,
    /// Per-figure medians per server.
    pub medians: BTreeMap<ServerKind, Figures>,
    /// Runs that failed, with why.
    pub failures: Vec<String>,
}

impl ScenarioResult {
    /// The median of `figure` for `kind`.
    pub fn median(&self, kind: ServerKind, figure: &str) -> Option<f64> {
        self.medians.get(&kind)?.get(figure).copied()
    }
}

/// Runs everything; `progress` gets one line per run.
pub async fn run_all(settings: &Settings, progress: &mut dyn FnMut(&str)) -> Vec<ScenarioResult> {
    let mut results = Vec::new();
    for scenario in &settings.scenarios {
        let result = run_scenario(settings, scenario, progress).await;
        results.push(result);
    }
    results
}

async fn run_scenario(
    settings: &Settings,
    scenario: &Scenario,
    progress: &mut dyn FnMut(&str),
) -> ScenarioResult {
    let kinds: Vec<ServerKind> = settings
        .kinds
        .iter()
        .copied()
        .filter(|k| scenario.supports(*k))
        .collect();
    let mut result = ScenarioResult {
        name: scenario.name(),
        description: scenario.description(),
        scenario: scenario.clone(),
        runs: BTreeMap::new(),
        medians: BTreeMap::new(),
        failures: Vec::new(),
    };
    let mut shared: BTreeMap<ServerKind, Server> = BTreeMap::new();
    let database = match Database::prepare(settings, scenario).await {
        Ok(database) => database,
        Err(e) => {
            result.failures.push(format!("postgres: {e}"));
            return result;
        }
    };
    let extra = database
        .as_ref()
        .map(Database::server_args)
        .unwrap_or_default();
    if !scenario.fresh_server_per_run() {
        for &kind in &kinds {
            match settings.launcher.start_with(kind, &extra) {
                Ok(server) => {
                    shared.insert(kind, server);
                }
                Err(e) => result.failures.push(format!("{}: {e}", kind.name())),
            }
        }
    }
    let cluster = match scenario.needs_cluster() {
        false => None,
        true => match crate::cluster::Cluster::start(&settings.launcher, crate::cluster::NODES) {
            Ok(c) => Some(c),
            Err(e) => {
                result.failures.push(format!("cluster: {e}"));
                return result;
            }
        },
    };
    let (warmup, reps) = match (scenario.repeats(), scenario.reps_cap()) {
        (false, _) => (0, 1),
        (true, Some(cap)) => (0, settings.reps.min(cap)),
        (true, None) => (settings.warmup, settings.reps),
    };
    let rounds = warmup + reps;
    for round in 0..rounds {
        for &kind in &kinds {
            let label = if round < warmup {
                format!("{} {} warm-up {}", result.name, kind.name(), round + 1)
            } else {
                format!("{} {} rep {}", result.name, kind.name(), round - warmup + 1)
            };
            let outcome = match &cluster {
                Some(c) => run_clustered(settings, scenario, c, kind, &mut shared).await,
                None => run_once(settings, scenario, kind, &mut shared).await,
            };
            match outcome {
                Ok(figures) => {
                    progress(&format!("{label}: {}", summary(scenario, &figures)));
                    if round >= warmup {
                        result.runs.entry(kind).or_default().push(figures);
                    }
                }
                Err(e) => {
                    progress(&format!("{label}: FAILED: {e}"));
                    result.failures.push(format!("{label}: {e}"));
                }
            }
            // Let close handshakes and timers finish before the next server's run.
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }
    drop(shared);
    drop(cluster);
    if let Some(database) = database {
        if let Err(e) = database.cleanup().await {
            result.failures.push(format!("postgres clean-up: {e}"));
        }
    }
    result.medians = result
        .runs
        .iter()
        .map(|(k, runs)| (*k, medians(runs)))
        .collect();
    result
}

/// The feed scenarios' database table and the server's durable store beside it.
struct Database {
    url: String,
    data_dir: std::path::PathBuf,
}

impl Database {
    async fn prepare(
        settings: &Settings,
        scenario: &Scenario,
    ) -> Result<Option<Database>, BenchError> {
        if !scenario.needs_database() {
            return Ok(None);
        }
        let url = settings.launcher.pg_url.clone();
        crate::scenario::feed::prepare(&url).await?;
        let data_dir = std::env::temp_dir().join(format!(
            "chorus-bench-feed-{}-{}",
            std::process::id(),
            crate::payload::now_ns()
        ));
        std::fs::create_dir_all(&data_dir)
            .map_err(BenchError::io(format!("create {}", data_dir.display())))?;
        Ok(Some(Database { url, data_dir }))
    }

    fn server_args(&self) -> Vec<String> {
        crate::scenario::feed::server_args(&self.url, &self.data_dir)
    }

    /// After the servers stopped: the slot, publication, table and store go.
    async fn cleanup(self) -> Result<(), BenchError> {
        let _ = std::fs::remove_dir_all(&self.data_dir);
        crate::scenario::feed::cleanup(&self.url).await
    }
}

async fn run_once(
    settings: &Settings,
    scenario: &Scenario,
    kind: ServerKind,
    shared: &mut BTreeMap<ServerKind, Server>,
) -> Result<Figures, BenchError> {
    if scenario.fresh_server_per_run() {
        let mut server = settings.launcher.start(kind)?;
        let figures = scenario.run(&server, settings.timing).await;
        server.check_alive()?;
        return figures;
    }
    let server = shared.get_mut(&kind).ok_or_else(|| BenchError::Server {
        server: kind.name().to_owned(),
        reason: "not started".to_owned(),
    })?;
    server.check_alive()?;
    let figures = scenario.run(server, settings.timing).await;
    server.check_alive()?;
    figures
}

/// One run of a cluster scenario, beside the shared single server of `kind`.
async fn run_clustered(
    settings: &Settings,
    scenario: &Scenario,
    cluster: &crate::cluster::Cluster,
    kind: ServerKind,
    shared: &mut BTreeMap<ServerKind, Server>,
) -> Result<Figures, BenchError> {
    let single = shared.get_mut(&kind).ok_or_else(|| BenchError::Server {
        server: kind.name().to_owned(),
        reason: "not started".to_owned(),
    })?;
    single.check_alive()?;
    scenario.run_cluster(cluster, single, settings.timing).await
}

/// The run's key figures on one line.
fn summary(scenario: &Scenario, figures: &Figures) -> String {
    scenario
        .key_figures()
        .iter()
        .filter_map(|k| {
            figures
                .get(*k)
                .map(|v| format!("{k}={}", crate::report::fmt_value(*v)))
        })
        .collect::<Vec<_>>()
        .join(" ")
}
