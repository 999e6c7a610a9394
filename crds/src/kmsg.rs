//! `/dev/kmsg` records: the kernel log as the node probe reads it, and as a saved kmsg dump stores it.
//!
//! A record is `<prio>,<seq>,<timestamp_us>,<flags>[,more fields];<message>`, optionally followed by dictionary
//! lines that start with one space (` SUBSYSTEM=pci`, ` DEVICE=+pci:0000:3b:00.0`). The kernel escapes every
//! byte below 0x20, at or above 0x7f, and the backslash itself as `\xNN`; [`parse_record`] decodes them.
//!
//! One `read()` of `/dev/kmsg` returns exactly one record: give it to [`parse_record`]. Line-oriented sources (a
//! FIFO standing in for `/dev/kmsg` in tests, a dump file) go through [`RecordSplitter`], which regroups a
//! record's dictionary lines with it. Nothing here panics or grows without bound, whatever the input.

use std::fmt;

/// The largest record accepted, in bytes: the kernel's own limit for one extended record (8 KiB).
pub const MAX_RECORD_BYTES: usize = 8 * 1024;

/// The most dictionary lines one record may carry; the kernel writes at most two (`SUBSYSTEM`, `DEVICE`).
pub const MAX_DICTIONARY_LINES: usize = 16;

/// How much of an offending value an error message quotes.
const QUOTE_CHARS: usize = 64;

/// One `/dev/kmsg` record, decoded and owned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KmsgRecord {
    /// Syslog level, 0 (emerg) to 7 (debug): the low three bits of the priority.
    pub level: u8,
    /// Syslog facility: the priority shifted right by three (0 = kernel, 1 = user space via `/dev/kmsg`).
    pub facility: u8,
    /// Sequence number; per boot, increasing, with gaps where the ring overwrote records.
    pub sequence: u64,
    /// Microseconds since boot (monotonic clock) when the kernel logged the record.
    pub timestamp_us: u64,
    /// The record's flag: normal, or a continuation fragment on older kernels.
    pub flag: RecordFlag,
    /// The message, with `\xNN` escapes decoded.
    pub message: String,
    /// Dictionary entries (`SUBSYSTEM`, `DEVICE`, …) in the order the kernel wrote them, values decoded.
    pub dictionary: Vec<(String, String)>,
}

impl KmsgRecord {
    /// The first dictionary value for `key`, e.g. `DEVICE` → `+pci:0000:3b:00.0`.
    pub fn dictionary_value(&self, key: &str) -> Option<&str> {
        self.dictionary.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }
}

/// The fourth header field of a record.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RecordFlag {
    /// `-`: a complete record.
    Normal,
    /// `c`: the first fragment of a message continued by later records (kernels before 4.9).
    ContinuationStart,
    /// `+`: a fragment continuing the previous record (kernels before 4.9).
    Continuation,
}

impl RecordFlag {
    /// The character the kernel prints for this flag.
    pub const fn as_char(self) -> char {
        match self {
            RecordFlag::Normal => '-',
            RecordFlag::ContinuationStart => 'c',
            RecordFlag::Continuation => '+',
        }
    }
}

impl fmt::Display for RecordFlag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.as_char())
    }
}

