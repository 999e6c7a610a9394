//! The watch cache: one kube-runtime reflector store per kind (GpuNodeStatus, Node, GPU-requesting Pod) per
//! cluster. Objects are stripped before they enter a store ([`crate::strip`]); a failed watch is retried with
//! backoff while the store keeps serving what it has, and a relist swaps in atomically.

use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

use futures::{StreamExt, future};
use gpuscope_crds::GpuNodeStatus;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::runtime::reflector::{self, Store, store::Writer};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource};
use serde::de::DeserializeOwned;
use tokio::sync::watch;

use crate::gpu_resources::requests_gpu;
use crate::metrics::Metrics;
use crate::snapshot::Snapshot;
use crate::strip;

/// The cached objects of one cluster.
#[derive(Clone)]
pub struct ClusterCache {
    name: String,
    statuses: Store<GpuNodeStatus>,
    nodes: Store<Node>,
    pods: Store<Pod>,
    /// True once every store has seen its first full list. The one place that waits on the stores themselves:
    /// a store's readiness signal wakes only the waiter that polled it last, so a tool call that gave up waiting
    /// would otherwise leave every earlier waiter asleep forever (and `/readyz` at 503). Everyone else waits here.
    ready: Arc<watch::Sender<bool>>,
}

impl Debug for ClusterCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterCache").field("name", &self.name).field("ready", &self.is_ready()).finish()
    }
}

/// What each kind's store keeps and how it is labelled.
struct Kind<K> {
    name: &'static str,
    strip: fn(&mut K),
    keep: fn(&K) -> bool,
}

const STATUSES: Kind<GpuNodeStatus> = Kind { name: "GpuNodeStatus", strip: strip::status, keep: |_| true };
const NODES: Kind<Node> = Kind { name: "Node", strip: strip::node, keep: |_| true };
// Pods are filtered client-side: no selector can say "requests an extended resource".
const PODS: Kind<Pod> = Kind { name: "Pod", strip: strip::pod, keep: requests_gpu };

impl ClusterCache {
    /// Start watching `client`'s cluster (needs a tokio runtime); the cache fills in the background.
    pub fn watch(name: &str, client: &Client, metrics: &Metrics) -> ClusterCache {
        let statuses = spawn_reflector(Api::all(client.clone()), STATUSES, name, metrics);
        let nodes = spawn_reflector(Api::all(client.clone()), NODES, name, metrics);
        let pods = spawn_reflector(Api::all(client.clone()), PODS, name, metrics);
        ClusterCache::from_stores(name, statuses, nodes, pods)
    }

    /// A cache over stores that their writers fill (needs a tokio runtime): ready once each has seen a full list.
    pub fn from_stores(
        name: &str,
        statuses: Store<GpuNodeStatus>,
        nodes: Store<Node>,
        pods: Store<Pod>,
    ) -> ClusterCache {
        let cache =
            ClusterCache { name: name.to_string(), statuses, nodes, pods, ready: Arc::new(watch::Sender::new(false)) };
        let waiting = cache.clone();
        tokio::spawn(async move {
            let (a, b, c) = future::join3(
                waiting.statuses.wait_until_ready(),
                waiting.nodes.wait_until_ready(),
                waiting.pods.wait_until_ready(),
            )
            .await;
            if a.is_ok() && b.is_ok() && c.is_ok() {
                waiting.ready.send_replace(true);
                tracing::info!(
                    cluster = %waiting.name,
                    gpu_node_statuses = waiting.statuses.len(),
                    nodes = waiting.nodes.len(),
                    gpu_pods = waiting.pods.len(),
                    "cache synced"
                );
            }
        });
        cache
    }

    /// A cache filled once from objects (offline mode and tests): stripped and filtered like watched ones, ready
    /// at once.
    pub fn from_objects(name: &str, statuses: Vec<GpuNodeStatus>, nodes: Vec<Node>, pods: Vec<Pod>) -> ClusterCache {
        ClusterCache {
            name: name.to_string(),
            statuses: filled_store(statuses, STATUSES),
            nodes: filled_store(nodes, NODES),
            pods: filled_store(pods, PODS),
            ready: Arc::new(watch::Sender::new(true)),
        }
    }

    /// The cluster's name (the kubeconfig context, or what the operator chose).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether every store has seen its first full list.
    pub fn is_ready(&self) -> bool {
        *self.ready.borrow()
    }

