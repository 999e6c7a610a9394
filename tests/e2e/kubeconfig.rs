//! `--kubeconfig PATH` and `--context NAME` on the three programs, with kubectl's meaning: the file given is used
//! (not $KUBECONFIG), and the context named instead of the file's current one. The facade is driven over stdio by
//! a real MCP client against the real control plane; the probe and the operator show that they read the file given.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use gpuscope_crds::GpuNodeStatus;
use gpuscope_tests::control_plane::workspace_root;
use gpuscope_tests::{ControlPlane, Identity, eventually, free_port, unique_name, workspace_binary};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use rmcp::model::{CallToolRequestParams, ClientConfig};
use rmcp::service::{RoleClient, RunningService};
use rmcp::transport::TokioChildProcess;
use rmcp::{ServiceExt as _, model::CallToolResult};
use serde_json::{Value, json};

type TestResult = Result<(), Box<dyn std::error::Error>>;
type Client = RunningService<RoleClient, ClientConfig>;

/// Where $KUBECONFIG points in these tests: nowhere, so only the flag can name the cluster.
const NO_KUBECONFIG: &str = "/nonexistent/gpuscope-e2e/kubeconfig";

/// A copy of the admin kubeconfig whose current context is an API server nobody listens on, and which still has the
/// real one as a context of its own; returns (file, the real context's name).
fn kubeconfig_with_a_dead_current_context(cp: &ControlPlane, dir: &Path) -> Result<(PathBuf, String), String> {
    let text = std::fs::read_to_string(cp.kubeconfig_for(Identity::Admin)).map_err(|e| e.to_string())?;
    let mut config: Value = serde_saphyr::from_str(&text).map_err(|e| e.to_string())?;
    let real = config["current-context"].as_str().ok_or("no current context")?.to_string();
    let user = config["contexts"][0]["context"]["user"].clone();
    let dead_port = free_port().map_err(|e| e.to_string())?;
    let push = |config: &mut Value, key: &str, entry: Value| {
        config[key].as_array_mut().map(|list| list.push(entry)).ok_or(format!("no {key} list"))
    };
    push(
        &mut config,
        "clusters",
        json!({ "name": "dead", "cluster": { "server": format!("https://127.0.0.1:{dead_port}") } }),
    )?;
    push(&mut config, "contexts", json!({ "name": "dead", "context": { "cluster": "dead", "user": user } }))?;
    config["current-context"] = json!("dead");
    let path = dir.join("kubeconfig");
    // JSON is YAML: kubectl and kube-rs read it as a kubeconfig.
    std::fs::write(&path, config.to_string()).map_err(|e| e.to_string())?;
    Ok((path, real))
}

/// The facade over stdio with `args`, $KUBECONFIG pointing nowhere.
async fn facade(cp: &ControlPlane, args: &[&std::ffi::OsStr]) -> Result<Client, Box<dyn std::error::Error>> {
    let log = std::fs::File::create(cp.dir().join(format!("{}.log", unique_name("mcp-kubeconfig"))))?;
    let mut cmd = tokio::process::Command::new(workspace_binary("gpuscope-mcp")?);
    cmd.args(args).env("KUBECONFIG", NO_KUBECONFIG);
    let (transport, _) = TokioChildProcess::builder(cmd).stderr(Stdio::from(log)).spawn()?;
    Ok(ClientConfig::default().serve(transport).await?)
}

fn text(r: &CallToolResult) -> String {
    r.content.iter().filter_map(|c| c.as_text().map(|t| t.text.clone())).collect::<Vec<_>>().join("\n")
}

/// Wait until the facade's inventory of `node` names `uuid`.
async fn sees(client: &Client, node: &str, uuid: &str) -> Result<(), String> {
    let last = std::sync::Mutex::new(String::new());
    let last_ref = &last;
    let found = eventually("the facade answers about the node", Duration::from_secs(15), || {
        let params = CallToolRequestParams::new("get_gpu_inventory")
            .with_arguments(json!({ "node_name": node }).as_object().cloned().unwrap_or_default());
        let call = client.call_tool(params);
        async move {
            let r = call.await.ok()?;
            let answer = text(&r);
            let ok = r.is_error != Some(true) && answer.contains(uuid);
            *last_ref.lock().ok()? = answer;
            ok.then_some(())
        }
    })
    .await;
    let last = last.lock().map(|l| l.clone()).unwrap_or_default();
    found.map_err(|e| format!("{e}; last answer: {last}"))
}

