//! The Kafka side: consumer-group client settings (at-least-once: offsets are stored by the
//! pipeline only after delivery, `enable.auto.offset.store=false`), rebalance callbacks that
//! commit what is delivered before partitions leave, and consumer lag from librdkafka's
//! statistics (high watermark minus the stored offset, for assigned partitions only, so it stays
//! right across rebalances).

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::client::ClientContext;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::statistics::Statistics;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::ClientConfig;
use thiserror::Error;

use crate::config::ConsumerConfig;
use crate::metrics::Metrics;

/// The consumer type used by the pipeline.
pub(crate) type LogConsumer = StreamConsumer<PipelineContext>;

/// A change of assignment, queued by the callbacks for the pipeline loop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum AssignmentChange {
    /// Partitions added.
    Assigned(Vec<i32>),
    /// Partitions removed.
    Revoked(Vec<i32>),
}

/// Kafka could not be set up.
#[derive(Debug, Error)]
pub enum KafkaSetupError {
    /// librdkafka refused the configuration or could not start.
    #[error("kafka client: {0}")]
    Client(#[from] KafkaError),
    /// A topic the consumer needs does not exist.
    #[error("topic {0:?} does not exist on {1} (create it first, e.g. scripts/create-topics.sh)")]
    MissingTopic(String, String),
    /// No broker answered the metadata request: an outage, not a configuration error, so the
    /// service waits for Kafka instead of exiting.
    #[error("cannot reach kafka at {servers}: {source}")]
    Unreachable {
        /// The bootstrap servers.
        servers: String,
        /// The client error.
        source: KafkaError,
    },
}

/// Callbacks of the consumer: rebalances and statistics.
pub(crate) struct PipelineContext {
    topic: String,
    metrics: Metrics,
    changes: Mutex<Vec<AssignmentChange>>,
    assigned: Mutex<BTreeSet<i32>>,
    /// Partitions whose lag series this consumer exports (removed when no longer assigned).
    reported: Mutex<Vec<i32>>,
}

impl PipelineContext {
    fn new(topic: &str, metrics: Metrics) -> Self {
        Self {
            topic: topic.to_owned(),
            metrics,
            changes: Mutex::new(Vec::new()),
            assigned: Mutex::new(BTreeSet::new()),
            reported: Mutex::new(Vec::new()),
        }
    }

    /// Takes the assignment changes queued since the last call.
    pub(crate) fn take_changes(&self) -> Vec<AssignmentChange> {
        self.changes
            .lock()
            .map(|mut c| std::mem::take(&mut *c))
            .unwrap_or_default()
    }

    /// Partitions currently assigned.
    pub(crate) fn assigned(&self) -> Vec<i32> {
        self.assigned
            .lock()
            .map(|a| a.iter().copied().collect())
            .unwrap_or_default()
    }

    fn partitions_of(&self, tpl: &TopicPartitionList) -> Vec<i32> {
        tpl.elements()
            .iter()
            .filter(|e| e.topic() == self.topic)
            .map(|e| e.partition())
            .collect()
    }

    /// Exports lag for `lags` and removes the series of partitions reported before but not now
    /// (revoked ones), so lag is only ever reported by a partition's current owner.
    fn report_lag(&self, lags: &[(i32, i64)]) {
        if let Ok(mut reported) = self.reported.lock() {
            self.metrics.set_lag(lags, &reported);
            *reported = lags.iter().map(|(p, _)| *p).collect();
        }
    }

