//! Every metric of the producer (DESIGN.md, "HTTP surface and metrics"), declared in one struct
//! registered into a [`Registry`] the service owns. Names are a contract with the dashboards and
//! alert rules; label values come from closed sets and start at 0. Notable events are logged and
//! counted by one method each, so the two cannot drift.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prometheus::{Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry};
use schema::{Level, ReadError, Reason};

/// `stage` label: reading the input.
pub(crate) const STAGE_READ: &str = "read";
/// `stage` label: validating a record.
pub(crate) const STAGE_VALIDATE: &str = "validate";
/// `stage` label: producing to Kafka.
pub(crate) const STAGE_KAFKA: &str = "kafka";
/// `stage` label: the HTTP ingest endpoint.
pub(crate) const STAGE_HTTP: &str = "http";

/// Kafka-stage reasons (besides the record reasons of [`Reason`]).
pub(crate) const KAFKA_REASONS: [&str; 3] = ["queue_full", "delivery_failed", "message_too_large"];
/// HTTP-stage reasons.
pub(crate) const HTTP_REASONS: [&str; 4] = [
    "unauthorized",
    "payload_too_large",
    "malformed",
    "queue_full",
];
/// `source` label values of `producer_records_read_total`.
pub(crate) const SOURCES: [&str; 2] = ["file", "http"];
/// HTTP status codes `/v1/logs` answers, pre-initialised in `producer_http_requests_total`.
pub(crate) const HTTP_STATUSES: [u16; 7] = [200, 400, 401, 413, 415, 500, 503];
/// Requests refused for a missing or wrong token are logged at most once per this interval
/// (anyone can send them); every one is counted in
/// `ingestion_errors_total{stage="http",reason="unauthorized"}`.
pub(crate) const UNAUTHORIZED_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// Lets a repeated event be logged at most once per interval, counting what it held back.
#[derive(Debug)]
struct LogLimiter {
    every: Duration,
    /// When the event was last logged, and how many times it was held back since.
    state: Mutex<(Option<Instant>, u64)>,
}

impl LogLimiter {
    fn new(every: Duration) -> Self {
        Self {
            every,
            state: Mutex::new((None, 0)),
        }
    }

    /// `Some(held back since the last log)` when the event may be logged at `now`.
    fn admit(&self, now: Instant) -> Option<u64> {
        let Ok(mut state) = self.state.lock() else {
            // A poisoned lock only loses log lines, never counts.
            return None;
        };
        let (last, held) = &mut *state;
        match last {
            Some(at) if now.saturating_duration_since(*at) < self.every => {
                *held += 1;
                None
            }
            _ => {
                *last = Some(now);
                Some(std::mem::take(held))
            }
        }
    }
}

