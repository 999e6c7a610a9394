//! `analyze_xid_errors`: the XID history of the fleet or a node, explained by the catalog, counted by code and
//! node, with the patterns that change the diagnosis (one GPU repeating; one code on many nodes at once).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use gpuscope_crds::xid::Severity;
use gpuscope_crds::xid::rules::{Urgency, code_urgency};
use jiff::Timestamp;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::answer::Answer;
use crate::args::{self, DEFAULT_LIMIT, FLEET_DEFAULT_LIMIT, GpuArg, GpuSelector, MAX_LIMIT, SeverityArg, Window};
use crate::error::ToolError;
use crate::index::xids::NodeXids;
use crate::snapshot::Snapshot;
use crate::time::rfc3339;
use crate::tools::common::{GpuRef, Truncated, merge_cuts, plural, select_gpus, shared_uuid_warnings, take};
use crate::xid_view::{XidMeaning, meaning, severity};

/// A GPU that logged the same XID this often repeats (a pattern worth naming).
const REPEAT_THRESHOLD: u64 = 3;
/// Nodes that logged the same code within this span count as "at once".
const FLEET_SPAN_SECONDS: i64 = 15 * 60;
/// Nodes with the same code at once that point to a shared cause.
const FLEET_NODES: usize = 3;
/// Most patterns listed: one per (kind, code), most severe first.
const MAX_PATTERNS: usize = 5;
/// Most nodes a pattern names; `node_count`, `gpus` and `occurrences` count all of them.
const MAX_PATTERN_NODES: usize = 3;
/// Codes that carry the catalog's description and recommended action, most urgent first: the codes to act on.
/// The rest are named and counted; explain_xid gives any code's entry.
const EXPLAINED_CODES: usize = 3;
/// Raw events a fleet-wide answer shows without a `limit`: the newest few of thousands, as samples of the driver's
/// text; the counts, nodes and patterns carry the rest.
const FLEET_EVENTS: u32 = 3;

/// Arguments of `analyze_xid_errors`.
#[derive(Clone, Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct XidArgs {
    /// Node to analyze. Omit for the whole fleet.
    pub node_name: Option<String>,
    /// One GPU: its NVML index (with node_name) or its UUID or the leading part of it.
    pub gpu: Option<GpuArg>,
    /// Only this XID code, e.g. 79.
    #[serde(default, deserialize_with = "crate::args::optional_number")]
    pub code: Option<u32>,
    /// Least severe XID to include: info (everything), warning (application restarts and worse) or critical
    /// (GPU reset, node reboot or vendor attention).
    pub severity: Option<SeverityArg>,
    /// Time window: a duration back from now ("30m", "2h", "7d") or an RFC 3339 time ("2026-11-25T08:00:00Z").
    /// Omit for all retained history.
    pub since: Option<String>,
    /// Most rows per list (codes, nodes, events), 1-200. Default 20 with node_name or gpu; fleet-wide 10 (and 3
    /// raw events). Totals cover everything.
    #[schemars(range(min = 1, max = MAX_LIMIT))]
    #[serde(default, deserialize_with = "crate::args::optional_number")]
    pub limit: Option<u32>,
    /// Cluster (kubeconfig context) to ask; omit for the default (first) cluster.
    pub cluster: Option<String>,
}

/// The XID analysis.
#[derive(Clone, Debug, PartialEq, Serialize, JsonSchema)]
pub struct XidAnalysis {
    /// What the XIDs say, in one line.
    pub verdict: String,
    /// What to do first.
    pub action: String,
    /// Cluster answered for.
    pub cluster: String,
    /// The time window: "last 2h", "since ...", or "all retained history" (per node: the 64 most recent
    /// (GPU, code) totals and 32 newest events). With a window, counts are what is provably inside it; see
    /// `totals.at_least`.
    pub window: String,
    /// Totals over everything selected.
    pub totals: XidTotals,
    /// Per code, most urgent (reboot node > reset GPU > drain P2P > restart app > none) then most recent first;
    /// the first 3 with the catalog's description and recommended action (explain_xid gives any code's).
    pub by_code: Vec<XidCodeSummary>,
    /// Per node, worst first.
    pub by_node: Vec<XidNodeSummary>,
    /// Patterns that change the diagnosis.
    pub patterns: Vec<XidPattern>,
    /// The newest raw events, newest first.
    pub events: Vec<XidEventView>,
    /// Present when a list was cut to `limit`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub truncated: Option<Truncated>,
    /// Present when two or more GPUs report the UUID asked for (a UUID names one GPU).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// Totals over the selection.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, JsonSchema)]
pub struct XidTotals {
    /// XID occurrences provably inside the window (with no window: all retained history). Exact unless
    /// `at_least` is true.
    pub occurrences: u64,
    /// True when `occurrences` is a lower bound: some (GPU, code) totals began before the window and were last seen
    /// inside it, and the retained raw events cannot tell how many of their occurrences fall inside.
    pub at_least: bool,
    /// With `at_least`: the most there can be (those totals counted whole).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub at_most: Option<u64>,
    /// Nodes with XIDs.
    pub nodes: usize,
    /// GPUs with XIDs.
    pub gpus: usize,
    /// Distinct codes.
    pub codes: usize,
}

/// One code across the selection.
#[derive(Clone, Debug, PartialEq, Serialize, JsonSchema)]
pub struct XidCodeSummary {
    /// What the code means (catalog).
    #[serde(flatten)]
    pub meaning: XidMeaning,
    /// Occurrences provably in the window.
    pub occurrences: u64,
    /// Present (true) when `occurrences` is a lower bound (a total straddles the window's start).
    #[serde(skip_serializing_if = "is_false")]
    pub at_least: bool,
    /// Nodes that logged it.
    pub nodes: usize,
    /// GPUs that logged it.
    pub gpus: usize,
    /// Newest occurrence (RFC 3339).
    pub last_seen: String,
}

/// One node's XIDs.
#[derive(Clone, Debug, PartialEq, Serialize, JsonSchema)]
pub struct XidNodeSummary {
    /// Node name.
    pub node: String,
    /// Occurrences provably in the window.
    pub occurrences: u64,
    /// Present (true) when `occurrences` is a lower bound (a total straddles the window's start).
    #[serde(skip_serializing_if = "is_false")]
    pub at_least: bool,
    /// Most severe code's severity.
    pub worst_severity: String,
    /// Codes seen, ascending.
    pub codes: Vec<u32>,
    /// Newest occurrence (RFC 3339).
    pub last_seen: String,
}

/// Kinds of pattern.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum PatternKind {
    /// The same GPU logs the same code again and again.
    RepeatingGpu,
    /// The same code on several nodes within minutes: likely a shared cause (a driver or firmware rollout, the
    /// NVLink fabric, power, a bad job spread across nodes) rather than single GPUs.
    SameCodeManyNodes,
}

