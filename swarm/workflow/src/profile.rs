//! The profiler: per-step timings in, where the time went out. Pure code
//! over a finished run's records (and optionally an earlier run's).

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::graph::Graph;

/// A step is more than this much slower than before: a regression.
pub const REGRESSION_RATIO: f64 = 1.2;
/// Below this many milliseconds of difference, slower is noise, not a regression.
pub const REGRESSION_MIN_MS: f64 = 5.0;
/// How many bottlenecks a profile lists.
const TOP: usize = 5;

/// How a step ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum StepOutcome {
    /// It succeeded (or its success came from the cache).
    Ok,
    /// It failed (error, non-zero exit, timeout).
    Failed,
    /// It never ran: something it waited for failed.
    Skipped,
}

/// One step of a run, as measured. Times are milliseconds from the run's start.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StepRecord {
    /// The step's id.
    pub id: String,
    /// The steps it waited for (its needs and the previous stage).
    pub after: Vec<String>,
    /// `"agent"` or `"command"`.
    pub kind: String,
    /// The role of an agent call.
    pub role: Option<String>,
    /// The agent that answered, when known.
    pub agent: Option<String>,
    /// How it ended.
    pub outcome: StepOutcome,
    /// Why it failed or was skipped.
    pub error: Option<String>,
    /// Whether its result came from the cache.
    pub cache_hit: bool,
    /// When its needs were met.
    pub queued_ms: f64,
    /// When it started (after waiting for a job slot and role capacity).
    pub started_ms: Option<f64>,
    /// When it ended.
    pub finished_ms: Option<f64>,
    /// `finished - started`.
    pub duration_ms: f64,
    /// Of the duration, the time spent waiting for a free agent.
    pub wait_ms: f64,
    /// Bytes of params (or argv) sent.
    pub bytes_in: u64,
    /// Bytes of result received.
    pub bytes_out: u64,
    /// Attempts made (more than one with retries).
    pub attempts: u32,
    /// The duration the scheduler predicted from history.
    pub predicted_ms: f64,
}

impl StepRecord {
    /// How the step ended, in one word: `cached`, `ok`, `failed` or `skipped`.
    pub fn outcome_label(&self) -> &'static str {
        match (self.outcome, self.cache_hit) {
            (StepOutcome::Ok, true) => "cached",
            (StepOutcome::Ok, false) => "ok",
            (StepOutcome::Failed, _) => "failed",
            (StepOutcome::Skipped, _) => "skipped",
        }
    }
}

/// A step's share of the time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Bottleneck {
    /// The step.
    pub id: String,
    /// Its duration.
    pub duration_ms: f64,
    /// Its duration ÷ the wall time.
    pub share_of_wall: f64,
    /// Its duration ÷ the critical path's length (0 if it is not on it).
    pub share_of_critical_path: f64,
}

/// A step (or the whole run) more than 20% slower than in the compared run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Regression {
    /// A step id, or `"total"` for the wall time.
    pub what: String,
    /// Its time in the compared run.
    pub before_ms: f64,
    /// Its time now.
    pub after_ms: f64,
}

/// Where a run's time went.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Analysis {
    /// The run's wall time.
    pub wall_ms: f64,
    /// The heaviest chain of steps by duration, in run order.
    pub critical_path: Vec<String>,
    /// Its total duration.
    pub critical_path_ms: f64,
    /// Critical path ÷ wall time: 1 means nothing but the unavoidable chain took time.
    pub parallel_efficiency: f64,
    /// The longest steps with their shares.
    pub bottlenecks: Vec<Bottleneck>,
    /// Cache hits ÷ steps that ran or hit.
    pub cache_hit_rate: f64,
    /// The run compared against, if any.
    pub compared_with: Option<String>,
    /// Steps (and the total) more than 20% slower than in that run.
    pub regressions: Vec<Regression>,
    /// Plain-language findings, most important first.
    pub insights: Vec<String>,
}

/// An earlier run to compare against: its id, steps and wall time.
#[derive(Debug, Clone, Copy)]
pub struct Previous<'a> {
    /// Its run id.
    pub id: &'a str,
    /// Its steps.
    pub steps: &'a [StepRecord],
    /// Its wall time.
    pub wall_ms: f64,
}

