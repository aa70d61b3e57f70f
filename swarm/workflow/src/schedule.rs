//! The pure scheduler: which step to start next. A step is ready as soon as
//! every step it waits for has succeeded (not level by level); among ready
//! steps the one with the heaviest predicted path to the end goes first,
//! within the `jobs` bound and each role's capacity.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use super::graph::Graph;

/// Why a step was skipped: `failed` did not succeed, and `via` is the step
/// it waited for through which that reached it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SkipCause {
    /// The step that failed.
    pub failed: usize,
    /// The direct dependency that did not succeed (`failed` itself or a skipped step).
    pub via: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Waiting,
    Ready,
    Running,
    Done,
    Skipped,
}

#[derive(Debug, PartialEq)]
struct Ready {
    priority: f64,
    step: usize,
}

impl Eq for Ready {}

impl Ord for Ready {
    fn cmp(&self, other: &Self) -> Ordering {
        // Heaviest remaining path first; ties go to the earlier step in the file.
        self.priority.total_cmp(&other.priority).then(other.step.cmp(&self.step))
    }
}

impl PartialOrd for Ready {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// The scheduler's state for one run.
#[derive(Debug)]
pub struct Scheduler {
    dependents: Vec<Vec<usize>>,
    waiting_on: Vec<usize>,
    priority: Vec<f64>,
    state: Vec<State>,
    ready: BinaryHeap<Ready>,
    role: Vec<Option<usize>>,
    capacity: Vec<usize>,
    busy: Vec<usize>,
    jobs: usize,
    running: usize,
    settled: usize,
}

impl Scheduler {
    /// A scheduler over `graph` (`order` topological) with `predicted`
    /// durations per step, step `i` taking a slot of role `role[i]` (an index
    /// into `capacity`), at most `jobs` steps at once.
    pub fn new(
        graph: &Graph,
        order: &[usize],
        predicted: &[f64],
        role: Vec<Option<usize>>,
        capacity: Vec<usize>,
        jobs: usize,
    ) -> Scheduler {
        let n = graph.len();
        let priority = graph.remaining(order, predicted);
        let mut scheduler = Scheduler {
            dependents: (0..n).map(|s| graph.dependents(s).to_vec()).collect(),
            waiting_on: (0..n).map(|s| graph.deps(s).len()).collect(),
            priority,
            state: vec![State::Waiting; n],
            ready: BinaryHeap::new(),
            busy: vec![0; capacity.len()],
            role,
            capacity,
            jobs: jobs.max(1),
            running: 0,
            settled: 0,
        };
        for s in 0..n {
            if scheduler.waiting_on[s] == 0 {
                scheduler.make_ready(s);
            }
        }
        scheduler
    }

    fn make_ready(&mut self, step: usize) {
        self.state[step] = State::Ready;
        self.ready.push(Ready { priority: self.priority[step], step });
    }

    /// The predicted heaviest path from each step to the end, itself included.
    pub fn priorities(&self) -> &[f64] {
        &self.priority
    }

    /// A step to start now, if one is ready and a job slot and its role's capacity allow.
    pub fn start_next(&mut self) -> Option<usize> {
        if self.running >= self.jobs {
            return None;
        }
        let mut blocked = Vec::new();
        let mut found = None;
        while let Some(candidate) = self.ready.pop() {
            let fits = self.role[candidate.step].is_none_or(|r| self.busy[r] < self.capacity[r]);
            if fits {
                found = Some(candidate.step);
                break;
            }
            blocked.push(candidate);
        }
        self.ready.extend(blocked);
        let step = found?;
        self.state[step] = State::Running;
        self.running += 1;
        if let Some(r) = self.role[step] {
            self.busy[r] += 1;
        }
        Some(step)
    }

    /// Books the end of a running step. On failure, returns the steps that
    /// can now never run (its dependents, transitively), marked skipped.
    pub fn finish(&mut self, step: usize, ok: bool) -> Vec<(usize, SkipCause)> {
        assert_eq!(self.state[step], State::Running, "finish() of a step that is not running");
        self.running -= 1;
        self.settled += 1;
        if let Some(r) = self.role[step] {
            self.busy[r] -= 1;
        }
        if ok {
            self.state[step] = State::Done;
            for i in 0..self.dependents[step].len() {
                let d = self.dependents[step][i];
                self.waiting_on[d] -= 1;
                if self.waiting_on[d] == 0 && self.state[d] == State::Waiting {
                    self.make_ready(d);
                }
            }
            return Vec::new();
        }
        self.state[step] = State::Skipped;
        let mut skipped = Vec::new();
        let mut stack = vec![step];
        while let Some(at) = stack.pop() {
            for &d in &self.dependents[at] {
                if self.state[d] == State::Waiting {
                    self.state[d] = State::Skipped;
                    self.settled += 1;
                    skipped.push((d, SkipCause { failed: step, via: at }));
                    stack.push(d);
                }
            }
        }
        skipped
    }

