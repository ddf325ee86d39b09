//! `consumer redrive`: moves dead letters back to the main topic once their cause is fixed
//! (deploy/README.md, "Redriving the dead-letter topic").
//!
//! It reads the dead-letter topic as its own consumer group (default `logpipe-redrive`), from
//! the group's committed offsets to the end each partition had at the start (or on and on with
//! `--follow`), selects letters by reason, time or source partition ([`letter`]), and
//! re-publishes each selected record with the producer's key (its service), the record headers
//! and its line unchanged, plus `redriven-from-*` headers naming the letter. Loki's duplicate
//! rule therefore holds for a record that reaches Loki twice.
//!
//! Batches are strictly one after the other: read up to `--batch-size` letters, publish the
//! selected ones (idempotent producer, `acks=all`, failures retried), and only after Kafka has
//! acknowledged every one of them commit the batch's offsets; letters not selected are passed
//! over and their offsets advance with the rest. Nothing is in flight while the client polls,
//! so a rebalance can take nothing half-done. A crash after an acknowledgement and before the
//! commit is covered by [`resume`]: the next run finds those copies in the main topic and does
//! not publish them again.
//!
//! The run refuses to start while another member holds part of the group (a second redrive of
//! the same group), and stops when one joins.

pub(crate) mod letter;
mod report;
mod resume;

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, Message, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use schema::kafka::{
    RECORD_HEADERS, REDRIVE_HEADER_OFFSET, REDRIVE_HEADER_PARTITION, REDRIVE_HEADER_TOPIC,
};
use schema::Timestamp;
use thiserror::Error;
use tokio_util::sync::CancellationToken;

use crate::config::ConsumerConfig;
use crate::kafka::base_client_config;
use crate::moment::Moment;
use crate::output::Format;
use crate::progress::Progress;
use crate::retry::Backoff;
use crate::scan::{committed_offsets, Bounds, ScanError, Scanner, REQUEST_TIMEOUT};
use letter::{Leave, Letter, Selection, Verdict};
use report::Report;
use resume::Mark;

/// The group a redrive uses unless told otherwise.
pub const DEFAULT_GROUP: &str = "logpipe-redrive";

/// How long a batch waits for more letters once it has one (`--follow` waits for new ones).
const BATCH_WAIT: Duration = Duration::from_millis(500);

/// How old a main-topic high watermark may be when it is committed as the bookmark.
const MARK_REFRESH: Duration = Duration::from_secs(1);

/// How long one poll of the group consumer waits.
const POLL: Duration = Duration::from_millis(100);

/// `consumer redrive`'s options (the consumer's settings come from its configuration: topics,
/// Kafka connection and security).
#[derive(Debug, Clone, clap::Args)]
pub struct RedriveArgs {
    /// TOML file with the consumer's settings (keys as in the README, lower case); environment
    /// wins. KAFKA_TOPIC is where records go back to, KAFKA_DLQ_TOPIC where they come from.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Move only letters with this dlq-reason (repeatable). Without it every reason moves
    /// except those of poison messages (not valid records: invalid_json, invalid_utf8,
    /// unsupported_schema_version, …), which only move when their reason is named here.
    #[arg(long = "reason", value_name = "REASON")]
    pub reasons: Vec<String>,
    /// Only letters dead-lettered at or after this moment (the dead-letter message's
    /// timestamp): an RFC 3339 time, a date, or a duration before now (90m, 2h, 7days).
    #[arg(long, value_name = "WHEN", value_parser = Moment::parse)]
    pub since: Option<Moment>,
    /// Only letters dead-lettered before this moment (same forms as --since).
    #[arg(long, value_name = "WHEN", value_parser = Moment::parse)]
    pub until: Option<Moment>,
    /// Only letters whose record's own timestamp is at or after this moment (poison messages,
    /// which have none, never match).
    #[arg(long, value_name = "WHEN", value_parser = Moment::parse)]
    pub record_since: Option<Moment>,
    /// Only letters whose record's own timestamp is before this moment.
    #[arg(long, value_name = "WHEN", value_parser = Moment::parse)]
    pub record_until: Option<Moment>,
    /// Only letters from this partition of the main topic (dlq-source-partition; repeatable).
    #[arg(long = "source-partition", value_name = "N")]
    pub source_partitions: Vec<i32>,
    /// Print what would move, by reason, with samples, and change nothing: nothing is
    /// published or committed and the group is not joined.
    #[arg(long)]
    pub dry_run: bool,
    /// Keep going after the end of the dead-letter topic, moving letters as they arrive,
    /// until SIGINT or SIGTERM.
    #[arg(long, conflicts_with = "dry_run")]
    pub follow: bool,
    /// Consumer group that keeps the redrive's place in the dead-letter topic; its name must
    /// contain "redrive" (lag alerts leave such groups out). Letters it passed over (not
    /// selected) are not looked at again by the same group: use a new group for a new
    /// selection.
    #[arg(long, value_name = "GROUP", env = "REDRIVE_GROUP_ID", default_value = DEFAULT_GROUP)]
    pub group: String,
    /// Read at most N letters, then stop (a canary: move a few, watch them reach Loki, then run
    /// again without it; the same group goes on where this run stopped).
    #[arg(long, value_name = "N", conflicts_with = "follow")]
    pub max_letters: Option<u64>,
    /// Letters read per batch; a batch's offsets are committed once every record it moves is
    /// acknowledged.
    #[arg(long, value_name = "N", default_value_t = 500,
          value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub batch_size: u32,
    /// Letters shown per reason in the report.
    #[arg(long, value_name = "N", default_value_t = 3)]
    pub samples: usize,
    /// Report format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Messages per main-topic partition read at start to find letters an interrupted run had
    /// already published; past it such letters may be published a second time (Loki keeps
    /// one copy).
    #[arg(long, value_name = "N", default_value_t = 1_000_000)]
    pub resume_scan_limit: u64,
}

