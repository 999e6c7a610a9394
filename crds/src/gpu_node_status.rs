//! `GpuNodeStatus` (gpuscope.dev/v1alpha1): one cluster-scoped object per GPU node, named after the Node.
//!
//! Two writers share the status through server-side apply, each owning its own fields:
//! - the node probe (field manager [`PROBE_FIELD_MANAGER`]): `probe`, driver versions, `gpuCount`, `gpuModel`,
//!   `unsupportedFields`, `gpus` (with the pods holding each GPU, from the kubelet's pod-resources API), `xids`
//!   (each attributed to the pods that held the GPU), `podResources`;
//! - the operator (field manager [`OPERATOR_FIELD_MANAGER`]): `health`, `recentXidCount`, `verdicts`,
//!   `conditions`, `observedGeneration`.
//!
//! Every optional field is `Option` and skipped when `None`, so a writer's apply body claims only what it sets.
//! Per-GPU verdicts live in their own list (not inside `gpus`) so that each list has exactly one owner, and a
//! GPU that vanished from NVML can still carry the operator's `GpuMissing` verdict.
//!
//! Size is bounded: the XID history is coalesced per (GPU, code) and capped ([`MAX_XID_TOTALS`]), with only the
//! newest [`MAX_RECENT_XIDS`] raw events kept. Telemetry is a snapshot refreshed on a slow cadence; live numbers
//! belong in the probe's `/metrics`.

// clippy reads kube's repeated `printcolumn(type_ = ...)` arguments as duplicated attributes; they are not.
#![allow(clippy::duplicated_attributes)]

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::health::Health;

/// API group of every gpuscope resource.
pub const GROUP: &str = "gpuscope.dev";
/// API version of the GpuNodeStatus resource.
pub const VERSION: &str = "v1alpha1";
/// Field manager the node probe applies status with.
pub const PROBE_FIELD_MANAGER: &str = "gpuscope-probe";
/// Field manager the operator applies status with.
pub const OPERATOR_FIELD_MANAGER: &str = "gpuscope-operator";
/// How many raw XID events `status.xids.recent` keeps (newest first).
pub const MAX_RECENT_XIDS: usize = 32;
/// How many (GPU, code) totals `status.xids.totals` keeps; the least recently seen are dropped first.
pub const MAX_XID_TOTALS: usize = 64;
/// How many pods a GPU's `pods` list (and an XID's attribution) names; more (time-sliced GPUs) are counted in
/// `podsOmitted`.
pub const MAX_PODS_PER_GPU: usize = 4;
/// How many pods an XID total remembers across its occurrences (newest first).
pub const MAX_PODS_PER_XID_TOTAL: usize = 8;
/// How many device allocations `status.podResources.unmapped` lists; more are counted in `unmappedOmitted`.
pub const MAX_UNMAPPED_DEVICES: usize = 16;

/// Desired state of a GPU node's diagnostics. Everything here is optional; an empty spec is the normal case.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "gpuscope.dev",
    version = "v1alpha1",
    kind = "GpuNodeStatus",
    plural = "gpunodestatuses",
    singular = "gpunodestatus",
    shortname = "gns",
    category = "gpu",
    status = "GpuNodeStatusStatus",
    derive = "PartialEq",
    doc = "GPU inventory, telemetry, XID history and health of one Kubernetes node, named after the Node.",
    printcolumn(name = "GPUs", type_ = "integer", json_path = ".status.gpuCount", description = "GPUs the probe sees"),
    printcolumn(name = "Model", type_ = "string", json_path = ".status.gpuModel", description = "GPU product name"),
    printcolumn(
        name = "Driver",
        type_ = "string",
        json_path = ".status.driverVersion",
        description = "NVIDIA driver version"
    ),
    printcolumn(
        name = "Health",
        type_ = "string",
        json_path = ".status.health",
        description = "Worst per-GPU verdict (operator)"
    ),
    printcolumn(
        name = "XIDs",
        type_ = "integer",
        json_path = ".status.recentXidCount",
        description = "XIDs within the health policy's window"
    ),
    printcolumn(
        name = "Last XID",
        type_ = "integer",
        json_path = ".status.xids.lastCode",
        description = "Code of the newest XID",
        priority = "1"
    ),
    printcolumn(
        name = "GPU pods",
        type_ = "integer",
        json_path = ".status.podResources.podCount",
        description = "Pods holding this node's GPUs (kubelet pod-resources)",
        priority = "1"
    ),
    printcolumn(
        name = "Reported",
        type_ = "date",
        json_path = ".status.probe.lastReportTime",
        description = "When the probe last wrote this object"
    ),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
