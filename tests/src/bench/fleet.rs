//! The scale run: N simulated nodes x 8 GPUs whose probes run the probe's real write path (its `Publisher`) in
//! this one process, against a private control plane, with the real operator and facade running as processes.
//!
//! The fleet looks like one: kubelet-sized Node objects (labels, capacity, images), a GPU pod on every node and
//! CPU pods beside them, a mix of H100 and A100 nodes, and a few percent of nodes with XIDs (fatal 79 and 48,
//! application-class 13 and 31). Reports requests per second by component (from the API server's audit log, so
//! every request counts, reads and watches too), CPU and RSS of every process, the time until every node is
//! written and evaluated, and per facade tool the latency and the bytes on the wire at that size, against the
//! targets.

use std::collections::BTreeMap;
use std::io::BufRead as _;
use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use gpuscope_crds::GpuNodeStatus;
use gpuscope_crds::gpu_node_status::{Backend, XidEvent, XidSource};
use gpuscope_crds::health::Health;
use gpuscope_crds::observability::Readiness;
use gpuscope_probe::backend::Scenario;
use gpuscope_probe::kmsg_source::Observation;
use gpuscope_probe::kube_io::LeaseSettings;
use gpuscope_probe::metrics::ProbeMetrics;
use gpuscope_probe::publisher::{Cadence, Inventory, Publisher};
use gpuscope_probe::spool::Spool;
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, PostParams};
use kube::runtime::{WatchStreamExt as _, reflector, watcher};
use rmcp::ServiceExt as _;
use rmcp::model::{CallToolRequestParams, ClientConfig};
use rmcp::transport::StreamableHttpClientTransport;
use serde_json::json;
use tokio::sync::{mpsc, watch};

use super::stats::{ProcSample, ms, percentile};
use crate::control_plane::{INSTALL_NAMESPACE, workspace_root};
use crate::fixtures::install_rbac;
use crate::{ControlPlane, Identity, Process, free_port, http_post, run_ok, workspace_binary};

type BenchResult<T> = Result<T, Box<dyn std::error::Error>>;

/// Namespace of the simulated workloads.
const WORKLOAD_NAMESPACE: &str = "bench-workloads";
/// Targets from the facade issue: single-node tools at 5,000 nodes, fleet answers, facade memory.
const TARGET_SINGLE_P50: Duration = Duration::from_millis(1);
const TARGET_SINGLE_P99: Duration = Duration::from_millis(5);
const TARGET_FLEET_BYTES: usize = 16 * 1024;
const TARGET_FACADE_RSS_MIB: f64 = 64.0;

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

/// What one fleet size measured (also what the smoke test asserts on).
#[derive(Clone, Debug, Default)]
pub struct FleetReport {
    /// Nodes in the fleet.
    pub nodes: usize,
    /// From the first probe write path starting until every node is written and evaluated as planned.
    pub converged: Duration,
    /// Nodes the operator judged Unhealthy at convergence, and how many the plan made fatal.
    pub unhealthy: usize,
    /// Nodes planned with a fatal XID (79 or 48).
    pub planned_unhealthy: usize,
    /// Steady-state requests per second by component, then by verb.
    pub steady_rates: BTreeMap<String, BTreeMap<String, f64>>,
    /// Requests by component while converging.
    pub converge_requests: BTreeMap<String, u64>,
    /// Resident memory by process, MiB.
    pub rss_mib: BTreeMap<String, f64>,
    /// CPU by process over the steady window, percent of one core.
    pub cpu_percent: BTreeMap<String, f64>,
    /// Per facade call: (tool with scope, p50, p99, bytes of the HTTP response body).
    pub tools: Vec<ToolFigure>,
}

