//! `describe_gpu_node`: everything about one node in one answer: GPUs with their verdicts and counters, health
//! conditions, probe freshness, recent XIDs, and the Kubernetes side (Node conditions, taints, cordon,
//! allocatable vs allocated GPUs, the pods holding them).

use gpuscope_crds::Health;
use gpuscope_crds::gpu_node_status::{GpuInfo, GpuNodeStatusStatus};
use gpuscope_crds::health::reason;
use kube::ResourceExt;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::actions;
use crate::answer::Answer;
use crate::error::ToolError;
use crate::freshness::{self, Freshness, ProbeState};
use crate::gpu_resources::{ResourceCounts, is_active, node_allocatable, node_capacity, pod_gpu_requests, whole_gpus};
use crate::snapshot::Snapshot;
use crate::time::rfc3339;
use crate::tools::common::{
    ConditionView, GpuRef, NodeMetadata, gpu_at, node_health, node_metadata, plural, taints, unschedulable,
};
use crate::tools::health::node_problems;
use crate::xid_view::{meaning, severity};

/// Most XID totals and pods listed for one node.
const MAX_ROWS: usize = 20;

/// Arguments of `describe_gpu_node`.
#[derive(Clone, Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DescribeArgs {
    /// The node to describe (required).
    pub node_name: String,
    /// Add the Node's GPU-related labels, creation time and versions.
    pub include_k8s_metadata: Option<bool>,
    /// Cluster (kubeconfig context) to ask; omit for the default (first) cluster.
    pub cluster: Option<String>,
}

/// Everything about one GPU node.
#[derive(Clone, Debug, PartialEq, Serialize, JsonSchema)]
pub struct NodeDescription {
    /// The node's state in one line.
    pub verdict: String,
    /// What to do about it.
    pub action: String,
    /// Cluster answered for.
    pub cluster: String,
    /// Node name.
    pub node: String,
    /// The operator's verdict for the node (worst GPU).
    pub health: Health,
    /// Whether the probe reports (ProbeReporting condition).
    pub probe: Freshness,
    /// Driver, CUDA, NVML versions and GPU count.
    pub software: Software,
    /// One entry per GPU, with verdict, telemetry and error counters.
    pub gpus: Vec<GpuDetail>,
    /// The operator's health conditions.
    pub conditions: Vec<ConditionView>,
    /// XID totals per (GPU, code), newest first, explained.
    pub recent_xids: Vec<XidTotalView>,
    /// The Kubernetes side: Node state and GPU pods.
    pub kubernetes: NodeKubernetes,
    /// Fields the driver could not report.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unsupported_fields: Vec<String>,
}

/// Software versions on the node.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, JsonSchema)]
pub struct Software {
    /// GPUs NVML reports.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gpu_count: Option<u32>,
    /// GPU product.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gpu_model: Option<String>,
    /// NVIDIA driver.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub driver_version: Option<String>,
    /// CUDA the driver supports.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cuda_driver_version: Option<String>,
    /// NVML library.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nvml_version: Option<String>,
    /// gpuscope-probe version and backend (nvml or simulated).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub probe: Option<String>,
}

/// One GPU in full.
#[derive(Clone, Debug, PartialEq, Serialize, JsonSchema)]
pub struct GpuDetail {
    /// Identity.
    #[serde(flatten)]
    pub gpu: GpuRef,
    /// The operator's verdict.
    pub health: Health,
    /// Reasons for a non-healthy verdict.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub reasons: Vec<String>,
    /// What to do about this GPU, when not healthy.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    /// Still visible to NVML (false: only the operator's verdict remembers it).
    pub present: bool,
    /// Product name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub product_name: Option<String>,
    /// Telemetry and counters as the probe last wrote them (the GpuNodeStatus's gpus entry).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub telemetry: Option<serde_json::Value>,
}

/// An XID total on this node.
#[derive(Clone, Debug, PartialEq, Serialize, JsonSchema)]
pub struct XidTotalView {
    /// XID code.
    pub code: u32,
    /// NVIDIA's mnemonic.
    pub mnemonic: String,
    /// info, warning or critical.
    pub severity: String,
    /// The GPU.
    pub gpu: GpuRef,
    /// How often.
    pub count: u64,
    /// Newest occurrence (RFC 3339).
    pub last_seen: String,
    /// What to do (catalog).
    pub recommended_action: String,
}

