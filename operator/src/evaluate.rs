//! The operator's brain: from what the probe saw, the probe's Lease and the health policy to per-GPU verdicts,
//! the five conditions, the Node condition, Events and the remediation wanted. A pure function: no client, no
//! clock ([`evaluate`] is given `now`), so every rule is a table test and reconciling an unchanged object gives
//! an identical status (the reconciler compares and skips the write).
//!
//! # Rules
//!
//! XIDs follow NVIDIA's immediate action (see [`xid_rule`]); a policy override wins over the catalog. Only the
//! node's current boot counts: XID history whose boot id differs from the node's never keeps a GPU Unhealthy.
//! Nothing latches: every piece of evidence either leaves the window, is remedied, ends with a reboot, or is a
//! current NVML reading that clears when the probe stops reporting it.
//!
//! | evidence | per-GPU effect | reason |
//! |---|---|---|
//! | IGNORE, RESTART_APP, WORKFLOW_XID_13/31 (8, 13, 31, 32, 43, 63, 68, 69, 92, 94, 121, 137, …) | Degraded when one GPU logs the same code more than `applicationXidRate` times within `xidWindow` | `XidRateExceeded` |
//! | a code not in the catalog | "unknown XID N"; Degraded only above the rate | `XidRateExceeded` |
//! | RESET_GPU (46, 62, 64, 95, 109, 110, 119, 120, 136, 140, 143, 155, 158, …); 167, 169 (no bucket yet: as 62) | Unhealthy until evidence of a reset (the driver's recovery action back to None after the XID, or a boot); by policy, the window passing without a repeat also clears it, and the verdict then says the clear is the policy's, not a reset | `XidCritical` |
//! | RESTART_BM (79), RESTART_VM (151) | Unhealthy until the node's boot id changes | `XidFallenOffBus` (79), `XidCritical` |
//! | WORKFLOW_XID_48 (48) | as RESET_GPU | `UncorrectableEcc` |
//! | WORKFLOW_NVLINK_ERR (74) | as RESET_GPU; the message says the fault may sit at the other end of the link | `XidNvlinkError` |
//! | WORKFLOW_NVLINK5_ERR (144–149) | by the lines' token: `Fatal` → as RESET_GPU; `Nonfatal` → Degraded above the rate; no token → Degraded while within the window | `XidNvlinkError` |
//! | WORKFLOW_NVLINK5_ERR (150, MSE) | as RESET_GPU (every row of NVIDIA's decode table) | `XidNvlinkError` |
//! | CHECK_UVM (159) | Degraded while within the window: reset the GPU if UVM or vGPU is in use, otherwise ignore | `XidCheckUvm` |
//! | WORKFLOW_XID_45 (45) | counted and shown, never escalates | — |
//! | XID 154 / the GPU's `recoveryAction` | None lifts earlier demands and remedies RESET_GPU-class XIDs; GpuReset, DrainAndReset, BusReset, RecoverImexDomain → Unhealthy; NodeReboot, SystemReboot → Unhealthy and the node-level reason; DrainP2P or an unknown value → Degraded | `RecoveryActionRequired` |
//! | other critical buckets (CONTACT_SUPPORT, CHECK_MECHANICALS, UPDATE_SWFW, …) | as RESET_GPU | `XidCritical` |
//! | other non-critical buckets (the sympathetic ones, no bucket yet) | as RESTART_APP | `XidRateExceeded` |
//! | policy override `Ignore` / `Healthy` / `Degraded` / `Unhealthy` | not counted / counted only / Degraded while within the window / as RESET_GPU | override's `reason`, else `XidPolicyOverride` |
//! | volatile uncorrected ECC > `ecc.uncorrectedUnhealthyAbove` (0) | Unhealthy | `UncorrectableEcc` |
//! | volatile corrected ECC > `ecc.correctedDegradedAbove` (off) | Degraded | `CorrectableEccHigh` |
//! | retired pages > `retiredPages.degradedAbove` (10) / `unhealthyAbove` (60) | Degraded / Unhealthy | `RetiredPagesExceeded` |
//! | retired page pending / row remap pending / row remap failure | per policy: Degraded / Degraded / Unhealthy | `RetiredPagesPending` / `RowRemapPending` / `RowRemapFailure` |
//! | temperature ≥ `temperature.warningCelsius` (85) / ≥ `criticalCelsius` (95) | Degraded / Unhealthy | `TemperatureHigh` / `Overheating` |
//! | HwThermalSlowdown or SwThermalSlowdown | per policy: Degraded | `ThermalThrottling` |
//! | a GPU in the previous verdicts or this boot's XID history that NVML no longer lists | Unhealthy | `GpuMissing` |
//! | the probe cannot load NVML (`probe.unavailableSources`) | GPUHealthy, MemoryErrors, Thermal Unknown unless kernel-log XIDs decide | `NvmlUnavailable` |
//! | the probe cannot read the kernel log | XIDErrors Unknown unless an NVML-delivered XID decides (then the message says so) | `KernelLogUnavailable` |
//!
//! # Staleness
//!
//! When the probe is not reporting (its Lease is older than the heartbeat timeout, or missing) the verdicts are
//! evaluated *as of the probe's last sign of life* (the newer of the Lease's renew time and the probe's
//! `lastReportTime`), not as of now. "The window passed without a repeat" can only be known while the probe
//! watches; freezing time keeps the last evidence-based verdict instead of letting evidence expire into a false
//! Healthy, and never flips the node to Unknown on stale data. GPUHealthy turns Unknown only when there is no
//! data at all; ProbeReporting says the data is stale and the GPUHealthy message repeats it.

