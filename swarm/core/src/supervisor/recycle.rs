//! Recycling: an agent past one of its bounds (`max_calls`, `max_lifetime`,
//! `max_rss`) takes no new calls, finishes the ones it has, and stops once
//! its replacement, started at once, is ready; so the pool does not shrink
//! while agents recycle. Also the sampling of each agent's process group
//! (RSS and CPU) that `max_rss` and the views read.

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::time::Instant;

use super::{State, Supervisor, agent_name};
use crate::config::RoleConfig;
use crate::events::Event;
use crate::limits::{self, Delegation, GroupUsage, RecycleCause};

/// How often every agent's process group is sampled, besides after each call
/// of a role with `max_rss`.
pub(crate) const USAGE_INTERVAL: Duration = Duration::from_secs(1);

/// The state of the role's sampling: at most one /proc scan at a time.
#[derive(Debug)]
pub(super) struct Sampler {
    running: bool,
    /// Asked for while one was running: run another when it lands.
    again: bool,
    next: Option<Instant>,
    /// Clock ticks per second, to turn CPU ticks into time.
    pub hz: u64,
}

impl Default for Sampler {
    fn default() -> Self {
        Sampler { running: false, again: false, next: None, hz: limits::ticks_per_second() }
    }
}

impl Supervisor {
    /// Takes a ready agent out of rotation for `cause` and starts its replacement first.
    pub(super) fn recycle(&mut self, id: u64, cause: RecycleCause) {
        let Some(slot) = self.slots.get_mut(&id) else { return };
        if slot.state != State::Ready {
            return;
        }
        slot.state = State::Draining;
        self.fast.withdraw(id);
        self.note_recycle(id, cause);
        // Within `max_agents`: the replacement first. At the bound, the agent
        // leaves first and the pool refills behind it.
        let room = self.slots.len() < self.role.max_agents;
        if room && self.shutdown.is_none() && self.failed.is_none() {
            let replacement = self.spawn_agent();
            if let Some(slot) = self.slots.get_mut(&id) {
                slot.replacement = Some(replacement);
            }
        }
        self.finish_draining(id);
    }

    /// Logs, counts and announces why an agent is being replaced (once per agent).
    pub(super) fn note_recycle(&mut self, id: u64, cause: RecycleCause) {
        let Some(slot) = self.slots.get(&id) else { return };
        if slot.recycled.is_some() {
            return;
        }
        // The group holds at least its leader, whichever was read last.
        let rss = slot.usage.map_or(0, |u| u.rss_bytes).max(slot.leader_rss);
        let reason = limits::describe(cause, &self.role, slot.calls, slot.born.elapsed(), rss);
        let pid = slot.agent.as_ref().map_or(0, |a| a.pid);
        let agent = agent_name(&self.role.name, id);
        match cause {
            // A leak is worth an operator's attention at the default level; a
            // scheduled recycle is not (crashes and noise are warned about where seen).
            RecycleCause::Memory => tracing::warn!(role = %self.role.name, %agent, pid, ?cause, "recycled: {reason}"),
            _ => tracing::info!(role = %self.role.name, %agent, pid, ?cause, "recycled: {reason}"),
        }
        self.recorder.recycled(cause);
        self.emit(|| Event::AgentRecycled {
            role: self.role.name.clone(),
            agent: agent.clone(),
            pid,
            cause,
            reason: reason.clone(),
        });
        if let Some(slot) = self.slots.get_mut(&id) {
            slot.recycled = Some((cause, reason));
        }
    }

    /// Stops a draining agent once it is idle and its replacement is ready or gone.
    pub(super) fn finish_draining(&mut self, id: u64) {
        let Some(slot) = self.slots.get(&id) else { return };
        if slot.state != State::Draining || slot.in_flight() > 0 {
            return;
        }
        let waiting = slot.replacement.and_then(|r| self.slots.get(&r)).is_some_and(|r| r.state == State::Starting);
        if !waiting {
            self.stop(id);
        }
    }

    pub(super) fn finish_all_draining(&mut self) {
        let draining: Vec<u64> =
            self.slots.iter().filter(|(_, s)| s.state == State::Draining).map(|(id, _)| *id).collect();
        for id in draining {
            self.finish_draining(id);
        }
    }

