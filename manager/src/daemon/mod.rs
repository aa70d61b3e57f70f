//! The shared daemon's commands: `skep up`, `down`, `status`, `logs`,
//! `reload`, and the hidden `skep daemon` that is the daemon itself
//! (docs/daemon.md).
//!
//! - `attach.rs`: finding the config, connecting, auto-start, version handshake.
//! - `process.rs`: `skep daemon`, the detached process.

pub mod attach;
mod process;

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use serde_json::Value;
use skep_service::daemon::DaemonPaths;

use crate::output::emit;
use crate::runtime::runtime;
use crate::stats::render;
use attach::{connect, control, target};
pub use process::{DaemonArgs, run as run_daemon};

/// Which daemon: the config's.
#[derive(Debug, clap::Args)]
pub struct Which {
    /// The config whose daemon this is; without it, the nearest skep.toml from
    /// here up, else the built-in demo role.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

impl Which {
    /// The config (canonical, or `None` for the demo) and its daemon's paths.
    fn resolve(&self) -> anyhow::Result<(Option<PathBuf>, DaemonPaths)> {
        let config = target(self.config.as_deref())?;
        let paths = DaemonPaths::for_config(config.as_deref());
        Ok((config, paths))
    }
}

/// Start the shared daemon for a config, detached, and return once its warm agents are ready.
///
/// Every `skep call`, `run`, `stats` and `grid` for the same config then
/// attaches to it (they also start it on first use). It exits after
/// `[daemon] idle_exit` (default 30m) with no client connected.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  skep up                          # ./skep.toml (or the nearest one up the tree), else the demo role
  skep up --config examples/skep.toml
  skep call echo-py echo '{\"i\":1}' # answered by the warm daemon
  skep down")]
pub struct UpArgs {
    #[command(flatten)]
    pub which: Which,
}

/// Stop the config's daemon: its agents stop, its socket goes.
#[derive(Debug, clap::Args)]
pub struct DownArgs {
    #[command(flatten)]
    pub which: Which,
}

/// Show the config's daemon: pid, uptime, clients, roles and agents.
#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub which: Which,
    /// One JSON object, for scripts.
    #[arg(long)]
    pub json: bool,
}

/// Print the config's daemon log; `-f` follows it.
#[derive(Debug, clap::Args)]
pub struct LogsArgs {
    #[command(flatten)]
    pub which: Which,
    /// Keep printing what is appended until interrupted.
    #[arg(short, long)]
    pub follow: bool,
}

/// Re-read the config in the running daemon: unchanged roles stay warm,
/// changed ones roll over, removed ones drain. A config that does not load is
/// refused and the daemon keeps the old one (SIGHUP does the same).
#[derive(Debug, clap::Args)]
pub struct ReloadArgs {
    #[command(flatten)]
    pub which: Which,
}

/// Starts the daemon, or says where the running one is.
pub fn up(args: UpArgs) -> anyhow::Result<ExitCode> {
    let (config, paths) = args.which.resolve()?;
    runtime()?.block_on(async {
        let fresh = match connect(&paths.socket).await {
            Ok(_) => false,
            Err(_) => {
                attach::start(config.as_deref()).await?;
                true
            }
        };
        let client = attach::attach(config.as_deref()).await?;
        let status = control(&client, "daemon/status").await?;
        let state = if fresh { "started" } else { "already running" };
        eprintln!("skep: daemon for {} {state} (pid {})", paths.identity, status["pid"]);
        emit(&paths.socket.display().to_string())?;
        Ok(ExitCode::SUCCESS)
    })
}

/// Stops the daemon, if one runs.
pub fn down(args: DownArgs) -> anyhow::Result<ExitCode> {
    let (config, paths) = args.which.resolve()?;
    runtime()?.block_on(async {
        let Ok(client) = connect(&paths.socket).await else {
            eprintln!("skep: no daemon is running for {}", paths.identity);
            return Ok(ExitCode::SUCCESS);
        };
        attach::stop(client, config.as_deref()).await?;
        eprintln!("skep: daemon for {} stopped", paths.identity);
        Ok(ExitCode::SUCCESS)
    })
}

/// Prints the daemon's status, or exits 3 when none runs.
pub fn status(args: StatusArgs) -> anyhow::Result<ExitCode> {
    let (_, paths) = args.which.resolve()?;
    runtime()?.block_on(async {
        let Ok(client) = connect(&paths.socket).await else {
            eprintln!("skep: no daemon is running for {} (start one with `skep up`)", paths.identity);
            return Ok(ExitCode::from(NOT_RUNNING));
        };
        let status = control(&client, "daemon/status").await?;
        let stats = control(&client, "swarm/stats").await?;
        let agents = control(&client, "swarm/agents").await?;
        if args.json {
            emit(&serde_json::json!({ "daemon": status, "stats": stats, "agents": agents }).to_string())?;
        } else {
            for line in describe(&status).into_iter().chain([String::new()]).chain(render(&stats, &agents)) {
                emit(&line)?;
            }
        }
        Ok(ExitCode::SUCCESS)
    })
}

