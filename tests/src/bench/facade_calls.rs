//! The facade as an assistant meets it, measured: every tool called over streamable HTTP through the rmcp client
//! (latency), and once more as a raw `tools/call` (the bytes of the whole JSON-RPC response), against the facade
//! issue's targets. Shared by the scale run and the facade benchmark.

use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use rmcp::ServiceExt as _;
use rmcp::model::{CallToolRequestParams, ClientConfig};
use rmcp::transport::StreamableHttpClientTransport;
use serde_json::json;

use super::fleet_plan::{BenchResult, WORKLOAD_NAMESPACE};
use super::stats::{ms, percentile};
use crate::{ControlPlane, Identity, Process, free_port, http_get, http_post, workspace_binary};

/// Targets from the facade issue: single-node tools at 5,000 nodes, fleet answers, facade memory.
pub const TARGET_SINGLE_P50: Duration = Duration::from_millis(1);
/// p99 target for single-node tools.
pub const TARGET_SINGLE_P99: Duration = Duration::from_millis(5);
/// Bound for every fleet-wide answer on the wire.
pub const TARGET_FLEET_BYTES: usize = 16 * 1024;
/// Facade resident memory at 5,000 nodes.
pub const TARGET_FACADE_RSS_MIB: f64 = 64.0;

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

/// Start the real facade over HTTP on a free loopback port, with the facade's own identity.
pub fn spawn_facade(cp: &ControlPlane) -> BenchResult<(Process, SocketAddr)> {
    let listen = SocketAddr::from(([127, 0, 0, 1], free_port()?));
    let mut mcp = Command::new(workspace_binary("gpuscope-mcp")?);
    mcp.env("KUBECONFIG", cp.kubeconfig_for(Identity::Mcp)).args([
        "--transport",
        "http",
        "--listen",
        &listen.to_string(),
    ]);
    Ok((Process::spawn("gpuscope-mcp", mcp, cp.dir().join("mcp.log"))?, listen))
}

/// Wait until the facade's `/readyz` answers 200 (every store synced); how long it took.
pub async fn wait_ready(facade: &mut Process, addr: SocketAddr, limit: Duration) -> BenchResult<Duration> {
    let started = Instant::now();
    loop {
        if let Ok((200, _)) = http_get(addr, "/readyz").await {
            return Ok(started.elapsed());
        }
        facade.check_running()?;
        if started.elapsed() > limit {
            return Err(format!("facade not ready after {limit:?}:\n{}", facade.log_tail(20)).into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Every tool, fleet-wide and about `node`, `calls` times each through the rmcp client, then once raw for bytes.
/// A tool error fails the measurement: a figure for an error answer would be meaningless.
pub async fn measure_tools(addr: SocketAddr, node: &str, calls: usize) -> BenchResult<Vec<ToolFigure>> {
    let client =
        ClientConfig::default().serve(StreamableHttpClientTransport::from_uri(format!("http://{addr}/mcp"))).await?;
    let plan = [
        ("get_fleet_summary", json!({})),
        ("get_gpu_health", json!({})),
        ("get_gpu_inventory", json!({})),
        ("analyze_xid_errors", json!({})),
        ("get_pod_gpu_allocation", json!({})),
        ("describe_gpu_node", json!({ "node_name": node })),
        ("get_gpu_health", json!({ "node_name": node })),
        ("get_gpu_inventory", json!({ "node_name": node })),
        ("analyze_xid_errors", json!({ "node_name": node })),
        ("get_pod_gpu_allocation", json!({ "node_name": node })),
        // The plan's GPU pod on that node (fleet-00042 runs train-00042), whose GPUs the probe bound.
        (
            "explain_pod_gpu_failure",
            json!({ "namespace": WORKLOAD_NAMESPACE, "pod": node.replace("fleet-", "train-") }),
        ),
    ];
    let mut figures = Vec::with_capacity(plan.len());
    for (tool, args) in plan {
        let arguments = args.as_object().cloned().unwrap_or_default();
        let mut latencies = Vec::with_capacity(calls);
        for _ in 0..calls {
            let params = CallToolRequestParams::new(tool.to_string()).with_arguments(arguments.clone());
            let t = Instant::now();
            let result = client.call_tool(params).await?;
            latencies.push(t.elapsed());
            if result.is_error == Some(true) {
                return Err(format!("{tool} {args} answered a tool error: {:?}", result.content).into());
            }
        }
        let single_node = args.get("node_name").is_some() || args.get("pod").is_some();
        figures.push(ToolFigure {
            call: format!(
                "{tool}{}",
                if args.get("pod").is_some() {
                    " (one pod)"
                } else if single_node {
                    " (one node)"
                } else {
                    ""
                }
            ),
            single_node,
            p50: percentile(&latencies, 50.0).unwrap_or_default(),
            p99: percentile(&latencies, 99.0).unwrap_or_default(),
            wire_bytes: wire_bytes(addr, tool, &args).await?,
        });
    }
    client.cancel().await?;
    Ok(figures)
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

/// Print one line per tool with its verdict against the targets.
pub fn print_tools(figures: &[ToolFigure]) {
    println!("  facade tools over streamable HTTP (p50, p99 through the rmcp client; response body bytes):");
    for t in figures {
        let verdict = if t.single_node {
            let ok = t.p50 < TARGET_SINGLE_P50 && t.p99 < TARGET_SINGLE_P99;
            if ok { "latency meets target" } else { "latency MISSES target (p50 < 1 ms, p99 < 5 ms)" }
        } else if t.wire_bytes < TARGET_FLEET_BYTES {
            "size meets target"
        } else {
            "size MISSES 16 KiB"
        };
        println!(
            "    {:<38} p50 {:>8}  p99 {:>8}  {:>7} bytes  {verdict}",
            t.call,
            ms(Some(t.p50)),
            ms(Some(t.p99)),
            t.wire_bytes,
        );
    }
}

/// Print the facade's peak RSS with its verdict.
pub fn print_facade_rss(peak_mib: f64) {
    let verdict = if peak_mib < TARGET_FACADE_RSS_MIB { "meets" } else { "MISSES" };
    println!("  facade peak RSS {peak_mib:.1} MiB: {verdict} the 64 MiB target");
}
