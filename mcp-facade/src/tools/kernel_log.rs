//! `analyze_kernel_log`: a kernel log pasted or exported from anywhere, explained: which GPU, which XID, what NVIDIA
//! says it means, the verdict the operator's default rules give, and the one thing to do first. It needs no
//! cluster; with `node_name` the log's GPUs are joined with that node's GpuNodeStatus (index, UUID, current
//! verdict, and whether the cluster already recorded each XID). `gpuscope-mcp analyze-log --output json` prints the
//! same answer for a log analysed alone.

use std::collections::BTreeMap;

use gpuscope_crds::gpu_node_status::GpuNodeStatusStatus;
use gpuscope_crds::pci::PciBusId;
use gpuscope_crds::{GpuNodeStatus, Health};
use gpuscope_log_analysis::{AnalyzeError, AnalyzeOptions, GpuReport, KnownGpu, LogReport, MAX_INPUT_BYTES};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::answer::Answer;
use crate::error::ToolError;
use crate::snapshot::{NodeRef, Snapshot};
use crate::time::rfc3339;
use crate::tools::common::{node_health, plural};

/// The most text the tool takes: 8 MiB. Less than the library's one-shot limit because the stdio transport drops a
/// message over 16 MiB without any answer, and JSON escaping makes a log's message longer than the log.
pub const MAX_TEXT_BYTES: usize = 8 * 1024 * 1024;
const _: () = assert!(MAX_TEXT_BYTES <= MAX_INPUT_BYTES);

/// Most node-join lines in the text summary.
const MAX_JOIN_HIGHLIGHTS: usize = 4;

/// Arguments of `analyze_kernel_log`.
#[derive(Clone, Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct KernelLogArgs {
    /// The kernel log as text, at most 8 MiB: `dmesg` (any time format), `journalctl -k` (any output format),
    /// syslog, /dev/kmsg records, a support bundle's file, or lines pasted from a chat or a ticket. Other lines
    /// may stay in; only the NVIDIA driver's lines count.
    pub text: String,
    /// The node the log came from: joins the log's GPUs (by PCI bus id) with the node's GpuNodeStatus for GPU
    /// index, UUID, the operator's current verdict, and whether the cluster already recorded each XID. Needs a
    /// connected cluster; omit it to analyse the log alone.
    pub node_name: Option<String>,
    /// Cluster (kubeconfig context) to look node_name up in; omit for the default (first) cluster.
    pub cluster: Option<String>,
}

/// A kernel log explained.
#[derive(Clone, Debug, PartialEq, Serialize, JsonSchema)]
pub struct KernelLogAnalysis {
    /// The worst verdict the operator's default rules give the log, and what it is about.
    pub verdict: String,
    /// The one thing to do first.
    pub action: String,
    /// The cluster node_name was looked up in; absent when the log was analysed alone.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    /// The node the log came from, as the cluster knows it (with node_name).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<NodeJoin>,
    /// The analysis: summary, per-GPU XIDs with NVIDIA's meaning and the operator's verdict, NVSwitch SXids,
    /// companion lines, lines not understood, and how the input looked.
    pub report: LogReport,
}

/// The log's GPUs joined with the node's GpuNodeStatus.
#[derive(Clone, Debug, PartialEq, Serialize, JsonSchema)]
pub struct NodeJoin {
    /// Node name.
    pub name: String,
    /// False when no probe has written a GpuNodeStatus for the node (only its Node exists): nothing to join.
    pub has_status: bool,
    /// The operator's current verdict for the node (Unknown when it has not judged it).
    pub health: Health,
    /// (GPU, XID code) pairs of the log that the node's XID history already has.
    pub xids_already_known: usize,
    /// (GPU, XID code) pairs of the log that the node's XID history does not have.
    pub xids_not_known: usize,
    /// One entry per GPU of the report, in the same order.
    pub gpus: Vec<GpuJoin>,
}

