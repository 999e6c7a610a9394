//! The streaming analysis: lines in, a bounded [`LogReport`] out.
//!
//! Memory does not grow with the input: one partial line (at most [`MAX_LINE_BYTES`]), one held-back driver line
//! (at most `MAX_PENDING_BYTES`), and accumulators capped by [`Limits`]. An ordinary kernel line costs a few
//! vectorised substring searches and nothing else: no allocation, no prefix parsing.

use std::collections::{BTreeMap, BTreeSet};

use super::prefix::{LinePrefix, PrefixKind, split_prefix};
use super::report::{
    CatalogEntry, CompanionKindReport, CompanionReport, FirstAction, FormatCount, GpuReport, InputStats, LogReport,
    MigInstance, NotShown, NotUnderstood, NotUnderstoodLine, ProcessReport, RecoveryActionReport, RulesUsed, Summary,
    SxidReport, UuidSource, XidReport,
};
use super::time::TimeText;
use gpuscope_crds::health::{Health, reason};
use gpuscope_crds::kmsg::RecordFlag;
use gpuscope_crds::pci::PciBusId;
use gpuscope_crds::policy::EffectivePolicy;
use gpuscope_crds::xid::line::parse_kernel_message;
use gpuscope_crds::xid::line::{CompanionKind, KernelEvent, SxidLine, XidLine, XidLineError, XidLineErrorReason};
use gpuscope_crds::xid::nvlink5::{self, Nvlink5Severity};
use gpuscope_crds::xid::rules::{GpuAction, LogXidEvidence, Urgency, XidEffect, log_xid_verdict};
use gpuscope_crds::xid::{RecoveryAction, lookup};

/// The longest line read; a longer line is read up to here (and counted in `input.longLines`).
pub const MAX_LINE_BYTES: usize = 64 * 1024;

/// The most text held back while waiting for a line's continuation.
const MAX_PENDING_BYTES: usize = 4 * 1024;

/// The most PCI → UUID pairs kept from the log's `GPU at` lines (more when the report may show more GPUs).
const MAX_LOG_UUIDS: usize = 256;

/// The most GPUs not shown that are told apart when counting them.
const MAX_NOT_SHOWN_GPUS: usize = 4_096;

/// The most codes a GPU's `codesNotShown` tells apart.
const MAX_NOT_SHOWN_CODES_PER_GPU: usize = 256;

/// The most codes `notShown.codes` lists.
const MAX_NOT_SHOWN_CODES_LISTED: usize = 64;

/// Size limits of a report. The defaults keep the JSON of any report under about 400 KB.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// GPUs shown (a node has at most 16); XIDs on further GPUs are counted in `notShown`.
    pub max_gpus: usize,
    /// Distinct XID codes shown per GPU.
    pub max_codes_per_gpu: usize,
    /// MIG instances listed per (GPU, code).
    pub max_mig_instances: usize,
    /// Distinct (switch, SXid code) pairs shown.
    pub max_sxids: usize,
    /// Distinct companion entries shown.
    pub max_companions: usize,
    /// Not-understood lines quoted.
    pub max_samples: usize,
    /// Characters kept of a message or quoted line.
    pub max_text_chars: usize,
}

impl Limits {
    /// Every GPU, code, MIG instance, SXid and companion the log holds: for a person reading the report (the
    /// command line's default), where leaving GPUs out would hide the one that matters. Only the quoted examples of
    /// not-understood lines stay a sample (every such line is still counted), so a log of garbage cannot fill
    /// memory with copies of itself; memory grows with the GPUs and codes in the log, not with its size.
    pub fn everything() -> Limits {
        Limits {
            max_gpus: usize::MAX,
            max_codes_per_gpu: usize::MAX,
            max_mig_instances: usize::MAX,
            max_sxids: usize::MAX,
            max_companions: usize::MAX,
            max_samples: 100,
            ..Limits::default()
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_gpus: 16,
            max_codes_per_gpu: 16,
            max_mig_instances: 8,
            max_sxids: 32,
            max_companions: 16,
            max_samples: 10,
            max_text_chars: 240,
        }
    }
}

/// What the caller knows about a GPU (e.g. from the cluster's GpuNodeStatus for the node the log came from).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KnownGpu {
    /// The GPU's UUID.
    pub uuid: Option<String>,
    /// The GPU's index on the node.
    pub index: Option<u32>,
}

/// How to analyse a log.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AnalyzeOptions {
    /// The health policy whose rules give the verdicts; the default is the operator's default policy.
    pub policy: EffectivePolicy,
    /// GPUs the caller knows, by PCI bus id: their UUID and index join the report.
    pub known_gpus: BTreeMap<PciBusId, KnownGpu>,
    /// Size limits of the report.
    pub limits: Limits,
}

