//! `explain_pod_gpu_failure`: "my job died at 03:12 — was it the GPU?". Finds the GPUs the pod held (the probe's
//! pod-resources binding, and the XIDs the probe attributed to the pod, which outlive it), the XIDs on them in a
//! window around the container's termination, and answers with a verdict first:
//!
//! - `hardware`: an XID on one of its GPUs whose class is not the application's (GPU memory, PCIe bus, NVLink,
//!   driver/firmware) or whose severity is critical, or the operator judged one of its GPUs Unhealthy before the
//!   window ended (fell off the bus, ECC, row remap failure, a recovery action);
//! - `likely application`: only application-class XIDs (13, 31, 43: NVIDIA's RESTART_APP family);
//! - `no GPU evidence`: nothing on its GPUs in the window (informational XIDs alone, e.g. 45, do not count).
//!
//! The rule ([`judge`]) is a pure function of the evidence; the rest gathers it from the cache.

use std::collections::BTreeSet;

use gpuscope_crds::Health;
use gpuscope_crds::gpu_node_status::{PodRef, XidHistory};
use gpuscope_crds::xid::{self, Severity, XidClass};
use jiff::{SignedDuration, Timestamp};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::answer::Answer;
use crate::args;
use crate::cached::CachedPod;
use crate::error::{ToolError, check_name_len};
use crate::matching::{MAX_SUGGESTIONS, close_matches};
use crate::snapshot::Snapshot;
use crate::status_facts::StatusFacts;
use crate::time::human_duration;
use crate::xid_view::{XidMeaning, meaning};

/// How far before a termination XIDs count, unless `since` says otherwise.
const BEFORE_TERMINATION: SignedDuration = SignedDuration::from_mins(10);
/// How far after a termination XIDs count: the driver may log the fault after the process died.
const AFTER_TERMINATION: SignedDuration = SignedDuration::from_mins(2);
/// The window for a pod without a termination (running, or gone without a trace of its end).
const NO_TERMINATION_WINDOW: SignedDuration = SignedDuration::from_hours(24);
/// Most XIDs listed (newest first); counts cover all.
const MAX_XIDS: usize = 12;
/// Most other pods listed.
const MAX_OTHERS: usize = 10;

/// Arguments of `explain_pod_gpu_failure`.
#[derive(Clone, Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PodFailureArgs {
    /// The pod's namespace.
    pub namespace: String,
    /// The pod's name (it may be gone: the probe's XID records keep it).
    pub pod: String,
    /// How far before the pod's termination to look ('30m', '2h') or an RFC 3339 time; default 10 minutes
    /// before the termination (the last 24 hours for a pod that has not terminated).
    pub since: Option<String>,
    /// Cluster (kubeconfig context) to ask; omit for the default (first) cluster.
    pub cluster: Option<String>,
}

/// The verdict on a pod's failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, JsonSchema)]
pub enum Finding {
    /// A GPU fault on one of its GPUs in the window.
    #[serde(rename = "hardware")]
    Hardware,
    /// Only application-class XIDs on its GPUs.
    #[serde(rename = "likely application")]
    LikelyApplication,
    /// No GPU error on its GPUs in the window.
    #[serde(rename = "no GPU evidence")]
    NoGpuEvidence,
}

