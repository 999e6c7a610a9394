//! A read view over one cluster's stores at one instant: what every tool function takes. Lookups by name are
//! hash lookups; fleet-wide reads copy only `Arc`s.

use std::collections::BTreeSet;
use std::sync::Arc;

use gpuscope_crds::GpuNodeStatus;
use jiff::Timestamp;
use kube::runtime::reflector::{ObjectRef, Store};

use crate::cached::{CachedNode, CachedPod, CachedStatus};
use crate::error::{ToolError, check_name_len};
use crate::index::pods_by_node::PodsByNode;
use crate::index::{FleetIndex, Indexes};
use crate::matching::{MAX_SUGGESTIONS, close_matches};
use crate::status_facts::StatusFacts;

/// One cluster's cached objects, read at `now`.
#[derive(Clone)]
pub struct Snapshot {
    cluster: String,
    now: Timestamp,
    statuses: Store<CachedStatus>,
    nodes: Store<CachedNode>,
    pods: Store<CachedPod>,
    pods_by_node: Option<PodsByNode>,
    fleet: FleetIndex,
}

/// A GPU node as the cache knows it: its GpuNodeStatus, its Node, or both.
#[derive(Clone, Debug)]
pub struct NodeRef {
    /// The node's name.
    pub name: String,
    /// What the probe and operator wrote, if anything.
    pub status: Option<Arc<CachedStatus>>,
    /// The Kubernetes Node, if it exists.
    pub node: Option<Arc<CachedNode>>,
}

impl NodeRef {
    /// The fleet-wide facts of its GpuNodeStatus.
    pub fn facts(&self) -> Option<&StatusFacts> {
        self.status.as_deref().map(|s| &s.facts)
    }

    /// Its whole GpuNodeStatus (unpacked: for answers about this node, not for every node of a fleet).
    pub fn unpack(&self) -> Result<Option<GpuNodeStatus>, ToolError> {
        self.status
            .as_deref()
            .map(CachedStatus::unpack)
            .transpose()
            .map_err(|e| ToolError::Internal(format!("the cached GpuNodeStatus of {} is unreadable: {e}", self.name)))
    }
}

impl Snapshot {
    /// A view over these stores.
    pub fn new(
        cluster: &str,
        now: Timestamp,
        statuses: Store<CachedStatus>,
        nodes: Store<CachedNode>,
        pods: Store<CachedPod>,
    ) -> Snapshot {
        Snapshot {
            cluster: cluster.to_string(),
            now,
            statuses,
            nodes,
            pods,
            pods_by_node: None,
            fleet: FleetIndex::default(),
        }
    }

    /// The same view, finding a node's pods through `index` (kept from the pod store's events) instead of a scan.
    pub fn with_pods_by_node(self, index: Option<PodsByNode>) -> Snapshot {
        Snapshot { pods_by_node: index, ..self }
    }

    /// The same view, answering fleet-wide questions from `index` (kept from the stores' events).
    pub fn with_fleet_index(self, index: FleetIndex) -> Snapshot {
        Snapshot { fleet: index, ..self }
    }

