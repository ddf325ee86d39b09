//! Reading ranges of a topic's partitions with an assigned consumer that joins no group (the
//! redrive's start and resume checks, the audit's reads): where each partition really ends, the
//! offsets at a time, and every message between two offsets.
//!
//! The end of a partition is found by reading, not from the high watermark alone: tansu 0.6.0
//! answers ListOffsets (latest) with the base offset of the partition's last record batch plus
//! one (measured, see `crates/testkit/src/topic.rs`), so the later records of a multi-record
//! batch lie beyond it. A real Kafka's high watermark is exact, and reading from the offset
//! before it costs one message.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::BorrowedMessage;
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use thiserror::Error;
use tokio_util::sync::CancellationToken;

/// How long one metadata, watermark or offset request may take.
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// How long one poll waits for a message.
const POLL_TIMEOUT: Duration = Duration::from_millis(100);

/// A read that sees no message and no end of partition for this long has stalled.
const STALL_TIMEOUT: Duration = Duration::from_secs(60);

/// A topic could not be read.
#[derive(Debug, Error)]
pub enum ScanError {
    /// A Kafka client operation failed.
    #[error("{action}: {source}")]
    Kafka {
        /// What was being done.
        action: String,
        /// The client's error.
        source: KafkaError,
    },
    /// The topic has no partitions (or does not exist).
    #[error("topic {0:?} does not exist or has no partitions")]
    NoPartitions(String),
    /// Nothing arrived for a long time while messages were expected.
    #[error("reading {topic:?}: no progress for {STALL_TIMEOUT:?}; partitions still open: {open}")]
    Stalled {
        /// The topic.
        topic: String,
        /// Partitions not read to their end, each with where the read stood (next offset, end,
        /// high watermarks at the start and now, the client's position).
        open: String,
    },
    /// The read was cancelled (a signal).
    #[error("reading {0:?} was interrupted")]
    Cancelled(String),
}

impl ScanError {
    pub(crate) fn kafka(action: impl Into<String>) -> impl FnOnce(KafkaError) -> Self {
        let action = action.into();
        move |source| Self::Kafka { action, source }
    }
}

/// The offsets of a partition that hold messages: `low..end`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Bounds {
    /// The oldest offset still held (retention deletes below it).
    pub(crate) low: i64,
    /// The offset after the last message.
    pub(crate) end: i64,
}

/// What to do after a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Visit {
    /// Go on.
    Continue,
    /// This partition is done: read no more of it.
    StopPartition,
}

/// Client callbacks of the command-line tools' consumers: the end of a partition, which the
/// readers ask for, is not an error worth a log line; other client errors are warnings (the
/// client retries them).
#[derive(Debug, Default)]
pub(crate) struct ToolContext;

impl ClientContext for ToolContext {
    fn error(&self, error: KafkaError, reason: &str) {
        let end_of_partition = matches!(
            error,
            KafkaError::PartitionEOF(_) | KafkaError::Global(RDKafkaErrorCode::PartitionEOF)
        );
        if !end_of_partition {
            tracing::warn!(error = %error, reason, "kafka client error");
        }
    }
}

impl ConsumerContext for ToolContext {}

/// A group-less reader of one topic.
pub(crate) struct Scanner {
    consumer: BaseConsumer<ToolContext>,
    topic: String,
}

impl std::fmt::Debug for Scanner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scanner")
            .field("topic", &self.topic)
            .finish_non_exhaustive()
    }
}

impl Scanner {
    /// A reader of `topic` with the client settings `base` (bootstrap servers, security).
    pub(crate) fn new(base: &ClientConfig, topic: &str) -> Result<Self, ScanError> {
        let mut c = base.clone();
        // Assigned, never subscribed: the group id is required by the client but never joins
        // a group or commits.
        c.set("group.id", "logpipe-scan")
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            // A start below the low watermark (deleted by retention) reads from the oldest
            // message held, not from the end.
            .set("auto.offset.reset", "earliest")
            .set("enable.partition.eof", "true");
        let consumer: BaseConsumer<ToolContext> = c
            .create_with_context(ToolContext)
            .map_err(ScanError::kafka(format!("creating a reader of {topic:?}")))?;
        Ok(Self {
            consumer,
            topic: topic.to_owned(),
        })
    }

