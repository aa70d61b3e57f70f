//! `skep grid`: a live view of a swarm in a private tmux server. One window
//! holds the status pane (`grid-status`, which owns the layout) and one pane
//! per agent (`grid-pane`); more than 16 agents go to further windows.
//!
//! - `tmux.rs`: the only place tmux runs; argv only, arguments checked.
//! - `layout.rs`: planning pane changes from agents and panes (plain code).
//! - `view.rs`: what an agent pane shows (plain code).
//! - `pane.rs`: the agent pane process.
//! - `control.rs`: the status pane process.

mod control;
mod layout;
mod pane;
mod tmux;
mod view;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use skep_service::daemon::DaemonPaths;
use skep_service::{ensure_private_dir, observe_dir};
use skep_swarm::Config;

pub use control::run as run_status;
pub use pane::run as run_pane;
use tmux::Tmux;

use crate::daemon::attach::{attach, no_daemon, target};
use crate::observer::{connect, fetch, resolve};
use crate::output::emit;
use crate::runtime::runtime;

/// Watch a live swarm in a private tmux grid: a status pane and one pane per agent.
///
/// In tmux: C-b z zooms a pane, C-b n / C-b p switch windows (16 agents per
/// window), C-b d detaches. Nothing is left running after --stop or once the
/// orchestrator ends.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  skep grid                              # the daemon of ./skep.toml (or the nearest one up), else the demo's
  skep grid --config skep.toml           # that config's daemon (started if none runs)
  skep grid --config skep.toml --detach  # print the attach command and return
  skep grid --no-daemon --config skep.toml   # an orchestrator of its own inside the grid
  skep grid --stop")]
