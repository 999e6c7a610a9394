//! Argument types and checks shared by the tools: limits, time windows, severities and GPU selectors.
//!
//! rmcp checks arguments only by deserializing them, so everything serde cannot express (ranges, durations,
//! "index or UUID") is checked here and reported as an actionable [`ToolError`].

use std::time::Duration;

use gpuscope_crds::xid::Severity;
use jiff::Timestamp;
use schemars::JsonSchema;
use serde::Deserialize;

use crate::error::{MAX_NAME_LEN, ToolError, clip};
use crate::time::human_duration;

/// Rows a list shows when the caller gives no `limit` and the question is about one node or GPU.
pub const DEFAULT_LIMIT: u32 = 20;
/// Rows a fleet-wide list shows when the caller gives no `limit`. The answer travels twice (structured content and
/// the same JSON as text), so ten ranked rows per list is what keeps it under 16 KiB on the wire at any fleet size;
/// the totals cover everything and `truncated` names the filter that narrows down.
pub const FLEET_DEFAULT_LIMIT: u32 = 10;
/// The largest `limit` accepted: answers stay bounded whatever the fleet.
pub const MAX_LIMIT: u32 = 200;

/// The `limit` argument, checked: 1..=`max`, `default` when absent.
pub fn limit(value: Option<u32>, default: u32, max: u32) -> Result<usize, ToolError> {
    match value {
        None => Ok(default as usize),
        Some(0) => Err(ToolError::invalid("limit", format!("must be at least 1 (omit it for the default, {default})"))),
        Some(n) if n > max => Err(ToolError::invalid(
            "limit",
            format!(
                "{n} is above the maximum of {max}; narrow the question with node_name, gpu or other filters instead"
            ),
        )),
        Some(n) => Ok(n as usize),
    }
}

/// A time window's start, as the caller gave it and as an instant.
#[derive(Clone, Debug, PartialEq)]
pub struct Window {
    /// Oldest instant inside the window.
    pub start: Timestamp,
    /// How to name the window in an answer: "last 2h" or "since 2026-11-25T08:00:00Z".
    pub label: String,
}

/// Parse `since`: a duration back from `now` ("2h", "30m", "1d12h") or an RFC 3339 instant.
pub fn since(value: Option<&str>, now: Timestamp) -> Result<Option<Window>, ToolError> {
    let Some(raw) = value.map(str::trim) else { return Ok(None) };
    let shown = clip(raw);
    if raw.is_empty() {
        return Err(ToolError::invalid("since", "is empty; give a duration like \"2h\" or an RFC 3339 time"));
    }
    if let Ok(start) = raw.parse::<Timestamp>() {
        if start > now {
            return Err(ToolError::invalid("since", format!("{shown} is in the future (now is {now})")));
        }
        return Ok(Some(Window { start, label: format!("since {start}") }));
    }
    let duration = gpuscope_crds::duration::parse_duration(raw).map_err(|e| {
        ToolError::invalid(
            "since",
            format!("\"{shown}\" is neither a duration (\"30m\", \"2h\", \"7d\") nor an RFC 3339 time (\"2026-11-25T08:00:00Z\"): {}", clip(&e.to_string())),
        )
    })?;
    if duration.is_zero() {
        return Err(ToolError::invalid("since", "a zero duration selects nothing; try \"1h\""));
    }
    let start = i64::try_from(duration.as_secs())
        .ok()
        .and_then(|secs| now.checked_sub(jiff::SignedDuration::from_secs(secs)).ok())
        .ok_or_else(|| ToolError::invalid("since", format!("\"{shown}\" reaches back too far")))?;
    Ok(Some(Window { start, label: format!("last {}", human_duration(Duration::from_secs(duration.as_secs()))) }))
}

/// A whole number as models send it: `79` or `"79"` (the schema still says integer).
fn lenient_number<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Wire {
        Number(u32),
        Text(String),
    }
    match Wire::deserialize(d).map_err(|_| serde::de::Error::custom("expected a whole number, e.g. 79"))? {
        Wire::Number(n) => Ok(n),
        Wire::Text(t) => t.trim().parse().map_err(|_| {
            serde::de::Error::custom(format!("expected a whole number, e.g. 79; got \"{}\"", clip(t.trim())))
        }),
    }
}

