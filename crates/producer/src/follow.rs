//! `--follow`: tails a growing NDJSON file like `tail -F`, across rotation (the path names a
//! new inode: finish the old file, then read the new one from its start) and truncation (the file
//! got shorter than the read position: start over at 0). A partial last line is never consumed
//! until its newline arrives (or the file was rotated away). Progress is kept in a
//! [`Checkpoint`] written only for offsets whose every record Kafka acknowledged, in order, so a
//! restart neither skips nor re-reads.

use std::fs::File;
use std::io::{self, Cursor, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use schema::{Position, ReadError, RecordReader};
use thiserror::Error;
use tokio_util::sync::CancellationToken;

use crate::checkpoint::{Checkpoint, CheckpointError, FileId};
use crate::chunk::{Dispatcher, Enqueue};
use crate::config::ProducerConfig;
use crate::metrics::Metrics;
use crate::report::Report;
use crate::sink::{Settled, Sink};

/// Bytes read per system call.
const READ_CHUNK: usize = 1024 * 1024;

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

    fn mark(&self) -> Mark {
        Mark {
            file: Arc::clone(&self.file),
            id: self.id,
            offset: self.offset,
            line: self.line,
            index: self.index,
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
    let mut d: Dispatcher<Mark> = Dispatcher::new(
        sink,
        metrics,
        shutdown.clone(),
        config.shutdown_timeout,
        config.max_logged_errors,
    );
    let mut committer = Committer {
        path: checkpoint_path,
        last: None,
        stuck: false,
        allowed: None,
    };
    let mut buf = vec![0u8; READ_CHUNK];
    let origin = path.display().to_string();
    while !shutdown.is_cancelled() {
        let n = tail.read_more(&mut buf).map_err(io_err)?;
        if n > 0 {
            let seen = consume(&mut tail, &buf[..n], &mut d, &origin, config, false);
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
            d.seal(tail.mark());
            d.retire_settled(|m, s| committer.done(m, s));
            committer.store();
            continue;
        }
        // At the end of the file: rotated, truncated, or just no new data yet?
        if tail.rotated {
            if !finish_rotated(&mut tail, &mut d, &origin, config) {
                d.report.undelivered += 1;
                committer.hold(
                    d.pending_chunks(),
                    "shutdown came while records waited for room in the kafka queue",
                );
                break;
            }
            d.seal(tail.mark());
            // The new file may not be there yet (rename first, create later).
            loop {
                match Tail::open(path, 0, 1, 0) {
                    Ok(t) => break tail = t,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {
                        if wait(shutdown, config.follow_poll_interval) {
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
                d.seal(tail.mark());
                tail = Tail::open(path, 0, 1, 0).map_err(io_err)?;
                continue;
            }
            _ => {}
        }
        d.retire_settled(|m, s| committer.done(m, s));
        committer.store();
        wait(shutdown, config.follow_poll_interval);
    }
    if !tail.pending.is_empty() {
        tracing::info!(
            bytes = tail.pending.len(),
            "a partial last line stays unread until its newline arrives"
        );
    }
    d.drain(tail.mark(), |m, s| committer.done(m, s));
    committer.store();
    Ok(d.report.clone())
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
    origin: &str,
    config: &ProducerConfig,
) -> bool {
    let mut buf = vec![0u8; READ_CHUNK];
    loop {
        match tail.read_more(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                if consume(tail, &buf[..n], d, origin, config, false).interrupted {
                    return false;
                }
            }
            Err(e) => {
                tracing::error!(file = %tail.path.display(), error = %e, "cannot finish the rotated file");
                break;
            }
        }
    }
    !consume(tail, &[], d, origin, config, true).interrupted
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
/// `last`).
fn consume(
    tail: &mut Tail,
    mut data: &[u8],
    d: &mut Dispatcher<Mark>,
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
                    if d.send(origin, r.position.line, &r.record) == Enqueue::Interrupted {
                        seen.interrupted = true;
                    }
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

/// Writes the checkpoint for the newest mark whose chunk and all before it were acknowledged.
struct Committer {
    path: PathBuf,
    last: Option<(Mark, bool)>,
    stuck: bool,
    /// After [`Committer::hold`]: how many more chunks may still advance the checkpoint.
    allowed: Option<usize>,
}

impl Committer {
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
        self.last = Some((mark, false));
    }

    /// Stops advancing the checkpoint after the `pending` chunks already sealed: records after
    /// them were not all sent.
    fn hold(&mut self, pending: usize, why: &str) {
        tracing::warn!("checkpoint held after the records already sent: {why}");
        self.allowed = Some(pending);
    }

    fn store(&mut self) {
        let Some((mark, stored)) = &mut self.last else {
            return;
        };
        if *stored {
            return;
        }
        let result = Checkpoint::at(&mark.file, mark.id, mark.offset, mark.line, mark.index)
            .map_err(|source| CheckpointError::Io {
                path: self.path.clone(),
                source,
            })
            .and_then(|c| c.store(&self.path));
        match result {
            Ok(()) => *stored = true,
            Err(e) => tracing::error!(error = %e, "cannot write the checkpoint"),
        }
    }
}
