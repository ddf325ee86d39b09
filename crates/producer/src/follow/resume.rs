//! `--follow` restarts after a crash without sending again what Kafka already stored.
//!
//! The checkpoint lags behind Kafka's acknowledgements (it is written at most every
//! [`CHECKPOINT_INTERVAL`](super::committer::CHECKPOINT_INTERVAL)), and records in flight at a SIGKILL may be stored
//! without ever being acknowledged. So the checkpoint also carries, per partition, an offset at
//! or before the first message of any record after it: the topic's high watermarks as read
//! (by [`Watermarks`], in the background) before the records after the checkpoint were sent. A
//! restart reads the partitions from there to their end ([`AlreadySent::read`]) and skips each
//! record after the checkpoint whose exact message (key and value) it finds there, in order:
//!
//! - Kafka keeps one key's messages in one partition in the order they were sent (idempotent
//!   producer), and `--follow` sends in file order, so the records of one key that were stored
//!   are the first ones of that key after the checkpoint. The first record of a key that is not
//!   found ends the skipping for that key: everything after it is sent, so nothing is skipped
//!   that Kafka does not have.
//! - Another producer's messages in between are passed over. A record skipped because another
//!   producer (or an earlier line) stored the very same message is an exact duplicate, which Loki
//!   drops anyway (same stream, timestamp and line).
//! - Whatever goes wrong (an older checkpoint without offsets, the broker unreachable, a tail
//!   longer than [`MAX_TAIL_MESSAGES`], a different encoding after an upgrade) falls back to
//!   sending everything after the checkpoint: at-least-once, never a loss.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};
use thiserror::Error;
use tokio_util::sync::CancellationToken;

use crate::kafka::SinkError;

/// Messages read from the topic's tail at most; beyond, the restart sends everything after the
/// checkpoint again (the tail is then not the second or so of traffic it should be).
pub(crate) const MAX_TAIL_MESSAGES: usize = 1_000_000;

/// Bytes of keys and values held from the tail at most (the producer's memory), likewise.
pub(crate) const MAX_TAIL_BYTES: usize = 32 * 1024 * 1024;

/// How often [`Watermarks`] reads the high watermarks.
pub(crate) const WATERMARK_INTERVAL: Duration = Duration::from_millis(500);

/// Bound on one metadata or watermark request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// A partition and an offset in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionOffset {
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
}

/// Reading the topic's tail failed; the restart sends everything after the checkpoint.
#[derive(Debug, Error)]
pub(crate) enum ResumeError {
    /// Kafka could not be asked.
    #[error("kafka: {0}")]
    Kafka(#[from] KafkaError),
    /// The tail is longer than [`MAX_TAIL_MESSAGES`] or [`MAX_TAIL_BYTES`].
    #[error(
        "more than {MAX_TAIL_MESSAGES} messages or {MAX_TAIL_BYTES} bytes after the checkpoint's offsets"
    )]
    TooLong,
    /// The partitions' ends were not reached in time.
    #[error("the end of partition {0} was not reached within {1:?}")]
    Timeout(i32, Duration),
}

/// The latest high watermarks of the topic, read every [`WATERMARK_INTERVAL`] on a thread of its
/// own. Each snapshot was read before it is handed out, so the offsets are at or before the
/// first message of anything sent afterwards.
pub(crate) struct Watermarks {
    latest: Arc<Mutex<Arc<Vec<PartitionOffset>>>>,
    stop: CancellationToken,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Watermarks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watermarks")
            .field("latest", &self.latest())
            .finish_non_exhaustive()
    }
}

impl Watermarks {
    /// Reads the watermarks once, then keeps them fresh until dropped. Without a first
    /// snapshot (Kafka unreachable, topic unknown) the checkpoints carry no offsets until one
    /// succeeds.
    pub(crate) fn start(client: &ClientConfig, topic: &str) -> Result<Self, KafkaError> {
        let consumer: BaseConsumer = client.create()?;
        let servers = client
            .get("bootstrap.servers")
            .unwrap_or_default()
            .to_owned();
        let first = read_watermarks(&consumer, topic, &servers).unwrap_or_else(|e| {
            tracing::warn!(error = %e, "cannot read the topic's watermarks yet");
            Vec::new()
        });
        let latest = Arc::new(Mutex::new(Arc::new(first)));
        let stop = CancellationToken::new();
        let thread = {
            let (latest, stop, topic) = (Arc::clone(&latest), stop.clone(), topic.to_owned());
            std::thread::Builder::new()
                .name("watermarks".into())
                .spawn(move || {
                    let mut next = Instant::now() + WATERMARK_INTERVAL;
                    while !stop.is_cancelled() {
                        if Instant::now() < next {
                            std::thread::sleep(Duration::from_millis(50));
                            continue;
                        }
                        next = Instant::now() + WATERMARK_INTERVAL;
                        match read_watermarks(&consumer, &topic, &servers) {
                            Ok(w) => {
                                *latest.lock().unwrap_or_else(PoisonError::into_inner) =
                                    Arc::new(w);
                            }
                            // The older snapshot stays: still at or before anything sent since.
                            Err(e) => tracing::debug!(error = %e, "watermarks not refreshed"),
                        }
                    }
                })
                .map_err(|e| KafkaError::ClientCreation(e.to_string()))?
        };
        Ok(Self {
            latest,
            stop,
            thread: Some(thread),
        })
    }

