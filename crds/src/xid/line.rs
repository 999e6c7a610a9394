//! The NVIDIA driver's kernel-log lines: XID records, the GPU-UUID line that precedes a GPU's first XID, NVSwitch
//! SXID records, and the companion lines that accompany some XIDs.
//!
//! [`parse_kernel_message`] takes one message (from a `/dev/kmsg` record, or a pasted `dmesg`/journal line: any
//! prefix before `NVRM:` is skipped) and says what it is. The node probe and the log-analysis tool both use it, so
//! they agree on every line. Lines that are not the driver's (nearly every line of a kernel log) are rejected by two
//! vectorised substring searches (`NVRM`, `SXid (`), without allocating and without a regex.
//!
//! Accepted XID forms (the driver's format strings in `kernel_rc.c`, plus older and third-party variants):
//!
//! ```text
//! NVRM: Xid (PCI:0000:3b:00): 79, pid=1234, name=python3, GPU has fallen off the bus.
//! NVRM: Xid (PCI:0000:3b:00 GPU-I:03 GPU-CI:01): 31, pid='<unknown>', name=<unknown>, MMU Fault: ...
//! NVRM: Xid (PCI:0000:10:1c): 63, pid=1896, Row Remapper: New row marked for remapping, reset gpu to activate.
//! NVRM: Xid (PCI:0000:2b:00): 79, GPU has fallen off the bus.
//! NVRM: Xid (0000:03:00): 14, Channel 00000001
//! NVRM: Xid (PCI:0000:3b:00): 31, pid='N/A', name="python3", MMU Fault: ...
//! ```
//!
//! A pid that is no number (`'N/A'`, empty, anything a log shipper wrote) and a placeholder name are dropped, not
//! errors: the line still counts as the XID it is.

use std::fmt;

use super::RecoveryAction;
use crate::pci::{PciBusId, PciParseError};

/// The largest XID code accepted; anything above is a malformed line, not an unknown code.
pub const MAX_XID_CODE: u32 = 9_999;

/// The largest SXID code accepted (NVSwitch codes have five digits, e.g. 12028).
pub const MAX_SXID_CODE: u32 = 99_999;

/// How many characters of the offending line an error keeps.
pub const ERROR_LINE_CHARS: usize = 160;

/// How many characters of an offending field an error quotes.
const QUOTE_CHARS: usize = 32;

/// What one kernel message says about the GPUs, when it says anything.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KernelEvent {
    /// An XID record (`NVRM: Xid (...)`).
    Xid(XidLine),
    /// `NVRM: GPU at PCI:0000:3b:00: GPU-<uuid>`: logged once before a GPU's first XID; maps PCI address to UUID.
    GpuUuid {
        /// The GPU's PCI address (function 0).
        pci_bus_id: PciBusId,
        /// The GPU's UUID as NVML spells it (`GPU-5a4c2e1b-8f3e-4c1d-9e2a-0123456789ab`).
        uuid: String,
    },
    /// An NVSwitch SXID record: a switch error, never a GPU XID.
    Sxid(SxidLine),
    /// A driver line that accompanies an XID but is not one: evidence, never counted as an XID.
    Companion {
        /// The GPU the line names, when it names one.
        pci_bus_id: Option<PciBusId>,
        /// Which companion line it is.
        kind: CompanionKind,
        /// The line from `NVRM:` on, trimmed.
        text: String,
    },
}

/// The companion lines [`KernelEvent::Companion`] reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CompanionKind {
    /// `NVRM: GPU at 0000:01:00.0 has fallen off the bus.` (or `NVRM: GPU 0000:01:00.0: GPU has fallen off the
    /// bus.`): printed next to XID 79.
    FallenOffBus,
    /// `NVRM: RC all channels for critical error 79.`: the driver tearing down every channel after an XID.
    RcAllChannels {
        /// The XID that caused it.
        code: u32,
    },
}

/// One parsed `NVRM: Xid` line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct XidLine {
    /// The GPU's PCI address, normalised (the line has no function; it is 0).
    pub pci_bus_id: PciBusId,
    /// MIG GPU instance (`GPU-I:NN`), when the XID is attributed to one.
    pub gpu_instance: Option<u32>,
    /// MIG compute instance (`GPU-CI:NN`), when the XID is attributed to one.
    pub compute_instance: Option<u32>,
    /// The XID code; any value up to [`MAX_XID_CODE`] (the catalog decides what it means).
    pub code: u32,
    /// The process the driver blamed; `None` when the line has no `pid=` or its value is no number (`'<unknown>'`,
    /// `'N/A'`, empty).
    pub pid: Option<u32>,
    /// That process's name, without quotes around it; `None` for a placeholder (`<unknown>`, `N/A`, empty) or when
    /// the line has no `name=`.
    pub process_name: Option<String>,
    /// The text after code, pid and name, trimmed and otherwise verbatim (XIDs 144–150 and 154 carry data here).
    pub message: String,
    /// For XID 154, the recovery action the driver now asks for (read from the number in the message).
    pub recovery_action: Option<RecoveryAction>,
}

impl XidLine {
    /// The line as the driver prints it (canonical form: unknown pid and name as `'<unknown>'`/`<unknown>`).
    ///
    /// Parsing it gives back the same value, except for a function other than 0 (the driver omits it), a name
    /// that contains `", "`, is quoted or is a placeholder (`<unknown>`, `N/A`, `-`, ...), or surrounding whitespace
    /// in the name or message.
    pub fn to_kernel_text(&self) -> String {
        self.to_string()
    }
}

impl fmt::Display for XidLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = &self.pci_bus_id;
        write!(f, "NVRM: Xid (PCI:{:04x}:{:02x}:{:02x}", p.domain, p.bus, p.device)?;
        if let Some(gi) = self.gpu_instance {
            write!(f, " GPU-I:{gi:02}")?;
        }
        if let Some(ci) = self.compute_instance {
            write!(f, " GPU-CI:{ci:02}")?;
        }
        write!(f, "): {}, ", self.code)?;
        match self.pid {
            Some(pid) => write!(f, "pid={pid}, ")?,
            None => f.write_str("pid='<unknown>', ")?,
        }
        write!(f, "name={}", self.process_name.as_deref().unwrap_or(UNKNOWN))?;
        if !self.message.is_empty() {
            write!(f, ", {}", self.message)?;
        }
        Ok(())
    }
}

/// One parsed NVSwitch `SXid` line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SxidLine {
    /// The switch's index from the `nvidia-nvswitchN:` prefix, when present.
    pub nvswitch: Option<u32>,
    /// The switch's PCI address, normalised.
    pub pci_bus_id: PciBusId,
    /// The SXID code (up to [`MAX_SXID_CODE`]).
    pub code: u32,
    /// The text after the code, trimmed (severity first, e.g. `Non-fatal, Link 32 egress ...`).
    pub message: String,
}

/// Which kind of driver line an error is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LineKind {
    /// `NVRM: Xid (...)`.
    Xid,
    /// `nvidia-nvswitchN: SXid (...)`.
    Sxid,
    /// `NVRM: GPU at PCI:...: GPU-<uuid>`.
    GpuUuid,
}

impl fmt::Display for LineKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LineKind::Xid => "NVRM Xid",
            LineKind::Sxid => "NVSwitch SXid",
            LineKind::GpuUuid => "NVRM GPU UUID",
        })
    }
}

