//! What the cache keeps of each object. A GpuNodeStatus is kept as the facts fleet-wide answers read plus the
//! whole object (but managedFields and annotations) packed, for answers about one node. Nodes and Pods are kept as the facts the tools read, in types of their own. A kubelet's Node is
//! ~17 KB in memory (images, addresses, managedFields) and even stripped to its GPU facts a `k8s_openapi` Node or
//! Pod still costs ~5 KB, most of it the inline space of fields no tool reads (a `Container` alone is 2 KB). At
//! 5,000 nodes that was half of the facade's memory; these are a few hundred bytes each.

use std::borrow::Cow;
use std::collections::BTreeMap;

use gpuscope_crds::GpuNodeStatus;
use k8s_openapi::api::core::v1::{Node, NodeCondition, Pod, Taint};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::runtime::reflector::Lookup;

use crate::gpu_resources::{ResourceCounts, gpu_counts, pod_gpu_requests};
use crate::packed::{PackError, PackedJson, Packer};
use crate::status_facts::StatusFacts;

/// Label prefixes worth keeping on a Node: GPU feature discovery and placement.
const NODE_LABEL_PREFIXES: [&str; 4] =
    ["nvidia.com/", "node.kubernetes.io/instance-type", "topology.kubernetes.io/", "node-role.kubernetes.io/"];

/// Packs every cached GpuNodeStatus, of every cluster, against the first one with a few GPUs (~4 KB of JSON; a
/// status without GPUs is ~1 KB): they share field names, models, drivers and reasons, whichever cluster they
/// come from.
static STATUS_PACKER: Packer = Packer::new(4_000);

/// A GpuNodeStatus as the cache keeps it: the facts fleet-wide answers read, typed, and the whole object (but
/// managedFields and annotations: a client-side apply copy can double the size) packed for answers about one node.
#[derive(Clone, Debug)]
pub struct CachedStatus {
    /// The object's (and its node's) name.
    pub name: String,
    /// What fleet-wide answers read.
    pub facts: StatusFacts,
    /// The whole object; an error only if it could not be packed (a bug, reported by whoever unpacks it).
    packed: Result<PackedJson, PackError>,
}

impl CachedStatus {
    /// The whole object.
    pub fn unpack(&self) -> Result<GpuNodeStatus, PackError> {
        self.packed.as_ref().map_err(Clone::clone)?.unpack()
    }

    /// The whole object as compact JSON.
    pub fn json(&self) -> Result<Vec<u8>, PackError> {
        self.packed.as_ref().map_err(Clone::clone)?.json()
    }

    /// Bytes the packed object takes.
    pub fn packed_len(&self) -> usize {
        self.packed.as_ref().map_or(0, PackedJson::len)
    }

    fn namespace_name(&self) -> Option<&str> {
        None
    }
}

impl From<GpuNodeStatus> for CachedStatus {
    fn from(mut o: GpuNodeStatus) -> CachedStatus {
        o.metadata.managed_fields = None;
        o.metadata.annotations = None;
        CachedStatus {
            name: o.metadata.name.clone().unwrap_or_default(),
            facts: StatusFacts::of(&o),
            packed: STATUS_PACKER.pack(&o),
        }
    }
}

/// GPU resource counts as a short list (a `BTreeMap` with one entry costs a 400-byte node).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GpuCounts(Box<[(String, u64)]>);

impl GpuCounts {
    /// The counts as the tools report them.
    pub fn to_map(&self) -> ResourceCounts {
        self.0.iter().cloned().collect()
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// (resource, count) pairs, for [`crate::gpu_resources::whole_gpus`] and friends without building a map.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &u64)> {
        self.0.iter().map(|(name, n)| (name, n))
    }

    fn of_quantities(map: Option<&BTreeMap<String, Quantity>>) -> GpuCounts {
        GpuCounts::from(gpu_counts(map))
    }
}

impl From<ResourceCounts> for GpuCounts {
    fn from(counts: ResourceCounts) -> GpuCounts {
        GpuCounts(counts.into_iter().filter(|(_, n)| *n > 0).collect())
    }
}

/// A Node as the tools see it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CachedNode {
    /// The Node's name.
    pub name: String,
    /// When the Node object was created.
    pub created: Option<Time>,
    /// GPU-related labels (nvidia.com/*, instance type, topology, role).
    pub labels: BTreeMap<String, String>,
    /// Its taints.
    pub taints: Vec<Taint>,
    /// Cordoned.
    pub unschedulable: bool,
    /// GPU resources the node has.
    pub gpu_capacity: GpuCounts,
    /// GPU resources it offers to pods.
    pub gpu_allocatable: GpuCounts,
    /// The `Ready` condition's status ("True", "False", "Unknown"), if reported.
    pub ready: Option<String>,
    /// Conditions in a state worth telling (see [`abnormal`]), without their heartbeat times.
    pub abnormal_conditions: Vec<NodeCondition>,
    /// Kubelet version.
    pub kubelet_version: Option<String>,
    /// Kernel version.
    pub kernel_version: Option<String>,
}

