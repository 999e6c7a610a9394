//! The operator's command line and wiring: caches, policy watch, leader election, the controller and the HTTP
//! endpoints. Every replica keeps its caches warm; only the leader reconciles.

use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use clap::Parser;
use futures::StreamExt as _;
use gpuscope_crds::GpuNodeStatus;
use gpuscope_crds::policy::EffectivePolicy;
use gpuscope_runtime::kube_config::KubeconfigArgs;
use gpuscope_runtime::logging::LogArgs;
use gpuscope_runtime::observability::{self, Listener, Readiness};
use gpuscope_runtime::shutdown::Shutdown;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Node;
use kube::api::Api;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{Controller, WatchStreamExt as _, watcher};
use prometheus_client::registry::Registry;
use tokio::sync::{mpsc, watch};

use crate::metrics::{ConditionLabels, Label, OperatorMetrics};
use crate::reconciler::{self, Context};
use crate::remediation::HeldNodes;
use gpuscope_runtime::backoff::Backoff;

/// gpuscope operator: turns what the node probes report into health conditions by policy, mirrors them onto the
/// Nodes, emits Events, and (only where the GpuHealthPolicy asks) taints or cordons unhealthy Nodes.
#[derive(Debug, Parser)]
#[command(version, about, long_about = None)]
pub struct Args {
    /// Namespace the operator and the probes run in (their Leases live there).
    #[arg(long, env = "POD_NAMESPACE", default_value = "gpuscope-system")]
    pub namespace: String,
    /// This replica's identity for leader election and Events (the pod name).
    #[arg(long, env = "POD_NAME", default_value = "gpuscope-operator")]
    pub identity: String,
    /// Name of the leader-election Lease.
    #[arg(long, default_value = "gpuscope-operator")]
    pub leader_lease: String,
    /// How long a leader's Lease is valid without renewal; a new leader takes over within this time.
    #[arg(long, default_value_t = 15, value_parser = clap::value_parser!(u64).range(2..=300))]
    pub leader_lease_seconds: u64,
    /// Reconciles run at once.
    #[arg(long, default_value_t = 4)]
    pub concurrency: u16,
    /// Address for /healthz, /readyz and /metrics.
    #[arg(long, default_value = "0.0.0.0:8080", env = "GPUSCOPE_LISTEN")]
    pub listen: SocketAddr,
    /// Which cluster: --kubeconfig and --context, as kubectl's.
    #[command(flatten)]
    pub kube: KubeconfigArgs,
    #[command(flatten)]
    pub log: LogArgs,
}

/// How long the leader Lease's release may take at shutdown: a replica that cannot reach the API server must
/// still exit well within the pod's termination grace period (the Lease then simply expires).
const RELEASE_TIMEOUT: Duration = Duration::from_secs(5);

/// Run the operator until `shutdown` (SIGTERM/SIGINT) is requested; a request at any phase, startup included, ends
/// in a clean return (exit 0), with the leader Lease released when it was held.
pub async fn run(args: Args, shutdown: Shutdown) -> anyhow::Result<()> {
    let Some(client) = shutdown.unless(args.kube.client()).await else { return stopped_early() };
    let client = client?;
    let metrics = OperatorMetrics::default();
    let mut registry = Registry::default();
    metrics.register(&mut registry);
    let readiness = Readiness::default();
    let listener = Listener::bind(args.listen).await?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let server = tokio::spawn(
        listener.serve(observability::router(Arc::new(registry), readiness.clone()), wait(stop_rx.clone())),
    );
    let outcome = serve(client, args, &shutdown, metrics, readiness).await;
    let _ = stop_tx.send(true);
    let _ = server.await;
    if outcome.is_ok() {
        tracing::info!("gpuscope-operator stopped");
    }
    outcome
}

fn stopped_early() -> anyhow::Result<()> {
    tracing::info!("gpuscope-operator stopped before it had started");
    Ok(())
}

