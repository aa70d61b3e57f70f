//! `skep agent demo`: the demo role's agent process. It serves the demo
//! methods on stdin/stdout and exits when stdin ends, as agents must.

use clap::ValueEnum;
use std::process::ExitCode;

use anyhow::Context;
use skep_bridge::{Server, ServerConfig, protocol_stdio};
use skep_swarm::demo_agent_module;
use tokio_util::sync::CancellationToken;

use crate::runtime::runtime;

/// Run as an agent on stdin/stdout (what a role's `command` starts).
#[derive(Debug, clap::Args)]
#[command(
    hide = true,
    after_help = "\
Example:
  echo '{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"wordcount\",\"params\":{\"text\":\"a b\"}}' | skep agent demo"
)]
pub struct AgentArgs {
    /// Which built-in agent.
    #[arg(value_enum)]
    pub kind: AgentKind,
}

/// The built-in agents.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum AgentKind {
    /// The demo role's agent: echo, sleep {"ms"}, wordcount {"text"}, fail {"message"}.
    Demo,
}

/// The argv of the demo role's agents: this very executable in agent mode.
pub fn demo_agent_command() -> anyhow::Result<Vec<String>> {
    let exe = std::env::current_exe().context("cannot find skep's own executable")?;
    Ok(vec![exe.to_string_lossy().into_owned(), "agent".into(), "demo".into()])
}

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