    /// Steps started and not yet finished.
    pub fn running(&self) -> usize {
        self.running
    }

    /// Whether every step has finished or been skipped.
    pub fn is_finished(&self) -> bool {
        self.settled == self.state.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn plain(graph: &Graph, weights: &[f64], jobs: usize) -> Scheduler {
        let order = graph.topo_order().unwrap();
        Scheduler::new(graph, &order, weights, vec![None; graph.len()], Vec::new(), jobs)
    }

    fn drain(s: &mut Scheduler) -> Vec<usize> {
        std::iter::from_fn(|| s.start_next()).collect()
    }

    #[test]
    fn diamond_runs_the_middle_in_parallel_heaviest_first() {
        let g = Graph::new(4, [(0, 1), (0, 2), (1, 3), (2, 3)]);
        let mut s = plain(&g, &[1.0, 1.0, 5.0, 1.0], 4);
        assert_eq!(drain(&mut s), vec![0]);
        s.finish(0, true);
        assert_eq!(drain(&mut s), vec![2, 1], "2 has the heavier path");
        s.finish(1, true);
        assert_eq!(drain(&mut s), Vec::<usize>::new(), "3 still waits for 2");
        s.finish(2, true);
        assert_eq!(drain(&mut s), vec![3]);
        s.finish(3, true);
        assert!(s.is_finished());
    }

    #[test]
    fn a_ready_step_starts_without_waiting_for_its_level() {
        // 0 → 2 and 1 (slow) alone: 2 must start when 0 ends, while 1 runs.
        let g = Graph::new(3, [(0, 2)]);
        let mut s = plain(&g, &[1.0, 10.0, 1.0], 2);
        assert_eq!(drain(&mut s), vec![1, 0]);
        s.finish(0, true);
        assert_eq!(drain(&mut s), vec![2]);
    }

    #[test]
    fn jobs_and_role_capacity_bound_what_runs() {
        let g = Graph::new(4, []);
        let order = g.topo_order().unwrap();
        // Steps 0..3 all of role 0, which takes 2 at once; 3 is a command.
        let roles = vec![Some(0), Some(0), Some(0), None];
        let mut s = Scheduler::new(&g, &order, &[4.0, 3.0, 2.0, 1.0], roles, vec![2], 3);
        assert_eq!(drain(&mut s), vec![0, 1, 3]);
        s.finish(3, true);
        assert_eq!(drain(&mut s), Vec::<usize>::new(), "role 0 is full");
        s.finish(0, true);
        assert_eq!(drain(&mut s), vec![2]);
    }

    #[test]
    fn a_failure_skips_dependents_transitively_and_spares_the_rest() {
        // 0 → 1 → 2, and 3 on its own.
        let g = Graph::new(4, [(0, 1), (1, 2)]);
        let mut s = plain(&g, &[1.0; 4], 4);
        assert_eq!(drain(&mut s), vec![0, 3]);
        let skipped = s.finish(0, false);
        assert_eq!(skipped, vec![(1, SkipCause { failed: 0, via: 0 }), (2, SkipCause { failed: 0, via: 1 })]);
        assert!(!s.is_finished());
        s.finish(3, true);
        assert!(s.is_finished());
    }

    fn random_dag() -> impl Strategy<Value = (usize, Vec<(usize, usize)>, Vec<f64>, usize)> {
        (1usize..40).prop_flat_map(|n| {
            let edges = proptest::collection::vec((0..n, 0..n), 0..n * 3)
                .prop_map(|pairs| pairs.into_iter().filter(|(a, b)| a < b).collect::<Vec<_>>());
            let weights = proptest::collection::vec(0.0f64..100.0, n);
            (Just(n), edges, weights, 1usize..6)
        })
    }

    proptest! {
        #[test]
        fn every_step_starts_after_all_its_needs_succeeded(
            (n, edges, weights, jobs) in random_dag(), seed in any::<u64>(),
        ) {
            let g = Graph::new(n, edges);
            let mut s = plain(&g, &weights, jobs);
            let mut rng = fastrand::Rng::with_seed(seed);
            let (mut done, mut running) = (vec![false; n], Vec::new());
            let mut started = 0;
            while !s.is_finished() {
                while let Some(step) = s.start_next() {
                    prop_assert!(g.deps(step).iter().all(|&d| done[d]), "{step} started before its needs");
                    running.push(step);
                    started += 1;
                }
                prop_assert!(running.len() <= jobs);
                prop_assert!(!running.is_empty(), "nothing runs but the run is not finished");
                let step = running.swap_remove(rng.usize(..running.len()));
                s.finish(step, true);
                done[step] = true;
            }
            prop_assert_eq!(started, n);
        }
    }
}
