//! What an analysis returns: the verdict and the one action first, then per-GPU XID evidence, SXids, companion
//! lines, what was not understood, and how the input looked. Every type serializes to camelCase JSON with a JSON
//! schema (the root is an object), so an MCP tool can return it as structured content.

use schemars::JsonSchema;
use serde::Serialize;

use super::prefix::PrefixKind;
use super::time::LogTime;
use gpuscope_crds::health::Health;
use gpuscope_crds::policy::EffectivePolicy;
use gpuscope_crds::xid::rules::{GpuAction, LogXidEvidence, XidRule, XidVerdict, log_xid_verdict, xid_rule};
use gpuscope_crds::xid::{CATALOG_REVISION, CATALOG_SOURCE, RecoveryAction, lookup};

/// The analysis of one kernel log.
#[derive(Clone, Debug, PartialEq, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LogReport {
    /// The worst verdict and the one action to take first.
    pub summary: Summary,
    /// Per GPU, ordered by PCI bus id: the XIDs the log shows and the verdict the operator's rules give.
    pub gpus: Vec<GpuReport>,
    /// NVSwitch SXids: switch errors, never counted as GPU XIDs.
    pub sxids: Vec<SxidReport>,
    /// Driver lines that accompany XIDs (`RC all channels …`, `GPU at … has fallen off the bus`): evidence, not
    /// XIDs.
    pub companions: Vec<CompanionReport>,
    /// Driver lines that look like XID, SXid or GPU-UUID records but could not be read.
    pub not_understood: NotUnderstood,
    /// NVIDIA's catalog entry for every XID code shown, ordered by code.
    pub catalog: Vec<CatalogEntry>,
    /// What the input looked like.
    pub input: InputStats,
    /// What the size limits left out; all zero when the report is complete.
    pub not_shown: NotShown,
    /// The rules the verdicts follow.
    pub rules: RulesUsed,
}

/// The headline: the worst verdict and the one action to take first.
#[derive(Clone, Debug, PartialEq, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    /// The worst per-GPU verdict; Healthy when nothing in the log escalates (including a log with no XID).
    pub health: Health,
    /// The one action to take first.
    pub action: GpuAction,
    /// One line for a person, e.g. "reboot node: XID 79 on 0000:3b:00.0".
    pub headline: String,
    /// Where the first action applies, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first: Option<FirstAction>,
    /// GPUs with at least one XID.
    pub gpus_with_xids: u64,
    /// GPUs whose verdict is not Healthy.
    pub gpus_needing_action: u64,
    /// XID lines read.
    pub xid_lines: u64,
    /// SXid lines read.
    pub sxid_lines: u64,
    /// Companion lines read.
    pub companion_lines: u64,
    /// Driver lines not understood.
    pub not_understood_lines: u64,
    /// False when a size limit left evidence out (see `notShown`); the verdict covers what is shown.
    pub complete: bool,
}

/// The action to take first and what it is about.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FirstAction {
    /// The action.
    pub action: GpuAction,
    /// The GPU's PCI bus id (the NVSwitch's, when a fatal SXid decided).
    pub pci_bus_id: String,
    /// The GPU's UUID, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uuid: Option<String>,
    /// The XID code that decided (the SXid code, when the reason is `NvswitchFatalSxid`).
    pub code: u32,
    /// The machine-readable reason.
    pub reason: String,
}

/// Where a GPU's UUID came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum UuidSource {
    /// The driver's `NVRM: GPU at PCI:… GPU-<uuid>` line in the log.
    Log,
    /// The caller (e.g. the cluster's GpuNodeStatus for the node).
    Caller,
}