/// The answer.
#[derive(Clone, Debug, PartialEq, Serialize, JsonSchema)]
pub struct PodFailure {
    /// The finding and its main evidence, in one line.
    pub verdict: String,
    /// What to do first.
    pub action: String,
    /// Cluster answered for.
    pub cluster: String,
    /// hardware, likely application, or no GPU evidence.
    pub finding: Finding,
    /// The pod as the cache (or, once it is gone, the XID records) knows it.
    pub pod: PodView,
    /// The window XIDs were looked for in.
    pub window: WindowView,
    /// The GPUs it held and how that is known.
    pub gpus: Vec<HeldGpu>,
    /// XIDs on those GPUs in the window, newest first (at most 12).
    pub xids: Vec<PodXid>,
    /// What each code listed means and what NVIDIA says to do, once per code.
    pub meanings: Vec<XidMeaning>,
    /// Other pods the same XIDs hit ("namespace/name"), at most 10.
    pub other_pods_hit: Vec<String>,
    /// Caveats: how the GPUs were found, what the window is, what is missing.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

/// The pod.
#[derive(Clone, Debug, Default, PartialEq, Serialize, JsonSchema)]
pub struct PodView {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// Whether it still exists (false: explained from the XID records alone).
    pub exists: bool,
    /// UID, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
    /// Node it ran on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// Phase.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    /// Its controller, e.g. "Job/train".
    #[serde(skip_serializing_if = "Option::is_none")]
    pub controller: Option<String>,
    /// Container restarts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub restarts: Option<u32>,
    /// The newest container termination.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub termination: Option<TerminationView>,
}

/// How a container ended.
#[derive(Clone, Debug, PartialEq, Serialize, JsonSchema)]
pub struct TerminationView {
    /// Container.
    pub container: String,
    /// Exit code.
    pub exit_code: i32,
    /// The kubelet's reason (Error, OOMKilled, ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// When it ended.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
}

/// The window.
#[derive(Clone, Debug, PartialEq, Serialize, JsonSchema)]
pub struct WindowView {
    /// Start (RFC 3339).
    pub from: String,
    /// End (RFC 3339).
    pub to: String,
    /// What it is centred on: "termination" or "now".
    pub around: String,
}

/// A GPU the pod held.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, JsonSchema)]
pub struct HeldGpu {
    /// Node.
    pub node: String,
    /// NVML index.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub index: Option<u32>,
    /// UUID.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uuid: Option<String>,
    /// The operator's verdict on it now.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub health: Option<Health>,
    /// How it is known: "bound now" (the kubelet's binding), "XID attribution" (the probe recorded the pod on an
    /// XID), or "node" (binding unknown: every GPU of its node counts).
    pub known_from: String,
}

/// One XID that bears on the pod.
#[derive(Clone, Debug, PartialEq, Serialize, JsonSchema)]
pub struct PodXid {
    /// XID code.
    pub code: u32,
    /// NVIDIA's mnemonic.
    pub mnemonic: String,
    /// hardware, application or informational: how it counts for the finding.
    pub evidence: String,
    /// Node.
    pub node: String,
    /// GPU index, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gpu: Option<u32>,
    /// When (RFC 3339; the newest occurrence for a coalesced total).
    pub time: String,
    /// Relative to the termination ("4s before termination") or to now.
    pub when: String,
    /// Occurrences this row stands for (1 for a raw event).
    pub count: u64,
    /// The probe recorded this pod as holding the GPU when it arrived.
    pub attributed: bool,
}

impl Answer for PodFailure {
    fn verdict(&self) -> &str {
        &self.verdict
    }
    fn action(&self) -> &str {
        &self.action
    }
    fn highlights(&self) -> Vec<String> {
        self.xids
            .iter()
            .take(5)
            .map(|x| format!("XID {} ({}) on {} GPU {:?}, {}", x.code, x.mnemonic, x.node, x.gpu, x.when))
            .collect()
    }
}

/// How an XID counts for the finding.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Evidence {
    /// Says nothing either way (informational, sympathetic).
    Informational,
    /// The application faulted.
    Application,
    /// The GPU faulted.
    Hardware,
}

impl Evidence {
    /// How XID `code` counts, from the catalog: critical or not the application's class is hardware; the
    /// application class is the application; informational is neither.
    pub fn of(code: u32) -> Evidence {
        let info = xid::lookup(code);
        match (info.class, info.severity) {
            (_, Severity::Critical) => Evidence::Hardware,
            (XidClass::Application, _) => Evidence::Application,
            (XidClass::Informational, _) => Evidence::Informational,
            _ => Evidence::Hardware,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Evidence::Informational => "informational",
            Evidence::Application => "application",
            Evidence::Hardware => "hardware",
        }
    }
}

/// The finding for XIDs of `codes` on the pod's GPUs in the window, and whether one of its GPUs was judged
/// Unhealthy before the window ended.
pub fn judge(codes: &[u32], gpu_unhealthy: bool) -> Finding {
    let worst = codes.iter().map(|c| Evidence::of(*c)).max();
    match (worst, gpu_unhealthy) {
        (Some(Evidence::Hardware), _) | (_, true) => Finding::Hardware,
        (Some(Evidence::Application), false) => Finding::LikelyApplication,
        _ => Finding::NoGpuEvidence,
    }
}