mod conditions;
mod telemetry;
#[cfg(test)]
mod tests;
pub mod xid;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use gpuscope_crds::gpu_node_status::{DataSource, GpuInfo, GpuNodeStatus, GpuNodeStatusStatus, GpuVerdict, XidSource};
use gpuscope_crds::health::{Health, reason};
use gpuscope_crds::pci::PciBusId;
use gpuscope_crds::policy::{EffectivePolicy, RemediationMode, format_duration};
use gpuscope_crds::xid::{RecoveryAction, lookup};
use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;

pub use xid::{XidEffect, XidRule, xid_rule, xid_rule_for_line};

/// Key prefix for a GPU whose UUID is unknown (XID lines name only a PCI address); NVML UUIDs start with "GPU-" or
/// "MIG-", so the two never collide.
pub const PCI_KEY_PREFIX: &str = "PCI:";

/// XIDs that are memory evidence (double-bit ECC, remapping event and failure, contained and uncontained errors):
/// MemoryErrors counts them, so it never says "no memory finding" beside an UncorrectableEcc verdict.
const MEMORY_XIDS: [u32; 5] = [48, 63, 64, 94, 95];

/// Most findings a verdict's message lists before "(+N more)".
const MAX_VERDICT_FINDINGS: usize = 6;

/// What the operator knows about the node probe's Lease.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ProbeLease {
    /// No Lease for the node.
    #[default]
    Absent,
    /// A Lease that was never acquired or renewed.
    NeverRenewed,
    /// Last renewed (or acquired) at this time.
    RenewedAt(Timestamp),
}

impl ProbeLease {
    /// From the node's Lease: its renew time, else its acquire time.
    pub fn from_lease(lease: &Lease) -> ProbeLease {
        let spec = lease.spec.as_ref();
        let renewed = spec.and_then(|s| s.renew_time.as_ref().or(s.acquire_time.as_ref()));
        renewed.map_or(ProbeLease::NeverRenewed, |t| ProbeLease::RenewedAt(t.0))
    }
}

/// Everything [`evaluate`] reads about one node.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct EvaluationInput {
    /// The GpuNodeStatus status; the probe's fields are read, the operator's are ignored (see the `previous_*`).
    pub status: GpuNodeStatusStatus,
    /// The node's current boot id (Node `status.nodeInfo.bootID`); falls back to the probe's when `None`.
    pub node_boot_id: Option<String>,
    /// The probe's Lease.
    pub probe_lease: ProbeLease,
    /// The operator's conditions from the last evaluation, to keep lastTransitionTime when nothing changed.
    pub previous_conditions: Vec<Condition>,
    /// The operator's verdicts from the last evaluation: GPUs seen there and missing now are `GpuMissing`.
    pub previous_verdicts: Vec<GpuVerdict>,
    /// The object's metadata.generation.
    pub generation: Option<i64>,
    /// `spec.remediationPaused`: conditions as usual, no remediation.
    pub remediation_paused: bool,
}