/// Why a redrive could not run or finish.
#[derive(Debug, Error)]
pub enum RedriveError {
    /// Reading a topic failed.
    #[error(transparent)]
    Scan(#[from] ScanError),
    /// A Kafka client operation failed.
    #[error("{action}: {source}")]
    Kafka {
        /// What was being done.
        action: String,
        /// The client's error.
        source: KafkaError,
    },
    /// Another member holds partitions of the group.
    #[error(
        "another member of group {group:?} holds partitions of {topic:?} (a redrive with the same \
         group still running?); only {mine:?} of {all:?} were assigned within {waited:?}"
    )]
    Busy {
        /// The group.
        group: String,
        /// The dead-letter topic.
        topic: String,
        /// What this run was given.
        mine: Vec<i32>,
        /// Every partition.
        all: Vec<i32>,
        /// How long it waited.
        waited: Duration,
    },
    /// A group name without `redrive` in it.
    #[error(
        "--group {0:?}: a redrive group's name must contain \"redrive\": its committed offsets \
         are bookmarks, not a consumer's progress, and the lag alerts and dashboards leave out \
         groups named so (deploy/prometheus/rules/pipeline.yml)"
    )]
    GroupName(String),
    /// The worker thread failed.
    #[error("redrive task failed: {0}")]
    Task(String),
}

impl RedriveError {
    fn kafka(action: impl Into<String>) -> impl FnOnce(KafkaError) -> Self {
        let action = action.into();
        move |source| Self::Kafka { action, source }
    }
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// Every partition was read to its end as at the start (or, with `--follow`, a signal
    /// stopped it): done.
    Complete,
    /// A signal stopped it before the end; what it did is committed, a new run goes on.
    Interrupted,
    /// Another member joined the group; what it did is committed, a new run goes on.
    Rebalanced,
    /// `--max-letters` letters were read; what they came to is committed.
    Limit,
}

/// What a run did.
#[derive(Debug)]
pub struct Outcome {
    /// How it ended.
    pub ending: Ending,
    /// The report, rendered in the format asked for.
    pub report: String,
}

/// Runs a redrive with the consumer's `config` until it is done or `shutdown` fires.
pub async fn redrive(
    config: ConsumerConfig,
    args: RedriveArgs,
    shutdown: CancellationToken,
) -> Result<Outcome, RedriveError> {
    if !args.group.contains("redrive") {
        return Err(RedriveError::GroupName(args.group));
    }
    let runtime = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || Run::new(config, args, shutdown, runtime).run())
        .await
        .map_err(|e| RedriveError::Task(e.to_string()))?
}

/// A letter to publish.
struct Move {
    partition: i32,
    offset: i64,
    reason: String,
    key: Option<Vec<u8>>,
    value: Vec<u8>,
}

/// The state of one run.
struct Run {
    config: ConsumerConfig,
    args: RedriveArgs,
    selection: Selection,
    shutdown: CancellationToken,
    runtime: tokio::runtime::Handle,
    base: ClientConfig,
    report: Report,
}

impl Run {
    fn new(
        config: ConsumerConfig,
        args: RedriveArgs,
        shutdown: CancellationToken,
        runtime: tokio::runtime::Handle,
    ) -> Self {
        let now = Timestamp::now();
        let at = |m: Option<Moment>| m.map(|m| m.resolve(now));
        let selection = Selection {
            reasons: args.reasons.clone(),
            written: (at(args.since), at(args.until)),
            record_time: (at(args.record_since), at(args.record_until)),
            source_partitions: args.source_partitions.clone(),
        };
        let mut base = base_client_config(&config);
        base.set("client.id", "logpipe-redrive");
        let report = Report::new(
            &config.kafka_dlq_topic,
            &config.kafka.topic,
            &args.group,
            args.dry_run,
            args.samples,
        );
        Self {
            config,
            args,
            selection,
            shutdown,
            runtime,
            base,
            report,
        }
    }

