//! `describe_gpu_node`: everything about one node in one answer: GPUs with their verdicts and counters, health
//! conditions, probe freshness, recent XIDs, and the Kubernetes side (Node conditions, taints, cordon,
//! allocatable vs allocated GPUs, the pods holding them).
//!
//! Compact by construction: the GPUs of a node are mostly alike (same product, limits, zero error counters, all
//! NVLinks up), so what they share is said once in `gpu_common` and each GPU carries only what differs; NVLinks
//! are counted, naming only the inactive ones; catalog text is given once per code; a condition message that
//! restates a GPU's action is left out.

use gpuscope_crds::Health;
use gpuscope_crds::gpu_node_status::{GpuInfo, GpuNodeStatusStatus, GpuVerdict, XidSource};
use gpuscope_crds::health::reason;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::actions;
use crate::answer::Answer;
use crate::error::ToolError;
use crate::freshness::{self, Freshness, ProbeState};
use crate::gpu_resources::{ResourceCounts, whole_gpus};
use crate::snapshot::Snapshot;
use crate::status_facts::StatusFacts;
use crate::time::rfc3339;
use crate::tools::common::{ConditionView, GpuRef, NodeMetadata, gpu_at, node_health, node_metadata, plural, taints};
use crate::tools::health::node_problems;
use crate::tools::inventory::MigView;
use crate::xid_view::{XidMeaning, meaning, severity};

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
    /// Telemetry and counters every GPU the probe sees reports alike (with two or more GPUs), said once.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gpu_common: Option<GpuTelemetry>,
    /// One entry per GPU: identity, verdict, and the telemetry in which it differs from `gpu_common`.
    pub gpus: Vec<GpuDetail>,
    /// The operator's health conditions. A message that restates a GPU's action (`gpus[].action`) is left out.
    pub conditions: Vec<ConditionView>,
    /// XID totals per (GPU, code), newest first (at most 20).
    pub recent_xids: Vec<XidTotalView>,
    /// What each code in `recent_xids` means and what to do (NVIDIA's catalog), once per code.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub xid_codes: Vec<XidMeaning>,
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

/// One GPU: identity, verdict, telemetry.
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
    /// Present (true) when NVML no longer lists this GPU and only the operator's verdict remembers it.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub missing: bool,
    /// The pods on it ("namespace/name (Kind/controller)"), from the probe's pod-resources binding; for a missing
    /// GPU, the pods its XIDs hit. On a sick GPU this is the blast radius.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub pods: Vec<String>,
    /// Telemetry and counters as the probe last wrote them, where they differ from `gpu_common` (inline in the
    /// GPU's entry): a field absent here and there was not reported (see `unsupported_fields`).
    #[serde(flatten)]
    pub telemetry: GpuTelemetry,
}

/// A GPU's telemetry snapshot and error counters.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, JsonSchema)]
pub struct GpuTelemetry {
    /// Product name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub product_name: Option<String>,
    /// Board serial number (what an RMA asks for).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub serial: Option<String>,
    /// Total memory, MiB.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_total_mib: Option<u64>,
    /// Used memory, MiB.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_used_mib: Option<u64>,
    /// Temperature, degrees Celsius.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub temperature_celsius: Option<u32>,
    /// Power draw, watts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub power_draw_watts: Option<u32>,
    /// Power limit, watts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub power_limit_watts: Option<u32>,
    /// GPU utilization, percent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gpu_utilization_percent: Option<u32>,
    /// Memory utilization, percent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_utilization_percent: Option<u32>,
    /// SM clock, MHz.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sm_clock_mhz: Option<u32>,
    /// Memory clock, MHz.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_clock_mhz: Option<u32>,
    /// Active clock throttle reasons (empty: none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub throttle_reasons: Option<Vec<String>>,
    /// ECC mode and error counters.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ecc: Option<EccView>,
    /// Retired memory pages (GPUs before Ampere).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retired_pages: Option<RetiredPagesView>,
    /// Remapped memory rows (Ampere and later).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remapped_rows: Option<RemappedRowsView>,
    /// MIG mode.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mig: Option<MigView>,
    /// NVLinks: how many are active, and which are not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nvlinks: Option<NvLinkSummary>,
    /// The driver's recovery action: "None", or what it asks for with its code, source and time.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recovery_action: Option<String>,
}

