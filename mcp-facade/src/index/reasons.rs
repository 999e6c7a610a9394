//! Problems counted per reason over a set of nodes, kept current as nodes come and go: how many nodes and GPUs
//! have each reason and the worst verdict it comes with, so that "what to do about each reason" is said once per
//! reason for the whole fleet without walking it.

use std::collections::BTreeMap;

use gpuscope_crds::Health;

use crate::index::tally::health_at;
use crate::problems::{Problem, rank};

/// One reason's counts.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct ReasonCount {
    nodes: usize,
    gpus: usize,
    /// Nodes per worst verdict for this reason, by [`rank`]: the worst of all is the first non-zero slot.
    worst: [usize; 4],
}

/// One node's part of a reason: its worst verdict with that reason and how many GPU problems name it.
struct NodeReason<'a> {
    reason: &'a str,
    worst: Health,
    gpus: usize,
}

fn node_reasons(problems: &[Problem]) -> Vec<NodeReason<'_>> {
    let mut out: Vec<NodeReason<'_>> = Vec::new();
    for p in problems {
        for r in &p.reasons {
            let gpus = usize::from(p.gpu.is_some());
            match out.iter_mut().find(|n| n.reason == r.as_str()) {
                Some(n) => {
                    n.gpus += gpus;
                    if rank(p.health) < rank(n.worst) {
                        n.worst = p.health;
                    }
                }
                None => out.push(NodeReason { reason: r, worst: p.health, gpus }),
            }
        }
    }
    out
}

/// Reasons over a set of nodes: per reason, the nodes and GPUs that have it and the worst verdict.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReasonTally(BTreeMap<String, ReasonCount>);

impl ReasonTally {
    /// Count one node's problems in (`add`) or out.
    pub fn change(&mut self, problems: &[Problem], add: bool) {
        for n in node_reasons(problems) {
            let slot = usize::from(rank(n.worst));
            if add {
                let c = self.0.entry(n.reason.to_string()).or_default();
                c.nodes += 1;
                c.gpus += n.gpus;
                c.worst[slot] += 1;
            } else if let Some(c) = self.0.get_mut(n.reason) {
                c.nodes = c.nodes.saturating_sub(1);
                c.gpus = c.gpus.saturating_sub(n.gpus);
                c.worst[slot] = c.worst[slot].saturating_sub(1);
                if c.nodes == 0 {
                    self.0.remove(n.reason);
                }
            }
        }
    }

    /// (reason, worst verdict, nodes, GPUs), by reason.
    pub fn iter(&self) -> impl Iterator<Item = (&str, Health, usize, usize)> {
        self.0.iter().map(|(reason, c)| {
            let worst = c.worst.iter().position(|n| *n > 0).map(health_at).unwrap_or(Health::Unknown);
            (reason.as_str(), worst, c.nodes, c.gpus)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::freshness::ProbeState;
    use crate::gpu_ref::GpuRef;

    fn problem(node: &str, health: Health, gpu: Option<u32>, reasons: &[&str]) -> Problem {
        Problem {
            node: node.into(),
            health,
            gpu: gpu.map(|i| GpuRef { index: Some(i), ..Default::default() }),
            reasons: reasons.iter().map(|r| r.to_string()).collect(),
            action: None,
            probe: ProbeState::Reporting,
            workloads: Vec::new(),
        }
    }

    #[test]
    fn a_reason_counts_nodes_once_gpus_each_and_keeps_the_worst_verdict_until_its_node_leaves() {
        let a = [
            problem("a", Health::Degraded, Some(0), &["RowRemapPending"]),
            problem("a", Health::Degraded, Some(1), &["RowRemapPending"]),
        ];
        let b = [problem("b", Health::Unhealthy, Some(3), &["RowRemapPending", "XidFallenOffBus"])];
        let mut t = ReasonTally::default();
        t.change(&a, true);
        t.change(&b, true);
        let rows: Vec<_> = t.iter().collect();
        assert_eq!(rows, [("RowRemapPending", Health::Unhealthy, 2, 3), ("XidFallenOffBus", Health::Unhealthy, 1, 1)]);
        t.change(&b, false);
        assert_eq!(t.iter().collect::<Vec<_>>(), [("RowRemapPending", Health::Degraded, 1, 2)]);
        t.change(&a, false);
        assert_eq!(t, ReasonTally::default(), "nothing left behind");
    }
}