/// [`lenient_number`] for a required field (`#[serde(deserialize_with = "crate::args::number")]`).
pub fn number<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    lenient_number(d)
}

/// [`lenient_number`] for an optional field (with `#[serde(default)]`); `null` is absent.
pub fn optional_number<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    let value = Option::<serde_json::Value>::deserialize(d)?;
    match value {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(v) => lenient_number(v).map(Some).map_err(serde::de::Error::custom),
    }
}

/// The `severity` argument: the least severe XID to include. Any letter case is accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum SeverityArg {
    /// Everything, informational XIDs included.
    Info,
    /// Application restarts and worse.
    Warning,
    /// Only XIDs that need a GPU reset, node reboot or vendor attention.
    Critical,
}

impl<'de> Deserialize<'de> for SeverityArg {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<SeverityArg, D::Error> {
        let text =
            String::deserialize(d).map_err(|_| serde::de::Error::custom("expected one of info, warning, critical"))?;
        match text.trim().to_ascii_lowercase().as_str() {
            "info" => Ok(SeverityArg::Info),
            "warning" => Ok(SeverityArg::Warning),
            "critical" => Ok(SeverityArg::Critical),
            _ => Err(serde::de::Error::custom(format!(
                "\"{}\" is not a severity; expected one of info, warning, critical",
                clip(text.trim())
            ))),
        }
    }
}

impl SeverityArg {
    /// The catalog severity this minimum stands for.
    pub fn min(self) -> Severity {
        match self {
            SeverityArg::Info => Severity::Info,
            SeverityArg::Warning => Severity::Warning,
            SeverityArg::Critical => Severity::Critical,
        }
    }
}

/// The `gpu` argument: an NVML index or a UUID (or its leading part).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum GpuArg {
    /// NVML index on the node (0-based); needs `node_name`.
    Index(u32),
    /// Index as text, or a GPU UUID ("GPU-5a4c2e1b-...") or its leading part.
    Text(String),
}

/// A parsed GPU selector.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GpuSelector {
    /// NVML index.
    Index(u32),
    /// UUID or leading part of one, compared case-insensitively.
    Uuid(String),
}

impl GpuSelector {
    /// Parse and check the `gpu` argument.
    pub fn parse(arg: &GpuArg) -> Result<GpuSelector, ToolError> {
        match arg {
            GpuArg::Index(i) => Ok(GpuSelector::Index(*i)),
            GpuArg::Text(t) => {
                let t = t.trim();
                if t.is_empty() {
                    Err(ToolError::invalid("gpu", "is empty; give an index (0, 1, ...) or a UUID (\"GPU-...\")"))
                } else if let Ok(i) = t.parse::<u32>() {
                    Ok(GpuSelector::Index(i))
                } else if t.len() > MAX_NAME_LEN {
                    Err(ToolError::invalid("gpu", format!("is {} characters long; a GPU UUID has about 40", t.len())))
                } else if t.len() < 8 {
                    Err(ToolError::invalid(
                        "gpu",
                        format!(
                            "\"{t}\" is too short to identify a GPU; give an index or at least 8 characters of its UUID"
                        ),
                    ))
                } else {
                    Ok(GpuSelector::Uuid(t.to_lowercase()))
                }
            }
        }
    }

    /// Whether a GPU with this index and UUID is the one selected.
    pub fn matches(&self, index: Option<u32>, uuid: Option<&str>) -> bool {
        match self {
            GpuSelector::Index(i) => index == Some(*i),
            GpuSelector::Uuid(prefix) => uuid.is_some_and(|u| u.to_lowercase().starts_with(prefix.as_str())),
        }
    }

