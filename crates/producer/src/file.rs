//! The `--once` and `--loop` file sources: stream a JSON array or NDJSON file (or stdin) through
//! [`schema::RecordReader`] into Kafka. `--loop` replays the file forever, optionally paced by
//! `--rate` and with timestamps rebased so each pass looks live (keep the file's spacing, never
//! later than the send time, start
//! at now).
//!
//! Each pass runs on two threads: a reading thread validates and encodes records into batches
//! (a bounded channel of them, buffers reused), while the calling thread hands them to Kafka,
//! in input order, and does the rate limiting, the rebasing (at send time) and the accounting.

use std::fs::File;
use std::io::{self, BufRead, BufReader};
use std::ops::Range;
use std::path::PathBuf;
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use schema::{Level, ReadError, RecordReader, Timestamp};
use thiserror::Error;
use tokio_util::sync::CancellationToken;

use crate::chunk::{Dispatcher, Enqueue, CHUNK_RECORDS};
use crate::config::ProducerConfig;
use crate::metrics::Metrics;
use crate::progress::Progress;
use crate::rate::RateLimiter;
use crate::report::Report;
use crate::sink::Sink;

/// Read buffer of file sources.
const READ_BUFFER: usize = 256 * 1024;

/// Records per batch handed from the reading thread to the sending thread, at most.
const BATCH_RECORDS: usize = 512;

/// Encoded bytes per batch: a batch is full once it holds this many (plus one record).
const BATCH_BYTES: usize = 256 * 1024;
/// How long the sending thread waits for a batch before it serves delivery reports again (it
/// polls them itself while no rate limit makes it sleep: see [`Sink::poll_inline`]).
const INLINE_POLL: Duration = Duration::from_millis(5);

/// Batches the reading thread may have ready ahead of the sending thread (memory: about
/// `BATCHES_AHEAD + 3` batches of `BATCH_BYTES`).
const BATCHES_AHEAD: usize = 4;

/// Where records come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// Standard input (`-`).
    Stdin,
    /// A file.
    Path(PathBuf),
}

impl Input {
    /// From a command-line value: `-` is stdin.
    pub fn parse(s: &str) -> Self {
        if s == "-" {
            Input::Stdin
        } else {
            Input::Path(PathBuf::from(s))
        }
    }

    /// How the input is named in logs.
    pub fn name(&self) -> String {
        match self {
            Input::Stdin => "-".to_owned(),
            Input::Path(p) => p.display().to_string(),
        }
    }
}

/// How a file source behaves.
#[derive(Debug, Clone)]
pub struct FileOptions {
    /// The input.
    pub input: Input,
    /// Replay forever (`--loop`) instead of once.
    pub repeat: bool,
    /// Records per second at most (`--rate`).
    pub rate: Option<u32>,
    /// Shift timestamps so each pass starts at now (`--rebase-timestamps`).
    pub rebase_timestamps: bool,
    /// Stop at the first invalid record (`--strict`).
    pub strict: bool,
}

/// A file source that cannot run.
#[derive(Debug, Error)]
pub enum FileError {
    /// The input cannot be opened.
    #[error("cannot open {path}: {source}")]
    Open {
        /// The input.
        path: String,
        /// Why.
        source: io::Error,
    },
    /// `--loop` needs a file it can reopen.
    #[error("--loop needs a file, not stdin")]
    LoopStdin,
    /// The thread that reads the input cannot be started.
    #[error("cannot start the thread reading the input: {0}")]
    Thread(#[source] io::Error),
}

fn open(input: &Input) -> Result<(Box<dyn BufRead + Send>, Option<u64>), FileError> {
    match input {
        Input::Stdin => Ok((
            Box::new(BufReader::with_capacity(READ_BUFFER, io::stdin())),
            None,
        )),
        Input::Path(p) => {
            let err = |source| FileError::Open {
                path: p.display().to_string(),
                source,
            };
            let f = File::open(p).map_err(err)?;
            let len = f.metadata().map_err(err)?.len();
            Ok((
                Box::new(BufReader::with_capacity(READ_BUFFER, f)),
                Some(len),
            ))
        }
    }
}

/// How a pass ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PassEnd {
    Eof,
    Interrupted,
    Strict,
}

