//! The `--once` and `--loop` file sources: stream a JSON array or NDJSON file (or stdin) through
//! [`schema::RecordReader`] into Kafka. `--loop` replays the file forever, optionally paced by
//! `--rate` and with timestamps rebased so each pass looks live (keep the file's spacing, never
//! later than the send time, start at now).
//!
//! Each pass runs on two threads: a reading thread validates and encodes records into
//! [`Batch`]es (a bounded channel of them, buffers reused), while the calling thread hands them
//! to the [`Dispatcher`], in input order, and does the rate limiting and the rebasing (at send
//! time).

use std::fs::File;
use std::io::{self, BufRead, BufReader};
use std::path::PathBuf;
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use schema::{RecordReader, Timestamp};
use thiserror::Error;
use tokio_util::sync::CancellationToken;

use crate::batch::{Batch, Item};
use crate::config::ProducerConfig;
use crate::dispatch::{Dispatcher, Enqueue, Origin, CHUNK_RECORDS};
use crate::kafka::Sink;
use crate::metrics::Metrics;
use crate::progress::Progress;
use crate::rate::RateLimiter;
use crate::report::Report;

/// Read buffer of file sources.
const READ_BUFFER: usize = 256 * 1024;

/// How long the sending thread waits for a batch before it serves delivery reports again (it
/// polls them itself while no rate limit makes it sleep: see [`Sink::poll_inline`]).
const INLINE_POLL: Duration = Duration::from_millis(5);

