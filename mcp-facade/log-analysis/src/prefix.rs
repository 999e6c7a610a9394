//! Finding the kernel's text after whatever prefix a tool added, and the log's own timestamp.
//!
//! [`split_prefix`] peels the layers a line picked up on its way to a person, outermost first, in any order and
//! nesting (a markdown quote of a journal line with an rsyslog uptime inside is three layers):
//!
//! ```text
//! 6,1234,5678901,-;NVRM: ...                                  /dev/kmsg record (` KEY=value` lines follow)
//! [  123.456789] NVRM: ...                                    dmesg
//! [Mon Aug  5 03:54:13 2024] NVRM: ...                        dmesg -T / --ctime
//! kern  :err   : [  123.456789] NVRM: ...                     dmesg -x (also with an ISO time after the level)
//! Aug 05 03:54:13 gpu-node-7 kernel: NVRM: ...                journalctl, syslog (any month spelling; host optional)
//! 2024-08-05T03:54:13+0000 gpu-node-7 kernel: NVRM: ...       journalctl -o short-iso, RFC 3339
//! Aug  5 03:54:13 gpu-node-7 kernel: [ 1234.5] NVRM: ...      rsyslog with the kernel's uptime
//! kernel: NVRM: ...                                           bare tag
//! 172.20.0.2: kern:    info: [2024-08-05T03:54:13.1Z]: NVRM:  container-OS log shipper (right-aligned level)
//! > ```[  123.4] NVRM: ...                                    markdown quote, code fence
//! level=error msg="NVRM: ..."                                 another tool's message (text before `NVRM:`)
//! ```
//!
//! Everything here borrows from the line: no allocation, no regex. The analysis calls it only for lines that
//! contain a driver marker, so ordinary kernel lines never pay for it.

use schemars::JsonSchema;
use serde::Serialize;

use gpuscope_crds::kmsg::RecordFlag;

/// The most layers peeled from one line; real lines have at most four.
const MAX_LAYERS: usize = 8;

/// The longest bracketed timestamp (`[Mon Aug  5 03:54:13 2024]` is 26 bytes; dmesg's delta form is longer).
const MAX_BRACKET: usize = 64;

/// The longest host or log-shipper node name accepted before `kernel:` or `kern:`.
const MAX_HOST: usize = 255;

/// One layer a tool put in front of the kernel's text.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum PrefixKind {
    /// A markdown quote (`> `).
    MarkdownQuote,
    /// A markdown code fence (```` ``` ````, `~~~`) or inline-code backtick around the line.
    CodeFence,
    /// A markdown list bullet (`- `, `* `).
    ListItem,
    /// A `/dev/kmsg` record header (`6,1234,5678901,-;`).
    KmsgRecord,
    /// A syslog priority (`<4>`).
    SyslogPriority,
    /// dmesg's uptime (`[  123.456789] `), also `journalctl -o short-monotonic` and the uptime rsyslog keeps.
    Uptime,
    /// dmesg `-T` / `--ctime` (`[Mon Aug  5 03:54:13 2024] `).
    Ctime,
    /// Another bracketed dmesg time (`--reltime`, `--show-delta`).
    OtherBracketTime,
    /// dmesg `-x` / a log shipper's facility and level (`kern  :err   : `, `kern:    info: `).
    FacilityLevel,
    /// A log shipper's node name or address before the facility (`172.20.0.2: `).
    ShipperNode,
    /// An ISO 8601 / RFC 3339 time (`journalctl -o short-iso`, dmesg `--time-format iso`, log shippers).
    IsoTime,
    /// A syslog / journal clock without a year (`Aug  5 03:54:13`, any month spelling).
    SyslogClock,
    /// Seconds since the epoch (`journalctl -o short-unix`).
    UnixTime,
    /// The journal's or syslog's host name before `kernel:`.
    Host,
    /// The `kernel:` tag.
    KernelTag,
    /// A continuation line: indented, with no prefix of its own (kmsg ` KEY=value`, a wrapped journal message).
    Continuation,
    /// Another tool's text before `NVRM:`.
    Embedded,
}