/// Feeds a kernel log line by line (or in arbitrary chunks) and gives a [`LogReport`] at the end.
///
/// ```
/// use gpuscope_log_analysis::{AnalyzeOptions, LogAnalyzer};
/// let mut analyzer = LogAnalyzer::new(AnalyzeOptions::default());
/// analyzer.push_bytes(b"[Mon Aug  5 03:54:13 2024] NVRM: Xid (PCI:0000:3b:00): 79, GPU has fallen off the bus.\n");
/// let report = analyzer.finish();
/// assert_eq!(report.summary.headline, "reboot node: XID 79 on 0000:3b:00.0");
/// ```
#[derive(Debug)]
pub struct LogAnalyzer {
    options: AnalyzeOptions,
    stats: Stats,
    /// The start of a line whose end has not arrived yet (at most `MAX_LINE_BYTES + 1` bytes).
    carry: Vec<u8>,
    /// A driver line held back until the next line says whether it continues it.
    pending: Option<Pending>,
    /// Boot counter: starts at 0, +1 per boot the log shows starting.
    boot: u32,
    gpus: BTreeMap<PciBusId, GpuAcc>,
    log_uuids: BTreeMap<PciBusId, String>,
    sxids: BTreeMap<(PciBusId, u32), SxidAcc>,
    companions: BTreeMap<(CompanionKindReport, Option<u32>, Option<PciBusId>), Occurrences>,
    not_understood: NotUnderstood,
    not_shown: NotShownAcc,
    /// The newest `NVRM: loading NVIDIA UNIX … Kernel Module` line: (boot, line). A driver reload resets every GPU,
    /// which is the remedy RESET_GPU-class XIDs wait for.
    last_driver_load: Option<(u32, u64)>,
}

#[derive(Debug, Default)]
struct Stats {
    lines: u64,
    bytes: u64,
    driver_lines: u64,
    other_driver_lines: u64,
    long_lines: u64,
    non_utf8_lines: u64,
    reboots_seen: u64,
    /// `driver_lines` when the boot counter last moved.
    driver_lines_at_boot: u64,
    joined_lines: u64,
    xid_lines: u64,
    sxid_lines: u64,
    companion_lines: u64,
    formats: [u64; PrefixKind::ALL.len()],
}

#[derive(Debug)]
struct Pending {
    kind: PendingKind,
    /// The kernel text so far.
    text: String,
    time: TimeText,
    line_no: u64,
    /// The original line, truncated, to quote if it stays unreadable.
    sample: String,
    /// Why it is unreadable on its own (for `Cut`).
    reason: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PendingKind {
    /// A `/dev/kmsg` record flagged `c`: `+` records continue it (kernels before 4.9).
    KmsgContinued,
    /// A driver line that stops mid-record: the next line may be its wrapped rest.
    Cut,
}

/// Where an event's time comes from: the line being read, or a held-back line's kept copy.
#[derive(Clone, Copy)]
enum TimeSource<'a> {
    Line(&'a LinePrefix<'a>),
    Kept(&'a TimeText),
}

impl TimeSource<'_> {
    fn write_to(self, out: &mut TimeText) {
        match self {
            TimeSource::Line(prefix) => out.set(prefix),
            TimeSource::Kept(kept) => out.clone_from(kept),
        }
    }

    fn to_owned(self) -> TimeText {
        let mut out = TimeText::default();
        self.write_to(&mut out);
        out
    }
}

/// Occurrences of one thing: count, first and last time and line, last text.
#[derive(Debug)]
struct Occurrences {
    count: u64,
    first_time: TimeText,
    last_time: TimeText,
    first_line: u64,
    last_line: u64,
    last_text: String,
}

impl Occurrences {
    fn new() -> Occurrences {
        Occurrences {
            count: 0,
            first_time: TimeText::default(),
            last_time: TimeText::default(),
            first_line: 0,
            last_line: 0,
            last_text: String::new(),
        }
    }

    fn record(&mut self, time: TimeSource<'_>, line_no: u64, text: &str, max_chars: usize) {
        self.count = self.count.saturating_add(1);
        if self.count == 1 {
            time.write_to(&mut self.first_time);
            self.first_line = line_no;
        }
        time.write_to(&mut self.last_time);
        self.last_line = line_no;
        set_truncated(&mut self.last_text, text, max_chars);
    }
}

#[derive(Debug, Default)]
struct GpuAcc {
    codes: BTreeMap<u32, CodeAcc>,
    xid_lines: u64,
    codes_not_shown: BTreeSet<u32>,
    xid_lines_not_shown: u64,
    /// The newest XID 154: (boot, line, the recovery action it names).
    last_154: Option<(u32, u64, Option<RecoveryAction>)>,
}

#[derive(Debug)]
struct CodeAcc {
    events: Occurrences,
    /// The boot of the newest occurrence, and how many occurrences are in it.
    boot: u32,
    in_boot: u64,
    last_process: Option<ProcessReport>,
    mig: BTreeSet<MigInstance>,
    /// For 154: the recovery action the newest occurrence in `boot` names.
    recovery: Option<RecoveryAction>,
    /// For NVLink5 codes (144–150): the worst severity token in `boot`.
    nvlink5: Option<Nvlink5Severity>,
}

#[derive(Debug)]
struct SxidAcc {
    nvswitch: Option<u32>,
    /// One per SXid: its header line (the one with the severity word); detail lines that repeat the code do not
    /// count again and do not replace the header's text.
    events: Occurrences,
    /// The newest header's severity word.
    severity: Option<String>,
    /// The boot of the newest fatal SXid, when there is one.
    fatal_boot: Option<u32>,
}

#[derive(Debug, Default)]
struct NotShownAcc {
    gpus: BTreeSet<PciBusId>,
    gpus_overflow: u64,
    xid_lines: u64,
    /// One bit per code up to `MAX_XID_CODE`.
    codes: Vec<u64>,
    sxid_lines: u64,
    companion_lines: u64,
    not_understood_samples: u64,
}

