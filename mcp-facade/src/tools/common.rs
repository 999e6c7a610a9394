//! Pieces several answers share: health counts, cut lists, GPU references, conditions, model and driver totals.

use std::collections::BTreeMap;

use crate::cached::CachedNode;
use gpuscope_crds::Health;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use schemars::JsonSchema;
use serde::Serialize;

use crate::args::GpuSelector;
use crate::error::ToolError;
use crate::index::tally::HealthTally;
use crate::matching::{MAX_SUGGESTIONS, close_prefix_matches};
use crate::snapshot::{NodeRef, Snapshot};
use crate::status_facts::StatusFacts;
use crate::time::rfc3339;

pub use crate::gpu_ref::{GpuRef, gpu_at, gpu_ref};

/// How many nodes or GPUs have each health verdict.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, JsonSchema)]
pub struct HealthCounts {
    /// Total counted.
    pub total: usize,
    /// Healthy.
    pub healthy: usize,
    /// Degraded: usable, needs attention.
    pub degraded: usize,
    /// Unhealthy: do not schedule work on it.
    pub unhealthy: usize,
    /// Unknown: no current data (probe stale or missing, or not evaluated yet).
    pub unknown: usize,
}

impl From<&HealthTally> for HealthCounts {
    fn from(t: &HealthTally) -> HealthCounts {
        HealthCounts {
            total: t.total(),
            healthy: t.get(Health::Healthy),
            degraded: t.get(Health::Degraded),
            unhealthy: t.get(Health::Unhealthy),
            unknown: t.get(Health::Unknown),
        }
    }
}

impl HealthCounts {
    /// Count one verdict.
    pub fn add(&mut self, h: Health) {
        self.total += 1;
        match h {
            Health::Healthy => self.healthy += 1,
            Health::Degraded => self.degraded += 1,
            Health::Unhealthy => self.unhealthy += 1,
            Health::Unknown => self.unknown += 1,
        }
    }
}

/// Where a list was cut to keep the answer small.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, JsonSchema)]
pub struct Truncated {
    /// Entries shown.
    pub shown: usize,
    /// Entries there are.
    pub total: usize,
    /// How to see the rest: the filter or limit that narrows down.
    pub hint: String,
}

/// Keep the first `limit` items; say how many were left out and how to see them.
pub fn take<T>(mut items: Vec<T>, limit: usize, hint: impl FnOnce() -> String) -> (Vec<T>, Option<Truncated>) {
    let cut = cut(items.len(), limit, hint);
    items.truncate(limit);
    (items, cut)
}

/// Where a list of `total` items shown up to `limit` was cut, if it was (for lists read off an index, which
/// knows its length without listing it).
pub fn cut(total: usize, limit: usize, hint: impl FnOnce() -> String) -> Option<Truncated> {
    (total > limit).then(|| Truncated { shown: limit, total, hint: hint() })
}

/// One [`Truncated`] for an answer with several cut lists: the counts of the most cut one, and a hint that names
/// every list that was cut, so a reader knows which rows are missing where.
pub fn merge_cuts<const N: usize>(cuts: [(&str, Option<Truncated>); N]) -> Option<Truncated> {
    let cut: Vec<(&str, Truncated)> = cuts.into_iter().filter_map(|(list, t)| Some((list, t?))).collect();
    let (_, most) = cut.iter().max_by_key(|(_, t)| t.total)?;
    let lists: Vec<String> = cut.iter().map(|(list, t)| format!("{list} {} of {}", t.shown, t.total)).collect();
    Some(Truncated { shown: most.shown, total: most.total, hint: format!("{} shown; {}", lists.join(", "), most.hint) })
}

/// Every GPU a node's status names: the probe's inventory plus GPUs only the operator's verdicts remember
/// (vanished ones), by index.
pub fn gpus_of(facts: &StatusFacts) -> Vec<GpuRef> {
    let mut gpus: Vec<GpuRef> = facts.gpus.iter().map(gpu_ref).collect();
    gpus.sort();
    gpus
}

/// Every GPU of a node with the operator's verdict; a GPU the operator has not judged yet counts as Unknown.
pub fn gpu_healths(facts: &StatusFacts) -> Vec<(GpuRef, Health)> {
    let mut gpus: Vec<(GpuRef, Health)> =
        facts.gpus.iter().map(|g| (gpu_ref(g), g.health.unwrap_or(Health::Unknown))).collect();
    gpus.sort_by(|a, b| a.0.cmp(&b.0));
    gpus
}

