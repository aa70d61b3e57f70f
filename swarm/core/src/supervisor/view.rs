//! How a role's pool looks from outside: its agents as `swarm/agents` shows
//! them, and its stats, read from the supervisor's own state.

use serde::Serialize;
use tokio::time::Instant;

use super::{State, Supervisor, agent_name};
use crate::role_stats::{AgentCounts, RoleStats};

/// One agent as `swarm/agents` shows it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentInfo {
    /// `role/N`.
    pub id: String,
    pub role: String,
    /// 0 while starting.
    pub pid: u32,
    /// starting, idle, busy, recycling or stopping.
    pub state: &'static str,
    pub calls: u64,
    pub in_flight: usize,
    pub uptime_ms: u64,
    /// Resident memory of the agent's process group at the last sample; `None` before the first.
    pub rss_bytes: Option<u64>,
    /// CPU use of its process group between the last two samples, in percent of one CPU.
    pub cpu_percent: Option<f64>,
    /// CPU time its process group has used (members and their reaped children), at the last sample.
    pub cpu_ms: Option<u64>,
    /// Processes in its group at the last sample (the agent and what it started).
    pub processes: Option<u32>,
    /// Why it is being replaced, once it is: "RSS 1.2 GiB over max_rss 1.0 GiB".
    pub recycled: Option<String>,
    /// The last lines of the agent's stderr (up to [`AGENT_STDERR_TAIL`] bytes), for views such as the grid.
    pub stderr_tail: String,
}

/// How much of each agent's stderr `swarm/agents` shows.
pub const AGENT_STDERR_TAIL: usize = 512;

impl Supervisor {
    pub(super) fn snapshot(&self) -> (Vec<AgentInfo>, RoleStats) {
        let mut counts = AgentCounts::default();
        let agents = self
            .slots
            .iter()
            .map(|(id, slot)| {
                let state = match slot.state {
                    State::Starting => "starting",
                    State::Draining => "recycling",
                    State::Stopping => "stopping",
                    State::Ready if slot.in_flight() > 0 => "busy",
                    State::Ready => "idle",
                };
                *match state {
                    "starting" => &mut counts.starting,
                    "stopping" => &mut counts.stopping,
                    "recycling" => &mut counts.recycling,
                    "busy" => &mut counts.busy,
                    _ => &mut counts.idle,
                } += 1;
                AgentInfo {
                    id: agent_name(&self.role.name, *id),
                    role: self.role.name.clone(),
                    pid: slot.agent.as_ref().map_or(0, |a| a.pid),
                    state,
                    calls: slot.calls,
                    in_flight: slot.in_flight(),
                    uptime_ms: slot.born.elapsed().as_millis() as u64,
                    rss_bytes: slot.usage.map(|u| u.rss_bytes),
                    cpu_percent: slot.cpu.percent(),
                    cpu_ms: slot.usage.map(|u| u.cpu_ticks.saturating_mul(1000) / self.sampler.hz.max(1)),
                    processes: slot.usage.map(|u| u.processes),
                    recycled: slot.recycled.as_ref().map(|(_, reason)| reason.clone()),
                    stderr_tail: slot.agent.as_ref().map_or_else(String::new, |a| a.stderr.tail(AGENT_STDERR_TAIL)),
                }
            })
            .collect::<Vec<AgentInfo>>();
        let queued = self.waiters.iter().filter(|w| !w.reply.is_closed()).count();
        let mut stats = self.recorder.snapshot(
            &self.role.name,
            counts,
            queued,
            self.restarts,
            self.failed.is_some(),
            self.breaker.snapshot(Instant::now().into_std()),
        );
        stats.rss_bytes = agents.iter().filter_map(|a| a.rss_bytes).sum();
        stats.cpu_percent = agents.iter().filter_map(|a| a.cpu_percent).sum();
        (agents, stats)
    }
}
