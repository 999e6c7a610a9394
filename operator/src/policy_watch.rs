//! Follows GpuHealthPolicy objects: validates each, reports the result in its status, and keeps the policy named
//! `default` in force. An invalid policy changes nothing: the last valid one (or the built-in defaults) stays in
//! force, and the policy's status says what is wrong. A change of the policy in force re-evaluates every node.

use std::sync::{Arc, RwLock};

use futures::StreamExt as _;
use gpuscope_crds::gpu_node_status::{GROUP, OPERATOR_FIELD_MANAGER, VERSION};
use gpuscope_crds::policy::{DEFAULT_POLICY_NAME, EffectivePolicy, GpuHealthPolicy, GpuHealthPolicyStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::ResourceExt as _;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::WatchStreamExt as _;
use kube::runtime::watcher::{self, Event};
use serde_json::json;
use tokio::sync::mpsc;

use crate::metrics::OperatorMetrics;
use gpuscope_runtime::backoff::Backoff;

/// The status a policy should carry after validation, keeping the condition's transition time when its status
/// is unchanged.
pub fn status_for(policy: &GpuHealthPolicy, now: jiff::Timestamp) -> (GpuHealthPolicyStatus, Option<EffectivePolicy>) {
    let result = policy.spec.validate();
    let (valid, message, reason) = match &result {
        Ok(_) => (true, None, "Valid"),
        Err(e) => (false, Some(e.to_string()), "Invalid"),
    };
    let status = if valid { "True" } else { "False" };
    let previous = policy
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "Accepted"));
    let transition = match previous {
        Some(p) if p.status == status => p.last_transition_time.clone(),
        _ => Time(now),
    };
    let condition = Condition {
        type_: "Accepted".into(),
        status: status.into(),
        reason: reason.into(),
        message: message.clone().unwrap_or_else(|| "the policy is valid and in force".into()),
        last_transition_time: transition,
        observed_generation: policy.metadata.generation,
    };
    let st = GpuHealthPolicyStatus {
        valid,
        message,
        observed_generation: policy.metadata.generation,
        conditions: Some(vec![condition]),
    };
    (st, result.ok())
}

/// Watch policies until the stream ends; `changed` gets a message whenever the policy in force changes.
pub async fn run(
    client: kube::Client,
    in_force: Arc<RwLock<EffectivePolicy>>,
    changed: mpsc::Sender<()>,
    metrics: OperatorMetrics,
) {
    let api: Api<GpuHealthPolicy> = Api::all(client.clone());
    // Capped at seconds like every other watch of the operator (see gpuscope_runtime::backoff).
    let mut events = watcher::watcher(api.clone(), watcher::Config::default()).backoff(Backoff::default()).boxed();
    metrics.policy_valid.set(1);
    while let Some(event) = events.next().await {
        let event = match event {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!(error = %e, "watching GpuHealthPolicy failed; retrying");
                continue;
            }
        };
        match event {
            Event::Apply(p) | Event::InitApply(p) => {
                let (status, effective) = status_for(&p, jiff::Timestamp::now());
                let name = p.name_any();
                if p.status.as_ref() != Some(&status) {
                    write_status(&api, &name, &status).await;
                }
                if name == DEFAULT_POLICY_NAME {
                    match effective {
                        Some(effective) => {
                            metrics.policy_valid.set(1);
                            if set(&in_force, effective) {
                                tracing::info!("health policy \"default\" is in force");
                                let _ = changed.send(()).await;
                            }
                        }
                        None => {
                            metrics.policy_valid.set(0);
                            tracing::warn!(message = ?status.message, "health policy \"default\" is invalid; keeping the last valid one");
                        }
                    }
                }
            }
            Event::Delete(p) if p.name_any() == DEFAULT_POLICY_NAME => {
                metrics.policy_valid.set(1);
                if set(&in_force, EffectivePolicy::default()) {
                    tracing::info!("health policy \"default\" deleted: built-in defaults are in force");
                    let _ = changed.send(()).await;
                }
            }
            _ => {}
        }
    }
}

fn set(in_force: &RwLock<EffectivePolicy>, policy: EffectivePolicy) -> bool {
    let mut guard = in_force.write().unwrap_or_else(|poisoned| poisoned.into_inner());
    if *guard == policy {
        false
    } else {
        *guard = policy;
        true
    }
}

async fn write_status(api: &Api<GpuHealthPolicy>, name: &str, status: &GpuHealthPolicyStatus) {
    let body = json!({
        "apiVersion": format!("{GROUP}/{VERSION}"),
        "kind": "GpuHealthPolicy",
        "metadata": { "name": name },
        "status": status,
    });
    if let Err(e) =
        api.patch_status(name, &PatchParams::apply(OPERATOR_FIELD_MANAGER).force(), &Patch::Apply(&body)).await
    {
        tracing::warn!(policy = name, error = %e, "could not write the policy's status");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gpuscope_crds::policy::GpuHealthPolicySpec;

    #[test]
    fn an_invalid_policy_gets_a_status_naming_the_problem_and_no_effective_policy() {
        let mut spec: GpuHealthPolicySpec = serde_json::from_value(json!({ "xidWindow": "forever" })).expect("spec");
        spec.xid_window = Some("forever".into());
        let policy = GpuHealthPolicy::new("default", spec);
        let (status, effective) = status_for(&policy, jiff::Timestamp::UNIX_EPOCH);
        assert!(!status.valid);
        assert!(effective.is_none());
        assert!(status.message.as_deref().unwrap_or_default().contains("xidWindow"), "{:?}", status.message);
    }

    #[test]
    fn a_valid_policy_keeps_its_transition_time_when_revalidated() {
        let mut policy = GpuHealthPolicy::new("default", GpuHealthPolicySpec::default());
        let (first, effective) = status_for(&policy, jiff::Timestamp::UNIX_EPOCH);
        assert!(first.valid && effective.is_some());
        policy.status = Some(first.clone());
        let (again, _) = status_for(&policy, jiff::Timestamp::from_second(100).expect("valid"));
        assert_eq!(again, first, "nothing changed: no write needed");
    }
}
