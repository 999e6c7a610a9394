//! `GpuHealthPolicy` (gpuscope.dev/v1alpha1): how the operator turns what the probe saw into health verdicts.
//!
//! Cluster-scoped; the operator uses the object named [`DEFAULT_POLICY_NAME`] and the built-in defaults
//! ([`EffectivePolicy::default`]) when there is none. Every spec field is optional: an empty spec is a complete,
//! sensible policy. [`GpuHealthPolicySpec::validate`] resolves the defaults, parses durations and checks the
//! thresholds against each other; an invalid policy is reported in its status and the last valid one stays in
//! force (the operator's job, not this module's).

// clippy reads kube's repeated `printcolumn(type_ = ...)` arguments as duplicated attributes; they are not.
#![allow(clippy::duplicated_attributes)]

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::health::Health;

pub use crate::duration::{DurationError, format_duration, parse_duration};

/// The name of the policy the operator applies; other GpuHealthPolicy objects are validated but not used.
pub const DEFAULT_POLICY_NAME: &str = "default";

/// Default `temperature.warningCelsius`: at or above it a GPU is Degraded (TemperatureHigh).
pub const DEFAULT_TEMPERATURE_WARNING_CELSIUS: u32 = 85;
/// Default `temperature.criticalCelsius`: at or above it a GPU is Unhealthy (Overheating).
pub const DEFAULT_TEMPERATURE_CRITICAL_CELSIUS: u32 = 95;
/// Highest temperature threshold accepted; anything above is a typo (no GPU runs there).
pub const MAX_TEMPERATURE_CELSIUS: u32 = 150;
/// Default `ecc.uncorrectedUnhealthyAbove`: any volatile uncorrected ECC error makes the GPU Unhealthy.
pub const DEFAULT_ECC_UNCORRECTED_UNHEALTHY_ABOVE: u64 = 0;
/// Default `retiredPages.degradedAbove` (page retirement caps at 64 pages per GPU).
pub const DEFAULT_RETIRED_PAGES_DEGRADED_ABOVE: u64 = 10;
/// Default `retiredPages.unhealthyAbove`: close to the 64-page cap, where NVIDIA considers an RMA.
pub const DEFAULT_RETIRED_PAGES_UNHEALTHY_ABOVE: u64 = 60;
/// Default `xidWindow`.
pub const DEFAULT_XID_WINDOW: Duration = Duration::from_secs(24 * 3600);
/// Default `applicationXidRate`: more than this many of one application-class XID on one GPU within the window
/// degrade it.
pub const DEFAULT_APPLICATION_XID_RATE: u32 = 5;
/// Default `heartbeatTimeout` (the probe renews its Lease every 30 s).
pub const DEFAULT_HEARTBEAT_TIMEOUT: Duration = Duration::from_secs(120);
/// Default `remediation.maxUnavailablePercent`.
pub const DEFAULT_MAX_UNAVAILABLE_PERCENT: u32 = 10;
/// Longest `xidWindow` accepted: the XID history is capped, so a longer window would only pretend to see more.
pub const MAX_XID_WINDOW: Duration = Duration::from_secs(90 * 24 * 3600);
/// Longest `heartbeatTimeout` accepted.
pub const MAX_HEARTBEAT_TIMEOUT: Duration = Duration::from_secs(24 * 3600);
/// Longest override `reason` accepted (Kubernetes allows 1024; a reason is an identifier, not a message).
pub const MAX_REASON_LEN: usize = 128;

/// How the operator judges GPU health. Every field is optional and defaults to a value right for most clusters;
/// the operator uses the policy named "default".
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "gpuscope.dev",
    version = "v1alpha1",
    kind = "GpuHealthPolicy",
    plural = "gpuhealthpolicies",
    singular = "gpuhealthpolicy",
    shortname = "ghp",
    category = "gpu",
    status = "GpuHealthPolicyStatus",
    derive = "PartialEq",
    doc = "How gpuscope's operator judges GPU health: thresholds, the XID window and overrides, the probe heartbeat \
           timeout and remediation. The operator uses the policy named \"default\".",
    printcolumn(
        name = "Valid",
        type_ = "boolean",
        json_path = ".status.valid",
        description = "Spec passed validation"
    ),
    printcolumn(
        name = "Remediation",
        type_ = "string",
        json_path = ".spec.remediation.mode",
        description = "none, taint or cordon (empty: none)"
    ),
    printcolumn(
        name = "XID Window",
        type_ = "string",
        json_path = ".spec.xidWindow",
        description = "How long an XID counts (empty: 24h)"
    ),
    printcolumn(
        name = "Message",
        type_ = "string",
        json_path = ".status.message",
        description = "Why the spec is invalid, if it is",
        priority = "1"
    ),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