/// A pattern across XIDs.
#[derive(Clone, Debug, PartialEq, Serialize, JsonSchema)]
pub struct XidPattern {
    /// Which pattern.
    pub kind: PatternKind,
    /// The code.
    pub code: u32,
    /// info, warning or critical.
    pub severity: String,
    /// What it means and what to do (the code's catalog action is in `by_code`).
    pub summary: String,
    /// Nodes involved, most occurrences first (at most 3).
    pub nodes: Vec<String>,
    /// Nodes involved, all of them.
    pub node_count: usize,
    /// GPUs involved, all of them.
    pub gpus: usize,
    /// The GPU, when one GPU repeats the code.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gpu: Option<GpuRef>,
    /// Occurrences involved, provably in the window.
    pub occurrences: u64,
    /// Present (true) when `occurrences` is a lower bound (a total straddles the window's start).
    #[serde(skip_serializing_if = "is_false")]
    pub at_least: bool,
}

fn is_false(b: &bool) -> bool {
    !b
}

/// One raw XID event.
#[derive(Clone, Debug, PartialEq, Serialize, JsonSchema)]
pub struct XidEventView {
    /// Node name.
    pub node: String,
    /// When (RFC 3339).
    pub time: String,
    /// XID code.
    pub code: u32,
    /// info, warning or critical.
    pub severity: String,
    /// The GPU.
    pub gpu: GpuRef,
    /// Driver text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Process that hit it, when logged ("python (pid 4242)").
    #[serde(skip_serializing_if = "Option::is_none")]
    pub process: Option<String>,
}

impl Answer for XidAnalysis {
    fn verdict(&self) -> &str {
        &self.verdict
    }
    fn action(&self) -> &str {
        &self.action
    }
    fn highlights(&self) -> Vec<String> {
        let mut lines: Vec<String> = self.warnings.clone();
        lines.extend(self.patterns.iter().take(2).map(|p| p.summary.clone()));
        lines.extend(self.by_code.iter().take(3).map(|c| {
            format!(
                "XID {} {} ({}): {}{} on {}",
                c.meaning.code,
                c.meaning.mnemonic,
                c.meaning.severity,
                at_least_prefix(c.at_least),
                plural(c.occurrences as usize, "occurrence"),
                plural(c.nodes, "node")
            )
        }));
        if let Some(most) = self.totals.at_most.filter(|_| self.totals.at_least) {
            lines.push(format!(
                "Counts are lower bounds: some (GPU, code) totals began before the window ({}); with them counted \
                 whole there are at most {most} occurrences.",
                self.window
            ));
        }
        lines
    }
}

fn at_least_prefix(at_least: bool) -> &'static str {
    if at_least { "at least " } else { "" }
}

/// One (node, GPU, code) total that passed the filters, with what of it falls in the window.
struct Row {
    node: String,
    gpu: GpuRef,
    code: u32,
    /// Occurrences provably in the window (all of them without a window).
    occurrences: u64,
    /// The most that can be in the window (the whole count when the total straddles the window's start).
    at_most: u64,
    last_seen: Timestamp,
}

impl Row {
    fn at_least(&self) -> bool {
        self.occurrences < self.at_most
    }
}

