//! Workflows: a DAG of agent calls and commands, scheduled critical-path-first
//! over the swarm, skipped when nothing they depend on changed, and profiled.
//!
//! The synchronous parts (spec, graph, params, schedule, simulate, profile,
//! trace, report) take their inputs as arguments and are tested without a
//! runtime; `run.rs` (the run) and `step.rs` (one step) are the only async
//! files, and `cache.rs`/`history.rs` the
//! only ones touching the disk.

mod cache;
mod error;
mod graph;
mod history;
mod inputs;
mod params;
mod profile;
mod report;
mod run;
mod schedule;
mod simulate;
mod spec;
mod step;
mod trace;

pub use cache::{CACHE_DIR, Cache, CacheLimits};
pub use error::WorkflowError;
pub use graph::Graph;
pub use history::{History, HistoryLine, PREDICTION_WINDOW, RunRecord, run_id};
pub use inputs::expand_inputs;
pub use params::{Reference, find_references, resolve};
pub use profile::{
    Analysis, Bottleneck, Previous, REGRESSION_MIN_MS, REGRESSION_RATIO, Regression, StepOutcome, StepRecord, analyze,
};
pub use report::render_report;
pub use run::{Progress, ProgressEvent, RunOptions, run_workflow};
pub use schedule::{Scheduler, SkipCause};
pub use simulate::{Policy, simulate};
pub use spec::{Action, Step, Workflow};
pub use trace::render_trace;
