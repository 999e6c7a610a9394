//! One real probe against a private control plane: API writes in steady state, bytes per write, RSS, CPU, the
//! XID-line-to-API latency, the same under a flood of kernel-log lines, and under pod churn on its GPUs (a fake
//! kubelet whose pod-resources answer changes every second).

use std::io::Write as _;
use std::net::SocketAddr;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use gpuscope_crds::GpuNodeStatus;
use kube::api::Api;
use kube::runtime::{WatchStreamExt as _, watcher};

use super::stats::{ProcSample, ms, percentile};
use crate::control_plane::{INSTALL_NAMESPACE, workspace_root};
use crate::fake_kubelet::{FakeKubelet, gpu_pod};
use crate::fixtures::{create_node, install_rbac};
use crate::{ControlPlane, Identity, Process, free_port, http_get, metric_value, workspace_binary};

/// Benchmark settings.
#[derive(Clone, Debug)]
pub struct ProbeBench {
    /// Length of the steady-state phase.
    pub steady: Duration,
    /// XID lines appended one by one for the latency measurement.
    pub latency_samples: usize,
    /// Lines per second in the flood phase.
    pub flood_rate: u32,
    /// Length of the flood phase.
    pub flood_for: Duration,
    /// Length of the pod-churn phase (one pod starts or stops per second).
    pub churn_for: Duration,
}

type BenchResult<T> = Result<T, Box<dyn std::error::Error>>;

