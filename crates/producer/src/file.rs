//! The `--once` and `--loop` file sources: stream a JSON array or NDJSON file (or stdin) through
//! [`schema::RecordReader`] into Kafka. `--loop` replays the file forever, optionally paced by
//! `--rate` and with timestamps rebased so each pass looks live (keep the file's spacing, never
//! later than the send time, start
//! at now).

use std::fs::File;
use std::io::{self, BufRead, BufReader};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use schema::{RecordReader, Timestamp};
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

fn pass<R: BufRead>(
    d: &mut Dispatcher<()>,
    reader: &mut RecordReader<R>,
    origin: &str,
    options: &FileOptions,
    rate: &mut Option<RateLimiter>,
    shutdown: &CancellationToken,
    progress: &mut Progress,
) -> PassEnd {
    let mut shift: Option<i64> = None;
    let mut last_rebased = Timestamp::EPOCH;
    let mut in_chunk: u64 = 0;
    let mut n: u64 = 0;
    loop {
        if n % 256 == 0 && shutdown.is_cancelled() {
            return PassEnd::Interrupted;
        }
        n += 1;
        let Some(item) = reader.next_record() else {
            return PassEnd::Eof;
        };
        match item {
            Ok(mut r) => {
                if options.rebase_timestamps {
                    // Keep the file's spacing from the start of the pass, but never stamp a
                    // record later than the moment it is sent: a replay faster than the file's
                    // own clock would otherwise date records hours ahead, which Loki refuses
                    // (creation grace period), and a later pass would fall behind the first.
                    let now = Timestamp::now();
                    let s = *shift
                        .get_or_insert_with(|| now.as_nanos() - r.record.timestamp.as_nanos());
                    let rebased = r.record.timestamp.saturating_add_nanos(s).min(now);
                    r.record.timestamp = rebased.max(last_rebased);
                    last_rebased = r.record.timestamp;
                }
                if let Some(rate) = rate.as_mut() {
                    let wait = rate.take(Instant::now());
                    if !wait.is_zero() {
                        // The record is read: send it even when shutdown comes while waiting.
                        sleep_unless(shutdown, wait);
                    }
                }
                if d.send(origin, r.position.line, &r.record, |_, _| {}) == Enqueue::Interrupted {
                    d.report.undelivered += 1;
                    return PassEnd::Interrupted;
                }
            }
            Err(e) => {
                let fatal = e.is_fatal();
                d.reject(origin, &e);
                if options.strict {
                    return PassEnd::Strict;
                }
                if fatal {
                    return PassEnd::Eof;
                }
            }
        }
        in_chunk += 1;
        if in_chunk >= CHUNK_RECORDS || (rate.is_some() && d.open_records() > 0 && n % 64 == 0) {
            in_chunk = 0;
            d.seal(());
            d.retire_settled(|_, _| {});
            progress.update(reader.offset(), d.report.read, d.report.sent);
        }
    }
}
