//! Every metric of the consumer, declared once and registered into a registry the service owns
//! (no globals, so tests don't collide). Names are a contract with the alert rules and
//! dashboards under `deploy/` (DESIGN.md, "HTTP surface and metrics"). Notable events are logged
//! and counted by one method so the two cannot drift.

use prometheus::{
    Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};
use schema::kafka::WireError;
use schema::loki::limits::Discard;

use crate::loki::RetryReason;

/// Label value of `service` in `ingestion_errors_total`.
pub(crate) const SERVICE: &str = "consumer";

/// Reasons a record goes to the dead-letter topic besides decode and Loki discard reasons.
pub(crate) const EXTRA_DLQ_REASONS: [&str; 5] = [
    "loki_rejected",
    "retries_exhausted",
    "loki_persistent_error",
    "request_too_large",
    INVALID_TENANT,
];

/// Dead-letter reason of a record whose tenant field holds a value Loki refuses as a tenant.
pub(crate) const INVALID_TENANT: &str = "invalid_tenant";

/// Status labels of `loki_push_requests_total` pre-initialised to 0.
const PUSH_STATUSES: [&str; 9] = [
    "204", "400", "401", "403", "404", "413", "429", "500", "network",
];

/// The consumer's metrics.
#[derive(Clone)]
pub(crate) struct Metrics {
    enhanced: bool,
    group: String,
    topic: String,
    /// `consumer_records_consumed_total`: messages read from Kafka.
    pub records_consumed: IntCounter,
    /// `consumer_records_pushed_total`: records Loki acknowledged (2xx).
    pub records_pushed: IntCounter,
    /// `consumer_records_dlq_total{reason}`: records the dead-letter topic acknowledged.
    pub records_dlq: IntCounterVec,
    /// `ingestion_errors_total{service,stage,reason}`.
    pub ingestion_errors: IntCounterVec,
    /// `loki_push_duration_seconds`: one push request, send to answer.
    pub push_duration: Histogram,
    /// `loki_push_requests_total{status}`: push answers by status code (`network` for none).
    pub push_requests: IntCounterVec,
    /// `loki_push_retries_total{reason}`.
    pub push_retries: IntCounterVec,
    /// `consumer_batch_records`: records per push.
    pub batch_records: Histogram,
    /// `consumer_batch_bytes`: uncompressed bytes per push.
    pub batch_bytes: Histogram,
    /// `consumer_in_flight_pushes`.
    pub in_flight: IntGauge,
    /// `consumer_buffered_records`: records held (batching, in flight, retrying).
    pub buffered_records: IntGauge,
    /// `consumer_buffered_bytes`.
    pub buffered_bytes: IntGauge,
    /// `consumer_paused`: 1 while consumption is paused for backpressure or misconfiguration.
    pub paused: IntGauge,
    /// `consumer_end_to_end_latency_seconds`: Kafka message timestamp to Loki ack, observed once
    /// per push with its oldest record (an upper bound for every record of the push).
    pub e2e_latency: Histogram,
    /// `kafka_consumer_lag{topic,partition}`.
    pub lag: IntGaugeVec,
    /// `kafka_consumer_lag_sum{group,topic}`.
    pub lag_sum: IntGaugeVec,
    /// `consumer_assigned_partitions`.
    pub assigned_partitions: IntGauge,
    /// `consumer_rebalances_total{kind}` (assign, revoke, error).
    pub rebalances: IntCounterVec,
    /// `consumer_commits_total{result}` (ok, error).
    pub commits: IntCounterVec,
    /// `consumer_label_sets`: distinct label sets seen.
    pub label_sets: IntGauge,
    /// `consumer_label_overflow_total`: records whose label values were folded into `other`
    /// (counted by the intake).
    pub label_overflow: IntCounter,
    /// `consumer_loki_misconfigured`: 1 while Loki answers 401/403/404.
    pub loki_misconfigured: IntGauge,
    /// `consumer_records_by_level_total{service,level}` (FEATURE_ENHANCED_METRICS only).
    pub by_level: IntCounterVec,
    /// `consumer_tenant_records_pushed_total{tenant}`: records Loki acknowledged, by tenant
    /// (`MAX_TENANT_SERIES` named, the rest `other`).
    pub tenant_records_pushed: IntCounterVec,
    /// `consumer_tenant_push_retries_total{tenant,reason}`: retried pushes by tenant.
    pub tenant_push_retries: IntCounterVec,
    /// `consumer_tenants`: distinct tenants seen.
    pub tenants: IntGauge,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

fn counter(r: &Registry, name: &str, help: &str) -> prometheus::Result<IntCounter> {
    let c = IntCounter::new(name, help)?;
    r.register(Box::new(c.clone()))?;
    Ok(c)
}

fn counter_vec(
    r: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
) -> prometheus::Result<IntCounterVec> {
    let c = IntCounterVec::new(Opts::new(name, help), labels)?;
    r.register(Box::new(c.clone()))?;
    Ok(c)
}

fn gauge(r: &Registry, name: &str, help: &str) -> prometheus::Result<IntGauge> {
    let g = IntGauge::new(name, help)?;
    r.register(Box::new(g.clone()))?;
    Ok(g)
}

fn histogram(
    r: &Registry,
    name: &str,
    help: &str,
    buckets: Vec<f64>,
) -> prometheus::Result<Histogram> {
    let h = Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets))?;
    r.register(Box::new(h.clone()))?;
    Ok(h)
}