impl PrefixKind {
    /// Every kind, in declaration order.
    pub const ALL: [PrefixKind; 17] = [
        PrefixKind::MarkdownQuote,
        PrefixKind::CodeFence,
        PrefixKind::ListItem,
        PrefixKind::KmsgRecord,
        PrefixKind::SyslogPriority,
        PrefixKind::Uptime,
        PrefixKind::Ctime,
        PrefixKind::OtherBracketTime,
        PrefixKind::FacilityLevel,
        PrefixKind::ShipperNode,
        PrefixKind::IsoTime,
        PrefixKind::SyslogClock,
        PrefixKind::UnixTime,
        PrefixKind::Host,
        PrefixKind::KernelTag,
        PrefixKind::Continuation,
        PrefixKind::Embedded,
    ];

    /// Short human-readable name, e.g. "dmesg -T time".
    pub const fn label(self) -> &'static str {
        match self {
            PrefixKind::MarkdownQuote => "markdown quote",
            PrefixKind::CodeFence => "code fence",
            PrefixKind::ListItem => "list item",
            PrefixKind::KmsgRecord => "/dev/kmsg record",
            PrefixKind::SyslogPriority => "syslog priority",
            PrefixKind::Uptime => "uptime",
            PrefixKind::Ctime => "dmesg -T time",
            PrefixKind::OtherBracketTime => "other dmesg time",
            PrefixKind::FacilityLevel => "facility:level",
            PrefixKind::ShipperNode => "log-shipper node",
            PrefixKind::IsoTime => "ISO/RFC 3339 time",
            PrefixKind::SyslogClock => "syslog/journal time",
            PrefixKind::UnixTime => "unix time",
            PrefixKind::Host => "host",
            PrefixKind::KernelTag => "kernel: tag",
            PrefixKind::Continuation => "continuation",
            PrefixKind::Embedded => "embedded in another message",
        }
    }

    const fn bit(self) -> u32 {
        1 << self as u32
    }
}

/// The set of layers found on one line.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct PrefixKinds(u32);

impl PrefixKinds {
    /// Whether `kind` is in the set.
    pub const fn contains(self, kind: PrefixKind) -> bool {
        self.0 & kind.bit() != 0
    }

    /// True when no layer was found (a bare kernel line).
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The kinds in the set, in declaration order.
    pub fn iter(self) -> impl Iterator<Item = PrefixKind> {
        PrefixKind::ALL.into_iter().filter(move |k| self.contains(*k))
    }

    fn insert(&mut self, kind: PrefixKind) {
        self.0 |= kind.bit();
    }
}

/// How a timestamp is written, which decides how it parses ([`super::LogTime`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TimeSyntax {
    /// Seconds since boot with a fraction (`123.456789`).
    UptimeSeconds,
    /// Microseconds since boot (a `/dev/kmsg` header).
    KmsgMicros,
    /// `Mon Aug  5 03:54:13 2024` (dmesg -T): local time with a year, no zone.
    Ctime,
    /// `2024-08-05T03:54:13,123456+00:00` and its variants.
    Iso,
    /// `Aug  5 03:54:13`: no year, no zone.
    SyslogClock,
    /// `1722830053.123456`: seconds since the epoch.
    UnixSeconds,
    /// Another bracketed dmesg time (`Aug 5 03:54`, `+0.000123`): kept as text.
    Other,
}

/// A timestamp as the line writes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RawTime<'a> {
    /// The time's text, trimmed (without brackets).
    pub text: &'a str,
    /// How it is written.
    pub syntax: TimeSyntax,
}

/// The numeric header of a `/dev/kmsg` record.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct KmsgHeader {
    /// Syslog level (0–7).
    pub level: u8,
    /// Sequence number.
    pub sequence: u64,
    /// Microseconds since boot.
    pub timestamp_us: u64,
    /// Whether the record continues (`c`) or is continued by (`+`) another, on kernels before 4.9.
    pub flag: RecordFlag,
}

/// A line split into the prefixes tools added and the kernel's text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LinePrefix<'a> {
    /// The kernel's text, trimmed; empty for a line that is only a code fence.
    pub text: &'a str,
    /// The layers found.
    pub kinds: PrefixKinds,
    /// The outermost timestamp: the one the person's tool printed (wall clock when there is one).
    pub time: Option<RawTime<'a>>,
    /// The kernel's uptime, when the line carries one (dmesg, kmsg, rsyslog's copy after `kernel:`).
    pub uptime: Option<RawTime<'a>>,
    /// The `/dev/kmsg` header, for a raw record.
    pub kmsg: Option<KmsgHeader>,
    /// The host (journal/syslog) or node (log shipper) named before the kernel's text.
    pub host: Option<&'a str>,
    /// The level named by dmesg `-x` or a log shipper (`err`, `info`).
    pub level: Option<&'a str>,
}

