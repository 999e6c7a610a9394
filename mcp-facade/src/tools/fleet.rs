//! `get_fleet_summary`: the fleet on one screen: nodes and GPUs by health and model, probe freshness, GPU
//! allocation, XID hot spots, and the top offenders with what to do about them.

use gpuscope_crds::Health;
use gpuscope_crds::gpu_node_status::DataSource;
use gpuscope_crds::xid::rules::{Urgency, reason_urgency};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::answer::Answer;
use crate::args;
use crate::error::ToolError;
use crate::freshness::ProbeState;
use crate::snapshot::Snapshot;
use crate::time::{age, rfc3339};
use crate::tools::common::{
    DriverCount, HealthCounts, ModelCount, Truncated, cut, driver_counts, merge_cuts, model_counts, plural, take,
};
use crate::tools::health::{ProbeCounts, ReasonAction, reason_actions};
use crate::xid_view::meaning;

/// Default and largest number of offenders and stale probes listed.
const DEFAULT_TOP: u32 = 10;
const MAX_TOP: u32 = 50;

/// Arguments of `get_fleet_summary`.
#[derive(Clone, Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FleetArgs {
    /// How many top offenders and stale probes to list (1-50, default 10).
    #[schemars(range(min = 1, max = MAX_TOP))]
    #[serde(default, deserialize_with = "crate::args::optional_number")]
    pub limit: Option<u32>,
    /// Cluster (kubeconfig context) to ask; omit for the default (first) cluster.
    pub cluster: Option<String>,
}

/// The fleet overview.
#[derive(Clone, Debug, PartialEq, Serialize, JsonSchema)]
pub struct FleetSummary {
    /// The fleet's state in one line.
    pub verdict: String,
    /// The most urgent thing to do.
    pub action: String,
    /// Cluster answered for.
    pub cluster: String,
    /// GPU nodes by health.
    pub nodes: HealthCounts,
    /// GPUs by health (the operator's per-GPU verdicts).
    pub gpus: HealthCounts,
    /// Probes by freshness.
    pub probes: ProbeCounts,
    /// GPUs per model (at most 10).
    pub by_model: Vec<ModelCount>,
    /// Nodes per driver version (at most 5).
    pub by_driver: Vec<DriverCount>,
    /// GPU allocation to pods.
    pub allocation: FleetAllocation,
    /// XIDs within the health policy's window, as the operator counts them.
    pub xids: FleetXids,
    /// Worst nodes first: Unhealthy, then Degraded; with their reasons.
    pub top_offenders: Vec<Offender>,
    /// What to do about each reason among all offenders and silent probes (not only those listed), most urgent
    /// first: said once per reason rather than per node.
    pub actions_by_reason: Vec<ReasonAction>,
    /// Nodes whose probe stopped reporting (or never did), longest first.
    pub stale_probes: Vec<StaleProbe>,
    /// Nodes whose probe runs but cannot see everything: without NVML (health Unknown) or without the kernel log
    /// (XIDs from NVML events only).
    pub running_blind: RunningBlind,
    /// Present when a list was cut to `limit`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub truncated: Option<Truncated>,
}

/// GPUs offered and held.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, JsonSchema)]
pub struct FleetAllocation {
    /// Whole GPUs the Nodes offer to pods.
    pub gpus_allocatable: u64,
    /// Whole GPUs held by active pods bound to nodes.
    pub gpus_held: u64,
    /// Active GPU pods.
    pub pods: usize,
    /// GPU pods waiting for a node.
    pub pending_pods: usize,
}

/// XIDs across the fleet.
#[derive(Clone, Debug, Default, PartialEq, Serialize, JsonSchema)]
pub struct FleetXids {
    /// Nodes with XIDs within the policy window.
    pub nodes_with_recent_xids: usize,
    /// XIDs within the policy window, all nodes.
    pub recent_xids: u64,
    /// The newest code per node, counted over nodes (at most 5), most nodes first.
    pub latest_codes: Vec<CodeNodes>,
}

/// A code and how many nodes most recently logged it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, JsonSchema)]
pub struct CodeNodes {
    /// XID code.
    pub code: u32,
    /// NVIDIA's mnemonic.
    pub mnemonic: String,
    /// info, warning or critical.
    pub severity: String,
    /// Nodes whose newest XID is this code.
    pub nodes: usize,
}

/// Probes that report, but without a data source.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, JsonSchema)]
pub struct RunningBlind {
    /// Nodes whose probe cannot load NVML: no inventory, telemetry or NVML XID events; health Unknown.
    pub nvml_unavailable: usize,
    /// Nodes whose probe cannot read the kernel log: XIDs only from NVML events.
    pub kernel_log_unavailable: usize,
    /// Those nodes by name (at most `limit`), sorted.
    pub nodes: Vec<String>,
}