/// Why some bytes are not a `/dev/kmsg` record.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum KmsgError {
    /// Nothing to parse.
    #[error("empty kmsg record")]
    Empty,
    /// Longer than [`MAX_RECORD_BYTES`].
    #[error("kmsg record is {len} bytes, more than the {max}-byte limit")]
    TooLong {
        /// The record's length in bytes (saturating).
        len: usize,
        /// The limit, [`MAX_RECORD_BYTES`].
        max: usize,
    },
    /// The header is not ended by `;`.
    #[error("kmsg record has no ';' between header and message: {header:?}")]
    MissingSemicolon {
        /// The start of the first line.
        header: String,
    },
    /// The header has fewer than four comma-separated fields.
    #[error("kmsg header lacks the {field} field: {header:?}")]
    MissingField {
        /// The field that is missing (`sequence`, `timestamp`, `flags`).
        field: &'static str,
        /// The header as read.
        header: String,
    },
    /// A numeric header field is empty, signed, not decimal, or overflows.
    #[error("kmsg {field} is not an unsigned decimal number that fits: {value:?}")]
    BadNumber {
        /// The field (`priority`, `sequence`, `timestamp`).
        field: &'static str,
        /// The value as read.
        value: String,
    },
    /// The priority's facility does not fit in eight bits.
    #[error("kmsg priority {value} is out of range (facility above 255)")]
    PriorityOutOfRange {
        /// The priority as read.
        value: u64,
    },
    /// The flags field is not `-`, `c` or `+`.
    #[error("kmsg flags must be '-', 'c' or '+', not {value:?}")]
    BadFlags {
        /// The flags as read.
        value: String,
    },
    /// After decoding `\xNN` escapes the bytes are not UTF-8.
    #[error("kmsg {part} is not UTF-8 after decoding escapes (invalid byte at offset {valid_up_to})")]
    NonUtf8 {
        /// Which part: `message`, `dictionary key` or `dictionary value`.
        part: &'static str,
        /// Length of the valid UTF-8 prefix.
        valid_up_to: usize,
    },
    /// A dictionary line is not ` KEY=value`.
    #[error("kmsg dictionary line {line:?} is malformed: {reason}")]
    BadDictionaryLine {
        /// The line as read.
        line: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// More than [`MAX_DICTIONARY_LINES`] dictionary lines.
    #[error("kmsg record has more than {max} dictionary lines")]
    TooManyDictionaryLines {
        /// The limit, [`MAX_DICTIONARY_LINES`].
        max: usize,
    },
    /// [`RecordSplitter`] saw a dictionary line with no record before it.
    #[error("kmsg dictionary line with no record before it: {line:?}")]
    OrphanDictionaryLine {
        /// The line as read.
        line: String,
    },
}

/// Parse one `/dev/kmsg` record (the bytes one `read()` returns; a trailing newline is optional).
pub fn parse_record(bytes: &[u8]) -> Result<KmsgRecord, KmsgError> {
    if bytes.is_empty() {
        return Err(KmsgError::Empty);
    }
    if bytes.len() > MAX_RECORD_BYTES {
        return Err(KmsgError::TooLong { len: bytes.len(), max: MAX_RECORD_BYTES });
    }
    let body = bytes.strip_suffix(b"\n").unwrap_or(bytes);
    let (first, dict_lines) = match body.iter().position(|&b| b == b'\n') {
        Some(at) => (&body[..at], Some(&body[at + 1..])),
        None => (body, None),
    };
    if first.is_empty() {
        return Err(KmsgError::Empty);
    }

    let Some(semi) = first.iter().position(|&b| b == b';') else {
        return Err(KmsgError::MissingSemicolon { header: quote(first) });
    };
    let (header, message) = (&first[..semi], &first[semi + 1..]);
    let mut fields = header.split(|&b| b == b',');
    let missing = |field| KmsgError::MissingField { field, header: quote(header) };
    // `split` always yields at least one (possibly empty) field; an empty priority is a bad number.
    let prio = number("priority", fields.next().unwrap_or_default())?;
    let sequence = number("sequence", fields.next().ok_or_else(|| missing("sequence"))?)?;
    let timestamp_us = number("timestamp", fields.next().ok_or_else(|| missing("timestamp"))?)?;
    let flag = match fields.next().ok_or_else(|| missing("flags"))? {
        b"-" => RecordFlag::Normal,
        b"c" => RecordFlag::ContinuationStart,
        b"+" => RecordFlag::Continuation,
        other => return Err(KmsgError::BadFlags { value: quote(other) }),
    };
    // Fields after the flags (e.g. the caller id of CONFIG_PRINTK_CALLER) are ignored on purpose.
    let facility = u8::try_from(prio >> 3).map_err(|_| KmsgError::PriorityOutOfRange { value: prio })?;
    let level = (prio & 7) as u8; // masked to three bits

    let message = decode(message, "message")?;
    let mut dictionary = Vec::new();
    if let Some(lines) = dict_lines {
        for line in lines.split(|&b| b == b'\n') {
            if dictionary.len() == MAX_DICTIONARY_LINES {
                return Err(KmsgError::TooManyDictionaryLines { max: MAX_DICTIONARY_LINES });
            }
            dictionary.push(dictionary_entry(line)?);
        }
    }
    Ok(KmsgRecord { level, facility, sequence, timestamp_us, flag, message, dictionary })
}

