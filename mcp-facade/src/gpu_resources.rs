//! GPU extended resources on Nodes and Pods: which resource names are GPUs, how many a pod requests, how many a
//! node offers.
//!
//! NVIDIA's device plugin advertises whole GPUs as `nvidia.com/gpu` (or `nvidia.com/gpu.shared` when time-sliced
//! with renaming) and MIG slices as `nvidia.com/mig-<profile>`.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, Pod};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

/// The resource name of a whole GPU.
pub const GPU_RESOURCE: &str = "nvidia.com/gpu";

/// Whether an extended resource name stands for GPUs or MIG slices.
pub fn is_gpu_resource(name: &str) -> bool {
    name == GPU_RESOURCE || name.starts_with("nvidia.com/gpu.") || name.starts_with("nvidia.com/mig-")
}

/// Counts per GPU resource name, e.g. {"nvidia.com/gpu": 8}.
pub type ResourceCounts = BTreeMap<String, u64>;

/// An extended resource's integer count; extended resources cannot be fractional, anything else reads as none.
pub fn quantity_count(q: &Quantity) -> Option<u64> {
    q.0.trim().parse().ok()
}

/// The GPU resources of a capacity, allocatable, requests or limits map, without zero counts.
pub fn gpu_counts(map: Option<&BTreeMap<String, Quantity>>) -> ResourceCounts {
    map.into_iter()
        .flatten()
        .filter(|(name, _)| is_gpu_resource(name))
        .filter_map(|(name, q)| Some((name.clone(), quantity_count(q)?)))
        .filter(|(_, n)| *n > 0)
        .collect()
}

/// A container's GPU request. Extended resources need no request (it defaults to the limit), so the limit
/// counts first.
fn container_gpus(c: &Container) -> ResourceCounts {
    let resources = c.resources.as_ref();
    let mut counts = gpu_counts(resources.and_then(|r| r.requests.as_ref()));
    for (name, n) in gpu_counts(resources.and_then(|r| r.limits.as_ref())) {
        counts.insert(name, n);
    }
    counts
}

/// What a pod holds while it runs: per resource, the sum over its containers or the largest init container,
/// whichever is more (the scheduler's rule).
pub fn pod_gpu_requests(pod: &Pod) -> ResourceCounts {
    let Some(spec) = pod.spec.as_ref() else { return ResourceCounts::new() };
    let mut total = ResourceCounts::new();
    for c in &spec.containers {
        for (name, n) in container_gpus(c) {
            *total.entry(name).or_default() += n;
        }
    }
    for c in spec.init_containers.iter().flatten() {
        for (name, n) in container_gpus(c) {
            let entry = total.entry(name).or_default();
            *entry = (*entry).max(n);
        }
    }
    total
}

/// Whether the pod requests any GPU or MIG resource (the pod watch's filter, run before a pod is converted).
pub fn requests_gpu(pod: &Pod) -> bool {
    !pod_gpu_requests(pod).is_empty()
}

/// Whole GPUs in a set of counts (`nvidia.com/gpu` and renamed shared GPUs); MIG slices are not GPUs.
pub fn whole_gpus<'a>(counts: impl IntoIterator<Item = (&'a String, &'a u64)>) -> u64 {
    counts.into_iter().filter(|(name, _)| !name.starts_with("nvidia.com/mig-")).map(|(_, n)| n).sum()
}

/// MIG slices in a set of counts.
pub fn mig_slices<'a>(counts: impl IntoIterator<Item = (&'a String, &'a u64)>) -> u64 {
    counts.into_iter().filter(|(name, _)| name.starts_with("nvidia.com/mig-")).map(|(_, n)| n).sum()
}

#[cfg(test)]
pub(crate) mod fixtures {
    //! Hand-built Nodes and Pods for tests.

    use k8s_openapi::api::core::v1::{
        Container, Node, NodeCondition, NodeSpec, NodeStatus, Pod, PodSpec, PodStatus, ResourceRequirements, Taint,
    };
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
    use kube::api::ObjectMeta;