/// Caches, leader election and, while leading, the controller; returns once `shutdown` is requested.
async fn serve(
    client: kube::Client,
    args: Args,
    shutdown: &Shutdown,
    metrics: OperatorMetrics,
    readiness: Readiness,
) -> anyhow::Result<()> {
    // Caches every replica keeps warm, so a new leader starts from current state.
    let held = HeldNodes::default();
    let nodes = spawn_reflector(Api::<Node>::all(client.clone()), watcher::Config::default(), {
        let held = held.clone();
        move |event| held.observe(event)
    });
    let leases =
        spawn_reflector(Api::<Lease>::namespaced(client.clone(), &args.namespace), watcher::Config::default(), |_| {});
    let policy = Arc::new(RwLock::new(EffectivePolicy::default()));
    let (policy_tx, policy_rx) = mpsc::channel::<()>(8);
    tokio::spawn(crate::policy_watch::run(client.clone(), policy.clone(), policy_tx, metrics.clone()));
    let synced = async {
        nodes.wait_until_ready().await?;
        leases.wait_until_ready().await
    };
    match shutdown.unless(synced).await {
        None => return Ok(()),
        Some(synced) => synced?,
    }
    readiness.set(true);

    let build = kube_lease_manager::LeaseManagerBuilder::new(client.clone(), &args.leader_lease)
        .with_namespace(&args.namespace)
        .with_identity(&args.identity)
        .with_duration(args.leader_lease_seconds)
        .with_grace((args.leader_lease_seconds / 3).max(1))
        .with_field_manager("gpuscope-operator-leader")
        .build();
    // Building only ensures the Lease object exists; nothing is held yet, so there is nothing to release.
    let Some(manager) = shutdown.unless(build).await else { return Ok(()) };
    let (mut leading, lease_task) = manager?.watch().await;
    tracing::info!(identity = %args.identity, "gpuscope-operator started; waiting for leadership");

    let mut policy_rx = Some(policy_rx);
    let result = loop {
        tokio::select! {
            () = shutdown.wait() => break Ok(()),
            changed = leading.changed() => {
                if changed.is_err() { break Err(anyhow::anyhow!("leader election stopped unexpectedly")); }
                if !*leading.borrow_and_update() { continue; }
                metrics.leader.set(1);
                tracing::info!("leading: reconciling");
                let parts = Parts {
                    nodes: nodes.clone(),
                    leases: leases.clone(),
                    held: held.clone(),
                    policy: policy.clone(),
                    events: Arc::new(crate::events::Publisher::new(client.clone(), "gpuscope-operator", &args.identity)),
                    metrics: metrics.clone(),
                };
                let lost = lost_leadership(leading.clone());
                let policy_changes = policy_rx.take().map(tokio_stream_from).unwrap_or_else(|| futures::stream::empty().boxed());
                let outcome = tokio::select! {
                    () = run_controller(client.clone(), parts, &args, policy_changes, lost) => "lost leadership",
                    () = shutdown.wait() => "shutdown",
                };
                metrics.leader.set(0);
                if outcome == "shutdown" { break Ok(()); }
                // Fail-stop like kube-controller-manager: a replica that lost its Lease exits and restarts clean.
                break Err(anyhow::anyhow!("lost the leader Lease; exiting so that one leader acts at a time"));
            }
        }
    };
    // Closing the channel makes the manager's task release the Lease (if held) and return the manager.
    drop(leading);
    match tokio::time::timeout(RELEASE_TIMEOUT, lease_task).await {
        // Hand over at once instead of making the next leader wait out the Lease.
        Ok(Ok(Ok(manager))) => {
            if tokio::time::timeout(RELEASE_TIMEOUT, manager.release()).await.is_err() {
                tracing::warn!("releasing the leader Lease timed out; it expires by itself");
            }
        }
        Ok(Ok(Err(e))) => tracing::warn!(error = %e, "the leader election ended with an error"),
        Ok(Err(e)) => tracing::warn!(error = %e, "the leader election task failed"),
        Err(_) => tracing::warn!("releasing the leader Lease timed out; it expires by itself"),
    }
    result
}

/// What a leader's controller shares with the replica.
struct Parts {
    nodes: Store<Node>,
    leases: Store<Lease>,
    held: HeldNodes,
    policy: Arc<RwLock<EffectivePolicy>>,
    events: Arc<crate::events::Publisher>,
    metrics: OperatorMetrics,
}

