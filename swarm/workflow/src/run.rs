//! The executor: runs a workflow's steps over the swarm as the scheduler
//! allows, consults and fills the cache, reports progress, and records the run.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::time::{Instant, SystemTime};

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::{broadcast, watch};

use super::error::WorkflowError;
use super::history::{History, HistoryLine, RunRecord, run_id};
use super::meter::Meter;
use super::profile::{Comparison, StepOutcome, StepRecord, analyze};
use super::regress::{RegressionRule, judge};
use super::schedule::{Scheduler, SkipCause};
use super::spec::{Action, Workflow};
use super::step::{Ended, run_step};
use super::step_cache::{StepCache, StepCacheLimits, unix_ms};
use skep_swarm::Event;
use skep_swarm::Swarm;

/// Choices for one run.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// At most this many steps at once.
    pub jobs: usize,
    /// Whether cached successes stand in for steps (results are stored either way).
    pub use_cache: bool,
    /// Where the cache and history live; default `<workdir>/.skep`.
    pub state_dir: Option<PathBuf>,
    /// The cache's TTL and size cap.
    pub cache_limits: StepCacheLimits,
    /// Judge regressions against this pinned baseline instead of the earlier runs.
    pub baseline: Option<String>,
    /// How regressions are judged (window, relative and absolute thresholds).
    pub regression: RegressionRule,
    /// Whether to write the run to history (tests and benchmarks may not want to).
    pub save: bool,
    /// Stops the run once it holds a cause ("SIGTERM"): running steps are
    /// failed and their process groups killed, the rest are skipped, and the
    /// record (still written) says `cancelled`.
    pub cancel: Option<watch::Receiver<Option<String>>>,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            jobs: 8,
            use_cache: true,
            state_dir: None,
            cache_limits: StepCacheLimits::default(),
            baseline: None,
            regression: RegressionRule::default(),
            save: true,
            cancel: None,
        }
    }
}

/// What happened, for progress displays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ProgressEvent {
    /// A step's needs are met; it waits for a slot.
    Queued,
    /// A step started.
    Started,
    /// A step finished (succeeded, failed, or came from the cache).
    Finished,
    /// A step was skipped because something it needs failed.
    Skipped,
    /// The run is over.
    Done,
}

/// One progress event, with the run's totals at that moment (read back by
/// clients of a daemon that runs the workflow for them).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Progress {
    /// What happened.
    pub event: ProgressEvent,
    /// To which step (none for `done`).
    pub step: Option<String>,
    /// `finished` only: whether it succeeded.
    pub ok: Option<bool>,
    /// `finished` only: whether it came from the cache.
    pub cache_hit: Option<bool>,
    /// `finished` only: why it ran or came from the cache (`hit from run R`, `miss: input src/a.rs changed (...)`).
    pub why: Option<String>,
    /// Why it failed or was skipped.
    pub message: Option<String>,
    /// Steps finished or skipped so far.
    pub done: usize,
    /// Steps in the workflow.
    pub total: usize,
    /// Steps running now.
    pub running: Vec<String>,
    /// Milliseconds since the run started.
    pub elapsed_ms: f64,
}

type StepFuture<'a> = Pin<Box<dyn Future<Output = (usize, Ended)> + Send + 'a>>;

