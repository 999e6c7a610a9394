//! One reconcile: gather the inputs (object, Node, probe Lease, policy), [`evaluate`](crate::evaluate::evaluate),
//! and apply what changed: the operator's status fields, the Node condition, Events for transitions, and
//! remediation where the policy asks. An unchanged object issues no write.

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use gpuscope_crds::GpuNodeStatus;
use gpuscope_crds::gpu_node_status::{GROUP, GpuNodeStatusStatus, OPERATOR_FIELD_MANAGER, VERSION};
use gpuscope_crds::policy::EffectivePolicy;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, ObjectReference};
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Resource, ResourceExt};
use serde_json::json;

use crate::evaluate::{EvaluationInput, ProbeLease, evaluate};
use crate::events::Notice;
use crate::metrics::{Label, OperatorMetrics};
use crate::node_sync;
use crate::remediation::{self, HeldNodes, NodeChange, NodeState};

/// Why a reconcile failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Writing the operator's status fields failed.
    #[error("writing GpuNodeStatus {name} status failed: {source}")]
    Status {
        /// The object.
        name: String,
        #[source]
        source: kube::Error,
    },
    /// Writing to the Node failed.
    #[error("updating Node {name} ({what}) failed: {source}")]
    Node {
        /// The Node.
        name: String,
        /// Which write.
        what: &'static str,
        #[source]
        source: kube::Error,
    },
}

impl Error {
    /// A low-cardinality label for the error counter.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Status { .. } => "status_write",
            Error::Node { .. } => "node_write",
        }
    }
}

/// Shared state of all reconciles.
pub struct Context {
    /// API client (the operator's identity).
    pub client: kube::Client,
    /// Nodes, from a reflector.
    pub nodes: Store<Node>,
    /// Probe Leases in the install namespace, from a reflector.
    pub leases: Store<Lease>,
    /// Every GpuNodeStatus (the controller's own store), to size the remediation budget.
    pub objects: Store<GpuNodeStatus>,
    /// The Nodes the operator holds out now, kept by the Node watch (see [`HeldNodes`]).
    pub held: HeldNodes,
    /// The policy in force (the last valid one).
    pub policy: Arc<RwLock<EffectivePolicy>>,
    /// Publishes Events.
    pub events: Arc<crate::events::Publisher>,
    /// Metrics.
    pub metrics: OperatorMetrics,
    /// Namespace of the probes' Leases.
    pub lease_namespace: String,
    /// Serializes decisions that take a budget slot (see [`remediate`]).
    pub remediation_lock: tokio::sync::Mutex<()>,
}

impl Context {
    fn policy(&self) -> EffectivePolicy {
        self.policy.read().map(|p| p.clone()).unwrap_or_else(|poisoned| poisoned.into_inner().clone())
    }
}

/// Whether the operator-owned fields of `current` already are `desired`'s. Compared in place: copying the whole
/// status (the probe's inventory, telemetry and XID history) on every reconcile only to compare five fields of it
/// was pure overhead.
fn operator_fields_match(current: Option<&GpuNodeStatusStatus>, desired: &GpuNodeStatusStatus) -> bool {
    let none = GpuNodeStatusStatus::default();
    let s = current.unwrap_or(&none);
    s.health == desired.health
        && s.recent_xid_count == desired.recent_xid_count
        && s.verdicts == desired.verdicts
        && s.conditions == desired.conditions
        && s.observed_generation == desired.observed_generation
}

/// Reconcile one GpuNodeStatus.
pub async fn reconcile(obj: Arc<GpuNodeStatus>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = Instant::now();
    ctx.metrics.reconciles.inc();
    let result = reconcile_inner(&obj, &ctx).await;
    ctx.metrics.reconcile_duration.observe(started.elapsed().as_secs_f64());
    if let Err(e) = &result {
        ctx.metrics.reconcile_errors.get_or_create(&Label::of(e.metric_label())).inc();
    }
    result
}