impl LinePrefix<'_> {
    /// True for a continuation line: indented with no prefix of its own.
    pub fn is_continuation(&self) -> bool {
        self.kinds.contains(PrefixKind::Continuation)
    }
}

/// Split `line` into the prefixes tools added and the kernel's text. Never fails: a line with no known prefix is
/// all text.
pub fn split_prefix(line: &str) -> LinePrefix<'_> {
    let line = line.trim_end_matches(['\n', '\r']);
    let mut p = LinePrefix {
        text: "",
        kinds: PrefixKinds::default(),
        time: None,
        uptime: None,
        kmsg: None,
        host: None,
        level: None,
    };
    let indented = line.starts_with([' ', '\t']);
    let mut s = line;
    let mut after_time = false;
    let mut backtick = false;
    for _ in 0..MAX_LAYERS {
        let t = s.trim_start_matches([' ', '\t']);
        // The driver's own text starts here; no prefix starts like it (the common case after a timestamp).
        if t.starts_with("NVRM:") || t.starts_with("nvidia-nvswitch") || t.starts_with("SXid") {
            break;
        }
        if let Some(rest) = t.strip_prefix('>') {
            p.kinds.insert(PrefixKind::MarkdownQuote);
            s = rest;
        } else if let Some(rest) = code_fence(t) {
            p.kinds.insert(PrefixKind::CodeFence);
            match rest {
                // A fence line of its own (```` ```text ````): nothing of the kernel's on it.
                None => return p,
                Some(rest) => s = rest,
            }
        } else if let Some(rest) = t.strip_prefix('`') {
            p.kinds.insert(PrefixKind::CodeFence);
            backtick = true;
            s = rest;
        } else if let Some(rest) = t.strip_prefix("- ").or_else(|| t.strip_prefix("* ")) {
            p.kinds.insert(PrefixKind::ListItem);
            s = rest;
        } else if let Some((header, text_start, rest)) = kmsg_header(t) {
            p.kinds.insert(PrefixKind::KmsgRecord);
            p.kmsg = Some(header);
            let time = RawTime { text: text_start, syntax: TimeSyntax::KmsgMicros };
            p.time.get_or_insert(time);
            p.uptime.get_or_insert(time);
            s = rest;
            after_time = true;
        } else if let Some(rest) = syslog_priority(t) {
            p.kinds.insert(PrefixKind::SyslogPriority);
            s = rest;
        } else if let Some((time, rest)) = bracketed_time(t) {
            p.kinds.insert(match time.syntax {
                TimeSyntax::UptimeSeconds => PrefixKind::Uptime,
                TimeSyntax::Ctime => PrefixKind::Ctime,
                TimeSyntax::Iso => PrefixKind::IsoTime,
                _ => PrefixKind::OtherBracketTime,
            });
            p.note_time(time);
            s = rest;
            after_time = true;
        } else if let Some((node, level, rest)) = facility_level(t) {
            p.kinds.insert(PrefixKind::FacilityLevel);
            if let Some(node) = node {
                p.kinds.insert(PrefixKind::ShipperNode);
                p.host.get_or_insert(node);
            }
            p.level.get_or_insert(level);
            s = rest;
        } else if let Some((time, rest)) = iso_time(t).or_else(|| syslog_clock(t)).or_else(|| unix_time(t)) {
            p.kinds.insert(match time.syntax {
                TimeSyntax::Iso => PrefixKind::IsoTime,
                TimeSyntax::SyslogClock => PrefixKind::SyslogClock,
                _ => PrefixKind::UnixTime,
            });
            p.note_time(time);
            s = rest;
            after_time = true;
        } else if let Some(rest) = kernel_tag(t) {
            p.kinds.insert(PrefixKind::KernelTag);
            s = rest;
        } else if let Some((host, rest)) = after_time.then(|| host_kernel_tag(t)).flatten() {
            p.kinds.insert(PrefixKind::Host);
            p.kinds.insert(PrefixKind::KernelTag);
            p.host.get_or_insert(host);
            s = rest;
        } else {
            break;
        }
    }
    let mut text = s.trim_matches([' ', '\t']);
    // A fence or backtick closing on the same line.
    if p.kinds.contains(PrefixKind::CodeFence) {
        text = text.trim_end_matches(['`', '~']).trim_end();
    } else if backtick {
        text = text.strip_suffix('`').unwrap_or(text).trim_end();
    }
    if indented && p.kinds.is_empty() {
        p.kinds.insert(PrefixKind::Continuation);
    }
    p.text = embedded(text, &mut p.kinds);
    p
}

