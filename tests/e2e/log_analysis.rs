//! Kernel-log analysis where users meet it: the real `gpuscope-mcp analyze-log` command, and the MCP tools
//! `analyze_kernel_log` and `explain_xid` through a real MCP client over stdio, with no cluster at all, offline
//! from an export, and over the live control plane joining a node's GpuNodeStatus. Fed from the corpus in
//! mcp-facade/log-analysis/tests-data/corpus.txt, whose cases carry their expected results.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use gpuscope_crds::GpuNodeStatus;
use gpuscope_crds::gpu_node_status::{OPERATOR_FIELD_MANAGER, PROBE_FIELD_MANAGER};
use gpuscope_tests::control_plane::{INSTALL_NAMESPACE, workspace_root};
use gpuscope_tests::fixtures::install_rbac;
use gpuscope_tests::{ControlPlane, Identity, unique_name, workspace_binary};
use k8s_openapi::api::coordination::v1::Lease;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use rmcp::ServiceExt;
use rmcp::model::{CallToolRequestParams, CallToolResult, ClientConfig};
use rmcp::service::{RoleClient, RunningService};
use rmcp::transport::TokioChildProcess;
use serde_json::{Map, Value, json};

type TestResult = Result<(), Box<dyn std::error::Error>>;
type Client = RunningService<RoleClient, ClientConfig>;

/// The tool's own limit on `text` (mcp-facade's `MAX_TEXT_BYTES`).
const MAX_TEXT_BYTES: usize = 8 * 1024 * 1024;

fn corpus_path() -> PathBuf {
    workspace_root().join("mcp-facade/log-analysis/tests-data/corpus.txt")
}

/// One case of the corpus: its name, its `expect` lines split into words, and its log lines.
struct Case {
    name: String,
    expects: Vec<Vec<String>>,
    lines: Vec<String>,
}

impl Case {
    fn text(&self) -> String {
        self.lines.iter().map(|l| format!("{l}\n")).collect()
    }

    /// (XID, SXid, companion, not-understood) lines the expectations add up to, as the corpus header defines.
    fn totals(&self) -> [u64; 4] {
        let mut t = [0; 4];
        for e in &self.expects {
            match e.first().map(String::as_str) {
                Some("xid") => t[0] += e.iter().find_map(|w| w.strip_prefix("count=")?.parse().ok()).unwrap_or(1),
                Some("sxid") => t[1] += 1,
                Some("companion") => t[2] += 1,
                Some("not-understood") => t[3] += 1,
                _ => {}
            }
        }
        t
    }
}

/// The corpus's cases, parsed as its header describes.
fn corpus() -> Result<Vec<Case>, Box<dyn std::error::Error>> {
    let text = std::fs::read_to_string(corpus_path())?;
    let mut cases: Vec<Case> = Vec::new();
    for line in text.lines() {
        if let Some(name) = line.strip_prefix("=== ") {
            cases.push(Case { name: name.to_string(), expects: Vec::new(), lines: Vec::new() });
        } else if line.starts_with('#') || line.is_empty() {
            continue;
        } else if let Some(case) = cases.last_mut() {
            match line.strip_prefix("expect ") {
                Some(expect) if case.lines.is_empty() => case.expects.push(words(expect)),
                _ => case.lines.push(line.to_string()),
            }
        }
    }
    Ok(cases)
}

/// Split at spaces, keeping double-quoted values whole.
fn words(s: &str) -> Vec<String> {
    let mut out = vec![String::new()];
    let mut quoted = false;
    for c in s.chars() {
        match c {
            '"' => quoted = !quoted,
            ' ' if !quoted => out.push(String::new()),
            c => out.last_mut().into_iter().for_each(|w| w.push(c)),
        }
    }
    out.retain(|w| !w.is_empty());
    out
}

fn case<'a>(cases: &'a [Case], name: &str) -> Result<&'a Case, String> {
    cases.iter().find(|c| c.name == name).ok_or_else(|| format!("no corpus case {name:?}"))
}

/// The report's (XID, SXid, companion, not-understood) line counts.
fn report_totals(report: &Value) -> [u64; 4] {
    let s = &report["summary"];
    ["xidLines", "sxidLines", "companionLines", "notUnderstoodLines"].map(|k| s[k].as_u64().unwrap_or(u64::MAX))
}