/// The producer's metrics.
#[derive(Clone)]
pub struct Metrics {
    /// `ingestion_errors_total{service="producer",stage,reason}`.
    pub ingestion_errors: IntCounterVec,
    /// `producer_records_read_total{source}`: records read (valid and invalid).
    pub records_read: IntCounterVec,
    /// `producer_records_sent_total`: records acknowledged by Kafka.
    pub records_sent: IntCounter,
    /// `producer_bytes_sent_total`: value bytes acknowledged by Kafka.
    pub bytes_sent: IntCounter,
    /// `producer_in_flight_records`: records handed to the Kafka client, not yet acknowledged.
    pub in_flight: IntGauge,
    /// `producer_delivery_latency_seconds`: enqueue of a chunk → acknowledgement of its last
    /// record.
    pub delivery_latency: Histogram,
    /// `producer_http_requests_total{status}` of `POST /v1/logs`.
    pub http_requests: IntCounterVec,
    /// `producer_http_request_duration_seconds` of `POST /v1/logs`.
    pub http_duration: Histogram,
    /// `producer_records_by_level_total{level,service}` (only with `FEATURE_ENHANCED_METRICS`).
    pub records_by_level: Option<IntCounterVec>,
    /// Bounds the WARN lines of refused unauthenticated requests.
    unauthorized_log: Arc<LogLimiter>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    /// Creates every metric, registers it into `registry` and pre-initialises label sets.
    pub fn register(registry: &Registry, enhanced: bool) -> Result<Self, prometheus::Error> {
        let ingestion_errors = IntCounterVec::new(
            Opts::new(
                "ingestion_errors_total",
                "Records or requests that could not be ingested, by stage and reason.",
            ),
            &["service", "stage", "reason"],
        )?;
        for stage in [STAGE_READ, STAGE_VALIDATE] {
            for r in Reason::ALL {
                ingestion_errors.with_label_values(&["producer", stage, r.as_str()]);
            }
        }
        for r in KAFKA_REASONS {
            ingestion_errors.with_label_values(&["producer", STAGE_KAFKA, r]);
        }
        for r in HTTP_REASONS {
            ingestion_errors.with_label_values(&["producer", STAGE_HTTP, r]);
        }
        let records_read = IntCounterVec::new(
            Opts::new(
                "producer_records_read_total",
                "Records read from the input, valid or not, by source.",
            ),
            &["source"],
        )?;
        for s in SOURCES {
            records_read.with_label_values(&[s]);
        }
        let records_sent = IntCounter::new(
            "producer_records_sent_total",
            "Records acknowledged by Kafka.",
        )?;
        let bytes_sent = IntCounter::new(
            "producer_bytes_sent_total",
            "Message value bytes acknowledged by Kafka.",
        )?;
        let in_flight = IntGauge::new(
            "producer_in_flight_records",
            "Records handed to the Kafka client and not yet acknowledged.",
        )?;
        let delivery_latency = Histogram::with_opts(
            HistogramOpts::new(
                "producer_delivery_latency_seconds",
                "Time from enqueueing a chunk of records to Kafka acknowledging all of them.",
            )
            .buckets(vec![
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
            ]),
        )?;
        let http_requests = IntCounterVec::new(
            Opts::new(
                "producer_http_requests_total",
                "POST /v1/logs requests, by response status.",
            ),
            &["status"],
        )?;
        for s in HTTP_STATUSES {
            http_requests.with_label_values(&[s.to_string().as_str()]);
        }
        let http_duration = Histogram::with_opts(
            HistogramOpts::new(
                "producer_http_request_duration_seconds",
                "Duration of POST /v1/logs requests, including the wait for Kafka.",
            )
            .buckets(vec![
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
            ]),
        )?;
        let records_by_level = if enhanced {
            let v = IntCounterVec::new(
                Opts::new(
                    "producer_records_by_level_total",
                    "Valid records read, by level and service.",
                ),
                &["level", "service"],
            )?;
            registry.register(Box::new(v.clone()))?;
            Some(v)
        } else {
            None
        };
        registry.register(Box::new(ingestion_errors.clone()))?;
        registry.register(Box::new(records_read.clone()))?;
        registry.register(Box::new(records_sent.clone()))?;
        registry.register(Box::new(bytes_sent.clone()))?;
        registry.register(Box::new(in_flight.clone()))?;
        registry.register(Box::new(delivery_latency.clone()))?;
        registry.register(Box::new(http_requests.clone()))?;
        registry.register(Box::new(http_duration.clone()))?;
        Ok(Self {
            ingestion_errors,
            records_read,
            records_sent,
            bytes_sent,
            in_flight,
            delivery_latency,
            http_requests,
            http_duration,
            records_by_level,
            unauthorized_log: Arc::new(LogLimiter::new(UNAUTHORIZED_LOG_INTERVAL)),
        })
    }

    /// Metrics registered into a throwaway registry (tests and tools).
    pub fn unregistered(enhanced: bool) -> Self {
        match Self::register(&Registry::new(), enhanced) {
            Ok(m) => m,
            // A fresh registry has no name collisions, and every name above is valid.
            Err(e) => unreachable!("fresh registry refused the producer metrics: {e}"),
        }
    }