/// Regroups a line-oriented kmsg source into records: a line that starts with a space belongs to the record
/// before it.
///
/// Feed lines with [`push_line`](Self::push_line); a record is complete (and returned) when the next record's
/// first line arrives, or when [`finish`](Self::finish) is called at the end of the input (or when a live source
/// goes idle). Memory is bounded by [`MAX_RECORD_BYTES`] and [`MAX_DICTIONARY_LINES`]: a record over either limit
/// is dropped as it arrives and reported as an error once complete.
#[derive(Debug, Default)]
pub struct RecordSplitter {
    /// The pending record's bytes, lines joined by `\n`; empty when there is none.
    pending: Vec<u8>,
    /// Whether a record is pending (its first line may have been dropped for size).
    has_pending: bool,
    /// Dictionary lines seen for the pending record, including dropped ones.
    dictionary_lines: usize,
    /// The pending record's full length when it exceeded [`MAX_RECORD_BYTES`].
    overflow_len: Option<usize>,
}

impl RecordSplitter {
    /// An empty splitter.
    pub fn new() -> RecordSplitter {
        RecordSplitter::default()
    }

    /// Feed one line (a trailing `\n` or `\r\n` is removed; blank lines are skipped). Returns the record this
    /// line completed, if any.
    pub fn push_line(&mut self, line: &[u8]) -> Option<Result<KmsgRecord, KmsgError>> {
        let line = line.strip_suffix(b"\n").unwrap_or(line);
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            return None;
        }
        if line.first() == Some(&b' ') {
            if !self.has_pending {
                return Some(Err(KmsgError::OrphanDictionaryLine { line: quote(line) }));
            }
            self.dictionary_lines = self.dictionary_lines.saturating_add(1);
            if self.dictionary_lines <= MAX_DICTIONARY_LINES {
                self.append(b"\n");
                self.append(line);
            }
            return None;
        }
        let done = self.finish();
        self.has_pending = true;
        self.append(line);
        done
    }

    /// Flush the pending record, if any: call at the end of the input.
    pub fn finish(&mut self) -> Option<Result<KmsgRecord, KmsgError>> {
        if !self.has_pending {
            return None;
        }
        let result = if let Some(len) = self.overflow_len {
            Err(KmsgError::TooLong { len, max: MAX_RECORD_BYTES })
        } else if self.dictionary_lines > MAX_DICTIONARY_LINES {
            Err(KmsgError::TooManyDictionaryLines { max: MAX_DICTIONARY_LINES })
        } else {
            parse_record(&self.pending)
        };
        self.pending.clear();
        // A huge record must not pin its buffer for the rest of the stream.
        self.pending.shrink_to(MAX_RECORD_BYTES);
        self.has_pending = false;
        self.dictionary_lines = 0;
        self.overflow_len = None;
        Some(result)
    }

    /// Append to the pending record unless that would pass the size limit; past it, only count.
    fn append(&mut self, bytes: &[u8]) {
        if let Some(len) = self.overflow_len.as_mut() {
            *len = len.saturating_add(bytes.len());
            return;
        }
        let total = self.pending.len().saturating_add(bytes.len());
        if total > MAX_RECORD_BYTES {
            self.overflow_len = Some(total);
            self.pending.clear();
        } else {
            self.pending.extend_from_slice(bytes);
        }
    }
}