/// Check a case's expectations that the report's JSON shows (the library's own tests check every detail).
fn check_case(case: &Case, report: &Value) -> Result<(), String> {
    let gpu = |pci: &str| {
        report["gpus"].as_array().into_iter().flatten().find(|g| g["pciBusId"] == pci).cloned().unwrap_or(Value::Null)
    };
    for e in &case.expects {
        let arg = |i: usize| e.get(i).map(String::as_str).unwrap_or_default();
        let ok = match arg(0) {
            "xid" => {
                let count = e.iter().find_map(|w| w.strip_prefix("count=")?.parse::<u64>().ok()).unwrap_or(1);
                gpu(arg(1))["xids"].as_array().into_iter().flatten().any(|x| {
                    x["code"].as_u64().map(|c| c.to_string()).as_deref() == Some(arg(2)) && x["count"] == count
                })
            }
            "sxid" => report["sxids"].as_array().into_iter().flatten().any(|s| {
                s["pciBusId"] == arg(1) && s["code"].as_u64().map(|c| c.to_string()).as_deref() == Some(arg(2))
            }),
            "companion" => report["companions"].as_array().into_iter().flatten().any(|c| c["kind"] == arg(1)),
            "uuid" => gpu(arg(1))["uuid"] == arg(2),
            "not-understood" => report["notUnderstood"]["samples"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|s| s["reason"].as_str().is_some_and(|r| r.contains(arg(1)))),
            "verdict" => report["summary"]["health"] == arg(1) && report["summary"]["action"] == arg(2),
            "reboots" => report["input"]["rebootsSeen"].as_u64().map(|n| n.to_string()).as_deref() == Some(arg(1)),
            "nothing" => report_totals(report) == [0; 4],
            other => return Err(format!("unknown expectation {other}")),
        };
        if !ok {
            return Err(format!("case {:?}: expected {e:?}, got {report}", case.name));
        }
    }
    if report_totals(report) != case.totals() {
        return Err(format!("case {:?}: totals {:?}, expected {:?}", case.name, report_totals(report), case.totals()));
    }
    Ok(())
}

/// `gpuscope-mcp analyze-log <args>` with `stdin` on its standard input.
fn analyze_log(args: &[&str], stdin: Option<&[u8]>) -> Result<Output, Box<dyn std::error::Error>> {
    let mut child = Command::new(workspace_binary("gpuscope-mcp")?)
        .arg("analyze-log")
        .args(args)
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(input)?;
    }
    Ok(child.wait_with_output()?)
}

/// The JSON `analyze-log --output json` prints for a file, which must exit 0.
fn analyze_log_json(file: &Path) -> Result<Value, Box<dyn std::error::Error>> {
    let path = file.to_str().ok_or("non-UTF-8 path")?;
    let out = analyze_log(&[path, "--output", "json"], None)?;
    if !out.status.success() {
        return Err(format!("analyze-log {path}: {}", String::from_utf8_lossy(&out.stderr)).into());
    }
    Ok(serde_json::from_slice(&out.stdout)?)
}

#[test]
fn cli_explains_representative_corpus_cases_as_a_table_and_as_json() -> TestResult {
    let cases = corpus()?;
    let dir = tempfile::tempdir()?;
    for (name, first_line) in [
        ("dmesg -T with two spaces before a one-digit day", "Unhealthy: reboot node: XID 79 on 0000:3b:00.0"),
        ("container-OS log shipper with a right-aligned error level", "Unhealthy: reset GPU: XID 48 on 0000:3b:00.0"),
        ("an application code above the rate", "Degraded: restart the application: XID 13 (6 times) on 0000:3b:00.0"),
        ("journalctl's boot separator", "Healthy: no action: 2 XID lines on 1 GPU, none escalates"),
        ("NVSwitch switch error, fatal", "Unhealthy: reboot node: fatal NVSwitch SXid"),
        ("redacted bus id", "Healthy: no action: no NVIDIA XID in this log"),
        ("kmsg record with an escaped process name", "Healthy: no action: 1 XID line on 1 GPU, none escalates"),
    ] {
        let c = case(&cases, name)?;
        let file = dir.path().join(format!("{}.log", unique_name("case")));
        std::fs::write(&file, c.text())?;
        let answer = analyze_log_json(&file)?;
        check_case(c, &answer["report"])?;
        assert_eq!(answer["verdict"].as_str().map(|v| v.starts_with(first_line)), Some(true), "{name}: {answer}");
        let text = analyze_log(&[file.to_str().ok_or("path")?], None)?;
        assert!(text.status.success(), "{name}");
        let text = String::from_utf8(text.stdout)?;
        assert!(text.starts_with(first_line), "{name}: {text}");
    }
    Ok(())
}