impl NotShownAcc {
    fn code(&mut self, code: u32) {
        self.xid_lines = self.xid_lines.saturating_add(1);
        let (word, bit) = ((code / 64) as usize, code % 64);
        if self.codes.len() <= word {
            self.codes.resize(word + 1, 0);
        }
        if let Some(w) = self.codes.get_mut(word) {
            *w |= 1 << bit;
        }
    }
}

impl LogAnalyzer {
    /// An analyzer with nothing read yet.
    pub fn new(options: AnalyzeOptions) -> LogAnalyzer {
        LogAnalyzer {
            options,
            stats: Stats::default(),
            carry: Vec::new(),
            pending: None,
            boot: 0,
            gpus: BTreeMap::new(),
            log_uuids: BTreeMap::new(),
            sxids: BTreeMap::new(),
            companions: BTreeMap::new(),
            not_understood: NotUnderstood::default(),
            not_shown: NotShownAcc::default(),
            last_driver_load: None,
        }
    }

    /// Feed a chunk of the log, split anywhere (lines end at `\n`; a trailing `\r` is dropped).
    pub fn push_bytes(&mut self, data: &[u8]) {
        self.stats.bytes = self.stats.bytes.saturating_add(data.len() as u64);
        let mut rest = data;
        if !self.carry.is_empty() {
            let Some(end) = find_newline(rest) else {
                self.extend_carry(rest);
                return;
            };
            self.extend_carry(rest.get(..end).unwrap_or_default());
            let mut line = std::mem::take(&mut self.carry);
            self.line(&line);
            line.clear();
            self.carry = line;
            rest = rest.get(end + 1..).unwrap_or_default();
        }
        while let Some(end) = find_newline(rest) {
            self.line(rest.get(..end).unwrap_or_default());
            rest = rest.get(end + 1..).unwrap_or_default();
        }
        self.extend_carry(rest);
    }

    /// Feed one line (without its `\n`; a trailing `\r` is dropped). Do not mix with a partial
    /// [`push_bytes`](Self::push_bytes) line.
    pub fn push_line(&mut self, line: &[u8]) {
        self.stats.bytes = self.stats.bytes.saturating_add(line.len() as u64 + 1);
        self.line(line);
    }

    /// The end of the input: flush what is held back and build the report.
    pub fn finish(mut self) -> LogReport {
        if !self.carry.is_empty() {
            let line = std::mem::take(&mut self.carry);
            self.line(&line);
        }
        if let Some(pending) = self.pending.take() {
            self.finalize(pending);
        }
        self.report()
    }

    fn extend_carry(&mut self, bytes: &[u8]) {
        // One byte over the limit marks the line as long without keeping the rest.
        let room = (MAX_LINE_BYTES + 1).saturating_sub(self.carry.len());
        self.carry.extend_from_slice(bytes.get(..bytes.len().min(room)).unwrap_or_default());
    }

    /// One line of bytes: cut to the limit, decoded, analysed.
    fn line(&mut self, raw: &[u8]) {
        self.stats.lines = self.stats.lines.saturating_add(1);
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        let long = raw.len() > MAX_LINE_BYTES;
        let raw = if long {
            self.stats.long_lines = self.stats.long_lines.saturating_add(1);
            raw.get(..MAX_LINE_BYTES).unwrap_or(raw)
        } else {
            raw
        };
        match std::str::from_utf8(raw) {
            Ok(text) => self.text_line(text, false),
            // The cut fell inside a character: read up to it.
            Err(e) if long && e.error_len().is_none() => {
                let text = std::str::from_utf8(raw.get(..e.valid_up_to()).unwrap_or_default()).unwrap_or_default();
                self.text_line(text, false);
            }
            // Binary noise: only a line with a marker (or one that may continue a held-back line) is worth
            // converting.
            Err(_) if self.pending.is_none() && !has_marker_bytes(raw) => {}
            Err(_) => {
                let text = String::from_utf8_lossy(raw);
                self.text_line(&text, true);
            }
        }
    }

    fn text_line(&mut self, line: &str, non_utf8: bool) {
        let line_no = self.stats.lines;
        // The fast path: nearly every kernel line lacks both markers.
        let marker = has_marker(line);
        if let Some(pending) = self.pending.take()
            && self.continue_pending(pending, line, marker)
        {
            return;
        }
        if !marker {
            // A boot with no driver line since the last one changes nothing; journalctl prints `-- Boot … --`
            // and then the kernel's `Linux version` for the same boot.
            if self.stats.driver_lines > self.stats.driver_lines_at_boot && is_boot_marker(line) {
                self.boot = self.boot.saturating_add(1);
                self.stats.reboots_seen = self.stats.reboots_seen.saturating_add(1);
                self.stats.driver_lines_at_boot = self.stats.driver_lines;
            }
            return;
        }
        self.stats.driver_lines = self.stats.driver_lines.saturating_add(1);
        if non_utf8 {
            self.stats.non_utf8_lines = self.stats.non_utf8_lines.saturating_add(1);
        }
        let prefix = split_prefix(line);
        if !prefix.kinds.is_empty() {
            for (n, kind) in self.stats.formats.iter_mut().zip(PrefixKind::ALL) {
                if prefix.kinds.contains(kind) {
                    *n = n.saturating_add(1);
                }
            }
        }
        // A raw record escapes bytes outside printable ASCII as `\xNN`: decode as the probe does.
        let decoded = decode_kmsg_text(&prefix);
        let text = decoded.as_deref().unwrap_or(prefix.text);
        if prefix.kmsg.is_some_and(|h| h.flag == RecordFlag::ContinuationStart) && text.len() <= MAX_PENDING_BYTES {
            self.pending = Some(Pending {
                kind: PendingKind::KmsgContinued,
                text: kmsg_fragment(line, &prefix),
                time: TimeText::of(&prefix),
                line_no,
                sample: truncated(line.trim(), self.options.limits.max_text_chars),
                reason: String::new(),
            });
            return;
        }
        self.event(text, TimeSource::Line(&prefix), line_no, line, true);
    }

