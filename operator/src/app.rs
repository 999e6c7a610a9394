//! The operator's command line and wiring: caches, policy watch, leader election, the controller and the HTTP
//! endpoints. Every replica keeps its caches warm; only the leader reconciles.

use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use clap::Parser;
use futures::StreamExt as _;
use gpuscope_crds::GpuNodeStatus;
use gpuscope_crds::logging::LogArgs;
use gpuscope_crds::observability::{self, Listener, Readiness};
use gpuscope_crds::policy::EffectivePolicy;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Node;
use kube::api::Api;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{Controller, WatchStreamExt as _, watcher};
use prometheus_client::registry::Registry;
use tokio::sync::{mpsc, watch};

use crate::metrics::{ConditionLabels, Label, OperatorMetrics};
use crate::reconciler::{self, Context};

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
    #[command(flatten)]
    pub log: LogArgs,
}

/// Run the operator until SIGTERM/SIGINT.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let client = kube::Client::try_default()
        .await
        .map_err(|e| anyhow::anyhow!("cannot configure the Kubernetes client (in-cluster or KUBECONFIG): {e}"))?;
    let metrics = OperatorMetrics::default();
    let mut registry = Registry::default();
    metrics.register(&mut registry);
    let readiness = Readiness::default();
    let listener = Listener::bind(args.listen).await?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let server = tokio::spawn(
        listener.serve(observability::router(Arc::new(registry), readiness.clone()), wait(stop_rx.clone())),
    );

    // Caches every replica keeps warm, so a new leader starts from current state.
    let nodes = spawn_reflector(Api::<Node>::all(client.clone()), watcher::Config::default());
    let leases = spawn_reflector(Api::<Lease>::namespaced(client.clone(), &args.namespace), watcher::Config::default());
    let policy = Arc::new(RwLock::new(EffectivePolicy::default()));
    let (policy_tx, policy_rx) = mpsc::channel::<()>(8);
    tokio::spawn(crate::policy_watch::run(client.clone(), policy.clone(), policy_tx, metrics.clone()));
    nodes.wait_until_ready().await?;
    leases.wait_until_ready().await?;
    readiness.set(true);

    let manager = kube_lease_manager::LeaseManagerBuilder::new(client.clone(), &args.leader_lease)
        .with_namespace(&args.namespace)
        .with_identity(&args.identity)
        .with_duration(args.leader_lease_seconds)
        .with_grace((args.leader_lease_seconds / 3).max(1))
        .with_field_manager("gpuscope-operator-leader")
        .build()
        .await?;
    let (mut leading, lease_task) = manager.watch().await;
    tracing::info!(identity = %args.identity, "gpuscope-operator started; waiting for leadership");

    let shutdown = observability::shutdown_signal();
    tokio::pin!(shutdown);
    let mut policy_rx = Some(policy_rx);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            changed = leading.changed() => {
                if changed.is_err() { anyhow::bail!("leader election stopped unexpectedly"); }
                if !*leading.borrow_and_update() { continue; }
                metrics.leader.set(1);
                tracing::info!("leading: reconciling");
                let parts = Parts {
                    nodes: nodes.clone(),
                    leases: leases.clone(),
                    policy: policy.clone(),
                    events: Arc::new(crate::events::Publisher::new(client.clone(), "gpuscope-operator", &args.identity)),
                    metrics: metrics.clone(),
                };
                let lost = lost_leadership(leading.clone());
                let policy_changes = policy_rx.take().map(tokio_stream_from).unwrap_or_else(|| futures::stream::empty().boxed());
                let outcome = tokio::select! {
                    () = run_controller(client.clone(), parts, &args, policy_changes, lost) => "lost leadership",
                    () = &mut shutdown => "shutdown",
                };
                metrics.leader.set(0);
                if outcome == "shutdown" { break; }
                // Fail-stop like kube-controller-manager: a replica that lost its Lease exits and restarts clean.
                anyhow::bail!("lost the leader Lease; exiting so that one leader acts at a time");
            }
        }
    }
    drop(leading);
    if let Ok(Ok(manager)) = lease_task.await {
        // Hand over at once instead of making the next leader wait out the Lease.
        let _ = manager.release().await;
    }
    let _ = stop_tx.send(true);
    let _ = server.await;
    tracing::info!("gpuscope-operator stopped");
    Ok(())
}

/// What a leader's controller shares with the replica.
struct Parts {
    nodes: Store<Node>,
    leases: Store<Lease>,
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
        .graceful_shutdown_on(stop);
    // The controller's own store sizes the remediation budget and feeds the GPU gauges.
    let store = controller.store();
    let gauges = tokio::spawn(update_gauges(store.clone(), parts.metrics.clone()));
    let ctx = Arc::new(Context {
        client,
        nodes: parts.nodes,
        leases: parts.leases,
        objects: store,
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
        let mut counts = std::collections::BTreeMap::<&'static str, i64>::new();
        let mut conditions = std::collections::BTreeMap::<(String, String), i64>::new();
        for obj in store.state() {
            let Some(status) = obj.status.as_ref() else { continue };
            for v in status.verdicts.iter().flatten() {
                *counts.entry(v.health.as_str()).or_default() += 1;
            }
            for c in status.conditions.iter().flatten() {
                *conditions.entry((c.type_.clone(), c.status.clone())).or_default() += 1;
            }
        }
        for h in ["Healthy", "Degraded", "Unhealthy", "Unknown"] {
            metrics.gpus_by_health.get_or_create(&Label::of(h)).set(counts.get(h).copied().unwrap_or(0));
        }
        for condition in gpuscope_crds::health::condition_type::ALL {
            for status in ["True", "False", "Unknown"] {
                let n = conditions.get(&(condition.to_string(), status.to_string())).copied().unwrap_or(0);
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

fn spawn_reflector<K>(api: Api<K>, config: watcher::Config) -> Store<K>
where
    K: kube::Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned + Send + Sync + 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone,
{
    let (reader, writer) = reflector::store();
    let stream = reflector::reflector(
        writer,
        watcher::watcher(api, config).default_backoff().modify(|o| {
            o.meta_mut().managed_fields = None;
        }),
    )
    .touched_objects()
    .for_each(|_| async {});
    tokio::spawn(stream);
    reader
}
