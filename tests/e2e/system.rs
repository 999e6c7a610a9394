//! The whole system: the three real binaries as separate processes on a private control plane (simulated probes
//! for three nodes, two operator replicas, the facade over HTTP). An XID 79 injected on one node flows to its
//! GpuNodeStatus, to GPUHealthy on the object and the Node, to an Event, and to the facade's answer; killing the
//! leader operator, restarting the API server and restarting a probe lose nothing.

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use gpuscope_crds::GpuNodeStatus;
use gpuscope_tests::control_plane::{INSTALL_NAMESPACE, workspace_root};
use gpuscope_tests::fixtures::{create_node, install_rbac};
use gpuscope_tests::{
    ControlPlane, Identity, Process, eventually, free_port, http_get, metric_value, workspace_binary,
};
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, ListParams};
use rmcp::ServiceExt as _;
use rmcp::model::{CallToolRequestParams, ClientConfig};
use rmcp::transport::StreamableHttpClientTransport;
use serde_json::Value;

type TestResult = Result<(), Box<dyn std::error::Error>>;

const NODES: [&str; 3] = ["sys-a", "sys-b", "sys-c"];

struct Probe {
    node: &'static str,
    dir: std::path::PathBuf,
    process: Option<Process>,
}

impl Probe {
    fn start(&mut self, cp: &ControlPlane) -> Result<(), Box<dyn std::error::Error>> {
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
            .arg(SocketAddr::from(([127, 0, 0, 1], free_port()?)).to_string());
        self.process = Some(Process::spawn(format!("probe {}", self.node), cmd, self.dir.join("probe.log"))?);
        Ok(())
    }

    fn append(&self, seq: u64, code: u32, text: &str) -> std::io::Result<()> {
        use std::io::Write as _;
        let line =
            format!("3,{seq},{},-;NVRM: Xid (PCI:0000:18:00): {code}, pid=777, name=train.py, {text}\n", seq * 1000);
        std::fs::OpenOptions::new().append(true).open(self.dir.join("kmsg"))?.write_all(line.as_bytes())
    }
}

fn operator(cp: &ControlPlane, id: &str, listen: SocketAddr) -> Result<Process, Box<dyn std::error::Error>> {
    let mut cmd = Command::new(workspace_binary("gpuscope-operator")?);
    cmd.env("KUBECONFIG", cp.kubeconfig_for(Identity::Operator))
        .args(["--namespace", INSTALL_NAMESPACE, "--identity", id, "--leader-lease-seconds", "4"])
        .arg("--listen")
        .arg(listen.to_string());
    Ok(Process::spawn(format!("operator {id}"), cmd, cp.dir().join(format!("operator-{id}.log")))?)
}

async fn leads(addr: SocketAddr) -> Option<bool> {
    let (_, body) = http_get(addr, "/metrics").await.ok()?;
    metric_value(&body, "gpuscope_operator_leader").map(|v| v == 1.0)
}

fn count(status: &gpuscope_crds::GpuNodeStatusStatus, code: u32) -> u64 {
    status.xids.as_ref().map(|x| x.totals.iter().filter(|t| t.code == code).map(|t| t.count).sum()).unwrap_or(0)
}

async fn gpu_health_answer(url: &str) -> Result<Value, Box<dyn std::error::Error>> {
    let client = ClientConfig::default().serve(StreamableHttpClientTransport::from_uri(url.to_string())).await?;
    let result = client.call_tool(CallToolRequestParams::new("get_gpu_health")).await?;
    client.cancel().await?;
    result.structured_content.ok_or_else(|| "get_gpu_health: no structured content".into())
}

