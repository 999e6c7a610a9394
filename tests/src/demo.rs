//! The local demo: a real control plane, a simulated fleet of five GPU nodes (one reports an uncorrectable ECC
//! error, XID 48, at once; one loses a GPU to XID 79 two minutes in), the operator and the MCP facade over HTTP,
//! all as separate processes; then what a user sees.
//!
//! Stopping (Ctrl-C, SIGTERM, `--once`, an error, or Ctrl-C while still starting) always goes the same way: the
//! facade, the operator and the probes get SIGTERM in reverse start order (SIGKILL after a grace period), then the
//! control plane goes, then the scratch folder. The children sit in process groups of their own, so the
//! terminal's Ctrl-C reaches only the demo, which then does that.

use std::net::SocketAddr;
use std::os::unix::process::ExitStatusExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use gpuscope_crds::GpuNodeStatus;
use kube::api::Api;
use tokio::sync::watch;

use crate::control_plane::{INSTALL_NAMESPACE, workspace_root};
use crate::fixtures::{create_node, install_rbac};
use crate::process::Stopped;
use crate::{ControlPlane, Identity, Process, free_port, run_ok, workspace_binary};

/// The simulated fleet: node name and shipped scenario.
pub const FLEET: [(&str, &str); 5] = [
    ("gpu-h100-a", "healthy-8x-h100.yaml"),
    ("gpu-h100-b", "xid79-h100.yaml"),
    ("gpu-a100-c", "ecc-rising-a100.yaml"),
    ("gpu-a100-mig-d", "mig-a100.yaml"),
    (FAILED_NODE, "healthy-8x-h100-2.yaml"),
];

/// The node whose kernel log reports an uncorrectable memory error as soon as the demo starts.
pub const FAILED_NODE: &str = "gpu-h100-e";

/// The driver's own words on [`FAILED_NODE`], through the kernel-log path: GPU 2 (0000:3a:00) hits a double-bit ECC
/// error.
pub const FAILED_NODE_KERNEL_LINES: [&str; 2] = [
    "NVRM: GPU at PCI:0000:3a:00: GPU-877994af-ff2f-4504-98e0-0e8c64beb012",
    "NVRM: Xid (PCI:0000:3a:00): 48, pid=91533, name=pt_main_thread, An uncorrectable double bit error (DBE) has been \
     detected on GPU in the framebuffer at partition 6, subpartition 0.",
];

/// How long a component gets to stop after SIGTERM before it is killed. The probe's last write and spool save
/// take well under a second against a live API server; more than this means it is stuck.
pub const STOP_GRACE: Duration = Duration::from_secs(5);

/// Demo settings.
#[derive(Clone, Debug)]
pub struct DemoOptions {
    /// Where the facade listens (loopback).
    pub mcp_listen: SocketAddr,
}

type DemoResult<T> = Result<T, Box<dyn std::error::Error>>;

/// The demo was asked to stop before it was ready.
#[derive(Debug, thiserror::Error)]
#[error("interrupted while starting")]
pub struct Interrupted;

/// A stop request (SIGINT from the terminal's Ctrl-C, or SIGTERM), observable from anywhere in the demo.
#[derive(Clone, Debug)]
pub struct StopRequest {
    requested: watch::Receiver<bool>,
    /// Keeps the channel open for a request that never comes (`never`); the signal task holds it otherwise.
    _sender: Option<std::sync::Arc<watch::Sender<bool>>>,
}

impl StopRequest {
    /// Catch SIGINT and SIGTERM from now on: instead of killing the demo (and leaking its temporary folders) they
    /// set the request, which the demo checks between steps. Needs a Tokio runtime.
    pub fn on_signals() -> std::io::Result<StopRequest> {
        use tokio::signal::unix::{SignalKind, signal};
        let mut interrupt = signal(SignalKind::interrupt())?;
        let mut terminate = signal(SignalKind::terminate())?;
        let (tx, rx) = watch::channel(false);
        tokio::spawn(async move {
            tokio::select! {
                _ = interrupt.recv() => {}
                _ = terminate.recv() => {}
            }
            step("stopping (the current step finishes first)");
            let _ = tx.send(true);
            // Later signals must not kill the demo halfway through its cleanup either; say how to force it.
            loop {
                tokio::select! {
                    _ = interrupt.recv() => {}
                    _ = terminate.recv() => {}
                }
                step("already stopping; Ctrl-\\ (SIGQUIT) forces it, leaving temporary folders behind");
            }
        });
        Ok(StopRequest { requested: rx, _sender: None })
    }

