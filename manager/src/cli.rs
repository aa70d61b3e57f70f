//! The command line: the top-level clap parser and the dispatch to each
//! command's module. Each command's own arguments live in its module, so
//! commands never import their dispatcher.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::agent::AgentArgs;
use crate::call::CallArgs;
use crate::demo::DemoArgs;
use crate::grid::{GridArgs, GridPaneArgs, GridStatusArgs};
use crate::ls::LsArgs;
use crate::profile::ProfileArgs;
use crate::run::RunArgs;
use crate::serve::ServeArgs;
use crate::stats::StatsArgs;
use crate::{agent, call, demo, grid, ls, profile, run as run_cmd, serve, stats};

/// Keeps pools of agent processes warm and answers JSON-RPC 2.0 calls through them.
#[derive(Debug, Parser)]
#[command(
    name = "skep",
    version,
    after_help = "\
Examples:
  skep demo                                 # warm agents vs a fresh process per call
  skep call demo echo '{\"hello\":\"skep\"}'    # one call through the built-in demo role
  skep serve --config skep.toml             # the sidecar: JSON-RPC on stdin/stdout
  skep run examples/workflows/review.toml --report r.html   # a workflow, profiled
  skep grid --config skep.toml              # watch a live swarm in tmux

Logs go to stderr, filtered by SKEP_LOG (then RUST_LOG), default \"warn\"."
)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    Serve(ServeArgs),
    Call(CallArgs),
    Demo(DemoArgs),
    Agent(AgentArgs),
    Run(RunArgs),
    Profile(ProfileArgs),
    Ls(LsArgs),
    Stats(StatsArgs),
    Grid(GridArgs),
    GridPane(GridPaneArgs),
    GridStatus(GridStatusArgs),
}

/// Runs the command.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    match args.command {
        Command::Serve(args) => serve::run(args),
        Command::Call(args) => call::run(args),
        Command::Demo(args) => demo::run(args),
        Command::Agent(args) => agent::run(args),
        Command::Run(args) => run_cmd::run(args),
        Command::Profile(args) => profile::run(args),
        Command::Ls(args) => ls::run(args),
        Command::Stats(args) => stats::run(args),
        Command::Grid(args) => grid::run(args),
        Command::GridPane(args) => grid::run_pane(args),
        Command::GridStatus(args) => grid::run_status(args),
    }
}
