//! The facts of a GpuNodeStatus that fleet-wide answers read, kept typed for every cached node: health, probe
//! freshness, driver, per-GPU identity with the few telemetry figures the inventory aggregates, the non-healthy
//! verdicts and the XID history. ~1.5 KB per 8-GPU node where the whole typed object is ~9 KB; the whole object
//! stays packed beside it ([`crate::cached::CachedStatus`]) for the answers about one node.
//!
//! Everything a fleet-wide answer reads must be here. The tools' tests build their snapshots through the cache
//! ([`crate::cache::ClusterCache::from_objects`]), so every answer they check was read from these facts.

use std::sync::Arc;

use gpuscope_crds::gpu_node_status::{DataSource, GpuVerdict, XidHistory};
use gpuscope_crds::health::condition_type;
use gpuscope_crds::{GpuNodeStatus, Health};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

/// What a fleet-wide answer needs of one condition.
#[derive(Clone, Debug, PartialEq)]
pub struct ConditionFacts {
    /// True, False or Unknown.
    pub status: String,
    /// CamelCase reason.
    pub reason: String,
    /// When the status last changed.
    pub since: Time,
}

impl From<&Condition> for ConditionFacts {
    fn from(c: &Condition) -> ConditionFacts {
        ConditionFacts { status: c.status.clone(), reason: c.reason.clone(), since: c.last_transition_time.clone() }
    }
}

/// One GPU: from the probe's inventory, or known only from an operator verdict (it vanished from NVML).
#[derive(Clone, Debug, PartialEq)]
pub struct GpuFacts {
    /// NVML index (a verdict may lack it).
    pub index: Option<u32>,
    /// GPU UUID.
    pub uuid: Box<str>,
    /// PCI bus id, as the probe wrote it.
    pub pci_bus_id: Option<Box<str>>,
    /// Product name; shared between the node's GPUs of one model.
    pub product_name: Option<Arc<str>>,
    /// Framebuffer size.
    pub memory_total_mib: Option<u64>,
    /// MIG mode on.
    pub mig_enabled: bool,
    /// GPU utilization.
    pub gpu_utilization_percent: Option<u32>,
    /// Temperature.
    pub temperature_celsius: Option<u32>,
    /// The operator's verdict; none when it has not judged this GPU.
    pub health: Option<Health>,
    /// In the probe's inventory (false: only a verdict names it).
    pub inventoried: bool,
    /// The pods holding it now ("namespace/name"), from the probe's pod-resources binding.
    pub pods: Box<[Box<str>]>,
    /// The same pods as answers name the blast radius: "namespace/name (Kind/controller)" where the probe knows
    /// the controller, plus "+N more" when the GPU is shared wider than the binding lists.
    pub workloads: Box<[Box<str>]>,
}

/// The fleet-wide facts of one GpuNodeStatus.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StatusFacts {
    /// The object has a status at all (a GpuNodeStatus is created before its probe's first report).
    pub has_status: bool,
    /// The operator's node verdict.
    pub health: Option<Health>,
    /// XIDs within the health policy's window.
    pub recent_xid_count: Option<u64>,
    /// GPUs the probe sees.
    pub gpu_count: Option<u32>,
    /// The probe's product summary.
    pub gpu_model: Option<String>,
    /// NVIDIA driver version.
    pub driver_version: Option<String>,
    /// Highest CUDA version the driver supports.
    pub cuda_driver_version: Option<String>,
    /// When the probe last wrote the object.
    pub last_report: Option<Time>,
    /// The operator's ProbeReporting condition.
    pub probe_reporting: Option<ConditionFacts>,
    /// The operator's GPUHealthy condition.
    pub gpu_healthy: Option<ConditionFacts>,
    /// Inventory GPUs in the probe's order, then GPUs only a verdict names.
    pub gpus: Box<[GpuFacts]>,
    /// Verdicts that are not Healthy, whole (reasons, message), in the operator's order.
    pub problems: Box<[GpuVerdict]>,
    /// The XID history, when there is one (most nodes have none).
    pub xids: Option<Box<XidHistory>>,
    /// Sources the probe cannot read (NVML, the kernel log): the node runs blind to what they would show.
    pub blind_to: Box<[DataSource]>,
}

