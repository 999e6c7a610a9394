//! The fleet as fleet-wide answers read it: every GPU node's [`NodeRow`] joined with its Node, and what the rows
//! add up to, kept current one node at a time. Counts by health, probe freshness, model and driver; XID totals;
//! allocatable GPUs; offenders, silent probes and problems in the order answers list them; reasons counted over
//! the problem nodes and over all nodes. An answer reads the counts and the first `limit` entries of a list: its
//! work does not grow with the fleet.

use std::cmp::Reverse;
use std::collections::{BTreeSet, HashMap};

use gpuscope_crds::Health;

use crate::index::node_row::{NodeBits, NodeRow};
use crate::index::reasons::ReasonTally;
use crate::index::tally::{HealthTally, ProbeTally, Tally};
use crate::problems::{Problem, rank};
use crate::time::rfc3339;

/// One node as the index knows it: its row (from its GpuNodeStatus, or from the lack of one) and its Node.
#[derive(Clone, Debug)]
struct Entry {
    row: NodeRow,
    node: Option<NodeBits>,
}

impl Entry {
    /// A GPU node: it has a GpuNodeStatus, or its Node advertises GPUs.
    fn is_gpu_node(&self) -> bool {
        self.row.has_status || self.node.is_some_and(|n| n.has_gpus)
    }
}

/// Offenders in answer order: Unhealthy before Degraded, then most unhealthy GPUs, degraded GPUs and recent XIDs,
/// then by name.
type OffenderKey = (bool, Reverse<usize>, Reverse<usize>, Reverse<u64>, String);
/// Silent probes in answer order: since when (RFC 3339 text; unknown first), then by name.
type StaleKey = (Option<String>, String);
/// Problems in answer order: worst verdict, node, GPU index, then the node's own order.
type ProblemKey = (u8, String, Option<u32>, usize);

/// Every GPU node's row and what they add up to.
#[derive(Clone, Debug, Default)]
pub struct Fleet {
    entries: HashMap<String, Entry>,
    /// The GPU nodes, by name.
    names: BTreeSet<String>,
    nodes: HealthTally,
    gpus: HealthTally,
    probes: ProbeTally,
    model_gpus: Tally<String>,
    model_nodes: Tally<String>,
    drivers: Tally<(String, Option<String>)>,
    nodes_with_recent_xids: usize,
    recent_xids: u64,
    latest_codes: Tally<u32>,
    gpus_allocatable: u64,
    inventory: InventoryTotals,
    offenders: BTreeSet<OffenderKey>,
    stale: BTreeSet<StaleKey>,
    problems: BTreeSet<ProblemKey>,
    reasons: ReasonTally,
    offender_reasons: ReasonTally,
}

impl Fleet {
    /// Set (or, with none, remove) the GpuNodeStatus row of `name`.
    pub fn set_status(&mut self, name: &str, row: Option<NodeRow>) {
        self.update(name, |e| e.row = row.unwrap_or_else(|| NodeRow::of(name, None)));
    }

    /// Set (or, with none, remove) the Node of `name`.
    pub fn set_node(&mut self, name: &str, node: Option<NodeBits>) {
        self.update(name, |e| e.node = node);
    }

    /// A fleet of exactly these statuses and Nodes (what a relist of either kind leads to).
    pub fn rebuilt(statuses: HashMap<String, NodeRow>, nodes: HashMap<String, NodeBits>) -> Fleet {
        let mut fleet = Fleet::default();
        for (name, row) in statuses {
            fleet.entries.insert(name, Entry { row, node: None });
        }
        for (name, bits) in nodes {
            match fleet.entries.get_mut(&name) {
                Some(e) => e.node = Some(bits),
                None => {
                    let row = NodeRow::of(&name, None);
                    fleet.entries.insert(name, Entry { row, node: Some(bits) });
                }
            }
        }
        let names: Vec<String> = fleet.entries.keys().cloned().collect();
        for name in names {
            fleet.account(&name, true);
        }
        fleet
    }

    /// The status rows and Nodes the fleet was built from, to rebuild it with one kind replaced.
    pub fn parts(&self) -> (HashMap<String, NodeRow>, HashMap<String, NodeBits>) {
        let statuses = self.entries.iter().filter(|(_, e)| e.row.has_status).map(|(n, e)| (n.clone(), e.row.clone()));
        let nodes = self.entries.iter().filter_map(|(n, e)| Some((n.clone(), e.node?)));
        (statuses.collect(), nodes.collect())
    }

