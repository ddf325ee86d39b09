//! The `--follow` checkpoint's writer: it advances the [`Checkpoint`] to the newest
//! [`Mark`] whose chunk, and every chunk before it, Kafka acknowledged, and writes it throttled
//! ([`CHECKPOINT_INTERVAL`], [`CHECKPOINT_EVERY_RECORDS`]) while the file is read, at once while
//! the producer waits for the file to grow, and at shutdown; never past a record that failed.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::checkpoint::{Checkpoint, CheckpointError};
use super::resume::{AlreadySent, PartitionOffset, Watermarks};
use super::tail::Mark;
use crate::kafka::delivery::Settled;

/// Longest time the checkpoint waits to be written after acknowledgements advanced it while the
/// file is being read: the bound on what a SIGKILL makes it send again. One write (a temporary
/// file, synced, renamed) per interval at most, never one per record. (While the producer waits
/// for the file to grow it writes as soon as acknowledgements come in: at most once per chunk
/// sealed after a read.)
pub(crate) const CHECKPOINT_INTERVAL: Duration = Duration::from_millis(100);

/// Acknowledged records after which the checkpoint is written without waiting for
/// [`CHECKPOINT_INTERVAL`] (when Kafka acknowledges faster than this every 100 ms).
pub(crate) const CHECKPOINT_EVERY_RECORDS: u64 = 10_000;

/// Writes the checkpoint for the newest mark whose chunk and all before it were acknowledged:
/// when asked ([`Committer::store`]), or throttled as acknowledgements advance it
/// ([`Committer::store_due`]).
pub(super) struct Committer {
    path: PathBuf,
    /// The newest mark whose chunk and all before it were acknowledged.
    last: Option<Mark>,
    /// `last` is not written yet.
    dirty: bool,
    /// When a write was last tried.
    written_at: Option<Instant>,
    /// Records acknowledged since then.
    acknowledged: u64,
    /// The last write failed.
    failing: bool,
    stuck: bool,
    /// After [`Committer::hold`]: how many more chunks may still advance the checkpoint.
    allowed: Option<usize>,
    /// The topic's high watermarks, for the marks (none: checkpoints without offsets).
    pub(super) watermarks: Option<Watermarks>,
    /// After a restart: what Kafka stored after the checkpoint, not to be sent again.
    pub(super) already: Option<AlreadySent>,
}

impl Committer {
    pub(super) fn new(path: PathBuf) -> Self {
        Self {
            path,
            last: None,
            dirty: false,
            written_at: None,
            acknowledged: 0,
            failing: false,
            stuck: false,
            allowed: None,
            watermarks: None,
            already: None,
        }
    }

    /// The latest high watermarks, for a mark made now.
    pub(super) fn snapshot(&self) -> Arc<Vec<PartitionOffset>> {
        self.watermarks
            .as_ref()
            .map_or_else(|| Arc::new(Vec::new()), Watermarks::latest)
    }

    /// True when Kafka stored the record (`key`, `value`) after the checkpoint this run resumed
    /// at: do not send it again.
    pub(super) fn already_stored(&mut self, key: &[u8], value: &[u8]) -> bool {
        let Some(already) = &mut self.already else {
            return false;
        };
        let skip = already.take(key, value);
        if already.is_done() {
            tracing::info!(
                records = already.skipped(),
                "records after the checkpoint that kafka already had were not sent again"
            );
            self.already = None;
        }
        skip
    }

    pub(super) fn done(&mut self, mark: Mark, settled: Settled) {
        if let Some(n) = &mut self.allowed {
            if *n == 0 {
                self.stuck = true;
            } else {
                *n -= 1;
            }
        }
        if self.stuck {
            return;
        }
        if settled.failed > 0 {
            // Not acknowledged: the checkpoint must stay before these records so a restart
            // sends them again.
            self.stuck = true;
            tracing::error!(
                records = settled.failed,
                "records not delivered; the checkpoint stays before them until a restart retries them"
            );
            return;
        }
        self.last = Some(mark);
        self.dirty = true;
        self.acknowledged += settled.delivered;
    }

    /// Stops advancing the checkpoint after the `pending` chunks already sealed: records after
    /// them were not all sent.
    pub(super) fn hold(&mut self, pending: usize, why: &str) {
        tracing::warn!("checkpoint held after the records already sent: {why}");
        self.allowed = Some(pending);
    }

    /// When the advanced checkpoint is due to be written: [`CHECKPOINT_INTERVAL`] after the
    /// last write, or now once [`CHECKPOINT_EVERY_RECORDS`] were acknowledged since (or before
    /// the first write); `None` when there is nothing new to write.
    pub(super) fn due_at(&self) -> Option<Instant> {
        if !self.dirty {
            return None;
        }
        match self.written_at {
            Some(at) if self.acknowledged < CHECKPOINT_EVERY_RECORDS => {
                Some(at + CHECKPOINT_INTERVAL)
            }
            _ => Some(Instant::now()),
        }
    }

    /// Writes the advanced checkpoint when it is due ([`Committer::due_at`]).
    pub(super) fn store_due(&mut self) {
        if self.due_at().is_some_and(|due| due <= Instant::now()) {
            self.store();
        }
    }

    /// Writes the advanced checkpoint now, while the producer waits for the file to grow (no
    /// reading to slow down); after a failed write, only once the interval passed.
    pub(super) fn store_idle(&mut self) {
        if self.failing {
            self.store_due();
        } else {
            self.store();
        }
    }

