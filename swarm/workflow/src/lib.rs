//! skep workflows: a DAG of agent calls and commands, scheduled critical-path-first
//! over the swarm, skipped when nothing they depend on changed, and profiled.
//!
//! The synchronous parts (spec, graph, params, schedule, simulate, profile,
//! trace, report) take their inputs as arguments and are tested without a
//! runtime; `run.rs` (the run) and `step.rs` (one step) are the only async
//! files, and `step_cache.rs`/`history.rs` the only ones touching the disk.
//!
//! # Layout
//! - `spec.rs`: the workflow file (TOML) into a validated `Workflow`.
//! - `error.rs`: `WorkflowError`, what a user can get wrong, with file and line.
//! - `graph.rs`: the steps' dependency graph: order, cycles, ancestors.
//! - `params.rs`: `${steps.X.result...}` references and their resolution.
//! - `inputs.rs`: a step's input globs, expanded to files.
//! - `schedule.rs`: the pure scheduler, critical path first, bounded by jobs and role capacity.
//! - `simulate.rs`: the scheduler against predicted durations (benchmarks).
//! - `run.rs`: one run: the scheduler, the step futures, the record.
//! - `step.rs`: one step: its cache key, an agent call or a command.
//! - `step_cache.rs`: the step cache under `.skep/cache/`, content-addressed and written atomically.
//! - `why.rs`: a step's cache decision and, for a miss, what differed from its latest entry.
//! - `explain.rs`: `--explain`, every step's decision without running anything.
//! - `resources.rs`: CPU and peak memory of a step (rusage of a command, `/proc` of an agent).
//! - `meter.rs`: a run's meter: each finished step's resources, reported usage, cost or saving.
//! - `regress.rs`: regressions against the median of comparable earlier runs.
//! - `profile.rs`: the run's analysis: critical path, efficiency, bottlenecks, totals, insights.
//! - `history.rs`: recorded runs under `.skep/runs/`, `history.jsonl`, baselines.
//! - `trace.rs`: the Chrome trace-event JSON of a run.
//! - `report.rs`: the self-contained HTML report with its Gantt chart.

mod error;
mod explain;
mod graph;
mod history;
mod inputs;
mod meter;
mod params;
mod profile;
mod regress;
mod report;
mod resources;
mod run;
mod schedule;
mod simulate;
mod spec;
mod step;
mod step_cache;
mod trace;
mod why;

pub use error::WorkflowError;
pub use explain::{Explanation, explain};
pub use graph::Graph;
pub use history::{History, HistoryLine, PREDICTION_WINDOW, RunRecord, run_id};
pub use inputs::expand_inputs;
pub use params::{Reference, find_references, resolve};
pub use profile::{Analysis, Bottleneck, Comparison, StepOutcome, StepRecord, Totals, analyze, money};
pub use regress::{Regression, RegressionRule, judge, parse_threshold};
pub use report::render_report;
pub use resources::{ProcCpu, Resources, proc_cpu};
pub use run::{Progress, ProgressEvent, RunOptions, run_workflow};
pub use schedule::{Scheduler, SkipCause};
pub use simulate::{Policy, simulate};
pub use spec::{Action, Step, Workflow};
pub use step_cache::{STEP_CACHE_DIR, StepCache, StepCacheLimits};
pub use trace::render_trace;
pub use why::{Change, KeyParts, Why};
