//! The dependency graph of a workflow's steps by index: edges, topological
//! order, cycles, ancestry and longest paths.

/// Steps `0..n` and which steps each one waits for.
#[derive(Debug, Clone, Default)]
pub struct Graph {
    deps: Vec<Vec<usize>>,
    dependents: Vec<Vec<usize>>,
}

impl Graph {
    /// A graph of `n` steps where each `(before, after)` edge makes `after` wait for `before`.
    pub fn new(n: usize, edges: impl IntoIterator<Item = (usize, usize)>) -> Graph {
        let mut graph = Graph { deps: vec![Vec::new(); n], dependents: vec![Vec::new(); n] };
        for (before, after) in edges {
            if !graph.deps[after].contains(&before) {
                graph.deps[after].push(before);
                graph.dependents[before].push(after);
            }
        }
        graph
    }

    /// The number of steps.
    pub fn len(&self) -> usize {
        self.deps.len()
    }

    /// Whether there are no steps.
    pub fn is_empty(&self) -> bool {
        self.deps.is_empty()
    }

    /// The steps `step` waits for.
    pub fn deps(&self, step: usize) -> &[usize] {
        &self.deps[step]
    }

    /// The steps waiting for `step`.
    pub fn dependents(&self, step: usize) -> &[usize] {
        &self.dependents[step]
    }

    /// A topological order, or one cycle (its steps in edge order, the first
    /// repeated at the end) if there is one.
    pub fn topo_order(&self) -> Result<Vec<usize>, Vec<usize>> {
        let n = self.len();
        let mut left: Vec<usize> = self.deps.iter().map(Vec::len).collect();
        let mut order: Vec<usize> = (0..n).filter(|&i| left[i] == 0).collect();
        let mut next = 0;
        while next < order.len() {
            let step = order[next];
            next += 1;
            for &d in &self.dependents[step] {
                left[d] -= 1;
                if left[d] == 0 {
                    order.push(d);
                }
            }
        }
        if order.len() == n {
            return Ok(order);
        }
        // Every step left over has a dep left over: walking deps from any of
        // them must revisit a step, and the walk between the visits is a cycle.
        let start = (0..n).find(|&i| left[i] > 0).expect("some step is left over");
        let mut seen_at = vec![usize::MAX; n];
        let mut walk = Vec::new();
        let mut at = start;
        while seen_at[at] == usize::MAX {
            seen_at[at] = walk.len();
            walk.push(at);
            at = *self.deps[at].iter().find(|&&d| left[d] > 0).expect("a left-over step has a left-over dep");
        }
        let mut cycle: Vec<usize> = walk[seen_at[at]..].to_vec();
        // The walk followed deps (after → before); a cycle reads better in run order.
        cycle.reverse();
        cycle.push(cycle[0]);
        Err(cycle)
    }

    /// Every step `step` depends on, directly or not, as a mask.
    pub fn ancestors(&self, step: usize) -> Vec<bool> {
        let mut mask = vec![false; self.len()];
        let mut stack = self.deps[step].clone();
        while let Some(s) = stack.pop() {
            if !mask[s] {
                mask[s] = true;
                stack.extend_from_slice(&self.deps[s]);
            }
        }
        mask
    }

    /// For each step, the heaviest path from it to the end of the graph,
    /// itself included (the "upward rank" critical-path-first schedules by).
    /// `order` must be a topological order.
    pub fn remaining(&self, order: &[usize], weights: &[f64]) -> Vec<f64> {
        let mut rank = vec![0.0; self.len()];
        for &s in order.iter().rev() {
            let tail = self.dependents[s].iter().map(|&d| rank[d]).fold(0.0, f64::max);
            rank[s] = weights[s] + tail;
        }
        rank
    }

    /// The heaviest path through the graph by `weights`: its steps in order
    /// and its total weight. `order` must be a topological order.
    pub fn longest_path(&self, order: &[usize], weights: &[f64]) -> (Vec<usize>, f64) {
        let rank = self.remaining(order, weights);
        let Some(mut at) = (0..self.len())
            .filter(|&s| self.deps[s].is_empty())
            .max_by(|&a, &b| rank[a].total_cmp(&rank[b]).then(b.cmp(&a)))
        else {
            return (Vec::new(), 0.0);
        };
        let total = rank[at];
        let mut path = vec![at];
        while let Some(&next) =
            self.dependents[at].iter().max_by(|&&a, &&b| rank[a].total_cmp(&rank[b]).then(b.cmp(&a)))
        {
            path.push(next);
            at = next;
        }
        (path, total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn diamond() -> Graph {
        // 0 → 1, 0 → 2, 1 → 3, 2 → 3
        Graph::new(4, [(0, 1), (0, 2), (1, 3), (2, 3)])
    }

    #[test]
    fn topological_order_puts_deps_first() {
        let order = diamond().topo_order().unwrap();
        assert_eq!(order[0], 0);
        assert_eq!(order[3], 3);
    }

    #[test]
    fn a_cycle_is_named_in_run_order() {
        // 0 → 1 → 2 → 0, and 3 hangs off it.
        let g = Graph::new(4, [(0, 1), (1, 2), (2, 0), (2, 3)]);
        let cycle = g.topo_order().unwrap_err();
        assert_eq!(cycle.len(), 4);
        assert_eq!(cycle.first(), cycle.last());
        for pair in cycle.windows(2) {
            assert!(g.deps(pair[1]).contains(&pair[0]), "{pair:?} is not an edge");
        }
    }

    #[test]
    fn a_self_loop_is_a_cycle() {
        let g = Graph::new(2, [(1, 1)]);
        assert_eq!(g.topo_order().unwrap_err(), vec![1, 1]);
    }

    #[test]
    fn longest_path_of_a_diamond_by_hand() {
        let g = diamond();
        let order = g.topo_order().unwrap();
        // a=10, b=20, c=5, d=10: a b d = 40 beats a c d = 25.
        let (path, total) = g.longest_path(&order, &[10.0, 20.0, 5.0, 10.0]);
        assert_eq!(path, vec![0, 1, 3]);
        assert_eq!(total, 40.0);
    }

    #[test]
    fn ancestors_are_transitive() {
        let g = Graph::new(4, [(0, 1), (1, 2)]);
        assert_eq!(g.ancestors(2), vec![true, true, false, false]);
        assert_eq!(g.ancestors(3), vec![false; 4]);
    }
}