    /// The selector as the caller wrote it (for messages).
    pub fn label(&self) -> String {
        match self {
            GpuSelector::Index(i) => format!("index {i}"),
            GpuSelector::Uuid(u) => u.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_accepted_as_numeric_strings_and_enums_in_any_case() {
        use crate::tools::xids::XidArgs;
        let args: XidArgs =
            serde_json::from_value(serde_json::json!({ "code": "79", "limit": " 5 ", "severity": "CRITICAL" }))
                .expect("numeric strings and an upper-case severity");
        assert_eq!((args.code, args.limit, args.severity), (Some(79), Some(5), Some(SeverityArg::Critical)));
        let fatal = serde_json::from_value::<XidArgs>(serde_json::json!({ "severity": "fatal" })).expect_err("no such");
        assert_eq!(fatal.to_string(), "\"fatal\" is not a severity; expected one of info, warning, critical");
        let null: XidArgs = serde_json::from_value(serde_json::json!({ "code": null })).expect("null is absent");
        assert_eq!(null.code, None);
        let bad =
            serde_json::from_value::<XidArgs>(serde_json::json!({ "code": "seventy-nine" })).expect_err("not a number");
        assert!(bad.to_string().starts_with("expected a whole number, e.g. 79; got \"seventy-nine\""), "{bad}");
        let explain: crate::tools::explain::ExplainXidArgs =
            serde_json::from_value(serde_json::json!({ "code": "48" })).expect("required code as text");
        assert_eq!(explain.code, 48);
    }

    fn now() -> Timestamp {
        "2026-11-25T12:00:00Z".parse().expect("ts")
    }

    #[test]
    fn limit_defaults_and_rejects_zero_and_too_large() {
        assert_eq!(limit(None, 20, 200), Ok(20));
        assert_eq!(limit(Some(5), 20, 200), Ok(5));
        let zero = limit(Some(0), 20, 200).expect_err("zero").to_string();
        assert!(zero.contains("at least 1"), "{zero}");
        let big = limit(Some(1_000), 20, 200).expect_err("too big").to_string();
        assert!(big.contains("maximum of 200") && big.contains("node_name"), "{big}");
    }

    #[test]
    fn since_accepts_durations_and_rfc3339() {
        let w = since(Some("2h"), now()).expect("ok").expect("window");
        assert_eq!(w.start, "2026-11-25T10:00:00Z".parse::<Timestamp>().expect("ts"));
        assert_eq!(w.label, "last 2h");
        let w = since(Some("2026-11-25T08:30:00Z"), now()).expect("ok").expect("window");
        assert_eq!(w.label, "since 2026-11-25T08:30:00Z");
        assert_eq!(since(None, now()), Ok(None));
    }

    #[test]
    fn since_rejects_garbage_future_and_zero_with_examples() {
        let e = since(Some("yesterday-ish"), now()).expect_err("garbage").to_string();
        assert!(e.contains("\"2h\"") && e.contains("RFC 3339"), "{e}");
        let e = since(Some("2027-01-01T00:00:00Z"), now()).expect_err("future").to_string();
        assert!(e.contains("in the future"), "{e}");
        assert!(since(Some("0s"), now()).is_err());
        assert!(since(Some("  "), now()).is_err());
    }

    #[test]
    fn gpu_selector_takes_index_or_uuid_prefix() {
        assert_eq!(GpuSelector::parse(&GpuArg::Index(3)), Ok(GpuSelector::Index(3)));
        assert_eq!(GpuSelector::parse(&GpuArg::Text("3".into())), Ok(GpuSelector::Index(3)));
        let s = GpuSelector::parse(&GpuArg::Text("GPU-5A4C2E1B".into())).expect("uuid");
        assert!(s.matches(None, Some("GPU-5a4c2e1b-0000-1111")));
        assert!(!s.matches(Some(0), Some("GPU-ffff")));
        assert!(GpuSelector::parse(&GpuArg::Text("GPU".into())).is_err());
    }

    #[test]
    fn severity_accepts_lower_and_capitalized_names() {
        let s: SeverityArg = serde_json::from_str("\"Critical\"").expect("capitalized");
        assert_eq!(s.min(), Severity::Critical);
        let e = serde_json::from_str::<SeverityArg>("\"fatal\"").expect_err("unknown").to_string();
        assert!(e.contains("info") && e.contains("critical"), "{e}");
    }
}