    fn run(mut self) -> Result<Outcome, RedriveError> {
        let ending = if self.args.dry_run {
            self.dry_run()?
        } else {
            self.move_letters()?
        };
        self.report.ended = match ending {
            Ending::Complete if self.args.dry_run => "dry run complete: nothing was changed".into(),
            Ending::Complete => "complete: every partition read to its end as at the start".into(),
            Ending::Interrupted => {
                "interrupted: what was moved is committed; run again to go on".into()
            }
            Ending::Rebalanced => {
                "stopped: another member joined the group; what was moved is committed".into()
            }
            Ending::Limit if self.args.dry_run => {
                "dry run stopped after --max-letters letters: nothing was changed".into()
            }
            Ending::Limit => {
                "stopped after --max-letters letters: they are committed; run again to go on".into()
            }
        };
        let report = match self.args.format {
            Format::Text => self.report.to_text(),
            Format::Json => serde_json::to_string_pretty(&self.report)
                .unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}")),
        };
        Ok(Outcome { ending, report })
    }

    /// Where each dead-letter partition starts for this group, and where it ends now.
    fn plan(&self, dlq: &Scanner, partitions: &[i32]) -> Result<Plan, RedriveError> {
        let bounds = dlq.bounds(partitions, &self.shutdown)?;
        let committed = committed_offsets(
            &self.base,
            &self.args.group,
            &self.config.kafka_dlq_topic,
            partitions,
        )?;
        let mut start = BTreeMap::new();
        for (&p, b) in &bounds {
            let from = match committed.get(&p).copied().flatten() {
                Some(c) if c < b.low => {
                    tracing::warn!(
                        partition = p,
                        committed = c,
                        oldest = b.low,
                        "letters after this group's offset were deleted by retention before it reached them"
                    );
                    b.low
                }
                Some(c) => c,
                None => b.low,
            };
            start.insert(p, from);
        }
        Ok(Plan { start, bounds })
    }

    /// The letters an interrupted run already published.
    fn find_published(
        &self,
        start: &BTreeMap<i32, i64>,
    ) -> Result<HashSet<(i32, i64)>, RedriveError> {
        let main = Scanner::new(&self.base, &self.config.kafka.topic)?;
        let parts = main.partitions()?;
        let marks: BTreeMap<i32, Mark> = committed_offsets(
            &self.base,
            &self.args.group,
            &self.config.kafka.topic,
            &parts,
        )?
        .into_iter()
        .map(|(p, o)| (p, Mark::from_committed(o)))
        .collect();
        if !marks.values().any(|m| matches!(m, Mark::From(_))) {
            return Ok(HashSet::new());
        }
        let bounds = main.bounds(&parts, &self.shutdown)?;
        let found = resume::find_published(
            &main,
            &bounds,
            &marks,
            &self.config.kafka_dlq_topic,
            start,
            self.args.resume_scan_limit,
            &self.shutdown,
        )?;
        if !found.incomplete.is_empty() {
            tracing::warn!(
                partitions = ?found.incomplete,
                limit = self.args.resume_scan_limit,
                "the main topic holds more than --resume-scan-limit messages since the last run's bookmark: letters that run published beyond them may be published again (Loki keeps one copy)"
            );
        }
        tracing::info!(
            scanned = found.scanned,
            found = found.published.len(),
            "looked for letters an interrupted run had published"
        );
        Ok(found.published)
    }

    /// `--dry-run`: reads from the group's offsets to the end and judges every letter.
    fn dry_run(&mut self) -> Result<Ending, RedriveError> {
        let dlq = Scanner::new(&self.base, &self.config.kafka_dlq_topic)?;
        let partitions = dlq.partitions()?;
        let Plan { start, bounds } = self.plan(&dlq, &partitions)?;
        let published = self.find_published(&start)?;
        let ranges: BTreeMap<i32, (i64, i64)> = bounds
            .iter()
            .map(|(&p, b)| (p, (start[&p], b.end)))
            .collect();
        let total = ranges.values().map(|(s, e)| (e - s).max(0) as u64).sum();
        let mut progress = Progress::new("letters", total);
        let main_topic = self.config.kafka.topic.clone();
        let selection = self.selection.clone();
        let report = &mut self.report;
        let mut done = 0u64;
        let max = self.args.max_letters;
        let result = dlq.read(&ranges, &self.shutdown, |m| {
            if max.is_some_and(|max| done >= max) {
                return crate::scan::Visit::StopPartition;
            }
            let letter = Letter::of(m);
            report.read_letter(letter.partition, letter.offset);
            match selection.judge(&letter, &main_topic) {
                Verdict::Move { record_ns, .. }
                    if published.contains(&(letter.partition, letter.offset)) =>
                {
                    report.left(&letter, Leave::MovedBefore, record_ns);
                }
                Verdict::Move { record_ns, .. } => {
                    report.moved(letter.reason, 1);
                    report.sample_moved(&letter, record_ns);
                }
                Verdict::Leave(why, record_ns) => report.left(&letter, why, record_ns),
            }
            done += 1;
            progress.set(done, String::new);
            crate::scan::Visit::Continue
        });
        progress.finish();
        match result {
            Ok(()) if max.is_some_and(|max| done >= max) => Ok(Ending::Limit),
            Ok(()) => Ok(Ending::Complete),
            Err(ScanError::Cancelled(_)) => Ok(Ending::Interrupted),
            Err(e) => Err(e.into()),
        }
    }

    /// The real run.
    fn move_letters(&mut self) -> Result<Ending, RedriveError> {
        let dlq_topic = self.config.kafka_dlq_topic.clone();
        let dlq = Scanner::new(&self.base, &dlq_topic)?;
        let partitions = dlq.partitions()?;
        let main_parts = Scanner::new(&self.base, &self.config.kafka.topic)?.partitions()?;
        let group = GroupMember::join(&self.base, &self.config, &self.args.group, &partitions)?;
        let mut carry = match group.wait_for_all(&partitions, &self.config, &self.shutdown)? {
            Waited::Owner(first) => first,
            Waited::Stopped => return Ok(Ending::Interrupted),
        };
        let Plan { start, bounds } = self.plan(&dlq, &partitions)?;
        let published_before = self.find_published(&start)?;
        self.report.found_published_before = published_before.len() as u64;
        let producer = self.producer()?;
        let mut marks = Marks::new(&self.config.kafka.topic, main_parts);
        // Before anything is published: copies may now land past the main topic's present end.
        // While copies an interrupted run published wait for their letters' commit, the old
        // bookmarks (before those copies) must stay.
        let initial_marks = if published_before.is_empty() {
            Some(marks.fresh(&group)?)
        } else {
            None
        };
        group.commit(&start, initial_marks.as_ref(), &dlq_topic)?;

        let mut cursor = Cursor {
            ends: bounds.iter().map(|(&p, b)| (p, b.end)).collect(),
            position: start.clone(),
            exhausted: HashSet::new(),
            follow: self.args.follow,
            remaining: self.args.max_letters,
        };
        let total = cursor
            .ends
            .iter()
            .map(|(p, e)| (e - start[p]).max(0) as u64)
            .sum();
        let mut progress = Progress::new("letters", total);
        let mut copies_here: HashSet<(i32, i64)> = HashSet::new();
        let started = Instant::now();
        let mut batches = 0u64;
        // Whether every copy published so far is acknowledged (the bookmarks may be cleared).
        let mut all_acked = true;
        let ending = loop {
            if cursor.complete() {
                break Ending::Complete;
            }
            if cursor.remaining == Some(0) {
                break Ending::Limit;
            }
            if self.shutdown.is_cancelled() {
                break if self.args.follow {
                    Ending::Complete
                } else {
                    Ending::Interrupted
                };
            }
            let batch = match self.collect(
                &group,
                &mut cursor,
                &mut carry,
                &published_before,
                &copies_here,
            ) {
                // Partitions taken away during the last poll of a full batch: the new owner
                // starts from the committed offsets, so this batch must not be published.
                Ok(_) if group.context().revoked.load(Ordering::SeqCst) => {
                    break Ending::Rebalanced
                }
                Ok(batch) => batch,
                Err(Stop::Rebalanced) => break Ending::Rebalanced,
            };
            if batch.read == 0 {
                continue;
            }
            let delivered = self.publish(&producer, &batch.moves);
            let acked = delivered.iter().filter(|d| d.is_some()).count();
            all_acked = acked == batch.moves.len();
            // Contiguous: a partition's offset stops at its first letter not acknowledged.
            let mut commit_to = cursor.position.clone();
            let mut by_reason: BTreeMap<&str, u64> = BTreeMap::new();
            for (m, d) in batch.moves.iter().zip(&delivered) {
                match d {
                    Some(copy) => {
                        copies_here.insert(*copy);
                        *by_reason.entry(m.reason.as_str()).or_default() += 1;
                    }
                    None => {
                        let c = commit_to.entry(m.partition).or_insert(m.offset);
                        *c = (*c).min(m.offset);
                    }
                }
            }
            for (reason, n) in by_reason {
                self.report.moved(reason, n);
            }
            // Only a batch whose copies are all acknowledged may move the bookmarks (an
            // unacknowledged copy may still have landed before a newer high watermark), and
            // only once the copies an interrupted run left are committed too.
            let fresh_marks = if all_acked && behind(&published_before, &commit_to) {
                Some(marks.fresh(&group)?)
            } else {
                None
            };
            group.commit(&commit_to, fresh_marks.as_ref(), &dlq_topic)?;
            batches += 1;
            let done: u64 = commit_to
                .iter()
                .map(|(p, c)| (c - start[p]).max(0) as u64)
                .sum();
            progress.around(|| {
                tracing::info!(
                    batch = batches,
                    read = batch.read,
                    moved = acked,
                    not_acknowledged = batch.moves.len() - acked,
                    committed = ?commit_to,
                    "batch committed"
                )
            });
            let moved = self.report.total_moved();
            progress.set(done, || format!("moved {moved}"));
            if !all_acked {
                // Only a signal ends the retries of a publish: the letters not acknowledged
                // are read again by the next run (which finds any copy that did land).
                break Ending::Interrupted;
            }
        };
        progress.finish();
        if ending != Ending::Rebalanced && all_acked {
            // Every letter before the position is judged and every copy acknowledged (the
            // position may have moved past offsets without letters since the last batch).
            group.commit(&cursor.position, None, &dlq_topic)?;
            if behind(&published_before, &cursor.position) {
                // Every copy's letter is committed: the next run need not look.
                group.commit_clean_marks(&marks)?;
            }
        }
        tracing::info!(
            batches,
            moved = self.report.total_moved(),
            seconds = started.elapsed().as_secs_f64(),
            "redrive finished"
        );
        Ok(ending)
    }

    /// Reads the next batch: letters up to `--batch-size`, judged, positions advanced.
    fn collect(
        &mut self,
        group: &GroupMember,
        cursor: &mut Cursor,
        carry: &mut Option<OwnedMessage>,
        published_before: &HashSet<(i32, i64)>,
        copies_here: &HashSet<(i32, i64)>,
    ) -> Result<Batch, Stop> {
        let mut batch = Batch::default();
        let mut first_at: Option<Instant> = None;
        if let Some(m) = carry.take() {
            self.take(&m, group, cursor, published_before, copies_here, &mut batch);
        }
        loop {
            if group.context().revoked.load(Ordering::SeqCst) {
                return Err(Stop::Rebalanced);
            }
            if batch.read > 0 {
                first_at.get_or_insert_with(Instant::now);
            }
            if cursor.complete()
                || cursor.remaining == Some(0)
                || self.shutdown.is_cancelled()
                || batch.read >= u64::from(self.args.batch_size)
                || first_at.is_some_and(|t| t.elapsed() >= BATCH_WAIT)
            {
                return Ok(batch);
            }
            match group.consumer.poll(POLL) {
                None => {}
                Some(Ok(m)) => {
                    self.take(&m, group, cursor, published_before, copies_here, &mut batch);
                }
                // Offsets without letters (transaction markers) cannot hold the end up: the
                // client has nothing more for this partition. Its offset stays where the last
                // letter read put it.
                Some(Err(KafkaError::PartitionEOF(p)))
                    if !cursor.follow && group.reached_end(p, cursor.position.get(&p).copied()) =>
                {
                    cursor.exhausted.insert(p);
                }
                // Logged by the client context; the client retries.
                Some(Err(_)) => {}
            }
        }
    }

    /// Judges one letter of the group consumer and adds it to the batch.
    fn take<M: Message>(
        &mut self,
        m: &M,
        group: &GroupMember,
        cursor: &mut Cursor,
        published_before: &HashSet<(i32, i64)>,
        copies_here: &HashSet<(i32, i64)>,
        batch: &mut Batch,
    ) {
        let p = m.partition();
        let Some(pos) = cursor.position.get_mut(&p) else {
            return;
        };
        // Past `--max-letters`, a letter is left unread: the next run reads it.
        if m.offset() < *pos || cursor.remaining == Some(0) {
            return;
        }
        if let Some(&end) = cursor.ends.get(&p).filter(|_| !cursor.follow) {
            if m.offset() >= end {
                // Past the end as at the start: left for a later run. Messages come in offset
                // order, so no letter lies between the position and the end.
                *pos = (*pos).max(end);
                group.pause(p);
                return;
            }
        }
        *pos = m.offset() + 1;
        batch.read += 1;
        if let Some(r) = &mut cursor.remaining {
            *r -= 1;
        }
        let letter = Letter::of(m);
        self.report.read_letter(letter.partition, letter.offset);
        match self.selection.judge(&letter, &self.config.kafka.topic) {
            Verdict::Move { record_ns, .. }
                if published_before.contains(&(letter.partition, letter.offset)) =>
            {
                self.report.left(&letter, Leave::MovedBefore, record_ns);
            }
            Verdict::Move { record_ns, .. }
                if letter
                    .source_partition
                    .zip(letter.source_offset)
                    .is_some_and(|copy| copies_here.contains(&copy)) =>
            {
                self.report.left(&letter, Leave::FailedAgain, record_ns);
            }
            Verdict::Move { key, record_ns } => {
                self.report.sample_moved(&letter, record_ns);
                batch.moves.push(Move {
                    partition: letter.partition,
                    offset: letter.offset,
                    reason: letter.reason.to_owned(),
                    key,
                    value: letter.value.to_vec(),
                });
            }
            Verdict::Leave(why, record_ns) => self.report.left(&letter, why, record_ns),
        }
    }

    /// The idempotent producer copies are published with.
    fn producer(&self) -> Result<FutureProducer, RedriveError> {
        let mut c = self.base.clone();
        c.set("enable.idempotence", "true")
            .set("acks", "all")
            .set("compression.type", "lz4")
            .set("linger.ms", "5")
            .set("message.timeout.ms", "30000");
        c.create()
            .map_err(RedriveError::kafka("creating the redrive producer"))
    }

    /// Publishes every move, retrying failures until each is acknowledged or a signal stops
    /// the retries; returns, per move, where its copy landed (`None`: not acknowledged).
    fn publish(&self, producer: &FutureProducer, moves: &[Move]) -> Vec<Option<(i32, i64)>> {
        let mut delivered: Vec<Option<(i32, i64)>> = vec![None; moves.len()];
        let mut pending: Vec<usize> = (0..moves.len()).collect();
        let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(10));
        let topic = self.config.kafka.topic.as_str();
        let dlq_topic = self.config.kafka_dlq_topic.as_str();
        while !pending.is_empty() {
            let sends = pending.iter().map(|&i| {
                let m = &moves[i];
                let partition = m.partition.to_string();
                let offset = m.offset.to_string();
                let mut headers = OwnedHeaders::new_with_capacity(RECORD_HEADERS.len() + 3);
                for (k, v) in RECORD_HEADERS {
                    headers = headers.insert(Header {
                        key: k,
                        value: Some(v),
                    });
                }
                headers = headers
                    .insert(Header {
                        key: REDRIVE_HEADER_TOPIC,
                        value: Some(dlq_topic),
                    })
                    .insert(Header {
                        key: REDRIVE_HEADER_PARTITION,
                        value: Some(&partition),
                    })
                    .insert(Header {
                        key: REDRIVE_HEADER_OFFSET,
                        value: Some(&offset),
                    });
                let mut record: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(topic)
                    .payload(m.value.as_slice())
                    .headers(headers);
                if let Some(k) = &m.key {
                    record = record.key(k.as_slice());
                }
                producer.send(record, Duration::from_secs(30))
            });
            let results = self.runtime.block_on(futures::future::join_all(sends));
            let mut failed = Vec::new();
            let mut last_error = String::new();
            for (&i, r) in pending.iter().zip(results) {
                match r {
                    Ok(d) => delivered[i] = Some((d.partition, d.offset)),
                    Err((e, _)) => {
                        last_error = e.to_string();
                        failed.push(i);
                    }
                }
            }
            if failed.is_empty() {
                break;
            }
            let delay = backoff.next_delay(None);
            tracing::warn!(
                failed = failed.len(),
                error = %last_error,
                retry_in = ?delay,
                "re-publishing failed; retrying (the batch's offsets wait)"
            );
            if self.sleep_unless_stopped(delay) {
                break;
            }
            pending = failed;
        }
        delivered
    }

    /// Sleeps `d`; true when a signal came first.
    fn sleep_unless_stopped(&self, d: Duration) -> bool {
        let until = Instant::now() + d;
        while Instant::now() < until {
            if self.shutdown.is_cancelled() {
                return true;
            }
            std::thread::sleep(POLL.min(until.saturating_duration_since(Instant::now())));
        }
        self.shutdown.is_cancelled()
    }
}

