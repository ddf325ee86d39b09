//! Batching per label set (one Loki stream per batch, so a stream that is rate-limited or
//! rejected never holds up the others): flush on records, bytes or age (defaults 10,000 /
//! 1 MiB / 1 s, like Promtail). Every entry carries the Kafka position it came from, so its
//! offset can be released exactly when Loki (or the dead-letter topic) has it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rustc_hash::FxHashMap;
use schema::loki::encoded::EncodedEntries;

use crate::offsets::Generation;
use crate::tenants::Tenant;

/// A batch's stream: its tenant and its label set (tenant index in the high 32 bits, the label
/// set's stream id in the low ones), so one tenant's records never share a batch with another's.
pub(crate) type StreamKey = u64;

/// The key of `stream` of `tenant`.
pub(crate) fn stream_key(tenant: &Tenant, stream: crate::labels::StreamId) -> StreamKey {
    (u64::from(tenant.index) << 32) | u64::from(stream)
}

/// Where a record came from: what must be acknowledged to release its offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Held {
    /// Kafka partition.
    pub(crate) partition: i32,
    /// Assignment generation of the partition when the record was read.
    pub(crate) generation: Generation,
    /// Kafka offset.
    pub(crate) offset: i64,
}

/// One record's entry, as the batcher takes it: it is encoded at once into its stream's batch.
#[derive(Debug, Clone)]
pub(crate) struct NewEntry<'a, M> {
    /// The record's timestamp, ns since the epoch.
    pub(crate) nanos: i64,
    /// The line.
    pub(crate) line: &'a str,
    /// Structured metadata pairs.
    pub(crate) metadata: M,
    /// Where the record came from.
    pub(crate) held: Held,
    /// Its Kafka timestamp (ms), for the batch's due time and the latency metric.
    pub(crate) kafka_ms: Option<i64>,
}

/// Entries of one stream waiting to be pushed.
#[derive(Debug)]
pub(crate) struct Batch {
    /// The stream's label selector.
    pub(crate) labels: Arc<str>,
    /// The stream's tenant.
    pub(crate) tenant: Arc<Tenant>,
    /// The entries, encoded, each with the Kafka position it came from.
    pub(crate) entries: EncodedEntries<Held>,
    /// Kafka timestamp (ms) of the oldest message, for the end-to-end latency metric.
    pub(crate) oldest_kafka_ms: Option<i64>,
    started: Instant,
    /// When the batch must be pushed: the maximum wait after its oldest record's Kafka
    /// timestamp, at least half the wait after it opened (see [`Batcher::add`]).
    due: Instant,
}

impl Batch {
    fn new(labels: Arc<str>, tenant: Arc<Tenant>, max_wait: Duration, room: Room) -> Self {
        let started = Instant::now();
        Self {
            labels,
            tenant,
            entries: EncodedEntries::with_capacity(room.bytes, room.entries),
            oldest_kafka_ms: None,
            started,
            due: started + max_wait,
        }
    }

    /// Brings the due time forward for a record produced `age` ago: the maximum wait counts
    /// from production (the Kafka timestamp), so time spent in the producer's linger and in
    /// the broker's fetch wait is not added on top of it. It never comes earlier than half
    /// the wait after the batch opened, so a backlog of old records (catching up, or a
    /// producer clock behind ours) still leaves the batches time to fill.
    fn due_for_age(&mut self, age: Duration, max_wait: Duration) {
        let by_production = self.started + max_wait.saturating_sub(age);
        let floor = self.started + max_wait / 2;
        self.due = self.due.min(by_production.max(floor));
    }

    /// Number of entries.
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when empty.
    pub(crate) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The entries' size (what counts against the batch and buffer limits).
    pub(crate) fn bytes(&self) -> usize {
        self.entries.bytes()
    }
}

/// How big a stream's last batch was: its next one starts with that much room.
#[derive(Debug, Clone, Copy, Default)]
struct Room {
    bytes: usize,
    entries: usize,
}

/// Open batches by stream.
#[derive(Debug)]
pub(crate) struct Batcher {
    open: FxHashMap<StreamKey, Batch>,
    /// Per stream, the size of its last batch.
    room: FxHashMap<StreamKey, Room>,
    /// Entries and bytes in open batches.
    pending_records: usize,
    pending_bytes: usize,
    max_records: usize,
    max_bytes: usize,
    max_wait: Duration,
}

