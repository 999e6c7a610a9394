//! `get_gpu_health`: the operator's verdicts and conditions, worst first, each with its reasons and the action.

use gpuscope_crds::Health;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::actions;
use crate::answer::Answer;
use crate::args::{self, DEFAULT_LIMIT, FLEET_DEFAULT_LIMIT, GpuArg, GpuSelector, MAX_LIMIT};
use crate::error::ToolError;
use crate::freshness::{self, Freshness, ProbeState};
use crate::index::reasons::ReasonTally;
use crate::index::tally::ProbeTally;
use crate::problems::rank;
use crate::snapshot::{NodeRef, Snapshot};
use crate::tools::common::{
    ConditionView, GpuRef, HealthCounts, Truncated, cut, gpu_healths, node_health, plural, select_gpus,
    shared_uuid_warnings, take,
};

pub use crate::problems::{Problem, node_problems};

/// Arguments of `get_gpu_health`.
#[derive(Clone, Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HealthArgs {
    /// Node to check (its conditions are included). Omit for the whole fleet, worst first.
    pub node_name: Option<String>,
    /// One GPU: its NVML index (with node_name) or its UUID or the leading part of it.
    pub gpu: Option<GpuArg>,
    /// Most problems to list (1-200; default 10 fleet-wide, 20 with node_name or gpu); counts always cover
    /// everything.
    #[schemars(range(min = 1, max = MAX_LIMIT))]
    #[serde(default, deserialize_with = "crate::args::optional_number")]
    pub limit: Option<u32>,
    /// Cluster (kubeconfig context) to ask; omit for the default (first) cluster.
    pub cluster: Option<String>,
}

