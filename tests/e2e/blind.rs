//! A probe that cannot see everything keeps reporting what it can, on the real control plane with the real
//! operator: without an NVML library the node is Unknown with reason `NvmlUnavailable`; without `/dev/kmsg` the
//! XIDs come from NVML events only and XIDErrors says `KernelLogUnavailable`. Both are Warning Events, and neither
//! probe crash-loops.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use gpuscope_crds::GpuNodeStatus;
use gpuscope_crds::gpu_node_status::DataSource;
use gpuscope_tests::control_plane::{INSTALL_NAMESPACE, workspace_root};
use gpuscope_tests::fixtures::create_node;
use gpuscope_tests::{ControlPlane, Identity, Process, eventually, free_port, unique_name, workspace_binary};
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::api::{Api, ListParams};

use crate::operator::shared_with_operator;

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// The real probe for `node`, with `backend` flags and the kernel log at `kmsg`.
fn probe(
    cp: &ControlPlane,
    node: &str,
    dir: &Path,
    backend: &[&std::ffi::OsStr],
    kmsg: &Path,
) -> Result<Process, Box<dyn std::error::Error>> {
    std::fs::write(dir.join("boot_id"), b"5f0c1f8e-2d2b-4d6e-9c51-1f2e3d4c5b6a\n")?;
    let mut cmd = Command::new(workspace_binary("gpuscope-probe")?);
    cmd.env("KUBECONFIG", cp.kubeconfig_for(Identity::Probe))
        .env("RUST_LOG", "info,gpuscope_probe=debug")
        .args(["--node-name", node, "--namespace", INSTALL_NAMESPACE])
        .args(backend)
        .arg("--kmsg-path")
        .arg(kmsg)
        .arg("--boot-id-file")
        .arg(dir.join("boot_id"))
        .arg("--spool-dir")
        .arg(dir.join("spool"))
        .args(["--sample-interval", "1s", "--lease-interval", "2s", "--nvml-retry-interval", "1s"])
        .arg("--listen")
        .arg(format!("127.0.0.1:{}", free_port()?));
    Ok(Process::spawn(format!("gpuscope-probe ({node})"), cmd, dir.join("probe.log"))?)
}

fn condition(o: &GpuNodeStatus, type_: &str) -> Option<Condition> {
    o.status.as_ref()?.conditions.as_ref()?.iter().find(|c| c.type_ == type_).cloned()
}

async fn warning_event(client: &kube::Client, regarding: &str, reason: &str) -> Result<Event, String> {
    let events: Api<Event> = Api::all(client.clone());
    eventually(&format!("a Warning Event {reason} about {regarding}"), Duration::from_secs(20), || async {
        events.list(&ListParams::default()).await.ok()?.items.into_iter().find(|e| {
            e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(regarding)
                && e.type_.as_deref() == Some("Warning")
                && e.reason.as_deref() == Some(reason)
        })
    })
    .await
    .map_err(|e| e.to_string())
}

