//! Explain a kernel log pasted or exported from anywhere: which GPU, which XID, what NVIDIA says it means, and
//! what to do now — the answer the cluster gives, with no cluster, no GPU and no probe.
//!
//! - Every common way a kernel line reaches a person is accepted ([`split_prefix`]: `/dev/kmsg` records, `dmesg`
//!   in all its time formats, journalctl and syslog, log shippers, markdown quotes, another tool's message); the
//!   driver's records are read by the probe's own parser ([`gpuscope_crds::xid::line::parse_kernel_message`]), so the
//!   probe and the analysis never disagree about a line.
//! - Verdicts come from the operator's own rule table ([`gpuscope_crds::xid::rules`]), applied to the log as one window.
//! - Input: [`analyze`] takes up to [`MAX_INPUT_BYTES`] at once; [`LogAnalyzer`] and [`analyze_reader`] stream
//!   any amount in bounded memory. Non-UTF-8 and binary input is read line by line and never fails.
//! - Output: a [`LogReport`] of bounded size ([`Limits`]), serializable with a JSON schema (for an MCP tool's
//!   structured content), and [`render_text`] for a terminal.
//!
//! ```
//! use gpuscope_log_analysis::{AnalyzeOptions, analyze, render_text};
//! let log = "[Mon Aug  5 03:54:13 2024] NVRM: GPU at PCI:0000:3b:00: GPU-5a4c2e1b-8f3e-4c1d-9e2a-0123456789ab\n\
//!            [Mon Aug  5 03:54:13 2024] NVRM: Xid (PCI:0000:3b:00): 79, pid=1234, name=python3, GPU has fallen off the bus.\n";
//! let report = analyze(log.as_bytes(), AnalyzeOptions::default())?;
//! assert_eq!(report.summary.headline, "reboot node: XID 79 on 0000:3b:00.0");
//! assert_eq!(report.gpus[0].uuid.as_deref(), Some("GPU-5a4c2e1b-8f3e-4c1d-9e2a-0123456789ab"));
//! assert!(render_text(&report).starts_with("Unhealthy: reboot node: XID 79 on 0000:3b:00.0"));
//! # Ok::<(), gpuscope_log_analysis::AnalyzeError>(())
//! ```

mod analyzer;
mod prefix;
mod render;
mod report;
mod time;

#[cfg(test)]
mod corpus_tests;
#[cfg(test)]
mod tests;

use std::io::Read;

pub use analyzer::{AnalyzeOptions, KnownGpu, Limits, LogAnalyzer, MAX_LINE_BYTES};
pub use prefix::{KmsgHeader, LinePrefix, PrefixKind, PrefixKinds, RawTime, TimeSyntax, split_prefix};
pub use render::render_text;
pub use report::{
    CatalogEntry, CompanionKindReport, CompanionReport, FirstAction, FormatCount, GpuReport, InputStats, LogReport,
    MigInstance, NotShown, NotUnderstood, NotUnderstoodLine, ProcessReport, RecoveryActionReport,
    RecoveryActionVerdict, RulesUsed, Summary, SxidReport, UuidSource, XidExplanation, XidReport, explain_xid,
};
pub use time::{LogTime, TimeKind};

use gpuscope_crds::xid::line::{KernelEvent, XidLineError, parse_kernel_message};

/// The most input [`analyze`] takes at once: 64 MiB. Larger logs go through [`LogAnalyzer`] or
/// [`analyze_reader`], which stream.
pub const MAX_INPUT_BYTES: usize = 64 * 1024 * 1024;

/// Why an analysis gave no report.
#[derive(Debug, thiserror::Error)]
pub enum AnalyzeError {
    /// The one-shot input is over [`MAX_INPUT_BYTES`].
    #[error(
        "the log is {len} bytes, more than the {max} bytes (64 MiB) analysed at once; pass the most recent part, or \
         stream the file through the CLI"
    )]
    TooLarge {
        /// The input's size.
        len: u64,
        /// The limit, [`MAX_INPUT_BYTES`].
        max: u64,
    },
    /// Reading the input failed.
    #[error("reading the log failed: {0}")]
    Io(#[from] std::io::Error),
}

/// Analyse a whole log held in memory (at most [`MAX_INPUT_BYTES`]).
pub fn analyze(input: &[u8], options: AnalyzeOptions) -> Result<LogReport, AnalyzeError> {
    if input.len() > MAX_INPUT_BYTES {
        return Err(AnalyzeError::TooLarge { len: input.len() as u64, max: MAX_INPUT_BYTES as u64 });
    }
    let mut analyzer = LogAnalyzer::new(options);
    analyzer.push_bytes(input);
    Ok(analyzer.finish())
}

/// Analyse a log of any size from a reader (a file, stdin), streaming in bounded memory.
pub fn analyze_reader(mut reader: impl Read, options: AnalyzeOptions) -> Result<LogReport, AnalyzeError> {
    let mut analyzer = LogAnalyzer::new(options);
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => analyzer.push_bytes(buf.get(..n).unwrap_or_default()),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(analyzer.finish())
}

/// One line as the analysis reads it: the prefixes found and what the driver's parser makes of the kernel text.
#[derive(Clone, Debug, PartialEq)]
pub struct LogLine<'a> {
    /// The prefixes and the kernel text.
    pub prefix: LinePrefix<'a>,
    /// The line's time as the log gives it.
    pub time: Option<LogTime>,
    /// What the kernel text is (`Ok(None)` for a line that is not the driver's).
    pub event: Result<Option<KernelEvent>, XidLineError>,
}

/// Read one line the way the analysis does (without joining continuation lines or kmsg fragments).
pub fn parse_log_line(line: &str) -> LogLine<'_> {
    let prefix = split_prefix(line);
    let decoded = analyzer::decode_kmsg_text(&prefix);
    let event = parse_kernel_message(decoded.as_deref().unwrap_or(prefix.text));
    LogLine { prefix, time: LogTime::from_prefix(&prefix), event }
}
