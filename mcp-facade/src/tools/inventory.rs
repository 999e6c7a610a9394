//! `get_gpu_inventory`: which GPUs the fleet (or one node) has: model, UUID, memory, driver/CUDA, MIG,
//! utilization, temperature, power; totals by model and driver.

use gpuscope_crds::Health;
use gpuscope_crds::gpu_node_status::GpuInfo;
use gpuscope_crds::health::reason;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::actions;
use crate::answer::Answer;
use crate::args::{self, DEFAULT_LIMIT, FLEET_DEFAULT_LIMIT, GpuArg, GpuSelector, MAX_LIMIT};
use crate::error::ToolError;
use crate::freshness::{self, ProbeState};
use crate::snapshot::{NodeRef, Snapshot};
use crate::status_facts::{GpuFacts, StatusFacts};
use crate::tools::common::{
    DriverCount, GpuRef, ModelCount, NodeMetadata, Truncated, by_driver, by_model, driver_counts, model_counts,
    node_health, node_metadata, plural, select_gpus, shared_uuid_warnings,
};

/// Arguments of `get_gpu_inventory`.
#[derive(Clone, Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct InventoryArgs {
    /// Node to list GPU by GPU. Omit for the whole fleet: one row per node, with totals by model and driver.
    pub node_name: Option<String>,
    /// One GPU: its NVML index (with node_name) or its UUID or the leading part of it (alone or with node_name).
    pub gpu: Option<GpuArg>,
    /// Most node rows to return (1-200; default 10 fleet-wide, 20 with gpu); totals always cover every node.
    #[schemars(range(min = 1, max = MAX_LIMIT))]
    #[serde(default, deserialize_with = "crate::args::optional_number")]
    pub limit: Option<u32>,
    /// Add each node's Kubernetes facts: GPU labels, capacity/allocatable, taints, cordon, versions.
    pub include_k8s_metadata: Option<bool>,
    /// Cluster (kubeconfig context) to ask; omit for the default (first) cluster.
    pub cluster: Option<String>,
}