pub struct GpuNodeStatusSpec {
    /// Maintenance switch: when true the operator keeps publishing conditions for this node but takes no
    /// remediation (no taint, no cordon) and removes none it added. Default false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remediation_paused: Option<bool>,
}

/// What the probe observed and what the operator concluded about one node's GPUs.
#[derive(KubeSchema, Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GpuNodeStatusStatus {
    /// Who reports this node and when it last wrote (probe).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probe: Option<ProbeInfo>,
    /// NVIDIA driver version, e.g. "570.86.15" (probe).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub driver_version: Option<String>,
    /// Highest CUDA version the driver supports, e.g. "12.8" (probe).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cuda_driver_version: Option<String>,
    /// NVML library version, e.g. "12.570.86.15" (probe).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nvml_version: Option<String>,
    /// Number of GPUs NVML reports on the node (probe).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu_count: Option<u32>,
    /// The node's GPU product name; the most common one, with " (+N other)" appended when models are mixed
    /// (probe).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu_model: Option<String>,
    /// Fields the driver or library could not report (NOT_SUPPORTED, missing symbol), as paths relative to
    /// status or to a GPU entry, e.g. "cudaDriverVersion" or "gpus.remappedRows". Omitted fields are absent,
    /// not zero (probe).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unsupported_fields: Option<Vec<String>>,
    /// One entry per GPU NVML sees, ordered by index: identity, a telemetry snapshot and error counters (probe).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpus: Option<Vec<GpuInfo>>,
    /// XID errors seen on this node, coalesced per (GPU, code), plus the newest raw events (probe).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub xids: Option<XidHistory>,
    /// What the kubelet's pod-resources API says about GPU allocations on this node, beyond the per-GPU `pods`:
    /// how many pods hold GPUs, allocations the probe could not map to a GPU, and DRA claims (probe).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_resources: Option<PodResourcesStatus>,

    /// Worst per-GPU verdict: Healthy, Degraded, Unhealthy or Unknown (operator).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<Health>,
    /// XIDs seen within the health policy's window, all GPUs (operator).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recent_xid_count: Option<u64>,
    /// The operator's verdict per GPU, keyed by UUID; includes GPUs that disappeared from NVML (operator).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verdicts: Option<Vec<GpuVerdict>>,
    /// Health conditions: GPUHealthy (summary), XIDErrors, MemoryErrors, Thermal, ProbeReporting (operator).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Option<Vec<Condition>>,
    /// The metadata.generation the operator last evaluated (operator).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// The probe that reports this node.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProbeInfo {
    /// gpuscope-probe version.
    pub version: String,
    /// Where the data comes from: nvml (the driver) or simulated (a scenario file, for demos and tests).
    pub backend: Backend,
    /// When the probe last wrote this object: on every change and at least every refresh interval. Liveness in
    /// between is the probe's Lease, which the operator publishes as the ProbeReporting condition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_report_time: Option<Time>,
    /// The node's boot id (/proc/sys/kernel/random/boot_id); a change means the node rebooted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot_id: Option<String>,
    /// The data sources the probe could not open, and why: it keeps reporting what it can see rather than
    /// crash-looping. Absent when every source works.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unavailable_sources: Option<Vec<UnavailableSource>>,
}

