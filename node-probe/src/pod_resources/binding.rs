//! Which pod holds which GPU: the kubelet's allocations mapped onto the GPUs the probe sees. Pure: no socket, no
//! client; the poller feeds it what the kubelet said, the publisher asks it who held a GPU.
//!
//! Device plugins name devices in several ways, depending on their settings:
//! - `GPU-<uuid>`: a whole GPU (the NVIDIA device plugin's default `uuid` strategy);
//! - `GPU-<uuid>::<n>`: replica n of a time-sliced (shared) GPU;
//! - `MIG-<uuid>`: a MIG device (driver ≥ 470), found through the MIG device UUIDs NVML reports per GPU;
//! - `MIG-GPU-<uuid>/<gi>/<ci>`: the older MIG form, which names its parent GPU;
//! - a bare number: the `index` strategy, whose numbers need not be NVML's, so it is not guessed at.
//!
//! DRA claims name devices by the driver's device name (`gpu-0`, NVIDIA's DRA driver numbers GPUs as NVML does) and
//! CDI names (`k8s.gpu.nvidia.com/device=gpu-0`, or a UUID). Anything the probe cannot map is kept as the kubelet
//! reported it and listed as unmapped, never dropped.

use std::collections::{BTreeMap, BTreeSet};

use gpuscope_crds::gpu_node_status::{GpuInfo, MAX_PODS_PER_GPU, MAX_UNMAPPED_DEVICES, PodRef, PodResourcesStatus};

use super::proto::{AllocatableResourcesResponse, ListPodResourcesResponse};

/// The resource name NVIDIA's device plugin registers for whole GPUs (and time-sliced replicas, unless renamed).
pub const WHOLE_GPU_RESOURCE: &str = "nvidia.com/gpu";

/// One NVIDIA device a container holds, as the kubelet reported it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Allocation {
    /// Pod namespace.
    pub namespace: String,
    /// Pod name.
    pub pod: String,
    /// Container name.
    pub container: String,
    /// Extended resource ("nvidia.com/gpu", "nvidia.com/mig-1g.10gb") or, for DRA, "claim <namespace>/<name>".
    pub resource: String,
    /// Device ids to map, most specific first (DRA: the device name, then its CDI names). Never empty.
    pub device_ids: Vec<String>,
    /// Whether it came through a DRA claim (device names follow the DRA driver's naming).
    pub dra: bool,
}

