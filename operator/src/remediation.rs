//! What the operator does to a Node with unhealthy GPUs, when the policy asks for anything: a taint or a cordon,
//! undone when the node is healthy again, and never more Nodes at once than the policy's budget allows.
//!
//! Conservative by construction: nothing happens with mode `none` (the default) or while a node's
//! `spec.remediationPaused` is set; a node whose health is Unknown (its probe went quiet) keeps whatever it has;
//! only what the operator added is ever removed (a cordon is marked with [`CORDON_ANNOTATION`]).

use gpuscope_crds::Health;
use gpuscope_crds::policy::RemediationMode;
use k8s_openapi::api::core::v1::Node;

/// The taint the operator adds (effect NoSchedule).
pub const TAINT_KEY: &str = "gpuscope.dev/gpu-unhealthy";
/// Marks a Node the operator cordoned, so it only uncordons its own cordons.
pub const CORDON_ANNOTATION: &str = "gpuscope.dev/cordoned";

/// A Node's remediation state, as far as the operator is concerned.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NodeState {
    /// The Node carries the operator's taint.
    pub tainted: bool,
    /// The Node is unschedulable because the operator cordoned it.
    pub cordoned_by_operator: bool,
}

impl NodeState {
    /// Read from a Node.
    pub fn of(node: &Node) -> NodeState {
        let tainted =
            node.spec.as_ref().and_then(|s| s.taints.as_ref()).is_some_and(|ts| ts.iter().any(|t| t.key == TAINT_KEY));
        let cordoned = node.spec.as_ref().and_then(|s| s.unschedulable).unwrap_or(false);
        let ours = node.metadata.annotations.as_ref().is_some_and(|a| a.contains_key(CORDON_ANNOTATION));
        NodeState { tainted, cordoned_by_operator: cordoned && ours }
    }

    /// Whether the operator currently holds this Node out of scheduling.
    pub fn remediated(self) -> bool {
        self.tainted || self.cordoned_by_operator
    }
}

/// One change to a Node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeChange {
    /// Add the taint.
    AddTaint,
    /// Remove the taint.
    RemoveTaint,
    /// Cordon and mark.
    Cordon,
    /// Uncordon and unmark.
    Uncordon,
}

/// What to do with one Node.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// Changes to make, in order.
    pub changes: Vec<NodeChange>,
    /// A taint or cordon was wanted but the budget is spent.
    pub refused: bool,
}

/// How many Nodes may be held out at once: `percent` of the GPU nodes, rounded down, at least one when above 0.
pub fn budget(gpu_nodes: usize, percent: u32) -> usize {
    if percent == 0 || gpu_nodes == 0 {
        return 0;
    }
    (gpu_nodes.saturating_mul(percent.min(100) as usize) / 100).max(1)
}

/// Decide what to do with one Node.
///
/// - `mode`: the policy's remediation mode; `paused`: the node's `spec.remediationPaused`.
/// - `held_elsewhere`: how many *other* Nodes the operator holds out now; `budget`: the cap.
pub fn plan(
    mode: RemediationMode,
    paused: bool,
    health: Health,
    state: NodeState,
    held_elsewhere: usize,
    budget: usize,
) -> Plan {
    let mut p = Plan::default();
    if paused {
        return p;
    }
    match health {
        Health::Unhealthy => {
            let want_taint = mode == RemediationMode::Taint;
            let want_cordon = mode == RemediationMode::Cordon;
            let adding = (want_taint && !state.tainted) || (want_cordon && !state.cordoned_by_operator);
            // A node already held out does not take another slot when the mode changes.
            if adding && !state.remediated() && held_elsewhere >= budget {
                p.refused = true;
                return p;
            }
            if want_taint && !state.tainted {
                p.changes.push(NodeChange::AddTaint);
            }
            if want_cordon && !state.cordoned_by_operator {
                p.changes.push(NodeChange::Cordon);
            }
            // The policy moved away from a remedy this node still carries: undo it.
            if !want_taint && state.tainted {
                p.changes.push(NodeChange::RemoveTaint);
            }
            if !want_cordon && state.cordoned_by_operator {
                p.changes.push(NodeChange::Uncordon);
            }
        }
        Health::Healthy | Health::Degraded => {
            if state.tainted {
                p.changes.push(NodeChange::RemoveTaint);
            }
            if state.cordoned_by_operator {
                p.changes.push(NodeChange::Uncordon);
            }
        }
        // Nothing current is known: keep what is there, never release on stale data.
        Health::Unknown => {}
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    const CLEAN: NodeState = NodeState { tainted: false, cordoned_by_operator: false };
    const TAINTED: NodeState = NodeState { tainted: true, cordoned_by_operator: false };

    #[test]
    fn mode_none_never_touches_a_node() {
        let p = plan(RemediationMode::None, false, Health::Unhealthy, CLEAN, 0, 10);
        assert_eq!(p, Plan::default());
    }

    #[test]
    fn an_unhealthy_node_is_tainted_and_untainted_when_healthy_again() {
        assert_eq!(
            plan(RemediationMode::Taint, false, Health::Unhealthy, CLEAN, 0, 1).changes,
            vec![NodeChange::AddTaint]
        );
        assert_eq!(
            plan(RemediationMode::Taint, false, Health::Healthy, TAINTED, 1, 1).changes,
            vec![NodeChange::RemoveTaint]
        );
        assert_eq!(plan(RemediationMode::Taint, false, Health::Unhealthy, TAINTED, 0, 1).changes, vec![]);
    }

    #[test]
    fn the_budget_refuses_more_nodes_than_allowed() {
        let p = plan(RemediationMode::Taint, false, Health::Unhealthy, CLEAN, 1, 1);
        assert!(p.refused);
        assert!(p.changes.is_empty());
        // A node already held out keeps its taint even when the budget is spent.
        let p = plan(RemediationMode::Cordon, false, Health::Unhealthy, TAINTED, 5, 1);
        assert_eq!(p.changes, vec![NodeChange::Cordon, NodeChange::RemoveTaint]);
        assert!(!p.refused);
    }

    #[test]
    fn paused_or_unknown_nodes_keep_what_they_have() {
        assert_eq!(plan(RemediationMode::Taint, true, Health::Healthy, TAINTED, 0, 1), Plan::default());
        assert_eq!(plan(RemediationMode::Taint, false, Health::Unknown, TAINTED, 0, 1), Plan::default());
    }

    #[test]
    fn only_the_operators_own_cordon_is_undone() {
        let theirs = NodeState { tainted: false, cordoned_by_operator: false };
        assert_eq!(plan(RemediationMode::Cordon, false, Health::Healthy, theirs, 0, 1), Plan::default());
        let ours = NodeState { tainted: false, cordoned_by_operator: true };
        assert_eq!(
            plan(RemediationMode::Cordon, false, Health::Healthy, ours, 1, 1).changes,
            vec![NodeChange::Uncordon]
        );
    }

    #[test]
    fn budget_is_a_percentage_rounded_down_but_at_least_one() {
        assert_eq!(budget(100, 10), 10);
        assert_eq!(budget(5, 10), 1);
        assert_eq!(budget(19, 10), 1);
        assert_eq!(budget(20, 10), 2);
        assert_eq!(budget(20, 0), 0);
        assert_eq!(budget(0, 10), 0);
        assert_eq!(budget(3, 250), 3);
    }
}