impl EvaluationInput {
    /// The input for one GpuNodeStatus, its Node's boot id and its probe's Lease.
    pub fn from_object(object: &GpuNodeStatus, node_boot_id: Option<String>, probe_lease: ProbeLease) -> Self {
        let status = object.status.clone().unwrap_or_default();
        EvaluationInput {
            previous_conditions: status.conditions.clone().unwrap_or_default(),
            previous_verdicts: status.verdicts.clone().unwrap_or_default(),
            status,
            node_boot_id,
            probe_lease,
            generation: object.metadata.generation,
            remediation_paused: object.spec.remediation_paused.unwrap_or(false),
        }
    }
}

/// A condition change worth an Event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transition {
    /// Condition type, e.g. `GPUHealthy`.
    pub condition_type: String,
    /// Previous status; `None` when the condition is new.
    pub from_status: Option<String>,
    /// Previous reason.
    pub from_reason: Option<String>,
    /// New status.
    pub to_status: String,
    /// New reason.
    pub reason: String,
    /// New message.
    pub message: String,
    /// True when the new state is a problem (an Event of type Warning), false for a recovery (Normal).
    pub warning: bool,
}

/// What the operator concluded about one node.
#[derive(Clone, Debug, PartialEq)]
pub struct Evaluation {
    /// Per-GPU verdicts, ordered by index (GPUs without a known index last), including vanished GPUs.
    pub verdicts: Vec<GpuVerdict>,
    /// The worst verdict; Unknown when there are none.
    pub health: Health,
    /// XIDs within the window in the current boot (policy-ignored codes excluded).
    pub recent_xid_count: u64,
    /// GPUHealthy, XIDErrors, MemoryErrors, Thermal, ProbeReporting, in that order.
    pub conditions: Vec<Condition>,
    /// The generation evaluated.
    pub observed_generation: Option<i64>,
    /// The condition to mirror on the Node (GPUHealthy).
    pub node_condition: Condition,
    /// Condition changes worth an Event.
    pub transitions: Vec<Transition>,
    /// When to evaluate again even if nothing is written: evidence leaving the window, the heartbeat timing out.
    pub requeue_after: Option<Duration>,
    /// The remediation wanted: the policy's mode when the node is Unhealthy and remediation is not paused.
    pub remediation: Option<RemediationMode>,
}

impl Evaluation {
    /// The operator-owned status fields (everything else `None`): the body of the operator's server-side apply.
    pub fn operator_status(&self) -> GpuNodeStatusStatus {
        GpuNodeStatusStatus {
            health: Some(self.health),
            recent_xid_count: Some(self.recent_xid_count),
            verdicts: Some(self.verdicts.clone()),
            conditions: Some(self.conditions.clone()),
            observed_generation: self.observed_generation,
            ..GpuNodeStatusStatus::default()
        }
    }
}

/// Which condition a finding feeds (besides GPUHealthy, which every finding feeds).
///
/// The order is the order of a verdict's reasons at equal health: causes (the driver's demand, XIDs) before
/// symptoms (a GPU missing from NVML after XID 79).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Category {
    /// The driver's recovery action (XIDErrors).
    Recovery,
    /// An XID (XIDErrors).
    Xid,
    /// ECC, retired pages, row remapping (MemoryErrors).
    Memory,
    /// Temperature, thermal throttling (Thermal).
    Thermal,
    /// The GPU's presence in NVML's inventory (GPUHealthy only).
    Presence,
}

/// One reason a GPU is not Healthy.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Finding {
    health: Health,
    category: Category,
    reason: String,
    /// Whole sentences, without the GPU's name.
    message: String,
    /// The driver demands a node reboot: the node-level reason.
    node_reboot: bool,
    /// A memory XID (48, 63, 64, 94, 95): MemoryErrors counts it beside XIDErrors.
    memory_xid: bool,
}

/// Time and boot the evidence is judged against.
struct Ctx<'a> {
    window: Duration,
    /// `window` before now, or before the probe's last sign of life when it is not reporting.
    window_start: Timestamp,
    /// The node's current boot id, when known.
    boot: Option<&'a str>,
}

impl Ctx<'_> {
    /// Strictly inside: an occurrence exactly `window` old has left, so its leave time is always in the future.
    fn in_window(&self, t: Timestamp) -> bool {
        t > self.window_start
    }

    fn leaves_window(&self, t: Timestamp) -> Timestamp {
        plus(t, self.window)
    }

    /// Unknown boot ids (either side) cannot prove the evidence is older, so it counts.
    fn is_current_boot(&self, boot: Option<&str>) -> bool {
        match (self.boot, boot) {
            (Some(current), Some(b)) => current == b,
            _ => true,
        }
    }
}

