//! What the cache keeps of each object. Nodes and Pods are large (images, env, volumes, managedFields) and the
//! tools need a sliver of them, so everything else is dropped before an object enters a store.

use std::collections::BTreeMap;

use gpuscope_crds::GpuNodeStatus;
use k8s_openapi::api::core::v1::{
    Container, Node, NodeSpec, NodeStatus, Pod, PodSpec, PodStatus, ResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::gpu_resources::is_gpu_resource;

/// Label prefixes worth keeping on a Node: GPU feature discovery and placement.
const NODE_LABEL_PREFIXES: [&str; 4] =
    ["nvidia.com/", "node.kubernetes.io/instance-type", "topology.kubernetes.io/", "node-role.kubernetes.io/"];

/// GpuNodeStatus: everything but managedFields and annotations (a client-side apply copy can double the size).
pub fn status(o: &mut GpuNodeStatus) {
    o.metadata.managed_fields = None;
    o.metadata.annotations = None;
}

fn keep_meta(meta: &ObjectMeta, keep_labels: bool) -> ObjectMeta {
    let labels = meta.labels.as_ref().filter(|_| keep_labels).map(|labels| {
        labels
            .iter()
            .filter(|(k, _)| NODE_LABEL_PREFIXES.iter().any(|p| k.starts_with(p)))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect::<BTreeMap<_, _>>()
    });
    ObjectMeta {
        name: meta.name.clone(),
        namespace: meta.namespace.clone(),
        uid: meta.uid.clone(),
        resource_version: meta.resource_version.clone(),
        creation_timestamp: meta.creation_timestamp.clone(),
        deletion_timestamp: meta.deletion_timestamp.clone(),
        labels: labels.filter(|l| !l.is_empty()),
        // The controlling owner names the workload (Job, ReplicaSet, ...); other owners add nothing.
        owner_references: meta
            .owner_references
            .as_ref()
            .map(|refs| refs.iter().filter(|r| r.controller == Some(true)).cloned().collect::<Vec<_>>())
            .filter(|refs| !refs.is_empty()),
        ..Default::default()
    }
}

fn gpu_only(map: Option<&BTreeMap<String, Quantity>>) -> Option<BTreeMap<String, Quantity>> {
    let kept: BTreeMap<_, _> =
        map?.iter().filter(|(k, _)| is_gpu_resource(k)).map(|(k, v)| (k.clone(), v.clone())).collect();
    (!kept.is_empty()).then_some(kept)
}

/// Node: GPU-related labels, taints, cordon, GPU capacity/allocatable, conditions and node info.
pub fn node(n: &mut Node) {
    let spec = n.spec.take().unwrap_or_default();
    let status = n.status.take().unwrap_or_default();
    n.metadata = keep_meta(&n.metadata, true);
    n.spec = Some(NodeSpec { taints: spec.taints, unschedulable: spec.unschedulable, ..Default::default() });
    n.status = Some(NodeStatus {
        capacity: gpu_only(status.capacity.as_ref()),
        allocatable: gpu_only(status.allocatable.as_ref()),
        conditions: status.conditions.map(|cs| {
            cs.into_iter()
                // The heartbeat time changes every few seconds and no tool reads it.
                .map(|mut c| {
                    c.last_heartbeat_time = None;
                    c
                })
                .collect()
        }),
        node_info: status.node_info,
        ..Default::default()
    });
}

fn container(c: &Container) -> Container {
    let r = c.resources.as_ref();
    Container {
        name: c.name.clone(),
        resources: Some(ResourceRequirements {
            limits: gpu_only(r.and_then(|r| r.limits.as_ref())),
            requests: gpu_only(r.and_then(|r| r.requests.as_ref())),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Pod: identity, controlling owner, node, phase, and the containers' GPU requests; no images, env or volumes.
pub fn pod(p: &mut Pod) {
    let spec = p.spec.take().unwrap_or_default();
    let status = p.status.take().unwrap_or_default();
    p.metadata = keep_meta(&p.metadata, false);
    p.spec = Some(PodSpec {
        node_name: spec.node_name,
        containers: spec.containers.iter().map(container).collect(),
        init_containers: spec.init_containers.map(|cs| cs.iter().map(container).collect()),
        ..Default::default()
    });
    p.status = Some(PodStatus {
        phase: status.phase,
        reason: status.reason,
        start_time: status.start_time,
        ..Default::default()
    });
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{EnvVar, NodeSystemInfo, Volume};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ManagedFieldsEntry, OwnerReference};

    use super::*;
    use crate::gpu_resources::fixtures;
    use crate::gpu_resources::pod_gpu_requests;

    #[test]
    fn node_keeps_gpu_facts_and_drops_the_rest() {
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
        }
        node(&mut n);
        assert!(n.metadata.managed_fields.is_none() && n.metadata.annotations.is_none());
        let labels: Vec<&String> = n.metadata.labels.iter().flatten().map(|(k, _)| k).collect();
        assert_eq!(labels, ["nvidia.com/gpu.product", "topology.kubernetes.io/zone"]);
        let status = n.status.as_ref().expect("status");
        assert!(status.images.is_none());
        assert_eq!(
            status.allocatable.as_ref().map(|a| a.keys().cloned().collect::<Vec<_>>()),
            Some(vec!["nvidia.com/gpu".to_string()])
        );
        assert_eq!(status.node_info.as_ref().map(|i| i.kernel_version.as_str()), Some("6.8.0"));
        assert_eq!(n.spec.as_ref().and_then(|s| s.unschedulable), Some(true));
        assert_eq!(n.spec.as_ref().and_then(|s| s.taints.as_ref()).map(Vec::len), Some(1));
    }

    #[test]
    fn pod_keeps_gpu_requests_owner_and_phase_only() {
        let mut p = fixtures::pod("ml", "train-0", Some("n1"), "nvidia.com/gpu", 2, "Running");
        p.metadata.owner_references = Some(vec![
            OwnerReference { kind: "Job".into(), name: "train".into(), controller: Some(true), ..Default::default() },
            OwnerReference { kind: "ConfigMap".into(), name: "x".into(), ..Default::default() },
        ]);
        p.metadata.labels = Some([("app".to_string(), "train".to_string())].into_iter().collect());
        if let Some(spec) = p.spec.as_mut() {
            spec.volumes = Some(vec![Volume::default(); 3]);
            spec.containers[0].env = Some(vec![EnvVar { name: "SECRET".into(), ..Default::default() }]);
        }
        pod(&mut p);
        assert_eq!(pod_gpu_requests(&p).get("nvidia.com/gpu"), Some(&2));
        let spec = p.spec.as_ref().expect("spec");
        assert_eq!(spec.node_name.as_deref(), Some("n1"));
        assert!(spec.volumes.is_none() && spec.containers[0].env.is_none() && spec.containers[0].image.is_none());
        assert!(p.metadata.labels.is_none());
        assert_eq!(p.metadata.owner_references.as_ref().map(|o| o[0].kind.as_str()), Some("Job"));
        assert_eq!(p.metadata.owner_references.as_ref().map(Vec::len), Some(1));
        assert_eq!(p.status.as_ref().and_then(|s| s.phase.as_deref()), Some("Running"));
    }
}
