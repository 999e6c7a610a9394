//! The local demo: a real control plane, a simulated fleet of four GPU nodes (one loses a GPU to XID 79), the
//! operator and the MCP facade over HTTP, all as separate processes; then what a user sees. Ctrl-C stops it all.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use gpuscope_crds::GpuNodeStatus;
use kube::api::Api;

use crate::control_plane::{INSTALL_NAMESPACE, workspace_root};
use crate::fixtures::{create_node, install_rbac};
use crate::{ControlPlane, Identity, Process, free_port, run_ok, workspace_binary};

/// The simulated fleet: node name and shipped scenario.
pub const FLEET: [(&str, &str); 5] = [
    ("gpu-h100-a", "healthy-8x-h100.yaml"),
    ("gpu-h100-b", "xid79-h100.yaml"),
    ("gpu-a100-c", "ecc-rising-a100.yaml"),
    ("gpu-a100-mig-d", "mig-a100.yaml"),
    (FAILED_NODE, "healthy-8x-h100.yaml"),
];

/// The node whose kernel log reports an uncorrectable memory error as soon as the demo starts.
pub const FAILED_NODE: &str = "gpu-h100-e";

/// Demo settings.
#[derive(Clone, Debug)]
pub struct DemoOptions {
    /// Where the facade listens (loopback).
    pub mcp_listen: SocketAddr,
}

type DemoResult<T> = Result<T, Box<dyn std::error::Error>>;

/// Everything the demo runs; dropping it stops the processes and the control plane.
pub struct Demo {
    /// The control plane (dropped last).
    pub control_plane: ControlPlane,
    processes: Vec<Process>,
    /// Where the MCP endpoint is.
    pub mcp_url: String,
    /// Scratch folder for kernel logs and spools.
    _scratch: tempfile::TempDir,
}

impl Demo {
    /// Start everything and wait until the operator has evaluated every node.
    pub async fn start(options: &DemoOptions) -> DemoResult<Demo> {
        let t0 = Instant::now();
        step("starting etcd, kube-apiserver and kube-controller-manager (the first run builds them: ~5 min)");
        let cp = ControlPlane::start()?;
        cp.apply_crds()?;
        install_rbac(&cp, &["probe.yaml", "operator.yaml", "mcp.yaml"])?;
        let client = cp.client().await?;
        let scratch = tempfile::tempdir()?;
        let mut processes = Vec::new();
        step("starting a simulated node probe per node");
        for (node, scenario) in FLEET {
            create_node(&client, node).await?;
            processes.push(probe(&cp, scratch.path(), node, scenario)?);
        }
        // The driver's own words, through the kernel-log path: GPU 2 (0000:3a:00) hits a double-bit ECC error.
        inject_kernel_lines(
            &scratch.path().join(FAILED_NODE).join("kmsg"),
            &[
                "NVRM: GPU at PCI:0000:3a:00: GPU-c25e0f49-7a1b-4d63-8e0c-5f9a2d4b7e31",
                "NVRM: Xid (PCI:0000:3a:00): 48, pid=91533, name=pt_main_thread, An uncorrectable double bit error (DBE) \
             has been detected on GPU in the framebuffer at partition 6, subpartition 0.",
            ],
        )?;
        step("starting the operator");
        let mut op = Command::new(workspace_binary("gpuscope-operator")?);
        op.env("KUBECONFIG", cp.kubeconfig_for(Identity::Operator))
            .args(["--namespace", INSTALL_NAMESPACE, "--identity", "demo-operator"])
            .arg("--listen")
            .arg(SocketAddr::from(([127, 0, 0, 1], free_port()?)).to_string());
        processes.push(Process::spawn("gpuscope-operator", op, scratch.path().join("operator.log"))?);
        step("starting the MCP facade over streamable HTTP");
        let mut mcp = Command::new(workspace_binary("gpuscope-mcp")?);
        mcp.env("KUBECONFIG", cp.kubeconfig_for(Identity::Mcp))
            .args(["--transport", "http", "--cluster-name", "demo"])
            .arg("--listen")
            .arg(options.mcp_listen.to_string());
        processes.push(Process::spawn("gpuscope-mcp", mcp, scratch.path().join("mcp.log"))?);

        let api: Api<GpuNodeStatus> = Api::all(client);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let list = api.list(&Default::default()).await?;
            let evaluated = list.items.iter().filter(|o| o.status.as_ref().and_then(|s| s.health).is_some()).count();
            let failed_seen = list.items.iter().any(|o| {
                o.metadata.name.as_deref() == Some(FAILED_NODE)
                    && o.status.as_ref().and_then(|s| s.health) == Some(gpuscope_crds::Health::Unhealthy)
            });
            if evaluated == FLEET.len() && failed_seen {
                break;
            }
            for p in &mut processes {
                p.check_running()?;
            }
            if Instant::now() > deadline {
                return Err(format!("only {evaluated} of {} nodes evaluated after 60 s", FLEET.len()).into());
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        step(&format!("ready in {:.1} s", t0.elapsed().as_secs_f64()));
        Ok(Demo {
            control_plane: cp,
            processes,
            mcp_url: format!("http://{}/mcp", options.mcp_listen),
            _scratch: scratch,
        })
    }

    /// Fail when a process died.
    pub fn check(&mut self) -> DemoResult<()> {
        for p in &mut self.processes {
            p.check_running()?;
        }
        Ok(())
    }

    /// `kubectl get gpunodestatus` as a user would type it.
    pub fn kubectl_get(&self, args: &[&str]) -> DemoResult<String> {
        Ok(run_ok(self.control_plane.kubectl().args(args))?)
    }
}

fn probe(cp: &ControlPlane, scratch: &Path, node: &str, scenario: &str) -> DemoResult<Process> {
    let dir = scratch.join(node);
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join("kmsg"), b"")?;
    std::fs::write(dir.join("boot_id"), format!("6d656d6f-0000-4000-8000-{:012x}\n", node.len()))?;
    let mut cmd = Command::new(workspace_binary("gpuscope-probe")?);
    cmd.env("KUBECONFIG", cp.kubeconfig_for(Identity::Probe))
        .args(["--node-name", node, "--namespace", INSTALL_NAMESPACE, "--backend", "simulated", "--scenario"])
        .arg(workspace_root().join("node-probe/scenarios").join(scenario))
        .arg("--kmsg-path")
        .arg(dir.join("kmsg"))
        .arg("--boot-id-file")
        .arg(dir.join("boot_id"))
        .arg("--spool-dir")
        .arg(dir.join("spool"))
        .args(["--sample-interval", "5s", "--lease-interval", "10s"])
        .arg("--listen")
        .arg(SocketAddr::from(([127, 0, 0, 1], free_port()?)).to_string());
    Ok(Process::spawn(format!("gpuscope-probe {node}"), cmd, dir.join("probe.log"))?)
}