/// Maps the ways the probe names a GPU (UUID, PCI bus id) to one key.
struct Identity {
    pci_to_uuid: BTreeMap<String, String>,
    uuid_to_pci: BTreeMap<String, String>,
    /// Every GPU in the inventory has a PCI bus id, so an unmatched PCI address really is absent.
    inventory_pcis_complete: bool,
}

impl Identity {
    fn new(status: &GpuNodeStatusStatus) -> Identity {
        let mut pci_to_uuid = BTreeMap::new();
        let mut uuid_to_pci = BTreeMap::new();
        let inventory = status.gpus.as_deref().unwrap_or_default();
        for gpu in inventory {
            if let Some(pci) = &gpu.pci_bus_id {
                pci_to_uuid.insert(normalize_pci(pci), gpu.uuid.clone());
                uuid_to_pci.insert(gpu.uuid.clone(), normalize_pci(pci));
            }
        }
        // XID history maps addresses of GPUs NVML no longer lists (the probe learns them from the driver's
        // "GPU at PCI:…: GPU-…" line); the inventory wins where both speak.
        if let Some(history) = &status.xids {
            let pairs = history.totals.iter().filter_map(|t| t.gpu_uuid.as_ref().map(|u| (&t.pci_bus_id, u)));
            let pairs =
                pairs.chain(history.recent.iter().filter_map(|e| e.gpu_uuid.as_ref().map(|u| (&e.pci_bus_id, u))));
            for (pci, uuid) in pairs {
                pci_to_uuid.entry(normalize_pci(pci)).or_insert_with(|| uuid.clone());
                uuid_to_pci.entry(uuid.clone()).or_insert_with(|| normalize_pci(pci));
            }
        }
        Identity { pci_to_uuid, uuid_to_pci, inventory_pcis_complete: inventory.iter().all(|g| g.pci_bus_id.is_some()) }
    }

    fn key_for(&self, uuid: Option<&str>, pci: &str) -> String {
        if let Some(uuid) = uuid.filter(|u| !u.is_empty()) {
            return uuid.to_string();
        }
        let pci = normalize_pci(pci);
        self.pci_to_uuid.get(&pci).cloned().unwrap_or_else(|| format!("{PCI_KEY_PREFIX}{pci}"))
    }

    /// A previous verdict's key, resolved again: a PCI-only key becomes the UUID once one is known.
    fn rekey(&self, key: &str) -> String {
        match key.strip_prefix(PCI_KEY_PREFIX) {
            Some(pci) => self.key_for(None, pci),
            None => key.to_string(),
        }
    }

    fn pci_of(&self, key: &str) -> Option<String> {
        key.strip_prefix(PCI_KEY_PREFIX).map(str::to_string).or_else(|| self.uuid_to_pci.get(key).cloned())
    }
}

fn normalize_pci(pci: &str) -> String {
    PciBusId::normalize(pci).unwrap_or_else(|| pci.trim().to_ascii_lowercase())
}

/// One GPU being judged.
struct GpuState<'a> {
    key: String,
    index: Option<u32>,
    pci: Option<String>,
    info: Option<&'a GpuInfo>,
    findings: Vec<Finding>,
}

impl GpuState<'_> {
    /// "GPU 3 (GPU-5a4c…, PCI 0000:3b:00.0)": index, UUID and PCI address, whichever are known.
    fn describe(&self) -> String {
        let uuid = (!self.key.starts_with(PCI_KEY_PREFIX)).then_some(self.key.as_str());
        let mut ids: Vec<String> = uuid.map(str::to_string).into_iter().collect();
        if let Some(pci) = &self.pci {
            ids.push(format!("PCI {pci}"));
        }
        if uuid.is_none() {
            ids.push("UUID unknown".into());
        }
        match self.index {
            Some(i) => format!("GPU {i} ({})", ids.join(", ")),
            None => format!("GPU ({})", ids.join(", ")),
        }
    }

    fn health(&self) -> Health {
        self.findings.iter().fold(Health::Healthy, |h, f| h.worst(f.health))
    }

    /// The findings' messages, worst first, at most [`MAX_VERDICT_FINDINGS`]; `None` when there are none.
    fn findings_message(&self) -> Option<String> {
        let mut parts: Vec<String> =
            self.findings.iter().take(MAX_VERDICT_FINDINGS).map(|f| f.message.clone()).collect();
        if self.findings.len() > MAX_VERDICT_FINDINGS {
            parts.push(format!("(+{} more)", self.findings.len() - MAX_VERDICT_FINDINGS));
        }
        (!parts.is_empty()).then(|| parts.join(" "))
    }
}

