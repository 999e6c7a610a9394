//! Indexes the watches keep current, so that answers read what they list instead of scanning every cached object
//! (the model: linkerd's policy controller). Each index is a plain data structure, fed the GpuNodeStatus, Node and
//! pod watch events after the stores applied them: apply, delete, and a relist that is buffered and swapped in at
//! its end, as the stores do. None holds a client; each is tested with plain values.
//!
//! - [`pods_by_node`]: a node's GPU pods.
//! - [`fleet`]: per GPU node its [`node_row::NodeRow`], and what the rows add up to: counts by health, probe
//!   freshness, model and driver, XID totals, the ranked offenders, silent probes and problems, and the reasons
//!   ([`reasons`]).
//! - [`xids`]: XID histories by node and by code.
//! - [`pod_totals`]: how the fleet's GPUs are held.

pub mod fleet;
pub mod node_row;
pub mod pod_totals;
pub mod pods_by_node;
pub mod reasons;
pub mod tally;
pub mod xids;

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard};

use kube::runtime::watcher;

use crate::cached::{CachedNode, CachedPod, CachedStatus};
use fleet::Fleet;
use node_row::{NodeBits, NodeRow};
use pod_totals::PodTotals;
use xids::{NodeXids, XidIndex};

/// What the indexes keep of one GpuNodeStatus: its row and its XID history.
type StatusParts = (NodeRow, Option<NodeXids>);

/// The fleet-wide indexes of one cluster: written by its watch tasks, read by tool calls.
#[derive(Clone, Debug, Default)]
pub struct FleetIndex(Arc<RwLock<Indexes>>);

/// The indexes themselves, as a tool call reads them.
#[derive(Debug, Default)]
pub struct Indexes {
    fleet: Fleet,
    xids: XidIndex,
    pods: PodTotals,
    /// Relists under way, per kind: what they listed so far.
    relisted_statuses: Option<HashMap<String, StatusParts>>,
    relisted_nodes: Option<HashMap<String, NodeBits>>,
    relisted_pods: Option<PodTotals>,
}

impl FleetIndex {
    /// Follow one event of the GpuNodeStatus watch.
    pub fn apply_status(&self, event: &watcher::Event<CachedStatus>) {
        let parts = |o: &CachedStatus| (NodeRow::of(&o.name, Some(&o.facts)), NodeXids::of(&o.facts));
        let mut ix = self.write();
        match event {
            watcher::Event::Apply(o) => {
                let (row, xids) = parts(o);
                ix.fleet.set_status(&o.name, Some(row));
                ix.xids.set(&o.name, xids);
            }
            watcher::Event::Delete(o) => {
                ix.fleet.set_status(&o.name, None);
                ix.xids.set(&o.name, None);
            }
            watcher::Event::Init => ix.relisted_statuses = Some(HashMap::new()),
            watcher::Event::InitApply(o) => {
                ix.relisted_statuses.get_or_insert_with(HashMap::new).insert(o.name.clone(), parts(o));
            }
            watcher::Event::InitDone => {
                if let Some(listed) = ix.relisted_statuses.take() {
                    let (_, nodes) = ix.fleet.parts();
                    let mut rows = HashMap::with_capacity(listed.len());
                    let mut xids = XidIndex::default();
                    for (name, (row, history)) in listed {
                        xids.set(&name, history);
                        rows.insert(name, row);
                    }
                    ix.fleet = Fleet::rebuilt(rows, nodes);
                    ix.xids = xids;
                }
            }
        }
    }

    /// Follow one event of the Node watch.
    pub fn apply_node(&self, event: &watcher::Event<CachedNode>) {
        let mut ix = self.write();
        match event {
            watcher::Event::Apply(n) => ix.fleet.set_node(&n.name, Some(NodeBits::from(n))),
            watcher::Event::Delete(n) => ix.fleet.set_node(&n.name, None),
            watcher::Event::Init => ix.relisted_nodes = Some(HashMap::new()),
            watcher::Event::InitApply(n) => {
                ix.relisted_nodes.get_or_insert_with(HashMap::new).insert(n.name.clone(), NodeBits::from(n));
            }
            watcher::Event::InitDone => {
                if let Some(listed) = ix.relisted_nodes.take() {
                    let (statuses, _) = ix.fleet.parts();
                    ix.fleet = Fleet::rebuilt(statuses, listed);
                }
            }
        }
    }

    /// Follow one event of the GPU pod watch.
    pub fn apply_pod(&self, event: &watcher::Event<CachedPod>) {
        let mut ix = self.write();
        match event {
            watcher::Event::Apply(p) => ix.pods.apply(p),
            watcher::Event::Delete(p) => ix.pods.remove(&(p.namespace.clone(), p.name.clone())),
            watcher::Event::Init => ix.relisted_pods = Some(PodTotals::default()),
            watcher::Event::InitApply(p) => ix.relisted_pods.get_or_insert_with(PodTotals::default).apply(p),
            watcher::Event::InitDone => {
                if let Some(listed) = ix.relisted_pods.take() {
                    ix.pods = listed;
                }
            }
        }
    }

