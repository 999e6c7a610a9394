//! Hand-built GpuNodeStatus objects for the tools' tests: a healthy H100 node, then mutations (an unhealthy GPU,
//! XIDs, a stale probe).

use gpuscope_crds::gpu_node_status::{
    Backend, GpuInfo, GpuMemory, GpuVerdict, PodRef, ProbeInfo, Utilization, XidEvent, XidHistory, XidSource, XidTotal,
};
use gpuscope_crds::health::{condition_type, reason};
use gpuscope_crds::{GpuNodeStatus, GpuNodeStatusStatus, Health};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

/// An instant as the API carries it.
pub fn t(s: &str) -> Time {
    Time(s.parse().unwrap_or_default())
}

/// A GpuNodeStatus with no status yet (created, never reported).
pub fn gns(name: &str) -> GpuNodeStatus {
    GpuNodeStatus::new(name, Default::default())
}

/// The UUID the fixtures give GPU `index` of `node`.
pub fn uuid(node: &str, index: u32) -> String {
    format!("GPU-{node}-{index}")
}

/// PCI bus id of GPU `index` in the fixtures.
pub fn pci(index: u32) -> String {
    format!("0000:{:02x}:00.0", index + 0x10)
}

fn condition(type_: &str, status: &str, reason: &str, since: &str) -> Condition {
    Condition {
        type_: type_.into(),
        status: status.into(),
        reason: reason.into(),
        message: format!("{type_} {status}"),
        last_transition_time: t(since),
        observed_generation: None,
    }
}

/// A node with `gpus` healthy H100s, reported by a live probe.
pub fn healthy(name: &str, gpus: u32) -> GpuNodeStatus {
    let mut o = gns(name);
    let infos = (0..gpus)
        .map(|i| GpuInfo {
            index: i,
            uuid: uuid(name, i),
            product_name: Some("NVIDIA H100 80GB HBM3".into()),
            pci_bus_id: Some(pci(i)),
            memory: Some(GpuMemory { total_mib: 81_559, used_mib: Some(1_024) }),
            temperature_celsius: Some(40 + i),
            power_draw_watts: Some(120),
            power_limit_watts: Some(700),
            utilization: Some(Utilization { gpu_percent: 50, memory_percent: 30 }),
            ..Default::default()
        })
        .collect();
    let verdicts = (0..gpus)
        .map(|i| GpuVerdict {
            uuid: uuid(name, i),
            index: Some(i),
            health: Health::Healthy,
            reasons: vec![],
            message: None,
        })
        .collect();
    o.status = Some(GpuNodeStatusStatus {
        probe: Some(ProbeInfo {
            version: "0.1.0".into(),
            backend: Backend::Simulated,
            last_report_time: Some(t("2026-11-25T11:55:00Z")),
            boot_id: Some("boot-1".into()),
            unavailable_sources: None,
        }),
        driver_version: Some("570.86.15".into()),
        cuda_driver_version: Some("12.8".into()),
        nvml_version: Some("12.570.86.15".into()),
        gpu_count: Some(gpus),
        gpu_model: Some("NVIDIA H100 80GB HBM3".into()),
        gpus: Some(infos),
        health: Some(Health::Healthy),
        recent_xid_count: Some(0),
        verdicts: Some(verdicts),
        conditions: Some(vec![
            condition(condition_type::GPU_HEALTHY, "True", reason::HEALTHY, "2026-11-20T00:00:00Z"),
            condition(condition_type::PROBE_REPORTING, "True", reason::PROBE_HEARTBEAT, "2026-11-20T00:00:00Z"),
        ]),
        ..Default::default()
    });
    o
}

fn status_mut(o: &mut GpuNodeStatus) -> &mut GpuNodeStatusStatus {
    o.status.get_or_insert_with(Default::default)
}

fn set_condition(o: &mut GpuNodeStatus, c: Condition) {
    let conditions = status_mut(o).conditions.get_or_insert_with(Vec::new);
    conditions.retain(|x| x.type_ != c.type_);
    conditions.push(c);
}