#[test]
fn cli_reads_the_whole_corpus_as_one_log_and_the_totals_add_up() -> TestResult {
    let cases = corpus()?;
    let want = cases.iter().map(Case::totals).fold([0; 4], |a, b| [a[0] + b[0], a[1] + b[1], a[2] + b[2], a[3] + b[3]]);
    assert!(want[0] >= 70, "the corpus has {want:?}");
    let answer = analyze_log_json(&corpus_path())?;
    let report = &answer["report"];
    assert_eq!(report_totals(report), want);
    // The last reboot in the file comes after every XID: nothing counts, as in the operator after a reboot.
    assert_eq!(report["input"]["rebootsSeen"], 3);
    assert_eq!(
        (report["summary"]["health"].clone(), answer["action"].clone()),
        (
            json!("Healthy"),
            json!(
                "None needed for the GPUs: no XID in the log escalates under the operator's rules (report.gpus explains each code)."
            )
        )
    );
    assert_eq!(report["input"]["lines"], std::fs::read_to_string(corpus_path())?.lines().count());
    let text = analyze_log(&[corpus_path().to_str().ok_or("path")?], None)?;
    let text = String::from_utf8(text.stdout)?;
    assert!(
        text.contains(&format!(
            "{} XID lines, {} SXid lines, {} companion lines, {} lines not understood",
            want[0], want[1], want[2], want[3]
        )),
        "{text}"
    );
    Ok(())
}

#[test]
fn cli_reads_stdin_survives_binary_input_and_fails_clearly_on_a_missing_file() -> TestResult {
    let cases = corpus()?;
    let c = case(&cases, "kmsg record")?;
    let out = analyze_log(&["-", "--output", "json"], Some(c.text().as_bytes()))?;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let answer: Value = serde_json::from_slice(&out.stdout)?;
    check_case(c, &answer["report"])?;

    // Binary input with a driver line in the middle: read line by line, never refused.
    let mut binary: Vec<u8> = (0..4_000_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8).collect();
    binary.extend_from_slice(b"\n\xff NVRM: Xid (PCI:0000:3b:00): 48, pid=1, name=\xe9, DBE\n\0\0\0");
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("binary.bin");
    std::fs::write(&file, &binary)?;
    let answer = analyze_log_json(&file)?;
    assert_eq!(answer["report"]["input"]["bytes"], binary.len());
    assert_eq!(answer["report"]["summary"]["action"], "resetGpu");
    let out = analyze_log(&["-"], Some(&binary))?;
    assert!(out.status.success() && out.stdout.starts_with(b"Unhealthy: reset GPU: XID 48"), "{out:?}");

    // Exit status: 0 whatever the verdict, 3 with --fail-on when it is reached, 1 when the input cannot be read.
    let path = file.to_str().ok_or("path")?;
    assert_eq!(analyze_log(&[path, "--fail-on", "unhealthy"], None)?.status.code(), Some(3));
    let healthy = dir.path().join("healthy.log");
    std::fs::write(&healthy, case(&cases, "ordinary kernel lines")?.text())?;
    let healthy = healthy.to_str().ok_or("path")?;
    assert_eq!(analyze_log(&[healthy, "--fail-on", "degraded"], None)?.status.code(), Some(0));
    // A log whose only finding is a fatal SXid (header and detail lines): the node-level fault is reached.
    let sxid = dir.path().join("fatal-sxid.log");
    std::fs::write(
        &sxid,
        "[ 77.1] nvidia-nvswitch0: SXid (PCI:0000:05:00.0): 20034, Fatal, Link 28 LTSSM Fault Up\n\
         [ 77.1] nvidia-nvswitch0: SXid (PCI:0000:05:00.0): 20034, Severity 5 Engine instance 28 Sub-engine 00\n\
         [ 78.2] nvidia-nvswitch0: SXid (PCI:0000:05:00.0): 12028, Non-fatal, Link 32 egress non-posted PRIV error\n",
    )?;
    let sxid = sxid.to_str().ok_or("path")?;
    assert_eq!(analyze_log(&[sxid, "--fail-on", "degraded"], None)?.status.code(), Some(3));
    let answer = analyze_log_json(std::path::Path::new(sxid))?;
    let sxids = answer["report"]["sxids"].as_array().ok_or("sxids")?;
    let counted: Vec<(u64, &str)> =
        sxids.iter().map(|x| (x["count"].as_u64().unwrap_or(0), x["severity"].as_str().unwrap_or("-"))).collect();
    assert_eq!(counted, [(1, "Non-fatal"), (1, "Fatal")], "one event per SXid, its header's severity: {answer}");
    assert_eq!(answer["report"]["summary"]["first"]["reason"], "NvswitchFatalSxid");
    let missing = dir.path().join("no-such.log");
    let out = analyze_log(&[missing.to_str().ok_or("path")?], None)?;
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8(out.stderr)?;
    assert_eq!(
        stderr.trim(),
        format!("gpuscope-mcp analyze-log: cannot open {}: No such file or directory (os error 2)", missing.display())
    );
    assert!(out.stdout.is_empty());
    Ok(())
}