/// One facade tool's figures.
#[derive(Clone, Debug)]
pub struct ToolFigure {
    /// Tool name, with " (one node)" for node-scoped calls.
    pub call: String,
    /// Whether the call is node-scoped.
    pub single_node: bool,
    /// Median latency through the MCP client.
    pub p50: Duration,
    /// 99th percentile latency.
    pub p99: Duration,
    /// Bytes of the whole JSON-RPC response on the wire (HTTP body).
    pub wire_bytes: usize,
}

/// Run the scale run for every size, printing the figures.
pub async fn run(cfg: FleetBench) -> BenchResult<Vec<FleetReport>> {
    println!(
        "fleet scale run: simulated 8-GPU nodes (80% H100, 20% A100), the probe's write path in-process, a GPU pod per \
         node, real operator and facade"
    );
    let mut reports = Vec::new();
    for &n in &cfg.sizes {
        let report = one_size(n, &cfg).await?;
        print_report(&report);
        reports.push(report);
    }
    Ok(reports)
}

/// What the plan does to node `i`.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Trouble {
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
    fn of(i: usize) -> Trouble {
        match i % 100 {
            7 => Trouble::FallenOffBus,
            57 => Trouble::DoubleBitEcc,
            3 | 13 | 23 | 33 | 43 | 53 | 63 | 73 | 83 | 93 => Trouble::AppFaults,
            11 | 61 => Trouble::PageFault,
            _ => Trouble::None,
        }
    }

    fn fatal(self) -> bool {
        matches!(self, Trouble::FallenOffBus | Trouble::DoubleBitEcc)
    }

    /// (GPU index, code, message, repeats).
    fn xids(self) -> Option<(usize, u32, &'static str, u32)> {
        match self {
            Trouble::None => None,
            Trouble::FallenOffBus => Some((3, 79, "GPU has fallen off the bus.", 1)),
            Trouble::DoubleBitEcc => Some((0, 48, "An uncorrectable double bit error (DBE) has been detected.", 1)),
            Trouble::AppFaults => Some((1, 13, "Graphics Exception: ESR 0x405840=0x1000", 3)),
            Trouble::PageFault => Some((5, 31, "MMU Fault: ENGINE GRAPHICS GPCCLIENT_T1_0 faulted @ 0x7f3a_0000", 1)),
        }
    }
}

fn a100(i: usize) -> bool {
    i % 5 == 4
}