impl GpuTelemetry {
    /// Nothing reported (or everything said in `gpu_common`).
    pub fn is_empty(&self) -> bool {
        *self == GpuTelemetry::default()
    }
}

/// ECC mode and error counters.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, JsonSchema)]
pub struct EccView {
    /// ECC enabled.
    pub enabled: bool,
    /// Corrected errors since the driver loaded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub volatile_corrected: Option<u64>,
    /// Uncorrected errors since the driver loaded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub volatile_uncorrected: Option<u64>,
    /// Corrected errors over the GPU's life.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aggregate_corrected: Option<u64>,
    /// Uncorrected errors over the GPU's life.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aggregate_uncorrected: Option<u64>,
}

/// Retired memory pages.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, JsonSchema)]
pub struct RetiredPagesView {
    /// Retired for single-bit ECC errors.
    pub single_bit_ecc: u64,
    /// Retired for double-bit ECC errors.
    pub double_bit_ecc: u64,
    /// A retirement waits for the next GPU reset.
    pub pending: bool,
}

/// Remapped memory rows.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, JsonSchema)]
pub struct RemappedRowsView {
    /// Rows remapped for correctable errors.
    pub correctable: u64,
    /// Rows remapped for uncorrectable errors.
    pub uncorrectable: u64,
    /// A remap waits for the next GPU reset.
    pub pending: bool,
    /// Remapping failed: no spare rows left.
    pub failure: bool,
}

/// NVLinks of a GPU, counted.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, JsonSchema)]
pub struct NvLinkSummary {
    /// Active links.
    pub active: usize,
    /// Links that are not active, by number.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub inactive: Vec<u32>,
}

/// An XID total on this node (what the code means: `xid_codes`).
#[derive(Clone, Debug, PartialEq, Serialize, JsonSchema)]
pub struct XidTotalView {
    /// XID code.
    pub code: u32,
    /// info, warning or critical.
    pub severity: String,
    /// The GPU.
    pub gpu: GpuRef,
    /// How often.
    pub count: u64,
    /// Newest occurrence (RFC 3339).
    pub last_seen: String,
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
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub taints: Vec<String>,
    /// Node conditions that are not in their normal state (Ready not True, pressure True, and gpuscope's GPUHealthy).
    #[serde(skip_serializing_if = "Vec::is_empty")]
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
            let mnemonic = self.xid_codes.iter().find(|m| m.code == x.code).map_or("", |m| m.mnemonic.as_str());
            format!("XID {} {mnemonic} on {} x{} (last {})", x.code, x.gpu.label(), x.count, x.last_seen)
        }));
        lines
    }
}

fn telemetry(g: &GpuInfo) -> GpuTelemetry {
    GpuTelemetry {
        product_name: g.product_name.clone(),
        serial: g.serial.clone(),
        memory_total_mib: g.memory.as_ref().map(|m| m.total_mib),
        memory_used_mib: g.memory.as_ref().and_then(|m| m.used_mib),
        temperature_celsius: g.temperature_celsius,
        power_draw_watts: g.power_draw_watts,
        power_limit_watts: g.power_limit_watts,
        gpu_utilization_percent: g.utilization.as_ref().map(|u| u.gpu_percent),
        memory_utilization_percent: g.utilization.as_ref().map(|u| u.memory_percent),
        sm_clock_mhz: g.clocks.as_ref().and_then(|c| c.sm_mhz),
        memory_clock_mhz: g.clocks.as_ref().and_then(|c| c.memory_mhz),
        throttle_reasons: g.throttle_reasons.clone(),
        ecc: g.ecc.as_ref().map(|e| EccView {
            enabled: e.enabled,
            volatile_corrected: e.volatile_corrected,
            volatile_uncorrected: e.volatile_uncorrected,
            aggregate_corrected: e.aggregate_corrected,
            aggregate_uncorrected: e.aggregate_uncorrected,
        }),
        retired_pages: g.retired_pages.as_ref().map(|r| RetiredPagesView {
            single_bit_ecc: r.single_bit_ecc,
            double_bit_ecc: r.double_bit_ecc,
            pending: r.pending,
        }),
        remapped_rows: g.remapped_rows.as_ref().map(|r| RemappedRowsView {
            correctable: r.correctable,
            uncorrectable: r.uncorrectable,
            pending: r.pending,
            failure: r.failure,
        }),
        mig: g.mig.as_ref().map(|m| MigView {
            enabled: m.enabled,
            pending_enabled: m.pending_enabled.filter(|p| *p != m.enabled),
            devices: m.device_count,
        }),
        nvlinks: g
            .nvlinks
            .as_ref()
            .map(|links| NvLinkSummary { active: links.active() as usize, inactive: links.inactive.clone() }),
        recovery_action: g.recovery_action.as_ref().map(|r| {
            if r.code == 0 {
                return r.action.clone();
            }
            let source = match r.source {
                XidSource::Kmsg => "kernel log",
                XidSource::Nvml => "NVML",
            };
            match &r.time {
                Some(t) => format!("{} (code {}, from {source}, since {})", r.action, r.code, rfc3339(t)),
                None => format!("{} (code {}, from {source})", r.action, r.code),
            }
        }),
    }
}

