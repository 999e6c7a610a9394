//! Which workload holds which GPU: the kubelet's pod-resources API, read on a slow cadence and on demand (just
//! before an XID is written), turned into a [`Binding`] of pods to GPUs.
//!
//! The kubelet names pods but not their UIDs or controllers; the probe asks the API server for those (metadata
//! of the pods on its node, served from the API server's cache) only when a pod it has not seen appears. If that
//! is forbidden, bindings carry names only.
//!
//! A failure (no socket, permission, a kubelet that does not serve the API, a timeout, a garbled answer) is
//! reported to the publisher, counted, logged with the fix, and retried with backoff; it never stops XID recording.

pub mod binding;
pub mod client;
pub mod proto;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};
use tokio::sync::{Notify, mpsc};

pub use binding::{Allocation, Binding, PodOwner, PodOwners};
pub use client::{DEFAULT_SOCKET, KubeletClient, PodResourcesError};

use crate::metrics::{ErrorLabels, ProbeMetrics};
use gpuscope_runtime::backoff::Backoff;

/// The field `status.unsupportedFields` names while the kubelet's pod-resources API cannot be read.
pub const POD_RESOURCES_FIELD: &str = "podResources";

/// What one poll of the kubelet found.
#[derive(Debug)]
pub enum KubeletReport {
    /// The kubelet answered.
    Allocations {
        /// NVIDIA devices per container.
        allocations: Vec<Allocation>,
        /// NVIDIA devices the kubelet can allocate, when it serves GetAllocatableResources.
        allocatable: Option<u32>,
        /// UIDs and controllers of the pods named, where the API server told.
        owners: PodOwners,
    },
    /// It did not; the previous binding stays the best knowledge.
    Failed(PodResourcesError),
}

/// How the poller runs.
#[derive(Clone, Debug)]
pub struct PollSettings {
    /// Time between polls when nothing asks for one sooner.
    pub interval: Duration,
}

/// Looks up pods' UIDs and controllers in the API server.
#[derive(Clone)]
pub struct OwnerLookup {
    /// API client.
    pub client: kube::Client,
    /// The node's name (pods are listed by `spec.nodeName`).
    pub node: String,
}

/// Poll the kubelet until `stop`: every `interval`, at once when `poll_now` is notified, with backoff after a
/// failure. Sends each outcome to `reports`.
pub async fn run_poller(
    client: KubeletClient,
    settings: PollSettings,
    lookup: Option<OwnerLookup>,
    reports: mpsc::Sender<KubeletReport>,
    poll_now: Arc<Notify>,
    metrics: ProbeMetrics,
    stop: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(stop);
    let mut backoff = Backoff::new(Duration::from_secs(1), settings.interval.max(Duration::from_secs(1)));
    let mut owners = OwnerCache { lookup, owners: PodOwners::new(), disabled: false };
    let mut last_error: Option<&'static str> = None;
    loop {
        let report = poll_once(&client, &mut owners).await;
        let delay = match &report {
            KubeletReport::Allocations { .. } => {
                metrics.pod_resources_polls.inc();
                if last_error.take().is_some() {
                    tracing::info!(socket = %client.socket().display(), "the kubelet's pod-resources API answers again");
                }
                backoff.reset();
                settings.interval
            }
            KubeletReport::Failed(e) => {
                let label = e.metric_label();
                metrics.pod_resources_errors.get_or_create(&ErrorLabels { reason: label.into() }).inc();
                // Log a failure when it starts or changes kind; repeats are in the metric.
                if last_error != Some(label) {
                    tracing::warn!(error = %e, "cannot read which pods hold the GPUs; XIDs are still recorded");
                }
                last_error = Some(label);
                backoff.next_delay()
            }
        };
        if reports.send(report).await.is_err() {
            return;
        }
        tokio::select! {
            () = &mut stop => return,
            () = tokio::time::sleep(delay) => {}
            () = poll_now.notified() => {}
        }
    }
}

async fn poll_once(client: &KubeletClient, owners: &mut OwnerCache) -> KubeletReport {
    let list = match client.list().await {
        Ok(list) => list,
        Err(e) => return KubeletReport::Failed(e),
    };
    let allocations = binding::allocations(&list);
    // Allocatable devices are a nicety: a kubelet that cannot answer it still gives the binding.
    let allocatable = match client.allocatable().await {
        Ok(r) => r.as_ref().map(binding::allocatable_devices),
        Err(e) => {
            tracing::debug!(error = %e, "GetAllocatableResources failed");
            None
        }
    };
    let owners = owners.for_allocations(&allocations).await;
    KubeletReport::Allocations { allocations, allocatable, owners }
}

/// UIDs and controllers of the pods on this node, refreshed only when a pod appears that it does not know.
struct OwnerCache {
    lookup: Option<OwnerLookup>,
    owners: PodOwners,
    disabled: bool,
}

impl OwnerCache {
    async fn for_allocations(&mut self, allocations: &[Allocation]) -> PodOwners {
        let wanted: BTreeSet<(String, String)> =
            allocations.iter().map(|a| (a.namespace.clone(), a.pod.clone())).collect();
        let unknown = wanted.iter().any(|k| !self.owners.contains_key(k));
        if unknown
            && !self.disabled
            && let Some(lookup) = &self.lookup
        {
            match list_pod_owners(lookup).await {
                Ok(all) => self.owners = all,
                Err(kube::Error::Api(s)) if s.code == 403 => {
                    tracing::warn!(
                        "may not list pods: bindings name pods without UID or controller (grant the probe's \
                         ClusterRole `list` on pods, as config/rbac/probe.yaml does)"
                    );
                    self.disabled = true;
                }
                Err(e) => tracing::debug!(error = %e, "listing the node's pods failed; will retry"),
            }
        }
        self.owners.retain(|k, _| wanted.contains(k));
        self.owners.clone()
    }
}

/// The metadata of the pods on the node (served from the API server's watch cache: resourceVersion 0).
async fn list_pod_owners(lookup: &OwnerLookup) -> Result<PodOwners, kube::Error> {
    let pods: Api<Pod> = Api::all(lookup.client.clone());
    let params = ListParams::default().fields(&format!("spec.nodeName={}", lookup.node)).match_any();
    let list = pods.list_metadata(&params).await?;
    Ok(list
        .items
        .into_iter()
        .filter_map(|p| {
            let meta = p.metadata;
            let controller = meta
                .owner_references
                .unwrap_or_default()
                .into_iter()
                .find(|o| o.controller == Some(true))
                .map(|o| format!("{}/{}", o.kind, o.name));
            Some(((meta.namespace?, meta.name?), PodOwner { uid: meta.uid?, controller }))
        })
        .collect())
}