pub struct GpuHealthPolicySpec {
    /// Temperature thresholds and what thermal throttling means.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<TemperaturePolicy>,
    /// ECC error thresholds (volatile counters, since the driver loaded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ecc: Option<EccPolicy>,
    /// Retired-page thresholds (page retirement, GPUs before Ampere).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retired_pages: Option<RetiredPagesPolicy>,
    /// What pending and failed row remaps mean (Ampere and newer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub row_remapping: Option<RowRemappingPolicy>,
    /// How long an XID counts as evidence, e.g. "30m", "2h", "24h" (a whole number followed by s, m, h or d;
    /// parts may be combined, e.g. "1h30m"). XIDs from an earlier boot of the node never count. Default "24h",
    /// at most "90d".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub xid_window: Option<String>,
    /// A GPU is Degraded when it logs the same application-class XID (NVIDIA's IGNORE, RESTART_APP and the
    /// XID 13/31 workflows, and codes not in the catalog) more than this many times within xidWindow. Default 5.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub application_xid_rate: Option<u32>,
    /// Per-XID overrides of NVIDIA's catalog, e.g. to follow NVIDIA's device plugin on XID 109 (Ignore) or 94
    /// (Unhealthy). One entry per code; an override wins over the catalog.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub xid_overrides: Option<Vec<XidOverride>>,
    /// How long the node probe's Lease may go unrenewed before ProbeReporting turns Unknown, e.g. "2m". Keep it
    /// above the probe's 30 s renew interval. Default "2m", at most "24h".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heartbeat_timeout: Option<String>,
    /// What the operator does to a Node whose GPUs are Unhealthy. Default: nothing (conditions and Events only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remediation: Option<RemediationPolicy>,
}

/// Temperature thresholds (GPU core temperature, °C) and thermal throttling.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TemperaturePolicy {
    /// At or above this temperature the GPU is Degraded (TemperatureHigh). Default 85; must be below
    /// criticalCelsius.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warning_celsius: Option<u32>,
    /// At or above this temperature the GPU is Unhealthy (Overheating). Default 95, at most 150.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub critical_celsius: Option<u32>,
    /// What thermal clock throttling (HwThermalSlowdown, SwThermalSlowdown) makes a GPU: Ignore, Degraded or
    /// Unhealthy. Default Degraded (ThermalThrottling).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "evidence_effect_schema")]
    pub thermal_throttling: Option<EvidenceEffect>,
}

/// ECC error thresholds, on the volatile counters (errors since the driver loaded or the GPU was reset).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EccPolicy {
    /// More volatile uncorrected (double-bit) ECC errors than this make the GPU Unhealthy (UncorrectableEcc)
    /// until it is reset. Default 0: any uncorrected error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uncorrected_unhealthy_above: Option<u64>,
    /// More volatile corrected (single-bit) ECC errors than this make the GPU Degraded (CorrectableEccHigh), a
    /// warning that memory is wearing. Default: unset, corrected errors never degrade.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub corrected_degraded_above: Option<u64>,
}

/// Retired-page thresholds, on the count of pages retired for single- and double-bit errors together.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RetiredPagesPolicy {
    /// More retired pages than this make the GPU Degraded (RetiredPagesExceeded). Default 10; must be below
    /// unhealthyAbove.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub degraded_above: Option<u64>,
    /// More retired pages than this make the GPU Unhealthy (RetiredPagesExceeded). Default 60 (the cap is 64).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unhealthy_above: Option<u64>,
    /// What a retirement waiting for the next GPU reset makes the GPU: Ignore, Degraded or Unhealthy. Default
    /// Degraded (RetiredPagesPending).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "evidence_effect_schema")]
    pub pending: Option<EvidenceEffect>,
}

/// What the row remapper's state means (Ampere and newer).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RowRemappingPolicy {
    /// A remap waiting for the next GPU reset: Ignore, Degraded or Unhealthy. Default Degraded (RowRemapPending:
    /// reset the GPU when convenient).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "evidence_effect_schema")]
    pub pending: Option<EvidenceEffect>,
    /// A failed remap (no spare rows left): Ignore, Degraded or Unhealthy. Default Unhealthy (RowRemapFailure).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "evidence_effect_schema")]
    pub failure: Option<EvidenceEffect>,
}