/// Move every telemetry field all `gpus` report alike into one [`GpuTelemetry`]; each GPU keeps what differs.
fn factor_common(gpus: &mut [GpuTelemetry]) -> GpuTelemetry {
    let mut common = GpuTelemetry::default();
    macro_rules! factor {
        ($($field:ident),* $(,)?) => {$(
            if let Some(first) = gpus.first().and_then(|g| g.$field.clone())
                && gpus.iter().all(|g| g.$field.as_ref() == Some(&first))
            {
                common.$field = Some(first);
                gpus.iter_mut().for_each(|g| g.$field = None);
            }
        )*};
    }
    factor!(
        product_name,
        serial,
        memory_total_mib,
        memory_used_mib,
        temperature_celsius,
        power_draw_watts,
        power_limit_watts,
        gpu_utilization_percent,
        memory_utilization_percent,
        sm_clock_mhz,
        memory_clock_mhz,
        throttle_reasons,
        ecc,
        retired_pages,
        remapped_rows,
        mig,
        nvlinks,
        recovery_action,
    );
    common
}

/// The node's GPUs, and what the present ones share (with two or more of them).
fn gpu_details(s: &GpuNodeStatusStatus, node: &str) -> (Vec<GpuDetail>, Option<GpuTelemetry>) {
    let verdicts = s.verdicts.as_deref().unwrap_or(&[]);
    let infos: &[GpuInfo] = s.gpus.as_deref().unwrap_or(&[]);
    let mut measured: Vec<GpuTelemetry> = infos.iter().map(telemetry).collect();
    let common = (measured.len() >= 2).then(|| factor_common(&mut measured)).filter(|c| !c.is_empty());
    let mut out: Vec<GpuDetail> = infos
        .iter()
        .zip(measured)
        .map(|(g, telemetry)| {
            let mut d = detail(
                GpuRef { index: Some(g.index), uuid: Some(g.uuid.clone()), pci_bus_id: g.pci_bus_id.clone() },
                verdicts.iter().find(|v| v.uuid == g.uuid),
                false,
                telemetry,
                node,
            );
            d.pods = pod_labels(g.pods.iter().flatten());
            if let Some(more) = g.pods_omitted.filter(|n| *n > 0) {
                d.pods.push(format!("+{more} more"));
            }
            d
        })
        .collect();
    for v in verdicts.iter().filter(|v| !infos.iter().any(|g| g.uuid == v.uuid)) {
        let mut d = detail(
            GpuRef { index: v.index, uuid: Some(v.uuid.clone()), pci_bus_id: None },
            Some(v),
            true,
            GpuTelemetry::default(),
            node,
        );
        // Gone from NVML: the pods its XIDs hit are its blast radius.
        let hit = s.xids.iter().flat_map(|x| x.totals.iter()).filter(|t| t.gpu_uuid.as_deref() == Some(&v.uuid));
        d.pods = pod_labels(hit.flat_map(|t| t.pods.iter().flatten()));
        d.pods.truncate(gpuscope_crds::gpu_node_status::MAX_PODS_PER_GPU);
        out.push(d);
    }
    (out, common)
}

fn detail(gpu: GpuRef, v: Option<&GpuVerdict>, missing: bool, telemetry: GpuTelemetry, node: &str) -> GpuDetail {
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
        missing,
        pods: Vec::new(),
        telemetry,
    }
}

/// "namespace/name (Kind/controller)" of each pod.
fn pod_labels<'a>(pods: impl IntoIterator<Item = &'a gpuscope_crds::gpu_node_status::PodRef>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for p in pods {
        let label = p.label();
        if !out.contains(&label) {
            out.push(label);
        }
    }
    out
}