/// Judges one node. Pure: the same input, policy and `now` always give the same evaluation.
pub fn evaluate(input: &EvaluationInput, policy: &EffectivePolicy, now: Timestamp) -> Evaluation {
    let status = &input.status;
    let heartbeat = conditions::heartbeat(input.probe_lease, policy, now);
    let proof_of_life = [
        match input.probe_lease {
            ProbeLease::RenewedAt(t) => Some(t),
            _ => None,
        },
        status.probe.as_ref().and_then(|p| p.last_report_time.as_ref()).map(|t| t.0),
    ]
    .into_iter()
    .flatten()
    .max();
    let as_of = if heartbeat.fresh { now } else { proof_of_life.map_or(now, |t| t.min(now)) };
    let boot = input.node_boot_id.as_deref().or_else(|| status.probe.as_ref().and_then(|p| p.boot_id.as_deref()));
    let ctx = Ctx { window: policy.xid_window, window_start: minus(as_of, policy.xid_window), boot };
    let ident = Identity::new(status);
    let inventory = status.gpus.as_deref();

    // The GPUs to judge: NVML's inventory, then GPUs remembered from the last verdicts, then this boot's XIDs.
    let mut gpus: BTreeMap<String, GpuState> = BTreeMap::new();
    for info in inventory.unwrap_or_default() {
        gpus.insert(
            info.uuid.clone(),
            GpuState {
                key: info.uuid.clone(),
                index: Some(info.index),
                pci: info.pci_bus_id.as_deref().map(normalize_pci),
                info: Some(info),
                findings: Vec::new(),
            },
        );
    }
    let previously_known: BTreeSet<String> = input.previous_verdicts.iter().map(|v| ident.rekey(&v.uuid)).collect();
    for verdict in &input.previous_verdicts {
        let key = ident.rekey(&verdict.uuid);
        if gpus.contains_key(&key) {
            continue;
        }
        // A GPU new to the operator at the same index is the replacement: forget the old one rather than keep
        // a GpuMissing verdict forever.
        let replaced = verdict.index.is_some_and(|i| {
            inventory.unwrap_or_default().iter().any(|g| g.index == i && !previously_known.contains(&g.uuid))
        });
        if !replaced {
            let pci = ident.pci_of(&key);
            gpus.insert(key.clone(), GpuState { key, index: verdict.index, pci, info: None, findings: Vec::new() });
        }
    }
    // Policy-ignored codes leave no trace at all: not counted, not shown, not even as a GPU to judge.
    let evidence: Vec<xid::XidEvidence> = xid::collect(status, &ident, &ctx)
        .into_iter()
        .filter(|e| xid_rule(e.code, policy).effect != XidEffect::Ignored)
        .collect();
    for e in &evidence {
        gpus.entry(e.gpu.clone()).or_insert_with(|| GpuState {
            key: e.gpu.clone(),
            index: None,
            pci: ident.pci_of(&e.gpu),
            info: None,
            findings: Vec::new(),
        });
    }

    let mut changes: Vec<Timestamp> = evidence.iter().filter_map(|e| e.changes_at).collect();
    for gpu in gpus.values_mut().filter(|g| g.info.is_none()) {
        let finding = presence_finding(gpu, inventory.is_some(), ident.inventory_pcis_complete);
        gpu.findings.push(finding);
    }

    // The driver's recovery action first: a None after an XID is the remedy RESET_GPU-class XIDs wait for.
    let mut remedied_at: BTreeMap<String, Timestamp> = BTreeMap::new();
    if xid_rule(154, policy).effect == XidEffect::RecoveryAction {
        for gpu in gpus.values_mut() {
            let line = evidence.iter().find(|e| e.gpu == gpu.key && e.code == 154);
            if let Some(outcome) = recovery(gpu.info, line, &ctx) {
                if let Some(t) = outcome.remedied_at {
                    remedied_at.insert(gpu.key.clone(), t);
                }
                changes.extend(outcome.changes_at);
                gpu.findings.extend(outcome.finding);
            }
        }
    }

    let mut recent_xid_count: u64 = 0;
    let mut below_threshold: Vec<(String, String)> = Vec::new();
    for e in &evidence {
        let rule = xid_rule_for_line(e.code, e.nvlink5, policy);
        recent_xid_count = recent_xid_count.saturating_add(e.count);
        let Some(gpu) = gpus.get_mut(&e.gpu) else { continue };
        match xid_finding(e, &rule, remedied_at.get(&e.gpu).copied(), policy, &ctx) {
            Some(finding) => gpu.findings.push(finding),
            None if e.count > 0 => below_threshold.push((
                e.gpu.clone(),
                format!(
                    "{}, {} within {}, last at {}.",
                    xid::xid_label(e.code),
                    times(e.count),
                    format_duration(policy.xid_window),
                    fmt_time(e.last_seen)
                ),
            )),
            None => {}
        }
    }

    for gpu in gpus.values_mut() {
        if let Some(info) = gpu.info {
            gpu.findings.extend(telemetry::memory(info, policy));
            gpu.findings.extend(telemetry::thermal(info, policy));
        }
        gpu.findings.sort_by(|a, b| {
            rank(b.health)
                .cmp(&rank(a.health))
                .then(a.category.cmp(&b.category))
                .then_with(|| a.reason.cmp(&b.reason))
                .then_with(|| a.message.cmp(&b.message))
        });
        gpu.findings.dedup();
    }

    let mut ordered: Vec<GpuState> = gpus.into_values().collect();
    ordered
        .sort_by(|a, b| a.index.unwrap_or(u32::MAX).cmp(&b.index.unwrap_or(u32::MAX)).then_with(|| a.key.cmp(&b.key)));
    let verdicts: Vec<GpuVerdict> = ordered.iter().map(verdict).collect();
    let health = if verdicts.is_empty() {
        Health::Unknown
    } else {
        verdicts.iter().fold(Health::Healthy, |h, v| h.worst(v.health))
    };

    let summary = conditions::Summary {
        gpus: &ordered,
        health,
        inventory,
        has_xid_history: status.xids.is_some(),
        recent_xid_count,
        below_threshold: &below_threshold,
        policy,
        heartbeat: &heartbeat,
        nvml_unavailable: status.source_unavailable(DataSource::Nvml),
        kernel_log_unavailable: status.source_unavailable(DataSource::KernelLog),
    };
    let built = conditions::build(&summary, &input.previous_conditions, input.generation, now);

    let mut requeue_at: Vec<Timestamp> = heartbeat.expires_at.into_iter().collect();
    if as_of == now {
        requeue_at.extend(changes);
    }
    let requeue_after = requeue_at.into_iter().filter(|t| *t > now).min().map(|t| ceil_duration(t.duration_since(now)));

    let remediation =
        (health == Health::Unhealthy && policy.remediation_mode != RemediationMode::None && !input.remediation_paused)
            .then_some(policy.remediation_mode);

    Evaluation {
        verdicts,
        health,
        recent_xid_count,
        node_condition: built.node_condition,
        conditions: built.conditions,
        observed_generation: input.generation,
        transitions: built.transitions,
        requeue_after,
        remediation,
    }
}

