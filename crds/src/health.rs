//! The health vocabulary shared by operator, facade and `kubectl`: verdicts, condition types and reasons.
//!
//! Condition types and reasons are API: dashboards, alerts and prompts match on them. Add, never rename.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A GPU's (or a node's) health verdict.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema)]
pub enum Health {
    /// No evidence of a problem.
    Healthy,
    /// Usable, but something needs attention (e.g. application XIDs above the policy's rate, pending row remaps).
    Degraded,
    /// Do not schedule work on it: a fatal XID, uncorrectable memory errors, a missing GPU.
    Unhealthy,
    /// Nothing current is known (the probe stopped reporting, or never did).
    #[default]
    Unknown,
}

impl Health {
    /// The worse of two verdicts: Unhealthy > Degraded > Unknown > Healthy.
    pub fn worst(self, other: Health) -> Health {
        if other.rank() > self.rank() { other } else { self }
    }

    fn rank(self) -> u8 {
        match self {
            Health::Healthy => 0,
            Health::Unknown => 1,
            Health::Degraded => 2,
            Health::Unhealthy => 3,
        }
    }

    /// The name as it appears in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Healthy => "Healthy",
            Health::Degraded => "Degraded",
            Health::Unhealthy => "Unhealthy",
            Health::Unknown => "Unknown",
        }
    }
}

impl std::fmt::Display for Health {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Condition types the operator publishes on each GpuNodeStatus (and `GPUHealthy` on the Node).
pub mod condition_type {
    /// The summary: False when any GPU is Unhealthy.
    pub const GPU_HEALTHY: &str = "GPUHealthy";
    /// XIDs in the policy window.
    pub const XID_ERRORS: &str = "XIDErrors";
    /// ECC errors, retired pages, row remapping.
    pub const MEMORY_ERRORS: &str = "MemoryErrors";
    /// Temperature and thermal throttling.
    pub const THERMAL: &str = "Thermal";
    /// Whether the node's probe renews its Lease; the one place freshness is published.
    pub const PROBE_REPORTING: &str = "ProbeReporting";

    /// Every type the operator currently produces; others found on objects are removed.
    pub const ALL: [&str; 5] = [GPU_HEALTHY, XID_ERRORS, MEMORY_ERRORS, THERMAL, PROBE_REPORTING];
}

/// Machine-readable reasons, used on conditions and per-GPU verdicts (CamelCase).
pub mod reason {
    /// Nothing wrong.
    pub const HEALTHY: &str = "Healthy";
    /// XID 79: the GPU fell off the PCIe bus.
    pub const XID_FALLEN_OFF_BUS: &str = "XidFallenOffBus";
    /// An XID whose catalog action is a GPU reset or node reboot.
    pub const XID_CRITICAL: &str = "XidCritical";
    /// Application-class XIDs above the policy's rate.
    pub const XID_RATE: &str = "XidRateExceeded";
    /// The driver's recovery action (XID 154 / NVML) demands a reset or reboot.
    pub const RECOVERY_ACTION_REQUIRED: &str = "RecoveryActionRequired";
    /// Uncorrectable ECC errors above the policy's threshold.
    pub const UNCORRECTABLE_ECC: &str = "UncorrectableEcc";
    /// Row remapping failed (no spare rows).
    pub const ROW_REMAP_FAILURE: &str = "RowRemapFailure";
    /// Row remapping pending: reset the GPU when convenient.
    pub const ROW_REMAP_PENDING: &str = "RowRemapPending";
    /// Retired pages above the policy's threshold.
    pub const RETIRED_PAGES: &str = "RetiredPagesExceeded";
    /// Temperature above the policy's critical threshold.
    pub const OVERHEATING: &str = "Overheating";
    /// The GPU is throttling for thermal reasons.
    pub const THERMAL_THROTTLING: &str = "ThermalThrottling";
    /// A GPU the node had is no longer visible to NVML.
    pub const GPU_MISSING: &str = "GpuMissing";
    /// The probe's Lease was renewed within the timeout.
    pub const PROBE_HEARTBEAT: &str = "HeartbeatRecent";
    /// The probe's Lease was not renewed within the timeout.
    pub const PROBE_STALE: &str = "HeartbeatTimeout";
    /// No probe Lease exists for the node.
    pub const PROBE_MISSING: &str = "NoProbeLease";
    /// Temperature at or above the policy's warning threshold (below critical).
    pub const TEMPERATURE_HIGH: &str = "TemperatureHigh";
    /// A page retirement waits for the next GPU reset.
    pub const RETIRED_PAGES_PENDING: &str = "RetiredPagesPending";
    /// Corrected ECC errors above the policy's threshold: memory is wearing.
    pub const CORRECTABLE_ECC: &str = "CorrectableEccHigh";
    /// An NVLink XID (74, 144–150): the fault may sit at either end of the link.
    pub const XID_NVLINK: &str = "XidNvlinkError";
    /// XID 159 (NVIDIA's CHECK_UVM): reset the GPU if UVM or vGPU is in use on it, otherwise ignore.
    pub const XID_CHECK_UVM: &str = "XidCheckUvm";
    /// A fatal NVSwitch SXid: NVLink is down on the node (a node-level fault on HGX/DGX systems).
    pub const NVSWITCH_FATAL: &str = "NvswitchFatalSxid";
    /// An XID the health policy overrides to Degraded or Unhealthy (when the override names no reason).
    pub const XID_POLICY_OVERRIDE: &str = "XidPolicyOverride";
    /// The probe has reported no GPU data for this node (or for this GPU) yet.
    pub const NO_DATA: &str = "NoGpuData";
    /// No XID within the policy window (XIDErrors False).
    pub const NO_RECENT_XIDS: &str = "NoRecentXids";
    /// XIDs within the window, none above the policy's thresholds (XIDErrors False).
    pub const XIDS_BELOW_THRESHOLD: &str = "XidsBelowThreshold";
    /// No memory error above the policy's thresholds (MemoryErrors False).
    pub const NO_MEMORY_ERRORS: &str = "NoMemoryErrors";
    /// Temperatures below the warning threshold and no thermal throttling (Thermal False).
    pub const TEMPERATURE_NORMAL: &str = "TemperatureNormal";
    /// The probe cannot load NVML on the node (no NVIDIA driver or container runtime there): nothing about its
    /// GPUs is known, so health is Unknown.
    pub const NVML_UNAVAILABLE: &str = "NvmlUnavailable";
    /// The probe cannot read the kernel log: only the XIDs NVML delivers as events are seen.
    pub const KERNEL_LOG_UNAVAILABLE: &str = "KernelLogUnavailable";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worst_orders_unhealthy_over_degraded_over_unknown_over_healthy() {
        assert_eq!(Health::Healthy.worst(Health::Degraded), Health::Degraded);
        assert_eq!(Health::Unhealthy.worst(Health::Degraded), Health::Unhealthy);
        assert_eq!(Health::Unknown.worst(Health::Healthy), Health::Unknown);
        assert_eq!(Health::Degraded.worst(Health::Unknown), Health::Degraded);
    }

    #[test]
    fn health_serializes_as_its_api_name() {
        for h in [Health::Healthy, Health::Degraded, Health::Unhealthy, Health::Unknown] {
            assert_eq!(serde_json::to_value(h).ok(), Some(serde_json::Value::from(h.as_str())));
        }
    }
}
