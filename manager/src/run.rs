//! `skep run FILE`: runs a workflow over the config's daemon (its warm
//! agents), or with `--no-daemon` over a swarm of its own; shows its
//! progress, and writes its profile (plus a trace and an HTML report on
//! request).
//!
//! SIGTERM, SIGINT and SIGHUP stop the run: every running step's process
//! group is killed, the run is recorded as cancelled (record and profile
//! still written), and skep exits 128 + the signal's number.

use std::io::{IsTerminal, Write};
use std::path::Path;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use skep_bridge::{CallError, Client, ClientConfig};
use skep_swarm::{Config, Swarm, demo_config};
use skep_workflow::{
    History, Progress, ProgressEvent, RunOptions, RunRecord, Workflow, render_report, render_trace, run_workflow,
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
    /// Compare against this pinned baseline (see `skep profile --baseline`) instead of the previous run.
    #[arg(long, value_name = "NAME")]
    pub baseline: Option<String>,
}

/// Runs the workflow; exits 1 if a step failed, 128 + N if signal N stopped it.
pub fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let config = target(args.config.as_deref())?;
    let (record, profile) = if no_daemon(args.no_daemon) {
        run_here(&args, config.as_deref())?
    } else {
        match runtime()?.block_on(run_on_daemon(&args, config.as_deref()))? {
            Remote::Finished(record, profile) => (*record, profile),
            Remote::Stopped(signal) => {
                eprintln!("skep: cancelled by {}; the daemon recorded the run as cancelled", signal.name());
                return Ok(ExitCode::from(signal.exit_code()));
            }
        }
    };
    report(&args, &record, profile.as_deref())
}

/// The run in this process, over a swarm of the workflow's roles started for it.
fn run_here(args: &RunArgs, config: Option<&Path>) -> anyhow::Result<(RunRecord, Option<PathBuf>)> {
    let config = match config {
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
    runtime()?.block_on(async {
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
        let record = record.context("the run could not be recorded")?;
        let profile = History::new(&workflow.state_dir()).record_path(&record.id);
        Ok((record, Some(profile)))
    })
}

/// How a run on the daemon ended for this client.
enum Remote {
    /// The record, and where the daemon wrote it.
    Finished(Box<RunRecord>, Option<PathBuf>),
    /// A signal stopped us: we left, and the daemon cancelled and recorded the run.
    Stopped(StopSignal),
}

/// The run on the config's daemon, over its warm agents: the daemon runs and
/// records it, and streams its progress here.
async fn run_on_daemon(args: &RunArgs, config: Option<&Path>) -> anyhow::Result<Remote> {
    let file = std::path::absolute(&args.file).context("cannot resolve the workflow's path")?;
    let signal = tokio::spawn(next_stop_signal());
    let (client, mut updates) = subscribe_run(&file, args, config).await?;
    let mut display = Display::new(std::io::stderr().is_terminal());
    let mut signal = signal;
    loop {
        tokio::select! {
            update = updates.recv() => match update {
                Some(update) => match update["event"].as_str() {
                    Some("result") => {
                        let record = serde_json::from_value(update["record"].clone())
                            .context("the daemon sent a run record this skep cannot read")?;
                        let profile = update["profile"].as_str().map(PathBuf::from);
                        return Ok(Remote::Finished(Box::new(record), profile));
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
) -> anyhow::Result<(Client, tokio::sync::mpsc::UnboundedReceiver<serde_json::Value>)> {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let connector = move |stream: tokio::net::UnixStream| {
        let tx = tx.clone();
        let (reader, writer) = stream.into_split();
        Client::builder(ClientConfig::default())
            .on_notification(move |n| {
                let update = n.params.and_then(|p| serde_json::from_str::<serde_json::Value>(p.get()).ok());
                if let Some(mut update) = update {
                    let _ = tx.send(update["result"].take());
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
    });
    let _: serde_json::Value = client.call("workflow/run", params).await.map_err(|e| match e {
        CallError::Rpc(e) => anyhow::anyhow!("invalid workflow: {}", e.message()),
        other => anyhow::Error::new(other).context("cannot start the run on the daemon"),
    })?;
    Ok((client, rx))
}

/// The summary, the profile's path, trace and report; the exit status.
fn report(args: &RunArgs, record: &RunRecord, profile: Option<&Path>) -> anyhow::Result<ExitCode> {
    for line in summary(record) {
        emit(&line)?;
    }
    if let Some(profile) = profile {
        emit(&format!("profile: {}", profile.display()))?;
    }
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
