//! What Kafka holds, read with plain librdkafka clients (never the services' code): a group's
//! committed offsets, and every message of a topic with its partition and offset.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::ClientConfig;

use crate::error::{Error, Result};

/// How long one request to the broker may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// One message read back from a topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaMessage {
    /// Its partition.
    pub partition: i32,
    /// Its offset in the partition.
    pub offset: i64,
    /// Its value as text (lossy UTF-8).
    pub value: String,
}

/// The offsets `group` committed on `topic`, per partition (a partition without a commit is
/// absent). Runs the blocking client off the async runtime.
pub async fn committed_offsets(
    bootstrap: &str,
    group: &str,
    topic: &str,
    partitions: i32,
) -> Result<BTreeMap<i32, i64>> {
    let (bootstrap, group, topic) = (bootstrap.to_owned(), group.to_owned(), topic.to_owned());
    tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &bootstrap)
            .set("group.id", &group)
            .set("enable.auto.commit", "false")
            .create()
            .map_err(Error::kafka("cannot create a client for committed offsets"))?;
        let mut list = TopicPartitionList::new();
        for partition in 0..partitions {
            list.add_partition(&topic, partition);
        }
        let committed = consumer
            .committed_offsets(list, REQUEST_TIMEOUT)
            .map_err(Error::kafka(format!("committed offsets of group {group}")))?;
        Ok(committed
            .elements()
            .iter()
            .filter_map(|element| match element.offset() {
                Offset::Offset(offset) => Some((element.partition(), offset)),
                _ => None,
            })
            .collect())
    })
    .await
    .map_err(|error| Error::Invalid(format!("committed-offsets task failed: {error}")))?
}

/// Every message of `topic`: reads each partition from its start until at least `at_least`
/// messages arrived and then nothing more for a second, sorted by partition and offset.
///
/// The end is found by reading, not from the high watermarks: tansu 0.6.0 answers ListOffsets
/// (latest) with the base offset of the partition's last record batch plus one, not the offset
/// after its last record (measured: 100 records in one lz4 batch, then 30 in another → 101).
pub async fn read_topic(
    bootstrap: &str,
    topic: &str,
    at_least: usize,
    timeout: Duration,
) -> Result<Vec<KafkaMessage>> {
    let (bootstrap, topic) = (bootstrap.to_owned(), topic.to_owned());
    tokio::task::spawn_blocking(move || read_topic_blocking(&bootstrap, &topic, at_least, timeout))
        .await
        .map_err(|error| Error::Invalid(format!("topic reader task failed: {error}")))?
}

/// How long a topic read waits for more messages once it has the expected count.
const QUIET: Duration = Duration::from_secs(1);

fn read_topic_blocking(
    bootstrap: &str,
    topic: &str,
    at_least: usize,
    timeout: Duration,
) -> Result<Vec<KafkaMessage>> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        // Assigned, not subscribed: the group id is required but never joins or commits.
        .set("group.id", format!("e2e-reader-{topic}"))
        .set("enable.auto.commit", "false")
        .create()
        .map_err(Error::kafka("cannot create a topic reader"))?;
    let metadata = consumer
        .fetch_metadata(Some(topic), REQUEST_TIMEOUT)
        .map_err(Error::kafka(format!("metadata of topic {topic}")))?;
    let partitions = metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .map(|t| t.partitions().len() as i32)
        .unwrap_or(0);
    if partitions == 0 {
        return Err(Error::Invalid(format!("topic {topic} has no partitions")));
    }
    let mut list = TopicPartitionList::new();
    for partition in 0..partitions {
        list.add_partition_offset(topic, partition, Offset::Beginning)
            .map_err(Error::kafka("cannot build an assignment"))?;
    }
    consumer
        .assign(&list)
        .map_err(Error::kafka(format!("cannot assign {topic}")))?;
    let deadline = Instant::now() + timeout;
    let mut out = Vec::new();
    let mut last_message = Instant::now();
    loop {
        let now = Instant::now();
        if out.len() >= at_least && now.duration_since(last_message) >= QUIET {
            break;
        }
        if now >= deadline {
            return Err(Error::Timeout {
                what: format!("{at_least} messages in topic {topic}"),
                timeout,
                last: format!("{} read", out.len()),
            });
        }
        // Errors (a broker restarting) and empty polls: keep polling until the deadline.
        if let Some(Ok(message)) = consumer.poll(Duration::from_millis(100)) {
            last_message = Instant::now();
            out.push(KafkaMessage {
                partition: message.partition(),
                offset: message.offset(),
                value: String::from_utf8_lossy(message.payload().unwrap_or_default()).into_owned(),
            });
        }
    }
    out.sort_by_key(|m| (m.partition, m.offset));
    Ok(out)
}