/// A data source the probe could not open.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct UnavailableSource {
    /// Which source.
    pub source: DataSource,
    /// The error, as the probe saw it, e.g. "libnvidia-ml.so.1: cannot open shared object file".
    pub message: String,
}

/// Where the probe reads from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum DataSource {
    /// NVML (libnvidia-ml): inventory, telemetry, counters and XID events. Without it the node's health is
    /// Unknown.
    Nvml,
    /// The kernel log (/dev/kmsg): every XID the driver prints. Without it only the XIDs NVML delivers as events
    /// are seen.
    KernelLog,
    /// NVML's XID events (old drivers lack them): XIDs then come from the kernel log only.
    NvmlEvents,
}

impl DataSource {
    /// The entry the probe also lists in `status.unsupportedFields` for this source.
    pub const fn unsupported_field(self) -> &'static str {
        match self {
            DataSource::Nvml => "nvml",
            DataSource::KernelLog => "xids.kernelLog",
            DataSource::NvmlEvents => "xids.nvmlEvents",
        }
    }
}

impl GpuNodeStatusStatus {
    /// Whether the probe reports `source` as unavailable (its `unavailableSources`, or, from a probe that
    /// predates that field, the source's entry in `unsupportedFields`).
    pub fn source_unavailable(&self, source: DataSource) -> Option<&str> {
        let listed = self.probe.as_ref().and_then(|p| p.unavailable_sources.as_deref()).unwrap_or_default();
        if let Some(u) = listed.iter().find(|u| u.source == source) {
            return Some(u.message.as_str());
        }
        let field = source.unsupported_field();
        self.unsupported_fields.as_deref().unwrap_or_default().iter().any(|f| f == field).then_some("")
    }
}

/// Where the probe's data comes from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum Backend {
    /// The NVIDIA driver, through NVML.
    #[default]
    Nvml,
    /// A scenario file: simulated GPUs for demos and scale tests.
    Simulated,
}

/// One GPU: identity, a telemetry snapshot and its error counters. Absent fields were not reported.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GpuInfo {
    /// NVML index (0-based). Can change across reboots; the UUID does not.
    pub index: u32,
    /// GPU UUID, e.g. "GPU-5a4c2e1b-…"; stable identity.
    pub uuid: String,
    /// Product name, e.g. "NVIDIA H100 80GB HBM3".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub product_name: Option<String>,
    /// PCI bus id, normalised to lower case with a 4-digit domain, e.g. "0000:3b:00.0"; the kernel log's
    /// XID lines name this address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pci_bus_id: Option<String>,
    /// Board serial number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serial: Option<String>,
    /// Framebuffer memory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<GpuMemory>,
    /// GPU core temperature in degrees Celsius.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature_celsius: Option<u32>,
    /// Power draw in watts (snapshot).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub power_draw_watts: Option<u32>,
    /// Enforced power limit in watts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub power_limit_watts: Option<u32>,
    /// Utilization over the driver's last sample period.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub utilization: Option<Utilization>,
    /// Current clocks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clocks: Option<Clocks>,
    /// Active clock throttle reasons, e.g. ["HwThermalSlowdown"]; empty when running at full clocks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub throttle_reasons: Option<Vec<String>>,
    /// ECC mode and error counts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ecc: Option<EccCounters>,
    /// Retired pages (pre-Ampere memory repair).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retired_pages: Option<RetiredPages>,
    /// Remapped rows (Ampere and newer memory repair).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remapped_rows: Option<RemappedRows>,
    /// Multi-Instance GPU mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mig: Option<MigInfo>,
    /// NVLink links: how many reported a state, and which of them are down.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nvlinks: Option<NvLinks>,
    /// The driver's current recovery action for this GPU (XID 154 or NVML), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovery_action: Option<RecoveryActionStatus>,
    /// The pods (containers) the kubelet assigned this GPU to, or a MIG instance or time-sliced replica of it, at
    /// most 4; absent when none holds it or the pod-resources API is not read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pods: Option<Vec<PodRef>>,
    /// Pods beyond the 4 listed in `pods` that also hold this GPU (time-slicing, MIG).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pods_omitted: Option<u32>,
}

