//! # chorus-bench
//!
//! `chorus bench`: a load generator that drives real WebSocket connections on loopback
//! against the Chorus server and three baselines (bare tokio-tungstenite, Node.js `ws`,
//! Socket.IO 4), the same workload for each, alternating, and reports each figure for all
//! of them with the Chorus/baseline ratios. Server CPU comes from the server process's own accounting
//! (`/proc/<pid>/stat`), memory from its `/proc/<pid>/status`. Servers run pinned to one
//! core, the load generator to the other. Every run is bounded in connections and time.
//!
//! See docs/benchmarks.md for the command, the scenarios and the latest figures.

#![deny(missing_docs)]

pub mod chart;
pub mod client;
pub mod cluster;
pub mod dialect;
pub mod error;
pub mod http;
pub mod metrics;
pub mod payload;
pub mod procstat;
pub mod pubsub;
pub mod report;
pub mod runner;
pub mod sampler;
pub mod scenario;
pub mod server;
pub mod session;
pub mod system;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use crate::error::BenchError;
use crate::report::{Report, Verdict};
use crate::runner::{ScenarioResult, Settings};
use crate::scenario::{Scenario, Timing};
use crate::server::{Launcher, ServerKind};

/// Options of `chorus bench` (also the `chorus-bench` binary).
#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// Smoke run for CI (under a minute with a 30 s soak): small sizes, one repetition, no
    /// warm-up; fails unless no delivery is lost and the soak leaks nothing.
    #[arg(long)]
    pub quick: bool,
    /// Scenario families to run, comma-separated: fanout, paced, fanin, channels, slow,
    /// idle, presence, state, history, soak, feed, cluster [default: all but feed, which
    /// needs PostgreSQL, and cluster, which needs `redis-server`: they run only when named].
    #[arg(long, value_delimiter = ',')]
    pub scenarios: Vec<String>,
    /// Servers to compare, comma-separated: chorus, bare, node, socketio [default: all].
    #[arg(long, value_delimiter = ',')]
    pub servers: Vec<String>,
    /// Measured repetitions per scenario and server [default: 5; quick: 1].
    #[arg(long)]
    pub reps: Option<usize>,
    /// Warm-up rounds before them [default: 1; quick: 0].
    #[arg(long)]
    pub warmup: Option<usize>,
    /// Publishing time of one publish/subscribe run, seconds [default: 5; quick: 1].
    #[arg(long)]
    pub duration: Option<f64>,
    /// Subscribers in the fan-out scenarios [default: 200; quick: 50].
    #[arg(long)]
    pub subscribers: Option<usize>,
    /// Deliveries per second of the paced fan-out.
    #[arg(long, default_value_t = 100_000.0)]
    pub paced_rate: f64,
    /// Deliveries per second of the paced cross-node fan-out (cluster).
    #[arg(long, default_value_t = 20_000.0)]
    pub cluster_paced_rate: f64,
    /// Idle connections [default: 10000; quick: 500].
    #[arg(long)]
    pub idle_connections: Option<usize>,
    /// Idle connections per (presence) channel.
    #[arg(long, default_value_t = 10)]
    pub idle_per_channel: usize,
    /// Presence-channel and shared-state sizes, comma-separated [default: 10,100,1000;
    /// quick: 10].
    #[arg(long, value_delimiter = ',')]
    pub members: Vec<usize>,
    /// Soak length, seconds [default: 300; quick: 30].
    #[arg(long)]
    pub soak_secs: Option<u64>,
    /// CPU the servers are pinned to (taskset).
    #[arg(long, default_value_t = 0)]
    pub server_core: usize,
    /// CPU the load generator pins itself to.
    #[arg(long, default_value_t = 1)]
    pub client_core: usize,
    /// The `chorus` binary [default: next to this program].
    #[arg(long)]
    pub chorus_bin: Option<PathBuf>,
    /// The `chorus-bench-bare` binary [default: next to this program].
    #[arg(long)]
    pub bare_bin: Option<PathBuf>,
    /// The Node.js binary.
    #[arg(long, default_value = "node")]
    pub node_bin: PathBuf,
    /// Folder of the Node.js baseline (`server.js`, `node_modules`) [default:
    /// bench/node-ws of this source tree].
    #[arg(long)]
    pub node_dir: Option<PathBuf>,
    /// Folder of the Socket.IO baseline (`server.js`, `node_modules`) [default:
    /// bench/socketio of this source tree].
    #[arg(long)]
    pub socketio_dir: Option<PathBuf>,
    /// Extra flag for `chorus serve` (repeatable), e.g. `--chorus-arg=--queue-capacity=4096`.
    #[arg(long = "chorus-arg", allow_hyphen_values = true)]
    pub chorus_args: Vec<String>,
    /// PostgreSQL of the feed scenarios (wal_level=logical; the bench creates and drops
    /// the table, slot and publication `chorus_bench_feed`).
    #[arg(long, default_value = "postgres://chorus@127.0.0.1:5432/chorus_test")]
    pub pg_url: String,
    /// Changes per second of the paced feed runs, comma-separated.
    #[arg(long, value_delimiter = ',', default_values_t = [1_000.0, 10_000.0])]
    pub feed_rates: Vec<f64>,
    /// Folder to write results.json, results.md and chart.png into.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// Sizes and timing resolved from the options (quick or full).