/// Give GPU `index` the verdict `health` with `reasons` and the operator's `message`; the node's health becomes
/// the worst verdict.
pub fn with_verdict(
    mut o: GpuNodeStatus,
    index: u32,
    health: Health,
    reasons: &[&str],
    message: &str,
) -> GpuNodeStatus {
    let name = o.metadata.name.clone().unwrap_or_default();
    let s = status_mut(&mut o);
    let verdicts = s.verdicts.get_or_insert_with(Vec::new);
    verdicts.retain(|v| v.index != Some(index));
    verdicts.push(GpuVerdict {
        uuid: uuid(&name, index),
        index: Some(index),
        health,
        reasons: reasons.iter().map(|r| r.to_string()).collect(),
        message: Some(message.into()).filter(|m: &String| !m.is_empty()),
    });
    verdicts.sort_by_key(|v| v.index);
    let worst = verdicts.iter().fold(Health::Healthy, |acc, v| acc.worst(v.health));
    s.health = Some(worst);
    if worst == Health::Unhealthy {
        let why = reasons.first().copied().unwrap_or(reason::XID_CRITICAL);
        set_condition(&mut o, condition(condition_type::GPU_HEALTHY, "False", why, "2026-11-25T11:00:00Z"));
    }
    o
}

/// Record XID `code` on GPU `index`: `count` times, first at `first`, newest at `last` (also as a raw event).
pub fn with_xid(mut o: GpuNodeStatus, index: u32, code: u32, count: u64, first: &str, last: &str) -> GpuNodeStatus {
    let name = o.metadata.name.clone().unwrap_or_default();
    let s = status_mut(&mut o);
    *s.recent_xid_count.get_or_insert(0) += count;
    let xids = s.xids.get_or_insert_with(XidHistory::default);
    xids.totals.push(XidTotal {
        code,
        pci_bus_id: pci(index),
        gpu_uuid: Some(uuid(&name, index)),
        count,
        first_seen: t(first),
        last_seen: t(last),
        last_boot_id: Some("boot-1".into()),
        last_message: Some(format!("xid {code} message")),
        pods: None,
    });
    xids.recent.insert(
        0,
        XidEvent {
            code,
            time: t(last),
            pci_bus_id: pci(index),
            gpu_uuid: None,
            gpu_instance: None,
            compute_instance: None,
            pid: Some(4242),
            process_name: Some("python".into()),
            message: Some(format!("xid {code} message")),
            source: XidSource::Kmsg,
            boot_id: Some("boot-1".into()),
            sequence: Some(count),
            pods: None,
        },
    );
    xids.recent.sort_by(|a, b| b.time.cmp(&a.time));
    if xids.last_time.as_ref().is_none_or(|lt| *lt < t(last)) {
        xids.last_time = Some(t(last));
        xids.last_code = Some(code);
    }
    o
}

/// The probe stopped renewing its Lease at `since`; the operator says so (status Unknown, as it writes it) and
/// the node's health is Unknown.
pub fn stale(mut o: GpuNodeStatus, since: &str) -> GpuNodeStatus {
    set_condition(&mut o, condition(condition_type::PROBE_REPORTING, "Unknown", reason::PROBE_STALE, since));
    let s = status_mut(&mut o);
    s.health = Some(Health::Unknown);
    for v in s.verdicts.iter_mut().flatten() {
        v.health = Health::Unknown;
        v.reasons = vec![reason::PROBE_STALE.into()];
    }
    o
}

/// GPU `index` held by pod `ns/pod` (the probe's pod-resources binding).
pub fn holding(mut o: GpuNodeStatus, index: u32, ns: &str, pod: &str) -> GpuNodeStatus {
    let s = status_mut(&mut o);
    if let Some(g) = s.gpus.iter_mut().flatten().find(|g| g.index == index) {
        g.pods.get_or_insert_with(Vec::new).push(PodRef {
            namespace: ns.into(),
            name: pod.into(),
            ..PodRef::default()
        });
    }
    o
}

/// Every XID record (raw events and totals) on GPU `index` attributed to pod `ns/pod`, as the probe does for the
/// pods holding the GPU when the XID arrived.
pub fn attributed(mut o: GpuNodeStatus, index: u32, ns: &str, pod: &str) -> GpuNodeStatus {
    let s = status_mut(&mut o);
    let who = PodRef { namespace: ns.into(), name: pod.into(), ..PodRef::default() };
    if let Some(x) = s.xids.as_mut() {
        for e in x.recent.iter_mut().filter(|e| e.pci_bus_id == pci(index)) {
            e.pods.get_or_insert_with(Vec::new).push(who.clone());
        }
        for t in x.totals.iter_mut().filter(|t| t.pci_bus_id == pci(index)) {
            t.pods.get_or_insert_with(Vec::new).push(who.clone());
        }
    }
    o
}
