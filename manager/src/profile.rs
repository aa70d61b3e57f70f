//! `skep profile`: a recorded run's profile, two runs side by side, a run
//! pinned as a named baseline, or the CI gate over a recorded run.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use skep_workflow::{
    History, RegressionRule, RunRecord, StepRecord, money, parse_threshold, render_report, render_trace,
};

use crate::output::emit;
use crate::run::{gate, write};

/// Print a recorded run's profile, compare two runs, pin a baseline, or gate on regressions.
///
/// Exit status: 0; 3 with --max-regression when the run or a step regressed past it.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  skep profile                          # the latest run
  skep profile 20250102T0304            # a run by (a prefix of) its id
  skep profile --compare RUN_A RUN_B    # side by side
  skep profile --baseline release       # pin the latest run as `release`
  skep profile --max-regression 10% --baseline release   # CI: exit 3 if >10% slower than `release`

Exit status: 0, or 3 when --max-regression is given and the run or a step
regressed past it.")]
pub struct ProfileArgs {
    /// The run id (or a unique prefix); default the latest.
    pub run: Option<String>,
    /// Two runs side by side.
    #[arg(long, num_args = 2, value_names = ["A", "B"])]
    pub compare: Vec<String>,
    /// Pin the run as baseline NAME (`skep run --baseline NAME` compares against it); with
    /// --max-regression, judge against baseline NAME instead (pins nothing).
    #[arg(long, value_name = "NAME")]
    pub baseline: Option<String>,
    /// CI gate: exit 3 if the run or a step is slower than the baseline (or the median of
    /// its last comparable runs) by more than PCT and at least --regression-min-ms.
    #[arg(long, value_name = "PCT", value_parser = parse_threshold)]
    pub max_regression: Option<f64>,
    /// How many earlier comparable runs a step's median spans.
    #[arg(long, value_name = "N", default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=1000))]
    pub regression_window: u64,
    /// With --max-regression: a regression must also be at least MS milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 5.0)]
    pub regression_min_ms: f64,
    /// The state directory holding runs/ and history.jsonl.
    #[arg(long, value_name = "DIR", default_value = ".skep")]
    pub state: PathBuf,
    /// Also write the run's HTML report.
    #[arg(long, value_name = "OUT.html")]
    pub report: Option<PathBuf>,
    /// Also write the run's Chrome trace-event JSON.
    #[arg(long, value_name = "OUT.json")]
    pub trace: Option<PathBuf>,
}

