//! The probe's XID history: every XID it has seen, coalesced per (GPU, code), each exactly once.
//!
//! Two sources report the same XID (the kernel log and NVML events); a restarted probe re-reads the whole kernel
//! ring; floods repeat one line hundreds of thousands of times. The ledger turns all of that into bounded state:
//! totals per (PCI bus id, code) and a ring of the newest raw events. It is plain data (serializable, so the
//! spool can persist it), and every XID is recorded at most once:
//! - kernel-log records by (boot id, sequence): sequences rise within a boot, so a high-water mark per boot
//!   rejects what a restart re-reads;
//! - an NVML event and a kernel-log line for the same GPU and code within [`CROSS_SOURCE_WINDOW_MS`] are one
//!   XID: the second to arrive enriches the first (the kernel line has pid, process and text) and is not counted.

use std::collections::{BTreeMap, VecDeque};

use gpuscope_crds::gpu_node_status::{
    MAX_PODS_PER_XID_TOTAL, MAX_RECENT_XIDS, MAX_XID_TOTALS, PodRef, XidEvent, XidHistory, XidSource, XidTotal,
};
use serde::{Deserialize, Serialize};

/// How far apart (ms) an NVML event and a kernel-log line for the same GPU and code may be and still be one XID.
pub const CROSS_SOURCE_WINDOW_MS: i64 = 2_000;
/// How many recent events are remembered for cross-source matching.
const MATCH_MEMORY: usize = 256;
/// How many boots' kernel-log high-water marks are kept.
const MAX_BOOTS: usize = 8;

fn total_key(pci_bus_id: &str, code: u32) -> String {
    format!("{pci_bus_id}/{code}")
}

/// Put `newest` first in a total's pod list (no duplicates, at most [`MAX_PODS_PER_XID_TOTAL`]): the workloads
/// any occurrence of the XID hit, the latest first.
fn merge_pods(pods: &mut Option<Vec<PodRef>>, newest: Option<&[PodRef]>) {
    let Some(newest) = newest.filter(|n| !n.is_empty()) else { return };
    let mut merged: Vec<PodRef> = newest.to_vec();
    for old in pods.take().unwrap_or_default() {
        if !merged.iter().any(|p| p.namespace == old.namespace && p.name == old.name && p.uid == old.uid) {
            merged.push(old);
        }
    }
    merged.truncate(MAX_PODS_PER_XID_TOTAL);
    *pods = Some(merged);
}

/// What [`XidLedger::record`] did with an event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Recorded {
    /// A new XID: counted.
    New,
    /// The same XID from the other source: merged into the first report, not counted again.
    MergedAcrossSources,
    /// Already recorded (a kernel-log record re-read after a restart).
    Duplicate,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct MatchKey {
    pci_bus_id: String,
    code: u32,
    time_ms: i64,
    source: XidSource,
    matched: bool,
}

/// Coalesced XID history; see the module docs.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct XidLedger {
    /// Keyed by [`total_key`] (PCI bus id and code; a string so the spool can be JSON).
    totals: BTreeMap<String, XidTotal>,
    /// Newest first.
    recent: VecDeque<XidEvent>,
    /// Highest kernel-log sequence recorded, per boot id.
    kmsg_high_water: BTreeMap<String, u64>,
    /// Order in which boots were first seen, to bound `kmsg_high_water`.
    boots: VecDeque<String>,
    /// Recent events, for cross-source matching.
    match_memory: VecDeque<MatchKey>,
    /// Events counted since the ledger was created (never decreases).
    counted: u64,
}

impl XidLedger {
    /// An empty ledger.
    pub fn new() -> XidLedger {
        XidLedger::default()
    }