/// How many of a total's `count` occurrences are provably at or after `start`.
///
/// A total only carries its first and last time, so when it began before the window and was last seen inside it,
/// its count cannot be split. What can be proven: the last occurrence is inside; so is every raw event of the
/// node's ring inside the window; and when the ring reaches back before the window (it keeps the node's newest
/// events, dropping the oldest first), it holds every occurrence inside the window, so its count is exact.
/// Returns (provable, at most).
fn in_window(count: u64, first_seen: Timestamp, start: Timestamp, raw_in_window: u64, ring_covers: bool) -> (u64, u64) {
    if first_seen >= start || raw_in_window >= count {
        return (count, count);
    }
    if ring_covers && raw_in_window >= 1 {
        return (raw_in_window, raw_in_window);
    }
    (raw_in_window.max(1).min(count), count)
}

struct Filters<'a> {
    gpus: Option<&'a [(String, GpuRef)]>,
    code: Option<u32>,
    min: Severity,
    window: Option<&'a Window>,
}

impl Filters<'_> {
    fn keep(&self, node: &str, gpu: &GpuRef, code: u32, at: Timestamp) -> bool {
        self.code.is_none_or(|c| c == code)
            && severity(code) >= self.min
            && self.window.is_none_or(|w| at >= w.start)
            && self.gpus.is_none_or(|wanted| {
                wanted.iter().any(|(n, g)| {
                    n == node
                        && (g.uuid.is_some() && g.uuid == gpu.uuid
                            || g.pci_bus_id.is_some() && g.pci_bus_id == gpu.pci_bus_id)
                })
            })
    }
}

/// Answer `analyze_xid_errors`.
pub fn answer(snap: &Snapshot, args: &XidArgs) -> Result<XidAnalysis, ToolError> {
    let focused = args.node_name.is_some() || args.gpu.is_some();
    let limit = args::limit(args.limit, if focused { DEFAULT_LIMIT } else { FLEET_DEFAULT_LIMIT }, MAX_LIMIT)?;
    let event_limit = if focused || args.limit.is_some() { limit } else { FLEET_EVENTS as usize };
    let window = args::since(args.since.as_deref(), snap.now())?;
    let node = args.node_name.as_deref().map(|n| snap.require_node(n)).transpose()?;
    let selected = args
        .gpu
        .as_ref()
        .map(GpuSelector::parse)
        .transpose()?
        .map(|sel| select_gpus(snap, node.as_ref(), &sel).map(|chosen| (shared_uuid_warnings(&sel, &chosen), chosen)))
        .transpose()?;
    let (warnings, selected) = selected.map_or((Vec::new(), None), |(w, chosen)| (w, Some(chosen)));
    let filters = Filters {
        gpus: selected.as_deref(),
        code: args.code,
        min: args.severity.map(SeverityArg::min).unwrap_or(Severity::Info),
        window: window.as_ref(),
    };
    // One node's history is resolved here; the fleet's was resolved per watch event and is read off the index:
    // only the nodes with XIDs, or with the code asked for.
    let histories: Vec<(String, Arc<NodeXids>)> = match &node {
        Some(n) => n.facts().and_then(NodeXids::of).map(|x| (n.name.clone(), Arc::new(x))).into_iter().collect(),
        None => {
            let ix = snap.indexes();
            let found: Box<dyn Iterator<Item = (&str, &Arc<NodeXids>)>> = match args.code {
                Some(code) => Box::new(ix.xids().nodes_with(code)),
                None => Box::new(ix.xids().nodes()),
            };
            found.map(|(name, x)| (name.to_string(), Arc::clone(x))).collect()
        }
    };

    let mut rows = Vec::new();
    let mut events = Vec::new();
    for (name, xids) in &histories {
        for t in &xids.totals {
            if !filters.keep(name, &t.gpu, t.code, t.last_seen) {
                continue;
            }
            let (occurrences, at_most) = match filters.window {
                None => (t.count, t.count),
                Some(w) => {
                    let raw = xids
                        .recent
                        .iter()
                        .filter(|e| {
                            e.code == t.code && e.time.0 >= w.start && e.pci_bus_id.eq_ignore_ascii_case(&t.pci_bus_id)
                        })
                        .count() as u64;
                    let ring_covers = xids.recent.iter().any(|e| e.time.0 < w.start);
                    in_window(t.count, t.first_seen, w.start, raw, ring_covers)
                }
            };
            rows.push(Row {
                node: name.clone(),
                gpu: t.gpu.clone(),
                code: t.code,
                occurrences,
                at_most,
                last_seen: t.last_seen,
            });
        }
        for e in &xids.recent {
            if filters.keep(name, &e.gpu, e.code, e.time.0) {
                events.push((
                    e.time.0,
                    XidEventView {
                        node: name.clone(),
                        time: rfc3339(&e.time),
                        code: e.code,
                        severity: severity(e.code).as_str().to_string(),
                        gpu: e.gpu.clone(),
                        message: e.message.clone(),
                        process: e.process.clone(),
                    },
                ));
            }
        }
    }

    let at_least = rows.iter().any(Row::at_least);
    let totals = XidTotals {
        occurrences: rows.iter().map(|r| r.occurrences).sum(),
        at_least,
        at_most: at_least.then(|| rows.iter().map(|r| r.at_most).sum()),
        nodes: rows.iter().map(|r| &r.node).collect::<BTreeSet<_>>().len(),
        gpus: rows.iter().map(|r| (&r.node, &r.gpu.pci_bus_id)).collect::<BTreeSet<_>>().len(),
        codes: rows.iter().map(|r| r.code).collect::<BTreeSet<_>>().len(),
    };
    let by_code = code_summaries(&rows);
    let by_node = node_summaries(&rows);
    let patterns = patterns(&rows);
    events.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.node.cmp(&b.1.node)));
    let events: Vec<XidEventView> = events.into_iter().map(|(_, e)| e).collect();

    let hint = || "narrow with node_name, gpu, code, severity or since, or raise limit (max 200)".to_string();
    let (mut by_code, t1) = take(by_code, limit, hint);
    let (by_node, t2) = take(by_node, limit, hint);
    let (events, t3) = take(events, event_limit, hint);
    let cut = merge_cuts([("by_code", t1), ("by_node", t2), ("events", t3)]);

    let window_label = window.as_ref().map(|w| w.label.clone()).unwrap_or_else(|| "all retained history".to_string());
    let scope = match &node {
        Some(n) => format!("on node {}", n.name),
        None => format!("in cluster {}", snap.cluster()),
    };
    let (verdict, action) = match by_code.first() {
        None => (format!("No XIDs {scope} ({window_label}) match."), "None needed.".to_string()),
        Some(worst) => {
            let count = match totals.at_most.filter(|_| totals.at_least) {
                Some(most) => format!(
                    "At least {} (up to {most}: some began before the window)",
                    plural(totals.occurrences as usize, "XID occurrence")
                ),
                None => plural(totals.occurrences as usize, "XID occurrence"),
            };
            let verdict = format!(
                "{count} {scope} on {} ({}), {window_label}; most urgent: XID {} {} ({}) on {}.",
                plural(totals.gpus, "GPU"),
                plural(totals.nodes, "node"),
                worst.meaning.code,
                worst.meaning.mnemonic,
                worst.meaning.severity,
                plural(worst.nodes, "node"),
            );
            let fleet =
                patterns.iter().find(|p| p.kind == PatternKind::SameCodeManyNodes && p.code == worst.meaning.code);
            let action = match fleet {
                Some(p) => format!(
                    "XID {} ({}) hit {} within 15 minutes: suspect a shared cause (driver or firmware rollout, NVLink \
                     fabric, power, a bad job spread across nodes) before blaming single GPUs. {}",
                    p.code,
                    worst.meaning.mnemonic,
                    plural(p.node_count, "node"),
                    worst.meaning.recommended_action
                ),
                None => {
                    let newest = rows
                        .iter()
                        .filter(|r| r.code == worst.meaning.code)
                        .max_by_key(|r| r.last_seen)
                        .map(|r| format!("{} {}: ", r.node, r.gpu.label()))
                        .unwrap_or_default();
                    format!("{newest}{}", worst.meaning.recommended_action)
                }
            };
            (verdict, action)
        }
    };
    for c in by_code.iter_mut().skip(EXPLAINED_CODES) {
        c.meaning.description.clear();
        c.meaning.recommended_action.clear();
    }
    Ok(XidAnalysis {
        verdict,
        action,
        cluster: snap.cluster().to_string(),
        window: window_label,
        totals,
        by_code,
        by_node,
        patterns,
        events,
        truncated: cut,
        warnings,
    })
}