/// The inventory answer.
#[derive(Clone, Debug, PartialEq, Serialize, JsonSchema)]
pub struct Inventory {
    /// What the inventory is, in one line.
    pub verdict: String,
    /// What to do next.
    pub action: String,
    /// Cluster answered for.
    pub cluster: String,
    /// Totals over every node in scope (never cut).
    pub totals: InventoryTotals,
    /// GPUs per model, most common first.
    pub by_model: Vec<ModelCount>,
    /// Nodes per driver version, most common first (at most 10).
    pub by_driver: Vec<DriverCount>,
    /// One row per node, by name; GPU detail when a node or GPU was asked for.
    pub nodes: Vec<NodeInventory>,
    /// Present when `nodes` was cut to `limit`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub truncated: Option<Truncated>,
    /// Present when two or more GPUs report the UUID asked for (a UUID names one GPU).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// Counts over the nodes in scope.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, JsonSchema)]
pub struct InventoryTotals {
    /// GPU nodes.
    pub nodes: usize,
    /// GPU nodes whose probe has reported no GPUs (no GpuNodeStatus, or an empty one).
    pub nodes_without_gpu_data: usize,
    /// GPUs.
    pub gpus: u64,
    /// GPU memory, GiB.
    pub memory_gib: u64,
    /// GPUs with MIG enabled.
    pub mig_enabled_gpus: usize,
}

/// One node's GPUs.
#[derive(Clone, Debug, PartialEq, Serialize, JsonSchema)]
pub struct NodeInventory {
    /// Node name.
    pub name: String,
    /// The operator's verdict for the node.
    pub health: Health,
    /// Whether the probe is reporting (data is current).
    pub probe: ProbeState,
    /// GPUs the probe sees.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gpu_count: Option<u32>,
    /// GPU product.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gpu_model: Option<String>,
    /// NVIDIA driver version.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub driver_version: Option<String>,
    /// Highest CUDA version the driver supports.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cuda_driver_version: Option<String>,
    /// Mean GPU utilization over the node's GPUs, percent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mean_gpu_utilization_percent: Option<u32>,
    /// Hottest GPU, degrees Celsius.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_temperature_celsius: Option<u32>,
    /// Per-GPU detail (when node_name or gpu was given).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub gpus: Vec<GpuInventory>,
    /// Kubernetes facts (with include_k8s_metadata).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kubernetes: Option<NodeMetadata>,
}

/// One GPU's identity and telemetry snapshot.
#[derive(Clone, Debug, PartialEq, Serialize, JsonSchema)]
pub struct GpuInventory {
    /// NVML index.
    pub index: u32,
    /// UUID.
    pub uuid: String,
    /// The operator's verdict for this GPU.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub health: Option<Health>,
    /// Product name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub product_name: Option<String>,
    /// PCI bus id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pci_bus_id: Option<String>,
    /// Board serial number.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub serial: Option<String>,
    /// Total memory, MiB.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_total_mib: Option<u64>,
    /// Used memory, MiB.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_used_mib: Option<u64>,
    /// GPU utilization, percent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gpu_utilization_percent: Option<u32>,
    /// Memory utilization, percent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_utilization_percent: Option<u32>,
    /// Temperature, degrees Celsius.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub temperature_celsius: Option<u32>,
    /// Power draw, watts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub power_draw_watts: Option<u32>,
    /// Power limit, watts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub power_limit_watts: Option<u32>,
    /// MIG mode.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mig: Option<MigView>,
}

/// MIG mode of a GPU.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, JsonSchema)]
pub struct MigView {
    /// Enabled now.
    pub enabled: bool,
    /// Mode after the next GPU reset, when it differs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pending_enabled: Option<bool>,
    /// MIG devices configured.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub devices: Option<u32>,
}

impl Answer for Inventory {
    fn verdict(&self) -> &str {
        &self.verdict
    }
    fn action(&self) -> &str {
        &self.action
    }
    fn highlights(&self) -> Vec<String> {
        let models = self.by_model.iter().take(5);
        let models = models.map(|m| format!("{} x {} on {}", m.gpus, m.model, plural(m.nodes, "node")));
        self.warnings.iter().cloned().chain(models).collect()
    }
}

fn gpu_view(g: &GpuInfo, health: Option<Health>) -> GpuInventory {
    GpuInventory {
        index: g.index,
        uuid: g.uuid.clone(),
        health,
        product_name: g.product_name.clone(),
        pci_bus_id: g.pci_bus_id.clone(),
        serial: g.serial.clone(),
        memory_total_mib: g.memory.as_ref().map(|m| m.total_mib),
        memory_used_mib: g.memory.as_ref().and_then(|m| m.used_mib),
        gpu_utilization_percent: g.utilization.as_ref().map(|u| u.gpu_percent),
        memory_utilization_percent: g.utilization.as_ref().map(|u| u.memory_percent),
        temperature_celsius: g.temperature_celsius,
        power_draw_watts: g.power_draw_watts,
        power_limit_watts: g.power_limit_watts,
        mig: g.mig.as_ref().map(|m| MigView {
            enabled: m.enabled,
            pending_enabled: m.pending_enabled.filter(|p| *p != m.enabled),
            devices: m.device_count,
        }),
    }
}

/// One node's row; with `detail`, the listed GPUs in full (read from the unpacked object, so only for the few
/// nodes an answer details).
fn node_row(node: &NodeRef, detail: Option<&[GpuRef]>, k8s: bool) -> Result<NodeInventory, ToolError> {
    let o = node.facts();
    let utilizations: Vec<u32> =
        o.into_iter().flat_map(StatusFacts::inventory).filter_map(|g| g.gpu_utilization_percent).collect();
    let mean = (!utilizations.is_empty())
        .then(|| utilizations.iter().sum::<u32>() / u32::try_from(utilizations.len()).unwrap_or(1));
    let gpus = match (detail, o) {
        (Some(wanted), Some(facts)) => {
            let full = node.unpack()?.and_then(|o| o.status).and_then(|s| s.gpus).unwrap_or_default();
            full.iter()
                .filter(|g| wanted.iter().any(|w| w.uuid.as_deref() == Some(g.uuid.as_str())))
                .map(|g| gpu_view(g, facts.gpus.iter().find(|f| *f.uuid == *g.uuid).and_then(|f| f.health)))
                .collect()
        }
        _ => Vec::new(),
    };
    Ok(NodeInventory {
        name: node.name.clone(),
        health: node_health(o),
        probe: freshness::state(o),
        gpu_count: o.and_then(|s| s.gpu_count),
        gpu_model: o.and_then(|s| s.gpu_model.clone()),
        driver_version: o.and_then(|s| s.driver_version.clone()),
        cuda_driver_version: o.and_then(|s| s.cuda_driver_version.clone()),
        mean_gpu_utilization_percent: mean,
        max_temperature_celsius: o
            .into_iter()
            .flat_map(StatusFacts::inventory)
            .filter_map(|g| g.temperature_celsius)
            .max(),
        gpus,
        kubernetes: if k8s { node.node.as_deref().map(node_metadata) } else { None },
    })
}

fn totals(nodes: &[NodeRef]) -> InventoryTotals {
    let mut t = InventoryTotals { nodes: nodes.len(), ..Default::default() };
    let mut memory_mib = 0;
    for n in nodes {
        let gpus: Vec<&GpuFacts> = n.facts().into_iter().flat_map(StatusFacts::inventory).collect();
        if gpus.is_empty() {
            t.nodes_without_gpu_data += 1;
        }
        t.gpus += gpus.len() as u64;
        memory_mib += gpus.iter().filter_map(|g| g.memory_total_mib).sum::<u64>();
        t.mig_enabled_gpus += gpus.iter().filter(|g| g.mig_enabled).count();
    }
    t.memory_gib = memory_mib / 1024;
    t
}

/// Answer `get_gpu_inventory`.
pub fn answer(snap: &Snapshot, args: &InventoryArgs) -> Result<Inventory, ToolError> {
    let focused = args.node_name.is_some() || args.gpu.is_some();
    let limit = args::limit(args.limit, if focused { DEFAULT_LIMIT } else { FLEET_DEFAULT_LIMIT }, MAX_LIMIT)?;
    let k8s = args.include_k8s_metadata.unwrap_or(false);
    let node = args.node_name.as_deref().map(|n| snap.require_node(n)).transpose()?;
    let selected = args
        .gpu
        .as_ref()
        .map(GpuSelector::parse)
        .transpose()?
        .map(|sel| select_gpus(snap, node.as_ref(), &sel).map(|chosen| (shared_uuid_warnings(&sel, &chosen), chosen)))
        .transpose()?;
    let (warnings, selected) = selected.map_or((Vec::new(), None), |(w, chosen)| (w, Some(chosen)));

    // The nodes in scope: the one asked for, those holding the selected GPU, or (read off the indexes) the first
    // `limit` GPU nodes by name, with the totals over all of them.
    let (scope, totals, by_model, mut by_driver, in_scope) = match (&node, &selected) {
        (None, None) => {
            let ix = snap.indexes();
            let f = ix.fleet();
            let inv = f.inventory();
            let totals = InventoryTotals {
                nodes: f.nodes().total(),
                nodes_without_gpu_data: inv.nodes_without_gpu_data,
                gpus: inv.gpus,
                memory_gib: inv.memory_mib / 1024,
                mig_enabled_gpus: inv.mig_gpus,
            };
            let scope: Vec<NodeRef> = f.names().take(limit).filter_map(|n| snap.require_node(n).ok()).collect();
            let drivers = f.drivers().map(|(d, cuda, nodes)| (d.to_string(), cuda.map(str::to_string), nodes));
            (scope, totals, model_counts(f.models()), driver_counts(drivers), f.nodes().total())
        }
        (Some(n), _) => {
            let scope = vec![n.clone()];
            (scope.clone(), totals(&scope), by_model(n.facts()), by_driver(n.facts()), 1)
        }
        (None, Some(chosen)) => {
            let mut names: Vec<&String> = chosen.iter().map(|(n, _)| n).collect();
            names.dedup();
            let scope: Vec<NodeRef> = names.into_iter().filter_map(|n| snap.require_node(n).ok()).collect();
            let (models, drivers) =
                (by_model(scope.iter().filter_map(NodeRef::facts)), by_driver(scope.iter().filter_map(NodeRef::facts)));
            (scope.clone(), totals(&scope), models, drivers, scope.len())
        }
    };
    by_driver.truncate(10);

    let detailed = node.is_some() || selected.is_some();
    // Rows only for what is shown: totals above already cover every node.
    let rows: Vec<NodeInventory> = scope
        .iter()
        .take(limit)
        .map(|n| {
            let detail: Option<Vec<GpuRef>> = detailed.then(|| match &selected {
                Some(chosen) => chosen.iter().filter(|(name, _)| *name == n.name).map(|(_, g)| g.clone()).collect(),
                None => n.facts().map(crate::tools::common::gpus_of).unwrap_or_default(),
            });
            node_row(n, detail.as_deref(), k8s)
        })
        .collect::<Result<_, _>>()?;
    let nodes = rows;
    let truncated = (in_scope > limit).then(|| Truncated {
        shown: limit,
        total: in_scope,
        hint: format!(
            "pass node_name for one node's GPUs, or a larger limit (max {MAX_LIMIT}); totals cover every node"
        ),
    });

    let (verdict, action) = match (&node, nodes.first()) {
        (Some(n), Some(row)) => single_node_verdict(n, row),
        _ => fleet_verdict(&totals, &by_model, &by_driver, truncated.as_ref()),
    };
    Ok(Inventory {
        verdict,
        action,
        cluster: snap.cluster().to_string(),
        totals,
        by_model,
        by_driver,
        nodes,
        truncated,
        warnings,
    })
}

fn single_node_verdict(n: &NodeRef, row: &NodeInventory) -> (String, String) {
    if !n.facts().is_some_and(|f| f.has_status) {
        return (
            format!("Node {} advertises GPUs but no probe has reported its inventory.", n.name),
            actions::for_reason(reason::PROBE_MISSING, &n.name),
        );
    }
    let model = row.gpu_model.as_deref().unwrap_or("GPUs of unknown model");
    let driver = match (&row.driver_version, &row.cuda_driver_version) {
        (Some(d), Some(c)) => format!(", driver {d} (CUDA {c})"),
        (Some(d), None) => format!(", driver {d}"),
        _ => String::new(),
    };
    let verdict = format!(
        "Node {}: {} x {model}{driver}; health {}, probe {}.",
        n.name,
        row.gpu_count.unwrap_or(0),
        row.health,
        probe_word(row.probe)
    );
    let action = match (row.health, row.probe) {
        (_, ProbeState::Stale) => actions::for_reason(reason::PROBE_STALE, &n.name),
        (Health::Unhealthy | Health::Degraded, _) => {
            format!("Health is {}: call get_gpu_health with node_name={} for reasons and actions.", row.health, n.name)
        }
        _ => "None needed.".to_string(),
    };
    (verdict, action)
}

fn fleet_verdict(
    totals: &InventoryTotals,
    models: &[ModelCount],
    drivers: &[DriverCount],
    truncated: Option<&Truncated>,
) -> (String, String) {
    let mut verdict = format!(
        "{} with {} GPUs ({} GiB) in {}",
        plural(totals.nodes, "GPU node"),
        totals.gpus,
        totals.memory_gib,
        plural(models.len(), "model")
    );
    if drivers.len() > 1 {
        verdict.push_str(&format!(", {} driver versions", drivers.len()));
    }
    if totals.nodes_without_gpu_data > 0 {
        verdict.push_str(&format!("; {} without GPU data", plural(totals.nodes_without_gpu_data, "node")));
    }
    verdict.push('.');
    let action = match truncated {
        Some(t) => format!("Showing {} of {} nodes: {}.", t.shown, t.total, t.hint),
        None if totals.nodes == 0 => {
            "No GPU nodes: check that the gpuscope-probe DaemonSet runs on the GPU nodes.".to_string()
        }
        None => "Pass node_name for one node's GPUs; call get_gpu_health for problems.".to_string(),
    };
    (verdict, action)
}

fn probe_word(p: ProbeState) -> &'static str {
    match p {
        ProbeState::Reporting => "reporting",
        ProbeState::Stale => "STALE",
        ProbeState::Missing => "missing",
        ProbeState::Unknown => "freshness unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gpu_resources::fixtures::node;
    use crate::snapshot::fixtures::snapshot;
    use crate::status_fixtures::{healthy, uuid};

    #[test]
    fn fleet_inventory_totals_every_node_and_cuts_rows_to_the_limit() {
        let statuses: Vec<_> = (0..30).map(|i| healthy(&format!("node-{i:02}"), 8)).collect();
        let snap = snapshot(statuses, vec![node("node-99", 8)], vec![]);
        let inv = answer(&snap, &InventoryArgs { limit: Some(5), ..Default::default() }).expect("answer");
        assert_eq!(inv.totals.nodes, 31);
        assert_eq!(inv.totals.gpus, 240);
        assert_eq!(inv.totals.nodes_without_gpu_data, 1);
        assert_eq!(inv.totals.memory_gib, 240 * 81_559 / 1024);
        assert_eq!(inv.by_model, vec![ModelCount { model: "NVIDIA H100 80GB HBM3".into(), gpus: 240, nodes: 30 }]);
        assert_eq!(inv.nodes.len(), 5);
        assert_eq!(inv.nodes[0].name, "node-00");
        assert!(inv.nodes[0].gpus.is_empty(), "fleet rows carry no per-GPU detail");
        assert_eq!(inv.truncated.as_ref().map(|t| (t.shown, t.total)), Some((5, 31)));
        assert!(inv.verdict.starts_with("31 GPU nodes with 240 GPUs"), "{}", inv.verdict);
        assert!(inv.action.contains("node_name"), "{}", inv.action);
    }

    #[test]
    fn one_node_lists_its_gpus_with_telemetry_and_metadata_on_request() {
        let snap = snapshot(vec![healthy("n1", 2)], vec![node("n1", 2)], vec![]);
        let args =
            InventoryArgs { node_name: Some("n1".into()), include_k8s_metadata: Some(true), ..Default::default() };
        let inv = answer(&snap, &args).expect("answer");
        let row = &inv.nodes[0];
        assert_eq!(row.gpus.len(), 2);
        assert_eq!(row.gpus[1].uuid, uuid("n1", 1));
        assert_eq!(row.gpus[1].temperature_celsius, Some(41));
        assert_eq!(row.gpus[1].health, Some(Health::Healthy));
        assert_eq!(row.max_temperature_celsius, Some(41));
        assert_eq!(row.mean_gpu_utilization_percent, Some(50));
        assert_eq!(row.kubernetes.as_ref().map(|k| k.gpu_allocatable.get("nvidia.com/gpu").copied()), Some(Some(2)));
        assert_eq!(
            inv.verdict,
            "Node n1: 2 x NVIDIA H100 80GB HBM3, driver 570.86.15 (CUDA 12.8); health Healthy, probe reporting."
        );
        assert_eq!(inv.action, "None needed.");
    }

    #[test]
    fn a_gpu_uuid_alone_finds_its_node() {
        let snap = snapshot(vec![healthy("n1", 2), healthy("n2", 2)], vec![], vec![]);
        let args = InventoryArgs { gpu: Some(GpuArg::Text(uuid("n2", 1))), ..Default::default() };
        let inv = answer(&snap, &args).expect("answer");
        assert_eq!(inv.nodes.len(), 1);
        assert_eq!(inv.nodes[0].name, "n2");
        assert_eq!(inv.nodes[0].gpus.iter().map(|g| g.index).collect::<Vec<_>>(), [1]);
    }

    #[test]
    fn unknown_node_and_bad_limit_are_errors() {
        let snap = snapshot(vec![healthy("gpu-a", 1)], vec![], vec![]);
        let e = answer(&snap, &InventoryArgs { node_name: Some("gpu-b".into()), ..Default::default() })
            .expect_err("unknown");
        assert!(matches!(&e, ToolError::UnknownNode { close, .. } if close == &["gpu-a".to_string()]), "{e}");
        assert!(answer(&snap, &InventoryArgs { limit: Some(0), ..Default::default() }).is_err());
    }

    #[test]
    fn gpu_node_without_a_probe_says_so_and_what_to_do() {
        let snap = snapshot(vec![], vec![node("n1", 8)], vec![]);
        let inv = answer(&snap, &InventoryArgs { node_name: Some("n1".into()), ..Default::default() }).expect("answer");
        assert!(inv.verdict.contains("no probe has reported"), "{}", inv.verdict);
        assert!(inv.action.contains("DaemonSet"), "{}", inv.action);
        assert_eq!(inv.nodes[0].probe, ProbeState::Missing);
    }

    #[test]
    fn a_uuid_lookup_that_finds_two_gpus_warns_in_the_answer_and_its_summary() {
        let mut clone = healthy("gpu-e", 2);
        if let Some(status) = clone.status.as_mut() {
            status.gpus.iter_mut().flatten().for_each(|g| g.uuid = uuid("gpu-a", g.index));
            status.verdicts.iter_mut().flatten().for_each(|v| v.uuid = uuid("gpu-a", v.index.unwrap_or_default()));
        }
        let snap = snapshot(vec![healthy("gpu-a", 2), clone], vec![], vec![]);
        let args = InventoryArgs { gpu: Some(crate::args::GpuArg::Text(uuid("gpu-a", 0))), ..Default::default() };
        let inv = answer(&snap, &args).expect("answer");
        assert_eq!(inv.nodes.len(), 2);
        assert_eq!(inv.warnings.len(), 1, "{:?}", inv.warnings);
        assert!(inv.warnings[0].contains("node gpu-a GPU 0, node gpu-e GPU 0"), "{:?}", inv.warnings);
        assert!(crate::answer::summary(&inv).contains("2 GPUs report the UUID GPU-gpu-a-0"));
        let json = serde_json::to_value(&inv).expect("json");
        assert!(json["warnings"][0].as_str().is_some_and(|w| w.contains("a UUID names one GPU")), "{json}");
        let unique =
            answer(&snap, &InventoryArgs { node_name: Some("gpu-a".into()), ..Default::default() }).expect("a");
        assert!(serde_json::to_value(&unique).expect("json").get("warnings").is_none(), "no warning, no field");
    }
}