impl Metrics {
    /// Creates and registers every metric; label values of closed sets start at 0.
    pub(crate) fn new(
        registry: &Registry,
        group: &str,
        topic: &str,
        enhanced: bool,
    ) -> prometheus::Result<Self> {
        let r = registry;
        // Fine around the default 1 s batch wait, where an age-flushed push lands, so the p99
        // is measurable against "batch wait + 100 ms".
        let seconds = vec![
            0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 1.025, 1.05, 1.075, 1.1, 1.25,
            1.5, 2.0, 2.5, 5.0, 10.0, 30.0, 60.0,
        ];
        let m = Self {
            enhanced,
            group: group.to_owned(),
            topic: topic.to_owned(),
            records_consumed: counter(
                r,
                "consumer_records_consumed_total",
                "Messages read from Kafka.",
            )?,
            records_pushed: counter(
                r,
                "consumer_records_pushed_total",
                "Records Loki acknowledged.",
            )?,
            records_dlq: counter_vec(
                r,
                "consumer_records_dlq_total",
                "Records written to the dead-letter topic, by reason.",
                &["reason"],
            )?,
            ingestion_errors: counter_vec(
                r,
                "ingestion_errors_total",
                "Errors by pipeline service, stage and reason.",
                &["service", "stage", "reason"],
            )?,
            push_duration: histogram(
                r,
                "loki_push_duration_seconds",
                "Duration of one Loki push request.",
                seconds.clone(),
            )?,
            push_requests: counter_vec(
                r,
                "loki_push_requests_total",
                "Loki push answers by status code (network: no answer).",
                &["status"],
            )?,
            push_retries: counter_vec(
                r,
                "loki_push_retries_total",
                "Loki push retries by reason.",
                &["reason"],
            )?,
            batch_records: histogram(
                r,
                "consumer_batch_records",
                "Records per Loki push.",
                vec![1.0, 10.0, 100.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0],
            )?,
            batch_bytes: histogram(
                r,
                "consumer_batch_bytes",
                "Uncompressed bytes per Loki push.",
                vec![1e3, 1e4, 1e5, 2.5e5, 5e5, 1e6, 2e6, 5e6],
            )?,
            in_flight: gauge(r, "consumer_in_flight_pushes", "Loki pushes in flight.")?,
            buffered_records: gauge(
                r,
                "consumer_buffered_records",
                "Records held: batching, in flight or retrying.",
            )?,
            buffered_bytes: gauge(r, "consumer_buffered_bytes", "Bytes held.")?,
            paused: gauge(
                r,
                "consumer_paused",
                "1 while consumption is paused (backpressure or misconfiguration).",
            )?,
            e2e_latency: histogram(
                r,
                "consumer_end_to_end_latency_seconds",
                "Kafka message timestamp to Loki acknowledgement (oldest record of each push).",
                seconds,
            )?,
            lag: {
                let g = IntGaugeVec::new(
                    Opts::new(
                        "kafka_consumer_lag",
                        "Records in the partition not yet delivered (high watermark - stored offset).",
                    ),
                    &["topic", "partition"],
                )?;
                r.register(Box::new(g.clone()))?;
                g
            },
            lag_sum: {
                let g = IntGaugeVec::new(
                    Opts::new(
                        "kafka_consumer_lag_sum",
                        "Sum of kafka_consumer_lag over this consumer's assigned partitions.",
                    ),
                    &["group", "topic"],
                )?;
                r.register(Box::new(g.clone()))?;
                g
            },
            assigned_partitions: gauge(
                r,
                "consumer_assigned_partitions",
                "Partitions assigned to this consumer.",
            )?,
            rebalances: counter_vec(
                r,
                "consumer_rebalances_total",
                "Rebalance events by kind.",
                &["kind"],
            )?,
            commits: counter_vec(
                r,
                "consumer_commits_total",
                "Offset commits by result.",
                &["result"],
            )?,
            label_sets: gauge(r, "consumer_label_sets", "Distinct Loki label sets seen.")?,
            label_overflow: counter(
                r,
                "consumer_label_overflow_total",
                "Records whose label values were folded into `other` by the cardinality guard.",
            )?,
            loki_misconfigured: gauge(
                r,
                "consumer_loki_misconfigured",
                "1 while Loki answers 401, 403 or 404.",
            )?,
            by_level: counter_vec(
                r,
                "consumer_records_by_level_total",
                "Records pushed by service and level (FEATURE_ENHANCED_METRICS).",
                &["service", "level"],
            )?,
            tenant_records_pushed: counter_vec(
                r,
                "consumer_tenant_records_pushed_total",
                "Records Loki acknowledged, by tenant (MAX_TENANT_SERIES named, the rest `other`).",
                &["tenant"],
            )?,
            tenant_push_retries: counter_vec(
                r,
                "consumer_tenant_push_retries_total",
                "Push retries by tenant and reason (MAX_TENANT_SERIES named, the rest `other`).",
                &["tenant", "reason"],
            )?,
            tenants: gauge(r, "consumer_tenants", "Distinct Loki tenants seen.")?,
        };
        for reason in WireError::all_reasons()
            .chain(Discard::ALL.iter().map(|d| d.as_str()))
            .chain(EXTRA_DLQ_REASONS)
        {
            m.records_dlq.with_label_values(&[reason]);
        }
        for reason in WireError::all_reasons() {
            m.ingestion_errors
                .with_label_values(&[SERVICE, "decode", reason]);
        }
        for d in Discard::ALL {
            m.ingestion_errors
                .with_label_values(&[SERVICE, "preflight", d.as_str()]);
            m.ingestion_errors
                .with_label_values(&[SERVICE, "loki", d.as_str()]);
        }
        for reason in RetryReason::ALL {
            m.push_retries.with_label_values(&[reason.as_str()]);
            m.ingestion_errors
                .with_label_values(&[SERVICE, "loki", reason.as_str()]);
        }
        m.ingestion_errors
            .with_label_values(&[SERVICE, "loki", "persistent_error"]);
        m.ingestion_errors
            .with_label_values(&[SERVICE, "tenant", INVALID_TENANT]);
        m.ingestion_errors
            .with_label_values(&[SERVICE, "dlq", "produce_failed"]);
        m.ingestion_errors
            .with_label_values(&[SERVICE, "kafka", "consume_failed"]);
        m.ingestion_errors
            .with_label_values(&[SERVICE, "kafka", "commit_failed"]);
        m.ingestion_errors
            .with_label_values(&[SERVICE, "kafka", "offset_gap"]);
        for s in PUSH_STATUSES {
            m.push_requests.with_label_values(&[s]);
        }
        for k in ["assign", "revoke", "error"] {
            m.rebalances.with_label_values(&[k]);
        }
        for k in ["ok", "error"] {
            m.commits.with_label_values(&[k]);
        }
        m.lag_sum.with_label_values(&[group, topic]).set(0);
        Ok(m)
    }

