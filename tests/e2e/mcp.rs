//! The real `gpuscope-mcp` binary, under its own read-only RBAC identity, against the real control plane, driven
//! by a real MCP client (rmcp) over stdio and over streamable HTTP: what it lists, what its tools answer about
//! objects this test created, how it refuses bad input and keeps serving, and how HTTP guards itself (Host,
//! Origin, bearer token, body size).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use gpuscope_crds::GpuNodeStatus;
use gpuscope_crds::gpu_node_status::{OPERATOR_FIELD_MANAGER, PROBE_FIELD_MANAGER};
use gpuscope_tests::control_plane::{INSTALL_NAMESPACE, workspace_root};
use gpuscope_tests::{
    ControlPlane, Identity, Process, eventually, free_port, fresh_namespace, http_get, run_ok, unique_name,
    workspace_binary,
};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use rmcp::ServiceExt;
use rmcp::model::{
    CallToolRequestParams, CallToolResult, ClientConfig, GetPromptRequestParams, ProtocolVersion,
    ReadResourceRequestParams, ResourceContents,
};
use rmcp::service::{RoleClient, RunningService};
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::transport::{StreamableHttpClientTransport, TokioChildProcess};
use serde_json::{Map, Value, json};
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};

type TestResult = Result<(), Box<dyn std::error::Error>>;
type Client = RunningService<RoleClient, ClientConfig>;

const TOKEN: &str = "e2e-test-token-0123456789abcdef";
const SERVICE_HOST: &str = "gpuscope-mcp.gpuscope-system.svc";
const CONSOLE_ORIGIN: &str = "http://console.example:8443";
const BODY_LIMIT: usize = 64 * 1024;

/// Install the namespace and the facade's RBAC from config/, once per control plane.
fn shared_with_rbac() -> Result<&'static ControlPlane, String> {
    static DONE: OnceLock<Result<(), String>> = OnceLock::new();
    let cp = ControlPlane::shared().map_err(|e| e.to_string())?;
    DONE.get_or_init(|| install_rbac(cp)).clone()?;
    Ok(cp)
}

/// The install namespace and config/rbac/mcp.yaml.
fn install_rbac(cp: &ControlPlane) -> Result<(), String> {
    // AlreadyExists is fine: other modules install into the same namespace.
    let _ = run_ok(cp.kubectl().args(["create", "namespace", INSTALL_NAMESPACE]));
    run_ok(
        cp.kubectl()
            .args(["apply", "--server-side", "--force-conflicts", "-f"])
            .arg(workspace_root().join("config/rbac/mcp.yaml")),
    )
    .map(|_| ())
}

fn minutes_ago(m: i64) -> String {
    (jiff::Timestamp::now() - jiff::SignedDuration::from_mins(m)).to_string()
}

/// A GPU node as the probe and the operator would leave it: `gpus` H100s, GPU `bad` (if any) Unhealthy after an
/// XID 79, plus a Node advertising the GPUs.
async fn create_gpu_node(client: &kube::Client, name: &str, gpus: u32, bad: Option<u32>) -> TestResult {
    let node = serde_json::from_value::<Node>(json!({
        "metadata": { "name": name, "labels": { "nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3" } },
        "status": { "capacity": { "nvidia.com/gpu": gpus.to_string(), "cpu": "64" },
                    "allocatable": { "nvidia.com/gpu": gpus.to_string(), "cpu": "64" } }
    }))?;
    Api::<Node>::all(client.clone()).create(&PostParams::default(), &node).await?;
    let api: Api<GpuNodeStatus> = Api::all(client.clone());
    api.create(&PostParams::default(), &GpuNodeStatus::new(name, Default::default())).await?;
    let gpu_list: Vec<Value> = (0..gpus)
        .map(|i| {
            json!({ "index": i, "uuid": format!("GPU-{name}-{i}"), "productName": "NVIDIA H100 80GB HBM3",
                    "pciBusId": format!("0000:{:02x}:00.0", 0x10 + i), "temperatureCelsius": 40 + i,
                    "memory": { "totalMib": 81559, "usedMib": 1024 },
                    "utilization": { "gpuPercent": 50, "memoryPercent": 30 } })
        })
        .collect();
    let xids = match bad {
        Some(i) => json!({
            "lastCode": 79, "lastTime": minutes_ago(10),
            "totals": [{ "code": 79, "pciBusId": format!("0000:{:02x}:00.0", 0x10 + i), "gpuUuid": format!("GPU-{name}-{i}"),
                         "count": 1, "firstSeen": minutes_ago(10), "lastSeen": minutes_ago(10) }],
            "recent": [{ "code": 79, "time": minutes_ago(10), "pciBusId": format!("0000:{:02x}:00.0", 0x10 + i),
                         "source": "kmsg", "message": "GPU has fallen off the bus." }]
        }),
        None => json!({ "totals": [], "recent": [] }),
    };
    let probe = json!({
        "apiVersion": "gpuscope.dev/v1alpha1", "kind": "GpuNodeStatus", "metadata": { "name": name },
        "status": {
            "probe": { "version": "0.1.0", "backend": "simulated", "lastReportTime": minutes_ago(1) },
            "driverVersion": "570.86.15", "cudaDriverVersion": "12.8", "gpuCount": gpus,
            "gpuModel": "NVIDIA H100 80GB HBM3", "gpus": gpu_list, "xids": xids
        }
    });
    api.patch_status(name, &PatchParams::apply(PROBE_FIELD_MANAGER), &Patch::Apply(probe)).await?;
    let verdicts: Vec<Value> = (0..gpus)
        .map(|i| match bad {
            Some(b) if b == i => json!({ "uuid": format!("GPU-{name}-{i}"), "index": i, "health": "Unhealthy",
                                         "reasons": ["XidFallenOffBus"] }),
            _ => json!({ "uuid": format!("GPU-{name}-{i}"), "index": i, "health": "Healthy", "reasons": [] }),
        })
        .collect();
    let summary = if bad.is_some() { ("False", "XidFallenOffBus") } else { ("True", "Healthy") };
    let operator = json!({
        "apiVersion": "gpuscope.dev/v1alpha1", "kind": "GpuNodeStatus", "metadata": { "name": name },
        "status": {
            "health": if bad.is_some() { "Unhealthy" } else { "Healthy" },
            "recentXidCount": u32::from(bad.is_some()),
            "verdicts": verdicts,
            "conditions": [
                { "type": "GPUHealthy", "status": summary.0, "reason": summary.1, "message": "summary",
                  "lastTransitionTime": minutes_ago(9) },
                { "type": "ProbeReporting", "status": "True", "reason": "HeartbeatRecent", "message": "lease renewed",
                  "lastTransitionTime": minutes_ago(60) }
            ]
        }
    });
    api.patch_status(name, &PatchParams::apply(OPERATOR_FIELD_MANAGER), &Patch::Apply(operator)).await?;
    // A fresh probe Lease, so an operator running on the shared control plane (the operator tests start one)
    // re-evaluates this node as reporting instead of turning ProbeReporting to NoProbeLease under the test.
    let lease = serde_json::from_value::<Lease>(json!({
        "metadata": { "name": format!("gpuscope-probe-{name}"), "namespace": INSTALL_NAMESPACE },
        "spec": { "holderIdentity": name, "leaseDurationSeconds": 3600, "renewTime": jiff::Timestamp::now().to_string() }
    }))?;
    Api::<Lease>::namespaced(client.clone(), INSTALL_NAMESPACE).create(&PostParams::default(), &lease).await?;
    Ok(())
}

