//! Which workloads a GPU fault hit: the probe reads the kubelet's pod-resources API (a fake kubelet serving the
//! kubelet's v1 gRPC wire format on a unix socket), binds pods to GPUs in its GpuNodeStatus, attributes XIDs to the
//! pods that held the GPU, and keeps that attribution after the pod is gone. Failures of the kubelet socket are
//! reported and never stop XID recording.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use gpuscope_crds::GpuNodeStatus;
use gpuscope_crds::gpu_node_status::GpuNodeStatusStatus;
use gpuscope_probe::pod_resources::{KubeletClient, PodResourcesError};
use gpuscope_tests::control_plane::{INSTALL_NAMESPACE, workspace_root};
use gpuscope_tests::fake_kubelet::{Behaviour, FakeKubelet, device_pod, gpu_pod};
use gpuscope_tests::fixtures::{create_node, install_rbac};
use gpuscope_tests::{
    ControlPlane, Identity, Process, eventually, free_port, http_get, metric_value, unique_name, workspace_binary,
};
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{Api, DeleteParams, PostParams};

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// GPU 0 and GPU 3 of node-probe/scenarios/healthy-8x-h100.yaml.
pub const GPU0: &str = "GPU-3f9c1e72-5b0d-4c8e-a1f4-7d2b9e6c0a15";
pub const GPU3: &str = "GPU-1d7b9a08-3c6e-4b5f-b2a9-0e8c4f1d6a97";
/// GPU 3's PCI bus id, as its kernel-log lines name it.
pub const GPU3_PCI: &str = "0000:5d:00";
/// GPU 1 and GPU 2 of the same scenario.
pub const GPU1: &str = "GPU-8a41d6b3-0e97-4f2a-9c5d-1b7e3f0a8d62";
pub const GPU1_PCI: &str = "0000:2a:00";
pub const GPU2: &str = "GPU-c25e0f49-7a1b-4d63-8e0c-5f9a2d4b7e31";
pub const GPU4: &str = "GPU-6e0a3c51-9d2f-4a7b-8c1e-4b5d7f9a0c28";
/// GPU 5's UUID and bus.
pub const GPU5: &str = "GPU-b4f8e217-2a5c-4e9d-a0b3-6c1f8d2e5a74";
pub const GPU5_PCI: &str = "0000:ab:00";

#[tokio::test]
async fn the_kubelet_client_reads_allocations_and_names_every_failure() -> TestResult {
    let dir = tempfile::tempdir()?;
    let socket = dir.path().join("kubelet.sock");
    let client = KubeletClient::new(&socket, Duration::from_millis(700));
    // No socket yet.
    let missing = client.list().await.expect_err("no socket");
    assert!(matches!(missing, PodResourcesError::SocketMissing(_)), "{missing}");
    assert!(missing.to_string().contains("--pod-resources-socket"), "the error says the fix: {missing}");

    let kubelet = FakeKubelet::start(&socket).await?;
    kubelet.set_pods(vec![
        gpu_pod("ml", "train-0", "trainer", &[GPU3]),
        device_pod("ml", "infer-a", "server", "nvidia.com/mig-1g.10gb", &["MIG-0e0a5b8c-1111-2222-3333-444455556666"]),
    ]);
    kubelet.set_allocatable(vec![gpuscope_probe::pod_resources::proto::ContainerDevices {
        resource_name: "nvidia.com/gpu".into(),
        device_ids: vec![GPU0.into(), GPU3.into()],
    }]);
    let list = client.list().await?;
    assert_eq!(list.pod_resources.len(), 2);
    assert_eq!(list.pod_resources[0].containers[0].devices[0].device_ids, [GPU3]);
    let allocatable = client.allocatable().await?.ok_or("allocatable served")?;
    assert_eq!(allocatable.devices[0].device_ids.len(), 2);

    kubelet.set_behaviour(Behaviour::Slow(Duration::from_secs(3)));
    let slow = client.list().await.expect_err("too slow");
    assert!(matches!(slow, PodResourcesError::Timeout { .. }), "{slow}");

    kubelet.set_behaviour(Behaviour::Garbage);
    let garbage = client.list().await.expect_err("garbage");
    assert!(matches!(garbage, PodResourcesError::Malformed { .. }), "{garbage}");

    kubelet.set_behaviour(Behaviour::Unimplemented);
    let old = client.list().await.expect_err("unimplemented");
    assert!(matches!(old, PodResourcesError::Unimplemented { .. }), "{old}");
    assert_eq!(client.allocatable().await?, None, "an unserved GetAllocatableResources is not an error");

    kubelet.set_behaviour(Behaviour::Normal);
    assert_eq!(client.list().await?.pod_resources.len(), 2);
    kubelet.remove_socket()?;
    let gone = client.list().await.expect_err("socket gone");
    assert!(matches!(gone, PodResourcesError::SocketMissing(_)), "{gone}");

    // A socket nobody listens on (a kubelet restarting): a connect error, not a hang.
    drop(kubelet);
    let stale = dir.path().join("stale.sock");
    drop(std::os::unix::net::UnixListener::bind(&stale)?);
    let refused = KubeletClient::new(&stale, Duration::from_millis(700)).list().await.expect_err("refused");
    assert!(matches!(refused, PodResourcesError::Connect { .. }), "{refused}");
    Ok(())
}