    /// A record could not be decoded (it goes to the dead-letter topic).
    pub(crate) fn decode_failed(&self, error: &WireError, partition: i32, offset: i64) {
        tracing::warn!(partition, offset, reason = error.reason(), error = %error,
            "poison message, sending it to the dead-letter topic");
        self.ingestion_errors
            .with_label_values(&[SERVICE, "decode", error.reason()])
            .inc();
    }

    /// A record failed a pre-flight check against Loki's limits.
    pub(crate) fn preflight_failed(
        &self,
        reason: Discard,
        partition: i32,
        offset: i64,
        detail: &str,
    ) {
        tracing::warn!(
            partition,
            offset,
            reason = reason.as_str(),
            detail,
            "record Loki would reject, sending it to the dead-letter topic"
        );
        self.ingestion_errors
            .with_label_values(&[SERVICE, "preflight", reason.as_str()])
            .inc();
    }

    /// Records landed in the dead-letter topic (acknowledged).
    pub(crate) fn dlq_written(&self, reason: &str, n: u64) {
        self.records_dlq.with_label_values(&[reason]).inc_by(n);
    }

    /// Writing to the dead-letter topic failed; it is retried.
    pub(crate) fn dlq_failed(&self, error: &dyn std::fmt::Display, attempt: u32) {
        tracing::error!(error = %error, attempt,
            "cannot write to the dead-letter topic; retrying, offsets held back");
        self.ingestion_errors
            .with_label_values(&[SERVICE, "dlq", "produce_failed"])
            .inc();
    }