/// Why a GPU that is not in NVML's inventory is judged the way it is.
fn presence_finding(gpu: &GpuState, inventory_reported: bool, inventory_pcis_complete: bool) -> Finding {
    let unknown = |message: String| Finding {
        health: Health::Unknown,
        category: Category::Presence,
        reason: reason::NO_DATA.into(),
        message,
        node_reboot: false,
        memory_xid: false,
    };
    if !inventory_reported {
        return unknown("The probe reports no GPU inventory, so nothing current is known about this GPU.".into());
    }
    if gpu.key.starts_with(PCI_KEY_PREFIX) && !inventory_pcis_complete {
        return unknown(
            "XIDs name this PCI address, but the probe's inventory lacks PCI bus ids to match it against.".into(),
        );
    }
    Finding {
        health: Health::Unhealthy,
        category: Category::Presence,
        reason: reason::GPU_MISSING.into(),
        message: "NVML no longer lists this GPU. Check nvidia-smi and the kernel log on the node: a GPU that fell off \
                  the bus needs a node reboot; if it is still missing after one, reseat or replace it."
            .into(),
        node_reboot: false,
        memory_xid: false,
    }
}

/// What the driver's recovery action means for one GPU.
struct RecoveryOutcome {
    finding: Option<Finding>,
    /// The action is None, reported at this time: XIDs before it are remedied.
    remedied_at: Option<Timestamp>,
    changes_at: Option<Timestamp>,
}