    /// Whether `line` continues the held-back one (then it is consumed); otherwise the held-back line is settled.
    fn continue_pending(&mut self, mut pending: Pending, line: &str, marker: bool) -> bool {
        match pending.kind {
            PendingKind::KmsgContinued => {
                let prefix = split_prefix(line);
                if prefix.kmsg.is_some_and(|h| h.flag == RecordFlag::Continuation)
                    && pending.text.len() + prefix.text.len() <= MAX_PENDING_BYTES
                {
                    pending.text.push_str(&kmsg_fragment(line, &prefix));
                    self.stats.joined_lines = self.stats.joined_lines.saturating_add(1);
                    self.pending = Some(pending);
                    return true;
                }
                self.finalize(pending);
                false
            }
            PendingKind::Cut => {
                let prefix = (!marker).then(|| split_prefix(line));
                let joinable = prefix.is_some_and(|p| {
                    (p.kinds.is_empty() || p.is_continuation())
                        && !p.text.is_empty()
                        && p.text.len() <= MAX_PENDING_BYTES
                });
                if joinable {
                    let joined = format!("{}{}", pending.text, line.trim());
                    if matches!(parse_kernel_message(&joined), Ok(Some(_))) {
                        self.stats.joined_lines = self.stats.joined_lines.saturating_add(1);
                        self.event(&joined, TimeSource::Kept(&pending.time), pending.line_no, &pending.sample, false);
                        return true;
                    }
                }
                self.finalize(pending);
                false
            }
        }
    }

    /// Settle a held-back line that nothing continued.
    fn finalize(&mut self, pending: Pending) {
        match pending.kind {
            PendingKind::KmsgContinued => {
                self.event(&pending.text, TimeSource::Kept(&pending.time), pending.line_no, &pending.sample, false);
            }
            PendingKind::Cut => self.not_understood_line(pending.line_no, &pending.sample, pending.reason),
        }
    }

    /// One kernel message with a driver marker.
    fn event(&mut self, text: &str, time: TimeSource<'_>, line_no: u64, line: &str, may_join: bool) {
        let max_chars = self.options.limits.max_text_chars;
        match parse_kernel_message(text) {
            Ok(Some(KernelEvent::Xid(x))) => self.xid(x, time, line_no),
            Ok(Some(KernelEvent::GpuUuid { pci_bus_id, uuid })) => {
                // Enough room for every GPU the report may show.
                let room = MAX_LOG_UUIDS.max(self.options.limits.max_gpus);
                if self.log_uuids.len() < room || self.log_uuids.contains_key(&pci_bus_id) {
                    self.log_uuids.insert(pci_bus_id, uuid);
                }
            }
            Ok(Some(KernelEvent::Sxid(s))) => self.sxid(s, time, line_no),
            Ok(Some(KernelEvent::Companion { pci_bus_id, kind, text })) => {
                self.stats.companion_lines = self.stats.companion_lines.saturating_add(1);
                let (kind, code) = match kind {
                    CompanionKind::FallenOffBus => (CompanionKindReport::FallenOffBus, None),
                    CompanionKind::RcAllChannels { code } => (CompanionKindReport::RcAllChannels, Some(code)),
                };
                let key = (kind, code, pci_bus_id);
                if self.companions.len() >= self.options.limits.max_companions && !self.companions.contains_key(&key) {
                    self.not_shown.companion_lines = self.not_shown.companion_lines.saturating_add(1);
                    return;
                }
                self.companions.entry(key).or_insert_with(Occurrences::new).record(time, line_no, &text, max_chars);
            }
            Ok(None) if may_join && ends_mid_marker(text) => {
                self.hold_cut(text, time, line_no, line, "cut off after \"NVRM\" (a pager or a copy may have cut it)");
            }
            Ok(None) => {
                if text.trim_start().starts_with("NVRM: loading NVIDIA UNIX") {
                    self.last_driver_load = Some((self.boot, line_no));
                }
                self.stats.other_driver_lines = self.stats.other_driver_lines.saturating_add(1);
            }
            Err(e) if may_join && matches!(e.reason, XidLineErrorReason::Truncated(_)) => {
                let reason = explain_error(&e);
                self.hold_cut(text, time, line_no, line, &reason);
            }
            Err(e) => {
                let reason = explain_error(&e);
                self.not_understood_line(line_no, line, reason);
            }
        }
    }

