//! The default rule per XID code (NVIDIA's immediate action → what it does to the GPU, policy overrides first) and
//! the verdict that rule gives for evidence read from a kernel log alone.
//!
//! The operator judges GPUs with [`xid_rule`]; the log analysis (`gpuscope-log-analysis`) judges pasted logs with
//! [`log_xid_verdict`], which is built on the same [`xid_rule`], so a log and the cluster never disagree about what
//! a code means for a GPU. The table (docs/xid.md §2):
//!
//! | immediate action | effect |
//! |---|---|
//! | IGNORE, RESTART_APP, WORKFLOW_XID_13/31 | Degraded only above the policy's rate |
//! | RESET_GPU, WORKFLOW_XID_48, WORKFLOW_NVLINK_ERR; 167, 169 (no bucket yet: as 62) | Unhealthy until the remedy is seen |
//! | RESTART_BM (79), RESTART_VM (151) | Unhealthy until the node reboots |
//! | WORKFLOW_NVLINK5_ERR (144–149) | from the line's token: `Fatal` → as RESET_GPU; `Nonfatal` → Degraded above the rate; no token → Degraded while in the window |
//! | WORKFLOW_NVLINK5_ERR (150, MSE) | as RESET_GPU (every row of NVIDIA's decode table) |
//! | CHECK_UVM (159) | Degraded while in the window: reset the GPU if UVM or vGPU is in use, otherwise ignore |
//! | WORKFLOW_XID_45 | informational, never escalates |
//! | XID_154 | the recovery action it names decides |

use schemars::JsonSchema;
use serde::Serialize;

use super::nvlink5::{Nvlink5Severity, is_nvlink5};
use super::{RecoveryAction, ResolutionBucket, lookup};
use crate::health::{Health, reason};
use crate::policy::{EffectivePolicy, XidOverrideHealth};

/// What an XID does to its GPU's verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum XidEffect {
    /// Policy `Ignore`: not counted, not shown.
    Ignored,
    /// Policy `Healthy`: counted and shown, never affects health.
    CountedOnly,
    /// WORKFLOW_XID_45: counted and shown; it follows another XID or an application teardown and never escalates.
    Informational,
    /// Degraded when the same GPU logs it more than the policy's `applicationXidRate` times within the window.
    DegradedAboveRate,
    /// Degraded while an occurrence is within the window (NVLink 5 errors whose subcode is not decoded; policy
    /// `Degraded`).
    DegradedWhileInWindow,
    /// Unhealthy until the remedy is seen: the driver's recovery action back to None after the XID, or the window
    /// passing without a repeat (or a reboot: evidence from an earlier boot never counts).
    UnhealthyUntilRemedy,
    /// Unhealthy until the node's boot id changes.
    UnhealthyUntilReboot,
    /// XID 154: the recovery action it names decides.
    RecoveryAction,
}

/// The rule for one XID code under a policy.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct XidRule {
    /// What it does to the GPU.
    pub effect: XidEffect,
    /// The verdict reason when it escalates (empty for effects that never do).
    pub reason: String,
    /// True when a policy override, not the catalog, decided.
    pub from_policy: bool,
}