fn shared_with_rbac() -> Result<&'static ControlPlane, String> {
    static DONE: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    let cp = ControlPlane::shared().map_err(|e| e.to_string())?;
    DONE.get_or_init(|| install_rbac(cp, &["probe.yaml"])).clone()?;
    Ok(cp)
}

/// A probe on the simulated healthy H100 node, reading the kubelet at `socket`.
pub struct AttributingProbe {
    /// The probe process.
    pub process: Process,
    /// Its /metrics address.
    pub listen: SocketAddr,
    kmsg: PathBuf,
}

impl AttributingProbe {
    /// Start the probe for `node`, under the probe's RBAC identity, reading the kubelet every second.
    pub fn start(cp: &ControlPlane, node: &str, dir: &Path, socket: &Path) -> Result<Self, Box<dyn std::error::Error>> {
        let kmsg = dir.join("kmsg");
        std::fs::write(&kmsg, b"")?;
        std::fs::write(dir.join("boot_id"), b"7a4e2c1d-0b3f-4e5a-9d8c-6b1a2f3e4d5c\n")?;
        let listen = SocketAddr::from(([127, 0, 0, 1], free_port()?));
        let mut cmd = Command::new(workspace_binary("gpuscope-probe")?);
        cmd.env("KUBECONFIG", cp.kubeconfig_for(Identity::Probe))
            .env("RUST_LOG", "info,gpuscope_probe=debug")
            .args(["--node-name", node, "--namespace", INSTALL_NAMESPACE, "--backend", "simulated", "--scenario"])
            .arg(workspace_root().join("node-probe/scenarios/healthy-8x-h100.yaml"))
            .arg("--pod-resources-socket")
            .arg(socket)
            .args(["--pod-resources-interval", "1s", "--pod-resources-timeout", "1s"])
            .arg("--kmsg-path")
            .arg(&kmsg)
            .arg("--boot-id-file")
            .arg(dir.join("boot_id"))
            .arg("--spool-dir")
            .arg(dir.join("spool"))
            .args(["--sample-interval", "1s", "--lease-interval", "30s", "--refresh-interval", "10m"])
            .arg("--listen")
            .arg(listen.to_string());
        let process = Process::spawn(format!("gpuscope-probe ({node})"), cmd, dir.join("probe.log"))?;
        Ok(AttributingProbe { process, listen, kmsg })
    }

    /// Append kernel-log records.
    pub fn append_kmsg(&self, lines: &str) -> std::io::Result<()> {
        std::fs::OpenOptions::new().append(true).open(&self.kmsg)?.write_all(lines.as_bytes())
    }

    /// One metric's value.
    pub async fn metric(&self, name: &str) -> Option<f64> {
        let (_, body) = http_get(self.listen, "/metrics").await.ok()?;
        metric_value(&body, name)
    }
}