    fn hold_cut(&mut self, text: &str, time: TimeSource<'_>, line_no: u64, line: &str, reason: &str) {
        let sample = truncated(line.trim(), self.options.limits.max_text_chars);
        if text.len() > MAX_PENDING_BYTES {
            self.not_understood_line(line_no, &sample, reason.to_string());
            return;
        }
        self.pending = Some(Pending {
            kind: PendingKind::Cut,
            text: text.trim_end().to_string(),
            time: time.to_owned(),
            line_no,
            sample,
            reason: reason.to_string(),
        });
    }

    fn not_understood_line(&mut self, line_no: u64, line: &str, reason: String) {
        self.not_understood.lines = self.not_understood.lines.saturating_add(1);
        if self.not_understood.samples.len() < self.options.limits.max_samples {
            let text = truncated(line.trim(), self.options.limits.max_text_chars);
            self.not_understood.samples.push(NotUnderstoodLine { line: line_no, text, reason });
        } else {
            self.not_shown.not_understood_samples = self.not_shown.not_understood_samples.saturating_add(1);
        }
    }

    fn xid(&mut self, x: XidLine, time: TimeSource<'_>, line_no: u64) {
        self.stats.xid_lines = self.stats.xid_lines.saturating_add(1);
        let limits = &self.options.limits;
        if !self.gpus.contains_key(&x.pci_bus_id) && self.gpus.len() >= limits.max_gpus {
            if self.not_shown.gpus.len() < MAX_NOT_SHOWN_GPUS {
                self.not_shown.gpus.insert(x.pci_bus_id);
            } else if !self.not_shown.gpus.contains(&x.pci_bus_id) {
                self.not_shown.gpus_overflow = self.not_shown.gpus_overflow.saturating_add(1);
            }
            self.not_shown.code(x.code);
            return;
        }
        let gpu = self.gpus.entry(x.pci_bus_id).or_default();
        gpu.xid_lines = gpu.xid_lines.saturating_add(1);
        if x.code == 154 {
            gpu.last_154 = Some((self.boot, line_no, x.recovery_action));
        }
        if !gpu.codes.contains_key(&x.code) && gpu.codes.len() >= limits.max_codes_per_gpu {
            if gpu.codes_not_shown.len() < MAX_NOT_SHOWN_CODES_PER_GPU {
                gpu.codes_not_shown.insert(x.code);
            }
            gpu.xid_lines_not_shown = gpu.xid_lines_not_shown.saturating_add(1);
            self.not_shown.code(x.code);
            return;
        }
        let boot = self.boot;
        let acc = gpu.codes.entry(x.code).or_insert_with(|| CodeAcc {
            events: Occurrences::new(),
            boot,
            in_boot: 0,
            last_process: None,
            mig: BTreeSet::new(),
            recovery: None,
            nvlink5: None,
        });
        if acc.boot != boot {
            acc.boot = boot;
            acc.in_boot = 0;
            acc.recovery = None;
            acc.nvlink5 = None;
        }
        if nvlink5::is_nvlink5(x.code)
            && let Some(severity) = nvlink5::decode(&x.message).severity
            && acc.nvlink5 != Some(Nvlink5Severity::Fatal)
        {
            acc.nvlink5 = Some(severity);
        }
        acc.in_boot = acc.in_boot.saturating_add(1);
        acc.events.record(time, line_no, &x.message, limits.max_text_chars);
        if x.pid.is_some() || x.process_name.is_some() {
            let name = x
                .process_name
                .map(|n| if n.len() > limits.max_text_chars { truncated(&n, limits.max_text_chars) } else { n });
            acc.last_process = Some(ProcessReport { pid: x.pid, name });
        }
        if x.gpu_instance.is_some() || x.compute_instance.is_some() {
            let mig = MigInstance { gpu_instance: x.gpu_instance, compute_instance: x.compute_instance };
            if acc.mig.len() < limits.max_mig_instances {
                acc.mig.insert(mig);
            }
        }
        if x.code == 154 {
            acc.recovery = x.recovery_action;
        }
    }

    fn sxid(&mut self, s: SxidLine, time: TimeSource<'_>, line_no: u64) {
        self.stats.sxid_lines = self.stats.sxid_lines.saturating_add(1);
        let key = (s.pci_bus_id, s.code);
        if self.sxids.len() >= self.options.limits.max_sxids && !self.sxids.contains_key(&key) {
            self.not_shown.sxid_lines = self.not_shown.sxid_lines.saturating_add(1);
            return;
        }
        let acc = self.sxids.entry(key).or_insert_with(|| SxidAcc {
            nvswitch: s.nvswitch,
            events: Occurrences::new(),
            severity: None,
            fatal_boot: None,
        });
        acc.nvswitch = s.nvswitch.or(acc.nvswitch);
        // The driver prints one SXid as a header (`20034, Fatal, Link 28 …`) and detail lines with the same code
        // (`Severity 5 Engine instance …`, `Data {…}`): only a header is an occurrence.
        let severity = sxid_severity(&s.message);
        if severity.is_none() && acc.events.count > 0 {
            return;
        }
        if severity.as_deref().is_some_and(|w| w.eq_ignore_ascii_case("fatal")) {
            acc.fatal_boot = Some(self.boot);
        }
        if severity.is_some() {
            acc.severity = severity;
        }
        acc.events.record(time, line_no, &s.message, self.options.limits.max_text_chars);
    }