/// One GPU of the log as the cluster knows it.
#[derive(Clone, Debug, PartialEq, Serialize, JsonSchema)]
pub struct GpuJoin {
    /// Normalised PCI bus id, as in the report.
    pub pci_bus_id: String,
    /// NVML index on the node, when the cluster knows the GPU.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub index: Option<u32>,
    /// The GPU's UUID as the cluster knows it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uuid: Option<String>,
    /// Whether the probe's inventory lists a GPU at this address. False: the GPU is not on this node (is the log
    /// from another node?) or NVML no longer sees it (after XID 79 it often does not).
    pub in_inventory: bool,
    /// The operator's current verdict for the GPU (Unknown when it has none).
    pub current_health: Health,
    /// The reasons of that verdict.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub current_reasons: Vec<String>,
    /// Per XID code of the log on this GPU: whether the cluster recorded it.
    pub xids: Vec<XidKnown>,
}

/// One XID code of the log on one GPU, against the node's XID history.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, JsonSchema)]
pub struct XidKnown {
    /// XID code.
    pub code: u32,
    /// Occurrences in the log.
    pub log_count: u64,
    /// True when the node's XID history has this code for this GPU's PCI bus id.
    pub cluster_knows: bool,
    /// The history's count (since its first occurrence), when it knows.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster_count: Option<u64>,
    /// The history's newest occurrence (RFC 3339), when it knows.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster_last_seen: Option<String>,
}

impl Answer for KernelLogAnalysis {
    fn verdict(&self) -> &str {
        &self.verdict
    }
    fn action(&self) -> &str {
        &self.action
    }
    fn highlights(&self) -> Vec<String> {
        let r = &self.report;
        let mut lines: Vec<String> = r
            .gpus
            .iter()
            .filter(|g| g.health != Health::Healthy)
            .take(3)
            .map(|g| {
                let codes: Vec<String> =
                    g.xids.iter().take(4).map(|x| format!("XID {} x{}", x.code, x.count)).collect();
                format!("{}: {} ({}), {}: {}", gpu_label(g), g.health, g.reason, g.action, codes.join(", "))
            })
            .collect();
        if let Some(node) = &self.node {
            lines.extend(join_highlights(node, r).into_iter().take(MAX_JOIN_HIGHLIGHTS));
        }
        let s = &r.summary;
        if s.sxid_lines > 0 || s.companion_lines > 0 {
            lines.push(format!(
                "{} (NVSwitch, not GPU XIDs), {} (evidence next to XIDs)",
                plural(s.sxid_lines as usize, "SXid line"),
                plural(s.companion_lines as usize, "companion line")
            ));
        }
        if let Some(first) = r.not_understood.samples.first() {
            lines.push(format!(
                "{} not understood, e.g. line {}: {}",
                plural(r.not_understood.lines as usize, "driver line"),
                first.line,
                first.reason
            ));
        }
        if !s.complete {
            lines.push(format!(
                "Incomplete: size limits left out {} (see report.notShown)",
                plural(r.not_shown.xid_lines as usize, "XID line")
            ));
        }
        let formats: Vec<String> = r.input.formats.iter().map(|f| format!("{} ({})", f.label, f.lines)).collect();
        let mut read = format!("Read {} ({} bytes)", plural(r.input.lines as usize, "line"), r.input.bytes);
        if !formats.is_empty() {
            read.push_str(&format!("; driver-line prefixes: {}", formats.join(", ")));
        }
        lines.push(read);
        lines
    }
}

/// "GPU 3 (0000:3b:00.0)" when the index is known, else the PCI bus id.
fn gpu_label(g: &GpuReport) -> String {
    match g.index {
        Some(i) => format!("GPU {i} ({})", g.pci_bus_id),
        None => g.pci_bus_id.clone(),
    }
}