/// True when every letter in `letters` lies before `committed`'s offset of its partition.
fn behind(letters: &HashSet<(i32, i64)>, committed: &BTreeMap<i32, i64>) -> bool {
    letters
        .iter()
        .all(|(p, o)| committed.get(p).is_some_and(|c| o < c))
}

/// Where a run starts and ends in each dead-letter partition.
struct Plan {
    /// The first offset to read: the group's committed offset (or the oldest letter).
    start: BTreeMap<i32, i64>,
    /// The partitions' bounds now.
    bounds: BTreeMap<i32, Bounds>,
}

/// Letters read in one batch.
#[derive(Default)]
struct Batch {
    read: u64,
    moves: Vec<Move>,
}

/// Where the run is in each dead-letter partition.
struct Cursor {
    /// The end of each partition as at the start.
    ends: BTreeMap<i32, i64>,
    /// The next offset to read (every letter before it is judged).
    position: BTreeMap<i32, i64>,
    /// Partitions the client has nothing more of, although short of their end (offsets
    /// without letters).
    exhausted: HashSet<i32>,
    /// `--follow`: there is no end.
    follow: bool,
    /// `--max-letters`: letters still to read.
    remaining: Option<u64>,
}

impl Cursor {
    /// Every partition read to its end as at the start (never, with `--follow`).
    fn complete(&self) -> bool {
        !self.follow
            && self.ends.iter().all(|(p, e)| {
                self.exhausted.contains(p) || self.position.get(p).is_some_and(|pos| pos >= e)
            })
    }
}

