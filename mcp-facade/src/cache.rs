//! The watch cache: one kube-runtime reflector store per kind (GpuNodeStatus, Node, GPU-requesting Pod) per
//! cluster, and the indexes ([`crate::index`]) its events keep current. Objects are reduced to what the tools read before they enter a store ([`crate::cached`]); a failed
//! watch is retried with backoff while the store keeps serving what it has, and a relist swaps in atomically.

use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

use futures::{StreamExt, future};
use gpuscope_crds::GpuNodeStatus;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::runtime::reflector::{self, Lookup, Store, store::Writer};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource};
use serde::de::DeserializeOwned;
use tokio::sync::watch;

use crate::cached::{CachedNode, CachedPod, CachedStatus};
use crate::gpu_resources::requests_gpu;
use crate::index::FleetIndex;
use crate::index::pods_by_node::PodsByNode;
use crate::metrics::Metrics;
use crate::snapshot::Snapshot;

/// Objects per list request when a watch (re)lists. Each page is parsed whole, managedFields and all: with
/// kube's default of 500, pages of GpuNodeStatus held ~8 MB of text and ~15 MB of parsed managedFields at once
/// (heaptrack, 1,000 nodes); 100 keeps a page's text under 1.5 MB, for 50 requests per relist of 5,000 nodes.
const LIST_PAGE_SIZE: u32 = 100;

/// The cached objects of one cluster.
#[derive(Clone)]
pub struct ClusterCache {
    name: String,
    statuses: Store<CachedStatus>,
    nodes: Store<CachedNode>,
    pods: Store<CachedPod>,
    /// The pod store's objects by node, kept from the same events; absent for stores filled by their own writers.
    pods_by_node: Option<PodsByNode>,
    /// What fleet-wide answers read, kept from the same events as the stores.
    fleet: FleetIndex,
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

/// Which watched objects `W` a kind's store keeps (decided before conversion, so that objects it drops cost no
/// work), what it keeps of them (a `K`), and how the kind is labelled.
struct Kind<W, K> {
    name: &'static str,
    keep: fn(&W) -> bool,
    kept: fn(W) -> K,
}

const STATUSES: Kind<GpuNodeStatus, CachedStatus> =
    Kind { name: "GpuNodeStatus", kept: CachedStatus::from, keep: |_| true };
const NODES: Kind<Node, CachedNode> = Kind { name: "Node", kept: CachedNode::from, keep: |_| true };
// Pods are filtered client-side: no selector can say "requests an extended resource".
const PODS: Kind<Pod, CachedPod> = Kind { name: "Pod", kept: CachedPod::from, keep: requests_gpu };

/// The same event about the kept form of its object.
pub(crate) fn kept_event<W, K>(event: watcher::Event<W>, kept: fn(W) -> K) -> watcher::Event<K> {
    match event {
        watcher::Event::Apply(o) => watcher::Event::Apply(kept(o)),
        watcher::Event::Delete(o) => watcher::Event::Delete(kept(o)),
        watcher::Event::Init => watcher::Event::Init,
        watcher::Event::InitApply(o) => watcher::Event::InitApply(kept(o)),
        watcher::Event::InitDone => watcher::Event::InitDone,
    }
}

impl ClusterCache {
    /// Start watching `client`'s cluster (needs a tokio runtime); the cache fills in the background.
    pub fn watch(name: &str, client: &Client, metrics: &Metrics) -> ClusterCache {
        let fleet = FleetIndex::default();
        let (f1, f2, f3) = (fleet.clone(), fleet.clone(), fleet.clone());
        let statuses = spawn_reflector(Api::all(client.clone()), STATUSES, name, metrics, move |e| f1.apply_status(e));
        let nodes = spawn_reflector(Api::all(client.clone()), NODES, name, metrics, move |e| f2.apply_node(e));
        let index = PodsByNode::default();
        let indexing = index.clone();
        let pods = spawn_reflector(Api::all(client.clone()), PODS, name, metrics, move |e| {
            indexing.apply(e);
            f3.apply_pod(e);
        });
        ClusterCache { pods_by_node: Some(index), fleet, ..ClusterCache::from_stores(name, statuses, nodes, pods) }
    }

