//! `chorus conform`: grade a Chorus server (or, without `--url`, the embedded reference
//! server started in-process) against the conformance fixtures, and write the reports.
//!
//! Exit codes: 0 conformant (known failures and warnings aside), 1 a MUST failed (or a
//! SHOULD with `--fail-on should`, or a stale baseline entry), 2 the harness could not run
//! (or was given settings that cannot work), 3 nothing failed but cases were untestable (an
//! incomplete grade).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use chorus_cli::embedded::Embedded;
use chorus_conformance::baseline::Baseline;
use chorus_conformance::progress::Progress;
use chorus_conformance::property::{self, Property};
use chorus_conformance::report::{self, exit, terminal, RunInfo};
use chorus_conformance::runner::{RunConfig, Runner};
use chorus_conformance::suite::{glob_match, LoadedFixture, Suite};
use chorus_conformance::tokens::TokenSource;
use chorus_conformance::verdict::{Report, RunSettings, Target};
use chorus_server::core::Faults;
use clap::{Args, Subcommand, ValueEnum};

/// Arguments of `chorus conform`.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct ConformArgs {
    /// Report tools that need no server.
    #[command(subcommand)]
    pub action: Option<ConformAction>,
    /// WebSocket URL of the server under test, e.g. ws://localhost:3001/ws. Repeat it to
    /// spread the simulated clients over a cluster (graded as one server). Without it the
    /// embedded reference server is started in-process and tested.
    #[arg(long = "url", value_name = "WS_URL")]
    pub urls: Vec<String>,
    /// HTTP base URL for the HTTP API and SSE [default: derived from the first --url].
    #[arg(long, value_name = "URL")]
    pub http_url: Option<String>,
    /// Shared HS256 secret: the harness mints the tokens of its clients with it.
    #[arg(
        long,
        env = "CHORUS_JWT_SECRET",
        value_name = "SECRET",
        hide_env_values = true
    )]
    pub token_secret: Option<String>,
    /// Command printing a token for the claims JSON it reads on stdin (instead of
    /// --token-secret), run through `sh -c` once per client.
    #[arg(long, value_name = "CMD", conflicts_with = "token_secret")]
    pub token_cmd: Option<String>,
    /// Extra header on every upgrade and HTTP request, `Name: value` (repeatable).
    #[arg(long = "header", value_name = "NAME: VALUE")]
    pub headers: Vec<String>,
    /// API key of the server's HTTP API (X-Api-Key).
    #[arg(
        long,
        env = "CHORUS_API_KEY",
        value_name = "KEY",
        hide_env_values = true
    )]
    pub api_key: Option<String>,
    /// Read fixtures from this directory instead of the built-in ones.
    #[arg(long, value_name = "DIR")]
    pub fixtures: Option<PathBuf>,
    /// List the selected cases and exit.
    #[arg(long)]
    pub list: bool,
    /// Print the requirement coverage table (requirement -> cases) and exit; non-zero when
    /// a MUST is neither covered nor listed as unobservable.
    #[arg(long)]
    pub coverage: bool,
    /// Run only cases whose id matches this glob (repeatable), e.g. 'presence.*'.
    #[arg(long = "run", value_name = "GLOB")]
    pub run: Vec<String>,
    /// Skip cases whose id matches this glob (repeatable).
    #[arg(long = "skip", value_name = "GLOB")]
    pub skip: Vec<String>,
    /// Which failures make the exit code non-zero.
    #[arg(long, value_enum, default_value_t = FailOn::Must)]
    pub fail_on: FailOn,
    /// Known failures (a file written by --emit-baseline): they do not fail the run; an
    /// entry that now passes is stale and does.
    #[arg(long, value_name = "FILE")]
    pub baseline: Option<PathBuf>,
    /// Write the cases that failed in this run as a baseline file.
    #[arg(long, value_name = "FILE")]
    pub emit_baseline: Option<PathBuf>,
    /// Run each case N times; cases whose attempts disagree are reported flaky.
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub repeat: u32,
    /// Multiply every timeout and wait (slow networks, loaded CI machines).
    #[arg(long, default_value_t = 1.0, value_name = "FACTOR")]
    pub timeout_scale: f64,
    /// Longest single wait a case may need (ms, before scaling); longer ones are reported
    /// untestable (e.g. a 60 s heartbeat timeout).
    #[arg(long, default_value_t = 10_000, value_name = "MS")]
    pub max_wait_ms: u64,
    /// Seed of the run: the channel prefix of each case, and the generated property cases.
    #[arg(long, value_name = "N")]
    pub seed: Option<u64>,
    #[arg(long, value_name = "N", help = cases_help())]
    pub cases: Option<u32>,
    /// Run only the fixtures, not the generated properties.
    #[arg(long)]
    pub no_properties: bool,
    /// Grade a server that runs in development mode (it welcomes connections without a
    /// token) instead of refusing to: its authentication cases then fail, as they would for
    /// that server in production.
    #[arg(long)]
    pub allow_dev_mode: bool,
    /// Cases run concurrently (each isolated by its own channel prefix); up to 4 of the
    /// properties run beside them.
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
    /// Write a replay fixture for each failed case into this directory.
    #[arg(long, value_name = "DIR")]
    pub save_failures: Option<PathBuf>,
    /// List passing cases in the summary too.
    #[arg(long, short)]
    pub verbose: bool,
    /// Leave the wire transcripts out of the terminal summary.
    #[arg(long)]
    pub brief: bool,
    /// No progress output.
    #[arg(long, short)]
    pub quiet: bool,
    /// Deliberate faults of the embedded server (faults builds only).
    #[cfg(feature = "faults")]
    #[command(flatten)]
    pub faults: crate::faults::FaultArgs,
}