/// What a piece of evidence makes a GPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum EvidenceEffect {
    /// Not a problem: the evidence is shown nowhere.
    Ignore,
    /// Usable, needs attention.
    Degraded,
    /// Do not schedule work on it.
    Unhealthy,
}

impl EvidenceEffect {
    /// The verdict the evidence produces; `None` for Ignore.
    pub fn health(self) -> Option<Health> {
        match self {
            EvidenceEffect::Ignore => None,
            EvidenceEffect::Degraded => Some(Health::Degraded),
            EvidenceEffect::Unhealthy => Some(Health::Unhealthy),
        }
    }
}

/// One XID code handled differently from NVIDIA's catalog.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct XidOverride {
    /// The XID code, e.g. 109.
    pub code: u32,
    /// What one occurrence within xidWindow makes the GPU: Ignore (not counted, not shown), Healthy (counted and
    /// shown, never affects health), Degraded, or Unhealthy (until the driver's recovery action returns to None,
    /// the window passes without a repeat, or the node reboots).
    pub health: XidOverrideHealth,
    /// Reason on the GPU's verdict and conditions when the override makes it Degraded or Unhealthy, CamelCase,
    /// e.g. "FollowDevicePlugin". Default "XidPolicyOverride".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// The verdict an XID override gives.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum XidOverrideHealth {
    /// Counted and shown, never affects health.
    Healthy,
    /// Degraded while an occurrence is within the window.
    Degraded,
    /// Unhealthy until remedied (recovery action None, window without a repeat, reboot).
    Unhealthy,
    /// Not counted, not shown.
    Ignore,
}

/// What the operator does to Nodes with Unhealthy GPUs.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RemediationPolicy {
    /// none (conditions and Events only), taint (gpuscope.dev/gpu-unhealthy:NoSchedule, removed when healthy
    /// again) or cordon. Default none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "remediation_mode_schema")]
    pub mode: Option<RemediationMode>,
    /// At most this percentage of GPU nodes may be tainted or cordoned by the operator at once (rounded down,
    /// but at least one node when above 0), so a bad policy or a fleet-wide driver event cannot empty the
    /// cluster. 0 to 100, default 10.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_unavailable_percent: Option<u32>,
}

/// The remediation the operator takes on a Node with Unhealthy GPUs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum RemediationMode {
    /// Conditions and Events only.
    #[default]
    None,
    /// Taint the Node gpuscope.dev/gpu-unhealthy:NoSchedule.
    Taint,
    /// Cordon the Node (spec.unschedulable).
    Cordon,
}

impl RemediationMode {
    /// The name as written in the spec.
    pub fn as_str(self) -> &'static str {
        match self {
            RemediationMode::None => "none",
            RemediationMode::Taint => "taint",
            RemediationMode::Cordon => "cordon",
        }
    }
}

// kube-derive hoists an `Option<enum>` field's enum schema into the field and, in doing so, replaces the field's
// description (which names the default) with the enum type's. A plain string enum has nothing to hoist, so the
// field keeps its own description in `kubectl explain`. The tests check these lists against serde.

/// Schema of an optional [`EvidenceEffect`] field.
fn evidence_effect_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({"type": "string", "enum": ["Ignore", "Degraded", "Unhealthy"]})
}

/// Schema of an optional [`RemediationMode`] field.
fn remediation_mode_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({"type": "string", "enum": ["none", "taint", "cordon"]})
}

/// Whether the policy is valid, as the operator last checked it.
#[derive(KubeSchema, Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GpuHealthPolicyStatus {
    /// True when the spec passed validation; when false the operator keeps using the last valid policy (or the
    /// built-in defaults).
    #[serde(default)]
    pub valid: bool,
    /// Why the spec is invalid, naming the field and what is allowed; empty when valid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The metadata.generation the operator last validated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Conditions about the policy, e.g. whether it was accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Option<Vec<Condition>>,
}

