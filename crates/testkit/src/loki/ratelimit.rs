//! Loki's ingestion limits that answer 429 (LOKI.md, "Answers"): token buckets on line bytes for
//! the tenant rate (`ingestion_rate_mb`, `ingestion_burst_size_mb`) and the per-stream rate
//! (`per_stream_rate_limit`, `per_stream_rate_limit_burst`), and Loki's texts for them and for
//! the active stream limit.

use std::time::{Duration, Instant};

/// A token bucket of bytes, as Go's `rate.Limiter` that Loki uses: it holds at most `burst`
/// tokens, refills at `rate` per second, and a request of more than `burst` never passes.
#[derive(Debug, Clone)]
pub(crate) struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket.
    pub(crate) fn new(rate: f64, burst: f64, now: Instant) -> Self {
        Self {
            rate,
            burst,
            tokens: burst,
            last: now,
        }
    }

    /// The rate in bytes per second.
    pub(crate) fn rate(&self) -> f64 {
        self.rate
    }

    /// Whether `bytes` may pass at `now`, without taking them; else how long until the bucket
    /// could hold them (at least a second).
    pub(crate) fn check(&mut self, bytes: usize, now: Instant) -> Result<(), Duration> {
        if self.rate.is_infinite() {
            return Ok(());
        }
        if now > self.last {
            let refill = now.duration_since(self.last).as_secs_f64() * self.rate;
            self.tokens = (self.tokens + refill).min(self.burst);
            self.last = now;
        }
        let wanted = bytes as f64;
        if wanted <= self.tokens {
            return Ok(());
        }
        // A request over the burst never passes; advise waiting for a full bucket.
        let missing = wanted.min(self.burst) - self.tokens;
        let secs = (missing / self.rate).ceil().clamp(1.0, 86_400.0);
        Err(Duration::from_secs_f64(secs))
    }

    /// Takes `bytes` after a successful [`TokenBucket::check`].
    pub(crate) fn take(&mut self, bytes: usize) {
        if self.rate.is_finite() {
            self.tokens -= bytes as f64;
        }
    }
}

/// Loki's text for the tenant rate limit (`rate_limited`).
pub(crate) fn tenant_rate_message(tenant: &str, rate: f64, lines: usize, bytes: usize) -> String {
    format!(
        "Ingestion rate limit exceeded for user {tenant} (limit: {} bytes/sec) while attempting to ingest '{lines}' lines totaling '{bytes}' bytes, reduce log volume or contact your Loki administrator to see if the limit can be increased",
        rate as u64
    )
}

/// Loki's text for the active stream limit (`stream_limit`).
pub(crate) fn stream_limit_message(tenant: &str, labels: &str) -> String {
    format!(
        "Maximum active stream limit exceeded when trying to create stream {labels}, reduce the number of active streams (reduce labels or reduce label values), or contact your Loki administrator to see if the limit can be increased, user: '{tenant}'"
    )
}

/// Loki's text for the per-stream rate limit (`per_stream_rate_limit`).
pub(crate) fn stream_rate_message(rate: f64, labels: &str, bytes: usize) -> String {
    format!(
        "Per stream rate limit exceeded (limit: {}/sec) while attempting to ingest for stream '{labels}' totaling {}, consider splitting a stream via additional labels or contact your Loki administrator to see if the limit can be increased",
        base2_bytes(rate as u64),
        base2_bytes(bytes as u64)
    )
}

/// Bytes as Go's `units.Base2Bytes` prints them (Loki's `flagext.ByteSize`): `3MiB`,
/// `1KiB512B`.
fn base2_bytes(mut n: u64) -> String {
    const UNITS: [(&str, u64); 7] = [
        ("EiB", 1 << 60),
        ("PiB", 1 << 50),
        ("TiB", 1 << 40),
        ("GiB", 1 << 30),
        ("MiB", 1 << 20),
        ("KiB", 1 << 10),
        ("B", 1),
    ];
    let mut out = String::new();
    for (suffix, unit) in UNITS {
        if n >= unit {
            out.push_str(&(n / unit).to_string());
            out.push_str(suffix);
            n %= unit;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_bucket_passes_its_burst_then_refills_at_its_rate() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(100.0, 1000.0, t0);
        assert_eq!(b.check(1000, t0), Ok(()));
        b.take(1000);
        assert_eq!(b.check(50, t0), Err(Duration::from_secs(1)));
        assert_eq!(b.check(50, t0 + Duration::from_millis(500)), Ok(()));
        assert_eq!(
            b.check(400, t0 + Duration::from_millis(500)),
            Err(Duration::from_secs(4))
        );
    }

    #[test]
    fn a_request_over_the_burst_never_passes() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(100.0, 1000.0, t0);
        assert!(b.check(1001, t0 + Duration::from_secs(3600)).is_err());
    }

    #[test]
    fn an_infinite_rate_always_passes() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(f64::INFINITY, f64::INFINITY, t0);
        assert_eq!(b.check(usize::MAX, t0), Ok(()));
        b.take(usize::MAX);
        assert_eq!(b.check(usize::MAX, t0), Ok(()));
    }

    #[test]
    fn prints_bytes_like_go_units() {
        assert_eq!(base2_bytes(3 * 1024 * 1024), "3MiB");
        assert_eq!(base2_bytes(1536), "1KiB512B");
        assert_eq!(base2_bytes(15 << 20), "15MiB");
    }

    #[test]
    fn messages_have_lokis_text() {
        assert!(tenant_rate_message("t", 4194304.0, 2, 10).starts_with(
            "Ingestion rate limit exceeded for user t (limit: 4194304 bytes/sec) while attempting to ingest '2' lines totaling '10' bytes"
        ));
        assert!(stream_rate_message(3145728.0, "{a=\"b\"}", 16 << 20)
            .starts_with("Per stream rate limit exceeded (limit: 3MiB/sec)"));
    }
}