/// What the kubelet's `List` says about NVIDIA devices: one [`Allocation`] per device and container. Other
/// resources (CPUs, memory, other vendors' devices) are not kept.
pub fn allocations(response: &ListPodResourcesResponse) -> Vec<Allocation> {
    let mut out = Vec::new();
    for pod in &response.pod_resources {
        for container in &pod.containers {
            let base = |resource: String, device_ids: Vec<String>, dra: bool| Allocation {
                namespace: pod.namespace.clone(),
                pod: pod.name.clone(),
                container: container.name.clone(),
                resource,
                device_ids,
                dra,
            };
            for devices in container.devices.iter().filter(|d| is_nvidia_resource(&d.resource_name)) {
                for id in devices.device_ids.iter().filter(|id| !id.is_empty()) {
                    out.push(base(devices.resource_name.clone(), vec![id.clone()], false));
                }
            }
            for claim in &container.dynamic_resources {
                for res in &claim.claim_resources {
                    let cdi: Vec<String> = res.cdi_devices.iter().map(|c| c.name.clone()).collect();
                    let nvidia = res.driver_name.contains("nvidia") || cdi.iter().any(|n| n.contains("nvidia"));
                    if !nvidia {
                        continue;
                    }
                    let ids: Vec<String> =
                        std::iter::once(res.device_name.clone()).chain(cdi).filter(|s| !s.is_empty()).collect();
                    if ids.is_empty() {
                        continue;
                    }
                    let resource = format!("claim {}/{}", claim.claim_namespace, claim.claim_name);
                    out.push(base(resource, ids, true));
                }
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

/// How many NVIDIA devices the kubelet can allocate (`GetAllocatableResources`).
pub fn allocatable_devices(response: &AllocatableResourcesResponse) -> u32 {
    let n: usize =
        response.devices.iter().filter(|d| is_nvidia_resource(&d.resource_name)).map(|d| d.device_ids.len()).sum();
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// NVIDIA's extended resources: `nvidia.com/gpu`, `nvidia.com/mig-…`, `nvidia.com/gpu.shared`, …
fn is_nvidia_resource(name: &str) -> bool {
    name.starts_with("nvidia.com/")
}

/// What a device id points at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeviceTarget {
    /// A GPU by UUID (whole, a time-slicing replica, or the parent named by an old-style MIG id).
    Gpu(String),
    /// A MIG device by its own UUID: its parent is found through the GPUs' MIG device lists.
    Mig(String),
    /// A GPU by NVML index (DRA device names `gpu-N`).
    Index(u32),
    /// Not understood (index strategy, another naming): kept as unmapped.
    Unknown,
}

/// Parse one device id; `dra` says it is a DRA device or CDI name.
pub fn parse_device_id(id: &str, dra: bool) -> DeviceTarget {
    // A CDI name is "vendor/class=device"; what matters is after the '='.
    let id = if dra { id.rsplit_once('=').map_or(id, |(_, dev)| dev) } else { id };
    if let Some(rest) = id.strip_prefix("MIG-GPU-") {
        let uuid = rest.split('/').next().unwrap_or(rest);
        return if uuid.is_empty() { DeviceTarget::Unknown } else { DeviceTarget::Gpu(format!("GPU-{uuid}")) };
    }
    if id.starts_with("MIG-") && id.len() > 4 {
        return DeviceTarget::Mig(id.to_string());
    }
    if let Some(rest) = id.strip_prefix("GPU-") {
        let uuid = rest.split_once("::").map_or(rest, |(uuid, _replica)| uuid);
        return if uuid.is_empty() { DeviceTarget::Unknown } else { DeviceTarget::Gpu(format!("GPU-{uuid}")) };
    }
    if dra && let Some(n) = id.strip_prefix("gpu-").and_then(|n| n.parse::<u32>().ok()) {
        return DeviceTarget::Index(n);
    }
    DeviceTarget::Unknown
}

/// The pod's UID and controller, from the API server, keyed by (namespace, name).
pub type PodOwners = BTreeMap<(String, String), PodOwner>;

/// What the API server says about a pod that the kubelet does not.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PodOwner {
    /// Pod UID.
    pub uid: String,
    /// "Kind/name" of its controller, when it has one.
    pub controller: Option<String>,
}

/// The binding of pods to this node's GPUs at one moment.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Binding {
    /// Pods per GPU UUID, sorted, deduplicated per (pod, container).
    pub by_gpu: BTreeMap<String, Vec<PodRef>>,
    /// Allocations that map to no GPU the probe sees.
    pub unmapped: Vec<PodRef>,
    /// Pods holding at least one NVIDIA device.
    pub pod_count: u32,
    /// NVIDIA devices the kubelet can allocate, when it answered GetAllocatableResources.
    pub allocatable: Option<u32>,
}

impl Binding {
    /// Map `allocations` onto `gpus` (the probe's inventory), with UIDs and controllers from `owners`.
    pub fn new(allocations: &[Allocation], gpus: &[GpuInfo], owners: &PodOwners, allocatable: Option<u32>) -> Binding {
        let mut by_gpu: BTreeMap<String, Vec<PodRef>> = BTreeMap::new();
        let mut unmapped = Vec::new();
        let mut pods = BTreeSet::new();
        for a in allocations {
            pods.insert((a.namespace.as_str(), a.pod.as_str()));
            let target = a.device_ids.iter().find_map(|id| resolve(&parse_device_id(id, a.dra), gpus));
            let mut pod = PodRef {
                namespace: a.namespace.clone(),
                name: a.pod.clone(),
                container: Some(a.container.clone()),
                resource: (a.resource != WHOLE_GPU_RESOURCE).then(|| a.resource.clone()),
                ..PodRef::default()
            };
            if let Some(owner) = owners.get(&(a.namespace.clone(), a.pod.clone())) {
                pod.uid = Some(owner.uid.clone());
                pod.controller = owner.controller.clone();
            }
            let first_id = a.device_ids.first().cloned().unwrap_or_default();
            match target {
                Some(uuid) => {
                    pod.device_id = (first_id != uuid).then_some(first_id);
                    by_gpu.entry(uuid).or_default().push(pod);
                }
                None => {
                    pod.device_id = Some(first_id);
                    unmapped.push(pod);
                }
            }
        }
        for list in by_gpu.values_mut() {
            list.sort();
            // One entry per (pod, container): two time-slicing replicas of one GPU are one holder.
            list.dedup_by(|a, b| a.namespace == b.namespace && a.name == b.name && a.container == b.container);
        }
        unmapped.sort();
        Binding { by_gpu, unmapped, pod_count: u32::try_from(pods.len()).unwrap_or(u32::MAX), allocatable }
    }

    /// The pods holding the GPU `uuid` (at most [`MAX_PODS_PER_GPU`]) and how many more there are.
    pub fn pods_on(&self, uuid: &str) -> (Vec<PodRef>, u32) {
        let all = self.by_gpu.get(uuid).map(Vec::as_slice).unwrap_or_default();
        let shown: Vec<PodRef> = all.iter().take(MAX_PODS_PER_GPU).cloned().collect();
        (shown, u32::try_from(all.len().saturating_sub(MAX_PODS_PER_GPU)).unwrap_or(u32::MAX))
    }

    /// Fill each GPU's `pods` and `podsOmitted` from this binding.
    pub fn apply_to(&self, gpus: &mut [GpuInfo]) {
        for gpu in gpus {
            let (pods, omitted) = self.pods_on(&gpu.uuid);
            gpu.pods = (!pods.is_empty()).then_some(pods);
            gpu.pods_omitted = (omitted > 0).then_some(omitted);
        }
    }

    /// The `status.podResources` summary.
    pub fn status(&self) -> PodResourcesStatus {
        let omitted = self.unmapped.len().saturating_sub(MAX_UNMAPPED_DEVICES);
        PodResourcesStatus {
            pod_count: self.pod_count,
            unmapped: self.unmapped.iter().take(MAX_UNMAPPED_DEVICES).cloned().collect(),
            unmapped_omitted: (omitted > 0).then(|| u32::try_from(omitted).unwrap_or(u32::MAX)),
            allocatable_devices: self.allocatable,
        }
    }
}

/// The UUID of the GPU the target names, if the probe sees it.
fn resolve(target: &DeviceTarget, gpus: &[GpuInfo]) -> Option<String> {
    let found = match target {
        DeviceTarget::Gpu(uuid) => gpus.iter().find(|g| g.uuid.eq_ignore_ascii_case(uuid)),
        DeviceTarget::Mig(mig) => gpus.iter().find(|g| {
            g.mig
                .as_ref()
                .and_then(|m| m.device_uuids.as_ref())
                .is_some_and(|uuids| uuids.iter().any(|u| u.eq_ignore_ascii_case(mig)))
        }),
        DeviceTarget::Index(i) => gpus.iter().find(|g| g.index == *i),
        DeviceTarget::Unknown => None,
    };
    found.map(|g| g.uuid.clone())
}

#[cfg(test)]
mod tests {
    use gpuscope_crds::gpu_node_status::MigInfo;

    use super::*;
    use crate::pod_resources::proto::{
        CdiDevice, ClaimResource, ContainerDevices, ContainerResources, DynamicResource, PodResources,
    };

    const G0: &str = "GPU-00000000-1111-2222-3333-444444444444";
    const G3: &str = "GPU-33333333-1111-2222-3333-444444444444";
    const MIG_ON_G3: &str = "MIG-aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee";

    fn gpus() -> Vec<GpuInfo> {
        vec![
            GpuInfo { index: 0, uuid: G0.into(), ..GpuInfo::default() },
            GpuInfo {
                index: 3,
                uuid: G3.into(),
                mig: Some(MigInfo { enabled: true, device_uuids: Some(vec![MIG_ON_G3.into()]), ..MigInfo::default() }),
                ..GpuInfo::default()
            },
        ]
    }

    #[test]
    fn every_device_id_form_maps_to_its_physical_gpu_or_is_unknown() {
        let cases: &[(&str, bool, DeviceTarget)] = &[
            (G0, false, DeviceTarget::Gpu(G0.into())),
            (&format!("{G3}::2"), false, DeviceTarget::Gpu(G3.into())),
            (MIG_ON_G3, false, DeviceTarget::Mig(MIG_ON_G3.into())),
            (&format!("MIG-{G3}/1/0"), false, DeviceTarget::Gpu(G3.into())),
            ("3", false, DeviceTarget::Unknown),
            ("", false, DeviceTarget::Unknown),
            ("GPU-", false, DeviceTarget::Unknown),
            ("MIG-", false, DeviceTarget::Unknown),
            ("gpu-3", false, DeviceTarget::Unknown),
            ("gpu-3", true, DeviceTarget::Index(3)),
            ("k8s.gpu.nvidia.com/device=gpu-0", true, DeviceTarget::Index(0)),
            (&format!("nvidia.com/gpu={G0}"), true, DeviceTarget::Gpu(G0.into())),
            ("k8s.gpu.nvidia.com/device=all", true, DeviceTarget::Unknown),
        ];
        for (id, dra, want) in cases {
            assert_eq!(&parse_device_id(id, *dra), want, "device id {id:?} (dra: {dra})");
        }
    }

    fn pod(ns: &str, name: &str, containers: Vec<ContainerResources>) -> PodResources {
        PodResources { name: name.into(), namespace: ns.into(), containers }
    }

    fn container(name: &str, resource: &str, ids: &[&str]) -> ContainerResources {
        ContainerResources {
            name: name.into(),
            devices: vec![ContainerDevices {
                resource_name: resource.into(),
                device_ids: ids.iter().map(|s| s.to_string()).collect(),
            }],
            dynamic_resources: vec![],
        }
    }

    #[test]
    fn whole_shared_mig_and_unmappable_devices_are_bound_and_none_is_dropped() {
        let response = ListPodResourcesResponse {
            pod_resources: vec![
                pod("ml", "train-0", vec![container("trainer", "nvidia.com/gpu", &[G0])]),
                pod(
                    "ml",
                    "infer-a",
                    vec![container("server", "nvidia.com/gpu", &[&format!("{G3}::0"), &format!("{G3}::1")])],
                ),
                pod("ml", "infer-b", vec![container("server", "nvidia.com/mig-1g.10gb", &[MIG_ON_G3])]),
                pod("ml", "old", vec![container("c", "nvidia.com/gpu", &["7"])]),
                pod("ml", "stranger", vec![container("c", "nvidia.com/mig-2g.20gb", &["MIG-ffffffff"])]),
                pod("ml", "cpu-only", vec![container("c", "example.com/fpga", &["fpga-0"])]),
            ],
        };
        let owners = PodOwners::from([(
            ("ml".to_string(), "train-0".to_string()),
            PodOwner { uid: "uid-train-0".into(), controller: Some("Job/train".into()) },
        )]);
        let binding = Binding::new(&allocations(&response), &gpus(), &owners, Some(16));
        let on_g0 = &binding.by_gpu[G0];
        assert_eq!(on_g0.len(), 1);
        assert_eq!(on_g0[0].key(), "ml/train-0");
        assert_eq!(on_g0[0].uid.as_deref(), Some("uid-train-0"));
        assert_eq!(on_g0[0].controller.as_deref(), Some("Job/train"));
        assert_eq!(on_g0[0].device_id, None, "a whole GPU's id is its UUID: not repeated");
        assert_eq!(on_g0[0].resource, None, "nvidia.com/gpu is the default: not repeated");
        let on_g3: Vec<String> = binding.by_gpu[G3].iter().map(PodRef::key).collect();
        assert_eq!(on_g3, ["ml/infer-a", "ml/infer-b"], "two replicas of one GPU are one holder");
        let mig = binding.by_gpu[G3].iter().find(|p| p.name == "infer-b").expect("MIG holder");
        assert_eq!(mig.device_id.as_deref(), Some(MIG_ON_G3));
        assert_eq!(mig.resource.as_deref(), Some("nvidia.com/mig-1g.10gb"));
        let unmapped: Vec<(String, Option<String>)> =
            binding.unmapped.iter().map(|p| (p.key(), p.device_id.clone())).collect();
        assert_eq!(
            unmapped,
            [("ml/old".to_string(), Some("7".to_string())), ("ml/stranger".into(), Some("MIG-ffffffff".into()))]
        );
        assert_eq!(binding.pod_count, 5, "pods with NVIDIA devices only, mapped or not");
        let status = binding.status();
        assert_eq!(status.allocatable_devices, Some(16));
        assert_eq!(status.unmapped.len(), 2);
    }

    #[test]
    fn dra_claims_are_bound_by_device_name_or_cdi_name() {
        let claim = |device_name: &str, cdi: &str, driver: &str| DynamicResource {
            claim_name: "single-gpu".into(),
            claim_namespace: "gpu-test".into(),
            claim_resources: vec![ClaimResource {
                cdi_devices: vec![CdiDevice { name: cdi.into() }],
                driver_name: driver.into(),
                pool_name: "node-a".into(),
                device_name: device_name.into(),
            }],
        };
        let with_claim = |name: &str, c: DynamicResource| {
            pod(
                "gpu-test",
                name,
                vec![ContainerResources { name: "ctr".into(), devices: vec![], dynamic_resources: vec![c] }],
            )
        };
        let response = ListPodResourcesResponse {
            pod_resources: vec![
                with_claim("by-name", claim("gpu-3", "k8s.gpu.nvidia.com/device=gpu-3", "gpu.nvidia.com")),
                with_claim("by-cdi", claim("", &format!("k8s.gpu.nvidia.com/device={G0}"), "gpu.nvidia.com")),
                with_claim("unknown", claim("gpu-9", "k8s.gpu.nvidia.com/device=gpu-9", "gpu.nvidia.com")),
                with_claim("not-nvidia", claim("nic-0", "example.com/net=nic-0", "net.example.com")),
            ],
        };
        let binding = Binding::new(&allocations(&response), &gpus(), &PodOwners::new(), None);
        let by_name = &binding.by_gpu[G3][0];
        assert_eq!(by_name.key(), "gpu-test/by-name");
        assert_eq!(by_name.resource.as_deref(), Some("claim gpu-test/single-gpu"));
        assert_eq!(by_name.device_id.as_deref(), Some("gpu-3"));
        assert_eq!(binding.by_gpu[G0][0].key(), "gpu-test/by-cdi");
        assert_eq!(binding.unmapped.iter().map(PodRef::key).collect::<Vec<_>>(), ["gpu-test/unknown"]);
        assert_eq!(binding.pod_count, 3);
    }

    #[test]
    fn a_shared_gpu_lists_four_holders_and_counts_the_rest() {
        let pods: Vec<PodResources> = (0..7)
            .map(|i| pod("ml", &format!("infer-{i}"), vec![container("c", "nvidia.com/gpu", &[&format!("{G0}::{i}")])]))
            .collect();
        let binding = Binding::new(
            &allocations(&ListPodResourcesResponse { pod_resources: pods }),
            &gpus(),
            &PodOwners::new(),
            None,
        );
        let mut inventory = gpus();
        binding.apply_to(&mut inventory);
        assert_eq!(inventory[0].pods.as_ref().map(Vec::len), Some(MAX_PODS_PER_GPU));
        assert_eq!(inventory[0].pods_omitted, Some(3));
        assert_eq!(inventory[1].pods, None, "nobody holds GPU 3");
        assert_eq!(inventory[1].pods_omitted, None);
    }

    #[test]
    fn allocatable_counts_only_nvidia_devices() {
        let response = AllocatableResourcesResponse {
            devices: vec![
                ContainerDevices { resource_name: "nvidia.com/gpu".into(), device_ids: vec![G0.into(), G3.into()] },
                ContainerDevices { resource_name: "example.com/fpga".into(), device_ids: vec!["f".into()] },
            ],
        };
        assert_eq!(allocatable_devices(&response), 2);
    }
}
