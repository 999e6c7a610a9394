//! Exponential backoff with jitter for retries against the API server, so a fleet of probes that lost the API
//! server together does not return in lockstep.

use std::time::Duration;

/// Retry delays: `base`, doubling up to `max`, each with ±25 % jitter.
#[derive(Clone, Debug)]
pub struct Backoff {
    base: Duration,
    max: Duration,
    attempt: u32,
    seed: u64,
}

impl Backoff {
    /// A backoff starting at `base` and capped at `max`.
    pub fn new(base: Duration, max: Duration) -> Backoff {
        // Any per-process varying value does for jitter; this avoids a random-number dependency.
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0x9e37_79b9)
            ^ u64::from(std::process::id()).rotate_left(32);
        Backoff { base, max, attempt: 0, seed }
    }

    /// The delay before the next retry.
    pub fn next_delay(&mut self) -> Duration {
        let exp = self.base.saturating_mul(2u32.saturating_pow(self.attempt.min(16)));
        let capped = exp.min(self.max);
        self.attempt = self.attempt.saturating_add(1);
        // xorshift: cheap, good enough to spread retries.
        self.seed ^= self.seed << 13;
        self.seed ^= self.seed >> 7;
        self.seed ^= self.seed << 17;
        let jitter = (self.seed % 501) as f64 / 1000.0 + 0.75; // 0.75 ..= 1.25
        capped.mul_f64(jitter)
    }

    /// Start over after a success.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_to_the_cap_with_jitter_and_reset() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
        let first = b.next_delay();
        assert!((75..=125).contains(&first.as_millis()), "{first:?}");
        let mut last = first;
        for _ in 0..10 {
            last = b.next_delay();
        }
        assert!((1_500..=2_500).contains(&last.as_millis()), "capped at 2 s ± 25 %: {last:?}");
        b.reset();
        assert!(b.next_delay() < Duration::from_millis(126));
    }
}