fn cases_help() -> String {
    let mutation = if cfg!(feature = "faults") {
        format!(
            ", or {} with --mutation",
            chorus_cli::mutation::DEFAULT_CASES
        )
    } else {
        String::new()
    };
    format!(
        "Generated sequences per property (property-based checks against the model) \
         [default: {}{mutation}]",
        property::DEFAULT_CASES
    )
}

/// `chorus conform <action>`.
#[derive(Debug, Subcommand)]
pub enum ConformAction {
    /// Combine JSON reports (one per server) into one HTML page, side by side.
    ReportHtml {
        /// JSON reports written by --report-json.
        #[arg(required = true)]
        reports: Vec<PathBuf>,
        /// The HTML file to write.
        #[arg(short, long, value_name = "FILE")]
        output: PathBuf,
    },
}

/// `--fail-on`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FailOn {
    /// Only MUST failures (and stale baseline entries) fail the run.
    Must,
    /// SHOULD failures (warnings) fail it too.
    Should,
}

/// Runs the command.
pub fn run(args: ConformArgs) -> ExitCode {
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
    eprintln!("chorus conform: {message}");
    ExitCode::from(exit::HARNESS)
}

async fn execute(args: ConformArgs) -> Result<u8, String> {
    if let Some(ConformAction::ReportHtml { reports, output }) = &args.action {
        return combine_html(reports, output);
    }
    let mut suite = Suite::embedded().map_err(|e| e.to_string())?;
    if let Some(dir) = &args.fixtures {
        suite = suite.with_fixture_dir(dir).map_err(|e| e.to_string())?;
    }
    if args.coverage {
        return Ok(print_coverage(&suite));
    }
    check_arguments(&args)?;
    let selected = suite.select(&args.run, &args.skip);
    if !args.run.is_empty() && selected.is_empty() && selected_properties(&args).is_empty() {
        return Err(format!(
            "--run {} matches no case (see `chorus conform --list` for the case ids; globs \
             use * and ?, e.g. --run 'presence.*')",
            args.run.join(" --run ")
        ));
    }
    if args.list {
        for lf in &selected {
            let f = &lf.fixture;
            println!(
                "{:<55} {:<6} [{}] {}",
                f.id,
                f.level.as_str(),
                f.requirements.join(", "),
                f.title
            );
        }
        return Ok(exit::OK);
    }
    #[cfg(feature = "faults")]
    if args.faults.list_faults {
        return Ok(crate::faults::list());
    }
    let problems = suite.problems();
    if !problems.is_empty() {
        return Err(format!(
            "the fixtures have problems:\n{}",
            problems.join("\n")
        ));
    }
    #[cfg(feature = "faults")]
    if args.faults.mutation {
        return crate::faults::run_mutation(&args, &selected).await;
    }
    let (config, embedded) = configure(&args).await?;
    let run = run_suite(&args, config, &suite, &selected, embedded.is_some()).await;
    if let Some(server) = embedded {
        server.shutdown().await;
    }
    let (report, outcomes) = run?;
    write_outputs(&args, &selected, &outcomes, &report)?;
    Ok(report.summary.exit_code)
}