/// The facade over stdio with `flags`, no kubeconfig, logs in `log`.
async fn facade(flags: &[&str], kubeconfig: &Path, log: &Path) -> Result<Client, Box<dyn std::error::Error>> {
    let mut cmd = tokio::process::Command::new(workspace_binary("gpuscope-mcp")?);
    cmd.args(flags).env("KUBECONFIG", kubeconfig).env("RUST_LOG", "info,gpuscope_mcp=debug");
    let (transport, _) = TokioChildProcess::builder(cmd).stderr(Stdio::from(std::fs::File::create(log)?)).spawn()?;
    Ok(ClientConfig::default().serve(transport).await?)
}

async fn call(client: &Client, tool: &str, args: Value) -> Result<CallToolResult, Box<dyn std::error::Error>> {
    let args: Map<String, Value> = args.as_object().cloned().unwrap_or_default();
    Ok(client.call_tool(CallToolRequestParams::new(tool.to_string()).with_arguments(args)).await?)
}

/// The structured content of a call that must succeed.
async fn answer(client: &Client, tool: &str, args: Value) -> Result<Value, Box<dyn std::error::Error>> {
    let r = call(client, tool, args).await?;
    if r.is_error == Some(true) {
        return Err(format!("{tool} failed: {}", text(&r)).into());
    }
    r.structured_content.ok_or_else(|| format!("{tool}: no structuredContent").into())
}

/// The error text of a call that must fail as a tool error.
async fn tool_error(client: &Client, tool: &str, args: Value) -> Result<String, Box<dyn std::error::Error>> {
    let r = call(client, tool, args).await?;
    if r.is_error != Some(true) {
        return Err(format!("{tool} should have failed: {}", text(&r)).into());
    }
    Ok(text(&r))
}

fn text(r: &CallToolResult) -> String {
    r.content.iter().filter_map(|c| c.as_text().map(|t| t.text.clone())).collect::<Vec<_>>().join("\n")
}