/// Analyzes a finished run.
pub fn analyze(steps: &[StepRecord], wall_ms: f64, previous: Option<Previous<'_>>) -> Analysis {
    let index: HashMap<&str, usize> = steps.iter().enumerate().map(|(i, s)| (s.id.as_str(), i)).collect();
    let edges = steps
        .iter()
        .enumerate()
        .flat_map(|(i, s)| s.after.iter().filter_map(|a| index.get(a.as_str())).map(move |&d| (d, i)));
    let graph = Graph::new(steps.len(), edges.collect::<Vec<_>>());
    let weights: Vec<f64> = steps.iter().map(|s| s.duration_ms).collect();
    let (path, cp_ms) = match graph.topo_order() {
        Ok(order) => graph.longest_path(&order, &weights),
        Err(_) => (Vec::new(), 0.0),
    };
    let on_path: Vec<bool> = (0..steps.len()).map(|i| path.contains(&i)).collect();
    let share = |part: f64, whole: f64| if whole > 0.0 { part / whole } else { 0.0 };
    let mut ranked: Vec<usize> = (0..steps.len()).filter(|&i| steps[i].duration_ms > 0.0).collect();
    ranked.sort_by(|&a, &b| steps[b].duration_ms.total_cmp(&steps[a].duration_ms).then(a.cmp(&b)));
    let bottlenecks: Vec<Bottleneck> = ranked
        .iter()
        .take(TOP)
        .map(|&i| Bottleneck {
            id: steps[i].id.clone(),
            duration_ms: steps[i].duration_ms,
            share_of_wall: share(steps[i].duration_ms, wall_ms),
            share_of_critical_path: if on_path[i] { share(steps[i].duration_ms, cp_ms) } else { 0.0 },
        })
        .collect();
    let eligible = steps.iter().filter(|s| s.outcome != StepOutcome::Skipped).count();
    let hits = steps.iter().filter(|s| s.cache_hit).count();
    let regressions = previous.map(|p| regressions(steps, wall_ms, p)).unwrap_or_default();
    let mut analysis = Analysis {
        wall_ms,
        critical_path: path.iter().map(|&i| steps[i].id.clone()).collect(),
        critical_path_ms: cp_ms,
        parallel_efficiency: share(cp_ms, wall_ms),
        bottlenecks,
        cache_hit_rate: share(hits as f64, eligible as f64),
        compared_with: previous.map(|p| p.id.to_owned()),
        regressions,
        insights: Vec::new(),
    };
    analysis.insights = insights(steps, &analysis, previous.is_some());
    analysis
}

fn regressions(steps: &[StepRecord], wall_ms: f64, previous: Previous<'_>) -> Vec<Regression> {
    let before: HashMap<&str, &StepRecord> = previous.steps.iter().map(|s| (s.id.as_str(), s)).collect();
    let slower = |b: f64, a: f64| a > b * REGRESSION_RATIO && a - b >= REGRESSION_MIN_MS;
    let mut found: Vec<Regression> = steps
        .iter()
        .filter(|s| s.outcome == StepOutcome::Ok && !s.cache_hit)
        .filter_map(|s| {
            let b = before.get(s.id.as_str()).filter(|b| b.outcome == StepOutcome::Ok && !b.cache_hit)?;
            slower(b.duration_ms, s.duration_ms).then(|| Regression {
                what: s.id.clone(),
                before_ms: b.duration_ms,
                after_ms: s.duration_ms,
            })
        })
        .collect();
    if slower(previous.wall_ms, wall_ms) {
        found.insert(0, Regression { what: "total".into(), before_ms: previous.wall_ms, after_ms: wall_ms });
    }
    found
}