impl Batcher {
    /// A batcher with the flush thresholds.
    pub(crate) fn new(max_records: usize, max_bytes: usize, max_wait: Duration) -> Self {
        Self {
            open: FxHashMap::default(),
            room: FxHashMap::default(),
            pending_records: 0,
            pending_bytes: 0,
            max_records,
            max_bytes,
            max_wait,
        }
    }

    /// Adds an entry to `stream`'s batch (opening it with `labels` and `tenant` when none is
    /// open); returns the entry's size and the stream's batch when it reached a size threshold.
    pub(crate) fn add<'m, M>(
        &mut self,
        stream: StreamKey,
        (labels, tenant): (&Arc<str>, &Arc<Tenant>),
        entry: NewEntry<'_, M>,
    ) -> (usize, Option<Batch>)
    where
        M: IntoIterator<Item = (&'m str, &'m str)> + Clone,
    {
        let max_wait = self.max_wait;
        let room = &self.room;
        let batch = self.open.entry(stream).or_insert_with(|| {
            let room = room.get(&stream).copied().unwrap_or_default();
            Batch::new(labels.clone(), tenant.clone(), max_wait, room)
        });
        // A single entry bigger than the byte limit still goes out alone.
        let size = batch
            .entries
            .push(entry.nanos, entry.line, entry.metadata, entry.held);
        self.pending_records += 1;
        self.pending_bytes += size;
        if let Some(ts) = entry.kafka_ms {
            if batch.oldest_kafka_ms.is_none_or(|o| ts < o) {
                batch.oldest_kafka_ms = Some(ts);
                batch.due_for_age(age_of(ts), max_wait);
            }
        }
        if batch.len() >= self.max_records || batch.bytes() >= self.max_bytes {
            return (size, self.remove(stream));
        }
        (size, None)
    }

    /// Entries in open batches.
    pub(crate) fn pending_records(&self) -> usize {
        self.pending_records
    }

    /// Bytes in open batches.
    pub(crate) fn pending_bytes(&self) -> usize {
        self.pending_bytes
    }

    /// Removes the largest open batches until at most `records` entries and `bytes` bytes stay
    /// open. With many streams no single batch may reach a size threshold before the buffer
    /// is full; flushing the biggest ones early keeps records moving instead of pausing
    /// consumption until the age threshold.
    pub(crate) fn take_largest(&mut self, records: usize, bytes: usize) -> Vec<Batch> {
        let mut out = Vec::new();
        while self.pending_records > records || self.pending_bytes > bytes {
            let Some(largest) = self
                .open
                .iter()
                .max_by_key(|(_, b)| b.bytes())
                .map(|(k, _)| *k)
            else {
                break;
            };
            out.extend(self.remove(largest));
        }
        out
    }

    fn remove(&mut self, stream: StreamKey) -> Option<Batch> {
        let batch = self.open.remove(&stream)?;
        self.room.insert(
            stream,
            Room {
                bytes: batch.entries.encoded_len(),
                entries: batch.len(),
            },
        );
        self.pending_records -= batch.len();
        self.pending_bytes -= batch.bytes();
        Some(batch)
    }

    /// Removes and returns the batches that are due: their oldest record was produced at
    /// least the maximum wait ago (or, without a Kafka timestamp, the batch opened that long
    /// ago).
    pub(crate) fn take_aged(&mut self, now: Instant) -> Vec<Batch> {
        let aged: Vec<StreamKey> = self
            .open
            .iter()
            .filter(|(_, b)| now >= b.due)
            .map(|(k, _)| *k)
            .collect();
        aged.into_iter().filter_map(|k| self.remove(k)).collect()
    }

    /// Removes and returns every open batch.
    pub(crate) fn take_all(&mut self) -> Vec<Batch> {
        self.pending_records = 0;
        self.pending_bytes = 0;
        self.open.drain().map(|(_, b)| b).collect()
    }

    /// When the oldest open batch becomes due, if any.
    #[cfg(test)]
    fn next_due(&self) -> Option<Instant> {
        self.open.values().map(|b| b.due).min()
    }
}

