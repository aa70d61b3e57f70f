//! Reconciling the grid's panes with the orchestrator's agents: plain code
//! that compares what tmux shows with what `swarm/agents` says and plans the
//! tmux commands that close the gap. Running a plan twice changes nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

/// Agent panes per window before further agents go to another window.
pub const PER_WINDOW: usize = 16;
/// How long a pane whose agent is gone, with no replacement, stays to say why.
pub const ORPHAN_GRACE: Duration = Duration::from_secs(10);

/// An agent as `swarm/agents` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentNow {
    pub id: String,
    pub role: String,
    pub pid: u64,
}

/// An agent pane as tmux lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaneNow {
    pub pane: String,
    pub window: String,
    pub agent: String,
    pub title: String,
}

/// One tmux change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// A new pane for `agent` in `window`.
    Split { window: String, agent: String },
    /// A new window for these agents.
    NewWindow { agents: Vec<String> },
    /// The pane of a gone agent now shows its replacement.
    Respawn { pane: String, agent: String, replaces: String },
    /// The pane of a gone agent, past its grace.
    Kill { pane: String },
    /// A pane's title, `role/N pid`.
    Title { pane: String, title: String },
    /// Re-tile a window whose panes changed.
    Tile { window: String },
}

/// Remembers since when each orphaned pane has been orphaned.
#[derive(Debug, Default)]
pub struct Reconciler {
    orphaned: BTreeMap<String, Instant>,
}

/// The title a pane shows for `agent`.
pub fn title(agent: &AgentNow) -> String {
    match agent.pid {
        0 => format!("{} starting", agent.id),
        pid => format!("{} {pid}", agent.id),
    }
}