/// Answer `explain_pod_gpu_failure`.
pub fn answer(snap: &Snapshot, args: &PodFailureArgs) -> Result<PodFailure, ToolError> {
    let (ns, name) = (args.namespace.trim(), args.pod.trim());
    if ns.is_empty() {
        return Err(ToolError::invalid("namespace", "is empty; give the pod's namespace"));
    }
    if name.is_empty() {
        return Err(ToolError::invalid("pod", "is empty; give the pod's name"));
    }
    check_name_len("namespace", ns)?;
    check_name_len("pod", name)?;
    let key = format!("{ns}/{name}");
    let cached = snap.gpu_pods().into_iter().find(|p| p.namespace == ns && p.name == name);
    let uid = cached.as_ref().and_then(|p| p.uid.clone());
    let same_pod =
        |p: &PodRef| p.namespace == ns && p.name == name && (uid.is_none() || p.uid.is_none() || p.uid == uid);

    // Nodes to look at: its own, and any whose XID records name it (it may be gone, or have moved).
    let mut nodes: BTreeSet<String> = cached.as_ref().and_then(|p| p.node_name.clone()).into_iter().collect();
    for status in snap.statuses() {
        if status.facts.xids.as_deref().is_some_and(|x| names_pod(x, &same_pod)) {
            nodes.insert(status.name.clone());
        }
    }
    if cached.is_none() && nodes.is_empty() {
        return Err(unknown_pod(snap, ns, name));
    }

    let termination = cached.as_ref().and_then(|p| p.terminations.first().cloned());
    let end = termination.as_ref().and_then(|t| t.finished_at.as_ref()).map(|t| t.0);
    let since = args::since(args.since.as_deref(), end.unwrap_or_else(|| snap.now()))?;
    let (from, to, around) = match end {
        Some(t) => (
            since.map_or_else(|| t.checked_sub(BEFORE_TERMINATION).unwrap_or(t), |w| w.start),
            t.checked_add(AFTER_TERMINATION).unwrap_or(t),
            "termination",
        ),
        None => (
            since.map_or_else(|| snap.now().checked_sub(NO_TERMINATION_WINDOW).unwrap_or(snap.now()), |w| w.start),
            snap.now(),
            "now",
        ),
    };

    let mut gpus: Vec<HeldGpu> = Vec::new();
    let mut rows: Vec<(Timestamp, PodXid)> = Vec::new();
    let mut others: BTreeSet<String> = BTreeSet::new();
    let mut notes = Vec::new();
    let mut unhealthy_before_end = false;
    for node in &nodes {
        let Some(status) = snap.status(node) else {
            notes.push(format!("node {node} has no GpuNodeStatus: no probe reports it"));
            continue;
        };
        let facts = &status.facts;
        let held = held_gpus(facts, node, &key, &same_pod);
        let binding_unknown = held.is_empty() && cached.as_ref().and_then(|p| p.node_name.as_deref()) == Some(node);
        let node_gpus: Vec<HeldGpu> = if binding_unknown {
            notes.push(format!(
                "the probe on {node} reports no GPU binding for this pod (pod-resources not read, or the pod held no \
                 GPU there): XIDs on every GPU of {node} are considered"
            ));
            facts
                .gpus
                .iter()
                .map(|g| HeldGpu {
                    node: node.clone(),
                    index: g.index,
                    uuid: Some(g.uuid.to_string()),
                    health: g.health,
                    known_from: "node".into(),
                })
                .collect()
        } else {
            held
        };
        let holds = |uuid: Option<&str>, pci: &str| {
            node_gpus.iter().any(|g| {
                g.uuid.as_deref().is_some_and(|u| Some(u) == uuid)
                    || facts.gpus.iter().any(|f| {
                        Some(&*f.uuid) == g.uuid.as_deref()
                            && f.pci_bus_id.as_deref().is_some_and(|p| p.eq_ignore_ascii_case(pci))
                    })
            })
        };
        if let Some(history) = facts.xids.as_deref() {
            collect_xids(history, facts, node, (from, to), end, snap.now(), &holds, &same_pod, &mut rows, &mut others);
        }
        let condition_before_end = facts.gpu_healthy.as_ref().is_some_and(|c| c.since.0 <= to);
        unhealthy_before_end |= condition_before_end
            && node_gpus.iter().any(|g| g.health == Some(Health::Unhealthy) && g.known_from != "node");
        gpus.extend(node_gpus);
    }
    gpus.sort();
    gpus.dedup();
    rows.sort_by_key(|r| std::cmp::Reverse(r.0));
    let codes: Vec<u32> = rows.iter().map(|(_, x)| x.code).collect();
    let finding = judge(&codes, unhealthy_before_end);
    let total_rows = rows.len();
    let xids: Vec<PodXid> = rows.into_iter().map(|(_, x)| x).take(MAX_XIDS).collect();
    if total_rows > MAX_XIDS {
        notes.push(format!("{} more XIDs in the window are not listed", total_rows - MAX_XIDS));
    }
    let mut seen = BTreeSet::new();
    let meanings: Vec<XidMeaning> =
        xids.iter().filter(|x| seen.insert(x.code)).map(|x| meaning(x.code)).take(6).collect();
    let other_pods_hit: Vec<String> = others.into_iter().filter(|k| *k != key).take(MAX_OTHERS).collect();
    if gpus.is_empty() {
        notes.push("no GPU of this pod is known: the probe recorded no binding and no XID naming it".into());
    }

    let pod = pod_view(ns, name, cached.as_deref(), &nodes, termination);
    let workload = pod.controller.clone().unwrap_or_else(|| format!("pod {key}"));
    let lead = xids.iter().find(|x| Evidence::of(x.code) == Evidence::Hardware).or(xids.first());
    let (verdict, action) = match (finding, lead) {
        (Finding::Hardware, Some(x)) => (
            format!(
                "hardware: XID {} ({}) on {} GPU {}, {}; it hit {key}{}.",
                x.code,
                x.mnemonic,
                x.node,
                x.gpu.map_or("?".to_string(), |g| g.to_string()),
                x.when,
                exit_note(&pod)
            ),
            format!(
                "Rerun {workload} on other GPUs: the failure was the GPU's. For {}: {}",
                x.node,
                first_sentence(xid::lookup(x.code).recommended_action)
            ),
        ),
        (Finding::Hardware, None) => (
            format!("hardware: one of {key}'s GPUs was judged Unhealthy before it ended{}.", exit_note(&pod)),
            format!("Rerun {workload} on other GPUs; see get_gpu_health for the GPU's verdict and action."),
        ),
        (Finding::LikelyApplication, Some(x)) => (
            format!(
                "likely application: only application-class XIDs (XID {} {}, {}) on {key}'s GPUs{}.",
                x.code,
                x.mnemonic,
                x.when,
                exit_note(&pod)
            ),
            format!(
                "Debug {workload}'s code or CUDA version before rerunning; the GPU stays usable (NVIDIA: {}).",
                xid::lookup(x.code).immediate_action
            ),
        ),
        _ => (
            format!("no GPU evidence: no GPU error on {key}'s GPUs {}{}.", window_phrase(around), exit_note(&pod)),
            "Look at the container's logs and exit code: the GPUs it held logged no XID then.".to_string(),
        ),
    };
    Ok(PodFailure {
        verdict,
        action,
        cluster: snap.cluster().to_string(),
        finding,
        pod,
        window: WindowView { from: from.to_string(), to: to.to_string(), around: around.into() },
        gpus,
        xids,
        meanings,
        other_pods_hit,
        notes,
    })
}

