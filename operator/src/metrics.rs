//! The operator's Prometheus metrics (`gpuscope_operator_*`).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// A label with one low-cardinality value.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Label {
    /// The value (an error kind, a health verdict, a remediation...).
    pub kind: String,
}

impl Label {
    /// A label with `kind`.
    pub fn of(kind: &str) -> Label {
        Label { kind: kind.to_string() }
    }
}

/// Labels for a condition count.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ConditionLabels {
    /// Condition type, e.g. GPUHealthy.
    pub condition: String,
    /// True, False or Unknown.
    pub status: String,
}

/// Every metric the operator exports.
#[derive(Clone, Debug)]
pub struct OperatorMetrics {
    /// Reconciles run.
    pub reconciles: Counter,
    /// Reconciles that failed, by error kind.
    pub reconcile_errors: Family<Label, Counter>,
    /// Reconcile duration in seconds.
    pub reconcile_duration: Histogram,
    /// Status writes issued (an unchanged object issues none).
    pub status_writes: Counter,
    /// Node condition writes issued.
    pub node_writes: Counter,
    /// GPUs by health verdict, across all nodes (recomputed on every reconcile of a node).
    pub gpus_by_health: Family<Label, Gauge>,
    /// Nodes by condition type and status (e.g. GPUHealthy=False), across the fleet.
    pub nodes_by_condition: Family<ConditionLabels, Gauge>,
    /// Remediations taken, by kind (taint, untaint, cordon, uncordon).
    pub remediations: Family<Label, Counter>,
    /// Remediations the budget refused.
    pub remediations_refused: Counter,
    /// 1 while this replica leads.
    pub leader: Gauge,
    /// 1 while the health policy in force is the built-in default or valid; 0 while an invalid policy is ignored.
    pub policy_valid: Gauge,
}

impl Default for OperatorMetrics {
    fn default() -> Self {
        OperatorMetrics {
            reconciles: Counter::default(),
            reconcile_errors: Family::default(),
            reconcile_duration: Histogram::new(exponential_buckets(0.001, 2.0, 14)),
            status_writes: Counter::default(),
            node_writes: Counter::default(),
            gpus_by_health: Family::default(),
            nodes_by_condition: Family::default(),
            remediations: Family::default(),
            remediations_refused: Counter::default(),
            leader: Gauge::default(),
            policy_valid: Gauge::default(),
        }
    }
}

impl OperatorMetrics {
    /// Register every metric under `gpuscope_operator_`.
    pub fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("gpuscope_operator");
        r.register("reconciles", "Reconciles run", self.reconciles.clone());
        r.register("reconcile_errors", "Reconciles that failed, by kind", self.reconcile_errors.clone());
        r.register("reconcile_duration_seconds", "Reconcile duration", self.reconcile_duration.clone());
        r.register("status_writes", "GpuNodeStatus status writes issued", self.status_writes.clone());
        r.register("node_writes", "Node condition writes issued", self.node_writes.clone());
        r.register("gpus", "GPUs by health verdict", self.gpus_by_health.clone());
        r.register("nodes", "GPU nodes by condition type and status", self.nodes_by_condition.clone());
        r.register("remediations", "Node remediations taken, by kind", self.remediations.clone());
        r.register("remediations_refused", "Remediations refused by the budget", self.remediations_refused.clone());
        r.register("leader", "1 while this replica leads", self.leader.clone());
        r.register("policy_valid", "0 while an invalid health policy is being ignored", self.policy_valid.clone());
    }
}