/// Why collecting a batch stopped early.
enum Stop {
    /// Partitions were revoked: another member joined.
    Rebalanced,
}

/// The main topic's bookmarks ([`resume`]): the high watermarks, refreshed at most every
/// [`MARK_REFRESH`].
struct Marks {
    topic: String,
    partitions: Vec<i32>,
    last: Option<(Instant, BTreeMap<i32, i64>)>,
}

impl Marks {
    fn new(topic: &str, partitions: Vec<i32>) -> Self {
        Self {
            topic: topic.to_owned(),
            partitions,
            last: None,
        }
    }

    /// The bookmarks to commit now (dirty: "copies can land from here on").
    fn fresh(&mut self, group: &GroupMember) -> Result<BTreeMap<i32, i64>, RedriveError> {
        if let Some((at, marks)) = &self.last {
            if at.elapsed() < MARK_REFRESH {
                return Ok(marks.clone());
            }
        }
        let mut marks = BTreeMap::new();
        for &p in &self.partitions {
            let (_, high) = group
                .consumer
                .fetch_watermarks(&self.topic, p, REQUEST_TIMEOUT)
                .map_err(RedriveError::kafka(format!(
                    "fetching the watermarks of {}/{p}",
                    self.topic
                )))?;
            marks.insert(p, Mark::dirty(high));
        }
        self.last = Some((Instant::now(), marks.clone()));
        Ok(marks)
    }
}

