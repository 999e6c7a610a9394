//! The real `gpuscope-probe` binary against the real control plane, under its own RBAC identity: it creates and
//! fills its GpuNodeStatus, delivers XIDs fast and exactly once (through API outages and restarts), writes only
//! its Lease when nothing changes, and turns floods into counts.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use gpuscope_crds::GpuNodeStatus;
use gpuscope_tests::control_plane::{INSTALL_NAMESPACE, workspace_root};
use gpuscope_tests::fixtures::{create_node, install_rbac};
use gpuscope_tests::{
    ControlPlane, Identity, Process, eventually, free_port, http_get, metric_value, run_err, unique_name,
    workspace_binary,
};
use k8s_openapi::api::coordination::v1::Lease;
use kube::api::Api;

type TestResult = Result<(), Box<dyn std::error::Error>>;

fn shared_with_rbac() -> Result<&'static ControlPlane, String> {
    static DONE: OnceLock<Result<(), String>> = OnceLock::new();
    let cp = ControlPlane::shared().map_err(|e| e.to_string())?;
    DONE.get_or_init(|| install_rbac(cp, &["probe.yaml"])).clone()?;
    Ok(cp)
}

/// A probe's files and settings.
struct ProbeSetup {
    node: String,
    dir: tempfile::TempDir,
    listen: SocketAddr,
    lease_interval: &'static str,
    refresh_interval: &'static str,
    /// Backend flags; the simulated healthy H100 node by default.
    backend: Vec<std::ffi::OsString>,
    /// Kernel log to follow instead of the setup's file.
    kmsg_override: Option<PathBuf>,
}

impl ProbeSetup {
    fn new(node: &str) -> Result<ProbeSetup, Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        std::fs::write(dir.path().join("kmsg"), b"")?;
        std::fs::write(dir.path().join("boot_id"), b"5f0c1f8e-2d2b-4d6e-9c51-1f2e3d4c5b6a\n")?;
        Ok(ProbeSetup {
            node: node.to_string(),
            dir,
            listen: SocketAddr::from(([127, 0, 0, 1], free_port()?)),
            lease_interval: "30s",
            refresh_interval: "10m",
            backend: vec![
                "--backend".into(),
                "simulated".into(),
                "--scenario".into(),
                workspace_root().join("node-probe/scenarios/healthy-8x-h100.yaml").into(),
            ],
            kmsg_override: None,
        })
    }

    fn kmsg(&self) -> PathBuf {
        self.dir.path().join("kmsg")
    }

    fn append_kmsg(&self, lines: &str) -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new().append(true).open(self.kmsg())?;
        f.write_all(lines.as_bytes())
    }

    fn start(&self, cp: &ControlPlane) -> Result<Process, Box<dyn std::error::Error>> {
        let mut cmd = Command::new(workspace_binary("gpuscope-probe")?);
        cmd.env("KUBECONFIG", cp.kubeconfig_for(Identity::Probe))
            .env("RUST_LOG", "info,gpuscope_probe=debug")
            .args(["--node-name", &self.node, "--namespace", INSTALL_NAMESPACE])
            .args(&self.backend)
            .arg("--kmsg-path")
            .arg(self.kmsg_override.clone().unwrap_or_else(|| self.kmsg()))
            .arg("--boot-id-file")
            .arg(self.dir.path().join("boot_id"))
            .arg("--spool-dir")
            .arg(self.dir.path().join("spool"))
            .args(["--sample-interval", "1s", "--lease-interval", self.lease_interval])
            .args(["--refresh-interval", self.refresh_interval])
            .arg("--listen")
            .arg(self.listen.to_string());
        let log = self.dir.path().join(format!("probe-{}.log", Instant::now().elapsed().as_nanos()));
        Ok(Process::spawn(format!("gpuscope-probe ({})", self.node), cmd, log)?)
    }

    async fn metric(&self, name: &str) -> Option<f64> {
        let (_, body) = http_get(self.listen, "/metrics").await.ok()?;
        metric_value(&body, name)
    }
}

fn xid_line(seq: u64, code: u32, text: &str) -> String {
    format!("3,{seq},{},-;NVRM: Xid (PCI:0000:18:00): {code}, pid=4242, name=python3, {text}\n", seq * 1_000)
}

async fn status_of(api: &Api<GpuNodeStatus>, node: &str) -> Option<gpuscope_crds::GpuNodeStatusStatus> {
    api.get_opt(node).await.ok().flatten().and_then(|o| o.status)
}

