//! `skep`: keeps pools of agent processes warm and answers JSON-RPC calls through them.
//!
//! # Layout
//! - `cli.rs`: the top-level command line (clap) and the dispatch; each command's arguments live in its module.
//! - `output.rs`: the one place that writes to stdout.
//! - `runtime.rs`: the one-thread async runtime every command runs on.
//! - `serve.rs`: `skep serve`, the sidecar on stdin/stdout.
//! - `signals.rs`: SIGTERM, SIGINT and SIGHUP, which stop `serve` and `run` in order.
//! - `call.rs`: `skep call`, one call through the config's daemon (or a `skep serve` child).
//! - `daemon/`: `skep up`, `down`, `status`, `logs`, `reload`, attaching to a daemon, and the daemon process.
//! - `mcp.rs`: `skep mcp`, the stdio relay to the daemon's MCP gateway, and `--print-config`.
//! - `demo.rs`: `skep demo`, warm agents against a fresh process per call.
//! - `agent.rs`: `skep agent demo`, the demo role's agent process.
//! - `run.rs`: `skep run FILE`, a workflow over a swarm, its progress and profile.
//! - `profile.rs`: `skep profile`, recorded runs: a profile, a comparison, a baseline.
//! - `progress.rs`: the progress line `skep demo` draws on stderr.
//! - `observer.rs`: the client side of the observe socket, shared by `ls`, `stats` and `grid`.
//! - `ls.rs`: `skep ls`, this user's running orchestrators.
//! - `stats.rs`: `skep stats`, the per-role and per-agent table.
//! - `grid/`: `skep grid`, the live tmux view, and its pane processes.
//! - `worker.rs`: `skep worker`, this host's pools served to a cluster over NATS.

mod agent;
mod call;
mod cli;
mod daemon;
mod demo;
mod grid;
mod ls;
mod mcp;
mod observer;
mod output;
mod profile;
mod progress;
mod run;
mod runtime;
mod serve;
mod signals;
mod stats;
mod worker;

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let args = cli::Args::parse();
    if !args.is_daemon() {
        init_stderr_logs();
    }
    cli::run(args).unwrap_or_else(|e| {
        eprintln!("skep: {e:#}");
        ExitCode::FAILURE
    })
}

fn init_stderr_logs() {
    // Logs go to stderr only: stdout is the protocol (serve, agent) or the result (call, demo).
    let filter = ["SKEP_LOG", "RUST_LOG"].into_iter().find_map(|var| EnvFilter::try_from_env(var).ok());
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(filter.unwrap_or_else(|| EnvFilter::new("warn")))
        .init();
}