    /// Counts a record the reader rejected and logs it with its position when `log` is true
    /// (callers log the first N and then only count).
    pub(crate) fn record_rejected(&self, origin: &str, error: &ReadError, log: bool) {
        let stage = match error {
            ReadError::Invalid { .. } => STAGE_VALIDATE,
            _ => STAGE_READ,
        };
        self.ingestion_errors
            .with_label_values(&["producer", stage, error.reason().as_str()])
            .inc();
        if log {
            let p = error.position();
            tracing::warn!(
                origin,
                line = p.line,
                record = p.index,
                byte = p.offset,
                reason = error.reason().as_str(),
                error = %error,
                "record rejected"
            );
        }
    }

    /// Counts `n` records Kafka did not take for `reason` (one of [`KAFKA_REASONS`]) and logs
    /// once for the chunk: ERROR, because these records are lost unless the input is replayed.
    pub(crate) fn delivery_failed(&self, reason: &'static str, n: u64, first_error: &str) {
        if n == 0 {
            return;
        }
        self.ingestion_errors
            .with_label_values(&["producer", STAGE_KAFKA, reason])
            .inc_by(n);
        tracing::error!(
            reason,
            records = n,
            error = first_error,
            "records not delivered to kafka"
        );
    }

    /// Counts records refused by the HTTP endpoint before reaching Kafka (one of
    /// [`HTTP_REASONS`]); WARN, because the client is told and can resend.
    pub(crate) fn http_refused(&self, reason: &'static str, detail: &str) {
        self.ingestion_errors
            .with_label_values(&["producer", STAGE_HTTP, reason])
            .inc();
        tracing::warn!(reason, detail, "ingest request refused");
    }

    /// Counts a request refused for a missing or wrong bearer token, and logs a WARN at most
    /// once per [`UNAUTHORIZED_LOG_INTERVAL`] (with how many were refused silently since), so
    /// unauthenticated clients cannot flood the log.
    pub(crate) fn unauthorized(&self) {
        self.unauthorized_at(Instant::now());
    }

    /// [`Metrics::unauthorized`] at `now`; true when it logged.
    fn unauthorized_at(&self, now: Instant) -> bool {
        self.ingestion_errors
            .with_label_values(&["producer", STAGE_HTTP, "unauthorized"])
            .inc();
        match self.unauthorized_log.admit(now) {
            Some(not_logged) => {
                tracing::warn!(
                    reason = "unauthorized",
                    not_logged,
                    every_secs = UNAUTHORIZED_LOG_INTERVAL.as_secs(),
                    "ingest request refused: missing or wrong bearer token (logged at most once \
                     per interval; all are counted in ingestion_errors_total)"
                );
                true
            }
            None => false,
        }
    }

    /// Counts records read from `source` (`file` or `http`).
    pub(crate) fn read(&self, source: &'static str, n: u64) {
        if n > 0 {
            self.records_read.with_label_values(&[source]).inc_by(n);
        }
    }

    /// Records a chunk Kafka finished with: `delivered` records of `bytes` value bytes, after
    /// `latency`.
    pub(crate) fn chunk_acknowledged(&self, delivered: u64, bytes: u64, latency: Duration) {
        self.records_sent.inc_by(delivered);
        self.bytes_sent.inc_by(bytes);
        self.delivery_latency.observe(latency.as_secs_f64());
    }

    /// Adds a chunk's per-level counts (enhanced metrics only).
    /// `counts` maps a service to its records per level, in [`Level::ALL`] order; they are
    /// reset to zero (the services stay, so the next chunk does not allocate them again).
    pub(crate) fn add_levels(&self, counts: &mut HashMap<Vec<u8>, [u64; Level::ALL.len()]>) {
        let Some(v) = &self.records_by_level else {
            counts.clear();
            return;
        };
        for (service, per_level) in counts.iter_mut() {
            let service = String::from_utf8_lossy(service);
            for (level, n) in Level::ALL.iter().zip(per_level.iter_mut()) {
                if *n > 0 {
                    v.with_label_values(&[level.as_str(), &service]).inc_by(*n);
                    *n = 0;
                }
            }
        }
    }