/// Parse an unsigned decimal header field; `u64::from_str` alone would also accept a leading `+`.
fn number(field: &'static str, bytes: &[u8]) -> Result<u64, KmsgError> {
    let bad = || KmsgError::BadNumber { field, value: quote(bytes) };
    if bytes.is_empty() || !bytes.iter().all(u8::is_ascii_digit) {
        return Err(bad());
    }
    // All ASCII digits, so this is valid UTF-8; the parse fails only on overflow.
    std::str::from_utf8(bytes).ok().and_then(|s| s.parse().ok()).ok_or_else(bad)
}

/// One ` KEY=value` dictionary line.
fn dictionary_entry(line: &[u8]) -> Result<(String, String), KmsgError> {
    let bad = |reason| KmsgError::BadDictionaryLine { line: quote(line), reason };
    let Some(entry) = line.strip_prefix(b" ") else {
        return Err(bad("must start with a space"));
    };
    let Some(eq) = entry.iter().position(|&b| b == b'=') else {
        return Err(bad("needs KEY=value"));
    };
    let (key, value) = (&entry[..eq], &entry[eq + 1..]);
    if key.is_empty() || key.iter().any(|b| b.is_ascii_whitespace()) {
        return Err(bad("key must be non-empty and without spaces"));
    }
    Ok((decode(key, "dictionary key")?, decode(value, "dictionary value")?))
}

/// Decode the kernel's `\xNN` escapes and check UTF-8. A backslash not followed by `x` and two hex digits is
/// kept as is: the kernel never writes one, but a hand-edited dump may.
fn decode(bytes: &[u8], part: &'static str) -> Result<String, KmsgError> {
    let utf8 = |v: Vec<u8>| {
        String::from_utf8(v).map_err(|e| KmsgError::NonUtf8 { part, valid_up_to: e.utf8_error().valid_up_to() })
    };
    if !bytes.contains(&b'\\') {
        return utf8(bytes.to_vec());
    }
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'\\'
            && bytes.get(i + 1) == Some(&b'x')
            && let (Some(hi), Some(lo)) = (bytes.get(i + 2).and_then(hex_value), bytes.get(i + 3).and_then(hex_value))
        {
            out.push((hi << 4) | lo);
            i += 4;
        } else {
            out.push(b);
            i += 1;
        }
    }
    utf8(out)
}

