//! Pods by the node they are bound to.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, PoisonError, RwLock};

use kube::runtime::watcher;

use crate::cached::CachedPod;

/// Pods by the node they are bound to, kept beside the pod store from the same watch events, so that one node's
/// pods are a lookup rather than a scan of every GPU pod in the fleet (at 5,000 nodes that scan was two thirds of
/// a single-node answer's time). A relist is buffered and swapped in at its end, as the store does.
#[derive(Clone, Debug, Default)]
pub struct PodsByNode(Arc<RwLock<PodIndex>>);

#[derive(Debug, Default)]
struct PodIndex {
    live: NodeMap,
    relist: Option<NodeMap>,
}

/// (namespace, name) of pods per node, and the node of each pod (to move it when it is rebound).
#[derive(Debug, Default)]
struct NodeMap {
    by_node: HashMap<String, HashSet<(String, String)>>,
    node_of: HashMap<(String, String), String>,
}

fn pod_key(p: &CachedPod) -> (String, String) {
    (p.namespace.clone(), p.name.clone())
}

impl NodeMap {
    fn upsert(&mut self, p: &CachedPod) {
        let key = pod_key(p);
        self.remove(&key);
        if let Some(node) = p.node_name.clone() {
            self.by_node.entry(node.clone()).or_default().insert(key.clone());
            self.node_of.insert(key, node);
        }
    }

    fn remove(&mut self, key: &(String, String)) {
        let Some(node) = self.node_of.remove(key) else { return };
        if let Some(pods) = self.by_node.get_mut(&node) {
            pods.remove(key);
            if pods.is_empty() {
                self.by_node.remove(&node);
            }
        }
    }
}

impl PodsByNode {
    /// Follow one event of the pod watch (after filtering and stripping, like the store).
    pub fn apply(&self, event: &watcher::Event<CachedPod>) {
        // A writer that panicked mid-update leaves at worst one pod misplaced; serving on beats failing every call.
        let mut index = self.0.write().unwrap_or_else(PoisonError::into_inner);
        match event {
            watcher::Event::Apply(p) => index.live.upsert(p),
            watcher::Event::Delete(p) => index.live.remove(&pod_key(p)),
            watcher::Event::Init => index.relist = Some(NodeMap::default()),
            watcher::Event::InitApply(p) => index.relist.get_or_insert_with(NodeMap::default).upsert(p),
            watcher::Event::InitDone => {
                if let Some(relisted) = index.relist.take() {
                    index.live = relisted;
                }
            }
        }
    }

    /// (namespace, name) of the pods bound to `node`, in no particular order.
    pub fn on(&self, node: &str) -> Vec<(String, String)> {
        let index = self.0.read().unwrap_or_else(PoisonError::into_inner);
        index.live.by_node.get(node).map(|pods| pods.iter().cloned().collect()).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_node_index_follows_binds_rebinds_deletes_and_relists() {
        use crate::gpu_resources::fixtures::pod;
        let kept = |ns: &str, name: &str, node: Option<&str>, resource: &str, count: u64, phase: &str| {
            CachedPod::from(pod(ns, name, node, resource, count, phase))
        };
        let index = PodsByNode::default();
        let on = |node: &str| {
            let mut pods = index.on(node);
            pods.sort();
            pods
        };
        let key = |ns: &str, name: &str| (ns.to_string(), name.to_string());
        index.apply(&watcher::Event::Apply(kept("ml", "a", Some("n1"), "nvidia.com/gpu", 1, "Running")));
        index.apply(&watcher::Event::Apply(kept("ml", "b", Some("n1"), "nvidia.com/gpu", 1, "Running")));
        index.apply(&watcher::Event::Apply(kept("ml", "queued", None, "nvidia.com/gpu", 1, "Pending")));
        assert_eq!(on("n1"), [key("ml", "a"), key("ml", "b")]);
        // Rebound (a pod of the same name on another node) and deleted.
        index.apply(&watcher::Event::Apply(kept("ml", "b", Some("n2"), "nvidia.com/gpu", 1, "Running")));
        index.apply(&watcher::Event::Delete(kept("ml", "a", Some("n1"), "nvidia.com/gpu", 1, "Running")));
        assert_eq!((on("n1"), on("n2")), (vec![], vec![key("ml", "b")]));
        // A relist replaces everything at its end, not before.
        index.apply(&watcher::Event::Init);
        index.apply(&watcher::Event::InitApply(kept("ml", "c", Some("n3"), "nvidia.com/gpu", 1, "Running")));
        assert_eq!(on("n2"), [key("ml", "b")], "still serving the old list during the relist");
        index.apply(&watcher::Event::InitDone);
        assert_eq!((on("n2"), on("n3")), (vec![], vec![key("ml", "c")]));
    }
}
