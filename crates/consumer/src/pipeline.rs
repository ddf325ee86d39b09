//! The consume loop: Kafka messages → [`intake`](crate::intake) (decode, stream, pre-flight,
//! encode into the stream's batch) → delivery tasks ([`inflight`](crate::inflight)) →
//! completions → contiguous offsets stored for commit ([`offsets`](crate::offsets)).
//!
//! One task owns all state (batches, watermarks, buffer accounting); deliveries run as separate
//! tasks and report back through a channel. The loop takes completions first (`biased`), so
//! memory is released before more is read; [`flow`](crate::flow) decides when reading stops and
//! when the partitions pause, [`gaps`](crate::gaps) when a partition must be sought back.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{FutureExt, StreamExt};
use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use service::admin::Readiness;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::batch::{Batcher, Held};
use crate::config::ConsumerConfig;
use crate::deliver::{Completion, Shared};
use crate::flow::{Change, Flow};
use crate::gaps::{Gaps, Step};
use crate::inflight::InFlight;
use crate::intake::{Intake, Taken};
use crate::kafka::{commit_result, look_up_start_offsets, AssignmentChange, LogConsumer};
use crate::offsets::OffsetTracker;

/// Messages taken per wake-up of the loop before it looks at completions and timers again.
const BURST: usize = 256;

/// How long the final offset commit at shutdown may take.
const FINAL_COMMIT_TIMEOUT: Duration = Duration::from_secs(10);

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
pub(crate) struct Pipeline {
    consumer: Arc<LogConsumer>,
    topic: String,
    tracker: OffsetTracker,
    gaps: Gaps,
    intake: Intake,
    batcher: Batcher,
    flow: Flow,
    inflight: InFlight,
    consumed: u64,
    consumed_unreported: u64,
    shutdown_timeout: Duration,
    /// `auto.offset.reset` is `earliest` (a new group starts at the low watermark).
    from_earliest: bool,
    starts_tx: mpsc::UnboundedSender<Vec<(i32, i64)>>,
    starts_rx: mpsc::UnboundedReceiver<Vec<(i32, i64)>>,
    /// Readiness: the loop owns the `kafka` check (partitions assigned).
    readiness: Arc<Readiness>,
}

impl std::fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline")
            .field("topic", &self.topic)
            .field("held_records", &self.flow.records())
            .finish_non_exhaustive()
    }
}

impl Pipeline {
    /// A pipeline over a subscribed consumer.
    pub(crate) fn new(
        consumer: Arc<LogConsumer>,
        shared: Arc<Shared>,
        readiness: Arc<Readiness>,
        config: &ConsumerConfig,
    ) -> Self {
        let (starts_tx, starts_rx) = mpsc::unbounded_channel();
        Self {
            consumer,
            topic: config.kafka.topic.clone(),
            tracker: OffsetTracker::new(),
            gaps: Gaps::default(),
            intake: Intake::new(config, shared.metrics.clone()),
            batcher: Batcher::new(
                config.batch_max_records,
                config.batch_max_bytes,
                config.batch_max_wait,
            ),
            flow: Flow::new(config.buffer_max_records, config.buffer_max_bytes),
            inflight: InFlight::new(shared),
            consumed: 0,
            consumed_unreported: 0,
            shutdown_timeout: config.service.shutdown_timeout,
            from_earliest: config.kafka_auto_offset_reset == "earliest",
            starts_tx,
            starts_rx,
            readiness,
        }
    }

    fn shared(&self) -> &Arc<Shared> {
        self.inflight.shared()
    }

