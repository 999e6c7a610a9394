//! `explain_xid`: one XID code explained: NVIDIA's catalog entry, the rule the operator applies and the verdicts it
//! gives (once, above the application rate, per recovery action for XID 154), and, when a cluster is connected,
//! which nodes have the code in their XID history. Needs no cluster; an unknown code gets the catalog's "unknown
//! XID" entry, not an error.

use std::collections::BTreeMap;

use gpuscope_crds::Health;
use gpuscope_crds::policy::EffectivePolicy;
use gpuscope_log_analysis::{XidExplanation, explain_xid};
use jiff::Timestamp;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::answer::Answer;
use crate::args::{self, FLEET_DEFAULT_LIMIT, MAX_LIMIT};
use crate::error::ToolError;
use crate::snapshot::Snapshot;
use crate::tools::common::{GpuRef, Truncated, gpu_at, plural, take};

/// Arguments of `explain_xid`.
#[derive(Clone, Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExplainXidArgs {
    /// The XID code, e.g. 79 (the number after the PCI address in `NVRM: Xid (PCI:0000:3b:00): 79, ...`).
    #[serde(deserialize_with = "crate::args::number")]
    pub code: u32,
    /// Most nodes listed with the code in their history, 1-200, default 10; the totals cover every node.
    #[schemars(range(min = 1, max = MAX_LIMIT))]
    #[serde(default, deserialize_with = "crate::args::optional_number")]
    pub limit: Option<u32>,
    /// Cluster (kubeconfig context) whose nodes to list; omit for the default (first) cluster.
    pub cluster: Option<String>,
}