/// Rebalance callbacks of the redrive's group member.
#[derive(Default)]
struct GroupContext {
    /// Set when partitions were taken away after the run started.
    revoked: AtomicBool,
    /// Set once the run owns every partition; revocations before that are expected.
    started: AtomicBool,
    assigned: Mutex<Vec<i32>>,
}

impl ClientContext for GroupContext {
    fn error(&self, error: KafkaError, reason: &str) {
        crate::scan::ToolContext.error(error, reason);
    }
}

impl ConsumerContext for GroupContext {
    fn pre_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(tpl) = rebalance {
            if tpl.count() > 0 && self.started.load(Ordering::SeqCst) {
                self.revoked.store(true, Ordering::SeqCst);
            }
            if let Ok(mut a) = self.assigned.lock() {
                a.clear();
            }
        }
    }

    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(tpl) = rebalance {
            if let Ok(mut a) = self.assigned.lock() {
                *a = tpl.elements().iter().map(|e| e.partition()).collect();
                a.sort_unstable();
            }
        }
    }
}

/// The redrive's member of its consumer group.
struct GroupMember {
    consumer: BaseConsumer<GroupContext>,
    group: String,
    topic: String,
    main_topic: String,
}

impl GroupMember {
    fn join(
        base: &ClientConfig,
        config: &ConsumerConfig,
        group: &str,
        partitions: &[i32],
    ) -> Result<Self, RedriveError> {
        let mut c = base.clone();
        c.set("group.id", group)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("enable.partition.eof", "true")
            .set("partition.assignment.strategy", "range")
            // The start (reading where the dead-letter partitions end, looking for an
            // interrupted run's copies) can take minutes on a busy topic before the first poll
            // of letters.
            .set("max.poll.interval.ms", "1800000");
        crate::kafka::set_session_timeout(&mut c, config);
        let consumer: BaseConsumer<GroupContext> =
            c.create_with_context(GroupContext::default())
                .map_err(RedriveError::kafka("creating the redrive's group consumer"))?;
        consumer
            .subscribe(&[&config.kafka_dlq_topic])
            .map_err(RedriveError::kafka(format!(
                "subscribing to {:?}",
                config.kafka_dlq_topic
            )))?;
        tracing::info!(group, topic = %config.kafka_dlq_topic, partitions = ?partitions, "joining the redrive group");
        Ok(Self {
            consumer,
            group: group.to_owned(),
            topic: config.kafka_dlq_topic.clone(),
            main_topic: config.kafka.topic.clone(),
        })
    }