/// The rule for `code`: a policy override if there is one, else NVIDIA's immediate action for it.
///
/// Buckets the rule table does not list are decided by the catalog's severity of that bucket: the critical ones
/// (CONTACT_SUPPORT — mostly codes NVIDIA marks unused on Ampere and newer —, CHECK_MECHANICALS, UPDATE_SWFW,
/// RESTART_FM, INVESTIGATE_SW, INVESTIGATE_LINK_SI) act like RESET_GPU; the others (the sympathetic and
/// investigate-the-application buckets, CHECK_UVM, and the newest codes with no bucket yet) like RESTART_APP.
pub fn xid_rule(code: u32, policy: &EffectivePolicy) -> XidRule {
    if let Some(o) = policy.xid_overrides.get(&code) {
        let reason = o.reason.clone().unwrap_or_else(|| reason::XID_POLICY_OVERRIDE.to_string());
        let effect = match o.health {
            XidOverrideHealth::Ignore => XidEffect::Ignored,
            XidOverrideHealth::Healthy => XidEffect::CountedOnly,
            XidOverrideHealth::Degraded => XidEffect::DegradedWhileInWindow,
            XidOverrideHealth::Unhealthy => XidEffect::UnhealthyUntilRemedy,
        };
        let reason = if matches!(effect, XidEffect::Ignored | XidEffect::CountedOnly) { String::new() } else { reason };
        return XidRule { effect, reason, from_policy: true };
    }
    use ResolutionBucket::*;
    let (effect, reason) = match lookup(code).immediate_action {
        Ignore | RestartApp | WorkflowXid13 | WorkflowXid31 => (XidEffect::DegradedAboveRate, reason::XID_RATE),
        ResetGpu => (XidEffect::UnhealthyUntilRemedy, reason::XID_CRITICAL),
        RestartBm | RestartVm if code == 79 => (XidEffect::UnhealthyUntilReboot, reason::XID_FALLEN_OFF_BUS),
        RestartBm | RestartVm => (XidEffect::UnhealthyUntilReboot, reason::XID_CRITICAL),
        WorkflowXid48 => (XidEffect::UnhealthyUntilRemedy, reason::UNCORRECTABLE_ECC),
        WorkflowNvlinkErr => (XidEffect::UnhealthyUntilRemedy, reason::XID_NVLINK),
        // MSE errors are RESET_GPU in every row of NVIDIA's decode table.
        WorkflowNvlink5Err if code == 150 => (XidEffect::UnhealthyUntilRemedy, reason::XID_NVLINK),
        // Without the line's severity token (see `xid_rule_for_line`) the decode is unknown: Degraded.
        WorkflowNvlink5Err => (XidEffect::DegradedWhileInWindow, reason::XID_NVLINK),
        // NVIDIA: reset the GPU if UVM or vGPU is in use, otherwise ignore. Which one is not in the evidence.
        CheckUvm => (XidEffect::DegradedWhileInWindow, reason::XID_CHECK_UVM),
        // PCIe fatal timeout and SEC2 halt have no bucket yet: treated like 62 (an internal micro-controller halt).
        NotApplicable if code == 167 || code == 169 => (XidEffect::UnhealthyUntilRemedy, reason::XID_CRITICAL),
        WorkflowXid45 | SoloRestartFm => (XidEffect::Informational, ""),
        Xid154 => (XidEffect::RecoveryAction, reason::RECOVERY_ACTION_REQUIRED),
        ContactSupport | CheckMechanicals | UpdateSwfw | RestartFm | InvestigateSw | InvestigateLinkSi => {
            (XidEffect::UnhealthyUntilRemedy, reason::XID_CRITICAL)
        }
        IgnoreSympathetic | SympatheticReportSolo | Xid137Flow | CheckAppCuda | InvestigateSwUser | NotApplicable => {
            (XidEffect::DegradedAboveRate, reason::XID_RATE)
        }
    };
    XidRule { effect, reason: reason.to_string(), from_policy: false }
}

/// The rule for `code` given the NVLink5 severity token its lines carry (`None` when no line has one, and for
/// every other code): `Fatal` makes 144–149 RESET_GPU-class, `Nonfatal` makes them count against the rate. A policy
/// override still decides first.
pub fn xid_rule_for_line(code: u32, severity: Option<Nvlink5Severity>, policy: &EffectivePolicy) -> XidRule {
    let rule = xid_rule(code, policy);
    if rule.from_policy || !is_nvlink5(code) || rule.effect != XidEffect::DegradedWhileInWindow {
        return rule;
    }
    match severity {
        Some(Nvlink5Severity::Fatal) => XidRule { effect: XidEffect::UnhealthyUntilRemedy, ..rule },
        Some(Nvlink5Severity::Nonfatal) => XidRule { effect: XidEffect::DegradedAboveRate, ..rule },
        None => rule,
    }
}

/// Why a rule that is not a policy override holds, in one sentence (NVIDIA's bucket or decode table).
pub fn rule_reasoning(code: u32, rule: &XidRule) -> &'static str {
    if rule.from_policy {
        return "The health policy overrides NVIDIA's catalog for this code.";
    }
    let bucket = lookup(code).immediate_action;
    match (bucket, rule.effect) {
        (ResolutionBucket::CheckUvm, _) => {
            "NVIDIA's CHECK_UVM: reset the GPU if UVM or vGPU is in use on it, otherwise ignore it."
        }
        (ResolutionBucket::WorkflowNvlink5Err, XidEffect::UnhealthyUntilRemedy) if code == 150 => {
            "NVIDIA's NVLink5 decode table makes every MSE error (XID 150) a GPU reset."
        }
        (ResolutionBucket::WorkflowNvlink5Err, XidEffect::UnhealthyUntilRemedy) => {
            "The line's Fatal token: NVIDIA's NVLink5 decode table resets the GPU for Fatal and Link Fatal rows."
        }
        (ResolutionBucket::WorkflowNvlink5Err, XidEffect::DegradedAboveRate) => {
            "The line's Nonfatal token: NVIDIA's NVLink5 decode table ignores Non-fatal rows unless they repeat."
        }
        (ResolutionBucket::WorkflowNvlink5Err, _) => {
            "The line carries no Fatal/Nonfatal token, so NVIDIA's NVLink5 decode cannot be applied: Degraded."
        }
        (ResolutionBucket::NotApplicable, XidEffect::UnhealthyUntilRemedy) => {
            "NVIDIA gives no bucket yet: treated like XID 62 (RESET_GPU), unless XID 154 names another action."
        }
        (ResolutionBucket::RestartBm, _) => "NVIDIA's RESTART_BM: reboot the node (bare metal).",
        (ResolutionBucket::RestartVm, _) => "NVIDIA's RESTART_VM: restart the virtual machine.",
        (ResolutionBucket::WorkflowXid48, _) => {
            "NVIDIA's WORKFLOW_XID_48: a double-bit ECC error needs a GPU reset or node reboot to clear."
        }
        (ResolutionBucket::WorkflowNvlinkErr, _) => {
            "NVIDIA's WORKFLOW_NVLINK_ERR: a GPU reset clears it; the fault may sit at the other end of the link."
        }
        (ResolutionBucket::Xid154, _) => "NVIDIA's XID_154: the recovery action it names decides.",
        (ResolutionBucket::WorkflowXid45, _) => "NVIDIA's WORKFLOW_XID_45: it follows another XID; follow that one.",
        (_, XidEffect::UnhealthyUntilRemedy) => "NVIDIA's immediate action needs the GPU reset (or worse).",
        (_, XidEffect::DegradedAboveRate) => {
            "NVIDIA's immediate action concerns the application; the GPU stays usable unless it repeats."
        }
        _ => "NVIDIA's immediate action for this code.",
    }
}

