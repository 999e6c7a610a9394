//! The probe's Prometheus metrics (`gpuscope_probe_*`).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// Label for a failed write: what kind of failure.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    /// e.g. `unreachable`, `forbidden`, `conflict`.
    pub reason: String,
}

/// Label for an XID: its code.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CodeLabels {
    /// The XID code.
    pub code: u32,
}

/// Every metric the probe exports.
#[derive(Clone, Debug, Default)]
pub struct ProbeMetrics {
    /// GpuNodeStatus writes that succeeded.
    pub status_writes: Counter,
    /// Bytes sent in GpuNodeStatus writes.
    pub status_write_bytes: Counter,
    /// Failed GpuNodeStatus writes, by reason.
    pub status_write_errors: Family<ErrorLabels, Counter>,
    /// Lease renewals that succeeded.
    pub lease_renewals: Counter,
    /// Failed Lease renewals, by reason.
    pub lease_errors: Family<ErrorLabels, Counter>,
    /// XIDs recorded (each once), by code.
    pub xids: Family<CodeLabels, Counter>,
    /// Kernel-log records that could not be parsed (skipped).
    pub malformed_records: Counter,
    /// Kernel-log records lost because the reader fell behind the ring buffer.
    pub kmsg_records_lost: Counter,
    /// NVML field reads that failed with an error other than "not supported" (the field is omitted).
    pub nvml_field_errors: Counter,
    /// Backend snapshots that failed as a whole.
    pub snapshot_errors: Counter,
    /// Unix time of the last successful GpuNodeStatus write.
    pub last_write_timestamp_seconds: Gauge,
    /// XIDs waiting to be written (0 when the API has everything).
    pub pending_writes: Gauge,
    /// Successful reads of the kubelet's pod-resources API.
    pub pod_resources_polls: Counter,
    /// Failed reads of the kubelet's pod-resources API, by reason (socket_missing, permission_denied, timeout, …).
    pub pod_resources_errors: Family<ErrorLabels, Counter>,
    /// XIDs recorded with the pods that held their GPU.
    pub xids_attributed: Counter,
}

impl ProbeMetrics {
    /// Register every metric under `gpuscope_probe_`.
    pub fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("gpuscope_probe");
        r.register("status_writes", "GpuNodeStatus writes that succeeded", self.status_writes.clone());
        r.register("status_write_bytes", "Bytes sent in GpuNodeStatus writes", self.status_write_bytes.clone());
        r.register("status_write_errors", "Failed GpuNodeStatus writes by reason", self.status_write_errors.clone());
        r.register("lease_renewals", "Lease renewals that succeeded", self.lease_renewals.clone());
        r.register("lease_errors", "Failed Lease renewals by reason", self.lease_errors.clone());
        r.register("xids", "XIDs recorded (each once) by code", self.xids.clone());
        r.register("malformed_records", "Kernel-log records skipped as malformed", self.malformed_records.clone());
        r.register("kmsg_records_lost", "Kernel-log records lost to ring overrun", self.kmsg_records_lost.clone());
        r.register("nvml_field_errors", "NVML field reads that failed (field omitted)", self.nvml_field_errors.clone());
        r.register("snapshot_errors", "GPU backend snapshots that failed", self.snapshot_errors.clone());
        r.register(
            "last_write_timestamp_seconds",
            "Unix time of the last successful GpuNodeStatus write",
            self.last_write_timestamp_seconds.clone(),
        );
        r.register("pending_writes", "1 while observed changes wait to be written", self.pending_writes.clone());
        r.register(
            "pod_resources_polls",
            "Successful reads of the kubelet's pod-resources API",
            self.pod_resources_polls.clone(),
        );
        r.register(
            "pod_resources_errors",
            "Failed reads of the kubelet's pod-resources API by reason",
            self.pod_resources_errors.clone(),
        );
        r.register("xids_attributed", "XIDs recorded with the pods that held their GPU", self.xids_attributed.clone());
    }
}