    /// A push answer or network failure, counted by status.
    pub(crate) fn push_answered(&self, status: Option<u16>, seconds: f64) {
        let label = status.map_or_else(|| "network".to_owned(), |s| s.to_string());
        self.push_requests.with_label_values(&[&label]).inc();
        self.push_duration.observe(seconds);
    }

    /// A push of `tenant` (its name; empty for none) will be retried.
    pub(crate) fn push_retry(
        &self,
        tenant: &str,
        reason: RetryReason,
        attempt: u32,
        delay_ms: u64,
        detail: &str,
    ) {
        if reason == RetryReason::Misconfigured {
            tracing::error!(tenant, attempt, delay_ms, detail,
                "Loki refuses our credentials, URL or tenant (401/403/404): consumption stopped, nothing committed; fix LOKI_URL / LOKI_TENANT_ID / LOKI_TENANT_FIELD / credentials");
        } else if attempt <= 1 || attempt.is_power_of_two() {
            tracing::warn!(
                tenant,
                reason = reason.as_str(),
                attempt,
                delay_ms,
                detail,
                "Loki push failed, retrying"
            );
        }
        self.push_retries
            .with_label_values(&[reason.as_str()])
            .inc();
        self.ingestion_errors
            .with_label_values(&[SERVICE, "loki", reason.as_str()])
            .inc();
    }

    /// Loki rejected an entry on its own (isolated by bisection).
    pub(crate) fn loki_rejected(&self, reason: &str, partition: i32, offset: i64, message: &str) {
        tracing::warn!(
            partition,
            offset,
            reason,
            loki = message,
            "Loki rejected a record, sending it to the dead-letter topic"
        );
        self.ingestion_errors
            .with_label_values(&[SERVICE, "loki", reason])
            .inc();
    }

    /// Loki kept failing a record alone with a 5xx while it worked otherwise.
    pub(crate) fn loki_persistent_error(&self, partition: i32, offset: i64, answer: &str) {
        tracing::warn!(
            partition,
            offset,
            loki = answer,
            "Loki keeps failing this record alone while it accepts others; sending it to the dead-letter topic"
        );
        self.ingestion_errors
            .with_label_values(&[SERVICE, "loki", "persistent_error"])
            .inc();
    }

    /// A tenant's metric label is in use: its series start at 0.
    pub(crate) fn tenant_seen(&self, tenant: &str) {
        self.tenant_records_pushed.with_label_values(&[tenant]);
        for reason in RetryReason::ALL {
            self.tenant_push_retries
                .with_label_values(&[tenant, reason.as_str()]);
        }
    }

    /// Records of `tenant` (its metric label) were acknowledged.
    pub(crate) fn tenant_pushed(&self, tenant: &str, records: usize) {
        self.tenant_records_pushed
            .with_label_values(&[tenant])
            .inc_by(records as u64);
    }

    /// A push of `tenant` (its metric label) is retried.
    pub(crate) fn tenant_retry(&self, tenant: &str, reason: RetryReason) {
        self.tenant_push_retries
            .with_label_values(&[tenant, reason.as_str()])
            .inc();
    }

