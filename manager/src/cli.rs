//! The command line: one clap struct per command, and the dispatch to each
//! command's module.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use serde_json::value::RawValue;

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

/// List this user's running orchestrators (those serving an observe socket).
///
/// Sockets nobody listens on any more are removed.
#[derive(Debug, clap::Args)]
pub struct LsArgs {
    /// One JSON array instead of the table.
    #[arg(long)]
    pub json: bool,
}

/// Show per role and agent: state, calls, errors, p50/p99, cache hit rate, breaker.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  skep stats                      # the only running orchestrator
  skep stats --attach /run/user/1000/skep/4242.sock --json
  skep stats --watch")]
pub struct StatsArgs {
    /// The orchestrator's observe socket; without it, the only running one (see `skep ls`).
    #[arg(long, value_name = "SOCKET")]
    pub attach: Option<PathBuf>,
    /// One JSON object per snapshot, for scripts.
    #[arg(long)]
    pub json: bool,
    /// Refresh in place until the orchestrator ends.
    #[arg(long)]
    pub watch: bool,
}

/// Watch a live swarm in a private tmux grid: a status pane and one pane per agent.
///
/// In tmux: C-b z zooms a pane, C-b n / C-b p switch windows (16 agents per
/// window), C-b d detaches. Nothing is left running after --stop or once the
/// orchestrator ends.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  skep grid --config skep.toml           # start an orchestrator and watch it
  skep grid                              # watch the only running orchestrator
  skep grid --config skep.toml --detach  # print the attach command and return
  skep grid --stop")]
pub struct GridArgs {
    /// Start an orchestrator for these roles inside the grid.
    #[arg(long, value_name = "FILE", conflicts_with = "attach")]
    pub config: Option<PathBuf>,
    /// Watch the orchestrator serving this observe socket.
    #[arg(long, value_name = "SOCKET")]
    pub attach: Option<PathBuf>,
    /// Set the grid up, print the command that attaches to it, and return.
    #[arg(long)]
    pub detach: bool,
    /// End the grid (the only one, or the one for --attach SOCKET).
    #[arg(long, conflicts_with_all = ["config", "detach"])]
    pub stop: bool,
}

/// One agent's pane in a grid (run by the grid itself).
#[derive(Debug, clap::Args)]
#[command(hide = true)]
pub struct GridPaneArgs {
    #[arg(long, value_name = "SOCKET")]
    pub attach: PathBuf,
    #[arg(long, value_name = "ROLE/N")]
    pub agent: String,
    /// The agent whose pane this was, when this one replaced it.
    #[arg(long, value_name = "ROLE/N")]
    pub replaces: Option<String>,
}

/// The status pane of a grid, which owns its layout (run by the grid itself).
#[derive(Debug, clap::Args)]
#[command(hide = true)]
pub struct GridStatusArgs {
    #[arg(long, value_name = "SOCKET")]
    pub attach: PathBuf,
    #[arg(long, value_name = "SOCKET")]
    pub tmux: PathBuf,
    #[arg(long)]
    pub session: String,
}

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

/// Make one call through a fresh `skep serve` and print its result on stdout.
///
/// On an error reply, prints `error CODE: MESSAGE` and its data to stderr and
/// exits 1; a bad command line exits 2.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  skep call demo echo '{\"a\":1}'                  # prints {\"a\":1}
  skep call demo wordcount '{\"text\":\"a b c\"}'
  skep call --config skep.toml --timeout-ms 5000 reviewer review '{\"path\":\"src/lib.rs\"}'")]
pub struct CallArgs {
    /// The roles to call into (skep.toml); without it, the built-in role `demo`.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Fail with -32001 if the agent has not answered within N ms (default: the role's timeout).
    #[arg(long, value_name = "N")]
    pub timeout_ms: Option<u64>,
    /// The role whose agent takes the call.
    pub role: String,
    /// The agent's method.
    pub method: String,
    /// The params: a JSON object or array.
    #[arg(value_parser = params_json)]
    pub params_json: Option<Box<RawValue>>,
}

/// Time warm agents against a fresh process per call, with the built-in demo role.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  skep demo
  skep demo --calls 100000 --agents 4 --cold-calls 50")]
pub struct DemoArgs {
    /// Calls through the warm agents.
    #[arg(long, value_name = "N", default_value_t = 20_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub calls: u64,
    /// Warm agents; both paths keep this many calls in flight.
    #[arg(long, value_name = "N", default_value_t = 8, value_parser = clap::value_parser!(u64).range(1..=256))]
    pub agents: u64,
    /// Calls that each start a fresh agent process.
    #[arg(long, value_name = "N", default_value_t = 200, value_parser = clap::value_parser!(u64).range(1..))]
    pub cold_calls: u64,
}

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
    /// The roles agent steps call (skep.toml); without it, the built-in role `demo`.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
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