fn window_phrase(around: &str) -> &'static str {
    if around == "termination" { "around its termination" } else { "in the window" }
}

fn exit_note(pod: &PodView) -> String {
    match &pod.termination {
        Some(t) => format!(
            " (container {} exited {}{})",
            t.container,
            t.exit_code,
            t.reason.as_deref().map(|r| format!(", {r}")).unwrap_or_default()
        ),
        None => String::new(),
    }
}

fn first_sentence(text: &str) -> &str {
    text.find(". ").map_or(text, |i| &text[..=i])
}

/// The GPU an XID record names (PCI bus id, maybe UUID): from the inventory, or from the operator's verdicts for a
/// GPU gone from it (fell off the bus), which still carry its index.
fn gpu_of(facts: &StatusFacts, pci_bus_id: &str, uuid: Option<&str>) -> crate::tools::common::GpuRef {
    let mut gpu = crate::tools::common::gpu_at(facts, pci_bus_id, uuid);
    if gpu.index.is_none()
        && let Some(known) = facts.gpus.iter().find(|g| gpu.uuid.as_deref() == Some(&*g.uuid))
    {
        gpu.index = known.index;
    }
    gpu
}

/// Whether any XID record of `history` names the pod.
fn names_pod(history: &XidHistory, same_pod: &impl Fn(&PodRef) -> bool) -> bool {
    history.recent.iter().flat_map(|e| e.pods.iter().flatten()).any(same_pod)
        || history.totals.iter().flat_map(|t| t.pods.iter().flatten()).any(same_pod)
}

