//! The scale run: N simulated nodes x 8 GPUs whose probes run the probe's real write path (its `Publisher`) in
//! this one process, against a private control plane, with the real operator and facade running as processes.
//! Reports API writes per second by component, RSS of the API server and of each component, the time until the
//! operator has evaluated every node, and the facade's answer latency and size per tool at that size.

use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use gpuscope_crds::GpuNodeStatus;
use gpuscope_crds::gpu_node_status::Backend;
use gpuscope_crds::observability::Readiness;
use gpuscope_probe::backend::Scenario;
use gpuscope_probe::kube_io::LeaseSettings;
use gpuscope_probe::metrics::ProbeMetrics;
use gpuscope_probe::publisher::{Cadence, Inventory, Publisher};
use gpuscope_probe::spool::Spool;
use kube::api::Api;
use rmcp::ServiceExt as _;
use rmcp::model::{CallToolRequestParams, ClientConfig};
use rmcp::transport::StreamableHttpClientTransport;
use serde_json::json;
use tokio::sync::{mpsc, watch};

use super::stats::{ProcSample, ms, percentile};
use crate::control_plane::{INSTALL_NAMESPACE, workspace_root};
use crate::fixtures::{create_node, install_rbac};
use crate::{ControlPlane, Identity, Process, free_port, http_get, metric_value, workspace_binary};

type BenchResult<T> = Result<T, Box<dyn std::error::Error>>;

/// Scale-run settings.
#[derive(Clone, Debug)]
pub struct FleetBench {
    /// Fleet sizes, each on a fresh control plane.
    pub sizes: Vec<usize>,
    /// Steady-state window over which request rates are measured.
    pub steady: Duration,
    /// Calls per tool for the facade's latency.
    pub calls: usize,
}

/// Run the scale run for every size.
pub async fn run(cfg: FleetBench) -> BenchResult<()> {
    println!("fleet scale run: simulated 8x H100 nodes, the probe's write path in-process, real operator and facade");
    for &n in &cfg.sizes {
        one_size(n, &cfg).await?;
    }
    Ok(())
}

