//! The whole system: the three real binaries as separate processes on a private control plane (simulated probes
//! for three nodes, two operator replicas, the facade over HTTP). An XID 79 injected on one node flows to its
//! GpuNodeStatus, to GPUHealthy on the object and the Node, to an Event, and to the facade's answer. Then each
//! failure is followed by a new XID, so the test sees the survivors act, not merely stay up:
//! - the leader operator is SIGKILLed: the standby takes over and turns a healthy node Unhealthy (XID 48);
//! - the API server is restarted: XIDs logged while it was down arrive exactly once, and a new XID (62) reaches
//!   the conditions, the Node and the facade through watches that came back;
//! - a probe is SIGKILLed: an XID logged while it is down arrives exactly once after it restarts, and the XIDs it
//!   had already delivered are not counted again.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use gpuscope_crds::{GpuNodeStatus, GpuNodeStatusStatus, Health};
use gpuscope_tests::control_plane::{INSTALL_NAMESPACE, workspace_root};
use gpuscope_tests::demo::monotonic_micros;
use gpuscope_tests::fixtures::{create_node, install_rbac};
use gpuscope_tests::{
    ControlPlane, Identity, Process, eventually, free_port, http_get, metric_value, workspace_binary,
};
use k8s_openapi::api::core::v1::{Node, NodeCondition};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::api::{Api, ListParams};
use rmcp::ServiceExt as _;
use rmcp::model::{CallToolRequestParams, ClientConfig};
use rmcp::transport::StreamableHttpClientTransport;
use serde_json::{Value, json};

type TestResult = Result<(), Box<dyn std::error::Error>>;

const NODES: [&str; 3] = ["sys-a", "sys-b", "sys-c"];
/// How long the operators' leader Lease lasts: short, so a failover fits in the test.
const LEADER_LEASE_SECONDS: &str = "4";

/// One simulated GPU node: its kernel log (a plain file the probe follows), boot id, spool, and the probe.
struct Probe {
    node: &'static str,
    dir: PathBuf,
    /// Where the current process serves /readyz and /metrics (a fresh port per start).
    listen: SocketAddr,
    process: Option<Process>,
    /// Sequence number of the last kernel-log record written.
    seq: u64,
}

impl Probe {
    fn start(&mut self, cp: &ControlPlane) -> Result<(), Box<dyn std::error::Error>> {
        self.listen = SocketAddr::from(([127, 0, 0, 1], free_port()?));
        let mut cmd = Command::new(workspace_binary("gpuscope-probe")?);
        cmd.env("KUBECONFIG", cp.kubeconfig_for(Identity::Probe))
            .args(["--node-name", self.node, "--namespace", INSTALL_NAMESPACE, "--backend", "simulated", "--scenario"])
            .arg(workspace_root().join("node-probe/scenarios/healthy-8x-h100.yaml"))
            .arg("--kmsg-path")
            .arg(self.dir.join("kmsg"))
            .arg("--boot-id-file")
            .arg(self.dir.join("boot_id"))
            .arg("--spool-dir")
            .arg(self.dir.join("spool"))
            .args(["--sample-interval", "2s", "--lease-interval", "2s"])
            .arg("--listen")
            .arg(self.listen.to_string());
        self.process = Some(Process::spawn(format!("probe {}", self.node), cmd, self.dir.join("probe.log"))?);
        Ok(())
    }

    /// Log an XID on GPU 0 (0000:18:00) the way the driver does, stamped now: the operator's window rules see a
    /// fresh XID whatever the machine's uptime.
    fn log_xid(&mut self, code: u32, text: &str) -> std::io::Result<()> {
        use std::io::Write as _;
        self.seq += 1;
        let line = format!(
            "3,{},{},-;NVRM: Xid (PCI:0000:18:00): {code}, pid=777, name=train.py, {text}\n",
            self.seq,
            monotonic_micros()
        );
        std::fs::OpenOptions::new().append(true).open(self.dir.join("kmsg"))?.write_all(line.as_bytes())
    }