/// The GPUs of `node` the pod holds now (binding) or held when an XID arrived (attribution).
fn held_gpus(facts: &StatusFacts, node: &str, key: &str, same_pod: &impl Fn(&PodRef) -> bool) -> Vec<HeldGpu> {
    let mut held: Vec<HeldGpu> = facts
        .gpus
        .iter()
        .filter(|g| g.pods.iter().any(|p| &**p == key))
        .map(|g| HeldGpu {
            node: node.to_string(),
            index: g.index,
            uuid: Some(g.uuid.to_string()),
            health: g.health,
            known_from: "bound now".into(),
        })
        .collect();
    if let Some(history) = facts.xids.as_deref() {
        let attributed = history
            .recent
            .iter()
            .filter(|e| e.pods.iter().flatten().any(same_pod))
            .map(|e| (e.pci_bus_id.as_str(), e.gpu_uuid.as_deref()))
            .chain(
                history
                    .totals
                    .iter()
                    .filter(|t| t.pods.iter().flatten().any(same_pod))
                    .map(|t| (t.pci_bus_id.as_str(), t.gpu_uuid.as_deref())),
            );
        for (pci, uuid) in attributed {
            let gpu = gpu_of(facts, pci, uuid);
            if held.iter().any(|h| h.uuid.is_some() && h.uuid == gpu.uuid) {
                continue;
            }
            let health = facts.gpus.iter().find(|g| Some(g.uuid.to_string()) == gpu.uuid).and_then(|g| g.health);
            held.push(HeldGpu {
                node: node.to_string(),
                index: gpu.index,
                uuid: gpu.uuid,
                health,
                known_from: "XID attribution".into(),
            });
        }
    }
    held
}

/// The XIDs of `history` on the pod's GPUs (or attributed to it) inside `window`: raw events, then totals for
/// codes whose events the ring no longer holds.
#[allow(clippy::too_many_arguments)]
fn collect_xids(
    history: &XidHistory,
    facts: &StatusFacts,
    node: &str,
    window: (Timestamp, Timestamp),
    end: Option<Timestamp>,
    now: Timestamp,
    holds: &impl Fn(Option<&str>, &str) -> bool,
    same_pod: &impl Fn(&PodRef) -> bool,
    rows: &mut Vec<(Timestamp, PodXid)>,
    others: &mut BTreeSet<String>,
) {
    let inside = |t: Timestamp| window.0 <= t && t <= window.1;
    let mut listed: BTreeSet<(String, u32)> = BTreeSet::new();
    for e in &history.recent {
        let attributed = e.pods.iter().flatten().any(same_pod);
        if !inside(e.time.0) || !(attributed || holds(e.gpu_uuid.as_deref(), &e.pci_bus_id)) {
            continue;
        }
        listed.insert((e.pci_bus_id.to_ascii_lowercase(), e.code));
        others.extend(e.pods.iter().flatten().filter(|p| !same_pod(p)).map(PodRef::key));
        let gpu = gpu_of(facts, &e.pci_bus_id, e.gpu_uuid.as_deref());
        rows.push((e.time.0, row(e.code, node, gpu.index, e.time.0, end, now, 1, attributed)));
    }
    for t in &history.totals {
        let attributed = t.pods.iter().flatten().any(same_pod);
        let overlaps = t.first_seen.0 <= window.1 && window.0 <= t.last_seen.0;
        if !overlaps
            || listed.contains(&(t.pci_bus_id.to_ascii_lowercase(), t.code))
            || !(attributed || holds(t.gpu_uuid.as_deref(), &t.pci_bus_id))
        {
            continue;
        }
        others.extend(t.pods.iter().flatten().filter(|p| !same_pod(p)).map(PodRef::key));
        let gpu = gpu_of(facts, &t.pci_bus_id, t.gpu_uuid.as_deref());
        let at = if inside(t.last_seen.0) { t.last_seen.0 } else { t.first_seen.0 };
        rows.push((at, row(t.code, node, gpu.index, at, end, now, t.count, attributed)));
    }
}