/// The newest totals, and the catalog entry of each code among them.
fn xid_totals(s: &GpuNodeStatusStatus, facts: &StatusFacts) -> (Vec<XidTotalView>, Vec<XidMeaning>) {
    let mut totals: Vec<_> = s.xids.iter().flat_map(|x| x.totals.iter()).collect();
    totals.sort_by(|a, b| b.last_seen.cmp(&a.last_seen));
    let views: Vec<XidTotalView> = totals
        .into_iter()
        .take(MAX_ROWS)
        .map(|t| XidTotalView {
            code: t.code,
            severity: severity(t.code).as_str().to_string(),
            gpu: gpu_at(facts, &t.pci_bus_id, t.gpu_uuid.as_deref()),
            count: t.count,
            last_seen: rfc3339(&t.last_seen),
        })
        .collect();
    let mut codes: Vec<u32> = views.iter().map(|v| v.code).collect();
    codes.sort_unstable();
    codes.dedup();
    (views, codes.into_iter().map(meaning).collect())
}

/// A condition for this answer: its message left out when it restates a GPU's action, which the operator builds
/// both from the same findings (an Unhealthy GPU's catalog text would otherwise appear three times).
fn condition_view(c: &k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition, gpus: &[GpuDetail]) -> ConditionView {
    let mut view = ConditionView::from(c);
    if gpus.iter().filter_map(|g| g.action.as_deref()).any(|a| !a.is_empty() && view.message.contains(a)) {
        view.message.clear();
    }
    view
}