fn settings(args: &BenchArgs) -> Result<Settings, BenchError> {
    let q = args.quick;
    let pick =
        |v: Option<usize>, full: usize, quick: usize| v.unwrap_or(if q { quick } else { full });
    let subscribers = pick(args.subscribers, 200, 50);
    let members = if args.members.is_empty() {
        if q {
            vec![10]
        } else {
            vec![10, 100, 1000]
        }
    } else {
        args.members.clone()
    };
    let soak_secs = args.soak_secs.unwrap_or(if q { 30 } else { 300 });
    let mut all = vec![
        Scenario::Fanout { subscribers },
        Scenario::FanoutPaced {
            subscribers,
            rate: args.paced_rate,
        },
        Scenario::Fanin {
            publishers: if q { 10 } else { 50 },
        },
        Scenario::Channels {
            pairs: if q { 20 } else { 200 },
        },
        Scenario::SlowConsumer { subscribers },
        Scenario::Idle {
            connections: pick(args.idle_connections, 10_000, 500),
            per_channel: args.idle_per_channel,
        },
    ];
    all.extend(members.iter().map(|&m| Scenario::Presence { members: m }));
    all.extend(members.iter().map(|&w| Scenario::State { writers: w }));
    all.push(Scenario::History {
        clients: if q { 5 } else { 50 },
        missed: 100,
    });
    all.push(Scenario::Soak { secs: soak_secs });
    all.extend(args.feed_rates.iter().map(|&rate| Scenario::Feed { rate }));
    all.push(Scenario::FeedRamp);
    let cluster_subscribers = pick(args.subscribers, 100, 20);
    all.push(Scenario::ClusterFanout {
        subscribers: cluster_subscribers,
        rate: None,
    });
    all.push(Scenario::ClusterFanout {
        subscribers: cluster_subscribers,
        rate: Some(args.cluster_paced_rate),
    });
    all.push(Scenario::ClusterPresence {
        members: members.first().copied().unwrap_or(10),
    });
    let scenarios = select_scenarios(all, &args.scenarios, q)?;
    Ok(Settings {
        kinds: select_servers(args)?,
        scenarios,
        reps: pick(args.reps, 5, 1).max(1),
        warmup: pick(args.warmup, 1, 0),
        timing: Timing {
            duration: Duration::from_secs_f64(args.duration.unwrap_or(if q { 1.0 } else { 5.0 })),
            drain: Duration::from_secs(10),
            window: 32,
        },
        launcher: launcher(args, &select_servers(args)?)?,
    })
}

fn select_scenarios(
    all: Vec<Scenario>,
    wanted: &[String],
    quick: bool,
) -> Result<Vec<Scenario>, BenchError> {
    if let Some(bad) = wanted
        .iter()
        .find(|w| !all.iter().any(|s| s.family() == w.as_str()))
    {
        return Err(BenchError::Options(format!("unknown scenario {bad}")));
    }
    Ok(all
        .into_iter()
        .filter(|s| {
            if wanted.is_empty() {
                // The quick run skips what needs seconds of stall or 100k/s pacing; the
                // feed needs a PostgreSQL prepared for it, so it runs only when named.
                let slow = matches!(
                    s,
                    Scenario::SlowConsumer { .. } | Scenario::FanoutPaced { .. }
                );
                let skipped = s.needs_database() || s.needs_cluster() || (quick && slow);
                !skipped
            } else {
                wanted.iter().any(|w| w == s.family())
            }
        })
        .collect())
}

