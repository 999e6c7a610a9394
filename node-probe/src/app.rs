//! The probe's command line and wiring: backend and kernel log in, publisher and HTTP endpoints out.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use clap::{Parser, ValueEnum};
use gpuscope_crds::gpu_node_status::Backend;
use gpuscope_runtime::kube_config::KubeconfigArgs;
use gpuscope_runtime::logging::LogArgs;
use gpuscope_runtime::observability::{self, Listener, Readiness};
use gpuscope_runtime::shutdown::Shutdown;
use prometheus_client::registry::Registry;
use tokio::sync::{Notify, mpsc};

use gpuscope_crds::gpu_node_status::{DataSource, UnavailableSource};

use crate::backend::{BackendError, GpuBackend, NvmlBackend, NvmlConfig, SimulatedBackend, XidEvents};
use crate::kmsg_source::{self, KmsgSettings, Observation};
use crate::kube_io::LeaseSettings;
use crate::metrics::ProbeMetrics;
use crate::pod_resources::{self, KubeletClient, KubeletReport, OwnerLookup, PollSettings};
use crate::publisher::{Cadence, Inventory, Publisher};
use crate::spool::Spool;

/// gpuscope node probe: reads the node's GPUs through NVML and XID errors from the kernel log and NVML events,
/// and writes them into the GpuNodeStatus named after the node (plus a small Lease as its heartbeat).
#[derive(Debug, Parser)]
#[command(version, about, long_about = None)]
pub struct Args {
    /// The node this probe runs on (from the downward API: spec.nodeName).
    #[arg(long, env = "NODE_NAME")]
    pub node_name: String,
    /// Namespace for the probe's Lease (the namespace the probe runs in).
    #[arg(long, env = "POD_NAMESPACE", default_value = "gpuscope-system")]
    pub namespace: String,
    /// Holder identity written into the Lease (defaults to the node name).
    #[arg(long, env = "POD_NAME")]
    pub pod_name: Option<String>,
    /// Where GPU data comes from: the driver (nvml) or a scenario file (simulated, for demos and tests).
    #[arg(long, value_enum, default_value_t = BackendKind::Nvml, env = "GPUSCOPE_BACKEND")]
    pub backend: BackendKind,
    /// Path of the NVML library; the NVIDIA container runtime mounts the driver's copy.
    #[arg(long, default_value = crate::backend::DEFAULT_NVML_LIBRARY, env = "GPUSCOPE_NVML_LIBRARY")]
    pub nvml_library: PathBuf,
    /// Scenario file for `--backend simulated` (see node-probe/scenarios/).
    #[arg(long, env = "GPUSCOPE_SCENARIO", required_if_eq("backend", "simulated"))]
    pub scenario: Option<PathBuf>,
    /// Kernel log to follow for XID lines (a file or FIFO works too, for tests and replays).
    #[arg(long, default_value = "/dev/kmsg", env = "GPUSCOPE_KMSG_PATH")]
    pub kmsg_path: PathBuf,
    /// Do not read the kernel log (NVML events only).
    #[arg(long)]
    pub no_kmsg: bool,
    /// The kubelet's pod-resources socket, read to learn which pod holds which GPU (mount the host's
    /// /var/lib/kubelet/pod-resources read-only). Default with `--backend nvml`:
    /// /var/lib/kubelet/pod-resources/kubelet.sock; a simulated scenario lists its own pods.
    #[arg(long, env = "GPUSCOPE_POD_RESOURCES_SOCKET")]
    pub pod_resources_socket: Option<PathBuf>,
    /// How often the kubelet's pod-resources API is read (and at once after an XID).
    #[arg(long, default_value = "10s", value_parser = gpuscope_crds::duration::parse_duration)]
    pub pod_resources_interval: Duration,
    /// How long one pod-resources call may take before it counts as failed.
    #[arg(long, default_value = "5s", value_parser = gpuscope_crds::duration::parse_duration)]
    pub pod_resources_timeout: Duration,
    /// Do not read which pods hold the GPUs (no XID attribution to workloads).
    #[arg(long, conflicts_with = "pod_resources_socket")]
    pub no_pod_resources: bool,
    /// File holding the node's boot id.
    #[arg(long, default_value = "/proc/sys/kernel/random/boot_id")]
    pub boot_id_file: PathBuf,
    /// Directory for the XID spool (a hostPath, so a restarted probe loses nothing).
    #[arg(long, default_value = "/var/lib/gpuscope", env = "GPUSCOPE_SPOOL_DIR")]
    pub spool_dir: PathBuf,
    /// How often the GPUs are sampled.
    #[arg(long, default_value = "30s", value_parser = gpuscope_crds::duration::parse_duration)]
    pub sample_interval: Duration,
    /// Longest time between GpuNodeStatus writes when nothing changes.
    #[arg(long, default_value = "5m", value_parser = gpuscope_crds::duration::parse_duration)]
    pub refresh_interval: Duration,
    /// How often the Lease is renewed (the heartbeat).
    #[arg(long, default_value = "30s", value_parser = gpuscope_crds::duration::parse_duration)]
    pub lease_interval: Duration,
    /// Without NVML, how often the probe tries to load it again (a driver installed after the probe started); when
    /// it loads, the probe exits so that it restarts with it.
    #[arg(long, default_value = "1m", value_parser = gpuscope_crds::duration::parse_duration)]
    pub nvml_retry_interval: Duration,
    /// Address for /healthz, /readyz and /metrics.
    #[arg(long, default_value = "0.0.0.0:8081", env = "GPUSCOPE_LISTEN")]
    pub listen: SocketAddr,
    /// Which cluster: --kubeconfig and --context, as kubectl's.
    #[command(flatten)]
    pub kube: KubeconfigArgs,
    #[command(flatten)]
    pub log: LogArgs,
}

