//! Durations as gpuscope spells them everywhere (policy fields, command-line flags, tool arguments): whole
//! numbers each followed by a unit, e.g. "90s", "30m", "2h", "7d", "1h30m".

use std::time::Duration;

/// Why a duration string does not parse.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    /// Nothing to parse.
    #[error("empty")]
    Empty,
    /// A unit without a number before it, or a number without a unit after it.
    #[error("expected a whole number followed by a unit at {at:?}")]
    Malformed {
        /// The rest of the input from where parsing failed.
        at: String,
    },
    /// A unit other than s, m, h, d.
    #[error("unknown unit {unit:?}, allowed units are s, m, h and d")]
    UnknownUnit {
        /// The unit as written.
        unit: String,
    },
    /// The value does not fit.
    #[error("too large")]
    Overflow,
}

/// Parses durations like "90s", "30m", "2h", "7d" or "1h30m": whole numbers each followed by a unit (s, m, h, d).
///
/// Go's fractional and sub-second forms ("1.5h", "300ms") are rejected: a health window needs neither.
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    let text = text.trim();
    if text.is_empty() {
        return Err(DurationError::Empty);
    }
    let mut total: u64 = 0;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
        if digits == 0 {
            return Err(DurationError::Malformed { at: rest.into() });
        }
        let (number, after) = rest.split_at(digits);
        let unit_len = after.find(|c: char| c.is_ascii_digit()).unwrap_or(after.len());
        let (unit, next) = after.split_at(unit_len);
        if unit.is_empty() {
            return Err(DurationError::Malformed { at: rest.into() });
        }
        let scale: u64 = match unit {
            "s" => 1,
            "m" => 60,
            "h" => 3600,
            "d" => 86_400,
            other => return Err(DurationError::UnknownUnit { unit: other.into() }),
        };
        let n: u64 = number.parse().map_err(|_| DurationError::Overflow)?;
        total = n.checked_mul(scale).and_then(|s| total.checked_add(s)).ok_or(DurationError::Overflow)?;
        rest = next;
    }
    Ok(Duration::from_secs(total))
}

/// Formats a duration the way the spec writes it: "24h", "1h30m", "45s" (whole seconds; "0s" for zero).
pub fn format_duration(d: Duration) -> String {
    let secs = d.as_secs();
    if secs == 0 {
        return "0s".into();
    }
    let (h, m, s) = (secs / 3600, (secs % 3600) / 60, secs % 60);
    let mut out = String::new();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if m > 0 {
        out.push_str(&format!("{m}m"));
    }
    if s > 0 {
        out.push_str(&format!("{s}s"));
    }
    out
}