    /// The latest snapshot (empty when none was read yet).
    pub(crate) fn latest(&self) -> Arc<Vec<PartitionOffset>> {
        Arc::clone(&self.latest.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

impl Drop for Watermarks {
    fn drop(&mut self) {
        self.stop.cancel();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Every partition's high watermark (`servers` names the brokers in errors). (tansu 0.6.0
/// answers with the base offset of the last record batch plus one, at or before the real end:
/// still a valid starting point.)
fn read_watermarks(
    consumer: &BaseConsumer,
    topic: &str,
    servers: &str,
) -> Result<Vec<PartitionOffset>, SinkError> {
    crate::kafka::topic::partition_ids(consumer.client(), topic, servers, REQUEST_TIMEOUT)?
        .into_iter()
        .map(|partition| {
            let (_, high) = consumer
                .fetch_watermarks(topic, partition, REQUEST_TIMEOUT)
                .map_err(|source| SinkError::Unreachable {
                    servers: servers.to_owned(),
                    source,
                })?;
            Ok(PartitionOffset {
                partition,
                offset: high,
            })
        })
        .collect()
}

/// The messages Kafka stored after a checkpoint, by key, to skip the records they came from.
#[derive(Debug, Default)]
pub(crate) struct AlreadySent {
    /// Values per key, in the order Kafka stored them.
    by_key: HashMap<Vec<u8>, VecDeque<Vec<u8>>>,
    /// Keys with a record that was not found: nothing after it is skipped.
    diverged: HashSet<Vec<u8>>,
    /// Records still to look at before giving up.
    budget: u64,
    /// Records skipped so far.
    skipped: u64,
}

impl AlreadySent {
    /// Reads the partitions from `from` to their end. `in_flight_max` (the producer's queue
    /// bound) bounds how many records after the checkpoint can have been in flight, so how far
    /// into the input a stored message can be found.
    pub(crate) fn read(
        client: &ClientConfig,
        topic: &str,
        from: &[PartitionOffset],
        in_flight_max: u64,
        timeout: Duration,
    ) -> Result<Self, ResumeError> {
        let mut config = client.clone();
        config
            .set("group.id", "logpipe-producer-resume")
            .set("enable.auto.commit", "false")
            .set("enable.partition.eof", "true");
        let consumer: BaseConsumer = config.create()?;
        let mut tpl = TopicPartitionList::new();
        for p in from {
            tpl.add_partition_offset(topic, p.partition, Offset::Offset(p.offset))?;
        }
        consumer.assign(&tpl)?;
        let mut open: HashSet<i32> = from.iter().map(|p| p.partition).collect();
        let deadline = Instant::now() + timeout;
        let mut messages = Vec::new();
        let mut bytes = 0usize;
        while !open.is_empty() {
            if Instant::now() >= deadline {
                let p = open.iter().copied().min().unwrap_or_default();
                return Err(ResumeError::Timeout(p, timeout));
            }
            match consumer.poll(Duration::from_millis(100)) {
                None => {}
                Some(Err(KafkaError::PartitionEOF(p))) => {
                    open.remove(&p);
                }
                Some(Err(e)) => return Err(e.into()),
                Some(Ok(m)) => {
                    bytes += m.key_len() + m.payload_len();
                    if messages.len() >= MAX_TAIL_MESSAGES || bytes > MAX_TAIL_BYTES {
                        return Err(ResumeError::TooLong);
                    }
                    messages.push((
                        m.key().unwrap_or_default().to_vec(),
                        m.payload().unwrap_or_default().to_vec(),
                    ));
                }
            }
        }
        Ok(Self::from_messages(messages, in_flight_max))
    }

    /// From the stored messages (key, value) in partition order.
    pub(crate) fn from_messages(messages: Vec<(Vec<u8>, Vec<u8>)>, in_flight_max: u64) -> Self {
        let budget = messages.len() as u64 + in_flight_max;
        let mut by_key: HashMap<Vec<u8>, VecDeque<Vec<u8>>> = HashMap::new();
        for (key, value) in messages {
            by_key.entry(key).or_default().push_back(value);
        }
        Self {
            by_key,
            diverged: HashSet::new(),
            budget,
            skipped: 0,
        }
    }

    /// True when the next record after the checkpoint with this key and value is already in
    /// Kafka: do not send it again.
    pub(crate) fn take(&mut self, key: &[u8], value: &[u8]) -> bool {
        self.budget = self.budget.saturating_sub(1);
        if self.diverged.contains(key) {
            return false;
        }
        let Some(queue) = self.by_key.get_mut(key) else {
            self.diverged.insert(key.to_vec());
            return false;
        };
        match queue.iter().position(|v| v == value) {
            Some(i) => {
                queue.drain(..=i);
                if queue.is_empty() {
                    self.by_key.remove(key);
                }
                self.skipped += 1;
                true
            }
            None => {
                self.by_key.remove(key);
                self.diverged.insert(key.to_vec());
                false
            }
        }
    }

    /// True when no later record can be found any more: every stored message was matched or
    /// passed over, or more records were looked at than can have been in flight.
    pub(crate) fn is_done(&self) -> bool {
        self.by_key.is_empty() || self.budget == 0
    }

    /// Records skipped so far.
    pub(crate) fn skipped(&self) -> u64 {
        self.skipped
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msgs(list: &[(&str, &str)]) -> Vec<(Vec<u8>, Vec<u8>)> {
        list.iter()
            .map(|(k, v)| (k.as_bytes().to_vec(), v.as_bytes().to_vec()))
            .collect()
    }

    #[test]
    fn stored_records_are_skipped_in_order_and_the_rest_sent() {
        // Kafka has a1, a2 (key a) and b1 (key b); a3 and b2 were lost in flight.
        let mut s = AlreadySent::from_messages(msgs(&[("a", "1"), ("b", "1"), ("a", "2")]), 10);
        assert!(s.take(b"a", b"1"));
        assert!(s.take(b"b", b"1"));
        assert!(s.take(b"a", b"2"));
        assert!(s.is_done(), "every stored message matched");
        assert!(!s.take(b"a", b"3"));
        assert!(!s.take(b"b", b"2"));
        assert_eq!(s.skipped(), 3);
    }

    #[test]
    fn a_record_not_found_ends_skipping_for_its_key_only() {
        let mut s = AlreadySent::from_messages(msgs(&[("a", "1"), ("a", "3"), ("b", "1")]), 10);
        assert!(s.take(b"a", b"1"));
        // a2 is not there, so a3 (stored, but after a gap) is sent again: a duplicate, never a
        // skip of something Kafka lacks.
        assert!(!s.take(b"a", b"2"));
        assert!(!s.take(b"a", b"3"));
        assert!(s.take(b"b", b"1"));
        assert_eq!(s.skipped(), 2);
    }

    #[test]
    fn messages_before_the_checkpoint_and_of_other_producers_are_passed_over() {
        // The offsets are a lower bound: the tail starts with messages of records before the
        // checkpoint (x) and has another producer's (o) in between.
        let mut s = AlreadySent::from_messages(
            msgs(&[("a", "x"), ("a", "o"), ("a", "1"), ("a", "o2"), ("a", "2")]),
            10,
        );
        assert!(s.take(b"a", b"1"));
        assert!(s.take(b"a", b"2"));
        assert!(s.is_done());
    }

    #[test]
    fn a_key_without_stored_messages_is_sent() {
        let mut s = AlreadySent::from_messages(msgs(&[("a", "1")]), 10);
        assert!(!s.take(b"c", b"1"));
        assert!(!s.is_done(), "a's message may still come");
        assert!(s.take(b"a", b"1"));
    }

    #[test]
    fn looking_stops_after_what_can_have_been_in_flight() {
        // One stored message of another producer that never matches: after 1 + 3 records the
        // search ends instead of encoding every later record twice.
        let mut s = AlreadySent::from_messages(msgs(&[("a", "other")]), 3);
        for i in 0..3 {
            assert!(!s.is_done());
            assert!(!s.take(b"b", i.to_string().as_bytes()));
        }
        assert!(!s.is_done());
        assert!(!s.take(b"b", b"9"));
        assert!(s.is_done());
    }
}
