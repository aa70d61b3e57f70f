//! `skep serve`: the sidecar. The swarm's methods as JSON-RPC 2.0 on
//! stdin/stdout, until stdin ends, `shutdown` is called, or a signal arrives.

use std::process::ExitCode;

use anyhow::Context;
use skep_bridge::{Server, ServerConfig, protocol_stdio};
use skep_swarm::{Config, Swarm, demo_config, rpc_module};
use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;

use crate::cli::{ServeArgs, demo_agent_command, runtime};

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
    let config = match &args.config {
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
    let swarm = Swarm::start(config).await.context("cannot start the swarm")?;
    let server = Server::new(rpc_module(swarm.clone(), shutdown.clone()), ServerConfig::default());
    let served = server.serve(input, output, shutdown.clone()).await;
    signals.abort();
    match &served {
        Ok(summary) => tracing::info!(?summary, "stopped serving; stopping the agents"),
        Err(e) => tracing::warn!(%e, "serving failed; stopping the agents"),
    }
    swarm.shutdown().await;
    served.context("serving on stdin/stdout failed")?;
    Ok(())
}

/// Cancels `shutdown` on SIGTERM or SIGINT.
async fn cancel_on_signal(shutdown: CancellationToken) {
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
        tracing::warn!("cannot listen for SIGTERM/SIGINT; they will end skep without stopping its agents first");
        return;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
        _ = int.recv() => tracing::info!("SIGINT: shutting down"),
        () = shutdown.cancelled() => return,
    }
    shutdown.cancel();
}