fn total(status: &gpuscope_crds::GpuNodeStatusStatus, code: u32) -> u64 {
    status.xids.as_ref().map(|x| x.totals.iter().filter(|t| t.code == code).map(|t| t.count).sum()).unwrap_or(0)
}

#[tokio::test]
async fn probe_creates_fills_and_owns_its_gpu_node_status() -> TestResult {
    let cp = shared_with_rbac()?;
    let admin = cp.client().await?;
    let node_name = unique_name("fill");
    let node = create_node(&admin, &node_name).await?;
    let setup = ProbeSetup::new(&node_name)?;
    let mut probe = setup.start(cp)?;
    let api: Api<GpuNodeStatus> = Api::all(admin.clone());
    let status = eventually("the probe's first write", Duration::from_secs(20), || async {
        status_of(&api, &node_name).await.filter(|s| s.gpu_count.is_some())
    })
    .await
    .map_err(|e| format!("{e}\n{}", probe.log_tail(30)))?;
    assert_eq!(status.gpu_count, Some(8));
    assert_eq!(status.gpus.as_ref().map(Vec::len), Some(8));
    let probe_info = status.probe.ok_or("no probe info")?;
    assert_eq!(probe_info.backend, gpuscope_crds::gpu_node_status::Backend::Simulated);
    assert_eq!(probe_info.boot_id.as_deref(), Some("5f0c1f8e-2d2b-4d6e-9c51-1f2e3d4c5b6a"));
    assert!(status.gpu_model.as_deref().unwrap_or_default().contains("H100"), "{:?}", status.gpu_model);

    let obj = api.get(&node_name).await?;
    let owner = obj.metadata.owner_references.unwrap_or_default();
    assert_eq!(owner.len(), 1);
    assert_eq!((owner[0].kind.as_str(), owner[0].uid.as_str()), ("Node", node.metadata.uid.as_deref().unwrap_or("")));
    let leases: Api<Lease> = Api::namespaced(admin.clone(), INSTALL_NAMESPACE);
    let lease = leases.get(&format!("gpuscope-probe-{node_name}")).await?;
    assert_eq!(lease.spec.and_then(|s| s.holder_identity).as_deref(), Some(node_name.as_str()));

    let (code, _) = http_get(setup.listen, "/readyz").await?;
    assert_eq!(code, 200, "ready after the first successful write");
    assert_eq!(probe.terminate(Duration::from_secs(10)), Some(0), "SIGTERM is a clean exit");
    Ok(())
}

#[tokio::test]
async fn probe_reads_the_real_nvml_path_through_the_fake_library_and_merges_nvml_and_kernel_xids() -> TestResult {
    let cp = shared_with_rbac()?;
    let admin = cp.client().await?;
    let node_name = unique_name("nvml");
    create_node(&admin, &node_name).await?;
    let mut setup = ProbeSetup::new(&node_name)?;
    let fake = gpuscope_tests::fake_nvml::FakeNvml::build(
        &setup.dir.path().join("nvml"),
        &[],
        "device_count=1\ndriver_version=570.86.15\ncuda_driver_version=12080\n\
         gpu.0.uuid=GPU-5a4c2e1b-8d3f-4e7a-b6c0-9f1d2a8e5c73\ngpu.0.name=NVIDIA H100 80GB HBM3\n\
         gpu.0.pci_bus_id=00000000:18:00.0\ngpu.0.temperature=47\ngpu.0.remapped_rows=not_supported\n",
    )?;
    setup.backend = vec!["--backend".into(), "nvml".into(), "--nvml-library".into(), fake.library().into()];
    let probe = setup.start(cp)?;
    let api: Api<GpuNodeStatus> = Api::all(admin);
    let status = eventually("the NVML inventory", Duration::from_secs(20), || async {
        status_of(&api, &node_name).await.filter(|s| s.gpu_count == Some(1))
    })
    .await
    .map_err(|e| format!("{e}\n{}", probe.log_tail(30)))?;
    let gpu = &status.gpus.as_ref().ok_or("no gpus")?[0];
    assert_eq!(gpu.uuid, "GPU-5a4c2e1b-8d3f-4e7a-b6c0-9f1d2a8e5c73");
    assert_eq!(gpu.pci_bus_id.as_deref(), Some("0000:18:00.0"));
    assert_eq!(gpu.temperature_celsius, Some(47));
    assert_eq!(gpu.remapped_rows, None);
    assert!(status.unsupported_fields.unwrap_or_default().iter().any(|f| f == "gpus.remappedRows"));
    assert_eq!(status.driver_version.as_deref(), Some("570.86.15"));
    assert_eq!(status.probe.map(|p| p.backend), Some(gpuscope_crds::gpu_node_status::Backend::Nvml));

    // The driver reports one XID 79 both as an NVML event and as a kernel line: one record.
    fake.append_xid(0, 79)?;
    // The kernel stamps records with the monotonic clock: "now" for a line logged now.
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime only writes the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    let now_us = ts.tv_sec as u64 * 1_000_000 + ts.tv_nsec as u64 / 1_000;
    setup.append_kmsg(&format!(
        "3,1,{now_us},-;NVRM: Xid (PCI:0000:18:00): 79, pid='<unknown>', name=<unknown>, GPU has fallen off the bus.\n"
    ))?;
    let status = eventually("XID 79", Duration::from_secs(10), || async {
        status_of(&api, &node_name).await.filter(|s| total(s, 79) >= 1)
    })
    .await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let status = status_of(&api, &node_name).await.unwrap_or(status);
    assert_eq!(total(&status, 79), 1, "two reports of one XID:\n{}", probe.log_tail(20));
    let event = &status.xids.ok_or("no history")?.recent[0];
    assert_eq!(event.gpu_uuid.as_deref(), Some("GPU-5a4c2e1b-8d3f-4e7a-b6c0-9f1d2a8e5c73"));
    assert_eq!(event.message.as_deref(), Some("GPU has fallen off the bus."), "the kernel's text enriches NVML's");
    Ok(())
}