    fn context(&self) -> &GroupContext {
        self.consumer.context()
    }

    /// Polls until every partition is assigned to this member (reading nothing before), and
    /// returns the first letter polled after that, if any. A member that died without leaving
    /// (a crashed run) holds its share until its session times out, so the wait lasts a
    /// little over two session timeouts.
    fn wait_for_all(
        &self,
        partitions: &[i32],
        config: &ConsumerConfig,
        shutdown: &CancellationToken,
    ) -> Result<Waited, RedriveError> {
        let waited = config.kafka_session_timeout * 2 + Duration::from_secs(10);
        let deadline = Instant::now() + waited;
        let mut told = false;
        loop {
            if shutdown.is_cancelled() {
                return Ok(Waited::Stopped);
            }
            let polled = self
                .consumer
                .poll(POLL)
                .and_then(Result::ok)
                .map(|m| m.detach());
            let mine = self
                .context()
                .assigned
                .lock()
                .map(|a| a.clone())
                .unwrap_or_default();
            if mine == partitions {
                self.context().started.store(true, Ordering::SeqCst);
                // Fetched under the full assignment (an eager rebalance restarts every
                // partition at its committed offset): the run reads it.
                return Ok(Waited::Owner(polled));
            }
            // A letter polled under part of the assignment is dropped: a rebalance to the
            // full one restarts each partition at its committed offset.
            drop(polled);
            if Instant::now() >= deadline {
                return Err(RedriveError::Busy {
                    group: self.group.clone(),
                    topic: self.topic.clone(),
                    mine,
                    all: partitions.to_vec(),
                    waited,
                });
            }
            if !mine.is_empty() && !told {
                told = true;
                tracing::warn!(
                    assigned = ?mine,
                    "another member holds part of the group; waiting for it to leave or time out"
                );
            }
        }
    }

