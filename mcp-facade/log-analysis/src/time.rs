//! A log line's own timestamp: kept as the log wrote it, and parsed where the text allows (an absolute time to
//! UTC, a local time with a year to ISO 8601, an uptime to seconds).

use jiff::Timestamp;
use jiff::civil::DateTime;
use jiff::tz::Offset;
use schemars::JsonSchema;
use serde::Serialize;

use super::prefix::{LinePrefix, RawTime, TimeSyntax};

/// What a timestamp can say.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum TimeKind {
    /// A point in time (RFC 3339 with an offset, unix seconds): `utc` holds it.
    Absolute,
    /// A wall-clock time with a year but no zone (dmesg -T, ISO without offset): `local` holds it.
    Local,
    /// A wall-clock time without a year or zone (syslog, journalctl short): text only.
    NoYear,
    /// Seconds since the node booted (dmesg, /dev/kmsg): `uptimeSeconds` holds it.
    Uptime,
    /// Another form (dmesg --reltime, --show-delta): text only.
    Other,
}

/// A timestamp as a log gives it.
#[derive(Clone, Debug, PartialEq, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LogTime {
    /// The time exactly as the log wrote it (for a /dev/kmsg record: microseconds since boot).
    pub text: String,
    /// What it can say.
    pub kind: TimeKind,
    /// RFC 3339 in UTC, when the log gives an absolute time.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub utc: Option<String>,
    /// ISO 8601 local date and time without zone (`2024-08-05T03:54:13`), when the log gives one with a year.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub local: Option<String>,
    /// Seconds since boot, when the line carries the kernel's uptime (also next to a wall-clock time).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uptime_seconds: Option<f64>,
}

impl LogTime {
    /// The line's time (the outermost), with the kernel's uptime when the line also carries one.
    pub fn from_prefix(prefix: &LinePrefix<'_>) -> Option<LogTime> {
        LogTime::from_raw(prefix.time?, prefix.uptime)
    }

    fn from_raw(raw: RawTime<'_>, uptime: Option<RawTime<'_>>) -> Option<LogTime> {
        let mut time = LogTime::parse(raw);
        if time.uptime_seconds.is_none() {
            time.uptime_seconds = uptime.and_then(uptime_seconds);
        }
        Some(time)
    }

    /// Parse one timestamp; what does not parse keeps its text and a kind that says so.
    pub fn parse(raw: RawTime<'_>) -> LogTime {
        let mut time =
            LogTime { text: raw.text.to_string(), kind: TimeKind::Other, utc: None, local: None, uptime_seconds: None };
        match raw.syntax {
            TimeSyntax::UptimeSeconds | TimeSyntax::KmsgMicros => {
                time.uptime_seconds = uptime_seconds(raw);
                if time.uptime_seconds.is_some() {
                    time.kind = TimeKind::Uptime;
                }
            }
            TimeSyntax::Ctime => {
                if let Some(local) = ctime(raw.text) {
                    time.local = Some(local.to_string());
                    time.kind = TimeKind::Local;
                }
            }
            TimeSyntax::Iso => match iso(raw.text) {
                Some((local, Some(offset))) => {
                    if let Ok(ts) = offset.to_timestamp(local) {
                        time.utc = Some(ts.to_string());
                        time.kind = TimeKind::Absolute;
                    }
                }
                Some((local, None)) => {
                    time.local = Some(local.to_string());
                    time.kind = TimeKind::Local;
                }
                None => {}
            },
            TimeSyntax::UnixSeconds => {
                if let Some(ts) = unix(raw.text) {
                    time.utc = Some(ts.to_string());
                    time.kind = TimeKind::Absolute;
                }
            }
            TimeSyntax::SyslogClock => time.kind = TimeKind::NoYear,
            TimeSyntax::Other => {}
        }
        time
    }

    /// The most precise rendering for a person: UTC, else local, else the uptime, else the text.
    pub fn display(&self) -> String {
        if let Some(utc) = &self.utc {
            return utc.clone();
        }
        if let Some(local) = &self.local {
            return local.clone();
        }
        match (self.kind, self.uptime_seconds) {
            (TimeKind::Uptime, Some(s)) => format!("{s:.6}s after boot"),
            _ => self.text.clone(),
        }
    }
}

/// A line's time kept as text in reused buffers and parsed only when a report is built: a flood of one code costs
/// a copy per line, not a parse and an allocation.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct TimeText {
    syntax: Option<TimeSyntax>,
    text: String,
    uptime_syntax: Option<TimeSyntax>,
    uptime_text: String,
}

impl TimeText {
    /// The time `prefix` carries.
    pub(super) fn of(prefix: &LinePrefix<'_>) -> TimeText {
        let mut t = TimeText::default();
        t.set(prefix);
        t
    }