/// A pod in `ns` bound to `node`, holding `gpus` GPUs. Retried: a fresh namespace has no default ServiceAccount
/// for a few seconds, and admission refuses pods until it does.
async fn create_gpu_pod(client: &kube::Client, ns: &str, name: &str, node: &str, gpus: u32) -> TestResult {
    let pod: Pod = serde_json::from_value(json!({
        "metadata": { "name": name, "namespace": ns },
        "spec": { "nodeName": node, "containers": [{ "name": "main", "image": "cuda:12",
                  "resources": { "limits": { "nvidia.com/gpu": gpus.to_string() } } }] }
    }))?;
    let api: Api<Pod> = Api::namespaced(client.clone(), ns);
    eventually("a GPU pod is admitted", Duration::from_secs(30), || async {
        api.create(&PostParams::default(), &pod).await.ok().map(|_| ())
    })
    .await?;
    Ok(())
}

async fn delete_gpu_node(client: &kube::Client, name: &str) {
    let leases: Api<Lease> = Api::namespaced(client.clone(), INSTALL_NAMESPACE);
    let _ = leases.delete(&format!("gpuscope-probe-{name}"), &DeleteParams::default()).await;
    let _ = Api::<GpuNodeStatus>::all(client.clone()).delete(name, &DeleteParams::default()).await;
    let _ = Api::<Node>::all(client.clone()).delete(name, &DeleteParams::default()).await;
}

fn facade_command(cp: &ControlPlane) -> Result<tokio::process::Command, Box<dyn std::error::Error>> {
    let mut cmd = tokio::process::Command::new(workspace_binary("gpuscope-mcp")?);
    cmd.env("KUBECONFIG", cp.kubeconfig_for(Identity::Mcp)).env("RUST_LOG", "info,gpuscope_mcp=debug");
    Ok(cmd)
}

fn log_file(cp: &ControlPlane, what: &str) -> Result<(PathBuf, std::fs::File), std::io::Error> {
    let path = cp.dir().join(format!("{}.log", unique_name(what)));
    let file = std::fs::File::create(&path)?;
    Ok((path, file))
}

/// The facade over stdio, with an MCP client negotiating `version` (None: the client's newest).
async fn stdio_client(
    cp: &ControlPlane,
    version: Option<ProtocolVersion>,
) -> Result<Client, Box<dyn std::error::Error>> {
    let (_, log) = log_file(cp, "mcp-stdio")?;
    let (transport, _) = TokioChildProcess::builder(facade_command(cp)?).stderr(Stdio::from(log)).spawn()?;
    let config = match version {
        Some(v) => ClientConfig::default().with_protocol_version(v),
        None => ClientConfig::default(),
    };
    Ok(config.serve(transport).await?)
}

fn arguments(v: Value) -> Map<String, Value> {
    v.as_object().cloned().unwrap_or_default()
}

async fn call(client: &Client, tool: &str, args: Value) -> Result<CallToolResult, Box<dyn std::error::Error>> {
    Ok(client.call_tool(CallToolRequestParams::new(tool.to_string()).with_arguments(arguments(args))).await?)
}

/// The structured content of a successful call.
async fn answer(client: &Client, tool: &str, args: Value) -> Result<Value, Box<dyn std::error::Error>> {
    let r = call(client, tool, args.clone()).await?;
    if r.is_error == Some(true) {
        return Err(format!("{tool} {args} failed: {}", text(&r)).into());
    }
    r.structured_content.ok_or_else(|| format!("{tool}: no structuredContent").into())
}