async fn one_size(n: usize, cfg: &FleetBench) -> BenchResult<FleetReport> {
    eprintln!("[bench] {n} nodes: control plane (audit log on)");
    let cp = ControlPlane::start_with_audit(true)?;
    cp.apply_crds()?;
    install_rbac(&cp, &["probe.yaml", "operator.yaml", "mcp.yaml"])?;
    let admin = cp.client().await?;
    let probe_client = cp.client_as(Identity::Probe).await?;
    let templates = [
        Scenario::load(&workspace_root().join("node-probe/scenarios/healthy-8x-h100.yaml"))?,
        Scenario::load(&workspace_root().join("node-probe/scenarios/mig-a100.yaml"))?,
    ]
    .map(|s| s.state_at(Duration::ZERO, jiff::Timestamp::now()));
    let scratch = tempfile::tempdir()?;
    let names: Vec<String> = (0..n).map(|i| format!("fleet-{i:05}")).collect();

    eprintln!("[bench] {n} nodes: registering kubelet-sized Nodes and scheduling pods");
    let created = Instant::now();
    let nodes_api: Api<Node> = Api::all(admin.clone());
    for_each_concurrently(names.iter().enumerate(), |(i, name)| {
        let api = nodes_api.clone();
        let product = templates[usize::from(a100(i))].gpus.first().and_then(|g| g.product_name.clone());
        let node = kubelet_like_node(name, i, product.as_deref().unwrap_or("NVIDIA-GPU"));
        async move { api.create(&PostParams::default(), &node).await.map(|_| ()) }
    })
    .await?;
    run_ok(cp.kubectl().args(["create", "namespace", WORKLOAD_NAMESPACE]))?;
    wait_for_default_service_account(&cp).await?;
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
            Ok(())
        }
    })
    .await?;
    eprintln!(
        "[bench] {n} Nodes and {} pods in {:.1} s; starting the operator, the facade and {n} probe write paths",
        n + n.div_ceil(2),
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
    let started_wall = jiff::Timestamp::now();
    let mut tasks = Vec::with_capacity(n);
    let mut keep_senders = Vec::with_capacity(n);
    for (i, name) in names.iter().enumerate() {
        let template = &templates[usize::from(a100(i))];
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
        let boot_id = format!("00000000-0000-4000-8000-{i:012x}");
        let (inv_tx, inv_rx) = mpsc::channel(1);
        let (obs_tx, obs_rx) = mpsc::channel(8);
        if let Some((gpu, code, message, repeats)) = Trouble::of(i).xids() {
            let pci = inventory.gpus.get(gpu).and_then(|g| g.pci_bus_id.clone()).unwrap_or_default();
            for seq in 0..repeats {
                // The channel holds them until the publisher has adopted the node's history.
                obs_tx.try_send(Observation::Xid(XidEvent {
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
                    boot_id: Some(boot_id.clone()),
                    sequence: Some(1000 + u64::from(seq)),
                }))?;
            }
        }
        inv_tx.send(inventory).await?;
        keep_senders.push((inv_tx, obs_tx));
        let publisher = Publisher {
            client: probe_client.clone(),
            node: name.clone(),
            lease: LeaseSettings { namespace: INSTALL_NAMESPACE.into(), holder: name.clone(), duration_seconds: 120 },
            cadence: Cadence::default(),
            spool: Spool::new(scratch.path().join(name)),
            backend: Backend::Simulated,
            boot_id: Some(boot_id),
            metrics: metrics.clone(),
            readiness: Readiness::default(),
            unavailable_sources: Default::default(),
        };
        let mut stop = stop_rx.clone();
        tasks.push(tokio::spawn(publisher.run(obs_rx, inv_rx, async move {
            let _ = stop.wait_for(|s| *s).await;
        })));
    }

    // Converged: every node written and evaluated, and every planned XID counted and judged.
    let planned_unhealthy = (0..n).filter(|&i| Trouble::of(i).fatal()).count();
    let planned_xids: u64 = (0..n).filter_map(|i| Trouble::of(i).xids()).map(|x| u64::from(x.3)).sum();
    // Watched, not listed: listing thousands of 10 KiB objects every half second would be most of the API
    // server's load and distort every figure.
    let (store, writer) = reflector::store::<GpuNodeStatus>();
    let watch = reflector(writer, watcher(Api::all(admin.clone()), watcher::Config::default()))
        .default_backoff()
        .for_each(|_| futures::future::ready(()));
    let watching = tokio::spawn(watch);
    let (converged, unhealthy) = loop {
        let list = store.state();
        let statuses = || list.iter().filter_map(|o| o.status.as_ref());
        let evaluated = statuses().filter(|s| s.conditions.as_ref().is_some_and(|c| !c.is_empty())).count();
        let unhealthy = statuses().filter(|s| s.health == Some(Health::Unhealthy)).count();
        let xids: u64 = statuses().filter_map(|s| s.xids.as_ref()).flat_map(|x| x.totals.iter()).map(|t| t.count).sum();
        if evaluated == n && xids == planned_xids && unhealthy >= planned_unhealthy {
            break (started.elapsed(), unhealthy);
        }
        if started.elapsed() > Duration::from_secs(1800) {
            return Err(format!(
                "after 30 minutes only {evaluated}/{n} evaluated, {xids}/{planned_xids} XIDs, {unhealthy}/\
                 {planned_unhealthy} unhealthy:\n{}",
                operator.log_tail(20)
            )
            .into());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    watching.abort();
    let converged_wall = jiff::Timestamp::now();
    eprintln!("[bench] {n} nodes converged after {:.1} s; steady window {:?}", converged.as_secs_f64(), cfg.steady);

    // Steady state: every request by component from the audit log, CPU and RSS by process.
    let processes = [
        ("kube-apiserver", cp.apiserver_pid()),
        ("etcd", cp.etcd_pid()),
        ("operator", Some(operator.pid())),
        ("facade", Some(facade.pid())),
        ("probe write paths (this process)", Some(std::process::id())),
    ];
    let before: Vec<_> = processes.iter().map(|(_, pid)| pid.and_then(ProcSample::read)).collect();
    let t0 = jiff::Timestamp::now();
    tokio::time::sleep(cfg.steady).await;
    let t1 = jiff::Timestamp::now();
    let mut report = FleetReport { nodes: n, converged, unhealthy, planned_unhealthy, ..Default::default() };
    for ((name, pid), before) in processes.iter().zip(before) {
        let Some(now) = pid.and_then(ProcSample::read) else { continue };
        report.rss_mib.insert(name.to_string(), now.rss_kib as f64 / 1024.0);
        if let Some(b) = before {
            report.cpu_percent.insert(name.to_string(), now.cpu_percent_since(&b));
        }
    }
    // Blocking audit mode writes each record before the response; a short pause covers requests in flight.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let audit = AuditCounts::read(&cp.audit_log(), &[(started_wall, converged_wall), (t0, t1)])?;
    report.converge_requests =
        audit.windows[0].iter().map(|(c, verbs)| (c.clone(), verbs.values().sum::<u64>())).collect();
    let secs = (t1 - t0).total(jiff::Unit::Second).unwrap_or(1.0).max(1e-3);
    report.steady_rates = audit.windows[1]
        .iter()
        .map(|(c, verbs)| (c.clone(), verbs.iter().map(|(v, k)| (v.clone(), *k as f64 / secs)).collect()))
        .collect();

    // The facade at this size, over HTTP: latency through a real MCP client, bytes from a raw request.
    let client = ClientConfig::default()
        .serve(StreamableHttpClientTransport::from_uri(format!("http://{mcp_listen}/mcp")))
        .await?;
    let target = names.iter().enumerate().find(|(i, _)| Trouble::of(*i).fatal()).map_or(&names[n / 2], |(_, n)| n);
    let calls = [
        ("get_fleet_summary", json!({})),
        ("get_gpu_health", json!({})),
        ("get_gpu_inventory", json!({})),
        ("analyze_xid_errors", json!({})),
        ("get_pod_gpu_allocation", json!({})),
        ("describe_gpu_node", json!({ "node_name": target })),
        ("get_gpu_health", json!({ "node_name": target })),
        ("get_gpu_inventory", json!({ "node_name": target })),
        ("analyze_xid_errors", json!({ "node_name": target })),
        ("get_pod_gpu_allocation", json!({ "node_name": target })),
    ];
    for (tool, args) in calls {
        let arguments = args.as_object().cloned().unwrap_or_default();
        let mut latencies = Vec::with_capacity(cfg.calls);
        for _ in 0..cfg.calls {
            let params = CallToolRequestParams::new(tool.to_string()).with_arguments(arguments.clone());
            let t = Instant::now();
            let result = client.call_tool(params).await?;
            latencies.push(t.elapsed());
            if result.is_error == Some(true) {
                return Err(format!("{tool} {args} answered a tool error: {:?}", result.content).into());
            }
        }
        let single_node = args.get("node_name").is_some();
        report.tools.push(ToolFigure {
            call: format!("{tool}{}", if single_node { " (one node)" } else { "" }),
            single_node,
            p50: percentile(&latencies, 50.0).unwrap_or_default(),
            p99: percentile(&latencies, 99.0).unwrap_or_default(),
            wire_bytes: wire_bytes(mcp_listen, tool, &args).await?,
        });
    }
    client.cancel().await?;
    if let Some(s) = ProcSample::read(facade.pid()) {
        report.rss_mib.insert("facade after the calls".into(), s.rss_kib as f64 / 1024.0);
        report.rss_mib.insert("facade peak".into(), s.peak_rss_kib as f64 / 1024.0);
    }

    let _ = stop_tx.send(true);
    for t in tasks {
        let _ = t.await;
    }
    drop(keep_senders);
    Ok(report)
}

/// Bytes of one `tools/call` response body as a client receives it (stateless HTTP needs no session).
async fn wire_bytes(addr: SocketAddr, tool: &str, args: &serde_json::Value) -> BenchResult<usize> {
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": tool, "arguments": args}});
    let (status, _, body) =
        http_post(addr, "/mcp", &[("MCP-Protocol-Version", "2025-06-18")], &body.to_string()).await?;
    if status != 200 {
        return Err(format!("raw tools/call {tool}: HTTP {status}: {body}").into());
    }
    Ok(body.len())
}

fn print_report(r: &FleetReport) {
    let n = r.nodes;
    println!(
        "\n{n} nodes x 8 GPUs: written and evaluated after {:.1} s ({} Unhealthy; {} planned with XID 79/48)",
        r.converged.as_secs_f64(),
        r.unhealthy,
        r.planned_unhealthy
    );
    println!(
        "  requests while converging, by component: {}",
        join(r.converge_requests.iter().map(|(c, k)| format!("{c} {k}")))
    );
    println!("  steady-state requests per second, by component (verb):");
    for (component, verbs) in &r.steady_rates {
        let total: f64 = verbs.values().sum();
        let detail = join(verbs.iter().map(|(v, k)| format!("{v} {k:.2}")));
        println!("    {component:<24} {total:>7.2}/s  ({detail})");
    }
    println!("  CPU over the steady window (% of one core) and RSS:");
    for (name, rss) in &r.rss_mib {
        let cpu = r.cpu_percent.get(name).map(|c| format!("{c:>5.1} %")).unwrap_or_else(|| "      ".into());
        println!("    {name:<34} {cpu}  {rss:>7.1} MiB");
    }
    println!("  facade tools over streamable HTTP (p50, p99 through the rmcp client; response body bytes):");
    for t in &r.tools {
        let mut verdicts = Vec::new();
        if t.single_node {
            let ok = t.p50 < TARGET_SINGLE_P50 && t.p99 < TARGET_SINGLE_P99;
            verdicts.push(if ok { "latency meets target" } else { "latency MISSES target (p50 < 1 ms, p99 < 5 ms)" });
        } else {
            verdicts.push(if t.wire_bytes < TARGET_FLEET_BYTES { "size meets target" } else { "size MISSES 16 KiB" });
        }
        println!(
            "    {:<38} p50 {:>8}  p99 {:>8}  {:>7} bytes  {}",
            t.call,
            ms(Some(t.p50)),
            ms(Some(t.p99)),
            t.wire_bytes,
            verdicts.join(", ")
        );
    }
    if let Some(peak) = r.rss_mib.get("facade peak") {
        let verdict = if *peak < TARGET_FACADE_RSS_MIB { "meets" } else { "MISSES" };
        println!("  facade peak RSS {peak:.1} MiB: {verdict} the 64 MiB target");
    }
}

fn join(items: impl Iterator<Item = String>) -> String {
    items.collect::<Vec<_>>().join(", ")
}

/// Request counts from the API server's audit log, by component and verb, in each of several time windows.
struct AuditCounts {
    windows: Vec<BTreeMap<String, BTreeMap<String, u64>>>,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct AuditRecord {
    stage: String,
    verb: String,
    user: AuditUser,
    #[serde(default)]
    user_agent: String,
    #[serde(default)]
    object_ref: Option<AuditObject>,
    request_received_timestamp: jiff::Timestamp,
}

#[derive(serde::Deserialize)]
struct AuditUser {
    username: String,
}

#[derive(serde::Deserialize)]
struct AuditObject {
    #[serde(default)]
    resource: String,
    #[serde(default)]
    subresource: String,
}

impl AuditCounts {
    /// Count the records of `path` and of its rotated copies beside it (`audit-<time>.log`).
    fn read(path: &std::path::Path, windows: &[(jiff::Timestamp, jiff::Timestamp)]) -> BenchResult<AuditCounts> {
        let mut counts = vec![BTreeMap::<String, BTreeMap<String, u64>>::new(); windows.len()];
        for file in audit_files(path)? {
            count_file(&file, windows, &mut counts)?;
        }
        Ok(AuditCounts { windows: counts })
    }
}

/// The audit log and its rotated copies: the API server rotates at `--audit-log-maxsize`, and an unset size means
/// 100 MB to its log library, which a 5,000-node run passes in minutes.
fn audit_files(path: &std::path::Path) -> BenchResult<Vec<std::path::PathBuf>> {
    let dir = path.parent().ok_or("the audit log has no folder")?;
    let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("audit");
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| format!("list {}: {e}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name().and_then(|n| n.to_str()).is_some_and(|n| {
                n.ends_with(".log") && (n == format!("{stem}.log") || n.starts_with(&format!("{stem}-")))
            })
        })
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(format!("no audit log at {}", path.display()).into());
    }
    Ok(files)
}