/// Whether a Node condition is worth telling: Ready that is not True, a pressure condition that is not False, and
/// any GPUHealthy (the operator's mirror).
pub fn abnormal(c: &NodeCondition) -> bool {
    match c.type_.as_str() {
        "Ready" | "GPUHealthy" => c.status != "True" || c.type_ == "GPUHealthy",
        _ => c.status != "False",
    }
}

impl From<Node> for CachedNode {
    fn from(n: Node) -> CachedNode {
        let spec = n.spec.unwrap_or_default();
        let status = n.status.unwrap_or_default();
        let conditions = status.conditions.unwrap_or_default();
        let (kubelet_version, kernel_version) =
            status.node_info.map(|i| (i.kubelet_version, i.kernel_version)).unwrap_or_default();
        let version = |v: String| Some(v).filter(|v| !v.is_empty());
        CachedNode {
            name: n.metadata.name.unwrap_or_default(),
            created: n.metadata.creation_timestamp,
            labels: n
                .metadata
                .labels
                .unwrap_or_default()
                .into_iter()
                .filter(|(k, _)| NODE_LABEL_PREFIXES.iter().any(|p| k.starts_with(p)))
                .collect(),
            taints: spec.taints.unwrap_or_default(),
            unschedulable: spec.unschedulable.unwrap_or(false),
            gpu_capacity: GpuCounts::of_quantities(status.capacity.as_ref()),
            gpu_allocatable: GpuCounts::of_quantities(status.allocatable.as_ref()),
            ready: conditions.iter().find(|c| c.type_ == "Ready").map(|c| c.status.clone()),
            abnormal_conditions: conditions
                .into_iter()
                .filter(abnormal)
                // The heartbeat time changes every few seconds and no tool reads it.
                .map(|c| NodeCondition { last_heartbeat_time: None, ..c })
                .collect(),
            kubelet_version: version(kubelet_version),
            kernel_version: version(kernel_version),
        }
    }
}

impl CachedNode {
    /// Whether the node has any GPU resource.
    pub fn has_gpus(&self) -> bool {
        !self.gpu_capacity.is_empty()
    }

    /// Nodes are cluster-scoped.
    fn namespace_name(&self) -> Option<&str> {
        None
    }
}

/// A GPU-requesting pod as the tools see it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CachedPod {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// The node it is bound to, if scheduled.
    pub node_name: Option<String>,
    /// Its phase (Pending, Running, Succeeded, Failed, Unknown).
    pub phase: Option<String>,
    /// Its controlling owner as `Kind/name` (the workload: Job, ReplicaSet, ...).
    pub owner: Option<String>,
    /// What it holds while it runs, per GPU resource (the scheduler's rule over containers and init containers).
    pub gpus: GpuCounts,
    /// Its UID (pod names are reused: a StatefulSet's pod, a re-created Job pod).
    pub uid: Option<String>,
    /// Container restarts, summed over its containers.
    pub restarts: u32,
    /// The newest termination of each container that has ended (now or before a restart), newest first.
    pub terminations: Vec<Termination>,
}

/// How a container ended, from the pod's status (`state.terminated`, or `lastState.terminated` after a restart).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Termination {
    /// Container name.
    pub container: String,
    /// Exit code (137 is SIGKILL, 139 SIGSEGV, ...).
    pub exit_code: i32,
    /// The kubelet's reason: Error, OOMKilled, Completed, ...
    pub reason: Option<String>,
    /// When it ended.
    pub finished_at: Option<Time>,
}

/// The newest termination of each container of `status`, newest first.
fn terminations(status: Option<&k8s_openapi::api::core::v1::PodStatus>) -> (Vec<Termination>, u32) {
    let Some(status) = status else { return (Vec::new(), 0) };
    let mut out = Vec::new();
    let mut restarts = 0u32;
    let all = status.container_statuses.iter().flatten().chain(status.init_container_statuses.iter().flatten());
    for c in all {
        restarts = restarts.saturating_add(u32::try_from(c.restart_count).unwrap_or(0));
        let now = c.state.as_ref().and_then(|s| s.terminated.as_ref());
        let before = c.last_state.as_ref().and_then(|s| s.terminated.as_ref());
        let newest = match (now, before) {
            (Some(a), Some(b)) => Some(if a.finished_at >= b.finished_at { a } else { b }),
            (a, b) => a.or(b),
        };
        if let Some(t) = newest {
            out.push(Termination {
                container: c.name.clone(),
                exit_code: t.exit_code,
                reason: t.reason.clone(),
                finished_at: t.finished_at.clone(),
            });
        }
    }
    out.sort_by(|a, b| b.finished_at.cmp(&a.finished_at));
    (out, restarts)
}