/// What is wrong with a line that is clearly a driver record.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum XidLineErrorReason {
    /// The line stops before a required part.
    #[error("the line ends before {0}")]
    Truncated(&'static str),
    /// A required part is not where it should be.
    #[error("expected {expected}, found {found:?}")]
    Expected {
        /// What should be there.
        expected: &'static str,
        /// What is there instead (truncated).
        found: String,
    },
    /// The PCI address is malformed, partial or redacted.
    #[error("{0}")]
    BadPciBusId(PciParseError),
    /// Nothing where the code should be.
    #[error("the code is missing")]
    MissingCode,
    /// The code is not an unsigned decimal number.
    #[error("the code {0:?} is not a decimal number")]
    NonNumericCode(String),
    /// The code is larger than allowed.
    #[error("the code {found} is larger than {max}")]
    CodeOutOfRange {
        /// The digits as read (truncated).
        found: String,
        /// The largest code accepted.
        max: u32,
    },
    /// A `GPU-I:`/`GPU-CI:` attribution is not a decimal number.
    #[error("the {which} id {found:?} is not a decimal number")]
    BadInstanceId {
        /// `GPU-I` or `GPU-CI`.
        which: &'static str,
        /// The value as read (truncated).
        found: String,
    },
    /// Something other than `GPU-I:`/`GPU-CI:` after the PCI address.
    #[error("unknown attribution {0:?} after the PCI address")]
    UnknownAttribution(String),
    /// The UUID is not `GPU-` and 8-4-4-4-12 hex digits.
    #[error("{0:?} is not a GPU UUID (GPU-xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)")]
    BadUuid(String),
}

/// A kernel line that is clearly an NVIDIA driver record but malformed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("malformed {kind} line ({reason}): {line:?}")]
pub struct XidLineError {
    /// Which record it claims to be.
    pub kind: LineKind,
    /// What is wrong.
    pub reason: XidLineErrorReason,
    /// The line, truncated to [`ERROR_LINE_CHARS`] characters.
    pub line: String,
}

/// How the driver prints an unknown process name.
const UNKNOWN: &str = "<unknown>";

/// Parse one kernel message: `Ok(None)` when it is not a line this module knows, `Ok(Some(..))` for one it does,
/// `Err` for a line that is clearly an XID, SXID or GPU-UUID record but malformed.
pub fn parse_kernel_message(text: &str) -> Result<Option<KernelEvent>, XidLineError> {
    // The fast path: almost no kernel line contains either marker, and no byte is common to both, so it takes two
    // `str::find`s (vectorised substring searches that allocate nothing).
    let mut from = 0;
    while let Some(found) = text.get(from..).and_then(|rest| rest.find("NVRM")) {
        let at = from + found;
        if let Some(event) = parse_nvrm(text, at)? {
            return Ok(Some(event));
        }
        from = at + "NVRM".len();
    }
    match text.find("SXid (") {
        Some(at) => parse_sxid(text, at).map(Some),
        None => Ok(None),
    }
}

/// The line starting at an `NVRM` found at byte `at` of `text`.
fn parse_nvrm(text: &str, at: usize) -> Result<Option<KernelEvent>, XidLineError> {
    let Some(body) = text.get(at + "NVRM".len()..).and_then(|s| s.strip_prefix(':')) else {
        return Ok(None);
    };
    let body = body.trim_start();
    if let Some(after) = body.strip_prefix("Xid") {
        // `Xid` must be a word of its own: `NVRM: Xid119` or `NVRM: Xids` are something else.
        if after.is_empty() || after.starts_with(|c: char| c == '(' || c.is_whitespace()) {
            return parse_xid(after)
                .map(|x| Some(KernelEvent::Xid(x)))
                .map_err(|reason| error(LineKind::Xid, reason, text));
        }
        return Ok(None);
    }
    let nvrm_text = || text.get(at..).unwrap_or_default().trim().to_string();
    if let Some(after) = body.strip_prefix("GPU at ") {
        let (token, rest) = split_token(after);
        let rest = rest.trim_start();
        if rest.starts_with("GPU-") {
            return parse_uuid_line(token, rest).map(Some).map_err(|reason| error(LineKind::GpuUuid, reason, text));
        }
        if rest.contains("fallen off the bus") {
            let pci_bus_id = PciBusId::parse(token.trim_end_matches(':')).ok();
            return Ok(Some(KernelEvent::Companion {
                pci_bus_id,
                kind: CompanionKind::FallenOffBus,
                text: nvrm_text(),
            }));
        }
        return Ok(None);
    }
    if let Some(after) = body.strip_prefix("GPU ")
        && after.contains("fallen off the bus")
    {
        let (token, _) = split_token(after);
        let pci_bus_id = PciBusId::parse(token.trim_end_matches(':')).ok();
        return Ok(Some(KernelEvent::Companion { pci_bus_id, kind: CompanionKind::FallenOffBus, text: nvrm_text() }));
    }
    if let Some(after) = body.strip_prefix("RC all channels for critical error ") {
        let digits = leading_digits(after);
        if let Some(code) = decimal(digits) {
            let kind = CompanionKind::RcAllChannels { code };
            return Ok(Some(KernelEvent::Companion { pci_bus_id: None, kind, text: nvrm_text() }));
        }
    }
    Ok(None)
}

/// The XID record after the word `Xid`.
fn parse_xid(after: &str) -> Result<XidLine, XidLineErrorReason> {
    let (inside, rest) = parenthesised(after)?;
    let mut tokens = inside.split_ascii_whitespace();
    let pci_bus_id = PciBusId::parse(tokens.next().unwrap_or_default()).map_err(XidLineErrorReason::BadPciBusId)?;
    let (mut gpu_instance, mut compute_instance) = (None, None);
    for token in tokens {
        if let Some(id) = token.strip_prefix("GPU-I:") {
            gpu_instance = Some(instance_id("GPU-I", id)?);
        } else if let Some(id) = token.strip_prefix("GPU-CI:") {
            compute_instance = Some(instance_id("GPU-CI", id)?);
        } else {
            return Err(XidLineErrorReason::UnknownAttribution(quote(token)));
        }
    }
    let (code, fields) = code_after_colon(rest, MAX_XID_CODE)?;

    // The driver prints `pid=%s, name=%s, <message>`; either field may be absent on some paths and drivers, and
    // log shippers and other drivers write their own placeholders (`pid='N/A'`, `pid=`, quoted names). The code is
    // what matters: a pid or name that cannot be read is dropped, never a reason to miss the XID.
    let mut fields = fields.trim_start();
    let mut pid = None;
    if let Some(value) = fields.strip_prefix("pid=") {
        let (raw, rest) = pid_token(value);
        pid = parse_pid(raw);
        fields = rest.trim_start();
        fields = fields.strip_prefix(',').unwrap_or(fields).trim_start();
    }
    let mut process_name = None;
    if let Some(value) = fields.strip_prefix("name=") {
        let (raw, rest) = name_token(value);
        process_name = process_name_of(raw);
        fields = rest;
    }
    let message = fields.trim().to_string();
    let recovery_action = if code == 154 { RecoveryAction::from_xid154_message(&message) } else { None };
    Ok(XidLine { pci_bus_id, gpu_instance, compute_instance, code, pid, process_name, message, recovery_action })
}

/// The SXID record whose `SXid (` starts at byte `at` of `text`.
fn parse_sxid(text: &str, at: usize) -> Result<KernelEvent, XidLineError> {
    let fail = |reason| error(LineKind::Sxid, reason, text);
    let before = text.get(..at).unwrap_or_default();
    let nvswitch = before
        .rfind("nvidia-nvswitch")
        .and_then(|i| before.get(i + "nvidia-nvswitch".len()..))
        .and_then(|s| decimal(leading_digits(s)));
    let after = text.get(at + "SXid".len()..).unwrap_or_default();
    let (inside, rest) = parenthesised(after).map_err(fail)?;
    let pci_bus_id = PciBusId::parse(inside.trim()).map_err(|e| fail(XidLineErrorReason::BadPciBusId(e)))?;
    let (code, message) = code_after_colon(rest, MAX_SXID_CODE).map_err(fail)?;
    Ok(KernelEvent::Sxid(SxidLine { nvswitch, pci_bus_id, code, message: message.trim().to_string() }))
}