#[allow(clippy::too_many_arguments)]
fn row(
    code: u32,
    node: &str,
    gpu: Option<u32>,
    at: Timestamp,
    end: Option<Timestamp>,
    now: Timestamp,
    count: u64,
    attributed: bool,
) -> PodXid {
    let info = xid::lookup(code);
    PodXid {
        code,
        mnemonic: info.mnemonic.to_string(),
        evidence: Evidence::of(code).as_str().to_string(),
        node: node.to_string(),
        gpu,
        time: at.to_string(),
        when: relative(at, end, now),
        count,
        attributed,
    }
}

/// "4s before termination", "1m after termination", or "12m ago".
fn relative(at: Timestamp, end: Option<Timestamp>, now: Timestamp) -> String {
    let secs = |a: Timestamp, b: Timestamp| std::time::Duration::from_secs(b.as_second().abs_diff(a.as_second()));
    match end {
        Some(end) if at <= end => format!("{} before termination", human_duration(secs(at, end))),
        Some(end) => format!("{} after termination", human_duration(secs(end, at))),
        None => format!("{} ago", human_duration(secs(at, now))),
    }
}

fn pod_view(
    ns: &str,
    name: &str,
    cached: Option<&CachedPod>,
    nodes: &BTreeSet<String>,
    termination: Option<crate::cached::Termination>,
) -> PodView {
    PodView {
        namespace: ns.to_string(),
        name: name.to_string(),
        exists: cached.is_some(),
        uid: cached.and_then(|p| p.uid.clone()),
        node: cached.and_then(|p| p.node_name.clone()).or_else(|| nodes.iter().next().cloned()),
        phase: cached.and_then(|p| p.phase.clone()),
        controller: cached.and_then(|p| p.owner.clone()),
        restarts: cached.map(|p| p.restarts),
        termination: termination.map(|t| TerminationView {
            container: t.container,
            exit_code: t.exit_code,
            reason: t.reason,
            finished_at: t.finished_at.map(|f| f.0.to_string()),
        }),
    }
}