impl Reconciler {
    /// The actions that make `panes` show `agents`. `status_window` holds the
    /// status pane and is always kept.
    pub fn plan(&mut self, now: Instant, status_window: &str, agents: &[AgentNow], panes: &[PaneNow]) -> Vec<Action> {
        let mut actions = Vec::new();
        let shown: BTreeSet<&str> = panes.iter().map(|p| p.agent.as_str()).collect();
        let mut unplaced: Vec<&AgentNow> = agents.iter().filter(|a| !shown.contains(a.id.as_str())).collect();
        let live: BTreeSet<&str> = agents.iter().map(|a| a.id.as_str()).collect();
        let mut per_window: BTreeMap<&str, usize> = BTreeMap::from([(status_window, 0)]);
        let mut touched = BTreeSet::new();
        self.orphaned.retain(|pane, _| panes.iter().any(|p| &p.pane == pane));
        for pane in panes {
            *per_window.entry(pane.window.as_str()).or_default() += 1;
            if let Some(agent) = agents.iter().find(|a| a.id == pane.agent) {
                self.orphaned.remove(&pane.pane);
                let want = title(agent);
                if pane.title != want {
                    actions.push(Action::Title { pane: pane.pane.clone(), title: want });
                }
                continue;
            }
            debug_assert!(!live.contains(pane.agent.as_str()));
            let role = pane.agent.rsplit_once('/').map_or("", |(role, _)| role);
            if let Some(i) = unplaced.iter().position(|a| a.role == role) {
                let agent = unplaced.remove(i);
                self.orphaned.remove(&pane.pane);
                let (pane_id, replaces) = (pane.pane.clone(), pane.agent.clone());
                actions.push(Action::Respawn { pane: pane_id.clone(), agent: agent.id.clone(), replaces });
                actions.push(Action::Title { pane: pane_id, title: title(agent) });
                continue;
            }
            let since = *self.orphaned.entry(pane.pane.clone()).or_insert(now);
            if now.duration_since(since) >= ORPHAN_GRACE {
                self.orphaned.remove(&pane.pane);
                actions.push(Action::Kill { pane: pane.pane.clone() });
                *per_window.entry(pane.window.as_str()).or_default() -= 1;
                touched.insert(pane.window.clone());
            }
        }
        let mut overflow = Vec::new();
        for agent in unplaced {
            let free = per_window.iter_mut().find(|(_, n)| **n < PER_WINDOW);
            match free {
                Some((window, n)) => {
                    *n += 1;
                    touched.insert((*window).to_owned());
                    actions.push(Action::Split { window: (*window).to_owned(), agent: agent.id.clone() });
                }
                None => overflow.push(agent.id.clone()),
            }
        }
        for chunk in overflow.chunks(PER_WINDOW) {
            actions.push(Action::NewWindow { agents: chunk.to_vec() });
        }
        actions.extend(touched.into_iter().map(|window| Action::Tile { window }));
        actions
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agent(id: &str, pid: u64) -> AgentNow {
        AgentNow { id: id.into(), role: id.split('/').next().unwrap().into(), pid }
    }

    fn pane(pane: &str, window: &str, a: &AgentNow) -> PaneNow {
        PaneNow { pane: pane.into(), window: window.into(), agent: a.id.clone(), title: title(a) }
    }

    #[test]
    fn new_agents_get_panes_and_a_settled_grid_needs_nothing() {
        let agents = [agent("a/1", 10), agent("b/1", 0)];
        let mut r = Reconciler::default();
        let plan = r.plan(Instant::now(), "@0", &agents, &[]);
        assert_eq!(
            plan,
            [
                Action::Split { window: "@0".into(), agent: "a/1".into() },
                Action::Split { window: "@0".into(), agent: "b/1".into() },
                Action::Tile { window: "@0".into() },
            ]
        );
        let panes = [pane("%1", "@0", &agents[0]), pane("%2", "@0", &agents[1])];
        assert_eq!(r.plan(Instant::now(), "@0", &agents, &panes), []);
    }

    #[test]
    fn a_pid_change_retitles() {
        let before = agent("a/1", 0);
        let panes = [pane("%1", "@0", &before)];
        let plan = Reconciler::default().plan(Instant::now(), "@0", &[agent("a/1", 42)], &panes);
        assert_eq!(plan, [Action::Title { pane: "%1".into(), title: "a/1 42".into() }]);
    }

    #[test]
    fn a_replacement_takes_over_the_pane_of_the_agent_it_replaces() {
        let panes = [pane("%1", "@0", &agent("a/1", 10))];
        let plan = Reconciler::default().plan(Instant::now(), "@0", &[agent("a/2", 11)], &panes);
        assert_eq!(
            plan,
            [
                Action::Respawn { pane: "%1".into(), agent: "a/2".into(), replaces: "a/1".into() },
                Action::Title { pane: "%1".into(), title: "a/2 11".into() },
            ]
        );
    }

    #[test]
    fn an_orphan_stays_for_its_grace_then_goes() {
        let panes = [pane("%1", "@0", &agent("a/1", 10))];
        let mut r = Reconciler::default();
        let t0 = Instant::now();
        assert_eq!(r.plan(t0, "@0", &[], &panes), []);
        assert_eq!(r.plan(t0 + ORPHAN_GRACE / 2, "@0", &[], &panes), []);
        let plan = r.plan(t0 + ORPHAN_GRACE, "@0", &[], &panes);
        assert_eq!(plan, [Action::Kill { pane: "%1".into() }, Action::Tile { window: "@0".into() }]);
    }

    #[test]
    fn past_sixteen_agents_go_to_further_windows() {
        let agents: Vec<AgentNow> = (1..=40).map(|i| agent(&format!("r/{i}"), i)).collect();
        let plan = Reconciler::default().plan(Instant::now(), "@0", &agents, &[]);
        let splits = plan.iter().filter(|a| matches!(a, Action::Split { .. })).count();
        let windows: Vec<usize> = plan
            .iter()
            .filter_map(|a| match a {
                Action::NewWindow { agents } => Some(agents.len()),
                _ => None,
            })
            .collect();
        assert_eq!((splits, windows), (PER_WINDOW, vec![16, 8]));
    }
}
