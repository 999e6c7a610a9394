//! XIDs: the rule table (NVIDIA's immediate action → per-GPU effect, docs/xid.md §2, policy overrides first) and
//! the evidence the probe's XID history gives for each (GPU, code).

use std::collections::BTreeMap;

use gpuscope_crds::gpu_node_status::{GpuNodeStatusStatus, XidEvent, XidTotal};
use gpuscope_crds::health::reason;
use gpuscope_crds::policy::{EffectivePolicy, XidOverrideHealth};
use gpuscope_crds::xid::{ResolutionBucket, lookup};
use jiff::Timestamp;

use super::{Ctx, Identity};

/// What an XID does to its GPU's verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
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
#[derive(Clone, Debug, PartialEq, Eq)]
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
        // Only the log message is available, not the decoded subcode: NVIDIA's "not parsed" row says Degraded.
        WorkflowNvlink5Err => (XidEffect::DegradedWhileInWindow, reason::XID_NVLINK),
        WorkflowXid45 => (XidEffect::Informational, ""),
        Xid154 => (XidEffect::RecoveryAction, reason::RECOVERY_ACTION_REQUIRED),
        ContactSupport | CheckMechanicals | UpdateSwfw | RestartFm | InvestigateSw | InvestigateLinkSi => {
            (XidEffect::UnhealthyUntilRemedy, reason::XID_CRITICAL)
        }
        IgnoreSympathetic
        | SympatheticReportSolo
        | Xid137Flow
        | CheckUvm
        | CheckAppCuda
        | InvestigateSwUser
        | NotApplicable => (XidEffect::DegradedAboveRate, reason::XID_RATE),
    };
    XidRule { effect, reason: reason.to_string(), from_policy: false }
}

/// "XID 79 ROBUST_CHANNEL_GPU_HAS_FALLEN_OFF_THE_BUS (GPU has fallen off the bus)", or "unknown XID 9999".
pub(super) fn xid_label(code: u32) -> String {
    let info = lookup(code);
    if info.known {
        format!("XID {code} {} ({})", info.mnemonic, info.description)
    } else {
        format!("unknown XID {code}")
    }
}

/// Everything the XID history says about one (GPU, code) in the current boot.
#[derive(Clone, Debug)]
pub(super) struct XidEvidence {
    /// GPU key (UUID, or `PCI:<bus id>` when the UUID is unknown).
    pub gpu: String,
    /// XID code.
    pub code: u32,
    /// Occurrences within the window (see [`collect`] for how exact this is).
    pub count: u64,
    /// Newest occurrence in the current boot.
    pub last_seen: Timestamp,
    /// Some occurrence carries the node's current boot id (not merely an unknown one).
    pub boot_confirmed: bool,
    /// The newest driver message and its time.
    pub newest_message: Option<(Timestamp, String)>,
    /// When `count` next changes on its own (an occurrence leaving the window).
    pub changes_at: Option<Timestamp>,
}

impl XidEvidence {
    /// Whether the newest occurrence is within the window.
    pub fn last_in_window(&self, ctx: &Ctx) -> bool {
        ctx.in_window(self.last_seen)
    }
}

#[derive(Default)]
struct Gathered<'a> {
    totals: Vec<&'a XidTotal>,
    events: Vec<&'a XidEvent>,
    other_boot_events: bool,
}