/// Count a node's GPUs by verdict like [`gpu_healths`], without allocating (fleet-wide answers do this per node).
pub fn count_gpu_healths(facts: &StatusFacts, counts: &mut HealthCounts) {
    for g in facts.gpus.iter() {
        counts.add(g.health.unwrap_or(Health::Unknown));
    }
}

/// The nodes and GPUs a `node_name` / `gpu` pair selects: the node's matching GPUs, or with a UUID and no node,
/// the fleet's. An index needs a node. Errors name what exists.
pub fn select_gpus(
    snap: &Snapshot,
    node: Option<&NodeRef>,
    selector: &GpuSelector,
) -> Result<Vec<(String, GpuRef)>, ToolError> {
    match node {
        Some(n) => {
            let gpus = n.facts().map(gpus_of).unwrap_or_default();
            let chosen: Vec<(String, GpuRef)> = gpus
                .iter()
                .filter(|g| selector.matches(g.index, g.uuid.as_deref()))
                .map(|g| (n.name.clone(), g.clone()))
                .collect();
            if chosen.is_empty() {
                let close = match selector {
                    GpuSelector::Uuid(wanted) => close_gpus(wanted, gpus.iter().map(|g| (n.name.as_str(), g))),
                    GpuSelector::Index(_) => Vec::new(),
                };
                return Err(ToolError::UnknownGpu {
                    gpu: selector.label(),
                    where_: format!("on node {}", n.name),
                    close,
                    available: gpus
                        .iter()
                        .take(16)
                        .map(|g| format!("{} ({})", g.label(), g.uuid.as_deref().unwrap_or("no UUID")))
                        .collect(),
                });
            }
            Ok(chosen)
        }
        None => {
            if let GpuSelector::Index(i) = selector {
                return Err(ToolError::invalid(
                    "gpu",
                    format!("index {i} names a GPU only on one node: pass node_name too, or give the GPU's UUID"),
                ));
            }
            let chosen: Vec<(String, GpuRef)> = snap
                .statuses()
                .iter()
                .flat_map(|o| {
                    let name = o.name.clone();
                    gpus_of(&o.facts)
                        .into_iter()
                        .filter(|g| selector.matches(g.index, g.uuid.as_deref()))
                        .map(move |g| (name.clone(), g))
                })
                .collect();
            if chosen.is_empty() {
                let wanted = match selector {
                    GpuSelector::Uuid(u) => u.as_str(),
                    GpuSelector::Index(_) => "",
                };
                let statuses = snap.statuses();
                let fleet: Vec<(String, GpuRef)> = statuses
                    .iter()
                    .flat_map(|o| {
                        let name = o.name.clone();
                        gpus_of(&o.facts).into_iter().map(move |g| (name.clone(), g))
                    })
                    .collect();
                return Err(ToolError::UnknownGpu {
                    gpu: selector.label(),
                    where_: format!("in cluster {}", snap.cluster()),
                    close: close_gpus(wanted, fleet.iter().map(|(n, g)| (n.as_str(), g))),
                    available: Vec::new(),
                });
            }
            Ok(chosen)
        }
    }
}

/// The warning an answer carries when a lookup by UUID found more than one GPU (and a log line saying so): a UUID
/// names one GPU, so two GPUs reporting the same one means a cloned node image, a copied scenario or a probe bug,
/// and every answer about that UUID mixes two GPUs.
pub fn shared_uuid_warnings(selector: &GpuSelector, chosen: &[(String, GpuRef)]) -> Vec<String> {
    let GpuSelector::Uuid(wanted) = selector else { return Vec::new() };
    if chosen.len() < 2 {
        return Vec::new();
    }
    let holders: Vec<String> = chosen.iter().map(|(node, g)| format!("node {node} {}", g.label())).collect();
    // The UUID as the GPUs report it, not the (lower-cased) prefix asked for.
    let shared = chosen.iter().find_map(|(_, g)| g.uuid.clone()).unwrap_or_else(|| wanted.clone());
    tracing::warn!(uuid = %shared, gpus = ?holders, "GPUs share a UUID");
    vec![format!(
        "{} GPUs report the UUID {shared} ({}); a UUID names one GPU, so this answer mixes them: check those nodes' \
         probes (a cloned node image or a copied scenario reports another machine's GPUs)",
        chosen.len(),
        holders.join(", ")
    )]
}