/// "XID 79 ROBUST_CHANNEL_GPU_HAS_FALLEN_OFF_THE_BUS (GPU has fallen off the bus)", or "unknown XID 9999".
pub fn xid_label(code: u32) -> String {
    let info = lookup(code);
    if info.known {
        format!("XID {code} {} ({})", info.mnemonic, info.description)
    } else {
        format!("unknown XID {code}")
    }
}

/// What the driver's recovery action demands of a GPU: `None` when it demands nothing (action None), else the
/// health it gives and whether the demand is node-level (a reboot).
///
/// GpuReset, DrainAndReset, BusReset and RecoverImexDomain make the GPU Unhealthy; NodeReboot and SystemReboot
/// make it Unhealthy with a node-level demand; DrainP2P and values this build does not know make it Degraded.
pub const fn recovery_action_health(action: RecoveryAction) -> Option<(Health, bool)> {
    match action {
        RecoveryAction::None => None,
        RecoveryAction::NodeReboot | RecoveryAction::SystemReboot => Some((Health::Unhealthy, true)),
        RecoveryAction::GpuReset
        | RecoveryAction::DrainAndReset
        | RecoveryAction::BusReset
        | RecoveryAction::RecoverImexDomain => Some((Health::Unhealthy, false)),
        RecoveryAction::DrainP2p | RecoveryAction::Other(_) => Some((Health::Degraded, false)),
    }
}

/// The one thing to do about a GPU, ordered from least to most disruptive (the derived order ranks them).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum GpuAction {
    /// Nothing to do for the GPU.
    None,
    /// Look into it: follow the catalog's investigatory action.
    Investigate,
    /// Restart the application that hit the error; the GPU stays usable.
    RestartApplication,
    /// Reset the GPU if UVM or vGPU is in use on it; otherwise nothing (NVIDIA's CHECK_UVM).
    ResetGpuIfUvm,
    /// Stop peer-to-peer (NVLink/PCIe P2P) work on the GPU.
    DrainP2p,
    /// Restart NVIDIA Fabric Manager.
    RestartFabricManager,
    /// Update the driver, firmware or VBIOS.
    UpdateDriverFirmware,
    /// Check the board's power, cooling and seating.
    CheckHardware,
    /// Open a case with NVIDIA.
    ContactSupport,
    /// Recover the IMEX domain the GPU belongs to.
    RecoverImexDomain,
    /// Drain the GPU and reset it (`nvidia-smi -r`).
    ResetGpu,
    /// Restart the virtual machine.
    RestartVm,
    /// Drain the node and reboot it.
    RebootNode,
}

impl GpuAction {
    /// Short imperative text, e.g. "reboot node".
    pub const fn label(self) -> &'static str {
        match self {
            GpuAction::None => "no action",
            GpuAction::Investigate => "investigate",
            GpuAction::RestartApplication => "restart the application",
            GpuAction::ResetGpuIfUvm => "reset GPU if UVM/vGPU is in use",
            GpuAction::DrainP2p => "stop peer-to-peer work",
            GpuAction::RestartFabricManager => "restart Fabric Manager",
            GpuAction::UpdateDriverFirmware => "update driver and firmware",
            GpuAction::CheckHardware => "check power and seating",
            GpuAction::ContactSupport => "contact NVIDIA support",
            GpuAction::RecoverImexDomain => "recover the IMEX domain",
            GpuAction::ResetGpu => "reset GPU",
            GpuAction::RestartVm => "restart VM",
            GpuAction::RebootNode => "reboot node",
        }
    }

    /// The action NVIDIA's immediate-action bucket asks for.
    pub const fn of_bucket(bucket: ResolutionBucket) -> GpuAction {
        use ResolutionBucket::*;
        match bucket {
            Ignore | IgnoreSympathetic | WorkflowXid45 | SoloRestartFm | Xid154 | NotApplicable => GpuAction::None,
            RestartApp
            | WorkflowXid13
            | WorkflowXid31
            | CheckAppCuda
            | InvestigateSwUser
            | Xid137Flow
            | SympatheticReportSolo => GpuAction::RestartApplication,
            ResetGpu | WorkflowXid48 | WorkflowNvlinkErr | InvestigateSw | InvestigateLinkSi => GpuAction::ResetGpu,
            WorkflowNvlink5Err => GpuAction::Investigate,
            CheckUvm => GpuAction::ResetGpuIfUvm,
            RestartBm => GpuAction::RebootNode,
            RestartVm => GpuAction::RestartVm,
            RestartFm => GpuAction::RestartFabricManager,
            CheckMechanicals => GpuAction::CheckHardware,
            UpdateSwfw => GpuAction::UpdateDriverFirmware,
            ContactSupport => GpuAction::ContactSupport,
        }
    }

    /// The action a recovery action asks for.
    pub const fn of_recovery_action(action: RecoveryAction) -> GpuAction {
        match action {
            RecoveryAction::None => GpuAction::None,
            RecoveryAction::GpuReset | RecoveryAction::DrainAndReset | RecoveryAction::BusReset => GpuAction::ResetGpu,
            RecoveryAction::NodeReboot | RecoveryAction::SystemReboot => GpuAction::RebootNode,
            RecoveryAction::DrainP2p => GpuAction::DrainP2p,
            RecoveryAction::RecoverImexDomain => GpuAction::RecoverImexDomain,
            RecoveryAction::Other(_) => GpuAction::Investigate,
        }
    }
}