/// A policy with every default resolved, durations parsed and thresholds checked: what the evaluator reads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EffectivePolicy {
    /// At or above: Degraded (TemperatureHigh).
    pub temperature_warning_celsius: u32,
    /// At or above: Unhealthy (Overheating).
    pub temperature_critical_celsius: u32,
    /// What thermal throttling makes a GPU.
    pub thermal_throttling: EvidenceEffect,
    /// Volatile uncorrected ECC errors above this: Unhealthy.
    pub ecc_uncorrected_unhealthy_above: u64,
    /// Volatile corrected ECC errors above this: Degraded; `None` disables the check.
    pub ecc_corrected_degraded_above: Option<u64>,
    /// Retired pages above this: Degraded.
    pub retired_pages_degraded_above: u64,
    /// Retired pages above this: Unhealthy.
    pub retired_pages_unhealthy_above: u64,
    /// What a pending page retirement makes a GPU.
    pub retired_pages_pending: EvidenceEffect,
    /// What a pending row remap makes a GPU.
    pub row_remap_pending: EvidenceEffect,
    /// What a failed row remap makes a GPU.
    pub row_remap_failure: EvidenceEffect,
    /// How long an XID counts.
    pub xid_window: Duration,
    /// More than this many of one rate-class XID on one GPU within the window: Degraded.
    pub application_xid_rate: u32,
    /// Per-code overrides of the catalog, keyed by code.
    pub xid_overrides: BTreeMap<u32, EffectiveXidOverride>,
    /// Lease renewal older than this: ProbeReporting Unknown.
    pub heartbeat_timeout: Duration,
    /// What to do to Nodes with Unhealthy GPUs.
    pub remediation_mode: RemediationMode,
    /// Cap on Nodes tainted or cordoned at once, in percent of GPU nodes.
    pub max_unavailable_percent: u32,
}

/// One resolved XID override.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EffectiveXidOverride {
    /// The verdict it gives.
    pub health: XidOverrideHealth,
    /// Reason for Degraded/Unhealthy verdicts; `None` means the default `XidPolicyOverride`.
    pub reason: Option<String>,
}

impl Default for EffectivePolicy {
    /// The built-in policy, used when no GpuHealthPolicy named "default" exists.
    fn default() -> Self {
        EffectivePolicy {
            temperature_warning_celsius: DEFAULT_TEMPERATURE_WARNING_CELSIUS,
            temperature_critical_celsius: DEFAULT_TEMPERATURE_CRITICAL_CELSIUS,
            thermal_throttling: EvidenceEffect::Degraded,
            ecc_uncorrected_unhealthy_above: DEFAULT_ECC_UNCORRECTED_UNHEALTHY_ABOVE,
            ecc_corrected_degraded_above: None,
            retired_pages_degraded_above: DEFAULT_RETIRED_PAGES_DEGRADED_ABOVE,
            retired_pages_unhealthy_above: DEFAULT_RETIRED_PAGES_UNHEALTHY_ABOVE,
            retired_pages_pending: EvidenceEffect::Degraded,
            row_remap_pending: EvidenceEffect::Degraded,
            row_remap_failure: EvidenceEffect::Unhealthy,
            xid_window: DEFAULT_XID_WINDOW,
            application_xid_rate: DEFAULT_APPLICATION_XID_RATE,
            xid_overrides: BTreeMap::new(),
            heartbeat_timeout: DEFAULT_HEARTBEAT_TIMEOUT,
            remediation_mode: RemediationMode::None,
            max_unavailable_percent: DEFAULT_MAX_UNAVAILABLE_PERCENT,
        }
    }
}

/// Why a policy spec is invalid. Every message starts with the field's path and says what is allowed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// A duration string that does not parse.
    #[error(
        "{field}: {value:?} is not a duration ({reason}); write whole numbers followed by s, m, h or d, e.g. \
         \"30m\", \"2h\", \"24h\" or \"1h30m\""
    )]
    InvalidDuration {
        /// Path of the field, e.g. `spec.xidWindow`.
        field: String,
        /// The value as written.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A number or duration outside its allowed range.
    #[error("{field}: {value} is out of range; allowed: {allowed}")]
    OutOfRange {
        /// Path of the field.
        field: String,
        /// The value as written or resolved.
        value: String,
        /// The allowed range, in words.
        allowed: String,
    },
    /// Two thresholds in the wrong order.
    #[error("{field} ({value}) must be below {upper_field} ({upper_value})")]
    NotBelow {
        /// Path of the lower threshold.
        field: String,
        /// Its resolved value.
        value: u64,
        /// Path of the threshold it must stay below.
        upper_field: String,
        /// That threshold's resolved value.
        upper_value: u64,
    },
    /// The same XID code overridden twice.
    #[error("{field}: XID {code} is listed more than once; keep one entry per code")]
    DuplicateOverride {
        /// Path of the second entry, e.g. `spec.xidOverrides[3].code`.
        field: String,
        /// The repeated code.
        code: u32,
    },
    /// An override reason that is not a valid condition reason.
    #[error(
        "{field}: {value:?} is not a valid reason; use letters and digits starting with a letter (CamelCase), at \
         most {MAX_REASON_LEN} characters, e.g. \"FollowDevicePlugin\""
    )]
    InvalidReason {
        /// Path of the field.
        field: String,
        /// The value as written.
        value: String,
    },
}

