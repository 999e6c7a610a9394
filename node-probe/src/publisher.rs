//! The probe's write loop: takes observations (XIDs, GPU snapshots) and keeps the node's GpuNodeStatus and
//! Lease current, writing the big object only when something changed and never losing an XID.
//!
//! - Liveness: the Lease is renewed every `lease_interval`, whatever else happens.
//! - A new XID is written within about `coalesce` (a flood of identical lines becomes one write with a count).
//! - Snapshots are compared by [`fingerprint`](crate::report::fingerprint); unchanged ones cause no write until
//!   `refresh_interval` has passed.
//! - Every recorded XID goes to the spool before the write that carries it, so a crash or an unreachable API
//!   server loses nothing; failed writes retry with jittered backoff.
//! - On shutdown the spool is saved and one last write is attempted.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use gpuscope_crds::gpu_node_status::{DataSource, GpuInfo, RecoveryActionStatus, UnavailableSource, XidSource};
use gpuscope_runtime::observability::Readiness;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use tokio::sync::{Notify, mpsc};
use tokio::time::{Instant, sleep_until};

use crate::kmsg_source::Observation;
use crate::kube_io::{self, LeaseSettings};
use crate::metrics::{CodeLabels, ErrorLabels, ProbeMetrics};
use crate::pod_resources::{Allocation, Binding, KubeletReport, POD_RESOURCES_FIELD, PodOwners};
use crate::report::{NodeReport, fingerprint, probe_status};
use crate::spool::{Loaded, Spool};
use crate::xid_ledger::{Recorded, XidLedger};
use gpuscope_runtime::backoff::Backoff;

/// How long the first status write waits for the backend's first inventory.
const FIRST_INVENTORY_WAIT: Duration = Duration::from_secs(10);

/// GPU inventory and telemetry from a backend, at one moment.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Inventory {
    /// NVIDIA driver version.
    pub driver_version: Option<String>,
    /// CUDA driver version.
    pub cuda_driver_version: Option<String>,
    /// NVML version.
    pub nvml_version: Option<String>,
    /// GPUs, ordered by index.
    pub gpus: Vec<GpuInfo>,
    /// Fields the driver could not report.
    pub unsupported_fields: BTreeSet<String>,
    /// Pods on the GPUs, when the backend itself knows them (a simulated scenario); the kubelet is asked otherwise.
    pub allocations: Option<Vec<Allocation>>,
}

/// Timing of the write loop.
#[derive(Clone, Debug)]
pub struct Cadence {
    /// Lease renewal period.
    pub lease_interval: Duration,
    /// Longest time without a GpuNodeStatus write when nothing changes.
    pub refresh_interval: Duration,
    /// Delay after a new XID before writing, so bursts become one write.
    pub coalesce: Duration,
    /// Shortest time between two GpuNodeStatus writes.
    pub min_write_interval: Duration,
    /// Delay after the pods on the GPUs changed before writing, so that pod churn costs at most one write per
    /// this period (an XID in between still goes out after `coalesce`, carrying the binding with it).
    pub binding_coalesce: Duration,
}

impl Default for Cadence {
    fn default() -> Self {
        Cadence {
            lease_interval: Duration::from_secs(30),
            refresh_interval: Duration::from_secs(300),
            coalesce: Duration::from_millis(200),
            min_write_interval: Duration::from_millis(500),
            binding_coalesce: Duration::from_secs(5),
        }
    }
}

/// Everything the publisher needs.
pub struct Publisher {
    /// API client (the probe's identity).
    pub client: kube::Client,
    /// The node this probe reports.
    pub node: String,
    /// Lease settings.
    pub lease: LeaseSettings,
    /// Timing.
    pub cadence: Cadence,
    /// The on-disk copy of the XID history.
    pub spool: Spool,
    /// Where the data comes from.
    pub backend: gpuscope_crds::gpu_node_status::Backend,
    /// The node's boot id.
    pub boot_id: Option<String>,
    /// Metrics.
    pub metrics: ProbeMetrics,
    /// Flipped after the first successful write.
    pub readiness: Readiness,
    /// Sources that could not be opened (NVML, the kernel log, NVML's XID events), reported with their error.
    pub unavailable_sources: Vec<UnavailableSource>,
    /// Asks the kubelet poller for an immediate read (an XID arrived); `None` when pods are not read.
    pub poll_kubelet: Option<Arc<Notify>>,
}

/// What the probe knows of the pods on its GPUs.
#[derive(Default)]
struct Workloads {
    /// The kubelet's last good answer, with the pods' owners.
    allocations: Option<(Vec<Allocation>, Option<u32>, PodOwners)>,
    /// The last read failed (the binding above is then the newest knowledge, possibly stale).
    failing: bool,
    /// GPUs seen since the start, by UUID (identity only): a GPU that fell off the bus is still mapped, so the pods
    /// on it are not reported as unmapped and its XIDs are attributed.
    known_gpus: BTreeMap<String, GpuInfo>,
    /// `allocations` mapped onto `known_gpus`.
    binding: Binding,
}