/// A pod (and container) that held a GPU: the workload a GPU fault hits. Kept in XID records so that the link
/// survives the pod's deletion.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PodRef {
    /// Pod namespace.
    pub namespace: String,
    /// Pod name.
    pub name: String,
    /// Container that holds the device (a pod's containers may hold different GPUs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    /// Pod UID, when the probe could read it from the API server (pod names are reused, UIDs are not).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
    /// The pod's controller as "Kind/name" (e.g. "Job/train-42"), when the probe could read it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub controller: Option<String>,
    /// The kubelet's device id when it is not the GPU's own UUID: a MIG device ("MIG-…"), a time-slicing replica
    /// ("GPU-…::2") or a DRA device.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_id: Option<String>,
    /// The extended resource or DRA claim it came through when not "nvidia.com/gpu", e.g.
    /// "nvidia.com/mig-1g.10gb" or "claim gpu-test/single-gpu".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<String>,
}

impl PodRef {
    /// "namespace/name", how kubectl users name a pod.
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    /// "namespace/name (Kind/controller)", or the key alone when the controller is unknown: how answers name a
    /// workload a GPU fault hit.
    pub fn label(&self) -> String {
        match &self.controller {
            Some(c) => format!("{} ({c})", self.key()),
            None => self.key(),
        }
    }
}

/// GPU allocations as the kubelet's pod-resources API reports them, beyond what `gpus[].pods` holds.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PodResourcesStatus {
    /// Pods holding at least one NVIDIA device on this node (mapped or not).
    pub pod_count: u32,
    /// Allocations whose device id the probe could not map to a GPU it sees (a device plugin's index strategy, an
    /// unknown MIG UUID): kept as the kubelet reported them, at most 16.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unmapped: Vec<PodRef>,
    /// Unmapped allocations beyond the 16 listed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unmapped_omitted: Option<u32>,
    /// NVIDIA devices the kubelet can allocate (GetAllocatableResources), when it serves that call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allocatable_devices: Option<u32>,
}

/// Framebuffer memory in MiB.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GpuMemory {
    /// Total memory, MiB.
    pub total_mib: u64,
    /// Used memory, MiB (snapshot).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub used_mib: Option<u64>,
}

/// Utilization in percent.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Utilization {
    /// Percent of time a kernel was running.
    pub gpu_percent: u32,
    /// Percent of time memory was being read or written.
    pub memory_percent: u32,
}

/// Clock speeds in MHz.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Clocks {
    /// Streaming-multiprocessor clock, MHz.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sm_mhz: Option<u32>,
    /// Memory clock, MHz.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_mhz: Option<u32>,
}

/// ECC mode and error counts. Volatile counts reset with the driver; aggregate counts persist in the InfoROM.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EccCounters {
    /// Whether ECC is currently enabled.
    pub enabled: bool,
    /// Corrected (single-bit) errors since the driver loaded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volatile_corrected: Option<u64>,
    /// Uncorrected (double-bit) errors since the driver loaded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volatile_uncorrected: Option<u64>,
    /// Corrected errors over the GPU's lifetime.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aggregate_corrected: Option<u64>,
    /// Uncorrected errors over the GPU's lifetime.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aggregate_uncorrected: Option<u64>,
}

/// Retired framebuffer pages (page retirement, before Ampere).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RetiredPages {
    /// Pages retired for multiple single-bit errors.
    pub single_bit_ecc: u64,
    /// Pages retired for a double-bit error.
    pub double_bit_ecc: u64,
    /// A retirement waits for the next driver reload or GPU reset.
    pub pending: bool,
}

/// Row remapping (Ampere and newer).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RemappedRows {
    /// Rows remapped for correctable errors.
    pub correctable: u64,
    /// Rows remapped for uncorrectable errors.
    pub uncorrectable: u64,
    /// A remap waits for the next GPU reset to take effect.
    pub pending: bool,
    /// A remap failed (no spare rows left): the GPU needs service.
    pub failure: bool,
}

