//! `skep serve`: the sidecar. The swarm's methods as JSON-RPC 2.0 on
//! stdin/stdout, until stdin ends, `shutdown` is called, or a signal arrives.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use skep_bridge::{Server, ServerConfig, protocol_stdio};
use skep_cluster::start_swarm;
use skep_service::{ObserveOptions, observe, rpc_module};
use skep_swarm::{Config, demo_config};
use tokio_util::sync::CancellationToken;

use crate::agent::demo_agent_command;
use crate::runtime::runtime;
use crate::signals::next_stop_signal;

/// Serve the swarm's methods as JSON-RPC 2.0 on stdin/stdout (the sidecar).
///
/// Either framing works (newline-delimited or Content-Length), detected from
/// the first bytes. Stops on stdin EOF, the `shutdown` method, SIGTERM or
/// SIGINT, after stopping every agent. The methods are in docs/protocol.md.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Example:
  echo '{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"swarm/call\",\"params\":{\"role\":\"demo\",\"method\":\"echo\",\"params\":[\"hi\"]}}' | skep serve")]
pub struct ServeArgs {
    /// The roles to serve (skep.toml); without it, the built-in role `demo`.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Also serve the read-only methods and events on a Unix socket for `skep ls`,
    /// `skep stats` and `skep grid` (default path: $XDG_RUNTIME_DIR/skep/PID.sock).
    #[arg(long, value_name = "PATH", num_args = 0..=1)]
    pub observe: Option<Option<PathBuf>>,
}

/// Serves until the input ends or shutdown is asked for, then stops every agent.
pub fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    runtime()?.block_on(serve(args))?;
    Ok(ExitCode::SUCCESS)
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    // First, before anything can print: from here on fd 1 is stderr and the
    // protocol has a private descriptor. (Tracing, set up in main, writes to
    // stderr only.) It needs the runtime, as the pipes register with it.
    let (input, output) = protocol_stdio().context("cannot take over stdin and stdout")?;
    let mut config = match &args.config {
        Some(path) => Config::load(path)?,
        None => {
            tracing::info!("no --config: serving the built-in role \"demo\" (skep's own demo agents)");
            demo_config(demo_agent_command()?)
        }
    };
    let shutdown = CancellationToken::new();
    // Installed before the agents start, so a signal during start-up still
    // ends in an orderly stop rather than the default abrupt exit.
    let signals = tokio::spawn(cancel_on_signal(shutdown.clone()));
    // The command line wins over the config file's `[observe] socket`.
    let observe_path = match args.observe {
        Some(path) => Some(path),
        None => config.observe.take().map(Some),
    };
    let swarm = start_swarm(config, "skep serve").await.context("cannot start the swarm")?;
    let observation = match observe_path {
        Some(path) => {
            let options = ObserveOptions { path, config: args.config.as_ref().map(|c| absolute(c)) };
            Some(observe(swarm.clone(), options).await.context("cannot serve the observe socket")?)
        }
        None => None,
    };
    let server = Server::new(rpc_module(swarm.clone(), shutdown.clone()), ServerConfig::default());
    let served = server.serve(input, output, shutdown.clone()).await;
    signals.abort();
    match &served {
        Ok(summary) => tracing::info!(?summary, "stopped serving; stopping the agents"),
        Err(e) => tracing::warn!(%e, "serving failed; stopping the agents"),
    }
    if let Some(observation) = observation {
        observation.close().await;
    }
    swarm.shutdown().await;
    served.context("serving on stdin/stdout failed")?;
    Ok(())
}

fn absolute(path: &std::path::Path) -> std::path::PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

/// Cancels `shutdown` on SIGTERM, SIGINT or SIGHUP.
async fn cancel_on_signal(shutdown: CancellationToken) {
    tokio::select! {
        _ = next_stop_signal() => shutdown.cancel(),
        () = shutdown.cancelled() => {}
    }
}