/// How long ago a Kafka timestamp (ms since the epoch) was; zero for one in the future.
fn age_of(kafka_ms: i64) -> Duration {
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    Duration::from_millis(now_ms.saturating_sub(kafka_ms).max(0) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An entry of `line` at `ts`.
    fn e(ts: i64, line: &str) -> (i64, String) {
        (ts, line.to_owned())
    }

    /// Adds an entry to the stream whose labels are `labels` (its id is the labels' last byte
    /// but two, enough for these tests).
    fn add(
        b: &mut Batcher,
        labels: &Arc<str>,
        (ts, line): (i64, String),
        held: Held,
        kafka_ms: Option<i64>,
    ) -> Option<Batch> {
        let stream = StreamKey::from(labels.as_bytes()[labels.len().saturating_sub(3)]);
        let metrics = crate::metrics::Metrics::new(&prometheus::Registry::new(), "g", "t", false)
            .expect("metrics register");
        let tenants =
            crate::tenants::Tenants::new(&crate::config::ConsumerConfig::default(), metrics);
        let entry = NewEntry {
            nanos: ts,
            line: &line,
            metadata: [],
            held,
            kafka_ms,
        };
        b.add(stream, (labels, tenants.default_tenant()), entry).1
    }

    fn h(offset: i64) -> Held {
        Held {
            partition: 0,
            generation: 1,
            offset,
        }
    }

    #[test]
    fn flushes_a_stream_at_its_record_limit_only() {
        let mut b = Batcher::new(2, 1 << 20, Duration::from_secs(60));
        let a: Arc<str> = Arc::from("{a=\"1\"}");
        let c: Arc<str> = Arc::from("{a=\"2\"}");
        assert!(add(&mut b, &a, e(1, "x"), h(0), None).is_none());
        assert!(add(&mut b, &c, e(1, "x"), h(1), None).is_none());
        let full = add(&mut b, &a, e(2, "y"), h(2), Some(5)).unwrap();
        assert_eq!(full.len(), 2);
        assert_eq!(full.entries.tags(), [h(0), h(2)]);
        assert_eq!(b.take_all().len(), 1);
    }

    #[test]
    fn flushes_at_the_byte_limit() {
        let mut b = Batcher::new(100, 100, Duration::from_secs(60));
        let a: Arc<str> = Arc::from("{}");
        assert!(add(&mut b, &a, e(1, &"x".repeat(50)), h(0), None).is_none());
        assert!(add(&mut b, &a, e(1, &"x".repeat(50)), h(1), None).is_some());
    }

    #[test]
    fn the_largest_batches_are_taken_until_the_pending_bounds_hold() {
        let mut b = Batcher::new(1000, 1 << 20, Duration::from_secs(60));
        let streams: Vec<Arc<str>> = ["{a=\"1\"}", "{a=\"2\"}", "{a=\"3\"}"]
            .into_iter()
            .map(Arc::from)
            .collect();
        // Stream i gets i+1 entries: 1, 2 and 3.
        let mut offset = 0;
        for (i, s) in streams.iter().enumerate() {
            for _ in 0..=i {
                assert!(add(&mut b, s, e(offset, "x"), h(offset), None).is_none());
                offset += 1;
            }
        }
        assert_eq!(b.pending_records(), 6);
        let per_entry = b.pending_bytes() / 6;
        let taken = b.take_largest(3, usize::MAX);
        assert_eq!(
            taken.len(),
            1,
            "the 3-entry stream alone brings 6 down to 3"
        );
        assert_eq!(&*taken[0].labels, "{a=\"3\"}");
        assert_eq!((b.pending_records(), b.pending_bytes()), (3, 3 * per_entry));
        let taken = b.take_largest(0, per_entry);
        assert_eq!(taken.len(), 2);
        assert_eq!((b.pending_records(), b.pending_bytes()), (0, 0));
        assert!(b.take_largest(0, 0).is_empty());
    }

    #[test]
    fn pending_counts_follow_every_way_out() {
        let mut b = Batcher::new(2, 1 << 20, Duration::from_millis(0));
        let s: Arc<str> = Arc::from("{a=\"1\"}");
        let t: Arc<str> = Arc::from("{a=\"2\"}");
        assert!(add(&mut b, &s, e(1, "x"), h(1), None).is_none());
        assert!(
            add(&mut b, &s, e(2, "x"), h(2), None).is_some(),
            "record limit"
        );
        assert_eq!((b.pending_records(), b.pending_bytes()), (0, 0));
        assert!(add(&mut b, &t, e(3, "x"), h(3), None).is_none());
        assert_eq!(b.take_aged(Instant::now()).len(), 1);
        assert_eq!((b.pending_records(), b.pending_bytes()), (0, 0));
        assert!(add(&mut b, &t, e(4, "x"), h(4), None).is_none());
        assert_eq!(b.take_all().len(), 1);
        assert_eq!((b.pending_records(), b.pending_bytes()), (0, 0));
    }

    #[test]
    fn aged_batches_are_taken_after_the_wait() {
        let mut b = Batcher::new(100, 1 << 20, Duration::from_millis(50));
        let a: Arc<str> = Arc::from("{}");
        add(&mut b, &a, e(1, "x"), h(0), None);
        let now = Instant::now();
        assert!(b.take_aged(now).is_empty());
        assert!(b.next_due().is_some());
        assert_eq!(b.take_aged(now + Duration::from_millis(60)).len(), 1);
        assert!(b.next_due().is_none());
    }

    fn ms_ago(ago: u64) -> i64 {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock after 1970")
            .as_millis() as i64;
        now - ago as i64
    }

    #[test]
    fn the_wait_counts_from_the_kafka_timestamp_of_the_oldest_record() {
        let wait = Duration::from_secs(10);
        let mut b = Batcher::new(100, 1 << 20, wait);
        let a: Arc<str> = Arc::from("{}");
        let opened = Instant::now();
        add(&mut b, &a, e(1, "x"), h(0), Some(ms_ago(3_000)));
        let due = b.next_due().expect("a batch is open");
        // Produced 3 s before it was read: due about 7 s after it opened, not 10.
        assert!(due <= opened + Duration::from_secs(7) + Duration::from_millis(50));
        assert!(due >= opened + Duration::from_millis(6_900));
        assert!(b
            .take_aged(opened + Duration::from_millis(6_500))
            .is_empty());
        assert_eq!(b.take_aged(opened + Duration::from_millis(7_100)).len(), 1);
    }

    #[test]
    fn an_older_record_joining_a_batch_brings_it_forward_and_a_newer_one_does_not() {
        let wait = Duration::from_secs(10);
        let mut b = Batcher::new(100, 1 << 20, wait);
        let a: Arc<str> = Arc::from("{}");
        let opened = Instant::now();
        add(&mut b, &a, e(1, "x"), h(0), Some(ms_ago(0)));
        let first = b.next_due().expect("open");
        assert!(first >= opened + Duration::from_millis(9_900));
        add(&mut b, &a, e(2, "x"), h(1), Some(ms_ago(0) + 5_000));
        assert_eq!(b.next_due(), Some(first), "a newer record changes nothing");
        add(&mut b, &a, e(3, "x"), h(2), Some(ms_ago(2_000)));
        let second = b.next_due().expect("open");
        assert!(second < first);
        assert!(second <= opened + Duration::from_millis(8_050));
    }

    #[test]
    fn old_or_future_timestamps_keep_the_wait_between_half_and_all_of_it() {
        let wait = Duration::from_secs(10);
        let a: Arc<str> = Arc::from("{}");
        // A backlog (or a producer clock far behind): half the wait, so batches still fill.
        let mut b = Batcher::new(100, 1 << 20, wait);
        let opened = Instant::now();
        add(&mut b, &a, e(1, "x"), h(0), Some(ms_ago(3_600_000)));
        let due = b.next_due().expect("open");
        assert!(due >= opened + Duration::from_secs(5));
        assert!(due <= opened + Duration::from_millis(5_050));
        // A producer clock ahead of ours: never longer than the wait.
        let mut b = Batcher::new(100, 1 << 20, wait);
        let opened = Instant::now();
        add(&mut b, &a, e(1, "x"), h(0), Some(ms_ago(0) + 3_600_000));
        let due = b.next_due().expect("open");
        assert!(due <= opened + wait + Duration::from_millis(50));
        // No timestamp at all: the wait from when the batch opened.
        let mut b = Batcher::new(100, 1 << 20, wait);
        let opened = Instant::now();
        add(&mut b, &a, e(1, "x"), h(0), None);
        let due = b.next_due().expect("open");
        assert!(due >= opened + wait && due <= opened + wait + Duration::from_millis(50));
    }
}
