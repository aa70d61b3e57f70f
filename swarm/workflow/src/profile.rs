//! The profiler: per-step timings in, where the time went out. Pure code
//! over a finished run's records (and optionally an earlier run's).

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use super::graph::Graph;
use super::regress::Regression;
use super::resources::Resources;
use super::why::{Change, Why};

/// A step must be at least this share of the critical path for an insight to suggest speeding it up.
const SUGGEST_SHARE: f64 = 0.2;
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
    /// Why it ran or came from the cache (none if it never got that far).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub why: Option<Why>,
    /// CPU and memory it used (none for cache hits and when unknown).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<Resources>,
    /// What the agent reported in its result's `_meta.usage` (tokens...), summed over attempts.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub usage: BTreeMap<String, f64>,
    /// Its estimated cost, if its role (or the command step) has a price list.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost: Option<f64>,
    /// A cache hit's saving: what the step cost the last time it ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub saved_cost: Option<f64>,
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

/// A run's sums: CPU, the largest peak memory, usage and cost.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Totals {
    /// CPU time (user + system) of every step that reported it.
    pub cpu_ms: f64,
    /// Whether some of that CPU time is approximate (agents serving concurrent calls).
    pub cpu_approximate: bool,
    /// The largest peak resident memory of a step.
    pub peak_rss_bytes: Option<u64>,
    /// Agents' `_meta.usage` figures, summed.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub usage: BTreeMap<String, f64>,
    /// Estimated cost of the steps that ran (none if nothing is priced).
    pub cost: Option<f64>,
    /// What the cache hits saved: the cost of those steps when they last ran.
    pub saved_cost: Option<f64>,
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
    /// What the run was judged against: `run ID` (a baseline) or `the median of up to N comparable earlier runs`.
    pub compared_with: Option<String>,
    /// Steps (and the total) slower than that, past both thresholds.
    pub regressions: Vec<Regression>,
    /// Plain-language findings, most important first.
    pub insights: Vec<String>,
    /// CPU, memory, usage and cost summed over the run.
    #[serde(default)]
    pub totals: Totals,
}

/// What a run was judged against, and what regressed.
#[derive(Debug, Clone, PartialEq)]
pub struct Comparison {
    /// `run ID` or `the median of up to 5 comparable earlier runs`.
    pub with: String,
    /// What regressed (see `regress::judge`).
    pub regressions: Vec<Regression>,
}

/// Analyzes a finished run.
pub fn analyze(steps: &[StepRecord], wall_ms: f64, comparison: Option<Comparison>) -> Analysis {
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
    // A cache hit's time is the cache's, not the step's: never a bottleneck to speed up.
    let mut ranked: Vec<usize> =
        (0..steps.len()).filter(|&i| steps[i].duration_ms > 0.0 && !steps[i].cache_hit).collect();
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
    let compared = comparison.is_some();
    let (compared_with, regressions) = comparison.map_or((None, Vec::new()), |c| (Some(c.with), c.regressions));
    let mut analysis = Analysis {
        wall_ms,
        critical_path: path.iter().map(|&i| steps[i].id.clone()).collect(),
        critical_path_ms: cp_ms,
        parallel_efficiency: share(cp_ms, wall_ms),
        bottlenecks,
        cache_hit_rate: share(hits as f64, eligible as f64),
        compared_with,
        regressions,
        insights: Vec::new(),
        totals: totals(steps),
    };
    analysis.insights = insights(steps, &analysis, compared);
    analysis
}

fn totals(steps: &[StepRecord]) -> Totals {
    let mut t = Totals::default();
    for s in steps {
        if let Some(r) = &s.resources {
            t.cpu_ms += r.cpu_ms();
            t.cpu_approximate |= r.approximate;
            t.peak_rss_bytes = t.peak_rss_bytes.max(r.peak_rss_bytes);
        }
        for (k, v) in &s.usage {
            *t.usage.entry(k.clone()).or_default() += v;
        }
        if let Some(c) = s.cost {
            t.cost = Some(t.cost.unwrap_or(0.0) + c);
        }
        if let Some(c) = s.saved_cost {
            t.saved_cost = Some(t.saved_cost.unwrap_or(0.0) + c);
        }
    }
    t
}