    /// Record one XID; see [`Recorded`].
    pub fn record(&mut self, event: XidEvent) -> Recorded {
        if let (XidSource::Kmsg, Some(boot), Some(seq)) = (event.source, &event.boot_id, event.sequence) {
            if self.kmsg_high_water.get(boot).is_some_and(|&hw| seq <= hw) {
                return Recorded::Duplicate;
            }
            self.note_kmsg_sequence(boot.clone(), seq);
        }
        let time_ms = event.time.0.as_millisecond();
        if let Some(i) = self.match_memory.iter().position(|k| {
            !k.matched
                && k.source != event.source
                && k.code == event.code
                && k.pci_bus_id == event.pci_bus_id
                && (k.time_ms - time_ms).abs() <= CROSS_SOURCE_WINDOW_MS
        }) {
            if let Some(k) = self.match_memory.get_mut(i) {
                k.matched = true;
            }
            self.enrich(&event);
            return Recorded::MergedAcrossSources;
        }
        self.match_memory.push_front(MatchKey {
            pci_bus_id: event.pci_bus_id.clone(),
            code: event.code,
            time_ms,
            source: event.source,
            matched: false,
        });
        self.match_memory.truncate(MATCH_MEMORY);
        self.count(event);
        Recorded::New
    }

    fn note_kmsg_sequence(&mut self, boot: String, seq: u64) {
        if !self.kmsg_high_water.contains_key(&boot) {
            self.boots.push_back(boot.clone());
            while self.boots.len() > MAX_BOOTS {
                if let Some(old) = self.boots.pop_front() {
                    self.kmsg_high_water.remove(&old);
                }
            }
        }
        self.kmsg_high_water.insert(boot, seq);
    }

    fn count(&mut self, event: XidEvent) {
        self.counted += 1;
        let key = total_key(&event.pci_bus_id, event.code);
        match self.totals.get_mut(&key) {
            Some(total) => {
                total.count += 1;
                if event.time >= total.last_seen {
                    total.last_seen = event.time.clone();
                    total.last_boot_id = event.boot_id.clone().or(total.last_boot_id.take());
                    total.last_message = event.message.clone().or(total.last_message.take());
                }
                if event.time < total.first_seen {
                    total.first_seen = event.time.clone();
                }
                if total.gpu_uuid.is_none() {
                    total.gpu_uuid = event.gpu_uuid.clone();
                }
                merge_pods(&mut total.pods, event.pods.as_deref());
            }
            None => {
                self.totals.insert(
                    key,
                    XidTotal {
                        code: event.code,
                        pci_bus_id: event.pci_bus_id.clone(),
                        gpu_uuid: event.gpu_uuid.clone(),
                        count: 1,
                        first_seen: event.time.clone(),
                        last_seen: event.time.clone(),
                        last_boot_id: event.boot_id.clone(),
                        last_message: event.message.clone(),
                        pods: event.pods.clone().filter(|p| !p.is_empty()),
                    },
                );
                self.evict_totals();
            }
        }
        // Newest first, by event time: a backfilled old record must not push out newer ones.
        let at = self.recent.iter().position(|e| e.time <= event.time).unwrap_or(self.recent.len());
        if at < MAX_RECENT_XIDS {
            self.recent.insert(at, event);
            self.recent.truncate(MAX_RECENT_XIDS);
        }
    }

    /// Drop the least recently seen totals beyond the cap.
    fn evict_totals(&mut self) {
        while self.totals.len() > MAX_XID_TOTALS {
            let oldest = self.totals.iter().min_by(|a, b| a.1.last_seen.cmp(&b.1.last_seen)).map(|(k, _)| k.clone());
            match oldest {
                Some(k) => {
                    self.totals.remove(&k);
                }
                None => break,
            }
        }
    }