impl Workloads {
    fn rebind(&mut self) -> bool {
        let gpus: Vec<GpuInfo> = self.known_gpus.values().cloned().collect();
        let binding = match &self.allocations {
            Some((allocations, allocatable, owners)) => Binding::new(allocations, &gpus, owners, *allocatable),
            None => Binding::default(),
        };
        let changed = binding != self.binding;
        self.binding = binding;
        changed
    }

    fn learn_gpus(&mut self, gpus: &[GpuInfo]) -> bool {
        let mut changed = false;
        for g in gpus {
            let identity = GpuInfo {
                index: g.index,
                uuid: g.uuid.clone(),
                pci_bus_id: g.pci_bus_id.clone(),
                mig: g.mig.as_ref().map(|m| gpuscope_crds::gpu_node_status::MigInfo {
                    device_uuids: m.device_uuids.clone(),
                    ..Default::default()
                }),
                ..GpuInfo::default()
            };
            if self.known_gpus.get(&g.uuid) != Some(&identity) {
                self.known_gpus.insert(g.uuid.clone(), identity);
                changed = true;
            }
        }
        // Bounded: a node has at most a few dozen GPUs; forget the oldest identities beyond that.
        while self.known_gpus.len() > 64 {
            let Some(stale) = self.known_gpus.keys().find(|k| !gpus.iter().any(|g| &&g.uuid == k)).cloned() else {
                break;
            };
            self.known_gpus.remove(&stale);
        }
        changed
    }
}

struct State {
    ledger: XidLedger,
    adopted: bool,
    inventory: Inventory,
    kmsg_recovery: BTreeMap<String, RecoveryActionStatus>,
    /// No status write before the first inventory (or this deadline, when the backend keeps failing), so the first
    /// write already carries the GPUs.
    first_inventory_deadline: Option<Instant>,
    written_fingerprint: Option<String>,
    last_write: Option<Instant>,
    write_due: Option<Instant>,
    spool_dirty: bool,
    lease_owner: Option<OwnerReference>,
    workloads: Workloads,
}