/// Multi-Instance GPU state.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MigInfo {
    /// MIG is enabled now.
    pub enabled: bool,
    /// MIG will be enabled after the next GPU reset (differs from `enabled` while a change is pending).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_enabled: Option<bool>,
    /// Number of MIG devices (GPU instances' compute instances) configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_count: Option<u32>,
    /// UUIDs of the MIG devices ("MIG-…"), so that a pod holding a MIG device is bound to this GPU.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_uuids: Option<Vec<String>>,
}

/// A GPU's NVLinks, counted: the links that reported a state and the numbers of those that are down. (The first
/// form of this field listed every link's state: 144 entries per 8-GPU node, a third of the object; it is still
/// read, so objects written by an older probe keep working until it is upgraded.)
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NvLinks {
    /// Links that reported a state (active or not).
    pub count: u32,
    /// Link numbers that are not active, ascending; empty when every link is up.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inactive: Vec<u32>,
}

impl NvLinks {
    /// Count links from their states.
    pub fn from_states(states: &[NvLinkState]) -> NvLinks {
        let mut inactive: Vec<u32> = states.iter().filter(|s| !s.active).map(|s| s.link).collect();
        inactive.sort_unstable();
        NvLinks { count: u32::try_from(states.len()).unwrap_or(u32::MAX), inactive }
    }

    /// Links that are up.
    pub fn active(&self) -> u32 {
        self.count.saturating_sub(u32::try_from(self.inactive.len()).unwrap_or(u32::MAX))
    }
}

impl<'de> Deserialize<'de> for NvLinks {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<NvLinks, D::Error> {
        /// Either form on the wire: the counted one, or the first one's list of states.
        #[derive(Deserialize)]
        #[serde(untagged, expecting = "nvlinks as {count, inactive} or a list of {link, active}")]
        enum Wire {
            Counted {
                count: u32,
                #[serde(default)]
                inactive: Vec<u32>,
            },
            States(Vec<NvLinkState>),
        }
        Ok(match Wire::deserialize(deserializer)? {
            Wire::Counted { count, inactive } => NvLinks { count, inactive },
            Wire::States(states) => NvLinks::from_states(&states),
        })
    }
}

/// One NVLink link's state, as NVML reports it (and as the first form of `nvlinks` listed them).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NvLinkState {
    /// Link number.
    pub link: u32,
    /// Whether the link is up.
    pub active: bool,
}

/// The driver's recovery action for a GPU (NVML's nvmlDeviceGpuRecoveryAction_t).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RecoveryActionStatus {
    /// Numeric value: 0 None, 1 GPU reset, 2 node reboot, 3 drain P2P, 4 drain and reset, …
    pub code: u32,
    /// Name: None, GpuReset, NodeReboot, DrainP2P, DrainAndReset, RecoverImexDomain, BusReset, SystemReboot,
    /// or Unknown.
    pub action: String,
    /// Where it was read: kmsg (an XID 154 line) or nvml.
    pub source: XidSource,
    /// When the driver reported it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<Time>,
}

/// Where an XID was read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum XidSource {
    /// The kernel log (/dev/kmsg).
    #[default]
    Kmsg,
    /// An NVML critical-XID event.
    Nvml,
}

/// XID history, bounded whatever the error rate.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct XidHistory {
    /// Code of the newest XID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_code: Option<u32>,
    /// When the newest XID was seen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_time: Option<Time>,
    /// Per (GPU, code): count, first and last seen, last message. At most 64 entries; the least recently seen
    /// are dropped first.
    #[serde(default)]
    pub totals: Vec<XidTotal>,
    /// The newest raw events, newest first, at most 32.
    #[serde(default)]
    pub recent: Vec<XidEvent>,
}