/// Runs `workflow` over `swarm` and returns its record (also written to
/// history unless `options.save` is off). A failing step does not make this
/// an error: the record says `ok: false`.
pub async fn run_workflow(
    swarm: &Swarm,
    workflow: &Workflow,
    options: RunOptions,
    mut on_progress: impl FnMut(&Progress) + Send,
) -> Result<RunRecord, WorkflowError> {
    let state_dir = options.state_dir.clone().unwrap_or_else(|| workflow.state_dir());
    let history = History::new(&state_dir);
    let cache = StepCache::new(&state_dir, options.cache_limits);
    let known = history.predictions(&workflow.name)?;
    let baseline = options.baseline.as_deref().map(|name| history.baseline(name)).transpose()?;
    let steps = &workflow.steps;
    let n = steps.len();
    // Steps without history are predicted at the mean of those with it (equal weights on a first run).
    let fallback = if known.is_empty() { 1.0 } else { known.values().sum::<f64>() / known.len() as f64 };
    let predicted: Vec<f64> = steps.iter().map(|s| known.get(&s.id).copied().unwrap_or(fallback)).collect();
    let capacities: HashMap<String, usize> =
        swarm.roles().into_iter().map(|r| (r.name, (r.max_agents * r.concurrency).max(1))).collect();
    let mut role_names: Vec<&str> = Vec::new();
    let role_of: Vec<Option<usize>> = steps
        .iter()
        .map(|s| {
            s.role().map(|r| {
                role_names.iter().position(|&k| k == r).unwrap_or_else(|| {
                    role_names.push(r);
                    role_names.len() - 1
                })
            })
        })
        .collect();
    let capacity = role_names.iter().map(|r| capacities.get(*r).copied().unwrap_or(1)).collect();
    let mut scheduler = Scheduler::new(&workflow.graph, &workflow.order, &predicted, role_of, capacity, options.jobs);

    let mut events = steps.iter().any(|s| s.role().is_some()).then(|| swarm.subscribe());
    let mut meter = Meter::new(swarm, workflow, &history).await?;
    let t0 = Instant::now();
    let started_at = SystemTime::now();
    let started_at_ms = unix_ms(started_at);
    let id = run_id(started_at_ms);
    let ms = |at: Instant| at.saturating_duration_since(t0).as_secs_f64() * 1000.0;
    let mut records: Vec<StepRecord> = steps
        .iter()
        .enumerate()
        .map(|(i, s)| StepRecord {
            id: s.id.clone(),
            after: workflow.graph.deps(i).iter().map(|&d| steps[d].id.clone()).collect(),
            kind: if s.role().is_some() { "agent" } else { "command" }.into(),
            role: s.role().map(str::to_owned),
            agent: None,
            outcome: StepOutcome::Skipped,
            error: None,
            cache_hit: false,
            queued_ms: 0.0,
            started_ms: None,
            finished_ms: None,
            duration_ms: 0.0,
            wait_ms: 0.0,
            bytes_in: 0,
            bytes_out: 0,
            attempts: 0,
            predicted_ms: predicted[i],
            why: None,
            resources: None,
            usage: BTreeMap::new(),
            cost: None,
            saved_cost: None,
        })
        .collect();
    let mut results: Vec<Option<Value>> = vec![None; n];
    let mut started: Vec<Option<Instant>> = vec![None; n];
    let mut running: Vec<usize> = Vec::new();
    let mut done = 0;
    let mut in_flight: FuturesUnordered<StepFuture<'_>> = FuturesUnordered::new();
    let progress = |event, step: Option<usize>, done, running: &[usize]| Progress {
        event,
        step: step.map(|i| steps[i].id.clone()),
        ok: None,
        cache_hit: None,
        why: None,
        message: None,
        done,
        total: n,
        running: running.iter().map(|&i| steps[i].id.clone()).collect(),
        elapsed_ms: ms(Instant::now()),
    };
    for i in (0..n).filter(|&i| workflow.graph.deps(i).is_empty()) {
        on_progress(&progress(ProgressEvent::Queued, Some(i), 0, &[]));
    }
    let mut cancel = options.cancel.clone();
    let mut cancelled: Option<String> = None;

    loop {
        if let Some(cause) = cancel.as_ref().and_then(|c| c.borrow().clone()) {
            cancelled = Some(cause);
            break;
        }
        while let Some(i) = scheduler.start_next() {
            let now = Instant::now();
            started[i] = Some(now);
            records[i].started_ms = Some(ms(now));
            running.push(i);
            on_progress(&progress(ProgressEvent::Started, Some(i), done, &running));
            let upstream: Vec<(&str, Value)> = workflow
                .graph
                .ancestors(i)
                .iter()
                .enumerate()
                .filter(|(_, up)| **up)
                .filter_map(|(d, _)| Some((steps[d].id.as_str(), results[d].clone()?)))
                .collect();
            in_flight.push(Box::pin(run_step(swarm, workflow, i, upstream, cache.clone(), options.use_cache, &id)));
        }
        if scheduler.is_finished() {
            break;
        }
        let next_event = async {
            match events.as_mut() {
                Some(rx) => rx.recv().await,
                None => std::future::pending().await,
            }
        };
        let cancel_asked = async {
            match cancel.as_mut() {
                Some(rx) => {
                    if rx.wait_for(Option::is_some).await.is_err() {
                        // Nobody can cancel any more.
                        std::future::pending::<()>().await;
                    }
                }
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = cancel_asked => {}
            Some((i, ended)) = in_flight.next() => {
                // A call's `callStarted` may be waiting while its answer is already here
                // (select! picks at random): attribute it first, while the step still runs.
                while let Some(Ok(event)) = events.as_mut().map(broadcast::Receiver::try_recv) {
                    let now = ms(Instant::now());
                    take_event(event, workflow, &running, &started, &mut records, &mut meter, now);
                }
                running.retain(|&r| r != i);
                done += 1;
                let record = &mut records[i];
                let start = started[i].expect("a finished step was started");
                record.finished_ms = Some(ms(ended.at));
                record.duration_ms = ms(ended.at) - ms(start);
                record.cache_hit = ended.cache_hit;
                record.attempts = ended.attempts;
                record.bytes_in = ended.bytes_in;
                record.bytes_out = ended.bytes_out;
                meter.settle(i, workflow, record, &ended);
                record.why = ended.why.clone();
                let ok = ended.result.is_ok();
                let mut finished = progress(ProgressEvent::Finished, Some(i), done, &running);
                finished.ok = Some(ok);
                finished.cache_hit = Some(ended.cache_hit);
                finished.why = ended.why.as_ref().map(|w| w.describe());
                match ended.result {
                    Ok(value) => {
                        record.outcome = StepOutcome::Ok;
                        results[i] = Some(value);
                        on_progress(&finished);
                        scheduler.finish(i, true);
                        for &d in workflow.graph.dependents(i) {
                            if workflow.graph.deps(d).iter().all(|&u| results[u].is_some()) {
                                records[d].queued_ms = ms(ended.at);
                                on_progress(&progress(ProgressEvent::Queued, Some(d), done, &running));
                            }
                        }
                    }
                    Err(message) => {
                        record.outcome = StepOutcome::Failed;
                        record.error = Some(message.clone());
                        finished.message = Some(message);
                        on_progress(&finished);
                        for (d, cause) in scheduler.finish(i, false) {
                            done += 1;
                            let why = skip_message(workflow, d, cause);
                            records[d].error = Some(why.clone());
                            records[d].queued_ms = ms(ended.at);
                            let mut skipped = progress(ProgressEvent::Skipped, Some(d), done, &running);
                            skipped.message = Some(why);
                            on_progress(&skipped);
                        }
                    }
                }
            }
            event = next_event => {
                let now = ms(Instant::now());
                match event {
                    Ok(event) => take_event(event, workflow, &running, &started, &mut records, &mut meter, now),
                    Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => events = None,
                }
            }
        }
    }
    // Dropping the running steps kills their process groups.
    drop(in_flight);
    if let Some(cause) = &cancelled {
        let now = ms(Instant::now());
        for &i in &running {
            let record = &mut records[i];
            record.outcome = StepOutcome::Failed;
            record.error = Some(format!("cancelled: the run was stopped ({cause})"));
            record.finished_ms = Some(now);
            record.duration_ms = now - record.started_ms.unwrap_or(now);
        }
        for record in records.iter_mut().filter(|r| r.started_ms.is_none() && r.error.is_none()) {
            record.error = Some(format!("skipped: the run was stopped ({cause}) before it started"));
        }
        running.clear();
    }
    let wall_ms = ms(Instant::now());
    let mut done_event = progress(ProgressEvent::Done, None, done, &[]);
    done_event.ok = Some(records.iter().all(|r| r.outcome == StepOutcome::Ok));
    on_progress(&done_event);
    let ok = records.iter().all(|r| r.outcome == StepOutcome::Ok);
    let now_line =
        HistoryLine::from_steps(&id, &workflow.name, started_at_ms, wall_ms, ok, options.use_cache, &records);
    let comparison = match &baseline {
        Some(b) => Some(Comparison {
            with: format!("run {} (baseline {})", b.id, options.baseline.as_deref().unwrap_or_default()),
            regressions: judge(&now_line, &[HistoryLine::of(b)], options.regression),
        }),
        None => {
            let past: Vec<HistoryLine> = history.lines()?.into_iter().filter(|l| l.workflow == workflow.name).collect();
            (!past.is_empty()).then(|| Comparison {
                with: format!("the median of up to {} comparable earlier runs", options.regression.window),
                regressions: judge(&now_line, &past, options.regression),
            })
        }
    };
    let analysis = analyze(&records, wall_ms, comparison);
    let record = RunRecord {
        id,
        workflow: workflow.name.clone(),
        file: workflow.origin.clone(),
        started_at_ms,
        wall_ms,
        ok,
        jobs: options.jobs,
        cache_used: options.use_cache,
        steps: records,
        analysis,
        cancelled,
    };
    if options.save {
        history.save(&record)?;
    }
    Ok(record)
}

/// What the run takes from the swarm's events: which agent a step's call
/// went to (and its CPU counters then), and the pids of agents that start.
fn take_event(
    event: Event,
    workflow: &Workflow,
    running: &[usize],
    started: &[Option<Instant>],
    records: &mut [StepRecord],
    meter: &mut Meter,
    now_ms: f64,
) {
    match event {
        Event::CallStarted { role, agent, method } => {
            if let Some(i) = attribute_agent(workflow, running, started, records, &role, &method, agent, now_ms) {
                meter.call_started(i, running, records);
            }
        }
        Event::AgentReady { agent, pid, .. } => meter.agent_ready(agent, pid),
        _ => {}
    }
}

/// The agent that took a call is known only from the event stream: the
/// earliest-started running step of that role and method without one gets it
/// (pools hand out agents first come, first served).
#[allow(clippy::too_many_arguments)]
fn attribute_agent(
    workflow: &Workflow,
    running: &[usize],
    started: &[Option<Instant>],
    records: &mut [StepRecord],
    role: &str,
    method: &str,
    agent: String,
    now_ms: f64,
) -> Option<usize> {
    let candidate = running
        .iter()
        .copied()
        .filter(|&i| records[i].agent.is_none())
        .filter(|&i| matches!(&workflow.steps[i].action, Action::Call { role: r, method: m, .. } if r == role && m == method))
        .min_by_key(|&i| started[i]);
    let i = candidate?;
    records[i].wait_ms = (now_ms - records[i].started_ms.unwrap_or(now_ms)).max(0.0);
    records[i].agent = Some(agent);
    Some(i)
}

fn skip_message(workflow: &Workflow, step: usize, cause: SkipCause) -> String {
    let steps = &workflow.steps;
    let (failed, via) = (&steps[cause.failed], &steps[cause.via]);
    let this = &steps[step];
    if !this.needs.contains(&via.id) && via.stage.is_some() && via.stage != this.stage {
        let stage = via.stage.as_deref().unwrap_or_default();
        return format!("skipped: stage {stage} did not complete (`{}` failed), so later stages stop", failed.id);
    }
    if cause.failed == cause.via {
        format!("skipped: it needs `{}`, which failed", failed.id)
    } else {
        format!("skipped: it needs `{}`, which was skipped because `{}` failed", via.id, failed.id)
    }
}
