//! A simulated run of a graph with known durations, for comparing schedules
//! (the benchmarks) without running anything.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use super::graph::Graph;
use super::schedule::Scheduler;

/// How the simulated run picks what starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// skep's scheduler: dynamic, heaviest remaining path first (predictions = true durations).
    CriticalPathFirst,
    /// skep's scheduler with equal predictions (a first run, no history).
    Dynamic,
    /// Level by level: all steps of depth k, then all of depth k + 1 (the design this replaces).
    Levels,
}

/// The makespan of running `graph` with `durations` on `jobs` slots.
pub fn simulate(graph: &Graph, durations: &[f64], jobs: usize, policy: Policy) -> f64 {
    let order = graph.topo_order().expect("simulate() needs an acyclic graph");
    match policy {
        Policy::CriticalPathFirst => dynamic(graph, &order, durations, durations, jobs),
        Policy::Dynamic => dynamic(graph, &order, &vec![1.0; graph.len()], durations, jobs),
        Policy::Levels => levels(graph, &order, durations, jobs),
    }
}

/// Time as integer nanoseconds in the event queue keeps ordering exact.
fn ticks(t: f64) -> u64 {
    (t * 1e6).round() as u64
}

fn dynamic(graph: &Graph, order: &[usize], predicted: &[f64], durations: &[f64], jobs: usize) -> f64 {
    let mut scheduler = Scheduler::new(graph, order, predicted, vec![None; graph.len()], Vec::new(), jobs);
    let mut running = BinaryHeap::new();
    let mut now = 0;
    while !scheduler.is_finished() {
        while let Some(step) = scheduler.start_next() {
            running.push(Reverse((now + ticks(durations[step]), step)));
        }
        let Reverse((end, step)) = running.pop().expect("a run that is not finished has a step running");
        now = end;
        scheduler.finish(step, true);
    }
    now as f64 / 1e6
}

fn levels(graph: &Graph, order: &[usize], durations: &[f64], jobs: usize) -> f64 {
    let mut level = vec![0; graph.len()];
    for &s in order {
        level[s] = graph.deps(s).iter().map(|&d| level[d] + 1).max().unwrap_or(0);
    }
    let depth = level.iter().copied().max().map_or(0, |m| m + 1);
    let mut total = 0;
    for k in 0..depth {
        // Within a batch, each step takes the slot that frees first.
        let mut slots: BinaryHeap<Reverse<u64>> = (0..jobs.max(1)).map(|_| Reverse(0)).collect();
        let mut batch_end = 0;
        for s in (0..graph.len()).filter(|&s| level[s] == k) {
            let Reverse(free) = slots.pop().expect("jobs >= 1");
            let end = free + ticks(durations[s]);
            batch_end = batch_end.max(end);
            slots.push(Reverse(end));
        }
        total += batch_end;
    }
    total as f64 / 1e6
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_wait_for_the_slowest_of_each_batch() {
        // 0 (10) → 2 (10); 1 (1) → 3 (1); 3 also → 4 (10).
        // Levels: max(10, 1) + max(10, 1) + 10 = 30. Dynamic: 1 + 1 + 10 = 12 < 20 = 0 → 2.
        let g = Graph::new(5, [(0, 2), (1, 3), (3, 4)]);
        let d = [10.0, 1.0, 10.0, 1.0, 10.0];
        assert_eq!(simulate(&g, &d, 8, Policy::Levels), 30.0);
        assert_eq!(simulate(&g, &d, 8, Policy::CriticalPathFirst), 20.0);
    }

    #[test]
    fn critical_path_first_starts_the_long_chain_early() {
        // One slot; a 3-step chain of 5s and two loose 5s steps... with 2 slots:
        // steps 0 → 1 → 2 (5 each) and 3, 4 alone (5 each). CP-first: 15.
        let g = Graph::new(5, [(0, 1), (1, 2)]);
        let d = [5.0; 5];
        assert_eq!(simulate(&g, &d, 2, Policy::CriticalPathFirst), 15.0);
    }
}