/// Run it and print the figures.
pub async fn run(cfg: ProbeBench) -> BenchResult<()> {
    eprintln!("[bench] starting a private control plane");
    let cp = ControlPlane::start()?;
    cp.apply_crds()?;
    install_rbac(&cp, &["probe.yaml"])?;
    let client = cp.client().await?;
    let node = "bench-node";
    create_node(&client, node).await?;
    let dir = tempfile::tempdir()?;
    let kmsg = dir.path().join("kmsg");
    std::fs::write(&kmsg, b"")?;
    std::fs::write(dir.path().join("boot_id"), b"0f1e2d3c-4b5a-4968-8776-a5b4c3d2e1f0\n")?;
    let listen = SocketAddr::from(([127, 0, 0, 1], free_port()?));
    // The kubelet's pod-resources API: 4 pods on 4 of the 8 GPUs until the churn phase.
    let kubelet = FakeKubelet::start(&dir.path().join("kubelet.sock")).await?;
    let mut pods: Vec<(String, &str)> = (0..4).map(|i| (format!("steady-{i}"), GPUS[i])).collect();
    kubelet.set_pods(pods.iter().map(|(name, gpu)| gpu_pod("bench", name, "main", &[gpu])).collect());
    let mut cmd = Command::new(workspace_binary("gpuscope-probe")?);
    cmd.env("KUBECONFIG", cp.kubeconfig_for(Identity::Probe))
        .args(["--node-name", node, "--namespace", INSTALL_NAMESPACE, "--backend", "simulated", "--scenario"])
        .arg(workspace_root().join("node-probe/scenarios/healthy-8x-h100.yaml"))
        .arg("--kmsg-path")
        .arg(&kmsg)
        .arg("--boot-id-file")
        .arg(dir.path().join("boot_id"))
        .arg("--spool-dir")
        .arg(dir.path().join("spool"))
        .arg("--pod-resources-socket")
        .arg(kubelet.socket())
        .arg("--listen")
        .arg(listen.to_string());
    let probe = Process::spawn("gpuscope-probe", cmd, dir.path().join("probe.log"))?;
    let pid = probe.pid();
    let api: Api<GpuNodeStatus> = Api::all(client.clone());
    let started = Instant::now();
    while api.get_opt(node).await?.and_then(|o| o.status).and_then(|s| s.gpu_count).is_none() {
        if started.elapsed() > Duration::from_secs(60) {
            return Err(format!("the probe never wrote:\n{}", probe.log_tail(30)).into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!(
        "probe benchmark (simulated 8x H100 node, default cadence: sample 30s, lease 30s, refresh 5m, pod-resources 10s)"
    );
    println!("  first write after start            {:>10}", ms(Some(started.elapsed())));

    // Steady state.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let m0 = metrics(listen).await;
    let p0 = ProcSample::read(pid).ok_or("cannot read the probe's /proc entry")?;
    eprintln!("[bench] steady state for {:?}", cfg.steady);
    tokio::time::sleep(cfg.steady).await;
    let m1 = metrics(listen).await;
    let p1 = ProcSample::read(pid).ok_or("cannot read the probe's /proc entry")?;
    let minutes = cfg.steady.as_secs_f64() / 60.0;
    let writes = m1.writes - m0.writes;
    let object_bytes = api.get(node).await.map(|o| serde_json::to_vec(&o.status).map(|b| b.len()).unwrap_or(0))?;
    println!("  steady state over                  {:>10.1} min", minutes);
    println!("  GpuNodeStatus writes per minute    {:>10.2}", writes / minutes);
    println!("  Lease renewals per minute          {:>10.2}", (m1.renewals - m0.renewals) / minutes);
    println!(
        "  bytes per status write             {:>10.0}   (status now {object_bytes} bytes)",
        if m1.writes > 0.0 { m1.bytes / m1.writes } else { 0.0 }
    );
    println!("  CPU (steady)                       {:>9.2} %", p1.cpu_percent_since(&p0));
    println!(
        "  RSS / peak RSS                     {:>7.1} MiB / {:.1} MiB",
        p1.rss_kib as f64 / 1024.0,
        p1.peak_rss_kib as f64 / 1024.0
    );

    // Latency: one XID line at a time, timed until the API shows it (observed through a watch).
    let seen = Arc::new(Mutex::new(Vec::<(u64, Instant)>::new()));
    let watch_seen = seen.clone();
    let watch_api = api.clone();
    let watch = tokio::spawn(async move {
        let cfg = watcher::Config::default().fields(&format!("metadata.name={node}"));
        let mut stream = watcher(watch_api, cfg).applied_objects().boxed();
        while let Some(Ok(obj)) = stream.next().await {
            let count = total(&obj, 31);
            if let Ok(mut s) = watch_seen.lock() {
                s.push((count, Instant::now()));
            }
        }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut latencies = Vec::new();
    let mut seq = 1u64;
    for i in 0..cfg.latency_samples {
        let appended = Instant::now();
        append(&kmsg, &line(seq, 31))?;
        seq += 1;
        let want = (i + 1) as u64;
        let deadline = appended + Duration::from_secs(10);
        loop {
            let hit =
                seen.lock().ok().and_then(|s| s.iter().find(|(c, t)| *c >= want && *t >= appended).map(|(_, t)| *t));
            if let Some(t) = hit {
                latencies.push(t.duration_since(appended));
                break;
            }
            if Instant::now() > deadline {
                eprintln!("[bench] XID {want} not seen within 10 s");
                break;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    println!(
        "  XID line -> API latency ({} lines)  p50 {}  p99 {}  max {}",
        latencies.len(),
        ms(percentile(&latencies, 50.0)),
        ms(percentile(&latencies, 99.0)),
        ms(latencies.iter().max().copied())
    );

    // Flood: `flood_rate` lines per second, in batches every 10 ms.
    let m2 = metrics(listen).await;
    let p2 = ProcSample::read(pid).ok_or("cannot read the probe's /proc entry")?;
    let total_lines = (f64::from(cfg.flood_rate) * cfg.flood_for.as_secs_f64()) as u64;
    let batch = (cfg.flood_rate / 100).max(1) as u64;
    let flood_start = Instant::now();
    let mut written = 0u64;
    while written < total_lines {
        let mut text = String::new();
        for _ in 0..batch.min(total_lines - written) {
            text.push_str(&line(seq, 45));
            seq += 1;
            written += 1;
        }
        append(&kmsg, &text)?;
        let next = flood_start + Duration::from_secs_f64(written as f64 / f64::from(cfg.flood_rate));
        tokio::time::sleep_until(tokio::time::Instant::from_std(next)).await;
    }
    let flood_wall = flood_start.elapsed();
    let p3 = ProcSample::read(pid).ok_or("cannot read the probe's /proc entry")?;
    let m3 = metrics(listen).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut final_count = 0;
    while Instant::now() < deadline {
        final_count = api.get(node).await.map(|o| total(&o, 45))?;
        if final_count >= total_lines {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let settled = flood_start.elapsed();
    println!(
        "  flood: {} lines at {}/s over {:.1} s  CPU {:.1} %  writes/s {:.2}  all counted after {:.1} s ({} of {})",
        total_lines,
        cfg.flood_rate,
        flood_wall.as_secs_f64(),
        p3.cpu_percent_since(&p2),
        (m3.writes - m2.writes) / flood_wall.as_secs_f64(),
        settled.as_secs_f64(),
        final_count,
        total_lines
    );
    let p4 = ProcSample::read(pid).ok_or("cannot read the probe's /proc entry")?;
    println!(
        "  RSS / peak RSS after the flood     {:>7.1} MiB / {:.1} MiB",
        p4.rss_kib as f64 / 1024.0,
        p4.peak_rss_kib as f64 / 1024.0
    );
    watch.abort();

    // Pod churn: every second one pod starts (on a free GPU) or stops, as the kubelet reports it.
    let m5 = metrics(listen).await;
    let p5 = ProcSample::read(pid).ok_or("cannot read the probe's /proc entry")?;
    let churn_start = Instant::now();
    let mut changes = 0u64;
    while churn_start.elapsed() < cfg.churn_for {
        if changes.is_multiple_of(2) && pods.len() < GPUS.len() {
            let free = GPUS.iter().find(|g| !pods.iter().any(|(_, held)| held == *g)).copied().unwrap_or(GPUS[0]);
            pods.push((format!("churn-{changes}"), free));
        } else if !pods.is_empty() {
            pods.remove(0);
        }
        kubelet.set_pods(pods.iter().map(|(name, gpu)| gpu_pod("bench", name, "main", &[gpu])).collect());
        changes += 1;
        tokio::time::sleep_until(tokio::time::Instant::from_std(churn_start + Duration::from_secs(changes))).await;
    }
    let churn_wall = churn_start.elapsed();
    let m6 = metrics(listen).await;
    let p6 = ProcSample::read(pid).ok_or("cannot read the probe's /proc entry")?;
    let churn_writes = m6.writes - m5.writes;
    let churn_minutes = churn_wall.as_secs_f64() / 60.0;
    println!(
        "  pod churn: {changes} pod starts/stops over {:.1} s (1/s)  status writes/min {:.1}  bytes/write {:.0}  \
         CPU {:.2} %  polls {:.0}",
        churn_wall.as_secs_f64(),
        churn_writes / churn_minutes,
        if churn_writes > 0.0 { (m6.bytes - m5.bytes) / churn_writes } else { 0.0 },
        p6.cpu_percent_since(&p5),
        m6.polls - m5.polls
    );
    println!(
        "  RSS / peak RSS after the churn     {:>7.1} MiB / {:.1} MiB",
        p6.rss_kib as f64 / 1024.0,
        p6.peak_rss_kib as f64 / 1024.0
    );
    Ok(())
}

/// The GPUs of node-probe/scenarios/healthy-8x-h100.yaml.
const GPUS: [&str; 8] = [
    "GPU-3f9c1e72-5b0d-4c8e-a1f4-7d2b9e6c0a15",
    "GPU-8a41d6b3-0e97-4f2a-9c5d-1b7e3f0a8d62",
    "GPU-c25e0f49-7a1b-4d63-8e0c-5f9a2d4b7e31",
    "GPU-1d7b9a08-3c6e-4b5f-b2a9-0e8c4f1d6a97",
    "GPU-6e0a3c51-9d2f-4a7b-8c1e-4b5d7f9a0c28",
    "GPU-b4f8e217-2a5c-4e9d-a0b3-6c1f8d2e5a74",
    "GPU-0c93b5d6-8e4a-4f1c-9b7d-2a6e0c3f8b19",
    "GPU-57a2c8e4-1f6b-4d0a-b9e5-3c7d1a4f2e86",
];

struct Figures {
    writes: f64,
    bytes: f64,
    renewals: f64,
    polls: f64,
}

async fn metrics(addr: SocketAddr) -> Figures {
    let body = http_get(addr, "/metrics").await.map(|(_, b)| b).unwrap_or_default();
    Figures {
        writes: metric_value(&body, "gpuscope_probe_status_writes_total").unwrap_or(0.0),
        bytes: metric_value(&body, "gpuscope_probe_status_write_bytes_total").unwrap_or(0.0),
        renewals: metric_value(&body, "gpuscope_probe_lease_renewals_total").unwrap_or(0.0),
        polls: metric_value(&body, "gpuscope_probe_pod_resources_polls_total").unwrap_or(0.0),
    }
}

fn total(obj: &GpuNodeStatus, code: u32) -> u64 {
    obj.status
        .as_ref()
        .and_then(|s| s.xids.as_ref())
        .map(|x| x.totals.iter().filter(|t| t.code == code).map(|t| t.count).sum())
        .unwrap_or(0)
}

fn line(seq: u64, code: u32) -> String {
    format!("3,{seq},{},-;NVRM: Xid (PCI:0000:18:00): {code}, pid=4242, name=python3, bench line {seq}\n", seq * 10)
}

fn append(path: &std::path::Path, text: &str) -> std::io::Result<()> {
    std::fs::OpenOptions::new().append(true).open(path)?.write_all(text.as_bytes())
}