/// What the cluster knows about the log's GPUs, the GPUs that need the most urgent action first.
fn join_highlights(node: &NodeJoin, report: &LogReport) -> Vec<String> {
    if !node.has_status {
        return vec![format!(
            "Node {} has no GpuNodeStatus (no probe reports for it): the cluster knows nothing about its GPUs",
            node.name
        )];
    }
    let urgency = |g: &GpuJoin| {
        let r = report.gpus.iter().find(|r| r.pci_bus_id == g.pci_bus_id);
        r.and_then(|r| r.xids.first()).map(|x| x.verdict.urgency())
    };
    let mut gpus: Vec<&GpuJoin> = node.gpus.iter().collect();
    // Stable: equally urgent GPUs stay in PCI order.
    gpus.sort_by_key(|g| std::cmp::Reverse(urgency(g)));
    let mut lines = Vec::new();
    for g in gpus {
        let gpu = match g.index {
            Some(i) => format!("GPU {i} ({})", g.pci_bus_id),
            None => g.pci_bus_id.clone(),
        };
        if g.index.is_none() && g.uuid.is_none() {
            lines.push(format!(
                "{gpu} is not a GPU of {} as the cluster knows it: is the log from this node?",
                node.name
            ));
            continue;
        }
        let now = if g.current_reasons.is_empty() {
            g.current_health.to_string()
        } else {
            format!("{} ({})", g.current_health, g.current_reasons.join(", "))
        };
        for x in &g.xids {
            lines.push(match (x.cluster_count, &x.cluster_last_seen) {
                (Some(n), Some(last)) => format!(
                    "The cluster already recorded XID {} on {gpu} ({}, last {last}); its verdict now: {now}",
                    x.code,
                    plural(n as usize, "time")
                ),
                _ if x.cluster_knows => {
                    format!("The cluster already recorded XID {} on {gpu}; its verdict now: {now}", x.code)
                }
                _ => format!(
                    "The cluster has no record of XID {} on {gpu} (the probe missed it, or it is older than the \
                     node's XID history); its verdict now: {now}",
                    x.code
                ),
            });
        }
    }
    lines
}

/// The answer for a log analysed alone, with no cluster: what the CLI's `--output json` prints.
pub fn alone(report: LogReport) -> KernelLogAnalysis {
    let verdict = verdict_line(&report);
    let action = action_line(&report, None);
    KernelLogAnalysis { verdict, action, cluster: None, node: None, report }
}

/// Check the arguments and analyse the text; `snap` is the cluster to join `node_name` with (the server passes
/// one only when node_name is given).
pub fn answer(snap: Option<&Snapshot>, args: &KernelLogArgs) -> Result<KernelLogAnalysis, ToolError> {
    check_text(&args.text)?;
    let Some(node_name) = args.node_name.as_deref() else {
        if args.cluster.is_some() {
            return Err(ToolError::invalid(
                "cluster",
                "only says where node_name is looked up; pass node_name too, or omit cluster to analyse the log alone",
            ));
        }
        return Ok(alone(run(&args.text, AnalyzeOptions::default())?));
    };
    let snap = snap.ok_or(ToolError::NoCluster)?;
    let node = snap.require_node(node_name)?;
    let whole = node.unpack()?;
    let status = whole.as_ref().and_then(|o| o.status.as_ref());
    let options = AnalyzeOptions { known_gpus: status.map(known_gpus).unwrap_or_default(), ..Default::default() };
    let report = run(&args.text, options)?;
    let join = join(&node, whole.as_ref(), &report);
    let verdict = verdict_line(&report);
    let action = action_line(&report, Some(&join.name));
    Ok(KernelLogAnalysis { verdict, action, cluster: Some(snap.cluster().to_string()), node: Some(join), report })
}

fn check_text(text: &str) -> Result<(), ToolError> {
    if text.len() > MAX_TEXT_BYTES {
        return Err(ToolError::invalid(
            "text",
            format!(
                "is {} bytes; this tool analyses at most {MAX_TEXT_BYTES} bytes (8 MiB) at once. Paste the most \
                 recent part of the log, or run `gpuscope-mcp analyze-log FILE` on the file, which streams any size.",
                text.len()
            ),
        ));
    }
    if text.trim().is_empty() {
        return Err(ToolError::invalid(
            "text",
            "is empty; paste the kernel log (`dmesg -T`, `journalctl -k`, a syslog file, or the lines from a chat)",
        ));
    }
    Ok(())
}