fn code_summaries(rows: &[Row]) -> Vec<XidCodeSummary> {
    let mut by: BTreeMap<u32, Vec<&Row>> = BTreeMap::new();
    for r in rows {
        by.entry(r.code).or_default().push(r);
    }
    let mut out: Vec<((Urgency, Timestamp), XidCodeSummary)> = by
        .into_iter()
        .map(|(code, rs)| {
            let last = rs.iter().map(|r| r.last_seen).max().unwrap_or_default();
            (
                (code_urgency(code), last),
                XidCodeSummary {
                    meaning: meaning(code),
                    occurrences: rs.iter().map(|r| r.occurrences).sum(),
                    at_least: rs.iter().any(|r| r.at_least()),
                    nodes: rs.iter().map(|r| &r.node).collect::<BTreeSet<_>>().len(),
                    gpus: rs.iter().map(|r| (&r.node, &r.gpu.pci_bus_id)).collect::<BTreeSet<_>>().len(),
                    last_seen: last.to_string(),
                },
            )
        })
        .collect();
    out.sort_by(|a, b| {
        b.0.cmp(&a.0)
            .then_with(|| b.1.occurrences.cmp(&a.1.occurrences))
            .then_with(|| a.1.meaning.code.cmp(&b.1.meaning.code))
    });
    out.into_iter().map(|(_, s)| s).collect()
}