/// The error text of a call that must fail as a tool error.
async fn tool_error(client: &Client, tool: &str, args: Value) -> Result<String, Box<dyn std::error::Error>> {
    let r = call(client, tool, args.clone()).await?;
    if r.is_error != Some(true) {
        return Err(format!("{tool} {args} should have failed: {}", text(&r)).into());
    }
    Ok(text(&r))
}

fn text(r: &CallToolResult) -> String {
    r.content.iter().filter_map(|c| c.as_text().map(|t| t.text.clone())).collect::<Vec<_>>().join("\n")
}

#[tokio::test]
async fn the_mcp_identity_reads_what_it_caches_and_writes_nothing() -> TestResult {
    let cp = shared_with_rbac()?;
    let kubeconfig = cp.kubeconfig_for(Identity::Mcp);
    let can = |args: &[&str]| -> Result<bool, String> {
        let out = Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .args(["auth", "can-i"])
            .args(args)
            .output()
            .map_err(|e| e.to_string())?;
        match String::from_utf8_lossy(&out.stdout).trim() {
            "yes" => Ok(true),
            "no" => Ok(false),
            other => Err(format!("can-i {args:?}: {other} {}", String::from_utf8_lossy(&out.stderr))),
        }
    };
    for resource in ["gpunodestatuses.gpuscope.dev", "nodes", "pods"] {
        for verb in ["get", "list", "watch"] {
            assert!(can(&[verb, resource, "-A"])?, "the facade needs {verb} {resource}");
        }
        for verb in ["create", "update", "patch", "delete", "deletecollection"] {
            assert!(!can(&[verb, resource, "-A"])?, "the facade must not {verb} {resource}");
        }
    }
    for denied in [
        &["patch", "gpunodestatuses.gpuscope.dev", "--subresource=status"][..],
        &["get", "leases.coordination.k8s.io", "-n", INSTALL_NAMESPACE],
        &["list", "secrets", "-A"],
        &["create", "events.events.k8s.io", "-n", "default"],
        &["create", "pods/eviction", "-A"],
        &["list", "configmaps", "-A"],
    ] {
        assert!(!can(denied)?, "the facade must not be allowed {denied:?}");
    }
    Ok(())
}