/// GPUs whose UUID starts like `wanted`, as "UUID (node n, GPU i)", best first.
fn close_gpus<'a>(wanted: &str, gpus: impl Iterator<Item = (&'a str, &'a GpuRef)>) -> Vec<String> {
    let gpus: Vec<(&str, &GpuRef, &str)> =
        gpus.filter_map(|(node, g)| g.uuid.as_deref().map(|u| (node, g, u))).collect();
    close_prefix_matches(wanted, gpus.iter().map(|(_, _, u)| *u), MAX_SUGGESTIONS)
        .into_iter()
        .filter_map(|uuid| {
            let (node, g, _) = gpus.iter().find(|(_, _, u)| *u == uuid)?;
            Some(format!("{uuid} (node {node}, {})", g.label()))
        })
        .collect()
}

/// A condition, trimmed to what a reader needs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, JsonSchema)]
pub struct ConditionView {
    /// Condition type, e.g. GPUHealthy, ProbeReporting, Ready.
    #[serde(rename = "type")]
    pub type_: String,
    /// True, False or Unknown.
    pub status: String,
    /// CamelCase reason.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub reason: String,
    /// Human-readable detail.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// When the status last changed (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
}

impl From<&Condition> for ConditionView {
    fn from(c: &Condition) -> ConditionView {
        ConditionView {
            type_: c.type_.clone(),
            status: c.status.clone(),
            reason: c.reason.clone(),
            message: c.message.clone(),
            since: Some(rfc3339(&c.last_transition_time)),
        }
    }
}

/// A node's health as the operator published it; Unknown when it has not (or there is no GpuNodeStatus).
pub fn node_health(o: Option<&StatusFacts>) -> Health {
    o.map(StatusFacts::health).unwrap_or(Health::Unknown)
}

/// GPUs of one product.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, JsonSchema)]
pub struct ModelCount {
    /// Product name, e.g. "NVIDIA H100 80GB HBM3".
    pub model: String,
    /// GPUs of this model.
    pub gpus: u64,
    /// Nodes that have at least one.
    pub nodes: usize,
}

/// GPUs per product over a set of nodes, most common first.
pub fn by_model<'a>(statuses: impl IntoIterator<Item = &'a StatusFacts>) -> Vec<ModelCount> {
    // Keys borrow from the facts and each node counts once per model: no allocation per GPU.
    let mut models: BTreeMap<&'a str, (u64, usize)> = BTreeMap::new();
    for s in statuses {
        for (model, n) in s.gpus_by_model() {
            let entry = models.entry(model).or_default();
            entry.0 += n;
            entry.1 += 1;
        }
    }
    model_counts(models.into_iter().map(|(model, (gpus, nodes))| (model, gpus, nodes)))
}

/// (model, GPUs, nodes) counts as listed: most GPUs first, then by name.
pub fn model_counts<'a>(counts: impl IntoIterator<Item = (&'a str, u64, usize)>) -> Vec<ModelCount> {
    let mut out: Vec<ModelCount> =
        counts.into_iter().map(|(model, gpus, nodes)| ModelCount { model: model.to_string(), gpus, nodes }).collect();
    out.sort_by(|a, b| b.gpus.cmp(&a.gpus).then_with(|| a.model.cmp(&b.model)));
    out
}

/// Nodes per driver version.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, JsonSchema)]
pub struct DriverCount {
    /// NVIDIA driver version, or "unknown".
    pub driver_version: String,
    /// Highest CUDA version that driver supports.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cuda_driver_version: Option<String>,
    /// Nodes running it.
    pub nodes: usize,
}

/// Nodes per driver version, most common first.
pub fn by_driver<'a>(statuses: impl IntoIterator<Item = &'a StatusFacts>) -> Vec<DriverCount> {
    let mut drivers: BTreeMap<(String, Option<String>), usize> = BTreeMap::new();
    for s in statuses {
        let Some(d) = s.driver_version.clone() else { continue };
        *drivers.entry((d, s.cuda_driver_version.clone())).or_default() += 1;
    }
    driver_counts(drivers.into_iter().map(|((driver, cuda), nodes)| (driver, cuda, nodes)))
}

/// (driver, CUDA version, nodes) counts as listed: most nodes first, then by version.
pub fn driver_counts(counts: impl IntoIterator<Item = (String, Option<String>, usize)>) -> Vec<DriverCount> {
    let mut out: Vec<DriverCount> = counts
        .into_iter()
        .map(|(driver_version, cuda_driver_version, nodes)| DriverCount { driver_version, cuda_driver_version, nodes })
        .collect();
    out.sort_by(|a, b| b.nodes.cmp(&a.nodes).then_with(|| a.driver_version.cmp(&b.driver_version)));
    out
}

