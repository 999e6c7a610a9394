//! The operator's writes to Nodes: the `GPUHealthy` condition (the way node-problem-detector reports problems)
//! and, where the policy asks, its taint or cordon. Each write touches only what it names.

use k8s_openapi::api::core::v1::{Node, NodeCondition, Taint};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;

use crate::remediation::{CORDON_ANNOTATION, NodeChange, TAINT_KEY};

/// gpuscope condition types found on a Node that the operator does not mirror there (only `GPUHealthy` is
/// mirrored; anything else of ours on a Node is left over from an older version or a hand edit).
pub fn stale_conditions(node: &Node) -> Vec<String> {
    use gpuscope_crds::health::condition_type::{ALL, GPU_HEALTHY};
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .into_iter()
        .flatten()
        .filter(|c| c.type_ != GPU_HEALTHY && ALL.contains(&c.type_.as_str()))
        .map(|c| c.type_.clone())
        .collect()
}

/// Remove `types` from the Node's conditions (strategic merge `$patch: delete`, keyed by type).
pub async fn remove_conditions(client: &kube::Client, node: &str, types: &[String]) -> Result<(), kube::Error> {
    let nodes: Api<Node> = Api::all(client.clone());
    let deletes: Vec<serde_json::Value> = types.iter().map(|t| json!({ "type": t, "$patch": "delete" })).collect();
    let patch = json!({ "status": { "conditions": deletes } });
    nodes.patch_status(node, &PatchParams::default(), &Patch::Strategic(patch)).await?;
    Ok(())
}

/// Whether the Node's mirrored condition differs from `desired` (status, reason or message).
pub fn condition_differs(node: &Node, desired: &Condition) -> bool {
    let current = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == desired.type_));
    match current {
        None => true,
        Some(c) => {
            c.status != desired.status
                || c.reason.as_deref() != Some(desired.reason.as_str())
                || c.message.as_deref() != Some(desired.message.as_str())
        }
    }
}

/// The Node condition for `desired`, keeping its transition time.
pub fn node_condition(desired: &Condition, now: jiff::Timestamp) -> NodeCondition {
    NodeCondition {
        type_: desired.type_.clone(),
        status: desired.status.clone(),
        reason: Some(desired.reason.clone()),
        message: Some(desired.message.clone()),
        last_transition_time: Some(desired.last_transition_time.clone()),
        last_heartbeat_time: Some(Time(now)),
    }
}

/// Set the condition on the Node's status. Strategic merge: Node conditions merge by type, so other
/// conditions (the kubelet's, node-problem-detector's) are untouched.
pub async fn set_condition(client: &kube::Client, node: &str, condition: &NodeCondition) -> Result<(), kube::Error> {
    let nodes: Api<Node> = Api::all(client.clone());
    let patch = json!({ "status": { "conditions": [condition] } });
    nodes.patch_status(node, &PatchParams::default(), &Patch::Strategic(patch)).await?;
    Ok(())
}

/// Apply one remediation change. Taints are an atomic list, so the new list is written with the Node's
/// resourceVersion as a precondition: a concurrent change makes this fail with a conflict and the reconcile
/// retries on fresh data instead of overwriting someone else's taint.
pub async fn apply_change(client: &kube::Client, node: &Node, change: NodeChange) -> Result<(), kube::Error> {
    let nodes: Api<Node> = Api::all(client.clone());
    let name = node.metadata.name.clone().unwrap_or_default();
    let rv = node.metadata.resource_version.clone();
    let mut taints: Vec<Taint> = node.spec.as_ref().and_then(|s| s.taints.clone()).unwrap_or_default();
    let patch = match change {
        NodeChange::AddTaint => {
            taints.retain(|t| t.key != TAINT_KEY);
            taints.push(Taint {
                key: TAINT_KEY.into(),
                value: Some("true".into()),
                effect: "NoSchedule".into(),
                time_added: None,
            });
            json!({ "metadata": { "resourceVersion": rv }, "spec": { "taints": taints } })
        }
        NodeChange::RemoveTaint => {
            taints.retain(|t| t.key != TAINT_KEY);
            json!({ "metadata": { "resourceVersion": rv }, "spec": { "taints": taints } })
        }
        NodeChange::Cordon => json!({
            "metadata": { "resourceVersion": rv, "annotations": { CORDON_ANNOTATION: "true" } },
            "spec": { "unschedulable": true }
        }),
        NodeChange::Uncordon => json!({
            "metadata": { "resourceVersion": rv, "annotations": { CORDON_ANNOTATION: null } },
            "spec": { "unschedulable": null }
        }),
    };
    nodes.patch(&name, &PatchParams::default(), &Patch::Merge(patch)).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::NodeStatus;

    fn condition(status: &str, reason: &str) -> Condition {
        Condition {
            type_: "GPUHealthy".into(),
            status: status.into(),
            reason: reason.into(),
            message: "m".into(),
            last_transition_time: Time(jiff::Timestamp::UNIX_EPOCH),
            observed_generation: None,
        }
    }

    #[test]
    fn only_our_other_condition_types_are_stale_on_a_node() {
        let mut node = Node::default();
        let later = jiff::Timestamp::from_second(100).expect("valid");
        let mut xid = node_condition(&condition("True", "XidRateExceeded"), later);
        xid.type_ = "XIDErrors".into();
        let mut kubelet = node_condition(&condition("True", "KubeletReady"), later);
        kubelet.type_ = "Ready".into();
        node.status = Some(NodeStatus {
            conditions: Some(vec![node_condition(&condition("True", "Healthy"), later), xid, kubelet]),
            ..Default::default()
        });
        assert_eq!(stale_conditions(&node), vec!["XIDErrors".to_string()]);
    }

    #[test]
    fn only_a_changed_status_reason_or_message_needs_a_node_write() {
        let mut node = Node::default();
        assert!(condition_differs(&node, &condition("True", "Healthy")));
        let later = jiff::Timestamp::from_second(100).expect("valid");
        node.status = Some(NodeStatus {
            conditions: Some(vec![node_condition(&condition("True", "Healthy"), later)]),
            ..Default::default()
        });
        assert!(!condition_differs(&node, &condition("True", "Healthy")), "a newer heartbeat alone is no change");
        assert!(condition_differs(&node, &condition("False", "XidFallenOffBus")));
    }
}
