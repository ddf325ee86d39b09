//! Capped exponential back-off with jitter, honouring a server's `Retry-After` (DESIGN.md,
//! "Delivery semantics": 429, 5xx and network errors are retried without limit by default).

use std::time::Duration;

use rand::Rng;

/// The longest `Retry-After` honoured; a larger value is capped so a misbehaving proxy cannot
/// park the pipeline for hours.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);

/// Back-off state of one retried operation.
#[derive(Debug, Clone)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    attempt: u32,
}

impl Backoff {
    /// Starts at `min`, doubling up to `max`.
    pub fn new(min: Duration, max: Duration) -> Self {
        Self {
            min,
            max: max.max(min),
            attempt: 0,
        }
    }

    /// Attempts made so far.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// The delay before the next attempt: "equal jitter" (half fixed, half random) of
    /// `min · 2^attempt` capped at `max`, but never less than the server's `Retry-After`.
    pub fn next_delay(&mut self, retry_after: Option<Duration>) -> Duration {
        let exp = self
            .min
            .saturating_mul(1u32.checked_shl(self.attempt.min(20)).unwrap_or(u32::MAX))
            .min(self.max);
        self.attempt = self.attempt.saturating_add(1);
        let half = exp / 2;
        let jitter = if half.is_zero() {
            Duration::ZERO
        } else {
            Duration::from_nanos(rand::thread_rng().gen_range(0..=half.as_nanos() as u64))
        };
        let delay = half + jitter;
        match retry_after {
            Some(ra) => delay.max(ra.min(MAX_RETRY_AFTER)),
            None => delay,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_and_stay_within_the_cap() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
        let mut last_cap = Duration::ZERO;
        for i in 0..12 {
            let d = b.next_delay(None);
            let cap = (Duration::from_millis(100) * 2u32.pow(i.min(5))).min(Duration::from_secs(2));
            assert!(
                d >= cap / 2 && d <= cap,
                "attempt {i}: {d:?} not in [{:?}, {cap:?}]",
                cap / 2
            );
            assert!(cap >= last_cap);
            last_cap = cap;
        }
        assert_eq!(b.attempt(), 12);
    }

    #[test]
    fn retry_after_is_honoured_and_capped() {
        let mut b = Backoff::new(Duration::from_millis(10), Duration::from_millis(20));
        assert!(b.next_delay(Some(Duration::from_secs(3))) >= Duration::from_secs(3));
        assert_eq!(
            b.next_delay(Some(Duration::from_secs(10_000))),
            MAX_RETRY_AFTER
        );
    }

    #[test]
    fn huge_attempt_counts_do_not_overflow() {
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(30));
        for _ in 0..100 {
            assert!(b.next_delay(None) <= Duration::from_secs(30));
        }
    }
}
