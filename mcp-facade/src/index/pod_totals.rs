//! How the fleet's GPUs are held: active GPU pods, the whole GPUs those bound to a node hold, and those waiting
//! for one, kept current per pod event.

use std::collections::HashMap;

use crate::cached::CachedPod;
use crate::gpu_resources::whole_gpus;

/// One pod's part of the totals.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct PodPart {
    active: bool,
    bound: bool,
    gpus: u64,
}

impl PodPart {
    fn of(p: &CachedPod) -> PodPart {
        PodPart { active: p.is_active(), bound: p.node_name.is_some(), gpus: whole_gpus(p.gpus.iter()) }
    }
}

/// Allocation totals over every GPU pod.
#[derive(Clone, Debug, Default)]
pub struct PodTotals {
    parts: HashMap<(String, String), PodPart>,
    pods: usize,
    gpus_held: u64,
    pending_pods: usize,
}

impl PodTotals {
    /// Count the pod in, replacing what it counted before.
    pub fn apply(&mut self, p: &CachedPod) {
        let key = (p.namespace.clone(), p.name.clone());
        self.remove(&key);
        let part = PodPart::of(p);
        self.count(part, true);
        self.parts.insert(key, part);
    }

    /// Count the pod (namespace, name) out.
    pub fn remove(&mut self, key: &(String, String)) {
        if let Some(part) = self.parts.remove(key) {
            self.count(part, false);
        }
    }

    fn count(&mut self, part: PodPart, add: bool) {
        if !part.active {
            return;
        }
        let step = |n: usize| if add { n + 1 } else { n.saturating_sub(1) };
        self.pods = step(self.pods);
        if part.bound {
            self.gpus_held = if add { self.gpus_held + part.gpus } else { self.gpus_held.saturating_sub(part.gpus) };
        } else {
            self.pending_pods = step(self.pending_pods);
        }
    }

    /// Active GPU pods.
    pub fn pods(&self) -> usize {
        self.pods
    }

    /// Whole GPUs held by active pods bound to nodes.
    pub fn gpus_held(&self) -> u64 {
        self.gpus_held
    }

    /// Active GPU pods waiting for a node.
    pub fn pending_pods(&self) -> usize {
        self.pending_pods
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gpu_resources::fixtures::pod;

    fn kept(name: &str, node: Option<&str>, gpus: u64, phase: &str) -> CachedPod {
        CachedPod::from(pod("ml", name, node, "nvidia.com/gpu", gpus, phase))
    }

    #[test]
    fn totals_follow_binds_completions_and_deletes() {
        let mut t = PodTotals::default();
        t.apply(&kept("a", Some("n1"), 4, "Running"));
        t.apply(&kept("b", None, 2, "Pending"));
        t.apply(&kept("done", Some("n1"), 8, "Succeeded"));
        assert_eq!((t.pods(), t.gpus_held(), t.pending_pods()), (2, 4, 1));
        t.apply(&kept("b", Some("n2"), 2, "Running"));
        assert_eq!((t.pods(), t.gpus_held(), t.pending_pods()), (2, 6, 0), "bound now");
        t.apply(&kept("a", Some("n1"), 4, "Failed"));
        t.remove(&("ml".into(), "b".into()));
        t.remove(&("ml".into(), "never".into()));
        assert_eq!((t.pods(), t.gpus_held(), t.pending_pods()), (0, 0, 0));
    }
}
