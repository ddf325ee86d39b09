//! The Kafka side (DESIGN.md, "Kafka message" and "Delivery semantics"): a librdkafka producer
//! with `acks=all` and idempotence, and delivery accounting without a future per record: every
//! message carries an `Arc<`[`Tracker`]`>` of its chunk (a file chunk or one HTTP request) as its
//! delivery opaque, and the delivery callback only bumps the tracker's atomic counters, waking
//! waiters once when the sealed chunk is settled.
//!
//! Delivery reports are served by the sink's polling thread, except while a sending thread takes
//! them over ([`Sink::poll_inline`]): a file read at full speed polls between its batches, so
//! librdkafka frees each message on the thread that allocated it instead of handing every
//! allocation across threads (with mimalloc that cut the producer's CPU by a few percent and
//! kept its memory flat when the queue is large).

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::ClientContext;
use thiserror::Error;
use tokio::sync::Notify;

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
pub enum SendError {
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
    pub fn reason(&self) -> &'static str {
        match self {
            SendError::QueueFull => "queue_full",
            SendError::TooLarge(_) => "message_too_large",
            SendError::Other(_) => "delivery_failed",
        }
    }

    /// True when retrying later can succeed.
    pub fn is_retriable(&self) -> bool {
        matches!(self, SendError::QueueFull)
    }
}

/// Delivery accounting of one chunk of records: counters bumped by the delivery callback, and
/// a wake-up (async and blocking) once the chunk is sealed and every record settled.
#[derive(Debug)]
pub struct Tracker {
    enqueued: AtomicU64,
    delivered: AtomicU64,
    delivered_bytes: AtomicU64,
    failed: AtomicU64,
    too_large: AtomicU64,
    sealed: AtomicBool,
    first_error: Mutex<Option<String>>,
    created: Instant,
    notify: Notify,
    lock: Mutex<()>,
    cond: Condvar,
}

/// A settled chunk's counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Settled {
    /// Records handed to Kafka.
    pub enqueued: u64,
    /// Records Kafka acknowledged.
    pub delivered: u64,
    /// Value bytes Kafka acknowledged.
    pub delivered_bytes: u64,
    /// Records that failed for good (delivery timeout or another permanent error).
    pub failed: u64,
    /// Records the broker refused as too large.
    pub too_large: u64,
}

impl Default for Tracker {
    fn default() -> Self {
        Self {
            enqueued: AtomicU64::new(0),
            delivered: AtomicU64::new(0),
            delivered_bytes: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            too_large: AtomicU64::new(0),
            sealed: AtomicBool::new(false),
            first_error: Mutex::new(None),
            created: Instant::now(),
            notify: Notify::new(),
            lock: Mutex::new(()),
            cond: Condvar::new(),
        }
    }
}

impl Tracker {
    /// A new, open tracker.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Records enqueued so far.
    pub fn enqueued(&self) -> u64 {
        self.enqueued.load(Ordering::SeqCst)
    }

    /// Time since the tracker was created (the chunk's first enqueue, roughly).
    pub fn age(&self) -> Duration {
        self.created.elapsed()
    }

    /// Declares that no more records will be added.
    pub fn seal(&self) {
        self.sealed.store(true, Ordering::SeqCst);
        if self.is_settled() {
            self.wake();
        }
    }

    /// True when sealed and every enqueued record was acknowledged or failed.
    pub fn is_settled(&self) -> bool {
        self.sealed.load(Ordering::SeqCst)
            && self.delivered.load(Ordering::SeqCst)
                + self.failed.load(Ordering::SeqCst)
                + self.too_large.load(Ordering::SeqCst)
                == self.enqueued.load(Ordering::SeqCst)
    }

    /// The counts so far.
    pub fn counts(&self) -> Settled {
        Settled {
            enqueued: self.enqueued.load(Ordering::SeqCst),
            delivered: self.delivered.load(Ordering::SeqCst),
            delivered_bytes: self.delivered_bytes.load(Ordering::SeqCst),
            failed: self.failed.load(Ordering::SeqCst),
            too_large: self.too_large.load(Ordering::SeqCst),
        }
    }

