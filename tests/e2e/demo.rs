//! The real `gpuscope-demo` binary, as a user runs it: what `--once` prints, and that Ctrl-C (SIGINT to the
//! demo's process group, as a terminal sends it) stops everything it started and removes its temporary folders,
//! both once it is up and while it is still starting.
//!
//! Each run gets a TMPDIR of its own: the demo's control plane and scratch folders go there, and every process
//! the demo starts inherits `TMPDIR=<that folder>`, which is how the test finds them in /proc (and proves none
//! is left).

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use gpuscope_tests::demo::{FAILED_NODE, FLEET};
use gpuscope_tests::{Process, free_port, workspace_binary};

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// etcd, kube-apiserver, kube-controller-manager, a probe per node, the operator and the facade.
const COMPONENTS: usize = 3 + FLEET.len() + 2;
/// Startup on a loaded 2-core machine: control plane, five probes, the first evaluation of every node.
const STARTUP_LIMIT: Duration = Duration::from_secs(180);
/// SIGTERM and a short wait per component, in order, then the control plane.
const STOP_LIMIT: Duration = Duration::from_secs(30);

/// A demo process with its own TMPDIR (inside `tmp`) and its output (stdout and stderr) in `logs`.
struct DemoRun {
    tmp: tempfile::TempDir,
    _logs: tempfile::TempDir,
    process: Process,
    mcp_listen: SocketAddr,
}

impl DemoRun {
    fn start(extra: &[&str]) -> Result<DemoRun, Box<dyn std::error::Error>> {
        let tmp = tempfile::tempdir()?;
        let logs = tempfile::tempdir()?;
        let mcp_listen = SocketAddr::from(([127, 0, 0, 1], free_port()?));
        let mut cmd = Command::new(workspace_binary("gpuscope-demo")?);
        cmd.env("TMPDIR", tmp.path()).arg("--mcp-listen").arg(mcp_listen.to_string()).args(extra);
        // Process::spawn makes the demo the leader of its own process group, like a shell's foreground job.
        let process = Process::spawn("gpuscope-demo", cmd, logs.path().join("demo.log"))?;
        Ok(DemoRun { tmp, _logs: logs, process, mcp_listen })
    }

    fn output(&self) -> String {
        std::fs::read_to_string(self.process.log()).unwrap_or_default()
    }

    /// Poll the output until it contains `needle`; an error when the demo exits first or `limit` passes.
    fn wait_for_output(&mut self, needle: &str, limit: Duration) -> Result<String, String> {
        let started = Instant::now();
        loop {
            let out = self.output();
            if out.contains(needle) {
                return Ok(out);
            }
            if let Err(e) = self.process.check_running() {
                return Err(format!("the demo exited before printing {needle:?}: {e}\n{out}"));
            }
            if started.elapsed() > limit {
                return Err(format!("no {needle:?} from the demo after {limit:?}:\n{out}"));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// What the terminal does on Ctrl-C: SIGINT to the foreground process group (the demo's).
    fn ctrl_c(&self) -> std::io::Result<()> {
        let group = i32::try_from(self.process.pid()).map_err(std::io::Error::other)?;
        // SAFETY: a signal to the process group our own unreaped child leads; no memory effects.
        if unsafe { libc::kill(-group, libc::SIGINT) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }

    /// Processes that inherited this run's TMPDIR: the demo and everything it started (pid, command).
    fn descendants(&self) -> Vec<(u32, String)> {
        processes_with_env(&format!("TMPDIR={}", self.tmp.path().display()))
    }

    /// What is left in the run's TMPDIR.
    fn leftovers(&self) -> Vec<String> {
        std::fs::read_dir(self.tmp.path())
            .map(|entries| entries.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
            .unwrap_or_default()
    }
}

/// Live processes whose initial environment holds `entry` (zombies have none and do not count).
fn processes_with_env(entry: &str) -> Vec<(u32, String)> {
    let Ok(dir) = std::fs::read_dir("/proc") else { return Vec::new() };
    let mut found: Vec<(u32, String)> = dir
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/environ"))
                .is_ok_and(|env| env.split(|b| *b == 0).any(|var| var == entry.as_bytes()))
        })
        .map(|pid| (pid, command_of(pid)))
        .collect();
    found.sort();
    found
}

fn command_of(pid: u32) -> String {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|c| String::from_utf8_lossy(&c).replace('\0', " ").trim().to_string())
        .unwrap_or_default()
}

/// The process group of `pid` (field 5 of /proc/<pid>/stat, after the parenthesised command).
fn process_group(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?.1.split_whitespace().nth(2)?.parse().ok()
}

/// The lines of the section that follows `heading` in the output, up to the next blank line.
fn section<'a>(out: &'a str, heading: &str) -> Vec<&'a str> {
    out.lines().skip_while(|l| !l.starts_with(heading)).skip(1).take_while(|l| !l.trim().is_empty()).collect()
}