#[tokio::test]
async fn the_tools_work_over_stdio_with_no_cluster_at_all() -> TestResult {
    let dir = tempfile::tempdir()?;
    let client = facade(&["--no-cluster"], Path::new("/nonexistent/kubeconfig"), &dir.path().join("mcp.log")).await?;
    let mut tools: Vec<String> = client.list_all_tools().await?.into_iter().map(|t| t.name.to_string()).collect();
    tools.sort();
    assert_eq!(tools, ["analyze_kernel_log", "explain_xid"], "only the tools that work without a cluster");

    // The whole corpus through the tool: the same totals, and the same answer the CLI prints as JSON.
    let cases = corpus()?;
    let corpus_text = std::fs::read_to_string(corpus_path())?;
    let whole = answer(&client, "analyze_kernel_log", json!({ "text": corpus_text })).await?;
    let want = cases.iter().map(Case::totals).fold([0; 4], |a, b| [a[0] + b[0], a[1] + b[1], a[2] + b[2], a[3] + b[3]]);
    assert_eq!(report_totals(&whole["report"]), want);
    assert_eq!(whole, analyze_log_json(&corpus_path())?, "--output json equals the tool's structured content");
    for name in [
        "dmesg -x",
        "journalctl -o short-iso",
        "a line wrapped by a terminal inside the address",
        "PCI domain other than 0000",
    ] {
        let c = case(&cases, name)?;
        let a = answer(&client, "analyze_kernel_log", json!({ "text": c.text() })).await?;
        check_case(c, &a["report"])?;
        let file = dir.path().join(format!("{}.log", unique_name("case")));
        std::fs::write(&file, c.text())?;
        assert_eq!(a, analyze_log_json(&file)?, "{name}: CLI and tool agree");
    }
    let r = call(&client, "analyze_kernel_log", json!({ "text": case(&cases, "dmesg -x")?.text() })).await?;
    let summary = text(&r);
    assert!(summary.starts_with("Unhealthy: reset GPU: XID 95 on 0000:3b:00.0\nAction: Reset GPU: XID 95 on the GPU at 0000:3b:00.0 of the node that wrote this log."), "{summary}");

    // explain_xid: a known critical code, an application code, and a code the catalog does not list.
    let x79 = answer(&client, "explain_xid", json!({ "code": 79 })).await?;
    assert_eq!(x79["explanation"]["catalog"]["immediateAction"], "RESTART_BM");
    assert_eq!(x79["explanation"]["once"]["action"], "rebootNode");
    assert_eq!(x79["explanation"]["rule"]["reason"], "XidFallenOffBus");
    assert!(
        x79["action"].as_str().is_some_and(|a| a.starts_with("Reboot node: one occurrence makes the GPU Unhealthy.")),
        "{x79}"
    );
    assert!(x79.get("nodes_with_code").is_none() && x79.get("cluster").is_none(), "{x79}");
    let x13 = answer(&client, "explain_xid", json!({ "code": 13 })).await?;
    assert_eq!(
        (x13["explanation"]["once"]["health"].clone(), x13["explanation"]["aboveRate"]["health"].clone()),
        (json!("Healthy"), json!("Degraded"))
    );
    let unknown = answer(&client, "explain_xid", json!({ "code": 99_999 })).await?;
    assert_eq!(unknown["explanation"]["catalog"]["known"], false);
    assert!(
        unknown["verdict"].as_str().is_some_and(|v| v.starts_with("XID 99999 is not in NVIDIA's XID catalog")),
        "{unknown}"
    );

    // Refusals: the size limit, an empty paste, a node without a cluster, the cluster tools.
    let e = tool_error(&client, "analyze_kernel_log", json!({ "text": "x".repeat(MAX_TEXT_BYTES + 1) })).await?;
    assert!(
        e.starts_with("invalid argument `text`: is 8388609 bytes; this tool analyses at most 8388608 bytes (8 MiB)"),
        "{e}"
    );
    let at_limit = format!(
        "{}{}",
        case(&cases, "kmsg record")?.text(),
        " ".repeat(MAX_TEXT_BYTES - case(&cases, "kmsg record")?.text().len())
    );
    let a = answer(&client, "analyze_kernel_log", json!({ "text": at_limit })).await?;
    assert_eq!(a["report"]["input"]["bytes"], MAX_TEXT_BYTES);
    let e = tool_error(&client, "analyze_kernel_log", json!({ "text": "" })).await?;
    assert!(e.contains("is empty; paste the kernel log"), "{e}");
    let e = tool_error(&client, "analyze_kernel_log", json!({ "text": "x", "node_name": "gpu-1" })).await?;
    assert!(
        e.starts_with("no cluster connected; start gpuscope-mcp with a kubeconfig (or --context) or --from-file"),
        "{e}"
    );
    let e = tool_error(&client, "get_fleet_summary", json!({})).await?;
    assert!(e.starts_with("no cluster connected"), "{e}");
    let e = tool_error(&client, "explain_xid", json!({ "code": -1 })).await?;
    assert!(e.contains("expected a whole number"), "{e}");
    client.cancel().await?;
    Ok(())
}