    /// A request that never comes (for callers that stop the demo by dropping it).
    pub fn never() -> StopRequest {
        let (tx, rx) = watch::channel(false);
        StopRequest { requested: rx, _sender: Some(std::sync::Arc::new(tx)) }
    }

    /// Whether a stop was asked for.
    pub fn requested(&self) -> bool {
        *self.requested.borrow()
    }

    /// Resolves once a stop is asked for.
    pub async fn wait(&mut self) {
        // An error means the sender is gone: no request can come any more.
        if self.requested.wait_for(|stop| *stop).await.is_err() {
            std::future::pending::<()>().await;
        }
    }

    fn check(&self) -> Result<(), Interrupted> {
        if self.requested() { Err(Interrupted) } else { Ok(()) }
    }
}

/// Everything the demo runs. Dropping it stops the processes (newest first, SIGTERM then SIGKILL), then the
/// control plane, then removes the scratch folder: field order matters, see `Drop`.
pub struct Demo {
    /// Probes, operator, facade, in start order; `Drop` stops them in reverse before any field is dropped.
    processes: Vec<Process>,
    /// Dropped after the processes (by `Drop`) and before the scratch folder (declaration order).
    control_plane: ControlPlane,
    /// Kernel logs, spools and component logs; removed last, so a stopping component can still write its log.
    scratch: tempfile::TempDir,
    /// Where the MCP endpoint is.
    pub mcp_url: String,
}

impl Demo {
    /// Start everything and wait until the operator has evaluated every node. Returns [`Interrupted`] (after
    /// stopping what had started) when `stop` is requested first.
    pub async fn start(options: &DemoOptions, stop: &StopRequest) -> DemoResult<Demo> {
        let t0 = Instant::now();
        step("starting etcd, kube-apiserver and kube-controller-manager (the first run builds them: ~5 min)");
        // Blocking, and not interruptible from here: a stop request is honoured right after it.
        let control_plane = ControlPlane::start()?;
        let scratch = tempfile::Builder::new().prefix("gpuscope-demo-").tempdir()?;
        let mut demo = Demo {
            processes: Vec::new(),
            control_plane,
            scratch,
            mcp_url: format!("http://{}/mcp", options.mcp_listen),
        };
        stop.check()?;
        demo.control_plane.apply_crds()?;
        install_rbac(&demo.control_plane, &["probe.yaml", "operator.yaml", "mcp.yaml"])?;
        stop.check()?;
        let client = demo.control_plane.client().await?;
        step(&format!("starting a simulated node probe for each of the {} nodes", FLEET.len()));
        for (node, scenario) in FLEET {
            create_node(&client, node).await?;
            let probe = probe(&demo.control_plane, demo.scratch.path(), node, scenario)?;
            demo.processes.push(probe);
        }
        inject_kernel_lines(&demo.scratch.path().join(FAILED_NODE).join("kmsg"), &FAILED_NODE_KERNEL_LINES)?;
        stop.check()?;
        step("starting the operator");
        let mut op = Command::new(workspace_binary("gpuscope-operator")?);
        op.env("KUBECONFIG", demo.control_plane.kubeconfig_for(Identity::Operator))
            .args(["--namespace", INSTALL_NAMESPACE, "--identity", "demo-operator"])
            .arg("--listen")
            .arg(SocketAddr::from(([127, 0, 0, 1], free_port()?)).to_string());
        let operator = Process::spawn("gpuscope-operator", op, demo.scratch.path().join("operator.log"))?;
        demo.processes.push(operator);
        step("starting the MCP facade over streamable HTTP");
        let mut mcp = Command::new(workspace_binary("gpuscope-mcp")?);
        mcp.env("KUBECONFIG", demo.control_plane.kubeconfig_for(Identity::Mcp))
            .args(["--transport", "http", "--cluster-name", "demo"])
            .arg("--listen")
            .arg(options.mcp_listen.to_string());
        let facade = Process::spawn("gpuscope-mcp", mcp, demo.scratch.path().join("mcp.log"))?;
        demo.processes.push(facade);

        let api: Api<GpuNodeStatus> = Api::all(client);
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut waiting = stop.clone();
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
            demo.check()?;
            if Instant::now() > deadline {
                return Err(format!("only {evaluated} of {} nodes evaluated after 60 s", FLEET.len()).into());
            }
            tokio::select! {
                () = waiting.wait() => return Err(Interrupted.into()),
                () = tokio::time::sleep(Duration::from_millis(250)) => {}
            }
        }
        step(&format!("ready in {:.1} s", t0.elapsed().as_secs_f64()));
        Ok(demo)
    }

    /// Fail when a process died.
    pub fn check(&mut self) -> DemoResult<()> {
        for p in &mut self.processes {
            p.check_running()?;
        }
        Ok(())
    }

    /// `kubectl <args>` as a user would type it (admin kubeconfig of the demo cluster).
    pub fn kubectl_get(&self, args: &[&str]) -> DemoResult<String> {
        Ok(run_ok(self.control_plane.kubectl().args(args))?)
    }

    /// The kubeconfig a user of the demo should use (admin on the demo cluster).
    pub fn kubeconfig(&self) -> PathBuf {
        self.control_plane.kubeconfig()
    }

    /// Stop everything now (what dropping the demo does).
    pub fn stop(self) {
        drop(self);
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        // Newest first: the facade and the operator go while the probes and the API server are still up, and
        // each probe makes its last write to a live API server. The fields (control plane, then scratch) are
        // dropped only after this returns.
        while let Some(mut p) = self.processes.pop() {
            if p.check_running().is_err() {
                step(&format!("{} had already exited", p.name()));
                continue;
            }
            match p.stop(STOP_GRACE) {
                Stopped::Exited(status) if status.success() => step(&format!("stopped {}", p.name())),
                // SIGTERM's default action: it came before the component had set up its shutdown handling.
                Stopped::Exited(status) if status.signal() == Some(libc::SIGTERM) => {
                    step(&format!("stopped {} (by SIGTERM, before it handled signals)", p.name()))
                }
                Stopped::Exited(status) => step(&format!("stopped {} ({status})", p.name())),
                Stopped::Killed => {
                    step(&format!("{} did not stop within {STOP_GRACE:?} of SIGTERM; killed it", p.name()))
                }
            }
        }
        step("stopping the control plane");
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

/// Append kernel-log records stamped "now" (the kernel's monotonic clock, which the probe turns into wall time).
pub fn inject_kernel_lines(path: &Path, lines: &[&str]) -> DemoResult<()> {
    use std::io::Write as _;
    let now_us = monotonic_micros();
    let mut f = std::fs::OpenOptions::new().append(true).open(path)?;
    for (i, line) in lines.iter().enumerate() {
        writeln!(f, "3,{},{},-;{line}", i + 1, now_us + i as u64)?;
    }
    Ok(())
}

/// Microseconds on the monotonic clock: the timestamp field of a `/dev/kmsg` record written now.
pub fn monotonic_micros() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime only writes the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    u64::try_from(ts.tv_sec).unwrap_or(0) * 1_000_000 + u64::try_from(ts.tv_nsec).unwrap_or(0) / 1_000
}