impl PolicyError {
    /// Path of the offending field, e.g. `spec.temperature.warningCelsius`.
    pub fn field(&self) -> &str {
        match self {
            PolicyError::InvalidDuration { field, .. }
            | PolicyError::OutOfRange { field, .. }
            | PolicyError::NotBelow { field, .. }
            | PolicyError::DuplicateOverride { field, .. }
            | PolicyError::InvalidReason { field, .. } => field,
        }
    }
}

impl GpuHealthPolicySpec {
    /// Resolves defaults, parses durations and checks thresholds; the first problem found is returned.
    pub fn validate(&self) -> Result<EffectivePolicy, PolicyError> {
        let defaults = EffectivePolicy::default();
        let temperature = self.temperature.clone().unwrap_or_default();
        let ecc = self.ecc.clone().unwrap_or_default();
        let retired = self.retired_pages.clone().unwrap_or_default();
        let remap = self.row_remapping.clone().unwrap_or_default();
        let remediation = self.remediation.clone().unwrap_or_default();

        let warning = temperature.warning_celsius.unwrap_or(defaults.temperature_warning_celsius);
        let critical = temperature.critical_celsius.unwrap_or(defaults.temperature_critical_celsius);
        if warning == 0 {
            return Err(out_of_range("spec.temperature.warningCelsius", warning, "1 or more"));
        }
        if critical > MAX_TEMPERATURE_CELSIUS {
            return Err(out_of_range(
                "spec.temperature.criticalCelsius",
                critical,
                &format!("at most {MAX_TEMPERATURE_CELSIUS} (degrees Celsius)"),
            ));
        }
        if warning >= critical {
            return Err(PolicyError::NotBelow {
                field: "spec.temperature.warningCelsius".into(),
                value: warning.into(),
                upper_field: "spec.temperature.criticalCelsius".into(),
                upper_value: critical.into(),
            });
        }

        let pages_degraded = retired.degraded_above.unwrap_or(defaults.retired_pages_degraded_above);
        let pages_unhealthy = retired.unhealthy_above.unwrap_or(defaults.retired_pages_unhealthy_above);
        if pages_degraded >= pages_unhealthy {
            return Err(PolicyError::NotBelow {
                field: "spec.retiredPages.degradedAbove".into(),
                value: pages_degraded,
                upper_field: "spec.retiredPages.unhealthyAbove".into(),
                upper_value: pages_unhealthy,
            });
        }

        let xid_window = match &self.xid_window {
            Some(text) => duration_field("spec.xidWindow", text, MAX_XID_WINDOW)?,
            None => defaults.xid_window,
        };
        let heartbeat_timeout = match &self.heartbeat_timeout {
            Some(text) => duration_field("spec.heartbeatTimeout", text, MAX_HEARTBEAT_TIMEOUT)?,
            None => defaults.heartbeat_timeout,
        };

        let max_unavailable_percent = remediation.max_unavailable_percent.unwrap_or(defaults.max_unavailable_percent);
        if max_unavailable_percent > 100 {
            return Err(out_of_range("spec.remediation.maxUnavailablePercent", max_unavailable_percent, "0 to 100"));
        }

        let mut xid_overrides = BTreeMap::new();
        for (i, o) in self.xid_overrides.iter().flatten().enumerate() {
            if o.code == 0 {
                return Err(out_of_range(&format!("spec.xidOverrides[{i}].code"), 0, "1 or more (an XID code)"));
            }
            if let Some(reason) = &o.reason
                && !is_valid_reason(reason)
            {
                return Err(PolicyError::InvalidReason {
                    field: format!("spec.xidOverrides[{i}].reason"),
                    value: reason.clone(),
                });
            }
            let entry = EffectiveXidOverride { health: o.health, reason: o.reason.clone() };
            if xid_overrides.insert(o.code, entry).is_some() {
                return Err(PolicyError::DuplicateOverride {
                    field: format!("spec.xidOverrides[{i}].code"),
                    code: o.code,
                });
            }
        }

        Ok(EffectivePolicy {
            temperature_warning_celsius: warning,
            temperature_critical_celsius: critical,
            thermal_throttling: temperature.thermal_throttling.unwrap_or(defaults.thermal_throttling),
            ecc_uncorrected_unhealthy_above: ecc
                .uncorrected_unhealthy_above
                .unwrap_or(defaults.ecc_uncorrected_unhealthy_above),
            ecc_corrected_degraded_above: ecc.corrected_degraded_above,
            retired_pages_degraded_above: pages_degraded,
            retired_pages_unhealthy_above: pages_unhealthy,
            retired_pages_pending: retired.pending.unwrap_or(defaults.retired_pages_pending),
            row_remap_pending: remap.pending.unwrap_or(defaults.row_remap_pending),
            row_remap_failure: remap.failure.unwrap_or(defaults.row_remap_failure),
            xid_window,
            application_xid_rate: self.application_xid_rate.unwrap_or(defaults.application_xid_rate),
            xid_overrides,
            heartbeat_timeout,
            remediation_mode: remediation.mode.unwrap_or(defaults.remediation_mode),
            max_unavailable_percent,
        })
    }
}