    /// Writes the advanced checkpoint now.
    pub(super) fn store(&mut self) {
        if !self.dirty {
            return;
        }
        let Some(mark) = &self.last else {
            return;
        };
        // Counted as a write even when it fails: the next try waits for the interval.
        self.written_at = Some(Instant::now());
        self.acknowledged = 0;
        let result = Checkpoint::at(&mark.file, mark.id, mark.offset, mark.line, mark.index)
            .map(|c| c.with_kafka_from(&mark.kafka_from))
            .map_err(|source| CheckpointError::Io {
                path: self.path.clone(),
                source,
            })
            .and_then(|c| c.store(&self.path));
        self.failing = result.is_err();
        match result {
            Ok(()) => self.dirty = false,
            Err(e) => tracing::error!(error = %e, "cannot write the checkpoint"),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::fs::File;
    use std::path::Path;

    use super::super::checkpoint::FileId;
    use super::*;

    fn mark(file: &Arc<File>, offset: u64) -> Mark {
        Mark {
            file: Arc::clone(file),
            id: FileId::of(&file.metadata().unwrap()),
            offset,
            line: offset / 10 + 1,
            index: offset / 10,
            kafka_from: Arc::new(Vec::new()),
        }
    }

    fn acknowledged(records: u64) -> Settled {
        Settled {
            enqueued: records,
            delivered: records,
            ..Settled::default()
        }
    }

    fn stored_offset(path: &Path) -> Option<u64> {
        Checkpoint::load(path).unwrap().map(|c| c.offset)
    }

    /// A log of 10-byte lines and a committer writing next to it.
    fn setup() -> (tempfile::TempDir, Arc<File>, Committer, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("app.log");
        std::fs::write(&log, "123456789\n".repeat(100_000)).unwrap();
        let file = Arc::new(File::open(&log).unwrap());
        let ck = dir.path().join("app.log.checkpoint");
        (dir, file, Committer::new(ck.clone()), ck)
    }

    #[test]
    fn acknowledgements_are_written_at_most_every_interval_and_all_of_them_in_the_end() {
        let (_dir, file, mut c, ck) = setup();
        // The first acknowledgement is written at once.
        c.done(mark(&file, 100), acknowledged(10));
        c.store_due();
        assert_eq!(stored_offset(&ck), Some(100));
        // The next ones wait for the interval...
        let written = Instant::now();
        c.done(mark(&file, 200), acknowledged(10));
        c.store_due();
        c.done(mark(&file, 300), acknowledged(10));
        c.store_due();
        if written.elapsed() < CHECKPOINT_INTERVAL {
            assert_eq!(stored_offset(&ck), Some(100), "throttled");
        }
        let due = c.due_at().expect("a write is due");
        assert!(
            due <= written + CHECKPOINT_INTERVAL,
            "due within the interval"
        );
        // ...and are written once it passed, the newest mark only.
        std::thread::sleep(due.saturating_duration_since(Instant::now()));
        c.store_due();
        assert_eq!(stored_offset(&ck), Some(300));
        assert_eq!(c.due_at(), None, "nothing left to write");
        // An explicit store (before a poll wait, at shutdown) is not throttled.
        c.done(mark(&file, 400), acknowledged(10));
        c.store();
        assert_eq!(stored_offset(&ck), Some(400));
    }

    #[test]
    fn many_acknowledged_records_are_written_without_waiting_for_the_interval() {
        let (_dir, file, mut c, ck) = setup();
        c.done(mark(&file, 100), acknowledged(10));
        c.store_due();
        let written = Instant::now();
        c.done(
            mark(&file, 200),
            acknowledged(CHECKPOINT_EVERY_RECORDS - 11),
        );
        c.store_due();
        if written.elapsed() < CHECKPOINT_INTERVAL {
            assert_eq!(
                stored_offset(&ck),
                Some(100),
                "throttled below the record count"
            );
        }
        c.done(mark(&file, 300), acknowledged(11));
        c.store_due();
        assert_eq!(stored_offset(&ck), Some(300));
    }

    #[test]
    fn the_checkpoint_never_passes_records_that_failed() {
        let (_dir, file, mut c, ck) = setup();
        c.done(mark(&file, 100), acknowledged(10));
        c.done(
            mark(&file, 200),
            Settled {
                enqueued: 10,
                delivered: 9,
                failed: 1,
                ..Settled::default()
            },
        );
        c.done(mark(&file, 300), acknowledged(CHECKPOINT_EVERY_RECORDS));
        c.store_due();
        c.store();
        assert_eq!(stored_offset(&ck), Some(100));
    }

    #[test]
    fn a_failed_write_is_retried_after_the_interval_not_in_a_busy_loop() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("app.log");
        std::fs::write(&log, "123456789\n".repeat(100)).unwrap();
        let file = Arc::new(File::open(&log).unwrap());
        // The checkpoint's folder does not exist: every write fails.
        let mut c = Committer::new(dir.path().join("missing").join("ck"));
        c.done(mark(&file, 100), acknowledged(CHECKPOINT_EVERY_RECORDS));
        let tried = Instant::now();
        c.store_due();
        let due = c.due_at().expect("still to be written");
        assert!(
            due >= tried + CHECKPOINT_INTERVAL,
            "retried after the interval"
        );
        let before = c.written_at;
        c.store_idle();
        if tried.elapsed() < CHECKPOINT_INTERVAL {
            assert_eq!(
                c.written_at, before,
                "an idle wait does not retry at once either"
            );
        }
    }

    #[test]
    fn an_idle_producer_writes_acknowledgements_at_once() {
        let (_dir, file, mut c, ck) = setup();
        c.done(mark(&file, 100), acknowledged(10));
        c.store_due();
        c.done(mark(&file, 200), acknowledged(10));
        c.store_idle();
        assert_eq!(stored_offset(&ck), Some(200));
    }
}