/// Runs the source until the input ends (`--once`) or shutdown (`--loop`), then waits for
/// Kafka to acknowledge what was sent (bounded by `shutdown_timeout` after a signal).
pub fn run(
    sink: Arc<Sink>,
    metrics: Arc<Metrics>,
    config: &ProducerConfig,
    options: &FileOptions,
    shutdown: &CancellationToken,
) -> Result<Report, FileError> {
    if options.repeat && options.input == Input::Stdin {
        return Err(FileError::LoopStdin);
    }
    let origin = options.input.name();
    let mut d: Dispatcher<()> = Dispatcher::new(
        sink,
        metrics,
        shutdown.clone(),
        config.shutdown_timeout,
        config.max_logged_errors,
    );
    let mut rate = options.rate.map(RateLimiter::new);
    let started = Instant::now();
    let mut passes = 0u64;
    loop {
        let (reader, len) = open(&options.input)?;
        let mut progress = Progress::new(!options.repeat, len, config.progress_interval);
        let mut reader = RecordReader::with_max_record_bytes(reader, config.max_record_bytes);
        let before = d.report.read;
        let end = pass(
            &mut d,
            &mut reader,
            &origin,
            options,
            &mut rate,
            shutdown,
            &mut progress,
        );
        progress.finish();
        let end = end?;
        passes += 1;
        match end {
            PassEnd::Interrupted => d.report.interrupted = true,
            PassEnd::Strict => d.report.stopped_strict = true,
            PassEnd::Eof => {}
        }
        if !options.repeat || end != PassEnd::Eof {
            break;
        }
        tracing::debug!(pass = passes, "input replayed, starting over");
        if d.report.read == before && sleep_unless(shutdown, Duration::from_secs(1)) {
            // An empty file: do not spin.
            d.report.interrupted = true;
            break;
        }
    }
    let all = d.drain((), |_, _| {});
    let report = d.report.clone();
    let elapsed = started.elapsed().as_secs_f64().max(1e-3);
    if all {
        tracing::info!(
            input = %origin,
            records_per_sec = (report.sent as f64 / elapsed).round(),
            "input done: {report}"
        );
    } else {
        tracing::error!(input = %origin, "input done, records left undelivered: {report}");
    }
    Ok(report)
}

/// Sleeps `d` unless shutdown comes first; true when shutdown came.
fn sleep_unless(shutdown: &CancellationToken, d: Duration) -> bool {
    let until = Instant::now() + d;
    loop {
        if shutdown.is_cancelled() {
            return true;
        }
        let now = Instant::now();
        if now >= until {
            return false;
        }
        std::thread::sleep((until - now).min(Duration::from_millis(50)));
    }
}

/// Valid records (encoded) and rejected ones, in input order: what the reading thread hands
/// to the sending thread.
struct Batch {
    /// Each record's value followed by its key.
    bytes: Vec<u8>,
    items: Vec<Item>,
    /// The reader's offset after the last item.
    offset: u64,
    /// Set on a pass's last batch: why reading stopped.
    end: Option<PassEnd>,
}

enum Item {
    /// A valid record, its key and value in the batch's bytes.
    Record {
        line: u64,
        level: Level,
        timestamp: Timestamp,
        key: Range<usize>,
        value: Range<usize>,
    },
    /// A record the reader rejected.
    Rejected(ReadError),
}

impl Batch {
    fn new() -> Self {
        Self {
            bytes: Vec::with_capacity(BATCH_BYTES + 64 * 1024),
            items: Vec::with_capacity(BATCH_RECORDS),
            offset: 0,
            end: None,
        }
    }

    fn clear(&mut self) {
        self.bytes.clear();
        self.items.clear();
        self.end = None;
    }

    fn is_full(&self) -> bool {
        self.items.len() >= BATCH_RECORDS || self.bytes.len() >= BATCH_BYTES
    }
}