fn run(text: &str, options: AnalyzeOptions) -> Result<LogReport, ToolError> {
    gpuscope_log_analysis::analyze(text.as_bytes(), options).map_err(|e| match e {
        AnalyzeError::TooLarge { .. } => ToolError::invalid("text", e.to_string()),
        AnalyzeError::Io(_) => ToolError::Internal(e.to_string()),
    })
}

/// "Unhealthy: reboot node: XID 79 on 0000:3b:00.0", the first line the CLI prints too.
fn verdict_line(report: &LogReport) -> String {
    format!("{}: {}", report.summary.health, report.summary.headline)
}

/// The first action with where it applies and NVIDIA's advice for the code that decided.
fn action_line(report: &LogReport, node: Option<&str>) -> String {
    let s = &report.summary;
    let Some(first) = &s.first else {
        return if s.xid_lines == 0 {
            "None needed.".to_string()
        } else {
            "None needed for the GPUs: no XID in the log escalates under the operator's rules (report.gpus explains \
             each code)."
                .to_string()
        };
    };
    let gpu = report.gpus.iter().find(|g| g.pci_bus_id == first.pci_bus_id);
    let mut target = match gpu.and_then(|g| g.index) {
        Some(i) => format!("GPU {i} at {}", first.pci_bus_id),
        None => format!("the GPU at {}", first.pci_bus_id),
    };
    if let Some(uuid) = &first.uuid {
        target.push_str(&format!(" ({uuid})"));
    }
    let place = match node {
        Some(n) => format!("node {n}"),
        None => "the node that wrote this log".to_string(),
    };
    let mut text = format!("{}: XID {} on {target} of {place}.", capitalise(first.action.label()), first.code);
    // For a code the catalog does not list, its advice says where to look it up.
    if let Some(entry) = report.catalog.iter().find(|c| c.code == first.code) {
        text.push(' ');
        text.push_str(&entry.recommended_action);
    }
    text
}