    /// The indexes, for one answer: hold the guard only while reading.
    pub fn read(&self) -> RwLockReadGuard<'_, Indexes> {
        // A writer that panicked mid-update leaves at worst one node miscounted; serving on beats failing every call.
        self.0.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Indexes> {
        self.0.write().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Indexes {
    /// Every GPU node's row and the fleet's totals and ranked lists.
    pub fn fleet(&self) -> &Fleet {
        &self.fleet
    }

    /// XID histories by node and code.
    pub fn xids(&self) -> &XidIndex {
        &self.xids
    }

    /// GPU pods' allocation totals.
    pub fn pods(&self) -> &PodTotals {
        &self.pods
    }
}

#[cfg(test)]
mod tests {
    use gpuscope_crds::Health;
    use gpuscope_crds::health::reason;

    use super::*;
    use crate::gpu_resources::fixtures::{node, pod};
    use crate::status_fixtures::{healthy, with_verdict, with_xid};

    fn status(o: gpuscope_crds::GpuNodeStatus) -> CachedStatus {
        CachedStatus::from(o)
    }

    #[test]
    fn a_relist_keeps_serving_the_old_state_until_its_end_then_replaces_everything() {
        let index = FleetIndex::default();
        let bad = with_verdict(healthy("bad", 8), 0, Health::Unhealthy, &[reason::XID_FALLEN_OFF_BUS], "");
        let bad = with_xid(bad, 0, 79, 1, "2026-11-25T11:00:00Z", "2026-11-25T11:00:00Z");
        index.apply_status(&watcher::Event::Apply(status(bad)));
        index.apply_status(&watcher::Event::Apply(status(healthy("gone", 8))));
        index.apply_node(&watcher::Event::Apply(CachedNode::from(node("bad", 8))));
        index.apply_pod(&watcher::Event::Apply(CachedPod::from(pod(
            "ml",
            "p",
            Some("bad"),
            "nvidia.com/gpu",
            8,
            "Running",
        ))));
        assert_eq!(index.read().fleet().nodes().total(), 2);
        assert_eq!(index.read().xids().len(), 1);

        // Relists of all three kinds: "gone" went while the watch was down, "bad" recovered, a new node came.
        index.apply_status(&watcher::Event::Init);
        index.apply_node(&watcher::Event::Init);
        index.apply_pod(&watcher::Event::Init);
        index.apply_status(&watcher::Event::InitApply(status(healthy("bad", 8))));
        index.apply_status(&watcher::Event::InitApply(status(healthy("new", 4))));
        index.apply_node(&watcher::Event::InitApply(CachedNode::from(node("bad", 8))));
        index.apply_node(&watcher::Event::InitApply(CachedNode::from(node("new", 4))));
        {
            let ix = index.read();
            assert_eq!(ix.fleet().offender_count(), 1, "still the old state during the relist");
            assert_eq!(ix.pods().pods(), 1);
        }
        index.apply_status(&watcher::Event::InitDone);
        index.apply_node(&watcher::Event::InitDone);
        index.apply_pod(&watcher::Event::InitDone);
        let ix = index.read();
        let f = ix.fleet();
        assert_eq!((f.nodes().total(), f.nodes().get(Health::Healthy), f.offender_count()), (2, 2, 0));
        assert!(f.row("gone").is_none());
        assert_eq!(f.gpus_allocatable(), 12);
        assert!(ix.xids().is_empty());
        assert_eq!(ix.pods().pods(), 0);
    }

    /// A fleet with something of everything: verdicts, XIDs, stale and missing probes, pods.
    fn fleet(
        round: usize,
    ) -> (Vec<gpuscope_crds::GpuNodeStatus>, Vec<k8s_openapi::api::core::v1::Node>, Vec<k8s_openapi::api::core::v1::Pod>)
    {
        let mut statuses = Vec::new();
        for i in 0..40 {
            let name = format!("n{i:02}");
            let mut o = healthy(&name, 8);
            match (i + round) % 7 {
                0 => o = with_verdict(o, 3, Health::Unhealthy, &[reason::XID_FALLEN_OFF_BUS], ""),
                1 => o = with_verdict(o, 5, Health::Degraded, &[reason::ROW_REMAP_PENDING], "Reset GPU 5 soon."),
                2 => o = crate::status_fixtures::stale(o, "2026-11-25T09:00:00Z"),
                _ => {}
            }
            if (i + round).is_multiple_of(3) {
                o = with_xid(
                    o,
                    1,
                    [13, 31, 79][(i / 3) % 3],
                    1 + (i % 4) as u64,
                    "2026-11-25T10:00:00Z",
                    "2026-11-25T11:50:00Z",
                );
            }
            statuses.push(o);
        }
        let nodes = (0..45).map(|i| node(&format!("n{i:02}"), if i % 11 == 0 { 0 } else { 8 })).collect();
        let pods = (0..30)
            .map(|i| {
                let bound = format!("n{:02}", (i * 3 + round) % 45);
                let phase = if i.is_multiple_of(5) { "Succeeded" } else { "Running" };
                pod(
                    "ml",
                    &format!("p{i}"),
                    (!i.is_multiple_of(4)).then_some(bound.as_str()),
                    "nvidia.com/gpu",
                    2,
                    phase,
                )
            })
            .collect();
        (statuses, nodes, pods)
    }

    /// Every fleet-wide answer, as JSON.
    fn answers(snap: &crate::snapshot::Snapshot) -> Vec<String> {
        use crate::tools::{fleet, health, inventory, xids};
        let json = |v: &dyn erased::Json| v.json();
        let mut out = vec![
            json(&fleet::answer(snap, &fleet::FleetArgs::default())),
            json(&fleet::answer(snap, &fleet::FleetArgs { limit: Some(3), ..Default::default() })),
            json(&health::answer(snap, &health::HealthArgs::default())),
            json(&health::answer(snap, &health::HealthArgs { limit: Some(2), ..Default::default() })),
            json(&xids::answer(snap, &xids::XidArgs::default())),
            json(&xids::answer(snap, &xids::XidArgs { code: Some(79), ..Default::default() })),
            json(&xids::answer(snap, &xids::XidArgs { since: Some("1h".into()), ..Default::default() })),
            json(&inventory::answer(snap, &inventory::InventoryArgs { limit: Some(5), ..Default::default() })),
        ];
        out.retain(|s| !s.is_empty());
        out
    }

    mod erased {
        /// A tool answer (or its error) as JSON, whatever the tool.
        pub trait Json {
            fn json(&self) -> String;
        }

        impl<T: serde::Serialize, E: std::fmt::Display> Json for Result<T, E> {
            fn json(&self) -> String {
                match self {
                    Ok(v) => serde_json::to_string(v).unwrap_or_default(),
                    Err(e) => e.to_string(),
                }
            }
        }
    }

    /// Stores and indexes fed the same events, as the cache feeds them.
    #[derive(Default)]
    struct Fed {
        statuses: kube::runtime::reflector::store::Writer<CachedStatus>,
        nodes: kube::runtime::reflector::store::Writer<CachedNode>,
        pods: kube::runtime::reflector::store::Writer<CachedPod>,
        index: FleetIndex,
    }

    impl Fed {
        fn status(&mut self, e: watcher::Event<gpuscope_crds::GpuNodeStatus>) {
            let e = crate::cache::kept_event(e, CachedStatus::from);
            self.statuses.apply_watcher_event(&e);
            self.index.apply_status(&e);
        }
        fn node(&mut self, e: watcher::Event<k8s_openapi::api::core::v1::Node>) {
            let e = crate::cache::kept_event(e, CachedNode::from);
            self.nodes.apply_watcher_event(&e);
            self.index.apply_node(&e);
        }
        fn pod(&mut self, e: watcher::Event<k8s_openapi::api::core::v1::Pod>) {
            let e = crate::cache::kept_event(e, CachedPod::from);
            self.pods.apply_watcher_event(&e);
            self.index.apply_pod(&e);
        }
    }

    #[test]
    fn fleet_wide_answers_after_any_churn_equal_the_answers_from_a_fresh_list() {
        use watcher::Event::{Apply, Delete, Init, InitApply, InitDone};
        let now: jiff::Timestamp = crate::snapshot::fixtures::NOW.parse().unwrap_or_default();
        let mut fed = Fed::default();
        // Round 0 listed, then round 1 as single events (every object applied again, some deleted first), then a
        // relist of the Nodes only, then round 2's statuses as events.
        let (s0, n0, p0) = fleet(0);
        fed.status(Init);
        s0.into_iter().for_each(|o| fed.status(InitApply(o)));
        fed.status(InitDone);
        n0.into_iter().for_each(|n| fed.node(Apply(n)));
        p0.into_iter().for_each(|p| fed.pod(Apply(p)));
        let (s1, n1, p1) = fleet(1);
        for (i, o) in s1.into_iter().enumerate() {
            if i.is_multiple_of(4) {
                fed.status(Delete(o.clone()));
            }
            fed.status(Apply(o));
        }
        p1.iter().for_each(|p| fed.pod(Apply(p.clone())));
        fed.node(Init);
        n1.iter().skip(2).for_each(|n| fed.node(InitApply(n.clone())));
        fed.node(InitDone);
        let (mut s2, _, _) = fleet(2);
        if let Some(gone) = s2.pop() {
            fed.status(Delete(gone));
        }
        s2.iter().for_each(|o| fed.status(Apply(o.clone())));

        let (s, n, p) = (fed.statuses.as_reader(), fed.nodes.as_reader(), fed.pods.as_reader());
        let churned = crate::snapshot::Snapshot::new("test", now, s, n, p).with_fleet_index(fed.index.clone());
        let fresh = crate::cache::ClusterCache::from_objects("test", s2, n1.into_iter().skip(2), p1).snapshot(now);
        let (a, b) = (answers(&churned), answers(&fresh));
        assert_eq!(a.len(), 8);
        for (a, b) in a.iter().zip(&b) {
            assert_eq!(a, b);
        }
        assert!(a[0].contains("XidFallenOffBus") && a[4].contains("\"code\":79"), "the fleet has problems: {}", a[0]);
    }
}
