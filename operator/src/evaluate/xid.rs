//! XIDs: the rule table (NVIDIA's immediate action → per-GPU effect, docs/xid.md §2, policy overrides first) and
//! the evidence the probe's XID history gives for each (GPU, code).
//!
//! The rule table lives in `gpuscope_crds::xid::rules`, so the log analysis judges a pasted kernel log with the
//! same code the operator judges the cluster with; it is re-exported here under its old names.

use std::collections::BTreeMap;

use gpuscope_crds::gpu_node_status::{GpuNodeStatusStatus, XidEvent, XidTotal};
use gpuscope_crds::xid::nvlink5::{self, Nvlink5Severity};
use jiff::Timestamp;

pub(super) use gpuscope_crds::xid::rules::xid_label;
pub use gpuscope_crds::xid::rules::{XidEffect, XidRule, xid_rule, xid_rule_for_line};

use super::{Ctx, Identity};

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
    /// NVLink5 XIDs: the worst severity token among this boot's lines (`Fatal` over `Nonfatal`).
    pub nvlink5: Option<Nvlink5Severity>,
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
        let nvlink5 = if nvlink5::is_nvlink5(code) {
            let severities = messages.clone().filter_map(|(_, m)| nvlink5::decode(&m).severity);
            severities.fold(None, |worst, s| match (worst, s) {
                (Some(Nvlink5Severity::Fatal), _) | (_, Nvlink5Severity::Fatal) => Some(Nvlink5Severity::Fatal),
                _ => Some(Nvlink5Severity::Nonfatal),
            })
        } else {
            None
        };
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
            nvlink5,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use gpuscope_crds::policy::EffectivePolicy;

    #[test]
    fn the_operator_judges_with_the_shared_rule_table() {
        let p = EffectivePolicy::default();
        assert_eq!(xid_rule(79, &p).effect, XidEffect::UnhealthyUntilReboot);
        assert_eq!(xid_rule(79, &p), gpuscope_crds::xid::rules::xid_rule(79, &p));
        assert_eq!(xid_label(9_999), "unknown XID 9999");
    }
}