/// One GPU's evidence and verdict.
#[derive(Clone, Debug, PartialEq, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GpuReport {
    /// Normalised PCI bus id (`0000:3b:00.0`).
    pub pci_bus_id: String,
    /// The GPU's UUID, when the log or the caller gives it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uuid: Option<String>,
    /// Where the UUID came from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uuid_source: Option<UuidSource>,
    /// The caller's UUID when it differs from the log's (the GPU may have been replaced since).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub caller_uuid_differs: Option<String>,
    /// The GPU's index, when the caller gives it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub index: Option<u32>,
    /// The worst verdict over its XIDs.
    pub health: Health,
    /// The reason of that verdict; empty when Healthy.
    pub reason: String,
    /// The one thing to do about this GPU.
    pub action: GpuAction,
    /// XID lines for this GPU.
    pub xid_lines: u64,
    /// Per XID code, most urgent first.
    pub xids: Vec<XidReport>,
    /// Distinct codes left out by the per-GPU limit.
    pub codes_not_shown: u64,
    /// XID lines of those codes.
    pub xid_lines_not_shown: u64,
}

/// One XID code on one GPU.
#[derive(Clone, Debug, PartialEq, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct XidReport {
    /// The XID code.
    pub code: u32,
    /// NVIDIA's mnemonic (`UNKNOWN` for a code the catalog does not list).
    pub mnemonic: String,
    /// NVIDIA's short description.
    pub description: String,
    /// Occurrences in the whole log.
    pub count: u64,
    /// Occurrences before the newest reboot the log shows (they never count towards the verdict).
    pub before_last_reboot: u64,
    /// The first occurrence's time as the log gives it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_time: Option<LogTime>,
    /// The last occurrence's time as the log gives it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_time: Option<LogTime>,
    /// Line number (1-based) of the first occurrence.
    pub first_line: u64,
    /// Line number of the last occurrence.
    pub last_line: u64,
    /// The last occurrence's message (after code, pid and name), truncated.
    pub last_message: String,
    /// The process the driver blamed most recently, when it logged one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_process: Option<ProcessReport>,
    /// MIG instances the occurrences name (empty when none names one).
    pub mig_instances: Vec<MigInstance>,
    /// For XID 154: the recovery action the newest occurrence names.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recovery_action: Option<RecoveryActionReport>,
    /// The verdict the operator's default rules give.
    pub verdict: XidVerdict,
}

/// A process the driver named.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProcessReport {
    /// Its pid, when logged.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    /// Its name, when logged.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// A MIG instance an XID names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MigInstance {
    /// GPU instance (`GPU-I:NN`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gpu_instance: Option<u32>,
    /// Compute instance (`GPU-CI:NN`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub compute_instance: Option<u32>,
}

/// The driver's recovery action, as XID 154 names it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RecoveryActionReport {
    /// NVML's number for it.
    pub value: u32,
    /// Its name (`None`, `GpuReset`, `NodeReboot`, …, `Unknown`).
    pub name: String,
    /// What to do about it.
    pub advice: String,
}

impl RecoveryActionReport {
    /// The report for `action`.
    pub fn new(action: RecoveryAction) -> RecoveryActionReport {
        RecoveryActionReport {
            value: action.code(),
            name: action.name().to_string(),
            advice: action.advice().to_string(),
        }
    }
}

/// NVIDIA's catalog entry for a code.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CatalogEntry {
    /// The XID code.
    pub code: u32,
    /// False when the catalog does not list the code.
    pub known: bool,
    /// NVIDIA's mnemonic.
    pub mnemonic: String,
    /// NVIDIA's description.
    pub description: String,
    /// NVIDIA's immediate action (resolution bucket, e.g. `RESTART_BM`).
    pub immediate_action: String,
    /// NVIDIA's investigatory action.
    pub investigatory_action: String,
    /// Where the fault most likely sits.
    pub class: String,
    /// How urgent the code is on its own (`info`, `warning`, `critical`).
    pub severity: String,
    /// What to do, in one or two sentences.
    pub recommended_action: String,
    /// Driver release from which XID 154 accompanies the code.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub xid154_linkage: Option<String>,
    /// Where NVIDIA's device plugin treats the code differently.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device_plugin_note: Option<String>,
}