/// The health answer.
#[derive(Clone, Debug, PartialEq, Serialize, JsonSchema)]
pub struct HealthReport {
    /// How healthy the scope is, in one line.
    pub verdict: String,
    /// The most urgent thing to do.
    pub action: String,
    /// Cluster answered for.
    pub cluster: String,
    /// Nodes by verdict (scope: the fleet or the node asked for).
    pub nodes: HealthCounts,
    /// GPUs by verdict.
    pub gpus: HealthCounts,
    /// Probes by freshness.
    pub probes: ProbeCounts,
    /// What is not healthy, worst first: Unhealthy, Degraded, then Unknown; each with its reasons, and with its
    /// action when node_name or gpu was given (fleet-wide, `actions_by_reason` says what to do once per reason).
    pub problems: Vec<Problem>,
    /// Fleet-wide: what to do about each reason among all problems (not only those listed), most urgent first.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub actions_by_reason: Vec<ReasonAction>,
    /// The node's conditions (when node_name was given).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<ConditionView>,
    /// The node's probe freshness (when node_name was given).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub probe: Option<Freshness>,
    /// Present when `problems` was cut to `limit`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub truncated: Option<Truncated>,
    /// Present when two or more GPUs report the UUID asked for (a UUID names one GPU).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// Probes by freshness (from the operator's ProbeReporting condition).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, JsonSchema)]
pub struct ProbeCounts {
    /// Reporting: data is current.
    pub reporting: usize,
    /// Stopped reporting: data is old.
    pub stale: usize,
    /// Never reported (no Lease, or a GPU Node with no GpuNodeStatus).
    pub missing: usize,
    /// Not evaluated by the operator yet.
    pub unknown: usize,
}

impl From<&ProbeTally> for ProbeCounts {
    fn from(t: &ProbeTally) -> ProbeCounts {
        ProbeCounts {
            reporting: t.get(ProbeState::Reporting),
            stale: t.get(ProbeState::Stale),
            missing: t.get(ProbeState::Missing),
            unknown: t.get(ProbeState::Unknown),
        }
    }
}

impl ProbeCounts {
    /// Count one probe.
    pub fn add(&mut self, s: ProbeState) {
        match s {
            ProbeState::Reporting => self.reporting += 1,
            ProbeState::Stale => self.stale += 1,
            ProbeState::Missing => self.missing += 1,
            ProbeState::Unknown => self.unknown += 1,
        }
    }
}

/// What to do about one reason, said once for every node that has it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, JsonSchema)]
pub struct ReasonAction {
    /// The reason, e.g. XidFallenOffBus.
    pub reason: String,
    /// The worst verdict it comes with.
    pub health: Health,
    /// Nodes with it, all of them.
    pub nodes: usize,
    /// GPUs with it, all of them (node-level reasons such as a stale probe name no GPU).
    pub gpus: usize,
    /// What to do, `<node>` standing for each node's name (node_name gives the operator's own message per GPU).
    pub action: String,
}

/// Reasons given an action in a fleet-wide answer, most urgent first; the health vocabulary has about twenty, a
/// fleet rarely shows more than a few at once.
pub const MAX_REASON_ACTIONS: usize = 5;

/// The action for every reason of a tally of problems: Unhealthy first, then most nodes.
pub fn reason_actions(tally: &ReasonTally) -> Vec<ReasonAction> {
    let mut out: Vec<ReasonAction> = tally
        .iter()
        .map(|(reason, health, nodes, gpus)| ReasonAction {
            reason: reason.to_string(),
            health,
            nodes,
            gpus,
            action: actions::for_reason(reason, "<node>"),
        })
        .collect();
    out.sort_by(|a, b| rank(a.health).cmp(&rank(b.health)).then_with(|| b.nodes.cmp(&a.nodes)));
    out.truncate(MAX_REASON_ACTIONS);
    out
}

impl Answer for HealthReport {
    fn verdict(&self) -> &str {
        &self.verdict
    }
    fn action(&self) -> &str {
        &self.action
    }
    fn highlights(&self) -> Vec<String> {
        let problems = self.problems.iter().take(5).map(|p| {
            let gpu = p.gpu.as_ref().map(|g| format!(" {}", g.label())).unwrap_or_default();
            format!("{}{gpu}: {} ({})", p.node, p.health, p.reasons.join(", "))
        });
        self.warnings.iter().cloned().chain(problems).collect()
    }
}

/// What an answer counts and lists over its scope.
struct Counted {
    nodes: HealthCounts,
    gpus: HealthCounts,
    probes: ProbeCounts,
    problems: Vec<Problem>,
    truncated: Option<Truncated>,
    actions_by_reason: Vec<ReasonAction>,
}

/// Count and list the problems of a few nodes (a node, or the nodes of the GPUs asked for), worst first.
fn counted(
    scope: &[NodeRef],
    selected: Option<&[(String, GpuRef)]>,
    limit: usize,
    hint: impl FnOnce() -> String,
) -> Counted {
    let (mut nodes, mut gpus, mut probes) = (HealthCounts::default(), HealthCounts::default(), ProbeCounts::default());
    let mut problems = Vec::new();
    for n in scope {
        let o = n.facts();
        let probe = freshness::state(o);
        probes.add(probe);
        nodes.add(node_health(o));
        let only: Option<Vec<GpuRef>> =
            selected.map(|c| c.iter().filter(|(name, _)| *name == n.name).map(|(_, g)| g.clone()).collect());
        for (g, h) in o.map(gpu_healths).unwrap_or_default() {
            if only.as_ref().is_none_or(|w| w.iter().any(|x| x.uuid.is_some() && x.uuid == g.uuid)) {
                gpus.add(h);
            }
        }
        problems.extend(node_problems(o, &n.name, probe, only.as_deref()));
    }
    problems.sort_by(|a, b| {
        rank(a.health)
            .cmp(&rank(b.health))
            .then_with(|| a.node.cmp(&b.node))
            .then_with(|| a.gpu.as_ref().and_then(|g| g.index).cmp(&b.gpu.as_ref().and_then(|g| g.index)))
    });
    let (problems, truncated) = take(problems, limit, hint);
    Counted { nodes, gpus, probes, problems, truncated, actions_by_reason: Vec::new() }
}

/// Answer `get_gpu_health`.
pub fn answer(snap: &Snapshot, args: &HealthArgs) -> Result<HealthReport, ToolError> {
    let focused = args.node_name.is_some() || args.gpu.is_some();
    let limit = args::limit(args.limit, if focused { DEFAULT_LIMIT } else { FLEET_DEFAULT_LIMIT }, MAX_LIMIT)?;
    let node = args.node_name.as_deref().map(|n| snap.require_node(n)).transpose()?;
    let selected = args
        .gpu
        .as_ref()
        .map(GpuSelector::parse)
        .transpose()?
        .map(|sel| select_gpus(snap, node.as_ref(), &sel).map(|chosen| (shared_uuid_warnings(&sel, &chosen), chosen)))
        .transpose()?;
    let (warnings, selected) = selected.map_or((Vec::new(), None), |(w, chosen)| (w, Some(chosen)));
    let hint =
        || "pass node_name (or gpu) to focus, or a larger limit (max 200); the counts cover everything".to_string();
    let scope: Vec<NodeRef> = match (&node, &selected) {
        (Some(n), _) => vec![n.clone()],
        (None, Some(chosen)) => {
            let mut names: Vec<&String> = chosen.iter().map(|(n, _)| n).collect();
            names.dedup();
            names.into_iter().filter_map(|n| snap.require_node(n).ok()).collect()
        }
        (None, None) => Vec::new(),
    };
    let Counted { nodes, gpus, probes, mut problems, truncated, actions_by_reason } = if focused {
        counted(&scope, selected.as_deref(), limit, hint)
    } else {
        // The fleet: the counts, the first `limit` problems and the reasons, read off the indexes.
        let ix = snap.indexes();
        let f = ix.fleet();
        Counted {
            nodes: HealthCounts::from(f.nodes()),
            gpus: HealthCounts::from(f.gpus()),
            probes: ProbeCounts::from(f.probes()),
            problems: f.problems().take(limit).cloned().collect(),
            truncated: cut(f.problem_count(), limit, hint),
            actions_by_reason: reason_actions(f.reasons()),
        }
    };

    let (conditions, probe) = match &node {
        Some(n) => (
            n.unpack()?
                .and_then(|o| o.status)
                .and_then(|s| s.conditions)
                .map(|cs| cs.iter().map(ConditionView::from).collect())
                .unwrap_or_default(),
            Some(freshness::of(n.facts(), snap.now())),
        ),
        None => (Vec::new(), None),
    };

    let scope_label = match &node {
        Some(n) => format!("Node {}", n.name),
        None => format!("{} in cluster {}", plural(nodes.total, "GPU node"), snap.cluster()),
    };
    let verdict = if problems.is_empty() {
        format!("{scope_label}: all {} healthy, every probe reporting.", plural(gpus.total, "GPU"))
    } else {
        let mut parts = Vec::new();
        for (n, word) in [(gpus.unhealthy, "Unhealthy"), (gpus.degraded, "Degraded"), (gpus.unknown, "Unknown")] {
            if n > 0 {
                parts.push(format!("{n} {word}"));
            }
        }
        let mut v = format!(
            "{scope_label}: {} of {} GPUs not healthy ({})",
            gpus.total - gpus.healthy,
            gpus.total,
            if parts.is_empty() { "node-level problems only".to_string() } else { parts.join(", ") }
        );
        if probes.stale + probes.missing > 0 {
            v.push_str(&format!("; {} not reporting", plural(probes.stale + probes.missing, "probe")));
        }
        v.push('.');
        v
    };
    let action = match problems.first() {
        Some(p) => {
            let gpu = p.gpu.as_ref().map(|g| format!(" {}", g.label())).unwrap_or_default();
            format!("{}{gpu} ({}): {}", p.node, p.health, p.action.as_deref().unwrap_or_default())
        }
        None => "None needed.".to_string(),
    };
    if !focused {
        // The first problem's action leads the answer; the rest is per reason in `actions_by_reason`.
        problems.iter_mut().for_each(|p| p.action = None);
    }
    Ok(HealthReport {
        verdict,
        action,
        cluster: snap.cluster().to_string(),
        nodes,
        gpus,
        probes,
        problems,
        actions_by_reason,
        conditions,
        probe,
        truncated,
        warnings,
    })
}

#[cfg(test)]
mod tests {
    use gpuscope_crds::health::reason;

