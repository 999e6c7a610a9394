//! The simulated fleet both scale benchmarks load: which nodes get which XIDs, kubelet-sized Nodes, workload pods,
//! and the loading helpers. One plan, so the scale run and the facade benchmark measure the same fleet.

use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use gpuscope_crds::GpuNodeStatus;
use gpuscope_crds::gpu_node_status::{GpuInfo, XidEvent, XidSource};
use gpuscope_crds::health::Health;
use gpuscope_probe::backend::{NodeSnapshot, Scenario};
use gpuscope_probe::pod_resources::{Allocation, Binding, PodOwners};
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, PostParams};
use kube::runtime::{WatchStreamExt as _, reflector, watcher};
use serde_json::json;

use crate::control_plane::{INSTALL_NAMESPACE, workspace_root};
use crate::{ControlPlane, Identity, Process, free_port, run_ok, workspace_binary};

/// Errors of a benchmark: anything, reported with its message.
pub type BenchResult<T> = Result<T, Box<dyn std::error::Error>>;

/// Namespace of the simulated workloads.
pub const WORKLOAD_NAMESPACE: &str = "bench-workloads";

/// The node names of a fleet of `n`.
pub fn node_names(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("fleet-{i:05}")).collect()
}

/// What the plan does to node `i`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Trouble {
    None,
    /// XID 79 on GPU 3: the GPU fell off the bus (Unhealthy).
    FallenOffBus,
    /// XID 48 on GPU 0: double-bit ECC (Unhealthy).
    DoubleBitEcc,
    /// XID 13 three times on GPU 1 (application-class).
    AppFaults,
    /// XID 31 once on GPU 5 (application-class).
    PageFault,
}

impl Trouble {
    pub fn of(i: usize) -> Trouble {
        match i % 100 {
            7 => Trouble::FallenOffBus,
            57 => Trouble::DoubleBitEcc,
            3 | 13 | 23 | 33 | 43 | 53 | 63 | 73 | 83 | 93 => Trouble::AppFaults,
            11 | 61 => Trouble::PageFault,
            _ => Trouble::None,
        }
    }

    pub fn fatal(self) -> bool {
        matches!(self, Trouble::FallenOffBus | Trouble::DoubleBitEcc)
    }

    /// (GPU index, code, message, repeats).
    pub fn xids(self) -> Option<(usize, u32, &'static str, u32)> {
        match self {
            Trouble::None => None,
            Trouble::FallenOffBus => Some((3, 79, "GPU has fallen off the bus.", 1)),
            Trouble::DoubleBitEcc => Some((0, 48, "An uncorrectable double bit error (DBE) has been detected.", 1)),
            Trouble::AppFaults => Some((1, 13, "Graphics Exception: ESR 0x405840=0x1000", 3)),
            Trouble::PageFault => Some((5, 31, "MMU Fault: ENGINE GRAPHICS GPCCLIENT_T1_0 faulted @ 0x7f3a_0000", 1)),
        }
    }
}

/// Whether node `i` is an A100 node (one in five); the others are H100.
pub fn a100(i: usize) -> bool {
    i % 5 == 4
}

/// The two node kinds of the fleet, as the simulated backend reads them: [H100 x 8, MIG A100 x 8].
pub fn node_templates() -> BenchResult<[NodeSnapshot; 2]> {
    let load = |file: &str| Scenario::load(&workspace_root().join("node-probe/scenarios").join(file));
    Ok([load("healthy-8x-h100.yaml")?, load("mig-a100.yaml")?]
        .map(|s| s.state_at(Duration::ZERO, jiff::Timestamp::now())))
}

/// The GPU product of each template, for the Nodes' GPU feature-discovery labels.
pub fn products(templates: &[NodeSnapshot; 2]) -> [&str; 2] {
    templates.each_ref().map(|t| t.gpus.first().and_then(|g| g.product_name.as_deref()).unwrap_or("NVIDIA-GPU"))
}

/// Node `i`'s GPUs: its template's, with UUIDs of its own.
pub fn gpus_of(i: usize, templates: &[NodeSnapshot; 2]) -> Vec<GpuInfo> {
    let mut gpus = templates[usize::from(a100(i))].gpus.clone();
    for gpu in &mut gpus {
        gpu.uuid = format!("GPU-{i:08x}-{:04x}-4000-8000-000000000000", gpu.index);
    }
    gpus
}

/// Node `i`'s boot id.
pub fn boot_id(i: usize) -> String {
    format!("00000000-0000-4000-8000-{i:012x}")
}

