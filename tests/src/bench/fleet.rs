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
use std::time::{Duration, Instant};

use gpuscope_crds::gpu_node_status::Backend;
use gpuscope_probe::kmsg_source::Observation;
use gpuscope_probe::kube_io::LeaseSettings;
use gpuscope_probe::metrics::ProbeMetrics;
use gpuscope_probe::publisher::{Cadence, Inventory, Publisher};
use gpuscope_probe::spool::Spool;
use gpuscope_runtime::observability::Readiness;
use tokio::sync::{mpsc, watch};

use super::facade_calls::{ToolFigure, measure_tools, print_facade_rss, print_tools, spawn_facade};
use super::fleet_plan::{
    BenchResult, Trouble, a100, boot_id, gpus_of, node_names, node_templates, planned_allocations, planned_xids,
    products, register_nodes_and_pods, spawn_operator, wait_converged,
};
use super::stats::ProcSample;
use crate::control_plane::INSTALL_NAMESPACE;
use crate::fixtures::install_rbac;
use crate::{ControlPlane, Identity};

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

async fn one_size(n: usize, cfg: &FleetBench) -> BenchResult<FleetReport> {
    eprintln!("[bench] {n} nodes: control plane (audit log on)");
    let cp = ControlPlane::start_with_audit(true)?;
    cp.apply_crds()?;
    install_rbac(&cp, &["probe.yaml", "operator.yaml", "mcp.yaml"])?;
    let admin = cp.client().await?;
    let probe_client = cp.client_as(Identity::Probe).await?;
    let templates = node_templates()?;
    let scratch = tempfile::tempdir()?;
    let names = node_names(n);
    let created = Instant::now();
    let pods = register_nodes_and_pods(&cp, &admin, &names, products(&templates)).await?;
    eprintln!(
        "[bench] {n} Nodes and {} pods in {:.1} s; starting the operator, the facade and {n} probe write paths",
        pods,
        created.elapsed().as_secs_f64()
    );

    let operator = spawn_operator(&cp)?;
    let (facade, mcp_listen) = spawn_facade(&cp)?;

    let metrics = ProbeMetrics::default();
    let (stop_tx, stop_rx) = watch::channel(false);
    let started = Instant::now();
    let started_wall = jiff::Timestamp::now();
    let mut tasks = Vec::with_capacity(n);
    let mut keep_senders = Vec::with_capacity(n);
    for (i, name) in names.iter().enumerate() {
        let template = &templates[usize::from(a100(i))];
        let inventory = Inventory {
            driver_version: template.driver_version.clone(),
            cuda_driver_version: template.cuda_driver_version.clone(),
            nvml_version: template.nvml_version.clone(),
            gpus: gpus_of(i, &templates),
            unsupported_fields: template.unsupported_fields.clone(),
            allocations: None,
        };
        let inventory = Inventory { allocations: Some(planned_allocations(i, &inventory.gpus)), ..inventory };
        let (inv_tx, inv_rx) = mpsc::channel(1);
        let (obs_tx, obs_rx) = mpsc::channel(8);
        for xid in planned_xids(i, &inventory.gpus) {
            // The channel holds them until the publisher has adopted the node's history.
            obs_tx.try_send(Observation::Xid(xid))?;
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
            boot_id: Some(boot_id(i)),
            metrics: metrics.clone(),
            readiness: Readiness::default(),
            unavailable_sources: Default::default(),
            poll_kubelet: None,
        };
        let mut stop = stop_rx.clone();
        // The planned pods come with the inventory (as a simulated scenario's do): no kubelet to ask.
        let (_no_kubelet, kubelet_rx) = mpsc::channel(1);
        tasks.push(tokio::spawn(publisher.run(obs_rx, inv_rx, kubelet_rx, async move {
            let _ = stop.wait_for(|s| *s).await;
        })));
    }

    // Converged: every node written and evaluated, and every planned XID counted and judged.
    let planned_unhealthy = (0..n).filter(|&i| Trouble::of(i).fatal()).count();
    let unhealthy = wait_converged(&admin, n, &operator, Duration::from_secs(1800)).await?;
    let converged = started.elapsed();
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
    let target = names.iter().enumerate().find(|(i, _)| Trouble::of(*i).fatal()).map_or(&names[n / 2], |(_, n)| n);
    report.tools = measure_tools(mcp_listen, target, cfg.calls).await?;
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
    print_tools(&r.tools);
    if let Some(peak) = r.rss_mib.get("facade peak") {
        print_facade_rss(*peak);
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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
