//! The kubelet's pod-resources v1 messages (`k8s.io/kubelet/pkg/apis/podresources/v1/api.proto`), written by hand
//! with prost's derive so that no protoc runs at build time. Field numbers are the kubelet's; only the fields
//! gpuscope reads are declared (protobuf skips the others: CPU ids, memory, topology), so a kubelet that adds
//! fields keeps working.

/// The gRPC service the kubelet serves on its pod-resources socket.
pub const SERVICE: &str = "v1.PodResourcesLister";
/// Path of the `List` call.
pub const LIST_PATH: &str = "/v1.PodResourcesLister/List";
/// Path of the `GetAllocatableResources` call (kubelet ≥ 1.21 with the feature on; GA in 1.28).
pub const ALLOCATABLE_PATH: &str = "/v1.PodResourcesLister/GetAllocatableResources";

/// `ListPodResourcesRequest`: no fields.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ListPodResourcesRequest {}

/// `ListPodResourcesResponse`: every pod the kubelet admitted, with its containers' resources.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ListPodResourcesResponse {
    /// `repeated PodResources pod_resources = 1`.
    #[prost(message, repeated, tag = "1")]
    pub pod_resources: Vec<PodResources>,
}

/// `PodResources`: one pod.
#[derive(Clone, PartialEq, prost::Message)]
pub struct PodResources {
    /// `string name = 1`.
    #[prost(string, tag = "1")]
    pub name: String,
    /// `string namespace = 2`.
    #[prost(string, tag = "2")]
    pub namespace: String,
    /// `repeated ContainerResources containers = 3`.
    #[prost(message, repeated, tag = "3")]
    pub containers: Vec<ContainerResources>,
}

/// `ContainerResources`: one container's devices (device plugins) and DRA claims.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ContainerResources {
    /// `string name = 1`.
    #[prost(string, tag = "1")]
    pub name: String,
    /// `repeated ContainerDevices devices = 2`.
    #[prost(message, repeated, tag = "2")]
    pub devices: Vec<ContainerDevices>,
    /// `repeated DynamicResource dynamic_resources = 5` (kubelet ≥ 1.27 with KubeletPodResourcesDynamicResources).
    #[prost(message, repeated, tag = "5")]
    pub dynamic_resources: Vec<DynamicResource>,
}

/// `ContainerDevices`: the device ids of one extended resource.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ContainerDevices {
    /// `string resource_name = 1`, e.g. "nvidia.com/gpu" or "nvidia.com/mig-1g.10gb".
    #[prost(string, tag = "1")]
    pub resource_name: String,
    /// `repeated string device_ids = 2`, as the device plugin named them ("GPU-…", "MIG-…", "GPU-…::3", "0").
    #[prost(string, repeated, tag = "2")]
    pub device_ids: Vec<String>,
}

/// `DynamicResource`: one DRA claim's devices.
#[derive(Clone, PartialEq, prost::Message)]
pub struct DynamicResource {
    /// `string claim_name = 2`.
    #[prost(string, tag = "2")]
    pub claim_name: String,
    /// `string claim_namespace = 3`.
    #[prost(string, tag = "3")]
    pub claim_namespace: String,
    /// `repeated ClaimResource claim_resources = 4`.
    #[prost(message, repeated, tag = "4")]
    pub claim_resources: Vec<ClaimResource>,
}

/// `ClaimResource`: one driver's devices for a claim.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ClaimResource {
    /// `repeated CDIDevice cdi_devices = 1`.
    #[prost(message, repeated, tag = "1")]
    pub cdi_devices: Vec<CdiDevice>,
    /// `string driver_name = 2`, e.g. "gpu.nvidia.com".
    #[prost(string, tag = "2")]
    pub driver_name: String,
    /// `string pool_name = 3`.
    #[prost(string, tag = "3")]
    pub pool_name: String,
    /// `string device_name = 4`, e.g. "gpu-0".
    #[prost(string, tag = "4")]
    pub device_name: String,
}

/// `CDIDevice`: a fully qualified CDI device name.
#[derive(Clone, PartialEq, prost::Message)]
pub struct CdiDevice {
    /// `string name = 1`, e.g. "k8s.gpu.nvidia.com/device=gpu-0".
    #[prost(string, tag = "1")]
    pub name: String,
}

/// `AllocatableResourcesRequest`: no fields.
#[derive(Clone, PartialEq, prost::Message)]
pub struct AllocatableResourcesRequest {}

/// `AllocatableResourcesResponse`: every device the kubelet can hand out.
#[derive(Clone, PartialEq, prost::Message)]
pub struct AllocatableResourcesResponse {
    /// `repeated ContainerDevices devices = 1`.
    #[prost(message, repeated, tag = "1")]
    pub devices: Vec<ContainerDevices>,
}