    /// True when the partition's high watermark is at or before `position`.
    fn reached_end(&self, partition: i32, position: Option<i64>) -> bool {
        position.is_some_and(|position| {
            self.consumer
                .fetch_watermarks(&self.topic, partition, REQUEST_TIMEOUT)
                .is_ok_and(|(_, high)| position >= high)
        })
    }

    fn pause(&self, partition: i32) {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition(&self.topic, partition);
        // Stops prefetching letters that will not be read; a failure only costs bandwidth.
        let _ = self.consumer.pause(&tpl);
    }

    /// Commits the dead-letter offsets and, when given, the main topic's bookmarks, in that
    /// order (a crash between the two leaves older bookmarks, which only make the next start
    /// read more). Retried for a while: the coordinator may be busy.
    fn commit(
        &self,
        offsets: &BTreeMap<i32, i64>,
        marks: Option<&BTreeMap<i32, i64>>,
        dlq_topic: &str,
    ) -> Result<(), RedriveError> {
        self.commit_list(dlq_topic, offsets)?;
        if let Some(marks) = marks {
            self.commit_list(&self.main_topic, marks)?;
        }
        Ok(())
    }

    /// Commits the clean bookmark on every main-topic partition.
    fn commit_clean_marks(&self, marks: &Marks) -> Result<(), RedriveError> {
        let clean = marks.partitions.iter().map(|&p| (p, Mark::CLEAN)).collect();
        self.commit_list(&self.main_topic, &clean)
    }

    fn commit_list(&self, topic: &str, offsets: &BTreeMap<i32, i64>) -> Result<(), RedriveError> {
        let mut tpl = TopicPartitionList::new();
        for (&p, &o) in offsets {
            tpl.add_partition_offset(topic, p, Offset::Offset(o))
                .map_err(RedriveError::kafka("building a commit"))?;
        }
        let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(5));
        loop {
            match self.consumer.commit(&tpl, CommitMode::Sync) {
                Ok(()) => return Ok(()),
                Err(e) if backoff.attempt() < 8 => {
                    let delay = backoff.next_delay(None);
                    tracing::warn!(error = %e, topic, retry_in = ?delay, "commit failed; retrying");
                    std::thread::sleep(delay);
                }
                Err(e) => {
                    return Err(RedriveError::kafka(format!(
                        "committing offsets of {topic:?} for group {:?}",
                        self.group
                    ))(e))
                }
            }
        }
    }
}

/// What waiting for the assignment came to.
enum Waited {
    /// This member owns every partition; the letter polled with the assignment, if any.
    Owner(Option<OwnedMessage>),
    /// A signal came first.
    Stopped,
}