impl CatalogEntry {
    /// The entry for `code` (a placeholder for a code the catalog does not list).
    pub fn for_code(code: u32) -> CatalogEntry {
        let info = lookup(code);
        CatalogEntry {
            code,
            known: info.known,
            mnemonic: info.mnemonic.to_string(),
            description: info.description.to_string(),
            immediate_action: info.immediate_action.as_str().to_string(),
            investigatory_action: info.investigatory_action.as_str().to_string(),
            class: info.class.label().to_string(),
            severity: info.severity.as_str().to_string(),
            recommended_action: info.recommended_action.to_string(),
            xid154_linkage: info.xid154_linkage.map(str::to_string),
            device_plugin_note: info.device_plugin_note.map(str::to_string),
        }
    }
}

/// An NVSwitch SXid code on one switch.
#[derive(Clone, Debug, PartialEq, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SxidReport {
    /// The switch's normalised PCI bus id.
    pub pci_bus_id: String,
    /// The switch's index from `nvidia-nvswitchN:`, when given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nvswitch: Option<u32>,
    /// The SXid code.
    pub code: u32,
    /// The severity word the message starts with (`Fatal`, `Non-fatal`), when it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub severity: Option<String>,
    /// Occurrences.
    pub count: u64,
    /// First occurrence's time.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_time: Option<LogTime>,
    /// Last occurrence's time.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_time: Option<LogTime>,
    /// Line number of the last occurrence.
    pub last_line: u64,
    /// The last occurrence's message, truncated.
    pub last_message: String,
}

/// Which companion line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum CompanionKindReport {
    /// `NVRM: GPU at 0000:01:00.0 has fallen off the bus.`
    FallenOffBus,
    /// `NVRM: RC all channels for critical error N.`
    RcAllChannels,
}

/// One kind of companion line (per GPU or code).
#[derive(Clone, Debug, PartialEq, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CompanionReport {
    /// Which line.
    pub kind: CompanionKindReport,
    /// The XID it names (`RC all channels for critical error N`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<u32>,
    /// The GPU it names, when it names one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pci_bus_id: Option<String>,
    /// Occurrences.
    pub count: u64,
    /// First occurrence's time.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_time: Option<LogTime>,
    /// Last occurrence's time.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_time: Option<LogTime>,
    /// Line number of the last occurrence.
    pub last_line: u64,
    /// The last line's text from `NVRM:` on, truncated.
    pub last_text: String,
}

/// Driver lines that could not be read.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NotUnderstood {
    /// How many.
    pub lines: u64,
    /// The first few, with the reason.
    pub samples: Vec<NotUnderstoodLine>,
}

/// One line that could not be read.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NotUnderstoodLine {
    /// Line number (1-based).
    pub line: u64,
    /// The line, truncated.
    pub text: String,
    /// Why it could not be read, e.g. "redacted PCI bus id".
    pub reason: String,
}

/// What the input looked like.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct InputStats {
    /// Lines read.
    pub lines: u64,
    /// Bytes read.
    pub bytes: u64,
    /// Lines with an NVIDIA driver marker (`NVRM`, `SXid`).
    pub driver_lines: u64,
    /// Driver lines that are neither records nor companions (driver banners such as `_kgspLogXid119`).
    pub other_driver_lines: u64,
    /// Lines longer than the per-line limit; only their start was read.
    pub long_lines: u64,
    /// Driver lines that were not UTF-8 (read with replacement characters).
    pub non_utf8_lines: u64,
    /// Reboots the log shows after a driver line (`Linux version …`, journalctl's `-- Boot … --`): driver lines
    /// before the last one never count towards a verdict.
    pub reboots_seen: u64,
    /// Driver lines joined with the next line (continuation records, lines a pager or a copy cut).
    pub joined_lines: u64,
    /// The prefixes found on driver lines, and how many lines had each.
    pub formats: Vec<FormatCount>,
}

/// How many driver lines had one kind of prefix.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FormatCount {
    /// The prefix.
    pub format: PrefixKind,
    /// Its human-readable name.
    pub label: String,
    /// Driver lines with it.
    pub lines: u64,
}

