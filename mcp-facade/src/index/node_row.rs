//! What the fleet indexes keep of one GPU node, computed once per watch event from its GpuNodeStatus facts and its
//! Node: the node's part of every fleet-wide count and list. Pure: no store, no client.

use gpuscope_crds::Health;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::cached::CachedNode;
use crate::freshness::{self, ProbeState};
use crate::gpu_resources::whole_gpus;
use crate::index::tally::HealthTally;
use crate::problems::{Problem, node_problems};
use crate::status_facts::StatusFacts;

/// A GPU node's part of the fleet-wide answers, from its GpuNodeStatus (or from the lack of one).
#[derive(Clone, Debug, PartialEq)]
pub struct NodeRow {
    /// Whether the node has a GpuNodeStatus.
    pub has_status: bool,
    /// The operator's node verdict; Unknown without one.
    pub health: Health,
    /// Its GPUs by verdict (a GPU not judged yet counts as Unknown).
    pub gpus: HealthTally,
    /// Its probe's freshness.
    pub probe: ProbeState,
    /// When the ProbeReporting condition last changed, if published.
    pub probe_since: Option<Time>,
    /// XIDs within the policy window.
    pub recent_xids: u64,
    /// The newest XID code.
    pub last_code: Option<u32>,
    /// GPUs per product.
    pub models: Vec<(String, u64)>,
    /// Driver and CUDA version, when known.
    pub driver: Option<(String, Option<String>)>,
    /// GPUs in the probe's inventory.
    pub inventory_gpus: u64,
    /// Their memory, MiB.
    pub memory_mib: u64,
    /// Those with MIG enabled.
    pub mig_gpus: usize,
    /// What is not healthy, with actions, as `get_gpu_health` lists it for this node.
    pub problems: Vec<Problem>,
}

impl NodeRow {
    /// The row of the node `name` with these GpuNodeStatus facts (none: a GPU Node no probe reported for).
    pub fn of(name: &str, facts: Option<&StatusFacts>) -> NodeRow {
        let probe = freshness::state(facts);
        let mut gpus = HealthTally::default();
        for g in facts.map(|f| &*f.gpus).unwrap_or(&[]) {
            gpus.change(g.health.unwrap_or(Health::Unknown), true);
        }
        NodeRow {
            has_status: facts.is_some(),
            health: facts.map(StatusFacts::health).unwrap_or(Health::Unknown),
            gpus,
            probe,
            probe_since: facts.and_then(|f| f.probe_reporting.as_ref()).map(|c| c.since.clone()),
            recent_xids: facts.and_then(|f| f.recent_xid_count).unwrap_or(0),
            last_code: facts.and_then(|f| f.xids.as_ref()).and_then(|x| x.last_code),
            models: facts
                .map(|f| f.gpus_by_model())
                .unwrap_or_default()
                .into_iter()
                .map(|(m, n)| (m.into(), n))
                .collect(),
            driver: facts.and_then(|f| Some((f.driver_version.clone()?, f.cuda_driver_version.clone()))),
            inventory_gpus: facts.map_or(0, |f| f.inventory().count() as u64),
            memory_mib: facts.map_or(0, |f| f.inventory().filter_map(|g| g.memory_total_mib).sum()),
            mig_gpus: facts.map_or(0, |f| f.inventory().filter(|g| g.mig_enabled).count()),
            problems: node_problems(facts, name, probe, None),
        }
    }

    /// Unhealthy or Degraded: listed among the offenders.
    pub fn offends(&self) -> bool {
        matches!(self.health, Health::Unhealthy | Health::Degraded)
    }

    /// Its probe stopped reporting or never did.
    pub fn silent(&self) -> bool {
        matches!(self.probe, ProbeState::Stale | ProbeState::Missing)
    }

    /// Its problems' reasons, each once, most severe GPU first.
    pub fn reasons(&self) -> Vec<String> {
        let mut reasons: Vec<String> = Vec::new();
        for r in self.problems.iter().flat_map(|p| p.reasons.iter()) {
            if !reasons.contains(r) {
                reasons.push(r.clone());
            }
        }
        reasons
    }

    /// What to do first about the node `name`.
    pub fn first_action(&self, name: &str) -> String {
        self.problems
            .first()
            .and_then(|p| p.action.clone())
            .unwrap_or_else(|| format!("Inspect {name} with describe_gpu_node."))
    }
}

/// What the fleet indexes keep of a Node.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NodeBits {
    /// It advertises GPU resources (a GPU node even without a GpuNodeStatus).
    pub has_gpus: bool,
    /// Whole GPUs it offers to pods.
    pub allocatable: u64,
}

impl From<&CachedNode> for NodeBits {
    fn from(n: &CachedNode) -> NodeBits {
        NodeBits { has_gpus: n.has_gpus(), allocatable: whole_gpus(n.gpu_allocatable.iter()) }
    }
}

#[cfg(test)]
mod tests {
    use gpuscope_crds::health::reason;

    use super::*;
    use crate::status_fixtures::{healthy, stale, with_verdict, with_xid};

    #[test]
    fn a_row_counts_gpus_models_xids_and_keeps_the_problems_with_their_actions() {
        let o = with_verdict(healthy("n1", 8), 2, Health::Unhealthy, &[reason::XID_FALLEN_OFF_BUS], "");
        let o = with_xid(o, 2, 79, 1, "2026-11-25T11:00:00Z", "2026-11-25T11:00:00Z");
        let row = NodeRow::of("n1", Some(&StatusFacts::of(&o)));
        assert!(row.has_status && row.offends() && !row.silent());
        assert_eq!((row.gpus.get(Health::Unhealthy), row.gpus.get(Health::Healthy)), (1, 7));
        assert_eq!((row.recent_xids, row.last_code), (1, Some(79)));
        assert_eq!(row.models, [("NVIDIA H100 80GB HBM3".to_string(), 8)]);
        assert_eq!(row.reasons(), ["XidFallenOffBus"]);
        assert!(row.first_action("n1").starts_with("Drain n1"), "{}", row.first_action("n1"));
    }

    #[test]
    fn a_gpu_node_without_a_status_is_a_missing_probe_and_a_stale_one_says_since_when() {
        let row = NodeRow::of("bare", None);
        assert!(!row.has_status && row.silent() && !row.offends());
        assert_eq!((row.health, row.probe), (Health::Unknown, ProbeState::Missing));
        assert_eq!(row.reasons(), [reason::PROBE_MISSING]);
        let row = NodeRow::of("old", Some(&StatusFacts::of(&stale(healthy("old", 2), "2026-11-25T10:00:00Z"))));
        assert_eq!(row.probe, ProbeState::Stale);
        assert_eq!(row.probe_since.as_ref().map(|t| t.0.to_string()).as_deref(), Some("2026-11-25T10:00:00Z"));
        assert_eq!(row.first_action("old"), row.problems[0].action.clone().unwrap_or_default());
    }
}