    /// Ready means the current process has written the GpuNodeStatus at least once.
    async fn ready(&self) -> bool {
        matches!(http_get(self.listen, "/readyz").await, Ok((200, _)))
    }

    /// `gpuscope_probe_xids_total{code="<code>"}`: XIDs of that code the current process recorded.
    async fn recorded(&self, code: u32) -> Option<f64> {
        let (_, body) = http_get(self.listen, "/metrics").await.ok()?;
        let prefix = format!("gpuscope_probe_xids_total{{code=\"{code}\"}} ");
        body.lines().find_map(|l| l.strip_prefix(&prefix)?.trim().parse().ok())
    }

    fn log_tail(&self) -> String {
        self.process.as_ref().map(|p| p.log_tail(20)).unwrap_or_default()
    }
}

fn operator(cp: &ControlPlane, id: &str, listen: SocketAddr) -> Result<Process, Box<dyn std::error::Error>> {
    let mut cmd = Command::new(workspace_binary("gpuscope-operator")?);
    cmd.env("KUBECONFIG", cp.kubeconfig_for(Identity::Operator))
        // The controller's errors and its backoff pauses: what a failure after the API server restart needs.
        .env("RUST_LOG", "info,gpuscope_operator=debug,kube_runtime::utils::stream_backoff=debug")
        .args(["--namespace", INSTALL_NAMESPACE, "--identity", id, "--leader-lease-seconds", LEADER_LEASE_SECONDS])
        .arg("--listen")
        .arg(listen.to_string());
    Ok(Process::spawn(format!("operator {id}"), cmd, cp.dir().join(format!("operator-{id}.log")))?)
}

async fn leads(addr: SocketAddr) -> Option<bool> {
    let (_, body) = http_get(addr, "/metrics").await.ok()?;
    metric_value(&body, "gpuscope_operator_leader").map(|v| v == 1.0)
}

/// Occurrences of `code` in the XID totals.
fn count(status: &GpuNodeStatusStatus, code: u32) -> u64 {
    status.xids.as_ref().map(|x| x.totals.iter().filter(|t| t.code == code).map(|t| t.count).sum()).unwrap_or(0)
}

/// Raw events of `code` in the recent history: a duplicate delivery would show here as a second entry.
fn recent(status: &GpuNodeStatusStatus, code: u32) -> usize {
    status.xids.as_ref().map(|x| x.recent.iter().filter(|e| e.code == code).count()).unwrap_or(0)
}

fn condition(status: &GpuNodeStatusStatus, type_: &str) -> Option<Condition> {
    status.conditions.as_ref()?.iter().find(|c| c.type_ == type_).cloned()
}

/// GPUHealthy on the object once it is False.
async fn unhealthy_condition(api: &Api<GpuNodeStatus>, node: &str) -> Option<Condition> {
    condition(&api.get(node).await.ok()?.status?, "GPUHealthy").filter(|c| c.status == "False")
}

/// GPUHealthy on the Node once it is False.
async fn unhealthy_node_condition(nodes: &Api<Node>, node: &str) -> Option<NodeCondition> {
    nodes.get(node).await.ok()?.status?.conditions?.into_iter().find(|c| c.type_ == "GPUHealthy" && c.status == "False")
}

/// A Warning Event with `reason` about the object of `kind` named `name`.
async fn warning_event(events: &Api<Event>, kind: &str, name: &str, reason: &str) -> Option<Event> {
    events.list(&ListParams::default()).await.ok()?.items.into_iter().find(|e| {
        e.regarding.as_ref().is_some_and(|r| r.kind.as_deref() == Some(kind) && r.name.as_deref() == Some(name))
            && e.type_.as_deref() == Some("Warning")
            && e.reason.as_deref() == Some(reason)
    })
}