/// Append kernel-log records stamped "now" (the kernel's monotonic clock).
fn inject_kernel_lines(path: &Path, lines: &[&str]) -> DemoResult<()> {
    use std::io::Write as _;
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime only writes the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    let now_us = u64::try_from(ts.tv_sec).unwrap_or(0) * 1_000_000 + u64::try_from(ts.tv_nsec).unwrap_or(0) / 1_000;
    let mut f = std::fs::OpenOptions::new().append(true).open(path)?;
    for (i, line) in lines.iter().enumerate() {
        writeln!(f, "3,{},{},-;{line}", i + 1, now_us + i as u64)?;
    }
    Ok(())
}

fn step(text: &str) {
    eprintln!("[demo] {text}");
}

/// How to point MCP clients at the demo (and at a real cluster).
pub fn client_instructions(mcp_url: &str, kubeconfig: &Path, mcp_binary: &Path) -> String {
    let kubeconfig = kubeconfig.display();
    let bin = mcp_binary.display();
    format!(
        r#"Point an MCP client at it:
  MCP Inspector:   npx @modelcontextprotocol/inspector   (transport "Streamable HTTP", URL {mcp_url})
  Claude Desktop:  claude_desktop_config.json (stdio; the facade runs locally with a kubeconfig)
    {{ "mcpServers": {{ "gpuscope": {{ "command": "{bin}", "args": ["--transport", "stdio"],
                                   "env": {{ "KUBECONFIG": "{kubeconfig}" }} }} }} }}
  Cursor:          ~/.cursor/mcp.json      {{ "mcpServers": {{ "gpuscope": {{ "url": "{mcp_url}" }} }} }}
  VS Code:         .vscode/mcp.json        {{ "servers": {{ "gpuscope": {{ "type": "http", "url": "{mcp_url}" }} }} }}
  kubectl:         KUBECONFIG={kubeconfig} kubectl get gns
"#
    )
}

/// The kubeconfig a user of the demo should use (admin on the demo cluster).
pub fn demo_kubeconfig(demo: &Demo) -> PathBuf {
    demo.control_plane.kubeconfig()
}
