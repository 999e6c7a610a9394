//! Probe freshness as the operator publishes it: the `ProbeReporting` condition. The facade never reads Leases.

use gpuscope_crds::health::reason;
use jiff::Timestamp;
use schemars::JsonSchema;
use serde::Serialize;

use crate::status_facts::StatusFacts;
use crate::time::{age, rfc3339};

/// Whether the node's probe is reporting.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ProbeState {
    /// The probe renews its Lease: the data is current.
    Reporting,
    /// The probe stopped renewing its Lease: the data is old.
    Stale,
    /// No probe has ever reported for this node.
    Missing,
    /// The operator has not published ProbeReporting (yet), or says Unknown.
    Unknown,
}

impl ProbeState {
    /// Whether the data can be trusted as current.
    pub fn is_fresh(self) -> bool {
        self == ProbeState::Reporting
    }
}

/// The probe's freshness, with the evidence (the operator's ProbeReporting condition).
#[derive(Clone, Debug, PartialEq, Serialize, JsonSchema)]
pub struct Freshness {
    /// reporting, stale, missing or unknown.
    pub state: ProbeState,
    /// The condition's reason, e.g. HeartbeatTimeout.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Since when the state holds (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
    /// How long the state has held, e.g. "3h 12m".
    #[serde(skip_serializing_if = "Option::is_none")]
    pub held_for: Option<String>,
    /// When the probe last wrote the object (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_report: Option<String>,
}

/// The freshness state alone, without the evidence (no allocation: fleet-wide answers call it per node).
pub fn state(o: Option<&StatusFacts>) -> ProbeState {
    let Some(o) = o else { return ProbeState::Missing };
    let Some(c) = &o.probe_reporting else { return ProbeState::Unknown };
    // The operator reports a silent probe as Unknown (the data may still be right, nobody can tell), so the
    // reason, not the status, says whether it is stale or was never there.
    match (c.status.as_str(), c.reason.as_str()) {
        ("True", _) => ProbeState::Reporting,
        (_, reason::PROBE_MISSING) => ProbeState::Missing,
        (_, reason::PROBE_STALE) | ("False", _) => ProbeState::Stale,
        _ => ProbeState::Unknown,
    }
}

/// Read `ProbeReporting` off a GpuNodeStatus's facts (none: the node has no GpuNodeStatus at all).
pub fn of(o: Option<&StatusFacts>, now: Timestamp) -> Freshness {
    let state = state(o);
    let last_report = o.and_then(|o| o.last_report.as_ref()).map(rfc3339);
    match o.and_then(|o| o.probe_reporting.as_ref()) {
        None => Freshness { state, reason: None, since: None, held_for: None, last_report },
        Some(c) => Freshness {
            state,
            reason: Some(c.reason.clone()).filter(|r| !r.is_empty()),
            since: Some(rfc3339(&c.since)),
            held_for: Some(age(now, c.since.0)),
            last_report,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status_fixtures::{gns, healthy, stale};

    fn now() -> Timestamp {
        "2026-11-25T12:00:00Z".parse().expect("ts")
    }

    #[test]
    fn reporting_stale_missing_and_unknown_come_from_the_condition() {
        let of = |o: Option<&gpuscope_crds::GpuNodeStatus>, now| of(o.map(StatusFacts::of).as_ref(), now);
        assert_eq!(of(Some(&healthy("n1", 1)), now()).state, ProbeState::Reporting);
        let s = of(Some(&stale(healthy("n1", 1), "2026-11-25T09:00:00Z")), now());
        assert_eq!(s.state, ProbeState::Stale);
        assert_eq!(s.reason.as_deref(), Some("HeartbeatTimeout"));
        assert_eq!(s.held_for.as_deref(), Some("3h"));
        assert_eq!(s.last_report.as_deref(), Some("2026-11-25T11:55:00Z"));
        assert_eq!(of(Some(&gns("n1")), now()).state, ProbeState::Unknown);
        let mut never = healthy("n1", 1);
        if let Some(c) = never.status.as_mut().and_then(|s| s.conditions.as_mut()).and_then(|cs| cs.last_mut()) {
            c.status = "Unknown".into();
            c.reason = "NoProbeLease".into();
        }
        assert_eq!(of(Some(&never), now()).state, ProbeState::Missing);
        assert_eq!(of(None, now()).state, ProbeState::Missing);
    }
}
