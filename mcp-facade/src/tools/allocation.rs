//! `get_pod_gpu_allocation`: which pods hold GPUs on which nodes, per namespace and node, flagging pods that sit
//! on unhealthy GPU nodes.
//!
//! Which physical GPU a pod got comes from the probe, which reads the kubelet's pod-resources API: each pod lists
//! the GPUs (index, UUID) it holds where the probe reports them (`binding: exact`), and falls back to its request
//! counts where it does not (`binding: requested`: no probe, or a probe that cannot read the kubelet).

use std::collections::BTreeMap;

use gpuscope_crds::Health;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::answer::Answer;
use crate::args::{self, DEFAULT_LIMIT, FLEET_DEFAULT_LIMIT, MAX_LIMIT};
use crate::error::{ToolError, check_name_len};
use crate::gpu_resources::{ResourceCounts, whole_gpus};
use crate::matching::{MAX_SUGGESTIONS, close_matches};
use crate::snapshot::Snapshot;
use crate::tools::common::{Truncated, merge_cuts, node_health, plural, take};

/// Arguments of `get_pod_gpu_allocation`.
#[derive(Clone, Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AllocationArgs {
    /// Only pods in this namespace.
    pub namespace: Option<String>,
    /// Only pods bound to this node.
    pub node_name: Option<String>,
    /// Most rows per list (pods, namespaces, nodes), 1-200; default 20 with node_name, else 10. Totals cover
    /// everything.
    #[schemars(range(min = 1, max = MAX_LIMIT))]
    #[serde(default, deserialize_with = "crate::args::optional_number")]
    pub limit: Option<u32>,
    /// Cluster (kubeconfig context) to ask; omit for the default (first) cluster.
    pub cluster: Option<String>,
}

/// The allocation answer.
#[derive(Clone, Debug, PartialEq, Serialize, JsonSchema)]
pub struct Allocation {
    /// Who holds GPUs, in one line.
    pub verdict: String,
    /// What to do (e.g. move pods off unhealthy nodes).
    pub action: String,
    /// Cluster answered for.
    pub cluster: String,
    /// Totals over the selection.
    pub totals: AllocationTotals,
    /// Per namespace, most GPUs first.
    pub by_namespace: Vec<NamespaceAllocation>,
    /// Per node, most GPUs held first.
    pub by_node: Vec<NodeAllocation>,
    /// Pods, those on unhealthy nodes first, then by namespace and name.
    pub pods: Vec<PodAllocation>,
    /// Present when a list was cut to `limit`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub truncated: Option<Truncated>,
}

/// Totals over the selected pods.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, JsonSchema)]
pub struct AllocationTotals {
    /// Active pods requesting GPUs (not Succeeded or Failed).
    pub pods: usize,
    /// Of those, bound to a node.
    pub bound: usize,
    /// Of those, waiting for a node.
    pub pending: usize,
    /// Whole GPUs requested by active pods.
    pub gpus_requested: u64,
    /// Whole GPUs held by pods bound to nodes.
    pub gpus_held: u64,
    /// MIG slices requested.
    pub mig_slices_requested: u64,
    /// Whole GPUs the nodes in scope offer to pods.
    pub gpus_allocatable: u64,
    /// Pods bound to nodes whose GPUs the operator finds Unhealthy.
    pub pods_on_unhealthy_nodes: usize,
    /// Bound pods whose exact GPUs the probe reports (the rest are known by their requests only).
    pub pods_with_exact_gpus: usize,
    /// Bound pods holding a GPU the operator finds Unhealthy.
    pub pods_on_unhealthy_gpus: usize,
}

/// GPUs per namespace.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, JsonSchema)]
pub struct NamespaceAllocation {
    /// Namespace.
    pub namespace: String,
    /// Active GPU pods.
    pub pods: usize,
    /// Whole GPUs requested.
    pub gpus: u64,
}

/// GPUs per node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, JsonSchema)]
pub struct NodeAllocation {
    /// Node name.
    pub node: String,
    /// Whole GPUs held by pods.
    pub gpus_held: u64,
    /// Whole GPUs allocatable.
    pub gpus_allocatable: u64,
    /// GPU pods.
    pub pods: usize,
    /// The node's GPU health.
    pub health: Health,
}

