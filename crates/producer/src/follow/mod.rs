//! `--follow`: tails a growing NDJSON file like `tail -F`, across rotation (the path names a
//! new inode: finish the old file, then read the new one from its start) and truncation (the file
//! got shorter than the read position: start over at 0). A partial last line is never consumed
//! until its newline arrives (or the file was rotated away).
//!
//! Progress is kept in a [`Checkpoint`] that only ever names an offset whose every record before
//! it Kafka acknowledged, in order, so a restart never skips a record. It is written as the
//! acknowledgements advance it: while the file is being read, at most every
//! [`CHECKPOINT_INTERVAL`] unless [`CHECKPOINT_EVERY_RECORDS`] more records were acknowledged
//! first; while the producer waits for the file to grow, before the wait and as soon as
//! acknowledgements come in; and at shutdown once the in-flight records settled.
//!
//! A SIGKILL (or a crash, or power loss) between an acknowledgement and the next checkpoint
//! write leaves records after the checkpoint that Kafka stored: the ones acknowledged since that
//! write (at most about 100 ms worth) and some still in flight. Each checkpoint also carries the
//! topic's high watermarks read before the records after it were sent, and the restart skips the
//! records it finds stored from there on ([`crate::resume`]); when it cannot look, it sends them
//! again (at-least-once). A SIGTERM/SIGINT stop writes the checkpoint after every in-flight
//! record settled (within `SHUTDOWN_TIMEOUT`), so its restart re-reads nothing.

use std::fs::File;
use std::io::{self, Cursor, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use schema::{Position, ReadError, RecordReader};
use thiserror::Error;
use tokio_util::sync::CancellationToken;

use crate::checkpoint::{Checkpoint, CheckpointError, FileId};
use crate::chunk::{Dispatcher, Enqueue};
use crate::config::ProducerConfig;
use crate::metrics::Metrics;
use crate::report::Report;
use crate::resume::{AlreadySent, PartitionOffset, Watermarks};
use crate::sink::{Settled, Sink};

/// Bytes read per system call.
const READ_CHUNK: usize = 1024 * 1024;

/// Longest time the checkpoint waits to be written after acknowledgements advanced it while the
/// file is being read: the bound on what a SIGKILL makes it send again. One write (a temporary
/// file, synced, renamed) per interval at most, never one per record. (While the producer waits
/// for the file to grow it writes as soon as acknowledgements come in: at most once per chunk
/// sealed after a read.)
pub const CHECKPOINT_INTERVAL: Duration = Duration::from_millis(100);

/// Acknowledged records after which the checkpoint is written without waiting for
/// [`CHECKPOINT_INTERVAL`] (when Kafka acknowledges faster than this every 100 ms).
pub const CHECKPOINT_EVERY_RECORDS: u64 = 10_000;

/// Bound on reading what Kafka stored after the checkpoint at a restart.
const RESUME_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a poll wait sleeps between checks for shutdown.
const WAIT_STEP: Duration = Duration::from_millis(50);

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

/// A point in a followed file: the file and the position of the next unread line.
#[derive(Debug, Clone)]
struct Mark {
    file: Arc<File>,
    id: FileId,
    offset: u64,
    line: u64,
    index: u64,
    /// The topic's high watermarks read before the mark was made: at or before the first
    /// message of any record after it.
    kafka_from: Arc<Vec<PartitionOffset>>,
}

/// The file being read.
struct Tail {
    path: PathBuf,
    file: Arc<File>,
    id: FileId,
    /// Offset of `pending[0]`.
    offset: u64,
    line: u64,
    index: u64,
    /// Bytes read after `offset` that do not end in a newline yet.
    pending: Vec<u8>,
    /// Inside an over-long line: drop bytes until its newline.
    skipping: bool,
    /// A rotated-away file to finish, then switch to the followed path.
    rotated: bool,
}

impl Tail {
    fn open(path: &Path, offset: u64, line: u64, index: u64) -> io::Result<Self> {
        let mut file = File::open(path)?;
        let id = FileId::of(&file.metadata()?);
        file.seek(SeekFrom::Start(offset))?;
        Ok(Self {
            path: path.to_owned(),
            file: Arc::new(file),
            id,
            offset,
            line,
            index,
            pending: Vec::new(),
            skipping: false,
            rotated: false,
        })
    }

    fn mark(&self, kafka_from: Arc<Vec<PartitionOffset>>) -> Mark {
        Mark {
            file: Arc::clone(&self.file),
            id: self.id,
            offset: self.offset,
            line: self.line,
            index: self.index,
            kafka_from,
        }
    }

    fn read_more(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match (&*self.file).read(buf) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                r => return r,
            }
        }
    }
}

