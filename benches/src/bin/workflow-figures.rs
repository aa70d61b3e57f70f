//! Workflow figures: the scheduler's overhead per step on a 10,000-step
//! graph, and the makespan of critical-path-first scheduling against
//! level-by-level batches on random graphs with random durations (simulated
//! with the pure scheduler, so only the schedule differs).
//!
//! `cargo run --release -p skep-benches --bin workflow-figures`

#![allow(clippy::print_stdout)] // the table on stdout is what this binary is for

use std::time::Instant;

use skep_workflow::{Graph, Policy, Scheduler, simulate};

/// A random DAG: each step needs up to `fan_in` earlier steps among the `window` before it.
fn random_graph(rng: &mut fastrand::Rng, n: usize, fan_in: usize, window: usize) -> Graph {
    let mut edges = Vec::new();
    for after in 1..n {
        for _ in 0..rng.usize(0..=fan_in) {
            let lo = after.saturating_sub(window);
            edges.push((rng.usize(lo..after), after));
        }
    }
    Graph::new(n, edges)
}

fn overhead(n: usize, jobs: usize) -> (f64, f64) {
    let mut rng = fastrand::Rng::with_seed(7);
    let graph = random_graph(&mut rng, n, 3, 200);
    let durations: Vec<f64> = (0..n).map(|_| rng.f64() * 100.0).collect();
    let mut best_total = f64::MAX;
    let mut best_setup = f64::MAX;
    for _ in 0..10 {
        let t0 = Instant::now();
        let order = graph.topo_order().expect("acyclic");
        let mut s = Scheduler::new(&graph, &order, &durations, vec![None; n], Vec::new(), jobs);
        let setup = t0.elapsed().as_secs_f64();
        // Start everything that may start, finish the oldest running step, repeat.
        let mut running = std::collections::VecDeque::new();
        while !s.is_finished() {
            while let Some(step) = s.start_next() {
                running.push_back(step);
            }
            let step = running.pop_front().expect("something runs");
            s.finish(step, true);
        }
        best_total = best_total.min(t0.elapsed().as_secs_f64());
        best_setup = best_setup.min(setup);
    }
    (best_setup / n as f64 * 1e9, best_total / n as f64 * 1e9)
}

fn main() {
    println!("## scheduler overhead (best of 10, release build)");
    for jobs in [8, 64] {
        let (setup, total) = overhead(10_000, jobs);
        println!(
            "10,000 steps, jobs {jobs}: {total:.0} ns per step in all ({setup:.0} ns of it building the scheduler)"
        );
    }
    println!();
    println!("## makespan: level-by-level batches ÷ skep's scheduler (random DAGs, random durations)");
    println!(
        "| steps | jobs | graphs | levels ÷ critical-path-first (mean, worst) | levels ÷ dynamic, equal weights (mean) |"
    );
    println!("| ---: | ---: | ---: | ---: | ---: |");
    let mut rng = fastrand::Rng::with_seed(42);
    for (n, jobs) in [(50, 4), (200, 8), (1000, 16)] {
        let graphs = 200;
        let (mut sum, mut worst, mut sum_dyn) = (0.0, f64::MAX, 0.0);
        for _ in 0..graphs {
            let graph = random_graph(&mut rng, n, 2, 20);
            // Heavy-tailed durations, like real steps: most short, a few long.
            let durations: Vec<f64> = (0..n).map(|_| (rng.f64() * 4.0).exp()).collect();
            let levels = simulate(&graph, &durations, jobs, Policy::Levels);
            let cp = simulate(&graph, &durations, jobs, Policy::CriticalPathFirst);
            let dynamic = simulate(&graph, &durations, jobs, Policy::Dynamic);
            sum += levels / cp;
            worst = worst.min(levels / cp);
            sum_dyn += levels / dynamic;
        }
        let g = f64::from(graphs);
        println!("| {n} | {jobs} | {graphs} | {:.2}× ({:.2}× least) | {:.2}× |", sum / g, worst, sum_dyn / g);
    }
}
