//! What is not healthy on one node, and what to do about it: the rows of `get_gpu_health`, the evidence of
//! `describe_gpu_node`, and what the fleet indexes rank and count per reason.

use gpuscope_crds::Health;
use gpuscope_crds::health::reason;
use schemars::JsonSchema;
use serde::Serialize;

use crate::actions;
use crate::freshness::ProbeState;
use crate::gpu_ref::{GpuRef, gpu_ref};
use crate::status_facts::StatusFacts;

/// One thing that is not healthy: a GPU's verdict, or a node-level problem (stale probe, no data).
#[derive(Clone, Debug, PartialEq, Serialize, JsonSchema)]
pub struct Problem {
    /// Node name.
    pub node: String,
    /// The verdict.
    pub health: Health,
    /// The GPU, when the problem is one GPU's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gpu: Option<GpuRef>,
    /// Machine-readable reasons, e.g. XidFallenOffBus.
    pub reasons: Vec<String>,
    /// What to do: the operator's message for this GPU, or the action for its first reason. Left out of
    /// fleet-wide lists, where it would repeat the same catalog text per row (see `actions_by_reason`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    /// Whether the probe is reporting (a stale probe means the verdict may be old).
    pub probe: ProbeState,
    /// The blast radius: the pods holding this GPU now ("namespace/name (Job/x)"), from the probe's binding; for a
    /// GPU gone from the inventory, the pods its XIDs hit.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub workloads: Vec<String>,
}

/// Severity order of verdicts: Unhealthy first, Healthy last.
pub fn rank(h: Health) -> u8 {
    match h {
        Health::Unhealthy => 0,
        Health::Degraded => 1,
        Health::Unknown => 2,
        Health::Healthy => 3,
    }
}

/// Problems of one node: its non-healthy GPU verdicts (optionally only `only`), or a node-level entry when the
/// probe is not reporting or the node has no verdicts.
pub fn node_problems(o: Option<&StatusFacts>, name: &str, probe: ProbeState, only: Option<&[GpuRef]>) -> Vec<Problem> {
    let mut out: Vec<Problem> = o
        .map(|o| &*o.problems)
        .unwrap_or(&[])
        .iter()
        // A silent probe explains Unknown verdicts: one node-level entry says it instead of one per GPU.
        .filter(|v| probe.is_fresh() || v.health != Health::Unknown)
        .filter(|v| only.is_none_or(|wanted| wanted.iter().any(|w| w.uuid.as_deref() == Some(v.uuid.as_str()))))
        .map(|v| {
            // Identity from the inventory (index, PCI address), else from the verdict (a vanished GPU).
            let inventoried = o.and_then(|o| o.inventory().find(|g| *g.uuid == *v.uuid));
            // A GPU gone from the inventory (fell off the bus) has no binding: the pods its XIDs hit are its radius.
            let workloads: Vec<String> = match inventoried {
                Some(g) => g.workloads.iter().map(|w| w.to_string()).collect(),
                None => attributed_to(o, &v.uuid),
            };
            let gpu = inventoried.map(gpu_ref).unwrap_or(GpuRef {
                index: v.index,
                uuid: Some(v.uuid.clone()),
                pci_bus_id: None,
            });
            let action = v.message.clone().filter(|m| !m.is_empty()).unwrap_or_else(|| match v.reasons.first() {
                Some(r) => actions::for_reason(r, name),
                None => format!("Inspect {name} with describe_gpu_node."),
            });
            Problem {
                node: name.to_string(),
                health: v.health,
                gpu: Some(gpu),
                reasons: v.reasons.clone(),
                action: Some(action),
                probe,
                workloads,
            }
        })
        .collect();
    // A node-level entry when nothing per GPU explains the node's state.
    let node_level = match (probe, o) {
        (ProbeState::Stale, _) => Some((Health::Unknown, reason::PROBE_STALE)),
        (ProbeState::Missing, _) => Some((Health::Unknown, reason::PROBE_MISSING)),
        (_, Some(o)) if out.is_empty() && only.is_none() && o.health() != Health::Healthy => {
            Some((o.health(), reason::NO_DATA))
        }
        _ => None,
    };
    if let Some((health, why)) = node_level
        && only.is_none()
        && !out.iter().any(|p| p.reasons.iter().any(|r| r == why))
    {
        let why = if why == reason::NO_DATA { summary_reason(o).unwrap_or(why.to_string()) } else { why.to_string() };
        out.push(Problem {
            node: name.to_string(),
            health,
            gpu: None,
            action: Some(actions::for_reason(&why, name)),
            reasons: vec![why],
            probe,
            workloads: Vec::new(),
        });
    }
    out
}

/// The pods the XIDs of GPU `uuid` were attributed to, newest first, at most 4.
fn attributed_to(o: Option<&StatusFacts>, uuid: &str) -> Vec<String> {
    let Some(history) = o.and_then(|o| o.xids.as_deref()) else { return Vec::new() };
    let mut out: Vec<String> = Vec::new();
    let hit =
        history.totals.iter().filter(|t| t.gpu_uuid.as_deref() == Some(uuid)).flat_map(|t| t.pods.iter().flatten());
    for pod in hit {
        let label = pod.label();
        if !out.contains(&label) {
            out.push(label);
        }
    }
    out.truncate(gpuscope_crds::gpu_node_status::MAX_PODS_PER_GPU);
    out
}

/// The reason of the GPUHealthy condition when it is not True (why the node as a whole is not healthy).
fn summary_reason(o: Option<&StatusFacts>) -> Option<String> {
    let c = o?.gpu_healthy.as_ref()?;
    (c.status != "True" && !c.reason.is_empty()).then(|| c.reason.clone())
}