/// The value of one hex digit.
fn hex_value(b: &u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// A short, printable copy of some bytes for an error message.
fn quote(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).chars().take(QUOTE_CHARS).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn parsed(bytes: &[u8]) -> KmsgRecord {
        match parse_record(bytes) {
            Ok(r) => r,
            Err(e) => panic!("{:?} did not parse: {e}", String::from_utf8_lossy(bytes)),
        }
    }

    #[test]
    fn parses_an_nvrm_xid_record_from_dev_kmsg() {
        let r = parsed(
            b"4,1234,5678901,-;NVRM: Xid (PCI:0000:3b:00): 79, pid=1234, name=python3, GPU has fallen off the bus.\n",
        );
        assert_eq!(r.level, 4);
        assert_eq!(r.facility, 0);
        assert_eq!(r.sequence, 1234);
        assert_eq!(r.timestamp_us, 5_678_901);
        assert_eq!(r.flag, RecordFlag::Normal);
        assert_eq!(r.message, "NVRM: Xid (PCI:0000:3b:00): 79, pid=1234, name=python3, GPU has fallen off the bus.");
        assert!(r.dictionary.is_empty());
    }

    #[test]
    fn priority_splits_into_facility_and_level() {
        let r = parsed(b"30,7,8,-;systemd[1]: started");
        assert_eq!((r.facility, r.level), (3, 6));
        let user = parsed(b"14,1,2,-;hello from user space");
        assert_eq!((user.facility, user.level), (1, 6));
        let max = parsed(b"2047,1,2,-;x");
        assert_eq!((max.facility, max.level), (255, 7));
    }

    #[test]
    fn priority_with_facility_above_255_is_rejected() {
        assert_eq!(parse_record(b"2048,1,2,-;x"), Err(KmsgError::PriorityOutOfRange { value: 2048 }));
    }

    #[test]
    fn dictionary_lines_are_decoded_in_order() {
        let r = parsed(b"3,200,300,-;nvidia 0000:3b:00.0: probe failed\n SUBSYSTEM=pci\n DEVICE=+pci:0000:3b:00.0\n");
        assert_eq!(r.message, "nvidia 0000:3b:00.0: probe failed");
        assert_eq!(
            r.dictionary,
            vec![("SUBSYSTEM".to_string(), "pci".to_string()), ("DEVICE".to_string(), "+pci:0000:3b:00.0".to_string())]
        );
        assert_eq!(r.dictionary_value("DEVICE"), Some("+pci:0000:3b:00.0"));
        assert_eq!(r.dictionary_value("MISSING"), None);
    }

    #[test]
    fn dictionary_value_may_contain_equals_and_escapes() {
        let r = parsed(b"6,1,2,-;m\n KEY=a=b\\x0ac");
        assert_eq!(r.dictionary, vec![("KEY".to_string(), "a=b\nc".to_string())]);
    }

    #[test]
    fn escapes_are_decoded_including_backslash_and_utf8() {
        let r = parsed(b"6,1,2,-;tab\\x09nl\\x0abackslash\\x5cend \\xc3\\xa9");
        assert_eq!(r.message, "tab\tnl\nbackslash\\end \u{e9}");
        let nul = parsed(b"6,1,2,-;a\\x00b");
        assert_eq!(nul.message, "a\0b");
    }

    #[test]
    fn malformed_escapes_are_kept_verbatim() {
        assert_eq!(parsed(b"6,1,2,-;C:\\xZZ and \\x4").message, "C:\\xZZ and \\x4");
        assert_eq!(parsed(b"6,1,2,-;trailing \\").message, "trailing \\");
    }

    #[test]
    fn invalid_utf8_after_unescaping_is_an_error() {
        assert_eq!(
            parse_record(b"6,1,2,-;bad \\xff byte"),
            Err(KmsgError::NonUtf8 { part: "message", valid_up_to: 4 })
        );
        assert_eq!(parse_record(b"6,1,2,-;raw \xfe"), Err(KmsgError::NonUtf8 { part: "message", valid_up_to: 4 }));
        assert!(matches!(
            parse_record(b"6,1,2,-;m\n K=\\xc3"),
            Err(KmsgError::NonUtf8 { part: "dictionary value", .. })
        ));
    }

    #[test]
    fn continuation_flags_of_older_kernels_are_reported() {
        assert_eq!(parsed(b"6,1,2,c;first part").flag, RecordFlag::ContinuationStart);
        assert_eq!(parsed(b"6,2,2,+;second part").flag, RecordFlag::Continuation);
        assert_eq!(RecordFlag::Continuation.to_string(), "+");
    }

    #[test]
    fn extra_header_fields_are_ignored() {
        let r = parsed(b"6,9,10,-,caller=T123;with caller id");
        assert_eq!((r.sequence, r.timestamp_us, r.message.as_str()), (9, 10, "with caller id"));
    }

    #[test]
    fn empty_message_is_allowed() {
        assert_eq!(parsed(b"6,1,2,-;").message, "");
    }

    #[test]
    fn semicolons_in_the_message_belong_to_the_message() {
        assert_eq!(parsed(b"6,1,2,-;a;b;c").message, "a;b;c");
    }

    #[test]
    fn empty_input_is_an_error() {
        assert_eq!(parse_record(b""), Err(KmsgError::Empty));
        assert_eq!(parse_record(b"\n"), Err(KmsgError::Empty));
        assert_eq!(KmsgError::Empty.to_string(), "empty kmsg record");
    }

    #[test]
    fn record_over_8_kib_is_rejected_even_when_well_formed() {
        let mut rec = b"6,1,2,-;".to_vec();
        rec.resize(MAX_RECORD_BYTES, b'a');
        assert_eq!(parsed(&rec).message.len(), MAX_RECORD_BYTES - 8);
        rec.push(b'a');
        let err = parse_record(&rec).unwrap_err();
        assert_eq!(err, KmsgError::TooLong { len: MAX_RECORD_BYTES + 1, max: MAX_RECORD_BYTES });
        assert!(err.to_string().contains("8193 bytes"), "{err}");
    }

    #[test]
    fn one_mebibyte_line_is_rejected_without_panic() {
        let line = vec![b'x'; 1 << 20];
        assert!(matches!(parse_record(&line), Err(KmsgError::TooLong { len, .. }) if len == 1 << 20));
    }

    #[test]
    fn missing_semicolon_is_named() {
        let err = parse_record(b"6,1,2,- no semicolon").unwrap_err();
        assert_eq!(err, KmsgError::MissingSemicolon { header: "6,1,2,- no semicolon".into() });
        assert!(err.to_string().contains("no ';'"), "{err}");
    }

    #[test]
    fn missing_header_fields_are_named() {
        assert_eq!(parse_record(b"6;msg"), Err(KmsgError::MissingField { field: "sequence", header: "6".into() }));
        assert_eq!(parse_record(b"6,1;msg"), Err(KmsgError::MissingField { field: "timestamp", header: "6,1".into() }));
        assert_eq!(parse_record(b"6,1,2;msg"), Err(KmsgError::MissingField { field: "flags", header: "6,1,2".into() }));
    }

    #[test]
    fn bad_numbers_are_named() {
        let cases: [(&[u8], &str); 7] = [
            (b";msg", "priority"),
            (b"x,1,2,-;msg", "priority"),
            (b"-6,1,2,-;msg", "priority"),
            (b"6,+1,2,-;msg", "sequence"),
            (b"6,-1,2,-;msg", "sequence"),
            (b"6,1,18446744073709551616,-;msg", "timestamp"),
            (b"6, 1,2,-;msg", "sequence"),
        ];
        for (input, field) in cases {
            match parse_record(input) {
                Err(KmsgError::BadNumber { field: f, .. }) => assert_eq!(f, field, "{input:?}"),
                other => panic!("{:?}: expected BadNumber({field}), got {other:?}", String::from_utf8_lossy(input)),
            }
        }
        let max = parsed(b"6,18446744073709551615,18446744073709551615,-;m");
        assert_eq!((max.sequence, max.timestamp_us), (u64::MAX, u64::MAX));
        let err = parse_record(b"6,1,2x,-;m").unwrap_err();
        assert_eq!(err.to_string(), "kmsg timestamp is not an unsigned decimal number that fits: \"2x\"");
    }

    #[test]
    fn unknown_flags_are_rejected() {
        assert_eq!(parse_record(b"6,1,2,x;m"), Err(KmsgError::BadFlags { value: "x".into() }));
        assert_eq!(parse_record(b"6,1,2,;m"), Err(KmsgError::BadFlags { value: "".into() }));
        assert_eq!(parse_record(b"6,1,2,--;m"), Err(KmsgError::BadFlags { value: "--".into() }));
    }

    #[test]
    fn malformed_dictionary_lines_are_rejected() {
        let reason = |input: &[u8]| match parse_record(input) {
            Err(KmsgError::BadDictionaryLine { reason, .. }) => reason,
            other => panic!("{other:?}"),
        };
        assert_eq!(reason(b"6,1,2,-;m\nSUBSYSTEM=pci"), "must start with a space");
        assert_eq!(reason(b"6,1,2,-;m\n SUBSYSTEM"), "needs KEY=value");
        assert_eq!(reason(b"6,1,2,-;m\n =pci"), "key must be non-empty and without spaces");
        assert_eq!(reason(b"6,1,2,-;m\n\n K=v"), "must start with a space");
    }

    #[test]
    fn too_many_dictionary_lines_are_rejected() {
        let mut rec = b"6,1,2,-;m".to_vec();
        for i in 0..MAX_DICTIONARY_LINES {
            rec.extend_from_slice(format!("\n K{i}=v").as_bytes());
        }
        assert_eq!(parsed(&rec).dictionary.len(), MAX_DICTIONARY_LINES);
        rec.extend_from_slice(b"\n ONE=more");
        assert_eq!(parse_record(&rec), Err(KmsgError::TooManyDictionaryLines { max: MAX_DICTIONARY_LINES }));
    }

    #[test]
    fn binary_garbage_is_an_error_not_a_panic() {
        for input in [&b"\0\0\0"[..], b"\xff\xfe;\x00", b";", b",,,;", b"\0,\0,\0,\0;\0"] {
            assert!(parse_record(input).is_err(), "{input:?}");
        }
    }

    fn split_all(lines: &[&[u8]]) -> Vec<Result<KmsgRecord, KmsgError>> {
        let mut s = RecordSplitter::new();
        let mut out: Vec<_> = lines.iter().filter_map(|l| s.push_line(l)).collect();
        out.extend(s.finish());
        out
    }

    #[test]
    fn splitter_groups_dictionary_lines_with_their_record() {
        let out = split_all(&[
            b"6,1,100,-;first\n",
            b" SUBSYSTEM=pci\n",
            b" DEVICE=+pci:0000:3b:00.0\n",
            b"4,2,200,-;NVRM: Xid (PCI:0000:3b:00): 79, GPU has fallen off the bus.\n",
            b"6,3,300,-;last without newline",
        ]);
        let records: Vec<KmsgRecord> = out.into_iter().map(|r| r.unwrap()).collect();
        assert_eq!(records.len(), 3);
        assert_eq!(records[0].message, "first");
        assert_eq!(records[0].dictionary.len(), 2);
        assert_eq!(records[0].dictionary_value("SUBSYSTEM"), Some("pci"));
        assert_eq!(records[1].sequence, 2);
        assert!(records[1].dictionary.is_empty());
        assert_eq!(records[2].message, "last without newline");
    }

    #[test]
    fn splitter_returns_a_record_only_when_the_next_one_starts() {
        let mut s = RecordSplitter::new();
        assert_eq!(s.push_line(b"6,1,2,-;a\n"), None);
        assert_eq!(s.push_line(b" K=v\n"), None);
        let first = s.push_line(b"6,2,3,-;b\n").unwrap().unwrap();
        assert_eq!((first.message.as_str(), first.dictionary.len()), ("a", 1));
        assert_eq!(s.finish().unwrap().unwrap().message, "b");
        assert_eq!(s.finish(), None, "finish twice yields nothing more");
    }

    #[test]
    fn splitter_handles_crlf_and_blank_lines() {
        let out = split_all(&[b"6,1,2,-;a\r\n", b"\n", b"\r\n", b" K=v\r\n", b"6,2,3,-;b\r\n"]);
        let records: Vec<KmsgRecord> = out.into_iter().map(|r| r.unwrap()).collect();
        assert_eq!(records.len(), 2);
        assert_eq!(records[0].dictionary, vec![("K".into(), "v".into())]);
        assert_eq!(records[1].message, "b");
    }

    #[test]
    fn splitter_reports_orphan_dictionary_lines() {
        let out = split_all(&[b" SUBSYSTEM=pci\n", b"6,1,2,-;a\n"]);
        assert_eq!(out[0], Err(KmsgError::OrphanDictionaryLine { line: " SUBSYSTEM=pci".into() }));
        assert_eq!(out[1].as_ref().map(|r| r.message.as_str()), Ok("a"));
    }

    #[test]
    fn splitter_reports_a_bad_record_and_carries_on() {
        let out = split_all(&[b"[  12.345678] not a kmsg record\n", b"[  12.4] a; b\n", b"6,1,2,-;good\n"]);
        assert!(matches!(out[0], Err(KmsgError::MissingSemicolon { .. })), "{:?}", out[0]);
        assert!(matches!(out[1], Err(KmsgError::BadNumber { field: "priority", .. })), "{:?}", out[1]);
        assert_eq!(out[2].as_ref().map(|r| r.sequence), Ok(1));
    }

    #[test]
    fn splitter_bounds_a_one_mebibyte_line() {
        let huge = vec![b'a'; 1 << 20];
        let mut s = RecordSplitter::new();
        assert_eq!(s.push_line(&huge), None);
        assert!(s.pending.capacity() <= MAX_RECORD_BYTES, "buffer grew to {}", s.pending.capacity());
        let next = s.push_line(b"6,5,6,-;after");
        assert_eq!(next, Some(Err(KmsgError::TooLong { len: 1 << 20, max: MAX_RECORD_BYTES })));
        assert_eq!(s.finish().unwrap().unwrap().message, "after");
    }

    #[test]
    fn splitter_bounds_dictionary_floods() {
        let mut s = RecordSplitter::new();
        assert_eq!(s.push_line(b"6,1,2,-;m"), None);
        for _ in 0..10_000 {
            assert_eq!(s.push_line(b" K=v"), None);
        }
        assert!(s.pending.len() <= MAX_RECORD_BYTES);
        assert_eq!(s.finish(), Some(Err(KmsgError::TooManyDictionaryLines { max: MAX_DICTIONARY_LINES })));
        // Growing long dictionary lines hit the byte limit instead.
        assert_eq!(s.push_line(b"6,1,2,-;m"), None);
        let long = [b" K=".as_slice(), &[b'v'; 5000]].concat();
        s.push_line(&long);
        s.push_line(&long);
        assert!(matches!(s.finish(), Some(Err(KmsgError::TooLong { .. }))));
    }

    #[test]
    fn splitter_accepts_a_whole_read_as_one_line() {
        let out = split_all(&[b"6,1,2,-;m\n SUBSYSTEM=pci\n DEVICE=+pci:0000:3b:00.0\n"]);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].as_ref().map(|r| r.dictionary.len()), Ok(2));
    }

    proptest! {
        #[test]
        fn parse_record_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = parse_record(&bytes);
        }

        #[test]
        fn parse_record_never_panics_on_near_records(
            prio in "[0-9]{0,5}", seq in "[-+0-9]{0,21}", flag in "[-c+x]{0,2}",
            msg in "[ -~]{0,40}(\\\\x[0-9a-fA-Fz]{0,2})?[ -~]{0,10}", dict in "( [A-Z]{0,3}=?[ -~]{0,5}\n?){0,3}",
        ) {
            let rec = format!("{prio},{seq},1,{flag};{msg}\n{dict}");
            let _ = parse_record(rec.as_bytes());
        }

        #[test]
        fn splitter_never_panics(lines in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 0..32)) {
            let mut s = RecordSplitter::new();
            for line in &lines {
                let _ = s.push_line(line);
            }
            let _ = s.finish();
            prop_assert!(!s.has_pending);
        }

        #[test]
        fn escaped_messages_round_trip(
            prio in 0u64..2048, seq in any::<u64>(), ts in any::<u64>(), text in "\\PC{0,64}",
        ) {
            // Escape as the kernel does: control bytes, bytes >= 0x7f and the backslash.
            let mut rec = format!("{prio},{seq},{ts},-;").into_bytes();
            for b in text.bytes() {
                if !(b' '..0x7f).contains(&b) || b == b'\\' {
                    rec.extend_from_slice(format!("\\x{b:02x}").as_bytes());
                } else {
                    rec.push(b);
                }
            }
            rec.push(b'\n');
            prop_assume!(rec.len() <= MAX_RECORD_BYTES);
            let r = parse_record(&rec).unwrap();
            prop_assert_eq!(r.message, text);
            prop_assert_eq!((u64::from(r.facility) << 3) | u64::from(r.level), prio);
            prop_assert_eq!((r.sequence, r.timestamp_us), (seq, ts));
        }
    }
}