/// A GpuNodeStatus as the probe and the operator would leave it: 4 GPUs, index 2 at 0000:3b:00.0, which fell off
/// the bus ten minutes ago (XID 79 in its history) and is Unhealthy.
fn node_status(name: &str) -> (Value, Value) {
    let ten_minutes_ago = (jiff::Timestamp::now() - jiff::SignedDuration::from_mins(10)).to_string();
    let pci = |i: u32| if i == 2 { "0000:3b:00.0".to_string() } else { format!("0000:{:02x}:00.0", 0x18 + i) };
    let gpus: Vec<Value> = (0..4)
        .map(|i| json!({ "index": i, "uuid": format!("GPU-{name}-{i}"), "productName": "NVIDIA H100 80GB HBM3", "pciBusId": pci(i) }))
        .collect();
    let probe = json!({
        "apiVersion": "gpuscope.dev/v1alpha1", "kind": "GpuNodeStatus", "metadata": { "name": name },
        "status": {
            "probe": { "version": "0.1.0", "backend": "simulated", "lastReportTime": jiff::Timestamp::now().to_string() },
            "driverVersion": "570.86.15", "gpuCount": 4, "gpuModel": "NVIDIA H100 80GB HBM3", "gpus": gpus,
            "xids": {
                "lastCode": 79, "lastTime": ten_minutes_ago,
                "totals": [{ "code": 79, "pciBusId": "0000:3b:00.0", "gpuUuid": format!("GPU-{name}-2"), "count": 1,
                             "firstSeen": ten_minutes_ago, "lastSeen": ten_minutes_ago }],
                "recent": [{ "code": 79, "time": ten_minutes_ago, "pciBusId": "0000:3b:00.0", "source": "kmsg",
                             "message": "GPU has fallen off the bus." }]
            }
        }
    });
    let verdicts: Vec<Value> = (0..4)
        .map(|i| {
            if i == 2 {
                json!({ "uuid": format!("GPU-{name}-{i}"), "index": i, "health": "Unhealthy", "reasons": ["XidFallenOffBus"] })
            } else {
                json!({ "uuid": format!("GPU-{name}-{i}"), "index": i, "health": "Healthy", "reasons": [] })
            }
        })
        .collect();
    let operator = json!({
        "apiVersion": "gpuscope.dev/v1alpha1", "kind": "GpuNodeStatus", "metadata": { "name": name },
        // `conditions` given, and not empty: when a shared operator applied its conditions first under the same
        // field manager, an apply that omits them (or empties the list) removes them, which a 1.20 API server turns
        // into an invalid null.
        "status": { "health": "Unhealthy", "recentXidCount": 1, "verdicts": verdicts, "conditions": [{
            "type": "GPUHealthy", "status": "False", "reason": "XidFallenOffBus",
            "message": "GPU 2 fell off the bus.", "lastTransitionTime": ten_minutes_ago
        }] }
    });
    (probe, operator)
}

/// A log from that node: the GPU falling off the bus, the driver's companion line, and an application XID on
/// another GPU the cluster has not recorded.
fn node_log() -> String {
    "Aug 05 03:54:13 gpu-node kernel: NVRM: Xid (PCI:0000:3b:00): 79, pid=1234, name=python3, GPU has fallen off the bus.\n\
     Aug 05 03:54:13 gpu-node kernel: NVRM: GPU at 0000:3b:00.0 has fallen off the bus.\n\
     Aug 05 03:54:14 gpu-node kernel: NVRM: Xid (PCI:0000:18:00): 13, pid=77, name=train, Graphics Exception\n"
        .to_string()
}

