//! `--rate N`: a token bucket of N records per second with one second of burst.

use std::time::{Duration, Instant};

/// A token bucket.
#[derive(Debug)]
pub(crate) struct RateLimiter {
    per_sec: f64,
    tokens: f64,
    last: Instant,
}

impl RateLimiter {
    /// A bucket refilling at `per_sec` records per second (at least 1), starting full.
    pub(crate) fn new(per_sec: u32) -> Self {
        let per_sec = f64::from(per_sec.max(1));
        Self {
            per_sec,
            tokens: per_sec,
            last: Instant::now(),
        }
    }

    /// Takes one token at `now`; returns how long to wait first (zero when one was available).
    pub(crate) fn take(&mut self, now: Instant) -> Duration {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.per_sec).min(self.per_sec);
        self.tokens -= 1.0;
        if self.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-self.tokens / self.per_sec)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_bucket_allows_one_second_of_burst_then_paces() {
        let mut r = RateLimiter::new(10);
        let t0 = Instant::now();
        for _ in 0..10 {
            assert_eq!(r.take(t0), Duration::ZERO);
        }
        let wait = r.take(t0);
        assert!((wait.as_secs_f64() - 0.1).abs() < 1e-6, "{wait:?}");
    }

    #[test]
    fn the_bucket_refills_with_time() {
        let mut r = RateLimiter::new(100);
        let t0 = Instant::now();
        for _ in 0..100 {
            r.take(t0);
        }
        assert!(r.take(t0) > Duration::ZERO);
        assert_eq!(r.take(t0 + Duration::from_secs(1)), Duration::ZERO);
    }
}
