//! Records in flight from a file source, grouped in acknowledgement chunks: each chunk has one
//! [`Tracker`], chunks settle in any order but are retired in input order (what `--follow`'s
//! checkpoint needs), and delivery metrics are emitted per chunk, not per record.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use schema::{Level, LogRecord, ReadError};
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;
use crate::report::Report;
use crate::sink::{SendError, Settled, Sink, Tracker};

/// Records per chunk at most.
pub const CHUNK_RECORDS: u64 = 2_000;

/// Why a record was not enqueued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Enqueue {
    /// Handed to Kafka.
    Sent,
    /// Kafka will never take it (counted and logged).
    Refused,
    /// Shutdown came while waiting for room in the queue; the record was not sent.
    Interrupted,
}

/// The sending half of a file source.
pub struct Dispatcher<M> {
    sink: Arc<Sink>,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
    shutdown_timeout: Duration,
    current: Arc<Tracker>,
    pending: VecDeque<(Arc<Tracker>, M)>,
    value: Vec<u8>,
    /// Per service (the key), records per level in [`Level::ALL`] order, since the last seal.
    levels: HashMap<Vec<u8>, [u64; Level::ALL.len()]>,
    max_logged: u64,
    logged: u64,
    read_at_seal: u64,
    /// The counts so far.
    pub report: Report,
}

impl<M> Dispatcher<M> {
    /// A dispatcher sending to `sink`; `max_logged` invalid records are logged with their
    /// position, the rest only counted.
    pub fn new(
        sink: Arc<Sink>,
        metrics: Arc<Metrics>,
        shutdown: CancellationToken,
        shutdown_timeout: Duration,
        max_logged: u32,
    ) -> Self {
        Self {
            sink,
            metrics,
            shutdown,
            shutdown_timeout,
            current: Tracker::new(),
            pending: VecDeque::new(),
            value: Vec::with_capacity(1024),
            levels: HashMap::new(),
            max_logged: u64::from(max_logged),
            logged: 0,
            read_at_seal: 0,
            report: Report::default(),
        }
    }

    /// The sink records go to.
    pub fn sink(&self) -> &Arc<Sink> {
        &self.sink
    }

    /// Records in the open chunk.
    pub fn open_records(&self) -> u64 {
        self.current.enqueued()
    }

    /// Chunks handed over and not retired yet.
    pub fn pending_chunks(&self) -> usize {
        self.pending.len()
    }

    /// Counts and (for the first few) logs a record the reader rejected.
    pub fn reject(&mut self, origin: &str, error: &ReadError) {
        self.report.read += 1;
        self.report.reject(error.reason().as_str());
        let log = self.logged < self.max_logged;
        self.logged += 1;
        if self.logged == self.max_logged + 1 {
            tracing::warn!(
                max_logged = self.max_logged,
                "more invalid records; only counting them from now on"
            );
        }
        self.metrics.record_rejected(origin, error, log);
    }

    /// Encodes and enqueues a valid record into the open chunk, waiting for room while the queue
    /// is full. Chunks that settle meanwhile are retired, in order, through `done`, as
    /// [`Dispatcher::retire_settled`] does: their delivery failures must reach the caller (a
    /// `--follow` checkpoint must not pass them), and their acknowledgements may advance it.
    pub fn send(
        &mut self,
        origin: &str,
        line: u64,
        record: &LogRecord<'_>,
        done: impl FnMut(M, Settled),
    ) -> Enqueue {
        let mut value = std::mem::take(&mut self.value);
        value.clear();
        schema::kafka::encode_value(record, &mut value);
        let key = schema::kafka::key(record);
        let sent = self.send_encoded(origin, line, record.level, key, &value, done);
        self.value = value;
        sent
    }

    /// Like [`Dispatcher::send`] for a record already encoded: `key` is its
    /// [`schema::kafka::key`] (the service) and `value` its [`schema::kafka::encode_value`].
    pub fn send_encoded(
        &mut self,
        origin: &str,
        line: u64,
        level: Level,
        key: &[u8],
        value: &[u8],
        mut done: impl FnMut(M, Settled),
    ) -> Enqueue {
        self.report.read += 1;
        if self.metrics.records_by_level.is_some() {
            let i = level.index();
            // Allocates only for a service not seen before.
            match self.levels.get_mut(key) {
                Some(counts) => counts[i] += 1,
                None => {
                    let mut counts = [0; Level::ALL.len()];
                    counts[i] = 1;
                    self.levels.insert(key.to_vec(), counts);
                }
            }
        }
        let mut waited_since: Option<Instant> = None;
        loop {
            match self.sink.send(key, value, &self.current) {
                Ok(()) => return Enqueue::Sent,
                Err(SendError::QueueFull) => {
                    // Room comes back as acknowledgements arrive: retire what settled, serve
                    // delivery reports for a moment (this thread may have taken them over from
                    // the polling thread, see `Sink::poll_inline`) and try again. After a
                    // shutdown signal, give up once the shutdown timeout passed.
                    self.retire_settled(&mut done);
                    let since = *waited_since.get_or_insert_with(Instant::now);
                    if self.shutdown.is_cancelled() && since.elapsed() > self.shutdown_timeout {
                        return Enqueue::Interrupted;
                    }
                    self.sink.poll(Duration::from_millis(1));
                }
                Err(e) => {
                    let reason = e.reason();
                    self.report.fail(reason, 1);
                    self.metrics.delivery_failed(reason, 1, &e.to_string());
                    let service = String::from_utf8_lossy(key);
                    tracing::warn!(origin, line, service = %service, "record not sent: {e}");
                    return Enqueue::Refused;
                }
            }
        }
    }