/// Refuses settings that would make the run meaningless, before anything starts (exit 2):
/// a misconfigured harness is not a failing server.
fn check_arguments(args: &ConformArgs) -> Result<(), String> {
    if !(args.timeout_scale.is_finite() && args.timeout_scale > 0.0) {
        return Err(format!(
            "--timeout-scale {} must be a positive factor (1 is the default; 2 doubles every wait)",
            args.timeout_scale
        ));
    }
    if args.repeat == 0 {
        return Err("--repeat 0 would run nothing: give 1 (the default) or more".into());
    }
    if args.jobs == 0 {
        return Err("--jobs 0 would run nothing: give 1 or more (default 8)".into());
    }
    for url in &args.urls {
        check_ws_url(url)?;
    }
    Ok(())
}

/// A `--url` must be a WebSocket URL.
fn check_ws_url(url: &str) -> Result<(), String> {
    let Some((scheme, rest)) = url.split_once("://") else {
        return Err(format!(
            "--url {url:?} has no scheme: give the WebSocket URL, e.g. ws://{url}"
        ));
    };
    match scheme.to_ascii_lowercase().as_str() {
        "ws" | "wss" => Ok(()),
        "http" | "https" => Err(format!(
            "--url {url:?} is an HTTP URL: use ws:// or wss:// (e.g. ws://{rest}); the HTTP \
             base for the HTTP API and SSE is --http-url (derived from --url by default)"
        )),
        _ => Err(format!(
            "--url {url:?}: unsupported scheme {scheme:?}; use ws:// or wss://"
        )),
    }
}

/// The properties whose id the `--run`/`--skip` globs select (none with --no-properties).
pub fn selected_properties(args: &ConformArgs) -> Vec<Property> {
    if args.no_properties {
        return Vec::new();
    }
    Property::ALL
        .iter()
        .copied()
        .filter(|p| args.run.is_empty() || args.run.iter().any(|g| glob_match(g, &p.id())))
        .filter(|p| !args.skip.iter().any(|g| glob_match(g, &p.id())))
        .collect()
}

fn print_coverage(suite: &Suite) -> u8 {
    let rows = chorus_conformance::trace::coverage(suite);
    print!("{}", chorus_conformance::trace::render(&rows));
    if rows.iter().any(|r| r.is_gap()) {
        exit::FAILED
    } else {
        exit::OK
    }
}

/// The run configuration, starting the embedded server when no URL was given.
async fn configure(args: &ConformArgs) -> Result<(RunConfig, Option<Embedded>), String> {
    let seed = args.seed.unwrap_or_else(|| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or_default()
    });
    let mut embedded = None;
    let mut config = if args.urls.is_empty() {
        let server = Embedded::start(seed, injected_faults(args)?).await?;
        let c = server.run_config();
        embedded = Some(server);
        c
    } else {
        let tokens = match (&args.token_secret, &args.token_cmd) {
            (Some(s), _) => TokenSource::Secret(s.clone()),
            (None, Some(cmd)) => TokenSource::Command(cmd.clone()),
            (None, None) => TokenSource::None,
        };
        let mut c = RunConfig::new(&args.urls[0], tokens);
        c.urls = args.urls.clone();
        if args.urls.len() > 1 && args.http_url.is_none() {
            // A request a fixture sends to node i reaches that node's own HTTP API.
            c.http_urls = args
                .urls
                .iter()
                .map(|u| chorus_conformance::http::http_base(u))
                .collect();
        }
        c.api_key = args.api_key.clone();
        c
    };
    if let Some(h) = &args.http_url {
        config.http_url = h.trim_end_matches('/').to_owned();
    }
    config.headers = parse_headers(&args.headers)?;
    config.timeout_scale = args.timeout_scale;
    config.max_wait_ms = args.max_wait_ms;
    config.jobs = args.jobs.max(1);
    config.repeat = args.repeat.max(1);
    config.seed = seed;
    Ok((config, embedded))
}

/// The faults of `--fault` (none without the `faults` feature).
fn injected_faults(_args: &ConformArgs) -> Result<Faults, String> {
    #[cfg(feature = "faults")]
    return crate::faults::parse(&_args.faults.fault);
    #[cfg(not(feature = "faults"))]
    Ok(Faults::default())
}

fn parse_headers(raw: &[String]) -> Result<BTreeMap<String, String>, String> {
    raw.iter()
        .map(|h| {
            let (k, v) = h
                .split_once(':')
                .ok_or_else(|| format!("--header {h:?} is not `Name: value`"))?;
            Ok((k.trim().to_lowercase(), v.trim().to_owned()))
        })
        .collect()
}