    fn report(self) -> LogReport {
        let policy = &self.options.policy;
        let mut codes_shown = BTreeSet::new();
        let mut gpus = Vec::with_capacity(self.gpus.len());
        for (pci, gpu) in &self.gpus {
            let mut xids: Vec<XidReport> = gpu
                .codes
                .iter()
                .map(|(&code, acc)| {
                    codes_shown.insert(code);
                    self.xid_report(code, acc, gpu, policy)
                })
                .collect();
            // The one ranking: urgency, then recency.
            xids.sort_by(|a, b| {
                b.verdict
                    .urgency()
                    .cmp(&a.verdict.urgency())
                    .then(b.last_line.cmp(&a.last_line))
                    .then(a.code.cmp(&b.code))
            });
            let worst = xids.first().map(|x| &x.verdict);
            let known = self.options.known_gpus.get(pci);
            let caller_uuid = known.and_then(|k| k.uuid.clone());
            let (uuid, uuid_source, caller_uuid_differs) = match (self.log_uuids.get(pci), caller_uuid) {
                (Some(log), Some(caller)) if !log.eq_ignore_ascii_case(&caller) => {
                    (Some(log.clone()), Some(UuidSource::Log), Some(caller))
                }
                (Some(log), _) => (Some(log.clone()), Some(UuidSource::Log), None),
                (None, Some(caller)) => (Some(caller), Some(UuidSource::Caller), None),
                (None, None) => (None, None, None),
            };
            gpus.push(GpuReport {
                pci_bus_id: pci.to_string(),
                uuid,
                uuid_source,
                caller_uuid_differs,
                index: known.and_then(|k| k.index),
                health: worst.map_or(Health::Healthy, |v| v.health),
                reason: worst.map(|v| v.reason.clone()).unwrap_or_default(),
                action: worst.map_or(GpuAction::None, |v| v.action),
                xid_lines: gpu.xid_lines,
                xids,
                codes_not_shown: gpu.codes_not_shown.len() as u64,
                xid_lines_not_shown: gpu.xid_lines_not_shown,
            });
        }

        let sxids = self
            .sxids
            .iter()
            .map(|((pci, code), acc)| SxidReport {
                pci_bus_id: pci.to_string(),
                nvswitch: acc.nvswitch,
                code: *code,
                severity: acc.severity.clone(),
                count: acc.events.count,
                first_time: acc.events.first_time.to_log_time(),
                last_time: acc.events.last_time.to_log_time(),
                last_line: acc.events.last_line,
                last_message: acc.events.last_text.clone(),
            })
            .collect();
        let companions = self
            .companions
            .iter()
            .map(|((kind, code, pci), acc)| CompanionReport {
                kind: *kind,
                code: *code,
                pci_bus_id: pci.map(|p| p.to_string()),
                count: acc.count,
                first_time: acc.first_time.to_log_time(),
                last_time: acc.last_time.to_log_time(),
                last_line: acc.last_line,
                last_text: acc.last_text.clone(),
            })
            .collect();

        let not_shown = NotShown {
            gpus: (self.not_shown.gpus.len() as u64).saturating_add(self.not_shown.gpus_overflow),
            xid_lines: self.not_shown.xid_lines,
            codes: self
                .not_shown
                .codes
                .iter()
                .enumerate()
                .flat_map(|(word, bits)| {
                    (0..64u32).filter(move |b| bits & (1 << b) != 0).map(move |b| word as u32 * 64 + b)
                })
                .take(MAX_NOT_SHOWN_CODES_LISTED)
                .collect(),
            sxid_lines: self.not_shown.sxid_lines,
            companion_lines: self.not_shown.companion_lines,
            not_understood_samples: self.not_shown.not_understood_samples,
        };
        let summary = self.summary(&gpus, not_shown.is_empty());
        let formats = PrefixKind::ALL
            .iter()
            .zip(self.stats.formats)
            .filter(|(_, n)| *n > 0)
            .map(|(kind, lines)| FormatCount { format: *kind, label: kind.label().to_string(), lines })
            .collect();
        let s = &self.stats;
        LogReport {
            summary,
            gpus,
            sxids,
            companions,
            not_understood: self.not_understood.clone(),
            catalog: codes_shown.into_iter().map(CatalogEntry::for_code).collect(),
            input: InputStats {
                lines: s.lines,
                bytes: s.bytes,
                driver_lines: s.driver_lines,
                other_driver_lines: s.other_driver_lines,
                long_lines: s.long_lines,
                non_utf8_lines: s.non_utf8_lines,
                reboots_seen: s.reboots_seen,
                joined_lines: s.joined_lines,
                formats,
            },
            not_shown,
            rules: RulesUsed::new(policy),
        }
    }