/// Follows `path` until shutdown, then waits for Kafka to acknowledge what was sent (bounded
/// by `shutdown_timeout`) and writes the final checkpoint.
pub fn run(
    sink: Arc<Sink>,
    metrics: Arc<Metrics>,
    config: &ProducerConfig,
    path: &Path,
    strict: bool,
    shutdown: &CancellationToken,
) -> Result<Report, FollowError> {
    let checkpoint_path = config.checkpoint_for(path);
    let io_err = |source| FollowError::Io {
        path: path.to_owned(),
        source,
    };
    let mut tail = loop {
        match start(path, &checkpoint_path) {
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
        offset = tail.offset,
        checkpoint = %checkpoint_path.display(),
        "following"
    );
    let queue_max = sink.queue_max() as u64;
    let mut d: Dispatcher<Mark> = Dispatcher::new(
        sink,
        metrics,
        shutdown.clone(),
        config.shutdown_timeout,
        config.max_logged_errors,
    );
    let mut committer = Committer::new(checkpoint_path.clone());
    committer.watermarks = Watermarks::start(&client_config(config), &config.kafka_topic)
        .map_err(|e| tracing::warn!(error = %e, "cannot read the topic's watermarks: a restart after a crash will send again what followed the checkpoint"))
        .ok();
    committer.already = already_sent(&checkpoint_path, &tail, config, queue_max);
    let mut buf = vec![0u8; READ_CHUNK];
    let origin = path.display().to_string();
    while !shutdown.is_cancelled() {
        let n = tail.read_more(&mut buf).map_err(io_err)?;
        if n > 0 {
            let seen = consume(
                &mut tail,
                &buf[..n],
                &mut d,
                &mut committer,
                &origin,
                config,
                false,
            );
            if seen.interrupted {
                d.report.undelivered += 1;
                committer.hold(
                    d.pending_chunks(),
                    "shutdown came while records waited for room in the kafka queue",
                );
                break;
            }
            if seen.invalid && strict {
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
            if !finish_rotated(&mut tail, &mut d, &mut committer, &origin, config) {
                d.report.undelivered += 1;
                committer.hold(
                    d.pending_chunks(),
                    "shutdown came while records waited for room in the kafka queue",
                );
                break;
            }
            d.seal(tail.mark(committer.snapshot()));
            // The new file may not be there yet (rename first, create later).
            loop {
                match Tail::open(path, 0, 1, 0) {
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
            Ok(meta) if meta.len() < tail.offset + tail.pending.len() as u64 => {
                tracing::warn!(
                    file = %path.display(),
                    size = meta.len(),
                    offset = tail.offset,
                    "file truncated, reading it again from the start"
                );
                d.seal(tail.mark(committer.snapshot()));
                tail = Tail::open(path, 0, 1, 0).map_err(io_err)?;
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
    if !tail.pending.is_empty() {
        tracing::info!(
            bytes = tail.pending.len(),
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

/// What Kafka stored after the checkpoint `tail` resumes at, when the checkpoint carries the
/// offsets to look from ([`crate::resume`]); `None` sends everything after it again.
fn already_sent(
    checkpoint_path: &Path,
    tail: &Tail,
    config: &ProducerConfig,
    queue_max: u64,
) -> Option<AlreadySent> {
    let ck = Checkpoint::load(checkpoint_path).ok().flatten()?;
    if ck.kafka_from.is_empty() || ck.file_id() != tail.id || ck.offset != tail.offset {
        return None;
    }
    let started = Instant::now();
    match AlreadySent::read(
        &client_config(config),
        &config.kafka_topic,
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
    let mut c = crate::sink::base_client_config(config);
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

/// Opens where the checkpoint says, or the followed path from its start.
fn start(path: &Path, checkpoint_path: &Path) -> Result<Tail, FollowError> {
    let io_err = |source| FollowError::Io {
        path: path.to_owned(),
        source,
    };
    let current = File::open(path).map_err(io_err)?;
    check_ndjson(&current, path)?;
    let current_id = FileId::of(&current.metadata().map_err(io_err)?);
    let Some(ck) = Checkpoint::load(checkpoint_path)? else {
        return Tail::open(path, 0, 1, 0).map_err(io_err);
    };
    let len = current.metadata().map_err(io_err)?.len();
    if ck.file_id() == current_id && ck.matches(&current) && len >= ck.offset {
        return Tail::open(path, ck.offset, ck.line, ck.index).map_err(io_err);
    }
    // The checkpointed file was rotated away: finish it first when it is still next to the path.
    if let Some(old) = find_by_id(path, ck.file_id()) {
        if let Ok(f) = File::open(&old) {
            if ck.matches(&f) {
                tracing::info!(file = %old.display(), offset = ck.offset, "finishing the rotated file of the checkpoint first");
                let mut t = Tail::open(&old, ck.offset, ck.line, ck.index).map_err(io_err)?;
                t.rotated = true;
                return Ok(t);
            }
        }
    }
    tracing::warn!(
        file = %path.display(),
        "the checkpointed file is gone or was replaced; reading the file from the start"
    );
    Tail::open(path, 0, 1, 0).map_err(io_err)
}

/// Refuses a file whose first non-blank byte is `[`.
fn check_ndjson(file: &File, path: &Path) -> Result<(), FollowError> {
    use std::os::unix::fs::FileExt;
    let mut head = [0u8; 512];
    let n = file
        .read_at(&mut head, 0)
        .map_err(|source| FollowError::Io {
            path: path.to_owned(),
            source,
        })?;
    let first = head[..n]
        .iter()
        .copied()
        .find(|b| !b.is_ascii_whitespace() && !matches!(b, 0xEF | 0xBB | 0xBF));
    if first == Some(b'[') {
        return Err(FollowError::NotNdjson(path.to_owned()));
    }
    Ok(())
}

/// A file next to `path` (same directory) with identity `id`.
fn find_by_id(path: &Path, id: FileId) -> Option<PathBuf> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    };
    std::fs::read_dir(dir).ok()?.flatten().find_map(|e| {
        let meta = e.metadata().ok()?;
        (meta.is_file() && FileId::of(&meta) == id).then(|| e.path())
    })
}

/// Reads a rotated file to its end, including a last line without newline (nothing more will be
/// appended to it). False when shutdown interrupted it.
fn finish_rotated(
    tail: &mut Tail,
    d: &mut Dispatcher<Mark>,
    committer: &mut Committer,
    origin: &str,
    config: &ProducerConfig,
) -> bool {
    let mut buf = vec![0u8; READ_CHUNK];
    loop {
        match tail.read_more(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                if consume(tail, &buf[..n], d, committer, origin, config, false).interrupted {
                    return false;
                }
                // The checkpoint may point into the rotated file: a restart finishes it first.
                d.seal(tail.mark(committer.snapshot()));
                d.retire_settled(|m, s| committer.done(m, s));
                committer.store_due();
            }
            Err(e) => {
                tracing::error!(file = %tail.path.display(), error = %e, "cannot finish the rotated file");
                break;
            }
        }
    }
    !consume(tail, &[], d, committer, origin, config, true).interrupted
}

/// What [`consume`] saw.
#[derive(Debug, Clone, Copy, Default)]
struct Consumed {
    /// An invalid record was rejected.
    invalid: bool,
    /// Shutdown came while a record waited for room in the queue: it was not sent.
    interrupted: bool,
}

/// Feeds `data` after the pending bytes: sends every complete line (and the partial rest when
/// `last`). Chunks acknowledged while a record waits for room in the queue advance the
/// checkpoint.
fn consume(
    tail: &mut Tail,
    mut data: &[u8],
    d: &mut Dispatcher<Mark>,
    committer: &mut Committer,
    origin: &str,
    config: &ProducerConfig,
    last: bool,
) -> Consumed {
    let mut seen = Consumed::default();
    let cap = config.max_record_bytes;
    if tail.skipping {
        match memchr_newline(data) {
            Some(i) => {
                tail.skipping = false;
                tail.offset += i as u64 + 1;
                tail.line += 1;
                data = &data[i + 1..];
            }
            None => {
                tail.offset += data.len() as u64;
                return seen;
            }
        }
    }
    tail.pending.extend_from_slice(data);
    let end = if last {
        tail.pending.len()
    } else {
        match tail.pending.iter().rposition(|&b| b == b'\n') {
            Some(i) => i + 1,
            None => {
                if tail.pending.len() > cap {
                    // An over-long line without its end yet: report it and skip to its newline.
                    let e = ReadError::TooLarge {
                        position: Position {
                            index: tail.index,
                            line: tail.line,
                            offset: tail.offset,
                        },
                        size: tail.pending.len() as u64,
                        limit: cap,
                    };
                    d.reject(origin, &e);
                    tail.index += 1;
                    tail.offset += tail.pending.len() as u64;
                    tail.pending.clear();
                    tail.skipping = true;
                    seen.invalid = true;
                    return seen;
                }
                return seen;
            }
        }
    };
    if end == 0 {
        return seen;
    }
    {
        let slice = &tail.pending[..end];
        let mut reader = RecordReader::with_max_record_bytes(Cursor::new(slice), cap);
        reader.resume_at(tail.offset, tail.line, tail.index);
        let mut records = 0u64;
        while let Some(item) = reader.next_record() {
            records += 1;
            match item {
                Ok(r) => {
                    let mut value = std::mem::take(&mut committer.value);
                    if !committer.already_stored(&r.record, &mut value) {
                        let done = |m: Mark, s: Settled| {
                            committer.done(m, s);
                            committer.store_due();
                        };
                        let line = r.position.line;
                        let sent = if value.is_empty() {
                            d.send(origin, line, &r.record, done)
                        } else {
                            let key = schema::kafka::key(&r.record);
                            d.send_encoded(origin, line, r.record.level, key, &value, done)
                        };
                        if sent == Enqueue::Interrupted {
                            seen.interrupted = true;
                        }
                    }
                    committer.value = value;
                }
                Err(e) => {
                    seen.invalid = true;
                    d.reject(origin, &e);
                }
            }
        }
        tail.index += records;
        tail.line += slice.iter().filter(|&&b| b == b'\n').count() as u64;
    }
    tail.offset += end as u64;
    tail.pending.drain(..end);
    seen
}

fn memchr_newline(data: &[u8]) -> Option<usize> {
    data.iter().position(|&b| b == b'\n')
}

/// Writes the checkpoint for the newest mark whose chunk and all before it were acknowledged:
/// when asked ([`Committer::store`]), or throttled as acknowledgements advance it
/// ([`Committer::store_due`]).
struct Committer {
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
    watermarks: Option<Watermarks>,
    /// After a restart: what Kafka stored after the checkpoint, not to be sent again.
    already: Option<AlreadySent>,
    /// Encoding buffer lent to [`Committer::already_stored`].
    value: Vec<u8>,
}

impl Committer {
    fn new(path: PathBuf) -> Self {
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
            value: Vec::new(),
        }
    }

    /// The latest high watermarks, for a mark made now.
    fn snapshot(&self) -> Arc<Vec<PartitionOffset>> {
        self.watermarks
            .as_ref()
            .map_or_else(|| Arc::new(Vec::new()), Watermarks::latest)
    }

    /// True when Kafka stored `record` after the checkpoint this run resumed at: do not send it
    /// again. While it looks, it encodes the record into `value` (left empty otherwise), so the
    /// caller sends those bytes instead of encoding the record a second time.
    fn already_stored(&mut self, record: &schema::LogRecord<'_>, value: &mut Vec<u8>) -> bool {
        value.clear();
        let Some(already) = &mut self.already else {
            return false;
        };
        schema::kafka::encode_value(record, value);
        let skip = already.take(schema::kafka::key(record), value);
        if already.is_done() {
            tracing::info!(
                records = already.skipped(),
                "records after the checkpoint that kafka already had were not sent again"
            );
            self.already = None;
        }
        skip
    }

    fn done(&mut self, mark: Mark, settled: Settled) {
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
    fn hold(&mut self, pending: usize, why: &str) {
        tracing::warn!("checkpoint held after the records already sent: {why}");
        self.allowed = Some(pending);
    }

    /// When the advanced checkpoint is due to be written: [`CHECKPOINT_INTERVAL`] after the
    /// last write, or now once [`CHECKPOINT_EVERY_RECORDS`] were acknowledged since (or before
    /// the first write); `None` when there is nothing new to write.
    fn due_at(&self) -> Option<Instant> {
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
    fn store_due(&mut self) {
        if self.due_at().is_some_and(|due| due <= Instant::now()) {
            self.store();
        }
    }

    /// Writes the advanced checkpoint now, while the producer waits for the file to grow (no
    /// reading to slow down); after a failed write, only once the interval passed.
    fn store_idle(&mut self) {
        if self.failing {
            self.store_due();
        } else {
            self.store();
        }
    }

    /// Writes the advanced checkpoint now.
    fn store(&mut self) {
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