impl<'a> LinePrefix<'a> {
    /// Records a timestamp: the first one found is the line's time; an uptime is also kept as such.
    fn note_time(&mut self, time: RawTime<'a>) {
        self.time.get_or_insert(time);
        if time.syntax == TimeSyntax::UptimeSeconds {
            self.uptime.get_or_insert(time);
        }
    }
}

/// Text before `NVRM:` that no rule above explains is another tool's: the kernel's text starts at `NVRM:`. When a
/// quote opens it (`msg="NVRM: ..." node=x`, `{"MESSAGE":"NVRM: ..."}`), the closing quote ends it: the driver never
/// prints `"` or a backtick. A single quote is closed only at the end of the line (the driver prints
/// `pid='<unknown>'`).
fn embedded<'a>(text: &'a str, kinds: &mut PrefixKinds) -> &'a str {
    if text.starts_with("NVRM") || text.starts_with("nvidia-nvswitch") || text.starts_with("SXid") {
        return text;
    }
    let Some(at) = text.find("NVRM:") else { return text };
    kinds.insert(PrefixKind::Embedded);
    let inner = text.get(at..).unwrap_or(text);
    match text.as_bytes().get(at.wrapping_sub(1)) {
        Some(&q @ (b'"' | b'`')) => inner.split(char::from(q)).next().unwrap_or(inner).trim_end(),
        Some(b'\'') => inner.strip_suffix('\'').unwrap_or(inner).trim_end(),
        _ => inner,
    }
}

/// ```` ```lang ```` or `~~~`: `Some(None)` for a line that is only a fence (with an optional info word),
/// `Some(Some(rest))` for a fence followed by log text.
fn code_fence(t: &str) -> Option<Option<&str>> {
    let fence = if t.starts_with("```") {
        '`'
    } else if t.starts_with("~~~") {
        '~'
    } else {
        return None;
    };
    let rest = t.trim_start_matches(fence);
    let info = rest.trim();
    if info.is_empty() || (!info.contains(char::is_whitespace) && !rest.starts_with(' ') && !info.contains("NVRM")) {
        // An info string is one word right after the fence (```` ```console ````).
        let is_word = info.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'+' | b'.'));
        if is_word {
            return Some(None);
        }
    }
    Some(Some(rest))
}

/// `<prio>,<seq>,<usec>,<flag>[,...];` → (header, the timestamp's digits, the message).
fn kmsg_header(t: &str) -> Option<(KmsgHeader, &str, &str)> {
    let b = t.as_bytes();
    let (prio, at) = digits(b, 0, 4)?;
    let at = after_byte(b, at, b',')?;
    let (seq, at) = digits(b, at, 20)?;
    let at = after_byte(b, at, b',')?;
    let ts_start = at;
    let (ts, at) = digits(b, at, 20)?;
    let ts_text = t.get(ts_start..at)?;
    let at = after_byte(b, at, b',')?;
    let flag = match b.get(at)? {
        b'-' => RecordFlag::Normal,
        b'c' => RecordFlag::ContinuationStart,
        b'+' => RecordFlag::Continuation,
        _ => return None,
    };
    // Fields after the flag (the caller id of CONFIG_PRINTK_CALLER) end at the `;`.
    let semi = at + 1 + b.get(at + 1..)?.iter().take(64).position(|&c| c == b';')?;
    if semi > at + 1 && b.get(at + 1) != Some(&b',') {
        return None;
    }
    let header = KmsgHeader {
        level: (parse_u64(prio)? & 7) as u8, // masked to three bits
        sequence: parse_u64(seq)?,
        timestamp_us: parse_u64(ts)?,
        flag,
    };
    Some((header, ts_text, t.get(semi + 1..)?))
}

/// `<4>` → the rest.
fn syslog_priority(t: &str) -> Option<&str> {
    let b = t.as_bytes();
    let at = after_byte(b, 0, b'<')?;
    let (_, at) = digits(b, at, 3)?;
    let at = after_byte(b, at, b'>')?;
    t.get(at..)
}