/// The GPU pod the plan puts on node `i` (`train-<i>`, the pod [`register_nodes_and_pods`] creates), holding its
/// first 1 to 8 GPUs, as the kubelet's pod-resources API would report it.
pub fn planned_allocations(i: usize, gpus: &[GpuInfo]) -> Vec<Allocation> {
    gpus.iter()
        .take(1 + i % 8)
        .map(|g| Allocation {
            namespace: WORKLOAD_NAMESPACE.into(),
            pod: format!("train-{i:05}"),
            container: "main".into(),
            resource: "nvidia.com/gpu".into(),
            device_ids: vec![g.uuid.clone()],
            dra: false,
        })
        .collect()
}

/// The binding of node `i`'s planned pod to its GPUs.
pub fn planned_binding(i: usize, gpus: &[GpuInfo]) -> Binding {
    Binding::new(&planned_allocations(i, gpus), gpus, &PodOwners::new(), Some(8))
}

/// The XIDs the plan gives node `i` (on its GPUs `gpus`), as the kernel-log reader would report them, attributed to
/// the planned pod where it holds the GPU (as the probe attributes them).
pub fn planned_xids(i: usize, gpus: &[GpuInfo]) -> Vec<XidEvent> {
    let binding = planned_binding(i, gpus);
    let Some((gpu, code, message, repeats)) = Trouble::of(i).xids() else { return Vec::new() };
    let pci = gpus.get(gpu).and_then(|g| g.pci_bus_id.clone()).unwrap_or_default();
    (0..repeats)
        .map(|seq| XidEvent {
            code,
            time: Time(jiff::Timestamp::now()),
            pci_bus_id: pci.clone(),
            gpu_uuid: None,
            gpu_instance: None,
            compute_instance: None,
            pid: Some(4242 + seq),
            process_name: Some("python3".into()),
            message: Some(message.into()),
            source: XidSource::Kmsg,
            boot_id: Some(boot_id(i)),
            sequence: Some(1000 + u64::from(seq)),
            pods: gpus.get(gpu).map(|g| binding.pods_on(&g.uuid).0).filter(|p| !p.is_empty()),
        })
        .collect()
}

/// Start the real operator with its own identity (its metrics on a free port).
pub fn spawn_operator(cp: &ControlPlane) -> BenchResult<Process> {
    let listen = SocketAddr::from(([127, 0, 0, 1], free_port()?));
    let mut op = Command::new(workspace_binary("gpuscope-operator")?);
    op.env("KUBECONFIG", cp.kubeconfig_for(Identity::Operator))
        .args(["--namespace", INSTALL_NAMESPACE, "--identity", "bench"])
        .arg("--listen")
        .arg(listen.to_string());
    Ok(Process::spawn("gpuscope-operator", op, cp.dir().join("operator.log"))?)
}