async fn run_suite(
    args: &ConformArgs,
    config: RunConfig,
    suite: &Suite,
    selected: &[LoadedFixture],
    embedded: bool,
) -> Result<(Report, Vec<property::Outcome>), String> {
    let started_at = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default();
    let clock = Instant::now();
    let settings = RunSettings {
        seed: config.seed,
        timeout_scale: config.timeout_scale,
        jobs: config.jobs,
        repeat: config.repeat,
        fail_on: format!("{:?}", args.fail_on).to_lowercase(),
        run: args.run.clone(),
        skip: args.skip.clone(),
    };
    let runner = Runner::new(config).await.map_err(|e| e.to_string())?;
    if runner.dev_mode && !args.allow_dev_mode {
        return Err(format!(
            "the server at {} welcomed a connection without any token: it runs in development \
             mode (chorus serve --dev, CHORUS_DEV=1). Graded so, its authentication cases \
             (security.dev-mode.off-by-default, connection.auth.missing-token, ...) fail. \
             Restart it with a JWT secret and without development mode, or pass \
             --allow-dev-mode to grade it as it is",
            runner.config.urls.join(", ")
        ));
    }
    if runner.dev_mode {
        eprintln!(
            "note: the server runs in development mode (it welcomes tokenless connections); \
             its authentication cases are graded as for production and fail"
        );
    }
    let target = Target {
        urls: runner.config.urls.clone(),
        http_url: runner.config.http_url.clone(),
        server: runner.welcome["server"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
        protocol: runner.welcome["protocol"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
        capabilities: runner.capabilities(),
        embedded,
    };
    let properties = selected_properties(args);
    let progress = Progress::auto(selected.len() + properties.len(), args.quiet);
    let opts = property::Options {
        seed: runner.config.seed,
        cases: args.cases.unwrap_or(property::DEFAULT_CASES),
        properties,
        // Properties mostly wait on the network too; each search runs on its own thread.
        jobs: args.jobs.clamp(1, 4),
        ..property::Options::default()
    };
    // Properties run alongside the fixture cases: both mostly wait on the network.
    let fixtures = runner.run_all(selected, |c| progress.case_done(c));
    let generated = async {
        if opts.properties.is_empty() {
            return Vec::new();
        }
        let outcomes = property::run(&runner, &opts).await;
        for o in &outcomes {
            progress.case_done(&o.result);
        }
        outcomes
    };
    let (mut cases, outcomes) = tokio::join!(fixtures, generated);
    cases.extend(outcomes.iter().map(|o| o.result.clone()));
    progress.finish();
    let baseline = match &args.baseline {
        Some(path) => Some(read_baseline(path)?),
        None => None,
    };
    let info = RunInfo {
        target,
        settings,
        started_at,
        duration_ms: clock.elapsed().as_millis() as u64,
        suite,
        baseline: baseline.as_ref(),
        fail_on_should: args.fail_on == FailOn::Should,
    };
    Ok((report::assemble(info, cases), outcomes))
}

fn read_baseline(path: &Path) -> Result<Baseline, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
}

fn write(path: &Path, text: &str) -> Result<(), String> {
    std::fs::write(path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

fn write_outputs(
    args: &ConformArgs,
    selected: &[LoadedFixture],
    outcomes: &[property::Outcome],
    report: &Report,
) -> Result<(), String> {
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
    if let Some(dir) = &args.save_failures {
        save_failures(dir, selected, report)?;
        for o in outcomes {
            match o.save(dir) {
                Ok(Some(path)) => eprintln!("replay fixture: {}", path.display()),
                Ok(None) => {}
                Err(e) => return Err(format!("cannot write a replay into {}: {e}", dir.display())),
            }
        }
    }
    Ok(())
}

fn save_failures(dir: &Path, selected: &[LoadedFixture], report: &Report) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    for case in &report.cases {
        let Some(lf) = selected.iter().find(|lf| lf.fixture.id == case.id) else {
            continue;
        };
        if let Some(f) = chorus_conformance::replay::replay_fixture(&lf.fixture, case) {
            // DIR/<area>/<id>.json: the layout of fixtures/, so --fixtures DIR replays it.
            let area_dir = dir.join(&case.area);
            std::fs::create_dir_all(&area_dir)
                .map_err(|e| format!("{}: {e}", area_dir.display()))?;
            let path = area_dir.join(format!("{}.json", f.id));
            write(&path, &chorus_conformance::replay::render(&f))?;
            eprintln!("replay fixture: {}", path.display());
        }
    }
    Ok(())
}

fn combine_html(inputs: &[PathBuf], output: &Path) -> Result<u8, String> {
    let mut reports = Vec::new();
    for p in inputs {
        let text = std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()))?;
        reports.push(report::json::parse(&text).map_err(|e| format!("{}: {e}", p.display()))?);
    }
    write(output, &report::html::render(&reports))?;
    Ok(exit::OK)
}