/// A pod neither the cache nor any XID record knows: name the close ones.
fn unknown_pod(snap: &Snapshot, ns: &str, name: &str) -> ToolError {
    let mut known: BTreeSet<String> = snap.gpu_pods().iter().map(|p| format!("{}/{}", p.namespace, p.name)).collect();
    for status in snap.statuses() {
        if let Some(x) = status.facts.xids.as_deref() {
            known.extend(x.recent.iter().flat_map(|e| e.pods.iter().flatten()).map(PodRef::key));
        }
    }
    let wanted = format!("{ns}/{name}");
    let close = close_matches(&wanted, known.iter().map(String::as_str), MAX_SUGGESTIONS);
    let hint = if close.is_empty() { String::new() } else { format!(" Did you mean: {}?", close.join(", ")) };
    ToolError::invalid(
        "pod",
        format!(
            "no GPU pod {wanted} in cluster \"{}\" and no XID record names it.{hint} get_pod_gpu_allocation lists the \
             pods holding GPUs.",
            snap.cluster()
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_finding_follows_the_catalog_class_of_each_xid() {
        // (codes on the pod's GPUs in the window, a GPU judged Unhealthy, finding, why)
        let table: &[(&[u32], bool, Finding, &str)] = &[
            (&[79], false, Finding::Hardware, "79: GPU fallen off the bus, PCIe class, critical"),
            (&[48], false, Finding::Hardware, "48: double-bit ECC, GPU memory"),
            (&[94], false, Finding::Hardware, "94: contained ECC error: GPU memory class, though RESTART_APP"),
            (&[13], false, Finding::LikelyApplication, "13: graphics engine exception, application class"),
            (&[31], false, Finding::LikelyApplication, "31: MMU fault, application class"),
            (&[43], false, Finding::LikelyApplication, "43: GPU stopped processing, application class"),
            (&[13, 79], false, Finding::Hardware, "a hardware XID outweighs an application one"),
            (&[45], false, Finding::NoGpuEvidence, "45: preemptive cleanup, informational"),
            (&[154], false, Finding::NoGpuEvidence, "154 alone: the recovery action decides, via the verdict"),
            (&[154], true, Finding::Hardware, "a GPU judged Unhealthy (recovery action) is hardware"),
            (&[], true, Finding::Hardware, "a GPU that fell off (GpuMissing) without an XID line"),
            (&[13], true, Finding::Hardware, "an Unhealthy GPU outweighs an application XID"),
            (&[], false, Finding::NoGpuEvidence, "nothing at all"),
        ];
        for (codes, unhealthy, want, why) in table {
            assert_eq!(judge(codes, *unhealthy), *want, "{why}");
        }
    }

    #[test]
    fn times_read_relative_to_the_termination() {
        let t = |s: &str| s.parse::<Timestamp>().expect("time");
        let end = Some(t("2026-11-25T03:12:05Z"));
        let now = t("2026-11-25T12:00:00Z");
        assert_eq!(relative(t("2026-11-25T03:12:01Z"), end, now), "4s before termination");
        assert_eq!(relative(t("2026-11-25T03:13:05Z"), end, now), "1m after termination");
        assert_eq!(relative(t("2026-11-25T11:48:00Z"), None, now), "12m ago");
    }

    use crate::gpu_resources::fixtures::{node, pod};
    use crate::snapshot::fixtures::snapshot;
    use crate::status_fixtures::{attributed, healthy, holding, with_verdict, with_xid};
    use k8s_openapi::api::core::v1::{ContainerState, ContainerStateTerminated, ContainerStatus, PodStatus};

    /// A pod whose container `trainer` ended with `code` at `when`.
    fn ended(ns: &str, name: &str, node_name: &str, code: i32, when: &str) -> k8s_openapi::api::core::v1::Pod {
        let mut p = pod(ns, name, Some(node_name), "nvidia.com/gpu", 1, "Failed");
        p.status = Some(PodStatus {
            phase: Some("Failed".into()),
            container_statuses: Some(vec![ContainerStatus {
                name: "trainer".into(),
                state: Some(ContainerState {
                    terminated: Some(ContainerStateTerminated {
                        exit_code: code,
                        reason: Some("Error".into()),
                        finished_at: Some(crate::status_fixtures::t(when)),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }]),
            ..Default::default()
        });
        p
    }

    fn args(ns: &str, pod: &str) -> PodFailureArgs {
        PodFailureArgs { namespace: ns.into(), pod: pod.into(), ..Default::default() }
    }

    /// n1: GPU 3 logged XID 79 4 s before train-0 died, attributed to train-0 and serve-0; GPU 1 logged XID 13 on
    /// app-0 (attributed); GPU 2 is held by idle-0 and logged nothing.
    fn cluster(include_train: bool) -> Snapshot {
        let s = with_xid(healthy("n1", 8), 3, 79, 1, "2026-11-25T03:12:01Z", "2026-11-25T03:12:01Z");
        let s = attributed(s, 3, "ml", "train-0");
        let s = attributed(s, 3, "ml", "serve-0");
        let s = with_verdict(s, 3, Health::Unhealthy, &["XidFallenOffBus"], "");
        let s = with_xid(s, 1, 13, 2, "2026-11-25T05:00:00Z", "2026-11-25T05:00:02Z");
        let s = attributed(s, 1, "ml", "app-0");
        let s = holding(holding(s, 1, "ml", "app-0"), 2, "ml", "idle-0");
        let mut pods = vec![
            ended("ml", "app-0", "n1", 1, "2026-11-25T05:00:05Z"),
            ended("ml", "idle-0", "n1", 137, "2026-11-25T06:00:00Z"),
        ];
        if include_train {
            pods.push(ended("ml", "train-0", "n1", 137, "2026-11-25T03:12:05Z"));
        }
        snapshot(vec![s], vec![node("n1", 8)], pods)
    }

    #[test]
    fn a_pod_hit_by_xid_79_is_a_hardware_failure_even_after_it_is_gone() {
        for present in [true, false] {
            let a = answer(&cluster(present), &args("ml", "train-0")).expect("answer");
            assert_eq!(a.finding, Finding::Hardware, "pod present: {present}");
            assert!(a.verdict.starts_with("hardware: XID 79"), "{}", a.verdict);
            assert_eq!(a.pod.exists, present);
            assert_eq!(a.gpus.iter().map(|g| g.index).collect::<Vec<_>>(), [Some(3)]);
            assert_eq!(a.gpus[0].known_from, "XID attribution");
            assert_eq!(a.xids[0].code, 79);
            assert!(a.xids[0].attributed);
            assert_eq!(a.other_pods_hit, ["ml/serve-0"], "the other workload the fault took down");
            assert_eq!(a.meanings.len(), 1, "the catalog text once per code");
            if present {
                assert_eq!(a.xids[0].when, "4s before termination");
                // The README's worked example.
                assert_eq!(
                    a.verdict,
                    "hardware: XID 79 (ROBUST_CHANNEL_GPU_HAS_FALLEN_OFF_THE_BUS) on n1 GPU 3, 4s before termination; \
                     it hit ml/train-0 (container trainer exited 137, Error)."
                );
                assert_eq!(
                    a.action,
                    "Rerun pod ml/train-0 on other GPUs: the failure was the GPU's. For n1: Drain the node and reboot \
                     it; the GPU is not reachable over PCIe."
                );
            }
        }
    }

    #[test]
    fn an_application_xid_alone_is_likely_the_application_and_a_quiet_gpu_is_no_evidence() {
        let a = answer(&cluster(true), &args("ml", "app-0")).expect("answer");
        assert_eq!(a.finding, Finding::LikelyApplication, "{}", a.verdict);
        assert_eq!(a.gpus[0].known_from, "bound now");
        assert!(a.action.contains("RESTART_APP"), "{}", a.action);
        let b = answer(&cluster(true), &args("ml", "idle-0")).expect("answer");
        assert_eq!(b.finding, Finding::NoGpuEvidence, "{}", b.verdict);
        assert_eq!(b.gpus.iter().map(|g| g.index).collect::<Vec<_>>(), [Some(2)]);
        assert!(b.xids.is_empty());
    }

    #[test]
    fn an_unknown_pod_is_an_error_with_close_matches_and_bad_arguments_say_what_is_wrong() {
        let e = answer(&cluster(false), &args("ml", "train-1")).expect_err("unknown").to_string();
        assert!(e.contains("Did you mean: ml/train-0"), "{e}");
        let e = answer(&cluster(true), &args("", "x")).expect_err("empty ns").to_string();
        assert!(e.contains("namespace"), "{e}");
        let bad_since = PodFailureArgs { since: Some("last tuesday".into()), ..args("ml", "app-0") };
        assert!(answer(&cluster(true), &bad_since).is_err());
    }

    #[test]
    fn since_widens_the_window_before_the_termination() {
        // app-0's XID 13 was 5 s before it ended; a window starting after it sees nothing.
        let narrow = PodFailureArgs { since: Some("2026-11-25T05:00:04Z".into()), ..args("ml", "app-0") };
        let a = answer(&cluster(true), &narrow).expect("answer");
        assert_eq!(a.finding, Finding::NoGpuEvidence, "{}", a.verdict);
        assert_eq!(a.window.around, "termination");
    }
}
