//! Reading a whole Kafka topic back with a plain librdkafka client (never the services' code):
//! every message of every partition, with its partition, offset, key, value and headers.
//!
//! The end of a partition is found by reading, never from the high watermark alone: tansu 0.6.0
//! answers ListOffsets (latest) with the base offset of the partition's last record batch plus
//! one, not the offset after its last record (measured: 100 records in one lz4 batch, then 30 in
//! another → 101), so the later records of a multi-record batch lie beyond it.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Headers;
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};

/// How long one metadata or watermark request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// How long one poll of the reader waits for a message.
const POLL_TIMEOUT: Duration = Duration::from_millis(100);

/// How long a [`ReadUntil::Quiet`] read waits for more messages once it has the expected count.
pub const QUIET: Duration = Duration::from_secs(1);

/// A topic could not be read to its end.
#[derive(Debug, thiserror::Error)]
pub enum TopicError {
    /// A Kafka client operation failed.
    #[error("{action}: {source}")]
    Kafka {
        /// What was being done.
        action: String,
        /// The client's error.
        #[source]
        source: KafkaError,
    },
    /// The topic has no partitions (or does not exist).
    #[error("topic {topic:?} has no partitions (does it exist?)")]
    NoPartitions {
        /// The topic.
        topic: String,
    },
    /// The end was not reached in time.
    #[error("topic {topic:?}: read {read} records, not to the end within {within:?}; {detail}")]
    Timeout {
        /// The topic.
        topic: String,
        /// How many records were read.
        read: usize,
        /// How long the read was given.
        within: Duration,
        /// What the end was waiting for.
        detail: String,
    },
    /// The blocking reader task failed (panicked or was cancelled).
    #[error("topic reader task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

impl TopicError {
    fn kafka(action: impl Into<String>) -> impl FnOnce(KafkaError) -> Self {
        let action = action.into();
        move |source| Self::Kafka { action, source }
    }
}

/// One message of a topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicRecord {
    /// Its partition.
    pub partition: i32,
    /// Its offset in the partition.
    pub offset: i64,
    /// Its key (empty when it has none).
    pub key: Vec<u8>,
    /// Its value (empty for a tombstone).
    pub value: Vec<u8>,
    /// Its headers, in order (a header without a value has an empty one).
    pub headers: Vec<(String, Vec<u8>)>,
}

impl TopicRecord {
    /// The value as text (lossy UTF-8).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.value).into_owned()
    }

    /// The value of the first header named `name`, as text (lossy UTF-8).
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
    }
}

/// Where a read of a topic ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadUntil {
    /// At least `at_least` messages arrived and then none for [`QUIET`]: for a topic that may
    /// still be written to (a consumer's dead letters, a producer still sending).
    Quiet {
        /// How many messages must have arrived.
        at_least: usize,
    },
    /// Every partition reported its end (partition EOF) at or past the high watermark it had
    /// when the read began: for a topic whose writes were all acknowledged before the read, so
    /// that nothing acknowledged is missed, however few records there are.
    HighWatermarks,
}

/// Every message of `topic`, in partition and offset order, read from the start of each
/// partition until `until`; fails when that takes longer than `within`. Runs the blocking client
/// off the async runtime.
pub async fn read_topic(
    bootstrap: &str,
    topic: &str,
    until: ReadUntil,
    within: Duration,
) -> Result<Vec<TopicRecord>, TopicError> {
    let (bootstrap, topic) = (bootstrap.to_owned(), topic.to_owned());
    tokio::task::spawn_blocking(move || read_blocking(&bootstrap, &topic, until, within)).await?
}

/// How far the read of one partition got.
#[derive(Debug, Clone, Copy)]
struct Progress {
    /// The next offset to read.
    next: i64,
    /// With [`ReadUntil::HighWatermarks`]: the high watermark when the read began.
    high: Option<i64>,
    /// The client reported the end of the partition at or past `high`.
    done: bool,
}