    /// Replace with the time `prefix` carries.
    pub(super) fn set(&mut self, prefix: &LinePrefix<'_>) {
        self.syntax = prefix.time.map(|t| t.syntax);
        self.text.clear();
        self.text.push_str(prefix.time.map_or("", |t| t.text));
        self.uptime_syntax = prefix.uptime.map(|t| t.syntax);
        self.uptime_text.clear();
        self.uptime_text.push_str(prefix.uptime.map_or("", |t| t.text));
    }

    /// The parsed time, when there is one.
    pub(super) fn to_log_time(&self) -> Option<LogTime> {
        let raw = RawTime { text: &self.text, syntax: self.syntax? };
        let uptime = self.uptime_syntax.map(|syntax| RawTime { text: &self.uptime_text, syntax });
        LogTime::from_raw(raw, uptime)
    }
}

/// Seconds since boot from an uptime or a kmsg timestamp.
fn uptime_seconds(raw: RawTime<'_>) -> Option<f64> {
    match raw.syntax {
        TimeSyntax::UptimeSeconds => raw.text.parse::<f64>().ok().filter(|s| s.is_finite()),
        // u64 microseconds → f64 loses precision only above 2^53 µs (285 years of uptime).
        TimeSyntax::KmsgMicros => raw.text.parse::<u64>().ok().map(|us| us as f64 / 1e6),
        _ => None,
    }
}

/// `Mon Aug  5 03:54:13 2024` (any month spelling this module knows) → local date and time.
fn ctime(text: &str) -> Option<DateTime> {
    let mut words = text.split_whitespace();
    let (_weekday, month, day, clock, year) =
        (words.next()?, words.next()?, words.next()?, words.next()?, words.next()?);
    let month = month_number(month)?;
    let (h, m, s) = (clock.get(0..2)?.parse().ok()?, clock.get(3..5)?.parse().ok()?, clock.get(6..8)?.parse().ok()?);
    DateTime::new(year.parse().ok()?, month, day.parse().ok()?, h, m, s, 0).ok()
}

/// `YYYY-MM-DD[T ]HH:MM[:SS[.,frac]][Z|±HH[:]MM]` → local date and time, and the offset when given.
fn iso(text: &str) -> Option<(DateTime, Option<Offset>)> {
    let num = |range: std::ops::Range<usize>| text.get(range)?.parse::<i16>().ok();
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute) = (num(11..13)?, num(14..16)?);
    let mut rest = text.get(16..)?;
    let mut second = 0;
    let mut nanos = 0;
    if let Some(after) = rest.strip_prefix(':') {
        second = after.get(0..2)?.parse().ok()?;
        rest = after.get(2..)?;
        if let Some(frac) = rest.strip_prefix(['.', ',']) {
            let len = frac.bytes().take_while(u8::is_ascii_digit).count();
            nanos = fraction_nanos(frac.get(..len)?)?;
            rest = frac.get(len..)?;
        }
    }
    let offset = match rest.as_bytes().first() {
        None => None,
        Some(b'Z' | b'z') => Some(Offset::UTC),
        Some(&sign @ (b'+' | b'-')) => {
            let digits: String = rest.get(1..)?.chars().filter(char::is_ascii_digit).collect();
            let hours: i32 = digits.get(0..2)?.parse().ok()?;
            let minutes: i32 = digits.get(2..4).map_or(Some(0), |m| m.parse().ok())?;
            let seconds = (hours * 60 + minutes) * 60;
            Some(Offset::from_seconds(if sign == b'-' { -seconds } else { seconds }).ok()?)
        }
        Some(_) => return None,
    };
    let local = DateTime::new(
        year,
        month.try_into().ok()?,
        day.try_into().ok()?,
        hour.try_into().ok()?,
        minute.try_into().ok()?,
        second,
        nanos,
    )
    .ok()?;
    Some((local, offset))
}

/// `1722830053.123456` → the instant.
fn unix(text: &str) -> Option<Timestamp> {
    let (secs, frac) = text.split_once('.')?;
    Timestamp::new(secs.parse().ok()?, fraction_nanos(frac)?).ok()
}

/// Up to nine fractional digits → nanoseconds.
fn fraction_nanos(frac: &str) -> Option<i32> {
    if frac.is_empty() || frac.len() > 9 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let value: i32 = frac.parse().ok()?;
    Some(value * 10_i32.pow(9 - frac.len() as u32)) // len ≤ 9, so the exponent is 0..=8 and the product fits
}