/// Prints the profile asked for.
pub fn run(args: ProfileArgs) -> anyhow::Result<ExitCode> {
    let history = History::new(&args.state);
    if let [a, b] = args.compare.as_slice() {
        let (a, b) = (history.load(a)?, history.load(b)?);
        for line in compare(&a, &b) {
            emit(&line)?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    let record = match &args.run {
        Some(id) => history.load(id)?,
        None => history.latest(None)?.with_context(|| {
            format!("no runs recorded in {} yet: `skep run FILE` records one", args.state.display())
        })?,
    };
    if let (Some(name), None) = (&args.baseline, args.max_regression) {
        history.pin(name, &record.id)?;
        emit(&format!("baseline {name} = run {}", record.id))?;
    }
    for line in summary(&record) {
        emit(&line)?;
    }
    if let Some(path) = &args.trace {
        write(path, &render_trace(&record))?;
    }
    if let Some(path) = &args.report {
        write(path, &render_report(&record))?;
    }
    if let Some(ratio) = args.max_regression {
        let rule = RegressionRule { window: args.regression_window as usize, ratio, min_ms: args.regression_min_ms };
        return gate(&history, &record, args.baseline.as_deref(), rule);
    }
    Ok(ExitCode::SUCCESS)
}

fn bytes(v: u64) -> String {
    let mib = v as f64 / (1024.0 * 1024.0);
    if mib >= 1024.0 { format!("{:.1} GiB", mib / 1024.0) } else { format!("{mib:.0} MiB") }
}

/// A step's CPU (`~` when approximate) and peak memory, or `-`.
fn resource_cells(s: &StepRecord) -> (String, String) {
    match &s.resources {
        None => ("-".into(), "-".into()),
        Some(r) => (
            format!("{}{}", if r.approximate { "~" } else { "" }, ms(r.cpu_ms())),
            r.peak_rss_bytes.map_or_else(|| "-".into(), bytes),
        ),
    }
}

fn ms(v: f64) -> String {
    if v >= 10_000.0 { format!("{:.1} s", v / 1000.0) } else { format!("{v:.0} ms") }
}

/// The text profile of a run: figures, insights, bottlenecks, steps.
pub fn summary(r: &RunRecord) -> Vec<String> {
    let a = &r.analysis;
    let mut out = vec![
        format!("run {} of {}: {}", r.id, r.workflow, if r.ok { "succeeded" } else { "FAILED" }),
        format!(
            "wall {}  critical path {} ({})  parallel efficiency {:.0}%  cache hits {:.0}%",
            ms(a.wall_ms),
            ms(a.critical_path_ms),
            a.critical_path.join(" → "),
            a.parallel_efficiency * 100.0,
            a.cache_hit_rate * 100.0
        ),
    ];
    let t = &a.totals;
    let mut figures = vec![format!("cpu {}{}", if t.cpu_approximate { "~" } else { "" }, ms(t.cpu_ms))];
    if let Some(rss) = t.peak_rss_bytes {
        figures.push(format!("peak rss {}", bytes(rss)));
    }
    if let Some(cost) = t.cost {
        figures.push(format!("cost {}", money(cost)));
    }
    if let Some(saved) = t.saved_cost {
        figures.push(format!("cache saved {}", money(saved)));
    }
    if !t.usage.is_empty() {
        let usage: Vec<String> = t.usage.iter().map(|(k, v)| format!("{k} {v}")).collect();
        figures.push(format!("usage {}", usage.join(", ")));
    }
    out.push(figures.join("  "));
    if !a.insights.is_empty() {
        out.push("insights:".into());
        out.extend(a.insights.iter().map(|i| format!("  - {i}")));
    }
    if !a.bottlenecks.is_empty() {
        out.push(format!("{:<24} {:>10} {:>8} {:>8}", "bottleneck", "duration", "of wall", "of c.p."));
        for b in &a.bottlenecks {
            out.push(format!(
                "{:<24} {:>10} {:>7.0}% {:>7.0}%",
                b.id,
                ms(b.duration_ms),
                b.share_of_wall * 100.0,
                b.share_of_critical_path * 100.0
            ));
        }
    }
    out.push(format!(
        "{:<24} {:<8} {:>10} {:>10} {:>10} {:>9} {:>8} {:>12}  {:<10} why",
        "step", "outcome", "queued", "duration", "wait", "cpu", "rss", "cost", "agent"
    ));
    for s in &r.steps {
        let outcome = s.outcome_label();
        let (cpu, rss) = resource_cells(s);
        let cost = match (s.cost, s.saved_cost) {
            (Some(c), _) => money(c),
            (None, Some(saved)) => format!("saved {}", money(saved)),
            (None, None) => "-".into(),
        };
        out.push(format!(
            "{:<24} {:<8} {:>10} {:>10} {:>10} {:>9} {:>8} {:>12}  {:<10} {}",
            s.id,
            outcome,
            ms(s.queued_ms),
            ms(s.duration_ms),
            ms(s.wait_ms),
            cpu,
            rss,
            cost,
            s.agent.as_deref().unwrap_or("-"),
            s.why.as_ref().map_or_else(|| s.error.clone().unwrap_or_else(|| "-".into()), |w| w.describe())
        ));
    }
    out
}

/// Two runs side by side, step by step.
fn compare(a: &RunRecord, b: &RunRecord) -> Vec<String> {
    let change = |x: f64, y: f64| if x > 0.0 { format!("{:+.0}%", (y / x - 1.0) * 100.0) } else { "-".into() };
    let mut out = vec![
        format!(
            "{:<24} {:>12} {:>12} {:>8}",
            "",
            a.id.get(..17).unwrap_or(&a.id),
            b.id.get(..17).unwrap_or(&b.id),
            "change"
        ),
        format!(
            "{:<24} {:>12} {:>12} {:>8}",
            "total (wall)",
            ms(a.wall_ms),
            ms(b.wall_ms),
            change(a.wall_ms, b.wall_ms)
        ),
        format!(
            "{:<24} {:>12} {:>12} {:>8}",
            "critical path",
            ms(a.analysis.critical_path_ms),
            ms(b.analysis.critical_path_ms),
            change(a.analysis.critical_path_ms, b.analysis.critical_path_ms)
        ),
    ];
    let ids: BTreeSet<&str> = a.steps.iter().chain(&b.steps).map(|s| s.id.as_str()).collect();
    for id in ids {
        let find = |r: &RunRecord| r.steps.iter().find(|s| s.id == id).map(|s| (s.duration_ms, s.cache_hit));
        let show = |d: Option<(f64, bool)>| match d {
            None => "-".to_owned(),
            Some((_, true)) => "cached".to_owned(),
            Some((ms_, false)) => ms(ms_),
        };
        let (x, y) = (find(a), find(b));
        let delta = match (x, y) {
            (Some((x, false)), Some((y, false))) => change(x, y),
            _ => "-".into(),
        };
        out.push(format!("{id:<24} {:>12} {:>12} {delta:>8}", show(x), show(y)));
    }
    out
}