fn read_blocking(
    bootstrap: &str,
    topic: &str,
    until: ReadUntil,
    within: Duration,
) -> Result<Vec<TopicRecord>, TopicError> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        // Assigned, not subscribed: the group id is required but never joins or commits.
        .set("group.id", format!("testkit-reader-{topic}"))
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "true")
        // Few, large fetches: tansu 0.6.0 with SQLite storage serves old records slowly
        // (measured: 14,000 records of 250 bytes read in 28 s with librdkafka's 1 MiB per
        // partition, 21 s with these; in memory storage, 0.9 s).
        .set("max.partition.fetch.bytes", "67108864")
        .set("fetch.max.bytes", "134217728")
        .create()
        .map_err(TopicError::kafka("cannot create a topic reader"))?;
    let metadata = consumer
        .fetch_metadata(Some(topic), REQUEST_TIMEOUT)
        .map_err(TopicError::kafka(format!(
            "cannot fetch metadata of {topic:?}"
        )))?;
    let partitions: Vec<i32> = metadata
        .topics()
        .iter()
        .filter(|t| t.name() == topic && t.error().is_none())
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    if partitions.is_empty() {
        return Err(TopicError::NoPartitions {
            topic: topic.to_owned(),
        });
    }
    let mut progress: BTreeMap<i32, Progress> = BTreeMap::new();
    let mut assignment = TopicPartitionList::new();
    for p in partitions {
        let (start, next, high) = match until {
            ReadUntil::Quiet { .. } => (Offset::Beginning, 0, None),
            ReadUntil::HighWatermarks => {
                let (low, high) = consumer
                    .fetch_watermarks(topic, p, REQUEST_TIMEOUT)
                    .map_err(TopicError::kafka(format!(
                        "cannot fetch watermarks of {topic}/{p}"
                    )))?;
                (Offset::Offset(low), low, Some(high))
            }
        };
        progress.insert(
            p,
            Progress {
                next,
                high,
                done: false,
            },
        );
        assignment
            .add_partition_offset(topic, p, start)
            .map_err(TopicError::kafka("cannot build the assignment"))?;
    }
    consumer
        .assign(&assignment)
        .map_err(TopicError::kafka(format!("cannot assign {topic:?}")))?;
    let deadline = Instant::now() + within;
    let mut records = Vec::new();
    let mut last_message = Instant::now();
    // The client's last error, for the timeout's message (it retries them itself).
    let mut last_error: Option<String> = None;
    loop {
        let now = Instant::now();
        let at_end = match until {
            ReadUntil::Quiet { at_least } => {
                records.len() >= at_least && now.duration_since(last_message) >= QUIET
            }
            ReadUntil::HighWatermarks => progress.values().all(|p| p.done),
        };
        if at_end {
            break;
        }
        if now >= deadline {
            let detail = match until {
                ReadUntil::Quiet { at_least } => {
                    format!("wanted at least {at_least}, then {QUIET:?} without any")
                }
                ReadUntil::HighWatermarks => format!("per partition: {progress:?}"),
            };
            let detail = match &last_error {
                Some(e) => format!("{detail}; last client error: {e}"),
                None => detail,
            };
            return Err(TopicError::Timeout {
                topic: topic.to_owned(),
                read: records.len(),
                within,
                detail,
            });
        }
        match consumer.poll(POLL_TIMEOUT) {
            Some(Ok(m)) => {
                last_message = Instant::now();
                let Some(p) = progress.get_mut(&m.partition()) else {
                    continue;
                };
                // A message the client delivered again (after a reconnect) is read once.
                if m.offset() < p.next {
                    continue;
                }
                p.next = m.offset() + 1;
                records.push(TopicRecord {
                    partition: m.partition(),
                    offset: m.offset(),
                    key: m.key().unwrap_or_default().to_vec(),
                    value: m.payload().unwrap_or_default().to_vec(),
                    headers: m
                        .headers()
                        .map(|h| {
                            h.iter()
                                .map(|x| (x.key.to_owned(), x.value.unwrap_or_default().to_vec()))
                                .collect()
                        })
                        .unwrap_or_default(),
                });
            }
            Some(Err(KafkaError::PartitionEOF(partition))) => {
                if let Some(p) = progress.get_mut(&partition) {
                    p.done = p.high.is_some_and(|high| p.next >= high);
                }
            }
            // Errors (a broker restarting) are retried by the client; the deadline bounds the
            // wait.
            Some(Err(e)) => last_error = Some(e.to_string()),
            None => {}
        }
    }
    records.sort_by_key(|r| (r.partition, r.offset));
    Ok(records)
}
