//! What the probe writes: its fields of the GpuNodeStatus status, and when a write is worth it.
//!
//! Writes follow the kubelet's lesson (KEP-0009): liveness is a Lease, and the big object is written only when
//! something changed, plus a slow refresh. "Changed" ignores telemetry jitter: temperatures, power, utilization,
//! memory use and clocks count only when they cross a band, so a busy GPU does not cause a write per sample.

use std::collections::BTreeSet;

use gpuscope_crds::gpu_node_status::{
    Backend, DataSource, GROUP, GpuInfo, GpuNodeStatusStatus, PodResourcesStatus, ProbeInfo, UnavailableSource,
    VERSION, XidHistory,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde_json::json;

/// Everything the probe knows about its node at one moment.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NodeReport {
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
    /// XID history.
    pub xids: XidHistory,
    /// Where the data came from.
    pub backend: Backend,
    /// The node's boot id.
    pub boot_id: Option<String>,
    /// The kubelet's GPU allocations beyond the per-GPU pods, when the probe reads them.
    pub pod_resources: Option<PodResourcesStatus>,
    /// Sources the probe could not open (also listed in `unsupported_fields`).
    pub unavailable_sources: Vec<UnavailableSource>,
}

/// The probe-owned part of the status for `report`, stamped with `now` as the report time.
pub fn probe_status(report: &NodeReport, now: jiff::Timestamp) -> GpuNodeStatusStatus {
    let xids = (!report.xids.totals.is_empty() || !report.xids.recent.is_empty()).then(|| report.xids.clone());
    // Without NVML the probe knows nothing of the GPUs: it says so rather than claim "0 GPUs".
    let blind = report.unavailable_sources.iter().any(|u| u.source == DataSource::Nvml);
    let mut unsupported = report.unsupported_fields.clone();
    unsupported.extend(report.unavailable_sources.iter().map(|u| u.source.unsupported_field().to_string()));
    GpuNodeStatusStatus {
        probe: Some(ProbeInfo {
            version: env!("CARGO_PKG_VERSION").to_string(),
            backend: report.backend,
            last_report_time: Some(Time(now)),
            boot_id: report.boot_id.clone(),
            unavailable_sources: (!report.unavailable_sources.is_empty()).then(|| report.unavailable_sources.clone()),
        }),
        driver_version: report.driver_version.clone(),
        cuda_driver_version: report.cuda_driver_version.clone(),
        nvml_version: report.nvml_version.clone(),
        gpu_count: (!blind).then(|| u32::try_from(report.gpus.len()).unwrap_or(u32::MAX)),
        gpu_model: gpu_model(&report.gpus),
        unsupported_fields: Some(unsupported.into_iter().collect()),
        gpus: (!blind).then(|| report.gpus.clone()),
        xids,
        pod_resources: report.pod_resources.clone(),
        ..Default::default()
    }
}

/// The server-side apply body for the probe's fields (apiVersion and kind included, as apply requires).
pub fn apply_body(node: &str, status: &GpuNodeStatusStatus) -> serde_json::Value {
    json!({
        "apiVersion": format!("{GROUP}/{VERSION}"),
        "kind": "GpuNodeStatus",
        "metadata": { "name": node },
        "status": status,
    })
}

/// The most common product name, with " (+N other)" when models are mixed.
fn gpu_model(gpus: &[GpuInfo]) -> Option<String> {
    let mut counts: Vec<(&str, usize)> = Vec::new();
    for name in gpus.iter().filter_map(|g| g.product_name.as_deref()) {
        match counts.iter_mut().find(|(n, _)| *n == name) {
            Some((_, c)) => *c += 1,
            None => counts.push((name, 1)),
        }
    }
    // Stable: the most common, ties broken by first appearance (lowest index).
    let (top, top_count) = counts.iter().copied().fold(None, |best: Option<(&str, usize)>, (n, c)| match best {
        Some((_, bc)) if bc >= c => best,
        _ => Some((n, c)),
    })?;
    let others = gpus.iter().filter(|g| g.product_name.is_some()).count() - top_count;
    Some(if others == 0 { top.to_string() } else { format!("{top} (+{others} other)") })
}

/// A comparable summary of a report: exact for identity, counters and XIDs, banded for telemetry, without the
/// report time. Two reports with equal fingerprints need no write.
pub fn fingerprint(report: &NodeReport) -> String {
    let gpus: Vec<GpuInfo> = report.gpus.iter().map(banded).collect();
    let banded_report = NodeReport { gpus, ..report.clone() };
    let status = probe_status(&banded_report, jiff::Timestamp::UNIX_EPOCH);
    serde_json::to_string(&status).unwrap_or_default()
}

/// Telemetry rounded into bands: a change inside a band is noise, crossing one is news.
fn banded(gpu: &GpuInfo) -> GpuInfo {
    let mut g = gpu.clone();
    g.temperature_celsius = g.temperature_celsius.map(|t| t / 5 * 5);
    g.power_draw_watts = g.power_draw_watts.map(|p| p / 50 * 50);
    if let Some(u) = g.utilization.as_mut() {
        u.gpu_percent = u.gpu_percent / 25 * 25;
        u.memory_percent = u.memory_percent / 25 * 25;
    }
    if let Some(m) = g.memory.as_mut() {
        let band = (m.total_mib / 10).max(1);
        m.used_mib = m.used_mib.map(|u| u / band * band);
    }
    if let Some(c) = g.clocks.as_mut() {
        c.sm_mhz = c.sm_mhz.map(|v| v / 250 * 250);
        c.memory_mhz = c.memory_mhz.map(|v| v / 250 * 250);
    }
    if let Some(reasons) = g.throttle_reasons.as_mut() {
        // Idle and application-clock settings come and go with load; they are not health news.
        reasons.retain(|r| r != "GpuIdle" && r != "ApplicationsClocksSetting");
    }
    g
}