impl From<Pod> for CachedPod {
    fn from(p: Pod) -> CachedPod {
        let gpus = GpuCounts::from(pod_gpu_requests(&p));
        let owner = p
            .metadata
            .owner_references
            .into_iter()
            .flatten()
            .find(|r| r.controller == Some(true))
            .map(|r| format!("{}/{}", r.kind, r.name));
        let (terminations, restarts) = terminations(p.status.as_ref());
        CachedPod {
            namespace: p.metadata.namespace.unwrap_or_default(),
            name: p.metadata.name.unwrap_or_default(),
            node_name: p.spec.and_then(|s| s.node_name),
            phase: p.status.and_then(|s| s.phase),
            owner,
            gpus,
            uid: p.metadata.uid,
            restarts,
            terminations,
        }
    }
}

impl CachedPod {
    /// Whether it still holds its resources: not Succeeded or Failed.
    pub fn is_active(&self) -> bool {
        !matches!(self.phase.as_deref(), Some("Succeeded" | "Failed"))
    }

    fn namespace_name(&self) -> Option<&str> {
        Some(&self.namespace)
    }
}

/// Store keys by name (and namespace): the reflector needs no more. Resource version and UID stay out of the
/// keys, which the store would otherwise hold a copy of for every object.
macro_rules! lookup {
    ($ty:ty, $group:literal, $version:literal, $kind:literal, $plural:literal) => {
        impl Lookup for $ty {
            type DynamicType = ();

            fn kind(_: &()) -> Cow<'_, str> {
                $kind.into()
            }

            fn group(_: &()) -> Cow<'_, str> {
                $group.into()
            }

            fn version(_: &()) -> Cow<'_, str> {
                $version.into()
            }

            fn plural(_: &()) -> Cow<'_, str> {
                $plural.into()
            }

            fn name(&self) -> Option<Cow<'_, str>> {
                Some(self.name.as_str().into())
            }

            fn namespace(&self) -> Option<Cow<'_, str>> {
                self.namespace_name().map(Cow::Borrowed)
            }

            fn resource_version(&self) -> Option<Cow<'_, str>> {
                None
            }

            fn uid(&self) -> Option<Cow<'_, str>> {
                None
            }
        }
    };
}