    /// Wait up to `limit` for the first full lists; true when ready. Any number of callers may wait and give up.
    pub async fn wait_ready(&self, limit: Duration) -> bool {
        let mut ready = self.ready.subscribe();
        matches!(tokio::time::timeout(limit, ready.wait_for(|r| *r)).await, Ok(Ok(_)))
    }

    /// Objects per kind, for logs and metrics: (GpuNodeStatus, Node, Pod).
    pub fn sizes(&self) -> (usize, usize, usize) {
        (self.statuses.len(), self.nodes.len(), self.pods.len())
    }

    /// A view for answering one tool call at `now`.
    pub fn snapshot(&self, now: Timestamp) -> Snapshot {
        Snapshot::new(&self.name, now, self.statuses.clone(), self.nodes.clone(), self.pods.clone())
    }
}

fn spawn_reflector<K>(api: Api<K>, kind: Kind<K>, cluster: &str, metrics: &Metrics) -> Store<K>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    let (reader, writer) = reflector::store::<K>();
    let keep = kind.keep;
    // `any_semantic` lists from the API server's watch cache instead of etcd: cheap at fleet scale, and a watch
    // delivers whatever changed since.
    let stream = watcher(api, watcher::Config::default().any_semantic())
        .default_backoff()
        .filter(move |event| {
            future::ready(match event {
                Ok(watcher::Event::Apply(o) | watcher::Event::InitApply(o) | watcher::Event::Delete(o)) => keep(o),
                _ => true,
            })
        })
        .modify(kind.strip)
        .reflect(writer);
    let store = reader.clone();
    let (cluster, metrics, kind_name) = (cluster.to_string(), metrics.clone(), kind.name);
    tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        while let Some(event) = stream.next().await {
            match event {
                Ok(_) => metrics.cache_size(&cluster, kind_name, store.len()),
                Err(error) => {
                    metrics.watch_error(&cluster, kind_name);
                    tracing::warn!(%cluster, kind = kind_name, %error, "watch failed; retrying with backoff, cached data is still served");
                }
            }
        }
    });
    reader
}

fn filled_store<K>(objects: Vec<K>, kind: Kind<K>) -> Store<K>
where
    K: Resource<DynamicType = ()> + Clone + 'static,
{
    let mut writer = Writer::<K>::default();
    let reader = writer.as_reader();
    writer.apply_watcher_event(&watcher::Event::Init);
    for mut o in objects.into_iter().filter(|o| (kind.keep)(o)) {
        (kind.strip)(&mut o);
        writer.apply_watcher_event(&watcher::Event::InitApply(o));
    }
    writer.apply_watcher_event(&watcher::Event::InitDone);
    reader
}

#[cfg(test)]
mod tests {
    use super::*;

    fn empty<K: Resource<DynamicType = ()> + Clone + 'static>() -> (Writer<K>, Store<K>) {
        let writer = Writer::<K>::default();
        let reader = writer.as_reader();
        (writer, reader)
    }

    #[tokio::test]
    async fn readiness_survives_callers_that_gave_up_waiting_during_warm_up() {
        let (mut statuses, s) = empty::<GpuNodeStatus>();
        let (mut nodes, n) = empty::<Node>();
        let (mut pods, p) = empty::<Pod>();
        let cache = ClusterCache::from_stores("c", s, n, p);
        // Let the readiness task start waiting first, then have tool calls wait and give up, as they do while the
        // API server is unreachable.
        tokio::time::sleep(Duration::from_millis(20)).await;
        for _ in 0..3 {
            assert!(!cache.wait_ready(Duration::from_millis(20)).await);
        }
        assert!(!cache.is_ready());
        // The first lists complete.
        statuses.apply_watcher_event(&watcher::Event::Init);
        statuses.apply_watcher_event(&watcher::Event::InitDone);
        nodes.apply_watcher_event(&watcher::Event::Init);
        nodes.apply_watcher_event(&watcher::Event::InitDone);
        pods.apply_watcher_event(&watcher::Event::Init);
        pods.apply_watcher_event(&watcher::Event::InitDone);
        // `/readyz` reads is_ready: it must turn true by itself, with no caller waiting.
        let flipped = tokio::time::timeout(Duration::from_secs(2), async {
            while !cache.is_ready() {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await;
        assert!(flipped.is_ok(), "the cache never became ready");
        assert!(cache.wait_ready(Duration::from_millis(1)).await);
    }
}