    /// The first delivery error seen, for the log line.
    pub fn first_error(&self) -> String {
        self.first_error
            .lock()
            .ok()
            .and_then(|e| e.clone())
            .unwrap_or_default()
    }

    /// Waits (async) until settled.
    pub async fn settled(&self) -> Settled {
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.is_settled() {
                return self.counts();
            }
            notified.await;
        }
    }

    /// Waits (blocking) until settled or `deadline`; true when settled.
    pub fn wait_until(&self, deadline: Instant) -> bool {
        let Ok(mut guard) = self.lock.lock() else {
            return self.is_settled();
        };
        loop {
            if self.is_settled() {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            let wait = (deadline - now).min(Duration::from_millis(100));
            guard = match self.cond.wait_timeout(guard, wait) {
                Ok((g, _)) => g,
                Err(_) => return self.is_settled(),
            };
        }
    }

    fn settle(&self, counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::SeqCst);
        if self.is_settled() {
            self.wake();
        }
    }

    fn wake(&self) {
        self.notify.notify_waiters();
        let _guard = self.lock.lock();
        self.cond.notify_all();
    }

    fn note_error(&self, e: &KafkaError) {
        if let Ok(mut first) = self.first_error.lock() {
            if first.is_none() {
                *first = Some(e.to_string());
            }
        }
    }
}

/// The producer context: routes delivery reports to the record's [`Tracker`].
#[derive(Debug, Default)]
pub struct DeliveryContext;

impl ClientContext for DeliveryContext {}

impl ProducerContext for DeliveryContext {
    type DeliveryOpaque = Arc<Tracker>;

    fn delivery(&self, result: &DeliveryResult<'_>, tracker: Arc<Tracker>) {
        match result {
            Ok(message) => {
                let len = message.payload_len() as u64;
                tracker.delivered_bytes.fetch_add(len, Ordering::SeqCst);
                tracker.settle(&tracker.delivered);
            }
            Err((e, _)) => {
                tracker.note_error(e);
                if is_too_large(e) {
                    tracker.settle(&tracker.too_large);
                } else {
                    tracker.settle(&tracker.failed);
                }
            }
        }
    }
}

fn is_too_large(e: &KafkaError) -> bool {
    matches!(
        e.rdkafka_error_code(),
        Some(RDKafkaErrorCode::MessageSizeTooLarge | RDKafkaErrorCode::InvalidMessageSize)
    )
}

/// The polling thread's state: whether to stop, and how many threads poll inline.
#[derive(Debug, Default)]
struct Polling {
    stop: AtomicBool,
    inline: AtomicUsize,
}

impl Polling {
    fn run(&self, producer: &BaseProducer<DeliveryContext>) {
        while !self.stop.load(Ordering::Relaxed) {
            if self.inline.load(Ordering::Relaxed) > 0 {
                std::thread::sleep(INLINE_CHECK);
            } else {
                producer.poll(POLL_STEP);
            }
        }
    }
}

/// How long the polling thread waits for delivery reports at a time (rdkafka's poll serves
/// reports until then): an inline poller takes over within this time.
const POLL_STEP: Duration = Duration::from_millis(20);
/// How often the polling thread checks whether inline polling ended.
const INLINE_CHECK: Duration = Duration::from_millis(5);

/// See [`Sink::poll_inline`].
#[derive(Debug)]
pub struct InlinePolling<'a> {
    sink: &'a Sink,
}

impl Drop for InlinePolling<'_> {
    fn drop(&mut self) {
        self.sink.polling.inline.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.polling.stop.store(true, Ordering::Relaxed);
        if let Some(poller) = self.poller.take() {
            let _ = poller.join();
        }
    }
}

/// Steps in which [`Sink::flush`] serves delivery reports and checks what is in flight.
const FLUSH_STEP: Duration = Duration::from_millis(1);

