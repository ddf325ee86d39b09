//! Batching per label set (one Loki stream per batch, so a stream that is rate-limited or
//! rejected never holds up the others): flush on records, bytes or age (defaults 10,000 /
//! 1 MiB / 1 s, like Promtail). Every entry carries the Kafka position it came from, so its
//! offset can be released exactly when Loki (or the dead-letter topic) has it.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use schema::loki::entry_size;
use schema::loki::proto::EntryAdapter;

use crate::offsets::Generation;

/// Where a record came from: what must be acknowledged to release its offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Held {
    /// Kafka partition.
    pub partition: i32,
    /// Assignment generation of the partition when the record was read.
    pub generation: Generation,
    /// Kafka offset.
    pub offset: i64,
}

/// Entries of one stream waiting to be pushed.
#[derive(Debug)]
pub struct Batch {
    /// The stream's label selector.
    pub labels: Arc<str>,
    /// The entries, in arrival order (sorted by timestamp when the push is built).
    pub entries: Vec<EntryAdapter>,
    /// The Kafka position of each entry (same index).
    pub held: Vec<Held>,
    /// Approximate uncompressed bytes.
    pub bytes: usize,
    /// Kafka timestamp (ms) of the oldest message, for the end-to-end latency metric.
    pub oldest_kafka_ms: Option<i64>,
    started: Instant,
    /// When the batch must be pushed: the maximum wait after its oldest record's Kafka
    /// timestamp, at least half the wait after it opened (see [`Batcher::add`]).
    due: Instant,
}

