//! The command line: the top-level clap parser and the dispatch to each
//! command's module. Each command's own arguments live in its module, so
//! commands never import their dispatcher.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::agent::AgentArgs;
use crate::call::CallArgs;
use crate::daemon::{DaemonArgs, DownArgs, LogsArgs, ReloadArgs, StatusArgs, UpArgs};
use crate::demo::DemoArgs;
use crate::grid::{GridArgs, GridPaneArgs, GridStatusArgs};
use crate::ls::LsArgs;
use crate::mcp::McpArgs;
use crate::profile::ProfileArgs;
use crate::run::RunArgs;
use crate::serve::ServeArgs;
use crate::stats::StatsArgs;
use crate::worker::WorkerArgs;
use crate::{agent, call, daemon, demo, grid, ls, mcp, profile, run as run_cmd, serve, stats, worker};

/// Keeps pools of agent processes warm and answers JSON-RPC 2.0 calls through them.
#[derive(Debug, Parser)]
#[command(
    name = "skep",
    version,
    after_help = "\
Examples:
  skep demo                                 # warm agents vs a fresh process per call
  skep up                                   # the shared daemon for ./skep.toml (else the demo role)
  skep call demo echo '{\"hello\":\"skep\"}'    # one call, answered by the daemon's warm agents
  skep serve --config skep.toml             # the sidecar: JSON-RPC on stdin/stdout
  skep run examples/workflows/review.toml --report r.html   # a workflow, profiled
  skep grid --config skep.toml              # watch a live swarm in tmux
  skep mcp --print-config                   # put the config's MCP servers behind one MCP endpoint
  skep worker --nats nats://HOST:4222       # serve this host's roles to a cluster

Without --config, commands use ./skep.toml or the nearest one up the tree, else
the built-in demo role. call, run, stats and grid attach to that config's
daemon (starting it on first use); --no-daemon or SKEP_NO_DAEMON=1 runs a
throw-away orchestrator instead.

Logs go to stderr, filtered by SKEP_LOG (then RUST_LOG), default \"warn\"."
)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

impl Args {
    /// Whether this is the daemon, which logs to its own file rather than stderr.
    pub fn is_daemon(&self) -> bool {
        matches!(self.command, Command::Daemon(_))
    }
}

#[derive(Debug, Subcommand)]
enum Command {
    Serve(ServeArgs),
    Call(CallArgs),
    Up(UpArgs),
    Down(DownArgs),
    Status(StatusArgs),
    Logs(LogsArgs),
    Reload(ReloadArgs),
    Daemon(DaemonArgs),
    Mcp(McpArgs),
    Demo(DemoArgs),
    Agent(AgentArgs),
    Run(RunArgs),
    Profile(ProfileArgs),
    Ls(LsArgs),
    Stats(StatsArgs),
    Grid(GridArgs),
    GridPane(GridPaneArgs),
    GridStatus(GridStatusArgs),
    Worker(WorkerArgs),
}

/// Runs the command.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    match args.command {
        Command::Serve(args) => serve::run(args),
        Command::Call(args) => call::run(args),
        Command::Up(args) => daemon::up(args),
        Command::Down(args) => daemon::down(args),
        Command::Status(args) => daemon::status(args),
        Command::Logs(args) => daemon::logs(args),
        Command::Reload(args) => daemon::reload(args),
        Command::Daemon(args) => daemon::run_daemon(args),
        Command::Mcp(args) => mcp::run(args),
        Command::Demo(args) => demo::run(args),
        Command::Agent(args) => agent::run(args),
        Command::Run(args) => run_cmd::run(args),
        Command::Profile(args) => profile::run(args),
        Command::Ls(args) => ls::run(args),
        Command::Stats(args) => stats::run(args),
        Command::Grid(args) => grid::run(args),
        Command::GridPane(args) => grid::run_pane(args),
        Command::GridStatus(args) => grid::run_status(args),
        Command::Worker(args) => worker::run(args),
    }
}