/// The Kafka producer of the service.
pub struct Sink {
    producer: Arc<BaseProducer<DeliveryContext>>,
    polling: Arc<Polling>,
    poller: Option<std::thread::JoinHandle<()>>,
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

/// The librdkafka settings every client of the producer shares (the producer and the admin
/// client of the topic check): brokers, client id and the security settings
/// (`kafka_extra_properties`, `kafka_sasl_password`).
pub fn base_client_config(config: &ProducerConfig) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &config.kafka_bootstrap_servers)
        .set("client.id", "logpipe-producer");
    // Validated at load; an entry that is not key=value cannot reach here.
    if let Ok(pairs) =
        service::config::key_value_pairs("kafka_extra_properties", &config.kafka_extra_properties)
    {
        for (k, v) in pairs {
            c.set(k, v);
        }
    }
    if !config.kafka_sasl_password.is_empty() {
        c.set("sasl.password", config.kafka_sasl_password.expose());
    }
    c
}

/// The librdkafka settings of the producer (shared with the raw benchmark baseline): the
/// [`base_client_config`], then the delivery settings, which extra properties cannot weaken.
pub fn client_config(config: &ProducerConfig) -> ClientConfig {
    let mut c = base_client_config(config);
    c.set("acks", "all")
        .set("enable.idempotence", "true")
        .set("compression.codec", &config.kafka_compression)
        .set("linger.ms", config.kafka_linger.as_millis().to_string())
        .set(
            "queue.buffering.max.messages",
            config.kafka_queue_max_messages.to_string(),
        )
        .set(
            "queue.buffering.max.kbytes",
            config.kafka_queue_max_kbytes.to_string(),
        )
        .set(
            "message.max.bytes",
            config.kafka_message_max_bytes.to_string(),
        )
        .set(
            "delivery.timeout.ms",
            config.kafka_delivery_timeout.as_millis().to_string(),
        )
        .set("allow.auto.create.topics", "false");
    c
}

impl Sink {
    /// Creates the producer (does not contact the brokers yet).
    pub fn new(config: &ProducerConfig) -> Result<Self, SinkError> {
        let producer: BaseProducer<DeliveryContext> = client_config(config)
            .create_with_context(DeliveryContext)
            .map_err(SinkError::Client)?;
        let producer = Arc::new(producer);
        let polling = Arc::new(Polling::default());
        let poller = {
            let producer = Arc::clone(&producer);
            let polling = Arc::clone(&polling);
            std::thread::Builder::new()
                .name("producer polling".into())
                .spawn(move || polling.run(&producer))
                .map_err(SinkError::PollThread)?
        };
        Ok(Self {
            producer,
            polling,
            poller: Some(poller),
            topic: config.kafka_topic.clone(),
            headers: record_headers(),
            servers: config.kafka_bootstrap_servers.clone(),
            queue_max: config.kafka_queue_max_messages as usize,
        })
    }

    /// The topic records go to.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// The queue capacity in messages.
    pub fn queue_max(&self) -> usize {
        self.queue_max
    }