async fn reconcile_inner(obj: &GpuNodeStatus, ctx: &Context) -> Result<Action, Error> {
    let name = obj.name_any();
    let policy = ctx.policy();
    let node = ctx.nodes.get(&ObjectRef::new(&name));
    let lease = ctx
        .leases
        .get(&ObjectRef::new(&format!("gpuscope-probe-{name}")).within(&ctx.lease_namespace))
        .map(|l| ProbeLease::from_lease(&l))
        .unwrap_or_default();
    let boot_id = node
        .as_ref()
        .and_then(|n| n.status.as_ref())
        .and_then(|s| s.node_info.as_ref())
        .map(|i| i.boot_id.clone())
        .filter(|b| !b.is_empty());
    let input = EvaluationInput::from_object(obj, boot_id, lease);
    let evaluation = evaluate(&input, &policy, jiff::Timestamp::now());

    let desired = evaluation.operator_status();
    if !operator_fields_match(obj.status.as_ref(), &desired) {
        let body = json!({
            "apiVersion": format!("{GROUP}/{VERSION}"),
            "kind": "GpuNodeStatus",
            "metadata": { "name": name },
            "status": desired,
        });
        let api: Api<GpuNodeStatus> = Api::all(ctx.client.clone());
        api.patch_status(&name, &PatchParams::apply(OPERATOR_FIELD_MANAGER).force(), &Patch::Apply(&body))
            .await
            .map_err(|source| Error::Status { name: name.clone(), source })?;
        ctx.metrics.status_writes.inc();
    }

    if let Some(node) = &node {
        ensure_owner(obj, node, ctx).await?;
        if node_sync::condition_differs(node, &evaluation.node_condition) {
            let condition = node_sync::node_condition(&evaluation.node_condition, jiff::Timestamp::now());
            node_sync::set_condition(&ctx.client, &name, &condition).await.map_err(|source| Error::Node {
                name: name.clone(),
                what: "condition",
                source,
            })?;
            ctx.metrics.node_writes.inc();
        }
        let stale = node_sync::stale_conditions(node);
        if !stale.is_empty() {
            node_sync::remove_conditions(&ctx.client, &name, &stale).await.map_err(|source| Error::Node {
                name: name.clone(),
                what: "stale conditions",
                source,
            })?;
            ctx.metrics.node_writes.inc();
            tracing::info!(node = %name, ?stale, "removed condition types the operator no longer mirrors");
        }
        remediate(obj, node, evaluation.health, &policy, ctx).await?;
    }

    for t in &evaluation.transitions {
        let event = Notice {
            warning: t.warning,
            reason: t.reason.clone(),
            note: truncate(&t.message, 1024),
            action: format!("Evaluate{}", t.condition_type),
        };
        publish(ctx, &event, &obj.object_ref(&())).await;
        if let Some(node) = &node
            && t.condition_type == gpuscope_crds::health::condition_type::GPU_HEALTHY
        {
            publish(ctx, &event, &node.object_ref(&())).await;
        }
    }

    let requeue = evaluation.requeue_after.unwrap_or(policy.heartbeat_timeout).max(Duration::from_secs(1));
    Ok(Action::requeue(requeue))
}

/// Objects created without an owner (by hand, by an older probe) get their Node as owner, so they are
/// garbage-collected with it.
async fn ensure_owner(obj: &GpuNodeStatus, node: &Node, ctx: &Context) -> Result<(), Error> {
    let uid = node.metadata.uid.clone().unwrap_or_default();
    let mut owners = obj.metadata.owner_references.clone().unwrap_or_default();
    if uid.is_empty() || owners.iter().any(|o| o.kind == "Node" && o.uid == uid) {
        return Ok(());
    }
    // A stale owner (a Node of the same name that was deleted and recreated) is replaced.
    owners.retain(|o| o.kind != "Node");
    owners.push(k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference {
        api_version: "v1".into(),
        kind: "Node".into(),
        name: obj.name_any(),
        uid,
        ..Default::default()
    });
    let api: Api<GpuNodeStatus> = Api::all(ctx.client.clone());
    let patch = json!({ "metadata": { "ownerReferences": owners } });
    api.patch(&obj.name_any(), &PatchParams::default(), &Patch::Merge(patch)).await.map_err(|source| Error::Node {
        name: obj.name_any(),
        what: "owner reference",
        source,
    })?;
    Ok(())
}

async fn publish(ctx: &Context, event: &Notice, reference: &ObjectReference) {
    // An Event that cannot be written must not fail the reconcile (or repeat the status write).
    if let Err(e) = ctx.events.publish(event, reference).await {
        tracing::warn!(error = %e, reason = %event.reason, "could not publish an Event");
    }
}