    /// The second report of one XID fills in what the first lacked.
    fn enrich(&mut self, event: &XidEvent) {
        let same = |e: &XidEvent| {
            e.code == event.code
                && e.pci_bus_id == event.pci_bus_id
                && (e.time.0.as_millisecond() - event.time.0.as_millisecond()).abs() <= CROSS_SOURCE_WINDOW_MS
        };
        if let Some(e) = self.recent.iter_mut().find(|e| same(e)) {
            e.gpu_uuid = e.gpu_uuid.take().or_else(|| event.gpu_uuid.clone());
            e.pid = e.pid.or(event.pid);
            e.process_name = e.process_name.take().or_else(|| event.process_name.clone());
            e.gpu_instance = e.gpu_instance.or(event.gpu_instance);
            e.compute_instance = e.compute_instance.or(event.compute_instance);
            e.pods = e.pods.take().or_else(|| event.pods.clone());
            if event.source == XidSource::Kmsg {
                // The kernel's text is richer than NVML's bare code.
                e.message = event.message.clone().or(e.message.take());
                e.sequence = event.sequence.or(e.sequence);
                e.boot_id = event.boot_id.clone().or(e.boot_id.take());
            }
        }
        if let Some(total) = self.totals.get_mut(&total_key(&event.pci_bus_id, event.code)) {
            if total.gpu_uuid.is_none() {
                total.gpu_uuid = event.gpu_uuid.clone();
            }
            merge_pods(&mut total.pods, event.pods.as_deref());
            if event.source == XidSource::Kmsg && event.message.is_some() && total.last_seen <= event.time {
                total.last_message = event.message.clone();
            }
        }
    }

    /// Fill in GPU UUIDs learnt later (from NVML inventory or `GPU at PCI:` lines) on what is already recorded.
    pub fn learn_uuid(&mut self, pci_bus_id: &str, uuid: &str) -> bool {
        let mut changed = false;
        for total in self.totals.values_mut().filter(|t| t.pci_bus_id == pci_bus_id && t.gpu_uuid.is_none()) {
            total.gpu_uuid = Some(uuid.to_string());
            changed = true;
        }
        for e in self.recent.iter_mut().filter(|e| e.pci_bus_id == pci_bus_id && e.gpu_uuid.is_none()) {
            e.gpu_uuid = Some(uuid.to_string());
            changed = true;
        }
        changed
    }

    /// Events counted since the ledger began.
    pub fn counted(&self) -> u64 {
        self.counted
    }

    /// Whether nothing was ever recorded.
    pub fn is_empty(&self) -> bool {
        self.totals.is_empty()
    }

    /// The bounded history as the API carries it.
    pub fn history(&self) -> XidHistory {
        let newest = self.recent.front();
        let mut totals: Vec<XidTotal> = self.totals.values().cloned().collect();
        // Most recent first: what an SRE reads first.
        totals.sort_by(|a, b| {
            b.last_seen.cmp(&a.last_seen).then(a.pci_bus_id.cmp(&b.pci_bus_id)).then(a.code.cmp(&b.code))
        });
        XidHistory {
            last_code: newest.map(|e| e.code),
            last_time: newest.map(|e| e.time.clone()),
            totals,
            recent: self.recent.iter().cloned().collect(),
        }
    }