/// Backend choice.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum BackendKind {
    /// The NVIDIA driver, through NVML.
    Nvml,
    /// A scenario file.
    Simulated,
}

/// How long the exit may wait for the GPU sampler and the NVML event thread: an NVML call on a wedged GPU can
/// block for good, and the pod's termination grace period (30 s) must still end in a clean exit.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);

/// How long the publisher may take to stop once a shutdown is requested: its request in flight (which the
/// publisher does not cut short, and which an unresponsive API server holds for minutes) and its final, bounded
/// write. Past this the probe exits without them, before the grace period's SIGKILL.
const PUBLISH_STOP_TIMEOUT: Duration = Duration::from_secs(15);

/// The GPU backend, opened, and its XID event stream (if it has one).
type Opened = (Box<dyn GpuBackend>, Result<XidEvents, BackendError>);

/// Open the backend and start its XID events: blocking work (NVML initialisation takes seconds per GPU, and can
/// hang on a wedged driver), so [`run`] does it on a thread of its own.
fn open_backend(kind: BackendKind, nvml_library: PathBuf, scenario: Option<PathBuf>) -> anyhow::Result<Opened> {
    let mut backend: Box<dyn GpuBackend> = match kind {
        BackendKind::Nvml => Box::new(NvmlBackend::open(NvmlConfig { library_path: nvml_library })?),
        BackendKind::Simulated => {
            let path = scenario.ok_or_else(|| anyhow::anyhow!("--backend simulated needs --scenario"))?;
            Box::new(SimulatedBackend::from_file(&path)?)
        }
    };
    let events = backend.start_xid_events(1024);
    Ok((backend, events))
}