    /// A record's tenant field holds a value Loki refuses as a tenant.
    pub(crate) fn tenant_refused(&self, partition: i32, offset: i64, error: &str) {
        tracing::warn!(
            partition,
            offset,
            error,
            "record with a tenant Loki would refuse, sending it to the dead-letter topic"
        );
        self.ingestion_errors
            .with_label_values(&[SERVICE, "tenant", INVALID_TENANT])
            .inc();
    }

    /// A push was acknowledged.
    pub(crate) fn pushed(&self, records: usize, bytes: usize, oldest_kafka_ms: Option<i64>) {
        self.records_pushed.inc_by(records as u64);
        self.batch_records.observe(records as f64);
        self.batch_bytes.observe(bytes as f64);
        if let Some(ts) = oldest_kafka_ms {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() as i64)
                .unwrap_or(ts);
            self.e2e_latency
                .observe(((now - ts).max(0) as f64) / 1000.0);
        }
    }

    /// Per service/level counts (only with FEATURE_ENHANCED_METRICS).
    pub(crate) fn count_level(&self, service: &str, level: &str, n: u64) {
        if self.enhanced {
            self.by_level.with_label_values(&[service, level]).inc_by(n);
        }
    }

    /// Sets per-partition lag and the group's sum; removes series of partitions no longer held.
    pub(crate) fn set_lag(&self, lags: &[(i32, i64)], previous: &[i32]) {
        for p in previous {
            if !lags.iter().any(|(q, _)| q == p) {
                let _ = self.lag.remove_label_values(&[&self.topic, &p.to_string()]);
            }
        }
        let mut sum = 0;
        for (p, lag) in lags {
            let lag = (*lag).max(0);
            sum += lag;
            self.lag
                .with_label_values(&[&self.topic, &p.to_string()])
                .set(lag);
        }
        self.lag_sum
            .with_label_values(&[&self.group, &self.topic])
            .set(sum);
    }

    /// Removes the lag series of partitions this consumer no longer owns.
    pub(crate) fn remove_lag(&self, partitions: &[i32]) {
        for p in partitions {
            let _ = self.lag.remove_label_values(&[&self.topic, &p.to_string()]);
        }
    }

    /// Commit outcome.
    pub(crate) fn committed(&self, result: &Result<(), rdkafka::error::KafkaError>) {
        match result {
            Ok(()) => self.commits.with_label_values(&["ok"]).inc(),
            Err(e) => {
                tracing::warn!(error = %e, "offset commit failed; it is retried with the next commit");
                self.commits.with_label_values(&["error"]).inc();
                self.ingestion_errors
                    .with_label_values(&[SERVICE, "kafka", "commit_failed"])
                    .inc();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus::Encoder;

    fn text(r: &Registry) -> String {
        let mut buf = Vec::new();
        prometheus::TextEncoder::new()
            .encode(&r.gather(), &mut buf)
            .unwrap();
        String::from_utf8(buf).unwrap()
    }

    #[test]
    fn contract_metric_names_exist_with_zeroed_series() {
        let r = Registry::new();
        let _m = Metrics::new(&r, "g", "logs", false).unwrap();
        let t = text(&r);
        for needle in [
            r#"ingestion_errors_total{reason="invalid_json",service="consumer",stage="decode"} 0"#,
            r#"kafka_consumer_lag_sum{group="g",topic="logs"} 0"#,
            r#"loki_push_requests_total{status="429"} 0"#,
            r#"consumer_records_dlq_total{reason="line_too_long"} 0"#,
            "loki_push_duration_seconds_bucket",
            "consumer_end_to_end_latency_seconds_bucket",
        ] {
            assert!(t.contains(needle), "missing {needle}");
        }
    }

    #[test]
    fn lag_series_of_revoked_partitions_disappear() {
        let r = Registry::new();
        let m = Metrics::new(&r, "g", "logs", false).unwrap();
        m.set_lag(&[(0, 5), (1, 7)], &[]);
        assert!(text(&r).contains(r#"kafka_consumer_lag_sum{group="g",topic="logs"} 12"#));
        m.set_lag(&[(1, 2)], &[0, 1]);
        let t = text(&r);
        assert!(!t.contains(r#"kafka_consumer_lag{partition="0""#));
        assert!(t.contains(r#"kafka_consumer_lag_sum{group="g",topic="logs"} 2"#));
    }
}