    /// Adopt history found in the API when there is no spool (a new disk, a moved pod): the totals and recent
    /// events are kept, and the kernel-log high-water marks are rebuilt from the recent events.
    pub fn from_history(history: &XidHistory) -> XidLedger {
        let mut ledger = XidLedger::new();
        for t in &history.totals {
            ledger.counted += t.count;
            ledger.totals.insert(total_key(&t.pci_bus_id, t.code), t.clone());
        }
        ledger.evict_totals();
        let mut recent: Vec<XidEvent> = history.recent.clone();
        recent.sort_by(|a, b| b.time.cmp(&a.time));
        recent.truncate(MAX_RECENT_XIDS);
        for e in recent.iter().rev() {
            if let (XidSource::Kmsg, Some(boot), Some(seq)) = (e.source, &e.boot_id, e.sequence)
                && ledger.kmsg_high_water.get(boot).is_none_or(|&hw| seq > hw)
            {
                ledger.note_kmsg_sequence(boot.clone(), seq);
            }
        }
        ledger.recent = recent.into();
        ledger
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn at(secs: i64) -> Time {
        Time(jiff::Timestamp::from_second(1_790_000_000 + secs).expect("valid"))
    }

    fn kmsg(code: u32, pci: &str, secs: i64, seq: u64) -> XidEvent {
        XidEvent {
            code,
            time: at(secs),
            pci_bus_id: pci.into(),
            gpu_uuid: None,
            gpu_instance: None,
            compute_instance: None,
            pid: Some(1234),
            process_name: Some("python3".into()),
            message: Some(format!("message {seq}")),
            source: XidSource::Kmsg,
            boot_id: Some("boot-a".into()),
            sequence: Some(seq),
            pods: None,
        }
    }

    fn pod(name: &str) -> PodRef {
        PodRef { namespace: "ml".into(), name: name.into(), uid: Some(format!("uid-{name}")), ..PodRef::default() }
    }

    #[test]
    fn each_total_remembers_the_pods_its_occurrences_hit_newest_first_and_bounded() {
        let mut ledger = XidLedger::new();
        let mut first = kmsg(79, "0000:3b:00.0", 1, 1);
        first.pods = Some(vec![pod("train-0")]);
        ledger.record(first);
        let mut unattributed = kmsg(79, "0000:3b:00.0", 2, 2);
        unattributed.pods = None;
        ledger.record(unattributed);
        for i in 0..10u64 {
            let mut e = kmsg(79, "0000:3b:00.0", 3 + i as i64, 3 + i);
            e.pods = Some(vec![pod(&format!("job-{i}")), pod("train-0")]);
            ledger.record(e);
        }
        let h = ledger.history();
        let pods: Vec<String> = h.totals[0].pods.iter().flatten().map(|p| p.name.clone()).collect();
        assert_eq!(pods.len(), MAX_PODS_PER_XID_TOTAL);
        assert_eq!(pods[..3], ["job-9", "train-0", "job-8"], "newest occurrence's pods first, each once");
        assert_eq!(h.recent[0].pods.as_ref().map(Vec::len), Some(2), "each raw event keeps its own pods");
        // The NVML report of the same XID carries no pods: the kernel line's attribution stays.
        let mut from_nvml = nvml(79, "0000:3b:00.0", 12);
        from_nvml.pods = None;
        assert_eq!(ledger.record(from_nvml), Recorded::MergedAcrossSources);
        assert_eq!(ledger.history().recent[0].pods.as_ref().map(Vec::len), Some(2));
    }

    fn nvml(code: u32, pci: &str, secs: i64) -> XidEvent {
        XidEvent {
            source: XidSource::Nvml,
            gpu_uuid: Some("GPU-1".into()),
            pid: None,
            process_name: None,
            message: None,
            boot_id: None,
            sequence: None,
            ..kmsg(code, pci, secs, 0)
        }
    }

    #[test]
    fn a_restart_rereading_the_kernel_ring_counts_nothing_twice() {
        let mut ledger = XidLedger::new();
        for seq in 1..=3 {
            assert_eq!(ledger.record(kmsg(79, "0000:3b:00.0", seq as i64, seq)), Recorded::New);
        }
        let persisted: XidLedger = serde_json::from_str(&serde_json::to_string(&ledger).expect("ser")).expect("de");
        let mut restarted = persisted;
        for seq in 1..=3 {
            assert_eq!(restarted.record(kmsg(79, "0000:3b:00.0", seq as i64, seq)), Recorded::Duplicate);
        }
        assert_eq!(restarted.record(kmsg(79, "0000:3b:00.0", 4, 4)), Recorded::New);
        assert_eq!(restarted.history().totals[0].count, 4);
    }

    #[test]
    fn a_new_boot_starts_a_new_sequence() {
        let mut ledger = XidLedger::new();
        ledger.record(kmsg(79, "0000:3b:00.0", 1, 500));
        let mut after_reboot = kmsg(79, "0000:3b:00.0", 100, 3);
        after_reboot.boot_id = Some("boot-b".into());
        assert_eq!(ledger.record(after_reboot), Recorded::New);
        let total = &ledger.history().totals[0];
        assert_eq!(total.count, 2);
        assert_eq!(total.last_boot_id.as_deref(), Some("boot-b"));
    }

    #[test]
    fn nvml_and_kernel_reports_of_one_xid_are_one_record_enriched_by_both() {
        let mut ledger = XidLedger::new();
        assert_eq!(ledger.record(nvml(79, "0000:3b:00.0", 10)), Recorded::New);
        assert_eq!(ledger.record(kmsg(79, "0000:3b:00.0", 11, 7)), Recorded::MergedAcrossSources);
        let h = ledger.history();
        assert_eq!(h.totals[0].count, 1);
        assert_eq!(h.recent.len(), 1);
        let e = &h.recent[0];
        assert_eq!(e.gpu_uuid.as_deref(), Some("GPU-1"), "from NVML");
        assert_eq!(e.process_name.as_deref(), Some("python3"), "from the kernel line");
        assert_eq!(e.sequence, Some(7));
        // A second, separate XID 79 is counted.
        assert_eq!(ledger.record(nvml(79, "0000:3b:00.0", 60)), Recorded::New);
        assert_eq!(ledger.history().totals[0].count, 2);
    }

    #[test]
    fn reports_far_apart_or_on_other_gpus_are_not_merged() {
        let mut ledger = XidLedger::new();
        ledger.record(nvml(79, "0000:3b:00.0", 10));
        assert_eq!(ledger.record(kmsg(79, "0000:3b:00.0", 20, 1)), Recorded::New);
        assert_eq!(ledger.record(nvml(79, "0000:5e:00.0", 20)), Recorded::New);
        assert_eq!(ledger.record(kmsg(13, "0000:5e:00.0", 20, 2)), Recorded::New);
        assert_eq!(ledger.counted(), 4);
    }

    #[test]
    fn a_flood_is_a_count_and_the_history_stays_bounded() {
        let mut ledger = XidLedger::new();
        for seq in 0..100_000u64 {
            ledger.record(kmsg(45, "0000:3b:00.0", (seq / 1000) as i64, seq + 1));
        }
        for code in 0..200u32 {
            ledger.record(kmsg(1000 + code, "0000:5e:00.0", 200, 200_000 + u64::from(code)));
        }
        let h = ledger.history();
        assert_eq!(h.recent.len(), MAX_RECENT_XIDS);
        assert_eq!(h.totals.len(), MAX_XID_TOTALS);
        assert_eq!(ledger.counted(), 100_200);
        // The flood's total is the oldest and was evicted last-seen-first; the newest codes remain.
        assert!(h.totals.iter().all(|t| t.code >= 1000));
        assert_eq!(h.last_code, Some(1199));
    }

    #[test]
    fn backfilled_older_events_do_not_displace_newer_ones() {
        let mut ledger = XidLedger::new();
        ledger.record(nvml(79, "0000:3b:00.0", 1_000));
        let mut old = kmsg(13, "0000:3b:00.0", 5, 1);
        old.boot_id = Some("boot-0".into());
        ledger.record(old);
        let h = ledger.history();
        assert_eq!(h.recent[0].code, 79);
        assert_eq!(h.last_code, Some(79));
        assert_eq!(h.recent[1].code, 13);
    }

    #[test]
    fn history_adopted_from_the_api_keeps_counts_and_dedup_marks() {
        let mut ledger = XidLedger::new();
        for seq in 1..=5 {
            ledger.record(kmsg(31, "0000:3b:00.0", seq as i64, seq));
        }
        let adopted = XidLedger::from_history(&ledger.history());
        let mut adopted = adopted;
        assert_eq!(adopted.record(kmsg(31, "0000:3b:00.0", 5, 5)), Recorded::Duplicate);
        assert_eq!(adopted.record(kmsg(31, "0000:3b:00.0", 6, 6)), Recorded::New);
        assert_eq!(adopted.history().totals[0].count, 6);
    }

    #[test]
    fn uuids_learnt_later_fill_in_the_history() {
        let mut ledger = XidLedger::new();
        ledger.record(kmsg(79, "0000:3b:00.0", 1, 1));
        assert!(ledger.learn_uuid("0000:3b:00.0", "GPU-abc"));
        assert!(!ledger.learn_uuid("0000:3b:00.0", "GPU-abc"), "nothing left to fill");
        let h = ledger.history();
        assert_eq!(h.totals[0].gpu_uuid.as_deref(), Some("GPU-abc"));
        assert_eq!(h.recent[0].gpu_uuid.as_deref(), Some("GPU-abc"));
    }
}