    /// The topic's partitions, in order; an error when it has none.
    pub(crate) fn partitions(&self) -> Result<Vec<i32>, ScanError> {
        let md = self
            .consumer
            .fetch_metadata(Some(&self.topic), REQUEST_TIMEOUT)
            .map_err(ScanError::kafka(format!(
                "fetching metadata of {:?}",
                self.topic
            )))?;
        let mut parts: Vec<i32> = md
            .topics()
            .iter()
            .filter(|t| t.name() == self.topic && t.error().is_none())
            .flat_map(|t| t.partitions().iter().map(|p| p.id()))
            .collect();
        parts.sort_unstable();
        if parts.is_empty() {
            return Err(ScanError::NoPartitions(self.topic.clone()));
        }
        Ok(parts)
    }

    /// The low and high watermarks of a partition (the high one may lie inside the last batch
    /// on tansu; see the module documentation).
    pub(crate) fn watermarks(&self, partition: i32) -> Result<(i64, i64), ScanError> {
        self.consumer
            .fetch_watermarks(&self.topic, partition, REQUEST_TIMEOUT)
            .map_err(ScanError::kafka(format!(
                "fetching the watermarks of {}/{partition}",
                self.topic
            )))
    }

    /// Where each partition's messages start and end now, the end found by reading the last
    /// batch.
    pub(crate) fn bounds(
        &self,
        partitions: &[i32],
        cancel: &CancellationToken,
    ) -> Result<BTreeMap<i32, Bounds>, ScanError> {
        let mut out = BTreeMap::new();
        let mut tail = BTreeMap::new();
        for &p in partitions {
            let (low, high) = self.watermarks(p)?;
            out.insert(p, Bounds { low, end: high });
            if high > low {
                tail.insert(p, (high - 1, i64::MAX));
            }
        }
        self.read(&tail, cancel, |m| {
            if let Some(b) = out.get_mut(&m.partition()) {
                b.end = b.end.max(m.offset() + 1);
            }
            Visit::Continue
        })?;
        Ok(out)
    }

    /// The earliest offset of each partition whose message was written at or after `ms`
    /// (milliseconds since the epoch); `None` when the broker knows none (a real Kafka then
    /// means "none yet"; tansu may answer 0, so callers treat the answer as a lower bound).
    pub(crate) fn offsets_at(
        &self,
        partitions: &[i32],
        ms: i64,
    ) -> Result<BTreeMap<i32, Option<i64>>, ScanError> {
        let mut tpl = TopicPartitionList::new();
        for &p in partitions {
            tpl.add_partition_offset(&self.topic, p, Offset::Offset(ms))
                .map_err(ScanError::kafka("building an offsets-for-times request"))?;
        }
        let answer = self
            .consumer
            .offsets_for_times(tpl, REQUEST_TIMEOUT)
            .map_err(ScanError::kafka(format!(
                "looking up offsets of {:?} by time",
                self.topic
            )))?;
        Ok(answer
            .elements()
            .iter()
            .map(|e| {
                let offset = match e.offset() {
                    Offset::Offset(o) if o >= 0 => Some(o),
                    _ => None,
                };
                (e.partition(), offset)
            })
            .collect())
    }