/// A node that needs attention.
#[derive(Clone, Debug, PartialEq, Serialize, JsonSchema)]
pub struct Offender {
    /// Node name.
    pub node: String,
    /// Its verdict.
    pub health: Health,
    /// Unhealthy GPUs.
    pub unhealthy_gpus: usize,
    /// Degraded GPUs.
    pub degraded_gpus: usize,
    /// Reasons, most severe GPU first.
    pub reasons: Vec<String>,
    /// XIDs within the policy window.
    pub recent_xids: u64,
}

/// A node whose probe is not reporting.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, JsonSchema)]
pub struct StaleProbe {
    /// Node name.
    pub node: String,
    /// stale or missing.
    pub state: ProbeState,
    /// Since when (RFC 3339), when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
    /// For how long, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub held_for: Option<String>,
}

impl Answer for FleetSummary {
    fn verdict(&self) -> &str {
        &self.verdict
    }
    fn action(&self) -> &str {
        &self.action
    }
    fn highlights(&self) -> Vec<String> {
        self.top_offenders
            .iter()
            .take(5)
            .map(|o| format!("{}: {} ({})", o.node, o.health, o.reasons.join(", ")))
            .collect()
    }
}

/// Answer `get_fleet_summary`: every count and list is read off the indexes ([`crate::index::fleet`]), so the work
/// is the size of the answer, not of the fleet.
pub fn answer(snap: &Snapshot, args: &FleetArgs) -> Result<FleetSummary, ToolError> {
    let limit = args::limit(args.limit, DEFAULT_TOP, MAX_TOP)?;
    let ix = snap.indexes();
    let f = ix.fleet();
    let (nodes, gpus, probes) =
        (HealthCounts::from(f.nodes()), HealthCounts::from(f.gpus()), ProbeCounts::from(f.probes()));
    // (offender, its first action): only the worst one's action is spelled out, in `action`.
    let offenders: Vec<(Offender, String)> = f
        .offenders()
        .take(limit)
        .map(|(name, row)| {
            let offender = Offender {
                node: name.to_string(),
                health: row.health,
                unhealthy_gpus: row.gpus.get(Health::Unhealthy),
                degraded_gpus: row.gpus.get(Health::Degraded),
                reasons: row.reasons(),
                recent_xids: row.recent_xids,
            };
            (offender, row.first_action(name))
        })
        .collect();
    let stale_probes: Vec<StaleProbe> = f
        .silent()
        .take(limit)
        .map(|(name, row)| StaleProbe {
            node: name.to_string(),
            state: row.probe,
            since: row.probe_since.as_ref().map(rfc3339),
            held_for: row.probe_since.as_ref().map(|t| age(snap.now(), t.0)),
        })
        .collect();
    let (nodes_with_recent_xids, recent_xids) = f.recent_xids();
    // The one ranking, within the page the index ranked: what the node's reasons demand (reboot node > reset
    // GPU > ...), then the counts.
    let urgency = |o: &Offender| o.reasons.iter().map(|r| reason_urgency(r)).max().unwrap_or(Urgency::None);
    let mut offenders = offenders;
    offenders.sort_by(|(a, _), (b, _)| {
        urgency(b)
            .cmp(&urgency(a))
            .then_with(|| (b.health == Health::Unhealthy).cmp(&(a.health == Health::Unhealthy)))
            .then_with(|| {
                (b.unhealthy_gpus, b.degraded_gpus, b.recent_xids).cmp(&(
                    a.unhealthy_gpus,
                    a.degraded_gpus,
                    a.recent_xids,
                ))
            })
            .then_with(|| a.node.cmp(&b.node))
    });
    // Nodes running blind (no NVML, no kernel log): a scan of the cached facts, a few bytes per node.
    let mut blind = RunningBlind::default();
    for status in snap.statuses() {
        let blind_to = &status.facts.blind_to;
        if !blind_to.is_empty() {
            blind.nvml_unavailable += usize::from(blind_to.contains(&DataSource::Nvml));
            blind.kernel_log_unavailable += usize::from(blind_to.contains(&DataSource::KernelLog));
            blind.nodes.push(status.name.clone());
        }
    }
    let mut latest: Vec<CodeNodes> = f
        .latest_codes()
        .map(|(code, n)| {
            let m = meaning(code);
            CodeNodes { code, mnemonic: m.mnemonic, severity: m.severity, nodes: n }
        })
        .collect();
    latest.sort_by(|a, b| b.nodes.cmp(&a.nodes).then_with(|| a.code.cmp(&b.code)));
    latest.truncate(5);
    let xids = FleetXids { nodes_with_recent_xids, recent_xids, latest_codes: latest };
    let allocation = FleetAllocation {
        gpus_allocatable: f.gpus_allocatable(),
        gpus_held: ix.pods().gpus_held(),
        pods: ix.pods().pods(),
        pending_pods: ix.pods().pending_pods(),
    };

    let hint = || format!("call get_gpu_health for every problem, or raise limit (max {MAX_TOP})");
    let first_action = offenders.first().map(|(o, action)| (o.node.clone(), o.health, action.clone()));
    let top_offenders: Vec<Offender> = offenders.into_iter().map(|(o, _)| o).collect();
    blind.nodes.sort();
    let (blind_nodes, t3) = take(std::mem::take(&mut blind.nodes), limit, hint);
    blind.nodes = blind_nodes;
    let truncated = merge_cuts([
        ("top_offenders", cut(f.offender_count(), limit, hint)),
        ("stale_probes", cut(f.silent_count(), limit, hint)),
        ("running_blind.nodes", t3),
    ]);
    let mut by_model = model_counts(f.models());
    by_model.truncate(10);
    let mut by_driver =
        driver_counts(f.drivers().map(|(driver, cuda, nodes)| (driver.to_string(), cuda.map(str::to_string), nodes)));
    by_driver.truncate(5);
    let actions_by_reason = reason_actions(f.offender_reasons());
    drop(ix);

    let verdict = if nodes.total == 0 {
        format!(
            "Cluster {} has no GPU nodes (no GpuNodeStatus, no Node with nvidia.com GPU resources).",
            snap.cluster()
        )
    } else {
        let mut v = format!(
            "{} with {}: {} healthy, {} degraded, {} unhealthy, {} unknown nodes",
            plural(nodes.total, "GPU node"),
            plural(gpus.total, "GPU"),
            nodes.healthy,
            nodes.degraded,
            nodes.unhealthy,
            nodes.unknown
        );
        if probes.stale + probes.missing > 0 {
            v.push_str(&format!("; {} not reporting", plural(probes.stale + probes.missing, "probe")));
        }
        if blind.nvml_unavailable > 0 {
            v.push_str(&format!("; {} without NVML", plural(blind.nvml_unavailable, "node")));
        }
        if blind.kernel_log_unavailable > 0 {
            v.push_str(&format!("; {} without the kernel log", plural(blind.kernel_log_unavailable, "node")));
        }
        if allocation.gpus_allocatable > 0 {
            v.push_str(&format!(
                "; {} of {} allocatable GPUs in use",
                allocation.gpus_held, allocation.gpus_allocatable
            ));
        }
        v.push('.');
        v
    };
    let action = match (&first_action, stale_probes.first()) {
        (Some((node, Health::Unhealthy, action)), _) => format!("{node}: {action}"),
        (_, Some(s)) => crate::actions::for_reason(
            if s.state == ProbeState::Missing {
                gpuscope_crds::health::reason::PROBE_MISSING
            } else {
                gpuscope_crds::health::reason::PROBE_STALE
            },
            &s.node,
        ),
        (Some((node, _, action)), None) => format!("{node}: {action}"),
        (None, None) if nodes.total == 0 => {
            "Check that the gpuscope-probe DaemonSet runs on the GPU nodes.".to_string()
        }
        (None, None) => "None needed.".to_string(),
    };
    Ok(FleetSummary {
        verdict,
        action,
        cluster: snap.cluster().to_string(),
        nodes,
        gpus,
        probes,
        by_model,
        by_driver,
        allocation,
        xids,
        top_offenders,
        actions_by_reason,
        stale_probes,
        running_blind: blind,
        truncated,
    })
}