/// A kernel-log record of an XID on the GPU at `pci` (bus form "0000:5d:00").
pub fn xid_line(seq: u64, pci: &str, code: u32, text: &str) -> String {
    format!("3,{seq},{},-;NVRM: Xid (PCI:{pci}): {code}, pid=4242, name=python3, {text}\n", seq * 1_000)
}

/// A Pod bound to `node` (no scheduler or kubelet runs here), created through the API.
pub async fn create_pod(admin: &kube::Client, ns: &str, name: &str, node: &str) -> Result<Pod, kube::Error> {
    let pod: Pod = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": { "name": name, "namespace": ns },
        "spec": {
            "nodeName": node,
            "automountServiceAccountToken": false,
            "containers": [{
                "name": "trainer",
                "image": "registry.example/train:1",
                "resources": { "limits": { "nvidia.com/gpu": "1" } }
            }]
        }
    }))
    .unwrap_or_default();
    Api::<Pod>::namespaced(admin.clone(), ns).create(&PostParams::default(), &pod).await
}

/// Create namespace `ns` (if missing).
pub async fn create_namespace(admin: &kube::Client, ns: &str) -> Result<(), kube::Error> {
    let obj: Namespace = serde_json::from_value(serde_json::json!({ "metadata": { "name": ns } })).unwrap_or_default();
    match Api::<Namespace>::all(admin.clone()).create(&PostParams::default(), &obj).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
        Err(e) => Err(e),
    }
}

async fn status_of(api: &Api<GpuNodeStatus>, node: &str) -> Option<GpuNodeStatusStatus> {
    api.get_opt(node).await.ok().flatten().and_then(|o| o.status)
}

fn pods_on(status: &GpuNodeStatusStatus, uuid: &str) -> Vec<String> {
    status
        .gpus
        .iter()
        .flatten()
        .filter(|g| g.uuid == uuid)
        .flat_map(|g| g.pods.iter().flatten().map(|p| p.key()))
        .collect()
}

