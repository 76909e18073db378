//! The options of a faults build (`--features faults`): deliberate protocol bugs of the
//! reference server, for proving that the conformance suite catches them.

use std::sync::atomic::{AtomicUsize, Ordering};

use chorus_cli::mutation::{self, Trial};
use chorus_conformance::report::exit;
use chorus_conformance::suite::LoadedFixture;
use chorus_server::core::{Fault, Faults};
use clap::Args;

use crate::conform::{selected_properties, ConformArgs};

/// `chorus conform` options of a faults build.
#[derive(Debug, Args)]
pub struct FaultArgs {
    /// Switch these faults on in the embedded reference server (comma-separated or
    /// repeated; see --list-faults). With --mutation: inject only these.
    #[arg(long = "fault", value_name = "NAME[,NAME]", conflicts_with = "urls")]
    pub fault: Vec<String>,
    /// Run the suite against the reference server once per fault (each alone, on its own
    /// server) and against the correct server; print which faults were caught, by which
    /// cases, and the mutation score. Exit 1 when a fault survives.
    #[arg(long, conflicts_with_all = ["urls", "list", "coverage"])]
    pub mutation: bool,
    /// With --mutation: run every case against every fault (the complete list of the cases
    /// each fault fails) instead of stopping at the first failing case of a related
    /// requirement.
    #[arg(long, requires = "mutation")]
    pub whole_suite: bool,
    /// With --mutation: servers under test at once.
    #[arg(long, default_value_t = mutation::DEFAULT_SERVERS, value_name = "N")]
    pub fault_servers: usize,
    /// With --mutation: grade a cluster instead of one server, each trial on nodes of the
    /// Redis cluster engine sharing this Redis (redis://host:port; each trial under a key
    /// prefix of its own, deleted after it); injects the cluster engine's faults (unless
    /// --fault names others).
    #[arg(long, requires = "mutation", value_name = "URL")]
    pub cluster_redis: Option<String>,
    /// With --cluster-redis: nodes per trial (the cases' clients are spread over them).
    #[arg(
        long,
        default_value_t = 2,
        value_name = "N",
        requires = "cluster_redis"
    )]
    pub cluster_nodes: usize,
    /// List the faults (name, requirement, what breaks) and exit.
    #[arg(long)]
    pub list_faults: bool,
}

/// Parses `--fault` values.
pub fn parse(names: &[String]) -> Result<Faults, String> {
    Faults::parse(&names.join(",")).map_err(|unknown| {
        let known: Vec<&str> = Fault::ALL.iter().map(|f| f.name()).collect();
        format!("unknown fault {unknown:?}; known: {}", known.join(", "))
    })
}

/// `--list-faults`.
pub fn list() -> u8 {
    for f in Fault::ALL {
        println!(
            "{:<34} {:<9} {}",
            f.name(),
            mutation::requirements_of(*f).join(","),
            f.description()
        );
    }
    exit::OK
}

/// `--mutation`.
pub async fn run_mutation(args: &ConformArgs, selected: &[LoadedFixture]) -> Result<u8, String> {
    let chosen = parse(&args.faults.fault)?;
    let cluster = args
        .faults
        .cluster_redis
        .as_ref()
        .map(|url| mutation::Cluster {
            redis_url: url.clone(),
            nodes: args.faults.cluster_nodes.max(1),
        });
    // Unless named, the faults of what is graded: one server cannot show the cluster
    // engine's, a cluster run is for those.
    let faults: Vec<Fault> = match chosen.is_empty() {
        true => mutation::default_faults(cluster.is_some()),
        false => Fault::ALL
            .iter()
            .copied()
            .filter(|f| chosen.on(*f))
            .collect(),
    };
    let opts = mutation::Options {
        faults,
        seed: args.seed.unwrap_or(1),
        jobs: args.jobs.max(1),
        servers: args.faults.fault_servers.max(1),
        cases: args.cases.unwrap_or(mutation::DEFAULT_CASES),
        properties: selected_properties(args),
        stop_early: !args.faults.whole_suite,
        cluster,
        ..mutation::Options::default()
    };
    let total = opts.faults.len() + 1;
    let done = AtomicUsize::new(0);
    let quiet = args.quiet;
    let report = mutation::run(selected, &opts, |t: &Trial| {
        let n = done.fetch_add(1, Ordering::Relaxed) + 1;
        if !quiet {
            let name = t.fault.map_or("(no fault)", |f| f.name());
            let verdict = match (t.fault, t.caught()) {
                (None, _) if t.passed_clean() => "clean",
                (None, _) => "BROKEN",
                (Some(_), true) => "caught",
                (Some(_), false) => "NOT caught",
            };
            eprintln!(
                "[{n}/{total}] {name}: {verdict} ({:.1} s)",
                t.duration.as_secs_f64()
            );
        }
    })
    .await;
    println!("{}", report.reference.line());
    for t in &report.trials {
        println!("{}", t.line());
    }
    println!("{}", report.score_line());
    Ok(if report.passed() {
        exit::OK
    } else {
        exit::FAILED
    })
}