/// A tool call's structured answer, through a fresh MCP session (as a client would after a disconnect).
async fn call(url: &str, tool: &'static str, args: Value) -> Result<Value, Box<dyn std::error::Error>> {
    let client = ClientConfig::default().serve(StreamableHttpClientTransport::from_uri(url.to_string())).await?;
    let mut params = CallToolRequestParams::new(tool);
    if let Value::Object(map) = args {
        params = params.with_arguments(map);
    }
    let result = client.call_tool(params).await?;
    client.cancel().await?;
    result.structured_content.ok_or_else(|| format!("{tool}: no structured content").into())
}

/// The nodes `get_gpu_health` reports Unhealthy, sorted.
fn unhealthy_nodes(answer: &Value) -> Vec<String> {
    let mut nodes: Vec<String> = answer["problems"]
        .as_array()
        .map(|ps| {
            ps.iter()
                .filter(|p| p["health"] == "Unhealthy")
                .filter_map(|p| p["node"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    nodes.sort();
    nodes.dedup();
    nodes
}

/// The reasons `get_gpu_health` gives for `node`'s problems.
fn problem_reasons(answer: &Value, node: &str) -> Vec<String> {
    answer["problems"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["node"] == node)
        .flat_map(|p| p["reasons"].as_array().cloned().unwrap_or_default())
        .filter_map(|r| r.as_str().map(str::to_string))
        .collect()
}

/// `analyze_xid_errors`' occurrences of `code` (0 when the code is not listed).
fn occurrences(answer: &Value, code: u32) -> u64 {
    answer["by_code"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["code"] == code)
        .and_then(|c| c["occurrences"].as_u64())
        .unwrap_or(0)
}

/// What a failure message needs: the node's XID counts and conditions, and the operator's own view.
async fn diagnose(api: &Api<GpuNodeStatus>, node: &str, operator: SocketAddr) -> String {
    let status = match api.get(node).await {
        Ok(o) => o.status.map(|s| {
            let totals: Vec<(u32, u64)> =
                s.xids.as_ref().map(|x| x.totals.iter().map(|t| (t.code, t.count)).collect()).unwrap_or_default();
            let conditions: Vec<(String, String, String)> =
                s.conditions.iter().flatten().map(|c| (c.type_.clone(), c.status.clone(), c.reason.clone())).collect();
            format!("{node}: XID totals {totals:?}, conditions {conditions:?}")
        }),
        Err(e) => Some(format!("{node}: {e}")),
    };
    let metrics = http_get(operator, "/metrics").await.map(|(_, body)| {
        body.lines()
            .filter(|l| l.starts_with("gpuscope_operator_") && !l.contains("bucket"))
            .collect::<Vec<_>>()
            .join("\n")
    });
    format!("{}\noperator metrics:\n{}", status.unwrap_or_default(), metrics.unwrap_or_else(|e| e.to_string()))
}

fn names(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

#[tokio::test]
async fn xids_flow_through_the_whole_system_and_nothing_is_lost_when_the_leader_the_api_server_or_a_probe_dies()
-> TestResult {
    let started = Instant::now();
    let cp = ControlPlane::start()?;
    cp.apply_crds()?;
    install_rbac(&cp, &["probe.yaml", "operator.yaml", "mcp.yaml"])?;
    let admin = cp.client().await?;
    let scratch = tempfile::tempdir()?;
    let mut probes = Vec::new();
    for node in NODES {
        create_node(&admin, node).await?;
        let dir = scratch.path().join(node);
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join("kmsg"), b"")?;
        std::fs::write(dir.join("boot_id"), b"aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee\n")?;
        let mut p = Probe { node, dir, listen: SocketAddr::from(([127, 0, 0, 1], 0)), process: None, seq: 0 };
        p.start(&cp)?;
        probes.push(p);
    }
    let (la, lb) = (SocketAddr::from(([127, 0, 0, 1], free_port()?)), SocketAddr::from(([127, 0, 0, 1], free_port()?)));
    let mut op_a = operator(&cp, "a", la)?;
    let mut op_b = operator(&cp, "b", lb)?;
    let mcp_addr = SocketAddr::from(([127, 0, 0, 1], free_port()?));
    let mut mcp = Command::new(workspace_binary("gpuscope-mcp")?);
    mcp.env("KUBECONFIG", cp.kubeconfig_for(Identity::Mcp)).args([
        "--transport",
        "http",
        "--listen",
        &mcp_addr.to_string(),
    ]);
    let mut facade = Process::spawn("gpuscope-mcp", mcp, cp.dir().join("mcp.log"))?;
    let url = format!("http://{mcp_addr}/mcp");

    let api: Api<GpuNodeStatus> = Api::all(admin.clone());
    let nodes: Api<Node> = Api::all(admin.clone());
    let events: Api<Event> = Api::all(admin.clone());
    eventually("every node evaluated healthy", Duration::from_secs(60), || async {
        let list = api.list(&ListParams::default()).await.ok()?;
        (list.items.len() == 3
            && list.items.iter().all(|o| o.status.as_ref().and_then(|s| s.health) == Some(Health::Healthy)))
        .then_some(())
    })
    .await
    .map_err(|e| format!("{e}\n{}\n{}", op_a.log_tail(20), op_b.log_tail(20)))?;

    // 1. XID 79 on sys-b's GPU 0: the reason (not just a False) on the object, the Node and the Event.
    probes[1].log_xid(79, "GPU has fallen off the bus.")?;
    let cond =
        eventually("GPUHealthy False on sys-b", Duration::from_secs(20), || unhealthy_condition(&api, "sys-b")).await?;
    assert_eq!(cond.reason, "XidFallenOffBus", "{cond:?}");
    let status = api.get("sys-b").await?.status.ok_or("no status")?;
    assert_eq!((count(&status, 79), status.health), (1, Some(Health::Unhealthy)));
    let node_cond = eventually("GPUHealthy False on the Node sys-b", Duration::from_secs(20), || {
        unhealthy_node_condition(&nodes, "sys-b")
    })
    .await?;
    assert_eq!(node_cond.reason.as_deref(), Some("XidFallenOffBus"), "{node_cond:?}");
    let event = eventually("a XidFallenOffBus Event about the Node sys-b", Duration::from_secs(20), || {
        warning_event(&events, "Node", "sys-b", "XidFallenOffBus")
    })
    .await?;
    assert!(event.note.as_deref().unwrap_or_default().contains("79"), "{event:?}");
    eventually("a XidFallenOffBus Event about the GpuNodeStatus sys-b", Duration::from_secs(20), || {
        warning_event(&events, "GpuNodeStatus", "sys-b", "XidFallenOffBus")
    })
    .await?;
    let answer = eventually("the facade reports sys-b", Duration::from_secs(20), || async {
        call(&url, "get_gpu_health", json!({})).await.ok().filter(|a| unhealthy_nodes(a) == names(&["sys-b"]))
    })
    .await?;
    assert!(answer["action"].as_str().unwrap_or_default().to_lowercase().contains("reboot"), "{answer}");
    assert!(problem_reasons(&answer, "sys-b").contains(&"XidFallenOffBus".to_string()), "{answer}");
    eprintln!("[system] XID 79 flowed through after {:.1}s", started.elapsed().as_secs_f64());

    // 2. SIGKILL the leader (a crash: no Lease release). The standby must take over and act on new evidence:
    // XID 48 on the healthy sys-a, written and announced under the survivor's identity.
    let a_leads = eventually("a leader", Duration::from_secs(20), || async {
        match (leads(la).await, leads(lb).await) {
            (Some(true), _) => Some(true),
            (_, Some(true)) => Some(false),
            _ => None,
        }
    })
    .await?;
    let (killed, survivor, survivor_id, survivor_addr) =
        if a_leads { (&mut op_a, &mut op_b, "b", lb) } else { (&mut op_b, &mut op_a, "a", la) };
    killed.kill();
    assert!(killed.check_running().is_err(), "the leader is gone");
    eventually("the standby leads", Duration::from_secs(20), || async { leads(survivor_addr).await.filter(|l| *l) })
        .await
        .map_err(|e| format!("{e}\n{}", survivor.log_tail(20)))?;
    probes[0].log_xid(
        48,
        "An uncorrectable double bit error (DBE) has been detected on GPU in the framebuffer at partition 6, \
         subpartition 0.",
    )?;
    let cond = eventually("GPUHealthy False on sys-a, from the survivor", Duration::from_secs(20), || {
        unhealthy_condition(&api, "sys-a")
    })
    .await
    .map_err(|e| format!("{e}\n{}", survivor.log_tail(20)))?;
    assert_eq!(cond.reason, "UncorrectableEcc", "{cond:?}");
    let node_cond = eventually("GPUHealthy False on the Node sys-a", Duration::from_secs(20), || {
        unhealthy_node_condition(&nodes, "sys-a")
    })
    .await?;
    assert_eq!(node_cond.reason.as_deref(), Some("UncorrectableEcc"), "{node_cond:?}");
    let event = eventually("an UncorrectableEcc Event about the Node sys-a", Duration::from_secs(20), || {
        warning_event(&events, "Node", "sys-a", "UncorrectableEcc")
    })
    .await?;
    assert_eq!(event.reporting_instance.as_deref(), Some(survivor_id), "the survivor wrote it: {event:?}");
    assert!(event.note.as_deref().unwrap_or_default().contains("48"), "{event:?}");
    eprintln!("[system] the standby took over after {:.1}s", started.elapsed().as_secs_f64());

    // 3. Restart the API server. While it is down sys-c logs two application XIDs (counted, no verdict change);
    // the probe records them at once and holds them for the API.
    cp.stop_apiserver();
    probes[2].log_xid(13, "Graphics Exception: ESR 0x404600=0x80000002")?;
    probes[2].log_xid(31, "Ch 00000008, intr 10000000. MMU Fault: ENGINE GRAPHICS GPCCLIENT_T1_0 faulted")?;
    eventually("sys-c's probe records both XIDs while the API server is down", Duration::from_secs(10), || async {
        (probes[2].recorded(13).await == Some(1.0) && probes[2].recorded(31).await == Some(1.0)).then_some(())
    })
    .await
    .map_err(|e| format!("{e}\n{}", probes[2].log_tail()))?;
    cp.start_apiserver()?;
    let admin = cp.client().await?;
    let api: Api<GpuNodeStatus> = Api::all(admin.clone());
    let nodes: Api<Node> = Api::all(admin.clone());
    eventually("the XIDs logged during the outage on sys-c", Duration::from_secs(60), || async {
        api.get("sys-c").await.ok()?.status.filter(|s| count(s, 13) >= 1 && count(s, 31) >= 1)
    })
    .await
    .map_err(|e| format!("{e}\n{}", probes[2].log_tail()))?;
    // A change after the restart reaches the conditions, the Node and the facade only through watches that
    // came back. It is also the last line of sys-c's log: once it is in, everything before it was read.
    probes[2].log_xid(62, "PMU halt: internal micro-controller halted")?;
    // Measured below. The operator's watches back off at most 5 s between retries (its WatchBackoff), and each
    // watch meets a few errors around the restart (refused connections, 403s until the new server's RBAC cache is
    // warm, then 410 Expired on resume): about 12 s on this machine, against 33-120 s with kube-runtime's default
    // 30 s cap. The bound leaves room for a loaded CI machine.
    let logged = Instant::now();
    let waited = eventually("GPUHealthy False on sys-c after the restart", Duration::from_secs(90), || {
        unhealthy_condition(&api, "sys-c")
    })
    .await;
    let cond = match waited {
        Ok(c) => c,
        Err(e) => {
            let diag = diagnose(&api, "sys-c", survivor_addr).await;
            return Err(format!("{e}\n{diag}\n{}", survivor.log_tail(20)).into());
        }
    };
    eprintln!("[system] XID 62 -> GPUHealthy False took {:.1}s after the restart", logged.elapsed().as_secs_f64());
    assert_eq!(cond.reason, "XidCritical", "{cond:?}");
    let status = api.get("sys-c").await?.status.ok_or("no status")?;
    assert_eq!(
        [13, 31, 62].map(|c| (count(&status, c), recent(&status, c))),
        [(1, 1); 3],
        "every XID of sys-c exactly once (13 and 31 logged during the outage)"
    );
    let node_cond = eventually("GPUHealthy False on the Node sys-c", Duration::from_secs(20), || {
        unhealthy_node_condition(&nodes, "sys-c")
    })
    .await?;
    assert_eq!(node_cond.reason.as_deref(), Some("XidCritical"), "{node_cond:?}");
    let answer = eventually("the facade's cache sees sys-c", Duration::from_secs(60), || async {
        call(&url, "get_gpu_health", json!({})).await.ok().filter(|a| unhealthy_nodes(a).contains(&"sys-c".into()))
    })
    .await
    .map_err(|e| format!("{e}\n{}", facade.log_tail(20)))?;
    assert_eq!(unhealthy_nodes(&answer), names(&NODES), "{answer}");
    assert!(problem_reasons(&answer, "sys-c").contains(&"XidCritical".to_string()), "{answer}");
    let xids = call(&url, "analyze_xid_errors", json!({ "node_name": "sys-c" })).await?;
    assert_eq!([13, 31, 62].map(|c| occurrences(&xids, c)), [1, 1, 1], "{xids}");
    assert_eq!(xids["totals"]["occurrences"], 3, "{xids}");
    eprintln!("[system] the API server restart lost nothing, after {:.1}s", started.elapsed().as_secs_f64());

    // 4. SIGKILL sys-b's probe (a crash: no last write, no spool flush on exit), log an XID while it is down,
    // restart it, and wait until the new process has written.
    let before = api.get("sys-b").await?.status.and_then(|s| s.probe).and_then(|p| p.last_report_time);
    let before = before.ok_or("sys-b has no lastReportTime")?;
    if let Some(mut p) = probes[1].process.take() {
        p.kill();
    }
    probes[1].log_xid(13, "Graphics Exception: ESR 0x404600=0x80000002")?;
    probes[1].start(&cp)?;
    eventually("the restarted sys-b probe is ready (it has written)", Duration::from_secs(30), || async {
        probes[1].ready().await.then_some(())
    })
    .await
    .map_err(|e| format!("{e}\n{}", probes[1].log_tail()))?;
    eventually("sys-b's lastReportTime advances", Duration::from_secs(10), || async {
        let s = api.get("sys-b").await.ok()?.status?;
        s.probe?.last_report_time.filter(|t| t.0 > before.0)
    })
    .await?;
    eventually("the XID logged while sys-b's probe was down", Duration::from_secs(20), || async {
        api.get("sys-b").await.ok()?.status.filter(|s| count(s, 13) >= 1)
    })
    .await
    .map_err(|e| format!("{e}\n{}", probes[1].log_tail()))?;
    // A marker after it in the same log: once it arrives, the new process has read every earlier line.
    probes[1].log_xid(31, "Ch 00000008, intr 10000000. MMU Fault: ENGINE GRAPHICS GPCCLIENT_T1_0 faulted")?;
    let b = eventually("the marker XID on sys-b", Duration::from_secs(20), || async {
        api.get("sys-b").await.ok()?.status.filter(|s| count(s, 31) >= 1)
    })
    .await?;
    assert_eq!(
        [79, 13, 31].map(|c| (count(&b, c), recent(&b, c))),
        [(1, 1); 3],
        "after the crash: the XID from before once, the one logged during the downtime once"
    );
    assert_eq!(b.health, Some(Health::Unhealthy), "the verdict survived everything");
    assert_eq!(condition(&b, "GPUHealthy").map(|c| c.reason), Some("XidFallenOffBus".to_string()));
    let answer = call(&url, "get_gpu_health", json!({})).await?;
    assert_eq!(unhealthy_nodes(&answer), names(&NODES), "{answer}");
    survivor.check_running()?;
    facade.check_running()?;
    eprintln!("[system] done in {:.1}s", started.elapsed().as_secs_f64());
    Ok(())
}