/// Answer `describe_gpu_node`.
pub fn answer(snap: &Snapshot, args: &DescribeArgs) -> Result<NodeDescription, ToolError> {
    let n = snap.require_node(&args.node_name)?;
    let whole = n.unpack()?;
    let s = whole.as_ref().and_then(|o| o.status.as_ref());
    let facts = n.facts();
    let probe = freshness::of(facts, snap.now());
    let health = node_health(facts);

    let active: Vec<_> = snap.pods_on(&n.name).into_iter().filter(|p| p.is_active()).collect();
    let mut allocated = ResourceCounts::new();
    for p in &active {
        for (k, v) in p.gpus.iter() {
            *allocated.entry(k.clone()).or_default() += v;
        }
    }
    let kubernetes = match n.node.as_deref() {
        Some(node) => NodeKubernetes {
            node_exists: true,
            ready: node.ready.clone(),
            unschedulable: node.unschedulable,
            taints: taints(node),
            conditions: node
                .abnormal_conditions
                .iter()
                .map(|c| ConditionView {
                    type_: c.type_.clone(),
                    status: c.status.clone(),
                    reason: c.reason.clone().unwrap_or_default(),
                    message: c.message.clone().unwrap_or_default(),
                    since: c.last_transition_time.as_ref().map(rfc3339),
                })
                .collect(),
            gpu_capacity: node.gpu_capacity.to_map(),
            gpu_allocatable: node.gpu_allocatable.to_map(),
            gpu_allocated: allocated,
            pods: active
                .iter()
                .take(MAX_ROWS)
                .map(|p| PodOnNode {
                    namespace: p.namespace.clone(),
                    name: p.name.clone(),
                    phase: p.phase.clone().unwrap_or_else(|| "Unknown".into()),
                    gpus: p.gpus.to_map(),
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

    let (gpus, gpu_common) = s.map(|s| gpu_details(s, &n.name)).unwrap_or_default();
    let (recent_xids, xid_codes) = s.zip(facts).map(|(s, f)| xid_totals(s, f)).unwrap_or_default();
    let problems = node_problems(facts, &n.name, probe.state, None);

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
        Some(p) if health == Health::Unhealthy && kubernetes.pod_count > 0 => format!(
            "{} Move its {} first.",
            p.action.as_deref().unwrap_or_default(),
            plural(kubernetes.pod_count, "GPU pod")
        ),
        Some(p) => p.action.clone().unwrap_or_default(),
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
        conditions: s
            .and_then(|s| s.conditions.as_ref())
            .map(|cs| cs.iter().map(|c| condition_view(c, &gpus)).collect())
            .unwrap_or_default(),
        gpu_common,
        gpus,
        recent_xids,
        xid_codes,
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
        assert_eq!(d.gpus[0].telemetry.temperature_celsius, Some(40), "temperatures differ: said per GPU");
        let common = d.gpu_common.as_ref().expect("four GPUs share their product and limits");
        assert_eq!(common.product_name.as_deref(), Some("NVIDIA H100 80GB HBM3"));
        assert_eq!((common.power_limit_watts, d.gpus[0].telemetry.power_limit_watts), (Some(700), None));
        assert_eq!(d.recent_xids[0].code, 79);
        assert_eq!(d.recent_xids[0].gpu.index, Some(2));
        assert_eq!(d.xid_codes.iter().map(|m| m.code).collect::<Vec<_>>(), [79]);
        assert!(d.xid_codes[0].recommended_action.contains("reboot"), "{:?}", d.xid_codes[0]);
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
    fn gpus_alike_are_said_once_and_only_their_differences_per_gpu() {
        use gpuscope_crds::gpu_node_status::{EccCounters, NvLinks};
        let mut o = healthy("n1", 8);
        for g in o.status.as_mut().and_then(|s| s.gpus.as_mut()).into_iter().flatten() {
            g.temperature_celsius = Some(35);
            g.nvlinks = Some(NvLinks { count: 18, inactive: if g.index == 6 { vec![4] } else { vec![] } });
            g.ecc = Some(EccCounters {
                enabled: true,
                volatile_corrected: Some(if g.index == 2 { 12 } else { 0 }),
                ..Default::default()
            });
        }
        let d = answer(
            &snapshot(vec![o], vec![node("n1", 8)], vec![]),
            &DescribeArgs { node_name: "n1".into(), ..Default::default() },
        )
        .expect("answer");
        let common = d.gpu_common.as_ref().expect("common telemetry");
        assert_eq!(common.temperature_celsius, Some(35));
        assert_eq!(common.nvlinks, None, "GPU 6 has a link down, so NVLinks are said per GPU");
        assert_eq!(d.gpus[6].telemetry.nvlinks, Some(NvLinkSummary { active: 17, inactive: vec![4] }));
        assert_eq!(d.gpus[0].telemetry.nvlinks, Some(NvLinkSummary { active: 18, inactive: vec![] }));
        assert_eq!(d.gpus[2].telemetry.ecc.as_ref().and_then(|e| e.volatile_corrected), Some(12));
        assert!(d.gpus[1].telemetry.temperature_celsius.is_none(), "said once in gpu_common");
        let json = serde_json::to_value(&d).expect("json");
        assert_eq!(json["gpus"][0]["nvlinks"], serde_json::json!({ "active": 18 }));
        assert_eq!(json["gpus"][6]["nvlinks"], serde_json::json!({ "active": 17, "inactive": [4] }));
        assert!(json["gpus"][1].get("missing").is_none(), "false is left out");
        assert!(json["kubernetes"].get("taints").is_none(), "empty lists are left out");
    }

    #[test]
    fn a_condition_that_restates_a_gpus_action_keeps_its_reason_but_not_the_text() {
        let message = "XID 79 fell off the bus; Unhealthy until the node reboots. Drain the node and reboot it.";
        let mut o = with_verdict(healthy("n1", 2), 1, Health::Unhealthy, &[reason::XID_FALLEN_OFF_BUS], message);
        for c in o.status.as_mut().and_then(|s| s.conditions.as_mut()).into_iter().flatten() {
            if c.type_ == "GPUHealthy" {
                c.message = format!("1 of 2 GPUs Unhealthy. GPU 1 (GPU-n1-1, PCI 0000:11:00.0): {message}");
            }
        }
        let d =
            answer(&snapshot(vec![o], vec![], vec![]), &DescribeArgs { node_name: "n1".into(), ..Default::default() })
                .expect("answer");
        assert_eq!(d.gpus[1].action.as_deref(), Some(message));
        let of = |t: &str| d.conditions.iter().find(|c| c.type_ == t).expect("condition");
        assert_eq!((of("GPUHealthy").status.as_str(), of("GPUHealthy").reason.as_str()), ("False", "XidFallenOffBus"));
        assert!(of("GPUHealthy").message.is_empty(), "{:?}", of("GPUHealthy"));
        assert_eq!(of("ProbeReporting").message, "ProbeReporting True", "other messages stay");
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
        let missing = d.gpus.iter().find(|g| g.missing).expect("the vanished GPU is listed");
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