/// Where the current recovery action was read.
#[derive(Clone, Copy, PartialEq, Eq)]
enum RecoverySource {
    /// The probe's NVML reading: live while reported.
    Nvml,
    /// The probe's field, taken from an XID 154 line.
    KmsgField,
    /// An XID 154 line in the history.
    Line { boot_confirmed: bool },
}

/// The newest recovery action (the GPU's `recoveryAction` field or this boot's newest XID 154 line) and its effect.
fn recovery(info: Option<&GpuInfo>, line: Option<&xid::XidEvidence>, ctx: &Ctx) -> Option<RecoveryOutcome> {
    let field = info.and_then(|i| i.recovery_action.as_ref()).map(|f| {
        let source = if f.source == XidSource::Nvml { RecoverySource::Nvml } else { RecoverySource::KmsgField };
        (RecoveryAction::from_code(f.code), f.time.as_ref().map(|t| t.0), source)
    });
    let line = line.and_then(|e| {
        let (t, message) = e.newest_message.as_ref()?;
        let action = RecoveryAction::from_xid154_message(message)?;
        Some((action, Some(*t), RecoverySource::Line { boot_confirmed: e.boot_confirmed }))
    });
    // A field without a time is the probe's current reading, so it is newer than any line.
    let (action, time, source) = match (field, line) {
        (Some(f), Some(l)) => {
            if f.1.is_none_or(|ft| l.1.is_none_or(|lt| ft >= lt)) {
                f
            } else {
                l
            }
        }
        (Some(f), None) => f,
        (None, Some(l)) => l,
        (None, None) => return None,
    };
    // The same table log analysis uses (one rule, not a copy).
    let Some((health, node_reboot)) = gpuscope_crds::xid::rules::recovery_action_health(action) else {
        return Some(RecoveryOutcome { finding: None, remedied_at: time, changes_at: None });
    };
    // Reboot demands end with the boot; other demands read from a log line end with the window, so a missing
    // "back to None" line cannot latch them. A live NVML reading holds while the probe reports it.
    let expires = match (source, time) {
        (RecoverySource::Nvml, _) | (_, None) => None,
        (RecoverySource::KmsgField, Some(_)) if node_reboot => None,
        (RecoverySource::Line { boot_confirmed: true }, Some(_)) if node_reboot => None,
        (_, Some(t)) => Some(t),
    };
    if let Some(t) = expires
        && !ctx.in_window(t)
    {
        return Some(RecoveryOutcome { finding: None, remedied_at: None, changes_at: None });
    }
    let seen = match (source, time) {
        (RecoverySource::Nvml, Some(t)) => format!("read through NVML, since {}", fmt_time(t)),
        (RecoverySource::Nvml, None) => "read through NVML".to_string(),
        (_, Some(t)) => format!("XID 154 at {}", fmt_time(t)),
        (_, None) => "XID 154".to_string(),
    };
    let message = format!("The driver's recovery action is {action} ({seen}). {}", action.advice());
    Some(RecoveryOutcome {
        finding: Some(Finding {
            health,
            category: Category::Recovery,
            reason: reason::RECOVERY_ACTION_REQUIRED.into(),
            message,
            node_reboot,
            memory_xid: false,
        }),
        remedied_at: None,
        changes_at: expires.map(|t| ctx.leaves_window(t)),
    })
}