/// Month abbreviations in the locales dmesg -T and journalctl print most: English, German, French, Spanish,
/// Italian, Portuguese and Dutch, lower case, without a trailing dot.
const MONTHS: [&[&str]; 12] = [
    &["jan", "janv", "ene", "gen", "janeiro", "january", "januar", "janvier", "enero", "gennaio", "januari"],
    &["feb", "févr", "fev", "february", "februar", "février", "febrero", "febbraio", "fevereiro", "februari"],
    &["mar", "mär", "mrz", "mars", "march", "märz", "marzo", "março", "mrt", "maart"],
    &["apr", "avr", "abr", "april", "avril", "abril", "aprile"],
    &["may", "mai", "mag", "mei", "mayo", "maggio", "maio"],
    &["jun", "juin", "giu", "june", "juni", "junio", "giugno", "junho"],
    &["jul", "juil", "lug", "july", "juli", "juillet", "julio", "luglio", "julho"],
    &["aug", "août", "ago", "august", "agosto", "augustus"],
    &["sep", "sept", "set", "september", "septembre", "septiembre", "settembre", "setembro"],
    &["oct", "okt", "ott", "out", "october", "oktober", "octobre", "octubre", "ottobre", "outubro"],
    &["nov", "november", "novembre", "noviembre", "novembro"],
    &["dec", "dez", "déc", "dic", "december", "dezember", "décembre", "diciembre", "dicembre", "dezembro"],
];

/// The month (1–12) a name or abbreviation in any case names; `8月` (CJK locales) too.
fn month_number(name: &str) -> Option<i8> {
    if let Some(digits) = name.strip_suffix('月') {
        return digits.parse().ok().filter(|m| (1..=12).contains(m));
    }
    let lower = name.trim_end_matches('.').to_lowercase();
    let at = MONTHS.iter().position(|names| names.contains(&lower.as_str()))?;
    i8::try_from(at + 1).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str, syntax: TimeSyntax) -> LogTime {
        LogTime::parse(RawTime { text, syntax })
    }

    #[test]
    fn ctime_with_a_one_digit_day_is_a_local_time() {
        let t = parse("Mon Aug  5 03:54:13 2024", TimeSyntax::Ctime);
        assert_eq!((t.kind, t.local.as_deref(), t.utc), (TimeKind::Local, Some("2024-08-05T03:54:13"), None));
        assert_eq!(
            parse("lun. août  5 03:54:13 2024", TimeSyntax::Ctime).local.as_deref(),
            Some("2024-08-05T03:54:13")
        );
        assert_eq!(parse("Di Dez 31 23:59:59 2024", TimeSyntax::Ctime).local.as_deref(), Some("2024-12-31T23:59:59"));
        // February 30th is no date: text only.
        assert_eq!(parse("Mon Feb 30 03:54:13 2024", TimeSyntax::Ctime).kind, TimeKind::Other);
    }

    #[test]
    fn iso_times_with_an_offset_are_absolute() {
        for (text, utc) in [
            ("2024-08-05T03:54:13+0000", "2024-08-05T03:54:13Z"),
            ("2024-08-05T05:54:13+02:00", "2024-08-05T03:54:13Z"),
            ("2024-08-05T03:54:13,123456+00:00", "2024-08-05T03:54:13.123456Z"),
            ("2024-08-05T03:54:13.123456789Z", "2024-08-05T03:54:13.123456789Z"),
            ("2024-08-04T22:54:13-05", "2024-08-05T03:54:13Z"),
        ] {
            let t = parse(text, TimeSyntax::Iso);
            assert_eq!((t.kind, t.utc.as_deref()), (TimeKind::Absolute, Some(utc)), "{text}");
        }
        let local = parse("2024-08-05 03:54:13", TimeSyntax::Iso);
        assert_eq!((local.kind, local.local.as_deref()), (TimeKind::Local, Some("2024-08-05T03:54:13")));
    }

    #[test]
    fn uptimes_and_unix_times() {
        assert_eq!(parse("123.456789", TimeSyntax::UptimeSeconds).uptime_seconds, Some(123.456_789));
        assert_eq!(parse("5678901", TimeSyntax::KmsgMicros).uptime_seconds, Some(5.678_901));
        let t = parse("1722830053.123456", TimeSyntax::UnixSeconds);
        assert_eq!(t.utc.as_deref(), Some("2024-08-05T03:54:13.123456Z"));
        assert_eq!(parse("Aug  5 03:54:13", TimeSyntax::SyslogClock).kind, TimeKind::NoYear);
    }

    #[test]
    fn months_in_several_languages_and_cases() {
        for (name, n) in [("Aug", 8), ("aug", 8), ("AUG", 8), ("Mär", 3), ("déc.", 12), ("out", 10), ("8月", 8)] {
            assert_eq!(month_number(name), Some(n), "{name}");
        }
        assert_eq!(month_number("Foo"), None);
        assert_eq!(month_number("13月"), None);
    }
}