/// The node as Kubernetes sees it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, JsonSchema)]
pub struct NodeKubernetes {
    /// Whether a Node object of this name exists.
    pub node_exists: bool,
    /// The Ready condition's status (True/False/Unknown).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ready: Option<String>,
    /// Cordoned.
    pub unschedulable: bool,
    /// Taints as key=value:effect.
    pub taints: Vec<String>,
    /// Node conditions that are not in their normal state (Ready not True, pressure True, and gpuscope's GPUHealthy).
    pub conditions: Vec<ConditionView>,
    /// GPU resources the node has.
    pub gpu_capacity: ResourceCounts,
    /// GPU resources it offers to pods.
    pub gpu_allocatable: ResourceCounts,
    /// GPU resources held by active pods bound to it.
    pub gpu_allocated: ResourceCounts,
    /// Active pods holding GPUs here (at most 20).
    pub pods: Vec<PodOnNode>,
    /// Active GPU pods on the node, all of them.
    pub pod_count: usize,
    /// Labels, creation time, versions (with include_k8s_metadata).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<NodeMetadata>,
}

/// A pod holding GPUs on the node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, JsonSchema)]
pub struct PodOnNode {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// Phase.
    pub phase: String,
    /// GPU resources it requests.
    pub gpus: ResourceCounts,
}

impl Answer for NodeDescription {
    fn verdict(&self) -> &str {
        &self.verdict
    }
    fn action(&self) -> &str {
        &self.action
    }
    fn highlights(&self) -> Vec<String> {
        let mut lines: Vec<String> = self
            .gpus
            .iter()
            .filter(|g| g.health != Health::Healthy)
            .map(|g| format!("{}: {} ({})", g.gpu.label(), g.health, g.reasons.join(", ")))
            .collect();
        lines.extend(self.recent_xids.iter().take(3).map(|x| {
            format!("XID {} {} on {} x{} (last {})", x.code, x.mnemonic, x.gpu.label(), x.count, x.last_seen)
        }));
        lines
    }
}

fn gpu_details(s: &GpuNodeStatusStatus, node: &str) -> Vec<GpuDetail> {
    let verdicts = s.verdicts.as_deref().unwrap_or(&[]);
    let infos: &[GpuInfo] = s.gpus.as_deref().unwrap_or(&[]);
    let mut out: Vec<GpuDetail> = infos
        .iter()
        .map(|g| {
            let v = verdicts.iter().find(|v| v.uuid == g.uuid);
            let mut telemetry = serde_json::to_value(g).ok();
            if let Some(serde_json::Value::Object(map)) = telemetry.as_mut() {
                // Identity is already in `gpu`; keep only measurements and counters.
                for k in ["index", "uuid", "pciBusId", "productName"] {
                    map.remove(k);
                }
            }
            detail(
                GpuRef { index: Some(g.index), uuid: Some(g.uuid.clone()), pci_bus_id: g.pci_bus_id.clone() },
                v,
                true,
                g.product_name.clone(),
                telemetry,
                node,
            )
        })
        .collect();
    for v in verdicts.iter().filter(|v| !infos.iter().any(|g| g.uuid == v.uuid)) {
        out.push(detail(
            GpuRef { index: v.index, uuid: Some(v.uuid.clone()), pci_bus_id: None },
            Some(v),
            false,
            None,
            None,
            node,
        ));
    }
    out
}

fn detail(
    gpu: GpuRef,
    v: Option<&gpuscope_crds::gpu_node_status::GpuVerdict>,
    present: bool,
    product_name: Option<String>,
    telemetry: Option<serde_json::Value>,
    node: &str,
) -> GpuDetail {
    let health = v.map(|v| v.health).unwrap_or(Health::Unknown);
    let action = v.filter(|v| v.health != Health::Healthy).map(|v| {
        v.message.clone().filter(|m| !m.is_empty()).unwrap_or_else(|| match v.reasons.first() {
            Some(r) => actions::for_reason(r, node),
            None => format!("Inspect {node}."),
        })
    });
    GpuDetail {
        gpu,
        health,
        reasons: v.map(|v| v.reasons.clone()).unwrap_or_default(),
        action,
        present,
        product_name,
        telemetry,
    }
}

fn xid_totals(s: &GpuNodeStatusStatus) -> Vec<XidTotalView> {
    let mut totals: Vec<_> = s.xids.iter().flat_map(|x| x.totals.iter()).collect();
    totals.sort_by(|a, b| b.last_seen.cmp(&a.last_seen));
    totals
        .into_iter()
        .take(MAX_ROWS)
        .map(|t| {
            let m = meaning(t.code);
            XidTotalView {
                code: t.code,
                mnemonic: m.mnemonic,
                severity: severity(t.code).as_str().to_string(),
                gpu: gpu_at(s, &t.pci_bus_id, t.gpu_uuid.as_deref()),
                count: t.count,
                last_seen: rfc3339(&t.last_seen),
                recommended_action: m.recommended_action,
            }
        })
        .collect()
}

fn abnormal(c: &k8s_openapi::api::core::v1::NodeCondition) -> bool {
    match c.type_.as_str() {
        "Ready" | "GPUHealthy" => c.status != "True" || c.type_ == "GPUHealthy",
        _ => c.status != "False",
    }
}