/// Run the probe until `shutdown` (SIGTERM/SIGINT) is requested; a request at any phase, startup included (NVML
/// initialisation, the client), ends in a clean return (exit 0).
pub async fn run(args: Args, shutdown: Shutdown) -> anyhow::Result<()> {
    let (choice, library, scenario) = (args.backend, args.nvml_library.clone(), args.scenario.clone());
    let opening = shutdown.unless_blocking("gpu-backend-init", move || open_backend(choice, library, scenario));
    let Some(opened) = opening.await? else { return stopped_early() };
    // A node without NVML (no NVIDIA driver or container runtime) is reported as such, not left invisible by a
    // crash-looping probe: the status says what is missing and the operator makes the node Unknown.
    let mut unavailable: Vec<UnavailableSource> = Vec::new();
    let (backend, xid_events) = match opened {
        Ok((backend, events)) => (Some(backend), Some(events)),
        Err(e) if args.backend == BackendKind::Nvml => {
            tracing::error!(error = %e, "NVML is unavailable: reporting the node without GPU data");
            unavailable.push(UnavailableSource { source: DataSource::Nvml, message: format!("{e:#}") });
            (None, None)
        }
        Err(e) => return Err(e),
    };
    let kind = match args.backend {
        BackendKind::Nvml => gpuscope_crds::gpu_node_status::Backend::Nvml,
        BackendKind::Simulated => gpuscope_crds::gpu_node_status::Backend::Simulated,
    };
    let boot_id = kmsg_source::read_boot_id(&args.boot_id_file);
    if boot_id.is_none() {
        tracing::warn!(path = %args.boot_id_file.display(), "no boot id: reboots cannot be told apart");
    }
    let Some(client) = shutdown.unless(args.kube.client()).await else { return stopped_early() };
    let client = client?;

    let metrics = ProbeMetrics::default();
    let mut registry = Registry::default();
    metrics.register(&mut registry);
    let readiness = Readiness::default();
    let listener = Listener::bind(args.listen).await?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let server_stop = wait_for(stop_rx.clone());
    let server =
        tokio::spawn(listener.serve(observability::router(Arc::new(registry), readiness.clone()), server_stop));

    let (obs_tx, obs_rx) = mpsc::channel::<Observation>(4096);
    let stop_threads = Arc::new(AtomicBool::new(false));
    // Either XID source may be unavailable (an unprivileged container on containerd cannot open /dev/kmsg; old
    // drivers lack NVML events): the probe reports what it can and names what it cannot, rather than crash-looping.
    let kmsg_thread = if args.no_kmsg {
        unavailable
            .push(UnavailableSource { source: DataSource::KernelLog, message: "not read (--no-kmsg)".to_string() });
        None
    } else {
        let settings = KmsgSettings {
            path: args.kmsg_path.clone(),
            boot_id: boot_id.clone(),
            boot_time: kmsg_source::boot_time(),
        };
        match kmsg_source::spawn(settings, obs_tx.clone(), stop_threads.clone()) {
            Ok(t) => Some(t),
            Err(e) => {
                tracing::error!(error = %e, "XIDs will come from NVML events only");
                unavailable.push(UnavailableSource { source: DataSource::KernelLog, message: e.to_string() });
                None
            }
        }
    };
    let xid_events = match xid_events {
        Some(Ok(events)) => Some(events),
        Some(Err(e)) => {
            tracing::warn!(error = %e, "no NVML XID events; XIDs will come from the kernel log only");
            unavailable.push(UnavailableSource { source: DataSource::NvmlEvents, message: e.to_string() });
            None
        }
        None => None,
    };
    let (xid_rx, xid_thread) = match xid_events {
        Some(events) => (Some(events.receiver), Some(events.thread)),
        None => (None, None),
    };
    let pump = xid_rx.map(|rx| tokio::spawn(pump_backend_xids(rx, obs_tx.clone(), boot_id.clone())));
    let (kubelet_tx, kubelet_rx) = mpsc::channel::<KubeletReport>(4);
    let kubelet_socket = match (args.no_pod_resources, &args.pod_resources_socket, kind) {
        (true, _, _) => None,
        (false, Some(path), _) => Some(path.clone()),
        (false, None, Backend::Nvml) => Some(PathBuf::from(pod_resources::DEFAULT_SOCKET)),
        (false, None, Backend::Simulated) => None,
    };
    let poll_kubelet = kubelet_socket.as_ref().map(|_| Arc::new(Notify::new()));
    let kubelet_poller = match (&kubelet_socket, &poll_kubelet) {
        (Some(socket), Some(poll_now)) => Some(tokio::spawn(pod_resources::run_poller(
            KubeletClient::new(socket.clone(), args.pod_resources_timeout),
            PollSettings { interval: args.pod_resources_interval },
            Some(OwnerLookup { client: client.clone(), node: args.node_name.clone() }),
            kubelet_tx,
            poll_now.clone(),
            metrics.clone(),
            wait_for(stop_rx.clone()),
        ))),
        _ => None,
    };
    let (inv_tx, inv_rx) = mpsc::channel::<Inventory>(4);
    let nvml_missing = backend.is_none();
    let sampler = backend.map(|backend| {
        tokio::spawn(sample(backend, args.sample_interval, inv_tx, metrics.clone(), wait_for(stop_rx.clone())))
    });

    let publisher = Publisher {
        client,
        node: args.node_name.clone(),
        lease: LeaseSettings {
            namespace: args.namespace.clone(),
            holder: args.pod_name.clone().unwrap_or_else(|| args.node_name.clone()),
            duration_seconds: i32::try_from(args.lease_interval.as_secs().saturating_mul(4)).unwrap_or(i32::MAX),
        },
        cadence: Cadence {
            lease_interval: args.lease_interval,
            refresh_interval: args.refresh_interval,
            ..Cadence::default()
        },
        spool: Spool::new(&args.spool_dir),
        backend: kind,
        boot_id,
        unavailable_sources: unavailable,
        metrics,
        readiness,
        poll_kubelet,
    };
    tracing::info!(node = %args.node_name, backend = ?kind, "gpuscope-probe started");
    // Without NVML, a driver installed later (a GPU operator's driver container) is picked up by a restart: the
    // probe stops cleanly once the library loads.
    let (library, retry) = (args.nvml_library.clone(), args.nvml_retry_interval);
    let nvml_appears = async move {
        if nvml_missing {
            wait_for_nvml(library, retry).await;
        } else {
            std::future::pending::<()>().await;
        }
    };
    let stop_publishing = async {
        tokio::select! {
            () = shutdown.wait() => {}
            () = nvml_appears => tracing::info!("NVML loads now; stopping so that the probe restarts with it"),
        }
    };
    let publishing = publisher.run(obs_rx, inv_rx, kubelet_rx, stop_publishing);
    tokio::pin!(publishing);
    let abandoned = async {
        shutdown.wait().await;
        tokio::time::sleep(PUBLISH_STOP_TIMEOUT).await;
    };
    tokio::select! {
        () = &mut publishing => {}
        () = abandoned => tracing::warn!(
            "the publisher did not stop within {PUBLISH_STOP_TIMEOUT:?} of the shutdown (an API request hangs?); \
             exiting without its final write"
        ),
    }

    let _ = stop_tx.send(true);
    stop_threads.store(true, Ordering::Relaxed);
    drop(obs_tx);
    if let Some(p) = pump {
        p.abort();
    }
    if let Some(p) = kubelet_poller {
        p.abort();
    }
    if let Some(sampler) = sampler
        && tokio::time::timeout(STOP_TIMEOUT, sampler).await.is_err()
    {
        tracing::warn!("the GPU sampler is stuck in an NVML call; exiting without it");
    }
    if let Some(thread) = xid_thread {
        // On a thread of its own, not `spawn_blocking`: a join that never returns must not hold up the exit.
        let (_nobody, uninterrupted) = Shutdown::manual();
        let stopping = uninterrupted.unless_blocking("nvml-events-stop", move || thread.stop());
        if tokio::time::timeout(STOP_TIMEOUT, stopping).await.is_err() {
            tracing::warn!("the NVML event thread did not stop; exiting without it");
        }
    }
    if let Some(t) = kmsg_thread {
        // The kmsg thread may sit in a blocking read; it exits with the process.
        drop(t);
    }
    let _ = server.await;
    tracing::info!("gpuscope-probe stopped");
    Ok(())
}