/// `GPU at <token> GPU-<uuid>`.
fn parse_uuid_line(token: &str, rest: &str) -> Result<KernelEvent, XidLineErrorReason> {
    let pci_bus_id = PciBusId::parse(token.trim_end_matches(':')).map_err(XidLineErrorReason::BadPciBusId)?;
    let (uuid, _) = split_token(rest);
    if !is_gpu_uuid(uuid) {
        return Err(XidLineErrorReason::BadUuid(quote(uuid)));
    }
    Ok(KernelEvent::GpuUuid { pci_bus_id, uuid: uuid.to_string() })
}

/// `GPU-` followed by 8-4-4-4-12 hex digits.
fn is_gpu_uuid(s: &str) -> bool {
    let Some(hex) = s.strip_prefix("GPU-") else {
        return false;
    };
    let groups: [usize; 5] = [8, 4, 4, 4, 12];
    let mut parts = hex.split('-');
    groups.iter().all(|&len| parts.next().is_some_and(|p| p.len() == len && p.bytes().all(|b| b.is_ascii_hexdigit())))
        && parts.next().is_none()
}

/// ` (inside) rest` → (`inside`, `rest`).
fn parenthesised(after: &str) -> Result<(&str, &str), XidLineErrorReason> {
    let after = after.trim_start();
    let Some(open) = after.strip_prefix('(') else {
        return Err(if after.is_empty() {
            XidLineErrorReason::Truncated("the '(' before the PCI address")
        } else {
            XidLineErrorReason::Expected { expected: "'(' before the PCI address", found: quote(after) }
        });
    };
    open.split_once(')').ok_or(XidLineErrorReason::Truncated("the ')' after the PCI address"))
}

/// `: <code>[, rest]` → (code, rest).
fn code_after_colon(rest: &str, max: u32) -> Result<(u32, &str), XidLineErrorReason> {
    let Some(rest) = rest.strip_prefix(':') else {
        return Err(if rest.trim().is_empty() {
            XidLineErrorReason::Truncated("the ':' and the code")
        } else {
            XidLineErrorReason::Expected { expected: "':' after the PCI address", found: quote(rest) }
        });
    };
    let rest = rest.trim_start();
    let digits = leading_digits(rest);
    let tail = rest.get(digits.len()..).unwrap_or_default();
    if digits.is_empty() {
        let (token, _) = tail.split_once(',').unwrap_or((tail, ""));
        return Err(if token.trim().is_empty() {
            XidLineErrorReason::MissingCode
        } else {
            XidLineErrorReason::NonNumericCode(quote(token.trim()))
        });
    }
    let tail = tail.trim_start();
    if !tail.is_empty() && !tail.starts_with(',') {
        let (token, _) = split_token(rest);
        return Err(XidLineErrorReason::NonNumericCode(quote(token.trim_end_matches(','))));
    }
    let code = decimal(digits)
        .filter(|&c| c <= max)
        .ok_or_else(|| XidLineErrorReason::CodeOutOfRange { found: quote(digits), max })?;
    Ok((code, tail.strip_prefix(',').unwrap_or(tail)))
}

/// The quote characters a driver or a log shipper may put around a pid or a name.
const QUOTES: [char; 2] = ['\'', '"'];

/// How placeholders for "no process" are spelled, besides an empty value: the driver's `<unknown>` and what log
/// shippers and other tools write (compared without case).
const NO_PROCESS: [&str; 5] = [UNKNOWN, "n/a", "(null)", "null", "-"];

/// `value` → (the pid's token, the rest after it): a quoted token ends at its closing quote, any other at the first
/// comma (a pid never contains one; the message after it may) or where `name=` follows without one.
fn pid_token(value: &str) -> (&str, &str) {
    if let Some((inside, rest)) = quoted(value) {
        return (inside, rest);
    }
    let end = value.find(',').unwrap_or(value.len());
    let end = value.get(..end).and_then(|v| v.find(" name=")).unwrap_or(end);
    (value.get(..end).unwrap_or(value), value.get(end..).unwrap_or_default())
}

/// `value` → (the name's token, the message after it). A quoted name ends at its closing quote when a comma or the
/// end of the line follows; any other name (at most 15 characters from the kernel) ends at the first `", "`, so an
/// unquoted name containing one cannot be told apart.
fn name_token(value: &str) -> (&str, &str) {
    if let Some((inside, rest)) = quoted(value) {
        let rest = rest.trim_start();
        if rest.is_empty() || rest.starts_with(',') {
            return (inside, rest.strip_prefix(',').unwrap_or(rest));
        }
    }
    value.split_once(", ").unwrap_or((value.trim_end().trim_end_matches(','), ""))
}

/// `'inside' rest` or `"inside" rest` → (`inside`, `rest`); `None` when `value` opens no quote or never closes it.
fn quoted(value: &str) -> Option<(&str, &str)> {
    let quote = value.chars().next().filter(|c| QUOTES.contains(c))?;
    let body = value.get(quote.len_utf8()..)?;
    let end = body.find(quote)?;
    Some((body.get(..end)?, body.get(end + quote.len_utf8()..)?))
}

/// `value` without one pair of matching quotes around it, and trimmed.
fn unquoted(value: &str) -> &str {
    let value = value.trim();
    QUOTES.iter().find_map(|&q| value.strip_prefix(q).and_then(|v| v.strip_suffix(q))).unwrap_or(value).trim()
}

/// A pid token (`1234`, `'1234'`) → the pid; anything else (`'<unknown>'`, `N/A`, empty, garbage) → `None`.
fn parse_pid(raw: &str) -> Option<u32> {
    decimal(unquoted(raw))
}

/// A name token → the process name; a placeholder ([`NO_PROCESS`]) or nothing → `None`.
pub fn process_name_of(raw: &str) -> Option<String> {
    let name = unquoted(raw);
    let placeholder = name.is_empty() || NO_PROCESS.iter().any(|p| name.eq_ignore_ascii_case(p));
    (!placeholder).then(|| name.to_string())
}

/// A MIG instance id (`%02u` in the driver).
fn instance_id(which: &'static str, id: &str) -> Result<u32, XidLineErrorReason> {
    decimal(id).ok_or_else(|| XidLineErrorReason::BadInstanceId { which, found: quote(id) })
}

/// The leading ASCII digits of `s`.
fn leading_digits(s: &str) -> &str {
    let end = s.bytes().position(|b| !b.is_ascii_digit()).unwrap_or(s.len());
    s.get(..end).unwrap_or_default()
}

/// An unsigned decimal number that fits a u32; `str::parse` alone would also accept a leading `+`.
fn decimal(s: &str) -> Option<u32> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Split at the first whitespace: (token, rest).
fn split_token(s: &str) -> (&str, &str) {
    s.split_once(char::is_whitespace).unwrap_or((s, ""))
}

/// A short copy of a field for an error message.
fn quote(s: &str) -> String {
    s.chars().take(QUOTE_CHARS).collect()
}