/// Print a recorded run's profile, compare two runs, or pin a baseline.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  skep profile                          # the latest run
  skep profile 20250102T0304            # a run by (a prefix of) its id
  skep profile --compare RUN_A RUN_B    # side by side
  skep profile --baseline release       # pin the latest run as `release`")]
pub struct ProfileArgs {
    /// The run id (or a unique prefix); default the latest.
    pub run: Option<String>,
    /// Two runs side by side.
    #[arg(long, num_args = 2, value_names = ["A", "B"])]
    pub compare: Vec<String>,
    /// Pin the run as baseline NAME (`skep run --baseline NAME` compares against it).
    #[arg(long, value_name = "NAME")]
    pub baseline: Option<String>,
    /// The state directory holding runs/ and history.jsonl.
    #[arg(long, value_name = "DIR", default_value = ".skep")]
    pub state: PathBuf,
    /// Also write the run's HTML report.
    #[arg(long, value_name = "OUT.html")]
    pub report: Option<PathBuf>,
    /// Also write the run's Chrome trace-event JSON.
    #[arg(long, value_name = "OUT.json")]
    pub trace: Option<PathBuf>,
}

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

/// Writes one line of a command's output to stdout.
///
/// The one place skep writes to stdout: the workspace denies
/// `clippy::print_stdout` so that nothing else can, because in `serve` and
/// `agent` stdout is the protocol. `writeln!` rather than `println!` so that a
/// closed pipe (`skep demo | head -1`) is an error instead of a panic.
pub fn emit(line: &str) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{line}").and_then(|()| stdout.flush()).context("cannot write to stdout")
}

/// Writes a terminal frame (no newline added) to stdout: `emit`'s twin for
/// the panes that redraw themselves in place.
pub fn emit_frame(frame: &str) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(frame.as_bytes()).and_then(|()| stdout.flush()).context("cannot write to stdout")
}

/// The argv of the demo role's agents: this very executable in agent mode.
pub fn demo_agent_command() -> anyhow::Result<Vec<String>> {
    let exe = std::env::current_exe().context("cannot find skep's own executable")?;
    Ok(vec![exe.to_string_lossy().into_owned(), "agent".into(), "demo".into()])
}

/// The runtime every command runs on: one thread.
///
/// skep's own work is I/O between pipes; the CPU time goes to the agent
/// processes. On a 2-core machine, `skep demo` measured 45–80k warm calls/s on
/// one thread against ~38k/s with two workers, which spend their time waking
/// each other up and compete with the agents for the cores.
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread().enable_all().build().context("cannot start the async runtime")
}

/// Parses PARAMS_JSON before anything is spawned, so a typo costs nothing.
fn params_json(text: &str) -> Result<Box<RawValue>, String> {
    let raw: Box<RawValue> = serde_json::from_str(text).map_err(|e| format!("not valid JSON: {e}"))?;
    match raw.get().as_bytes().first() {
        // Compacted: a newline inside would end a newline-delimited frame early.
        Some(b'{' | b'[') => Ok(RawValue::from_string(compact(raw.get())).expect("compacting keeps JSON valid")),
        _ => Err("JSON-RPC params must be an object or an array, such as '{\"text\":\"hi\"}' or '[1,2]'".into()),
    }
}

/// Valid JSON without the whitespace between tokens, on one line. Unlike a
/// round trip through `serde_json::Value`, it keeps key order and number text.
pub fn compact(json: &str) -> String {
    let mut out = String::with_capacity(json.len());
    let (mut in_string, mut escaped) = (false, false);
    for c in json.chars() {
        if in_string {
            (in_string, escaped) = (escaped || c != '"', !escaped && c == '\\');
        } else if c == '"' {
            in_string = true;
        } else if c.is_ascii_whitespace() {
            continue;
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compact_drops_whitespace_between_tokens_only() {
        let pretty = "{\n  \"a b\": [1, 2.50],\n  \"q\\\" \\\\\": \" x \"\n}";
        assert_eq!(compact(pretty), r#"{"a b":[1,2.50],"q\" \\":" x "}"#);
    }

    #[test]
    fn params_must_be_json_objects_or_arrays() {
        assert_eq!(params_json(" {\"b\": 1,\n\"a\": 2} ").unwrap().get(), r#"{"b":1,"a":2}"#);
        assert!(params_json("{").unwrap_err().contains("not valid JSON"));
        assert!(params_json("42").unwrap_err().contains("object or an array"));
    }
}