    fn record(&self, change: AssignmentChange) {
        if let Ok(mut a) = self.assigned.lock() {
            match &change {
                AssignmentChange::Assigned(p) => a.extend(p.iter().copied()),
                AssignmentChange::Revoked(p) => {
                    for x in p {
                        a.remove(x);
                    }
                }
            }
            self.metrics.assigned_partitions.set(a.len() as i64);
        }
        if let Ok(mut c) = self.changes.lock() {
            c.push(change);
        }
    }
}

/// Treats "nothing to commit" as success.
pub(crate) fn commit_result(r: KafkaResult<()>) -> KafkaResult<()> {
    match r {
        Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => Ok(()),
        other => other,
    }
}

impl ClientContext for PipelineContext {
    fn stats(&self, stats: Statistics) {
        let assigned = self.assigned();
        let mut lags = Vec::new();
        if let Some(topic) = stats.topics.get(&self.topic) {
            for (&p, s) in &topic.partitions {
                if p < 0 || !assigned.contains(&p) || s.hi_offset < 0 {
                    continue;
                }
                let base = if s.stored_offset >= 0 {
                    s.stored_offset
                } else if s.committed_offset >= 0 {
                    s.committed_offset
                } else {
                    s.lo_offset.max(0)
                };
                lags.push((p, (s.hi_offset - base).max(0)));
            }
        }
        self.report_lag(&lags);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        tracing::warn!(error = %error, reason, "kafka client error");
    }
}

impl ConsumerContext for PipelineContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Revoke(tpl) => {
                let parts = self.partitions_of(tpl);
                // Commit what is delivered before the partitions go; what is still in flight
                // stays uncommitted and will be re-read by the next owner (Loki drops the
                // duplicates).
                let r = commit_result(consumer.commit_consumer_state(CommitMode::Sync));
                self.metrics.committed(&r);
                self.metrics.rebalances.with_label_values(&["revoke"]).inc();
                tracing::info!(partitions = ?parts, "partitions revoked");
                self.record(AssignmentChange::Revoked(parts));
                // Stop reporting lag for what left at once, not at the next statistics tick.
                let still = self.assigned();
                if let Ok(mut reported) = self.reported.lock() {
                    let gone: Vec<i32> = reported
                        .iter()
                        .copied()
                        .filter(|p| !still.contains(p))
                        .collect();
                    self.metrics.remove_lag(&gone);
                    reported.retain(|p| still.contains(p));
                }
            }
            Rebalance::Assign(_) => {}
            Rebalance::Error(e) => {
                self.metrics.rebalances.with_label_values(&["error"]).inc();
                tracing::warn!(error = %e, "rebalance error");
            }
        }
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(tpl) = rebalance {
            let parts = self.partitions_of(tpl);
            self.metrics.rebalances.with_label_values(&["assign"]).inc();
            tracing::info!(partitions = ?parts, "partitions assigned");
            self.record(AssignmentChange::Assigned(parts));
        }
    }

    fn commit_callback(&self, result: KafkaResult<()>, _offsets: &TopicPartitionList) {
        self.metrics.committed(&commit_result(result));
    }
}

/// The client id of the consumer's Kafka clients.
const CLIENT_ID: &str = "logpipe-consumer";

/// The group consumer's fetch tuning, which `KAFKA_EXTRA_PROPERTIES` may override. librdkafka
/// holds a whole fetch response decompressed, plus ~400 bytes per message, until the loop has
/// read it: smaller, more frequent fetches keep that bounded (2 MiB compressed is ~6 MB of lines)
/// without slowing the drain. A broker answers a fetch at once when it has data; the wait only
/// bounds how long an idle fetch is held (tansu holds every fetch for part of it, so with
/// librdkafka's 500 ms it paced the drain). When the prefetch queue is over its bound,
/// librdkafka stops fetching for `fetch.queue.backoff.ms` (default 1 s). The pipeline drains the
/// queue in milliseconds, so a second's pause left the fetcher idle most of it: ~100k records
/// every 1.6 s instead of a steady flow.
const FETCH_TUNING: &[(&str, &str)] = &[
    ("fetch.max.bytes", "2097152"),
    ("fetch.wait.max.ms", "100"),
    ("queued.max.messages.kbytes", "8192"),
    ("fetch.queue.backoff.ms", "20"),
];

/// The librdkafka settings shared by the consumer and the dead-letter producer.
pub(crate) fn base_client_config(config: &ConsumerConfig) -> ClientConfig {
    config.kafka.client_config(CLIENT_ID, &[])
}

/// Creates the group consumer and subscribes it, after checking both topics exist.
pub(crate) fn create_consumer(
    config: &ConsumerConfig,
    metrics: Metrics,
) -> Result<LogConsumer, KafkaSetupError> {
    let c = consumer_client_config(config);
    let consumer: LogConsumer =
        c.create_with_context(PipelineContext::new(&config.kafka.topic, metrics))?;
    for topic in [&config.kafka.topic, &config.kafka_dlq_topic] {
        check_topic(&consumer, topic, &config.kafka.bootstrap_servers)?;
    }
    consumer.subscribe(&[&config.kafka.topic])?;
    Ok(consumer)
}

