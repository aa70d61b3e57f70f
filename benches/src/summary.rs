//! Turning the comparison's samples into its markdown table: medians, p99,
//! and ratios skep ÷ peer with their spread over rounds. Plain code, no I/O.

use std::collections::BTreeMap;
use std::fmt::Write as _;

/// What a metric's samples are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// Nanoseconds for one operation.
    Nanos,
    /// Nanoseconds for a batch of this many calls; shown with calls per second.
    Batch(u64),
    /// Kibibytes (memory).
    KiB,
}

/// One thing a scenario measures for each contender.
#[derive(Debug, Clone)]
pub struct Metric {
    /// The key the contender's samples are filed under.
    pub key: &'static str,
    /// How the table names it.
    pub label: &'static str,
    /// What the samples are.
    pub unit: Unit,
    /// Shown as a share of the contender's work (overheads).
    pub share_of_work: bool,
}

/// Which side of the comparison a contender is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// skep itself; its rows carry the ratios.
    Skep,
    /// What users would pick instead.
    Peer,
}

/// Everything one contender produced in a scenario.
#[derive(Debug, Clone)]
pub struct Results {
    /// The row's name.
    pub name: String,
    /// skep or a peer.
    pub side: Side,
    /// Per metric key, the samples of each round (in round order).
    pub rounds: BTreeMap<&'static str, Vec<Vec<u64>>>,
    /// Why the contender did not run, if it did not.
    pub skipped: Option<String>,
    /// The work in nanoseconds that an ideal orchestrator would still take, for `share_of_work` metrics.
    pub work_ns: Option<u64>,
}

/// A scenario's title, metrics and contenders.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// Shown in the table's first column.
    pub title: String,
    /// In table order.
    pub metrics: Vec<Metric>,
    /// In table order; ratios are computed from each skep row against each peer row.
    pub contenders: Vec<Results>,
}

/// A ratio over all samples and its spread over rounds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Ratio {
    /// Median of all skep samples ÷ median of all peer samples.
    pub overall: f64,
    /// Smallest per-round ratio (round r's skep median ÷ round r's peer median).
    pub min: f64,
    /// Largest per-round ratio.
    pub max: f64,
}

/// The median of `samples` (the mean of the two middle ones for an even count); None when empty.
pub fn median(samples: &[u64]) -> Option<u64> {
    let mut sorted = samples.to_vec();
    sorted.sort_unstable();
    let n = sorted.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(sorted[n / 2]),
        _ => Some(sorted[n / 2 - 1] / 2 + sorted[n / 2] / 2 + (sorted[n / 2 - 1] % 2 + sorted[n / 2] % 2) / 2),
    }
}

/// The nearest-rank 99th percentile; None when empty. With under 100 samples it is the maximum.
pub fn p99(samples: &[u64]) -> Option<u64> {
    let mut sorted = samples.to_vec();
    sorted.sort_unstable();
    let rank = (sorted.len() * 99).div_ceil(100);
    sorted.get(rank.checked_sub(1)?).copied()
}

/// skep ÷ peer for one metric: overall from all samples, spread from rounds both ran.
pub fn ratio(skep: &[Vec<u64>], peer: &[Vec<u64>]) -> Option<Ratio> {
    let all = |rounds: &[Vec<u64>]| median(&rounds.concat());
    let overall = all(skep)? as f64 / all(peer)?.max(1) as f64;
    let per_round: Vec<f64> =
        skep.iter().zip(peer).filter_map(|(s, p)| Some(median(s)? as f64 / median(p)?.max(1) as f64)).collect();
    let min = per_round.iter().copied().fold(f64::INFINITY, f64::min);
    let max = per_round.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    (!per_round.is_empty()).then_some(Ratio { overall, min, max })
}

/// A duration in nanoseconds with three significant figures and a fitting unit.
pub fn duration(ns: u64) -> String {
    let ns = ns as f64;
    let (value, unit) = if ns < 1e3 {
        (ns, "ns")
    } else if ns < 1e6 {
        (ns / 1e3, "µs")
    } else if ns < 1e9 {
        (ns / 1e6, "ms")
    } else {
        (ns / 1e9, "s")
    };
    format!("{} {unit}", sig3(value))
}

/// A count with a k/M suffix and three significant figures.
fn count(n: f64) -> String {
    if n >= 1e6 {
        format!("{}M", sig3(n / 1e6))
    } else if n >= 1e3 {
        format!("{}k", sig3(n / 1e3))
    } else {
        sig3(n)
    }
}

fn sig3(value: f64) -> String {
    if value >= 100.0 {
        format!("{value:.0}")
    } else if value >= 10.0 {
        format!("{value:.1}")
    } else {
        format!("{value:.2}")
    }
}

/// One value of a metric as the table shows it.
pub fn value(unit: Unit, v: u64) -> String {
    match unit {
        Unit::Nanos => duration(v),
        Unit::Batch(calls) => format!("{} ({} calls/s)", duration(v), count(calls as f64 * 1e9 / v.max(1) as f64)),
        Unit::KiB => format!("{} MiB", sig3(v as f64 / 1024.0)),
    }
}

fn ratio_text(r: Ratio) -> String {
    format!("{}× ({}–{})", ratio_figure(r.overall), ratio_figure(r.min), ratio_figure(r.max))
}