/// The finding one (GPU, code) gives under its rule, if it escalates.
fn xid_finding(
    e: &xid::XidEvidence,
    rule: &XidRule,
    remedied_at: Option<Timestamp>,
    policy: &EffectivePolicy,
    ctx: &Ctx,
) -> Option<Finding> {
    let info = lookup(e.code);
    let label = xid::xid_label(e.code);
    let window = format_duration(policy.xid_window);
    let seen = format!("{label}, {} within {window}, last at {}", times(e.count), fmt_time(e.last_seen));
    let by = if rule.from_policy { "the health policy makes it" } else { "it is" };
    let (health, what) = match rule.effect {
        XidEffect::Ignored | XidEffect::CountedOnly | XidEffect::Informational | XidEffect::RecoveryAction => {
            return None;
        }
        XidEffect::DegradedAboveRate => {
            if e.count <= u64::from(policy.application_xid_rate) {
                return None;
            }
            (Health::Degraded, format!("{seen}: more than the policy's {}.", policy.application_xid_rate))
        }
        XidEffect::DegradedWhileInWindow => {
            if !e.last_in_window(ctx) {
                return None;
            }
            let why = if rule.from_policy {
                "the health policy makes it Degraded while within the window.".to_string()
            } else {
                format!("Degraded while within {window}: {}", gpuscope_crds::xid::rules::rule_reasoning(e.code, rule))
            };
            (Health::Degraded, format!("{seen}; {why}"))
        }
        XidEffect::UnhealthyUntilRemedy => {
            // Evidence of a reset: the driver's recovery action back to None after the XID (a boot is the other:
            // evidence from an earlier boot never reaches here).
            if remedied_at.is_some_and(|r| r > e.last_seen) {
                return None;
            }
            if !e.last_in_window(ctx) {
                // NVIDIA's remedy is a reset, not time: the clear is the policy's, and the verdict says so.
                return Some(Finding {
                    health: Health::Healthy,
                    category: Category::Xid,
                    reason: String::new(),
                    message: format!(
                        "XID {} last at {}: Healthy again by the policy's {window} window, not by evidence of a \
                         reset; reset the GPU if nobody did.",
                        e.code,
                        fmt_time(e.last_seen)
                    ),
                    node_reboot: false,
                    memory_xid: false,
                });
            }
            (
                Health::Unhealthy,
                format!(
                    "{seen}; {by} Unhealthy until a reset is seen (the driver's recovery action back to None, or a \
                     reboot); by policy at the latest when {window} pass without a repeat ({}).",
                    fmt_time(ctx.leaves_window(e.last_seen))
                ),
            )
        }
        XidEffect::UnhealthyUntilReboot => {
            if !e.boot_confirmed && !e.last_in_window(ctx) {
                return None;
            }
            let until = if e.boot_confirmed {
                "until the node reboots".to_string()
            } else {
                // Without boot ids a reboot cannot be seen; the window bounds it instead of latching.
                format!(
                    "until the node reboots (boot id unknown: at most until {})",
                    fmt_time(ctx.leaves_window(e.last_seen))
                )
            };
            (Health::Unhealthy, format!("{label}, last at {} in this boot; Unhealthy {until}.", fmt_time(e.last_seen)))
        }
    };
    let mut message = format!("{what} {}", info.recommended_action);
    if rule.reason == reason::XID_NVLINK && !info.recommended_action.contains("other end of the link") {
        message.push_str(" The fault may sit at the other end of the link: check the peer GPU or NVSwitch too.");
    }
    Some(Finding {
        health,
        category: Category::Xid,
        reason: rule.reason.clone(),
        message,
        node_reboot: false,
        memory_xid: MEMORY_XIDS.contains(&e.code),
    })
}

fn verdict(gpu: &GpuState) -> GpuVerdict {
    let mut reasons: Vec<String> = Vec::new();
    for f in &gpu.findings {
        // A note on a Healthy GPU (a clear by policy) has no reason: reasons explain why a GPU is not Healthy.
        if !f.reason.is_empty() && !reasons.contains(&f.reason) {
            reasons.push(f.reason.clone());
        }
    }
    GpuVerdict {
        uuid: gpu.key.clone(),
        index: gpu.index,
        health: gpu.health(),
        reasons,
        message: gpu.findings_message(),
    }
}

/// Unhealthy > Degraded > Unknown > Healthy, as [`Health::worst`] orders them.
fn rank(h: Health) -> u8 {
    match h {
        Health::Healthy => 0,
        Health::Unknown => 1,
        Health::Degraded => 2,
        Health::Unhealthy => 3,
    }
}

fn times(n: u64) -> String {
    if n == 1 { "once".to_string() } else { format!("{n} times") }
}

/// RFC 3339 in whole seconds, as Kubernetes prints times.
fn fmt_time(t: Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

fn plus(t: Timestamp, d: Duration) -> Timestamp {
    t.saturating_add(d).unwrap_or(Timestamp::MAX)
}

fn minus(t: Timestamp, d: Duration) -> Timestamp {
    t.saturating_sub(d).unwrap_or(Timestamp::MIN)
}

/// Whole seconds, rounded up, so a requeue never fires just before the change it waits for.
fn ceil_duration(d: jiff::SignedDuration) -> Duration {
    let secs = d.as_secs().max(0).unsigned_abs();
    let extra = u64::from(d.subsec_nanos() > 0);
    Duration::from_secs(secs.saturating_add(extra))
}
