//! Retry delays for everything gpuscope retries against the API server: the operator's watches (the controller's
//! trigger watches, the Node and Lease caches, the policy watch) and the probe's status writes and Lease renewals.
//!
//! kube-runtime's default doubles from 0.8 s to a 30 s cap and then adds up to 100 % jitter on top, so a watch
//! can sit out up to a minute after the API server returns; the operator's controller pauses *all* its watches
//! behind one such backoff, which is how a restart of the API server turned into 33–120 s without reconciles. Here
//! the delay doubles from a first delay to at most a cap, and the jitter only ever shortens it, so the cap really is
//! the longest pause. That is still kind to an API server that is down (one request per retrier every few seconds,
//! spread by the jitter: a fleet of probes that lost the API server together does not return in lockstep), and the
//! retrier is back within seconds of it coming up.

use std::hash::{BuildHasher as _, RandomState};
use std::time::Duration;

/// The first delay after an error (before jitter), for a watch.
pub const MIN_DELAY: Duration = Duration::from_millis(500);
/// No delay of a watch is ever longer than this.
pub const MAX_DELAY: Duration = Duration::from_secs(5);

/// Exponential backoff with "equal jitter": the n-th delay is drawn from `[d/2, d]` with
/// `d = min(min * 2^n, max)`. A watch's ([`Backoff::default`]: [`MIN_DELAY`], [`MAX_DELAY`]) resets as soon as the
/// watch yields anything (kube-runtime's `StreamBackoff` calls [`Backoff::reset`]); other retriers reset it after a
/// success.
#[derive(Debug)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    current: Option<Duration>,
    /// Randomly keyed per instance, so replicas and watches restarting together do not retry in lockstep.
    seed: RandomState,
    draws: u64,
}

impl Default for Backoff {
    /// A watch's backoff: from [`MIN_DELAY`] to at most [`MAX_DELAY`].
    fn default() -> Self {
        Backoff::new(MIN_DELAY, MAX_DELAY)
    }
}

impl Backoff {
    /// Delays doubling from `min` to at most `max` (a `max` below `min` is raised to `min`).
    pub fn new(min: Duration, max: Duration) -> Backoff {
        Backoff { min, max: max.max(min), current: None, seed: RandomState::new(), draws: 0 }
    }

    /// The delay before the next retry.
    pub fn next_delay(&mut self) -> Duration {
        let base = match self.current {
            None => self.min,
            Some(d) => d.saturating_mul(2).min(self.max),
        };
        self.current = Some(base);
        base.mul_f64(0.5 + 0.5 * self.unit_random()).min(self.max)
    }

    /// Start over from the first delay (after a success).
    pub fn reset(&mut self) {
        self.current = None;
    }

    /// A number in `[0, 1)`, different on every call.
    fn unit_random(&mut self) -> f64 {
        self.draws = self.draws.wrapping_add(1);
        // 53 bits fit an f64 mantissa exactly.
        (self.seed.hash_one(self.draws) >> 11) as f64 / (1u64 << 53) as f64
    }
}

impl Iterator for Backoff {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        // Never gives up: a watch that stopped retrying would leave its program blind until restarted.
        Some(self.next_delay())
    }
}

impl kube::runtime::utils::Backoff for Backoff {
    fn reset(&mut self) {
        Backoff::reset(self);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_never_exceed_the_cap() {
        let mut b = Backoff::default();
        for (attempt, d) in b.by_ref().take(1000).enumerate() {
            assert!(d <= MAX_DELAY, "attempt {attempt}: {d:?} is above the cap");
            assert!(d >= MIN_DELAY / 2, "attempt {attempt}: {d:?} is below half the first delay");
        }
    }

    #[test]
    fn delays_grow_from_the_first_delay_to_the_cap() {
        let mut b = Backoff::default();
        let first = b.next().unwrap_or_default();
        assert!(first <= MIN_DELAY && first >= MIN_DELAY / 2, "{first:?}");
        // 0.5 s doubles past 5 s within five steps; from then on every delay is drawn from [cap/2, cap].
        let later: Vec<Duration> = b.by_ref().skip(5).take(50).collect();
        assert!(later.iter().all(|d| *d >= MAX_DELAY / 2 && *d <= MAX_DELAY), "{later:?}");
        assert!(later.windows(2).any(|w| w[0] != w[1]), "jitter spreads retries: {later:?}");
    }

    #[test]
    fn a_reset_starts_again_from_the_first_delay() {
        let mut b = Backoff::default();
        let _ = b.by_ref().take(10).count();
        b.reset();
        let d = b.next().unwrap_or_default();
        assert!(d <= MIN_DELAY, "{d:?}");
    }

    #[test]
    fn a_cap_below_the_first_delay_is_the_first_delay() {
        let mut b = Backoff::new(Duration::from_secs(2), Duration::from_secs(1));
        assert!(b.by_ref().take(20).all(|d| d <= Duration::from_secs(2)));
    }

    #[test]
    fn a_retrier_steps_with_next_delay_and_starts_over_after_a_success() {
        // The probe's status writes: from 0.5 s to 30 s.
        let mut b = Backoff::new(Duration::from_millis(500), Duration::from_secs(30));
        let first = b.next_delay();
        assert!((250..=500).contains(&first.as_millis()), "{first:?}");
        let last = (0..10).map(|_| b.next_delay()).last().unwrap_or_default();
        assert!((15_000..=30_000).contains(&last.as_millis()), "capped at 30 s, at least half of it: {last:?}");
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(500));
    }
}