/// `[ <time> ]` followed by an optional `:` → (time, rest); `None` when the brackets hold no time (`[drm]`).
fn bracketed_time(t: &str) -> Option<(RawTime<'_>, &str)> {
    if !t.starts_with('[') {
        return None;
    }
    let close = t.as_bytes().iter().take(MAX_BRACKET).position(|&c| c == b']')?;
    let inner = t.get(1..close)?.trim();
    let rest = t.get(close + 1..)?;
    let rest = rest.strip_prefix(':').unwrap_or(rest);
    let syntax = classify_bracket(inner)?;
    let text = match syntax {
        // `--show-delta`: `[ 123.456789 <    0.000123>]`: the uptime is the first word.
        TimeSyntax::UptimeSeconds => inner.split_whitespace().next().unwrap_or(inner),
        _ => inner,
    };
    Some((RawTime { text, syntax }, rest))
}

/// What kind of time a bracket holds, if any.
fn classify_bracket(inner: &str) -> Option<TimeSyntax> {
    let first = inner.split_whitespace().next()?;
    if is_seconds(first) {
        return Some(TimeSyntax::UptimeSeconds);
    }
    if iso_time(inner).is_some_and(|(_, rest)| rest.trim().is_empty()) {
        return Some(TimeSyntax::Iso);
    }
    let mut words = inner.split_whitespace();
    if let (Some(_weekday), Some(_month), Some(day), Some(clock), Some(year), None) =
        (words.next(), words.next(), words.next(), words.next(), words.next(), words.next())
        && day.len() <= 2
        && all_digits(day)
        && is_clock(clock)
        && year.len() == 4
        && all_digits(year)
    {
        return Some(TimeSyntax::Ctime);
    }
    // `--reltime` (`Aug 5 03:54`, `+0.000123`) and `--show-delta` alone (`<    0.000123>`).
    let timeish = inner.bytes().any(|b| b.is_ascii_digit())
        && (inner.contains(':') || inner.starts_with('+') || inner.starts_with('<'))
        && inner.bytes().all(|b| b.is_ascii_alphanumeric() || b" :.,+-<>".contains(&b) || b >= 0x80);
    timeish.then_some(TimeSyntax::Other)
}

/// Facility names dmesg `-x` and log shippers print.
const FACILITIES: [&str; 20] = [
    "kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news", "uucp", "cron", "authpriv", "ftp", "local0",
    "local1", "local2", "local3", "local4", "local5", "local6", "local7",
];

/// Syslog level names.
const LEVELS: [&str; 9] = ["emerg", "alert", "crit", "err", "warn", "warning", "notice", "info", "debug"];

/// `[node: ]kern  :err   : ` → (node, level, rest).
fn facility_level(t: &str) -> Option<(Option<&str>, &str, &str)> {
    if let Some((level, rest)) = bare_facility_level(t) {
        return Some((None, level, rest));
    }
    // A log shipper's node: an address or name (IPv6 has colons of its own), then `: `.
    let sep = t.find(": ")?;
    let node = t.get(..sep)?;
    if node.is_empty() || sep > MAX_HOST || node.contains(char::is_whitespace) {
        return None;
    }
    let (level, rest) = bare_facility_level(t.get(sep + 2..)?.trim_start())?;
    Some((Some(node), level, rest))
}

/// `kern  :err   : ` → (level, rest).
fn bare_facility_level(t: &str) -> Option<(&str, &str)> {
    let word_end = t.find(|c: char| !c.is_ascii_alphanumeric()).unwrap_or(t.len());
    let facility = t.get(..word_end)?;
    if !FACILITIES.contains(&facility) {
        return None;
    }
    let rest = t.get(word_end..)?.trim_start_matches(' ').strip_prefix(':')?.trim_start_matches(' ');
    let level_end = rest.find(|c: char| !c.is_ascii_alphabetic()).unwrap_or(rest.len());
    let level = rest.get(..level_end)?;
    if !LEVELS.contains(&level) {
        return None;
    }
    let rest = rest.get(level_end..)?.trim_start_matches(' ').strip_prefix(':')?;
    Some((level, rest))
}

