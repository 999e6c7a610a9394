//! Timestamps and ages as answers print them.

use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

/// RFC 3339 text of an API timestamp, e.g. "2026-11-25T10:00:00Z".
pub fn rfc3339(t: &Time) -> String {
    t.0.to_string()
}

/// How long ago `then` was, rounded for reading: "45s", "12m", "3h 12m", "2d 4h". Future times read "0s".
pub fn age(now: Timestamp, then: Timestamp) -> String {
    let secs = u64::try_from(now.as_second().saturating_sub(then.as_second())).unwrap_or(0);
    human_duration(Duration::from_secs(secs))
}

/// A duration rounded to its two largest units.
pub fn human_duration(d: Duration) -> String {
    let secs = d.as_secs();
    let (days, hours, minutes, seconds) = (secs / 86_400, secs % 86_400 / 3_600, secs % 3_600 / 60, secs % 60);
    match (days, hours, minutes) {
        (0, 0, 0) => format!("{seconds}s"),
        (0, 0, m) => format!("{m}m"),
        (0, h, 0) => format!("{h}h"),
        (0, h, m) => format!("{h}h {m}m"),
        (d, 0, _) => format!("{d}d"),
        (d, h, _) => format!("{d}d {h}h"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_round_to_two_units() {
        let now: Timestamp = "2026-11-25T12:00:00Z".parse().expect("ts");
        assert_eq!(age(now, "2026-11-25T11:59:15Z".parse().expect("ts")), "45s");
        assert_eq!(age(now, "2026-11-25T08:48:00Z".parse().expect("ts")), "3h 12m");
        assert_eq!(age(now, "2026-11-23T08:00:00Z".parse().expect("ts")), "2d 4h");
        assert_eq!(age(now, "2026-11-25T13:00:00Z".parse().expect("ts")), "0s");
        assert_eq!(human_duration(Duration::from_secs(7_200)), "2h");
    }
}