type Windows = [(jiff::Timestamp, jiff::Timestamp)];

fn count_file(
    path: &std::path::Path,
    windows: &Windows,
    counts: &mut [BTreeMap<String, BTreeMap<String, u64>>],
) -> BenchResult<()> {
    let file = std::fs::File::open(path).map_err(|e| format!("open the audit log {}: {e}", path.display()))?;
    for line in std::io::BufReader::new(file).lines() {
        let line = line?;
        let Ok(rec) = serde_json::from_str::<AuditRecord>(&line) else { continue };
        // One record per request: long-running watches end in ResponseStarted (omitted) and then
        // ResponseComplete; everything else ends in ResponseComplete.
        if rec.stage != "ResponseComplete" {
            continue;
        }
        let component = component_of(&rec.user.username, &rec.user_agent);
        let what = match &rec.object_ref {
            Some(o) if !o.subresource.is_empty() => format!("{} {}/{}", rec.verb, o.resource, o.subresource),
            Some(o) => format!("{} {}", rec.verb, o.resource),
            None => rec.verb.clone(),
        };
        for (w, (from, to)) in windows.iter().enumerate() {
            if rec.request_received_timestamp >= *from && rec.request_received_timestamp < *to {
                *counts[w].entry(component.to_string()).or_default().entry(what.clone()).or_default() += 1;
            }
        }
    }
    Ok(())
}