/// One pod's GPUs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, JsonSchema)]
pub struct PodAllocation {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// Node it is bound to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// Phase.
    pub phase: String,
    /// GPU resources requested, e.g. {"nvidia.com/gpu": 2}.
    pub gpus: ResourceCounts,
    /// Controlling owner, e.g. "Job/train".
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// Health of the node's GPUs (when bound).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node_health: Option<Health>,
    /// "exact": `held_gpus` are the GPUs the kubelet assigned (the probe's binding); "requested": only the request
    /// counts are known.
    pub binding: String,
    /// The GPUs it holds (index, UUID, and the operator's verdict on each), when the binding is exact.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub held_gpus: Vec<HeldGpu>,
}

/// A GPU a pod holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, JsonSchema)]
pub struct HeldGpu {
    /// NVML index.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub index: Option<u32>,
    /// UUID.
    pub uuid: String,
    /// The operator's verdict on it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub health: Option<Health>,
}

impl Answer for Allocation {
    fn verdict(&self) -> &str {
        &self.verdict
    }
    fn action(&self) -> &str {
        &self.action
    }
    fn highlights(&self) -> Vec<String> {
        self.by_namespace
            .iter()
            .take(5)
            .map(|n| format!("{}: {} GPUs in {}", n.namespace, n.gpus, plural(n.pods, "pod")))
            .collect()
    }
}