#[tokio::test]
async fn an_unreadable_kernel_log_is_reported_and_the_probe_keeps_going() -> TestResult {
    let cp = shared_with_rbac()?;
    let admin = cp.client().await?;
    let node_name = unique_name("nokmsg");
    create_node(&admin, &node_name).await?;
    let mut setup = ProbeSetup::new(&node_name)?;
    setup.kmsg_override = Some(setup.dir.path().join("no-such-kmsg"));
    let mut probe = setup.start(cp)?;
    let api: Api<GpuNodeStatus> = Api::all(admin);
    let status = eventually("a status without the kernel log", Duration::from_secs(20), || async {
        status_of(&api, &node_name).await.filter(|s| s.gpu_count.is_some())
    })
    .await
    .map_err(|e| format!("{e}\n{}", probe.log_tail(30)))?;
    let unsupported = status.unsupported_fields.unwrap_or_default();
    assert!(unsupported.iter().any(|f| f == "xids.kernelLog"), "{unsupported:?}");
    assert_eq!(status.gpu_count, Some(8));
    probe.check_running()?;
    assert!(probe.log_tail(50).contains("no-such-kmsg"), "the log names the path it tried");
    Ok(())
}

#[tokio::test]
async fn an_appended_xid_line_reaches_the_history_within_a_second() -> TestResult {
    let cp = shared_with_rbac()?;
    let admin = cp.client().await?;
    let node_name = unique_name("latency");
    create_node(&admin, &node_name).await?;
    let setup = ProbeSetup::new(&node_name)?;
    let probe = setup.start(cp)?;
    let api: Api<GpuNodeStatus> = Api::all(admin);
    eventually("the first write", Duration::from_secs(20), || async { status_of(&api, &node_name).await })
        .await
        .map_err(|e| format!("{e}\n{}", probe.log_tail(30)))?;

    let appended = Instant::now();
    setup.append_kmsg(&xid_line(1, 79, "GPU has fallen off the bus."))?;
    let status = eventually("XID 79 in the history", Duration::from_secs(5), || async {
        status_of(&api, &node_name).await.filter(|s| total(s, 79) == 1)
    })
    .await?;
    let latency = appended.elapsed();
    assert!(latency < Duration::from_secs(1), "XID took {latency:?} to reach the API");
    let xids = status.xids.ok_or("no history")?;
    assert_eq!(xids.last_code, Some(79));
    let event = &xids.recent[0];
    assert_eq!(event.pci_bus_id, "0000:18:00.0");
    assert_eq!(event.process_name.as_deref(), Some("python3"));
    assert_eq!(event.message.as_deref(), Some("GPU has fallen off the bus."));
    assert_eq!(event.sequence, Some(1));
    // A GPU the simulated inventory knows at that address gets its UUID attached.
    assert_eq!(event.gpu_uuid.as_deref(), Some("GPU-3f9c1e72-5b0d-4c8e-a1f4-7d2b9e6c0a15"), "{event:?}");
    Ok(())
}