#[tokio::test]
async fn stdio_client_lists_everything_and_every_tool_answers_from_the_cluster() -> TestResult {
    let cp = shared_with_rbac()?;
    let kube = cp.client().await?;
    let (sick, fine) = (unique_name("mcp-sick"), unique_name("mcp-fine"));
    create_gpu_node(&kube, &sick, 8, Some(3)).await?;
    create_gpu_node(&kube, &fine, 4, None).await?;
    let ns = fresh_namespace(&kube, "mcp").await?;
    create_gpu_pod(&kube, &ns, "train-0", &sick, 2).await?;

    let client = stdio_client(cp, None).await?;
    let info = client.peer_info().ok_or("no server info")?;
    assert_eq!(info.server_info.as_ref().map(|s| s.name.as_str()), Some("gpuscope-mcp"));
    assert!(
        info.capabilities.tools.is_some()
            && info.capabilities.prompts.is_some()
            && info.capabilities.resources.is_some()
    );

    let mut tools: Vec<String> = client.list_all_tools().await?.into_iter().map(|t| t.name.to_string()).collect();
    tools.sort();
    assert_eq!(
        tools,
        [
            "analyze_kernel_log",
            "analyze_xid_errors",
            "describe_gpu_node",
            "explain_xid",
            "get_fleet_summary",
            "get_gpu_health",
            "get_gpu_inventory",
            "get_pod_gpu_allocation"
        ]
    );
    let mut prompts: Vec<String> = client.list_all_prompts().await?.into_iter().map(|p| p.name).collect();
    prompts.sort();
    assert_eq!(prompts, ["diagnose-xid-errors", "gpu-health-check", "gpu-triage"]);

    // The cache may still be filling: the first call waits for it.
    let d = answer(&client, "describe_gpu_node", json!({ "node_name": sick })).await?;
    assert_eq!(d["health"], "Unhealthy");
    assert_eq!(d["probe"]["state"], "reporting");
    assert_eq!(d["gpus"].as_array().map(Vec::len), Some(8));
    assert_eq!(d["gpus"][3]["reasons"], json!(["XidFallenOffBus"]));
    assert_eq!(d["recent_xids"][0]["code"], 79);
    assert_eq!(d["recent_xids"][0]["gpu"]["index"], 3);
    assert_eq!(d["kubernetes"]["gpu_allocatable"]["nvidia.com/gpu"], 8);
    assert_eq!(d["kubernetes"]["gpu_allocated"]["nvidia.com/gpu"], 2);
    assert_eq!(d["kubernetes"]["pods"][0]["name"], "train-0");
    // The action is the operator's message or the facade's for XidFallenOffBus; either way not "nothing to do".
    assert!(d["action"].as_str().is_some_and(|a| a.len() > 20 && a != "None needed."), "{}", d["action"]);

    let inv = answer(&client, "get_gpu_inventory", json!({ "node_name": fine, "include_k8s_metadata": true })).await?;
    assert_eq!(inv["totals"]["gpus"], 4);
    assert_eq!(inv["nodes"][0]["gpus"][2]["uuid"], format!("GPU-{fine}-2"));
    assert_eq!(inv["nodes"][0]["kubernetes"]["labels"]["nvidia.com/gpu.product"], "NVIDIA-H100-80GB-HBM3");
    let by_uuid = answer(&client, "get_gpu_inventory", json!({ "gpu": format!("GPU-{sick}-5") })).await?;
    assert_eq!(by_uuid["nodes"][0]["name"], sick.as_str());

    let health = answer(&client, "get_gpu_health", json!({ "limit": 200 })).await?;
    let ours: Vec<&Value> =
        health["problems"].as_array().ok_or("problems")?.iter().filter(|p| p["node"] == sick.as_str()).collect();
    assert_eq!(ours.len(), 1, "{health}");
    assert_eq!(ours[0]["gpu"]["index"], 3);
    let healthy = answer(&client, "get_gpu_health", json!({ "node_name": fine })).await?;
    assert_eq!(healthy["action"], "None needed.");
    assert_eq!(healthy["gpus"]["healthy"], 4);

    let xids =
        answer(&client, "analyze_xid_errors", json!({ "node_name": sick, "since": "1h", "severity": "critical" }))
            .await?;
    assert_eq!(xids["totals"]["occurrences"], 1);
    assert_eq!(xids["by_code"][0]["code"], 79);
    assert_eq!(xids["by_code"][0]["mnemonic"], gpuscope_crds::xid::lookup(79).mnemonic);
    assert_eq!(xids["events"][0]["gpu"]["index"], 3);
    let none = answer(&client, "analyze_xid_errors", json!({ "node_name": sick, "since": "5m" })).await?;
    assert_eq!(none["totals"]["occurrences"], 0, "the XID is 10 minutes old");

    let alloc = answer(&client, "get_pod_gpu_allocation", json!({ "namespace": ns })).await?;
    assert_eq!(alloc["totals"]["pods"], 1);
    assert_eq!(alloc["totals"]["gpus_held"], 2);
    assert_eq!(alloc["totals"]["pods_on_unhealthy_nodes"], 1);
    assert_eq!(alloc["pods"][0]["node"], sick.as_str());

    let fleet = answer(&client, "get_fleet_summary", json!({})).await?;
    assert!(fleet["nodes"]["total"].as_u64().is_some_and(|n| n >= 2), "{fleet}");
    assert!(fleet["nodes"]["unhealthy"].as_u64().is_some_and(|n| n >= 1), "{fleet}");
    assert!(fleet["verdict"].as_str().is_some_and(|v| v.contains("GPU node")), "{fleet}");

    // Invalid arguments: tool errors that say what to do, for every tool.
    for (tool, args, expect) in [
        ("get_gpu_inventory", json!({ "node_name": format!("{sick}x") }), format!("Did you mean: {sick}")),
        ("get_gpu_inventory", json!({ "limit": 0 }), "at least 1".to_string()),
        ("get_gpu_health", json!({ "node_name": sick, "gpu": 42 }), "GPU 3".to_string()),
        ("get_gpu_health", json!({ "gpu": 1 }), "pass node_name too".to_string()),
        ("analyze_xid_errors", json!({ "since": "yesterday" }), "RFC 3339".to_string()),
        ("analyze_xid_errors", json!({ "severity": "fatal" }), "unknown variant".to_string()),
        ("describe_gpu_node", json!({}), "missing field `node_name`".to_string()),
        ("describe_gpu_node", json!({ "node_name": 7 }), "invalid type".to_string()),
        ("get_pod_gpu_allocation", json!({ "limit": 1000 }), "maximum of 200".to_string()),
        ("get_pod_gpu_allocation", json!({ "pod": "x" }), "unknown field `pod`".to_string()),
        ("get_fleet_summary", json!({ "cluster": "elsewhere" }), "no cluster named \"elsewhere\"".to_string()),
    ] {
        let e = tool_error(&client, tool, args.clone()).await?;
        assert!(e.contains(&expect), "{tool} {args}: {e}");
    }

    // Resources and prompts.
    let uris: Vec<String> = client.list_all_resources().await?.into_iter().map(|r| r.uri).collect();
    assert!(uris.contains(&"gpuscope://xid-catalog".to_string()));
    assert!(uris.contains(&format!("gpuscope://nodes/{sick}")), "{uris:?}");
    let r = client.read_resource(ReadResourceRequestParams::new(format!("gpuscope://nodes/{sick}"))).await?;
    let ResourceContents::TextResourceContents { text, .. } = &r.contents[0] else { return Err("not text".into()) };
    let object: Value = serde_json::from_str(text)?;
    assert_eq!(object["status"]["health"], "Unhealthy");
    assert!(object["metadata"].get("managedFields").is_none(), "stripped before caching");
    let catalog = client.read_resource(ReadResourceRequestParams::new("gpuscope://xid-catalog")).await?;
    let ResourceContents::TextResourceContents { text, .. } = &catalog.contents[0] else {
        return Err("not text".into());
    };
    assert!(text.contains("GPU_HAS_FALLEN_OFF_THE_BUS") || text.contains(gpuscope_crds::xid::lookup(79).mnemonic));
    let missing = client.read_resource(ReadResourceRequestParams::new("gpuscope://nodes/no-such-node")).await;
    assert!(missing.is_err(), "an unknown node is a resource error");
    let prompt = client
        .get_prompt(
            GetPromptRequestParams::new("diagnose-xid-errors")
                .with_arguments(arguments(json!({ "node": sick, "time_range": "6h" }))),
        )
        .await?;
    let prompt_text = serde_json::to_string(&prompt.messages)?;
    assert!(prompt_text.contains(&format!("node_name=\\\"{sick}\\\" and since=\\\"6h\\\"")), "{prompt_text}");

    // A new GpuNodeStatus: the next calls see it through the watch.
    let late = unique_name("mcp-late");
    create_gpu_node(&kube, &late, 2, None).await?;
    // The object and its status are separate writes: wait for the one with the status.
    let seen = eventually("the new node in the cache", Duration::from_secs(10), || async {
        answer(&client, "describe_gpu_node", json!({ "node_name": late }))
            .await
            .ok()
            .filter(|d| d["health"] == "Healthy")
    })
    .await?;
    assert_eq!(seen["gpus"].as_array().map(Vec::len), Some(2));

    client.cancel().await?;
    for n in [&sick, &fine, &late] {
        delete_gpu_node(&kube, n).await;
    }
    Ok(())
}