    /// Recycles ready agents past their `max_lifetime` (calls are checked as they end).
    pub(super) fn retire_old(&mut self, now: Instant) {
        let old: Vec<u64> = (self.slots.iter())
            .filter(|(_, s)| s.state == State::Ready && s.retirement.due(s.calls, now) == Some(RecycleCause::Lifetime))
            .map(|(id, _)| *id)
            .collect();
        for id in old {
            self.recycle(id, RecycleCause::Lifetime);
        }
    }

    /// Right after a call: the agent's own resident memory, read at once
    /// (one small /proc file), so an agent that alone went past `max_rss`
    /// takes no next call. Its children are counted by the group sample that
    /// follows, which scans /proc and so runs off this task.
    pub(super) fn check_after_call(&mut self, id: u64) {
        let Some(max) = self.role.max_rss else { return };
        let Some(slot) = self.slots.get_mut(&id) else { return };
        let Some(pid) = slot.agent.as_ref().map(|a| a.pid) else { return };
        if slot.state == State::Ready
            && let Some(rss) = limits::leader_rss(pid)
        {
            // Kept apart from the group sample, whose other figures (members,
            // CPU) this read does not know: views show the group's, the reason the larger.
            slot.leader_rss = rss;
            if rss > max {
                self.recycle(id, RecycleCause::Memory);
            }
        }
        self.request_sample();
    }

    /// Samples on the housekeeping tick, every [`USAGE_INTERVAL`].
    pub(super) fn sampler_tick(&mut self, now: Instant) {
        if self.sampler.next.is_none_or(|next| now >= next) {
            self.sampler.next = Some(now + USAGE_INTERVAL);
            self.request_sample();
        }
    }

    /// Scans /proc for the agents' groups on a blocking thread; the answer
    /// comes back as `Msg::Usage`.
    pub(super) fn request_sample(&mut self) {
        if self.sampler.running {
            self.sampler.again = true;
            return;
        }
        let groups: Vec<u32> = self.slots.values().filter_map(|s| s.agent.as_ref()).map(|a| a.pid).collect();
        if groups.is_empty() {
            return;
        }
        self.sampler.running = true;
        let tx = self.tx.clone();
        tokio::task::spawn_blocking(move || {
            let groups = limits::sample_groups(&groups);
            let _ = tx.send(super::Msg::Usage { at: Instant::now(), groups });
        });
    }

    /// Books a sample, and recycles ready agents past `max_rss`.
    pub(super) fn usage(&mut self, at: Instant, groups: BTreeMap<u32, GroupUsage>) {
        self.sampler.running = false;
        let hz = self.sampler.hz;
        for slot in self.slots.values_mut() {
            let Some(usage) = slot.agent.as_ref().and_then(|a| groups.get(&a.pid)) else { continue };
            slot.usage = Some(*usage);
            slot.cpu.record(usage.cpu_ticks, at, hz);
        }
        if let Some(max) = self.role.max_rss {
            let over: Vec<u64> = (self.slots.iter())
                .filter(|(_, s)| s.state == State::Ready && s.usage.is_some_and(|u| u.rss_bytes > max))
                .map(|(id, _)| *id)
                .collect();
            for id in over {
                self.recycle(id, RecycleCause::Memory);
            }
        }
        if std::mem::take(&mut self.sampler.again) {
            self.request_sample();
        }
        self.dispatch();
    }
}

/// Says once, when a role's pool starts, that its `memory_max` or `cpu_max`
/// will not be enforced, and why.
pub(super) fn warn_if_cgroups_unavailable(role: &RoleConfig) {
    let mut wanted = Vec::new();
    if role.memory_max.is_some() {
        wanted.push("memory");
    }
    if role.cpu_max.is_some() {
        wanted.push("cpu");
    }
    if wanted.is_empty() {
        return;
    }
    let why = match limits::detect_cgroup_delegation(&wanted) {
        Delegation::Unavailable { reason } => reason,
        Delegation::Delegated { dir } => format!(
            "cgroup v2 is delegated here ({}), but this version of skep does not yet place agents in cgroups",
            dir.display()
        ),
    };
    tracing::warn!(
        role = %role.name,
        "memory_max and cpu_max are not enforced for role {}: {why}; max_rss and rlimits still apply",
        role.name
    );
}
