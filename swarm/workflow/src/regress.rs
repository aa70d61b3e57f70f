//! Regressions that mean something: a step is judged only against earlier
//! runs in which it executed (not from the cache) with the same cache mode,
//! by the median of its last N durations, and must be slower by both a
//! relative and an absolute margin; the whole run only against runs that
//! executed the same set of steps. Pure code over history lines.

use serde::{Deserialize, Serialize};

use super::history::HistoryLine;

/// How regressions are judged.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RegressionRule {
    /// How many earlier comparable runs the median spans.
    pub window: usize,
    /// Slower than the median by more than this fraction (0.2 = 20%).
    pub ratio: f64,
    /// And by at least this many milliseconds (noise below it is ignored).
    pub min_ms: f64,
}

impl Default for RegressionRule {
    fn default() -> Self {
        RegressionRule { window: 5, ratio: 0.2, min_ms: 5.0 }
    }
}

/// A step (or the whole run) slower than its earlier comparable runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Regression {
    /// A step id, or `"total"` for the wall time.
    pub what: String,
    /// The median of its comparable earlier runs.
    pub before_ms: f64,
    /// Its time now.
    pub after_ms: f64,
    /// How many earlier runs the median spans.
    #[serde(default)]
    pub runs: usize,
}

impl Regression {
    /// `after ÷ before − 1`.
    pub fn change(&self) -> f64 {
        self.after_ms / self.before_ms.max(f64::MIN_POSITIVE) - 1.0
    }

    /// `lint regressed: 130 ms against a median of 80 ms over 5 runs (+63%)`.
    pub fn describe(&self) -> String {
        let name = if self.what == "total" { "the whole run" } else { &self.what };
        let runs = if self.runs == 1 { "1 run".to_owned() } else { format!("{} runs", self.runs) };
        format!(
            "{name} regressed: {:.0} ms against a median of {:.0} ms over {runs} (+{:.0}%)",
            self.after_ms,
            self.before_ms,
            (self.change() * 100.0).round()
        )
    }
}

/// A threshold as written on a command line: `10%`, or a fraction such as `0.1`.
pub fn parse_threshold(text: &str) -> Result<f64, String> {
    let (number, scale) = match text.trim().strip_suffix('%') {
        Some(n) => (n, 100.0),
        None => (text.trim(), 1.0),
    };
    match number.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 => Ok(v / scale),
        _ => Err(format!("expected a percentage such as 10% (or a fraction such as 0.1), found {text:?}")),
    }
}

fn median(mut xs: Vec<f64>) -> Option<f64> {
    xs.sort_by(f64::total_cmp);
    let n = xs.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(xs[n / 2]),
        _ => Some((xs[n / 2 - 1] + xs[n / 2]) / 2.0),
    }
}

/// Whether a past line may be compared with `now` at all: same workflow, same cache mode.
fn comparable(past: &HistoryLine, now: &HistoryLine) -> bool {
    past.id != now.id
        && past.workflow == now.workflow
        && past.cache_used.zip(now.cache_used).is_none_or(|(a, b)| a == b)
}