/// `YYYY-MM-DD[T ]HH:MM[:SS[.,frac]][Z|±HH[:MM]]` followed by whitespace or the end → (time, rest).
fn iso_time(t: &str) -> Option<(RawTime<'_>, &str)> {
    let b = t.as_bytes();
    let (_, at) = fixed_digits(b, 0, 4)?;
    let at = after_byte(b, at, b'-')?;
    let (_, at) = fixed_digits(b, at, 2)?;
    let at = after_byte(b, at, b'-')?;
    let (_, at) = fixed_digits(b, at, 2)?;
    let at = match b.get(at)? {
        b'T' | b't' | b' ' => at + 1,
        _ => return None,
    };
    let (_, at) = fixed_digits(b, at, 2)?;
    let at = after_byte(b, at, b':')?;
    let (_, mut at) = fixed_digits(b, at, 2)?;
    if b.get(at) == Some(&b':') {
        at = fixed_digits(b, at + 1, 2)?.1;
        if matches!(b.get(at), Some(b'.' | b',')) {
            at = digits(b, at + 1, 9)?.1;
        }
    }
    match b.get(at) {
        Some(b'Z' | b'z') => at += 1,
        Some(b'+' | b'-') => {
            at = fixed_digits(b, at + 1, 2)?.1;
            if b.get(at) == Some(&b':') {
                at = fixed_digits(b, at + 1, 2)?.1;
            } else if let Some((_, end)) = fixed_digits(b, at, 2) {
                at = end;
            }
        }
        _ => {}
    }
    ends_word(b, at)?;
    Some((RawTime { text: t.get(..at)?, syntax: TimeSyntax::Iso }, t.get(at..)?))
}

/// `<month> <day> HH:MM:SS[.frac]` with any month spelling (`Aug`, `aug`, `Mär`, `août`, `8月`) → (time, rest).
fn syslog_clock(t: &str) -> Option<(RawTime<'_>, &str)> {
    let month_end = t.find([' ', '\t'])?;
    let month = t.get(..month_end)?;
    if month.len() > 16 || all_digits(month) || month.ends_with(':') || month.starts_with(['[', '<']) {
        return None;
    }
    let after_month = t.get(month_end..)?;
    let day_part = after_month.trim_start_matches(' ');
    let day_len = day_part.find(' ')?;
    if !(1..=2).contains(&day_len) || !all_digits(day_part.get(..day_len)?) {
        return None;
    }
    let clock_part = day_part.get(day_len + 1..)?;
    let b = clock_part.as_bytes();
    let (_, at) = fixed_digits(b, 0, 2)?;
    let at = after_byte(b, at, b':')?;
    let (_, at) = fixed_digits(b, at, 2)?;
    let at = after_byte(b, at, b':')?;
    let (_, mut at) = fixed_digits(b, at, 2)?;
    if b.get(at) == Some(&b'.') {
        at = digits(b, at + 1, 9)?.1;
    }
    ends_word(b, at)?;
    let len = t.len() - clock_part.len() + at;
    Some((RawTime { text: t.get(..len)?, syntax: TimeSyntax::SyslogClock }, t.get(len..)?))
}

/// `1722830053.123456` (nine to eleven digits, a fraction) → (time, rest).
fn unix_time(t: &str) -> Option<(RawTime<'_>, &str)> {
    let b = t.as_bytes();
    let (whole, at) = digits(b, 0, 11)?;
    if whole.len() < 9 {
        return None;
    }
    let at = after_byte(b, at, b'.')?;
    let (_, at) = digits(b, at, 9)?;
    ends_word(b, at)?;
    Some((RawTime { text: t.get(..at)?, syntax: TimeSyntax::UnixSeconds }, t.get(at..)?))
}

/// `kernel:` (or `kernel[0]:`) at the start → the rest.
fn kernel_tag(t: &str) -> Option<&str> {
    let rest = t.strip_prefix("kernel")?;
    let rest = match rest.strip_prefix('[') {
        Some(pid) => pid.get(pid.find(']')? + 1..)?,
        None => rest,
    };
    rest.strip_prefix(':')
}

/// `<host> kernel:` after a time → (host, rest).
fn host_kernel_tag(t: &str) -> Option<(&str, &str)> {
    let end = t.find([' ', '\t'])?;
    let host = t.get(..end)?;
    if host.is_empty() || host.len() > MAX_HOST || host.ends_with(':') {
        return None;
    }
    let rest = kernel_tag(t.get(end..)?.trim_start_matches([' ', '\t']))?;
    Some((host, rest))
}