#[tokio::test]
async fn a_probe_restart_does_not_duplicate_history_even_without_its_spool() -> TestResult {
    let cp = shared_with_rbac()?;
    let admin = cp.client().await?;
    let node_name = unique_name("restart");
    create_node(&admin, &node_name).await?;
    let setup = ProbeSetup::new(&node_name)?;
    setup.append_kmsg(&(1..=3).map(|s| xid_line(s, 13, "Graphics Exception")).collect::<String>())?;
    let api: Api<GpuNodeStatus> = Api::all(admin);
    let three = || async { status_of(&api, &node_name).await.filter(|s| total(s, 13) == 3) };

    let mut probe = setup.start(cp)?;
    eventually("3 XIDs", Duration::from_secs(20), three).await.map_err(|e| format!("{e}\n{}", probe.log_tail(30)))?;
    probe.terminate(Duration::from_secs(10));
    // Restart: the kernel log is re-read from the start (backfill); the spool says what was recorded.
    let mut probe = setup.start(cp)?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let status = status_of(&api, &node_name).await.ok_or("no status")?;
    assert_eq!(total(&status, 13), 3, "restart re-counted:\n{}", probe.log_tail(20));
    probe.terminate(Duration::from_secs(10));

    // Spool lost (a new disk): the probe adopts the history from the API instead of counting again.
    std::fs::remove_dir_all(setup.dir.path().join("spool"))?;
    setup.append_kmsg(&xid_line(4, 13, "Graphics Exception"))?;
    let probe = setup.start(cp)?;
    let status = eventually("the 4th XID", Duration::from_secs(20), || async {
        status_of(&api, &node_name).await.filter(|s| total(s, 13) >= 4)
    })
    .await
    .map_err(|e| format!("{e}\n{}", probe.log_tail(30)))?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let status = status_of(&api, &node_name).await.unwrap_or(status);
    assert_eq!(total(&status, 13), 4, "exactly the four XIDs of the log:\n{}", probe.log_tail(20));
    Ok(())
}

#[tokio::test]
async fn with_nothing_changing_only_the_lease_is_written() -> TestResult {
    let cp = shared_with_rbac()?;
    let admin = cp.client().await?;
    let node_name = unique_name("quiet");
    create_node(&admin, &node_name).await?;
    let mut setup = ProbeSetup::new(&node_name)?;
    setup.lease_interval = "1s";
    let probe = setup.start(cp)?;
    let api: Api<GpuNodeStatus> = Api::all(admin.clone());
    eventually("the first write", Duration::from_secs(20), || async { status_of(&api, &node_name).await })
        .await
        .map_err(|e| format!("{e}\n{}", probe.log_tail(30)))?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let version = api.get(&node_name).await?.metadata.resource_version;
    let writes = setup.metric("gpuscope_probe_status_writes_total").await.ok_or("no metric")?;
    let renewals = setup.metric("gpuscope_probe_lease_renewals_total").await.ok_or("no metric")?;

    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(api.get(&node_name).await?.metadata.resource_version, version, "GpuNodeStatus was rewritten");
    assert_eq!(setup.metric("gpuscope_probe_status_writes_total").await, Some(writes));
    let renewed = setup.metric("gpuscope_probe_lease_renewals_total").await.ok_or("no metric")? - renewals;
    assert!(renewed >= 3.0, "expected a renewal per second, got {renewed} in 5 s");
    Ok(())
}