impl Batch {
    fn new(labels: Arc<str>, max_wait: Duration) -> Self {
        let started = Instant::now();
        Self {
            labels,
            entries: Vec::new(),
            held: Vec::new(),
            bytes: 0,
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
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Sorts entries by timestamp (keeping arrival order for equal ones), with their positions.
    pub fn sort(&mut self) {
        if self
            .entries
            .windows(2)
            .all(|w| w[0].nanos() <= w[1].nanos())
        {
            return;
        }
        let mut idx: Vec<usize> = (0..self.entries.len()).collect();
        idx.sort_by_key(|&i| self.entries[i].nanos());
        let mut entries: Vec<Option<EntryAdapter>> = std::mem::take(&mut self.entries)
            .into_iter()
            .map(Some)
            .collect();
        self.entries = idx.iter().filter_map(|&i| entries[i].take()).collect();
        self.held = idx.iter().map(|&i| self.held[i]).collect();
    }
}

/// Open batches by label set.
#[derive(Debug)]
pub struct Batcher {
    open: HashMap<Arc<str>, Batch>,
    /// Entries and bytes in open batches.
    pending_records: usize,
    pending_bytes: usize,
    max_records: usize,
    max_bytes: usize,
    max_wait: Duration,
}

impl Batcher {
    /// A batcher with the flush thresholds.
    pub fn new(max_records: usize, max_bytes: usize, max_wait: Duration) -> Self {
        Self {
            open: HashMap::new(),
            pending_records: 0,
            pending_bytes: 0,
            max_records,
            max_bytes,
            max_wait,
        }
    }

    /// Adds an entry; returns the stream's batch when it reached a size threshold.
    pub fn add(
        &mut self,
        labels: &Arc<str>,
        entry: EntryAdapter,
        held: Held,
        kafka_ms: Option<i64>,
    ) -> Option<Batch> {
        let size = entry_size(&entry);
        let max_wait = self.max_wait;
        let batch = match self.open.get_mut(labels) {
            Some(b) => b,
            None => self
                .open
                .entry(labels.clone())
                .or_insert_with(|| Batch::new(labels.clone(), max_wait)),
        };
        // A single entry bigger than the byte limit still goes out alone.
        batch.entries.push(entry);
        batch.held.push(held);
        batch.bytes += size;
        self.pending_records += 1;
        self.pending_bytes += size;
        if let Some(ts) = kafka_ms {
            if batch.oldest_kafka_ms.is_none_or(|o| ts < o) {
                batch.oldest_kafka_ms = Some(ts);
                batch.due_for_age(age_of(ts), max_wait);
            }
        }
        if batch.entries.len() >= self.max_records || batch.bytes >= self.max_bytes {
            return self.remove(labels);
        }
        None
    }

    /// Entries in open batches.
    pub fn pending_records(&self) -> usize {
        self.pending_records
    }

    /// Approximate bytes in open batches.
    pub fn pending_bytes(&self) -> usize {
        self.pending_bytes
    }

    /// Removes the largest open batches until at most `records` entries and `bytes` bytes stay
    /// open. With many streams no single batch may reach a size threshold before the buffer
    /// is full; flushing the biggest ones early keeps records moving instead of pausing
    /// consumption until the age threshold.
    pub fn take_largest(&mut self, records: usize, bytes: usize) -> Vec<Batch> {
        let mut out = Vec::new();
        while self.pending_records > records || self.pending_bytes > bytes {
            let Some(largest) = self
                .open
                .iter()
                .max_by_key(|(_, b)| b.bytes)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            out.extend(self.remove(&largest));
        }
        out
    }

    fn remove(&mut self, labels: &Arc<str>) -> Option<Batch> {
        let batch = self.open.remove(labels)?;
        self.pending_records -= batch.entries.len();
        self.pending_bytes -= batch.bytes;
        Some(batch)
    }

    /// Removes and returns the batches that are due: their oldest record was produced at
    /// least the maximum wait ago (or, without a Kafka timestamp, the batch opened that long
    /// ago).
    pub fn take_aged(&mut self, now: Instant) -> Vec<Batch> {
        let aged: Vec<Arc<str>> = self
            .open
            .iter()
            .filter(|(_, b)| now >= b.due)
            .map(|(k, _)| k.clone())
            .collect();
        aged.iter().filter_map(|k| self.remove(k)).collect()
    }

    /// Removes and returns every open batch.
    pub fn take_all(&mut self) -> Vec<Batch> {
        self.pending_records = 0;
        self.pending_bytes = 0;
        self.open.drain().map(|(_, b)| b).collect()
    }

    /// When the oldest open batch becomes due, if any.
    pub fn next_due(&self) -> Option<Instant> {
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
    use schema::loki::proto::Timestamp;

    fn e(ts: i64, line: &str) -> EntryAdapter {
        EntryAdapter {
            timestamp: Some(Timestamp::from_nanos(ts)),
            line: line.into(),
            structured_metadata: vec![],
        }
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
        assert!(b.add(&a, e(1, "x"), h(0), None).is_none());
        assert!(b.add(&c, e(1, "x"), h(1), None).is_none());
        let full = b.add(&a, e(2, "y"), h(2), Some(5)).unwrap();
        assert_eq!(full.len(), 2);
        assert_eq!(full.held, vec![h(0), h(2)]);
        assert_eq!(b.take_all().len(), 1);
    }

    #[test]
    fn flushes_at_the_byte_limit() {
        let mut b = Batcher::new(100, 100, Duration::from_secs(60));
        let a: Arc<str> = Arc::from("{}");
        assert!(b.add(&a, e(1, &"x".repeat(50)), h(0), None).is_none());
        assert!(b.add(&a, e(1, &"x".repeat(50)), h(1), None).is_some());
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
                assert!(b.add(s, e(offset, "x"), h(offset), None).is_none());
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
        assert!(b.add(&s, e(1, "x"), h(1), None).is_none());
        assert!(b.add(&s, e(2, "x"), h(2), None).is_some(), "record limit");
        assert_eq!((b.pending_records(), b.pending_bytes()), (0, 0));
        assert!(b.add(&t, e(3, "x"), h(3), None).is_none());
        assert_eq!(b.take_aged(Instant::now()).len(), 1);
        assert_eq!((b.pending_records(), b.pending_bytes()), (0, 0));
        assert!(b.add(&t, e(4, "x"), h(4), None).is_none());
        assert_eq!(b.take_all().len(), 1);
        assert_eq!((b.pending_records(), b.pending_bytes()), (0, 0));
    }

    #[test]
    fn aged_batches_are_taken_after_the_wait() {
        let mut b = Batcher::new(100, 1 << 20, Duration::from_millis(50));
        let a: Arc<str> = Arc::from("{}");
        b.add(&a, e(1, "x"), h(0), None);
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
        b.add(&a, e(1, "x"), h(0), Some(ms_ago(3_000)));
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
        b.add(&a, e(1, "x"), h(0), Some(ms_ago(0)));
        let first = b.next_due().expect("open");
        assert!(first >= opened + Duration::from_millis(9_900));
        b.add(&a, e(2, "x"), h(1), Some(ms_ago(0) + 5_000));
        assert_eq!(b.next_due(), Some(first), "a newer record changes nothing");
        b.add(&a, e(3, "x"), h(2), Some(ms_ago(2_000)));
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
        b.add(&a, e(1, "x"), h(0), Some(ms_ago(3_600_000)));
        let due = b.next_due().expect("open");
        assert!(due >= opened + Duration::from_secs(5));
        assert!(due <= opened + Duration::from_millis(5_050));
        // A producer clock ahead of ours: never longer than the wait.
        let mut b = Batcher::new(100, 1 << 20, wait);
        let opened = Instant::now();
        b.add(&a, e(1, "x"), h(0), Some(ms_ago(0) + 3_600_000));
        let due = b.next_due().expect("open");
        assert!(due <= opened + wait + Duration::from_millis(50));
        // No timestamp at all: the wait from when the batch opened.
        let mut b = Batcher::new(100, 1 << 20, wait);
        let opened = Instant::now();
        b.add(&a, e(1, "x"), h(0), None);
        let due = b.next_due().expect("open");
        assert!(due >= opened + wait && due <= opened + wait + Duration::from_millis(50));
    }

    #[test]
    fn sorting_keeps_positions_aligned_and_equal_timestamps_stable() {
        let mut batch = Batch::new(Arc::from("{}"), Duration::from_secs(1));
        for (ts, line, off) in [(3, "c", 0), (1, "a1", 1), (2, "b", 2), (1, "a2", 3)] {
            batch.entries.push(e(ts, line));
            batch.held.push(h(off));
        }
        batch.sort();
        let lines: Vec<_> = batch.entries.iter().map(|e| e.line.as_str()).collect();
        assert_eq!(lines, ["a1", "a2", "b", "c"]);
        let offs: Vec<_> = batch.held.iter().map(|h| h.offset).collect();
        assert_eq!(offs, [1, 3, 2, 0]);
    }
}