impl Publisher {
    /// Run until `shutdown` resolves, then flush.
    pub async fn run(
        self,
        mut observations: mpsc::Receiver<Observation>,
        mut inventories: mpsc::Receiver<Inventory>,
        mut kubelet: mpsc::Receiver<KubeletReport>,
        shutdown: impl std::future::Future<Output = ()>,
    ) {
        let mut state = State {
            ledger: XidLedger::new(),
            adopted: false,
            inventory: Inventory::default(),
            kmsg_recovery: BTreeMap::new(),
            // Without NVML no inventory will come: write what is known at once.
            first_inventory_deadline: (!self.unavailable_sources.iter().any(|u| u.source == DataSource::Nvml))
                .then(|| Instant::now() + FIRST_INVENTORY_WAIT),
            written_fingerprint: None,
            last_write: None,
            write_due: Some(Instant::now()),
            spool_dirty: false,
            lease_owner: None,
            workloads: Workloads::default(),
        };
        match self.spool.load() {
            Ok(Loaded::Ledger(l)) => {
                tracing::info!(xids = l.counted(), "restored the XID history from the spool");
                state.ledger = *l;
                state.adopted = true;
            }
            Ok(Loaded::Empty) => {}
            Ok(Loaded::Corrupt { moved_to, reason }) => {
                tracing::warn!(moved_to = %moved_to.display(), %reason, "the XID spool was unreadable; moved aside");
            }
            Err(e) => tracing::warn!(error = %e, "cannot read the XID spool; continuing without it"),
        }
        let mut write_backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(30));
        let mut lease_backoff = Backoff::new(Duration::from_secs(1), self.cadence.lease_interval);
        let mut next_lease = Instant::now();
        let mut next_refresh = Instant::now() + self.cadence.refresh_interval;
        tokio::pin!(shutdown);
        loop {
            let write_at = state.write_due.unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
            tokio::select! {
                () = &mut shutdown => break,
                // Until the history is known (spool or API), observations wait in the channel: recording them
                // first could count an XID the API already has.
                Some(obs) = observations.recv(), if state.adopted => self.observe(&mut state, obs),
                Some(inv) = inventories.recv() => {
                    for gpu in &inv.gpus {
                        if let Some(pci) = &gpu.pci_bus_id && state.ledger.learn_uuid(pci, &gpu.uuid) {
                            state.spool_dirty = true;
                        }
                    }
                    let mut rebind = state.workloads.learn_gpus(&inv.gpus);
                    // A scenario's pods stand in for the kubelet only when no kubelet is read.
                    if self.poll_kubelet.is_none() && let Some(allocations) = &inv.allocations {
                        state.workloads.allocations = Some((allocations.clone(), None, PodOwners::new()));
                        state.workloads.failing = false;
                        rebind = true;
                    }
                    if rebind {
                        state.workloads.rebind();
                    }
                    state.inventory = inv;
                    state.first_inventory_deadline = None;
                    self.schedule(&mut state, Duration::ZERO);
                }
                Some(report) = kubelet.recv() => self.kubelet_report(&mut state, report),
                () = sleep_until(next_lease) => {
                    next_lease = Instant::now() + match self.renew_lease(&mut state).await {
                        Ok(()) => { lease_backoff.reset(); self.cadence.lease_interval }
                        Err(()) => lease_backoff.next_delay(),
                    };
                }
                () = sleep_until(next_refresh) => {
                    next_refresh = Instant::now() + self.cadence.refresh_interval;
                    state.written_fingerprint = None;
                    self.schedule(&mut state, Duration::ZERO);
                }
                () = sleep_until(write_at) => {
                    state.write_due = None;
                    match self.write(&mut state).await {
                        Ok(()) => write_backoff.reset(),
                        Err(()) => state.write_due = Some(Instant::now() + write_backoff.next_delay()),
                    }
                }
            }
        }
        self.flush(&mut state).await;
    }

    fn observe(&self, state: &mut State, obs: Observation) {
        match obs {
            Observation::Xid(mut event) => {
                if event.gpu_uuid.is_none() {
                    event.gpu_uuid = state
                        .inventory
                        .gpus
                        .iter()
                        .find(|g| g.pci_bus_id.as_deref() == Some(event.pci_bus_id.as_str()))
                        .map(|g| g.uuid.clone());
                }
                if let Some(uuid) = &event.gpu_uuid {
                    let (pods, _more) = state.workloads.binding.pods_on(uuid);
                    if !pods.is_empty() {
                        self.metrics.xids_attributed.inc();
                        event.pods = Some(pods);
                    }
                }
                if let Some(poll) = &self.poll_kubelet {
                    // The next XIDs (a burst) get a binding read after this one.
                    poll.notify_one();
                }
                let code = event.code;
                match state.ledger.record(event) {
                    Recorded::New => {
                        self.metrics.xids.get_or_create(&CodeLabels { code }).inc();
                        state.spool_dirty = true;
                        self.schedule(state, self.cadence.coalesce);
                    }
                    Recorded::MergedAcrossSources => {
                        state.spool_dirty = true;
                        self.schedule(state, self.cadence.coalesce);
                    }
                    Recorded::Duplicate => {}
                }
            }
            Observation::GpuUuid { pci_bus_id, uuid } => {
                if state.ledger.learn_uuid(&pci_bus_id, &uuid) {
                    state.spool_dirty = true;
                    self.schedule(state, self.cadence.coalesce);
                }
            }
            Observation::RecoveryAction { pci_bus_id, action, time } => {
                let newer = state.kmsg_recovery.get(&pci_bus_id).is_none_or(|old| old.time.as_ref() <= Some(&time));
                if newer {
                    state.kmsg_recovery.insert(
                        pci_bus_id,
                        RecoveryActionStatus {
                            code: action.code(),
                            action: action.name().to_string(),
                            source: XidSource::Kmsg,
                            time: Some(time),
                        },
                    );
                    self.schedule(state, self.cadence.coalesce);
                }
            }
            Observation::Malformed { reason } => {
                self.metrics.malformed_records.inc();
                tracing::debug!(%reason, "skipped a malformed kernel-log record");
            }
            Observation::Lost { records } => {
                self.metrics.kmsg_records_lost.inc_by(records.max(1));
                tracing::warn!(records, "the kernel log ring overwrote records before they were read");
            }
        }
        self.metrics.pending_writes.set(i64::from(state.write_due.is_some()));
    }

    fn kubelet_report(&self, state: &mut State, report: KubeletReport) {
        let was_failing = state.workloads.failing;
        match report {
            KubeletReport::Allocations { allocations, allocatable, owners } => {
                state.workloads.allocations = Some((allocations, allocatable, owners));
                state.workloads.failing = false;
            }
            KubeletReport::Failed(_) => state.workloads.failing = true,
        }
        let changed = state.workloads.rebind();
        if changed || was_failing != state.workloads.failing {
            self.schedule(state, self.cadence.binding_coalesce);
        }
    }

    /// Ask for a write no earlier than `delay` from now (and no earlier than the minimum write interval).
    fn schedule(&self, state: &mut State, delay: Duration) {
        let mut at = Instant::now() + delay;
        if let Some(last) = state.last_write {
            at = at.max(last + self.cadence.min_write_interval);
        }
        state.write_due = Some(state.write_due.map_or(at, |due| due.min(at)));
    }

    fn report(&self, state: &State) -> NodeReport {
        let mut gpus = state.inventory.gpus.clone();
        state.workloads.binding.apply_to(&mut gpus);
        for gpu in &mut gpus {
            // NVML's current value wins; the kernel log's XID 154 fills in where NVML cannot tell.
            if gpu.recovery_action.is_none()
                && let Some(pci) = &gpu.pci_bus_id
            {
                gpu.recovery_action = state.kmsg_recovery.get(pci).cloned();
            }
        }
        NodeReport {
            driver_version: state.inventory.driver_version.clone(),
            cuda_driver_version: state.inventory.cuda_driver_version.clone(),
            nvml_version: state.inventory.nvml_version.clone(),
            gpus,
            unsupported_fields: {
                let mut fields: BTreeSet<String> = state.inventory.unsupported_fields.clone();
                if state.workloads.failing || (self.poll_kubelet.is_some() && state.workloads.allocations.is_none()) {
                    fields.insert(POD_RESOURCES_FIELD.to_string());
                }
                fields
            },
            pod_resources: state.workloads.allocations.as_ref().map(|_| state.workloads.binding.status()),
            xids: state.ledger.history(),
            backend: self.backend,
            boot_id: self.boot_id.clone(),
            unavailable_sources: self.unavailable_sources.clone(),
        }
    }

    async fn write(&self, state: &mut State) -> Result<(), ()> {
        if !state.adopted {
            match kube_io::ensure_object(&self.client, &self.node).await {
                Ok(history) => {
                    if let Some(h) = history.filter(|_| state.ledger.is_empty()) {
                        tracing::info!("no spool: adopting the XID history already in the GpuNodeStatus");
                        state.ledger = XidLedger::from_history(&h);
                    }
                    state.adopted = true;
                }
                Err(e) => {
                    self.write_failed(&e);
                    return Err(());
                }
            }
        }
        if state.spool_dirty {
            match self.spool.save(&state.ledger) {
                Ok(()) => state.spool_dirty = false,
                // Still write: the API is the other copy.
                Err(e) => tracing::warn!(error = %e, "could not save the XID spool"),
            }
        }
        if let Some(deadline) = state.first_inventory_deadline
            && Instant::now() < deadline
        {
            state.write_due = Some(deadline);
            return Ok(());
        }
        let report = self.report(state);
        let fp = fingerprint(&report);
        if state.written_fingerprint.as_deref() == Some(fp.as_str()) {
            return Ok(());
        }
        let status = probe_status(&report, jiff::Timestamp::now());
        match kube_io::apply_status(&self.client, &self.node, &status).await {
            Ok(bytes) => {
                state.written_fingerprint = Some(fp);
                state.last_write = Some(Instant::now());
                self.metrics.status_writes.inc();
                self.metrics.status_write_bytes.inc_by(bytes as u64);
                self.metrics.last_write_timestamp_seconds.set(jiff::Timestamp::now().as_second());
                self.metrics.pending_writes.set(0);
                self.readiness.set(true);
                Ok(())
            }
            Err(e) => {
                self.write_failed(&e);
                Err(())
            }
        }
    }

    fn write_failed(&self, e: &kube_io::ApiError) {
        self.metrics.status_write_errors.get_or_create(&ErrorLabels { reason: e.metric_label().into() }).inc();
        self.metrics.pending_writes.set(1);
        tracing::warn!(error = %e, "writing the GpuNodeStatus failed; will retry");
    }

    async fn renew_lease(&self, state: &mut State) -> Result<(), ()> {
        if state.lease_owner.is_none() {
            state.lease_owner = kube_io::lease_owner(&self.client, &self.node).await.ok();
        }
        match kube_io::renew_lease(&self.client, &self.node, &self.lease, state.lease_owner.as_ref()).await {
            Ok(()) => {
                self.metrics.lease_renewals.inc();
                Ok(())
            }
            Err(e) => {
                self.metrics.lease_errors.get_or_create(&ErrorLabels { reason: e.metric_label().into() }).inc();
                tracing::warn!(error = %e, "renewing the probe Lease failed; will retry");
                Err(())
            }
        }
    }

    /// Save everything and try one last write (bounded, so SIGTERM's grace period is respected).
    async fn flush(&self, state: &mut State) {
        if let Err(e) = self.spool.save(&state.ledger) {
            tracing::warn!(error = %e, "could not save the XID spool on shutdown");
        }
        if state.adopted && (state.write_due.is_some() || state.written_fingerprint.is_none()) {
            match tokio::time::timeout(Duration::from_secs(5), self.write(state)).await {
                Ok(Ok(())) => tracing::info!("final GpuNodeStatus write done"),
                _ => tracing::warn!("final write failed; the spool keeps the XIDs for the next start"),
            }
        }
    }
}