fn capitalise(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(c) => c.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// What the node's status says about its GPUs, by PCI bus id: the probe's inventory, plus GPUs only the XID history
/// names (a GPU that fell off the bus is gone from NVML's inventory, but its XIDs keep its address and UUID).
fn known_gpus(status: &GpuNodeStatusStatus) -> BTreeMap<PciBusId, KnownGpu> {
    let mut known = BTreeMap::new();
    for g in status.gpus.iter().flatten() {
        if let Some(pci) = g.pci_bus_id.as_deref().and_then(|p| PciBusId::parse(p).ok()) {
            known.insert(pci, KnownGpu { uuid: Some(g.uuid.clone()), index: Some(g.index) });
        }
    }
    let verdicts = status.verdicts.as_deref().unwrap_or(&[]);
    if let Some(xids) = &status.xids {
        let named = xids
            .totals
            .iter()
            .map(|t| (t.pci_bus_id.as_str(), t.gpu_uuid.as_deref()))
            .chain(xids.recent.iter().map(|e| (e.pci_bus_id.as_str(), e.gpu_uuid.as_deref())));
        for (pci, uuid) in named {
            let (Ok(pci), Some(uuid)) = (PciBusId::parse(pci), uuid) else { continue };
            known.entry(pci).or_insert_with(|| KnownGpu {
                uuid: Some(uuid.to_string()),
                index: verdicts.iter().find(|v| v.uuid == uuid).and_then(|v| v.index),
            });
        }
    }
    known
}

fn same_gpu(pci: Option<PciBusId>, text: &str) -> bool {
    pci.is_some_and(|p| PciBusId::parse(text).ok() == Some(p))
}

fn join(node: &NodeRef, object: Option<&GpuNodeStatus>, report: &LogReport) -> NodeJoin {
    let status = object.and_then(|o| o.status.as_ref());
    let known = status.map(known_gpus).unwrap_or_default();
    let verdicts = status.and_then(|s| s.verdicts.as_deref()).unwrap_or(&[]);
    let xids = status.and_then(|s| s.xids.as_ref());
    let gpus: Vec<GpuJoin> = report
        .gpus
        .iter()
        .map(|g| {
            let pci = PciBusId::parse(&g.pci_bus_id).ok();
            let cluster_gpu = pci.and_then(|p| known.get(&p));
            let uuid = cluster_gpu.and_then(|k| k.uuid.clone());
            let verdict = verdicts.iter().find(|v| Some(v.uuid.as_str()) == uuid.as_deref());
            let in_inventory = status
                .and_then(|s| s.gpus.as_deref())
                .is_some_and(|infos| infos.iter().any(|i| i.pci_bus_id.as_deref().is_some_and(|p| same_gpu(pci, p))));
            let codes = g
                .xids
                .iter()
                .map(|x| {
                    let total = xids
                        .into_iter()
                        .flat_map(|h| &h.totals)
                        .filter(|t| t.code == x.code && same_gpu(pci, &t.pci_bus_id))
                        .max_by(|a, b| a.last_seen.cmp(&b.last_seen));
                    let event = xids
                        .into_iter()
                        .flat_map(|h| &h.recent)
                        .find(|e| e.code == x.code && same_gpu(pci, &e.pci_bus_id));
                    XidKnown {
                        code: x.code,
                        log_count: x.count,
                        cluster_knows: total.is_some() || event.is_some(),
                        cluster_count: total.map(|t| t.count),
                        cluster_last_seen: total
                            .map(|t| rfc3339(&t.last_seen))
                            .or_else(|| event.map(|e| rfc3339(&e.time))),
                    }
                })
                .collect();
            GpuJoin {
                pci_bus_id: g.pci_bus_id.clone(),
                index: cluster_gpu.and_then(|k| k.index),
                uuid,
                in_inventory,
                current_health: verdict.map(|v| v.health).unwrap_or(Health::Unknown),
                current_reasons: verdict.map(|v| v.reasons.clone()).unwrap_or_default(),
                xids: codes,
            }
        })
        .collect();
    let pairs = gpus.iter().flat_map(|g| &g.xids);
    let xids_already_known = pairs.clone().filter(|x| x.cluster_knows).count();
    let xids_not_known = pairs.count() - xids_already_known;
    NodeJoin {
        name: node.name.clone(),
        has_status: status.is_some(),
        health: node_health(node.facts()),
        xids_already_known,
        xids_not_known,
        gpus,
    }
}

#[cfg(test)]
mod tests {
    use gpuscope_crds::health::reason;
    use gpuscope_crds::xid::rules::GpuAction;

    use super::*;
    use crate::gpu_resources::fixtures::node;
    use crate::snapshot::fixtures::snapshot;
    use crate::status_fixtures::{healthy, pci, uuid, with_verdict, with_xid};

    /// GPU 3 of the fixtures sits at 0000:13:00.0.
    const XID79_ON_GPU3: &str = "[Mon Aug  5 03:54:13 2024] NVRM: Xid (PCI:0000:13:00): 79, pid=1234, name=python3, \
                                 GPU has fallen off the bus.\n";

    fn args(text: &str, node_name: Option<&str>) -> KernelLogArgs {
        KernelLogArgs { text: text.to_string(), node_name: node_name.map(str::to_string), cluster: None }
    }

    /// gpu-a: 8 GPUs, GPU 3 Unhealthy after an XID 79 the probe recorded; gpu-b: a Node only.
    fn cluster() -> Snapshot {
        let sick = with_xid(
            with_verdict(healthy("gpu-a", 8), 3, Health::Unhealthy, &[reason::XID_FALLEN_OFF_BUS], ""),
            3,
            79,
            1,
            "2026-11-25T11:00:00Z",
            "2026-11-25T11:00:00Z",
        );
        snapshot(vec![sick], vec![node("gpu-a", 8), node("gpu-b", 8)], vec![])
    }

    #[test]
    fn a_log_alone_leads_with_the_worst_verdict_and_the_first_action() {
        let a = answer(None, &args(XID79_ON_GPU3, None)).expect("analysis");
        assert_eq!(a.verdict, "Unhealthy: reboot node: XID 79 on 0000:13:00.0");
        assert!(
            a.action.starts_with("Reboot node: XID 79 on the GPU at 0000:13:00.0 of the node that wrote this log."),
            "{}",
            a.action
        );
        assert_eq!((a.cluster.as_deref(), a.node.as_ref()), (None, None));
        assert_eq!(a.report.summary.action, GpuAction::RebootNode);
        assert_eq!(a.report.gpus[0].xids[0].last_process.as_ref().and_then(|p| p.pid), Some(1234));
        assert_eq!(a, alone(a.report.clone()), "the CLI's JSON is the same answer");
        let summary = crate::answer::summary(&a);
        assert!(summary.contains("- 0000:13:00.0: Unhealthy (XidFallenOffBus), reboot node: XID 79 x1"), "{summary}");
    }

    #[test]
    fn a_log_without_xids_needs_nothing() {
        let a = answer(None, &args("[    5.0] nvidia: loading out-of-tree module taints kernel.\n", None))
            .expect("analysis");
        assert_eq!(a.verdict, "Healthy: no action: no NVIDIA XID in this log");
        assert_eq!(a.action, "None needed.");
        let a = answer(None, &args("NVRM: Xid (PCI:0000:3b:00): 13, pid=1, name=a, Graphics Exception\n", None))
            .expect("analysis");
        assert!(a.action.starts_with("None needed for the GPUs"), "{}", a.action);
    }

    #[test]
    fn node_name_joins_the_gpu_index_uuid_and_what_the_cluster_already_knows() {
        let log = format!("{XID79_ON_GPU3}NVRM: Xid (PCI:0000:10:00): 13, pid=7, name=train, Graphics Exception\n");
        let a = answer(Some(&cluster()), &args(&log, Some("gpu-a"))).expect("analysis");
        assert_eq!(a.cluster.as_deref(), Some("test"));
        let gpu3 = a.report.gpus.iter().find(|g| g.pci_bus_id == pci(3)).expect("GPU 3 in the report");
        assert_eq!((gpu3.index, gpu3.uuid.clone()), (Some(3), Some(uuid("gpu-a", 3))));
        let node = a.node.as_ref().expect("joined");
        assert_eq!((node.name.as_str(), node.health, node.has_status), ("gpu-a", Health::Unhealthy, true));
        assert_eq!((node.xids_already_known, node.xids_not_known), (1, 1));
        let j3 = node.gpus.iter().find(|g| g.pci_bus_id == pci(3)).expect("GPU 3 joined");
        assert_eq!(j3.index, Some(3));
        assert_eq!(j3.current_health, Health::Unhealthy);
        assert_eq!(j3.current_reasons, [reason::XID_FALLEN_OFF_BUS]);
        assert_eq!(
            j3.xids,
            [XidKnown {
                code: 79,
                log_count: 1,
                cluster_knows: true,
                cluster_count: Some(1),
                cluster_last_seen: Some("2026-11-25T11:00:00Z".into())
            }]
        );
        let j0 = node.gpus.iter().find(|g| g.pci_bus_id == pci(0)).expect("GPU 0 joined");
        assert_eq!((j0.index, j0.current_health, j0.xids[0].cluster_knows), (Some(0), Health::Healthy, false));
        assert!(
            a.action.starts_with(&format!(
                "Reboot node: XID 79 on GPU 3 at {} ({}) of node gpu-a.",
                pci(3),
                uuid("gpu-a", 3)
            )),
            "{}",
            a.action
        );
        let summary = crate::answer::summary(&a);
        assert!(summary.contains("The cluster already recorded XID 79 on GPU 3 (0000:13:00.0) (1 time, last 2026-11-25T11:00:00Z); its verdict now: Unhealthy (XidFallenOffBus)"), "{summary}");
        let unknown_13 = summary.find("The cluster has no record of XID 13 on GPU 0").expect("XID 13 line");
        assert!(
            summary.find("already recorded XID 79").is_some_and(|known| known < unknown_13),
            "the GPU to reboot first: {summary}"
        );
    }

    #[test]
    fn a_gpu_gone_from_the_inventory_is_still_named_by_the_xid_history() {
        let mut o = with_xid(healthy("gpu-a", 8), 3, 79, 1, "2026-11-25T11:00:00Z", "2026-11-25T11:00:00Z");
        // NVML lost GPU 3 after it fell off the bus; the operator's verdict keeps its index.
        if let Some(gpus) = o.status.as_mut().and_then(|s| s.gpus.as_mut()) {
            gpus.retain(|g| g.index != 3);
        }
        let snap = snapshot(vec![o], vec![], vec![]);
        let a = answer(Some(&snap), &args(XID79_ON_GPU3, Some("gpu-a"))).expect("analysis");
        let j = &a.node.as_ref().expect("joined").gpus[0];
        assert_eq!((j.index, j.uuid.clone(), j.in_inventory), (Some(3), Some(uuid("gpu-a", 3)), false));
        assert!(j.xids[0].cluster_knows);
    }

    #[test]
    fn a_gpu_the_node_does_not_have_is_flagged() {
        let a = answer(Some(&cluster()), &args("NVRM: Xid (PCI:0000:86:00): 48, DBE\n", Some("gpu-a"))).expect("ok");
        let j = &a.node.as_ref().expect("joined").gpus[0];
        assert_eq!((j.index, j.in_inventory, j.current_health), (None, false, Health::Unknown));
        let summary = crate::answer::summary(&a);
        assert!(summary.contains("0000:86:00.0 is not a GPU of gpu-a as the cluster knows it"), "{summary}");
        // A Node with GPUs but no GpuNodeStatus joins with nothing known.
        let b = answer(Some(&cluster()), &args(XID79_ON_GPU3, Some("gpu-b"))).expect("ok");
        let node = b.node.expect("joined");
        assert_eq!((node.has_status, node.health, node.xids_not_known), (false, Health::Unknown, 1));
    }

    #[test]
    fn bad_arguments_are_tool_errors_that_say_what_to_do() {
        let e = answer(Some(&cluster()), &args(XID79_ON_GPU3, Some("gpu-c"))).expect_err("unknown node");
        assert!(e.to_string().contains("Did you mean: gpu-a, gpu-b?"), "{e}");
        assert_eq!(answer(None, &args(XID79_ON_GPU3, Some("gpu-a"))).err(), Some(ToolError::NoCluster));
        let e = answer(None, &args("  \n", None)).expect_err("empty").to_string();
        assert!(e.starts_with("invalid argument `text`: is empty"), "{e}");
        let mut with_cluster = args(XID79_ON_GPU3, None);
        with_cluster.cluster = Some("prod".into());
        let e = answer(None, &with_cluster).expect_err("cluster without node").to_string();
        assert!(e.contains("pass node_name too"), "{e}");
    }

    #[test]
    fn text_above_8_mib_is_refused_naming_the_limit() {
        let big = "x".repeat(MAX_TEXT_BYTES + 1);
        let e = answer(None, &args(&big, None)).expect_err("too large").to_string();
        assert_eq!(
            e,
            "invalid argument `text`: is 8388609 bytes; this tool analyses at most 8388608 bytes (8 MiB) at once. \
             Paste the most recent part of the log, or run `gpuscope-mcp analyze-log FILE` on the file, which \
             streams any size."
        );
        let just = format!("{XID79_ON_GPU3}{}", "y".repeat(MAX_TEXT_BYTES - XID79_ON_GPU3.len()));
        assert_eq!(answer(None, &args(&just, None)).map(|a| a.report.input.bytes), Ok(MAX_TEXT_BYTES as u64));
    }
}