    fn xid_report(&self, code: u32, acc: &CodeAcc, gpu: &GpuAcc, policy: &EffectivePolicy) -> XidReport {
        // Only the newest boot the log shows counts, as in the operator.
        let current = acc.boot == self.boot;
        let count = if current { acc.in_boot } else { 0 };
        // The remedy is the GPU's newest XID 154 naming None, after this code's last occurrence, in this boot.
        let remedied = matches!(gpu.last_154, Some((boot, line, Some(RecoveryAction::None)))
            if current && boot == acc.boot && line > acc.events.last_line)
            // A driver reload after it, in the same boot, resets the GPU too.
            || matches!(self.last_driver_load, Some((boot, line)) if current && boot == acc.boot && line > acc.events.last_line);
        let recovery_action = if current { acc.recovery } else { None };
        let nvlink5 = if current { acc.nvlink5 } else { None };
        let evidence = LogXidEvidence { code, count, recovery_action, remedied, nvlink5 };
        let info = lookup(code);
        XidReport {
            code,
            mnemonic: info.mnemonic.to_string(),
            description: info.description.to_string(),
            count: acc.events.count,
            before_last_reboot: acc.events.count.saturating_sub(count),
            first_time: acc.events.first_time.to_log_time(),
            last_time: acc.events.last_time.to_log_time(),
            first_line: acc.events.first_line,
            last_line: acc.events.last_line,
            last_message: acc.events.last_text.clone(),
            last_process: acc.last_process.clone(),
            mig_instances: acc.mig.iter().copied().collect(),
            recovery_action: acc.recovery.map(RecoveryActionReport::new),
            verdict: log_xid_verdict(&evidence, policy),
        }
    }

    fn summary(&self, gpus: &[GpuReport], complete: bool) -> Summary {
        let worst = gpus.iter().filter_map(|g| g.xids.first().map(|x| (g, x))).max_by(|(ga, a), (gb, b)| {
            a.verdict
                .urgency()
                .cmp(&b.verdict.urgency())
                .then(a.last_line.cmp(&b.last_line))
                .then(gb.pci_bus_id.cmp(&ga.pci_bus_id))
        });
        let needing: u64 = gpus.iter().filter(|g| g.health != Health::Healthy).count() as u64;
        let s = &self.stats;
        // A fatal SXid in the newest boot takes NVLink down on the node: it decides unless an XID demands as much.
        let fatal_sxid = self
            .sxids
            .iter()
            .filter(|(_, acc)| acc.fatal_boot == Some(self.boot))
            .max_by_key(|((_, _), acc)| acc.events.last_line);
        let xid_urgency = worst.map(|(_, x)| x.verdict.action.urgency());
        if let Some(((pci, code), _)) = fatal_sxid
            && xid_urgency.is_none_or(|u| u < Urgency::RebootNode)
        {
            let fatal = self.sxids.values().filter(|a| a.fatal_boot == Some(self.boot)).count();
            let mut headline = format!("{}: fatal NVSwitch SXid {code} on switch {pci}", GpuAction::RebootNode);
            if fatal > 1 {
                headline.push_str(&format!(" ({fatal} fatal SXid codes)"));
            }
            headline.push_str("; NVLink is down on this node");
            if needing > 0 {
                headline.push_str(&format!("; {needing} GPU{} need{} attention", plural(needing), verb_s(needing)));
            }
            return Summary {
                health: Health::Unhealthy,
                action: GpuAction::RebootNode,
                headline,
                first: Some(FirstAction {
                    action: GpuAction::RebootNode,
                    pci_bus_id: pci.to_string(),
                    uuid: None,
                    code: *code,
                    reason: reason::NVSWITCH_FATAL.to_string(),
                }),
                gpus_with_xids: gpus.len() as u64,
                gpus_needing_action: needing,
                xid_lines: s.xid_lines,
                sxid_lines: s.sxid_lines,
                companion_lines: s.companion_lines,
                not_understood_lines: self.not_understood.lines,
                complete,
            };
        }
        let (health, action, headline, first) = match worst {
            Some((gpu, x)) if x.verdict.health != Health::Healthy => {
                let mut headline = format!("{}: XID {}", x.verdict.action, x.code);
                if let Some(r) = &x.recovery_action {
                    headline.push_str(&format!(" (recovery action {})", r.name));
                } else if x.verdict.rule.effect == XidEffect::DegradedAboveRate {
                    headline.push_str(&format!(" ({} times)", x.count - x.before_last_reboot));
                }
                headline.push_str(&format!(" on {}", gpu.pci_bus_id));
                if needing > 1 {
                    let more = needing - 1;
                    headline.push_str(&format!("; {more} more GPU{} need{} attention", plural(more), verb_s(more)));
                }
                let first = FirstAction {
                    action: x.verdict.action,
                    pci_bus_id: gpu.pci_bus_id.clone(),
                    uuid: gpu.uuid.clone(),
                    code: x.code,
                    reason: x.verdict.reason.clone(),
                };
                (x.verdict.health, x.verdict.action, headline, Some(first))
            }
            Some(_) => {
                let all_before_reboot = gpus.iter().flat_map(|g| &g.xids).all(|x| x.before_last_reboot == x.count);
                let why = if all_before_reboot {
                    "all before the last reboot the log shows"
                } else {
                    "none escalates under the operator's rules"
                };
                let headline = format!(
                    "no action: {} XID line{} on {} GPU{}, {why}",
                    s.xid_lines,
                    plural(s.xid_lines),
                    gpus.len(),
                    plural(gpus.len() as u64)
                );
                (Health::Healthy, GpuAction::None, headline, None)
            }
            None => {
                let mut headline = "no action: no NVIDIA XID in this log".to_string();
                if s.sxid_lines > 0 {
                    headline.push_str(&format!("; {} NVSwitch SXid line{}", s.sxid_lines, plural(s.sxid_lines)));
                }
                (Health::Healthy, GpuAction::None, headline, None)
            }
        };
        Summary {
            health,
            action,
            headline,
            first,
            gpus_with_xids: gpus.len() as u64,
            gpus_needing_action: needing,
            xid_lines: s.xid_lines,
            sxid_lines: s.sxid_lines,
            companion_lines: s.companion_lines,
            not_understood_lines: self.not_understood.lines,
            complete,
        }
    }
}

