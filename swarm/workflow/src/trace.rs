//! A run as Chrome trace-event JSON (opens in Perfetto or chrome://tracing):
//! one thread per lane (an agent, or the step itself), one complete event per step.

use serde_json::{Value, json};

use super::history::RunRecord;
use super::profile::StepRecord;

/// The lane a step is drawn in: the agent that answered it, else its own id.
pub(crate) fn lane_name(step: &StepRecord) -> String {
    match &step.agent {
        Some(agent) => agent.clone(),
        None => step.id.clone(),
    }
}

/// Lane names in first-use order and each step's lane index.
pub(crate) fn lanes(record: &RunRecord) -> (Vec<String>, Vec<usize>) {
    let mut names: Vec<String> = Vec::new();
    let mut order: Vec<usize> = (0..record.steps.len()).collect();
    let start = |s: &StepRecord| s.started_ms.unwrap_or(s.queued_ms);
    order.sort_by(|&a, &b| start(&record.steps[a]).total_cmp(&start(&record.steps[b])).then(a.cmp(&b)));
    let mut lane = vec![0; record.steps.len()];
    for i in order {
        let name = lane_name(&record.steps[i]);
        lane[i] = names.iter().position(|n| *n == name).unwrap_or_else(|| {
            names.push(name);
            names.len() - 1
        });
    }
    (names, lane)
}

/// The trace-event JSON of a run.
pub fn render_trace(record: &RunRecord) -> String {
    let (names, lane) = lanes(record);
    let us = |ms: f64| (ms * 1000.0).round() as u64;
    let mut events: Vec<Value> = vec![json!({
        "name": "process_name", "ph": "M", "pid": 1, "tid": 0,
        "args": { "name": format!("workflow {} (run {})", record.workflow, record.id) },
    })];
    for (tid, name) in names.iter().enumerate() {
        events.push(json!({ "name": "thread_name", "ph": "M", "pid": 1, "tid": tid + 1, "args": { "name": name } }));
    }
    for (i, step) in record.steps.iter().enumerate() {
        let args = json!({
            "outcome": step.outcome,
            "cacheHit": step.cache_hit,
            "waitForAgentMs": step.wait_ms,
            "queuedMs": step.queued_ms,
            "role": step.role,
            "agent": step.agent,
            "onCriticalPath": record.analysis.critical_path.contains(&step.id),
            "error": step.error,
            "why": step.why.as_ref().map(|w| w.describe()),
            "cpuMs": step.resources.as_ref().map(|r| r.cpu_ms()),
            "peakRssBytes": step.resources.as_ref().and_then(|r| r.peak_rss_bytes),
            "cost": step.cost,
        });
        let tid = lane[i] + 1;
        events.push(match step.started_ms {
            Some(start) => json!({
                "name": step.id, "cat": step.kind, "ph": "X", "pid": 1, "tid": tid,
                "ts": us(start), "dur": us(step.duration_ms), "args": args,
            }),
            None => json!({
                "name": format!("{} (skipped)", step.id), "cat": "skipped", "ph": "i", "s": "t",
                "pid": 1, "tid": tid, "ts": us(step.queued_ms), "args": args,
            }),
        });
    }
    serde_json::to_string_pretty(&json!({ "traceEvents": events, "displayTimeUnit": "ms" })).expect("JSON serializes")
}