fn row<'a>(lines: &[&'a str], node: &str) -> Option<&'a str> {
    lines.iter().copied().find(|l| l.split_whitespace().next() == Some(node))
}

/// The components the demo reports as stopped by SIGTERM (not killed), in the order it stopped them.
fn stopped_components(out: &str) -> Vec<&str> {
    out.lines()
        .filter_map(|l| l.strip_prefix("[demo] stopped gpuscope-"))
        .map(|rest| rest.split(" (").next().unwrap_or(rest))
        .collect()
}

/// What the demo starts, in start order, as `stopped_components` names them.
fn start_order() -> Vec<String> {
    FLEET.iter().map(|(node, _)| format!("probe {node}")).chain(["operator".into(), "mcp".into()]).collect()
}

/// A demo that ran to the end stopped every component by SIGTERM, newest first, then the control plane, and left
/// no process and nothing in its TMPDIR.
fn assert_clean_exit(run: &DemoRun, out: &str) {
    let mut reverse = start_order();
    reverse.reverse();
    assert_eq!(stopped_components(out), reverse, "each component stopped by SIGTERM, newest first:\n{out}");
    let last_component = out.rfind("[demo] stopped gpuscope-").unwrap_or(0);
    let control_plane = out.find("[demo] stopping the control plane").unwrap_or(0);
    assert!(control_plane > last_component, "the control plane goes after every component:\n{out}");
    assert_eq!(out.lines().rfind(|l| l.starts_with("[demo]")), Some("[demo] stopped"), "{out}");
    assert_eq!(run.descendants(), Vec::<(u32, String)>::new(), "processes left behind:\n{out}");
    assert_eq!(run.leftovers(), Vec::<String>::new(), "temporary folders left behind in TMPDIR:\n{out}");
}

#[tokio::test]
async fn the_demo_once_prints_the_fleet_its_node_conditions_mcp_answers_and_client_config_then_cleans_up() -> TestResult
{
    let mut run = DemoRun::start(&["--once"])?;
    let status = run.process.wait_exit(STARTUP_LIMIT + STOP_LIMIT);
    let out = run.output();
    let status =
        status.ok_or_else(|| format!("--once still running after {:?}:\n{out}", STARTUP_LIMIT + STOP_LIMIT))?;
    assert!(status.success(), "{status}:\n{out}");

    let table = section(&out, "$ kubectl get gpunodestatus");
    let header: Vec<&str> = table.first().map(|h| h.split_whitespace().collect()).unwrap_or_default();
    assert!(["NAME", "GPUS", "MODEL", "HEALTH", "XIDS"].iter().all(|c| header.contains(c)), "printer columns:\n{out}");
    assert_eq!(table.len(), 1 + FLEET.len(), "a header and one row per node:\n{out}");
    for (node, _) in FLEET {
        let r = row(&table, node).ok_or_else(|| format!("no row for {node}:\n{out}"))?;
        let words: Vec<&str> = r.split_whitespace().collect();
        if node == FAILED_NODE {
            assert!(words.contains(&"Unhealthy"), "{r}");
        } else {
            assert!(!words.contains(&"Unhealthy"), "only {FAILED_NODE} fails at start: {r}");
        }
    }

    let conditions = section(&out, "$ kubectl get nodes");
    assert_eq!(
        conditions.first().map(|h| h.split_whitespace().collect::<Vec<_>>()),
        Some(vec!["NODE", "GPU-HEALTHY", "REASON"])
    );
    let failed = row(&conditions, FAILED_NODE).ok_or_else(|| format!("no Node condition row:\n{out}"))?;
    assert_eq!(failed.split_whitespace().collect::<Vec<_>>(), [FAILED_NODE, "False", "UncorrectableEcc"], "{out}");
    let healthy = row(&conditions, "gpu-h100-a").ok_or_else(|| format!("no Node condition row:\n{out}"))?;
    assert_eq!(healthy.split_whitespace().collect::<Vec<_>>(), ["gpu-h100-a", "True", "Healthy"], "{out}");

    let fleet = section(&out, "MCP get_fleet_summary:").join("\n");
    assert!(fleet.contains(&format!("{} GPU nodes", FLEET.len())), "{fleet}");
    assert!(fleet.contains("1 unhealthy"), "{fleet}");
    assert!(fleet.contains(FAILED_NODE), "the summary names the failing node: {fleet}");
    let health = section(&out, "MCP get_gpu_health:").join("\n");
    assert!(health.contains(FAILED_NODE), "{health}");

    let url = format!("http://{}/mcp", run.mcp_listen);
    assert!(out.contains("Point an MCP client at it:"), "{out}");
    for client in ["MCP Inspector", "Claude Desktop", "Cursor", "VS Code", "kubectl"] {
        assert!(out.contains(client), "instructions for {client}:\n{out}");
    }
    assert!(out.contains(&format!("\"url\": \"{url}\"")), "the demo's own URL:\n{out}");
    assert!(out.contains("\"--transport\", \"stdio\""), "{out}");
    assert!(out.contains(&format!("KUBECONFIG={}", run.tmp.path().display())), "its kubeconfig:\n{out}");
    assert_clean_exit(&run, &out);
    Ok(())
}

