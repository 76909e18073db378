//! `chorus conform-client`: grade a Chorus client library through its adapter
//! (conformance/CLIENT-DRIVER.md). The suite plays the server. Verdicts, reports, baselines,
//! `--repeat` and exit codes are those of `chorus conform`.
//!
//! `--mutation FILE` grades the suite itself against a client built with deliberate faults:
//! FILE lists them (`{"faults":[{"name":…,"requirements":[…]}]}`); for each, every case is
//! run with `CHORUS_CLIENT_FAULT=<name>` in the adapter's environment, and the fault counts
//! as caught when a case citing one of its requirements fails. `--mutation-adapter` gives
//! the faulty command instead (`{fault}` replaced by the name), for adapters that take the
//! fault as an argument.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use chorus_conformance::baseline::Baseline;
use chorus_conformance::client_suite::{self, ClientSuite, LoadedCase, Settings};
use chorus_conformance::progress::Progress;
use chorus_conformance::report::{self, exit, terminal, RunInfo};
use chorus_conformance::verdict::{Report, RunSettings, Target, Verdict};
use clap::Args;
use serde::Deserialize;

use crate::conform::FailOn;

/// Arguments of `chorus conform-client`.
#[derive(Debug, Args)]
pub struct ConformClientArgs {
    /// The adapter command, run with `sh -c` once per case instance, e.g.
    /// 'python3 conformance/adapters/python/adapter.py'.
    #[arg(long, value_name = "CMD", required_unless_present_any = ["coverage", "list"])]
    pub adapter: Option<String>,
    /// Read client cases from this directory instead of the built-in ones.
    #[arg(long, value_name = "DIR")]
    pub fixtures: Option<PathBuf>,
    /// List the selected cases and exit.
    #[arg(long)]
    pub list: bool,
    /// Print the client requirement coverage table and exit; non-zero when a client
    /// requirement is neither covered by a case nor argued in client-unobservable.json.
    #[arg(long)]
    pub coverage: bool,
    /// Run only cases whose id matches this glob (repeatable).
    #[arg(long = "run", value_name = "GLOB")]
    pub run: Vec<String>,
    /// Skip cases whose id matches this glob (repeatable).
    #[arg(long = "skip", value_name = "GLOB")]
    pub skip: Vec<String>,
    /// Which failures make the exit code non-zero.
    #[arg(long, value_enum, default_value_t = FailOn::Must)]
    pub fail_on: FailOn,
    /// Known failures (a file written by --emit-baseline).
    #[arg(long, value_name = "FILE")]
    pub baseline: Option<PathBuf>,
    /// Write the cases that failed in this run as a baseline file.
    #[arg(long, value_name = "FILE")]
    pub emit_baseline: Option<PathBuf>,
    /// Run each case N times; cases whose attempts disagree are reported flaky.
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub repeat: u32,
    /// Multiply every tolerance and wait (slow machines).
    #[arg(long, default_value_t = 1.0, value_name = "FACTOR")]
    pub timeout_scale: f64,
    /// Longest case (ms) the run may take: cases that need more (the 30 s backoff cap, the
    /// 30 s stability reset) are reported untestable.
    #[arg(long, default_value_t = 20_000, value_name = "MS")]
    pub max_wait_ms: u64,
    /// Cases run concurrently (each with its own adapters and scripted servers).
    #[arg(long, default_value_t = 8, value_name = "N")]
    pub jobs: usize,
    /// Write the JSON report (schema/report.schema.json).
    #[arg(long, value_name = "FILE")]
    pub report_json: Option<PathBuf>,
    /// Write a JUnit XML report.
    #[arg(long, value_name = "FILE")]
    pub report_junit: Option<PathBuf>,
    /// Write a self-contained HTML report.
    #[arg(long, value_name = "FILE")]
    pub report_html: Option<PathBuf>,
    /// Mutation run: the faults file of a faulty client build (see the module docs).
    #[arg(long, value_name = "FILE")]
    pub mutation: Option<PathBuf>,
    /// With --mutation: the adapter command of a faulty run, `{fault}` replaced by the
    /// fault's name [default: --adapter, with CHORUS_CLIENT_FAULT set].
    #[arg(long, value_name = "CMD", requires = "mutation")]
    pub mutation_adapter: Option<String>,
    /// List passing cases in the summary too.
    #[arg(long, short)]
    pub verbose: bool,
    /// Leave the transcripts out of the terminal summary.
    #[arg(long)]
    pub brief: bool,
    /// No progress output.
    #[arg(long, short)]
    pub quiet: bool,
}

