//! The consume loop: Kafka messages → decode → labels → pre-flight checks → per-stream batches
//! → delivery tasks → completions → contiguous offsets stored for commit.
//!
//! One task owns all state (batches, watermarks, buffer accounting); deliveries run as separate
//! tasks and report back through a channel. The loop takes completions first (`biased`), so
//! memory is released before more is read, and pauses every assigned partition while the
//! records or bytes held exceed the configured bounds (or while Loki refuses our credentials):
//! memory is bounded by configuration, never by input, and lag grows instead.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::FutureExt;
use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::message::{BorrowedMessage, Headers, Message};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use schema::kafka::{HEADER_SCHEMA_VERSION, SCHEMA_VERSION};
use schema::labels::LabelPolicy;
use schema::loki::entry_size;
use schema::loki::limits::{check_entry, Limits};
use schema::loki::proto::{EntryAdapter, LabelPairAdapter, Timestamp};
use schema::LogRecord;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::batch::{Batch, Batcher, Held};
use crate::config::{ConsumerConfig, OversizeLines};
use crate::deliver::{deliver, Completion, Shared};
use crate::dlq::DeadLetter;
use crate::kafka::{commit_result, AssignmentChange, LogConsumer};
use crate::labels::LabelResolver;
use crate::offsets::{OffsetTracker, Track};

/// Messages taken per wake-up of the loop before it looks at completions and timers again.
const BURST: usize = 256;

/// How long the buffer may stay full, with reading stopped, before the partitions are paused.
const PAUSE_AFTER: Duration = Duration::from_secs(5);

/// How long the final offset commit at shutdown may take.
const FINAL_COMMIT_TIMEOUT: Duration = Duration::from_secs(10);

/// How far the first seek back goes when records are missing; each further attempt goes
/// sixteen times further (some brokers answer a fetch from the middle of a record batch with the
/// next batch, so a seek to the exact offset is not enough).
const GAP_FIRST_STEP: i64 = 1;

/// A gap being repaired on one partition.
#[derive(Debug, Clone, Copy)]
struct Gap {
    /// The first missing offset.
    expected: i64,
    /// How far before it the last seek went.
    step: i64,
    /// The record just before `expected` was seen again since the last seek: if the next one is
    /// still past `expected`, the gap is real (compaction, transaction markers).
    saw_previous: bool,
}

/// What the loop did, reported at exit.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Summary {
    /// Messages consumed.
    pub consumed: u64,
    /// Records still held (not delivered) when the loop stopped; their offsets were not
    /// committed.
    pub abandoned: usize,
}

/// The consume loop's state.
pub struct Pipeline {
    consumer: Arc<LogConsumer>,
    shared: Arc<Shared>,
    topic: String,
    tracker: OffsetTracker,
    batcher: Batcher,
    labels: LabelResolver,
    policy: LabelPolicy,
    limits: Limits,
    oversize: OversizeLines,
    newest: HashMap<Arc<str>, i64>,
    tx: mpsc::UnboundedSender<Completion>,
    rx: mpsc::UnboundedReceiver<Completion>,
    held_records: usize,
    held_bytes: usize,
    max_records: usize,
    max_bytes: usize,
    outstanding: usize,
    paused: bool,
    /// Since when the buffer has been at its bound without a pause (reading stopped).
    over_since: Option<Instant>,
    consumed: u64,
    consumed_unreported: u64,
    shutdown_timeout: Duration,
    /// Wall clock in ns, refreshed every tick (Loki's age checks need minutes, not ns).
    now: i64,
    /// Per partition, an offset gap being repaired.
    gaps: HashMap<i32, Gap>,
    /// `auto.offset.reset` is `earliest` (a new group starts at the low watermark).
    from_earliest: bool,
    starts_tx: mpsc::UnboundedSender<Vec<(i32, i64)>>,
    starts_rx: mpsc::UnboundedReceiver<Vec<(i32, i64)>>,
}