fn select_servers(args: &BenchArgs) -> Result<Vec<ServerKind>, BenchError> {
    if args.servers.is_empty() {
        return Ok(ServerKind::ALL.to_vec());
    }
    args.servers
        .iter()
        .map(|s| {
            ServerKind::parse(s).ok_or_else(|| BenchError::Options(format!("unknown server {s}")))
        })
        .collect()
}

/// Finds a sibling binary of this program (or of the `deps/` folder tests run from).
fn sibling(name: &str) -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let dir = exe.parent()?;
    [dir.to_path_buf(), dir.parent()?.to_path_buf()]
        .into_iter()
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// Where each server's program is; only the chosen servers' binaries must exist.
fn launcher(args: &BenchArgs, kinds: &[ServerKind]) -> Result<Launcher, BenchError> {
    let missing = |what: &str, hint: &str| {
        BenchError::Options(format!("cannot find the {what} binary: {hint}"))
    };
    let chorus_bin = match &args.chorus_bin {
        Some(p) => p.clone(),
        None => sibling("chorus").ok_or_else(|| {
            missing(
                "chorus",
                "build it with `cargo build --release -p chorus-cli` or pass --chorus-bin",
            )
        })?,
    };
    let bare_bin = match &args.bare_bin {
        Some(p) => p.clone(),
        // Never started: a name for messages only.
        None if !kinds.contains(&ServerKind::Bare) => PathBuf::from("chorus-bench-bare"),
        None => sibling("chorus-bench-bare").ok_or_else(|| {
            missing(
                "chorus-bench-bare",
                "build it with `cargo build --release -p chorus-bench` or pass --bare-bin",
            )
        })?,
    };
    let in_tree = |dir: &str| {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../bench")
            .join(dir)
    };
    let node_dir = args.node_dir.clone().unwrap_or_else(|| in_tree("node-ws"));
    let socketio_dir = args
        .socketio_dir
        .clone()
        .unwrap_or_else(|| in_tree("socketio"));
    Ok(Launcher {
        chorus_bin,
        bare_bin,
        node_bin: args.node_bin.clone(),
        node_dir,
        socketio_dir,
        server_core: args.server_core,
        chorus_extra: args.chorus_args.clone(),
        pg_url: args.pg_url.clone(),
    })
}

/// Checks that each chosen server can be started at all (before an hour of runs).
fn preflight(settings: &mut Settings, quick: bool, named: &[String]) -> Result<(), BenchError> {
    let installs = [
        (
            ServerKind::Node,
            settings.launcher.node_dir.join("node_modules/ws"),
        ),
        (
            ServerKind::SocketIo,
            settings
                .launcher
                .socketio_dir
                .join("node_modules/socket.io"),
        ),
    ];
    for (kind, module) in installs {
        if !settings.kinds.contains(&kind) || module.is_dir() {
            continue;
        }
        let dir = module.parent().and_then(Path::parent).unwrap_or(&module);
        let hint = format!(
            "{} baseline not installed: run `npm ci` in {}",
            kind.name(),
            dir.display()
        );
        // A quick run of the default servers goes on without it; a run that names it,
        // or has nothing else to measure, fails: empty tables are not a result.
        let was_named = named.iter().any(|s| s.trim() == kind.name());
        if quick && !was_named && settings.kinds.len() > 1 {
            eprintln!("chorus bench: {hint}; skipping {}", kind.name());
            settings.kinds.retain(|k| *k != kind);
        } else {
            return Err(BenchError::Options(hint));
        }
    }
    for &kind in &settings.kinds {
        drop(settings.launcher.start(kind)?);
    }
    Ok(())
}

