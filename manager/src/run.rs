//! `skep run FILE`: runs a workflow over a swarm, shows its progress, and
//! writes its profile (plus a trace and an HTML report on request).
//!
//! SIGTERM, SIGINT and SIGHUP stop the run: every running step's process
//! group is killed, the run is recorded as cancelled (record and profile
//! still written), and skep exits 128 + the signal's number.

use std::io::{IsTerminal, Write};
use std::path::Path;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use skep_swarm::{Config, Swarm, demo_config};
use skep_workflow::{Progress, ProgressEvent, RunOptions, Workflow, render_report, render_trace, run_workflow};

use crate::agent::demo_agent_command;
use crate::output::emit;
use crate::profile::summary;
use crate::runtime::runtime;
use crate::signals::{StopSignal, next_stop_signal};

/// Run a workflow (a TOML graph of agent calls and commands) and profile it.
///
/// Steps start as soon as their needs are met, longest predicted path first;
/// unchanged steps come from the cache under .skep/. Every run is recorded in
/// .skep/runs/ next to the workflow's workdir. Exits 1 if a step failed. The
/// file format is docs/workflows.md.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  skep run examples/workflows/review.toml --report r.html
  skep run ci.toml --config skep.toml --jobs 4 --trace trace.json
  skep run ci.toml --no-cache --baseline release")]
pub struct RunArgs {
    /// The workflow file.
    pub file: PathBuf,
    /// The roles agent steps call (skep.toml); without it, the built-in role `demo`.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
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
    /// Compare against this pinned baseline (see `skep profile --baseline`) instead of the previous run.
    #[arg(long, value_name = "NAME")]
    pub baseline: Option<String>,
}

/// Runs the workflow; exits 1 if a step failed, 128 + N if signal N stopped it.
pub fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let config = match &args.config {
        Some(path) => Config::load(path).with_context(|| format!("cannot load {}", path.display()))?,
        // Without a config, the built-in demo role: a workflow runs from a clean clone.
        None => demo_config(demo_agent_command()?),
    };
    let workflow = Workflow::load(&args.file, &config).context("invalid workflow")?;
    // Only the roles the workflow calls are started.
    let mut used = config.clone();
    used.roles.retain(|name, _| workflow.steps.iter().any(|s| s.role() == Some(name.as_str())));
    let (stop, stopped) = tokio::sync::watch::channel(None);
    let options = RunOptions {
        jobs: args.jobs as usize,
        use_cache: !args.no_cache,
        baseline: args.baseline.clone(),
        cancel: Some(stopped),
        ..RunOptions::default()
    };
    let record = runtime()?.block_on(async {
        // Installed before anything starts: a signal during start-up still
        // ends in an orderly stop rather than the default abrupt exit.
        let signals = tokio::spawn(async move {
            let signal = next_stop_signal().await;
            let _ = stop.send(Some(signal.name().to_owned()));
        });
        let swarm = Swarm::start(used).await.context("cannot start the workflow's agents")?;
        let mut display = Display::new(std::io::stderr().is_terminal());
        let record = run_workflow(&swarm, &workflow, options, |p| display.show(p)).await;
        swarm.shutdown().await;
        signals.abort();
        record.context("the run could not be recorded")
    })?;
    for line in summary(&record) {
        emit(&line)?;
    }
    let state = workflow.workdir.join(".skep").join("runs").join(format!("{}.json", record.id));
    emit(&format!("profile: {}", state.display()))?;
    if let Some(path) = &args.trace {
        write(path, &render_trace(&record))?;
        emit(&format!("trace: {} (open it in https://ui.perfetto.dev)", path.display()))?;
    }
    if let Some(path) = &args.report {
        write(path, &render_report(&record))?;
        emit(&format!("report: {}", path.display()))?;
    }
    if let Some(signal) = record.cancelled.as_deref().and_then(StopSignal::from_name) {
        emit(&format!("cancelled by {}", signal.name()))?;
        return Ok(ExitCode::from(signal.exit_code()));
    }
    Ok(if record.ok { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

pub(crate) fn write(path: &Path, text: &str) -> anyhow::Result<()> {
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}

/// Progress on stderr: one line redrawn in place on a terminal, a line per
/// event otherwise (logs and CI output stay readable).
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
            if let (ProgressEvent::Finished, Some(false)) | (ProgressEvent::Skipped, _) = (p.event, p.ok) {
                let _ = writeln!(err, "\r\x1b[K{}", event_line(p, step));
            }
        } else if p.event != ProgressEvent::Queued && p.event != ProgressEvent::Done {
            let _ = writeln!(err, "[{}/{}] {:>7.2}s {}", p.done, p.total, secs, event_line(p, step));
        }
        let _ = err.flush();
    }
}

fn event_line(p: &Progress, step: &str) -> String {
    match (p.event, p.ok, p.cache_hit) {
        (ProgressEvent::Started, ..) => format!("started  {step}"),
        (ProgressEvent::Finished, Some(true), Some(true)) => format!("cached   {step}"),
        (ProgressEvent::Finished, Some(true), _) => format!("finished {step}"),
        (ProgressEvent::Finished, ..) => format!("FAILED   {step}: {}", p.message.as_deref().unwrap_or("")),
        (ProgressEvent::Skipped, ..) => format!("skipped  {step}: {}", p.message.as_deref().unwrap_or("")),
        _ => String::new(),
    }
}