async fn run_controller(
    client: kube::Client,
    parts: Parts,
    args: &Args,
    policy_changes: futures::stream::BoxStream<'static, ()>,
    stop: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let objects: Api<GpuNodeStatus> = Api::all(client.clone());
    let controller = Controller::new(objects, watcher::Config::default())
        .watches(Api::<Node>::all(client.clone()), watcher::Config::default(), |node: Node| {
            node.metadata.name.map(|n| ObjectRef::<GpuNodeStatus>::new(&n))
        })
        .watches(
            Api::<Lease>::namespaced(client.clone(), &args.namespace),
            watcher::Config::default(),
            |lease: Lease| {
                lease.metadata.name.and_then(|n| n.strip_prefix("gpuscope-probe-").map(ObjectRef::<GpuNodeStatus>::new))
            },
        )
        .reconcile_all_on(policy_changes)
        .with_config(kube::runtime::controller::Config::default().concurrency(args.concurrency))
        // All trigger watches pause behind this one backoff after an error: capped at seconds, not kube's 30 s
        // (plus jitter), so reconciles resume within seconds of the API server coming back.
        .trigger_backoff(Backoff::default())
        .graceful_shutdown_on(stop);
    // The controller's own store sizes the remediation budget and feeds the GPU gauges.
    let store = controller.store();
    let gauges = tokio::spawn(update_gauges(store.clone(), parts.metrics.clone()));
    let ctx = Arc::new(Context {
        client,
        nodes: parts.nodes,
        leases: parts.leases,
        objects: store,
        held: parts.held,
        policy: parts.policy,
        events: parts.events,
        metrics: parts.metrics,
        lease_namespace: args.namespace.clone(),
        remediation_lock: tokio::sync::Mutex::new(()),
    });
    controller
        .run(reconciler::reconcile, reconciler::error_policy, ctx)
        .for_each(|result| async move {
            if let Err(e) = result {
                tracing::debug!(error = %e, "controller event");
            }
        })
        .await;
    gauges.abort();
}

/// GPUs by health across the fleet, every 15 s from the cache (not on every reconcile: O(fleet)).
async fn update_gauges(store: Store<GpuNodeStatus>, metrics: OperatorMetrics) {
    let mut tick = tokio::time::interval(Duration::from_secs(15));
    loop {
        tick.tick().await;
        let objects = store.state();
        let mut counts = std::collections::BTreeMap::<&'static str, i64>::new();
        // Borrowed keys: a pass over the fleet should not allocate per condition.
        let mut conditions = std::collections::BTreeMap::<(&str, &str), i64>::new();
        for obj in &objects {
            let Some(status) = obj.status.as_ref() else { continue };
            for v in status.verdicts.iter().flatten() {
                *counts.entry(v.health.as_str()).or_default() += 1;
            }
            for c in status.conditions.iter().flatten() {
                *conditions.entry((c.type_.as_str(), c.status.as_str())).or_default() += 1;
            }
        }
        for h in ["Healthy", "Degraded", "Unhealthy", "Unknown"] {
            metrics.gpus_by_health.get_or_create(&Label::of(h)).set(counts.get(h).copied().unwrap_or(0));
        }
        for condition in gpuscope_crds::health::condition_type::ALL {
            for status in ["True", "False", "Unknown"] {
                let n = conditions.get(&(condition, status)).copied().unwrap_or(0);
                let labels = ConditionLabels { condition: condition.to_string(), status: status.to_string() };
                metrics.nodes_by_condition.get_or_create(&labels).set(n);
            }
        }
    }
}

fn tokio_stream_from(mut rx: mpsc::Receiver<()>) -> futures::stream::BoxStream<'static, ()> {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx)).boxed()
}

async fn lost_leadership(mut leading: watch::Receiver<bool>) {
    let _ = leading.wait_for(|l| !*l).await;
}

async fn wait(mut rx: watch::Receiver<bool>) {
    let _ = rx.wait_for(|stop| *stop).await;
}

/// A reflector kept running in the background; `observe` sees every watch event, in the order the store does.
fn spawn_reflector<K>(
    api: Api<K>,
    config: watcher::Config,
    observe: impl Fn(&watcher::Event<K>) + Send + 'static,
) -> Store<K>
where
    K: kube::Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned + Send + Sync + 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone,
{
    let (reader, writer) = reflector::store();
    let events = watcher::watcher(api, config)
        .modify(|o| {
            o.meta_mut().managed_fields = None;
        })
        .inspect(move |event| {
            if let Ok(event) = event {
                observe(event);
            }
        })
        .backoff(Backoff::default());
    let stream = reflector::reflector(writer, events).touched_objects().for_each(|_| async {});
    tokio::spawn(stream);
    reader
}