fn out_of_range(field: &str, value: impl fmt::Display, allowed: &str) -> PolicyError {
    PolicyError::OutOfRange { field: field.into(), value: value.to_string(), allowed: allowed.into() }
}

fn duration_field(field: &str, text: &str, max: Duration) -> Result<Duration, PolicyError> {
    let d = parse_duration(text).map_err(|e| PolicyError::InvalidDuration {
        field: field.into(),
        value: text.into(),
        reason: e.to_string(),
    })?;
    if d.is_zero() || d > max {
        return Err(PolicyError::OutOfRange {
            field: field.into(),
            value: format!("{text:?}"),
            allowed: format!("more than 0s and at most {}", format_duration(max)),
        });
    }
    Ok(d)
}

/// Kubernetes' rule for a condition reason, narrowed to what an identifier needs: a letter, then letters and
/// digits.
fn is_valid_reason(reason: &str) -> bool {
    reason.len() <= MAX_REASON_LEN
        && reason.starts_with(|c: char| c.is_ascii_alphabetic())
        && reason.chars().all(|c| c.is_ascii_alphanumeric())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(json: serde_json::Value) -> GpuHealthPolicySpec {
        serde_json::from_value(json).expect("spec json")
    }

    fn error_of(json: serde_json::Value) -> PolicyError {
        match spec(json).validate() {
            Ok(p) => panic!("expected an invalid policy, got {p:?}"),
            Err(e) => e,
        }
    }

    #[test]
    fn an_empty_spec_resolves_to_the_built_in_defaults() {
        let p = GpuHealthPolicySpec::default().validate().expect("valid");
        assert_eq!(p, EffectivePolicy::default());
        assert_eq!(p.temperature_warning_celsius, 85);
        assert_eq!(p.temperature_critical_celsius, 95);
        assert_eq!(p.thermal_throttling, EvidenceEffect::Degraded);
        assert_eq!(p.ecc_uncorrected_unhealthy_above, 0);
        assert_eq!(p.ecc_corrected_degraded_above, None);
        assert_eq!((p.retired_pages_degraded_above, p.retired_pages_unhealthy_above), (10, 60));
        assert_eq!(p.row_remap_pending, EvidenceEffect::Degraded);
        assert_eq!(p.row_remap_failure, EvidenceEffect::Unhealthy);
        assert_eq!(p.xid_window, Duration::from_secs(86_400));
        assert_eq!(p.application_xid_rate, 5);
        assert_eq!(p.heartbeat_timeout, Duration::from_secs(120));
        assert_eq!(p.remediation_mode, RemediationMode::None);
        assert_eq!(p.max_unavailable_percent, 10);
        assert!(p.xid_overrides.is_empty());
    }

    #[test]
    fn a_full_spec_is_resolved_field_by_field() {
        let p = spec(serde_json::json!({
            "temperature": {"warningCelsius": 80, "criticalCelsius": 90, "thermalThrottling": "Ignore"},
            "ecc": {"uncorrectedUnhealthyAbove": 2, "correctedDegradedAbove": 1000},
            "retiredPages": {"degradedAbove": 5, "unhealthyAbove": 50, "pending": "Unhealthy"},
            "rowRemapping": {"pending": "Ignore", "failure": "Degraded"},
            "xidWindow": "1h30m",
            "applicationXidRate": 0,
            "xidOverrides": [
                {"code": 109, "health": "Ignore"},
                {"code": 94, "health": "Unhealthy", "reason": "FollowDevicePlugin"}
            ],
            "heartbeatTimeout": "45s",
            "remediation": {"mode": "taint", "maxUnavailablePercent": 25}
        }))
        .validate()
        .expect("valid");
        assert_eq!((p.temperature_warning_celsius, p.temperature_critical_celsius), (80, 90));
        assert_eq!(p.thermal_throttling, EvidenceEffect::Ignore);
        assert_eq!(p.ecc_uncorrected_unhealthy_above, 2);
        assert_eq!(p.ecc_corrected_degraded_above, Some(1000));
        assert_eq!((p.retired_pages_degraded_above, p.retired_pages_unhealthy_above), (5, 50));
        assert_eq!(p.retired_pages_pending, EvidenceEffect::Unhealthy);
        assert_eq!((p.row_remap_pending, p.row_remap_failure), (EvidenceEffect::Ignore, EvidenceEffect::Degraded));
        assert_eq!(p.xid_window, Duration::from_secs(5400));
        assert_eq!(p.application_xid_rate, 0);
        assert_eq!(p.heartbeat_timeout, Duration::from_secs(45));
        assert_eq!(p.remediation_mode, RemediationMode::Taint);
        assert_eq!(p.max_unavailable_percent, 25);
        assert_eq!(
            p.xid_overrides.get(&94),
            Some(&EffectiveXidOverride {
                health: XidOverrideHealth::Unhealthy,
                reason: Some("FollowDevicePlugin".into())
            })
        );
        assert_eq!(p.xid_overrides.get(&109).map(|o| o.health), Some(XidOverrideHealth::Ignore));
    }

    #[test]
    fn warning_temperature_must_be_below_critical() {
        let e = error_of(serde_json::json!({"temperature": {"warningCelsius": 95, "criticalCelsius": 90}}));
        assert_eq!(e.field(), "spec.temperature.warningCelsius");
        assert_eq!(
            e.to_string(),
            "spec.temperature.warningCelsius (95) must be below spec.temperature.criticalCelsius (90)"
        );
        // Only one side set: it is compared with the other side's default.
        let e = error_of(serde_json::json!({"temperature": {"warningCelsius": 96}}));
        assert_eq!(
            e.to_string(),
            "spec.temperature.warningCelsius (96) must be below spec.temperature.criticalCelsius (95)"
        );
    }

    #[test]
    fn temperatures_outside_the_plausible_range_are_rejected() {
        let e = error_of(serde_json::json!({"temperature": {"criticalCelsius": 203}}));
        assert_eq!(
            e.to_string(),
            "spec.temperature.criticalCelsius: 203 is out of range; allowed: at most 150 (degrees Celsius)"
        );
        let e = error_of(serde_json::json!({"temperature": {"warningCelsius": 0}}));
        assert_eq!(e.field(), "spec.temperature.warningCelsius");
        assert!(e.to_string().contains("allowed: 1 or more"), "{e}");
    }

    #[test]
    fn retired_page_thresholds_must_be_ordered() {
        let e = error_of(serde_json::json!({"retiredPages": {"degradedAbove": 60}}));
        assert_eq!(e.field(), "spec.retiredPages.degradedAbove");
        assert_eq!(
            e.to_string(),
            "spec.retiredPages.degradedAbove (60) must be below spec.retiredPages.unhealthyAbove (60)"
        );
    }

    #[test]
    fn percent_out_of_range_is_rejected() {
        let e = error_of(serde_json::json!({"remediation": {"mode": "cordon", "maxUnavailablePercent": 150}}));
        assert_eq!(e.field(), "spec.remediation.maxUnavailablePercent");
        assert_eq!(e.to_string(), "spec.remediation.maxUnavailablePercent: 150 is out of range; allowed: 0 to 100");
        let ok = spec(serde_json::json!({"remediation": {"maxUnavailablePercent": 100}})).validate();
        assert_eq!(ok.map(|p| p.max_unavailable_percent), Ok(100));
    }

    #[test]
    fn bad_durations_name_the_field_and_the_allowed_units() {
        let e = error_of(serde_json::json!({"xidWindow": "2w"}));
        assert_eq!(e.field(), "spec.xidWindow");
        assert_eq!(
            e.to_string(),
            "spec.xidWindow: \"2w\" is not a duration (unknown unit \"w\", allowed units are s, m, h and d); write \
             whole numbers followed by s, m, h or d, e.g. \"30m\", \"2h\", \"24h\" or \"1h30m\""
        );
        for bad in ["", "24", "h", "1.5h", "300ms", "-1h", "1h 30m", "99999999999999999999s"] {
            let e = error_of(serde_json::json!({"heartbeatTimeout": bad}));
            assert_eq!(e.field(), "spec.heartbeatTimeout", "{bad:?}");
            assert!(matches!(e, PolicyError::InvalidDuration { .. }), "{bad:?}: {e}");
        }
    }

    #[test]
    fn zero_and_overlong_durations_are_out_of_range() {
        let e = error_of(serde_json::json!({"xidWindow": "0s"}));
        assert_eq!(e.to_string(), "spec.xidWindow: \"0s\" is out of range; allowed: more than 0s and at most 2160h");
        let e = error_of(serde_json::json!({"xidWindow": "91d"}));
        assert_eq!(e.field(), "spec.xidWindow");
        let e = error_of(serde_json::json!({"heartbeatTimeout": "2d"}));
        assert_eq!(
            e.to_string(),
            "spec.heartbeatTimeout: \"2d\" is out of range; allowed: more than 0s and at most 24h"
        );
    }

    #[test]
    fn xid_overrides_are_one_per_code_with_valid_reasons() {
        let e = error_of(serde_json::json!({"xidOverrides": [
            {"code": 109, "health": "Ignore"}, {"code": 94, "health": "Degraded"}, {"code": 109, "health": "Healthy"}
        ]}));
        assert_eq!(
            e.to_string(),
            "spec.xidOverrides[2].code: XID 109 is listed more than once; keep one entry per code"
        );
        let e = error_of(
            serde_json::json!({"xidOverrides": [{"code": 94, "health": "Unhealthy", "reason": "follow the plugin"}]}),
        );
        assert_eq!(e.field(), "spec.xidOverrides[0].reason");
        assert!(e.to_string().contains("\"follow the plugin\" is not a valid reason"), "{e}");
        let e = error_of(serde_json::json!({"xidOverrides": [{"code": 0, "health": "Ignore"}]}));
        assert_eq!(e.field(), "spec.xidOverrides[0].code");
    }

    #[test]
    fn unknown_enum_values_are_rejected_by_deserialization() {
        let bad: Result<GpuHealthPolicySpec, _> =
            serde_json::from_value(serde_json::json!({"remediation": {"mode": "drain"}}));
        assert!(bad.is_err());
        let bad: Result<GpuHealthPolicySpec, _> =
            serde_json::from_value(serde_json::json!({"xidOverrides": [{"code": 13, "health": "Fatal"}]}));
        assert!(bad.is_err());
    }

    #[test]
    fn durations_parse_and_format() {
        assert_eq!(parse_duration("30m"), Ok(Duration::from_secs(1800)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_duration("24h"), Ok(Duration::from_secs(86_400)));
        assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(604_800)));
        assert_eq!(parse_duration(" 1h30m15s "), Ok(Duration::from_secs(5415)));
        assert_eq!(parse_duration("1x"), Err(DurationError::UnknownUnit { unit: "x".into() }));
        assert_eq!(parse_duration("m5"), Err(DurationError::Malformed { at: "m5".into() }));
        assert_eq!(format_duration(Duration::from_secs(86_400)), "24h");
        assert_eq!(format_duration(Duration::from_secs(5415)), "1h30m15s");
        assert_eq!(format_duration(Duration::from_secs(120)), "2m");
        assert_eq!(format_duration(Duration::ZERO), "0s");
    }

    #[test]
    fn optional_enum_fields_keep_their_own_description_and_serdes_values() {
        use kube::CustomResourceExt;
        let crd = serde_json::to_value(GpuHealthPolicy::crd()).expect("json");
        let spec = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"];
        let field = &spec["temperature"]["properties"]["thermalThrottling"];
        assert!(field["description"].as_str().is_some_and(|d| d.contains("Default Degraded")), "{field}");
        let effects = [EvidenceEffect::Ignore, EvidenceEffect::Degraded, EvidenceEffect::Unhealthy];
        assert_eq!(field["enum"], serde_json::to_value(effects).expect("json"));
        let mode = &spec["remediation"]["properties"]["mode"];
        assert!(mode["description"].as_str().is_some_and(|d| d.contains("Default none")), "{mode}");
        let modes = [RemediationMode::None, RemediationMode::Taint, RemediationMode::Cordon];
        assert_eq!(mode["enum"], serde_json::to_value(modes).expect("json"));
    }

    #[test]
    fn the_crd_is_cluster_scoped_with_short_name_and_category() {
        use kube::CustomResourceExt;
        let crd = GpuHealthPolicy::crd();
        assert_eq!(crd.metadata.name.as_deref(), Some("gpuhealthpolicies.gpuscope.dev"));
        assert_eq!(crd.spec.scope, "Cluster");
        assert_eq!(crd.spec.names.short_names, Some(vec!["ghp".to_string()]));
        assert_eq!(crd.spec.names.categories, Some(vec!["gpu".to_string()]));
        let version = &crd.spec.versions[0];
        assert!(version.subresources.as_ref().and_then(|s| s.status.as_ref()).is_some());
    }
}
