//! `--follow`: tails a growing NDJSON file like `tail -F`, across rotation (the path names a
//! new inode: finish the old file, then read the new one from its start) and truncation (the file
//! got shorter than the read position: start over at 0). A partial last line is never consumed
//! until its newline arrives (or the file was rotated away).
//!
//! Progress is kept in a [`Checkpoint`] that only ever names an offset whose every record before
//! it Kafka acknowledged, in order, so a restart never skips a record. It is written as the
//! acknowledgements advance it: while the file is being read, at most every
//! [`CHECKPOINT_INTERVAL`](committer::CHECKPOINT_INTERVAL) unless [`CHECKPOINT_EVERY_RECORDS`](committer::CHECKPOINT_EVERY_RECORDS) more records were acknowledged
//! first; while the producer waits for the file to grow, before the wait and as soon as
//! acknowledgements come in; and at shutdown once the in-flight records settled.
//!
//! A SIGKILL (or a crash, or power loss) between an acknowledgement and the next checkpoint
//! write leaves records after the checkpoint that Kafka stored: the ones acknowledged since that
//! write (at most about 100 ms worth) and some still in flight. Each checkpoint also carries the
//! topic's high watermarks read before the records after it were sent, and the restart skips the
//! records it finds stored from there on ([`resume`]); when it cannot look, it sends them
//! again (at-least-once). A SIGTERM/SIGINT stop writes the checkpoint after every in-flight
//! record settled (within `SHUTDOWN_TIMEOUT`), so its restart re-reads nothing.
//!
//! The pieces: [`tail`] reads the file (where to start, rotation, partial lines), [`committer`]
//! advances and writes the [`checkpoint`], [`resume`] finds what Kafka stored after it; this
//! module runs the loop and sends through the [`Dispatcher`].

pub(crate) mod checkpoint;
mod committer;
pub(crate) mod resume;
mod tail;

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use thiserror::Error;
use tokio_util::sync::CancellationToken;

use self::checkpoint::{Checkpoint, CheckpointError, FileId};
use self::committer::Committer;
use self::resume::{AlreadySent, Watermarks};
use self::tail::{Mark, Reading, Tail};
use crate::batch::{Batch, Item};
use crate::config::ProducerConfig;
use crate::dispatch::{Dispatcher, Enqueue, Origin};
use crate::kafka::Sink;
use crate::metrics::Metrics;
use crate::report::Report;

/// Bound on reading what Kafka stored after the checkpoint at a restart.
const RESUME_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a poll wait sleeps between checks for shutdown.
const WAIT_STEP: Duration = Duration::from_millis(50);

/// What `--follow` says when shutdown stopped a record waiting for room in the queue.
const HELD_AT_SHUTDOWN: &str = "shutdown came while records waited for room in the kafka queue";

/// `--follow` cannot run.
#[derive(Debug, Error)]
pub enum FollowError {
    /// The file cannot be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// The file is a JSON array: it cannot grow by appending.
    #[error("{0}: --follow needs NDJSON (one record per line), this file is a JSON array")]
    NotNdjson(PathBuf),
    /// The checkpoint is unusable.
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
}

/// What [`send`] saw.
#[derive(Debug, Clone, Copy, Default)]
struct Sent {
    /// An invalid record was rejected.
    invalid: bool,
    /// Shutdown came while a record waited for room in the queue: it and the rest of the batch
    /// were not sent.
    interrupted: bool,
}