/// The one ranking every answer uses (tools, CLI, the operator's summary reason): the action's urgency, then
/// recency. Reboot node > reset GPU > drain P2P > restart application > none.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum Urgency {
    /// Nothing to do.
    None,
    /// Restart the application (or look into it); the GPU stays usable.
    RestartApplication,
    /// Stop peer-to-peer work on the GPU.
    DrainP2p,
    /// Reset the GPU (or service it: support, hardware, firmware, Fabric Manager, the IMEX domain).
    ResetGpu,
    /// Reboot the node (or restart its VM).
    RebootNode,
}

impl GpuAction {
    /// Where the action ranks.
    pub const fn urgency(self) -> Urgency {
        match self {
            GpuAction::None => Urgency::None,
            GpuAction::Investigate | GpuAction::RestartApplication | GpuAction::ResetGpuIfUvm => {
                Urgency::RestartApplication
            }
            GpuAction::DrainP2p => Urgency::DrainP2p,
            GpuAction::RestartFabricManager
            | GpuAction::UpdateDriverFirmware
            | GpuAction::CheckHardware
            | GpuAction::ContactSupport
            | GpuAction::RecoverImexDomain
            | GpuAction::ResetGpu => Urgency::ResetGpu,
            GpuAction::RestartVm | GpuAction::RebootNode => Urgency::RebootNode,
        }
    }
}

/// The urgency of an XID code on its own, by the default rule: what one occurrence demands.
pub fn code_urgency(code: u32) -> Urgency {
    let rule = xid_rule(code, &EffectivePolicy::default());
    match rule.effect {
        XidEffect::UnhealthyUntilReboot => Urgency::RebootNode,
        XidEffect::UnhealthyUntilRemedy => Urgency::ResetGpu,
        XidEffect::Ignored | XidEffect::CountedOnly | XidEffect::Informational | XidEffect::RecoveryAction => {
            Urgency::None
        }
        XidEffect::DegradedAboveRate | XidEffect::DegradedWhileInWindow => {
            match GpuAction::of_bucket(lookup(code).immediate_action) {
                GpuAction::None => Urgency::None,
                action => action.urgency().min(Urgency::RestartApplication),
            }
        }
    }
}

/// The urgency a verdict reason demands (the operator's reasons on GPUs and conditions).
pub fn reason_urgency(reason: &str) -> Urgency {
    match reason {
        reason::XID_FALLEN_OFF_BUS | reason::GPU_MISSING | reason::NVSWITCH_FATAL => Urgency::RebootNode,
        reason::XID_CRITICAL
        | reason::UNCORRECTABLE_ECC
        | reason::ROW_REMAP_FAILURE
        | reason::OVERHEATING
        | reason::RECOVERY_ACTION_REQUIRED
        | reason::XID_NVLINK
        | reason::RETIRED_PAGES => Urgency::ResetGpu,
        reason::HEALTHY | "" => Urgency::None,
        _ => Urgency::RestartApplication,
    }
}

impl std::fmt::Display for GpuAction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.label())
    }
}

/// What a kernel log says about one XID code on one GPU: the evidence [`log_xid_verdict`] judges.
///
/// A log is read as one window: the "window passing without a repeat" the operator waits for cannot be seen in it.
/// Reboots can: occurrences before the newest boot the log shows never count (as in the operator).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LogXidEvidence {
    /// The XID code.
    pub code: u32,
    /// Occurrences in the newest boot the log shows; 0 when every occurrence is from an earlier boot.
    pub count: u64,
    /// For XID 154: the recovery action named by the newest occurrence, when the message names one.
    pub recovery_action: Option<RecoveryAction>,
    /// Evidence of a reset after the newest occurrence, in the same boot: a later XID 154 on the same GPU setting
    /// the recovery action back to None, or the driver reloading. The remedy RESET_GPU-class XIDs wait for.
    pub remedied: bool,
    /// For NVLink5 XIDs (144–150): the worst severity token among the occurrences counted.
    pub nvlink5: Option<Nvlink5Severity>,
}