impl StatusFacts {
    /// The facts of `o`.
    pub fn of(o: &GpuNodeStatus) -> StatusFacts {
        let Some(s) = o.status.as_ref() else { return StatusFacts::default() };
        let verdicts = s.verdicts.as_deref().unwrap_or(&[]);
        let verdict_of = |uuid: &str| verdicts.iter().find(|v| v.uuid == uuid).map(|v| v.health);
        let inventory = s.gpus.as_deref().unwrap_or(&[]);
        let mut models: Vec<Arc<str>> = Vec::new();
        let mut gpus: Vec<GpuFacts> = inventory
            .iter()
            .map(|g| GpuFacts {
                index: Some(g.index),
                uuid: g.uuid.as_str().into(),
                pci_bus_id: g.pci_bus_id.as_deref().map(Box::from),
                product_name: g.product_name.as_deref().map(|p| shared(&mut models, p)),
                memory_total_mib: g.memory.as_ref().map(|m| m.total_mib),
                mig_enabled: g.mig.as_ref().is_some_and(|m| m.enabled),
                gpu_utilization_percent: g.utilization.as_ref().map(|u| u.gpu_percent),
                temperature_celsius: g.temperature_celsius,
                health: verdict_of(&g.uuid),
                inventoried: true,
                pods: g.pods.iter().flatten().map(|p| p.key().into_boxed_str()).collect(),
                workloads: g
                    .pods
                    .iter()
                    .flatten()
                    .map(|p| p.label())
                    .chain(g.pods_omitted.filter(|n| *n > 0).map(|n| format!("+{n} more")))
                    .map(String::into_boxed_str)
                    .collect(),
            })
            .collect();
        for v in verdicts {
            if !gpus.iter().any(|g| *g.uuid == *v.uuid) {
                gpus.push(GpuFacts {
                    index: v.index,
                    uuid: v.uuid.as_str().into(),
                    pci_bus_id: None,
                    product_name: None,
                    memory_total_mib: None,
                    mig_enabled: false,
                    gpu_utilization_percent: None,
                    temperature_celsius: None,
                    health: Some(v.health),
                    inventoried: false,
                    pods: Box::default(),
                    workloads: Box::default(),
                });
            }
        }
        let condition =
            |type_: &str| s.conditions.iter().flatten().find(|c| c.type_ == type_).map(ConditionFacts::from);
        StatusFacts {
            has_status: true,
            health: s.health,
            recent_xid_count: s.recent_xid_count,
            gpu_count: s.gpu_count,
            gpu_model: s.gpu_model.clone(),
            driver_version: s.driver_version.clone(),
            cuda_driver_version: s.cuda_driver_version.clone(),
            last_report: s.probe.as_ref().and_then(|p| p.last_report_time.clone()),
            probe_reporting: condition(condition_type::PROBE_REPORTING),
            gpu_healthy: condition(condition_type::GPU_HEALTHY),
            gpus: gpus.into_boxed_slice(),
            problems: verdicts.iter().filter(|v| v.health != Health::Healthy).cloned().collect(),
            xids: s.xids.clone().map(Box::new),
            blind_to: [DataSource::Nvml, DataSource::KernelLog]
                .into_iter()
                .filter(|d| s.source_unavailable(*d).is_some())
                .collect(),
        }
    }

    /// The node's health as the operator published it; Unknown when it has not.
    pub fn health(&self) -> Health {
        self.health.unwrap_or(Health::Unknown)
    }

    /// GPUs in the probe's inventory.
    pub fn inventory(&self) -> impl Iterator<Item = &GpuFacts> {
        self.gpus.iter().filter(|g| g.inventoried)
    }