/// What every join must say: GPU 2's index and UUID, the cluster already knows its XID 79, not GPU 0's XID 13.
fn check_join(a: &Value, node: &str, cluster: &str) {
    assert_eq!(a["cluster"], cluster, "{a}");
    assert_eq!(a["node"]["name"], node, "{a}");
    assert_eq!(a["node"]["health"], "Unhealthy", "{a}");
    let gpu = a["report"]["gpus"].as_array().into_iter().flatten().find(|g| g["pciBusId"] == "0000:3b:00.0");
    let gpu = gpu.cloned().unwrap_or(Value::Null);
    assert_eq!((gpu["index"].clone(), gpu["uuid"].clone()), (json!(2), json!(format!("GPU-{node}-2"))), "{a}");
    let joined = a["node"]["gpus"].as_array().into_iter().flatten().find(|g| g["pci_bus_id"] == "0000:3b:00.0");
    let joined = joined.cloned().unwrap_or(Value::Null);
    assert_eq!(joined["index"], 2, "{a}");
    assert_eq!(joined["current_health"], "Unhealthy", "{a}");
    assert_eq!(
        joined["xids"],
        json!([{ "code": 79, "log_count": 1, "cluster_knows": true, "cluster_count": 1, "cluster_last_seen": joined["xids"][0]["cluster_last_seen"] }]),
        "{a}"
    );
    assert_eq!(
        (a["node"]["xids_already_known"].clone(), a["node"]["xids_not_known"].clone()),
        (json!(1), json!(1)),
        "{a}"
    );
    assert!(
        a["action"]
            .as_str()
            .is_some_and(|t| t
                .starts_with(&format!("Reboot node: XID 79 on GPU 2 at 0000:3b:00.0 (GPU-{node}-2) of node {node}."))),
        "{a}"
    );
}

#[tokio::test]
async fn offline_mode_joins_the_log_with_an_exported_node() -> TestResult {
    let dir = tempfile::tempdir()?;
    let name = "gpu-node-7";
    let (mut object, operator) = node_status(name);
    // One exported object, as `kubectl get gns -o yaml` would write it: the probe's and the operator's fields.
    if let (Some(status), Some(more)) = (object["status"].as_object_mut(), operator["status"].as_object()) {
        status.extend(more.clone());
    }
    object["spec"] = json!({});
    let export = dir.path().join("fleet.json");
    std::fs::write(&export, serde_json::to_string(&json!({ "apiVersion": "v1", "kind": "List", "items": [object] }))?)?;
    let flags = ["--from-file", export.to_str().ok_or("path")?, "--cluster-name", "post-mortem"];
    let client = facade(&flags, Path::new("/nonexistent/kubeconfig"), &dir.path().join("mcp.log")).await?;
    let a = answer(&client, "analyze_kernel_log", json!({ "text": node_log(), "node_name": name })).await?;
    check_join(&a, name, "post-mortem");
    let alone = answer(&client, "analyze_kernel_log", json!({ "text": node_log() })).await?;
    assert!(alone.get("node").is_none() && alone["report"]["gpus"][1].get("index").is_none(), "{alone}");
    let e = tool_error(&client, "analyze_kernel_log", json!({ "text": node_log(), "node_name": "gpu-node-8" })).await?;
    assert!(e.contains("no GPU node named \"gpu-node-8\"") && e.contains("Did you mean: gpu-node-7?"), "{e}");
    let x = answer(&client, "explain_xid", json!({ "code": 79 })).await?;
    assert_eq!(x["cluster"], "post-mortem");
    assert_eq!(x["nodes_with_code"]["nodes"][0]["node"], name);
    assert_eq!(x["nodes_with_code"]["nodes"][0]["gpus"][0]["index"], 2);
    client.cancel().await?;
    Ok(())
}