#[cfg(test)]
mod tests {
    use gpuscope_crds::health::reason;

    use super::*;
    use crate::gpu_resources::fixtures::{node, pod};
    use crate::snapshot::fixtures::snapshot;
    use crate::status_fixtures::{healthy, stale, with_verdict, with_xid};

    #[test]
    fn nodes_running_blind_are_counted_by_what_they_cannot_see() {
        use gpuscope_crds::gpu_node_status::UnavailableSource;
        let blind = |name: &str, sources: &[DataSource]| {
            let mut o = healthy(name, 2);
            if let Some(p) = o.status.as_mut().and_then(|s| s.probe.as_mut()) {
                p.unavailable_sources =
                    Some(sources.iter().map(|d| UnavailableSource { source: *d, message: "denied".into() }).collect());
            }
            o
        };
        let statuses = vec![
            healthy("ok", 2),
            blind("no-nvml", &[DataSource::Nvml]),
            blind("no-kmsg", &[DataSource::KernelLog]),
            blind("no-both", &[DataSource::Nvml, DataSource::KernelLog]),
            // A probe that predates `unavailableSources` names the kernel log only in `unsupportedFields`.
            {
                let mut o = healthy("old-probe", 2);
                if let Some(s) = o.status.as_mut() {
                    s.unsupported_fields = Some(vec!["xids.kernelLog".into()]);
                }
                o
            },
        ];
        let f = answer(&snapshot(statuses, vec![], vec![]), &FleetArgs::default()).expect("answer");
        assert_eq!(
            f.running_blind,
            RunningBlind {
                nvml_unavailable: 2,
                kernel_log_unavailable: 3,
                nodes: vec!["no-both".into(), "no-kmsg".into(), "no-nvml".into(), "old-probe".into()],
            }
        );
        assert!(f.verdict.contains("; 2 nodes without NVML; 3 nodes without the kernel log"), "{}", f.verdict);
    }

