//! `skep worker`: this host's warm pools, served to a cluster over NATS.
//! docs/cluster.md says how the pieces meet.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use skep_cluster::{Worker, WorkerOptions, connect, redact_url};
use skep_swarm::{ClusterConfig, Config, Protocol, Swarm, demo_config};

use crate::agent::demo_agent_command;
use crate::runtime::runtime;
use crate::signals::next_stop_signal;

/// Serve this host's roles to a cluster over NATS: one queue group per role.
///
/// Orchestrators call the roles they declare `remote = true` on any worker
/// serving them. SIGTERM (or SIGINT) drains: no new calls, calls in flight
/// finish within --grace, then the agents stop.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  skep worker --nats nats://10.0.0.5:4222 --config skep.toml
  SKEP_NATS_TOKEN=... skep worker --config skep.toml    # [cluster] nats in the file")]
pub struct WorkerArgs {
    /// The NATS server (overrides [cluster] nats).
    #[arg(long, value_name = "URL")]
    pub nats: Option<String>,
    /// The roles to serve (skep.toml); without it, the built-in role `demo`.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// How long a drain waits for calls in flight.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = humantime::parse_duration)]
    pub grace: Duration,
}

/// Serves until a stop signal, then drains and stops the agents.
pub fn run(args: WorkerArgs) -> anyhow::Result<ExitCode> {
    runtime()?.block_on(serve(args))?;
    Ok(ExitCode::SUCCESS)
}

async fn serve(args: WorkerArgs) -> anyhow::Result<()> {
    let mut config = match &args.config {
        Some(path) => Config::load(path)?,
        None => demo_config(demo_agent_command()?),
    };
    let cluster = match (config.cluster.take(), args.nats) {
        (Some(cluster), None) => cluster,
        (Some(cluster), Some(nats)) => ClusterConfig { nats, ..cluster },
        (None, Some(nats)) => ClusterConfig::new(&nats),
        (None, None) => anyhow::bail!("no NATS server: give --nats URL, or [cluster] nats = \"URL\" in the config"),
    };
    // Remote roles are other workers' business; a worker serves its own.
    config.roles.retain(|_, role| role.protocol != Protocol::Remote);
    anyhow::ensure!(!config.roles.is_empty(), "no local role to serve: every role in the config is remote");
    let stop = tokio::spawn(next_stop_signal());
    // Before any agent starts: a wrong token must fail fast and loudly.
    let client = connect(&cluster, &format!("skep worker {}", std::process::id())).await?;
    let swarm = Swarm::start(config).await.context("cannot start the swarm")?;
    let worker = Worker::start(client, swarm, &cluster, WorkerOptions { grace: args.grace })
        .await
        .context("cannot serve on the cluster")?;
    tracing::info!(worker = worker.id(), nats = %redact_url(&cluster.nats), cluster = %cluster.name, "worker ready");
    let signal = stop.await.context("the signal listener ended")?;
    tracing::info!("{}: draining", signal.name());
    let report = worker.drain().await;
    if report.abandoned > 0 {
        tracing::warn!(abandoned = report.abandoned, "calls still running at the end of the grace period fail now");
    }
    Ok(())
}
