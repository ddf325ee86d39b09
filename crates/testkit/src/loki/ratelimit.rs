//! Loki's ingestion limits that answer 429 (LOKI.md, "Answers"; recorded: `rate-*`,
//! `stream-rate-*`, `stream-limit-*` in `loki-conformance/`): token buckets of bytes for the
//! tenant rate (`ingestion_rate_mb`, `ingestion_burst_size_mb`) and the per-stream rate
//! (`per_stream_rate_limit`, `per_stream_rate_limit_burst`), and Loki's texts for them and for
//! the active stream limit. Loki never sends `Retry-After` with these.

use std::time::Instant;

use schema::loki::go_text::byte_size;

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

    /// Go's `AllowN`: whether `bytes` may pass at `now`, taking them when they do.
    pub(crate) fn allow(&mut self, bytes: usize, now: Instant) -> bool {
        if self.rate.is_infinite() {
            return true;
        }
        if now > self.last {
            let refill = now.duration_since(self.last).as_secs_f64() * self.rate;
            self.tokens = (self.tokens + refill).min(self.burst);
            self.last = now;
        }
        let wanted = bytes as f64;
        if wanted > self.tokens {
            return false;
        }
        self.tokens -= wanted;
        true
    }
}

/// Loki's text for the tenant rate limit (`rate_limited`).
pub(crate) fn tenant_rate_message(tenant: &str, rate: f64, lines: usize, bytes: usize) -> String {
    format!(
        "ingestion rate limit exceeded for user {tenant} (limit: {} bytes/sec) while attempting to ingest '{lines}' lines totaling '{bytes}' bytes, reduce log volume or contact your Loki administrator to see if the limit can be increased",
        rate as u64
    )
}

/// Loki's text for the active stream limit (`stream_limit`), naming the stream being created.
pub(crate) fn stream_limit_message(tenant: &str, labels: &str) -> String {
    format!(
        "maximum active stream limit exceeded when trying to create stream {labels}, reduce the number of active streams (reduce labels or reduce label values), or contact your Loki administrator to see if the limit can be increased, user: '{tenant}'"
    )
}

/// Loki's text for one entry over the per-stream rate (`per_stream_rate_limit`).
pub(crate) fn stream_rate_message(rate: f64, labels: &str, bytes: usize) -> String {
    format!(
        "Per stream rate limit exceeded (limit: {}/sec) while attempting to ingest for stream '{labels}' totaling {}, consider splitting a stream via additional labels or contact your Loki administrator to see if the limit can be increased",
        byte_size(rate as u64),
        byte_size(bytes as u64)
    )
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_full_bucket_passes_its_burst_then_refills_at_its_rate() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(100.0, 1000.0, t0);
        assert!(b.allow(1000, t0));
        assert!(!b.allow(50, t0));
        assert!(b.allow(50, t0 + Duration::from_millis(500)));
        assert!(!b.allow(400, t0 + Duration::from_millis(500)));
    }

    #[test]
    fn a_request_over_the_burst_never_passes() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(100.0, 1000.0, t0);
        assert!(!b.allow(1001, t0 + Duration::from_secs(3600)));
        assert!(b.allow(1000, t0 + Duration::from_secs(3600)));
    }

    #[test]
    fn an_infinite_rate_always_passes() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(f64::INFINITY, f64::INFINITY, t0);
        assert!(b.allow(usize::MAX, t0));
        assert!(b.allow(usize::MAX, t0));
    }

    #[test]
    fn messages_have_lokis_text() {
        // Recorded: rate-over-burst, stream-rate-over, stream-limit-exceeded.
        assert_eq!(
            tenant_rate_message("fake", 1_048_576.0, 5, 1_048_577),
            "ingestion rate limit exceeded for user fake (limit: 1048576 bytes/sec) while attempting to ingest '5' lines totaling '1048577' bytes, reduce log volume or contact your Loki administrator to see if the limit can be increased"
        );
        assert!(stream_rate_message(65_536.0, "{a=\"b\"}", 6000)
            .starts_with("Per stream rate limit exceeded (limit: 64KB/sec) while attempting to ingest for stream '{a=\"b\"}' totaling 6000B,"));
        assert!(stream_limit_message("fake", "{a=\"b\"}").starts_with(
            "maximum active stream limit exceeded when trying to create stream {a=\"b\"}, "
        ));
    }
}