impl std::fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline")
            .field("topic", &self.topic)
            .field("held_records", &self.held_records)
            .finish_non_exhaustive()
    }
}

impl Pipeline {
    /// A pipeline over a subscribed consumer.
    pub fn new(consumer: Arc<LogConsumer>, shared: Arc<Shared>, config: &ConsumerConfig) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        let (starts_tx, starts_rx) = mpsc::unbounded_channel();
        Self {
            consumer,
            shared,
            topic: config.kafka_topic.clone(),
            tracker: OffsetTracker::new(),
            batcher: Batcher::new(
                config.batch_max_records,
                config.batch_max_bytes,
                config.batch_max_wait,
            ),
            labels: LabelResolver::new(config.label_policy(), config.max_label_sets),
            policy: config.label_policy(),
            limits: config.limits(),
            oversize: config.oversize_lines,
            newest: HashMap::new(),
            tx,
            rx,
            held_records: 0,
            held_bytes: 0,
            max_records: config.buffer_max_records,
            max_bytes: config.buffer_max_bytes,
            outstanding: 0,
            paused: false,
            over_since: None,
            consumed: 0,
            consumed_unreported: 0,
            shutdown_timeout: config.shutdown_timeout,
            now: schema::Timestamp::now().as_nanos(),
            gaps: HashMap::new(),
            from_earliest: config.kafka_auto_offset_reset == "earliest",
            starts_tx,
            starts_rx,
        }
    }

    /// Runs until `shutdown` is cancelled, then stops fetching, flushes (bounded by the
    /// shutdown timeout), commits what was delivered and leaves the group.
    pub async fn run(mut self, shutdown: CancellationToken) -> Summary {
        let consumer = self.consumer.clone();
        // The tick is how late an aged batch can be pushed beyond its due time.
        let mut tick = tokio::time::interval(Duration::from_millis(10));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                Some(c) = self.rx.recv() => self.on_completion(c),
                Some(starts) = self.starts_rx.recv() => {
                    for (p, o) in starts {
                        self.tracker.start_at(p, o);
                    }
                }
                _ = shutdown.cancelled() => break,
                _ = tick.tick() => self.on_tick(),
                // At the buffer bound, reading stops (librdkafka's own queue then fills and its
                // fetches stop); pausing, which costs a re-fetch, only follows a long stall.
                msg = consumer.recv(), if self.paused || !self.over_bounds() => {
                    self.apply_assignment_changes();
                    self.on_consumed(msg);
                    // Take what is already queued without another trip through select!.
                    for _ in 0..BURST {
                        match consumer.recv().now_or_never() {
                            Some(msg) => self.on_consumed(msg),
                            None => break,
                        }
                        if self.over_bounds() {
                            break;
                        }
                    }
                }
            }
        }
        self.drain().await
    }

    async fn drain(mut self) -> Summary {
        tracing::info!(
            held = self.held_records,
            "stopping: fetching stopped, flushing batches"
        );
        self.pause_all();
        for b in self.batcher.take_all() {
            self.dispatch(b);
        }
        let deadline = tokio::time::Instant::now() + self.shutdown_timeout;
        while self.outstanding > 0 {
            tokio::select! {
                Some(c) = self.rx.recv() => self.on_completion(c),
                _ = tokio::time::sleep_until(deadline) => {
                    tracing::error!(held = self.held_records,
                        "shutdown timeout: abandoning undelivered records; their offsets are not committed and they will be re-read");
                    self.shared.abandon.cancel();
                    break;
                }
            }
        }
        // Collect what the abandoned tasks report (they return promptly once cancelled).
        let grace = tokio::time::Instant::now() + Duration::from_secs(2);
        while self.outstanding > 0 {
            tokio::select! {
                Some(c) = self.rx.recv() => self.on_completion(c),
                _ = tokio::time::sleep_until(grace) => break,
            }
        }
        self.report_consumed();
        let consumer = self.consumer.clone();
        let final_commit = tokio::task::spawn_blocking(move || {
            let r = commit_result(consumer.commit_consumer_state(CommitMode::Sync));
            consumer.unsubscribe();
            r
        });
        // A synchronous commit waits for the coordinator; one that is unreachable must not hold
        // the process past its termination grace period. Not committing only means re-reading.
        match tokio::time::timeout(FINAL_COMMIT_TIMEOUT, final_commit).await {
            Ok(Ok(result)) => self.shared.metrics.committed(&result),
            Ok(Err(e)) => tracing::error!(error = %e, "final commit task failed"),
            Err(_) => tracing::error!(
                timeout = ?FINAL_COMMIT_TIMEOUT,
                "final commit did not finish in time; uncommitted records will be re-read"
            ),
        }
        self.shared.dlq.flush(Duration::from_secs(5));
        tracing::info!(
            consumed = self.consumed,
            abandoned = self.held_records,
            "final commit done, left the consumer group"
        );
        Summary {
            consumed: self.consumed,
            abandoned: self.held_records,
        }
    }

    fn on_consumed(&mut self, msg: Result<BorrowedMessage<'_>, rdkafka::error::KafkaError>) {
        match msg {
            Ok(m) => self.on_message(&m),
            Err(e) => {
                tracing::warn!(error = %e, "kafka consume error");
                self.shared
                    .metrics
                    .ingestion_errors
                    .with_label_values(&[crate::metrics::SERVICE, "kafka", "consume_failed"])
                    .inc();
            }
        }
    }

    fn over_bounds(&self) -> bool {
        self.held_records >= self.max_records || self.held_bytes >= self.max_bytes
    }

    fn apply_assignment_changes(&mut self) {
        for change in self.consumer.context().take_changes() {
            match change {
                AssignmentChange::Assigned(parts) => {
                    for p in &parts {
                        self.tracker.assign(*p);
                    }
                    self.look_up_start_offsets(parts.clone());
                    if self.paused {
                        self.set_paused(&parts, true);
                    }
                }
                AssignmentChange::Revoked(parts) => {
                    for p in parts {
                        self.tracker.revoke(p);
                    }
                }
            }
        }
        let assigned = !self.consumer.context().assigned().is_empty();
        self.shared.readiness.set(
            "kafka",
            assigned,
            if assigned {
                "partitions assigned"
            } else {
                "no partitions assigned"
            },
        );
    }

    fn on_tick(&mut self) {
        self.now = schema::Timestamp::now().as_nanos();
        self.apply_assignment_changes();
        for b in self.batcher.take_aged(Instant::now()) {
            self.dispatch(b);
        }
        self.report_consumed();
        self.update_backpressure();
    }

    fn report_consumed(&mut self) {
        if self.consumed_unreported > 0 {
            self.shared
                .metrics
                .records_consumed
                .inc_by(self.consumed_unreported);
            self.consumed_unreported = 0;
        }
        self.shared
            .metrics
            .buffered_records
            .set(self.held_records as i64);
        self.shared
            .metrics
            .buffered_bytes
            .set(self.held_bytes as i64);
        self.shared
            .metrics
            .label_sets
            .set(self.labels.distinct_sets() as i64);
    }

    fn update_backpressure(&mut self) {
        let misconfigured = self.shared.misconfigured.load(Ordering::SeqCst);
        let over = self.over_bounds();
        self.over_since = match (over, self.over_since) {
            (true, Some(since)) => Some(since),
            (true, None) => Some(Instant::now()),
            (false, _) => None,
        };
        // Not reading is enough for short stalls; a long one (Loki down) pauses the partitions
        // so the consumer can keep polling (group membership, rebalances) without fetching.
        let stalled = self
            .over_since
            .is_some_and(|since| since.elapsed() >= PAUSE_AFTER);
        // Resume only at half the bounds: every pause costs a re-fetch, so fewer, longer runs.
        let under =
            self.held_records <= self.max_records / 2 && self.held_bytes <= self.max_bytes / 2;
        if !self.paused && (stalled || misconfigured) {
            tracing::info!(
                held_records = self.held_records,
                held_bytes = self.held_bytes,
                misconfigured,
                "pausing consumption"
            );
            self.pause_all();
        } else if self.paused && under && !misconfigured {
            tracing::info!(held_records = self.held_records, "resuming consumption");
            // librdkafka purges prefetched messages on pause and may resume past them: continue
            // exactly after the last record received, so nothing is skipped.
            for (p, next) in self.tracker.positions() {
                self.seek(p, next);
            }
            let parts = self.consumer.context().assigned();
            self.set_paused(&parts, false);
            self.paused = false;
            self.shared.metrics.paused.set(0);
        }
    }

    fn pause_all(&mut self) {
        let parts = self.consumer.context().assigned();
        self.set_paused(&parts, true);
        self.paused = true;
        self.shared.metrics.paused.set(1);
    }

    /// Looks up, off the loop (the group coordinator may be slow during a rebalance), where
    /// each newly assigned partition's fetch starts: its committed offset, or for a group
    /// without one the low watermark (with `auto.offset.reset=earliest`). The answer arrives on
    /// `starts_rx`; a partition that received records before it is not checked.
    fn look_up_start_offsets(&self, parts: Vec<i32>) {
        let consumer = self.consumer.clone();
        let topic = self.topic.clone();
        let from_earliest = self.from_earliest;
        let tx = self.starts_tx.clone();
        tokio::task::spawn_blocking(move || {
            let mut tpl = TopicPartitionList::new();
            for p in &parts {
                tpl.add_partition(&topic, *p);
            }
            let committed = match consumer.committed_offsets(tpl, Duration::from_secs(5)) {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read committed offsets; the start of the assignment is not checked for gaps");
                    return;
                }
            };
            let mut out = Vec::new();
            for e in committed.elements() {
                match e.offset() {
                    Offset::Offset(o) => out.push((e.partition(), o)),
                    _ if from_earliest => {
                        if let Ok((low, _)) =
                            consumer.fetch_watermarks(&topic, e.partition(), Duration::from_secs(5))
                        {
                            out.push((e.partition(), low));
                        }
                    }
                    _ => {}
                }
            }
            let _ = tx.send(out);
        });
    }

    fn seek(&self, partition: i32, offset: i64) {
        if let Err(e) = self.consumer.seek(
            &self.topic,
            partition,
            Offset::Offset(offset),
            Duration::ZERO,
        ) {
            tracing::warn!(error = %e, partition, offset, "seek failed");
        }
    }

    fn set_paused(&self, parts: &[i32], pause: bool) {
        if parts.is_empty() {
            return;
        }
        let mut tpl = TopicPartitionList::new();
        for p in parts {
            tpl.add_partition(&self.topic, *p);
        }
        let r = if pause {
            self.consumer.pause(&tpl)
        } else {
            self.consumer.resume(&tpl)
        };
        if let Err(e) = r {
            tracing::warn!(error = %e, pause, "pause/resume failed");
        }
    }

    fn on_message(&mut self, m: &BorrowedMessage<'_>) {
        if m.topic() != self.topic {
            return;
        }
        let partition = m.partition();
        let offset = m.offset();
        let confirmed = self.gaps.get(&partition).is_some_and(|g| g.saw_previous);
        let generation = match self.tracker.track(partition, offset, confirmed) {
            Track::Tracked(g) => {
                if let Some(gap) = self.gaps.remove(&partition) {
                    if offset > gap.expected {
                        tracing::warn!(partition, from = gap.expected, to = offset,
                            "offsets absent from the log (compacted topic or transaction markers); continuing after them");
                    } else {
                        tracing::info!(partition, offset, "offset gap repaired, no record skipped");
                    }
                }
                g
            }
            Track::Duplicate => {
                if let Some(gap) = self.gaps.get_mut(&partition) {
                    if offset == gap.expected - 1 {
                        gap.saw_previous = true;
                    }
                }
                return;
            }
            Track::Gap { expected } => {
                let gap = self.gaps.entry(partition).or_insert(Gap {
                    expected,
                    step: 0,
                    saw_previous: false,
                });
                if gap.expected != expected {
                    *gap = Gap {
                        expected,
                        step: 0,
                        saw_previous: false,
                    };
                }
                gap.step = if gap.step == 0 {
                    GAP_FIRST_STEP
                } else {
                    gap.step.saturating_mul(16)
                };
                gap.saw_previous = false;
                let target = (expected - gap.step).max(0);
                let step = gap.step;
                if step <= GAP_FIRST_STEP {
                    tracing::warn!(
                        partition,
                        expected,
                        got = offset,
                        "records missing from the fetch: seeking back so none is skipped"
                    );
                }
                self.shared
                    .metrics
                    .ingestion_errors
                    .with_label_values(&[crate::metrics::SERVICE, "kafka", "offset_gap"])
                    .inc();
                // Seek to just before the missing record; duplicates up to it are skipped.
                self.seek(
                    partition,
                    if step == GAP_FIRST_STEP {
                        expected
                    } else {
                        target
                    },
                );
                return;
            }
        };
        self.consumed += 1;
        self.consumed_unreported += 1;
        let held = Held {
            partition,
            generation,
            offset,
        };
        let headers = m.headers();
        let header_pairs = headers.into_iter().flat_map(|h| {
            (0..h.count()).filter_map(move |i| h.try_get(i).map(|x| (x.key, x.value)))
        });
        let ours = headers.is_some_and(|h| {
            (0..h.count()).any(|i| {
                h.try_get(i).is_some_and(|x| {
                    x.key == HEADER_SCHEMA_VERSION && x.value == Some(SCHEMA_VERSION.as_bytes())
                })
            })
        });
        let payload = m.payload();
        let kafka_ms = m.timestamp().to_millis();
        let decoded = schema::kafka::decode_with_text(payload, header_pairs);
        match decoded {
            Err(e) => {
                self.shared.metrics.decode_failed(&e, partition, offset);
                let letter = DeadLetter {
                    value: payload.unwrap_or_default().to_vec(),
                    key: m.key().map(<[u8]>::to_vec),
                    reason: e.reason().to_owned(),
                    error: e.to_string(),
                    partition,
                    offset,
                };
                self.dead_letter(letter, held);
            }
            Ok((record, text)) => {
                // Our producer writes the canonical form: use its bytes as the line as they
                // are. Anything else is re-serialised to the canonical form.
                let line = if ours {
                    text.to_owned()
                } else {
                    record.to_json()
                };
                self.on_record(&record, line, held, kafka_ms);
            }
        }
    }

    fn on_record(
        &mut self,
        record: &LogRecord<'_>,
        mut line: String,
        held: Held,
        kafka_ms: Option<i64>,
    ) {
        let resolved = self.labels.resolve(record);
        let mut metadata: Vec<LabelPairAdapter> = self
            .policy
            .metadata_for(record)
            .into_iter()
            .chain(resolved.overflow)
            .map(|(name, value)| LabelPairAdapter { name, value })
            .collect();
        metadata.sort_by(|a, b| a.name.cmp(&b.name));
        let ts = record.timestamp.as_nanos();
        if line.len() > self.limits.max_line_size && self.oversize == OversizeLines::Truncate {
            truncate_line(&mut line, self.limits.max_line_size);
        }
        let entry = EntryAdapter {
            timestamp: Some(Timestamp::from_nanos(ts)),
            line,
            structured_metadata: metadata,
        };
        let newest = self.newest.get(&resolved.labels).copied();
        if let Err(rejection) =
            check_entry(&resolved.labels, &entry, self.now, newest, &self.limits)
        {
            self.shared.metrics.preflight_failed(
                rejection.reason,
                held.partition,
                held.offset,
                &rejection.message,
            );
            let letter = DeadLetter {
                value: entry.line.into_bytes(),
                key: Some(record.service.as_bytes().to_vec()),
                reason: rejection.reason.as_str().to_owned(),
                error: rejection.message,
                partition: held.partition,
                offset: held.offset,
            };
            self.dead_letter(letter, held);
            return;
        }
        if newest.is_none_or(|n| ts > n) {
            self.newest.insert(resolved.labels.clone(), ts);
        }
        self.shared
            .metrics
            .count_level(&record.service, record.level.as_str(), 1);
        self.held_records += 1;
        self.held_bytes += entry_size(&entry);
        if let Some(batch) = self.batcher.add(&resolved.labels, entry, held, kafka_ms) {
            self.dispatch(batch);
        }
        // Many streams, none full yet: push the biggest before the buffer bound pauses us.
        if self.batcher.pending_records() >= self.max_records / 2
            || self.batcher.pending_bytes() >= self.max_bytes / 2
        {
            for batch in self
                .batcher
                .take_largest(self.max_records / 4, self.max_bytes / 4)
            {
                self.dispatch(batch);
            }
        }
        if self.over_bounds() {
            self.update_backpressure();
        }
    }

    fn dispatch(&mut self, batch: Batch) {
        if batch.is_empty() {
            return;
        }
        self.outstanding += 1;
        let shared = self.shared.clone();
        let tx = self.tx.clone();
        tokio::spawn(async move {
            let c = deliver(shared, batch).await;
            let _ = tx.send(c);
        });
    }

    fn dead_letter(&mut self, letter: DeadLetter, held: Held) {
        self.outstanding += 1;
        self.held_records += 1;
        let bytes = letter.value.len();
        self.held_bytes += bytes;
        let shared = self.shared.clone();
        let tx = self.tx.clone();
        tokio::spawn(async move {
            let ok = shared
                .dlq
                .write(std::slice::from_ref(&letter), &shared.abandon)
                .await;
            let _ = tx.send(Completion {
                delivered: if ok { vec![held] } else { Vec::new() },
                records: 1,
                bytes,
            });
        });
    }

    fn on_completion(&mut self, c: Completion) {
        self.outstanding = self.outstanding.saturating_sub(1);
        self.held_records = self.held_records.saturating_sub(c.records);
        self.held_bytes = self.held_bytes.saturating_sub(c.bytes);
        let moved = self.tracker.complete(
            c.delivered
                .iter()
                .map(|h| (h.partition, h.generation, h.offset)),
        );
        if moved.is_empty() {
            return;
        }
        let mut tpl = TopicPartitionList::new();
        for (p, next) in moved {
            if let Err(e) = tpl.add_partition_offset(&self.topic, p, Offset::Offset(next)) {
                tracing::warn!(error = %e, partition = p, "cannot build offset list");
            }
        }
        if let Err(e) = self.consumer.store_offsets(&tpl) {
            // A partition revoked a moment ago: its new owner re-reads from the last commit.
            tracing::debug!(error = %e, "storing offsets");
        }
    }
}

/// Cuts a line to at most `max` bytes on a character boundary, marking the cut.
fn truncate_line(line: &mut String, max: usize) {
    const MARK: &str = "…[truncated]";
    let mut end = max.saturating_sub(MARK.len());
    while !line.is_char_boundary(end) {
        end -= 1;
    }
    line.truncate(end);
    line.push_str(MARK);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncation_respects_the_limit_and_char_boundaries() {
        let mut s = "é".repeat(100);
        truncate_line(&mut s, 51);
        assert!(s.len() <= 51);
        assert!(s.ends_with("…[truncated]"));
    }
}
