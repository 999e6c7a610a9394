//! The facade benchmark: N simulated nodes x 8 GPUs loaded into a private control plane the way the probe writes
//! them (its own API calls, under its identity) and judged by the real operator, then the real facade started over
//! streamable HTTP: time until its cache is synced, per tool p50/p99 and response bytes, and the facade's RSS
//! (after the initial list, after the calls, and peak), against the facade issue's targets.
//!
//! Unlike the scale run, no probe loops run while the facade is measured: the figures are the facade's, not the
//! noise of 5,000 Lease renewals sharing two cores with it.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use gpuscope_crds::gpu_node_status::Backend;
use gpuscope_probe::kube_io::{LeaseSettings, apply_status, ensure_object, renew_lease};
use gpuscope_probe::report::{NodeReport, probe_status};
use gpuscope_probe::xid_ledger::XidLedger;

use super::facade_calls::{ToolFigure, measure_tools, print_facade_rss, print_tools, spawn_facade, wait_ready};
use super::fleet_plan::{
    BenchResult, Trouble, a100, boot_id, for_each_concurrently, gpus_of, node_names, node_templates, planned_binding,
    planned_xids, products, register_nodes_and_pods, spawn_operator, wait_converged,
};
use super::stats::ProcSample;
use crate::control_plane::INSTALL_NAMESPACE;
use crate::fixtures::install_rbac;
use crate::{ControlPlane, Identity};

/// Facade benchmark settings.
#[derive(Clone, Debug)]
pub struct FacadeBench {
    /// Fleet sizes, each on a fresh control plane.
    pub sizes: Vec<usize>,
    /// Calls per tool.
    pub calls: usize,
    /// After the last size, keep its control plane (and the facade) up until Ctrl-C, for profiling by hand.
    pub hold: bool,
}

/// What one fleet size measured.
#[derive(Clone, Debug, Default)]
pub struct FacadeReport {
    /// Nodes in the fleet.
    pub nodes: usize,
    /// From the facade's start until `/readyz` said every store is synced.
    pub ready_after: Duration,
    /// Facade RSS, MiB: "synced", "after the calls", "peak".
    pub rss_mib: BTreeMap<&'static str, f64>,
    /// Per tool.
    pub tools: Vec<ToolFigure>,
}

/// Run the facade benchmark for every size, printing the figures.
pub async fn run(cfg: FacadeBench) -> BenchResult<Vec<FacadeReport>> {
    println!(
        "facade benchmark: simulated 8-GPU nodes (80% H100, 20% A100) written with the probe's API calls and judged by \
         the real operator; then the real facade over streamable HTTP"
    );
    let mut reports = Vec::new();
    for (k, &n) in cfg.sizes.iter().enumerate() {
        let (report, running) = one_size(n, cfg.calls).await?;
        print_report(&report);
        if cfg.hold && k + 1 == cfg.sizes.len() {
            println!(
                "\nholding: KUBECONFIG={} (admin; the facade's own: {}), facade at http://{}/mcp; Ctrl-C ends",
                running.cp.kubeconfig().display(),
                running.cp.kubeconfig_for(Identity::Mcp).display(),
                running.facade_addr
            );
            tokio::signal::ctrl_c().await?;
        }
        reports.push(report);
    }
    Ok(reports)
}

/// What one size leaves running until it is dropped: the facade and the operator, then (fields drop in order)
/// the control plane.
struct Running {
    _facade: crate::Process,
    _operator: crate::Process,
    facade_addr: std::net::SocketAddr,
    cp: ControlPlane,
}