/// A Node's Kubernetes facts that matter for GPUs (asked for with `include_k8s_metadata`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, JsonSchema)]
pub struct NodeMetadata {
    /// GPU-related labels (nvidia.com/*, instance type, topology, role).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// GPU resources the node has, e.g. {"nvidia.com/gpu": 8}.
    pub gpu_capacity: BTreeMap<String, u64>,
    /// GPU resources it offers to pods.
    pub gpu_allocatable: BTreeMap<String, u64>,
    /// Cordoned.
    pub unschedulable: bool,
    /// Taints as key=value:effect.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub taints: Vec<String>,
    /// When the Node object was created (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    /// Kubelet version.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kubelet_version: Option<String>,
    /// Kernel version.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kernel_version: Option<String>,
}

/// Taints as `key=value:effect`.
pub fn taints(node: &CachedNode) -> Vec<String> {
    node.taints
        .iter()
        .map(|t| match &t.value {
            Some(v) if !v.is_empty() => format!("{}={}:{}", t.key, v, t.effect),
            _ => format!("{}:{}", t.key, t.effect),
        })
        .collect()
}

/// The Kubernetes facts of a Node.
pub fn node_metadata(node: &CachedNode) -> NodeMetadata {
    NodeMetadata {
        labels: node.labels.clone(),
        gpu_capacity: node.gpu_capacity.to_map(),
        gpu_allocatable: node.gpu_allocatable.to_map(),
        unschedulable: node.unschedulable,
        taints: taints(node),
        created: node.created.as_ref().map(rfc3339),
        kubelet_version: node.kubelet_version.clone(),
        kernel_version: node.kernel_version.clone(),
    }
}