/// The verdict the operator's default rules give one (GPU, code) when the evidence is a log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct XidVerdict {
    /// What the code makes the GPU.
    pub health: Health,
    /// The machine-readable reason (as on the operator's verdicts) when not Healthy; empty when Healthy.
    pub reason: String,
    /// The one thing to do about the GPU for this code.
    pub action: GpuAction,
    /// Why, in one sentence.
    pub explanation: String,
    /// The rule that decided.
    pub rule: XidRule,
}

impl XidVerdict {
    /// Orders verdicts by the one ranking ([`Urgency`]), then health, then the action itself.
    pub fn urgency(&self) -> (Urgency, u8, GpuAction) {
        (self.action.urgency(), health_rank(self.health), self.action)
    }
}

/// Unhealthy > Degraded > Unknown > Healthy, the order of [`Health::worst`].
pub const fn health_rank(h: Health) -> u8 {
    match h {
        Health::Healthy => 0,
        Health::Unknown => 1,
        Health::Degraded => 2,
        Health::Unhealthy => 3,
    }
}

/// The verdict for one (GPU, code) read from a log, under `policy` (the operator's [`xid_rule`] decides).
///
/// - 79 → Unhealthy, reboot node; 151 → Unhealthy, restart VM.
/// - RESET_GPU-class codes → Unhealthy, reset GPU, unless a later XID 154 set the recovery action back to None.
/// - Application-class codes (13, 31, 43, …) → Healthy and no action for the GPU, unless the log shows more than
///   the policy's `applicationXidRate` on the GPU: then Degraded.
/// - 154 → what its recovery action demands ([`recovery_action_health`]).
/// - Anything seen only before a reboot the log shows → Healthy.
pub fn log_xid_verdict(evidence: &LogXidEvidence, policy: &EffectivePolicy) -> XidVerdict {
    let code = evidence.code;
    let rule = xid_rule_for_line(code, evidence.nvlink5, policy);
    let info = lookup(code);
    let bucket_action = GpuAction::of_bucket(info.immediate_action);
    let healthy = |explanation: String, rule: XidRule| XidVerdict {
        health: Health::Healthy,
        reason: String::new(),
        action: GpuAction::None,
        explanation,
        rule,
    };
    match rule.effect {
        XidEffect::Ignored => return healthy(format!("The health policy ignores XID {code}."), rule),
        XidEffect::CountedOnly => {
            return healthy(format!("The health policy counts XID {code} but never lets it affect health."), rule);
        }
        XidEffect::Informational => {
            return healthy(
                format!("XID {code} follows another XID or an application teardown; it never escalates on its own."),
                rule,
            );
        }
        _ => {}
    }
    if evidence.count == 0 {
        return healthy("Logged only before a reboot the log shows; earlier boots never count.".to_string(), rule);
    }
    let escalate = |health: Health, action: GpuAction, explanation: String, rule: XidRule| XidVerdict {
        health,
        reason: rule.reason.clone(),
        action,
        explanation,
        rule,
    };
    let by = if rule.from_policy { "the health policy makes it" } else { "the default rules make it" };
    match rule.effect {
        XidEffect::DegradedAboveRate => {
            let rate = policy.application_xid_rate;
            if evidence.count <= u64::from(rate) {
                return healthy(
                    format!(
                        "{} on this GPU, not more than the policy's rate of {rate}: the GPU stays usable (NVIDIA's \
                         immediate action {} concerns the application).",
                        times(evidence.count),
                        info.immediate_action
                    ),
                    rule,
                );
            }
            let action = if bucket_action == GpuAction::None { GpuAction::Investigate } else { bucket_action };
            let why = format!("{} on this GPU, more than the policy's rate of {rate}.", times(evidence.count));
            escalate(Health::Degraded, action.min(GpuAction::RestartApplication), why, rule)
        }
        XidEffect::DegradedWhileInWindow => {
            let action = if rule.from_policy || bucket_action == GpuAction::None {
                GpuAction::Investigate
            } else {
                bucket_action
            };
            let why = if rule.from_policy {
                "The health policy makes it Degraded.".to_string()
            } else {
                rule_reasoning(code, &rule).to_string()
            };
            escalate(Health::Degraded, action, why, rule)
        }
        XidEffect::UnhealthyUntilRemedy => {
            if evidence.remedied {
                return healthy(
                    "A reset was seen after it (XID 154 back to None, or the driver reloaded): the remedy was seen."
                        .to_string(),
                    rule,
                );
            }
            // An override can make an application-class code Unhealthy: the operator treats it as RESET_GPU.
            let action = if bucket_action < GpuAction::DrainP2p { GpuAction::ResetGpu } else { bucket_action };
            let why = format!("{by} Unhealthy until the driver's recovery action returns to None or a reset.");
            escalate(Health::Unhealthy, action, capitalise(why), rule)
        }
        XidEffect::UnhealthyUntilReboot => {
            let action =
                if bucket_action == GpuAction::RestartVm { GpuAction::RestartVm } else { GpuAction::RebootNode };
            let why = format!("{by} Unhealthy until the node reboots.");
            escalate(Health::Unhealthy, action, capitalise(why), rule)
        }
        XidEffect::RecoveryAction => {
            let Some(action) = evidence.recovery_action else {
                return healthy("The XID 154 message names no recovery action this build can read.".to_string(), rule);
            };
            match recovery_action_health(action) {
                None => healthy("The driver's recovery action is None: nothing to recover.".to_string(), rule),
                Some((health, _)) => {
                    let why = format!("The driver's recovery action is {action}. {}", action.advice());
                    escalate(health, GpuAction::of_recovery_action(action), why, rule)
                }
            }
        }
        // Handled above; kept explicit so a new effect must be placed.
        XidEffect::Ignored | XidEffect::CountedOnly | XidEffect::Informational => healthy(String::new(), rule),
    }
}