#[tokio::test]
async fn ctrl_c_stops_a_running_demo_in_order_and_leaves_no_process_or_temp_dir() -> TestResult {
    let mut run = DemoRun::start(&[])?;
    run.wait_for_output("Ctrl-C stops everything.", STARTUP_LIMIT)?;
    let demo_pid = run.process.pid();
    let children: Vec<(u32, String)> = run.descendants().into_iter().filter(|(pid, _)| *pid != demo_pid).collect();
    assert_eq!(children.len(), COMPONENTS, "what the demo runs: {children:#?}");
    for (pid, cmd) in &children {
        assert_eq!(process_group(*pid), Some(*pid), "{cmd} leads a process group of its own, so Ctrl-C misses it");
    }

    let sent = Instant::now();
    run.ctrl_c()?;
    let status = run.process.wait_exit(STOP_LIMIT);
    let took = sent.elapsed();
    let out = run.output();
    let status = status.ok_or_else(|| format!("still running {STOP_LIMIT:?} after Ctrl-C:\n{out}"))?;
    assert_eq!(status.code(), Some(0), "Ctrl-C is the normal way to stop it:\n{out}");
    eprintln!("[demo test] stopped {took:?} after Ctrl-C");
    for (pid, cmd) in &children {
        assert!(!Path::new(&format!("/proc/{pid}")).exists() || command_of(*pid) != *cmd, "{cmd} ({pid}) survived");
    }
    assert_clean_exit(&run, &out);
    Ok(())
}

/// Ctrl-C once the demo has printed `step`: it stops what had started, newest first, exits 130 and leaves no
/// process and nothing in its TMPDIR.
fn interrupt_startup_at(step: &str) -> TestResult {
    let mut run = DemoRun::start(&[])?;
    run.wait_for_output(step, STARTUP_LIMIT)?;
    run.ctrl_c()?;
    let status = run.process.wait_exit(STOP_LIMIT);
    let out = run.output();
    let status = status.ok_or_else(|| format!("still running {STOP_LIMIT:?} after Ctrl-C:\n{out}"))?;
    assert_eq!(status.code(), Some(130), "interrupted before it was ready:\n{out}");
    assert!(out.contains("stopped before it was ready"), "{out}");
    assert!(!out.contains("Ctrl-C stops everything."), "it did not go on starting:\n{out}");
    // Whatever had started (the demo honours the request between steps) is stopped newest first.
    let stopped = stopped_components(&out);
    let mut started: Vec<String> = start_order().into_iter().take(stopped.len()).collect();
    started.reverse();
    assert_eq!(stopped, started, "what had started, stopped by SIGTERM, newest first:\n{out}");
    assert_eq!(run.descendants(), Vec::<(u32, String)>::new(), "processes left behind:\n{out}");
    assert_eq!(run.leftovers(), Vec::<String>::new(), "temporary folders left behind in TMPDIR:\n{out}");
    Ok(())
}

#[tokio::test]
async fn ctrl_c_while_the_control_plane_starts_leaves_no_process_or_temp_dir() -> TestResult {
    // The Ctrl-C lands while the control plane's certificates, etcd and API server are being set up.
    interrupt_startup_at("[demo] starting etcd")
}

#[tokio::test]
async fn ctrl_c_while_the_probes_start_stops_them_and_leaves_no_process_or_temp_dir() -> TestResult {
    interrupt_startup_at("[demo] starting a simulated node probe")
}