/// `skep status`'s exit status when no daemon runs, so scripts can tell.
const NOT_RUNNING: u8 = 3;

fn describe(status: &Value) -> Vec<String> {
    let uptime = Duration::from_millis(status["uptimeMs"].as_u64().unwrap_or(0));
    let idle = match status["idleExitMs"].as_u64() {
        Some(ms) => humantime::format_duration(Duration::from_millis(ms)).to_string(),
        None => "never".to_owned(),
    };
    let a = &status["agents"];
    vec![
        format!("config   {}", status["identity"].as_str().unwrap_or("?")),
        format!("pid      {}   version {}", status["pid"], status["version"].as_str().unwrap_or("?")),
        format!("uptime   {}", humantime::format_duration(Duration::from_secs(uptime.as_secs()))),
        // Our own connection is one of them.
        format!("clients  {}", status["clients"].as_u64().unwrap_or(1).saturating_sub(1)),
        format!(
            "agents   {} idle, {} busy, {} starting, {} stopping, in {} roles",
            a["idle"], a["busy"], a["starting"], a["stopping"], status["roles"]
        ),
        format!("socket   {}", status["socket"].as_str().unwrap_or("?")),
        match (status["remote"]["workers"].as_u64(), status["remote"]["agents"].as_u64()) {
            (Some(w), Some(n)) => format!("remote   {w} workers, {n} agents (below)"),
            _ => "remote   no cluster".to_owned(),
        },
        format!(
            "mcp      {} stdio and {} http sessions; http {}",
            status["mcp"]["sessions"]["stdio"],
            status["mcp"]["sessions"]["http"],
            status["mcp"]["http"].as_str().unwrap_or("off ([mcp] listen)")
        ),
        format!("log      {}", status["log"].as_str().unwrap_or("?")),
        format!("idle exit after {idle} with no client"),
    ]
}

/// Prints the log, then follows it with `-f`.
pub fn logs(args: LogsArgs) -> anyhow::Result<ExitCode> {
    let (_, paths) = args.which.resolve()?;
    let mut file = match std::fs::File::open(&paths.log) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            eprintln!("skep: no log yet for {} ({})", paths.identity, paths.log.display());
            return Ok(ExitCode::SUCCESS);
        }
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", paths.log.display())),
    };
    let mut offset = copy_from(&mut file, 0, &paths.log)?;
    if !args.follow {
        return Ok(ExitCode::SUCCESS);
    }
    loop {
        std::thread::sleep(Duration::from_millis(200));
        let len = std::fs::metadata(&paths.log).map_or(0, |m| m.len());
        if len < offset {
            // Rotated: the new file starts from the beginning.
            file = std::fs::File::open(&paths.log).with_context(|| format!("cannot read {}", paths.log.display()))?;
            offset = 0;
        }
        offset = copy_from(&mut file, offset, &paths.log)?;
    }
}

fn copy_from(file: &mut std::fs::File, offset: u64, path: &Path) -> anyhow::Result<u64> {
    file.seek(SeekFrom::Start(offset)).with_context(|| format!("cannot read {}", path.display()))?;
    let mut text = String::new();
    let read = file.read_to_string(&mut text).with_context(|| format!("cannot read {}", path.display()))?;
    if let Some(body) = text.strip_suffix('\n') {
        emit(body)?;
    } else if !text.is_empty() {
        emit(&text)?;
    }
    Ok(offset + read as u64)
}

/// Asks the daemon to reload its config; exits 1 with the config's error if refused.
pub fn reload(args: ReloadArgs) -> anyhow::Result<ExitCode> {
    let (_, paths) = args.which.resolve()?;
    runtime()?.block_on(async {
        let client = connect(&paths.socket)
            .await
            .with_context(|| format!("no daemon is running for {} (start one with `skep up`)", paths.identity))?;
        let options = skep_bridge::RequestOptions { timeout: Some(Duration::from_secs(600)) };
        match client.call_raw("daemon/reload", None, options).await {
            Ok(report) => {
                let report: Value =
                    serde_json::from_str(report.get()).context("reload answered something that is not JSON")?;
                let strings = |key: &str| -> Vec<&str> {
                    report[key].as_array().into_iter().flatten().filter_map(Value::as_str).collect()
                };
                for key in ["kept", "replaced", "added", "removed"] {
                    let names = strings(key);
                    if !names.is_empty() {
                        emit(&format!("{key:<9}{}", names.join(", ")))?;
                    }
                }
                let tables = strings("atNextStart");
                if !tables.is_empty() {
                    emit(&format!(
                        "{:<9}{} changed: applied at the daemon's next start (`skep down`, then any command)",
                        "pending",
                        tables.join(", ")
                    ))?;
                }
                Ok(ExitCode::SUCCESS)
            }
            Err(skep_bridge::CallError::Rpc(e)) => {
                eprintln!("skep: reload refused; the daemon keeps serving its previous config:\n{}", e.message());
                Ok(ExitCode::FAILURE)
            }
            Err(e) => Err(e).context("reload failed"),
        }
    })
}
