//! The Kafka side (DESIGN.md, "Kafka message" and "Delivery semantics"): the [`Sink`], a
//! librdkafka producer with `acks=all` and idempotence ([`client`]), whose delivery reports
//! settle per-chunk [`delivery::Tracker`]s ([`delivery`]), served by a polling thread
//! or by the sending thread itself ([`polling`]); and the topic's partitions and start-up check
//! ([`topic`]).

pub(crate) mod client;
pub(crate) mod delivery;
pub(crate) mod polling;
pub(crate) mod topic;

use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::OwnedHeaders;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use thiserror::Error;

use self::delivery::{DeliveryContext, Tracker};
use self::polling::{InlinePolling, PollingThread};
use crate::config::ProducerConfig;

/// A failure talking to Kafka outside the per-record path.
#[derive(Debug, Error)]
pub enum SinkError {
    /// The client could not be created (bad librdkafka setting).
    #[error("cannot create the kafka client: {0}")]
    Client(#[source] KafkaError),
    /// Metadata could not be fetched (broker unreachable).
    #[error("cannot reach kafka at {servers}: {source}")]
    Unreachable {
        /// The bootstrap servers.
        servers: String,
        /// The client error.
        source: KafkaError,
    },
    /// The topic does not exist and creating it was not asked for.
    #[error("kafka topic `{0}` does not exist; create it or start with --create-topic (KAFKA_CREATE_TOPIC=true)")]
    TopicMissing(String),
    /// The delivery-report polling thread could not be started.
    #[error("cannot start the kafka polling thread: {0}")]
    PollThread(#[source] std::io::Error),
    /// Creating the topic failed.
    #[error("cannot create kafka topic `{topic}`: {reason}")]
    CreateTopic {
        /// The topic.
        topic: String,
        /// Why.
        reason: String,
    },
}

/// Why one record could not be enqueued.
#[derive(Debug, Error)]
pub(crate) enum SendError {
    /// The producer's queue is full: wait for acknowledgements and retry.
    #[error("kafka producer queue is full")]
    QueueFull,
    /// The record is larger than `message.max.bytes`; it will never be accepted.
    #[error("message of {0} bytes is larger than kafka_message_max_bytes")]
    TooLarge(usize),
    /// Any other refusal by the client.
    #[error("kafka client refused the message: {0}")]
    Other(#[source] KafkaError),
}

impl SendError {
    /// The `ingestion_errors_total{stage="kafka"}` reason.
    pub(crate) fn reason(&self) -> &'static str {
        match self {
            SendError::QueueFull => "queue_full",
            SendError::TooLarge(_) => "message_too_large",
            SendError::Other(_) => "delivery_failed",
        }
    }
}

/// Steps in which [`Sink::flush`] serves delivery reports and checks what is in flight.
const FLUSH_STEP: Duration = Duration::from_millis(1);

/// The Kafka producer of the service: every source's records go in through one dispatcher
/// each, and delivery reports come back to the trackers of their chunks.
pub struct Sink {
    // Declared first: the polling thread stops (and is joined) before the producer goes.
    polling: PollingThread,
    producer: Arc<BaseProducer<DeliveryContext>>,
    topic: String,
    headers: OwnedHeaders,
    servers: String,
    queue_max: usize,
}

impl std::fmt::Debug for Sink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sink")
            .field("topic", &self.topic)
            .field("servers", &self.servers)
            .finish_non_exhaustive()
    }
}

impl Sink {
    /// Creates the producer and its polling thread (does not contact the brokers yet).
    pub fn new(config: &ProducerConfig) -> Result<Self, SinkError> {
        let producer: BaseProducer<DeliveryContext> = client::client_config(config)
            .create_with_context(DeliveryContext::default())
            .map_err(SinkError::Client)?;
        let producer = Arc::new(producer);
        let polling = PollingThread::start(Arc::clone(&producer)).map_err(SinkError::PollThread)?;
        Ok(Self {
            polling,
            producer,
            topic: config.kafka.topic.clone(),
            headers: client::record_headers(),
            servers: config.kafka.bootstrap_servers.clone(),
            queue_max: config.kafka_queue_max_messages as usize,
        })
    }

    /// The topic records go to.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Records handed to librdkafka and not yet settled.
    pub fn in_flight(&self) -> usize {
        usize::try_from(self.producer.context().in_flight()).unwrap_or(usize::MAX)
    }

    /// The queue capacity in messages.
    pub(crate) fn queue_max(&self) -> usize {
        self.queue_max
    }

    /// Enqueues one record (`key`, `value`) for `tracker`. On error the tracker is unchanged.
    pub(crate) fn send(
        &self,
        key: &[u8],
        value: &[u8],
        tracker: &Arc<Tracker>,
    ) -> Result<(), SendError> {
        tracker.enqueue();
        self.producer.context().handing_over();
        let record = BaseRecord::with_opaque_to(&self.topic, Arc::clone(tracker))
            .key(key)
            .payload(value)
            .headers(self.headers.clone());
        match self.producer.send(record) {
            Ok(()) => Ok(()),
            Err((e, _)) => {
                self.producer.context().refused();
                tracker.unenqueue();
                Err(match e.rdkafka_error_code() {
                    Some(RDKafkaErrorCode::QueueFull) => SendError::QueueFull,
                    Some(RDKafkaErrorCode::MessageSizeTooLarge) => SendError::TooLarge(value.len()),
                    _ => SendError::Other(e),
                })
            }
        }
    }

    /// Serves delivery reports on the calling thread for `timeout` (rdkafka's poll keeps serving
    /// until then; zero serves what is there now).
    pub(crate) fn poll(&self, timeout: Duration) {
        self.producer.poll(timeout);
    }

    /// Takes delivery reports over from the polling thread until the guard drops (the thread
    /// stops serving them within 20 ms): the caller must then call [`Sink::poll`] often (every
    /// few milliseconds). Messages are freed where they are polled, so a sending thread that
    /// polls itself frees what it allocated.
    pub(crate) fn poll_inline(&self) -> InlinePolling<'_> {
        self.polling.inline()
    }

    /// Waits (blocking) until everything in flight settled or `timeout` passed; returns what is
    /// still in flight.
    pub(crate) fn flush(&self, timeout: Duration) -> usize {
        let deadline = Instant::now() + timeout;
        // A flush without waiting sends what lingers at once. Then serve delivery reports here
        // (alongside the polling thread, or instead of it while a caller polls inline) until
        // nothing is in flight: rdkafka's blocking flush would wait in 100 ms steps, so a
        // `--once` run that ends with everything acknowledged would still wait up to 100 ms.
        let _ = self.producer.flush(Duration::ZERO);
        loop {
            let left = self.in_flight();
            if left == 0 {
                return 0;
            }
            let now = Instant::now();
            if now >= deadline {
                tracing::warn!(records = left, "kafka flush did not finish");
                return left;
            }
            self.producer.poll(FLUSH_STEP.min(deadline - now));
        }
    }

    /// Checks (blocking) that the brokers answer and the topic exists; returns its partition
    /// count.
    pub fn check_topic(&self, timeout: Duration) -> Result<usize, SinkError> {
        topic::partition_ids(self.producer.client(), &self.topic, &self.servers, timeout)
            .map(|ids| ids.len())
    }
}