#[tokio::test]
async fn the_probe_binds_pods_to_gpus_and_attributes_xids_that_outlive_the_pod() -> TestResult {
    let cp = shared_with_rbac()?;
    crate::mcp::shared_with_rbac()?;
    let admin = cp.client().await?;
    let node = unique_name("bind");
    create_node(&admin, &node).await?;
    let ns = unique_name("ml");
    create_namespace(&admin, &ns).await?;
    let train = create_pod(&admin, &ns, "train-0", &node).await?;
    let train_uid = train.metadata.uid.clone().ok_or("pod uid")?;
    create_pod(&admin, &ns, "app-0", &node).await?;
    create_pod(&admin, &ns, "idle-0", &node).await?;
    create_pod(&admin, &ns, "serve-0", &node).await?;

    let dir = tempfile::tempdir()?;
    let socket = dir.path().join("kubelet.sock");
    let kubelet = FakeKubelet::start(&socket).await?;
    let everyone = |with_train: bool| {
        let mut pods = vec![
            gpu_pod(&ns, "infer-a", "server", &[&format!("{GPU0}::0")]),
            gpu_pod(&ns, "infer-b", "server", &[&format!("{GPU0}::1")]),
            gpu_pod(&ns, "app-0", "trainer", &[GPU1]),
            gpu_pod(&ns, "idle-0", "trainer", &[GPU2]),
            gpu_pod(&ns, "serve-0", "trainer", &[GPU4]),
            gpu_pod(&ns, "legacy", "main", &["7"]),
        ];
        if with_train {
            pods.push(gpu_pod(&ns, "train-0", "trainer", &[GPU3]));
        }
        pods
    };
    kubelet.set_pods(everyone(true));
    let mut probe = AttributingProbe::start(cp, &node, dir.path(), &socket)?;
    let api: Api<GpuNodeStatus> = Api::all(admin.clone());
    let status = eventually("the binding in the GpuNodeStatus", Duration::from_secs(30), || async {
        status_of(&api, &node).await.filter(|s| {
            s.gpus.iter().flatten().any(|g| g.uuid == GPU3 && g.pods.iter().flatten().any(|p| p.uid.is_some()))
        })
    })
    .await
    .map_err(|e| format!("{e}\n{}", probe.process.log_tail(30)))?;
    assert_eq!(pods_on(&status, GPU3), [format!("{ns}/train-0")]);
    let holder = status.gpus.iter().flatten().find(|g| g.uuid == GPU3).and_then(|g| g.pods.clone()).ok_or("pods")?;
    assert_eq!(holder[0].uid.as_deref(), Some(train_uid.as_str()), "the UID from the API server");
    assert_eq!(holder[0].container.as_deref(), Some("trainer"));
    assert_eq!(pods_on(&status, GPU0), [format!("{ns}/infer-a"), format!("{ns}/infer-b")], "a time-sliced GPU");
    let pr = status.pod_resources.clone().ok_or("podResources")?;
    assert_eq!(pr.pod_count, 7);
    let unmapped: Vec<(String, Option<String>)> = pr.unmapped.iter().map(|p| (p.key(), p.device_id.clone())).collect();
    assert_eq!(unmapped, [(format!("{ns}/legacy"), Some("7".to_string()))], "kept as the kubelet said, not dropped");
    assert!(!status.unsupported_fields.iter().flatten().any(|f| f == "podResources"));
    let wide = gpuscope_tests::run_ok(cp.kubectl().args(["get", "gns", &node, "-o", "wide"]))?;
    assert!(wide.contains("GPU PODS") && wide.lines().nth(1).is_some_and(|l| l.contains(" 7 ")), "{wide}");

    // An XID on GPU 3 names the pod that held it; the probe reads the kubelet again at once. XID 13 on GPU 1 is
    // app-0's own fault.
    let calls_before = kubelet.list_calls();
    probe.append_kmsg(&xid_line(1, GPU3_PCI, 79, "GPU has fallen off the bus."))?;
    probe.append_kmsg(&xid_line(2, GPU1_PCI, 13, "Graphics SM Warp Exception on (GPC 0, TPC 1, SM 0)"))?;
    let status = eventually("XIDs 79 and 13 attributed", Duration::from_secs(20), || async {
        status_of(&api, &node).await.filter(|s| s.xids.as_ref().is_some_and(|x| x.recent.len() == 2))
    })
    .await
    .map_err(|e| format!("{e}\n{}", probe.process.log_tail(30)))?;
    let xids = status.xids.ok_or("xids")?;
    let xid79 = xids.recent.iter().find(|e| e.code == 79).ok_or("79")?;
    let hit: Vec<(String, Option<String>)> = xid79.pods.iter().flatten().map(|p| (p.key(), p.uid.clone())).collect();
    assert_eq!(hit, [(format!("{ns}/train-0"), Some(train_uid.clone()))]);
    assert_eq!(xid79.pid, Some(4242), "the pid stays beside the pod");
    let total = xids.totals.iter().find(|t| t.code == 79).ok_or("total")?;
    assert_eq!(total.pods.iter().flatten().map(|p| p.key()).collect::<Vec<_>>(), [format!("{ns}/train-0")]);
    assert!(kubelet.list_calls() > calls_before, "the XID asked for a fresh read");

    // The containers end as a kubelet reports it: train-0 4 s after XID 79, app-0 3 s after XID 13, idle-0 too.
    let ended_at = |t: &k8s_openapi::apimachinery::pkg::apis::meta::v1::Time, secs: i64| {
        t.0.checked_add(jiff::SignedDuration::from_secs(secs)).map(|t| t.to_string()).unwrap_or_default()
    };
    let xid13 = xids.recent.iter().find(|e| e.code == 13).ok_or("13")?;
    terminate(&admin, &ns, "train-0", 137, &ended_at(&xid79.time, 4)).await?;
    terminate(&admin, &ns, "app-0", 1, &ended_at(&xid13.time, 3)).await?;
    terminate(&admin, &ns, "idle-0", 2, &ended_at(&xid79.time, 4)).await?;

    // train-0 goes (a Job's TTL): the binding drops it, the XID record keeps it.
    Api::<Pod>::namespaced(admin.clone(), &ns).delete("train-0", &DeleteParams::default().grace_period(0)).await?;
    kubelet.set_pods(everyone(false));
    let status = eventually("the binding without train-0", Duration::from_secs(20), || async {
        status_of(&api, &node).await.filter(|s| pods_on(s, GPU3).is_empty())
    })
    .await?;
    let kept = status.xids.ok_or("xids")?;
    let kept = kept.recent.iter().find(|e| e.code == 79).ok_or("79 kept")?;
    assert_eq!(kept.pods.iter().flatten().map(|p| p.key()).collect::<Vec<_>>(), [format!("{ns}/train-0")]);

    // Was it the hardware? Through a real MCP client over stdio and over HTTP.
    let stdio = crate::mcp::stdio_client(cp, None).await?;
    let (mut http_facade, addr) = crate::mcp::start_http(cp, &[]).await?;
    let http = crate::mcp::http_client(addr, None).await?;
    for (how, client) in [("stdio", &stdio), ("http", &http)] {
        let ask = |pod: &str| serde_json::json!({ "namespace": ns, "pod": pod });
        let gone = eventually(&format!("{how}: train-0 explained"), Duration::from_secs(20), || async {
            crate::mcp::answer(client, "explain_pod_gpu_failure", ask("train-0")).await.ok()
        })
        .await?;
        assert_eq!(gone["finding"], "hardware", "{how}: {gone}");
        assert_eq!(gone["pod"]["exists"], false, "{how}: explained from the XID records after deletion");
        assert_eq!(gone["gpus"][0]["index"], 3, "{how}: {gone}");
        assert_eq!(gone["gpus"][0]["known_from"], "XID attribution", "{how}");
        assert_eq!(gone["xids"][0]["code"], 79, "{how}");
        assert!(gone["verdict"].as_str().unwrap_or("").starts_with("hardware: XID 79"), "{how}: {gone}");
        let app = eventually(&format!("{how}: app-0's exit seen"), Duration::from_secs(20), || async {
            let a = crate::mcp::answer(client, "explain_pod_gpu_failure", ask("app-0")).await.ok()?;
            a["pod"]["termination"].is_object().then_some(a)
        })
        .await?;
        assert_eq!(app["finding"], "likely application", "{how}: {app}");
        assert_eq!(app["xids"][0]["when"], "3s before termination", "{how}: {app}");
        assert_eq!(app["pod"]["termination"]["exit_code"], 1, "{how}");
        let idle = crate::mcp::answer(client, "explain_pod_gpu_failure", ask("idle-0")).await?;
        assert_eq!(idle["finding"], "no GPU evidence", "{how}: {idle}");
        assert_eq!(idle["gpus"][0]["index"], 2, "{how}: {idle}");
        let unknown = crate::mcp::tool_error(client, "explain_pod_gpu_failure", ask("train-9")).await?;
        assert!(unknown.contains(&format!("Did you mean: {ns}/train-0")), "{how}: {unknown}");
        // The allocation tool names the exact GPU of the pod still running.
        let alloc =
            crate::mcp::answer(client, "get_pod_gpu_allocation", serde_json::json!({ "namespace": ns })).await?;
        let row = alloc["pods"].as_array().into_iter().flatten().find(|p| p["name"] == "serve-0").ok_or("serve-0")?;
        assert_eq!(row["binding"], "exact", "{how}: {alloc}");
        assert_eq!(row["held_gpus"][0]["uuid"], GPU4, "{how}: {alloc}");
        assert_eq!(row["held_gpus"][0]["index"], 4, "{how}: {alloc}");
    }
    stdio.cancel().await?;
    http.cancel().await?;
    http_facade.stop(Duration::from_secs(10));
    probe.process.stop(Duration::from_secs(10));
    Ok(())
}