/// The regressions of run `now` against `past` (oldest first; later lines are ignored).
pub fn judge(now: &HistoryLine, past: &[HistoryLine], rule: RegressionRule) -> Vec<Regression> {
    let earlier: Vec<&HistoryLine> = past.iter().filter(|p| comparable(p, now)).collect();
    let slower = |before: f64, after: f64| after > before * (1.0 + rule.ratio) && after - before >= rule.min_ms;
    let mut found = Vec::new();
    let same_steps: Vec<f64> = (earlier.iter().rev())
        .filter(|p| p.ok && p.durations.keys().eq(now.durations.keys()))
        .take(rule.window)
        .map(|p| p.wall_ms)
        .collect();
    let runs = same_steps.len();
    if now.ok
        && !now.durations.is_empty()
        && let Some(before) = median(same_steps)
        && slower(before, now.wall_ms)
    {
        found.push(Regression { what: "total".into(), before_ms: before, after_ms: now.wall_ms, runs });
    }
    for (id, &after) in &now.durations {
        let samples: Vec<f64> =
            earlier.iter().rev().filter_map(|p| p.durations.get(id).copied()).take(rule.window).collect();
        let runs = samples.len();
        if let Some(before) = median(samples)
            && slower(before, after)
        {
            found.push(Regression { what: id.clone(), before_ms: before, after_ms: after, runs });
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn line(id: &str, cache_used: bool, wall: f64, executed: &[(&str, f64)]) -> HistoryLine {
        HistoryLine {
            id: id.into(),
            workflow: "w".into(),
            started_at_ms: 0,
            wall_ms: wall,
            ok: true,
            durations: executed.iter().map(|(s, d)| ((*s).to_owned(), *d)).collect(),
            cache_used: Some(cache_used),
            costs: BTreeMap::new(),
        }
    }

    fn rule() -> RegressionRule {
        RegressionRule::default()
    }

    #[test]
    fn thresholds_read_as_percentages_or_fractions() {
        assert_eq!(parse_threshold("10%"), Ok(0.1));
        assert_eq!(parse_threshold("0.25"), Ok(0.25));
        assert!(parse_threshold("-5%").is_err());
        assert!(parse_threshold("fast").is_err());
    }

    #[test]
    fn a_cached_run_is_never_the_yardstick_of_an_executed_one() {
        // The case: two runs (the second fully cached), then --no-cache.
        let past = [line("r1", true, 400.0, &[("sources", 2.0), ("lint", 398.0)]), line("r2", true, 2.0, &[])];
        let now = line("r3", false, 406.0, &[("sources", 3.0), ("lint", 403.0)]);
        assert_eq!(judge(&now, &past, rule()), vec![], "no run with the cache off to compare with");
        // With the cache on, the fully cached r2 is no yardstick for the whole run either: its executed set differs.
        let now = line("r3", true, 406.0, &[("sources", 3.0), ("lint", 403.0)]);
        assert_eq!(judge(&now, &past, rule()), vec![]);
        // And a fully cached run judges nothing.
        assert_eq!(judge(&line("r4", true, 2.0, &[]), &past, rule()), vec![]);
        // A run with the cache on is no yardstick for one with it off, even with the same steps executed.
        let warm = [line("r1", true, 100.0, &[("sources", 10.0), ("lint", 90.0)])];
        let cold = line("r2", false, 200.0, &[("sources", 20.0), ("lint", 180.0)]);
        assert_eq!(judge(&cold, &warm, rule()), vec![]);
        assert_eq!(judge(&line("r2", true, 200.0, &[("sources", 20.0), ("lint", 180.0)]), &warm, rule()).len(), 3);
    }

    #[test]
    fn steps_are_judged_by_the_median_of_their_last_executed_runs() {
        let past = [
            line("r1", true, 100.0, &[("a", 100.0)]),
            line("r2", true, 12.0, &[("a", 10.0)]),
            line("r3", true, 1.0, &[]), // a cached
            line("r4", true, 13.0, &[("a", 11.0)]),
            line("r5", true, 14.0, &[("a", 12.0)]),
        ];
        // Window 3: a's last three executed durations are 10, 11, 12 (r1 falls out): median 11.
        let narrow = RegressionRule { window: 3, ..rule() };
        let now = line("r6", true, 30.0, &[("a", 20.0)]);
        let found = judge(&now, &past, narrow);
        assert_eq!(
            found.iter().find(|r| r.what == "a"),
            Some(&Regression { what: "a".into(), before_ms: 11.0, after_ms: 20.0, runs: 3 })
        );
        assert_eq!(found[0].describe(), "the whole run regressed: 30 ms against a median of 13 ms over 3 runs (+131%)");
        // Window 5 takes r1's 100 in: the median of 100, 10, 11, 12 is 11.5, still a regression.
        assert_eq!(judge(&now, &past, rule()).iter().find(|r| r.what == "a").map(|r| r.before_ms), Some(11.5));
    }

    #[test]
    fn noise_below_either_threshold_is_not_a_regression() {
        let past = [line("r1", true, 10.0, &[("a", 10.0), ("b", 100.0)])];
        // a: +40% but only 4 ms; b: +8 ms but only 8%.
        let now = line("r2", true, 10.0, &[("a", 14.0), ("b", 108.0)]);
        assert_eq!(judge(&now, &past, rule()), vec![]);
        // Both margins passed: a regression, judged against its one run.
        let now = line("r2", true, 10.0, &[("a", 16.0), ("b", 100.0)]);
        let found = judge(&now, &past, rule());
        assert_eq!(found, vec![Regression { what: "a".into(), before_ms: 10.0, after_ms: 16.0, runs: 1 }]);
        assert_eq!(found[0].describe(), "a regressed: 16 ms against a median of 10 ms over 1 run (+60%)");
        // A tighter rule (5%, as a gate might set) catches b's 8%.
        let gate = RegressionRule { ratio: 0.05, ..rule() };
        let now = line("r2", true, 10.0, &[("a", 10.0), ("b", 108.0)]);
        assert_eq!(judge(&now, &past, gate).len(), 1);
    }

    #[test]
    fn the_whole_run_is_compared_only_with_runs_of_the_same_executed_steps() {
        let past = [
            line("r1", true, 50.0, &[("a", 10.0), ("b", 40.0)]),
            line("r2", true, 10.0, &[("a", 10.0)]), // b came from the cache
        ];
        let now = line("r3", true, 45.0, &[("a", 10.0), ("b", 35.0)]);
        assert_eq!(judge(&now, &past, rule()), vec![], "r2 (a alone) is no yardstick for a run that executed b");
        let slow = line("r3", true, 70.0, &[("a", 10.0), ("b", 40.0)]);
        assert_eq!(judge(&slow, &past, rule()).first().map(|r| (r.what.as_str(), r.before_ms)), Some(("total", 50.0)));
    }
}