fn node_summaries(rows: &[Row]) -> Vec<XidNodeSummary> {
    let mut by: BTreeMap<&str, Vec<&Row>> = BTreeMap::new();
    for r in rows {
        by.entry(&r.node).or_default().push(r);
    }
    let mut out: Vec<((Urgency, Timestamp), XidNodeSummary)> = by
        .into_iter()
        .map(|(node, rs)| {
            let worst = rs.iter().map(|r| severity(r.code)).max().unwrap_or(Severity::Info);
            let urgency = rs.iter().map(|r| code_urgency(r.code)).max().unwrap_or(Urgency::None);
            // Recency of what makes it urgent, not of a minor code logged since.
            let last = rs.iter().filter(|r| code_urgency(r.code) == urgency).map(|r| r.last_seen).max();
            let last = last.unwrap_or_default();
            (
                (urgency, last),
                XidNodeSummary {
                    node: node.to_string(),
                    occurrences: rs.iter().map(|r| r.occurrences).sum(),
                    at_least: rs.iter().any(|r| r.at_least()),
                    worst_severity: worst.as_str().to_string(),
                    codes: rs.iter().map(|r| r.code).collect::<BTreeSet<_>>().into_iter().collect(),
                    last_seen: rs.iter().map(|r| r.last_seen).max().unwrap_or_default().to_string(),
                },
            )
        })
        .collect();
    out.sort_by(|a, b| {
        b.0.cmp(&a.0).then_with(|| b.1.occurrences.cmp(&a.1.occurrences)).then_with(|| a.1.node.cmp(&b.1.node))
    });
    out.into_iter().map(|(_, s)| s).collect()
}

fn patterns(rows: &[Row]) -> Vec<XidPattern> {
    let mut out: Vec<(Severity, u64, XidPattern)> = Vec::new();
    // The same code on several nodes within minutes.
    let mut by_code: BTreeMap<u32, BTreeMap<&str, Timestamp>> = BTreeMap::new();
    for r in rows {
        let newest = by_code.entry(r.code).or_default().entry(&r.node).or_insert(r.last_seen);
        *newest = (*newest).max(r.last_seen);
    }
    for (code, nodes) in &by_code {
        let mut times: Vec<(Timestamp, &str)> = nodes.iter().map(|(n, t)| (*t, *n)).collect();
        times.sort();
        let (mut best, mut start) = ((0, 0), 0);
        for end in 0..times.len() {
            while times[end].0.as_second() - times[start].0.as_second() > FLEET_SPAN_SECONDS {
                start += 1;
            }
            if end + 1 - start > best.1 - best.0 {
                best = (start, end + 1);
            }
        }
        let burst = &times[best.0..best.1];
        if burst.len() >= FLEET_NODES {
            let m = meaning(*code);
            let in_burst: BTreeSet<&str> = burst.iter().map(|(_, n)| *n).collect();
            let involved: Vec<&Row> =
                rows.iter().filter(|r| r.code == *code && in_burst.contains(r.node.as_str())).collect();
            let occurrences = involved.iter().map(|r| r.occurrences).sum();
            out.push((
                severity(*code),
                occurrences,
                XidPattern {
                    kind: PatternKind::SameCodeManyNodes,
                    code: *code,
                    severity: m.severity.clone(),
                    // Short: the kind's description names the usual shared causes, by_code the catalog's action.
                    summary: format!(
                        "XID {code} hit {} within 15 minutes: suspect a shared cause before single GPUs.",
                        plural(burst.len(), "node"),
                    ),
                    nodes: most_involved(&involved),
                    node_count: burst.len(),
                    gpus: involved.len(),
                    gpu: None,
                    occurrences,
                    at_least: involved.iter().any(|r| r.at_least()),
                },
            ));
        }
    }
    // GPUs repeating a code: only what provably repeated inside the window counts. One pattern per code, however
    // many GPUs repeat it (a bad job can make hundreds do so).
    let mut repeating: BTreeMap<u32, Vec<&Row>> = BTreeMap::new();
    for r in rows.iter().filter(|r| r.occurrences >= REPEAT_THRESHOLD) {
        repeating.entry(r.code).or_default().push(r);
    }
    for (code, mut rs) in repeating {
        rs.sort_by(|a, b| b.occurrences.cmp(&a.occurrences).then_with(|| a.node.cmp(&b.node)));
        let m = meaning(code);
        let application = m.class == "application";
        let occurrences = rs.iter().map(|r| r.occurrences).sum();
        let at_least = rs.iter().any(|r| r.at_least());
        let summary = match rs.as_slice() {
            [one] => format!(
                "{} {} logged XID {code} ({}) {}{} times: {}.",
                one.node,
                one.gpu.label(),
                m.mnemonic,
                at_least_prefix(one.at_least()),
                one.occurrences,
                if application {
                    "if different workloads hit it, suspect the GPU rather than the application"
                } else {
                    "a repeating hardware-class XID on one GPU points at that GPU"
                }
            ),
            [most, ..] => format!(
                "XID {code} repeats on {} ({}), {}{occurrences} times in all; most on {} {} ({}{} times): {}.",
                plural(rs.len(), "GPU"),
                plural(rs.iter().map(|r| &r.node).collect::<BTreeSet<_>>().len(), "node"),
                at_least_prefix(at_least),
                most.node,
                most.gpu.label(),
                at_least_prefix(most.at_least()),
                most.occurrences,
                if application {
                    "one workload spread over these GPUs is the likely cause; a GPU that different workloads hit is \
                     suspect itself"
                } else {
                    "each of these GPUs is suspect, and so many at once also points at a shared cause"
                }
            ),
            [] => continue,
        };
        out.push((
            severity(code),
            occurrences,
            XidPattern {
                kind: PatternKind::RepeatingGpu,
                code,
                severity: m.severity.clone(),
                summary,
                nodes: most_involved(&rs),
                node_count: rs.iter().map(|r| &r.node).collect::<BTreeSet<_>>().len(),
                gpus: rs.len(),
                gpu: match rs.as_slice() {
                    [one] => Some(one.gpu.clone()),
                    _ => None,
                },
                occurrences,
                at_least,
            },
        ));
    }
    out.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| b.1.cmp(&a.1)));
    out.into_iter().take(MAX_PATTERNS).map(|(_, _, p)| p).collect()
}