/// `123.456789`: digits, a dot, digits.
fn is_seconds(s: &str) -> bool {
    s.split_once('.').is_some_and(|(a, b)| !a.is_empty() && !b.is_empty() && all_digits(a) && all_digits(b))
}

/// `HH:MM:SS`.
fn is_clock(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 8 && b.iter().enumerate().all(|(i, c)| if i == 2 || i == 5 { *c == b':' } else { c.is_ascii_digit() })
}

fn all_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

/// One to `max` ASCII digits at `at` → (them, the index after).
fn digits(b: &[u8], at: usize, max: usize) -> Option<(&[u8], usize)> {
    let rest = b.get(at..)?;
    let n = rest.iter().take(max + 1).take_while(|c| c.is_ascii_digit()).count();
    if n == 0 || n > max {
        return None;
    }
    Some((rest.get(..n)?, at + n))
}

/// Exactly `n` ASCII digits at `at`.
fn fixed_digits(b: &[u8], at: usize, n: usize) -> Option<(&[u8], usize)> {
    let field = b.get(at..at + n)?;
    field.iter().all(u8::is_ascii_digit).then_some((field, at + n))
}

/// The byte `c` at `at` → the index after it.
fn after_byte(b: &[u8], at: usize, c: u8) -> Option<usize> {
    (b.get(at) == Some(&c)).then_some(at + 1)
}

/// A token must end at whitespace, `]`, `:` or the end of the line.
fn ends_word(b: &[u8], at: usize) -> Option<()> {
    match b.get(at) {
        None | Some(b' ' | b'\t' | b']' | b':') => Some(()),
        _ => None,
    }
}