fn insights(steps: &[StepRecord], a: &Analysis, compared: bool) -> Vec<String> {
    let mut out = Vec::new();
    let pct = |x: f64| (x * 100.0).round();
    for s in steps.iter().filter(|s| s.outcome == StepOutcome::Failed) {
        let skipped = steps
            .iter()
            .filter(|o| {
                o.outcome == StepOutcome::Skipped
                    && o.error.as_deref().is_some_and(|e| e.contains(&format!("`{}`", s.id)))
            })
            .count();
        let tail = if skipped > 0 { format!("; {skipped} step(s) skipped because of it") } else { String::new() };
        out.push(format!("{} failed: {}{tail}", s.id, s.error.as_deref().unwrap_or("no detail")));
    }
    for r in &a.regressions {
        let name = if r.what == "total" { "the whole run".to_owned() } else { r.what.clone() };
        out.push(format!(
            "{name} regressed: {:.0} ms → {:.0} ms (+{}%)",
            r.before_ms,
            r.after_ms,
            pct(r.after_ms / r.before_ms.max(f64::MIN_POSITIVE) - 1.0)
        ));
    }
    if let Some(top) = a.bottlenecks.iter().find(|b| b.share_of_critical_path > 0.0)
        && a.critical_path.len() > 1
    {
        out.push(format!(
            "{} is {}% of the critical path ({:.0} of {:.0} ms): speeding it up shortens the run most",
            top.id,
            pct(top.share_of_critical_path),
            top.duration_ms,
            a.critical_path_ms
        ));
    }
    let waited: f64 = steps.iter().map(|s| s.wait_ms).sum();
    if a.wall_ms > 0.0 && waited > 0.1 * a.wall_ms {
        out.push(format!(
            "steps waited {waited:.0} ms in total for a free agent: a bigger max_agents for their role would help"
        ));
    }
    let ran = steps.iter().filter(|s| s.started_ms.is_some()).count();
    if ran > 1 && a.parallel_efficiency < 0.7 && a.wall_ms > 0.0 {
        let queued: f64 = steps.iter().filter_map(|s| Some(s.started_ms? - s.queued_ms)).filter(|q| *q > 0.0).sum();
        out.push(format!(
            "parallel efficiency is {}%: the critical path is {:.0} of {:.0} ms; steps spent {queued:.0} ms ready but \
             waiting for a job slot or role capacity (raise --jobs?)",
            pct(a.parallel_efficiency),
            a.critical_path_ms,
            a.wall_ms
        ));
    }
    let cacheable = steps.iter().any(|s| s.outcome != StepOutcome::Skipped);
    if cacheable && compared && a.cache_hit_rate == 0.0 {
        out.push(
            "0% cache hits: do the inputs change every run, or is the cache off (--no-cache, cache = false)?".into(),
        );
    } else if a.cache_hit_rate >= 1.0 {
        out.push("every step came from the cache: nothing it depends on changed".into());
    } else if a.cache_hit_rate > 0.0 {
        out.push(format!("{}% of steps came from the cache", pct(a.cache_hit_rate)));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn step(id: &str, after: &[&str], start: f64, end: f64) -> StepRecord {
        StepRecord {
            id: id.into(),
            after: after.iter().map(|s| (*s).into()).collect(),
            kind: "command".into(),
            role: None,
            agent: None,
            outcome: StepOutcome::Ok,
            error: None,
            cache_hit: false,
            queued_ms: start,
            started_ms: Some(start),
            finished_ms: Some(end),
            duration_ms: end - start,
            wait_ms: 0.0,
            bytes_in: 0,
            bytes_out: 0,
            attempts: 1,
            predicted_ms: 1.0,
        }
    }

    /// a (10) → b (20), c (5) → d (10), run with b and c in parallel but d
    /// starting 5 ms late: wall 45, critical path a b d = 40, efficiency 40/45.
    fn diamond() -> Vec<StepRecord> {
        vec![
            step("a", &[], 0.0, 10.0),
            step("b", &["a"], 10.0, 30.0),
            step("c", &["a"], 10.0, 15.0),
            step("d", &["b", "c"], 35.0, 45.0),
        ]
    }

    #[test]
    fn critical_path_and_efficiency_match_a_hand_calculation() {
        let a = analyze(&diamond(), 45.0, None);
        assert_eq!(a.critical_path, ["a", "b", "d"]);
        assert_eq!(a.critical_path_ms, 40.0);
        assert!((a.parallel_efficiency - 40.0 / 45.0).abs() < 1e-12);
        assert_eq!(a.bottlenecks[0].id, "b");
        assert!((a.bottlenecks[0].share_of_critical_path - 0.5).abs() < 1e-12);
        assert!((a.bottlenecks[0].share_of_wall - 20.0 / 45.0).abs() < 1e-12);
        let c = a.bottlenecks.iter().find(|b| b.id == "c").unwrap();
        assert_eq!(c.share_of_critical_path, 0.0, "c is not on the critical path");
        assert!(
            a.insights
                .iter()
                .any(|i| i == "b is 50% of the critical path (20 of 40 ms): speeding it up shortens the run most"),
            "{:?}",
            a.insights
        );
    }

    #[test]
    fn regressions_need_twenty_percent_and_both_figures_are_kept() {
        let before = diamond();
        let mut after = diamond();
        after[1].duration_ms = 25.0; // +25%: a regression
        after[2].duration_ms = 5.9; // +18%: not one
        let a = analyze(&after, 50.0, Some(Previous { id: "r1", steps: &before, wall_ms: 45.0 }));
        assert_eq!(a.regressions, vec![Regression { what: "b".into(), before_ms: 20.0, after_ms: 25.0 }]);
        assert!(a.insights.contains(&"b regressed: 20 ms → 25 ms (+25%)".to_owned()), "{:?}", a.insights);
        assert_eq!(a.compared_with.as_deref(), Some("r1"));
    }

    #[test]
    fn no_cache_hits_against_a_previous_run_is_called_out() {
        let steps = diamond();
        let a = analyze(&steps, 45.0, Some(Previous { id: "r0", steps: &steps, wall_ms: 45.0 }));
        assert_eq!(a.cache_hit_rate, 0.0);
        assert!(a.insights.iter().any(|i| i.starts_with("0% cache hits: do the inputs change every run")));
    }

    #[test]
    fn idle_slots_show_as_low_efficiency() {
        // Two independent 10 ms steps run one after the other: wall 20, critical path 10.
        let mut steps = vec![step("x", &[], 0.0, 10.0), step("y", &[], 10.0, 20.0)];
        steps[1].queued_ms = 0.0;
        let a = analyze(&steps, 20.0, None);
        assert_eq!(a.parallel_efficiency, 0.5);
        assert!(a.insights.iter().any(|i| i.starts_with("parallel efficiency is 50%")), "{:?}", a.insights);
    }
}