fn unhealthy_nodes(answer: &Value) -> Vec<String> {
    answer["problems"]
        .as_array()
        .map(|ps| {
            ps.iter()
                .filter(|p| p["health"] == "Unhealthy")
                .filter_map(|p| p["node"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn an_xid_79_flows_through_the_whole_system_and_survives_failures() -> TestResult {
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
        let mut p = Probe { node, dir, process: None };
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
    let _facade = Process::spawn("gpuscope-mcp", mcp, cp.dir().join("mcp.log"))?;
    let url = format!("http://{mcp_addr}/mcp");

    let api: Api<GpuNodeStatus> = Api::all(admin.clone());
    eventually("every node evaluated healthy", Duration::from_secs(60), || async {
        let list = api.list(&ListParams::default()).await.ok()?;
        (list.items.len() == 3
            && list
                .items
                .iter()
                .all(|o| o.status.as_ref().and_then(|s| s.health) == Some(gpuscope_crds::Health::Healthy)))
        .then_some(())
    })
    .await
    .map_err(|e| format!("{e}\n{}\n{}", op_a.log_tail(20), op_b.log_tail(20)))?;

    // XID 79 on sys-b's GPU 0.
    probes[1].append(1, 79, "GPU has fallen off the bus.")?;
    let status = eventually("GPUHealthy False on sys-b", Duration::from_secs(20), || async {
        let s = api.get("sys-b").await.ok()?.status?;
        s.conditions.as_ref()?.iter().any(|c| c.type_ == "GPUHealthy" && c.status == "False").then_some(s)
    })
    .await?;
    assert_eq!(count(&status, 79), 1);
    let nodes: Api<Node> = Api::all(admin.clone());
    eventually("GPUHealthy False on the Node", Duration::from_secs(20), || async {
        nodes
            .get("sys-b")
            .await
            .ok()?
            .status?
            .conditions?
            .into_iter()
            .find(|c| c.type_ == "GPUHealthy" && c.status == "False")
    })
    .await?;
    let events: Api<Event> = Api::all(admin.clone());
    eventually("a Warning Event for sys-b", Duration::from_secs(20), || async {
        events.list(&ListParams::default()).await.ok()?.items.into_iter().find(|e| {
            e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("sys-b")
                && e.type_.as_deref() == Some("Warning")
        })
    })
    .await?;
    let answer = eventually("the facade reports sys-b", Duration::from_secs(20), || async {
        gpu_health_answer(&url).await.ok().filter(|a| unhealthy_nodes(a) == vec!["sys-b".to_string()])
    })
    .await?;
    assert!(answer["action"].as_str().unwrap_or_default().to_lowercase().contains("reboot"), "{answer}");

    // Kill the leader: the other replica takes over and keeps the verdict.
    let a_leads = eventually("a leader", Duration::from_secs(20), || async {
        match (leads(la).await, leads(lb).await) {
            (Some(true), _) => Some(true),
            (_, Some(true)) => Some(false),
            _ => None,
        }
    })
    .await?;
    let (standby_addr, survivor) = if a_leads {
        op_a.kill();
        (lb, &mut op_b)
    } else {
        op_b.kill();
        (la, &mut op_a)
    };
    eventually("the standby leads", Duration::from_secs(20), || async { leads(standby_addr).await.filter(|l| *l) })
        .await
        .map_err(|e| format!("{e}\n{}", survivor.log_tail(20)))?;

    // Restart the API server while sys-a logs an XID 13: it arrives exactly once.
    cp.stop_apiserver();
    probes[0].append(1, 13, "Graphics Exception: ESR 0x404600=0x80000002")?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    cp.start_apiserver()?;
    let admin = cp.client().await?;
    let api: Api<GpuNodeStatus> = Api::all(admin.clone());
    eventually("XID 13 on sys-a", Duration::from_secs(60), || async {
        api.get("sys-a").await.ok()?.status.filter(|s| count(s, 13) >= 1)
    })
    .await?;

    // Restart sys-b's probe: it re-reads its kernel log, counts nothing twice.
    if let Some(mut p) = probes[1].process.take() {
        p.terminate(Duration::from_secs(10));
    }
    probes[1].start(&cp)?;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let a = api.get("sys-a").await?.status.ok_or("no status")?;
    let b = api.get("sys-b").await?.status.ok_or("no status")?;
    assert_eq!((count(&a, 13), count(&b, 79)), (1, 1), "nothing lost, nothing twice");
    assert_eq!(b.health, Some(gpuscope_crds::Health::Unhealthy), "the verdict survived everything");
    let answer = gpu_health_answer(&url).await?;
    assert_eq!(unhealthy_nodes(&answer), vec!["sys-b".to_string()], "{answer}");
    survivor.check_running()?;
    Ok(())
}