/// Groups the probe's XID history by (GPU, code), keeping the current boot only.
///
/// `totals` hold every occurrence but only the first and last time; `recent` holds the newest 32 events with their
/// times. The count within the window is exact when the first occurrence is inside it (and no event of the pair
/// comes from another boot); otherwise it is the number of recent events inside the window, at least 1 when the
/// newest occurrence is — a lower bound, never an overcount from history older than the window.
pub(super) fn collect(status: &GpuNodeStatusStatus, ident: &Identity, ctx: &Ctx) -> Vec<XidEvidence> {
    let mut groups: BTreeMap<(String, u32), Gathered> = BTreeMap::new();
    let Some(history) = status.xids.as_ref() else { return Vec::new() };
    for total in &history.totals {
        if ctx.is_current_boot(total.last_boot_id.as_deref()) {
            let key = ident.key_for(total.gpu_uuid.as_deref(), &total.pci_bus_id);
            groups.entry((key, total.code)).or_default().totals.push(total);
        }
    }
    for event in &history.recent {
        let key = ident.key_for(event.gpu_uuid.as_deref(), &event.pci_bus_id);
        let group = groups.entry((key, event.code)).or_default();
        if ctx.is_current_boot(event.boot_id.as_deref()) {
            group.events.push(event);
        } else {
            group.other_boot_events = true;
        }
    }
    let mut out = Vec::new();
    for ((gpu, code), g) in groups {
        let times = g.totals.iter().map(|t| t.last_seen.0).chain(g.events.iter().map(|e| e.time.0));
        let Some(last_seen) = times.max() else { continue };
        let recent_in_window = g.events.iter().filter(|e| ctx.in_window(e.time.0)).count() as u64;
        let totals_exact =
            !g.totals.is_empty() && !g.other_boot_events && g.totals.iter().all(|t| ctx.in_window(t.first_seen.0));
        let total_count: u64 = if totals_exact { g.totals.iter().map(|t| t.count).sum() } else { 0 };
        let count = recent_in_window.max(total_count).max(u64::from(ctx.in_window(last_seen)));

        let mut leaving: Vec<Timestamp> =
            g.events.iter().map(|e| e.time.0).filter(|t| ctx.in_window(*t)).map(|t| ctx.leaves_window(t)).collect();
        if totals_exact {
            leaving.extend(g.totals.iter().map(|t| ctx.leaves_window(t.first_seen.0)));
        }
        if ctx.in_window(last_seen) {
            leaving.push(ctx.leaves_window(last_seen));
        }

        let boot_confirmed = ctx.boot.is_some()
            && (g.totals.iter().any(|t| t.last_boot_id.as_deref() == ctx.boot)
                || g.events.iter().any(|e| e.boot_id.as_deref() == ctx.boot));
        let messages = g
            .totals
            .iter()
            .filter_map(|t| t.last_message.as_ref().map(|m| (t.last_seen.0, m.clone())))
            .chain(g.events.iter().filter_map(|e| e.message.as_ref().map(|m| (e.time.0, m.clone()))));
        // Newest first; equal times fall back to the text so the choice never depends on input order.
        let newest_message = messages.max();
        out.push(XidEvidence {
            gpu,
            code,
            count,
            last_seen,
            boot_confirmed,
            newest_message,
            changes_at: leaving.into_iter().min(),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_catalog_code_has_a_rule_matching_its_bucket() {
        let policy = EffectivePolicy::default();
        for row in gpuscope_crds::xid::catalog() {
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
        for code in 144..=150 {
            assert_eq!(effect(code), XidEffect::DegradedWhileInWindow, "XID {code}");
        }
        assert_eq!(effect(45), XidEffect::Informational);
        assert_eq!(effect(154), XidEffect::RecoveryAction);
        assert_eq!(effect(9_999), XidEffect::DegradedAboveRate);
        assert_eq!(xid_rule(79, &p).reason, "XidFallenOffBus");
        assert_eq!(xid_rule(48, &p).reason, "UncorrectableEcc");
        assert_eq!(xid_rule(74, &p).reason, "XidNvlinkError");
        assert_eq!(xid_rule(95, &p).reason, "XidCritical");
        assert_eq!(xid_rule(13, &p).reason, "XidRateExceeded");
    }

    #[test]
    fn labels_name_the_mnemonic_or_say_unknown() {
        assert_eq!(xid_label(79), "XID 79 ROBUST_CHANNEL_GPU_HAS_FALLEN_OFF_THE_BUS (GPU has fallen off the bus)");
        assert_eq!(xid_label(9_999), "unknown XID 9999");
    }
}