/// Resolves once NVML loads from `library`, trying every `every`. Each try runs on a thread of its own: loading
/// can hang on a wedged driver, and a hung try must not stop the next.
async fn wait_for_nvml(library: PathBuf, every: Duration) {
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker.tick().await;
    loop {
        ticker.tick().await;
        let (_nobody, uninterrupted) = Shutdown::manual();
        let path = library.clone();
        let trying = uninterrupted
            .unless_blocking("nvml-retry", move || NvmlBackend::open(NvmlConfig { library_path: path }).map(drop));
        match tokio::time::timeout(every, trying).await {
            Ok(Ok(Some(Ok(())))) => return,
            Ok(Ok(Some(Err(e)))) => tracing::debug!(error = %e, "NVML still unavailable"),
            other => tracing::debug!(?other, "trying NVML again did not finish"),
        }
    }
}

fn stopped_early() -> anyhow::Result<()> {
    tracing::info!("gpuscope-probe stopped before it had started");
    Ok(())
}

async fn wait_for(mut rx: tokio::sync::watch::Receiver<bool>) {
    let _ = rx.wait_for(|stop| *stop).await;
}

async fn pump_backend_xids(
    mut rx: mpsc::Receiver<crate::backend::NvmlXidEvent>,
    tx: mpsc::Sender<Observation>,
    boot_id: Option<String>,
) {
    while let Some(ev) = rx.recv().await {
        match ev.to_xid_event(boot_id.as_deref()) {
            Some(x) => {
                if tx.send(Observation::Xid(x)).await.is_err() {
                    return;
                }
            }
            None => tracing::warn!(code = ev.code, "NVML reported an XID without a GPU; not recorded"),
        }
    }
}