    use super::*;
    use crate::gpu_resources::fixtures::node;
    use crate::snapshot::fixtures::snapshot;
    use crate::status_fixtures::{healthy, stale, with_verdict};

    fn fleet() -> Snapshot {
        let bad = with_verdict(healthy("n-bad", 8), 3, Health::Unhealthy, &[reason::XID_FALLEN_OFF_BUS], "");
        let meh =
            with_verdict(healthy("n-meh", 8), 5, Health::Degraded, &[reason::ROW_REMAP_PENDING], "Reset GPU 5 soon.");
        let old = stale(healthy("n-old", 8), "2026-11-25T09:00:00Z");
        let mut statuses = vec![healthy("n-ok", 8), bad, meh, old];
        statuses.extend((0..50).map(|i| healthy(&format!("fine-{i}"), 8)));
        snapshot(statuses, vec![node("n-noprobe", 8)], vec![])
    }

    #[test]
    fn fleet_health_ranks_unhealthy_then_degraded_then_unknown() {
        let r = answer(&fleet(), &HealthArgs::default()).expect("answer");
        assert_eq!(r.nodes, HealthCounts { total: 55, healthy: 51, degraded: 1, unhealthy: 1, unknown: 2 });
        assert_eq!(r.gpus, HealthCounts { total: 432, healthy: 422, degraded: 1, unhealthy: 1, unknown: 8 });
        assert_eq!(r.probes, ProbeCounts { reporting: 53, stale: 1, missing: 1, unknown: 0 });
        let order: Vec<(&str, Health)> = r.problems.iter().map(|p| (p.node.as_str(), p.health)).collect();
        assert_eq!(order[0], ("n-bad", Health::Unhealthy));
        assert_eq!(order[1], ("n-meh", Health::Degraded));
        assert_eq!(
            &order[2..],
            [("n-noprobe", Health::Unknown), ("n-old", Health::Unknown)],
            "one entry per silent node"
        );
        assert_eq!(r.problems[0].gpu.as_ref().and_then(|g| g.index), Some(3));
        assert!(r.problems.iter().any(|p| p.node == "n-noprobe" && p.reasons == ["NoProbeLease"]));
        assert!(r.verdict.contains("2 probes not reporting"), "{}", r.verdict);
        assert!(r.action.starts_with("n-bad GPU 3 (Unhealthy): Drain n-bad"), "{}", r.action);
    }

