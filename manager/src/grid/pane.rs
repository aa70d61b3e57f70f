//! `skep grid-pane`: the process in one agent pane. It subscribes to that
//! agent's events and redraws its own pane, at most 60 times a second.

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use tokio::time::{Instant, sleep_until};

use super::GridPaneArgs;
use super::view::{AgentView, FRAME};
use crate::observer::{agent_filter, fetch, subscribe};
use crate::output::emit_frame;
use crate::runtime::runtime;

/// How often the pane re-reads pid, state and stderr from `swarm/agents`.
const REFRESH: Duration = Duration::from_secs(1);
/// How long the pane stays after the orchestrator ended, if nobody ends it first.
const LINGER: Duration = Duration::from_secs(30);
/// How often a call in progress updates its elapsed time.
const TICK: Duration = Duration::from_millis(250);

/// Draws the pane until the orchestrator goes away (or tmux hangs up).
pub fn run(args: GridPaneArgs) -> anyhow::Result<ExitCode> {
    runtime()?.block_on(pane(&args.attach, &args.agent, args.replaces.as_deref()))?;
    Ok(ExitCode::SUCCESS)
}

async fn pane(socket: &Path, agent: &str, replaces: Option<&str>) -> anyhow::Result<()> {
    let mut view = AgentView::new(agent, replaces);
    let (client, mut events) = subscribe(socket, agent_filter(agent)).await?;
    let mut dirty = true;
    let mut next_frame = Instant::now();
    let mut refresh = tokio::time::interval(REFRESH);
    let mut tick = tokio::time::interval(TICK);
    loop {
        tokio::select! {
            event = events.recv() => match event {
                Some(event) => {
                    view.apply(&event, Instant::now().into_std());
                    dirty = true;
                }
                None => break,
            },
            _ = refresh.tick() => {
                if let Ok(agents) = fetch(&client, "swarm/agents").await {
                    view.refresh(&agents);
                    dirty = true;
                }
            }
            _ = tick.tick(), if view.ticking() => dirty = true,
            () = sleep_until(next_frame), if dirty => {
                draw(&view)?;
                dirty = false;
                next_frame = Instant::now() + FRAME;
            }
            () = client.disconnected() => break,
        }
    }
    view.end();
    draw(&view)?;
    // Stay until the status pane tears the grid down, so the last word stays
    // readable; bounded, so a pane never outlives a status pane that died.
    tokio::time::sleep(LINGER).await;
    Ok(())
}

fn draw(view: &AgentView) -> anyhow::Result<()> {
    let (width, height) = terminal_size();
    let lines = view.render(std::time::Instant::now(), width, height);
    // Home, each line cleared to its end, then the rest of the screen cleared.
    let mut frame = String::from("\x1b[H");
    for (i, line) in lines.iter().enumerate() {
        if i > 0 {
            frame.push_str("\r\n");
        }
        frame.push_str(line);
        frame.push_str("\x1b[K");
    }
    frame.push_str("\x1b[J");
    emit_frame(&frame)
}

/// The pane's size (80x24 when stdout is not a terminal).
pub fn terminal_size() -> (usize, usize) {
    let mut size = libc::winsize { ws_row: 0, ws_col: 0, ws_xpixel: 0, ws_ypixel: 0 };
    // SAFETY: TIOCGWINSZ writes one winsize into the valid, writable `size`.
    let ok = unsafe { libc::ioctl(libc::STDOUT_FILENO, libc::TIOCGWINSZ, &mut size) } == 0;
    match ok && size.ws_col > 0 && size.ws_row > 0 {
        true => (size.ws_col as usize, size.ws_row as usize),
        false => (80, 24),
    }
}