    /// Closes the open chunk with `meta` (what to do when it is retired) and opens a new one.
    pub fn seal(&mut self, meta: M) {
        let tracker = std::mem::replace(&mut self.current, Tracker::new());
        tracker.seal();
        self.pending.push_back((tracker, meta));
        self.metrics.in_flight.set(self.sink.in_flight() as i64);
        self.metrics
            .read("file", self.report.read - self.read_at_seal);
        self.read_at_seal = self.report.read;
        self.metrics.add_levels(&mut self.levels);
    }

    /// Retires settled chunks from the front, in order, calling `done` for each with its counts.
    pub fn retire_settled(&mut self, mut done: impl FnMut(M, Settled)) {
        while let Some((tracker, _)) = self.pending.front() {
            if !tracker.is_settled() {
                break;
            }
            if let Some((tracker, meta)) = self.pending.pop_front() {
                let counts = self.account(&tracker);
                done(meta, counts);
            }
        }
    }

    /// Waits until every pending chunk settled or `deadline`, retiring them in order; returns
    /// true when all settled.
    pub fn wait(&mut self, deadline: Instant, mut done: impl FnMut(M, Settled)) -> bool {
        while let Some((tracker, _)) = self.pending.front() {
            if !tracker.wait_until(deadline) {
                return false;
            }
            self.retire_settled(&mut done);
        }
        true
    }

    /// Waits until the oldest pending chunk settled (true) or `deadline` (false); without a
    /// pending chunk, sleeps until `deadline`. Retires nothing: call
    /// [`Dispatcher::retire_settled`] next.
    pub fn wait_oldest(&self, deadline: Instant) -> bool {
        match self.pending.front() {
            Some((tracker, _)) => tracker.wait_until(deadline),
            None => {
                std::thread::sleep(deadline.saturating_duration_since(Instant::now()));
                false
            }
        }
    }

    /// Seals the open chunk with `meta`, then waits for every chunk until all settled or, once
    /// shutdown was signalled, `shutdown_timeout` passed. Records still in flight then are added
    /// to `report.undelivered`; returns true when everything settled.
    pub fn drain(&mut self, meta: M, mut done: impl FnMut(M, Settled)) -> bool {
        self.seal(meta);
        let mut cancelled_at: Option<Instant> = None;
        loop {
            if self.wait(Instant::now() + Duration::from_millis(200), &mut done) {
                break;
            }
            if self.shutdown.is_cancelled() {
                let at = *cancelled_at.get_or_insert_with(Instant::now);
                if at.elapsed() >= self.shutdown_timeout {
                    break;
                }
            }
        }
        let mut all = true;
        for (tracker, _) in &self.pending {
            let c = tracker.counts();
            let open = c.enqueued - c.delivered - c.failed - c.too_large;
            if open > 0 {
                all = false;
                self.report.undelivered += open;
            }
        }
        self.metrics.in_flight.set(self.sink.in_flight() as i64);
        all
    }

    fn account(&mut self, tracker: &Tracker) -> Settled {
        let c = tracker.counts();
        self.report.sent += c.delivered;
        self.report.fail("delivery_failed", c.failed);
        self.report.fail("message_too_large", c.too_large);
        if c.enqueued > 0 {
            self.metrics
                .chunk_acknowledged(c.delivered, c.delivered_bytes, tracker.age());
        }
        if c.failed > 0 || c.too_large > 0 {
            let e = tracker.first_error();
            self.metrics
                .delivery_failed("delivery_failed", c.failed, &e);
            self.metrics
                .delivery_failed("message_too_large", c.too_large, &e);
        }
        c
    }
}

impl<M> std::fmt::Debug for Dispatcher<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dispatcher")
            .field("pending", &self.pending.len())
            .field("report", &self.report)
            .finish_non_exhaustive()
    }
}