async fn one_size(n: usize, cfg: &FleetBench) -> BenchResult<()> {
    eprintln!("[bench] {n} nodes: control plane");
    let cp = ControlPlane::start()?;
    cp.apply_crds()?;
    install_rbac(&cp, &["probe.yaml", "operator.yaml", "mcp.yaml"])?;
    let admin = cp.client().await?;
    let probe_client = cp.client_as(Identity::Probe).await?;
    let scenario = Scenario::load(&workspace_root().join("node-probe/scenarios/healthy-8x-h100.yaml"))?;
    let template = scenario.state_at(Duration::ZERO, jiff::Timestamp::now());
    let scratch = tempfile::tempdir()?;
    let names: Vec<String> = (0..n).map(|i| format!("fleet-{i:05}")).collect();

    eprintln!("[bench] {n} nodes: registering Nodes");
    let created = Instant::now();
    futures::stream::iter(names.iter().cloned())
        .map(|name| {
            let client = admin.clone();
            async move { create_node(&client, &name).await }
        })
        .buffer_unordered(32)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<Vec<_>, _>>()?;
    eprintln!(
        "[bench] {n} Nodes in {:.1} s; starting the operator, the facade and {n} probe write paths",
        created.elapsed().as_secs_f64()
    );

    let op_listen = SocketAddr::from(([127, 0, 0, 1], free_port()?));
    let mut op = Command::new(workspace_binary("gpuscope-operator")?);
    op.env("KUBECONFIG", cp.kubeconfig_for(Identity::Operator))
        .args(["--namespace", INSTALL_NAMESPACE, "--identity", "bench"])
        .arg("--listen")
        .arg(op_listen.to_string());
    let operator = Process::spawn("gpuscope-operator", op, cp.dir().join("operator.log"))?;
    let mcp_listen = SocketAddr::from(([127, 0, 0, 1], free_port()?));
    let mut mcp = Command::new(workspace_binary("gpuscope-mcp")?);
    mcp.env("KUBECONFIG", cp.kubeconfig_for(Identity::Mcp)).args([
        "--transport",
        "http",
        "--listen",
        &mcp_listen.to_string(),
    ]);
    let facade = Process::spawn("gpuscope-mcp", mcp, cp.dir().join("mcp.log"))?;

    let metrics = ProbeMetrics::default();
    let (stop_tx, stop_rx) = watch::channel(false);
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(n);
    let mut keep_senders = Vec::with_capacity(n);
    for (i, name) in names.iter().enumerate() {
        let mut inventory = Inventory {
            driver_version: template.driver_version.clone(),
            cuda_driver_version: template.cuda_driver_version.clone(),
            nvml_version: template.nvml_version.clone(),
            gpus: template.gpus.clone(),
            unsupported_fields: template.unsupported_fields.clone(),
        };
        for gpu in &mut inventory.gpus {
            gpu.uuid = format!("GPU-{i:08x}-{:04x}-4000-8000-000000000000", gpu.index);
        }
        let (inv_tx, inv_rx) = mpsc::channel(1);
        let (obs_tx, obs_rx) = mpsc::channel(1);
        inv_tx.send(inventory).await?;
        keep_senders.push((inv_tx, obs_tx));
        let publisher = Publisher {
            client: probe_client.clone(),
            node: name.clone(),
            lease: LeaseSettings { namespace: INSTALL_NAMESPACE.into(), holder: name.clone(), duration_seconds: 120 },
            cadence: Cadence::default(),
            spool: Spool::new(scratch.path().join(name)),
            backend: Backend::Simulated,
            boot_id: Some(format!("00000000-0000-4000-8000-{i:012x}")),
            metrics: metrics.clone(),
            readiness: Readiness::default(),
            unavailable_sources: Default::default(),
        };
        let mut stop = stop_rx.clone();
        tasks.push(tokio::spawn(publisher.run(obs_rx, inv_rx, async move {
            let _ = stop.wait_for(|s| *s).await;
        })));
    }

    let api: Api<GpuNodeStatus> = Api::all(admin.clone());
    let converged = loop {
        let list = api.list(&Default::default()).await?;
        let evaluated = list
            .items
            .iter()
            .filter(|o| o.status.as_ref().and_then(|s| s.conditions.as_ref()).is_some_and(|c| !c.is_empty()))
            .count();
        if evaluated == n {
            break started.elapsed();
        }
        if started.elapsed() > Duration::from_secs(900) {
            return Err(format!("only {evaluated}/{n} evaluated after 15 minutes:\n{}", operator.log_tail(20)).into());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    println!("  {n:>5} nodes: every node written and evaluated after {:.1} s", converged.as_secs_f64());

    // Steady state: request rates by component, from the components' own counters.
    let probe0 = (metrics.status_writes.get(), metrics.lease_renewals.get());
    let op0 = operator_writes(op_listen).await;
    let t0 = Instant::now();
    tokio::time::sleep(cfg.steady).await;
    let secs = t0.elapsed().as_secs_f64();
    let probe1 = (metrics.status_writes.get(), metrics.lease_renewals.get());
    let op1 = operator_writes(op_listen).await;
    println!(
        "         steady ({:.0} s): probes {:.2} status writes/s + {:.2} Lease renewals/s; operator {:.2} writes/s; facade 0 (watches only)",
        secs,
        (probe1.0 - probe0.0) as f64 / secs,
        (probe1.1 - probe0.1) as f64 / secs,
        (op1 - op0) / secs
    );
    let rss = |pid: Option<u32>| pid.and_then(ProcSample::read).map(|s| s.rss_kib as f64 / 1024.0).unwrap_or(0.0);
    println!(
        "         RSS: kube-apiserver {:.0} MiB, operator {:.1} MiB, facade {:.1} MiB, {n} probe write paths in one process {:.1} MiB",
        rss(cp.apiserver_pid()),
        rss(Some(operator.pid())),
        rss(Some(facade.pid())),
        rss(Some(std::process::id()))
    );

    // The facade at this size, over HTTP.
    let client = ClientConfig::default()
        .serve(StreamableHttpClientTransport::from_uri(format!("http://{mcp_listen}/mcp")))
        .await?;
    let target = &names[n / 2];
    let calls = [
        ("get_fleet_summary", json!({})),
        ("get_gpu_health", json!({})),
        ("get_gpu_inventory", json!({})),
        ("analyze_xid_errors", json!({})),
        ("get_pod_gpu_allocation", json!({})),
        ("describe_gpu_node", json!({ "node_name": target })),
        ("get_gpu_health", json!({ "node_name": target })),
    ];
    for (tool, args) in calls {
        let mut latencies = Vec::with_capacity(cfg.calls);
        let mut bytes = 0;
        for _ in 0..cfg.calls {
            let params = CallToolRequestParams::new(tool.to_string())
                .with_arguments(args.as_object().cloned().unwrap_or_default());
            let t = Instant::now();
            let result = client.call_tool(params).await?;
            latencies.push(t.elapsed());
            bytes = result.structured_content.map(|v| v.to_string().len()).unwrap_or(0);
        }
        let scope = if args.get("node_name").is_some() { " (one node)" } else { "" };
        println!(
            "         {tool}{scope}: p50 {}  p99 {}  structured answer {bytes} bytes",
            ms(percentile(&latencies, 50.0)),
            ms(percentile(&latencies, 99.0))
        );
    }
    client.cancel().await?;
    println!("         facade RSS after the calls {:.1} MiB", rss(Some(facade.pid())));

    let _ = stop_tx.send(true);
    for t in tasks {
        let _ = t.await;
    }
    drop(keep_senders);
    Ok(())
}

async fn operator_writes(addr: SocketAddr) -> f64 {
    let body = http_get(addr, "/metrics").await.map(|(_, b)| b).unwrap_or_default();
    metric_value(&body, "gpuscope_operator_status_writes_total").unwrap_or(0.0)
        + metric_value(&body, "gpuscope_operator_node_writes_total").unwrap_or(0.0)
}
