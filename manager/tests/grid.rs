//! `skep grid` against real tmux: 2 roles x 3 demo agents, six titled panes
//! and the status table, a call shown in the pane of the agent that took it,
//! a killed agent's pane reporting the restart, and nothing left afterwards.

mod support;

use std::path::PathBuf;
use std::process::Command;

use serde_json::{Value, json};
use support::{Scratch, Sidecar, agent_pids, dead, exists, poll};

/// A grid's private tmux server, from the command `--detach` prints.
struct Grid {
    socket: PathBuf,
    session: String,
}

impl Grid {
    fn from_detach(printed: &str) -> Grid {
        let words: Vec<&str> = printed.split_whitespace().collect();
        assert!(matches!(words.as_slice(), ["tmux", "-S", _, "attach", "-t", _]), "{printed}");
        Grid { socket: PathBuf::from(words[2]), session: words[5].to_owned() }
    }

    fn tmux(&self, args: &[&str]) -> Option<String> {
        let out = Command::new("tmux").arg("-S").arg(&self.socket).args(args).output().expect("tmux runs");
        out.status.success().then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn alive(&self) -> bool {
        self.tmux(&["list-sessions"]).is_some()
    }

    /// `(pane id, title)` of every agent pane.
    fn agent_panes(&self) -> Vec<(String, String)> {
        let out =
            self.tmux(&["list-panes", "-s", "-t", &self.session, "-F", "#{pane_id}|#{@skep_agent}|#{pane_title}"]);
        out.unwrap_or_default()
            .lines()
            .filter_map(|l| {
                let mut parts = l.splitn(3, '|');
                let (pane, agent, title) = (parts.next()?, parts.next()?, parts.next()?);
                (!agent.is_empty()).then(|| (pane.to_owned(), title.to_owned()))
            })
            .collect()
    }

    fn capture(&self, pane: &str) -> String {
        self.tmux(&["capture-pane", "-p", "-t", pane]).unwrap_or_default()
    }

    fn status(&self) -> String {
        self.capture(&format!("{}:grid.0", self.session))
    }

    fn pids(&self) -> Vec<u32> {
        let out = self.tmux(&["list-panes", "-a", "-F", "#{pane_pid}"]).unwrap_or_default();
        out.lines().filter_map(|l| l.trim().parse().ok()).collect()
    }
}

/// Six panes titled `role/N pid`, three per role, each pane showing its own agent.
fn six_titled_panes(grid: &Grid) -> bool {
    let panes = grid.agent_panes();
    let titled = |role: &str| {
        panes
            .iter()
            .filter(|(_, t)| {
                let mut words = t.split(' ');
                let (id, pid) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
                id.starts_with(&format!("{role}/")) && pid.parse::<u32>().is_ok_and(|p| p > 0)
            })
            .count()
    };
    panes.len() == 6
        && titled("alpha") == 3
        && titled("beta") == 3
        && panes.iter().all(|(pane, title)| grid.capture(pane).starts_with(title.split(' ').next().unwrap_or("?")))
}

fn status_shows_both_roles(grid: &Grid) -> bool {
    let status = grid.status();
    let up = |role: &str| status.lines().any(|l| l.split_whitespace().take(3).eq([role, "3", "up"]));
    status.contains("ROLE/AGENT") && up("alpha") && up("beta")
}

#[test]
fn a_grid_on_a_sidecar_shows_calls_and_restarts_and_stop_leaves_nothing() {
    let scratch = Scratch::new("grid-attach");
    let mut sidecar = Sidecar::start(&scratch, &[]);
    poll("the sidecar is listed", || scratch.ok(&["ls", "--json"]).contains("\"pid\""));
    let grid = Grid::from_detach(&scratch.ok(&["grid", "--detach"]));
    poll("six titled agent panes", || six_titled_panes(&grid));
    poll("the status table", || status_shows_both_roles(&grid));

    // A call appears in the pane of the agent that took it.
    let id = sidecar.send("swarm/call", json!({"role": "beta", "method": "sleep", "params": {"ms": 300}}));
    assert_eq!(sidecar.answer()["id"], id);
    let stats: Value = serde_json::from_str(&scratch.ok(&["stats", "--json"])).unwrap();
    let took = stats["agents"].as_array().unwrap().iter().find(|a| a["calls"] == 1).expect("one agent took it");
    let took = took["id"].as_str().unwrap().to_owned();
    let pane_of = |agent: &str| {
        let panes = grid.agent_panes();
        panes.into_iter().find(|(_, t)| t.split(' ').next() == Some(agent)).map(|(p, _)| p).expect("its pane")
    };
    let pane = pane_of(&took);
    let finished = |l: &str| l.trim_start().starts_with("sleep ") && l.ends_with(" ok");
    poll("the call in its agent's pane", || grid.capture(&pane).lines().any(finished));
    for (other, _) in grid.agent_panes().into_iter().filter(|(p, _)| *p != pane) {
        assert!(!grid.capture(&other).contains("sleep"), "the call shows in {other} too");
    }

    // Killing an agent: its pane reports the crash and then its replacement.
    let (victim_pane, title) = grid.agent_panes().into_iter().find(|(p, _)| *p != pane).unwrap();
    let pid: i32 = title.split(' ').nth(1).unwrap().parse().unwrap();
    // SAFETY: plain kill(2) on a pid the grid shows for an agent of this test.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0);
    poll("the pane reports the restart", || grid.capture(&victim_pane).contains("restart"));
    poll("the pane shows the replacement", || {
        let now = grid.agent_panes().into_iter().find(|(p, _)| *p == victim_pane).map(|(_, t)| t);
        now.is_some_and(|t| t != title && !t.ends_with(" starting"))
    });

    let pane_pids = grid.pids();
    assert!(!pane_pids.is_empty());
    scratch.ok(&["grid", "--stop"]);
    assert!(!grid.alive(), "tmux server still up");
    assert!(!exists(&grid.socket), "tmux socket left behind");
    poll("pane processes end", || pane_pids.iter().all(|&p| dead(p)));
    // The grid only watched: the sidecar is untouched, then ends on its own.
    assert_eq!(scratch.ok(&["ls", "--json"]).matches("\"pid\"").count(), 1);
    let stats: Value = serde_json::from_str(&scratch.ok(&["stats", "--json"])).unwrap();
    let agents = agent_pids(&stats);
    sidecar.finish();
    assert!(agents.iter().all(|&p| dead(p)));
    assert_eq!(scratch.leftovers(), Vec::<String>::new());
}

#[test]
fn grid_with_config_starts_its_orchestrator_and_stop_ends_everything() {
    let scratch = Scratch::new("grid-config");
    let config = scratch.config.to_str().unwrap();
    let grid = Grid::from_detach(&scratch.ok(&["grid", "--config", config, "--detach"]));
    poll("six titled agent panes", || six_titled_panes(&grid));
    poll("the status table", || status_shows_both_roles(&grid));
    let listed: Value = serde_json::from_str(&scratch.ok(&["ls", "--json"])).unwrap();
    let orchestrator = listed[0]["info"]["pid"].as_u64().expect("the grid's orchestrator is listed") as u32;
    let stats: Value = serde_json::from_str(&scratch.ok(&["stats", "--json"])).unwrap();
    let mut pids = agent_pids(&stats);
    pids.push(orchestrator);
    pids.extend(grid.pids());
    // A second grid on the same orchestrator is refused, naming the first.
    let again = scratch.run(&["grid", "--detach"]);
    assert!(String::from_utf8_lossy(&again.stderr).contains("already running"));

    scratch.ok(&["grid", "--stop"]);
    assert!(!grid.alive());
    poll("orchestrator, agents and panes end", || pids.iter().all(|&p| dead(p)));
    assert_eq!(scratch.leftovers(), Vec::<String>::new(), "sockets left behind");
    let out = scratch.run(&["grid", "--stop"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("no grid is running"));
}

#[test]
fn the_grid_says_when_its_orchestrator_ends_and_closes() {
    let scratch = Scratch::new("grid-ends");
    let socket = scratch.observe_dir().join("app.sock");
    let mut sidecar = Sidecar::start(&scratch, &[socket.to_str().unwrap()]);
    poll("the socket is served", || exists(&socket));
    let grid = Grid::from_detach(&scratch.ok(&["grid", "--attach", socket.to_str().unwrap(), "--detach"]));
    poll("six titled agent panes", || six_titled_panes(&grid));
    let pids = grid.pids();
    sidecar.finish();
    let mut said = false;
    poll("the grid closes", || {
        said |= grid.status().contains("orchestrator ended");
        !grid.alive()
    });
    assert!(said, "the status pane never said the orchestrator ended");
    poll("pane processes end", || pids.iter().all(|&p| dead(p)));
    assert_eq!(scratch.leftovers(), Vec::<String>::new());
}

#[test]
fn a_role_named_like_a_tmux_command_is_refused_before_any_grid() {
    let scratch = Scratch::new("grid-badname");
    std::fs::write(&scratch.config, "[roles.\"#(touch x)\"]\ncommand = [\"true\"]\n").unwrap();
    let out = scratch.run(&["grid", "--config", scratch.config.to_str().unwrap(), "--detach"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("skep.toml:1") && stderr.contains("#(touch x)"), "{stderr}");
    assert!(scratch.leftovers().iter().all(|f| !f.ends_with(".tmux")), "no tmux server was started");
}