/// "1 node" / "3 nodes".
pub fn plural(n: usize, word: &str) -> String {
    if n == 1 { format!("1 {word}") } else { format!("{n} {word}s") }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::fixtures::snapshot;
    use crate::status_fixtures::{healthy, uuid};

    #[test]
    fn take_cuts_and_says_how_to_narrow() {
        let (kept, cut) = take(vec![1, 2, 3, 4], 2, || "pass node_name".into());
        assert_eq!(kept, [1, 2]);
        assert_eq!(cut, Some(Truncated { shown: 2, total: 4, hint: "pass node_name".into() }));
        assert_eq!(take(vec![1], 2, || unreachable!()).1, None);
    }

    #[test]
    fn merged_cuts_count_the_most_cut_list_and_name_every_cut_one() {
        let cut = |shown, total| Some(Truncated { shown, total, hint: "pass node_name".into() });
        let merged = merge_cuts([("by_node", cut(10, 700)), ("by_code", None), ("events", cut(5, 1_700))]);
        assert_eq!(
            merged,
            Some(Truncated {
                shown: 5,
                total: 1_700,
                hint: "by_node 10 of 700, events 5 of 1700 shown; pass node_name".into()
            })
        );
        assert_eq!(merge_cuts([("by_node", None)]), None);
    }

    /// Node `name` with two GPUs whose UUIDs are node `from`'s: a cloned node image.
    fn clone_of(name: &str, from: &str) -> gpuscope_crds::GpuNodeStatus {
        let mut o = healthy(name, 2);
        if let Some(status) = o.status.as_mut() {
            status.gpus.iter_mut().flatten().for_each(|g| g.uuid = uuid(from, g.index));
            status.verdicts.iter_mut().flatten().for_each(|v| v.uuid = uuid(from, v.index.unwrap_or_default()));
        }
        o
    }

    #[test]
    fn a_uuid_two_gpus_report_is_found_on_both_with_a_warning_and_a_unique_one_warns_nothing() {
        let snap = snapshot(vec![healthy("n1", 2), clone_of("n2", "n1")], vec![], vec![]);
        let selector = GpuSelector::Uuid(uuid("n1", 1).to_lowercase());
        let chosen = select_gpus(&snap, None, &selector).expect("found");
        assert_eq!(chosen.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(), ["n1", "n2"]);
        let warnings = shared_uuid_warnings(&selector, &chosen);
        assert_eq!(warnings.len(), 1);
        assert!(
            warnings[0].starts_with("2 GPUs report the UUID GPU-n1-1 (node n1 GPU 1, node n2 GPU 1)"),
            "{warnings:?}"
        );
        let unique = GpuSelector::Uuid(uuid("n1", 0).to_lowercase());
        let one = select_gpus(&snap, Some(&snap.require_node("n1").expect("n1")), &unique).expect("found");
        assert!(shared_uuid_warnings(&unique, &one).is_empty());
    }

    #[test]
    fn gpu_selection_by_index_needs_a_node_and_uuid_searches_the_fleet() {
        let snap = snapshot(vec![healthy("n1", 2), healthy("n2", 2)], vec![], vec![]);
        let n1 = snap.require_node("n1").expect("n1");
        let chosen = select_gpus(&snap, Some(&n1), &GpuSelector::Index(1)).expect("index 1");
        assert_eq!(
            chosen,
            vec![(
                "n1".to_string(),
                GpuRef { index: Some(1), uuid: Some(uuid("n1", 1)), pci_bus_id: Some("0000:11:00.0".into()) }
            )]
        );
        let e = select_gpus(&snap, Some(&n1), &GpuSelector::Index(7)).expect_err("no GPU 7").to_string();
        assert!(e.contains("GPU 0 (GPU-n1-0)") && e.contains("GPU 1 (GPU-n1-1)"), "{e}");
        assert!(
            select_gpus(&snap, None, &GpuSelector::Index(0)).expect_err("needs node").to_string().contains("node_name")
        );
        let by_uuid = select_gpus(&snap, None, &GpuSelector::Uuid("gpu-n2-1".into())).expect("uuid");
        assert_eq!(by_uuid[0].0, "n2");
    }

    #[test]
    fn an_unknown_uuid_fleet_wide_names_the_gpus_whose_uuid_it_resembles() {
        let snap = snapshot(vec![healthy("node-a", 2), healthy("node-b", 2)], vec![], vec![]);
        // "GPU-node-b-1" with a character dropped.
        let e = select_gpus(&snap, None, &GpuSelector::Uuid("gpu-node-b1".into())).expect_err("no such GPU");
        let ToolError::UnknownGpu { close, available, .. } = &e else { panic!("{e:?}") };
        assert_eq!(close[0], "GPU-node-b-1 (node node-b, GPU 1)", "{close:?}");
        assert!(available.is_empty());
        let text = e.to_string();
        assert!(
            text.starts_with(
                "no GPU \"gpu-node-b1\" in cluster test. Did you mean: GPU-node-b-1 (node node-b, GPU 1),"
            ),
            "{text}"
        );
        // On one node, the same help.
        let n1 = snap.require_node("node-a").expect("node-a");
        let e = select_gpus(&snap, Some(&n1), &GpuSelector::Uuid("gpu-node-a-7".into())).expect_err("no GPU 7");
        let ToolError::UnknownGpu { close, .. } = &e else { panic!("{e:?}") };
        assert_eq!(close, &["GPU-node-a-0 (node node-a, GPU 0)", "GPU-node-a-1 (node node-a, GPU 1)"]);
        // Nothing alike: no suggestions, still the way out.
        let e = select_gpus(&snap, None, &GpuSelector::Uuid("gpu-ffffffff-0000".into())).expect_err("unknown");
        let ToolError::UnknownGpu { close, .. } = &e else { panic!("{e:?}") };
        assert!(close.is_empty(), "{close:?}");
        assert!(e.to_string().contains("Pass an index"), "{e}");
    }

    #[test]
    fn gpus_without_a_verdict_count_as_unknown() {
        let mut o = healthy("n1", 3);
        if let Some(v) = o.status.as_mut().and_then(|s| s.verdicts.as_mut()) {
            v.truncate(2);
        }
        let healths: Vec<Health> = gpu_healths(&StatusFacts::of(&o)).into_iter().map(|(_, h)| h).collect();
        assert_eq!(healths, [Health::Healthy, Health::Healthy, Health::Unknown]);
    }

    #[test]
    fn models_and_drivers_are_counted_most_common_first() {
        let mut a100 = healthy("n3", 4);
        if let Some(s) = a100.status.as_mut() {
            s.gpus.iter_mut().flatten().for_each(|g| g.product_name = Some("NVIDIA A100".into()));
            s.driver_version = Some("550.54".into());
        }
        let all = [healthy("n1", 8), healthy("n2", 8), a100].map(|o| StatusFacts::of(&o));
        let models = by_model(all.iter());
        assert_eq!(models[0], ModelCount { model: "NVIDIA H100 80GB HBM3".into(), gpus: 16, nodes: 2 });
        assert_eq!(models[1], ModelCount { model: "NVIDIA A100".into(), gpus: 4, nodes: 1 });
        let drivers = by_driver(all.iter());
        assert_eq!((drivers[0].driver_version.as_str(), drivers[0].nodes), ("570.86.15", 2));
    }
}