    fn update(&mut self, name: &str, change: impl FnOnce(&mut Entry)) {
        self.account(name, false);
        let entry =
            self.entries.entry(name.to_string()).or_insert_with(|| Entry { row: NodeRow::of(name, None), node: None });
        change(entry);
        if !entry.row.has_status && entry.node.is_none() {
            self.entries.remove(name);
        } else {
            self.account(name, true);
        }
    }

    /// Count the node `name` in (`add`) or out of every total and list.
    fn account(&mut self, name: &str, add: bool) {
        let Some(e) = self.entries.get(name) else { return };
        if !e.is_gpu_node() {
            return;
        }
        let row = &e.row;
        toggle(&mut self.names, name.to_string(), add);
        self.inventory.change(row, add);
        self.nodes.change(row.health, add);
        self.gpus.merge(&row.gpus, add);
        self.probes.change(row.probe, add);
        for (model, n) in &row.models {
            self.model_gpus.change(model.clone(), *n, add);
            self.model_nodes.change(model.clone(), 1, add);
        }
        if let Some(driver) = &row.driver {
            self.drivers.change(driver.clone(), 1, add);
        }
        if row.recent_xids > 0 {
            self.nodes_with_recent_xids = step(self.nodes_with_recent_xids, 1, add);
            self.recent_xids =
                if add { self.recent_xids + row.recent_xids } else { self.recent_xids.saturating_sub(row.recent_xids) };
            if let Some(code) = row.last_code {
                self.latest_codes.change(code, 1, add);
            }
        }
        if let Some(node) = e.node {
            self.gpus_allocatable = if add {
                self.gpus_allocatable + node.allocatable
            } else {
                self.gpus_allocatable.saturating_sub(node.allocatable)
            };
        }
        let mut keys: Vec<ProblemKey> = Vec::with_capacity(row.problems.len());
        for (seq, p) in row.problems.iter().enumerate() {
            keys.push((rank(p.health), name.to_string(), p.gpu.as_ref().and_then(|g| g.index), seq));
        }
        let offender = row.offends().then(|| {
            (
                row.health != Health::Unhealthy,
                Reverse(row.gpus.get(Health::Unhealthy)),
                Reverse(row.gpus.get(Health::Degraded)),
                Reverse(row.recent_xids),
                name.to_string(),
            )
        });
        let stale = row.silent().then(|| (row.probe_since.as_ref().map(rfc3339), name.to_string()));
        self.reasons.change(&row.problems, add);
        if row.offends() || row.silent() {
            self.offender_reasons.change(&row.problems, add);
        }
        for key in keys {
            toggle(&mut self.problems, key, add);
        }
        if let Some(key) = offender {
            toggle(&mut self.offenders, key, add);
        }
        if let Some(key) = stale {
            toggle(&mut self.stale, key, add);
        }
    }

    /// GPU nodes by verdict.
    pub fn nodes(&self) -> &HealthTally {
        &self.nodes
    }

    /// GPUs by verdict.
    pub fn gpus(&self) -> &HealthTally {
        &self.gpus
    }

    /// Probes by freshness.
    pub fn probes(&self) -> &ProbeTally {
        &self.probes
    }

    /// (model, GPUs, nodes with one), by model.
    pub fn models(&self) -> impl Iterator<Item = (&str, u64, usize)> {
        self.model_gpus.iter().map(|(m, gpus)| (m.as_str(), gpus, self.model_nodes.get(m) as usize))
    }

    /// (driver, CUDA version, nodes), by driver.
    pub fn drivers(&self) -> impl Iterator<Item = (&str, Option<&str>, usize)> {
        self.drivers.iter().map(|((d, c), n)| (d.as_str(), c.as_deref(), n as usize))
    }

    /// Nodes with XIDs within the policy window, and those XIDs.
    pub fn recent_xids(&self) -> (usize, u64) {
        (self.nodes_with_recent_xids, self.recent_xids)
    }

    /// (code, nodes whose newest XID it is) over nodes with recent XIDs, by code.
    pub fn latest_codes(&self) -> impl Iterator<Item = (u32, usize)> {
        self.latest_codes.iter().map(|(c, n)| (*c, n as usize))
    }

    /// Whole GPUs the GPU nodes' Nodes offer to pods.
    pub fn gpus_allocatable(&self) -> u64 {
        self.gpus_allocatable
    }

    /// The GPU nodes' inventory totals.
    pub fn inventory(&self) -> &InventoryTotals {
        &self.inventory
    }