    /// A Node with `gpus` allocatable `nvidia.com/gpu`.
    pub fn node(name: &str, gpus: u64) -> Node {
        let resources =
            [("cpu".to_string(), Quantity("64".into())), ("nvidia.com/gpu".to_string(), Quantity(gpus.to_string()))]
                .into_iter()
                .collect();
        Node {
            metadata: ObjectMeta { name: Some(name.into()), ..Default::default() },
            spec: Some(NodeSpec::default()),
            status: Some(NodeStatus {
                allocatable: Some(resources),
                capacity: Some([("nvidia.com/gpu".to_string(), Quantity(gpus.to_string()))].into_iter().collect()),
                conditions: Some(vec![NodeCondition {
                    type_: "Ready".into(),
                    status: "True".into(),
                    reason: Some("KubeletReady".into()),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
        }
    }

    /// A Node that is cordoned and tainted.
    pub fn cordoned(mut node: Node) -> Node {
        if let Some(spec) = node.spec.as_mut() {
            spec.unschedulable = Some(true);
            spec.taints = Some(vec![Taint {
                key: "gpuscope.dev/unhealthy".into(),
                value: Some("true".into()),
                effect: "NoSchedule".into(),
                ..Default::default()
            }]);
        }
        node
    }

    /// A pod in `ns` on `node` whose one container requests `count` of `resource`.
    pub fn pod(ns: &str, name: &str, node: Option<&str>, resource: &str, count: u64, phase: &str) -> Pod {
        let limits = [(resource.to_string(), Quantity(count.to_string()))].into_iter().collect();
        Pod {
            metadata: ObjectMeta { name: Some(name.into()), namespace: Some(ns.into()), ..Default::default() },
            spec: Some(PodSpec {
                node_name: node.map(str::to_string),
                containers: vec![Container {
                    name: "main".into(),
                    image: Some("cuda:12".into()),
                    resources: Some(ResourceRequirements { limits: Some(limits), ..Default::default() }),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            status: Some(PodStatus { phase: Some(phase.into()), ..Default::default() }),
        }
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{Container, ResourceRequirements};

    use super::fixtures::*;
    use super::*;
    use crate::cached::{CachedNode, CachedPod};

    #[test]
    fn gpu_resource_names_cover_whole_shared_and_mig() {
        assert!(is_gpu_resource("nvidia.com/gpu"));
        assert!(is_gpu_resource("nvidia.com/gpu.shared"));
        assert!(is_gpu_resource("nvidia.com/mig-1g.10gb"));
        assert!(!is_gpu_resource("nvidia.com/gpumem"));
        assert!(!is_gpu_resource("amd.com/gpu"));
        assert!(!is_gpu_resource("cpu"));
    }

    #[test]
    fn pod_request_sums_containers_and_takes_the_largest_init_container() {
        let mut p = pod("ml", "train", Some("n1"), "nvidia.com/gpu", 2, "Running");
        let spec = p.spec.as_mut().expect("spec");
        let gpu = |n: &str| ResourceRequirements {
            requests: Some([("nvidia.com/gpu".to_string(), Quantity(n.into()))].into_iter().collect()),
            ..Default::default()
        };
        spec.containers.push(Container { name: "side".into(), resources: Some(gpu("1")), ..Default::default() });
        spec.init_containers =
            Some(vec![Container { name: "warm".into(), resources: Some(gpu("4")), ..Default::default() }]);
        assert_eq!(pod_gpu_requests(&p).get("nvidia.com/gpu"), Some(&4));
        spec_only_containers(&mut p);
        assert_eq!(pod_gpu_requests(&p).get("nvidia.com/gpu"), Some(&3));
    }

    fn spec_only_containers(p: &mut Pod) {
        if let Some(s) = p.spec.as_mut() {
            s.init_containers = None;
        }
    }

    #[test]
    fn cpu_only_pods_request_no_gpu_and_finished_pods_are_inactive() {
        let p = pod("web", "nginx", Some("n1"), "cpu", 2, "Running");
        assert!(!requests_gpu(&p));
        assert!(requests_gpu(&pod("ml", "mig", None, "nvidia.com/mig-1g.10gb", 1, "Pending")));
        let kept = |p: Pod| CachedPod::from(p);
        assert!(!kept(pod("ml", "done", Some("n1"), "nvidia.com/gpu", 1, "Succeeded")).is_active());
        assert!(kept(pod("ml", "wait", None, "nvidia.com/gpu", 1, "Pending")).is_active());
    }

    #[test]
    fn node_counts_read_only_gpu_resources() {
        let n = node("n1", 8);
        let n = CachedNode::from(n);
        assert_eq!(n.gpu_allocatable.to_map(), [("nvidia.com/gpu".to_string(), 8)].into_iter().collect());
        assert_eq!(whole_gpus(n.gpu_capacity.iter()), 8);
        assert!(n.has_gpus() && !CachedNode::from(node("cpu", 0)).has_gpus());
        let mixed: ResourceCounts =
            [("nvidia.com/gpu".to_string(), 4), ("nvidia.com/mig-1g.10gb".to_string(), 14)].into_iter().collect();
        assert_eq!((whole_gpus(&mixed), mig_slices(&mixed)), (4, 14));
    }
}