/// Which component made a request: gpuscope's by their identities; the controller-manager and this harness both
/// use the admin identity here, so their user agents tell them apart.
fn component_of(username: &str, user_agent: &str) -> &'static str {
    if username == Identity::Probe.username() {
        "probes"
    } else if username == Identity::Operator.username() {
        "operator"
    } else if username == Identity::Mcp.username() {
        "facade"
    } else if user_agent.starts_with("kube-controller-manager") || username.starts_with("system:kube-controller") {
        "kube-controller-manager"
    } else if username.starts_with("system:apiserver") || user_agent.starts_with("kube-apiserver") {
        "kube-apiserver (itself)"
    } else {
        "bench harness"
    }
}

/// A Node the size a kubelet registers: labels, addresses, capacity with the GPUs, conditions, images.
fn kubelet_like_node(name: &str, i: usize, product: &str) -> Node {
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
fn workload_pod(name: &str, node: &str, gpus: Option<usize>) -> Pod {
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
async fn for_each_concurrently<I, F, Fut>(items: I, op: F) -> BenchResult<()>
where
    I: Iterator,
    F: FnMut(I::Item) -> Fut,
    Fut: std::future::Future<Output = Result<(), kube::Error>>,
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
async fn wait_for_default_service_account(cp: &ControlPlane) -> BenchResult<()> {
    let started = Instant::now();
    while run_ok(cp.kubectl().args(["get", "serviceaccount", "default", "-n", WORKLOAD_NAMESPACE])).is_err() {
        if started.elapsed() > Duration::from_secs(60) {
            return Err(format!("no default ServiceAccount in {WORKLOAD_NAMESPACE} after 60 s").into());
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_attributed_to_components_by_identity_and_user_agent() {
        assert_eq!(component_of(&Identity::Probe.username(), "gpuscope-probe"), "probes");
        assert_eq!(component_of(&Identity::Operator.username(), "kube-rs"), "operator");
        assert_eq!(component_of(&Identity::Mcp.username(), ""), "facade");
        assert_eq!(component_of("admin", "kube-controller-manager/v1.20.2 (linux/amd64)"), "kube-controller-manager");
        assert_eq!(component_of("system:apiserver", "kube-apiserver/v1.20.2"), "kube-apiserver (itself)");
        assert_eq!(component_of("admin", "kubectl/v1.32.0"), "bench harness");
    }

    #[test]
    fn the_plan_makes_two_percent_of_nodes_fatal_and_a_tenth_noisy() {
        let plan: Vec<_> = (0..1000).map(Trouble::of).collect();
        assert_eq!(plan.iter().filter(|t| t.fatal()).count(), 20);
        assert_eq!(plan.iter().filter(|t| **t == Trouble::AppFaults).count(), 100);
        assert_eq!(plan.iter().filter(|t| **t == Trouble::None).count(), 860);
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
    }

    #[test]
    fn audit_records_are_counted_per_window_component_and_verb() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("audit.log");
        let rec = |stage: &str, user: &str, verb: &str, sub: &str, at: &str| {
            json!({"stage": stage, "verb": verb, "user": {"username": user}, "userAgent": "x",
                   "objectRef": {"resource": "gpunodestatuses", "subresource": sub},
                   "requestReceivedTimestamp": at})
            .to_string()
        };
        let probe = Identity::Probe.username();
        let lines = [
            rec("ResponseComplete", &probe, "patch", "status", "2026-12-01T10:00:01Z"),
            rec("ResponseComplete", &probe, "patch", "status", "2026-12-01T10:00:02Z"),
            rec("ResponseStarted", &probe, "patch", "status", "2026-12-01T10:00:02Z"),
            rec("ResponseComplete", &Identity::Mcp.username(), "watch", "", "2026-12-01T10:00:03Z"),
            rec("ResponseComplete", &probe, "patch", "status", "2026-12-01T10:00:09Z"),
            "not json".to_string(),
        ];
        // The first records sit in a rotated copy, as after the API server rotated its log.
        std::fs::write(dir.path().join("audit-2026-12-01T10-00-02.000.log"), lines[..2].join("\n")).expect("write");
        std::fs::write(&path, lines[2..].join("\n")).expect("write");
        std::fs::write(dir.path().join("audit-policy.yaml"), "not a log").expect("write");
        let ts = |s: &str| s.parse::<jiff::Timestamp>().expect("timestamp");
        let counts = AuditCounts::read(
            &path,
            &[
                (ts("2026-12-01T10:00:00Z"), ts("2026-12-01T10:00:05Z")),
                (ts("2026-12-01T10:00:05Z"), ts("2026-12-01T10:01:00Z")),
            ],
        )
        .expect("read");
        assert_eq!(counts.windows[0]["probes"]["patch gpunodestatuses/status"], 2);
        assert_eq!(counts.windows[0]["facade"]["watch gpunodestatuses"], 1);
        assert_eq!(counts.windows[1]["probes"]["patch gpunodestatuses/status"], 1);
        assert!(!counts.windows[1].contains_key("facade"));
    }
}