    /// Reads every message of `ranges` (partition → `start..end`, `end` exclusive; `i64::MAX`
    /// reads to the partition's end as found by reading), calling `visit` for each. A partition
    /// is finished at its end, when `visit` says so, or when the client reports the end of the
    /// partition at or past its high watermark (offsets without messages, e.g. transaction
    /// markers, cannot hold the read up).
    pub(crate) fn read<F>(
        &self,
        ranges: &BTreeMap<i32, (i64, i64)>,
        cancel: &CancellationToken,
        mut visit: F,
    ) -> Result<(), ScanError>
    where
        F: FnMut(&BorrowedMessage<'_>) -> Visit,
    {
        let mut open: BTreeMap<i32, Open> = BTreeMap::new();
        let mut assignment = TopicPartitionList::new();
        for (&p, &(start, end)) in ranges {
            if start >= end {
                continue;
            }
            let (low, high) = self.watermarks(p)?;
            open.insert(
                p,
                Open {
                    next: start,
                    end,
                    high,
                },
            );
            assignment
                .add_partition_offset(&self.topic, p, Offset::Offset(fetch_from(start, low, high)))
                .map_err(ScanError::kafka("building an assignment"))?;
        }
        if open.is_empty() {
            return Ok(());
        }
        self.consumer
            .assign(&assignment)
            .map_err(ScanError::kafka(format!("assigning {:?}", self.topic)))?;
        // A partition paused at the end of an earlier read stays paused through a new
        // assignment (librdkafka keeps the flag on the partition).
        self.consumer
            .resume(&assignment)
            .map_err(ScanError::kafka(format!("resuming {:?}", self.topic)))?;
        let result = self.drain(&mut open, cancel, &mut visit);
        // The reader is used again for other ranges; what is left assigned would keep fetching.
        let _ = self.consumer.unassign();
        result
    }

    fn drain<F>(
        &self,
        open: &mut BTreeMap<i32, Open>,
        cancel: &CancellationToken,
        visit: &mut F,
    ) -> Result<(), ScanError>
    where
        F: FnMut(&BorrowedMessage<'_>) -> Visit,
    {
        let mut last_progress = Instant::now();
        while !open.is_empty() {
            if cancel.is_cancelled() {
                return Err(ScanError::Cancelled(self.topic.clone()));
            }
            if last_progress.elapsed() >= STALL_TIMEOUT {
                return Err(ScanError::Stalled {
                    topic: self.topic.clone(),
                    open: self.describe(open),
                });
            }
            match self.consumer.poll(POLL_TIMEOUT) {
                Some(Ok(m)) => {
                    last_progress = Instant::now();
                    let p = m.partition();
                    let Some(o) = open.get_mut(&p) else { continue };
                    // A message the client delivered again (after a reconnect) is read
                    // once; one past the end is not read at all.
                    if m.offset() < o.next {
                        continue;
                    }
                    if m.offset() >= o.end {
                        self.close(open, p);
                        continue;
                    }
                    o.next = m.offset() + 1;
                    let stop = visit(&m) == Visit::StopPartition;
                    if stop || o.next >= o.end {
                        self.close(open, p);
                    }
                }
                Some(Err(KafkaError::PartitionEOF(p))) => {
                    last_progress = Instant::now();
                    if open.get(&p).is_some_and(|o| o.next >= o.high) {
                        self.close(open, p);
                    }
                }
                // Errors (a broker restarting) are retried by the client; the stall
                // timeout bounds the wait.
                Some(Err(_)) | None => {}
            }
        }
        Ok(())
    }

    /// Where the read of each open partition stands, for the stall error.
    fn describe(&self, open: &BTreeMap<i32, Open>) -> String {
        let positions = self.consumer.position().ok();
        open.iter()
            .map(|(&p, o)| {
                let now = self
                    .watermarks(p)
                    .map_or_else(|e| format!("unknown ({e})"), |(_, high)| high.to_string());
                let position = positions
                    .as_ref()
                    .and_then(|l| l.find_partition(&self.topic, p))
                    .map_or_else(|| "none".to_owned(), |e| format!("{:?}", e.offset()));
                let end = if o.end == i64::MAX {
                    "its end".to_owned()
                } else {
                    o.end.to_string()
                };
                format!(
                    "{p} (next offset {}, reading to {end}, high watermark {} at the start and \
                     {now} now, client position {position})",
                    o.next, o.high
                )
            })
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn close(&self, open: &mut BTreeMap<i32, Open>, p: i32) {
        open.remove(&p);
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition(&self.topic, p);
        // Stops prefetching what will not be read; a failure only costs bandwidth.
        let _ = self.consumer.pause(&tpl);
    }
}

/// Where to fetch a read that starts at `start` from, given the partition's watermarks. A start
/// at or past tansu's high watermark (the base of the last batch plus one: see the module
/// documentation) lies inside the last batch, and a fetch from there gets no answer at all
/// (tansu has nothing "after" its watermark): the read then starts at the last batch's base and
/// skips what lies before `start`. Elsewhere, and on a real Kafka, `start` itself.
fn fetch_from(start: i64, low: i64, high: i64) -> i64 {
    if start >= high && high > low {
        high - 1
    } else {
        start
    }
}

/// A partition being read.
struct Open {
    /// The next offset to read.
    next: i64,
    /// The offset to stop before.
    end: i64,
    /// The high watermark when the read began.
    high: i64,
}

/// The offsets `group` has committed on `partitions` of `topic` (`None`: nothing committed),
/// read without joining the group.
pub(crate) fn committed_offsets(
    base: &ClientConfig,
    group: &str,
    topic: &str,
    partitions: &[i32],
) -> Result<BTreeMap<i32, Option<i64>>, ScanError> {
    let mut c = base.clone();
    c.set("group.id", group).set("enable.auto.commit", "false");
    let consumer: BaseConsumer = c.create().map_err(ScanError::kafka(
        "creating a client to read committed offsets",
    ))?;
    let mut tpl = TopicPartitionList::new();
    for &p in partitions {
        tpl.add_partition(topic, p);
    }
    // The group coordinator can be slow to answer while a group rebalances: ask a few times.
    let mut attempt = 0;
    let list = loop {
        match consumer.committed_offsets(tpl.clone(), REQUEST_TIMEOUT) {
            Ok(list) => break list,
            Err(e) if attempt < 3 => {
                attempt += 1;
                tracing::warn!(error = %e, group, topic, "committed offsets not answered; asking again");
            }
            Err(e) => {
                return Err(ScanError::kafka(format!(
                    "reading the offsets group {group:?} committed on {topic:?}"
                ))(e))
            }
        }
    };
    Ok(list
        .elements()
        .iter()
        .filter(|e| e.topic() == topic)
        .map(|e| {
            let offset = match e.offset() {
                Offset::Offset(o) if o >= 0 => Some(o),
                _ => None,
            };
            (e.partition(), offset)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
    use testkit::broker::{Broker, BrokerOptions};

    use super::*;

    #[test]
    fn a_read_starts_at_the_last_batch_base_only_when_it_starts_past_the_watermark() {
        assert_eq!(fetch_from(5, 0, 10), 5);
        assert_eq!(fetch_from(9, 0, 10), 9);
        // tansu: watermark 961 is the last batch's base (960) plus one; 961..968 lie inside it.
        assert_eq!(fetch_from(961, 0, 961), 960);
        assert_eq!(fetch_from(963, 0, 961), 960);
        // An empty partition has no batch to start from.
        assert_eq!(fetch_from(0, 0, 0), 0);
        assert_eq!(fetch_from(7, 7, 7), 7);
    }

    /// The redrive's takeover stalled for 60 s in CI (twice) reading its main topic from the
    /// watermark: on tansu a fetch from there, inside the last batch, is never answered.
    #[tokio::test(flavor = "multi_thread")]
    async fn a_read_from_the_watermark_inside_tansus_last_batch_gets_every_record_after_it() {
        let broker = Broker::start(BrokerOptions::memory())
            .await
            .expect("tansu starts");
        let topic = testkit::broker::unique_name("scan");
        broker.create_topic(&topic, 1).await.expect("topic");
        let config = broker.client_config();
        let topic_name = topic.clone();
        tokio::task::spawn_blocking(move || {
            // Eight records in one batch.
            let producer: BaseProducer = config
                .clone()
                .set("linger.ms", "200")
                .create()
                .expect("producer");
            for i in 0..8 {
                let value = format!("record {i}");
                producer
                    .send(BaseRecord::<(), _>::to(&topic_name).payload(&value))
                    .expect("queued");
            }
            producer.flush(Duration::from_secs(10)).expect("flushed");

            let scanner = Scanner::new(&config, &topic_name).expect("scanner");
            let cancel = CancellationToken::new();
            let (_, high) = scanner.watermarks(0).expect("watermarks");
            let bounds = scanner.bounds(&[0], &cancel).expect("bounds");
            assert_eq!(
                bounds[&0].end, 8,
                "the end is found by reading the last batch"
            );
            // tansu reports a high watermark inside the last batch: the case this is about.
            assert!(
                high < 8,
                "watermark {high}: not inside the batch, nothing is tested"
            );
            // From the watermark to the end, as the redrive's resume check reads.
            let mut seen = Vec::new();
            let ranges = BTreeMap::from([(0, (high, 8))]);
            scanner
                .read(&ranges, &cancel, |m| {
                    seen.push(m.offset());
                    Visit::Continue
                })
                .expect("the read finishes");
            assert_eq!(seen, (high..8).collect::<Vec<_>>(), "watermark {high}");
        })
        .await
        .expect("the blocking part ran");
    }
}