/// Whether a line carries one of the driver's markers; the only work an ordinary line gets.
fn has_marker(line: &str) -> bool {
    line.contains("NVRM") || line.contains("SXid")
}

/// [`has_marker`] for bytes that are not UTF-8.
fn has_marker_bytes(line: &[u8]) -> bool {
    line.windows(4).any(|w| w == b"NVRM" || w == b"SXid")
}

/// `Linux version …` (the kernel's first line of a boot) or journalctl's boot separator.
fn is_boot_marker(line: &str) -> bool {
    if line.starts_with("-- Boot ") || line.starts_with("-- Reboot --") {
        return true;
    }
    line.contains("Linux version ") && split_prefix(line).text.starts_with("Linux version ")
}

/// The position of the next `\n`, eight bytes at a time.
fn find_newline(bytes: &[u8]) -> Option<usize> {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    const NL: u64 = LO * b'\n' as u64;
    let mut chunks = bytes.chunks_exact(8);
    let mut at = 0;
    for chunk in chunks.by_ref() {
        let word = u64::from_le_bytes(chunk.try_into().unwrap_or([0; 8])) ^ NL;
        // Classic zero-byte test: a byte of `word` is zero where the input has `\n`.
        if (word.wrapping_sub(LO) & !word & HI) != 0 {
            return chunk.iter().position(|&b| b == b'\n').map(|i| at + i);
        }
        at += 8;
    }
    chunks.remainder().iter().position(|&b| b == b'\n').map(|i| at + i)
}

/// A kmsg record's text with its `\xNN` escapes decoded (the probe's decoder), when it has any.
pub(super) fn decode_kmsg_text(prefix: &LinePrefix<'_>) -> Option<String> {
    if prefix.kmsg.is_none() || !prefix.text.contains("\\x") {
        return None;
    }
    let record = format!("0,0,0,-;{}", prefix.text);
    gpuscope_crds::kmsg::parse_record(record.as_bytes()).ok().map(|r| r.message)
}

/// A continued kmsg record's message exactly as logged (the kernel joins fragments with nothing between them, so
/// a fragment's trailing space is part of the message), with escapes decoded.
fn kmsg_fragment(line: &str, prefix: &LinePrefix<'_>) -> String {
    let raw = line.split_once(';').map_or(prefix.text, |(_, message)| message.trim_end_matches(['\r', '\n']));
    let record = format!("0,0,0,-;{raw}");
    match gpuscope_crds::kmsg::parse_record(record.as_bytes()) {
        Ok(r) => r.message,
        Err(_) => raw.to_string(),
    }
}

/// A line that stops inside the driver's marker (`… NVRM: Xi`): a pager or a copy cut it.
fn ends_mid_marker(text: &str) -> bool {
    let t = text.trim_end();
    ["NVRM", "NVRM:", "NVRM: X", "NVRM: Xi"].iter().any(|m| t.ends_with(m))
}

/// A person's reason for a malformed driver line.
fn explain_error(e: &XidLineError) -> String {
    let what = e.kind;
    match &e.reason {
        XidLineErrorReason::BadPciBusId(p) if is_redacted(&p.input) => {
            format!("{what} line with a redacted PCI bus id {:?}: cannot tell which GPU", p.input)
        }
        XidLineErrorReason::BadPciBusId(p) => {
            format!("{what} line with a partial or malformed PCI bus id {:?} ({})", p.input, p.reason)
        }
        XidLineErrorReason::Truncated(part) => {
            format!("{what} line cut off before {part} (a pager or a copy may have cut it)")
        }
        other => format!("{what} line: {other}"),
    }
}

/// `PCI:...`, `xxxx:3b:00`, `<redacted>`, `****`: someone hid the address.
fn is_redacted(input: &str) -> bool {
    let lower = input.to_ascii_lowercase();
    lower.contains("...")
        || lower.contains('…')
        || lower.contains('*')
        || lower.contains("redact")
        || lower.contains('<')
        || lower.contains("xx")
}

/// `Fatal, Link 28 …` → `Fatal`; `Non-fatal, …` → `Non-fatal`.
fn sxid_severity(message: &str) -> Option<String> {
    let first = message.split(',').next()?.trim();
    first.to_ascii_lowercase().contains("fatal").then(|| first.to_string())
}

fn truncated(s: &str, max_chars: usize) -> String {
    let mut out = String::new();
    set_truncated(&mut out, s, max_chars);
    out
}

/// Replace `out` with at most `max_chars` characters of `s` (and `…` when cut), reusing its allocation.
fn set_truncated(out: &mut String, s: &str, max_chars: usize) {
    out.clear();
    match s.char_indices().nth(max_chars) {
        None => out.push_str(s),
        Some((end, _)) => {
            out.push_str(s.get(..end).unwrap_or_default());
            out.push('…');
        }
    }
}

fn plural(n: u64) -> &'static str {
    if n == 1 { "" } else { "s" }
}

fn verb_s(n: u64) -> &'static str {
    if n == 1 { "s" } else { "" }
}