/// Runs the command.
pub fn run(args: ConformClientArgs) -> ExitCode {
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => return harness_error(&format!("cannot start the runtime: {e}")),
    };
    match runtime.block_on(execute(args)) {
        Ok(code) => ExitCode::from(code),
        Err(message) => harness_error(&message),
    }
}

fn harness_error(message: &str) -> ExitCode {
    eprintln!("chorus conform-client: {message}");
    ExitCode::from(exit::HARNESS)
}

async fn execute(args: ConformClientArgs) -> Result<u8, String> {
    let mut suite = ClientSuite::embedded().map_err(|e| e.to_string())?;
    if let Some(dir) = &args.fixtures {
        suite = suite.with_case_dir(dir).map_err(|e| e.to_string())?;
    }
    if args.coverage {
        print!("{}", suite.coverage_table());
        return Ok(if suite.coverage_gaps().is_empty() {
            exit::OK
        } else {
            exit::FAILED
        });
    }
    let selected = suite.select(&args.run, &args.skip);
    if args.list {
        for lc in &selected {
            let c = &lc.case;
            println!(
                "{:<50} {:<6} [{}] {}",
                c.id,
                c.level.as_str(),
                c.requirements.join(", "),
                c.title
            );
        }
        return Ok(exit::OK);
    }
    let problems = suite.problems();
    if !problems.is_empty() {
        return Err(format!(
            "the client cases have problems:\n{}",
            problems.join("\n")
        ));
    }
    if args.timeout_scale.is_nan() || args.timeout_scale <= 0.0 {
        return Err("--timeout-scale must be positive".into());
    }
    let adapter = args.adapter.clone().ok_or("--adapter is required")?;
    if let Some(file) = &args.mutation {
        return mutation(&args, &adapter, file, &selected).await;
    }
    let settings = Settings {
        adapter: adapter.clone(),
        timeout_scale: args.timeout_scale,
        max_wait_ms: args.max_wait_ms,
        env: Vec::new(),
    };
    let client = client_suite::probe(&settings).await?;
    let report = run_graded(&args, &settings, &suite, &selected, client).await?;
    write_outputs(&args, &report)?;
    Ok(report.summary.exit_code)
}

async fn run_graded(
    args: &ConformClientArgs,
    settings: &Settings,
    suite: &ClientSuite,
    selected: &[LoadedCase],
    client: String,
) -> Result<Report, String> {
    let started_at = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default();
    let clock = Instant::now();
    let progress = Progress::auto(selected.len(), args.quiet);
    let cases = client_suite::run_all(settings, selected, args.jobs, args.repeat, |c| {
        progress.case_done(c)
    })
    .await;
    progress.finish();
    let baseline = match &args.baseline {
        Some(path) => Some(read_baseline(path)?),
        None => None,
    };
    let report_suite = suite.report_suite();
    let info = RunInfo {
        target: Target {
            urls: vec![settings.adapter.clone()],
            http_url: String::new(),
            server: client,
            protocol: "chorus.v1".into(),
            capabilities: Vec::new(),
            embedded: false,
        },
        settings: RunSettings {
            seed: 0,
            timeout_scale: args.timeout_scale,
            jobs: args.jobs,
            repeat: args.repeat.max(1),
            fail_on: format!("{:?}", args.fail_on).to_lowercase(),
            run: args.run.clone(),
            skip: args.skip.clone(),
        },
        started_at,
        duration_ms: clock.elapsed().as_millis() as u64,
        suite: &report_suite,
        baseline: baseline.as_ref(),
        fail_on_should: args.fail_on == FailOn::Should,
    };
    Ok(report::assemble(info, cases))
}

fn read_baseline(path: &Path) -> Result<Baseline, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
}

fn write(path: &Path, text: &str) -> Result<(), String> {
    std::fs::write(path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

fn write_outputs(args: &ConformClientArgs, report: &Report) -> Result<(), String> {
    let opts = terminal::TerminalOptions {
        transcripts: !args.brief,
        verbose: args.verbose,
    };
    print!("{}", terminal::render(report, opts));
    if let Some(p) = &args.report_json {
        write(p, &report::json::render(report))?;
    }
    if let Some(p) = &args.report_junit {
        write(p, &report::junit::render(report))?;
    }
    if let Some(p) = &args.report_html {
        write(p, &report::html::render(std::slice::from_ref(report)))?;
    }
    if let Some(p) = &args.emit_baseline {
        let b = Baseline::from_report(report);
        write(
            p,
            &format!("{}\n", serde_json::to_string_pretty(&b).unwrap_or_default()),
        )?;
    }
    Ok(())
}

/// The faults file of `--mutation`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultsFile {
    /// The faults of the client build.
    pub faults: Vec<ClientFault>,
}

/// One deliberate fault of a client build.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientFault {
    /// Its name, passed as `CHORUS_CLIENT_FAULT`.
    pub name: String,
    /// The requirements it breaks: a failing case citing one of them catches it.
    pub requirements: Vec<String>,
}