fn ratio_figure(x: f64) -> String {
    if x >= 10.0 {
        format!("{x:.0}")
    } else if x >= 0.1 {
        format!("{x:.2}")
    } else {
        format!("{x:.4}")
    }
}

/// The markdown table of every scenario, one row per contender and metric.
pub fn render(scenarios: &[Scenario]) -> String {
    let mut out = String::from(
        "| scenario | metric | contender | median | p99 | skep ÷ peer, all rounds (min–max of per-round ratios) |\n\
         | --- | --- | --- | ---: | ---: | --- |\n",
    );
    for scenario in scenarios {
        for metric in &scenario.metrics {
            for row in &scenario.contenders {
                let (med, tail, ratios) = cells(scenario, metric, row);
                let _ = writeln!(
                    out,
                    "| {} | {} | {} | {med} | {tail} | {ratios} |",
                    scenario.title, metric.label, row.name
                );
            }
        }
    }
    out
}

fn cells(scenario: &Scenario, metric: &Metric, row: &Results) -> (String, String, String) {
    if let Some(why) = &row.skipped {
        return ("skipped".into(), "—".into(), why.clone());
    }
    let Some(rounds) = row.rounds.get(metric.key) else {
        return ("—".into(), "—".into(), String::new());
    };
    let all = rounds.concat();
    let (Some(med), Some(tail)) = (median(&all), p99(&all)) else {
        return ("—".into(), "—".into(), String::new());
    };
    let mut med_text = value(metric.unit, med);
    if let (true, Some(work)) = (metric.share_of_work, row.work_ns) {
        let _ = write!(med_text, " = {:.1}% of {}", med as f64 * 100.0 / work.max(1) as f64, duration(work));
    }
    let ratios = match row.side {
        Side::Peer => String::new(),
        Side::Skep => scenario
            .contenders
            .iter()
            .filter(|peer| peer.side == Side::Peer && peer.skipped.is_none())
            .filter_map(|peer| {
                let r = ratio(rounds, peer.rounds.get(metric.key)?)?;
                Some(format!("vs {}: {}", peer.name, ratio_text(r)))
            })
            .collect::<Vec<_>>()
            .join("<br>"),
    };
    (med_text, value(metric.unit, tail), ratios)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_even_and_empty() {
        assert_eq!(median(&[5, 1, 3]), Some(3));
        assert_eq!(median(&[4, 1, 3, 2]), Some(2));
        assert_eq!(median(&[3, 4]), Some(3));
        assert_eq!(median(&[u64::MAX, u64::MAX]), Some(u64::MAX));
        assert_eq!(median(&[]), None);
    }

    #[test]
    fn p99_is_nearest_rank() {
        let hundred: Vec<u64> = (1..=100).rev().collect();
        assert_eq!(p99(&hundred), Some(99));
        assert_eq!(p99(&[7, 3]), Some(7));
        assert_eq!(p99(&[]), None);
    }

    #[test]
    fn ratio_spread_comes_from_rounds() {
        let skep = vec![vec![10, 10], vec![30, 30]];
        let peer = vec![vec![20, 20], vec![20, 20]];
        let r = ratio(&skep, &peer).expect("both ran");
        assert_eq!(r, Ratio { overall: 20.0 / 20.0, min: 0.5, max: 1.5 });
        assert_eq!(ratio(&skep, &[]), None);
    }

    #[test]
    fn values_pick_their_unit() {
        assert_eq!(duration(950), "950 ns");
        assert_eq!(duration(12_345), "12.3 µs");
        assert_eq!(duration(4_560_000), "4.56 ms");
        assert_eq!(duration(32_900_000_000), "32.9 s");
        assert_eq!(value(Unit::Batch(1024), 5_120_000), "5.12 ms (200k calls/s)");
        assert_eq!(value(Unit::KiB, 8 * 1024), "8.00 MiB");
    }

    fn results(name: &str, side: Side, rounds: Vec<Vec<u64>>) -> Results {
        Results { name: name.into(), side, rounds: BTreeMap::from([("t", rounds)]), skipped: None, work_ns: Some(1000) }
    }

    #[test]
    fn skep_rows_carry_ratios_against_every_peer_and_skips_say_why() {
        let mut skipped = results("node package", Side::Skep, vec![]);
        skipped.skipped = Some("not built".into());
        let scenario = Scenario {
            title: "s".into(),
            metrics: vec![Metric { key: "t", label: "time", unit: Unit::Nanos, share_of_work: true }],
            contenders: vec![
                results("skep", Side::Skep, vec![vec![100], vec![100]]),
                skipped,
                results("a", Side::Peer, vec![vec![200], vec![400]]),
                results("b", Side::Peer, vec![vec![50], vec![50]]),
            ],
        };
        let table = render(&[scenario]);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 6, "{table}");
        assert_eq!(
            lines[2],
            "| s | time | skep | 100 ns = 10.0% of 1.00 µs | 100 ns | vs a: 0.33× (0.25–0.50)<br>vs b: 2.00× (2.00–2.00) |"
        );
        assert_eq!(lines[3], "| s | time | node package | skipped | — | not built |");
        assert_eq!(lines[4], "| s | time | a | 300 ns = 30.0% of 1.00 µs | 400 ns |  |");
    }
}
