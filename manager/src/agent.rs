//! `skep agent demo`: the demo role's agent process. It serves the demo
//! methods on stdin/stdout and exits when stdin ends, as agents must.

use std::process::ExitCode;

use anyhow::Context;
use skep_bridge::{Server, ServerConfig, protocol_stdio};
use skep_swarm::demo_agent_module;
use tokio_util::sync::CancellationToken;

use crate::cli::{AgentArgs, AgentKind, runtime};

/// Serves the chosen agent until its input ends.
pub fn run(args: AgentArgs) -> anyhow::Result<ExitCode> {
    let module = match args.kind {
        AgentKind::Demo => demo_agent_module(),
    };
    runtime()?.block_on(async {
        let (input, output) = protocol_stdio().context("cannot take over stdin and stdout")?;
        // No shutdown switch of its own: the orchestrator stops an agent by
        // closing its stdin, then by signals, whose default action suffices.
        let summary = Server::new(module, ServerConfig::default())
            .serve(input, output, CancellationToken::new())
            .await
            .context("serving on stdin/stdout failed")?;
        tracing::debug!(?summary, "input ended");
        anyhow::Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}