/// One JSON-RPC line from the child's stdout, within 10 s.
async fn read_message(
    lines: &mut tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
) -> Result<Value, Box<dyn std::error::Error>> {
    let line = tokio::time::timeout(Duration::from_secs(10), lines.next_line()).await??.ok_or("stdout closed")?;
    Ok(serde_json::from_str(&line)?)
}

#[tokio::test]
async fn stdio_survives_malformed_unknown_and_huge_requests() -> TestResult {
    let cp = shared_with_rbac()?;
    let (_, log) = log_file(cp, "mcp-raw")?;
    let mut child = facade_command(cp)?
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log))
        .kill_on_drop(true)
        .spawn()?;
    let mut stdin = child.stdin.take().ok_or("stdin")?;
    let mut lines = BufReader::new(child.stdout.take().ok_or("stdout")?).lines();
    let mut send = async |v: String| stdin.write_all(format!("{v}\n").as_bytes()).await;

    send(json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"raw","version":"1"}}}).to_string()).await?;
    let init = read_message(&mut lines).await?;
    assert_eq!(init["result"]["protocolVersion"], "2025-06-18");
    send(json!({"jsonrpc":"2.0","method":"notifications/initialized"}).to_string()).await?;

    // Unparsable input has no id to answer; it is dropped (as the other MCP SDKs do) and serving goes on.
    send("{this is not json".to_string()).await?;
    // Well-formed JSON that is no JSON-RPC message: Invalid Request.
    send(json!({"jsonrpc":"2.0","id":2,"method":17}).to_string()).await?;
    let bad = read_message(&mut lines).await?;
    assert_eq!(bad["error"]["code"], -32600, "{bad}");
    send(json!({"jsonrpc":"2.0","id":3,"method":"gpus/format"}).to_string()).await?;
    let unknown = read_message(&mut lines).await?;
    assert_eq!((unknown["id"].clone(), unknown["error"]["code"].clone()), (json!(3), json!(-32601)), "{unknown}");
    send(json!({"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"get_gpu_health","arguments":{"limit":"many"}}}).to_string()).await?;
    let wrong_type = read_message(&mut lines).await?;
    assert_eq!(wrong_type["result"]["isError"], true, "{wrong_type}");
    let huge = "n".repeat(1 << 20);
    send(json!({"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"describe_gpu_node","arguments":{"node_name":huge}}}).to_string()).await?;
    let refused = read_message(&mut lines).await?;
    assert_eq!(refused["result"]["isError"], true);
    let text = refused["result"]["content"][0]["text"].as_str().unwrap_or_default();
    assert!(
        text.contains("1048576 characters") && text.len() < 500,
        "a huge argument is refused, not echoed: {}",
        &text[..text.len().min(200)]
    );
    send(
        json!({"jsonrpc":"2.0","id":6,"method":"tools/call","params":{"name":"no_such_tool","arguments":{}}})
            .to_string(),
    )
    .await?;
    let no_tool = read_message(&mut lines).await?;
    assert_eq!(no_tool["error"]["code"], -32602, "{no_tool}");

    // Still serving.
    send(json!({"jsonrpc":"2.0","id":7,"method":"ping"}).to_string()).await?;
    let pong = read_message(&mut lines).await?;
    assert_eq!((pong["id"].clone(), pong.get("error").is_none()), (json!(7), true), "{pong}");
    send(json!({"jsonrpc":"2.0","id":8,"method":"tools/list"}).to_string()).await?;
    let listed = read_message(&mut lines).await?;
    assert_eq!(listed["result"]["tools"].as_array().map(Vec::len), Some(8));

    // Closing stdin ends the server cleanly.
    drop(stdin);
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait()).await??;
    assert!(status.success(), "{status}");
    Ok(())
}

/// The facade over HTTP on a free port; waits until `/readyz` answers 200.
async fn start_http(cp: &ControlPlane, extra: &[&str]) -> Result<(Process, SocketAddr), Box<dyn std::error::Error>> {
    let addr = SocketAddr::from(([127, 0, 0, 1], free_port()?));
    let token_file = cp.dir().join(unique_name("mcp-token"));
    std::fs::write(&token_file, format!("{TOKEN}\n"))?;
    let mut cmd = Command::new(workspace_binary("gpuscope-mcp")?);
    cmd.env("KUBECONFIG", cp.kubeconfig_for(Identity::Mcp))
        .env("RUST_LOG", "info,gpuscope_mcp=debug")
        .args(["--transport", "http", "--listen", &addr.to_string(), "--bearer-token-file"])
        .arg(&token_file)
        .args(["--allowed-hosts", &format!("localhost,127.0.0.1,{SERVICE_HOST}")])
        .args(["--allowed-origins", CONSOLE_ORIGIN, "--max-body-bytes", &BODY_LIMIT.to_string()])
        .args(extra);
    let (log, _) = log_file(cp, "mcp-http")?;
    let mut process = Process::spawn("gpuscope-mcp", cmd, log)?;
    eventually("the facade's /readyz", Duration::from_secs(30), || {
        let ok = process.check_running().is_ok();
        async move {
            if !ok {
                return Some(Err(()));
            }
            matches!(http_get(addr, "/readyz").await, Ok((200, _))).then_some(Ok(()))
        }
    })
    .await?
    .map_err(|()| format!("gpuscope-mcp exited:\n{}", process.log_tail(30)))?;
    Ok((process, addr))
}

async fn http_client(addr: SocketAddr, version: Option<ProtocolVersion>) -> Result<Client, Box<dyn std::error::Error>> {
    let transport = StreamableHttpClientTransport::from_config(
        StreamableHttpClientTransportConfig::with_uri(format!("http://{addr}/mcp")).auth_header(TOKEN),
    );
    let config = match version {
        Some(v) => ClientConfig::default().with_protocol_version(v),
        None => ClientConfig::default(),
    };
    Ok(config.serve(transport).await?)
}

#[tokio::test]
async fn http_clients_old_and_new_get_structured_answers_statelessly() -> TestResult {
    let cp = shared_with_rbac()?;
    let kube = cp.client().await?;
    let sick = unique_name("mcp-http");
    create_gpu_node(&kube, &sick, 8, Some(6)).await?;
    let (_facade, addr) = start_http(cp, &[]).await?;

    let newest = http_client(addr, None).await?;
    let negotiated = newest.peer_info().map(|i| i.protocol_version.clone());
    let h = eventually("the node over HTTP", Duration::from_secs(10), || async {
        answer(&newest, "get_gpu_health", json!({ "node_name": sick })).await.ok()
    })
    .await?;
    assert_eq!(h["problems"][0]["gpu"]["index"], 6, "{h}");
    newest.cancel().await?;

    // A client pinned to 2025-06-18 still gets output schemas and structured content (object-shaped roots).
    let old = http_client(addr, Some(ProtocolVersion::V_2025_06_18)).await?;
    assert_eq!(old.peer_info().map(|i| i.protocol_version.clone()), Some(ProtocolVersion::V_2025_06_18));
    let tools = old.list_all_tools().await?;
    assert!(tools.iter().all(|t| t.output_schema.is_some()), "every tool advertises an output schema");
    let d = answer(&old, "describe_gpu_node", json!({ "node_name": sick })).await?;
    assert_eq!(d["gpus"][6]["health"], "Unhealthy");
    let e = tool_error(&old, "describe_gpu_node", json!({ "node_name": "nope-nope" })).await?;
    assert!(e.contains("no GPU node named \"nope-nope\""), "{e}");
    old.cancel().await?;
    assert_ne!(negotiated, None);

    // Stateless: a tools/call with no initialize and no session, as a request landing on another replica would.
    let (status, _, body) = post_mcp(
        addr,
        &[("Authorization", &format!("Bearer {TOKEN}")), ("MCP-Protocol-Version", "2025-06-18")],
        &json!({"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"get_gpu_inventory","arguments":{"node_name": sick}}}).to_string(),
    )
    .await?;
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body)?;
    assert_eq!(v["result"]["structuredContent"]["totals"]["gpus"], 8, "{v}");

    // Metrics count the calls by tool and outcome, and the cache sizes.
    let (_, metrics) = http_get(addr, "/metrics").await?;
    assert!(metrics.contains(r#"gpuscope_mcp_tool_calls_total{tool="describe_gpu_node",outcome="ok"}"#), "{metrics}");
    assert!(
        metrics.contains(r#"gpuscope_mcp_tool_calls_total{tool="describe_gpu_node",outcome="tool_error"} 1"#),
        "{metrics}"
    );
    assert!(metrics.contains("gpuscope_mcp_tool_call_duration_seconds_bucket"), "{metrics}");
    assert!(metrics.contains(r#"kind="GpuNodeStatus""#) && metrics.contains("gpuscope_mcp_cache_objects"), "{metrics}");
    delete_gpu_node(&kube, &sick).await;
    Ok(())
}

/// A raw POST to /mcp; returns status, headers (lower-case names) and body.
async fn post_mcp(
    addr: SocketAddr,
    headers: &[(&str, &str)],
    body: &str,
) -> Result<(u16, String, String), Box<dyn std::error::Error>> {
    let has_host = headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host"));
    let mut request = format!("POST /mcp HTTP/1.1\r\nConnection: close\r\nContent-Length: {}\r\n", body.len());
    if !has_host {
        request.push_str(&format!("Host: {addr}\r\n"));
    }
    request.push_str("Content-Type: application/json\r\nAccept: application/json, text/event-stream\r\n");
    for (k, v) in headers {
        request.push_str(&format!("{k}: {v}\r\n"));
    }
    request.push_str("\r\n");
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    stream.write_all(request.as_bytes()).await?;
    // A refused request may be answered before the whole body is sent; the server may close the connection.
    let _ = stream.write_all(body.as_bytes()).await;
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw).await;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, rest) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let head = head.to_lowercase();
    let body = if head.contains("transfer-encoding: chunked") { dechunk(rest) } else { rest.to_string() };
    Ok((status, head, body))
}

fn dechunk(mut rest: &str) -> String {
    let mut out = String::new();
    while let Some((size, tail)) = rest.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else { break };
        if n == 0 || tail.len() < n {
            break;
        }
        out.push_str(&tail[..n]);
        rest = tail[n..].trim_start_matches("\r\n");
    }
    out
}

#[tokio::test]
async fn http_guards_host_origin_token_and_body_size() -> TestResult {
    let cp = shared_with_rbac()?;
    let (_facade, addr) = start_http(cp, &[]).await?;
    let init = json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"raw","version":"1"}}}).to_string();
    let bearer = format!("Bearer {TOKEN}");
    let auth = ("Authorization", bearer.as_str());

    let (status, head, _) = post_mcp(addr, &[], &init).await?;
    assert_eq!(status, 401, "no token");
    assert!(head.contains("www-authenticate: bearer"), "{head}");
    let (status, _, _) = post_mcp(addr, &[("Authorization", "Bearer wrong-token-0123456789")], &init).await?;
    assert_eq!(status, 401, "wrong token");
    let (status, _, body) = post_mcp(addr, &[auth], &init).await?;
    assert_eq!(status, 200, "{body}");

    // Host allow-list: a configured in-cluster name passes, anything else is DNS rebinding.
    let (status, _, body) = post_mcp(addr, &[auth, ("Host", SERVICE_HOST)], &init).await?;
    assert_eq!(status, 200, "the Service name is allowed: {body}");
    let (status, _, body) = post_mcp(addr, &[auth, ("Host", &format!("{SERVICE_HOST}:8080"))], &init).await?;
    assert_eq!(status, 200, "with a port too: {body}");
    let (status, _, body) = post_mcp(addr, &[auth, ("Host", "evil.example")], &init).await?;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("Host header is not allowed"), "{body}");

    // Origin: none passes (CLI clients), the configured console passes, any other page is refused.
    let (status, _, _) = post_mcp(addr, &[auth, ("Origin", CONSOLE_ORIGIN)], &init).await?;
    assert_eq!(status, 200);
    let (status, _, body) = post_mcp(addr, &[auth, ("Origin", "http://evil.example")], &init).await?;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("Origin header is not allowed"), "{body}");

    // Body limit.
    let big = json!({"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"describe_gpu_node","arguments":{"node_name": "x".repeat(BODY_LIMIT)}}}).to_string();
    let (status, _, _) = post_mcp(addr, &[auth, ("MCP-Protocol-Version", "2025-06-18")], &big).await?;
    assert_eq!(status, 413, "a body over --max-body-bytes");

    // Malformed JSON-RPC and unknown methods: errors, and the server keeps serving.
    let (status, _, body) = post_mcp(addr, &[auth], "{not json").await?;
    assert!((400..500).contains(&status), "malformed JSON: {status} {body}");
    let (status, _, body) = post_mcp(
        addr,
        &[auth, ("MCP-Protocol-Version", "2025-06-18")],
        &json!({"jsonrpc":"2.0","id":3,"method":"gpus/format","params":{}}).to_string(),
    )
    .await?;
    let v: Value = serde_json::from_str(&body).map_err(|e| format!("{status} {body}: {e}"))?;
    assert_eq!(v["error"]["code"], -32601, "{v}");
    let (status, _, body) = post_mcp(
        addr,
        &[auth, ("MCP-Protocol-Version", "2025-06-18")],
        &json!({"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"get_gpu_health","arguments":{"limit":-1}}}).to_string(),
    )
    .await?;
    let v: Value = serde_json::from_str(&body).map_err(|e| format!("{status} {body}: {e}"))?;
    assert_eq!(v["result"]["isError"], true, "{v}");

    // Probes and metrics stay open (no token), and the server is still up.
    assert_eq!(http_get(addr, "/healthz").await?.0, 200);
    assert_eq!(http_get(addr, "/readyz").await?.0, 200);
    let (status, _, _) = post_mcp(addr, &[auth], &init).await?;
    assert_eq!(status, 200);
    Ok(())
}

#[tokio::test]
async fn http_on_a_public_address_refuses_to_start_without_a_token() -> TestResult {
    let cp = shared_with_rbac()?;
    let out = tokio::process::Command::new(workspace_binary("gpuscope-mcp")?)
        .env("KUBECONFIG", cp.kubeconfig_for(Identity::Mcp))
        .env_remove("GPUSCOPE_MCP_BEARER_TOKEN")
        .args(["--transport", "http", "--listen", &format!("0.0.0.0:{}", free_port()?)])
        .output()
        .await?;
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("needs a bearer token"), "{stderr}");
    Ok(())
}

/// A facade over stdio with extra flags and a chosen KUBECONFIG.
async fn stdio_client_with(
    cp: &ControlPlane,
    kubeconfig: &std::path::Path,
    flags: &[String],
) -> Result<Client, Box<dyn std::error::Error>> {
    let (_, log) = log_file(cp, "mcp-stdio")?;
    let mut cmd = facade_command(cp)?;
    cmd.env("KUBECONFIG", kubeconfig).args(flags);
    let (transport, _) = TokioChildProcess::builder(cmd).stderr(Stdio::from(log)).spawn()?;
    Ok(ClientConfig::default().serve(transport).await?)
}

#[tokio::test]
async fn several_contexts_are_several_clusters_selected_by_the_cluster_argument() -> TestResult {
    let cp = shared_with_rbac()?;
    let kube = cp.client().await?;
    let name = unique_name("mcp-multi");
    create_gpu_node(&kube, &name, 2, Some(1)).await?;
    // A second context to the same API server stands in for a second cluster.
    let kubeconfig = cp.dir().join(unique_name("kubeconfig-multi"));
    std::fs::copy(cp.kubeconfig_for(Identity::Mcp), &kubeconfig)?;
    let current =
        run_ok(Command::new("kubectl").arg("--kubeconfig").arg(&kubeconfig).args(["config", "current-context"]))?;
    let current = current.trim().to_string();
    let user = Identity::Mcp.name();
    run_ok(Command::new("kubectl").arg("--kubeconfig").arg(&kubeconfig).args([
        "config",
        "set-context",
        "lab",
        &format!("--cluster={current}"),
        &format!("--user={user}"),
    ]))?;
    let flags = ["--context".to_string(), current.clone(), "--context".to_string(), "lab".to_string()];
    let client = stdio_client_with(cp, &kubeconfig, &flags).await?;

    let default = answer(&client, "describe_gpu_node", json!({ "node_name": name })).await?;
    assert_eq!(default["cluster"], current.as_str());
    let lab = answer(&client, "describe_gpu_node", json!({ "node_name": name, "cluster": "lab" })).await?;
    assert_eq!(lab["cluster"], "lab");
    assert_eq!(lab["health"], "Unhealthy");
    let e = tool_error(&client, "get_fleet_summary", json!({ "cluster": "labs" })).await?;
    assert!(e.contains(&format!("this server knows: {current}, lab")) && e.contains("Did you mean: lab?"), "{e}");
    let uris: Vec<String> = client.list_all_resources().await?.into_iter().map(|r| r.uri).collect();
    assert!(uris.contains(&format!("gpuscope://nodes/{name}")), "{uris:?}");
    assert!(uris.contains(&format!("gpuscope://clusters/lab/nodes/{name}")), "{uris:?}");
    let r =
        client.read_resource(ReadResourceRequestParams::new(format!("gpuscope://clusters/lab/nodes/{name}"))).await?;
    assert_eq!(r.contents.len(), 1);
    client.cancel().await?;
    delete_gpu_node(&kube, &name).await;
    Ok(())
}

#[tokio::test]
async fn offline_mode_serves_a_kubectl_export_without_any_cluster() -> TestResult {
    let cp = shared_with_rbac()?;
    let kube = cp.client().await?;
    let name = unique_name("mcp-offline");
    create_gpu_node(&kube, &name, 4, Some(0)).await?;
    let statuses = cp.dir().join(unique_name("fleet")).with_extension("yaml");
    let nodes = cp.dir().join(unique_name("nodes")).with_extension("json");
    std::fs::write(&statuses, run_ok(cp.kubectl().args(["get", "gns", &name, "-o", "yaml"]))?)?;
    std::fs::write(&nodes, run_ok(cp.kubectl().args(["get", "nodes", &name, "-o", "json"]))?)?;
    delete_gpu_node(&kube, &name).await;

    let flags = [
        "--from-file".to_string(),
        statuses.display().to_string(),
        "--from-file".to_string(),
        nodes.display().to_string(),
        "--cluster-name".to_string(),
        "post-mortem".to_string(),
    ];
    let client = stdio_client_with(cp, std::path::Path::new("/nonexistent/kubeconfig"), &flags).await?;
    let d = answer(&client, "describe_gpu_node", json!({ "node_name": name })).await?;
    assert_eq!(d["cluster"], "post-mortem");
    assert_eq!(d["health"], "Unhealthy");
    assert_eq!(d["kubernetes"]["node_exists"], true);
    assert_eq!(d["kubernetes"]["gpu_allocatable"]["nvidia.com/gpu"], 4);
    let fleet = answer(&client, "get_fleet_summary", json!({})).await?;
    assert_eq!(fleet["nodes"]["total"], 1, "only the exported node: {fleet}");
    client.cancel().await?;
    Ok(())
}

#[tokio::test]
async fn the_cache_keeps_answering_through_an_api_server_outage_and_catches_up_after() -> TestResult {
    // A private control plane: this test stops its API server.
    let cp = ControlPlane::start()?;
    cp.apply_crds()?;
    install_rbac(&cp)?;
    let kube = cp.client().await?;
    let before = unique_name("mcp-before");
    create_gpu_node(&kube, &before, 2, Some(0)).await?;
    let (mut facade, addr) = start_http(&cp, &[]).await?;
    let client = http_client(addr, None).await?;
    eventually("the node in the cache", Duration::from_secs(10), || async {
        answer(&client, "describe_gpu_node", json!({ "node_name": before }))
            .await
            .ok()
            .filter(|d| d["health"] == "Unhealthy")
    })
    .await?;

    cp.stop_apiserver();
    let during = answer(&client, "describe_gpu_node", json!({ "node_name": before })).await?;
    assert_eq!(during["health"], "Unhealthy", "answered from the cache with the API server down");
    assert_eq!(http_get(addr, "/readyz").await?.0, 200, "a dropped watch does not make the cache unready");
    cp.start_apiserver()?;

    let kube = cp.client().await?;
    let after = unique_name("mcp-after");
    create_gpu_node(&kube, &after, 2, None).await?;
    let seen = eventually("the watch to resume and bring the new node", Duration::from_secs(60), || async {
        answer(&client, "describe_gpu_node", json!({ "node_name": after }))
            .await
            .ok()
            .filter(|d| d["health"] == "Healthy")
    })
    .await?;
    assert_eq!(seen["health"], "Healthy");
    facade.check_running()?;
    client.cancel().await?;
    Ok(())
}