/// The group consumer's librdkafka settings: fetch tuning that `KAFKA_EXTRA_PROPERTIES` may
/// override, then the extra properties, then what delivery depends on, which wins.
fn consumer_client_config(config: &ConsumerConfig) -> ClientConfig {
    let mut c = config.kafka.client_config(CLIENT_ID, FETCH_TUNING);
    // What delivery depends on wins over the extra properties.
    c.set("group.id", &config.kafka_group_id)
        .set("enable.auto.commit", "true")
        .set("enable.auto.offset.store", "false")
        .set(
            "auto.commit.interval.ms",
            config
                .kafka_commit_interval
                .as_millis()
                .max(100)
                .to_string(),
        )
        .set("auto.offset.reset", &config.kafka_auto_offset_reset);
    set_session_timeout(&mut c, config);
    c.set(
        "statistics.interval.ms",
        config.lag_interval.as_millis().max(100).to_string(),
    )
    .set(
        "partition.assignment.strategy",
        if config.feature_new_consumer {
            "cooperative-sticky"
        } else {
            "range"
        },
    );
    c
}

/// The group session timeout (`KAFKA_SESSION_TIMEOUT`) and a heartbeat at a quarter of it, for
/// every group member this service runs (the consumer, the redrive).
pub(crate) fn set_session_timeout(c: &mut ClientConfig, config: &ConsumerConfig) {
    let session = config.kafka_session_timeout.as_millis();
    c.set("session.timeout.ms", session.to_string())
        .set("heartbeat.interval.ms", (session / 4).max(100).to_string());
}

fn check_topic(consumer: &LogConsumer, topic: &str, servers: &str) -> Result<(), KafkaSetupError> {
    let md = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .map_err(|source| KafkaSetupError::Unreachable {
            servers: servers.to_owned(),
            source,
        })?;
    let ok = md
        .topics()
        .iter()
        .any(|t| t.name() == topic && t.error().is_none() && !t.partitions().is_empty());
    if ok {
        Ok(())
    } else {
        Err(KafkaSetupError::MissingTopic(
            topic.to_owned(),
            servers.to_owned(),
        ))
    }
}

/// Looks up, on a blocking thread (the group coordinator may be slow during a rebalance), where
/// each newly assigned partition's fetch starts: its committed offset, or for a group without
/// one the low watermark (with `auto.offset.reset=earliest`). The answer is sent on `tx`; a
/// partition whose offsets cannot be read is left out (its start is then not checked for gaps).
pub(crate) fn look_up_start_offsets(
    consumer: Arc<LogConsumer>,
    topic: String,
    parts: Vec<i32>,
    from_earliest: bool,
    tx: tokio::sync::mpsc::UnboundedSender<Vec<(i32, i64)>>,
) {
    tokio::task::spawn_blocking(move || {
        let mut tpl = TopicPartitionList::new();
        for p in &parts {
            tpl.add_partition(&topic, *p);
        }
        let committed = match consumer.committed_offsets(tpl, Duration::from_secs(5)) {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read committed offsets; the start of the assignment is not checked for gaps");
                return;
            }
        };
        let mut out = Vec::new();
        for e in committed.elements() {
            match e.offset() {
                Offset::Offset(o) => out.push((e.partition(), o)),
                _ if from_earliest => {
                    if let Ok((low, _)) =
                        consumer.fetch_watermarks(&topic, e.partition(), Duration::from_secs(5))
                    {
                        out.push((e.partition(), low));
                    }
                }
                _ => {}
            }
        }
        let _ = tx.send(out);
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extra_properties_tune_fetching_but_cannot_change_how_offsets_are_stored() {
        let mut config = ConsumerConfig::default();
        config.kafka.extra_properties = vec![
            "queued.max.messages.kbytes=4096".into(),
            "fetch.wait.max.ms = 250".into(),
            "enable.auto.offset.store=true".into(),
            "group.id=someone-else".into(),
        ];
        let c = consumer_client_config(&config);
        assert_eq!(c.get("queued.max.messages.kbytes"), Some("4096"));
        assert_eq!(c.get("fetch.wait.max.ms"), Some("250"));
        assert_eq!(c.get("enable.auto.offset.store"), Some("false"));
        assert_eq!(c.get("group.id"), Some(config.kafka_group_id.as_str()));
        let defaults = consumer_client_config(&ConsumerConfig::default());
        assert_eq!(defaults.get("queued.max.messages.kbytes"), Some("8192"));
        assert_eq!(defaults.get("fetch.max.bytes"), Some("2097152"));
        assert_eq!(defaults.get("fetch.wait.max.ms"), Some("100"));
        assert_eq!(defaults.get("fetch.queue.backoff.ms"), Some("20"));
    }
}