pub struct GridArgs {
    /// Watch this config's daemon (started if none runs); with --no-daemon,
    /// start an orchestrator for these roles inside the grid.
    #[arg(long, value_name = "FILE", conflicts_with = "attach")]
    pub config: Option<PathBuf>,
    /// Watch the orchestrator serving this observe (or control) socket.
    #[arg(long, value_name = "SOCKET")]
    pub attach: Option<PathBuf>,
    /// No daemon: --config starts an orchestrator inside the grid, and
    /// without it the only running orchestrator is watched (also SKEP_NO_DAEMON=1).
    #[arg(long, conflicts_with = "attach")]
    pub no_daemon: bool,
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

/// How long the orchestrator may take to start its agents and open its socket.
const START_LIMIT: Duration = Duration::from_secs(60);
/// How long `--stop` waits for the grid's processes (and the orchestrator's agents) to end.
const STOP_LIMIT: Duration = Duration::from_secs(20);
/// Poll interval while waiting for a socket or for processes to end.
const POLL: Duration = Duration::from_millis(50);

/// Sets the grid up (starting an orchestrator with `--config`), then attaches,
/// or prints the attach command with `--detach`; `--stop` ends a grid.
pub fn run(args: GridArgs) -> anyhow::Result<ExitCode> {
    let dir = observe_dir();
    if args.stop {
        return stop(&dir, args.attach.as_deref());
    }
    ensure_private_dir(&dir)?;
    let exe = std::env::current_exe().context("cannot find skep's own executable")?;
    let exe = exe.to_str().context("skep's path is not UTF-8")?.to_owned();
    let daemon = !no_daemon(args.no_daemon) && args.attach.is_none();
    let (socket, session, tmux) = match &args.config {
        _ if daemon => {
            let config = target(args.config.as_deref())?;
            // Attaching starts the daemon if none runs; the grid then watches its socket.
            runtime()?.block_on(attach(config.as_deref()))?;
            let socket = DaemonPaths::for_config(config.as_deref()).socket;
            let (session, tmux) = new_grid(&dir, &socket)?;
            let status = status_argv(&exe, &socket, tmux.socket(), &session)?;
            let argv: Vec<&str> = status.iter().map(String::as_str).collect();
            new_session(&tmux, &session, "grid", &argv)?;
            (socket, session, tmux)
        }
        Some(config) => {
            // Load it here first: a bad config is a clear error now, not a grid that closes at once.
            Config::load(config)?;
            let config = std::path::absolute(config).context("cannot resolve the config path")?;
            let socket = dir.join(format!("grid-{}.sock", std::process::id()));
            let (session, tmux) = new_grid(&dir, &socket)?;
            let (config, socket_str) = (utf8(&config)?, utf8(&socket)?);
            new_session(
                &tmux,
                &session,
                "orchestrator",
                &[&exe, "serve", "--config", config, "--observe", socket_str],
            )?;
            runtime()?.block_on(wait_ready(&tmux, &socket))?;
            let target = format!("{session}:");
            let status = status_argv(&exe, &socket, tmux.socket(), &session)?;
            let mut argv = vec!["new-window", "-t", &target, "-n", "grid"];
            argv.extend(status.iter().map(String::as_str));
            tmux.run(&argv)?;
            (socket, session, tmux)
        }
        None => {
            let socket = runtime()?.block_on(resolve(args.attach.clone()))?;
            let (session, tmux) = new_grid(&dir, &socket)?;
            let status = status_argv(&exe, &socket, tmux.socket(), &session)?;
            let argv: Vec<&str> = status.iter().map(String::as_str).collect();
            new_session(&tmux, &session, "grid", &argv)?;
            (socket, session, tmux)
        }
    };
    tracing::info!(socket = %socket.display(), session, "grid ready");
    let tmux_socket = tmux.socket().display().to_string();
    if args.detach {
        emit(&format!("tmux -S {tmux_socket} attach -t {session}"))?;
        return Ok(ExitCode::SUCCESS);
    }
    let status = std::process::Command::new("tmux")
        .args(["-S", &tmux_socket, "attach", "-t", &session])
        // From inside another tmux, attaching to this separate server is fine.
        .env_remove("TMUX")
        .status()
        .context("cannot run tmux attach")?;
    Ok(if status.success() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// The session name and tmux server for a grid on `socket`; refuses a second grid on it.
fn new_grid(dir: &Path, socket: &Path) -> anyhow::Result<(String, Tmux)> {
    let (session, tmux_socket) = control::grid_names(dir, socket);
    let tmux = Tmux::new(tmux_socket);
    if tmux.alive() {
        bail!(
            "a grid for {} is already running; attach with `tmux -S {} attach -t {session}` or end it with `skep grid --stop`",
            socket.display(),
            tmux.socket().display()
        );
    }
    Ok((session, tmux))
}

fn new_session(tmux: &Tmux, session: &str, window: &str, argv: &[&str]) -> anyhow::Result<()> {
    // A size for the detached session, so 16 panes fit before anyone attaches.
    let mut args = vec!["new-session", "-d", "-s", session, "-n", window, "-x", "220", "-y", "60"];
    args.extend(argv);
    tmux.run(&args)?;
    for option in [
        ["pane-border-status", "top"],
        ["pane-border-format", " #{pane_title} "],
        ["mouse", "on"],
        ["remain-on-exit", "off"],
        ["allow-rename", "off"],
    ] {
        let mut args = vec!["set-option", "-g"];
        args.extend(option);
        tmux.run(&args)?;
    }
    Ok(())
}

fn status_argv(exe: &str, socket: &Path, tmux: &Path, session: &str) -> anyhow::Result<Vec<String>> {
    let argv = [exe, "grid-status", "--attach", utf8(socket)?, "--tmux", utf8(tmux)?, "--session", session];
    Ok(argv.map(str::to_owned).to_vec())
}

fn utf8(path: &Path) -> anyhow::Result<&str> {
    path.to_str().with_context(|| format!("{} is not UTF-8, which tmux arguments must be", path.display()))
}

/// Waits until the orchestrator in the grid answers on its socket.
async fn wait_ready(tmux: &Tmux, socket: &Path) -> anyhow::Result<()> {
    let deadline = Instant::now() + START_LIMIT;
    loop {
        if let Ok(client) = connect(socket).await
            && fetch(&client, "observe/info").await.is_ok()
        {
            return Ok(());
        }
        if !tmux.alive() {
            bail!("the orchestrator exited while starting; run `skep serve --config FILE` to see why");
        }
        if Instant::now() > deadline {
            let _ = tmux.kill_server();
            bail!("the orchestrator did not open {} within {} s", socket.display(), START_LIMIT.as_secs());
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Ends a grid: its tmux server and every process in it (an orchestrator the
/// grid started stops its agents on the hang-up), and waits until all are gone.
fn stop(dir: &Path, attach: Option<&Path>) -> anyhow::Result<ExitCode> {
    let tmux_socket = match attach {
        Some(socket) => control::grid_names(dir, socket).1,
        None => only_grid(dir)?,
    };
    let tmux = Tmux::new(tmux_socket.clone());
    if !tmux.alive() {
        let _ = std::fs::remove_file(&tmux_socket);
        bail!("no grid is running on {}", tmux_socket.display());
    }
    let mut pids: Vec<i32> =
        tmux.run(&["list-panes", "-a", "-F", "#{pane_pid}"])?.lines().filter_map(|l| l.trim().parse().ok()).collect();
    pids.extend(tmux.run(&["display-message", "-p", "#{pid}"])?.trim().parse::<i32>().ok());
    tmux.kill_server()?;
    let deadline = Instant::now() + STOP_LIMIT;
    while pids.iter().any(|&pid| alive(pid)) {
        if Instant::now() > deadline {
            let left: Vec<i32> = pids.iter().copied().filter(|&pid| alive(pid)).collect();
            bail!("grid processes {left:?} did not exit within {} s of the hang-up", STOP_LIMIT.as_secs());
        }
        std::thread::sleep(POLL);
    }
    let _ = std::fs::remove_file(&tmux_socket);
    Ok(ExitCode::SUCCESS)
}

fn only_grid(dir: &Path) -> anyhow::Result<PathBuf> {
    let grids: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|entries| entries.filter_map(Result::ok).map(|e| e.path()).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .filter(|p: &PathBuf| p.extension().is_some_and(|x| x == "tmux"))
        .collect();
    match grids.as_slice() {
        [one] => Ok(one.clone()),
        [] => bail!("no grid is running (nothing in {})", dir.display()),
        many => {
            let list: Vec<String> = many.iter().map(|p| format!("  {}", p.display())).collect();
            bail!("{} grids are running; pick one with --attach SOCKET:\n{}", many.len(), list.join("\n"))
        }
    }
}

/// Whether `pid` still exists (a zombie counts until reaped).
fn alive(pid: i32) -> bool {
    // SAFETY: signal 0 only checks that the process exists.
    unsafe { libc::kill(pid, 0) == 0 }
}