    /// Runs until `shutdown` is cancelled, then stops fetching, flushes (bounded by the
    /// shutdown timeout), commits what was delivered and leaves the group.
    pub(crate) async fn run(mut self, shutdown: CancellationToken) -> Summary {
        let consumer = self.consumer.clone();
        // One stream for the whole run: `recv()` builds a stream per message, registering and
        // dropping a waker slot (a mutex each way) every time.
        let mut messages = consumer.stream();
        // The tick is how late an aged batch can be pushed beyond its due time.
        let mut tick = tokio::time::interval(Duration::from_millis(10));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                Some(c) = self.inflight.next() => self.on_completion(c),
                Some(starts) = self.starts_rx.recv() => {
                    for (p, o) in starts {
                        self.tracker.start_at(p, o);
                    }
                }
                _ = shutdown.cancelled() => break,
                _ = tick.tick() => self.on_tick(),
                // A message stream never ends (rdkafka); `None` would only disable the branch.
                Some(msg) = messages.next(), if self.flow.may_read() => {
                    self.apply_assignment_changes();
                    self.on_consumed(msg);
                    // Take what is already queued without another trip through select!.
                    for _ in 0..BURST {
                        if !self.flow.may_read() {
                            break;
                        }
                        match messages.next().now_or_never() {
                            Some(Some(msg)) => self.on_consumed(msg),
                            _ => break,
                        }
                    }
                }
            }
        }
        drop(messages);
        self.drain().await
    }

    async fn drain(mut self) -> Summary {
        tracing::info!(
            held = self.flow.records(),
            "stopping: fetching stopped, flushing batches"
        );
        self.pause_all();
        for b in self.batcher.take_all() {
            self.inflight.deliver(b);
        }
        let deadline = tokio::time::Instant::now() + self.shutdown_timeout;
        while self.inflight.outstanding() > 0 {
            tokio::select! {
                Some(c) = self.inflight.next() => self.on_completion(c),
                _ = tokio::time::sleep_until(deadline) => {
                    tracing::error!(held = self.flow.records(),
                        "shutdown timeout: abandoning undelivered records; their offsets are not committed and they will be re-read");
                    self.shared().abandon.cancel();
                    break;
                }
            }
        }
        // Collect what the abandoned tasks report (they return promptly once cancelled).
        let grace = tokio::time::Instant::now() + Duration::from_secs(2);
        while self.inflight.outstanding() > 0 {
            tokio::select! {
                Some(c) = self.inflight.next() => self.on_completion(c),
                _ = tokio::time::sleep_until(grace) => break,
            }
        }
        self.report();
        let consumer = self.consumer.clone();
        let final_commit = tokio::task::spawn_blocking(move || {
            let r = commit_result(consumer.commit_consumer_state(CommitMode::Sync));
            consumer.unsubscribe();
            r
        });
        // A synchronous commit waits for the coordinator; one that is unreachable must not hold
        // the process past its termination grace period. Not committing only means re-reading.
        match tokio::time::timeout(FINAL_COMMIT_TIMEOUT, final_commit).await {
            Ok(Ok(result)) => self.shared().metrics.committed(&result),
            Ok(Err(e)) => tracing::error!(error = %e, "final commit task failed"),
            Err(_) => tracing::error!(
                timeout = ?FINAL_COMMIT_TIMEOUT,
                "final commit did not finish in time; uncommitted records will be re-read"
            ),
        }
        self.shared().dlq.flush(Duration::from_secs(5));
        tracing::info!(
            consumed = self.consumed,
            abandoned = self.flow.records(),
            "final commit done, left the consumer group"
        );
        Summary {
            consumed: self.consumed,
            abandoned: self.flow.records(),
        }
    }

    fn on_consumed(&mut self, msg: Result<BorrowedMessage<'_>, rdkafka::error::KafkaError>) {
        match msg {
            Ok(m) => self.on_message(&m),
            Err(e) => {
                tracing::warn!(error = %e, "kafka consume error");
                self.shared()
                    .metrics
                    .ingestion_errors
                    .with_label_values(&[crate::metrics::SERVICE, "kafka", "consume_failed"])
                    .inc();
            }
        }
    }

    fn on_message(&mut self, m: &BorrowedMessage<'_>) {
        if m.topic() != self.topic {
            return;
        }
        let (partition, offset) = (m.partition(), m.offset());
        let generation = match self.gaps.track(&mut self.tracker, partition, offset) {
            Step::Take(generation) => generation,
            Step::Skip => return,
            Step::SeekTo(target) => {
                self.shared()
                    .metrics
                    .ingestion_errors
                    .with_label_values(&[crate::metrics::SERVICE, "kafka", "offset_gap"])
                    .inc();
                self.seek(partition, target);
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
        match self.intake.take(m, held, &mut self.batcher) {
            Taken::Batched { size, full } => {
                self.flow.hold(size);
                if let Some(batch) = full {
                    self.inflight.deliver(batch);
                }
                self.push_largest_when_half_full();
            }
            Taken::Dead(letter) => {
                let bytes = letter.value.len();
                self.flow.hold(bytes);
                self.inflight.dead_letter(letter, held, bytes);
            }
        }
        if self.flow.over_bounds() {
            self.update_backpressure();
        }
    }

    /// Many streams, none full yet: push the biggest batches before the buffer bound stops
    /// reading, so records keep moving instead of waiting for the age flush.
    fn push_largest_when_half_full(&mut self) {
        let (max_records, max_bytes) = self.flow.bounds();
        if self.batcher.pending_records() >= max_records / 2
            || self.batcher.pending_bytes() >= max_bytes / 2
        {
            for batch in self.batcher.take_largest(max_records / 4, max_bytes / 4) {
                self.inflight.deliver(batch);
            }
        }
    }

    fn on_tick(&mut self) {
        self.intake.set_now(schema::Timestamp::now().as_nanos());
        self.apply_assignment_changes();
        for b in self.batcher.take_aged(Instant::now()) {
            self.inflight.deliver(b);
        }
        self.report();
        self.update_backpressure();
    }

    fn report(&mut self) {
        let metrics = &self.inflight.shared().metrics;
        if self.consumed_unreported > 0 {
            metrics.records_consumed.inc_by(self.consumed_unreported);
            self.consumed_unreported = 0;
        }
        metrics.buffered_records.set(self.flow.records() as i64);
        metrics.buffered_bytes.set(self.flow.bytes() as i64);
        metrics
            .label_sets
            .set(self.intake.distinct_streams() as i64);
        metrics.tenants.set(self.intake.distinct_tenants() as i64);
    }

    fn update_backpressure(&mut self) {
        let misconfigured = self.shared().health.is_misconfigured();
        match self.flow.decide(Instant::now(), misconfigured) {
            Some(Change::Pause) => self.pause_all(),
            Some(Change::Resume) => {
                // librdkafka purges prefetched messages on pause and may resume past them:
                // continue exactly after the last record received, so nothing is skipped.
                for (p, next) in self.tracker.positions() {
                    self.seek(p, next);
                }
                let parts = self.consumer.context().assigned();
                self.set_paused(&parts, false);
                self.shared().metrics.paused.set(0);
            }
            None => {}
        }
    }

    fn pause_all(&mut self) {
        let parts = self.consumer.context().assigned();
        self.set_paused(&parts, true);
        self.flow.set_paused();
        self.shared().metrics.paused.set(1);
    }

    fn apply_assignment_changes(&mut self) {
        for change in self.consumer.context().take_changes() {
            match change {
                AssignmentChange::Assigned(parts) => {
                    for p in &parts {
                        self.tracker.assign(*p);
                    }
                    look_up_start_offsets(
                        self.consumer.clone(),
                        self.topic.clone(),
                        parts.clone(),
                        self.from_earliest,
                        self.starts_tx.clone(),
                    );
                    if self.flow.paused() {
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
        self.readiness.set(
            "kafka",
            assigned,
            if assigned {
                "partitions assigned"
            } else {
                "no partitions assigned"
            },
        );
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

    fn on_completion(&mut self, c: Completion) {
        self.flow.release(c.records, c.bytes);
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