/// Wait until all `n` nodes of the plan are written and evaluated: conditions on every GpuNodeStatus, every
/// planned XID counted, every planned fatal node Unhealthy. Returns the number of Unhealthy nodes.
pub async fn wait_converged(admin: &kube::Client, n: usize, operator: &Process, limit: Duration) -> BenchResult<usize> {
    let planned_unhealthy = (0..n).filter(|&i| Trouble::of(i).fatal()).count();
    let planned_xids: u64 = (0..n).filter_map(|i| Trouble::of(i).xids()).map(|x| u64::from(x.3)).sum();
    // Watched, not listed: listing thousands of 10 KiB objects every half second would be most of the API
    // server's load and distort every figure.
    let (store, writer) = reflector::store::<GpuNodeStatus>();
    let watch = reflector(writer, watcher(Api::all(admin.clone()), watcher::Config::default()))
        .default_backoff()
        .for_each(|_| futures::future::ready(()));
    let watching = tokio::spawn(watch);
    let started = Instant::now();
    let result = loop {
        let list = store.state();
        let statuses = || list.iter().filter_map(|o| o.status.as_ref());
        let evaluated = statuses().filter(|s| s.conditions.as_ref().is_some_and(|c| !c.is_empty())).count();
        let unhealthy = statuses().filter(|s| s.health == Some(Health::Unhealthy)).count();
        let xids: u64 = statuses().filter_map(|s| s.xids.as_ref()).flat_map(|x| x.totals.iter()).map(|t| t.count).sum();
        if evaluated == n && xids == planned_xids && unhealthy >= planned_unhealthy {
            break Ok(unhealthy);
        }
        if started.elapsed() > limit {
            break Err(format!(
                "after {limit:?} only {evaluated}/{n} evaluated, {xids}/{planned_xids} XIDs, {unhealthy}/\
                 {planned_unhealthy} unhealthy:\n{}",
                operator.log_tail(20)
            )
            .into());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    watching.abort();
    result
}

/// A Node the size a kubelet registers: labels, addresses, capacity with the GPUs, conditions, images.
pub fn kubelet_like_node(name: &str, i: usize, product: &str) -> Node {
    let images: Vec<_> = (0..40)
        .map(|k| {
            json!({
                "names": [format!("registry.example.com/team-{k}/image@sha256:{:064x}", i * 64 + k),
                          format!("registry.example.com/team-{k}/image:v{k}.{}", i % 7)],
                "sizeBytes": 100_000_000 + k * 1_000_000
            })
        })
        .collect();
    let conditions: Vec<_> = ["MemoryPressure", "DiskPressure", "PIDPressure", "Ready"]
        .iter()
        .map(|t| {
            let ready = *t == "Ready";
            json!({
                "type": t,
                "status": if ready { "True" } else { "False" },
                "reason": if ready { "KubeletReady".to_string() } else { format!("KubeletHasNo{t}") },
                "message": "kubelet is posting ready status",
                "lastHeartbeatTime": "2026-12-01T10:00:00Z",
                "lastTransitionTime": "2026-11-20T10:00:00Z"
            })
        })
        .collect();
    let node = json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": {
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "node.kubernetes.io/instance-type": if a100(i) { "p4d.24xlarge" } else { "p5.48xlarge" },
                "topology.kubernetes.io/zone": format!("zone-{}", i % 3),
                "topology.kubernetes.io/region": "region-1",
                "nvidia.com/gpu.present": "true",
                "nvidia.com/gpu.product": product.replace(' ', "-"),
                "nvidia.com/gpu.count": "8",
                "nvidia.com/gpu.memory": "81920",
                "nvidia.com/cuda.driver.major": "570",
                "feature.node.kubernetes.io/pci-10de.present": "true",
                "feature.node.kubernetes.io/kernel-version.full": "6.8.0-1015-nvidia",
            },
            "annotations": {
                "node.alpha.kubernetes.io/ttl": "0",
                "volumes.kubernetes.io/controller-managed-attach-detach": "true",
                "nfd.node.kubernetes.io/feature-labels": "cpu-cpuid.AVX512F,cpu-cpuid.AMXBF16,pci-10de.present",
            },
        },
        "spec": { "podCIDR": format!("10.{}.{}.0/24", 64 + i / 256 % 64, i % 256), "providerID": format!("aws:///zone/i-{i:017x}") },
        "status": {
            "capacity": { "cpu": "192", "memory": "2097152000Ki", "pods": "110", "ephemeral-storage": "7499362616Ki", "nvidia.com/gpu": "8" },
            "allocatable": { "cpu": "191500m", "memory": "2096000000Ki", "pods": "110", "ephemeral-storage": "6911242716Ki", "nvidia.com/gpu": "8" },
            "addresses": [ { "type": "InternalIP", "address": format!("10.0.{}.{}", i / 256 % 256, i % 256) }, { "type": "Hostname", "address": name } ],
            "conditions": conditions,
            "nodeInfo": {
                "machineID": format!("{i:032x}"), "systemUUID": format!("ec2{i:029x}"), "bootID": format!("00000000-0000-4000-8000-{i:012x}"),
                "kernelVersion": "6.8.0-1015-nvidia", "osImage": "Ubuntu 22.04.5 LTS", "containerRuntimeVersion": "containerd://1.7.22",
                "kubeletVersion": "v1.31.2", "kubeProxyVersion": "v1.31.2", "operatingSystem": "linux", "architecture": "amd64"
            },
            "images": images,
        }
    });
    // The JSON above is built from literals; its shape is a Node by construction.
    serde_json::from_value(node).unwrap_or_default()
}

/// A workload pod bound to `node` (no scheduler runs here), requesting `gpus` GPUs or none.
pub fn workload_pod(name: &str, node: &str, gpus: Option<usize>) -> Pod {
    let resources = match gpus {
        Some(g) => json!({ "limits": { "nvidia.com/gpu": g.to_string(), "cpu": "16", "memory": "128Gi" } }),
        None => json!({ "requests": { "cpu": "500m", "memory": "512Mi" } }),
    };
    let env: Vec<_> =
        (0..12).map(|k| json!({ "name": format!("TRAIN_OPTION_{k}"), "value": format!("value-{k}") })).collect();
    let pod = json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "labels": { "app": if gpus.is_some() { "trainer" } else { "log-shipper" }, "team": format!("team-{}", name.len() % 4) },
        },
        "spec": {
            "nodeName": node,
            "restartPolicy": "Never",
            "tolerations": [ { "key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule" } ],
            "containers": [ {
                "name": "main",
                "image": "registry.example.com/ml/trainer:2026.11",
                "command": ["python3", "-m", "torch.distributed.run", "--nproc-per-node=8", "train.py"],
                "env": env,
                "resources": resources,
            } ],
        }
    });
    serde_json::from_value(pod).unwrap_or_default()
}

