//! A run's meter: what each finished step used and cost. It knows the
//! agents' pids (for their `/proc` CPU counters), the roles' price lists and
//! what each step cost when it last ran (a cache hit's saving).

use std::collections::{BTreeMap, HashMap};

use skep_swarm::{Cost, Swarm};

use super::error::WorkflowError;
use super::history::History;
use super::profile::StepRecord;
use super::resources::{ProcCpu, Resources, proc_cpu};
use super::spec::{Action, Workflow};
use super::step::{Ended, reported_usage};

pub(super) struct Meter {
    /// Agent id → pid: those up at the start, then each that became ready.
    pids: HashMap<String, u32>,
    /// Roles whose agents take more than one call at a time.
    concurrent_roles: Vec<String>,
    /// Each step's agent's CPU counters when its call was handed over.
    cpu_at_start: Vec<Option<ProcCpu>>,
    /// Steps that shared their agent with another of the run's steps.
    shared_agent: Vec<bool>,
    prices: HashMap<String, Cost>,
    last_costs: HashMap<String, f64>,
}

impl Meter {
    pub(super) async fn new(swarm: &Swarm, workflow: &Workflow, history: &History) -> Result<Meter, WorkflowError> {
        let n = workflow.steps.len();
        let mut pids = HashMap::new();
        if workflow.steps.iter().any(|s| s.role().is_some()) {
            pids.extend(swarm.agents().await.into_iter().filter(|a| a.pid != 0).map(|a| (a.id, a.pid)));
        }
        Ok(Meter {
            pids,
            concurrent_roles: swarm.roles().into_iter().filter(|r| r.concurrency > 1).map(|r| r.name).collect(),
            cpu_at_start: vec![None; n],
            shared_agent: vec![false; n],
            prices: swarm.config().roles.into_iter().filter_map(|(name, role)| Some((name, role.cost?))).collect(),
            last_costs: history.last_costs(&workflow.name)?,
        })
    }

    /// An agent became ready.
    pub(super) fn agent_ready(&mut self, agent: String, pid: u32) {
        self.pids.insert(agent, pid);
    }

    /// Step `i`'s call went to its agent (already on its record): read the
    /// agent's counters, and note any other running step on the same agent.
    pub(super) fn call_started(&mut self, i: usize, running: &[usize], records: &[StepRecord]) {
        let pid = records[i].agent.as_ref().and_then(|a| self.pids.get(a)).copied();
        self.cpu_at_start[i] = pid.and_then(proc_cpu);
        for &j in running.iter().filter(|&&j| j != i && records[j].agent == records[i].agent) {
            // Each one's CPU figure includes the other's.
            self.shared_agent[j] = true;
            self.shared_agent[i] = true;
        }
    }

    /// Fills a finished step's resources, usage, cost or saving (its timing is already on the record).
    pub(super) fn settle(&self, i: usize, workflow: &Workflow, record: &mut StepRecord, ended: &Ended) {
        record.resources = ended.resources.clone().or_else(|| {
            let before = self.cpu_at_start[i]?;
            let pid = record.agent.as_ref().and_then(|a| self.pids.get(a))?;
            let concurrent = record.role.as_ref().is_some_and(|r| self.concurrent_roles.contains(r));
            Some(Resources::across(before, proc_cpu(*pid)?, self.shared_agent[i] || concurrent))
        });
        if let Ok(value) = &ended.result
            && !ended.cache_hit
        {
            record.usage = reported_usage(value);
        }
        let step = &workflow.steps[i];
        if ended.cache_hit {
            record.saved_cost = self.last_costs.get(&step.id).copied();
            return;
        }
        let price = match &step.action {
            Action::Call { role, .. } => self.prices.get(role),
            Action::Command { .. } => step.cost.as_ref(),
        };
        if let (Some(p), true) = (price, ended.attempts > 0) {
            // Billed: the call's own time (not the wait for a free agent), covering
            // every attempt, and each attempt's per-call price.
            let seconds = (record.duration_ms - record.wait_ms).max(0.0) / 1000.0;
            let usage: &BTreeMap<String, f64> = &record.usage;
            record.cost = Some(p.estimate(seconds, usage) + p.per_call * f64::from(ended.attempts - 1));
        }
    }
}