/// One XID code explained.
#[derive(Clone, Debug, PartialEq, Serialize, JsonSchema)]
pub struct XidExplainAnswer {
    /// What the code is, in one line.
    pub verdict: String,
    /// What to do when a GPU logs it.
    pub action: String,
    /// The cluster whose XID histories were searched; absent without a cluster.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    /// NVIDIA's catalog entry, the operator's rule and the verdicts it gives.
    pub explanation: XidExplanation,
    /// Nodes whose XID history has the code (when a cluster is connected).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nodes_with_code: Option<NodesWithCode>,
    /// Why nodes_with_code is missing although a cluster is connected.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// Nodes whose XID history has the code.
#[derive(Clone, Debug, PartialEq, Serialize, JsonSchema)]
pub struct NodesWithCode {
    /// Nodes with the code, all of them.
    pub total_nodes: usize,
    /// GPUs with the code, all of them.
    pub total_gpus: usize,
    /// Occurrences over every node (each history counts since its first occurrence).
    pub occurrences: u64,
    /// The nodes, most recent occurrence first.
    pub nodes: Vec<NodeWithCode>,
    /// Present when the list was cut to `limit`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub truncated: Option<Truncated>,
}

/// One node with the code in its history.
#[derive(Clone, Debug, PartialEq, Serialize, JsonSchema)]
pub struct NodeWithCode {
    /// Node name.
    pub node: String,
    /// The operator's current verdict for the node.
    pub health: Health,
    /// Occurrences on the node.
    pub occurrences: u64,
    /// The GPUs that logged it.
    pub gpus: Vec<GpuRef>,
    /// Newest occurrence (RFC 3339).
    pub last_seen: String,
}

impl Answer for XidExplainAnswer {
    fn verdict(&self) -> &str {
        &self.verdict
    }
    fn action(&self) -> &str {
        &self.action
    }
    fn highlights(&self) -> Vec<String> {
        let e = &self.explanation;
        let mut lines = vec![
            format!(
                "NVIDIA: immediate action {}, investigatory action {}",
                e.catalog.immediate_action, e.catalog.investigatory_action
            ),
            format!("Once on a GPU: {} ({}). {}", e.once.health, e.once.action, e.once.explanation),
        ];
        if e.above_rate != e.once {
            lines.push(format!(
                "More than {} times on one GPU: {} ({})",
                e.rules.application_xid_rate, e.above_rate.health, e.above_rate.action
            ));
        }
        lines.extend(e.by_recovery_action.iter().map(|r| {
            format!("Recovery action {}: {} ({})", r.recovery_action.name, r.verdict.health, r.verdict.action)
        }));
        let cluster = self.cluster.as_deref().unwrap_or_default();
        match &self.nodes_with_code {
            Some(n) if n.total_nodes == 0 => {
                lines.push(format!("In cluster {cluster}: no node has XID {} in its history", e.catalog.code));
            }
            Some(n) => {
                let line = format!(
                    "In cluster {cluster}: {} on {} ({}), most recent: {}",
                    plural(n.occurrences as usize, "occurrence"),
                    plural(n.total_nodes, "node"),
                    plural(n.total_gpus, "GPU"),
                    n.nodes.iter().take(5).map(|x| x.node.as_str()).collect::<Vec<_>>().join(", ")
                );
                lines.push(line);
            }
            None => {}
        }
        if let Some(note) = &self.note {
            lines.push(note.clone());
        }
        lines
    }
}

/// Explain `args.code`; `snap` is the cluster to search, when one is connected.
pub fn answer(snap: Option<&Snapshot>, args: &ExplainXidArgs) -> Result<XidExplainAnswer, ToolError> {
    let limit = args::limit(args.limit, FLEET_DEFAULT_LIMIT, MAX_LIMIT)?;
    // The facade does not read the cluster's health policy: the verdicts are the operator's default rules.
    let explanation = explain_xid(args.code, &EffectivePolicy::default());
    let verdict = verdict_line(&explanation);
    let action = action_line(&explanation);
    let nodes_with_code = snap.map(|s| nodes_with(s, args.code, limit));
    Ok(XidExplainAnswer {
        verdict,
        action,
        cluster: snap.map(|s| s.cluster().to_string()),
        explanation,
        nodes_with_code,
        note: None,
    })
}

fn verdict_line(e: &XidExplanation) -> String {
    let c = &e.catalog;
    if c.known {
        format!("XID {} {}: {} ({}, {})", c.code, c.mnemonic, c.description, c.severity, c.class)
    } else {
        format!("XID {} is not in NVIDIA's XID catalog: a newer driver's code, or a misread number", c.code)
    }
}

fn action_line(e: &XidExplanation) -> String {
    // The unknown entry's advice says where to look the code up: worth giving too.
    let advice = format!(" {}", e.catalog.recommended_action);
    if e.once.health != Health::Healthy {
        return format!(
            "{}: one occurrence makes the GPU {}.{advice}",
            capitalise(e.once.action.label()),
            e.once.health
        );
    }
    if !e.by_recovery_action.is_empty() {
        return format!(
            "Do what the recovery action the message names asks (GPU reset, node reboot, ...); None needs nothing.{advice}"
        );
    }
    if e.above_rate.health != Health::Healthy {
        return format!(
            "None for the GPU at one occurrence; more than {} on one GPU make it {}: {}.{advice}",
            e.rules.application_xid_rate,
            e.above_rate.health,
            e.above_rate.action.label()
        );
    }
    format!("None needed for the GPU: {}{advice}", e.once.explanation)
}

fn capitalise(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(c) => c.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// Every node whose XID history has `code`, newest occurrence first.
fn nodes_with(snap: &Snapshot, code: u32, limit: usize) -> NodesWithCode {
    let mut rows = Vec::new();
    let mut total_gpus = 0;
    let mut occurrences = 0u64;
    for o in snap.statuses() {
        let status = &o.facts;
        let Some(xids) = status.xids.as_ref() else { continue };
        let mut gpus: BTreeMap<GpuRef, ()> = BTreeMap::new();
        let mut count = 0u64;
        let mut last: Option<Timestamp> = None;
        for t in xids.totals.iter().filter(|t| t.code == code) {
            gpus.insert(gpu_at(status, &t.pci_bus_id, t.gpu_uuid.as_deref()), ());
            count = count.saturating_add(t.count);
            last = last.max(Some(t.last_seen.0));
        }
        let Some(last) = last else { continue };
        total_gpus += gpus.len();
        occurrences = occurrences.saturating_add(count);
        rows.push(NodeWithCode {
            node: o.name.clone(),
            health: status.health(),
            occurrences: count,
            gpus: gpus.into_keys().collect(),
            last_seen: last.to_string(),
        });
    }
    // RFC 3339 in UTC sorts as text.
    rows.sort_by(|a, b| b.last_seen.cmp(&a.last_seen).then_with(|| a.node.cmp(&b.node)));
    let total_nodes = rows.len();
    let (nodes, truncated) = take(rows, limit, || {
        format!("raise limit (at most {MAX_LIMIT}), or call analyze_xid_errors with code={code} for counts by node")
    });
    NodesWithCode { total_nodes, total_gpus, occurrences, nodes, truncated }
}

#[cfg(test)]
mod tests {
    use gpuscope_crds::health::reason;
    use gpuscope_crds::xid::rules::{GpuAction, XidEffect};

    use super::*;
    use crate::snapshot::fixtures::snapshot;
    use crate::status_fixtures::{healthy, with_verdict, with_xid};

    fn args(code: u32) -> ExplainXidArgs {
        ExplainXidArgs { code, ..Default::default() }
    }

    #[test]
    fn xid_79_is_explained_as_a_node_reboot_without_any_cluster() {
        let a = answer(None, &args(79)).expect("explained");
        assert!(a.verdict.starts_with("XID 79 "), "{}", a.verdict);
        assert!(a.verdict.contains("(critical, PCIe bus)"), "{}", a.verdict);
        assert!(a.action.starts_with("Reboot node: one occurrence makes the GPU Unhealthy."), "{}", a.action);
        assert_eq!(a.explanation.rule.effect, XidEffect::UnhealthyUntilReboot);
        assert_eq!(a.explanation.rule.reason, reason::XID_FALLEN_OFF_BUS);
        assert_eq!((a.explanation.once.health, a.explanation.once.action), (Health::Unhealthy, GpuAction::RebootNode));
        assert_eq!(a.explanation.catalog.immediate_action, "RESTART_BM");
        assert_eq!((a.cluster, a.nodes_with_code), (None, None));
    }

    #[test]
    fn xid_13_is_an_application_error_until_it_repeats_above_the_rate() {
        let a = answer(None, &args(13)).expect("explained");
        assert_eq!(a.explanation.once.health, Health::Healthy);
        assert_eq!(a.explanation.above_rate.health, Health::Degraded);
        assert!(
            a.action.starts_with("None for the GPU at one occurrence; more than 5 on one GPU make it Degraded"),
            "{}",
            a.action
        );
        let summary = crate::answer::summary(&a);
        assert!(summary.contains("- More than 5 times on one GPU: Degraded"), "{summary}");
    }

    #[test]
    fn an_unknown_code_gets_the_unknown_entry_not_an_error() {
        let a = answer(None, &args(9_999)).expect("explained");
        assert!(!a.explanation.catalog.known);
        assert!(a.verdict.starts_with("XID 9999 is not in NVIDIA's XID catalog"), "{}", a.verdict);
        assert_eq!(a.explanation.once.health, Health::Healthy);
    }

    #[test]
    fn xid_154_lists_a_verdict_per_recovery_action() {
        let a = answer(None, &args(154)).expect("explained");
        let by: Vec<(String, Health)> = a
            .explanation
            .by_recovery_action
            .iter()
            .map(|r| (r.recovery_action.name.clone(), r.verdict.health))
            .collect();
        assert_eq!(by.first(), Some(&("None".to_string(), Health::Healthy)));
        assert!(by.iter().any(|(_, h)| *h == Health::Unhealthy), "{by:?}");
        assert!(a.action.starts_with("Do what the recovery action"), "{}", a.action);
    }

    #[test]
    fn with_a_cluster_the_nodes_with_the_code_are_listed_newest_first_and_bounded() {
        let a_node = with_verdict(
            with_xid(healthy("gpu-a", 8), 3, 79, 1, "2026-11-25T09:00:00Z", "2026-11-25T09:00:00Z"),
            3,
            Health::Unhealthy,
            &[reason::XID_FALLEN_OFF_BUS],
            "",
        );
        let b_node = with_xid(
            with_xid(healthy("gpu-b", 8), 1, 79, 2, "2026-11-25T10:00:00Z", "2026-11-25T11:00:00Z"),
            2,
            79,
            1,
            "2026-11-25T10:30:00Z",
            "2026-11-25T10:30:00Z",
        );
        let c_node = with_xid(healthy("gpu-c", 8), 0, 13, 4, "2026-11-25T08:00:00Z", "2026-11-25T11:30:00Z");
        let snap = snapshot(vec![a_node, b_node, c_node], vec![], vec![]);
        let a = answer(Some(&snap), &args(79)).expect("explained");
        assert_eq!(a.cluster.as_deref(), Some("test"));
        let n = a.nodes_with_code.as_ref().expect("searched");
        assert_eq!((n.total_nodes, n.total_gpus, n.occurrences), (2, 3, 4));
        let rows: Vec<(&str, Health, u64, &str)> =
            n.nodes.iter().map(|x| (x.node.as_str(), x.health, x.occurrences, x.last_seen.as_str())).collect();
        assert_eq!(
            rows,
            [
                ("gpu-b", Health::Healthy, 3, "2026-11-25T11:00:00Z"),
                ("gpu-a", Health::Unhealthy, 1, "2026-11-25T09:00:00Z")
            ]
        );
        assert_eq!(n.nodes[0].gpus.iter().filter_map(|g| g.index).collect::<Vec<_>>(), [1, 2]);
        let one = answer(Some(&snap), &ExplainXidArgs { code: 79, limit: Some(1), cluster: None }).expect("ok");
        let n = one.nodes_with_code.expect("searched");
        assert_eq!((n.nodes.len(), n.truncated.as_ref().map(|t| t.total)), (1, Some(2)));
        let none = answer(Some(&snap), &args(48)).expect("ok").nodes_with_code.expect("searched");
        assert_eq!((none.total_nodes, none.nodes.len()), (0, 0));
        let e = answer(None, &ExplainXidArgs { code: 79, limit: Some(0), cluster: None }).expect_err("limit 0");
        assert!(e.to_string().contains("at least 1"), "{e}");
    }
}
