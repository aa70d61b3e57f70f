//! `skep run FILE`: runs a workflow over the config's daemon (its warm
//! agents), or with `--no-daemon` over a swarm of its own; shows its
//! progress, and writes its profile (plus a trace and an HTML report on
//! request).
//!
//! SIGTERM, SIGINT and SIGHUP stop the run: every running step's process
//! group is killed, the run is recorded as cancelled (record and profile
//! still written), and skep exits 128 + the signal's number.
//!
//! `--explain` prints what a run would do and why, and runs nothing.
//! `--max-regression 10%` is the CI gate: exit 3 when the run or a step regressed past it.

use std::io::{IsTerminal, Write};
use std::path::Path;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use skep_bridge::{CallError, Client, ClientConfig};
use skep_cluster::start_swarm;
use skep_swarm::{Config, demo_config};
use skep_workflow::{
    Explanation, History, Progress, ProgressEvent, RegressionRule, RunOptions, RunRecord, StepCacheLimits, Workflow,
    explain, parse_threshold, render_report, render_trace, run_workflow,
};

use crate::agent::demo_agent_command;
use crate::daemon::attach::{attach_with, no_daemon, target};
use crate::output::emit;
use crate::profile::summary;
use crate::runtime::runtime;
use crate::signals::{StopSignal, next_stop_signal};

/// Run a workflow (a TOML graph of agent calls and commands) and profile it.
///
/// Steps start as soon as their needs are met, longest predicted path first;
/// unchanged steps come from the cache under .skep/. Every run is recorded in
/// .skep/runs/ next to the workflow's workdir. Each step's line says why it
/// ran or came from the cache. The file format is docs/workflows.md.
///
/// Exit status: 0 success; 1 a step failed; 3 --max-regression was passed
/// and the run or a step regressed past it; 128 + N stopped by signal N.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  skep run examples/workflows/review.toml --report r.html
  skep run ci.toml --explain                  # what would run and why; runs nothing
  skep run ci.toml --config skep.toml --jobs 4 --trace trace.json
  skep run ci.toml --no-cache --baseline release
  skep run ci.toml --max-regression 10%       # CI: exit 3 if >10% slower than usual

Exit status: 0 success, 1 a step failed, 3 regressed past --max-regression,
128 + N stopped by signal N.")]
pub struct RunArgs {
    /// The workflow file.
    pub file: PathBuf,
    /// The roles agent steps call (skep.toml); without it, the nearest
    /// skep.toml from here up, else the built-in role `demo`.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Start the workflow's agents for this run only instead of using the
    /// config's daemon (also SKEP_NO_DAEMON=1).
    #[arg(long)]
    pub no_daemon: bool,
    /// At most N steps at once.
    #[arg(long, value_name = "N", default_value_t = 8, value_parser = clap::value_parser!(u64).range(1..=4096))]
    pub jobs: u64,
    /// Run every step even if a cached success matches (results are still stored).
    #[arg(long)]
    pub no_cache: bool,
    /// Write the run as Chrome trace-event JSON (opens in Perfetto).
    #[arg(long, value_name = "OUT.json")]
    pub trace: Option<PathBuf>,
    /// Write a self-contained HTML report with a Gantt chart.
    #[arg(long, value_name = "OUT.html")]
    pub report: Option<PathBuf>,
    /// Judge regressions against this pinned baseline (see `skep profile --baseline`) instead of earlier runs.
    #[arg(long, value_name = "NAME")]
    pub baseline: Option<String>,
    /// Print what would run and why, and what would come from the cache; run nothing.
    #[arg(long)]
    pub explain: bool,
    /// CI gate: exit 3 if the run or a step is slower than its baseline (or the
    /// median of its last comparable runs) by more than PCT and at least --regression-min-ms.
    #[arg(long, value_name = "PCT", value_parser = parse_threshold)]
    pub max_regression: Option<f64>,
    /// How many earlier comparable runs a step's median spans.
    #[arg(long, value_name = "N", default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=1000))]
    pub regression_window: u64,
    /// How much slower than that median a step (or the run) must be to have regressed.
    #[arg(long, value_name = "PCT", default_value = "20%", value_parser = parse_threshold)]
    pub regression_threshold: f64,
    /// The least slowdown, in milliseconds, that counts (noise below it is ignored; the gate keeps this floor too).
    #[arg(long, value_name = "MS", default_value_t = 5.0)]
    pub regression_min_ms: f64,
}