    /// The fleet-wide indexes: hold the guard only while reading.
    pub fn indexes(&self) -> std::sync::RwLockReadGuard<'_, Indexes> {
        self.fleet.read()
    }

    /// The cluster's name.
    pub fn cluster(&self) -> &str {
        &self.cluster
    }

    /// The instant answers are computed for (ages, time windows).
    pub fn now(&self) -> Timestamp {
        self.now
    }

    /// The GpuNodeStatus named `name`.
    pub fn status(&self, name: &str) -> Option<Arc<CachedStatus>> {
        self.statuses.get(&ObjectRef::new(name))
    }

    /// Every GpuNodeStatus, by name.
    pub fn statuses(&self) -> Vec<Arc<CachedStatus>> {
        let mut all = self.statuses.state();
        all.sort_by(|a, b| a.name.cmp(&b.name));
        all
    }

    /// The Node named `name`.
    pub fn node(&self, name: &str) -> Option<Arc<CachedNode>> {
        self.nodes.get(&ObjectRef::new(name))
    }

    /// Every Node, by name.
    pub fn nodes(&self) -> Vec<Arc<CachedNode>> {
        let mut all = self.nodes.state();
        all.sort_by(|a, b| a.name.cmp(&b.name));
        all
    }

    /// Every pod that requests GPUs, by namespace and name.
    pub fn gpu_pods(&self) -> Vec<Arc<CachedPod>> {
        let mut all = self.pods.state();
        all.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
        all
    }

    /// GPU-requesting pods bound to `node`, by namespace and name.
    pub fn pods_on(&self, node: &str) -> Vec<Arc<CachedPod>> {
        let bound_here = |p: &CachedPod| p.node_name.as_deref() == Some(node);
        let mut on = match &self.pods_by_node {
            // The index follows the store's events a moment behind it: check each pod against the store.
            Some(index) => index
                .on(node)
                .into_iter()
                .filter_map(|(ns, name)| self.pods.get(&ObjectRef::new(&name).within(&ns)))
                .filter(|p| bound_here(p))
                .collect(),
            None => self.pods.state_filter(bound_here),
        };
        on.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
        on
    }

    /// Names of the GPU nodes: those with a GpuNodeStatus and Nodes that advertise GPU resources, sorted.
    pub fn gpu_node_names(&self) -> Vec<String> {
        let mut names: BTreeSet<String> = self.statuses.state().iter().map(|s| s.name.clone()).collect();
        names.extend(self.nodes.state_filter(|n| n.has_gpus()).iter().map(|n| n.name.clone()));
        names.into_iter().collect()
    }

    /// Every GPU node (a GpuNodeStatus, a Node advertising GPUs, or both), by name, in one pass over the stores.
    pub fn gpu_nodes(&self) -> Vec<NodeRef> {
        let mut by_name: std::collections::BTreeMap<String, NodeRef> = self
            .statuses
            .state()
            .into_iter()
            .map(|o| (o.name.clone(), NodeRef { name: o.name.clone(), status: Some(o), node: None }))
            .collect();
        for n in self.nodes.state() {
            let name = n.name.clone();
            match by_name.get_mut(&name) {
                Some(r) => r.node = Some(n),
                None if n.has_gpus() => {
                    by_name.insert(name.clone(), NodeRef { name, status: None, node: Some(n) });
                }
                None => {}
            }
        }
        by_name.into_values().collect()
    }

    /// The GPU node `name`, or an error naming close matches (or saying the Node has no GPUs).
    pub fn require_node(&self, name: &str) -> Result<NodeRef, ToolError> {
        check_name_len("node_name", name)?;
        let status = self.status(name);
        let node = self.node(name);
        let has_gpus = node.as_deref().is_some_and(CachedNode::has_gpus);
        if status.is_some() || has_gpus {
            return Ok(NodeRef { name: name.to_string(), status, node });
        }
        if node.is_some() {
            return Err(ToolError::invalid(
                "node_name",
                format!(
                    "node \"{name}\" exists but has no GPUs: it advertises no nvidia.com GPU resources and no probe \
                     has written a GpuNodeStatus for it"
                ),
            ));
        }
        let names = self.gpu_node_names();
        Err(ToolError::UnknownNode {
            cluster: self.cluster.clone(),
            name: name.to_string(),
            close: close_matches(name, names.iter().map(String::as_str), MAX_SUGGESTIONS),
            known: names.len(),
        })
    }
}

#[cfg(test)]
pub(crate) mod fixtures {
    //! Snapshots built from hand-made objects.

    use gpuscope_crds::GpuNodeStatus;
    use k8s_openapi::api::core::v1::{Node, Pod};

    use super::Snapshot;
    use crate::cache::ClusterCache;

    /// The instant every test snapshot is read at.
    pub const NOW: &str = "2026-11-25T12:00:00Z";

    /// A snapshot of cluster "test" at [`NOW`].
    pub fn snapshot(statuses: Vec<GpuNodeStatus>, nodes: Vec<Node>, pods: Vec<Pod>) -> Snapshot {
        let now = NOW.parse().unwrap_or_default();
        ClusterCache::from_objects("test", statuses, nodes, pods).snapshot(now)
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::snapshot;
    use crate::gpu_resources::fixtures::{node, pod};
    use crate::status_fixtures::gns;

    #[test]
    fn lookups_list_sorted_and_filter_pods_to_gpu_requests() {
        let s = snapshot(
            vec![gns("b-node"), gns("a-node")],
            vec![node("a-node", 8), node("c-node", 4)],
            vec![
                pod("ml", "train", Some("a-node"), "nvidia.com/gpu", 2, "Running"),
                pod("web", "nginx", Some("a-node"), "cpu", 1, "Running"),
            ],
        );
        let names: Vec<String> = s.statuses().iter().map(|o| o.name.clone()).collect();
        assert_eq!(names, ["a-node", "b-node"]);
        assert_eq!(s.gpu_node_names(), ["a-node", "b-node", "c-node"]);
        let refs: Vec<(String, bool, bool)> =
            s.gpu_nodes().into_iter().map(|r| (r.name, r.status.is_some(), r.node.is_some())).collect();
        assert_eq!(
            refs,
            [("a-node".into(), true, true), ("b-node".into(), true, false), ("c-node".into(), false, true)]
        );
        assert_eq!(s.gpu_pods().len(), 1, "the CPU pod never enters the cache");
        assert_eq!(s.pods_on("a-node").len(), 1);
        assert!(s.pods_on("b-node").is_empty());
    }

    #[test]
    fn require_node_accepts_status_or_gpu_node_and_suggests_otherwise() {
        let s = snapshot(vec![gns("gpu-node-1")], vec![node("gpu-node-2", 8), node("cpu-1", 0)], vec![]);
        assert!(s.require_node("gpu-node-1").expect("status").node.is_none());
        assert!(s.require_node("gpu-node-2").expect("node").status.is_none());
        let e = s.require_node("gpu-node-3").expect_err("unknown").to_string();
        assert!(e.contains("Did you mean: gpu-node-1, gpu-node-2?"), "{e}");
        let e = s.require_node("cpu-1").expect_err("cpu node").to_string();
        assert!(e.contains("exists but has no GPUs"), "{e}");
    }
}