    /// GPUs per product on this node, in inventory order: the inventory's product names ("unknown" for a GPU
    /// without one), or the probe's summary (model and count) when there is no inventory.
    pub fn gpus_by_model(&self) -> Vec<(&str, u64)> {
        let mut on_node: Vec<(&str, u64)> = Vec::new();
        for g in self.inventory() {
            let model = g.product_name.as_deref().unwrap_or("unknown");
            match on_node.iter_mut().find(|(m, _)| *m == model) {
                Some((_, n)) => *n += 1,
                None => on_node.push((model, 1)),
            }
        }
        if on_node.is_empty()
            && let (Some(model), Some(count)) = (self.gpu_model.as_deref(), self.gpu_count.filter(|c| *c > 0))
        {
            on_node.push((model, u64::from(count)));
        }
        on_node
    }
}

/// `name` as an `Arc` shared with an equal earlier one.
fn shared(seen: &mut Vec<Arc<str>>, name: &str) -> Arc<str> {
    if let Some(s) = seen.iter().find(|s| ***s == *name) {
        return Arc::clone(s);
    }
    let s: Arc<str> = name.into();
    seen.push(Arc::clone(&s));
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status_fixtures::{gns, healthy, stale, uuid, with_verdict, with_xid};
    use gpuscope_crds::health::reason;

    #[test]
    fn facts_name_every_gpu_with_its_verdict_and_keep_only_the_problems_whole() {
        let mut o = with_verdict(healthy("n1", 4), 2, Health::Unhealthy, &[reason::XID_FALLEN_OFF_BUS], "Reboot.");
        o = with_xid(o, 2, 79, 1, "2026-11-25T11:00:00Z", "2026-11-25T11:00:00Z");
        // GPU 3 vanished from the inventory; only its verdict remembers it.
        if let Some(s) = o.status.as_mut() {
            s.gpus.get_or_insert_with(Vec::new).retain(|g| g.index != 3);
        }
        let f = StatusFacts::of(&o);
        assert!(f.has_status);
        assert_eq!(f.health(), Health::Unhealthy);
        assert_eq!(f.gpus.len(), 4);
        assert_eq!(f.inventory().count(), 3);
        let vanished = &f.gpus[3];
        assert_eq!((vanished.index, &*vanished.uuid, vanished.inventoried), (Some(3), uuid("n1", 3).as_str(), false));
        assert_eq!(f.gpus[2].health, Some(Health::Unhealthy));
        assert_eq!(f.gpus[0].pci_bus_id.as_deref(), Some("0000:10:00.0"));
        assert_eq!(f.gpus[0].temperature_celsius, Some(40));
        assert!(Arc::ptr_eq(
            f.gpus[0].product_name.as_ref().expect("model"),
            f.gpus[1].product_name.as_ref().expect("model")
        ));
        assert_eq!(f.problems.len(), 1);
        assert_eq!(f.problems[0].message.as_deref(), Some("Reboot."));
        assert_eq!(f.gpu_healthy.as_ref().map(|c| c.reason.as_str()), Some(reason::XID_FALLEN_OFF_BUS));
        assert_eq!(f.xids.as_ref().map(|x| x.totals.len()), Some(1));
        assert_eq!(f.recent_xid_count, Some(1));
    }

    #[test]
    fn facts_of_an_unpacked_object_are_the_facts_of_the_original() {
        let o = with_xid(healthy("n1", 8), 5, 48, 2, "2026-11-25T10:00:00Z", "2026-11-25T11:00:00Z");
        let cached = crate::cached::CachedStatus::from(o.clone());
        assert_eq!(cached.facts, StatusFacts::of(&o));
        assert_eq!(StatusFacts::of(&cached.unpack().expect("unpack")), cached.facts);
        assert!(cached.packed_len() > 0);
    }

    #[test]
    fn a_node_never_reported_has_no_facts_and_a_stale_one_says_so() {
        let f = StatusFacts::of(&gns("new"));
        assert!(!f.has_status && f.gpus.is_empty() && f.probe_reporting.is_none());
        assert_eq!(f.health(), Health::Unknown);
        let f = StatusFacts::of(&stale(healthy("n1", 2), "2026-11-25T10:00:00Z"));
        let probe = f.probe_reporting.expect("condition");
        assert_eq!((probe.status.as_str(), probe.reason.as_str()), ("Unknown", reason::PROBE_STALE));
        assert_eq!(f.problems.len(), 2, "Unknown verdicts are problems");
    }
}
