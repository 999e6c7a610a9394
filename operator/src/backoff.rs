//! The retry delay of every watch the operator runs (the controller's trigger watches, the Node and Lease caches,
//! the policy watch).
//!
//! kube-runtime's default doubles from 0.8 s to a 30 s cap and then adds up to 100 % jitter on top, so a watch
//! can sit out up to a minute after the API server returns; the controller pauses *all* its watches behind one
//! such backoff, which is how a restart of the API server turned into 33–120 s without reconciles. Here the
//! delay doubles from [`MIN_DELAY`] to at most [`MAX_DELAY`], and the jitter only ever shortens it, so the cap
//! really is the longest pause. That is still kind to an API server that is down (one list per watch every few
//! seconds, spread by the jitter), and the watch is back within seconds of it coming up.

use std::hash::{BuildHasher as _, RandomState};
use std::time::Duration;

use kube::runtime::utils::Backoff;

/// The first delay after an error (before jitter).
pub const MIN_DELAY: Duration = Duration::from_millis(500);
/// No delay is ever longer than this.
pub const MAX_DELAY: Duration = Duration::from_secs(5);

/// Exponential backoff with "equal jitter": the n-th delay is drawn from `[d/2, d]` with
/// `d = min(MIN_DELAY * 2^n, MAX_DELAY)`. It resets (kube-runtime's `StreamBackoff` calls
/// [`Backoff::reset`]) as soon as the watch yields anything.
#[derive(Debug)]
pub struct WatchBackoff {
    min: Duration,
    max: Duration,
    current: Option<Duration>,
    /// Randomly keyed per instance, so replicas and watches restarting together do not retry in lockstep.
    seed: RandomState,
    draws: u64,
}

impl Default for WatchBackoff {
    fn default() -> Self {
        WatchBackoff::new(MIN_DELAY, MAX_DELAY)
    }
}

impl WatchBackoff {
    /// Delays doubling from `min` to at most `max` (a `max` below `min` is raised to `min`).
    pub fn new(min: Duration, max: Duration) -> WatchBackoff {
        WatchBackoff { min, max: max.max(min), current: None, seed: RandomState::new(), draws: 0 }
    }

    /// A number in `[0, 1)`, different on every call.
    fn unit_random(&mut self) -> f64 {
        self.draws = self.draws.wrapping_add(1);
        // 53 bits fit an f64 mantissa exactly.
        (self.seed.hash_one(self.draws) >> 11) as f64 / (1u64 << 53) as f64
    }
}

impl Iterator for WatchBackoff {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        let base = match self.current {
            None => self.min,
            Some(d) => d.saturating_mul(2).min(self.max),
        };
        self.current = Some(base);
        // Never gives up: a watch that stopped retrying would leave the operator blind until restarted.
        Some(base.mul_f64(0.5 + 0.5 * self.unit_random()).min(self.max))
    }
}

impl Backoff for WatchBackoff {
    fn reset(&mut self) {
        self.current = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_never_exceed_the_cap() {
        let mut b = WatchBackoff::default();
        for (attempt, d) in b.by_ref().take(1000).enumerate() {
            assert!(d <= MAX_DELAY, "attempt {attempt}: {d:?} is above the cap");
            assert!(d >= MIN_DELAY / 2, "attempt {attempt}: {d:?} is below half the first delay");
        }
    }

    #[test]
    fn delays_grow_from_the_first_delay_to_the_cap() {
        let mut b = WatchBackoff::default();
        let first = b.next().unwrap_or_default();
        assert!(first <= MIN_DELAY && first >= MIN_DELAY / 2, "{first:?}");
        // 0.5 s doubles past 5 s within five steps; from then on every delay is drawn from [cap/2, cap].
        let later: Vec<Duration> = b.by_ref().skip(5).take(50).collect();
        assert!(later.iter().all(|d| *d >= MAX_DELAY / 2 && *d <= MAX_DELAY), "{later:?}");
        assert!(later.windows(2).any(|w| w[0] != w[1]), "jitter spreads retries: {later:?}");
    }

    #[test]
    fn a_reset_starts_again_from_the_first_delay() {
        let mut b = WatchBackoff::default();
        let _ = b.by_ref().take(10).count();
        b.reset();
        let d = b.next().unwrap_or_default();
        assert!(d <= MIN_DELAY, "{d:?}");
    }

    #[test]
    fn a_cap_below_the_first_delay_is_the_first_delay() {
        let mut b = WatchBackoff::new(Duration::from_secs(2), Duration::from_secs(1));
        assert!(b.by_ref().take(20).all(|d| d <= Duration::from_secs(2)));
    }
}