/// The exit status of a run (or profile) that regressed past `--max-regression`.
pub const REGRESSED: u8 = 3;

/// Runs the workflow; exits 1 if a step failed, 128 + N if signal N stopped it.
pub fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let config = target(args.config.as_deref())?;
    let rule = RegressionRule {
        window: args.regression_window as usize,
        ratio: args.regression_threshold,
        min_ms: args.regression_min_ms,
    };
    if args.explain {
        // Nothing runs, so no agent is needed: no daemon either.
        let workflow = Workflow::load(&args.file, &load_config(config.as_deref())?).context("invalid workflow")?;
        let explained = explain(&workflow, None, !args.no_cache, StepCacheLimits::default());
        for line in explanation(&explained) {
            emit(&line)?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    let (record, state_dir) = if no_daemon(args.no_daemon) {
        run_here(&args, config.as_deref(), rule)?
    } else {
        match runtime()?.block_on(run_on_daemon(&args, config.as_deref(), rule))? {
            Remote::Finished(record, state_dir) => (*record, state_dir),
            Remote::Stopped(signal) => {
                eprintln!("skep: cancelled by {}; the daemon recorded the run as cancelled", signal.name());
                return Ok(ExitCode::from(signal.exit_code()));
            }
        }
    };
    report(&args, &record, &History::new(&state_dir), rule)
}

/// The config file's roles, or the built-in demo role without one.
fn load_config(config: Option<&Path>) -> anyhow::Result<Config> {
    match config {
        Some(path) => Config::load(path).with_context(|| format!("cannot load {}", path.display())),
        // Without a config, the built-in demo role: a workflow runs from a clean clone.
        None => Ok(demo_config(demo_agent_command()?)),
    }
}

/// The run in this process, over a swarm of the workflow's roles started
/// for it; the record and the state directory it was written to.
fn run_here(args: &RunArgs, config: Option<&Path>, rule: RegressionRule) -> anyhow::Result<(RunRecord, PathBuf)> {
    let config = load_config(config)?;
    let workflow = Workflow::load(&args.file, &config).context("invalid workflow")?;
    // Only the roles the workflow calls are started.
    let mut used = config.clone();
    used.roles.retain(|name, _| workflow.steps.iter().any(|s| s.role() == Some(name.as_str())));
    let (stop, stopped) = tokio::sync::watch::channel(None);
    let options = RunOptions {
        jobs: args.jobs as usize,
        use_cache: !args.no_cache,
        baseline: args.baseline.clone(),
        regression: rule,
        cancel: Some(stopped),
        ..RunOptions::default()
    };
    runtime()?.block_on(async {
        // Installed before anything starts: a signal during start-up still
        // ends in an orderly stop rather than the default abrupt exit.
        let signals = tokio::spawn(async move {
            let signal = next_stop_signal().await;
            let _ = stop.send(Some(signal.name().to_owned()));
        });
        let swarm = start_swarm(used, "skep run").await.context("cannot start the workflow's agents")?;
        let mut display = Display::new(std::io::stderr().is_terminal());
        let record = run_workflow(&swarm, &workflow, options, |p| display.show(p)).await;
        swarm.shutdown().await;
        signals.abort();
        let record = record.context("the run could not be recorded")?;
        Ok((record, workflow.state_dir()))
    })
}

/// How a run on the daemon ended for this client.
enum Remote {
    /// The record, and the state directory the daemon wrote it to.
    Finished(Box<RunRecord>, PathBuf),
    /// A signal stopped us: we left, and the daemon cancelled and recorded the run.
    Stopped(StopSignal),
}

/// The run on the config's daemon, over its warm agents: the daemon runs and
/// records it, and streams its progress here.
async fn run_on_daemon(args: &RunArgs, config: Option<&Path>, rule: RegressionRule) -> anyhow::Result<Remote> {
    let file = std::path::absolute(&args.file).context("cannot resolve the workflow's path")?;
    let signal = tokio::spawn(next_stop_signal());
    let (client, mut updates) = subscribe_run(&file, args, config, rule).await?;
    let mut display = Display::new(std::io::stderr().is_terminal());
    let mut signal = signal;
    loop {
        tokio::select! {
            update = updates.recv() => match update {
                Some(update) => match update["event"].as_str() {
                    Some("result") => {
                        let record = serde_json::from_value(update["record"].clone())
                            .context("the daemon sent a run record this skep cannot read")?;
                        let state_dir = update["stateDir"].as_str().map(PathBuf::from)
                            .context("the daemon did not say where it recorded the run")?;
                        return Ok(Remote::Finished(Box::new(record), state_dir));
                    }
                    Some("error") => bail!("the run failed: {}", update["message"].as_str().unwrap_or("?")),
                    _ => match serde_json::from_value::<Progress>(update) {
                        Ok(progress) => display.show(&progress),
                        Err(e) => tracing::debug!(%e, "skipping a progress update this skep cannot read"),
                    },
                },
                None => bail!("the daemon closed the connection mid-run (stopped or killed); run again"),
            },
            () = client.disconnected() => {
                bail!("the daemon closed the connection mid-run (stopped or killed); run again")
            }
            signal = &mut signal => {
                // Leaving is how a client cancels its run on the daemon.
                drop(client);
                return Ok(Remote::Stopped(signal.context("cannot watch for signals")?));
            }
        }
    }
}

/// Attaches with a handler for the run's notifications, starts `workflow/run`,
/// and returns the channel its updates arrive on.
async fn subscribe_run(
    file: &Path,
    args: &RunArgs,
    config: Option<&Path>,
    rule: RegressionRule,
) -> anyhow::Result<(Client, tokio::sync::mpsc::UnboundedReceiver<serde_json::Value>)> {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let connector = move |stream: tokio::net::UnixStream| {
        let tx = tx.clone();
        let (reader, writer) = stream.into_split();
        Client::builder(ClientConfig::default())
            .on_notification(move |n| {
                if let Some(update) = n.subscription_result() {
                    let _ = tx.send(update);
                }
            })
            .connect(reader, writer)
    };
    let client = attach_with(config, &connector).await?;
    let params = serde_json::json!({
        "file": file,
        "jobs": args.jobs,
        "noCache": args.no_cache,
        "baseline": args.baseline,
        "regression": { "window": rule.window, "ratio": rule.ratio, "minMs": rule.min_ms },
    });
    let _: serde_json::Value = client.call("workflow/run", params).await.map_err(|e| match e {
        CallError::Rpc(e) => anyhow::anyhow!("invalid workflow: {}", e.message()),
        other => anyhow::Error::new(other).context("cannot start the run on the daemon"),
    })?;
    Ok((client, rx))
}

/// The summary, the profile's path, trace and report; the exit status.
fn report(args: &RunArgs, record: &RunRecord, history: &History, rule: RegressionRule) -> anyhow::Result<ExitCode> {
    for line in summary(record) {
        emit(&line)?;
    }
    emit(&format!("profile: {}", history.record_path(&record.id).display()))?;
    if let Some(path) = &args.trace {
        write(path, &render_trace(record))?;
        emit(&format!("trace: {} (open it in https://ui.perfetto.dev)", path.display()))?;
    }
    if let Some(path) = &args.report {
        write(path, &render_report(record))?;
        emit(&format!("report: {}", path.display()))?;
    }
    if let Some(signal) = record.cancelled.as_deref().and_then(StopSignal::from_name) {
        emit(&format!("cancelled by {}", signal.name()))?;
        return Ok(ExitCode::from(signal.exit_code()));
    }
    if !record.ok {
        return Ok(ExitCode::FAILURE);
    }
    if let Some(ratio) = args.max_regression {
        return gate(history, record, args.baseline.as_deref(), RegressionRule { ratio, ..rule });
    }
    Ok(ExitCode::SUCCESS)
}

/// The CI gate: exit [`REGRESSED`] with what regressed, or 0.
pub(crate) fn gate(
    history: &History,
    record: &RunRecord,
    baseline: Option<&str>,
    rule: RegressionRule,
) -> anyhow::Result<ExitCode> {
    let regressed = history.gate(record, baseline, rule)?;
    let threshold = format!("{:.0}%", rule.ratio * 100.0);
    if regressed.is_empty() {
        emit(&format!("gate: nothing regressed past {threshold}"))?;
        return Ok(ExitCode::SUCCESS);
    }
    emit(&format!("gate: {} regression(s) past {threshold}:", regressed.len()))?;
    for r in &regressed {
        emit(&format!("  - {}", r.describe()))?;
    }
    Ok(ExitCode::from(REGRESSED))
}

/// `--explain`'s lines: one per step, in run order.
fn explanation(explained: &[Explanation]) -> Vec<String> {
    let width = explained.iter().map(|e| e.step.len()).max().unwrap_or(0).max(4);
    let mut out = vec!["explain: what `skep run` would do now (nothing was run)".to_owned()];
    for e in explained {
        let verdict = match (e.why.is_hit(), e.runs()) {
            (true, _) => "cached",
            (false, true) => "run",
            (false, false) => "run?",
        };
        out.push(format!("{verdict:<7} {:<width$}  {}", e.step, e.why.describe()));
    }
    let (cached, runs) =
        (explained.iter().filter(|e| e.why.is_hit()).count(), explained.iter().filter(|e| e.runs()).count());
    out.push(format!(
        "{cached} from the cache, {runs} to run, {} depending on an upstream's result",
        explained.len() - cached - runs
    ));
    out
}

pub(crate) fn write(path: &Path, text: &str) -> anyhow::Result<()> {
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}

/// Progress on stderr: on a terminal, a status line redrawn in place under a
/// line per finished step; a line per event otherwise (logs and CI output stay readable).
struct Display {
    terminal: bool,
}

impl Display {
    fn new(terminal: bool) -> Display {
        Display { terminal }
    }

    fn show(&mut self, p: &Progress) {
        let mut err = std::io::stderr().lock();
        let step = p.step.as_deref().unwrap_or("");
        let secs = p.elapsed_ms / 1000.0;
        // Progress is a courtesy: a failed write to stderr is not worth failing the run for.
        if self.terminal {
            let line = match p.event {
                ProgressEvent::Done => String::new(),
                _ => format!("[{}/{}] {:.1}s running: {}", p.done, p.total, secs, p.running.join(", ")),
            };
            let _ = write!(err, "\r\x1b[K{line}");
            // Each finished or skipped step keeps its line (with why it ran); the status line follows it.
            if matches!(p.event, ProgressEvent::Finished | ProgressEvent::Skipped) {
                let _ = writeln!(err, "\r\x1b[K{}", event_line(p, step));
            }
        } else if p.event != ProgressEvent::Queued && p.event != ProgressEvent::Done {
            let _ = writeln!(err, "[{}/{}] {:>7.2}s {}", p.done, p.total, secs, event_line(p, step));
        }
        let _ = err.flush();
    }
}

fn event_line(p: &Progress, step: &str) -> String {
    let why = p.why.as_deref().map(|w| format!(" ({w})")).unwrap_or_default();
    match (p.event, p.ok, p.cache_hit) {
        (ProgressEvent::Started, ..) => format!("started  {step}"),
        (ProgressEvent::Finished, Some(true), Some(true)) => format!("cached   {step}{why}"),
        (ProgressEvent::Finished, Some(true), _) => format!("finished {step}{why}"),
        (ProgressEvent::Finished, ..) => format!("FAILED   {step}: {}", p.message.as_deref().unwrap_or("")),
        (ProgressEvent::Skipped, ..) => format!("skipped  {step}: {}", p.message.as_deref().unwrap_or("")),
        _ => String::new(),
    }
}
