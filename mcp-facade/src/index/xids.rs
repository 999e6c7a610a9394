//! XID histories by node and by code, each resolved against its node's GPUs once per watch event, so that a
//! fleet-wide XID answer reads only the nodes that have XIDs (or, for one code, only the nodes that logged it).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::gpu_ref::{GpuRef, gpu_at};
use crate::status_facts::StatusFacts;

/// One node's XID history, its GPUs named.
#[derive(Clone, Debug, PartialEq)]
pub struct NodeXids {
    /// (GPU, code) totals, in the probe's order.
    pub totals: Vec<XidTotalRow>,
    /// The newest raw events, in the probe's order.
    pub recent: Vec<XidEventRow>,
}

/// One (GPU, code) total.
#[derive(Clone, Debug, PartialEq)]
pub struct XidTotalRow {
    /// The GPU, resolved against the node's inventory.
    pub gpu: GpuRef,
    /// PCI bus id as the probe wrote it.
    pub pci_bus_id: String,
    /// XID code.
    pub code: u32,
    /// Occurrences.
    pub count: u64,
    /// First occurrence.
    pub first_seen: Timestamp,
    /// Newest occurrence.
    pub last_seen: Timestamp,
}

/// One raw XID event.
#[derive(Clone, Debug, PartialEq)]
pub struct XidEventRow {
    /// The GPU, resolved against the node's inventory.
    pub gpu: GpuRef,
    /// PCI bus id as the probe wrote it.
    pub pci_bus_id: String,
    /// XID code.
    pub code: u32,
    /// When.
    pub time: Time,
    /// Driver text.
    pub message: Option<String>,
    /// The process that hit it, when logged ("python (pid 4242)").
    pub process: Option<String>,
}

impl NodeXids {
    /// The XID history of a node's facts; none when it has none.
    pub fn of(facts: &StatusFacts) -> Option<NodeXids> {
        let xids = facts.xids.as_ref()?;
        if xids.totals.is_empty() && xids.recent.is_empty() {
            return None;
        }
        let totals = xids
            .totals
            .iter()
            .map(|t| XidTotalRow {
                gpu: gpu_at(facts, &t.pci_bus_id, t.gpu_uuid.as_deref()),
                pci_bus_id: t.pci_bus_id.clone(),
                code: t.code,
                count: t.count,
                first_seen: t.first_seen.0,
                last_seen: t.last_seen.0,
            })
            .collect();
        let recent = xids
            .recent
            .iter()
            .map(|e| XidEventRow {
                gpu: gpu_at(facts, &e.pci_bus_id, e.gpu_uuid.as_deref()),
                pci_bus_id: e.pci_bus_id.clone(),
                code: e.code,
                time: e.time.clone(),
                message: e.message.clone(),
                process: match (&e.process_name, e.pid) {
                    (Some(p), Some(pid)) => Some(format!("{p} (pid {pid})")),
                    (Some(p), None) => Some(p.clone()),
                    (None, Some(pid)) => Some(format!("pid {pid}")),
                    (None, None) => None,
                },
            })
            .collect();
        Some(NodeXids { totals, recent })
    }

    /// Every code it names, totals and events.
    fn codes(&self) -> BTreeSet<u32> {
        self.totals.iter().map(|t| t.code).chain(self.recent.iter().map(|e| e.code)).collect()
    }
}

/// The nodes with XIDs, by name, and the nodes per code.
#[derive(Clone, Debug, Default)]
pub struct XidIndex {
    by_node: BTreeMap<String, Arc<NodeXids>>,
    by_code: BTreeMap<u32, BTreeSet<String>>,
}

impl XidIndex {
    /// Set (or, with none, remove) the XID history of `node`.
    pub fn set(&mut self, node: &str, xids: Option<NodeXids>) {
        if let Some(old) = self.by_node.remove(node) {
            for code in old.codes() {
                if let Some(nodes) = self.by_code.get_mut(&code) {
                    nodes.remove(node);
                    if nodes.is_empty() {
                        self.by_code.remove(&code);
                    }
                }
            }
        }
        if let Some(xids) = xids {
            for code in xids.codes() {
                self.by_code.entry(code).or_default().insert(node.to_string());
            }
            self.by_node.insert(node.to_string(), Arc::new(xids));
        }
    }

    /// Nodes with XIDs, by name.
    pub fn nodes(&self) -> impl Iterator<Item = (&str, &Arc<NodeXids>)> {
        self.by_node.iter().map(|(n, x)| (n.as_str(), x))
    }

    /// Nodes that logged `code`, by name.
    pub fn nodes_with(&self, code: u32) -> impl Iterator<Item = (&str, &Arc<NodeXids>)> {
        self.by_code
            .get(&code)
            .into_iter()
            .flatten()
            .filter_map(|n| self.by_node.get_key_value(n.as_str()))
            .map(|(n, x)| (n.as_str(), x))
    }

    /// How many nodes have XIDs.
    pub fn len(&self) -> usize {
        self.by_node.len()
    }

    /// Whether no node has XIDs.
    pub fn is_empty(&self) -> bool {
        self.by_node.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status_fixtures::{healthy, with_xid};

    fn xids(name: &str, code: u32) -> Option<NodeXids> {
        let o = with_xid(healthy(name, 4), 2, code, 3, "2026-11-25T10:00:00Z", "2026-11-25T11:00:00Z");
        NodeXids::of(&StatusFacts::of(&o))
    }

    #[test]
    fn a_nodes_xids_name_their_gpu_from_the_inventory() {
        let x = xids("n1", 79).expect("xids");
        assert_eq!(x.totals.len(), 1);
        assert_eq!((x.totals[0].gpu.index, x.totals[0].code, x.totals[0].count), (Some(2), 79, 3));
        assert!(NodeXids::of(&StatusFacts::of(&healthy("n2", 4))).is_none(), "no history, no entry");
    }

    #[test]
    fn nodes_are_found_by_code_until_their_history_changes_or_goes() {
        let mut index = XidIndex::default();
        index.set("b", xids("b", 79));
        index.set("a", xids("a", 13));
        index.set("c", xids("c", 79));
        let names = |it: Vec<(&str, &Arc<NodeXids>)>| it.into_iter().map(|(n, _)| n.to_string()).collect::<Vec<_>>();
        assert_eq!(names(index.nodes().collect()), ["a", "b", "c"]);
        assert_eq!(names(index.nodes_with(79).collect()), ["b", "c"]);
        index.set("b", xids("b", 13));
        index.set("c", None);
        assert_eq!(names(index.nodes_with(79).collect()), Vec::<String>::new());
        assert_eq!(names(index.nodes_with(13).collect()), ["a", "b"]);
        assert_eq!(index.len(), 2);
        index.set("a", None);
        index.set("b", None);
        assert!(index.is_empty() && index.by_code.is_empty(), "nothing left behind");
    }
}