lookup!(CachedStatus, "gpuscope.dev", "v1alpha1", "GpuNodeStatus", "gpunodestatuses");
lookup!(CachedNode, "", "v1", "Node", "nodes");
lookup!(CachedPod, "", "v1", "Pod", "pods");

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{EnvVar, NodeSystemInfo, Volume};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ManagedFieldsEntry, OwnerReference};

    use super::*;
    use crate::gpu_resources::fixtures;

    #[test]
    fn a_node_keeps_its_gpu_facts_and_drops_the_rest() {
        let mut n = fixtures::cordoned(fixtures::node("n1", 8));
        n.metadata.managed_fields = Some(vec![ManagedFieldsEntry::default()]);
        n.metadata.annotations = Some([("big".to_string(), "x".repeat(10_000))].into_iter().collect());
        n.metadata.labels = Some(
            [
                ("nvidia.com/gpu.product", "NVIDIA-H100"),
                ("kubernetes.io/os", "linux"),
                ("topology.kubernetes.io/zone", "a"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        );
        if let Some(s) = n.status.as_mut() {
            s.images = Some(vec![Default::default(); 50]);
            s.node_info = Some(NodeSystemInfo { kernel_version: "6.8.0".into(), ..Default::default() });
            s.conditions = Some(vec![
                NodeCondition {
                    type_: "Ready".into(),
                    status: "True".into(),
                    last_heartbeat_time: Some(Time(jiff::Timestamp::UNIX_EPOCH)),
                    ..Default::default()
                },
                NodeCondition { type_: "MemoryPressure".into(), status: "False".into(), ..Default::default() },
                NodeCondition {
                    type_: "DiskPressure".into(),
                    status: "True".into(),
                    last_heartbeat_time: Some(Time(jiff::Timestamp::UNIX_EPOCH)),
                    ..Default::default()
                },
            ]);
        }
        let kept = CachedNode::from(n);
        assert_eq!(kept.name, "n1");
        assert_eq!(kept.labels.keys().collect::<Vec<_>>(), ["nvidia.com/gpu.product", "topology.kubernetes.io/zone"]);
        assert_eq!(kept.gpu_allocatable.to_map(), [("nvidia.com/gpu".to_string(), 8)].into_iter().collect());
        assert_eq!(kept.gpu_capacity.to_map(), [("nvidia.com/gpu".to_string(), 8)].into_iter().collect());
        assert!(kept.has_gpus() && kept.unschedulable);
        assert_eq!(kept.taints.len(), 1);
        assert_eq!(kept.kernel_version.as_deref(), Some("6.8.0"));
        assert_eq!(kept.kubelet_version, None, "an empty version is no version");
        assert_eq!(kept.ready.as_deref(), Some("True"));
        let told: Vec<_> = kept.abnormal_conditions.iter().map(|c| c.type_.as_str()).collect();
        assert_eq!(told, ["DiskPressure"], "only the conditions worth telling");
        assert_eq!(kept.abnormal_conditions[0].last_heartbeat_time, None);
    }

    #[test]
    fn a_pod_keeps_its_gpu_requests_controller_and_phase_only() {
        let mut p = fixtures::pod("ml", "train-0", Some("n1"), "nvidia.com/gpu", 2, "Running");
        p.metadata.owner_references = Some(vec![
            OwnerReference { kind: "ConfigMap".into(), name: "x".into(), ..Default::default() },
            OwnerReference { kind: "Job".into(), name: "train".into(), controller: Some(true), ..Default::default() },
        ]);
        if let Some(spec) = p.spec.as_mut() {
            spec.volumes = Some(vec![Volume::default(); 3]);
            spec.containers[0].env = Some(vec![EnvVar { name: "SECRET".into(), ..Default::default() }]);
        }
        let kept = CachedPod::from(p);
        assert_eq!(
            kept,
            CachedPod {
                namespace: "ml".into(),
                name: "train-0".into(),
                node_name: Some("n1".into()),
                phase: Some("Running".into()),
                owner: Some("Job/train".into()),
                gpus: GpuCounts::from(ResourceCounts::from([("nvidia.com/gpu".to_string(), 2)])),
                uid: None,
                restarts: 0,
                terminations: vec![],
            }
        );
        assert!(kept.is_active());
        let done = CachedPod { phase: Some("Succeeded".into()), ..kept };
        assert!(!done.is_active());
    }

    #[test]
    fn a_pod_keeps_the_newest_termination_of_each_container_and_its_restarts() {
        use k8s_openapi::api::core::v1::{ContainerState, ContainerStateTerminated, ContainerStatus, PodStatus};
        let at = |s: &str| Some(Time(s.parse().expect("time")));
        let ended = |code: i32, reason: &str, when: &str| ContainerState {
            terminated: Some(ContainerStateTerminated {
                exit_code: code,
                reason: Some(reason.into()),
                finished_at: at(when),
                ..Default::default()
            }),
            ..Default::default()
        };
        let mut p = fixtures::pod("ml", "train-0", Some("n1"), "nvidia.com/gpu", 1, "Running");
        p.status = Some(PodStatus {
            phase: Some("Running".into()),
            container_statuses: Some(vec![
                ContainerStatus {
                    name: "trainer".into(),
                    restart_count: 2,
                    // Running again after a crash: the crash is in lastState.
                    last_state: Some(ended(137, "Error", "2026-11-25T03:12:05Z")),
                    ..Default::default()
                },
                ContainerStatus {
                    name: "sidecar".into(),
                    state: Some(ended(0, "Completed", "2026-11-25T01:00:00Z")),
                    ..Default::default()
                },
            ]),
            ..Default::default()
        });
        p.metadata.uid = Some("uid-1".into());
        let kept = CachedPod::from(p);
        assert_eq!(kept.uid.as_deref(), Some("uid-1"));
        assert_eq!(kept.restarts, 2);
        let seen: Vec<(&str, i32)> = kept.terminations.iter().map(|t| (t.container.as_str(), t.exit_code)).collect();
        assert_eq!(seen, [("trainer", 137), ("sidecar", 0)], "newest first");
    }

    #[test]
    fn store_keys_are_name_and_namespace_only() {
        let p = CachedPod { namespace: "ml".into(), name: "a".into(), ..Default::default() };
        let key = p.to_object_ref(());
        assert_eq!((key.name.as_str(), key.namespace.as_deref()), ("a", Some("ml")));
        assert_eq!((p.resource_version(), p.uid()), (None, None));
        let n = CachedNode { name: "n1".into(), ..Default::default() };
        assert_eq!(n.to_object_ref(()).namespace, None);
        assert_eq!(<CachedNode as Lookup>::plural(&()), "nodes");
    }
}