#[cfg(test)]
mod tests {
    use super::*;
    use gpuscope_crds::gpu_node_status::{Clocks, GpuMemory, Utilization};

    fn gpu(index: u32, name: &str) -> GpuInfo {
        GpuInfo {
            index,
            uuid: format!("GPU-{index}"),
            product_name: Some(name.into()),
            temperature_celsius: Some(41),
            power_draw_watts: Some(310),
            utilization: Some(Utilization { gpu_percent: 10, memory_percent: 5 }),
            memory: Some(GpuMemory { total_mib: 81_559, used_mib: Some(1_000) }),
            clocks: Some(Clocks { sm_mhz: Some(1_980), memory_mhz: Some(2_619) }),
            throttle_reasons: Some(vec![]),
            ..Default::default()
        }
    }

    fn report(gpus: Vec<GpuInfo>) -> NodeReport {
        NodeReport { driver_version: Some("570.86.15".into()), gpus, ..Default::default() }
    }

    #[test]
    fn telemetry_jitter_inside_a_band_needs_no_write() {
        let a = report(vec![gpu(0, "H100")]);
        let mut b = a.clone();
        b.gpus[0].temperature_celsius = Some(43);
        b.gpus[0].power_draw_watts = Some(330);
        if let Some(u) = b.gpus[0].utilization.as_mut() {
            u.gpu_percent = 20;
        }
        b.gpus[0].throttle_reasons = Some(vec!["GpuIdle".into()]);
        assert_eq!(fingerprint(&a), fingerprint(&b));
    }

    #[test]
    fn crossing_a_band_or_a_counter_change_needs_a_write() {
        let a = report(vec![gpu(0, "H100")]);
        let mut hotter = a.clone();
        hotter.gpus[0].temperature_celsius = Some(46);
        assert_ne!(fingerprint(&a), fingerprint(&hotter));
        let mut throttled = a.clone();
        throttled.gpus[0].throttle_reasons = Some(vec!["HwThermalSlowdown".into()]);
        assert_ne!(fingerprint(&a), fingerprint(&throttled));
        let mut driver = a.clone();
        driver.driver_version = Some("570.124.06".into());
        assert_ne!(fingerprint(&a), fingerprint(&driver));
    }

    #[test]
    fn apply_body_carries_only_probe_fields() {
        let status = probe_status(&report(vec![gpu(0, "H100")]), jiff::Timestamp::UNIX_EPOCH);
        let body = apply_body("node-a", &status);
        assert_eq!(body["apiVersion"], "gpuscope.dev/v1alpha1");
        assert_eq!(body["kind"], "GpuNodeStatus");
        let fields: Vec<&String> = body["status"].as_object().map(|o| o.keys().collect()).unwrap_or_default();
        for owned_by_operator in ["conditions", "verdicts", "health", "recentXidCount", "observedGeneration"] {
            assert!(!fields.iter().any(|f| f.as_str() == owned_by_operator), "probe must not send {owned_by_operator}");
        }
        assert_eq!(body["status"]["gpuCount"], 1);
        assert_eq!(body["status"]["probe"]["lastReportTime"], "1970-01-01T00:00:00Z");
        assert!(body["status"].get("xids").is_none(), "no XIDs, no history field");
    }

    #[test]
    fn a_probe_without_nvml_reports_no_inventory_and_says_why() {
        let mut r = report(vec![]);
        r.unavailable_sources = vec![
            UnavailableSource { source: DataSource::Nvml, message: "libnvidia-ml.so.1: not found".into() },
            UnavailableSource { source: DataSource::KernelLog, message: "/dev/kmsg: permission denied".into() },
        ];
        let status = probe_status(&r, jiff::Timestamp::UNIX_EPOCH);
        assert_eq!((status.gpus, status.gpu_count), (None, None), "no inventory is not an empty inventory");
        assert_eq!(status.unsupported_fields, Some(vec!["nvml".to_string(), "xids.kernelLog".to_string()]));
        let listed = status.probe.and_then(|p| p.unavailable_sources).unwrap_or_default();
        assert_eq!(listed, r.unavailable_sources);
        // With NVML the (empty) inventory is reported as such.
        let seen = probe_status(&report(vec![]), jiff::Timestamp::UNIX_EPOCH);
        assert_eq!((seen.gpu_count, seen.gpus.map(|g| g.len())), (Some(0), Some(0)));
    }

    #[test]
    fn model_names_the_most_common_gpu_and_counts_the_rest() {
        assert_eq!(gpu_model(&[]), None);
        let same = [gpu(0, "H100"), gpu(1, "H100")];
        assert_eq!(gpu_model(&same).as_deref(), Some("H100"));
        let mixed = [gpu(0, "A100"), gpu(1, "H100"), gpu(2, "H100")];
        assert_eq!(gpu_model(&mixed).as_deref(), Some("H100 (+1 other)"));
    }
}