    /// The GPU nodes, by name.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.names.iter().map(String::as_str)
    }

    /// The row of the GPU node `name`.
    pub fn row(&self, name: &str) -> Option<&NodeRow> {
        self.entries.get(name).filter(|e| e.is_gpu_node()).map(|e| &e.row)
    }

    /// Unhealthy and Degraded nodes, worst first: (name, row).
    pub fn offenders(&self) -> impl Iterator<Item = (&str, &NodeRow)> {
        self.offenders.iter().filter_map(|k| self.named(&k.4))
    }

    /// How many nodes offend.
    pub fn offender_count(&self) -> usize {
        self.offenders.len()
    }

    /// Nodes whose probe is stale or missing, longest silent first: (name, row).
    pub fn silent(&self) -> impl Iterator<Item = (&str, &NodeRow)> {
        self.stale.iter().filter_map(|k| self.named(&k.1))
    }

    /// How many probes are silent.
    pub fn silent_count(&self) -> usize {
        self.stale.len()
    }

    /// Every problem of the fleet, worst first, then by node and GPU.
    pub fn problems(&self) -> impl Iterator<Item = &Problem> {
        self.problems.iter().filter_map(|(_, node, _, seq)| self.named(node)?.1.problems.get(*seq))
    }

    /// How many problems there are.
    pub fn problem_count(&self) -> usize {
        self.problems.len()
    }

    /// Reasons over every node's problems.
    pub fn reasons(&self) -> &ReasonTally {
        &self.reasons
    }

    /// Reasons over the problems of offending and silent nodes only.
    pub fn offender_reasons(&self) -> &ReasonTally {
        &self.offender_reasons
    }

    fn named(&self, name: &str) -> Option<(&str, &NodeRow)> {
        self.entries.get_key_value(name).map(|(n, e)| (n.as_str(), &e.row))
    }
}

/// What the probes' inventories add up to.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct InventoryTotals {
    /// GPU nodes whose probe reported no GPUs (no GpuNodeStatus, or an empty inventory).
    pub nodes_without_gpu_data: usize,
    /// GPUs in the inventories.
    pub gpus: u64,
    /// Their memory, MiB.
    pub memory_mib: u64,
    /// Those with MIG enabled.
    pub mig_gpus: usize,
}

impl InventoryTotals {
    fn change(&mut self, row: &NodeRow, add: bool) {
        if row.inventory_gpus == 0 {
            self.nodes_without_gpu_data = step(self.nodes_without_gpu_data, 1, add);
        }
        self.mig_gpus = step(self.mig_gpus, row.mig_gpus, add);
        if add {
            self.gpus += row.inventory_gpus;
            self.memory_mib += row.memory_mib;
        } else {
            self.gpus = self.gpus.saturating_sub(row.inventory_gpus);
            self.memory_mib = self.memory_mib.saturating_sub(row.memory_mib);
        }
    }
}

fn step(n: usize, by: usize, add: bool) -> usize {
    if add { n + by } else { n.saturating_sub(by) }
}

fn toggle<K: Ord>(set: &mut BTreeSet<K>, key: K, add: bool) {
    if add {
        set.insert(key);
    } else {
        set.remove(&key);
    }
}

#[cfg(test)]
mod tests {
    use gpuscope_crds::health::reason;

    use super::*;
    use crate::freshness::ProbeState;
    use crate::status_facts::StatusFacts;
    use crate::status_fixtures::{healthy, stale, with_verdict, with_xid};

    fn row(o: &gpuscope_crds::GpuNodeStatus) -> NodeRow {
        NodeRow::of(o.metadata.name.as_deref().unwrap_or_default(), Some(&StatusFacts::of(o)))
    }

    fn bits(gpus: u64) -> NodeBits {
        NodeBits { has_gpus: gpus > 0, allocatable: gpus }
    }

    /// Everything an answer reads, to compare two fleets.
    fn view(f: &Fleet) -> String {
        format!(
            "{:?} {:?} {:?} {:?} {:?} {:?} {:?} {:?} {:?} {} {:?} {:?} {:?} {:?} {:?}",
            f.names().collect::<Vec<_>>(),
            f.inventory(),
            f.nodes,
            f.gpus,
            f.probes,
            f.models().collect::<Vec<_>>(),
            f.drivers().collect::<Vec<_>>(),
            f.recent_xids(),
            f.latest_codes().collect::<Vec<_>>(),
            f.gpus_allocatable(),
            f.offenders().map(|(n, _)| n).collect::<Vec<_>>(),
            f.silent().map(|(n, _)| n).collect::<Vec<_>>(),
            f.problems().map(|p| (&p.node, p.health, &p.reasons)).collect::<Vec<_>>(),
            f.reasons().iter().collect::<Vec<_>>(),
            f.offender_reasons().iter().collect::<Vec<_>>(),
        )
    }