/// Runs the benchmark; the exit code says whether the run was clean (quick: no loss, no
/// leak; full: every run completed).
pub fn run(args: BenchArgs) -> ExitCode {
    match run_inner(&args) {
        Ok(code) => code,
        Err(e @ BenchError::Options(_)) => {
            eprintln!("chorus bench: {e}");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("chorus bench: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run_inner(args: &BenchArgs) -> Result<ExitCode, BenchError> {
    let mut settings = settings(args)?;
    if args.server_core == args.client_core || system::cpu_count() < 2 {
        eprintln!("chorus bench: warning: server and load generator share a CPU; figures are not comparable");
    }
    system::pin_to_core(args.client_core)?;
    let nofile = system::raise_nofile_limit()?;
    let load_before = system::load_average();
    if load_before > 0.3 {
        eprintln!("chorus bench: warning: load average {load_before:.2} > 0.3; other work will pollute the figures");
    }
    preflight(&mut settings, args.quick, &args.servers)?;
    eprintln!(
        "chorus bench: servers {:?} on CPU {}, load generator on CPU {}, open-file limit {nofile}",
        settings.kinds.iter().map(|k| k.name()).collect::<Vec<_>>(),
        args.server_core,
        args.client_core
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(BenchError::io("tokio runtime"))?;
    let local = tokio::task::LocalSet::new();
    let mut progress = |line: &str| eprintln!("  {line}");
    let results = local.block_on(&runtime, runner::run_all(&settings, &mut progress));
    let report = Report {
        command: command_line(),
        machine: system::machine(),
        date: system::utc_now(),
        load_before,
        pinning: format!(
            "servers: taskset -c {}; load generator: sched_setaffinity to CPU {} (one thread)",
            args.server_core, args.client_core
        ),
        reps: settings.reps,
        warmup: settings.warmup,
        targets: report::targets(&results),
        results,
    };
    print!("{}", report::text(&report));
    if let Some(dir) = &args.out {
        write_outputs(&report, dir)?;
    }
    Ok(verdict(&report, args.quick))
}

fn command_line() -> String {
    let mut args = std::env::args();
    let program = args
        .next()
        .map(|p| {
            Path::new(&p)
                .file_name()
                .map_or(p.clone(), |f| f.to_string_lossy().into_owned())
        })
        .unwrap_or_default();
    std::iter::once(program)
        .chain(args)
        .collect::<Vec<_>>()
        .join(" ")
}

fn write_outputs(report: &Report, dir: &Path) -> Result<(), BenchError> {
    std::fs::create_dir_all(dir).map_err(BenchError::io(format!("create {}", dir.display())))?;
    let json = serde_json::to_string_pretty(report).unwrap_or_default();
    let write = |name: &str, text: &str| {
        let path = dir.join(name);
        std::fs::write(&path, text).map_err(BenchError::io(format!("write {}", path.display())))
    };
    write("results.json", &json)?;
    write("results.md", &report::markdown(report))?;
    let subtitle = report.date.clone();
    if let Err(e) = chart::draw(&report.results, &subtitle, &dir.join("chart.png")) {
        eprintln!("chorus bench: no chart: {e}");
    }
    eprintln!(
        "chorus bench: wrote {}/results.json, results.md, chart.png",
        dir.display()
    );
    Ok(())
}

/// Quick runs fail on any loss, disorder, error or leak; full runs fail only when a run
/// could not complete (missed targets are reported, not fatal).
fn verdict(report: &Report, quick: bool) -> ExitCode {
    let failed_runs = report.results.iter().any(|r| !r.failures.is_empty());
    let dirty = report.results.iter().any(dirty_runs);
    let leaked = report
        .targets
        .iter()
        .any(|t| t.target.starts_with("soak: stats") && t.verdict == Verdict::Missed);
    if failed_runs || (quick && (dirty || leaked)) {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// Whether any run of the Chorus server lost, reordered or errored.
fn dirty_runs(r: &ScenarioResult) -> bool {
    r.runs
        .get(&ServerKind::Chorus)
        .into_iter()
        .flatten()
        .any(|f| {
            ["lost", "disorder", "errors", "unacked", "not_recovered"]
                .iter()
                .any(|k| f.get(*k).copied().unwrap_or(0.0) != 0.0)
        })
}