async fn one_size(n: usize, calls: usize) -> BenchResult<(FacadeReport, Running)> {
    eprintln!("[bench] {n} nodes: control plane");
    let cp = ControlPlane::start()?;
    cp.apply_crds()?;
    install_rbac(&cp, &["probe.yaml", "operator.yaml", "mcp.yaml"])?;
    let admin = cp.client().await?;
    let probe = cp.client_as(Identity::Probe).await?;
    let templates = node_templates()?;
    let names = node_names(n);
    let loading = Instant::now();
    let pods = register_nodes_and_pods(&cp, &admin, &names, products(&templates)).await?;

    // What each node's probe writes on its first report: the object, its status fields, its Lease (long enough
    // that no probe goes stale while the facade is measured).
    let lease = |name: &str| LeaseSettings {
        namespace: INSTALL_NAMESPACE.into(),
        holder: name.to_string(),
        duration_seconds: 24 * 3600,
    };
    for_each_concurrently(names.iter().enumerate(), |(i, name)| {
        let template = &templates[usize::from(a100(i))];
        let mut gpus = gpus_of(i, &templates);
        let binding = planned_binding(i, &gpus);
        binding.apply_to(&mut gpus);
        let mut ledger = XidLedger::new();
        for gpu in &gpus {
            if let Some(pci) = &gpu.pci_bus_id {
                ledger.learn_uuid(pci, &gpu.uuid);
            }
        }
        for xid in planned_xids(i, &gpus) {
            ledger.record(xid);
        }
        let report = NodeReport {
            driver_version: template.driver_version.clone(),
            cuda_driver_version: template.cuda_driver_version.clone(),
            nvml_version: template.nvml_version.clone(),
            gpus,
            unsupported_fields: template.unsupported_fields.clone(),
            xids: ledger.history(),
            backend: Backend::Simulated,
            boot_id: Some(boot_id(i)),
            pod_resources: Some(binding.status()),
            unavailable_sources: Vec::new(),
        };
        let (client, settings) = (probe.clone(), lease(name));
        async move {
            ensure_object(&client, name).await?;
            apply_status(&client, name, &probe_status(&report, jiff::Timestamp::now())).await?;
            renew_lease(&client, name, &settings, None).await
        }
    })
    .await?;
    eprintln!(
        "[bench] {n} Nodes, {pods} pods, {n} GpuNodeStatus written in {:.1} s; the operator evaluates them",
        loading.elapsed().as_secs_f64()
    );
    let evaluating = Instant::now();
    let operator = spawn_operator(&cp)?;
    let unhealthy = wait_converged(&admin, n, &operator, Duration::from_secs(1800)).await?;
    let planned = (0..n).filter(|&i| Trouble::of(i).fatal()).count();
    eprintln!(
        "[bench] evaluated after {:.1} s ({unhealthy} Unhealthy, {planned} planned); starting the facade",
        evaluating.elapsed().as_secs_f64()
    );

    let (mut facade, addr) = spawn_facade(&cp)?;
    let ready_after = wait_ready(&mut facade, addr, Duration::from_secs(600)).await?;
    let mut report = FacadeReport { nodes: n, ready_after, ..Default::default() };
    if let Some(s) = ProcSample::read(facade.pid()) {
        report.rss_mib.insert("synced", s.rss_kib as f64 / 1024.0);
    }
    let target = names.iter().enumerate().find(|(i, _)| Trouble::of(*i).fatal()).map_or(&names[n / 2], |(_, n)| n);
    report.tools = measure_tools(addr, target, calls).await?;
    if let Some(s) = ProcSample::read(facade.pid()) {
        report.rss_mib.insert("after the calls", s.rss_kib as f64 / 1024.0);
        report.rss_mib.insert("peak", s.peak_rss_kib as f64 / 1024.0);
    }
    Ok((report, Running { _facade: facade, _operator: operator, facade_addr: addr, cp }))
}

fn print_report(r: &FacadeReport) {
    println!(
        "\n{} nodes x 8 GPUs: facade synced {:.2} s after its start; RSS synced {:.1} MiB, after the calls {:.1} MiB",
        r.nodes,
        r.ready_after.as_secs_f64(),
        r.rss_mib.get("synced").copied().unwrap_or_default(),
        r.rss_mib.get("after the calls").copied().unwrap_or_default(),
    );
    print_tools(&r.tools);
    if let Some(peak) = r.rss_mib.get("peak") {
        print_facade_rss(*peak);
    }
}