    #[test]
    fn counts_and_lists_follow_applies_and_deletes_of_both_kinds() {
        let mut f = Fleet::default();
        let bad = with_verdict(healthy("bad", 8), 3, Health::Unhealthy, &[reason::XID_FALLEN_OFF_BUS], "");
        let bad = with_xid(bad, 3, 79, 2, "2026-11-25T11:00:00Z", "2026-11-25T11:00:00Z");
        f.set_status("ok", Some(row(&healthy("ok", 8))));
        f.set_status("bad", Some(row(&bad)));
        f.set_node("bad", Some(bits(8)));
        f.set_node("bare", Some(bits(4)));
        f.set_node("cpu", Some(bits(0)));
        assert_eq!((f.nodes.total(), f.nodes.get(Health::Unhealthy), f.nodes.get(Health::Unknown)), (3, 1, 1));
        assert_eq!((f.gpus.total(), f.gpus.get(Health::Unhealthy)), (16, 1));
        assert_eq!((f.probes.get(ProbeState::Reporting), f.probes.get(ProbeState::Missing)), (2, 1));
        assert_eq!(f.gpus_allocatable(), 12, "bad and bare; the CPU node is no GPU node");
        assert_eq!(f.recent_xids(), (1, 2));
        assert_eq!(f.latest_codes().collect::<Vec<_>>(), [(79, 1)]);
        assert_eq!(f.offenders().map(|(n, _)| n).collect::<Vec<_>>(), ["bad"]);
        assert_eq!(f.silent().map(|(n, _)| n).collect::<Vec<_>>(), ["bare"]);
        let problems: Vec<(&str, Health)> = f.problems().map(|p| (p.node.as_str(), p.health)).collect();
        assert_eq!(problems, [("bad", Health::Unhealthy), ("bare", Health::Unknown)]);
        assert!(f.row("cpu").is_none());
        assert_eq!(f.names().collect::<Vec<_>>(), ["bad", "bare", "ok"]);
        assert_eq!((f.inventory().gpus, f.inventory().nodes_without_gpu_data), (16, 1));

        // The bad node recovers, the bare one gets a probe, the CPU Node goes away.
        f.set_status("bad", Some(row(&healthy("bad", 8))));
        f.set_status("bare", Some(row(&stale(healthy("bare", 4), "2026-11-25T10:00:00Z"))));
        f.set_node("cpu", None);
        assert_eq!(f.offender_count(), 0);
        assert_eq!(f.silent().map(|(n, r)| (n, r.probe)).collect::<Vec<_>>(), [("bare", ProbeState::Stale)]);
        assert_eq!(f.recent_xids(), (0, 0));
        assert_eq!(f.models().collect::<Vec<_>>(), [("NVIDIA H100 80GB HBM3", 20, 3)]);

        // Everything deleted: nothing left behind in any count or list.
        for name in ["ok", "bad", "bare"] {
            f.set_status(name, None);
            f.set_node(name, None);
        }
        assert_eq!(view(&f), view(&Fleet::default()));
        assert!(f.entries.is_empty());
    }

    #[test]
    fn any_order_of_events_adds_up_to_the_fleet_rebuilt_from_its_final_state() {
        let statuses = [
            with_verdict(healthy("a", 8), 1, Health::Degraded, &[reason::ROW_REMAP_PENDING], "Reset GPU 1 soon."),
            with_xid(healthy("b", 4), 0, 13, 5, "2026-11-25T10:00:00Z", "2026-11-25T11:00:00Z"),
            stale(healthy("c", 8), "2026-11-25T09:00:00Z"),
            with_verdict(healthy("d", 2), 0, Health::Unhealthy, &[reason::XID_FALLEN_OFF_BUS], ""),
        ];
        let mut f = Fleet::default();
        // Churn: each status applied, changed, some deleted and re-added; Nodes come and go in between.
        for (i, o) in statuses.iter().enumerate() {
            let name = o.metadata.name.clone().unwrap_or_default();
            f.set_node(&name, Some(bits(8)));
            f.set_status(&name, Some(row(&healthy(&name, 1))));
            if i % 2 == 0 {
                f.set_status(&name, None);
                f.set_node(&name, None);
            }
            f.set_status(&name, Some(row(o)));
            f.set_node(&name, Some(bits(u64::try_from(i).unwrap_or(0) + 1)));
        }
        f.set_node("e", Some(bits(2)));
        let (s, n) = f.parts();
        assert_eq!(view(&f), view(&Fleet::rebuilt(s, n)));
        let offenders: Vec<&str> = f.offenders().map(|(n, _)| n).collect();
        assert_eq!(offenders, ["d", "a"], "Unhealthy before Degraded");
        assert_eq!(f.silent().map(|(n, _)| n).collect::<Vec<_>>(), ["e", "c"], "never reported, then oldest silence");
    }
}
