//! `skep grid-status`: the process in the status pane. It owns the grid:
//! draws the stats table, reconciles agent panes with `swarm/agents`, and
//! when the orchestrator goes away says so and ends the tmux server.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::Value;
use skep_swarm::is_valid_name;

use super::GridStatusArgs;
use super::layout::{Action, AgentNow, PaneNow, Reconciler};
use super::pane::terminal_size;
use super::tmux::{Tmux, is_safe_title};
use super::view::clean;
use crate::observer::{connect, fetch};
use crate::output::emit_frame;
use crate::runtime::runtime;
use crate::stats::render;

/// How often the table and the layout are refreshed.
const EVERY: Duration = Duration::from_millis(500);
/// How long the last word stays on screen before the grid closes.
const LAST_WORD: Duration = Duration::from_secs(2);
const PANES_FORMAT: &str = "#{pane_id} #{window_id} #{pane_pid} #{@skep_agent} #{pane_title}";

/// Runs the status pane until the orchestrator ends, then ends the grid.
pub fn run(args: GridStatusArgs) -> anyhow::Result<ExitCode> {
    let tmux = Tmux::new(args.tmux.clone());
    let result = runtime()?.block_on(control(&args, &tmux));
    if let Err(e) = &result {
        let _ = emit_frame(&format!("\x1b[H\x1b[2Jthe grid failed: {e:#}\r\n"));
        std::thread::sleep(LAST_WORD * 2);
    }
    // Whatever happened, nothing of the grid outlives its owner. The hang-up
    // the server sends its panes is ignored here, to remove its socket after
    // it (tmux leaves the file behind).
    // SAFETY: ignoring a signal installs no handler; nothing else in this process handles SIGHUP.
    unsafe { libc::signal(libc::SIGHUP, libc::SIG_IGN) };
    let _ = tmux.kill_server();
    let _ = std::fs::remove_file(tmux.socket());
    result.map(|()| ExitCode::SUCCESS)
}

async fn control(args: &GridStatusArgs, tmux: &Tmux) -> anyhow::Result<()> {
    let client = connect(&args.attach).await?;
    let me = std::env::var("TMUX_PANE").context("grid-status runs inside the grid's tmux pane")?;
    let status_window = tmux.run(&["display-message", "-p", "-t", &me, "#{window_id}"])?.trim().to_owned();
    let pane_command = PaneCommand::new(&args.attach)?;
    let mut reconciler = Reconciler::default();
    let info = fetch(&client, "observe/info").await?;
    let header = format!(
        "skep grid: orchestrator pid {} {}  (C-b z zoom, C-b n/p windows, C-b d detach)",
        info["pid"],
        info["config"].as_str().unwrap_or("built-in demo")
    );
    loop {
        let snapshot =
            async { anyhow::Ok((fetch(&client, "swarm/stats").await?, fetch(&client, "swarm/agents").await?)) };
        let (stats, agents) = match snapshot.await {
            Ok(both) => both,
            Err(_) if !client.is_connected() => break,
            Err(e) => return Err(e),
        };
        let (width, height) = terminal_size();
        let mut frame = format!("\x1b[H{}\x1b[K", clean(&header, width));
        for line in render(&stats, &agents).iter().take(height.saturating_sub(1)) {
            frame.push_str(&format!("\r\n{}\x1b[K", clean(line, width)));
        }
        frame.push_str("\x1b[J");
        emit_frame(&frame)?;
        let panes = list_panes(tmux, &args.session)?;
        for action in reconciler.plan(Instant::now(), &status_window, &agents_now(&agents), &panes) {
            if let Err(e) = apply(tmux, &args.session, &pane_command, &action) {
                tracing::warn!(?action, "{e:#}");
            }
        }
        tokio::select! {
            () = tokio::time::sleep(EVERY) => {}
            () = client.disconnected() => break,
        }
    }
    let width = terminal_size().0;
    let socket = format!("({})", args.attach.display());
    let words = ["orchestrator ended; closing the grid", &socket].map(|l| clean(l, width)).join("\r\n");
    emit_frame(&format!("\x1b[H\x1b[2J{words}\r\n"))?;
    tokio::time::sleep(LAST_WORD).await;
    Ok(())
}

/// The agents worth a pane; ids that are not `name/N` are skipped, so
/// nothing else ever reaches tmux.
fn agents_now(agents: &Value) -> Vec<AgentNow> {
    let mut list = Vec::new();
    for agent in agents.as_array().into_iter().flatten() {
        let (Some(id), Some(role)) = (agent["id"].as_str(), agent["role"].as_str()) else { continue };
        let valid = id.split_once('/').is_some_and(|(r, n)| {
            r == role && is_valid_name(r) && !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())
        });
        if !valid {
            tracing::warn!(id, "not showing an agent whose id is not role/N");
            continue;
        }
        list.push(AgentNow { id: id.to_owned(), role: role.to_owned(), pid: agent["pid"].as_u64().unwrap_or(0) });
    }
    list
}