/// A price for people: enough digits to tell small amounts apart.
pub fn money(v: f64) -> String {
    if v == 0.0 || v.abs() >= 1.0 { format!("{v:.2}") } else { format!("{v:.4}") }
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
    let executed = steps.iter().filter(|s| s.started_ms.is_some() && !s.cache_hit).count();
    if executed == 0 && steps.iter().all(|s| s.outcome == StepOutcome::Ok) {
        // Nothing ran: there is no time to find, and nothing to speed up.
        let saved = a.totals.saved_cost.map(|c| format!("; it saved an estimated {}", money(c))).unwrap_or_default();
        out.push(format!("every step came from the cache: nothing it depends on changed{saved}"));
        return out;
    }
    out.extend(a.regressions.iter().map(Regression::describe));
    // A step that is a sliver of the critical path is not worth a suggestion.
    if let Some(top) = a.bottlenecks.iter().find(|b| b.share_of_critical_path > 0.0)
        && top.share_of_critical_path >= SUGGEST_SHARE
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
    let decided: Vec<&Why> = steps.iter().filter_map(|s| s.why.as_ref()).collect();
    let off =
        |w: &&Why| matches!(w, Why::Miss { because } if matches!(because[..], [Change::NoCache | Change::CacheOff]));
    if !decided.is_empty() && decided.iter().all(off) {
        // The reasons already say why nothing came from the cache: no question to ask.
        out.push("the cache was not consulted (--no-cache, or cache = false): every step ran".into());
    } else if cacheable && compared && a.cache_hit_rate == 0.0 {
        out.push(
            "0% cache hits: do the inputs change every run, or is the cache off (--no-cache, cache = false)?".into(),
        );
    } else if a.cache_hit_rate > 0.0 {
        out.push(format!("{}% of steps came from the cache", pct(a.cache_hit_rate)));
    }
    if let Some(cost) = a.totals.cost {
        let saved = a.totals.saved_cost.map(|c| format!("; the cache saved {}", money(c))).unwrap_or_default();
        out.push(format!("estimated cost {}{saved}", money(cost)));
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
            why: None,
            resources: None,
            usage: BTreeMap::new(),
            cost: None,
            saved_cost: None,
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
    fn regressions_judged_elsewhere_become_insights() {
        let regressed = Regression { what: "b".into(), before_ms: 20.0, after_ms: 25.0, runs: 5 };
        let comparison = Comparison { with: "the last 5 comparable runs".into(), regressions: vec![regressed.clone()] };
        let a = analyze(&diamond(), 45.0, Some(comparison));
        assert_eq!(a.regressions, vec![regressed]);
        assert!(
            a.insights.contains(&"b regressed: 25 ms against a median of 20 ms over 5 runs (+25%)".to_owned()),
            "{:?}",
            a.insights
        );
        assert_eq!(a.compared_with.as_deref(), Some("the last 5 comparable runs"));
    }

    #[test]
    fn a_fully_cached_run_says_so_and_stops() {
        let mut steps = diamond();
        for s in &mut steps {
            s.cache_hit = true;
            s.saved_cost = Some(0.25);
        }
        let a = analyze(&steps, 45.0, None);
        assert_eq!(
            a.insights,
            ["every step came from the cache: nothing it depends on changed; it saved an estimated 1.00"]
        );
        assert!(a.bottlenecks.is_empty(), "a cached step is nobody's bottleneck");
        assert_eq!(a.totals.saved_cost, Some(1.0));
    }

    #[test]
    fn insights_never_suggest_speeding_up_a_cached_step() {
        // b, the longest step on the critical path, came from the cache; d ran.
        let mut steps = diamond();
        steps[1].cache_hit = true;
        let a = analyze(&steps, 45.0, None);
        assert!(a.bottlenecks.iter().all(|b| b.id != "b"), "{:?}", a.bottlenecks);
        assert!(a.insights.iter().all(|i| !i.starts_with("b is")), "{:?}", a.insights);
        assert!(a.insights.iter().any(|i| i.starts_with("a is") || i.starts_with("d is")), "{:?}", a.insights);
    }

    #[test]
    fn totals_sum_cpu_usage_and_cost() {
        let mut steps = diamond();
        steps[0].resources = Some(Resources {
            cpu_user_ms: 150.0,
            cpu_system_ms: 50.0,
            peak_rss_bytes: Some(100 << 20),
            source: "rusage".into(),
            approximate: false,
        });
        steps[1].resources = Some(Resources {
            cpu_user_ms: 10.0,
            cpu_system_ms: 0.0,
            peak_rss_bytes: None,
            source: "proc".into(),
            approximate: true,
        });
        steps[1].usage = BTreeMap::from([("inputTokens".to_owned(), 100.0)]);
        steps[2].usage = BTreeMap::from([("inputTokens".to_owned(), 20.0)]);
        steps[1].cost = Some(0.5);
        steps[3].cost = Some(0.25);
        let t = analyze(&steps, 45.0, None).totals;
        assert_eq!(t.cpu_ms, 210.0);
        assert!(t.cpu_approximate);
        assert_eq!(t.peak_rss_bytes, Some(100 << 20));
        assert_eq!(t.usage, BTreeMap::from([("inputTokens".to_owned(), 120.0)]));
        assert_eq!(t.cost, Some(0.75));
        assert_eq!(t.saved_cost, None);
    }

    #[test]
    fn no_cache_hits_against_a_previous_run_is_called_out() {
        let steps = diamond();
        let a = analyze(&steps, 45.0, Some(Comparison { with: "run r0".into(), regressions: Vec::new() }));
        assert_eq!(a.cache_hit_rate, 0.0);
        assert!(a.insights.iter().any(|i| i.starts_with("0% cache hits: do the inputs change every run")));
        // When every step says the cache was off, the insight says so instead of asking.
        let mut off = diamond();
        for s in &mut off {
            s.why = Some(Why::Miss { because: vec![Change::NoCache] });
        }
        off[0].why = Some(Why::Miss { because: vec![Change::CacheOff] });
        let a = analyze(&off, 45.0, Some(Comparison { with: "run r0".into(), regressions: Vec::new() }));
        assert!(a.insights.iter().all(|i| !i.starts_with("0% cache hits")), "{:?}", a.insights);
        assert!(
            a.insights.contains(&"the cache was not consulted (--no-cache, or cache = false): every step ran".into())
        );
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