async fn mutation(
    args: &ConformClientArgs,
    adapter: &str,
    file: &Path,
    selected: &[LoadedCase],
) -> Result<u8, String> {
    let text = std::fs::read_to_string(file).map_err(|e| format!("{}: {e}", file.display()))?;
    let faults: FaultsFile =
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", file.display()))?;
    // The clean build first: a case failing without any fault proves nothing.
    let clean = Settings {
        adapter: adapter.to_owned(),
        timeout_scale: args.timeout_scale,
        max_wait_ms: args.max_wait_ms,
        env: Vec::new(),
    };
    client_suite::probe(&clean).await?;
    let base = client_suite::run_all(&clean, selected, args.jobs, 1, |_| {}).await;
    let bad = |v: Verdict| matches!(v, Verdict::Fail | Verdict::Warn | Verdict::Error);
    // A timing case that failed on a loaded machine gets one more, solitary, chance; a
    // clean client failing it twice does not pass.
    let mut broken = Vec::new();
    for c in base.iter().filter(|c| bad(c.verdict)) {
        let Some(lc) = selected.iter().find(|lc| lc.case.id == c.id) else {
            continue;
        };
        let again = client_suite::run_all(&clean, std::slice::from_ref(lc), 1, 1, |_| {}).await;
        if again.first().is_none_or(|r| bad(r.verdict)) {
            broken.push(c.id.as_str());
        }
    }
    if !broken.is_empty() {
        eprintln!(
            "the client without faults does not pass: {}",
            broken.join(", ")
        );
        return Ok(exit::FAILED);
    }
    let mut missed = 0;
    let mut untested = 0;
    for fault in &faults.faults {
        let targeted: Vec<LoadedCase> = selected
            .iter()
            .filter(|lc| {
                lc.case
                    .requirements
                    .iter()
                    .any(|r| fault.requirements.contains(r))
            })
            .cloned()
            .collect();
        let settings = Settings {
            adapter: match &args.mutation_adapter {
                Some(cmd) => cmd.replace("{fault}", &fault.name),
                None => adapter.to_owned(),
            },
            env: vec![("CHORUS_CLIENT_FAULT".into(), fault.name.clone())],
            ..clean.clone()
        };
        let clock = Instant::now();
        // One case at a time, stopping at the first that catches the fault: the slow
        // timing cases run only for the faults the quick ones miss.
        let mut catching = Vec::new();
        let mut untestable = Vec::new();
        for lc in &targeted {
            let r = client_suite::run_all(&settings, std::slice::from_ref(lc), 1, 1, |_| {}).await;
            match r.first().map(|c| c.verdict) {
                Some(Verdict::Fail | Verdict::Warn) => {
                    catching.push(lc.case.id.clone());
                    break;
                }
                Some(Verdict::Untestable) => untestable.push(lc.case.id.clone()),
                _ => {}
            }
        }
        let secs = clock.elapsed().as_secs_f64();
        if catching.is_empty() && !untestable.is_empty() {
            untested += 1;
            println!(
                "UNTESTED {:<31} [{}] its cases need more than --max-wait-ms: {} ({secs:.1} s)",
                fault.name,
                fault.requirements.join(", "),
                untestable.join(", ")
            );
        } else if catching.is_empty() {
            missed += 1;
            println!(
                "MISSED  {:<32} [{}] no case citing it failed ({} cases, {secs:.1} s)",
                fault.name,
                fault.requirements.join(", "),
                targeted.len()
            );
        } else {
            println!(
                "caught  {:<32} [{}] by {} ({secs:.1} s)",
                fault.name,
                fault.requirements.join(", "),
                catching.join(", ")
            );
        }
    }
    println!(
        "{} faults, {} caught, {missed} missed, {untested} untested (cases longer than --max-wait-ms {})",
        faults.faults.len(),
        faults.faults.len() - missed - untested,
        args.max_wait_ms
    );
    Ok(if missed == 0 { exit::OK } else { exit::FAILED })
}