/// Run `op` for every item, 32 at a time, failing on the first error.
pub async fn for_each_concurrently<I, F, Fut, E>(items: I, op: F) -> BenchResult<()>
where
    I: Iterator,
    F: FnMut(I::Item) -> Fut,
    Fut: std::future::Future<Output = Result<(), E>>,
    E: std::error::Error + 'static,
{
    futures::stream::iter(items)
        .map(op)
        .buffer_unordered(32)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .try_for_each(|r| r.map_err(|e| Box::new(e) as Box<dyn std::error::Error>))
}

/// Pods need the namespace's `default` ServiceAccount, which the controller-manager creates shortly after.
pub async fn wait_for_default_service_account(cp: &ControlPlane) -> BenchResult<()> {
    let started = Instant::now();
    while run_ok(cp.kubectl().args(["get", "serviceaccount", "default", "-n", WORKLOAD_NAMESPACE])).is_err() {
        if started.elapsed() > Duration::from_secs(60) {
            return Err(format!("no default ServiceAccount in {WORKLOAD_NAMESPACE} after 60 s").into());
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    Ok(())
}

/// Register a kubelet-sized Node for every name (H100 or A100 as [`a100`] says, named after `products`' GPUs),
/// then the workloads: a GPU pod on every node (1 to 8 GPUs) and a CPU pod on every other. Returns the pod count.
pub async fn register_nodes_and_pods(
    cp: &ControlPlane,
    admin: &kube::Client,
    names: &[String],
    products: [&str; 2],
) -> BenchResult<usize> {
    let nodes_api: Api<Node> = Api::all(admin.clone());
    for_each_concurrently(names.iter().enumerate(), |(i, name)| {
        let api = nodes_api.clone();
        let node = kubelet_like_node(name, i, products[usize::from(a100(i))]);
        async move { api.create(&PostParams::default(), &node).await.map(|_| ()) }
    })
    .await?;
    run_ok(cp.kubectl().args(["create", "namespace", WORKLOAD_NAMESPACE]))?;
    wait_for_default_service_account(cp).await?;
    let pods_api: Api<Pod> = Api::namespaced(admin.clone(), WORKLOAD_NAMESPACE);
    for_each_concurrently(names.iter().enumerate(), |(i, name)| {
        let api = pods_api.clone();
        let gpu_pod = workload_pod(&format!("train-{i:05}"), name, Some(1 + i % 8));
        let cpu_pod = (i % 2 == 0).then(|| workload_pod(&format!("sidecar-{i:05}"), name, None));
        async move {
            api.create(&PostParams::default(), &gpu_pod).await?;
            if let Some(p) = cpu_pod {
                api.create(&PostParams::default(), &p).await?;
            }
            Ok::<_, kube::Error>(())
        }
    })
    .await?;
    Ok(names.len() + names.len().div_ceil(2))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_plan_makes_two_percent_of_nodes_fatal_and_a_tenth_noisy() {
        let plan: Vec<_> = (0..1000).map(Trouble::of).collect();
        assert_eq!(plan.iter().filter(|t| t.fatal()).count(), 20);
        assert_eq!(plan.iter().filter(|t| **t == Trouble::AppFaults).count(), 100);
        assert_eq!(plan.iter().filter(|t| **t == Trouble::None).count(), 860);
        assert_eq!((0..1000).filter(|&i| a100(i)).count(), 200);
    }

    #[test]
    fn generated_nodes_and_pods_are_well_formed() {
        let node = kubelet_like_node("fleet-00004", 4, "NVIDIA A100-SXM4-80GB");
        assert_eq!(node.metadata.name.as_deref(), Some("fleet-00004"));
        let status = node.status.expect("status");
        assert_eq!(status.images.map(|i| i.len()), Some(40));
        assert_eq!(status.allocatable.and_then(|a| a.get("nvidia.com/gpu").cloned()).map(|q| q.0), Some("8".into()));
        let pod = workload_pod("train-00001", "fleet-00001", Some(2));
        let spec = pod.spec.expect("spec");
        assert_eq!(spec.node_name.as_deref(), Some("fleet-00001"));
        let limits = spec.containers[0].resources.as_ref().and_then(|r| r.limits.clone()).expect("limits");
        assert_eq!(limits.get("nvidia.com/gpu").map(|q| q.0.as_str()), Some("2"));
        assert_eq!(node_names(3), ["fleet-00000", "fleet-00001", "fleet-00002"]);
    }
}