/// Answer `describe_gpu_node`.
pub fn answer(snap: &Snapshot, args: &DescribeArgs) -> Result<NodeDescription, ToolError> {
    let n = snap.require_node(&args.node_name)?;
    let o = n.status.as_deref();
    let s = o.and_then(|o| o.status.as_ref());
    let probe = freshness::of(o, snap.now());
    let health = o.map(node_health).unwrap_or(Health::Unknown);

    let active: Vec<_> = snap.pods_on(&n.name).into_iter().filter(|p| is_active(p)).collect();
    let mut allocated = ResourceCounts::new();
    for p in &active {
        for (k, v) in pod_gpu_requests(p) {
            *allocated.entry(k).or_default() += v;
        }
    }
    let kubernetes = match n.node.as_deref() {
        Some(node) => NodeKubernetes {
            node_exists: true,
            ready: node
                .status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"))
                .map(|c| c.status.clone()),
            unschedulable: unschedulable(node),
            taints: taints(node),
            conditions: node
                .status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .into_iter()
                .flatten()
                .filter(|c| abnormal(c))
                .map(|c| ConditionView {
                    type_: c.type_.clone(),
                    status: c.status.clone(),
                    reason: c.reason.clone().unwrap_or_default(),
                    message: c.message.clone().unwrap_or_default(),
                    since: c.last_transition_time.as_ref().map(rfc3339),
                })
                .collect(),
            gpu_capacity: node_capacity(node),
            gpu_allocatable: node_allocatable(node),
            gpu_allocated: allocated,
            pods: active
                .iter()
                .take(MAX_ROWS)
                .map(|p| PodOnNode {
                    namespace: p.namespace().unwrap_or_default(),
                    name: p.name_any(),
                    phase: p.status.as_ref().and_then(|s| s.phase.clone()).unwrap_or_else(|| "Unknown".into()),
                    gpus: pod_gpu_requests(p),
                })
                .collect(),
            pod_count: active.len(),
            metadata: args.include_k8s_metadata.unwrap_or(false).then(|| node_metadata(node)),
        },
        None => NodeKubernetes {
            node_exists: false,
            gpu_allocated: allocated,
            pod_count: active.len(),
            ..Default::default()
        },
    };

    let gpus = s.map(|s| gpu_details(s, &n.name)).unwrap_or_default();
    let recent_xids = s.map(xid_totals).unwrap_or_default();
    let problems = node_problems(o, &n.name, probe.state, None);

    let model = s.and_then(|s| s.gpu_model.clone()).unwrap_or_else(|| "GPU".to_string());
    let mut verdict = match s {
        None => format!("Node {}: no probe has reported GPU data.", n.name),
        Some(s) => {
            let not_healthy = gpus.iter().filter(|g| g.health != Health::Healthy).count();
            format!(
                "Node {} is {health}: {} x {model}, {} not healthy; probe {}.",
                n.name,
                s.gpu_count.unwrap_or(u32::try_from(gpus.len()).unwrap_or(0)),
                not_healthy,
                match probe.state {
                    ProbeState::Reporting => "reporting".to_string(),
                    ProbeState::Stale => format!("STALE for {}", probe.held_for.as_deref().unwrap_or("a while")),
                    ProbeState::Missing => "missing".to_string(),
                    ProbeState::Unknown => "not evaluated yet".to_string(),
                }
            )
        }
    };
    let allocatable = whole_gpus(&kubernetes.gpu_allocatable);
    if kubernetes.node_exists {
        verdict.push_str(&format!(
            " {} of {} allocatable GPUs held by {}{}.",
            whole_gpus(&kubernetes.gpu_allocated),
            allocatable,
            plural(kubernetes.pod_count, "pod"),
            if kubernetes.unschedulable { "; cordoned" } else { "" }
        ));
    } else {
        verdict.push_str(" No Node object of this name exists (deleted, or a stale GpuNodeStatus).");
    }
    let action = match problems.first() {
        Some(p) if health == Health::Unhealthy && kubernetes.pod_count > 0 => {
            format!("{} Move its {} first.", p.action, plural(kubernetes.pod_count, "GPU pod"))
        }
        Some(p) => p.action.clone(),
        None if s.is_none() => actions::for_reason(reason::NO_DATA, &n.name),
        None => "None needed.".to_string(),
    };
    Ok(NodeDescription {
        verdict,
        action,
        cluster: snap.cluster().to_string(),
        node: n.name.clone(),
        health,
        probe,
        software: Software {
            gpu_count: s.and_then(|s| s.gpu_count),
            gpu_model: s.and_then(|s| s.gpu_model.clone()),
            driver_version: s.and_then(|s| s.driver_version.clone()),
            cuda_driver_version: s.and_then(|s| s.cuda_driver_version.clone()),
            nvml_version: s.and_then(|s| s.nvml_version.clone()),
            probe: s.and_then(|s| s.probe.as_ref()).map(|p| {
                format!(
                    "{} ({})",
                    p.version,
                    serde_json::to_value(p.backend)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_string))
                        .unwrap_or_default()
                )
            }),
        },
        gpus,
        conditions: s
            .and_then(|s| s.conditions.as_ref())
            .map(|cs| cs.iter().map(ConditionView::from).collect())
            .unwrap_or_default(),
        recent_xids,
        kubernetes,
        unsupported_fields: s.and_then(|s| s.unsupported_fields.clone()).unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gpu_resources::fixtures::{cordoned, node, pod};
    use crate::snapshot::fixtures::snapshot;
    use crate::status_fixtures::{healthy, with_verdict, with_xid};

    fn sick_node() -> Snapshot {
        let o = with_verdict(healthy("n1", 4), 2, Health::Unhealthy, &[reason::XID_FALLEN_OFF_BUS], "");
        let o = with_xid(o, 2, 79, 1, "2026-11-25T11:00:00Z", "2026-11-25T11:00:00Z");
        snapshot(
            vec![o],
            vec![cordoned(node("n1", 4))],
            vec![
                pod("ml", "train-0", Some("n1"), "nvidia.com/gpu", 2, "Running"),
                pod("ml", "done", Some("n1"), "nvidia.com/gpu", 1, "Succeeded"),
                pod("ml", "elsewhere", Some("n2"), "nvidia.com/gpu", 1, "Running"),
            ],
        )
    }

    #[test]
    fn describes_gpus_xids_and_the_kubernetes_side_in_one_answer() {
        let d = answer(&sick_node(), &DescribeArgs { node_name: "n1".into(), ..Default::default() }).expect("answer");
        assert_eq!(d.health, Health::Unhealthy);
        assert_eq!(d.gpus.len(), 4);
        assert_eq!(d.gpus[2].reasons, ["XidFallenOffBus"]);
        assert!(d.gpus[2].action.as_deref().is_some_and(|a| a.contains("reboot")));
        assert!(d.gpus[0].action.is_none());
        assert_eq!(d.gpus[0].telemetry.as_ref().map(|t| t["temperatureCelsius"].clone()), Some(serde_json::json!(40)));
        assert_eq!(d.recent_xids[0].code, 79);
        assert_eq!(d.recent_xids[0].gpu.index, Some(2));
        assert_eq!(d.kubernetes.gpu_allocated.get("nvidia.com/gpu"), Some(&2), "only the running pod on n1 holds GPUs");
        assert_eq!(d.kubernetes.pods.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(), ["train-0"]);
        assert!(d.kubernetes.unschedulable);
        assert_eq!(d.kubernetes.taints, ["gpuscope.dev/unhealthy=true:NoSchedule"]);
        assert!(d.kubernetes.conditions.is_empty(), "Ready=True is normal");
        assert_eq!(
            d.verdict,
            "Node n1 is Unhealthy: 4 x NVIDIA H100 80GB HBM3, 1 not healthy; probe reporting. 2 of 4 allocatable GPUs held by 1 pod; cordoned."
        );
        assert!(d.action.ends_with("Move its 1 GPU pod first."), "{}", d.action);
        assert_eq!(d.software.driver_version.as_deref(), Some("570.86.15"));
        assert_eq!(d.software.probe.as_deref(), Some("0.1.0 (simulated)"));
    }

    #[test]
    fn vanished_gpu_and_missing_node_object_are_named() {
        let mut o = with_verdict(healthy("n1", 2), 5, Health::Unhealthy, &[reason::GPU_MISSING], "");
        if let Some(s) = o.status.as_mut() {
            s.unsupported_fields = Some(vec!["gpus.remappedRows".into()]);
        }
        let d =
            answer(&snapshot(vec![o], vec![], vec![]), &DescribeArgs { node_name: "n1".into(), ..Default::default() })
                .expect("answer");
        let missing = d.gpus.iter().find(|g| !g.present).expect("the vanished GPU is listed");
        assert_eq!((missing.gpu.index, missing.health), (Some(5), Health::Unhealthy));
        assert!(!d.kubernetes.node_exists);
        assert!(d.verdict.contains("No Node object"), "{}", d.verdict);
        assert_eq!(d.unsupported_fields, ["gpus.remappedRows"]);
    }

    #[test]
    fn unknown_node_is_an_error_with_suggestions() {
        let e =
            answer(&sick_node(), &DescribeArgs { node_name: "n".into(), ..Default::default() }).expect_err("unknown");
        assert!(e.to_string().contains("Did you mean: n1?"), "{e}");
    }
}