fn times(n: u64) -> String {
    if n == 1 { "Once".to_string() } else { format!("{n} times") }
}

fn capitalise(s: String) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::EffectiveXidOverride;

    #[test]
    fn every_catalog_code_has_a_rule_matching_its_bucket() {
        let policy = EffectivePolicy::default();
        for row in crate::xid::catalog() {
            let rule = xid_rule(row.code, &policy);
            assert!(!rule.from_policy);
            let escalates = !matches!(rule.effect, XidEffect::Informational | XidEffect::CountedOnly);
            assert_eq!(escalates, !rule.reason.is_empty(), "XID {}: {rule:?}", row.code);
        }
    }

    #[test]
    fn the_rule_table_follows_nvidias_immediate_action() {
        let p = EffectivePolicy::default();
        let effect = |code| xid_rule(code, &p).effect;
        for code in [8, 13, 31, 32, 43, 63, 68, 69, 92, 94, 121, 137] {
            assert_eq!(effect(code), XidEffect::DegradedAboveRate, "XID {code}");
        }
        for code in [46, 62, 64, 95, 109, 110, 119, 120, 136, 140, 143, 155, 158] {
            assert_eq!(effect(code), XidEffect::UnhealthyUntilRemedy, "XID {code}");
        }
        assert_eq!(effect(79), XidEffect::UnhealthyUntilReboot);
        assert_eq!(effect(151), XidEffect::UnhealthyUntilReboot);
        assert_eq!(effect(48), XidEffect::UnhealthyUntilRemedy);
        assert_eq!(effect(74), XidEffect::UnhealthyUntilRemedy);
        for code in 144..=149 {
            assert_eq!(effect(code), XidEffect::DegradedWhileInWindow, "XID {code}");
        }
        assert_eq!(effect(150), XidEffect::UnhealthyUntilRemedy);
        assert_eq!(effect(45), XidEffect::Informational);
        assert_eq!(effect(154), XidEffect::RecoveryAction);
        assert_eq!(effect(9_999), XidEffect::DegradedAboveRate);
        assert_eq!(xid_rule(79, &p).reason, "XidFallenOffBus");
        assert_eq!(xid_rule(48, &p).reason, "UncorrectableEcc");
        assert_eq!(xid_rule(74, &p).reason, "XidNvlinkError");
        assert_eq!(xid_rule(95, &p).reason, "XidCritical");
        assert_eq!(xid_rule(13, &p).reason, "XidRateExceeded");
    }

    /// One row per rule: the evidence, the verdict a log gives it, and the sentence of NVIDIA's catalog (as the
    /// project's reference reads docs.nvidia.com/deploy/xid-errors/analyzing-xid-catalog.html) it implements.
    #[test]
    fn each_rule_implements_nvidias_sentence() {
        use crate::xid::nvlink5::Nvlink5Severity::{Fatal, Nonfatal};
        let p = EffectivePolicy::default();
        let rows: [(&str, LogXidEvidence, Health, GpuAction); 13] = [
            (
                "XID 79, RESTART_BM: GPU not accessible over PCIe; reboot the node",
                once(79),
                Health::Unhealthy,
                GpuAction::RebootNode,
            ),
            (
                "XID 95, RESET_GPU: affects multiple applications; reset before restarting apps",
                once(95),
                Health::Unhealthy,
                GpuAction::ResetGpu,
            ),
            (
                "XID 48, WORKFLOW_XID_48: GPU reset or node reboot needed to clear",
                once(48),
                Health::Unhealthy,
                GpuAction::ResetGpu,
            ),
            (
                "XID 74, WORKFLOW_NVLINK_ERR: GPU reset or node reboot needed to clear",
                once(74),
                Health::Unhealthy,
                GpuAction::ResetGpu,
            ),
            (
                "XID 150 (MSE) is RESET_GPU in every row of NVIDIA's decode table",
                once(150),
                Health::Unhealthy,
                GpuAction::ResetGpu,
            ),
            (
                "WORKFLOW_NVLINK5_ERR: Fatal / Link Fatal rows → RESET_GPU",
                LogXidEvidence { nvlink5: Some(Fatal), ..once(149) },
                Health::Unhealthy,
                GpuAction::ResetGpu,
            ),
            (
                "WORKFLOW_NVLINK5_ERR: Non-fatal rows → IGNORE",
                LogXidEvidence { nvlink5: Some(Nonfatal), ..once(145) },
                Health::Healthy,
                GpuAction::None,
            ),
            (
                "XID 159, CHECK_UVM: reset the GPU if UVM/vGPU is in use, otherwise ignore",
                once(159),
                Health::Degraded,
                GpuAction::ResetGpuIfUvm,
            ),
            (
                "XID 167 (PCIe fatal timeout): no bucket yet; treat like 62 (RESET_GPU)",
                once(167),
                Health::Unhealthy,
                GpuAction::ResetGpu,
            ),
            (
                "XID 169 (SEC2 halt, as 62's description): treat like 62 (RESET_GPU)",
                once(169),
                Health::Unhealthy,
                GpuAction::ResetGpu,
            ),
            (
                "XID 94, RESTART_APP: only the faulting application must restart",
                once(94),
                Health::Healthy,
                GpuAction::None,
            ),
            (
                "XID 45, WORKFLOW_XID_45: follow the other XID",
                LogXidEvidence { count: 100, ..once(45) },
                Health::Healthy,
                GpuAction::None,
            ),
            (
                "XID 154: GPU recovery action changed … to 0x2 (Node Reboot Required)",
                LogXidEvidence { recovery_action: Some(RecoveryAction::NodeReboot), ..once(154) },
                Health::Unhealthy,
                GpuAction::RebootNode,
            ),
        ];
        for (nvidia, evidence, health, action) in rows {
            let v = log_xid_verdict(&evidence, &p);
            assert_eq!((v.health, v.action), (health, action), "{nvidia}: {v:?}");
        }
        // The NVLink5 line without a token keeps the undecoded verdict, and says why.
        let untagged = log_xid_verdict(&once(147), &p);
        assert_eq!(untagged.health, Health::Degraded);
        assert!(untagged.explanation.contains("no Fatal/Nonfatal token"), "{}", untagged.explanation);
        // CHECK_UVM never says "restart the application".
        let uvm = log_xid_verdict(&once(159), &p);
        assert!(uvm.explanation.contains("reset the GPU if UVM or vGPU is in use"), "{}", uvm.explanation);
        assert!(!uvm.explanation.to_lowercase().contains("restart the application"));
    }

    #[test]
    fn labels_name_the_mnemonic_or_say_unknown() {
        assert_eq!(xid_label(79), "XID 79 ROBUST_CHANNEL_GPU_HAS_FALLEN_OFF_THE_BUS (GPU has fallen off the bus)");
        assert_eq!(xid_label(9_999), "unknown XID 9999");
    }

    fn once(code: u32) -> LogXidEvidence {
        LogXidEvidence { code, count: 1, ..LogXidEvidence::default() }
    }

    fn verdict(e: LogXidEvidence) -> (Health, GpuAction, String) {
        let v = log_xid_verdict(&e, &EffectivePolicy::default());
        (v.health, v.action, v.reason)
    }

    #[test]
    fn xid_79_in_a_log_means_reboot_the_node() {
        assert_eq!(verdict(once(79)), (Health::Unhealthy, GpuAction::RebootNode, "XidFallenOffBus".into()));
        assert_eq!(verdict(once(151)), (Health::Unhealthy, GpuAction::RestartVm, "XidCritical".into()));
    }

    #[test]
    fn application_xids_are_healthy_until_above_the_rate() {
        assert_eq!(verdict(once(13)), (Health::Healthy, GpuAction::None, String::new()));
        let rate = u64::from(EffectivePolicy::default().application_xid_rate);
        assert_eq!(verdict(LogXidEvidence { count: rate, ..once(13) }).0, Health::Healthy);
        assert_eq!(
            verdict(LogXidEvidence { count: rate + 1, ..once(13) }),
            (Health::Degraded, GpuAction::RestartApplication, "XidRateExceeded".into())
        );
        // IGNORE-bucket codes above the rate: nothing for the application to restart, so investigate.
        assert_eq!(verdict(LogXidEvidence { count: rate + 1, ..once(63) }).1, GpuAction::Investigate);
        let v = log_xid_verdict(&once(13), &EffectivePolicy::default());
        assert!(v.explanation.contains("not more than the policy's rate of 5"), "{}", v.explanation);
    }

    #[test]
    fn reset_gpu_xids_are_unhealthy_until_the_recovery_action_returns_to_none() {
        assert_eq!(verdict(once(95)), (Health::Unhealthy, GpuAction::ResetGpu, "XidCritical".into()));
        assert_eq!(verdict(once(48)), (Health::Unhealthy, GpuAction::ResetGpu, "UncorrectableEcc".into()));
        assert_eq!(verdict(once(74)), (Health::Unhealthy, GpuAction::ResetGpu, "XidNvlinkError".into()));
        assert_eq!(verdict(LogXidEvidence { remedied: true, ..once(95) }).0, Health::Healthy);
        // CONTACT_SUPPORT-bucket (unused) codes act like RESET_GPU but say what NVIDIA says.
        assert_eq!(verdict(once(1)), (Health::Unhealthy, GpuAction::ContactSupport, "XidCritical".into()));
    }

    #[test]
    fn xid_154_follows_the_recovery_action() {
        let with = |a| LogXidEvidence { recovery_action: Some(a), ..once(154) };
        assert_eq!(
            verdict(with(RecoveryAction::NodeReboot)),
            (Health::Unhealthy, GpuAction::RebootNode, "RecoveryActionRequired".into())
        );
        assert_eq!(verdict(with(RecoveryAction::GpuReset)).1, GpuAction::ResetGpu);
        assert_eq!(verdict(with(RecoveryAction::DrainAndReset)).0, Health::Unhealthy);
        assert_eq!(
            verdict(with(RecoveryAction::DrainP2p)),
            (Health::Degraded, GpuAction::DrainP2p, "RecoveryActionRequired".into())
        );
        assert_eq!(verdict(with(RecoveryAction::Other(9))).0, Health::Degraded);
        assert_eq!(verdict(with(RecoveryAction::None)), (Health::Healthy, GpuAction::None, String::new()));
        assert_eq!(verdict(once(154)).0, Health::Healthy);
    }

    #[test]
    fn informational_and_nvlink5_codes() {
        assert_eq!(
            verdict(LogXidEvidence { count: 1000, ..once(45) }),
            (Health::Healthy, GpuAction::None, String::new())
        );
        assert_eq!(verdict(once(145)), (Health::Degraded, GpuAction::Investigate, "XidNvlinkError".into()));
    }

    #[test]
    fn evidence_only_from_an_earlier_boot_never_counts() {
        let v = log_xid_verdict(&LogXidEvidence { count: 0, ..once(79) }, &EffectivePolicy::default());
        assert_eq!((v.health, v.action), (Health::Healthy, GpuAction::None));
        assert!(v.explanation.contains("before a reboot"));
    }

    #[test]
    fn policy_overrides_decide_before_the_catalog() {
        let mut policy = EffectivePolicy::default();
        let over = |health, reason: Option<&str>| EffectiveXidOverride { health, reason: reason.map(str::to_string) };
        policy.xid_overrides.insert(13, over(XidOverrideHealth::Unhealthy, Some("AppCrashLoop")));
        policy.xid_overrides.insert(79, over(XidOverrideHealth::Healthy, None));
        policy.xid_overrides.insert(95, over(XidOverrideHealth::Degraded, None));
        let v = log_xid_verdict(&once(13), &policy);
        assert_eq!((v.health, v.action, v.reason.as_str()), (Health::Unhealthy, GpuAction::ResetGpu, "AppCrashLoop"));
        assert!(v.rule.from_policy && v.explanation.starts_with("The health policy makes it Unhealthy"));
        assert_eq!(log_xid_verdict(&once(79), &policy).health, Health::Healthy);
        let v = log_xid_verdict(&once(95), &policy);
        assert_eq!((v.health, v.reason.as_str()), (Health::Degraded, "XidPolicyOverride"));
    }

    #[test]
    fn recovery_action_health_matches_the_operator_table() {
        assert_eq!(recovery_action_health(RecoveryAction::None), None);
        assert_eq!(recovery_action_health(RecoveryAction::SystemReboot), Some((Health::Unhealthy, true)));
        assert_eq!(recovery_action_health(RecoveryAction::BusReset), Some((Health::Unhealthy, false)));
        assert_eq!(recovery_action_health(RecoveryAction::RecoverImexDomain), Some((Health::Unhealthy, false)));
        assert_eq!(recovery_action_health(RecoveryAction::DrainP2p), Some((Health::Degraded, false)));
    }

    #[test]
    fn one_ranking_reboot_node_over_reset_gpu_over_drain_p2p_over_restart_app_over_none() {
        assert!(code_urgency(79) > code_urgency(48), "79 (reboot node) before 48 (reset GPU)");
        assert_eq!(code_urgency(48), Urgency::ResetGpu);
        assert_eq!(code_urgency(95), Urgency::ResetGpu);
        assert_eq!(code_urgency(13), Urgency::RestartApplication);
        assert_eq!(code_urgency(43), Urgency::None, "IGNORE");
        assert_eq!(GpuAction::DrainP2p.urgency(), Urgency::DrainP2p);
        assert!(Urgency::DrainP2p > Urgency::RestartApplication && Urgency::ResetGpu > Urgency::DrainP2p);
        assert!(reason_urgency("XidFallenOffBus") > reason_urgency("UncorrectableEcc"));
        assert_eq!(reason_urgency("GpuMissing"), Urgency::RebootNode);
        assert_eq!(reason_urgency("XidRateExceeded"), Urgency::RestartApplication);
    }

    #[test]
    fn actions_rank_from_least_to_most_disruptive() {
        assert!(GpuAction::RebootNode > GpuAction::ResetGpu);
        assert!(GpuAction::ResetGpu > GpuAction::RestartApplication);
        assert!(GpuAction::RestartApplication > GpuAction::None);
        assert_eq!(GpuAction::RebootNode.to_string(), "reboot node");
        assert_eq!(serde_json::to_value(GpuAction::ResetGpu).ok(), Some(serde_json::json!("resetGpu")));
    }
}