/// Answer `get_pod_gpu_allocation`.
pub fn answer(snap: &Snapshot, args: &AllocationArgs) -> Result<Allocation, ToolError> {
    // A namespace can hold thousands of GPU pods: only a node bounds the lists.
    let default = if args.node_name.is_some() { DEFAULT_LIMIT } else { FLEET_DEFAULT_LIMIT };
    let limit = args::limit(args.limit, default, MAX_LIMIT)?;
    let node = args.node_name.as_deref().map(|n| snap.require_node(n)).transpose()?;
    if let Some(ns) = args.namespace.as_deref()
        && ns.trim().is_empty()
    {
        return Err(ToolError::invalid("namespace", "is empty; omit it for every namespace"));
    }
    if let Some(ns) = args.namespace.as_deref() {
        check_name_len("namespace", ns)?;
    }
    let all = match &node {
        Some(n) => snap.pods_on(&n.name),
        None => snap.gpu_pods(),
    };
    let active: Vec<_> = all.into_iter().filter(|p| p.is_active()).collect();
    let pods: Vec<_> =
        active.iter().filter(|p| args.namespace.as_deref().is_none_or(|ns| p.namespace == ns)).cloned().collect();

    let health_of = |node: &str| node_health(snap.status(node).as_deref().map(|o| &o.facts));
    let mut totals = AllocationTotals::default();
    let mut namespaces: BTreeMap<String, (usize, u64)> = BTreeMap::new();
    let mut nodes: BTreeMap<String, (u64, usize)> = BTreeMap::new();
    let mut rows = Vec::with_capacity(pods.len());
    for p in &pods {
        let requests = p.gpus.to_map();
        let gpus = whole_gpus(&requests);
        let bound_to = p.node_name.clone();
        totals.pods += 1;
        totals.gpus_requested += gpus;
        totals.mig_slices_requested += crate::gpu_resources::mig_slices(&requests);
        let ns = namespaces.entry(p.namespace.clone()).or_default();
        ns.0 += 1;
        ns.1 += gpus;
        let node_health = bound_to.as_deref().map(health_of);
        match &bound_to {
            Some(n) => {
                totals.bound += 1;
                totals.gpus_held += gpus;
                let entry = nodes.entry(n.clone()).or_default();
                entry.0 += gpus;
                entry.1 += 1;
                if node_health == Some(Health::Unhealthy) {
                    totals.pods_on_unhealthy_nodes += 1;
                }
            }
            None => totals.pending += 1,
        }
        let key = format!("{}/{}", p.namespace, p.name);
        let held_gpus: Vec<HeldGpu> = bound_to
            .as_deref()
            .and_then(|n| snap.status(n))
            .map(|status| {
                status
                    .facts
                    .gpus
                    .iter()
                    .filter(|g| g.pods.iter().any(|k| **k == *key))
                    .map(|g| HeldGpu { index: g.index, uuid: g.uuid.to_string(), health: g.health })
                    .collect()
            })
            .unwrap_or_default();
        if !held_gpus.is_empty() {
            totals.pods_with_exact_gpus += 1;
        }
        if held_gpus.iter().any(|g| g.health == Some(Health::Unhealthy)) {
            totals.pods_on_unhealthy_gpus += 1;
        }
        rows.push(PodAllocation {
            namespace: p.namespace.clone(),
            name: p.name.clone(),
            binding: if held_gpus.is_empty() { "requested" } else { "exact" }.to_string(),
            held_gpus,
            node: bound_to,
            phase: p.phase.clone().unwrap_or_else(|| "Unknown".into()),
            gpus: requests,
            owner: p.owner.clone(),
            node_health,
        });
    }
    totals.gpus_allocatable = match &node {
        Some(n) => n.node.as_deref().map(|n| whole_gpus(n.gpu_allocatable.iter())).unwrap_or(0),
        None => snap.nodes().iter().map(|n| whole_gpus(n.gpu_allocatable.iter())).sum(),
    };

    // Pods on unhealthy GPUs first, then on unhealthy nodes: they are the ones to act on.
    rows.sort_by_key(|r| {
        (!r.held_gpus.iter().any(|g| g.health == Some(Health::Unhealthy)), r.node_health != Some(Health::Unhealthy))
    });
    let mut by_namespace: Vec<NamespaceAllocation> =
        namespaces.into_iter().map(|(namespace, (pods, gpus))| NamespaceAllocation { namespace, pods, gpus }).collect();
    by_namespace.sort_by(|a, b| b.gpus.cmp(&a.gpus).then_with(|| a.namespace.cmp(&b.namespace)));
    let mut by_node: Vec<NodeAllocation> = nodes
        .into_iter()
        .map(|(name, (gpus_held, pods))| NodeAllocation {
            gpus_allocatable: snap.node(&name).map(|n| whole_gpus(n.gpu_allocatable.iter())).unwrap_or(0),
            health: health_of(&name),
            node: name,
            gpus_held,
            pods,
        })
        .collect();
    by_node.sort_by(|a, b| b.gpus_held.cmp(&a.gpus_held).then_with(|| a.node.cmp(&b.node)));

    let hint = || "narrow with namespace or node_name, or raise limit (max 200)".to_string();
    let (pods_out, t1) = take(rows, limit, hint);
    let (by_namespace, t2) = take(by_namespace, limit, hint);
    let (by_node, t3) = take(by_node, limit, hint);
    let truncated = merge_cuts([("pods", t1), ("by_namespace", t2), ("by_node", t3)]);

    let scope = match (&node, &args.namespace) {
        (Some(n), Some(ns)) => format!("in namespace {ns} on node {}", n.name),
        (Some(n), None) => format!("on node {}", n.name),
        (None, Some(ns)) => format!("in namespace {ns}"),
        (None, None) => format!("in cluster {}", snap.cluster()),
    };
    let mut verdict = format!(
        "{} {scope} hold {} of {} allocatable GPUs",
        plural(totals.bound, "bound pod"),
        totals.gpus_held,
        totals.gpus_allocatable
    );
    if totals.pending > 0 {
        let waiting =
            if totals.pending == 1 { "1 pod waits".to_string() } else { format!("{} pods wait", totals.pending) };
        verdict.push_str(&format!("; {waiting} for a node"));
    }
    if totals.mig_slices_requested > 0 {
        verdict.push_str(&format!("; {} MIG slices requested", totals.mig_slices_requested));
    }
    if totals.bound > 0 {
        verdict.push_str(&format!(
            "; exact GPUs known for {} of {} (the probe's pod-resources binding)",
            totals.pods_with_exact_gpus, totals.bound
        ));
    }
    verdict.push('.');
    let action = if totals.pods_on_unhealthy_gpus > 0 {
        let first = pods_out.first().map(|p| format!(" (first: {}/{})", p.namespace, p.name)).unwrap_or_default();
        format!(
            "{} hold Unhealthy GPUs{first}: reschedule them; explain_pod_gpu_failure tells whether a failure was the GPU.",
            plural(totals.pods_on_unhealthy_gpus, "pod")
        )
    } else if totals.pods_on_unhealthy_nodes > 0 {
        let first = pods_out.first().map(|p| format!(" (first: {}/{})", p.namespace, p.name)).unwrap_or_default();
        format!(
            "{} run on nodes with Unhealthy GPUs{first}: drain those nodes or reschedule the pods; see get_gpu_health.",
            plural(totals.pods_on_unhealthy_nodes, "pod")
        )
    } else if totals.pods == 0 {
        match &args.namespace {
            Some(ns) => {
                let known: Vec<String> = active
                    .iter()
                    .map(|p| p.namespace.clone())
                    .collect::<std::collections::BTreeSet<_>>()
                    .into_iter()
                    .collect();
                let close = close_matches(ns, known.iter().map(String::as_str), MAX_SUGGESTIONS);
                if close.is_empty() {
                    "No GPU pods match; omit namespace to see every namespace that holds GPUs.".to_string()
                } else {
                    format!(
                        "No GPU pods in namespace {ns}. Namespaces with GPU pods that look similar: {}.",
                        close.join(", ")
                    )
                }
            }
            None => "None needed: no pod holds GPUs.".to_string(),
        }
    } else {
        "None needed.".to_string()
    };
    Ok(Allocation {
        verdict,
        action,
        cluster: snap.cluster().to_string(),
        totals,
        by_namespace,
        by_node,
        pods: pods_out,
        truncated,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gpu_resources::fixtures::{node, pod};
    use crate::snapshot::fixtures::snapshot;
    use crate::status_fixtures::{healthy, holding, with_verdict};

    fn cluster() -> Snapshot {
        let bad = with_verdict(healthy("n2", 8), 0, Health::Unhealthy, &["XidFallenOffBus"], "");
        let bad = holding(bad, 0, "ml", "train-1");
        snapshot(
            vec![healthy("n1", 8), bad],
            vec![node("n1", 8), node("n2", 8)],
            vec![
                pod("ml", "train-0", Some("n1"), "nvidia.com/gpu", 4, "Running"),
                pod("ml", "train-1", Some("n2"), "nvidia.com/gpu", 2, "Running"),
                pod("research", "notebook", Some("n1"), "nvidia.com/gpu", 1, "Running"),
                pod("research", "queued", None, "nvidia.com/gpu", 8, "Pending"),
                pod("research", "mig", Some("n1"), "nvidia.com/mig-1g.10gb", 2, "Running"),
                pod("ml", "finished", Some("n1"), "nvidia.com/gpu", 8, "Succeeded"),
            ],
        )
    }

    #[test]
    fn fleet_allocation_counts_holders_pending_and_unhealthy_placements() {
        let a = answer(&cluster(), &AllocationArgs::default()).expect("answer");
        assert_eq!(
            a.totals,
            AllocationTotals {
                pods: 5,
                bound: 4,
                pending: 1,
                gpus_requested: 15,
                gpus_held: 7,
                mig_slices_requested: 2,
                gpus_allocatable: 16,
                pods_on_unhealthy_nodes: 1,
                pods_with_exact_gpus: 1,
                pods_on_unhealthy_gpus: 1,
            }
        );
        assert_eq!(a.pods[0].name, "train-1", "the pod on the unhealthy node comes first");
        assert_eq!(a.by_namespace[0], NamespaceAllocation { namespace: "research".into(), pods: 3, gpus: 9 });
        assert_eq!(a.by_node[0].node, "n1");
        assert_eq!(a.by_node[0].gpus_held, 5);
        assert_eq!(
            a.verdict,
            "4 bound pods in cluster test hold 7 of 16 allocatable GPUs; 1 pod waits for a node; 2 MIG slices \
             requested; exact GPUs known for 1 of 4 (the probe's pod-resources binding)."
        );
        assert!(a.action.contains("(first: ml/train-1)"), "{}", a.action);
        assert!(a.action.contains("explain_pod_gpu_failure"), "{}", a.action);
        // train-1 holds GPU 0 of n2, which is Unhealthy: exact; the others are known by their requests.
        assert_eq!(a.pods[0].binding, "exact");
        assert_eq!(
            a.pods[0].held_gpus,
            [HeldGpu { index: Some(0), uuid: crate::status_fixtures::uuid("n2", 0), health: Some(Health::Unhealthy) }]
        );
        assert!(a.pods[1..].iter().all(|p| p.binding == "requested" && p.held_gpus.is_empty()));
    }

    #[test]
    fn namespace_and_node_filters_and_empty_namespace_suggestions() {
        let a =
            answer(&cluster(), &AllocationArgs { namespace: Some("ml".into()), ..Default::default() }).expect("answer");
        assert_eq!(a.totals.pods, 2);
        let a =
            answer(&cluster(), &AllocationArgs { node_name: Some("n1".into()), ..Default::default() }).expect("answer");
        assert_eq!((a.totals.pods, a.totals.gpus_allocatable), (3, 8));
        let a = answer(&cluster(), &AllocationArgs { namespace: Some("reserch".into()), ..Default::default() })
            .expect("answer");
        assert_eq!(a.totals.pods, 0);
        assert!(a.action.contains("research"), "{}", a.action);
        assert!(answer(&cluster(), &AllocationArgs { node_name: Some("n9".into()), ..Default::default() }).is_err());
    }
}