    /// Enqueues one record (`key`, `value`) for `tracker`. On error the tracker is unchanged.
    pub fn send(&self, key: &[u8], value: &[u8], tracker: &Arc<Tracker>) -> Result<(), SendError> {
        tracker.enqueued.fetch_add(1, Ordering::SeqCst);
        let record = BaseRecord::with_opaque_to(&self.topic, Arc::clone(tracker))
            .key(key)
            .payload(value)
            .headers(self.headers.clone());
        match self.producer.send(record) {
            Ok(()) => Ok(()),
            Err((e, _)) => {
                tracker.enqueued.fetch_sub(1, Ordering::SeqCst);
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
    pub fn poll(&self, timeout: Duration) {
        self.producer.poll(timeout);
    }

    /// Takes delivery reports over from the polling thread until the guard drops (the thread
    /// stops serving them within 20 ms): the caller must then call [`Sink::poll`] often (every
    /// few milliseconds). Messages are freed where they are polled, so a sending thread that
    /// polls itself frees what it allocated.
    pub fn poll_inline(&self) -> InlinePolling<'_> {
        self.polling.inline.fetch_add(1, Ordering::SeqCst);
        InlinePolling { sink: self }
    }

    /// Records handed to librdkafka and not yet settled.
    pub fn in_flight(&self) -> usize {
        usize::try_from(self.producer.in_flight_count()).unwrap_or(0)
    }

    /// Waits (blocking) until everything in flight settled or `timeout` passed; returns what is
    /// still in flight.
    pub fn flush(&self, timeout: Duration) -> usize {
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

    /// Checks (blocking) that the brokers answer and the topic exists with partitions.
    pub fn check_topic(&self, timeout: Duration) -> Result<usize, SinkError> {
        topic_partitions(self.producer.client(), &self.topic, &self.servers, timeout)
    }
}

fn topic_partitions<C: ClientContext>(
    client: &rdkafka::client::Client<C>,
    topic: &str,
    servers: &str,
    timeout: Duration,
) -> Result<usize, SinkError> {
    partition_ids(client, topic, servers, timeout).map(|ids| ids.len())
}

/// The ids of the topic's partitions, from metadata (`servers` names the brokers in errors).
pub(crate) fn partition_ids<C: ClientContext>(
    client: &rdkafka::client::Client<C>,
    topic: &str,
    servers: &str,
    timeout: Duration,
) -> Result<Vec<i32>, SinkError> {
    let md = client
        .fetch_metadata(Some(topic), timeout)
        .map_err(|source| SinkError::Unreachable {
            servers: servers.to_owned(),
            source,
        })?;
    match md.topics().iter().find(|t| t.name() == topic) {
        Some(t) if t.error().is_none() && !t.partitions().is_empty() => {
            Ok(t.partitions().iter().map(|p| p.id()).collect())
        }
        _ => Err(SinkError::TopicMissing(topic.to_owned())),
    }
}

/// The headers every record carries ([`schema::kafka::RECORD_HEADERS`]).
pub fn record_headers() -> OwnedHeaders {
    let mut h = OwnedHeaders::new_with_capacity(schema::kafka::RECORD_HEADERS.len());
    for (key, value) in schema::kafka::RECORD_HEADERS {
        h = h.insert(Header {
            key,
            value: Some(value),
        });
    }
    h
}

/// Makes sure the topic exists: checks metadata, and when it is missing creates it with the
/// configured partitions if `create` is true, or fails with [`SinkError::TopicMissing`].
pub async fn ensure_topic(config: &ProducerConfig, create: bool) -> Result<(), SinkError> {
    let admin: AdminClient<DefaultClientContext> = base_client_config(config)
        .create()
        .map_err(SinkError::Client)?;
    let admin = Arc::new(admin);
    let topic = config.kafka_topic.clone();
    let servers = config.kafka_bootstrap_servers.clone();
    let check = {
        let admin = Arc::clone(&admin);
        let topic = topic.clone();
        let servers = servers.clone();
        move || topic_partitions(admin.inner(), &topic, &servers, Duration::from_secs(10))
    };
    match tokio::task::spawn_blocking(check.clone()).await {
        Ok(Ok(_)) => return Ok(()),
        Ok(Err(SinkError::TopicMissing(_))) if create => {}
        Ok(Err(e)) => return Err(e),
        Err(e) => {
            return Err(SinkError::CreateTopic {
                topic,
                reason: e.to_string(),
            })
        }
    }
    let new = NewTopic::new(
        &topic,
        config.kafka_topic_partitions,
        TopicReplication::Fixed(config.kafka_topic_replication),
    );
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    let results = admin
        .create_topics([&new], &opts)
        .await
        .map_err(|e| SinkError::CreateTopic {
            topic: topic.clone(),
            reason: e.to_string(),
        })?;
    for r in results {
        match r {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((_, code)) => {
                return Err(SinkError::CreateTopic {
                    topic: topic.clone(),
                    reason: code.to_string(),
                })
            }
        }
    }
    tracing::info!(topic = %topic, partitions = config.kafka_topic_partitions, "kafka topic created");
    // Metadata can lag creation by a moment.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match tokio::task::spawn_blocking(check.clone()).await {
            Ok(Ok(_)) => return Ok(()),
            Ok(Err(e)) if Instant::now() >= deadline => return Err(e),
            _ => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tracker_settles_only_when_sealed_and_every_record_is_back() {
        let t = Tracker::new();
        t.enqueued.fetch_add(2, Ordering::SeqCst);
        t.settle(&t.delivered);
        assert!(!t.is_settled());
        t.settle(&t.failed);
        assert!(!t.is_settled(), "not sealed yet");
        t.seal();
        assert!(t.is_settled());
        assert!(t.wait_until(Instant::now()));
        let c = t.counts();
        assert_eq!((c.enqueued, c.delivered, c.failed), (2, 1, 1));
    }

    #[tokio::test]
    async fn an_async_waiter_wakes_when_the_last_record_settles() {
        let t = Tracker::new();
        t.enqueued.fetch_add(1, Ordering::SeqCst);
        t.seal();
        let waiter = tokio::spawn({
            let t = Arc::clone(&t);
            async move { t.settled().await }
        });
        tokio::task::yield_now().await;
        let t2 = Arc::clone(&t);
        std::thread::spawn(move || t2.settle(&t2.delivered))
            .join()
            .unwrap();
        let got = tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(got.delivered, 1);
    }

    fn secured() -> ProducerConfig {
        ProducerConfig {
            kafka_extra_properties: vec![
                "security.protocol=SASL_SSL".into(),
                "sasl.mechanism=SCRAM-SHA-512".into(),
                "sasl.username=logpipe".into(),
                // An extra property cannot weaken the delivery guarantees.
                "acks=1".into(),
            ],
            kafka_sasl_password: service::config::Secret::new("s4sl-pw"),
            ..ProducerConfig::default()
        }
    }

    #[test]
    fn every_client_carries_the_security_settings_and_the_producer_keeps_acks_all() {
        let config = secured();
        for (what, c) in [
            ("base", base_client_config(&config)),
            ("producer", client_config(&config)),
        ] {
            assert_eq!(c.get("security.protocol"), Some("SASL_SSL"), "{what}");
            assert_eq!(c.get("sasl.mechanism"), Some("SCRAM-SHA-512"), "{what}");
            assert_eq!(c.get("sasl.username"), Some("logpipe"), "{what}");
            assert_eq!(c.get("sasl.password"), Some("s4sl-pw"), "{what}");
        }
        assert_eq!(client_config(&config).get("acks"), Some("all"));
        assert_eq!(ProducerConfig::default().kafka_extra_properties.len(), 0);
        assert_eq!(
            base_client_config(&ProducerConfig::default()).get("sasl.password"),
            None
        );
    }

    #[test]
    fn a_sasl_ssl_scram_client_can_be_created() {
        // Fails with "OpenSSL not available at build time" when rdkafka is built without `ssl`.
        // Creating the client does not contact the brokers.
        if let Err(e) = Sink::new(&secured()) {
            panic!("{e}");
        }
        let admin: Result<AdminClient<DefaultClientContext>, _> =
            base_client_config(&secured()).create();
        if let Err(e) = admin {
            panic!("{e}");
        }
    }

    #[test]
    fn the_headers_are_the_schema_headers() {
        use rdkafka::message::Headers;
        let h = record_headers();
        assert_eq!(h.count(), 2);
        assert_eq!(h.get(0).key, "schema-version");
        assert_eq!(h.get(0).value, Some(&b"1"[..]));
        assert_eq!(h.get(1).key, "content-type");
        assert_eq!(h.get(1).value, Some(&b"application/json"[..]));
    }
}