/// Mark a pod's only container `trainer` as ended with `code` at `finished_at`, through the status subresource as
/// a kubelet would.
async fn terminate(admin: &kube::Client, ns: &str, pod: &str, code: i32, finished_at: &str) -> TestResult {
    let patch = serde_json::json!({ "status": {
        "phase": "Failed",
        "containerStatuses": [{
            "name": "trainer", "ready": false, "restartCount": 0, "image": "registry.example/train:1", "imageID": "",
            "state": { "terminated": { "exitCode": code, "reason": "Error", "finishedAt": finished_at } }
        }]
    }});
    Api::<Pod>::namespaced(admin.clone(), ns)
        .patch_status(pod, &kube::api::PatchParams::default(), &kube::api::Patch::Merge(&patch))
        .await?;
    Ok(())
}

#[tokio::test]
async fn a_missing_slow_or_garbled_kubelet_is_reported_and_xids_are_still_recorded() -> TestResult {
    let cp = shared_with_rbac()?;
    let admin = cp.client().await?;
    let node = unique_name("nokubelet");
    create_node(&admin, &node).await?;
    let dir = tempfile::tempdir()?;
    let socket = dir.path().join("kubelet.sock");
    let mut probe = AttributingProbe::start(cp, &node, dir.path(), &socket)?;
    let api: Api<GpuNodeStatus> = Api::all(admin.clone());
    let unsupported = |s: &GpuNodeStatusStatus| s.unsupported_fields.iter().flatten().any(|f| f == "podResources");
    eventually("podResources reported unsupported", Duration::from_secs(20), || async {
        status_of(&api, &node).await.filter(|s| unsupported(s) && s.gpu_count == Some(8))
    })
    .await
    .map_err(|e| format!("{e}\n{}", probe.process.log_tail(30)))?;
    let missing = r#"gpuscope_probe_pod_resources_errors_total{reason="socket_missing"}"#;
    eventually("the error metric", Duration::from_secs(10), || probe.metric(missing)).await?;
    let log = probe.process.log_tail(200);
    assert!(log.contains("--pod-resources-socket"), "the log line names the fix:\n{log}");

    // XIDs do not wait for the kubelet.
    probe.append_kmsg(&xid_line(1, GPU5_PCI, 48, "An uncorrectable double bit error"))?;
    eventually("XID 48 recorded without pods", Duration::from_secs(20), || async {
        status_of(&api, &node)
            .await
            .filter(|s| s.xids.as_ref().is_some_and(|x| x.recent.iter().any(|e| e.code == 48 && e.pods.is_none())))
    })
    .await?;

    // The kubelet comes up: the field clears and the binding appears.
    let kubelet = FakeKubelet::start(&socket).await?;
    kubelet.set_pods(vec![gpu_pod("ml", "job-5", "main", &[GPU5])]);
    eventually("the binding once the kubelet answers", Duration::from_secs(30), || async {
        status_of(&api, &node).await.filter(|s| !unsupported(s) && pods_on(s, GPU5) == ["ml/job-5"])
    })
    .await?;
    // Garbled and slow answers are failures of their own kind; the last binding stays.
    kubelet.set_behaviour(Behaviour::Garbage);
    let malformed = r#"gpuscope_probe_pod_resources_errors_total{reason="malformed"}"#;
    eventually("a malformed answer counted", Duration::from_secs(10), || probe.metric(malformed)).await?;
    kubelet.set_behaviour(Behaviour::Slow(Duration::from_secs(3)));
    let timeout = r#"gpuscope_probe_pod_resources_errors_total{reason="timeout"}"#;
    eventually("a slow answer counted", Duration::from_secs(15), || probe.metric(timeout)).await?;
    let status = status_of(&api, &node).await.ok_or("status")?;
    assert_eq!(pods_on(&status, GPU5), ["ml/job-5"], "the last binding stays while the kubelet fails");
    // The socket disappears: an XID in the meantime is still recorded, attributed to the last binding.
    drop(kubelet);
    probe.append_kmsg(&xid_line(2, GPU5_PCI, 48, "An uncorrectable double bit error"))?;
    eventually("XID 48 counted twice", Duration::from_secs(20), || async {
        status_of(&api, &node)
            .await
            .filter(|s| s.xids.as_ref().is_some_and(|x| x.totals.iter().any(|t| t.code == 48 && t.count == 2)))
    })
    .await?;
    probe.process.check_running()?;
    probe.process.stop(Duration::from_secs(10));
    Ok(())
}
