//! The dead-letter topic (`logs-dlq`): records Loki will never accept, and messages that are not
//! records at all, are written here with why and where they came from, so they never block
//! their partition and are never silently dropped. A record's offset is released only after the
//! dead-letter write is acknowledged; a failing write is retried, holding the offset back.

use std::sync::Arc;
use std::time::Duration;

use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;
use schema::kafka::{
    DLQ_HEADER_ERROR, DLQ_HEADER_REASON, DLQ_HEADER_SOURCE_OFFSET, DLQ_HEADER_SOURCE_PARTITION,
    DLQ_HEADER_SOURCE_TOPIC,
};
use tokio::sync::OnceCell;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;
use crate::retry::Backoff;

/// One dead letter.
#[derive(Debug, Clone)]
pub(crate) struct DeadLetter {
    /// The message value (the original bytes for poison messages, the record line otherwise).
    pub value: Vec<u8>,
    /// The original key, when there was one.
    pub key: Option<Vec<u8>>,
    /// Reason code (a closed set, as in metrics).
    pub reason: String,
    /// Human-readable error (e.g. Loki's answer).
    pub error: String,
    /// Source partition.
    pub partition: i32,
    /// Source offset.
    pub offset: i64,
}

/// Writes dead letters, retrying until acknowledged.
///
/// The producer is created with the first dead letter, not at start: rdkafka's producer keeps
/// a polling thread that wakes every 100 ms and spins for its last millisecond (its timeout is
/// truncated to whole milliseconds), about 1 % of a core for as long as it exists, and most
/// consumers never write a dead letter.
#[derive(Clone)]
pub(crate) struct DeadLetters {
    config: ClientConfig,
    producer: Arc<OnceCell<FutureProducer>>,
    topic: String,
    source_topic: String,
    metrics: Metrics,
}

impl std::fmt::Debug for DeadLetters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeadLetters")
            .field("topic", &self.topic)
            .finish_non_exhaustive()
    }
}

impl DeadLetters {
    /// A writer to `topic` using the consumer's Kafka settings (idempotent, acks=all). The
    /// settings are the consumer's, which librdkafka already accepted; a producer that cannot
    /// be created shows as a failing dead-letter write (retried, offset held, metric and log).
    pub(crate) fn new(
        base: &ClientConfig,
        topic: &str,
        source_topic: &str,
        metrics: Metrics,
    ) -> Self {
        let mut cfg = base.clone();
        cfg.set("enable.idempotence", "true")
            .set("acks", "all")
            .set("compression.type", "lz4")
            .set("linger.ms", "5")
            .set("message.timeout.ms", "30000");
        Self {
            config: cfg,
            producer: Arc::new(OnceCell::new()),
            topic: topic.to_owned(),
            source_topic: source_topic.to_owned(),
            metrics,
        }
    }

    /// Writes every letter, retrying failures until each is acknowledged or `cancel` fires.
    /// Returns true when all were written.
    pub(crate) async fn write(&self, letters: &[DeadLetter], cancel: &CancellationToken) -> bool {
        let mut pending: Vec<&DeadLetter> = letters.iter().collect();
        let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(10));
        loop {
            let sends = pending.iter().map(|l| self.send(l));
            let results = futures::future::join_all(sends).await;
            let mut failed = Vec::new();
            let mut last_error = String::new();
            for (letter, result) in pending.iter().zip(results) {
                match result {
                    Ok(()) => self.metrics.dlq_written(&letter.reason, 1),
                    Err(e) => {
                        last_error = e;
                        failed.push(*letter);
                    }
                }
            }
            if failed.is_empty() {
                return true;
            }
            self.metrics.dlq_failed(&last_error, backoff.attempt() + 1);
            pending = failed;
            let delay = backoff.next_delay(None);
            tokio::select! {
                _ = cancel.cancelled() => return false,
                _ = tokio::time::sleep(delay) => {}
            }
        }
    }

    async fn send(&self, l: &DeadLetter) -> Result<(), String> {
        let partition = l.partition.to_string();
        let offset = l.offset.to_string();
        let headers = OwnedHeaders::new()
            .insert(Header {
                key: DLQ_HEADER_ERROR,
                value: Some(l.error.as_bytes()),
            })
            .insert(Header {
                key: DLQ_HEADER_REASON,
                value: Some(l.reason.as_bytes()),
            })
            .insert(Header {
                key: DLQ_HEADER_SOURCE_TOPIC,
                value: Some(self.source_topic.as_bytes()),
            })
            .insert(Header {
                key: DLQ_HEADER_SOURCE_PARTITION,
                value: Some(partition.as_bytes()),
            })
            .insert(Header {
                key: DLQ_HEADER_SOURCE_OFFSET,
                value: Some(offset.as_bytes()),
            });
        let mut record: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(&self.topic)
            .payload(l.value.as_slice())
            .headers(headers);
        if let Some(k) = &l.key {
            record = record.key(k.as_slice());
        }
        let producer = self
            .producer
            .get_or_try_init(|| async { self.config.create::<FutureProducer>() })
            .await
            .map_err(|e| format!("creating the dead-letter producer: {e}"))?;
        producer
            .send(record, Duration::from_secs(5))
            .await
            .map(|_| ())
            .map_err(|(e, _)| e.to_string())
    }

    /// Flushes the producer (at shutdown), when a dead letter was ever written.
    pub(crate) fn flush(&self, timeout: Duration) {
        use rdkafka::producer::Producer;
        let Some(producer) = self.producer.get() else {
            return;
        };
        if let Err(e) = producer.flush(timeout) {
            tracing::warn!(error = %e, "flushing the dead-letter producer");
        }
    }
}