fn parse_u64(digits: &[u8]) -> Option<u64> {
    std::str::from_utf8(digits).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const NVRM: &str = "NVRM: Xid (PCI:0000:3b:00): 79, pid=1234, name=python3, GPU has fallen off the bus.";

    fn kinds(p: &LinePrefix<'_>) -> Vec<PrefixKind> {
        p.kinds.iter().collect()
    }

    #[test]
    fn dmesg_uptime_and_ctime() {
        let line = format!("[  123.456789] {NVRM}");
        let p = split_prefix(&line);
        assert_eq!(p.text, NVRM);
        assert_eq!(p.time, Some(RawTime { text: "123.456789", syntax: TimeSyntax::UptimeSeconds }));
        assert_eq!(p.uptime, p.time);
        let line = format!("[Mon Aug  5 03:54:13 2024] {NVRM}");
        let p = split_prefix(&line);
        assert_eq!((p.text, p.time.map(|t| t.text)), (NVRM, Some("Mon Aug  5 03:54:13 2024")));
        assert_eq!(kinds(&p), [PrefixKind::Ctime]);
    }

    #[test]
    fn kmsg_record_header_gives_sequence_and_uptime() {
        let line = format!("4,1234,5678901,-,caller=T123;{NVRM}");
        let p = split_prefix(&line);
        assert_eq!(p.text, NVRM);
        let h = p.kmsg.unwrap();
        assert_eq!((h.level, h.sequence, h.timestamp_us, h.flag), (4, 1234, 5_678_901, RecordFlag::Normal));
        assert_eq!(p.time, Some(RawTime { text: "5678901", syntax: TimeSyntax::KmsgMicros }));
        assert!(split_prefix("6,1,2,x;msg").kmsg.is_none());
    }

    #[test]
    fn journal_and_syslog_lines_with_and_without_host() {
        for (line, host, time) in [
            ("Aug 05 03:54:13 gpu-node-7 kernel: ", Some("gpu-node-7"), "Aug 05 03:54:13"),
            ("Aug  5 03:54:13 kernel: ", None, "Aug  5 03:54:13"),
            ("aug 05 03:54:13 node kernel: ", Some("node"), "aug 05 03:54:13"),
            ("Mär 05 03:54:13 knoten kernel: ", Some("knoten"), "Mär 05 03:54:13"),
            ("août 05 03:54:13.123456 nœud kernel: ", Some("nœud"), "août 05 03:54:13.123456"),
            ("8月 05 03:54:13 ノード kernel: ", Some("ノード"), "8月 05 03:54:13"),
            ("2024-08-05T03:54:13+0000 gpu-node-7 kernel: ", Some("gpu-node-7"), "2024-08-05T03:54:13+0000"),
            (
                "2024-08-05T03:54:13.123456+00:00 gpu-node-7 kernel: ",
                Some("gpu-node-7"),
                "2024-08-05T03:54:13.123456+00:00",
            ),
            ("1722830053.123456 gpu-node-7 kernel: ", Some("gpu-node-7"), "1722830053.123456"),
        ] {
            let line = format!("{line}{NVRM}");
            let p = split_prefix(&line);
            assert_eq!((p.text, p.host, p.time.map(|t| t.text)), (NVRM, host, Some(time)), "{line}");
            assert!(p.kinds.contains(PrefixKind::KernelTag), "{line}");
        }
    }

    #[test]
    fn rsyslog_keeps_the_uptime_after_the_kernel_tag() {
        let line = format!("Aug  5 03:54:13 gpu-node-7 kernel: [ 1234.567890] {NVRM}");
        let p = split_prefix(&line);
        assert_eq!(p.text, NVRM);
        assert_eq!(p.time.map(|t| t.syntax), Some(TimeSyntax::SyslogClock));
        assert_eq!(p.uptime.map(|t| t.text), Some("1234.567890"));
    }

    #[test]
    fn dmesg_x_and_log_shippers() {
        let line = format!("kern  :err   : [  123.456789] {NVRM}");
        let p = split_prefix(&line);
        assert_eq!((p.text, p.level, p.host), (NVRM, Some("err"), None));
        let line = format!("kern  :warn  : 2024-08-05T03:54:13,123456+00:00 {NVRM}");
        let p = split_prefix(&line);
        assert_eq!((p.text, p.time.map(|t| t.syntax)), (NVRM, Some(TimeSyntax::Iso)));
        let line = format!("172.20.0.2: kern:    info: [2024-08-05T03:54:13.123456789Z]: {NVRM}");
        let p = split_prefix(&line);
        assert_eq!((p.text, p.host, p.level), (NVRM, Some("172.20.0.2"), Some("info")));
        assert_eq!(p.time.map(|t| t.text), Some("2024-08-05T03:54:13.123456789Z"));
        let line = format!("fd00::10: kern: warning: [2024-08-05T03:54:13Z]: {NVRM}");
        let p = split_prefix(&line);
        assert_eq!((p.text, p.host, p.level), (NVRM, Some("fd00::10"), Some("warning")));
    }

    #[test]
    fn markdown_quotes_fences_and_embedded_text() {
        assert_eq!(split_prefix(&format!("> [  1.5] {NVRM}")).text, NVRM);
        assert_eq!(split_prefix(&format!("> > {NVRM}")).text, NVRM);
        assert_eq!(split_prefix(&format!("```[  1.5] {NVRM}```")).text, NVRM);
        assert_eq!(split_prefix(&format!("`{NVRM}`")).text, NVRM);
        assert_eq!(split_prefix(&format!("- `{NVRM}`")).text, NVRM);
        let fence = split_prefix("```console");
        assert_eq!((fence.text, kinds(&fence)), ("", vec![PrefixKind::CodeFence]));
        assert_eq!(split_prefix("```").text, "");
        let line = format!("time=\"2024\" level=error msg=\"{NVRM}\"");
        let p = split_prefix(&line);
        assert_eq!((p.text, kinds(&p)), (NVRM, vec![PrefixKind::Embedded]));
    }

    #[test]
    fn continuation_lines_are_indented_with_no_prefix() {
        assert!(split_prefix(" SUBSYSTEM=pci").is_continuation());
        assert!(split_prefix("\tDEVICE=+pci:0000:3b:00.0").is_continuation());
        assert!(!split_prefix("    [  1.0] NVRM: x").is_continuation());
        assert!(!split_prefix("NVRM: x").is_continuation());
    }

    #[test]
    fn brackets_that_hold_no_time_are_kernel_text() {
        for line in ["[drm] Initialized nvidia-drm 0.0.0", "[Firmware Bug]: TSC_DEADLINE disabled", "<unknown> x"] {
            let p = split_prefix(line);
            assert_eq!((p.text, p.time), (line, None), "{line}");
        }
    }

    #[test]
    fn lines_without_a_prefix_are_all_text() {
        assert_eq!(split_prefix(NVRM).text, NVRM);
        assert!(split_prefix(NVRM).kinds.is_empty());
        assert_eq!(split_prefix("").text, "");
        assert_eq!(split_prefix("2024-13-99").text, "2024-13-99");
    }
}