/// All occurrences of one XID code on one GPU, coalesced.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct XidTotal {
    /// XID code.
    pub code: u32,
    /// PCI bus id of the GPU ("0000:3b:00.0").
    pub pci_bus_id: String,
    /// GPU UUID, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu_uuid: Option<String>,
    /// How many times it was seen.
    pub count: u64,
    /// First occurrence.
    pub first_seen: Time,
    /// Newest occurrence.
    pub last_seen: Time,
    /// Boot id of the node at the newest occurrence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_boot_id: Option<String>,
    /// Driver text of the newest occurrence (after the code).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_message: Option<String>,
    /// Pods that held the GPU at any of these occurrences, newest first, at most 8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pods: Option<Vec<PodRef>>,
}

/// One XID as the driver reported it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct XidEvent {
    /// XID code.
    pub code: u32,
    /// When it happened (wall clock).
    pub time: Time,
    /// PCI bus id of the GPU ("0000:3b:00.0").
    pub pci_bus_id: String,
    /// GPU UUID, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu_uuid: Option<String>,
    /// MIG GPU instance id, when the driver attributed it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu_instance: Option<u32>,
    /// MIG compute instance id, when the driver attributed it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compute_instance: Option<u32>,
    /// Process id, when logged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    /// Process name, when logged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub process_name: Option<String>,
    /// Driver text after the code and process fields.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Where it was read: kmsg or nvml.
    pub source: XidSource,
    /// Node boot id when it happened.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot_id: Option<String>,
    /// Kernel log sequence number within that boot (kmsg only); with the boot id, the event's identity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sequence: Option<u64>,
    /// Pods that held the GPU when the XID arrived (kubelet pod-resources), at most 4: the workloads it hit. The
    /// `pid` is the process; this is the workload, and it outlives the pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pods: Option<Vec<PodRef>>,
}

/// The operator's verdict on one GPU.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GpuVerdict {
    /// GPU UUID.
    pub uuid: String,
    /// NVML index when the verdict was made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<u32>,
    /// Healthy, Degraded, Unhealthy or Unknown.
    pub health: Health,
    /// Machine-readable reasons, e.g. ["XidFallenOffBus"]; empty when healthy.
    #[serde(default)]
    pub reasons: Vec<String>,
    /// What to do, for a human.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nvlinks_are_written_counted_and_read_in_either_form() {
        let counted = NvLinks { count: 18, inactive: vec![4] };
        assert_eq!(serde_json::to_value(&counted).expect("json"), serde_json::json!({ "count": 18, "inactive": [4] }));
        let all_up = NvLinks { count: 12, inactive: vec![] };
        assert_eq!(serde_json::to_value(&all_up).expect("json"), serde_json::json!({ "count": 12 }));
        assert_eq!(all_up.active(), 12);
        assert_eq!(counted.active(), 17);
        let read = |v: serde_json::Value| serde_json::from_value::<NvLinks>(v).map_err(|e| e.to_string());
        assert_eq!(read(serde_json::json!({ "count": 18, "inactive": [4] })), Ok(counted));
        assert_eq!(read(serde_json::json!({ "count": 12 })), Ok(all_up));
        // An object an older probe wrote: every link's state.
        let listed = serde_json::json!([
            { "link": 0, "active": true }, { "link": 2, "active": false }, { "link": 1, "active": false }
        ]);
        assert_eq!(read(listed), Ok(NvLinks { count: 3, inactive: vec![1, 2] }));
        let bad = read(serde_json::json!("up")).expect_err("neither form is an error, not a default");
        assert!(bad.contains("nvlinks as {count, inactive} or a list of {link, active}"), "{bad}");
        assert!(read(serde_json::json!({ "count": -1 })).is_err());
    }

    #[test]
    fn the_crd_schema_describes_only_the_counted_form() {
        let schema = serde_json::to_value(schemars::schema_for!(NvLinks)).expect("schema");
        assert_eq!(schema["type"], "object", "{schema}");
        assert_eq!(schema["required"], serde_json::json!(["count"]), "{schema}");
    }
}