    /// A cache over stores that their writers fill (needs a tokio runtime): ready once each has seen a full list.
    /// Its indexes are empty: only [`ClusterCache::watch`] and [`ClusterCache::from_objects`] feed them.
    fn from_stores(
        name: &str,
        statuses: Store<CachedStatus>,
        nodes: Store<CachedNode>,
        pods: Store<CachedPod>,
    ) -> ClusterCache {
        let cache = ClusterCache {
            name: name.to_string(),
            statuses,
            nodes,
            pods,
            pods_by_node: None,
            fleet: FleetIndex::default(),
            ready: Arc::new(watch::Sender::new(false)),
        };
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
    pub fn from_objects(
        name: &str,
        statuses: impl IntoIterator<Item = GpuNodeStatus>,
        nodes: impl IntoIterator<Item = Node>,
        pods: impl IntoIterator<Item = Pod>,
    ) -> ClusterCache {
        let index = PodsByNode::default();
        let fleet = FleetIndex::default();
        ClusterCache {
            name: name.to_string(),
            statuses: filled_store(statuses, STATUSES, |e| fleet.apply_status(e)),
            nodes: filled_store(nodes, NODES, |e| fleet.apply_node(e)),
            pods: filled_store(pods, PODS, |e| {
                index.apply(e);
                fleet.apply_pod(e);
            }),
            pods_by_node: Some(index),
            fleet,
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
            .with_pods_by_node(self.pods_by_node.clone())
            .with_fleet_index(self.fleet.clone())
    }
}

/// Watch one kind into a store of its kept form; `on_event` sees each event after the store applied it.
fn spawn_reflector<W, K>(
    api: Api<W>,
    kind: Kind<W, K>,
    cluster: &str,
    metrics: &Metrics,
    on_event: impl Fn(&watcher::Event<K>) + Send + 'static,
) -> Store<K>
where
    W: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + 'static,
    K: Lookup<DynamicType = ()> + Clone + Send + Sync + 'static,
{
    let (reader, writer) = reflector::store::<K>();
    let (kept, keep) = (kind.kept, kind.keep);
    // `any_semantic` lists from the API server's watch cache instead of etcd: cheap at fleet scale, and a watch
    // delivers whatever changed since. Small pages bound the memory of a (re)list: each page is parsed whole,
    // managedFields and all, before its objects are reduced.
    let config = watcher::Config::default().any_semantic().page_size(LIST_PAGE_SIZE);
    let kept_events = watcher(api, config)
        .default_backoff()
        .filter(move |event| {
            future::ready(match event {
                Ok(watcher::Event::Apply(o) | watcher::Event::InitApply(o) | watcher::Event::Delete(o)) => keep(o),
                _ => true,
            })
        })
        .map(move |event| event.map(|e| kept_event(e, kept)));
    // `reflector` rather than `.reflect()`: the kept forms are not API resources, only store keys.
    let stream = reflector::reflector(writer, kept_events);
    let store = reader.clone();
    let (cluster, metrics, kind_name) = (cluster.to_string(), metrics.clone(), kind.name);
    tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        while let Some(event) = stream.next().await {
            match event {
                Ok(event) => {
                    on_event(&event);
                    metrics.cache_size(&cluster, kind_name, store.len());
                }
                Err(error) => {
                    metrics.watch_error(&cluster, kind_name);
                    tracing::warn!(%cluster, kind = kind_name, %error, "watch failed; retrying with backoff, cached data is still served");
                }
            }
        }
    });
    reader
}

fn filled_store<W, K>(
    objects: impl IntoIterator<Item = W>,
    kind: Kind<W, K>,
    on_event: impl Fn(&watcher::Event<K>),
) -> Store<K>
where
    K: Lookup<DynamicType = ()> + Clone + 'static,
{
    let mut writer = Writer::<K>::default();
    let reader = writer.as_reader();
    let mut apply = |event: watcher::Event<K>| {
        writer.apply_watcher_event(&event);
        on_event(&event);
    };
    apply(watcher::Event::Init);
    for o in objects.into_iter().filter(|o| (kind.keep)(o)).map(kind.kept) {
        apply(watcher::Event::InitApply(o));
    }
    apply(watcher::Event::InitDone);
    reader
}

#[cfg(test)]
mod tests {
    use super::*;

    fn empty<K: Lookup<DynamicType = ()> + Clone + 'static>() -> (Writer<K>, Store<K>) {
        let writer = Writer::<K>::default();
        let reader = writer.as_reader();
        (writer, reader)
    }

    #[test]
    fn a_snapshot_finds_a_nodes_pods_through_the_index_as_a_scan_would() {
        use crate::gpu_resources::fixtures::pod;
        let pods: Vec<Pod> = (0..50)
            .map(|i| {
                pod(
                    &format!("ns-{}", i % 3),
                    &format!("p{i}"),
                    Some(&format!("n{}", i % 7)),
                    "nvidia.com/gpu",
                    1,
                    "Running",
                )
            })
            .collect();
        let cache = ClusterCache::from_objects("c", vec![], vec![], pods);
        let now = Timestamp::now();
        let indexed = cache.snapshot(now);
        let scanned = cache.snapshot(now).with_pods_by_node(None);
        for n in 0..8 {
            let names = |s: &Snapshot| -> Vec<(String, String)> {
                s.pods_on(&format!("n{n}")).iter().map(|p| (p.namespace.clone(), p.name.clone())).collect()
            };
            assert_eq!(names(&indexed), names(&scanned), "node n{n}");
        }
        assert_eq!(indexed.pods_on("n3").len(), 7);
    }

    #[tokio::test]
    async fn readiness_survives_callers_that_gave_up_waiting_during_warm_up() {
        let (mut statuses, s) = empty::<CachedStatus>();
        let (mut nodes, n) = empty::<CachedNode>();
        let (mut pods, p) = empty::<CachedPod>();
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
