//! The real operator against N GpuNodeStatus objects on a private control plane: time until every object has
//! its conditions, writes issued, and the time from an XID write to the condition flip under that load.

use std::net::SocketAddr;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use gpuscope_crds::GpuNodeStatus;
use gpuscope_crds::gpu_node_status::PROBE_FIELD_MANAGER;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt as _, watcher};
use serde_json::json;

use super::stats::{ProcSample, ms, percentile};
use crate::control_plane::INSTALL_NAMESPACE;
use crate::fixtures::{create_node, install_rbac};
use crate::{ControlPlane, Identity, Process, free_port, http_get, metric_value, workspace_binary};

type BenchResult<T> = Result<T, Box<dyn std::error::Error>>;

/// Run the benchmark for each fleet size in `sizes`, each on a fresh control plane.
pub async fn run(sizes: &[usize], flips: usize) -> BenchResult<()> {
    println!("operator benchmark (one H100 per node, default policy; a fresh control plane per size)");
    for &n in sizes {
        one_size(n, flips).await?;
    }
    Ok(())
}

async fn one_size(n: usize, flips: usize) -> BenchResult<()> {
    eprintln!("[bench] {n} nodes: starting a control plane and creating the objects");
    let cp = ControlPlane::start()?;
    cp.apply_crds()?;
    install_rbac(&cp, &["operator.yaml"])?;
    let client = cp.client().await?;
    let names: Vec<String> = (0..n).map(|i| format!("gpu-node-{i:05}")).collect();
    let created = Instant::now();
    futures::stream::iter(names.iter().cloned())
        .map(|name| {
            let client = client.clone();
            async move { seed(&client, &name, None).await }
        })
        .buffer_unordered(32)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<Vec<_>, _>>()?;
    eprintln!("[bench] {n} nodes created in {:.1} s", created.elapsed().as_secs_f64());

    let listen = SocketAddr::from(([127, 0, 0, 1], free_port()?));
    let mut cmd = Command::new(workspace_binary("gpuscope-operator")?);
    cmd.env("KUBECONFIG", cp.kubeconfig_for(Identity::Operator))
        .args(["--namespace", INSTALL_NAMESPACE, "--identity", "bench"])
        .arg("--listen")
        .arg(listen.to_string());
    let operator = Process::spawn("gpuscope-operator", cmd, cp.dir().join("operator.log"))?;
    let started = Instant::now();
    let api: Api<GpuNodeStatus> = Api::all(client.clone());
    let converged = loop {
        let list = api.list(&Default::default()).await?;
        let done =
            list.items.iter().filter(|o| o.status.as_ref().and_then(|s| s.conditions.as_ref()).is_some()).count();
        if done == n {
            break started.elapsed();
        }
        if started.elapsed() > Duration::from_secs(600) {
            return Err(format!("only {done}/{n} converged:\n{}", operator.log_tail(20)).into());
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let m = figures(listen).await;
    let p0 = ProcSample::read(operator.pid()).ok_or("cannot read the operator's /proc entry")?;
    println!(
        "  {n:>5} nodes: all conditions set after {:.2} s; writes: {:.0} status + {:.0} Node",
        converged.as_secs_f64(),
        m.0,
        m.1
    );

    // XID 79 on a few nodes: time from the probe's write to GPUHealthy False, observed through a watch.
    let flipped = Arc::new(Mutex::new(std::collections::HashMap::<String, Instant>::new()));
    let seen = flipped.clone();
    let watch_api = api.clone();
    let watch = tokio::spawn(async move {
        let mut stream = watcher(watch_api, watcher::Config::default()).applied_objects().boxed();
        while let Some(Ok(obj)) = stream.next().await {
            let unhealthy = obj
                .status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|cs| cs.iter().any(|c| c.type_ == "GPUHealthy" && c.status == "False"));
            if unhealthy && let (Some(name), Ok(mut m)) = (obj.metadata.name.clone(), seen.lock()) {
                m.entry(name).or_insert_with(Instant::now);
            }
        }
    });
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut latencies = Vec::new();
    for i in 0..flips.min(n) {
        let name = &names[(i * 7919) % n];
        let written = Instant::now();
        seed(&client, name, Some(79)).await?;
        let deadline = written + Duration::from_secs(30);
        loop {
            if let Some(t) = flipped.lock().ok().and_then(|m| m.get(name).copied()) {
                latencies.push(t.saturating_duration_since(written));
                break;
            }
            if Instant::now() > deadline {
                eprintln!("[bench] {name} did not flip within 30 s");
                break;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
    watch.abort();
    let p1 = ProcSample::read(operator.pid()).ok_or("cannot read the operator's /proc entry")?;
    let m2 = figures(listen).await;
    println!(
        "         XID write -> GPUHealthy False ({} samples): p50 {}  p99 {}; operator RSS {:.1} MiB, CPU {:.1} % over the flips; writes for the flips: {:.0}",
        latencies.len(),
        ms(percentile(&latencies, 50.0)),
        ms(percentile(&latencies, 99.0)),
        p1.rss_kib as f64 / 1024.0,
        p1.cpu_percent_since(&p0),
        (m2.0 + m2.1) - (m.0 + m.1)
    );
    Ok(())
}

async fn figures(addr: SocketAddr) -> (f64, f64) {
    let body = http_get(addr, "/metrics").await.map(|(_, b)| b).unwrap_or_default();
    (
        metric_value(&body, "gpuscope_operator_status_writes_total").unwrap_or(0.0),
        metric_value(&body, "gpuscope_operator_node_writes_total").unwrap_or(0.0),
    )
}

/// Create (or update) a node and its probe-written status: healthy, or with one XID `code` just now.
async fn seed(client: &kube::Client, name: &str, xid: Option<u32>) -> Result<(), kube::Error> {
    let api: Api<GpuNodeStatus> = Api::all(client.clone());
    if xid.is_none() {
        create_node(client, name).await?;
        api.create(&PostParams::default(), &GpuNodeStatus::new(name, Default::default())).await?;
    }
    let now = jiff::Timestamp::now().to_string();
    let uuid = format!(
        "GPU-{:08x}-0000-4000-8000-000000000000",
        name.len() * 7 + name.bytes().map(usize::from).sum::<usize>()
    );
    let xids = xid.map(|code| {
        json!({
            "lastCode": code, "lastTime": now,
            "totals": [{ "code": code, "pciBusId": "0000:18:00.0", "gpuUuid": uuid, "count": 1, "firstSeen": now,
                         "lastSeen": now, "lastBootId": "boot-1" }],
            "recent": [{ "code": code, "time": now, "pciBusId": "0000:18:00.0", "gpuUuid": uuid, "source": "kmsg",
                         "bootId": "boot-1", "sequence": 1 }]
        })
    });
    let mut status = json!({
        "probe": { "version": "bench", "backend": "simulated", "lastReportTime": now, "bootId": "boot-1" },
        "driverVersion": "570.86.15", "gpuCount": 1, "gpuModel": "NVIDIA H100 80GB HBM3",
        "gpus": [{ "index": 0, "uuid": uuid, "productName": "NVIDIA H100 80GB HBM3", "pciBusId": "0000:18:00.0",
                   "temperatureCelsius": 40 }],
    });
    if let Some(x) = xids {
        status["xids"] = x;
    }
    let body = json!({ "apiVersion": "gpuscope.dev/v1alpha1", "kind": "GpuNodeStatus", "metadata": { "name": name }, "status": status });
    api.patch_status(name, &PatchParams::apply(PROBE_FIELD_MANAGER).force(), &Patch::Apply(&body)).await?;
    Ok(())
}