#[tokio::test]
async fn a_live_cluster_names_the_gpu_of_the_log_and_already_knows_its_xid() -> TestResult {
    let cp = ControlPlane::shared()?;
    install_rbac(cp, &["mcp.yaml"])?;
    let kube = cp.client().await?;
    let name = unique_name("log-node");
    let api: Api<GpuNodeStatus> = Api::all(kube.clone());
    api.create(&PostParams::default(), &GpuNodeStatus::new(&name, Default::default())).await?;
    let (probe, operator) = node_status(&name);
    api.patch_status(&name, &PatchParams::apply(PROBE_FIELD_MANAGER), &Patch::Apply(probe)).await?;
    api.patch_status(&name, &PatchParams::apply(OPERATOR_FIELD_MANAGER), &Patch::Apply(operator)).await?;
    // A fresh probe Lease, so an operator started by other tests on the shared control plane keeps the node
    // reporting instead of turning it Unknown under this test.
    let lease = serde_json::from_value::<Lease>(json!({
        "metadata": { "name": format!("gpuscope-probe-{name}"), "namespace": INSTALL_NAMESPACE },
        "spec": { "holderIdentity": name, "leaseDurationSeconds": 3600, "renewTime": jiff::Timestamp::now().to_string() }
    }))?;
    let leases: Api<Lease> = Api::namespaced(kube.clone(), INSTALL_NAMESPACE);
    leases.create(&PostParams::default(), &lease).await?;

    let log = cp.dir().join(format!("{}.log", unique_name("mcp-log-analysis")));
    let client = facade(&[], &cp.kubeconfig_for(Identity::Mcp), &log).await?;
    let context = std::process::Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(cp.kubeconfig_for(Identity::Mcp))
        .args(["config", "current-context"])
        .output()?;
    let context = String::from_utf8(context.stdout)?.trim().to_string();
    // The first call waits for the cache; the status is written in two steps, so wait for both.
    let a = gpuscope_tests::eventually("the node's status in the facade's cache", Duration::from_secs(20), || async {
        answer(&client, "analyze_kernel_log", json!({ "text": node_log(), "node_name": name }))
            .await
            .ok()
            .filter(|a| a["node"]["health"] == "Unhealthy")
    })
    .await?;
    check_join(&a, &name, &context);
    let r = call(&client, "analyze_kernel_log", json!({ "text": node_log(), "node_name": name })).await?;
    let summary = text(&r);
    assert!(
        summary.contains("The cluster already recorded XID 79 on GPU 2 (0000:3b:00.0) (1 time, last "),
        "{summary}"
    );
    assert!(summary.contains("The cluster has no record of XID 13 on GPU 0 (0000:18:00.0)"), "{summary}");

    let x = answer(&client, "explain_xid", json!({ "code": 79, "limit": 200 })).await?;
    let ours: Vec<&Value> =
        x["nodes_with_code"]["nodes"].as_array().into_iter().flatten().filter(|n| n["node"] == name.as_str()).collect();
    assert_eq!(ours.len(), 1, "{x}");
    assert_eq!((ours[0]["occurrences"].clone(), ours[0]["gpus"][0]["index"].clone()), (json!(1), json!(2)));
    let e = tool_error(&client, "analyze_kernel_log", json!({ "text": node_log(), "node_name": format!("{name}x") }))
        .await?;
    assert!(e.contains(&format!("Did you mean: {name}")), "{e}");

    client.cancel().await?;
    let _ = leases.delete(&format!("gpuscope-probe-{name}"), &DeleteParams::default()).await;
    let _ = api.delete(&name, &DeleteParams::default()).await;
    Ok(())
}

#[test]
fn cli_shows_every_gpu_of_a_support_bundle_and_limit_bounds_it() -> TestResult {
    // Kernel logs of five 8-GPU nodes concatenated, as a support bundle holds them: 40 GPUs with an XID each.
    let mut bundle = String::new();
    for node in 0..5u32 {
        for gpu in 0..8u32 {
            let domain = node + 1;
            let bus = 0x10 + gpu;
            bundle.push_str(&format!(
                "[ 11.{gpu:06}] NVRM: Xid (PCI:{domain:04x}:{bus:02x}:00): 13, pid='N/A', name=python3, Graphics Exception\n"
            ));
        }
    }
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("bundle-dmesg.txt");
    std::fs::write(&file, &bundle)?;
    let path = file.to_str().ok_or("path")?;

    let all = analyze_log_json(&file)?;
    assert_eq!(all["report"]["gpus"].as_array().map(Vec::len), Some(40), "{all}");
    assert_eq!(all["report"]["summary"]["complete"], true);
    let text = String::from_utf8(analyze_log(&[path], None)?.stdout)?;
    assert_eq!(text.matches("\nGPU 0").count(), 40, "{text}");

    let out = analyze_log(&[path, "--output", "json", "--limit", "16"], None)?;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let bounded: Value = serde_json::from_slice(&out.stdout)?;
    assert_eq!(bounded["report"]["gpus"].as_array().map(Vec::len), Some(16));
    assert_eq!(
        (&bounded["report"]["notShown"]["gpus"], &bounded["report"]["notShown"]["xidLines"]),
        (&json!(24), &json!(24))
    );
    let refused = analyze_log(&[path, "--limit", "0"], None)?;
    assert_eq!(refused.status.code(), Some(2), "a limit of 0 is a usage error");
    Ok(())
}