    #[test]
    fn thousand_node_fleet_fits_one_screen() {
        let mut statuses: Vec<_> = (0..1_000).map(|i| healthy(&format!("node-{i:04}"), 8)).collect();
        for i in 0..30 {
            let o = with_verdict(statuses[i * 7].clone(), 1, Health::Unhealthy, &[reason::XID_FALLEN_OFF_BUS], "");
            statuses[i * 7] = with_xid(o, 1, 79, 1, "2026-11-25T11:00:00Z", "2026-11-25T11:00:00Z");
        }
        for i in 0..20 {
            statuses[500 + i * 11] = stale(statuses[500 + i * 11].clone(), "2026-11-25T10:00:00Z");
        }
        let nodes: Vec<_> = (0..1_000).map(|i| node(&format!("node-{i:04}"), 8)).collect();
        let pods = vec![pod("ml", "p", Some("node-0000"), "nvidia.com/gpu", 8, "Running")];
        let f = answer(&snapshot(statuses, nodes, pods), &FleetArgs::default()).expect("answer");
        assert_eq!(f.nodes.total, 1_000);
        assert_eq!(f.nodes.unhealthy, 30);
        assert_eq!(f.probes.stale, 20);
        assert_eq!(f.gpus.total, 8_000);
        assert_eq!(f.top_offenders.len(), 10);
        assert_eq!(f.top_offenders[0].reasons, ["XidFallenOffBus"]);
        let by_reason: Vec<(&str, usize)> = f.actions_by_reason.iter().map(|a| (a.reason.as_str(), a.nodes)).collect();
        assert_eq!(
            by_reason,
            [("XidFallenOffBus", 30), ("HeartbeatTimeout", 20)],
            "counted over every node, said once"
        );
        assert_eq!(
            f.truncated.as_ref().map(|t| t.hint.as_str()),
            Some(
                "top_offenders 10 of 30, stale_probes 10 of 20 shown; call get_gpu_health for every problem, or raise limit (max 50)"
            )
        );
        assert_eq!(f.stale_probes.len(), 10);
        assert_eq!(f.xids.latest_codes[0].code, 79);
        assert_eq!(f.xids.latest_codes[0].nodes, 30);
        assert_eq!(f.allocation, FleetAllocation { gpus_allocatable: 8_000, gpus_held: 8, pods: 1, pending_pods: 0 });
        assert!(
            f.verdict
                .starts_with("1000 GPU nodes with 8000 GPUs: 950 healthy, 0 degraded, 30 unhealthy, 20 unknown nodes"),
            "{}",
            f.verdict
        );
        assert!(f.action.starts_with("node-0000: Drain node-0000"), "{}", f.action);
        let bytes = serde_json::to_vec(&f).expect("json").len();
        assert!(bytes < 16 * 1024, "fleet summary is {bytes} bytes");
    }

    #[test]
    fn empty_cluster_says_where_gpus_would_come_from() {
        let f = answer(&snapshot(vec![], vec![], vec![]), &FleetArgs::default()).expect("answer");
        assert!(f.verdict.contains("no GPU nodes"), "{}", f.verdict);
        assert!(f.action.contains("DaemonSet"));
        assert!(
            answer(&snapshot(vec![], vec![], vec![]), &FleetArgs { limit: Some(51), ..Default::default() }).is_err()
        );
    }
}