/// Follows `path` until shutdown, then waits for Kafka to acknowledge what was sent (bounded
/// by `shutdown_timeout`) and writes the final checkpoint.
pub(crate) fn run(
    sink: Arc<Sink>,
    metrics: Arc<Metrics>,
    config: &ProducerConfig,
    path: &Path,
    strict: bool,
    shutdown: &CancellationToken,
) -> Result<Report, FollowError> {
    let checkpoint_path = config.checkpoint_for(path);
    let cap = config.max_record_bytes;
    let io_err = |source| FollowError::Io {
        path: path.to_owned(),
        source,
    };
    let mut tail = loop {
        match tail::start(path, &checkpoint_path, cap) {
            Ok(t) => break t,
            Err(FollowError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
                if wait(shutdown, config.follow_poll_interval) {
                    return Ok(Report::default());
                }
            }
            Err(e) => return Err(e),
        }
    };
    tracing::info!(
        path = %path.display(),
        file = %tail.path.display(),
        offset = tail.offset(),
        checkpoint = %checkpoint_path.display(),
        "following"
    );
    let queue_max = sink.queue_max() as u64;
    let mut d: Dispatcher<Mark> = Dispatcher::new(
        sink,
        metrics,
        Origin::File,
        shutdown.clone(),
        config.service.shutdown_timeout,
        config.max_logged_errors,
    );
    let mut committer = Committer::new(checkpoint_path.clone());
    committer.watermarks = Watermarks::start(&client_config(config), &config.kafka.topic)
        .map_err(|e| tracing::warn!(error = %e, "cannot read the topic's watermarks: a restart after a crash will send again what followed the checkpoint"))
        .ok();
    committer.already = already_sent(&checkpoint_path, &tail, config, queue_max);
    let mut batch = Batch::new();
    let origin = path.display().to_string();
    while !shutdown.is_cancelled() {
        if tail.read(&mut batch)? == Reading::Advanced {
            let sent = send(&batch, &mut d, &mut committer, &origin);
            if sent.interrupted {
                committer.hold(d.pending_chunks(), HELD_AT_SHUTDOWN);
                break;
            }
            if sent.invalid && strict {
                d.report.stopped_strict = true;
                break;
            }
            d.seal(tail.mark(committer.snapshot()));
            d.retire_settled(|m, s| committer.done(m, s));
            committer.store_due();
            continue;
        }
        // At the end of the file: rotated, truncated, or just no new data yet?
        if tail.rotated {
            if !finish_rotated(&mut tail, &mut batch, &mut d, &mut committer, &origin) {
                committer.hold(d.pending_chunks(), HELD_AT_SHUTDOWN);
                break;
            }
            d.seal(tail.mark(committer.snapshot()));
            // The new file may not be there yet (rename first, create later).
            loop {
                match Tail::open(path, 0, 1, 0, cap) {
                    Ok(t) => break tail = t,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {
                        committer.store();
                        if wait_acknowledged(
                            shutdown,
                            &mut d,
                            &mut committer,
                            config.follow_poll_interval,
                        ) {
                            break;
                        }
                    }
                    Err(e) => return Err(io_err(e)),
                }
            }
            if tail.rotated {
                // Shutdown came before the new file appeared.
                break;
            }
            tracing::info!(file = %path.display(), "finished the rotated file, following the new one");
            continue;
        }
        match std::fs::metadata(path) {
            Ok(meta) if FileId::of(&meta) != tail.id => {
                // Read what was written to the old file before the rotation, then switch.
                tail.rotated = true;
                tracing::info!(file = %path.display(), "file rotated");
                continue;
            }
            Ok(meta) if meta.len() < tail.read_to() => {
                tracing::warn!(
                    file = %path.display(),
                    size = meta.len(),
                    offset = tail.offset(),
                    "file truncated, reading it again from the start"
                );
                d.seal(tail.mark(committer.snapshot()));
                tail = Tail::open(path, 0, 1, 0, cap).map_err(io_err)?;
                continue;
            }
            _ => {}
        }
        d.retire_settled(|m, s| committer.done(m, s));
        committer.store();
        wait_acknowledged(
            shutdown,
            &mut d,
            &mut committer,
            config.follow_poll_interval,
        );
    }
    let partial = tail.read_to() - tail.offset();
    if partial > 0 {
        tracing::info!(
            bytes = partial,
            "a partial last line stays unread until its newline arrives"
        );
    }
    d.drain(tail.mark(committer.snapshot()), |m, s| {
        committer.done(m, s);
        committer.store_due();
    });
    committer.store();
    if let Some(already) = &committer.already {
        tracing::info!(
            records = already.skipped(),
            "records after the checkpoint that kafka already had were not sent again"
        );
    }
    Ok(d.report.clone())
}

/// Sends the records of `batch` Kafka does not hold already (after a restart,
/// [`Committer::already_stored`]) and counts the rejected ones. Chunks acknowledged while a
/// record waits for room in the queue advance the checkpoint.
fn send(batch: &Batch, d: &mut Dispatcher<Mark>, committer: &mut Committer, origin: &str) -> Sent {
    let mut sent = Sent::default();
    for item in batch.items() {
        match item {
            Item::Record(record) => {
                if committer.already_stored(batch.key(record), batch.value(record)) {
                    continue;
                }
                let done = |m: Mark, s| {
                    committer.done(m, s);
                    committer.store_due();
                };
                if d.send(origin, batch, record, done) == Enqueue::Interrupted {
                    sent.interrupted = true;
                    return sent;
                }
            }
            Item::Rejected(e) => {
                sent.invalid = true;
                d.reject(origin, e);
            }
        }
    }
    sent
}

