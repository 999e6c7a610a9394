//! What the operator does to a Node with unhealthy GPUs, when the policy asks for anything: a taint or a cordon,
//! undone when the node is healthy again, and never more Nodes at once than the policy's budget allows.
//!
//! Conservative by construction: nothing happens with mode `none` (the default) or while a node's
//! `spec.remediationPaused` is set; a node whose health is Unknown (its probe went quiet) keeps whatever it has;
//! only what the operator added is ever removed (a cordon is marked with [`CORDON_ANNOTATION`]).

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, MutexGuard};

use gpuscope_crds::Health;
use gpuscope_crds::policy::RemediationMode;
use k8s_openapi::api::core::v1::Node;
use kube::runtime::watcher;

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

/// The Nodes the operator holds out of scheduling now, kept up to date from the Node watch.
///
/// Every reconcile needs "how many *other* Nodes are held out" to check the budget. Counting that from the Node
/// cache is a pass over every Node per reconcile (it used to deep-copy each one, which at 1,000 kubelet-sized
/// Nodes and a reconcile per probe Lease renewal kept a core busy); this set answers in O(log n) and costs
/// O(log n) per Node event. It follows the watch exactly as the reflector's store does, including a relist
/// replacing the contents only once it is complete.
#[derive(Clone, Debug, Default)]
pub struct HeldNodes {
    inner: Arc<Mutex<HeldInner>>,
}

#[derive(Debug, Default)]
struct HeldInner {
    held: BTreeSet<String>,
    /// Held Nodes seen since the current relist began (`Init`), until `InitDone`.
    relisting: Option<BTreeSet<String>>,
}

impl HeldNodes {
    fn lock(&self) -> MutexGuard<'_, HeldInner> {
        // The set is always consistent between statements, so a panic elsewhere leaves nothing half-done.
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Follow one event of the Node watch.
    pub fn observe(&self, event: &watcher::Event<Node>) {
        let mut inner = self.lock();
        match event {
            watcher::Event::Apply(node) => {
                let Some(name) = node.metadata.name.as_deref() else { return };
                if NodeState::of(node).remediated() {
                    inner.held.insert(name.to_string());
                } else {
                    inner.held.remove(name);
                }
            }
            watcher::Event::Delete(node) => {
                if let Some(name) = node.metadata.name.as_deref() {
                    inner.held.remove(name);
                }
            }
            watcher::Event::Init => inner.relisting = Some(BTreeSet::new()),
            watcher::Event::InitApply(node) => {
                if let (Some(name), true) = (node.metadata.name.as_deref(), NodeState::of(node).remediated()) {
                    inner.relisting.get_or_insert_with(BTreeSet::new).insert(name.to_string());
                }
            }
            watcher::Event::InitDone => {
                if let Some(listed) = inner.relisting.take() {
                    inner.held = listed;
                }
            }
        }
    }

    /// How many Nodes other than `node` the operator holds out.
    pub fn held_elsewhere(&self, node: &str) -> usize {
        let inner = self.lock();
        inner.held.len() - usize::from(inner.held.contains(node))
    }
}

/// How many Nodes in `nodes` other than `node` the operator holds out (for a fresh list from the API server).
pub fn held_elsewhere_in(nodes: &[Node], node: &str) -> usize {
    nodes.iter().filter(|n| n.metadata.name.as_deref() != Some(node) && NodeState::of(n).remediated()).count()
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

    fn node(name: &str, tainted: bool) -> Node {
        let mut n = Node::default();
        n.metadata.name = Some(name.into());
        if tainted {
            n.spec = Some(k8s_openapi::api::core::v1::NodeSpec {
                taints: Some(vec![k8s_openapi::api::core::v1::Taint {
                    key: TAINT_KEY.into(),
                    effect: "NoSchedule".into(),
                    ..Default::default()
                }]),
                ..Default::default()
            });
        }
        n
    }

    #[test]
    fn held_nodes_follow_taints_untaints_and_deletes() {
        let held = HeldNodes::default();
        held.observe(&watcher::Event::Apply(node("a", true)));
        held.observe(&watcher::Event::Apply(node("b", true)));
        held.observe(&watcher::Event::Apply(node("c", false)));
        assert_eq!(held.held_elsewhere("a"), 1, "a itself does not count");
        assert_eq!(held.held_elsewhere("c"), 2);
        held.observe(&watcher::Event::Apply(node("b", false)));
        assert_eq!(held.held_elsewhere("c"), 1, "untainted");
        held.observe(&watcher::Event::Delete(node("a", true)));
        assert_eq!(held.held_elsewhere("c"), 0, "deleted");
    }

    #[test]
    fn held_nodes_are_replaced_only_when_a_relist_completes() {
        let held = HeldNodes::default();
        held.observe(&watcher::Event::Apply(node("a", true)));
        held.observe(&watcher::Event::Init);
        held.observe(&watcher::Event::InitApply(node("b", true)));
        held.observe(&watcher::Event::InitApply(node("a", false)));
        assert_eq!(held.held_elsewhere("x"), 1, "the old view stands while the relist is incomplete");
        held.observe(&watcher::Event::InitDone);
        assert_eq!(held.held_elsewhere("x"), 1);
        assert_eq!(held.held_elsewhere("b"), 0, "now only b is held");
    }

    #[test]
    fn held_nodes_agree_with_a_count_over_the_nodes() {
        let nodes: Vec<Node> = (0..50).map(|i| node(&format!("n{i}"), i % 7 == 0)).collect();
        let held = HeldNodes::default();
        held.observe(&watcher::Event::Init);
        for n in &nodes {
            held.observe(&watcher::Event::InitApply(n.clone()));
        }
        held.observe(&watcher::Event::InitDone);
        for n in ["n0", "n1", "n7", "missing"] {
            assert_eq!(held.held_elsewhere(n), held_elsewhere_in(&nodes, n), "{n}");
        }
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