/// A progress line on stderr (stdout carries what a user sees).
pub fn step(text: &str) {
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

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use gpuscope_probe::backend::Scenario;

    use super::*;

    fn fleet() -> Vec<(&'static str, Scenario)> {
        FLEET
            .iter()
            .map(|(node, file)| {
                let path = workspace_root().join("node-probe/scenarios").join(file);
                (*node, Scenario::load(&path).unwrap_or_else(|e| panic!("{e}")))
            })
            .collect()
    }

    #[test]
    fn every_gpu_of_the_demo_fleet_has_its_own_uuid_and_serial() {
        let (mut uuids, mut serials) = (BTreeMap::new(), BTreeMap::new());
        for (node, scenario) in fleet() {
            for gpu in &scenario.gpus {
                if let Some(other) = uuids.insert(gpu.uuid.clone(), node) {
                    panic!("{} is on {other} and {node}", gpu.uuid);
                }
                if let Some(serial) = &gpu.serial
                    && let Some(other) = serials.insert(serial.clone(), node)
                {
                    panic!("serial {serial} is on {other} and {node}");
                }
            }
        }
        assert_eq!(uuids.len(), 40);
    }

    #[test]
    fn the_failed_nodes_kernel_log_names_its_own_gpu() {
        let (_, scenario) = fleet().into_iter().find(|(node, _)| *node == FAILED_NODE).expect("in the fleet");
        let gpu = scenario.gpus.iter().find(|g| g.pci_bus_id.as_deref() == Some("0000:3a:00.0")).expect("GPU 2");
        assert!(FAILED_NODE_KERNEL_LINES[0].ends_with(&gpu.uuid), "{} vs {}", FAILED_NODE_KERNEL_LINES[0], gpu.uuid);
    }
}
