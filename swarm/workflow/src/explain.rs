//! `--explain`: what a run would do and why, without running anything. The
//! same key and the same decision as a real run (`step::decide`); a step
//! downstream of one that will run cannot know its key yet, and says so.

use std::path::PathBuf;
use std::time::SystemTime;

use serde::Serialize;
use serde_json::Value;

use super::spec::Workflow;
use super::step::{decide, hash_inputs, key_parts, resolve_action};
use super::step_cache::{StepCache, StepCacheLimits};
use super::why::{Change, Why};

/// One step's expected decision.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Explanation {
    /// The step.
    pub step: String,
    /// A hit (from which run), or a miss and why. A miss whose reason is
    /// `upstreamRuns` is not certain: the step is cached after all if that
    /// upstream's result comes out the same.
    pub why: Why,
}

impl Explanation {
    /// Whether the step will surely run (rather than come from the cache, or depend on an upstream's result).
    pub fn runs(&self) -> bool {
        match &self.why {
            Why::Hit { .. } => false,
            Why::Miss { because } => !because.iter().any(|c| matches!(c, Change::UpstreamRuns { .. })),
        }
    }
}

/// The decision each step would get, in run order. Reads the cache and
/// hashes inputs; writes nothing and starts nothing.
pub fn explain(
    workflow: &Workflow,
    state_dir: Option<PathBuf>,
    use_cache: bool,
    limits: StepCacheLimits,
) -> Vec<Explanation> {
    let state_dir = state_dir.unwrap_or_else(|| workflow.workdir.join(".skep"));
    let cache = StepCache::new(&state_dir, limits);
    let steps = &workflow.steps;
    let mut results: Vec<Option<Value>> = vec![None; steps.len()];
    let mut runs = vec![false; steps.len()];
    let mut out = Vec::with_capacity(steps.len());
    let now = SystemTime::now();
    for &i in &workflow.order {
        let step = &steps[i];
        let ancestors = workflow.graph.ancestors(i);
        let running_upstream = (0..steps.len()).find(|&d| ancestors[d] && runs[d]);
        let why = match running_upstream {
            // Without the cache, or without a key, the upstream's result does not matter.
            Some(d) if use_cache && step.cache => {
                Why::Miss { because: vec![Change::UpstreamRuns { step: steps[d].id.clone() }] }
            }
            _ => {
                let upstream: Vec<(&str, Value)> = (0..steps.len())
                    .filter(|&d| ancestors[d])
                    .filter_map(|d| Some((steps[d].id.as_str(), results[d].clone()?)))
                    .collect();
                let lookup = |id: &str| upstream.iter().find(|(u, _)| *u == id).map(|(_, v)| v.clone());
                let parts = match resolve_action(step, &lookup) {
                    Ok(resolved) if step.cache => hash_inputs(&workflow.workdir, &step.inputs)
                        .ok()
                        .map(|inputs| key_parts(step, &resolved, inputs, &upstream)),
                    _ => None,
                };
                let (why, hit) = decide(&cache, &workflow.name, step, parts.as_ref(), use_cache, now);
                results[i] = hit;
                why
            }
        };
        runs[i] = !why.is_hit();
        out.push(Explanation { step: step.id.clone(), why });
    }
    out
}