/// The error for `text`, with a truncated copy of the line.
fn error(kind: LineKind, reason: XidLineErrorReason, text: &str) -> XidLineError {
    XidLineError { kind, reason, line: text.trim().chars().take(ERROR_LINE_CHARS).collect() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn pci(s: &str) -> PciBusId {
        PciBusId::parse(s).unwrap()
    }

    fn xid(text: &str) -> XidLine {
        match parse_kernel_message(text) {
            Ok(Some(KernelEvent::Xid(x))) => x,
            other => panic!("{text:?}: expected an XID, got {other:?}"),
        }
    }

    fn reason(text: &str) -> XidLineErrorReason {
        match parse_kernel_message(text) {
            Err(e) => e.reason,
            other => panic!("{text:?}: expected an error, got {other:?}"),
        }
    }

    fn plain(pci_bus_id: &str, code: u32, pid: Option<u32>, name: Option<&str>, message: &str) -> XidLine {
        XidLine {
            pci_bus_id: pci(pci_bus_id),
            gpu_instance: None,
            compute_instance: None,
            code,
            pid,
            process_name: name.map(str::to_string),
            message: message.to_string(),
            recovery_action: None,
        }
    }

    #[test]
    fn corpus_of_driver_lines_parses_to_the_expected_values() {
        let corpus: Vec<(&str, XidLine)> = vec![
            (
                "NVRM: Xid (PCI:0000:3b:00): 79, pid=1234, name=python3, GPU has fallen off the bus.",
                plain("0000:3b:00.0", 79, Some(1234), Some("python3"), "GPU has fallen off the bus."),
            ),
            (
                "[Fri Aug 30 11:43:09 2024] NVRM: Xid (PCI:0000:cb:00): 13, pid='<unknown>', name=<unknown>, \
                 Graphics SM Warp Exception on (GPC 7, TPC 7, SM 0): Illegal Instruction Parameter",
                plain(
                    "0000:cb:00.0",
                    13,
                    None,
                    None,
                    "Graphics SM Warp Exception on (GPC 7, TPC 7, SM 0): Illegal Instruction Parameter",
                ),
            ),
            (
                "kernel: NVRM: Xid (PCI:0000:cb:00): 109, pid=1797828, name=pt_main_thread, Ch 00000008, \
                 errorString CTX SWITCH TIMEOUT, Info 0x58005",
                plain(
                    "0000:cb:00.0",
                    109,
                    Some(1_797_828),
                    Some("pt_main_thread"),
                    "Ch 00000008, errorString CTX SWITCH TIMEOUT, Info 0x58005",
                ),
            ),
            (
                "NVRM: Xid (PCI:0000:2b:00): 79, GPU has fallen off the bus.",
                plain("0000:2b:00.0", 79, None, None, "GPU has fallen off the bus."),
            ),
            (
                "NVRM: Xid (PCI:0000:10:1c): 63, pid=1896, Row Remapper: New row marked for remapping, reset gpu to \
                 activate.",
                plain(
                    "0000:10:1c.0",
                    63,
                    Some(1896),
                    None,
                    "Row Remapper: New row marked for remapping, reset gpu to activate.",
                ),
            ),
            (
                "NVRM: Xid (PCI:0000:3b:00): 45, name=python3, Ch 00000010",
                plain("0000:3b:00.0", 45, None, Some("python3"), "Ch 00000010"),
            ),
            (
                "NVRM: Xid (PCI:0000:3b:00): 31, pid='1234', name=train.py, MMU Fault: ENGINE GRAPHICS",
                plain("0000:3b:00.0", 31, Some(1234), Some("train.py"), "MMU Fault: ENGINE GRAPHICS"),
            ),
            ("NVRM: Xid (0000:03:00): 14, Channel 00000001", plain("0000:03:00.0", 14, None, None, "Channel 00000001")),
            (
                "NVRM: Xid (PCI:0001:C1:1F): 48, An uncorrectable double bit error (DBE) has been detected on GPU in \
                 the framebuffer at partition 6, subpartition 0.",
                plain(
                    "0001:c1:1f.0",
                    48,
                    None,
                    None,
                    "An uncorrectable double bit error (DBE) has been detected on GPU in the framebuffer at partition \
                     6, subpartition 0.",
                ),
            ),
            (
                "NVRM: Xid (PCI:000a:81:00): 74, pid=77, name=nccl-tests, 0x00000002 0x00000000 0x0000ffff",
                plain("000a:81:00.0", 74, Some(77), Some("nccl-tests"), "0x00000002 0x00000000 0x0000ffff"),
            ),
            (
                "NVRM: Xid (PCI:0000:3b:00): 999, pid=1, name=x, something new",
                plain("0000:3b:00.0", 999, Some(1), Some("x"), "something new"),
            ),
            (
                "NVRM: Xid (PCI:0000:3b:00): 8, pid=1, name=Web Content, Channel 0x3",
                plain("0000:3b:00.0", 8, Some(1), Some("Web Content"), "Channel 0x3"),
            ),
            (
                "NVRM: Xid (PCI:0000:3b:00): 45, pid=9, name=python3, Ch 00000010 caused by previous Xid 94",
                plain("0000:3b:00.0", 45, Some(9), Some("python3"), "Ch 00000010 caused by previous Xid 94"),
            ),
            ("NVRM: Xid (PCI:0000:3b:00): 79", plain("0000:3b:00.0", 79, None, None, "")),
            ("NVRM: Xid (PCI:0000:3b:00): 79, pid=1, name=a, ", plain("0000:3b:00.0", 79, Some(1), Some("a"), "")),
            ("NVRM: Xid (PCI:0000:3b:00): 0, x", plain("0000:3b:00.0", 0, None, None, "x")),
            ("NVRM: Xid (PCI:0000:3b:00): 9999, x", plain("0000:3b:00.0", 9999, None, None, "x")),
        ];
        for (line, expected) in corpus {
            assert_eq!(xid(line), expected, "{line}");
        }
    }

    #[test]
    fn mig_attribution_is_read() {
        let gi = xid("NVRM: Xid (PCI:0000:3b:00 GPU-I:03): 31, pid=42, name=python3, MMU Fault");
        assert_eq!((gi.gpu_instance, gi.compute_instance), (Some(3), None));
        assert_eq!((gi.code, gi.pid, gi.message.as_str()), (31, Some(42), "MMU Fault"));
        let ci = xid("NVRM: Xid (PCI:0000:3b:00 GPU-I:03 GPU-CI:01): 43, pid='<unknown>', name=<unknown>, Ch 00000001");
        assert_eq!((ci.gpu_instance, ci.compute_instance), (Some(3), Some(1)));
        assert_eq!(ci.pci_bus_id, pci("0000:3b:00.0"));
        assert_eq!((ci.pid, ci.process_name), (None, None));
        let wide = xid("NVRM: Xid (PCI:0000:3b:00   GPU-I:13  GPU-CI:102): 13, x");
        assert_eq!((wide.gpu_instance, wide.compute_instance), (Some(13), Some(102)));
    }

    #[test]
    fn xid_154_carries_the_recovery_action() {
        let x = xid(
            "NVRM: Xid (PCI:0000:01:00): 154, GPU recovery action changed from 0x0 (None) to 0x2 (Node Reboot Required)",
        );
        assert_eq!(x.code, 154);
        assert_eq!(x.recovery_action, Some(RecoveryAction::NodeReboot));
        assert_eq!(x.message, "GPU recovery action changed from 0x0 (None) to 0x2 (Node Reboot Required)");
        let pf = xid("NVRM: Xid (PCI:0000:01:00): 154, pid='<unknown>', name=<unknown>, GPU recovery action changed \
                      from 0x0 (None) to 0x1 (PF FLR)");
        assert_eq!(pf.recovery_action, Some(RecoveryAction::GpuReset));
        let unreadable = xid("NVRM: Xid (PCI:0000:01:00): 154, GPU recovery action changed");
        assert_eq!(unreadable.recovery_action, None);
        // Only 154 carries one, whatever the message says.
        let other = xid("NVRM: Xid (PCI:0000:01:00): 79, changed from 0x0 (None) to 0x2 (Node Reboot Required)");
        assert_eq!(other.recovery_action, None);
    }

    #[test]
    fn prefixes_before_nvrm_are_skipped() {
        let expected = plain("0000:3b:00.0", 79, None, None, "GPU has fallen off the bus.");
        for prefix in [
            "",
            "[  123.456789] ",
            "kernel: ",
            "6,1234,5678901,-;",
            "Jan 01 00:00:00 gpu-node-7 kernel: ",
            "<4>[ 9.1] ",
            "NVRM-host kernel: ",
            "NVRM NVRM: stray ",
        ] {
            let line = format!("{prefix}NVRM: Xid (PCI:0000:3b:00): 79, GPU has fallen off the bus.\r\n");
            assert_eq!(xid(&line), expected, "{line:?}");
        }
    }

    #[test]
    fn gpu_uuid_line_maps_pci_to_uuid() {
        let ev = parse_kernel_message("[  5.1] NVRM: GPU at PCI:0000:3b:00: GPU-5a4c2e1b-8f3e-4c1d-9e2a-0123456789ab");
        assert_eq!(
            ev,
            Ok(Some(KernelEvent::GpuUuid {
                pci_bus_id: pci("0000:3b:00.0"),
                uuid: "GPU-5a4c2e1b-8f3e-4c1d-9e2a-0123456789ab".to_string(),
            }))
        );
        let upper = parse_kernel_message("NVRM: GPU at PCI:0001:C1:00: GPU-5A4C2E1B-8F3E-4C1D-9E2A-0123456789AB");
        assert!(
            matches!(upper, Ok(Some(KernelEvent::GpuUuid { pci_bus_id, .. })) if pci_bus_id == pci("0001:c1:00.0"))
        );
    }

    #[test]
    fn malformed_gpu_uuid_lines_are_errors() {
        let bad_uuid = parse_kernel_message("NVRM: GPU at PCI:0000:3b:00: GPU-5a4c2e1b-8f3e").unwrap_err();
        assert_eq!(bad_uuid.kind, LineKind::GpuUuid);
        assert_eq!(bad_uuid.reason, XidLineErrorReason::BadUuid("GPU-5a4c2e1b-8f3e".into()));
        let redacted = parse_kernel_message("NVRM: GPU at PCI:...: GPU-5a4c2e1b-8f3e-4c1d-9e2a-0123456789ab");
        assert!(matches!(redacted, Err(XidLineError { reason: XidLineErrorReason::BadPciBusId(_), .. })));
    }

    #[test]
    fn nvswitch_sxid_is_not_an_xid() {
        let ev = parse_kernel_message(
            "[ 77.1] nvidia-nvswitch3: SXid (PCI:0000:c1:00.0): 12028, Non-fatal, Link 32 egress non-posted PRIV \
             error (First)",
        );
        assert_eq!(
            ev,
            Ok(Some(KernelEvent::Sxid(SxidLine {
                nvswitch: Some(3),
                pci_bus_id: pci("0000:c1:00.0"),
                code: 12028,
                message: "Non-fatal, Link 32 egress non-posted PRIV error (First)".into(),
            })))
        );
        let bare = parse_kernel_message("SXid (PCI:0000:05:00.0): 20034, Fatal, Link 28 LTSSM Fault Up");
        assert!(matches!(bare, Ok(Some(KernelEvent::Sxid(SxidLine { nvswitch: None, code: 20034, .. })))));
    }

    #[test]
    fn malformed_sxid_is_an_sxid_error() {
        let e = parse_kernel_message("nvidia-nvswitch0: SXid (PCI:0000:c1:00.0): 123456, Fatal").unwrap_err();
        assert_eq!(e.kind, LineKind::Sxid);
        assert_eq!(e.reason, XidLineErrorReason::CodeOutOfRange { found: "123456".into(), max: MAX_SXID_CODE });
        let e = parse_kernel_message("nvidia-nvswitch0: SXid (PCI:0000:c1").unwrap_err();
        assert_eq!(e.reason, XidLineErrorReason::Truncated("the ')' after the PCI address"));
    }

    #[test]
    fn lines_that_mention_an_xid_are_not_xids() {
        for line in [
            "NVRM: _kgspLogXid119: ********************************* GSP Timeout **********************************",
            "NVRM: GPU0 _kgspLogXid119: ********************************* GSP Timeout ****************************",
            "NVRM: Xid119 is not the record form",
            "NVRM: Xids were logged",
            "NVRM: nvAssertFailed: Xid (PCI:0000:3b:00): 79",
            "NVRM: GPU Board Serial Number: 1234567890",
            "NVRM: A GPU crash dump has been created. If possible, please run nvidia-bug-report.sh",
            "NVRM: loading NVIDIA UNIX x86_64 Kernel Module  550.54.15",
            "NVRM Xid (PCI:0000:3b:00): 79, no colon after NVRM",
            "nvidia-nvswitch0: SXids are reported here",
            "my Xid (PCI:0000:3b:00): 79, not from the driver",
        ] {
            assert_eq!(parse_kernel_message(line), Ok(None), "{line}");
        }
    }

    #[test]
    fn companion_lines_are_reported_but_not_as_xids() {
        assert_eq!(
            parse_kernel_message("[  88.8] NVRM: RC all channels for critical error 79."),
            Ok(Some(KernelEvent::Companion {
                pci_bus_id: None,
                kind: CompanionKind::RcAllChannels { code: 79 },
                text: "NVRM: RC all channels for critical error 79.".into(),
            }))
        );
        assert_eq!(
            parse_kernel_message("NVRM: GPU at 0000:01:00.0 has fallen off the bus."),
            Ok(Some(KernelEvent::Companion {
                pci_bus_id: Some(pci("0000:01:00.0")),
                kind: CompanionKind::FallenOffBus,
                text: "NVRM: GPU at 0000:01:00.0 has fallen off the bus.".into(),
            }))
        );
        let colon = parse_kernel_message("NVRM: GPU 0000:3b:00.0: GPU has fallen off the bus.");
        assert!(matches!(
            colon,
            Ok(Some(KernelEvent::Companion { pci_bus_id: Some(p), kind: CompanionKind::FallenOffBus, .. }))
                if p == pci("0000:3b:00.0")
        ));
        let redacted = parse_kernel_message("NVRM: GPU at PCI:... has fallen off the bus.");
        assert!(matches!(redacted, Ok(Some(KernelEvent::Companion { pci_bus_id: None, .. }))));
        assert_eq!(parse_kernel_message("NVRM: RC all channels for critical error ."), Ok(None));
    }

    #[test]
    fn ordinary_kernel_lines_are_not_driver_events() {
        for line in [
            "",
            " ",
            "[    0.000000] Linux version 6.8.0-45-generic (buildd@lcy02-amd64-075)",
            "6,1,2,-;usb 1-1: new high-speed USB device number 2 using xhci_hcd",
            "pcieport 0000:00:01.0: AER: Corrected error received: 0000:3b:00.0",
            "nvidia-modeset: Loading NVIDIA Kernel Mode Setting Driver for UNIX platforms",
        ] {
            assert_eq!(parse_kernel_message(line), Ok(None), "{line:?}");
        }
    }

    #[test]
    fn bad_pci_ids_are_errors_with_the_line() {
        for line in [
            "NVRM: Xid (PCI:...): 79, GPU has fallen off the bus.",
            "NVRM: Xid (PCI:xxxx:3b:00): 79, x",
            "NVRM: Xid (PCI:3b:00): 79, x",
            "NVRM: Xid (PCI:0000:3b:20): 79, x",
            "NVRM: Xid (): 79, x",
            "NVRM: Xid (PCI:0000:3bb:00): 79, x",
        ] {
            let e = parse_kernel_message(line).unwrap_err();
            assert!(matches!(e.reason, XidLineErrorReason::BadPciBusId(_)), "{line}: {e}");
            assert_eq!(e.kind, LineKind::Xid);
            assert_eq!(e.line, line);
            assert!(e.to_string().starts_with("malformed NVRM Xid line (not a PCI bus id"), "{e}");
        }
    }

    #[test]
    fn bad_codes_are_errors() {
        use XidLineErrorReason::*;
        assert_eq!(reason("NVRM: Xid (PCI:0000:3b:00): , pid=1, name=x, m"), MissingCode);
        assert_eq!(reason("NVRM: Xid (PCI:0000:3b:00):"), MissingCode);
        assert_eq!(reason("NVRM: Xid (PCI:0000:3b:00): abc, m"), NonNumericCode("abc".into()));
        assert_eq!(reason("NVRM: Xid (PCI:0000:3b:00): -1, m"), NonNumericCode("-1".into()));
        assert_eq!(reason("NVRM: Xid (PCI:0000:3b:00): 79abc, m"), NonNumericCode("79abc".into()));
        assert_eq!(reason("NVRM: Xid (PCI:0000:3b:00): 7.9, m"), NonNumericCode("7.9".into()));
        assert_eq!(reason("NVRM: Xid (PCI:0000:3b:00): 10000, m"), CodeOutOfRange { found: "10000".into(), max: 9999 });
        assert_eq!(
            reason("NVRM: Xid (PCI:0000:3b:00): 99999999999999999999999, m"),
            CodeOutOfRange { found: "99999999999999999999999".into(), max: 9999 }
        );
        let e = parse_kernel_message("NVRM: Xid (PCI:0000:3b:00): abc, m").unwrap_err();
        assert_eq!(
            e.to_string(),
            "malformed NVRM Xid line (the code \"abc\" is not a decimal number): \"NVRM: Xid (PCI:0000:3b:00): abc, m\""
        );
    }

    #[test]
    fn truncated_xid_lines_are_errors() {
        use XidLineErrorReason::*;
        assert_eq!(reason("NVRM: Xid (PCI:0000:3b"), Truncated("the ')' after the PCI address"));
        assert_eq!(reason("NVRM: Xid"), Truncated("the '(' before the PCI address"));
        assert_eq!(reason("NVRM: Xid "), Truncated("the '(' before the PCI address"));
        assert_eq!(reason("NVRM: Xid (PCI:0000:3b:00)"), Truncated("the ':' and the code"));
        assert_eq!(
            reason("NVRM: Xid PCI:0000:3b:00: 79"),
            Expected { expected: "'(' before the PCI address", found: "PCI:0000:3b:00: 79".into() }
        );
        assert_eq!(
            reason("NVRM: Xid (PCI:0000:3b:00) 79, m"),
            Expected { expected: "':' after the PCI address", found: " 79, m".into() }
        );
    }

    #[test]
    fn bad_attribution_and_pid_are_errors() {
        use XidLineErrorReason::*;
        assert_eq!(
            reason("NVRM: Xid (PCI:0000:3b:00 GPU-I:x3): 31, m"),
            BadInstanceId { which: "GPU-I", found: "x3".into() }
        );
        assert_eq!(
            reason("NVRM: Xid (PCI:0000:3b:00 GPU-CI:-1): 31, m"),
            BadInstanceId { which: "GPU-CI", found: "-1".into() }
        );
        assert_eq!(reason("NVRM: Xid (PCI:0000:3b:00 MIG:1): 31, m"), UnknownAttribution("MIG:1".into()));
    }

    #[test]
    fn a_pid_that_is_no_number_is_dropped_and_the_xid_still_counts() {
        for (line, name, message) in [
            ("NVRM: Xid (PCI:0000:3b:00): 31, pid='N/A', name=python3, MMU Fault", Some("python3"), "MMU Fault"),
            ("NVRM: Xid (PCI:0000:3b:00): 31, pid=N/A, name=python3, MMU Fault", Some("python3"), "MMU Fault"),
            ("NVRM: Xid (PCI:0000:3b:00): 31, pid=\"N/A\", name=x, m", Some("x"), "m"),
            ("NVRM: Xid (PCI:0000:3b:00): 31, pid=abc, name=x, m", Some("x"), "m"),
            ("NVRM: Xid (PCI:0000:3b:00): 31, pid=-5, name=x, m", Some("x"), "m"),
            ("NVRM: Xid (PCI:0000:3b:00): 31, pid=4294967296, m", None, "m"),
            ("NVRM: Xid (PCI:0000:3b:00): 31, pid=, name=x, m", Some("x"), "m"),
            ("NVRM: Xid (PCI:0000:3b:00): 31, pid='', name=x, m", Some("x"), "m"),
            ("NVRM: Xid (PCI:0000:3b:00): 31, pid=<unknown>, name=<unknown>, m", None, "m"),
            ("NVRM: Xid (PCI:0000:3b:00): 31, pid='<unknown process>', name=x, m", Some("x"), "m"),
            ("NVRM: Xid (PCI:0000:3b:00): 31, pid='N/A' name=x, m", Some("x"), "m"),
            ("NVRM: Xid (PCI:0000:3b:00): 31, pid=N/A name=x, m", Some("x"), "m"),
            ("NVRM: Xid (PCI:0000:3b:00): 31, pid=N/A", None, ""),
        ] {
            let x = xid(line);
            assert_eq!(
                (x.code, x.pid, x.process_name.as_deref(), x.message.as_str()),
                (31, None, name, message),
                "{line}"
            );
        }
        assert_eq!(xid("NVRM: Xid (PCI:0000:3b:00): 31, pid=4294967295, m").pid, Some(u32::MAX));
        assert_eq!(xid("NVRM: Xid (PCI:0000:3b:00): 31, pid=\"77\", name=x, m").pid, Some(77));
        assert_eq!(xid("NVRM: Xid (PCI:0000:3b:00): 31, pid=' 77 ', name=x, m").pid, Some(77));
    }

    #[test]
    fn names_lose_their_quotes_and_placeholders_are_no_name() {
        for (line, name, message) in [
            ("NVRM: Xid (PCI:0000:3b:00): 13, pid=1, name='python3', m", Some("python3"), "m"),
            ("NVRM: Xid (PCI:0000:3b:00): 13, pid=1, name=\"my app\", m", Some("my app"), "m"),
            ("NVRM: Xid (PCI:0000:3b:00): 13, pid=1, name='a, b', m, n", Some("a, b"), "m, n"),
            ("NVRM: Xid (PCI:0000:3b:00): 13, pid=1, name='x'", Some("x"), ""),
            ("NVRM: Xid (PCI:0000:3b:00): 13, pid=1, name=N/A, m", None, "m"),
            ("NVRM: Xid (PCI:0000:3b:00): 13, pid=1, name='N/A', m", None, "m"),
            ("NVRM: Xid (PCI:0000:3b:00): 13, pid=1, name=, m", None, "m"),
            ("NVRM: Xid (PCI:0000:3b:00): 13, pid=1, name='', m", None, "m"),
            ("NVRM: Xid (PCI:0000:3b:00): 13, pid=1, name=(null), m", None, "m"),
            ("NVRM: Xid (PCI:0000:3b:00): 13, pid=1, name=\"<unknown>\", m", None, "m"),
            // A quote that does not end the name is part of it.
            ("NVRM: Xid (PCI:0000:3b:00): 13, pid=1, name='x' y, m", Some("'x' y"), "m"),
            ("NVRM: Xid (PCI:0000:3b:00): 13, pid=1, name=it's, m", Some("it's"), "m"),
        ] {
            let x = xid(line);
            assert_eq!((x.pid, x.process_name.as_deref(), x.message.as_str()), (Some(1), name, message), "{line}");
        }
    }

    #[test]
    fn error_keeps_a_truncated_copy_of_a_huge_line() {
        let line = format!("NVRM: Xid (PCI:...): 79, {}", "x".repeat(1 << 20));
        let e = parse_kernel_message(&line).unwrap_err();
        assert_eq!(e.line.chars().count(), ERROR_LINE_CHARS);
        assert!(e.line.starts_with("NVRM: Xid (PCI:...)"));
    }

    #[test]
    fn one_mebibyte_lines_do_not_panic() {
        let noise = "a".repeat(1 << 20);
        assert_eq!(parse_kernel_message(&noise), Ok(None));
        let long_message = format!("NVRM: Xid (PCI:0000:3b:00): 13, pid=1, name=x, {noise}");
        assert_eq!(xid(&long_message).message.len(), 1 << 20);
        let nvrm_flood = "NVRM".repeat(1 << 18);
        assert_eq!(parse_kernel_message(&nvrm_flood), Ok(None));
    }

    #[test]
    fn binary_and_nul_bytes_do_not_panic() {
        assert_eq!(parse_kernel_message("\0\0\0NVRM\0: Xid"), Ok(None));
        let x = xid("NVRM: Xid (PCI:0000:3b:00): 13, pid=1, name=a\0b, bin\u{1}\u{7f}ary é");
        assert_eq!(x.process_name.as_deref(), Some("a\0b"));
        assert_eq!(x.message, "bin\u{1}\u{7f}ary é");
        assert!(parse_kernel_message("NVRM: Xid (PCI:00\u{0}0:3b:00): 13, m").is_err());
    }

    #[test]
    fn name_ends_at_the_first_comma_space() {
        let x = xid("NVRM: Xid (PCI:0000:3b:00): 13, pid=1, name=averyveryverylongname, msg, more");
        assert_eq!(x.process_name.as_deref(), Some("averyveryverylongname"));
        assert_eq!(x.message, "msg, more");
        let tail = xid("NVRM: Xid (PCI:0000:3b:00): 13, pid=1, name=last");
        assert_eq!((x.pid, tail.process_name.as_deref(), tail.message.as_str()), (Some(1), Some("last"), ""));
        let quoted = xid("NVRM: Xid (PCI:0000:3b:00): 13, pid=1, name='<unknown>', m");
        assert_eq!(quoted.process_name, None);
    }

    #[test]
    fn to_kernel_text_renders_the_driver_form() {
        let mut x = plain("0000:3b:00.0", 79, Some(1234), Some("python3"), "GPU has fallen off the bus.");
        assert_eq!(
            x.to_kernel_text(),
            "NVRM: Xid (PCI:0000:3b:00): 79, pid=1234, name=python3, GPU has fallen off the bus."
        );
        x.gpu_instance = Some(3);
        x.compute_instance = Some(1);
        x.pid = None;
        x.process_name = None;
        assert_eq!(
            x.to_kernel_text(),
            "NVRM: Xid (PCI:0000:3b:00 GPU-I:03 GPU-CI:01): 79, pid='<unknown>', name=<unknown>, GPU has fallen off \
             the bus."
        );
        x.message.clear();
        assert_eq!(
            x.to_kernel_text(),
            "NVRM: Xid (PCI:0000:3b:00 GPU-I:03 GPU-CI:01): 79, pid='<unknown>', name=<unknown>"
        );
        assert_eq!(xid(&x.to_kernel_text()), x);
    }

    #[test]
    fn error_types_display_what_was_wrong() {
        let e = parse_kernel_message("NVRM: Xid (PCI:0000:3b:00): 10000, m").unwrap_err();
        assert_eq!(
            e.to_string(),
            "malformed NVRM Xid line (the code 10000 is larger than 9999): \"NVRM: Xid (PCI:0000:3b:00): 10000, m\""
        );
        assert_eq!(LineKind::Sxid.to_string(), "NVSwitch SXid");
    }

    /// Not run by default: `cargo test --release -p gpuscope-crds -- --ignored --nocapture throughput`.
    #[test]
    #[ignore = "timing; run in release to measure"]
    fn throughput_on_mixed_kernel_log() {
        let noise = [
            "[ 1234.567890] usb 1-1: new high-speed USB device number 2 using xhci_hcd",
            "[ 1234.567891] EXT4-fs (nvme0n1p2): mounted filesystem with ordered data mode. Quota mode: none.",
            "[ 1234.567892] pcieport 0000:00:01.0: AER: Corrected error received: 0000:3b:00.0",
            "[ 1234.567893] IPv6: ADDRCONF(NETDEV_CHANGE): eth0: link becomes ready",
            "[ 1234.567894] systemd[1]: Started Journal Service.",
        ];
        let xid_line = "[ 1234.567895] NVRM: Xid (PCI:0000:3b:00): 13, pid=1, name=python3, Graphics SM Warp Exception";
        let build = |with_xids: bool| {
            let mut log = String::new();
            while log.len() < 32 << 20 {
                for l in noise.iter().chain(with_xids.then_some(&xid_line)) {
                    log.push_str(l);
                    log.push('\n');
                }
            }
            log
        };
        for (label, log) in [("non-NVRM only", build(false)), ("one line in six an XID", build(true))] {
            let start = std::time::Instant::now();
            let xids = log.lines().filter(|l| matches!(parse_kernel_message(l), Ok(Some(KernelEvent::Xid(_))))).count();
            let secs = start.elapsed().as_secs_f64();
            let mbps = log.len() as f64 / secs / 1e6;
            println!("{label}: {} MB in {secs:.3} s = {mbps:.0} MB/s ({xids} XIDs)", log.len() / 1_000_000);
            assert!(mbps > 100.0, "{label}: {mbps:.0} MB/s");
        }
    }

    fn pci_id() -> impl Strategy<Value = PciBusId> {
        (any::<u32>(), any::<u8>(), 0u8..=0x1f).prop_map(|(domain, bus, device)| PciBusId {
            domain,
            bus,
            device,
            function: 0,
        })
    }

    fn message() -> impl Strategy<Value = String> {
        prop_oneof![
            "[A-Za-z0-9 ,.:;()=_'<>/+#*-]{0,80}".prop_map(|s| s.trim().to_string()),
            "(0x[0-9a-f]{8} ?){1,6}".prop_map(|s| s.trim().to_string()),
            (0u32..10, 0u32..10).prop_map(|(a, b)| format!(
                "GPU recovery action changed from 0x{a:x} (Whatever) to 0x{b:x} (Something Required)"
            )),
        ]
    }

    fn xid_line() -> impl Strategy<Value = XidLine> {
        (
            pci_id(),
            proptest::option::of(0u32..200),
            proptest::option::of(0u32..200),
            prop_oneof![4 => 1u32..=999, 1 => Just(154u32)],
            proptest::option::of(any::<u32>()),
            proptest::option::of(process_name()),
            message(),
        )
            .prop_map(|(pci_bus_id, gpu_instance, compute_instance, code, pid, process_name, message)| {
                let recovery_action = if code == 154 { RecoveryAction::from_xid154_message(&message) } else { None };
                XidLine {
                    pci_bus_id,
                    gpu_instance,
                    compute_instance,
                    code,
                    pid,
                    process_name,
                    message,
                    recovery_action,
                }
            })
    }

    /// A process name as the kernel prints it (at most 15 characters, no `", "`), never a placeholder.
    fn process_name() -> impl Strategy<Value = String> {
        "[A-Za-z0-9_./:-]([A-Za-z0-9_./: -]{0,13}[A-Za-z0-9_./:-])?"
            .prop_filter("a placeholder is no name", |n| process_name_of(n).as_deref() == Some(n.as_str()))
    }

    /// `s` in no quotes, single or double quotes.
    fn in_quotes(s: String) -> impl Strategy<Value = String> {
        prop_oneof![Just(""), Just("'"), Just("\"")].prop_map(move |q| format!("{q}{s}{q}"))
    }

    /// A `pid=` value a driver or a log shipper may write, and the pid it stands for.
    fn pid_field() -> impl Strategy<Value = (String, Option<u32>)> {
        let placeholders = ["N/A", "n/a", "<unknown>", "", "-", "?", "null", "(null)", "unknown", "none", "NaN"];
        let bare = prop_oneof![
            4 => any::<u32>().prop_map(|n| (n.to_string(), Some(n))),
            2 => proptest::sample::select(placeholders.to_vec()).prop_map(|p| (p.to_string(), None)),
            1 => proptest::sample::select(vec!["-1", "+5", "0x1f", "4294967296", "12a", "1.5"])
                .prop_map(|p| (p.to_string(), None)),
            2 => "[A-Za-z0-9/<>?_.+-]{0,12}".prop_map(|p| {
                let pid = decimal(&p);
                (p, pid)
            }),
        ];
        let spaced = "[A-Za-z0-9/<>?_., -]{0,16}".prop_map(|p| {
            let pid = decimal(p.trim());
            (p, pid)
        });
        prop_oneof![
            3 => bare.prop_flat_map(|(token, pid)| in_quotes(token).prop_map(move |t| (t, pid))),
            // Spaces and commas only inside quotes.
            1 => (spaced, prop_oneof![Just('\''), Just('"')])
                .prop_map(|((token, pid), q)| (format!("{q}{token}{q}"), pid)),
        ]
    }

    /// A `name=` value a driver or a log shipper may write, and the name it stands for.
    fn name_field() -> impl Strategy<Value = (String, Option<String>)> {
        let placeholders = ["<unknown>", "N/A", "n/a", "", "(null)", "null", "-"];
        prop_oneof![
            3 => process_name().prop_flat_map(|n| in_quotes(n.clone()).prop_map(move |t| (t, Some(n.clone())))),
            2 => proptest::sample::select(placeholders.to_vec())
                .prop_flat_map(|p| in_quotes(p.to_string()).prop_map(|t| (t, None))),
            // A quoted name may contain what an unquoted one cannot: `", "`.
            1 => ("[A-Za-z0-9_.-]{1,6}, [A-Za-z0-9_.-]{1,6}", prop_oneof![Just('\''), Just('"')])
                .prop_map(|(n, q)| (format!("{q}{n}{q}"), Some(n))),
        ]
    }

    fn kmsg_prefix() -> impl Strategy<Value = String> {
        let one = prop_oneof![
            (0u32..192, any::<u64>(), any::<u64>()).prop_map(|(p, s, t)| format!("{p},{s},{t},-;")),
            (0u32..100_000, 0u32..1_000_000).prop_map(|(s, us)| format!("[{s:>5}.{us:06}] ")),
            Just("kernel: ".to_string()),
            "[A-Z][a-z]{2} [ 0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2} [a-z0-9-]{1,20} kernel: ",
        ];
        proptest::collection::vec(one, 0..3).prop_map(|parts| parts.concat())
    }

    proptest! {
        #[test]
        fn rendered_xid_lines_parse_back_to_the_same_value(line in xid_line(), prefix in kmsg_prefix()) {
            let text = format!("{prefix}{}", line.to_kernel_text());
            prop_assert_eq!(parse_kernel_message(&text), Ok(Some(KernelEvent::Xid(line))));
        }

        #[test]
        fn rendered_xid_lines_survive_a_kmsg_record(line in xid_line(), seq in any::<u64>(), ts in any::<u64>()) {
            let record = format!("3,{seq},{ts},-;{}\n SUBSYSTEM=pci\n DEVICE=+pci:{}\n", line.to_kernel_text(), line.pci_bus_id);
            let parsed = crate::kmsg::parse_record(record.as_bytes()).unwrap();
            prop_assert_eq!(parsed.sequence, seq);
            prop_assert_eq!(parse_kernel_message(&parsed.message), Ok(Some(KernelEvent::Xid(line))));
        }

        #[test]
        fn any_pid_and_name_token_still_counts_the_xid(
            pci_bus_id in pci_id(),
            code in 0u32..=MAX_XID_CODE,
            pid in proptest::option::of(pid_field()),
            name in proptest::option::of(name_field()),
            message in message(),
            prefix in kmsg_prefix(),
        ) {
            let p = &pci_bus_id;
            let mut fields = vec![format!("{prefix}NVRM: Xid (PCI:{:04x}:{:02x}:{:02x}): {code}", p.domain, p.bus, p.device)];
            fields.extend(pid.as_ref().map(|(token, _)| format!("pid={token}")));
            fields.extend(name.as_ref().map(|(token, _)| format!("name={token}")));
            fields.extend(Some(message.clone()).filter(|m| !m.is_empty()));
            let line = fields.join(", ");
            let x = match parse_kernel_message(&line) {
                Ok(Some(KernelEvent::Xid(x))) => x,
                other => return Err(TestCaseError::fail(format!("{line:?}: not an XID: {other:?}"))),
            };
            prop_assert_eq!((x.pci_bus_id, x.code), (pci_bus_id, code), "{}", line);
            prop_assert_eq!(x.pid, pid.and_then(|(_, pid)| pid), "{}", line);
            prop_assert_eq!(x.process_name, name.and_then(|(_, name)| name), "{}", line);
            prop_assert_eq!(x.message, message, "{}", line);
        }

        #[test]
        fn arbitrary_text_never_panics(text in "\\PC{0,200}") {
            let _ = parse_kernel_message(&text);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = parse_kernel_message(&String::from_utf8_lossy(&bytes));
        }

        #[test]
        fn near_miss_driver_lines_never_panic_and_never_exceed_limits(
            head in prop_oneof![
                Just("NVRM: Xid"), Just("NVRM: Xid ("), Just("NVRM: Xid (PCI:"), Just("NVRM: Xid (PCI:0000:3b:00"),
                Just("NVRM: Xid (PCI:0000:3b:00): "), Just("nvidia-nvswitch1: SXid ("), Just("NVRM: GPU at "),
                Just("NVRM: GPU "), Just("NVRM: RC all channels for critical error "),
            ],
            tail in "[ -~\u{e9}\u{0}]{0,60}",
        ) {
            match parse_kernel_message(&format!("{head}{tail}")) {
                Ok(Some(KernelEvent::Xid(x))) => prop_assert!(x.code <= MAX_XID_CODE),
                Ok(Some(KernelEvent::Sxid(s))) => prop_assert!(s.code <= MAX_SXID_CODE),
                Err(e) => prop_assert!(e.line.chars().count() <= ERROR_LINE_CHARS && !e.to_string().is_empty()),
                Ok(_) => {}
            }
        }
    }
}