/// Batches the reading thread may have ready ahead of the sending thread (memory: about
/// `BATCHES_AHEAD + 3` batches of [`crate::batch::BATCH_BYTES`]).
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
pub(crate) fn run(
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
        Origin::File,
        shutdown.clone(),
        config.service.shutdown_timeout,
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

/// Records of a pass, read and encoded by the reading thread for the sending thread.
struct Read {
    batch: Batch,
    /// The reader's offset after the batch's last item.
    offset: u64,
    /// Set on a pass's last batch: why reading stopped.
    end: Option<PassEnd>,
}

/// The reading thread of a pass: reads, validates and encodes records into batches until the
/// input ends, a fatal or (`strict`) any invalid record, shutdown, or the sending thread hangs
/// up. Reuses the batches the sending thread returns.
fn read_batches<R: BufRead>(
    reader: &mut RecordReader<R>,
    strict: bool,
    shutdown: &CancellationToken,
    full: &mpsc::SyncSender<Read>,
    empty: &mpsc::Receiver<Read>,
) {
    let mut n: u64 = 0;
    loop {
        let mut read = empty.try_recv().unwrap_or_else(|_| Read {
            batch: Batch::new(),
            offset: 0,
            end: None,
        });
        read.batch.clear();
        read.end = None;
        while read.end.is_none() && !read.batch.is_full() {
            if n.is_multiple_of(256) && shutdown.is_cancelled() {
                read.end = Some(PassEnd::Interrupted);
                break;
            }
            n += 1;
            let Some(item) = reader.next_record() else {
                read.end = Some(PassEnd::Eof);
                break;
            };
            let stop = match &item {
                Ok(_) => None,
                Err(_) if strict => Some(PassEnd::Strict),
                Err(e) if e.is_fatal() => Some(PassEnd::Eof),
                Err(_) => None,
            };
            read.batch.push(item);
            read.end = stop;
        }
        read.offset = reader.offset();
        let last = read.end.is_some();
        if full.send(read).is_err() || last {
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
    let (full_tx, full_rx) = mpsc::sync_channel::<Read>(BATCHES_AHEAD);
    let (empty_tx, empty_rx) = mpsc::channel::<Read>();
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
    full: &mpsc::Receiver<Read>,
    empty: &mpsc::Sender<Read>,
    origin: &str,
    options: &FileOptions,
    rate: &mut Option<RateLimiter>,
    shutdown: &CancellationToken,
    progress: &mut Progress,
) -> PassEnd {
    let mut rebase = options.rebase_timestamps.then(Rebase::default);
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
        let mut read = match full.recv_timeout(INLINE_POLL) {
            Ok(read) => read,
            Err(mpsc::RecvTimeoutError::Timeout) => continue,
            // The reading thread ended without a last batch (it panicked).
            Err(mpsc::RecvTimeoutError::Disconnected) => return PassEnd::Eof,
        };
        for i in 0..read.batch.len() {
            n += 1;
            if let (Some(rebase), Some(Item::Record(r))) = (&mut rebase, read.batch.items().get(i))
            {
                let rebased = rebase.next(r.timestamp);
                rebase.restamp(&mut read.batch, i, rebased);
            }
            match &read.batch.items()[i] {
                Item::Record(record) => {
                    if let Some(rate) = rate.as_mut() {
                        let wait = rate.take(Instant::now());
                        if !wait.is_zero() {
                            // The record is read: send it even when shutdown comes while waiting.
                            sleep_unless(shutdown, wait);
                        }
                    }
                    if d.send(origin, &read.batch, record, |_, _| {}) == Enqueue::Interrupted {
                        return PassEnd::Interrupted;
                    }
                }
                Item::Rejected(e) => d.reject(origin, e),
            }
            in_chunk += 1;
            if in_chunk >= CHUNK_RECORDS
                || (rate.is_some() && d.open_records() > 0 && n.is_multiple_of(64))
            {
                in_chunk = 0;
                d.seal(());
                d.retire_settled(|_, _| {});
                progress.update(read.offset, d.report.read, d.report.sent);
            }
        }
        if let Some(end) = read.end {
            return end;
        }
        // The reading thread may be gone already; then the batch is simply dropped.
        let _ = empty.send(read);
    }
}

/// `--rebase-timestamps`: keeps the file's spacing from the start of the pass, but never stamps
/// a record later than the moment it is sent: a replay faster than the file's own clock would
/// otherwise date records hours ahead, which Loki refuses (creation grace period), and a later
/// pass would fall behind the first.
#[derive(Debug, Default)]
struct Rebase {
    /// File time to send time, from the pass's first record.
    shift: Option<i64>,
    /// The last timestamp given: never go back before it.
    last: Option<Timestamp>,
    /// A record could not be re-dated (logged once).
    failed: bool,
}

impl Rebase {
    /// The rebased timestamp of a record read with `timestamp`, sent now.
    fn next(&mut self, timestamp: Timestamp) -> Timestamp {
        let now = Timestamp::now();
        let shift = *self
            .shift
            .get_or_insert_with(|| now.as_nanos() - timestamp.as_nanos());
        let rebased = timestamp
            .saturating_add_nanos(shift)
            .min(now)
            .max(self.last.unwrap_or(Timestamp::EPOCH));
        self.last = Some(rebased);
        rebased
    }

    /// Re-dates record `index` of `batch`; a failure (the value was not encoded by
    /// [`schema::kafka::encode_value`], which cannot happen) sends it with its own timestamp and
    /// is logged once.
    fn restamp(&mut self, batch: &mut Batch, index: usize, rebased: Timestamp) {
        if let Err(e) = batch.restamp(index, rebased) {
            if !self.failed {
                self.failed = true;
                tracing::error!(error = %e, "records are sent with their own timestamps: cannot rebase them");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rebasing_keeps_the_spacing_never_dates_ahead_of_now_and_never_goes_back() {
        let mut rebase = Rebase::default();
        let t0 = Timestamp::from_nanos(1_000_000_000_000).unwrap();
        let first = rebase.next(t0);
        let now = Timestamp::now();
        assert!(first <= now && now.as_nanos() - first.as_nanos() < 5_000_000_000);
        // A record an hour later in the file is not dated an hour ahead.
        let later = rebase.next(t0.saturating_add_nanos(3_600_000_000_000));
        assert!(later <= Timestamp::now());
        assert!(later >= first);
        // An older record does not go back before the last one.
        assert!(rebase.next(t0) >= later);
    }
}