/// The nodes with the most occurrences among `rows` (then by name), at most [`MAX_PATTERN_NODES`].
fn most_involved(rows: &[&Row]) -> Vec<String> {
    let mut per_node: BTreeMap<&str, u64> = BTreeMap::new();
    for r in rows {
        *per_node.entry(r.node.as_str()).or_default() += r.occurrences;
    }
    let mut nodes: Vec<(&str, u64)> = per_node.into_iter().collect();
    nodes.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
    nodes.into_iter().take(MAX_PATTERN_NODES).map(|(n, _)| n.to_string()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::fixtures::snapshot;
    use crate::status_fixtures::{healthy, uuid, with_xid};

    fn fleet() -> Snapshot {
        // 79 on three nodes within 10 minutes; 13 repeating on one GPU; an old 48.
        let a = with_xid(healthy("a", 8), 2, 79, 1, "2026-11-25T11:00:00Z", "2026-11-25T11:00:00Z");
        let a = with_xid(a, 0, 13, 5, "2026-11-24T00:00:00Z", "2026-11-25T11:30:00Z");
        let b = with_xid(healthy("b", 8), 1, 79, 1, "2026-11-25T11:05:00Z", "2026-11-25T11:05:00Z");
        let c = with_xid(healthy("c", 8), 4, 79, 1, "2026-11-25T11:10:00Z", "2026-11-25T11:10:00Z");
        let d = with_xid(healthy("d", 8), 3, 48, 1, "2026-11-20T00:00:00Z", "2026-11-20T00:00:00Z");
        snapshot(vec![a, b, c, d, healthy("e", 8)], vec![], vec![])
    }

    #[test]
    fn fleet_analysis_counts_explains_and_flags_both_patterns() {
        let r = answer(&fleet(), &XidArgs::default()).expect("answer");
        assert_eq!(r.totals, XidTotals { occurrences: 9, at_least: false, at_most: None, nodes: 4, gpus: 5, codes: 3 });
        assert_eq!(r.window, "all retained history");
        let codes: Vec<u32> = r.by_code.iter().map(|c| c.meaning.code).collect();
        assert_eq!(codes, [79, 48, 13], "reboot node (79) before reset GPU (48), then restart the application");
        assert_eq!((r.by_code[0].nodes, r.by_code[0].occurrences), (3, 3));
        assert_eq!(r.by_code[0].meaning.severity, "critical");
        assert_eq!(r.by_node[0].node, "c", "the most recent of the nodes to reboot");
        assert_eq!(r.by_node[0].codes, [79]);
        let kinds: Vec<(PatternKind, u32)> = r.patterns.iter().map(|p| (p.kind, p.code)).collect();
        assert_eq!(kinds, [(PatternKind::SameCodeManyNodes, 79), (PatternKind::RepeatingGpu, 13)]);
        assert_eq!(r.patterns[0].nodes, ["a", "b", "c"]);
        assert_eq!(r.patterns[1].gpu.as_ref().map(|g| g.uuid.clone()), Some(Some(uuid("a", 0))));
        assert!(r.action.contains("shared cause"), "{}", r.action);
        assert!(r.verdict.starts_with("9 XID occurrences in cluster test on 5 GPUs (4 nodes)"), "{}", r.verdict);
        assert_eq!(r.events[0].code, 13, "newest event first");
        assert_eq!(r.events[0].gpu.index, Some(0));
        assert_eq!(r.events[0].process.as_deref(), Some("python (pid 4242)"));
    }

    #[test]
    fn the_node_to_reboot_leads_even_when_a_reset_gpu_xid_is_newer_and_more_frequent() {
        // The XID 79 + XID 48 fleet: 48 (reset GPU) five times and newer; 79 (reboot node) once.
        let b = with_xid(healthy("gpu-h100-b", 8), 5, 79, 1, "2026-11-25T10:00:00Z", "2026-11-25T10:00:00Z");
        let a = with_xid(healthy("gpu-h100-a", 8), 3, 48, 5, "2026-11-25T10:30:00Z", "2026-11-25T11:30:00Z");
        let r = answer(&snapshot(vec![a, b], vec![], vec![]), &XidArgs::default()).expect("answer");
        assert_eq!(r.by_code.iter().map(|c| c.meaning.code).collect::<Vec<_>>(), [79, 48]);
        assert_eq!(r.by_node[0].node, "gpu-h100-b");
        assert!(r.verdict.contains("most urgent: XID 79"), "{}", r.verdict);
        assert!(r.action.starts_with("gpu-h100-b"), "{}", r.action);
    }

    #[test]
    fn window_severity_code_and_gpu_filters_narrow_the_selection() {
        let r = answer(&fleet(), &XidArgs { since: Some("2h".into()), ..Default::default() }).expect("answer");
        assert_eq!(r.window, "last 2h");
        assert!(r.by_code.iter().all(|c| c.meaning.code != 48), "48 is five days old");
        // The three 79s are single occurrences inside the window; a's 13 began yesterday: only its last counts.
        assert_eq!((r.totals.occurrences, r.totals.at_least, r.totals.at_most), (4, true, Some(8)));
        let r =
            answer(&fleet(), &XidArgs { severity: Some(SeverityArg::Critical), ..Default::default() }).expect("answer");
        assert_eq!(r.by_code.iter().map(|c| c.meaning.code).collect::<Vec<_>>(), [79, 48]);
        let r = answer(&fleet(), &XidArgs { code: Some(13), ..Default::default() }).expect("answer");
        assert_eq!(r.totals.occurrences, 5);
        let args = XidArgs { node_name: Some("a".into()), gpu: Some(GpuArg::Index(2)), ..Default::default() };
        let r = answer(&fleet(), &args).expect("answer");
        assert_eq!(r.by_code.iter().map(|c| c.meaning.code).collect::<Vec<_>>(), [79]);
        assert!(r.action.starts_with("a GPU 2: "), "{}", r.action);
    }

    /// A node whose XID 13 total began two days ago and was last seen 30 minutes ago, `count` times in all, with
    /// these raw events in its ring (newest first).
    fn straddling(count: u64, raw: &[&str]) -> Snapshot {
        let mut o = with_xid(healthy("s", 8), 1, 13, count, "2026-11-23T12:00:00Z", "2026-11-25T11:30:00Z");
        if let Some(x) = o.status.as_mut().and_then(|s| s.xids.as_mut()) {
            let template = x.recent[0].clone();
            x.recent = raw
                .iter()
                .map(|at| gpuscope_crds::gpu_node_status::XidEvent {
                    time: crate::status_fixtures::t(at),
                    ..template.clone()
                })
                .collect();
        }
        snapshot(vec![o], vec![], vec![])
    }

    #[test]
    fn a_total_that_began_before_the_window_counts_only_its_provable_occurrences_and_says_at_least() {
        let r = answer(
            &straddling(40, &["2026-11-25T11:30:00Z"]),
            &XidArgs { since: Some("1h".into()), ..Default::default() },
        )
        .expect("answer");
        assert_eq!(
            r.totals,
            XidTotals { occurrences: 1, at_least: true, at_most: Some(40), nodes: 1, gpus: 1, codes: 1 },
            "40 occurrences over two days are not 40 in the last hour"
        );
        assert_eq!((r.by_code[0].occurrences, r.by_code[0].at_least), (1, true));
        assert_eq!((r.by_node[0].occurrences, r.by_node[0].at_least), (1, true));
        assert!(r.patterns.is_empty(), "one provable occurrence in the window is no repeat: {:?}", r.patterns);
        assert!(
            r.verdict.starts_with(
                "At least 1 XID occurrence (up to 40: some began before the window) in cluster test on 1 GPU (1 node), \
                 last 1h;"
            ),
            "{}",
            r.verdict
        );
        let text = crate::answer::summary(&r);
        assert!(text.contains("at least 1 occurrence on 1 node"), "{text}");
        assert!(text.contains("Counts are lower bounds") && text.contains("at most 40 occurrences"), "{text}");
        // The same history without a window: exact, and a repeating GPU.
        let r = answer(&straddling(40, &["2026-11-25T11:30:00Z"]), &XidArgs::default()).expect("answer");
        assert_eq!((r.totals.occurrences, r.totals.at_least, r.totals.at_most), (40, false, None));
        let repeat = &r.patterns[0].summary;
        assert!(repeat.starts_with("s GPU 1 logged XID 13 (") && repeat.contains(") 40 times:"), "{repeat}");
    }

    #[test]
    fn raw_events_in_the_window_raise_the_lower_bound_and_a_ring_reaching_back_makes_it_exact() {
        let since = XidArgs { since: Some("1h".into()), ..Default::default() };
        // Three raw events inside the hour, the ring reaching back no further: at least 3, and a repeat.
        let r =
            answer(&straddling(40, &["2026-11-25T11:30:00Z", "2026-11-25T11:20:00Z", "2026-11-25T11:10:00Z"]), &since)
                .expect("answer");
        assert_eq!((r.totals.occurrences, r.totals.at_least, r.totals.at_most), (3, true, Some(40)));
        assert_eq!((r.patterns[0].occurrences, r.patterns[0].at_least), (3, true));
        assert!(r.patterns[0].summary.contains("at least 3 times"), "{}", r.patterns[0].summary);
        // The ring also holds one from before the window: it keeps the newest events, so nothing in the window
        // was dropped and the count is exact.
        let r =
            answer(&straddling(40, &["2026-11-25T11:30:00Z", "2026-11-25T11:20:00Z", "2026-11-25T09:00:00Z"]), &since)
                .expect("answer");
        assert_eq!((r.totals.occurrences, r.totals.at_least, r.totals.at_most), (2, false, None));
        assert!(r.verdict.starts_with("2 XID occurrences in cluster test"), "{}", r.verdict);
    }

    #[test]
    fn a_total_entirely_inside_the_window_counts_whole() {
        // 6 occurrences, the first 50 minutes ago: all of them are in the last hour, though the ring holds one.
        let o = with_xid(healthy("w", 8), 0, 13, 6, "2026-11-25T11:10:00Z", "2026-11-25T11:50:00Z");
        let snap = snapshot(vec![o], vec![], vec![]);
        let r = answer(&snap, &XidArgs { since: Some("1h".into()), ..Default::default() }).expect("answer");
        assert_eq!(r.totals, XidTotals { occurrences: 6, at_least: false, at_most: None, nodes: 1, gpus: 1, codes: 1 });
        assert!(r.verdict.starts_with("6 XID occurrences in cluster test"), "{}", r.verdict);
    }

    #[test]
    fn nothing_matching_is_a_clear_empty_answer_and_bad_since_an_error() {
        let r = answer(&fleet(), &XidArgs { node_name: Some("e".into()), ..Default::default() }).expect("answer");
        assert_eq!(r.verdict, "No XIDs on node e (all retained history) match.");
        assert_eq!(r.totals, XidTotals::default());
        let e = answer(&fleet(), &XidArgs { since: Some("two hours".into()), ..Default::default() })
            .expect_err("bad since");
        assert!(matches!(e, ToolError::InvalidArgument { argument: "since", .. }));
    }

    #[test]
    fn one_thousand_nodes_stay_within_the_limit() {
        let r = answer(&snapshot(statuses_of(1_000), vec![], vec![]), &XidArgs::default()).expect("answer");
        assert_eq!(r.totals.nodes, 1_000);
        assert_eq!((r.by_node.len(), r.events.len()), (10, 3), "fleet-wide defaults");
        assert_eq!((r.patterns[0].nodes.len(), r.patterns[0].node_count, r.patterns[0].gpus), (3, 1_000, 1_000));
        let cut = r.truncated.as_ref().expect("cut");
        assert_eq!((cut.shown, cut.total), (3, 1_000));
        assert!(
            cut.hint.starts_with("by_node 10 of 1000, events 3 of 1000 shown; narrow with node_name"),
            "{}",
            cut.hint
        );
        // An explicit limit applies to every list, raw events included.
        let r =
            answer(&snapshot(statuses_of(1_000), vec![], vec![]), &XidArgs { limit: Some(30), ..Default::default() })
                .expect("answer");
        assert_eq!((r.by_node.len(), r.events.len()), (30, 30));
    }

    fn statuses_of(n: usize) -> Vec<gpuscope_crds::GpuNodeStatus> {
        (0..n)
            .map(|i| {
                with_xid(healthy(&format!("n{i:04}"), 8), 0, 13, 1, "2026-11-25T10:00:00Z", "2026-11-25T10:00:00Z")
            })
            .collect()
    }

    #[test]
    fn many_gpus_repeating_a_code_are_one_pattern_naming_the_worst() {
        let statuses = (0..40)
            .map(|i| {
                let count = if i == 17 { 9 } else { 3 };
                with_xid(healthy(&format!("n{i:02}"), 8), 1, 13, count, "2026-11-25T08:00:00Z", "2026-11-25T11:00:00Z")
            })
            .collect();
        let r = answer(&snapshot(statuses, vec![], vec![]), &XidArgs::default()).expect("answer");
        let repeating: Vec<&XidPattern> = r.patterns.iter().filter(|p| p.kind == PatternKind::RepeatingGpu).collect();
        assert_eq!(repeating.len(), 1, "{:?}", r.patterns);
        let p = repeating[0];
        assert_eq!((p.gpus, p.node_count, p.occurrences, p.gpu.as_ref()), (40, 40, 126, None));
        assert_eq!(p.nodes[0], "n17", "most occurrences first");
        assert!(
            p.summary
                .starts_with("XID 13 repeats on 40 GPUs (40 nodes), 126 times in all; most on n17 GPU 1 (9 times)"),
            "{}",
            p.summary
        );
    }

    #[test]
    fn only_the_most_severe_codes_carry_the_catalog_text() {
        let mut o = healthy("n1", 8);
        for (gpu, code) in [(0, 79), (1, 48), (2, 13), (3, 31), (4, 43)] {
            o = with_xid(o, gpu, code, 1, "2026-11-25T11:00:00Z", "2026-11-25T11:00:00Z");
        }
        let r = answer(&snapshot(vec![o], vec![], vec![]), &XidArgs::default()).expect("answer");
        let explained: Vec<(u32, bool)> =
            r.by_code.iter().map(|c| (c.meaning.code, !c.meaning.recommended_action.is_empty())).collect();
        assert_eq!(explained.len(), 5);
        assert_eq!(explained.iter().filter(|(_, text)| *text).count(), 3, "{explained:?}");
        assert!(explained[..3].iter().all(|(_, text)| *text), "the first three, most severe first: {explained:?}");
        let json = serde_json::to_value(&r).expect("json");
        assert!(json["by_code"][4].get("recommended_action").is_none(), "{}", json["by_code"][4]);
        assert_eq!(json["by_code"][4]["mnemonic"], crate::xid_view::meaning(r.by_code[4].meaning.code).mnemonic);
    }
}