/// The session's agent panes (the status and orchestrator panes have no agent).
fn list_panes(tmux: &Tmux, session: &str) -> anyhow::Result<Vec<PaneNow>> {
    let out = tmux.run(&["list-panes", "-s", "-t", session, "-F", PANES_FORMAT])?;
    Ok(out
        .lines()
        .filter_map(|line| {
            let mut parts = line.splitn(5, ' ');
            let (pane, window, _pid) = (parts.next()?, parts.next()?, parts.next()?);
            let agent = parts.next().filter(|a| !a.is_empty())?;
            let title = parts.next().unwrap_or("");
            Some(PaneNow { pane: pane.into(), window: window.into(), agent: agent.into(), title: title.into() })
        })
        .collect())
}

/// The argv an agent pane runs: this executable in `grid-pane` mode.
struct PaneCommand {
    exe: String,
    socket: String,
}

impl PaneCommand {
    fn new(socket: &Path) -> anyhow::Result<PaneCommand> {
        let exe = std::env::current_exe().context("cannot find skep's own executable")?;
        let exe = exe.to_str().context("skep's path is not UTF-8")?.to_owned();
        let socket = socket.to_str().context("the socket path is not UTF-8")?.to_owned();
        Ok(PaneCommand { exe, socket })
    }

    fn argv<'a>(&'a self, agent: &'a str, replaces: Option<&'a str>) -> Vec<&'a str> {
        let mut argv = vec![self.exe.as_str(), "grid-pane", "--attach", &self.socket, "--agent", agent];
        if let Some(old) = replaces {
            argv.extend(["--replaces", old]);
        }
        argv
    }
}

fn apply(tmux: &Tmux, session: &str, command: &PaneCommand, action: &Action) -> anyhow::Result<()> {
    match action {
        Action::Split { window, agent } => {
            let split = |tmux: &Tmux| {
                let mut args = vec!["split-window", "-d", "-t", window, "-P", "-F", "#{pane_id}"];
                args.extend(command.argv(agent, None));
                tmux.run(&args)
            };
            // A window too small to split is tiled first, which frees room.
            let pane = split(tmux).or_else(|_| {
                tmux.run(&["select-layout", "-t", window, "tiled"])?;
                split(tmux)
            })?;
            tmux.run(&["set-option", "-p", "-t", pane.trim(), "@skep_agent", agent])?;
        }
        Action::NewWindow { agents } => {
            let Some((first, rest)) = agents.split_first() else { return Ok(()) };
            let target = format!("{session}:");
            let mut args =
                vec!["new-window", "-d", "-t", &target, "-n", "agents", "-P", "-F", "#{window_id} #{pane_id}"];
            args.extend(command.argv(first, None));
            let out = tmux.run(&args)?;
            let (window, pane) = out.trim().split_once(' ').context("tmux new-window printed no ids")?;
            tmux.run(&["set-option", "-p", "-t", pane, "@skep_agent", first])?;
            for agent in rest {
                apply(tmux, session, command, &Action::Split { window: window.to_owned(), agent: agent.clone() })?;
            }
            tmux.run(&["select-layout", "-t", window, "tiled"])?;
        }
        Action::Respawn { pane, agent, replaces } => {
            let mut args = vec!["respawn-pane", "-k", "-t", pane];
            args.extend(command.argv(agent, Some(replaces)));
            tmux.run(&args)?;
            tmux.run(&["set-option", "-p", "-t", pane, "@skep_agent", agent])?;
        }
        Action::Kill { pane } => drop(tmux.run(&["kill-pane", "-t", pane])?),
        Action::Title { pane, title } => {
            // `select-pane -T` expands formats: only names and digits get there.
            anyhow::ensure!(is_safe_title(title), "refusing the pane title {title:?}");
            tmux.run(&["select-pane", "-t", pane, "-T", title])?;
        }
        Action::Tile { window } => drop(tmux.run(&["select-layout", "-t", window, "tiled"])?),
    }
    Ok(())
}

/// Where a grid's tmux server listens, for an orchestrator's socket.
pub fn grid_names(dir: &Path, observe_socket: &Path) -> (String, PathBuf) {
    let stem = observe_socket.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    let clean: String =
        stem.chars().map(|c| if c.is_ascii_alphanumeric() || "._-".contains(c) { c } else { '_' }).take(48).collect();
    let session = format!("skep-{clean}");
    let socket = dir.join(format!("{session}.tmux"));
    (session, socket)
}