/// What the size limits left out.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NotShown {
    /// GPUs beyond the GPU limit (counted up to an internal cap).
    pub gpus: u64,
    /// XID lines on GPUs or codes not shown.
    pub xid_lines: u64,
    /// The distinct codes of those lines, ascending (at most 64 listed).
    pub codes: Vec<u32>,
    /// SXid lines beyond the SXid limit.
    pub sxid_lines: u64,
    /// Companion lines beyond the companion limit.
    pub companion_lines: u64,
    /// Not-understood lines beyond the sample limit (counted in `notUnderstood.lines`).
    pub not_understood_samples: u64,
}

impl NotShown {
    /// True when nothing was left out.
    pub fn is_empty(&self) -> bool {
        self.gpus == 0 && self.xid_lines == 0 && self.sxid_lines == 0 && self.companion_lines == 0
    }
}

/// The rules the verdicts follow.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RulesUsed {
    /// More than this many of one application-class XID on one GPU: Degraded.
    pub application_xid_rate: u32,
    /// Per-code overrides in the policy (0 for the default policy).
    pub overrides: u64,
    /// How a log is judged, in one sentence.
    pub note: String,
    /// The catalog revision the verdicts follow.
    pub catalog_revision: String,
    /// Where the catalog comes from.
    pub catalog_source: String,
}

impl RulesUsed {
    /// The description of `policy`.
    pub fn new(policy: &EffectivePolicy) -> RulesUsed {
        RulesUsed {
            application_xid_rate: policy.application_xid_rate,
            overrides: policy.xid_overrides.len() as u64,
            note: "The operator's rules applied to the whole log as one window: only the newest boot the log shows \
                   counts, and the remedy \"no repeat within the window\" cannot be seen in a log."
                .to_string(),
            catalog_revision: CATALOG_REVISION.to_string(),
            catalog_source: CATALOG_SOURCE.to_string(),
        }
    }
}

/// A code explained on its own: the catalog entry and what the operator's rules make of it.
#[derive(Clone, Debug, PartialEq, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct XidExplanation {
    /// NVIDIA's catalog entry.
    pub catalog: CatalogEntry,
    /// The rule under the policy.
    pub rule: XidRule,
    /// The verdict for one occurrence.
    pub once: XidVerdict,
    /// The verdict for one more occurrence than the policy's rate on one GPU.
    pub above_rate: XidVerdict,
    /// For XID 154: the verdict per recovery action it may name.
    pub by_recovery_action: Vec<RecoveryActionVerdict>,
    /// The rules used.
    pub rules: RulesUsed,
}

/// The verdict XID 154 gives for one recovery action.
#[derive(Clone, Debug, PartialEq, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RecoveryActionVerdict {
    /// The recovery action.
    pub recovery_action: RecoveryActionReport,
    /// The verdict.
    pub verdict: XidVerdict,
}

/// Explain one XID code: NVIDIA's catalog entry and the verdicts the operator's rules give (for the
/// `explain_xid` tool).
pub fn explain_xid(code: u32, policy: &EffectivePolicy) -> XidExplanation {
    let once = LogXidEvidence { code, count: 1, ..LogXidEvidence::default() };
    let above = LogXidEvidence { count: u64::from(policy.application_xid_rate).saturating_add(1), ..once };
    let rule = xid_rule(code, policy);
    let by_recovery_action = if rule.effect == gpuscope_crds::xid::rules::XidEffect::RecoveryAction {
        (0..=7)
            .map(RecoveryAction::from_code)
            .map(|action| RecoveryActionVerdict {
                recovery_action: RecoveryActionReport::new(action),
                verdict: log_xid_verdict(&LogXidEvidence { recovery_action: Some(action), ..once }, policy),
            })
            .collect()
    } else {
        Vec::new()
    };
    XidExplanation {
        catalog: CatalogEntry::for_code(code),
        rule,
        once: log_xid_verdict(&once, policy),
        above_rate: log_xid_verdict(&above, policy),
        by_recovery_action,
        rules: RulesUsed::new(policy),
    }
}