/// Where the canonical value carries the timestamp: `{"timestamp":"` then 30 bytes of
/// RFC 3339 (fixed width, see [`Timestamp::write_rfc3339`]).
const VALUE_TIMESTAMP: Range<usize> = 14..44;

/// Replaces the timestamp of an encoded value (`{"timestamp":"<30 bytes>",...`) with `ts`, as
/// encoding the record with `ts` would have written it.
fn restamp(value: &mut [u8], ts: Timestamp, stamp: &mut Vec<u8>) {
    stamp.clear();
    ts.write_rfc3339(stamp);
    if let Some(slot) = value.get_mut(VALUE_TIMESTAMP) {
        if slot.len() == stamp.len() {
            slot.copy_from_slice(stamp);
        }
    }
}

/// The reading thread of a pass: reads, validates and encodes records into batches until the
/// input ends, a fatal or (`strict`) any invalid record, shutdown, or the sending thread hangs
/// up. Reuses the batches the sending thread returns.
fn read_batches<R: BufRead>(
    reader: &mut RecordReader<R>,
    strict: bool,
    shutdown: &CancellationToken,
    full: &mpsc::SyncSender<Batch>,
    empty: &mpsc::Receiver<Batch>,
) {
    let mut n: u64 = 0;
    loop {
        let mut batch = empty.try_recv().unwrap_or_else(|_| Batch::new());
        batch.clear();
        while batch.end.is_none() && !batch.is_full() {
            if n % 256 == 0 && shutdown.is_cancelled() {
                batch.end = Some(PassEnd::Interrupted);
                break;
            }
            n += 1;
            let Some(item) = reader.next_record() else {
                batch.end = Some(PassEnd::Eof);
                break;
            };
            match item {
                Ok(r) => {
                    let start = batch.bytes.len();
                    schema::kafka::encode_value(&r.record, &mut batch.bytes);
                    let value_end = batch.bytes.len();
                    batch.bytes.extend_from_slice(schema::kafka::key(&r.record));
                    batch.items.push(Item::Record {
                        line: r.position.line,
                        level: r.record.level,
                        timestamp: r.record.timestamp,
                        value: start..value_end,
                        key: value_end..batch.bytes.len(),
                    });
                }
                Err(e) => {
                    let fatal = e.is_fatal();
                    batch.items.push(Item::Rejected(e));
                    if strict {
                        batch.end = Some(PassEnd::Strict);
                    } else if fatal {
                        batch.end = Some(PassEnd::Eof);
                    }
                }
            }
        }
        batch.offset = reader.offset();
        let last = batch.end.is_some();
        if full.send(batch).is_err() || last {
            return;
        }
    }
}

/// One pass over the input: a reading thread validates and encodes records (see
/// [`read_batches`]) while this thread hands them to Kafka, so the two overlap.
fn pass<R: BufRead + Send>(
    d: &mut Dispatcher<()>,
    reader: &mut RecordReader<R>,
    origin: &str,
    options: &FileOptions,
    rate: &mut Option<RateLimiter>,
    shutdown: &CancellationToken,
    progress: &mut Progress,
) -> Result<PassEnd, FileError> {
    let (full_tx, full_rx) = mpsc::sync_channel::<Batch>(BATCHES_AHEAD);
    let (empty_tx, empty_rx) = mpsc::channel::<Batch>();
    std::thread::scope(|scope| {
        let reading = std::thread::Builder::new()
            .name("file-reader".into())
            .spawn_scoped(scope, move || {
                read_batches(reader, options.strict, shutdown, &full_tx, &empty_rx);
            });
        if let Err(source) = reading {
            return Err(FileError::Thread(source));
        }
        let end = send_batches(
            d, &full_rx, &empty_tx, origin, options, rate, shutdown, progress,
        );
        // Hang up first, so a reading thread blocked on a full channel returns.
        drop(full_rx);
        Ok(end)
    })
}