#[tokio::test]
async fn a_probe_without_an_nvml_library_reports_the_node_unknown_nvml_unavailable() -> TestResult {
    let cp = shared_with_operator()?;
    let client = cp.client().await?;
    let node = unique_name("nonvml");
    create_node(&client, &node).await?;
    let dir = tempfile::tempdir()?;
    std::fs::write(dir.path().join("kmsg"), b"")?;
    let missing = dir.path().join("no-driver/libnvidia-ml.so.1");
    let backend = ["--backend".as_ref(), "nvml".as_ref(), "--nvml-library".as_ref(), missing.as_os_str()];
    let mut probe = probe(cp, &node, dir.path(), &backend, &dir.path().join("kmsg"))?;
    let api: Api<GpuNodeStatus> = Api::all(client.clone());
    let object = eventually("GPUHealthy NvmlUnavailable", Duration::from_secs(30), || async {
        api.get_opt(&node)
            .await
            .ok()?
            .filter(|o| condition(o, "GPUHealthy").is_some_and(|c| c.reason == "NvmlUnavailable"))
    })
    .await
    .map_err(|e| format!("{e}\n{}", probe.log_tail(30)))?;
    let status = object.status.clone().ok_or("no status")?;
    let healthy = condition(&object, "GPUHealthy").ok_or("no GPUHealthy")?;
    assert_eq!(healthy.status, "Unknown");
    assert!(healthy.message.contains("no-driver/libnvidia-ml.so.1"), "names what failed: {}", healthy.message);
    assert_eq!(status.health, Some(gpuscope_crds::Health::Unknown));
    assert_eq!((status.gpus.as_ref(), status.gpu_count), (None, None), "no inventory, not an empty one");
    assert!(status.source_unavailable(DataSource::Nvml).is_some_and(|m| m.contains("libnvidia-ml")));
    for type_ in ["MemoryErrors", "Thermal"] {
        let c = condition(&object, type_).ok_or(type_)?;
        assert_eq!((c.status.as_str(), c.reason.as_str()), ("Unknown", "NvmlUnavailable"), "{type_}");
    }
    let nodes: Api<Node> = Api::all(client.clone());
    let on_node = eventually("the Node condition", Duration::from_secs(10), || async {
        nodes.get(&node).await.ok()?.status?.conditions?.into_iter().find(|c| c.type_ == "GPUHealthy")
    })
    .await?;
    assert_eq!((on_node.status.as_str(), on_node.reason.as_deref()), ("Unknown", Some("NvmlUnavailable")));
    warning_event(&client, &node, "NvmlUnavailable").await?;
    // Still running, not crash-looping, and still renewing its Lease (ProbeReporting True).
    tokio::time::sleep(Duration::from_secs(3)).await;
    probe.check_running()?;
    let reporting = condition(&api.get(&node).await?, "ProbeReporting").ok_or("no ProbeReporting")?;
    assert_eq!(reporting.status, "True");
    Ok(())
}

#[tokio::test]
async fn a_probe_without_the_kernel_log_says_xids_come_from_nvml_only() -> TestResult {
    let cp = shared_with_operator()?;
    let client = cp.client().await?;
    let node = unique_name("nokmsg-op");
    create_node(&client, &node).await?;
    let dir = tempfile::tempdir()?;
    let scenario = workspace_root().join("node-probe/scenarios/healthy-8x-h100.yaml");
    let backend = ["--backend".as_ref(), "simulated".as_ref(), "--scenario".as_ref(), scenario.as_os_str()];
    let mut probe = probe(cp, &node, dir.path(), &backend, &dir.path().join("no-such-kmsg"))?;
    let api: Api<GpuNodeStatus> = Api::all(client.clone());
    let object = eventually("XIDErrors KernelLogUnavailable", Duration::from_secs(30), || async {
        api.get_opt(&node)
            .await
            .ok()?
            .filter(|o| condition(o, "XIDErrors").is_some_and(|c| c.reason == "KernelLogUnavailable"))
    })
    .await
    .map_err(|e| format!("{e}\n{}", probe.log_tail(30)))?;
    let xids = condition(&object, "XIDErrors").ok_or("no XIDErrors")?;
    assert_eq!(xids.status, "Unknown");
    assert!(xids.message.contains("no-such-kmsg"), "names what failed: {}", xids.message);
    assert!(xids.message.contains("only XIDs from NVML events are seen"), "{}", xids.message);
    let healthy = condition(&object, "GPUHealthy").ok_or("no GPUHealthy")?;
    assert_eq!((healthy.status.as_str(), healthy.reason.as_str()), ("True", "Healthy"), "NVML still judges the GPUs");
    let status = object.status.ok_or("no status")?;
    assert!(status.source_unavailable(DataSource::KernelLog).is_some());
    assert_eq!(status.gpu_count, Some(8));
    warning_event(&client, &node, "KernelLogUnavailable").await?;
    probe.check_running()?;
    Ok(())
}