#[tokio::test]
async fn a_flood_of_identical_xid_lines_is_a_count_not_a_write_each() -> TestResult {
    let cp = shared_with_rbac()?;
    let admin = cp.client().await?;
    let node_name = unique_name("flood");
    create_node(&admin, &node_name).await?;
    let setup = ProbeSetup::new(&node_name)?;
    let probe = setup.start(cp)?;
    let api: Api<GpuNodeStatus> = Api::all(admin);
    eventually("the first write", Duration::from_secs(20), || async { status_of(&api, &node_name).await })
        .await
        .map_err(|e| format!("{e}\n{}", probe.log_tail(30)))?;
    let before = setup.metric("gpuscope_probe_status_writes_total").await.ok_or("no metric")?;
    let flood: String =
        (1..=100_000u64).map(|s| xid_line(s, 45, "Ch 00000010, errorString CTX SWITCH TIMEOUT")).collect();
    setup.append_kmsg(&flood)?;
    eventually("all 100,000 counted", Duration::from_secs(60), || async {
        status_of(&api, &node_name).await.filter(|s| total(s, 45) == 100_000)
    })
    .await
    .map_err(|e| format!("{e}\n{}", probe.log_tail(30)))?;
    let writes = setup.metric("gpuscope_probe_status_writes_total").await.ok_or("no metric")? - before;
    assert!(writes <= 30.0, "100,000 lines took {writes} writes");
    let status = status_of(&api, &node_name).await.ok_or("no status")?;
    assert_eq!(status.xids.map(|x| x.recent.len()), Some(32), "the raw ring stays bounded");
    Ok(())
}

#[tokio::test]
async fn xids_seen_while_the_api_server_is_down_arrive_exactly_once() -> TestResult {
    // A private control plane: this test stops its API server.
    let cp = ControlPlane::start()?;
    cp.apply_crds()?;
    install_rbac(&cp, &["probe.yaml"])?;
    let admin = cp.client().await?;
    let node_name = unique_name("outage");
    create_node(&admin, &node_name).await?;
    let setup = ProbeSetup::new(&node_name)?;
    let probe = setup.start(&cp)?;
    let api: Api<GpuNodeStatus> = Api::all(admin.clone());
    eventually("the first write", Duration::from_secs(20), || async { status_of(&api, &node_name).await })
        .await
        .map_err(|e| format!("{e}\n{}", probe.log_tail(30)))?;

    cp.stop_apiserver();
    setup.append_kmsg(&(1..=3).map(|s| xid_line(s, 48, "An uncorrectable double bit error")).collect::<String>())?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    cp.start_apiserver()?;
    let admin = cp.client().await?;
    let api: Api<GpuNodeStatus> = Api::all(admin);
    let status = eventually("the XIDs from the outage", Duration::from_secs(60), || async {
        status_of(&api, &node_name).await.filter(|s| total(s, 48) >= 3)
    })
    .await
    .map_err(|e| format!("{e}\n{}", probe.log_tail(30)))?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let status = status_of(&api, &node_name).await.unwrap_or(status);
    assert_eq!(total(&status, 48), 3);
    let seqs: Vec<Option<u64>> =
        status.xids.map(|x| x.recent.iter().filter(|e| e.code == 48).map(|e| e.sequence).collect()).unwrap_or_default();
    assert_eq!(seqs, vec![Some(3), Some(2), Some(1)]);
    Ok(())
}

#[tokio::test]
async fn the_probe_identity_may_do_what_it_needs_and_nothing_more() -> TestResult {
    let cp = shared_with_rbac()?;
    let kubeconfig = cp.kubeconfig_for(Identity::Probe);
    let can = |args: &[&str]| gpuscope_tests::can_i(&kubeconfig, args);
    for allowed in [
        &["get", "gpunodestatuses.gpuscope.dev"][..],
        &["create", "gpunodestatuses.gpuscope.dev"],
        &["patch", "gpunodestatuses.gpuscope.dev", "--subresource=status"],
        &["get", "nodes"],
        &["patch", "leases.coordination.k8s.io", "-n", INSTALL_NAMESPACE],
        &["create", "leases.coordination.k8s.io", "-n", INSTALL_NAMESPACE],
    ] {
        assert!(can(allowed)?, "the probe needs {allowed:?}");
    }
    for denied in [
        &["delete", "nodes"][..],
        &["patch", "nodes"],
        &["list", "nodes"],
        &["delete", "gpunodestatuses.gpuscope.dev"],
        &["patch", "gpunodestatuses.gpuscope.dev"],
        &["list", "secrets", "-A"],
        &["create", "pods", "-n", INSTALL_NAMESPACE],
        &["patch", "leases.coordination.k8s.io", "-n", "default"],
        &["patch", "gpuhealthpolicies.gpuscope.dev"],
    ] {
        assert!(!can(denied)?, "the probe must not be allowed {denied:?}");
    }
    // And for real: deleting a Node as the probe is refused by the server.
    let err = run_err(Command::new("kubectl").arg("--kubeconfig").arg(&kubeconfig).args(["delete", "node", "x"]))?;
    assert!(err.contains("forbidden"), "{err}");
    Ok(())
}