/// Taint, cordon or release the Node as the policy asks. Taking a budget slot is decided under a lock and on a
/// fresh list of Nodes: the cache can lag behind another reconcile's taint, and concurrent reconciles must not
/// together exceed the budget.
async fn remediate(
    obj: &GpuNodeStatus,
    node: &Node,
    health: gpuscope_crds::Health,
    policy: &EffectivePolicy,
    ctx: &Context,
) -> Result<(), Error> {
    let name = obj.name_any();
    let paused = obj.spec.remediation_paused.unwrap_or(false);
    let budget = remediation::budget(ctx.objects.len(), policy.max_unavailable_percent);
    // O(log n): this runs on every reconcile, and a pass over the Node cache here (let alone a copy of it) is
    // what made the operator's CPU grow with the fleet times the reconcile rate.
    let plan = remediation::plan(
        policy.remediation_mode,
        paused,
        health,
        NodeState::of(node),
        ctx.held.held_elsewhere(&name),
        budget,
    );
    let takes_slot = !NodeState::of(node).remediated()
        && plan.changes.iter().any(|c| matches!(c, NodeChange::AddTaint | NodeChange::Cordon));
    if !takes_slot {
        // A refusal on cached data stands: the cache can only lag behind taints we added, never invent them.
        if plan.refused {
            ctx.metrics.remediations_refused.inc();
            tracing::warn!(node = %name, budget, "remediation refused: the policy's budget is spent");
        }
        return apply_plan(&name, node, plan, ctx).await;
    }
    let _slot = ctx.remediation_lock.lock().await;
    let nodes = Api::<Node>::all(ctx.client.clone())
        .list(&Default::default())
        .await
        .map_err(|source| Error::Node { name: name.clone(), what: "listing for the remediation budget", source })?
        .items;
    let Some(fresh) = nodes.iter().find(|n| n.name_any() == name) else { return Ok(()) };
    let plan = remediation::plan(
        policy.remediation_mode,
        paused,
        health,
        NodeState::of(fresh),
        remediation::held_elsewhere_in(&nodes, &name),
        budget,
    );
    if plan.refused {
        ctx.metrics.remediations_refused.inc();
        tracing::warn!(node = %name, budget, "remediation refused: the policy's budget is spent");
    }
    apply_plan(&name, fresh, plan, ctx).await
}

async fn apply_plan(name: &str, node: &Node, plan: remediation::Plan, ctx: &Context) -> Result<(), Error> {
    for change in plan.changes {
        node_sync::apply_change(&ctx.client, node, change).await.map_err(|source| Error::Node {
            name: name.to_string(),
            what: "remediation",
            source,
        })?;
        let kind = match change {
            NodeChange::AddTaint => "taint",
            NodeChange::RemoveTaint => "untaint",
            NodeChange::Cordon => "cordon",
            NodeChange::Uncordon => "uncordon",
        };
        ctx.metrics.remediations.get_or_create(&Label::of(kind)).inc();
        tracing::info!(node = %name, action = kind, "remediation");
    }
    Ok(())
}

/// What to do after a failed reconcile: retry soon, with the error in the log.
pub fn error_policy(obj: Arc<GpuNodeStatus>, error: &Error, _ctx: Arc<Context>) -> Action {
    tracing::warn!(object = %obj.name_any(), %error, "reconcile failed; retrying");
    Action::requeue(Duration::from_secs(5))
}

fn truncate(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operator_fields_ignore_what_the_probe_owns() {
        let status = GpuNodeStatusStatus {
            driver_version: Some("570".into()),
            health: Some(gpuscope_crds::Health::Healthy),
            ..Default::default()
        };
        let desired = GpuNodeStatusStatus { health: Some(gpuscope_crds::Health::Healthy), ..Default::default() };
        assert!(operator_fields_match(Some(&status), &desired), "the probe's driver version is not ours to compare");
        let degraded = GpuNodeStatusStatus { health: Some(gpuscope_crds::Health::Degraded), ..desired.clone() };
        assert!(!operator_fields_match(Some(&status), &degraded));
        assert!(!operator_fields_match(None, &desired), "an object without status needs the write");
        assert!(operator_fields_match(None, &GpuNodeStatusStatus::default()));
    }

    #[test]
    fn the_comparison_covers_every_field_the_operator_writes() {
        // If the operator's apply body gains a field, operator_fields_match must compare it too, or a change of
        // only that field would never be written.
        let input = crate::evaluate::EvaluationInput { generation: Some(2), ..Default::default() };
        let desired = evaluate(&input, &EffectivePolicy::default(), jiff::Timestamp::UNIX_EPOCH).operator_status();
        let rebuilt = GpuNodeStatusStatus {
            health: desired.health,
            recent_xid_count: desired.recent_xid_count,
            verdicts: desired.verdicts.clone(),
            conditions: desired.conditions.clone(),
            observed_generation: desired.observed_generation,
            ..Default::default()
        };
        assert_eq!(rebuilt, desired);
    }

    #[test]
    fn long_event_notes_are_cut() {
        assert_eq!(truncate("abc", 5), "abc");
        assert_eq!(truncate("abcdef", 3), "abc…");
    }
}