async fn sample(
    mut backend: Box<dyn GpuBackend>,
    every: Duration,
    tx: mpsc::Sender<Inventory>,
    metrics: ProbeMetrics,
    stop: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(stop);
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = &mut stop => return,
            _ = ticker.tick() => {}
        }
        // NVML calls block: keep them off the async workers.
        let result = tokio::task::spawn_blocking(move || {
            let snapshot = backend.snapshot();
            (backend, snapshot)
        })
        .await;
        let snapshot;
        (backend, snapshot) = match result {
            Ok(pair) => pair,
            Err(e) => {
                tracing::error!(error = %e, "the GPU sampler panicked; no more snapshots");
                return;
            }
        };
        match snapshot {
            Ok(s) => {
                metrics.nvml_field_errors.inc_by(s.field_errors.len() as u64);
                for (field, error) in &s.field_errors {
                    tracing::debug!(%field, %error, "NVML field failed");
                }
                for lost in &s.lost_gpus {
                    tracing::warn!(index = lost.index, uuid = ?lost.uuid, "NVML reports a GPU as lost (fallen off the bus?)");
                }
                let inv = Inventory {
                    driver_version: s.driver_version,
                    cuda_driver_version: s.cuda_driver_version,
                    nvml_version: s.nvml_version,
                    gpus: s.gpus,
                    unsupported_fields: s.unsupported_fields,
                    allocations: s.allocations,
                };
                if tx.send(inv).await.is_err() {
                    return;
                }
            }
            Err(e) => {
                metrics.snapshot_errors.inc();
                tracing::warn!(error = %e, "reading the GPUs failed; will try again");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::ffi::OsStrExt as _;
    use std::os::unix::fs::OpenOptionsExt as _;

    use super::*;

    #[tokio::test]
    async fn a_shutdown_while_nvml_initialises_is_a_clean_return() {
        let dir = tempfile::tempdir().expect("temp dir");
        // Loading a FIFO nobody writes to blocks in open(2): an NVML initialisation that never completes.
        let fifo = dir.path().join("libnvidia-ml.so.1");
        let path = std::ffi::CString::new(fifo.as_os_str().as_bytes()).expect("path");
        // SAFETY: `path` is a valid NUL-terminated string that outlives the call.
        assert_eq!(unsafe { libc::mkfifo(path.as_ptr(), 0o600) }, 0, "mkfifo");
        let spool = dir.path().join("spool");
        let args = Args::try_parse_from([
            "gpuscope-probe".as_ref(),
            "--node-name".as_ref(),
            "gpu-node-1".as_ref(),
            "--backend".as_ref(),
            "nvml".as_ref(),
            "--nvml-library".as_ref(),
            fifo.as_os_str(),
            "--spool-dir".as_ref(),
            spool.as_os_str(),
            "--listen".as_ref(),
            "127.0.0.1:0".as_ref(),
        ] as [&std::ffi::OsStr; 11])
        .expect("args");
        let (tx, shutdown) = Shutdown::manual();
        let probe = tokio::spawn(run(args, shutdown));
        tokio::time::sleep(Duration::from_millis(300)).await;
        let was_waiting = !probe.is_finished();
        let _ = tx.send(true);
        let out = tokio::time::timeout(Duration::from_secs(5), probe).await;
        // Release the abandoned loader thread before any assertion: while it sits in dlopen it holds the dynamic
        // loader's lock, which a panic (its backtrace) and other threads' first thread-local use need. It then
        // sees end of file and fails. Non-blocking, in case it never opened the FIFO.
        drop(std::fs::OpenOptions::new().write(true).custom_flags(libc::O_NONBLOCK).open(&fifo));
        assert!(was_waiting, "the probe should have been waiting for NVML, got {out:?}");
        assert!(matches!(out, Ok(Ok(Ok(())))), "a shutdown during NVML initialisation must return Ok: {out:?}");
    }
}
