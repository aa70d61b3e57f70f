//! `skep daemon`: the daemon process itself, started detached by `skep up`
//! or by a client on first use. Logs go to its bounded log file; SIGTERM and
//! SIGINT stop it in order, SIGHUP reloads its config.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use skep_service::daemon::{Daemon, DaemonError, DaemonPaths, DaemonSpec, StopReason, log_writer};
use skep_swarm::{Config, demo_config};
use tokio::signal::unix::{SignalKind, signal};
use tracing_subscriber::EnvFilter;

use crate::agent::demo_agent_command;
use crate::runtime::runtime;

/// The shared daemon itself (started by `skep up` or on first use).
#[derive(Debug, clap::Args)]
#[command(hide = true)]
pub struct DaemonArgs {
    /// The config (canonical); without it, the built-in demo role.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Started by a client rather than `skep up`.
    #[arg(long)]
    pub auto_started: bool,
}

/// How long a starting daemon retries its lock: a client probing whether a
/// daemon lives holds it for an instant.
const LOCK_RETRY: Duration = Duration::from_secs(1);

/// Runs the daemon until it is stopped or idle.
pub fn run(args: DaemonArgs) -> anyhow::Result<ExitCode> {
    let paths = DaemonPaths::for_config(args.config.as_deref());
    let writer = log_writer(&paths.log).with_context(|| format!("cannot open the log {}", paths.log.display()))?;
    let filter = ["SKEP_LOG", "RUST_LOG"].into_iter().find_map(|var| EnvFilter::try_from_env(var).ok());
    tracing_subscriber::fmt()
        .with_writer(writer)
        .with_ansi(false)
        .with_env_filter(filter.unwrap_or_else(|| EnvFilter::new("info")))
        .init();
    let result = runtime()?.block_on(serve(args));
    if let Err(e) = &result {
        tracing::error!("daemon failed: {e:#}");
    }
    result
}

async fn serve(args: DaemonArgs) -> anyhow::Result<ExitCode> {
    let mut terminate = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("cannot watch SIGINT")?;
    let mut hangup = signal(SignalKind::hangup()).context("cannot watch SIGHUP")?;
    let config = match &args.config {
        Some(path) => Config::load(path)?,
        None => demo_config(demo_agent_command()?),
    };
    let first_try = Instant::now();
    let daemon = loop {
        let spec =
            DaemonSpec { config_path: args.config.clone(), config: config.clone(), auto_started: args.auto_started };
        match Daemon::start(spec).await {
            Ok(daemon) => break daemon,
            Err(DaemonError::AlreadyRunning { .. }) if first_try.elapsed() < LOCK_RETRY => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => return Err(e).context("the daemon could not start"),
        }
    };
    tracing::info!(pid = std::process::id(), auto_started = args.auto_started, "serving");
    let reason = loop {
        tokio::select! {
            reason = daemon.stopped() => break match reason {
                StopReason::Idle => "idle exit: no client connected",
                StopReason::Asked => "asked to shut down",
            },
            _ = terminate.recv() => break "SIGTERM",
            _ = interrupt.recv() => break "SIGINT",
            _ = hangup.recv() => match daemon.reload().await {
                Ok(report) => tracing::info!(?report, "reloaded on SIGHUP"),
                Err(e) => tracing::warn!("SIGHUP reload refused: {e}"),
            },
        }
    };
    tracing::info!(reason, "stopping");
    daemon.stop().await;
    Ok(ExitCode::SUCCESS)
}