    #[test]
    fn fleet_wide_problems_name_their_reasons_and_each_reason_gets_its_action_once() {
        let r = answer(&fleet(), &HealthArgs::default()).expect("answer");
        assert!(r.problems.iter().all(|p| p.action.is_none()), "no catalog text repeated per row");
        let reasons: Vec<(&str, Health, usize, usize)> =
            r.actions_by_reason.iter().map(|a| (a.reason.as_str(), a.health, a.nodes, a.gpus)).collect();
        assert_eq!(
            reasons,
            [
                ("XidFallenOffBus", Health::Unhealthy, 1, 1),
                ("RowRemapPending", Health::Degraded, 1, 1),
                ("HeartbeatTimeout", Health::Unknown, 1, 0),
                ("NoProbeLease", Health::Unknown, 1, 0),
            ]
        );
        assert!(r.actions_by_reason[0].action.starts_with("Drain <node> and reboot it"), "{:?}", r.actions_by_reason);
        // One node: every problem with its own action, the operator's message first.
        let one = HealthArgs { node_name: Some("n-meh".into()), ..Default::default() };
        let r = answer(&fleet(), &one).expect("answer");
        assert_eq!(r.problems[0].action.as_deref(), Some("Reset GPU 5 soon."), "the operator's message wins");
        assert!(r.actions_by_reason.is_empty());
        let one = HealthArgs { node_name: Some("n-bad".into()), ..Default::default() };
        let r = answer(&fleet(), &one).expect("answer");
        assert!(r.problems[0].action.as_deref().is_some_and(|a| a.contains("reboot")), "{:?}", r.problems[0]);
    }

    #[test]
    fn limit_cuts_problems_but_not_counts() {
        let r = answer(&fleet(), &HealthArgs { limit: Some(1), ..Default::default() }).expect("answer");
        assert_eq!(r.problems.len(), 1);
        assert_eq!(r.truncated.as_ref().map(|t| t.total), Some(4));
        assert_eq!(r.gpus.total, 432);
    }

    #[test]
    fn one_healthy_node_says_so_with_its_conditions() {
        let r = answer(&fleet(), &HealthArgs { node_name: Some("n-ok".into()), ..Default::default() }).expect("answer");
        assert_eq!(r.verdict, "Node n-ok: all 8 GPUs healthy, every probe reporting.");
        assert_eq!(r.action, "None needed.");
        assert_eq!(r.conditions.iter().map(|c| c.type_.as_str()).collect::<Vec<_>>(), ["GPUHealthy", "ProbeReporting"]);
        assert_eq!(r.probe.as_ref().map(|p| p.state), Some(ProbeState::Reporting));
    }

    #[test]
    fn one_gpu_by_index_reports_only_that_gpu() {
        let args = HealthArgs { node_name: Some("n-bad".into()), gpu: Some(GpuArg::Index(3)), ..Default::default() };
        let r = answer(&fleet(), &args).expect("answer");
        assert_eq!(r.gpus.total, 1);
        assert_eq!(r.problems.len(), 1);
        let args = HealthArgs { node_name: Some("n-bad".into()), gpu: Some(GpuArg::Index(0)), ..Default::default() };
        assert!(answer(&fleet(), &args).expect("answer").problems.is_empty());
    }
}