/// Reads a rotated file to its end, including a last line without newline (nothing more will be
/// appended to it). False when shutdown interrupted it.
fn finish_rotated(
    tail: &mut Tail,
    batch: &mut Batch,
    d: &mut Dispatcher<Mark>,
    committer: &mut Committer,
    origin: &str,
) -> bool {
    let mut finishing = false;
    loop {
        match tail.read(batch) {
            Ok(Reading::Advanced) => {
                if send(batch, d, committer, origin).interrupted {
                    return false;
                }
                // The checkpoint may point into the rotated file: a restart finishes it first.
                d.seal(tail.mark(committer.snapshot()));
                d.retire_settled(|m, s| committer.done(m, s));
                committer.store_due();
            }
            Ok(Reading::AtEnd) if !finishing => {
                // Then the last line, even without its newline.
                finishing = true;
                tail.finish();
            }
            Ok(Reading::AtEnd) => return true,
            Err(e) => {
                tracing::error!(file = %tail.path.display(), error = %e, "cannot finish the rotated file");
                return true;
            }
        }
    }
}

/// What Kafka stored after the checkpoint `tail` resumes at, when the checkpoint carries the
/// offsets to look from ([`resume`]); `None` sends everything after it again.
fn already_sent(
    checkpoint_path: &Path,
    tail: &Tail,
    config: &ProducerConfig,
    queue_max: u64,
) -> Option<AlreadySent> {
    let ck = Checkpoint::load(checkpoint_path).ok().flatten()?;
    if ck.kafka_from.is_empty() || ck.file_id() != tail.id || ck.offset != tail.offset() {
        return None;
    }
    let started = Instant::now();
    match AlreadySent::read(
        &client_config(config),
        &config.kafka.topic,
        &ck.kafka_from,
        queue_max,
        RESUME_READ_TIMEOUT,
    ) {
        Ok(a) if a.is_done() => None,
        Ok(a) => {
            tracing::info!(
                elapsed_ms = started.elapsed().as_millis() as u64,
                "read what kafka stored after the checkpoint; those records are not sent again"
            );
            Some(a)
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot read what kafka stored after the checkpoint: the records after it are sent again (duplicates are possible)");
            None
        }
    }
}

/// The librdkafka settings of the watermark reader and the resume reader: the producer's
/// brokers and security settings.
fn client_config(config: &ProducerConfig) -> rdkafka::ClientConfig {
    let mut c = crate::kafka::client::base_client_config(config);
    c.set("group.id", "logpipe-producer-follow")
        .set("enable.auto.commit", "false");
    c
}

/// Sleeps `interval` unless shutdown comes, meanwhile retiring the chunks Kafka acknowledges and
/// writing the checkpoint as soon as they advance it ([`Committer::store_idle`]); true when
/// shutdown came.
fn wait_acknowledged(
    shutdown: &CancellationToken,
    d: &mut Dispatcher<Mark>,
    committer: &mut Committer,
    interval: Duration,
) -> bool {
    let end = Instant::now() + interval;
    loop {
        d.retire_settled(|m, s| committer.done(m, s));
        committer.store_idle();
        if shutdown.is_cancelled() {
            return true;
        }
        let now = Instant::now();
        if now >= end {
            return false;
        }
        let mut until = end.min(now + WAIT_STEP);
        // Only after a failed write: its retry.
        if let Some(due) = committer.due_at() {
            until = until.min(due.max(now));
        }
        d.wait_oldest(until);
    }
}

/// Sleeps `d` unless shutdown comes; true when it came.
fn wait(shutdown: &CancellationToken, d: Duration) -> bool {
    let step = Duration::from_millis(50);
    let mut left = d;
    while !left.is_zero() {
        if shutdown.is_cancelled() {
            return true;
        }
        let s = left.min(step);
        std::thread::sleep(s);
        left -= s;
    }
    shutdown.is_cancelled()
}
