//! Reading a Kafka topic back to its end and producing test records into one.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};

use crate::Error;

/// How long one metadata or watermark request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// One message of a topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicRecord {
    /// Its partition.
    pub partition: i32,
    /// Its offset.
    pub offset: i64,
    /// Its key (empty when it has none).
    pub key: Vec<u8>,
    /// Its value (empty for a tombstone).
    pub value: Vec<u8>,
}

impl TopicRecord {
    /// The value as text (lossy UTF-8).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.value).into_owned()
    }
}

/// Every message of `topic`, in partition and offset order: each partition is read from its
/// low watermark until the client reports its end (partition EOF) at or past the high watermark
/// it had when the read began. Fails when that takes longer than `within`.
///
/// The high watermark alone is not trusted as the end: tansu 0.6 reports the base offset of a
/// partition's last record batch plus one, so the later records of a multi-record batch lie
/// beyond it (seen: three records acknowledged, watermarks summing to two).
pub async fn read_to_end(
    bootstrap: &str,
    topic: &str,
    within: Duration,
) -> Result<Vec<TopicRecord>, Error> {
    let (bootstrap, topic) = (bootstrap.to_owned(), topic.to_owned());
    tokio::task::spawn_blocking(move || read_blocking(&bootstrap, &topic, within))
        .await
        .map_err(|e| Error::Topic {
            topic: String::new(),
            detail: format!("reader task failed: {e}"),
        })?
}

/// How far the read of one partition got.
#[derive(Debug, Clone, Copy)]
struct Progress {
    /// The next offset to read.
    next: i64,
    /// The high watermark when the read began: the end is not before it.
    high: i64,
    /// The client reported the end of the partition at or past `high`.
    done: bool,
}

fn read_blocking(
    bootstrap: &str,
    topic: &str,
    within: Duration,
) -> Result<Vec<TopicRecord>, Error> {
    let topic_error = |detail: String| Error::Topic {
        topic: topic.to_owned(),
        detail,
    };
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", format!("logpipe-security-reader-{topic}"))
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "true")
        .create()
        .map_err(Error::kafka("cannot create a topic reader"))?;
    let metadata = consumer
        .fetch_metadata(Some(topic), REQUEST_TIMEOUT)
        .map_err(Error::kafka(format!("cannot fetch metadata of {topic:?}")))?;
    let partitions: Vec<i32> = metadata
        .topics()
        .iter()
        .filter(|t| t.name() == topic && t.error().is_none())
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    if partitions.is_empty() {
        return Err(topic_error("has no partitions (does it exist?)".to_owned()));
    }
    let mut progress: BTreeMap<i32, Progress> = BTreeMap::new();
    let mut assignment = TopicPartitionList::new();
    for p in partitions {
        let (low, high) = consumer
            .fetch_watermarks(topic, p, REQUEST_TIMEOUT)
            .map_err(Error::kafka(format!(
                "cannot fetch watermarks of {topic}/{p}"
            )))?;
        progress.insert(
            p,
            Progress {
                next: low,
                high,
                done: false,
            },
        );
        assignment
            .add_partition_offset(topic, p, Offset::Offset(low))
            .map_err(Error::kafka("cannot build the assignment"))?;
    }
    consumer
        .assign(&assignment)
        .map_err(Error::kafka("cannot assign the partitions"))?;
    let mut records = Vec::new();
    let deadline = Instant::now() + within;
    while progress.values().any(|p| !p.done) {
        if Instant::now() >= deadline {
            return Err(topic_error(format!(
                "read {} records, not to the end within {within:?}; per partition: {progress:?}",
                records.len()
            )));
        }
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                let Some(p) = progress.get_mut(&m.partition()) else {
                    continue;
                };
                if m.offset() < p.next {
                    continue;
                }
                p.next = m.offset() + 1;
                records.push(TopicRecord {
                    partition: m.partition(),
                    offset: m.offset(),
                    key: m.key().unwrap_or_default().to_vec(),
                    value: m.payload().unwrap_or_default().to_vec(),
                });
            }
            Some(Err(KafkaError::PartitionEOF(partition))) => {
                if let Some(p) = progress.get_mut(&partition) {
                    p.done = p.next >= p.high;
                }
            }
            // Transient fetch errors are retried by the client; the deadline bounds the wait.
            Some(Err(_)) | None => {}
        }
    }
    records.sort_by_key(|r| (r.partition, r.offset));
    Ok(records)
}

/// Sends `records` (key, value) to `topic` with `headers`, through a producer built from
/// `config`, and returns once the broker acknowledged every one.
pub async fn produce(
    config: &ClientConfig,
    topic: &str,
    headers: &[(&str, &str)],
    records: &[(String, String)],
) -> Result<(), Error> {
    let producer: FutureProducer = config
        .clone()
        .set("acks", "all")
        .create()
        .map_err(Error::kafka("cannot create a test producer"))?;
    for (key, value) in records {
        let mut owned = OwnedHeaders::new();
        for (name, v) in headers {
            owned = owned.insert(Header {
                key: name,
                value: Some(*v),
            });
        }
        producer
            .send(
                FutureRecord::to(topic)
                    .key(key)
                    .payload(value)
                    .headers(owned),
                Duration::from_secs(30),
            )
            .await
            .map_err(|(e, _)| Error::Kafka {
                action: format!("cannot produce to {topic:?}"),
                source: e,
            })?;
    }
    Ok(())
}