async fn create_status(client: &kube::Client, node: &str, uuid: &str) -> TestResult {
    let api: Api<GpuNodeStatus> = Api::all(client.clone());
    api.create(&PostParams::default(), &GpuNodeStatus::new(node, Default::default())).await?;
    let status = json!({ "status": { "gpuCount": 1, "gpuModel": "Tesla T4",
        "gpus": [{ "index": 0, "uuid": uuid, "productName": "Tesla T4", "pciBusId": "0000:3b:00.0" }] } });
    api.patch_status(node, &PatchParams::default(), &Patch::Merge(&status)).await?;
    Ok(())
}

#[tokio::test]
async fn the_facade_serves_the_cluster_of_the_kubeconfig_and_context_given_not_kubeconfig_env() -> TestResult {
    let cp = ControlPlane::shared()?;
    let kube = cp.client().await?;
    let node = unique_name("kubeconfig-flag");
    let uuid = format!("GPU-{node}");
    create_status(&kube, &node, &uuid).await?;
    let dir = tempfile::tempdir()?;
    let (with_dead_current, real_context) = kubeconfig_with_a_dead_current_context(cp, dir.path())?;

    // The file alone: its current context.
    let admin = cp.kubeconfig_for(Identity::Admin);
    let client = facade(cp, &["--kubeconfig".as_ref(), admin.as_os_str()]).await?;
    sees(&client, &node, &uuid).await?;
    client.cancel().await?;

    // The file and a context: that context, not the file's current (unreachable) one.
    let args = ["--kubeconfig".as_ref(), with_dead_current.as_os_str(), "--context".as_ref(), real_context.as_ref()];
    let client = facade(cp, &args).await?;
    sees(&client, &node, &uuid).await?;
    client.cancel().await?;

    let _ = Api::<GpuNodeStatus>::all(kube).delete(&node, &DeleteParams::default()).await;
    Ok(())
}

#[test]
fn the_facade_without_its_context_in_the_kubeconfig_fails_naming_the_file_and_context() -> TestResult {
    let cp = ControlPlane::shared()?;
    let dir = tempfile::tempdir()?;
    let (path, _) = kubeconfig_with_a_dead_current_context(cp, dir.path())?;
    let out = Command::new(workspace_binary("gpuscope-mcp")?)
        .args(["--transport", "stdio", "--kubeconfig"])
        .arg(&path)
        .args(["--context", "no-such-context"])
        .stdin(Stdio::null())
        .output()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains(&path.display().to_string()) && stderr.contains("no-such-context"), "{stderr}");
    Ok(())
}

/// Run `binary` with `args`, $KUBECONFIG unset, and return its stderr once it exited (it must fail).
fn fails_reading(binary: &str, args: &[&std::ffi::OsStr]) -> Result<String, Box<dyn std::error::Error>> {
    let mut child = Command::new(workspace_binary(binary)?)
        .args(args)
        .env_remove("KUBECONFIG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    let started = std::time::Instant::now();
    while child.try_wait()?.is_none() {
        if started.elapsed() > Duration::from_secs(20) {
            child.kill()?;
            return Err(format!("{binary} kept running with an unreadable --kubeconfig").into());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output()?;
    assert!(!out.status.success(), "{binary} exited 0");
    Ok(String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn the_probe_and_the_operator_read_the_kubeconfig_given() -> TestResult {
    let dir = tempfile::tempdir()?;
    let missing = dir.path().join("missing-kubeconfig");
    let scenario = workspace_root().join("node-probe/scenarios/healthy-8x-h100.yaml");
    let listen = format!("127.0.0.1:{}", free_port()?);
    let spool = dir.path().join("spool");
    let probe: [&std::ffi::OsStr; 13] = [
        "--node-name".as_ref(),
        "n1".as_ref(),
        "--backend".as_ref(),
        "simulated".as_ref(),
        "--scenario".as_ref(),
        scenario.as_os_str(),
        "--no-kmsg".as_ref(),
        "--spool-dir".as_ref(),
        spool.as_os_str(),
        "--listen".as_ref(),
        listen.as_ref(),
        "--kubeconfig".as_ref(),
        missing.as_os_str(),
    ];
    let stderr = fails_reading("gpuscope-probe", &probe)?;
    assert!(
        stderr.contains("cannot read the kubeconfig") && stderr.contains(&missing.display().to_string()),
        "{stderr}"
    );
    let listen = format!("127.0.0.1:{}", free_port()?);
    let operator: [&std::ffi::OsStr; 4] =
        ["--listen".as_ref(), listen.as_ref(), "--kubeconfig".as_ref(), missing.as_os_str()];
    let stderr = fails_reading("gpuscope-operator", &operator)?;
    assert!(
        stderr.contains("cannot read the kubeconfig") && stderr.contains(&missing.display().to_string()),
        "{stderr}"
    );
    Ok(())
}