/// The sending half of [`pass`]: hands each batch's records to Kafka, in order, and returns
/// the empty batches for reuse.
#[allow(clippy::too_many_arguments)]
fn send_batches(
    d: &mut Dispatcher<()>,
    full: &mpsc::Receiver<Batch>,
    empty: &mpsc::Sender<Batch>,
    origin: &str,
    options: &FileOptions,
    rate: &mut Option<RateLimiter>,
    shutdown: &CancellationToken,
    progress: &mut Progress,
) -> PassEnd {
    let mut shift: Option<i64> = None;
    let mut last_rebased = Timestamp::EPOCH;
    let mut stamp = Vec::with_capacity(VALUE_TIMESTAMP.len());
    let mut in_chunk: u64 = 0;
    let mut n: u64 = 0;
    let sink = Arc::clone(d.sink());
    let inline = rate.is_none().then(|| sink.poll_inline());
    loop {
        if shutdown.is_cancelled() {
            return PassEnd::Interrupted;
        }
        if inline.is_some() {
            sink.poll(Duration::ZERO);
        }
        let mut batch = match full.recv_timeout(INLINE_POLL) {
            Ok(batch) => batch,
            Err(mpsc::RecvTimeoutError::Timeout) => continue,
            // The reading thread ended without a last batch (it panicked).
            Err(mpsc::RecvTimeoutError::Disconnected) => return PassEnd::Eof,
        };
        let Batch {
            bytes,
            items,
            offset,
            end: pass_end,
        } = &mut batch;
        for item in items.drain(..) {
            n += 1;
            match item {
                Item::Record {
                    line,
                    level,
                    timestamp,
                    key,
                    value,
                } => {
                    if options.rebase_timestamps {
                        // Keep the file's spacing from the start of the pass, but never stamp a
                        // record later than the moment it is sent: a replay faster than the
                        // file's own clock would otherwise date records hours ahead, which Loki
                        // refuses (creation grace period), and a later pass would fall behind
                        // the first.
                        let now = Timestamp::now();
                        let s = *shift.get_or_insert_with(|| now.as_nanos() - timestamp.as_nanos());
                        let rebased = timestamp.saturating_add_nanos(s).min(now).max(last_rebased);
                        last_rebased = rebased;
                        if let Some(value) = bytes.get_mut(value.clone()) {
                            restamp(value, rebased, &mut stamp);
                        }
                    }
                    if let Some(rate) = rate.as_mut() {
                        let wait = rate.take(Instant::now());
                        if !wait.is_zero() {
                            // The record is read: send it even when shutdown comes while waiting.
                            sleep_unless(shutdown, wait);
                        }
                    }
                    let (key, value) = (&bytes[key], &bytes[value]);
                    if d.send_encoded(origin, line, level, key, value, |_, _| {})
                        == Enqueue::Interrupted
                    {
                        d.report.undelivered += 1;
                        return PassEnd::Interrupted;
                    }
                }
                Item::Rejected(e) => d.reject(origin, &e),
            }
            in_chunk += 1;
            if in_chunk >= CHUNK_RECORDS || (rate.is_some() && d.open_records() > 0 && n % 64 == 0)
            {
                in_chunk = 0;
                d.seal(());
                d.retire_settled(|_, _| {});
                progress.update(*offset, d.report.read, d.report.sent);
            }
        }
        if let Some(end) = *pass_end {
            return end;
        }
        // The reading thread may be gone already; then the batch is simply dropped.
        let _ = empty.send(batch);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restamping_an_encoded_value_equals_encoding_the_rebased_record() {
        let input = r#"{"timestamp":"2026-01-02T03:04:05.5Z","level":"info","service":"api","message":"m","x":1}"#;
        let mut record = schema::parse_record(input).unwrap();
        let mut value = Vec::new();
        schema::kafka::encode_value(&record, &mut value);
        let mut stamp = Vec::new();
        for nanos in [0, 1, 999_999_999, 1_767_323_045_123_456_789, i64::MAX] {
            let ts = Timestamp::from_nanos(nanos).unwrap_or(Timestamp::EPOCH);
            record.timestamp = ts;
            let mut want = Vec::new();
            schema::kafka::encode_value(&record, &mut want);
            restamp(&mut value, ts, &mut stamp);
            assert_eq!(
                String::from_utf8_lossy(&value),
                String::from_utf8_lossy(&want)
            );
        }
    }
}