    /// Counts one answered `POST /v1/logs`.
    pub(crate) fn http_answered(&self, status: u16, duration: Duration) {
        self.http_requests
            .with_label_values(&[status.to_string().as_str()])
            .inc();
        self.http_duration.observe(duration.as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    use prometheus::{Encoder, TextEncoder};

    use super::*;

    fn text(registry: &Registry) -> String {
        let mut buf = Vec::new();
        TextEncoder::new()
            .encode(&registry.gather(), &mut buf)
            .unwrap();
        String::from_utf8(buf).unwrap()
    }

    #[test]
    fn every_contract_series_exists_at_zero() {
        let registry = Registry::new();
        Metrics::register(&registry, true).unwrap();
        let t = text(&registry);
        for want in [
            r#"ingestion_errors_total{reason="invalid_level",service="producer",stage="validate"} 0"#,
            r#"ingestion_errors_total{reason="queue_full",service="producer",stage="kafka"} 0"#,
            r#"ingestion_errors_total{reason="unauthorized",service="producer",stage="http"} 0"#,
            r#"producer_records_read_total{source="file"} 0"#,
            "producer_records_sent_total 0",
            "producer_bytes_sent_total 0",
            "producer_in_flight_records 0",
            "producer_delivery_latency_seconds_count 0",
            r#"producer_http_requests_total{status="503"} 0"#,
            "producer_http_request_duration_seconds_count 0",
        ] {
            assert!(t.contains(want), "missing {want}\n{t}");
        }
    }

    #[test]
    fn per_level_counts_add_up_per_service_and_only_with_enhanced_metrics() {
        let registry = Registry::new();
        let m = Metrics::register(&registry, true).unwrap();
        let mut counts = HashMap::new();
        counts.insert(b"api".to_vec(), [0, 0, 3, 0, 1, 0]);
        m.add_levels(&mut counts);
        assert_eq!(counts[b"api".as_slice()], [0; 6], "reset, the service kept");
        counts.insert(b"api".to_vec(), [0, 0, 2, 0, 0, 0]);
        m.add_levels(&mut counts);
        let t = text(&registry);
        let info = Level::ALL[2].as_str();
        let warn = Level::ALL[4].as_str();
        for want in [
            format!(r#"producer_records_by_level_total{{level="{info}",service="api"}} 5"#),
            format!(r#"producer_records_by_level_total{{level="{warn}",service="api"}} 1"#),
        ] {
            assert!(t.contains(&want), "missing {want}\n{t}");
        }
        let plain = Metrics::unregistered(false);
        plain.add_levels(&mut counts);
        assert!(counts.is_empty(), "without the feature nothing is kept");
    }

    #[test]
    fn unauthorized_requests_are_all_counted_but_logged_once_per_interval() {
        let m = Metrics::unregistered(false);
        let t0 = Instant::now();
        let logged: Vec<bool> = [0, 1, 9, 10, 11, 25]
            .into_iter()
            .map(|s| m.unauthorized_at(t0 + Duration::from_secs(s)))
            .collect();
        assert_eq!(logged, [true, false, false, true, false, true]);
        let counted = m
            .ingestion_errors
            .with_label_values(&["producer", STAGE_HTTP, "unauthorized"])
            .get();
        assert_eq!(counted, 6);
    }

    #[test]
    fn the_log_limiter_reports_what_it_held_back() {
        let l = LogLimiter::new(Duration::from_secs(10));
        let t0 = Instant::now();
        assert_eq!(l.admit(t0), Some(0));
        assert_eq!(l.admit(t0 + Duration::from_secs(1)), None);
        assert_eq!(l.admit(t0 + Duration::from_secs(2)), None);
        assert_eq!(l.admit(t0 + Duration::from_secs(10)), Some(2));
        // A clock that steps back does not log again early.
        assert_eq!(l.admit(t0), None);
    }

    #[test]
    fn two_services_in_one_process_do_not_collide() {
        let a = Registry::new();
        let b = Registry::new();
        assert!(Metrics::register(&a, false).is_ok());
        assert!(Metrics::register(&b, false).is_ok());
    }
}
