//! The one route to Kafka, for every source (file `--once`/`--loop`, `--follow`,
//! `POST /v1/logs`): a [`Dispatcher`] hands encoded records ([`crate::batch`]) to the
//! [`Sink`], waits for room in a full queue by one policy, and accounts for what Kafka did with
//! them in one place (the source's [`Report`], the delivery metrics).
//!
//! Records in flight are grouped in acknowledgement chunks: each chunk has one [`Tracker`];
//! chunks settle in any order but are retired in input order (what `--follow`'s checkpoint
//! needs), and delivery metrics are emitted per chunk, not per record. A file source seals a
//! chunk every [`CHUNK_RECORDS`]; an HTTP request is one chunk.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use schema::{Level, ReadError};
use tokio_util::sync::CancellationToken;

use crate::batch::{Batch, Encoded};
use crate::kafka::delivery::{Settled, Tracker};
use crate::kafka::{SendError, Sink};
use crate::metrics::Metrics;
use crate::report::Report;

/// Records per chunk at most, for sources that seal by count.
pub(crate) const CHUNK_RECORDS: u64 = 2_000;

/// What became of a record handed to [`Dispatcher::send`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Enqueue {
    /// Handed to Kafka.
    Sent,
    /// Kafka will never take it (counted and logged).
    Refused,
    /// The queue stayed full longer than the dispatcher may wait (its queue wait, or the
    /// shutdown timeout after a shutdown signal); the record was not sent. A file source's
    /// dispatcher counts it as undelivered; an HTTP request's leaves it to the request, which
    /// refuses it with the rest ([`Dispatcher::refuse_for_room`]).
    Interrupted,
}

/// Where a dispatcher's records come from: the `source` of `producer_records_read_total`, and
/// how long a record may wait for room in a full queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Origin {
    /// A file source: a record waits for room as long as it takes (after a shutdown signal,
    /// at most the shutdown timeout).
    File,
    /// An HTTP request: a record waits for room at most this long, then the rest of the
    /// request is refused (the client is told to retry).
    Http(Duration),
}

impl Origin {
    fn label(self) -> &'static str {
        match self {
            Origin::File => "file",
            Origin::Http(_) => "http",
        }
    }

    fn queue_wait(self) -> Option<Duration> {
        match self {
            Origin::File => None,
            Origin::Http(wait) => Some(wait),
        }
    }
}

/// The sending half of a source: see the [module documentation](self). `M` is what the source
/// needs back when a chunk is retired (a `--follow` checkpoint mark, or nothing).
pub(crate) struct Dispatcher<M> {
    sink: Arc<Sink>,
    metrics: Arc<Metrics>,
    origin: Origin,
    shutdown: CancellationToken,
    shutdown_timeout: Duration,
    current: Arc<Tracker>,
    pending: VecDeque<(Arc<Tracker>, M)>,
    /// Per service (the key), records per level in [`Level::ALL`] order, since the last seal.
    levels: HashMap<Vec<u8>, [u64; Level::ALL.len()]>,
    max_logged: u64,
    logged: u64,
    read_at_seal: u64,
    /// The counts so far.
    pub(crate) report: Report,
}

impl<M> Dispatcher<M> {
    /// A dispatcher sending to `sink`; `max_logged` invalid records are logged with their
    /// position, the rest only counted.
    pub(crate) fn new(
        sink: Arc<Sink>,
        metrics: Arc<Metrics>,
        origin: Origin,
        shutdown: CancellationToken,
        shutdown_timeout: Duration,
        max_logged: u32,
    ) -> Self {
        Self {
            sink,
            metrics,
            origin,
            shutdown,
            shutdown_timeout,
            current: Tracker::new(),
            pending: VecDeque::new(),
            levels: HashMap::new(),
            max_logged: u64::from(max_logged),
            logged: 0,
            read_at_seal: 0,
            report: Report::default(),
        }
    }

    /// The sink records go to.
    pub(crate) fn sink(&self) -> &Arc<Sink> {
        &self.sink
    }

    /// Records in the open chunk.
    pub(crate) fn open_records(&self) -> u64 {
        self.current.enqueued()
    }

    /// Chunks handed over and not retired yet.
    pub(crate) fn pending_chunks(&self) -> usize {
        self.pending.len()
    }

    /// True when the queue has room for `records` now, or when they are more than the whole
    /// queue holds and it is empty (they then wait for room record by record).
    pub(crate) fn has_room(&self, records: usize) -> bool {
        let max = self.sink.queue_max();
        self.sink.in_flight() + records.min(max) <= max
    }

    /// Counts and (for the first few) logs a record the reader rejected.
    pub(crate) fn reject(&mut self, origin: &str, error: &ReadError) {
        self.report.read += 1;
        self.report.reject(error.reason().as_str());
        let log = self.logged < self.max_logged;
        self.logged += 1;
        if self.logged == self.max_logged + 1 && self.origin == Origin::File {
            tracing::warn!(
                max_logged = self.max_logged,
                "more invalid records; only counting them from now on"
            );
        }
        self.metrics.record_rejected(origin, error, log);
    }

    /// Counts valid records not handed to Kafka because its queue had no room (the client is
    /// told, and may send them again): `refused` of them, `read` of which were not counted as
    /// read yet (one that [`Dispatcher::send`] gave up on was).
    pub(crate) fn refuse_for_room(&mut self, read: u64, refused: u64) {
        self.report.read += read;
        self.report.fail("queue_full", refused);
    }

    /// Enqueues `record` of `batch` into the open chunk, waiting for room while the queue is
    /// full (the one queue-full policy): meanwhile settled chunks are retired, in order,
    /// through `done`, as [`Dispatcher::retire_settled`] does (their delivery failures must
    /// reach the caller: a `--follow` checkpoint must not pass them, and their
    /// acknowledgements may advance it), and delivery reports are served on this thread (it
    /// may have taken them over, see [`Sink::poll_inline`]). The wait ends with
    /// [`Enqueue::Interrupted`] after the origin's queue wait, or once the shutdown timeout
    /// passed after a shutdown signal (a file source's record then counts as undelivered).
    pub(crate) fn send(
        &mut self,
        origin: &str,
        batch: &Batch,
        record: &Encoded,
        mut done: impl FnMut(M, Settled),
    ) -> Enqueue {
        let (key, value) = (batch.key(record), batch.value(record));
        self.report.read += 1;
        if self.metrics.records_by_level.is_some() {
            let i = record.level.index();
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
                    self.retire_settled(&mut done);
                    let waited = waited_since.get_or_insert_with(Instant::now).elapsed();
                    let patience_over = self.origin.queue_wait().is_some_and(|w| waited > w);
                    let shutdown_over =
                        self.shutdown.is_cancelled() && waited > self.shutdown_timeout;
                    if patience_over || shutdown_over {
                        if self.origin == Origin::File {
                            self.report.undelivered += 1;
                        }
                        return Enqueue::Interrupted;
                    }
                    self.sink.poll(Duration::from_millis(1));
                }
                Err(e) => {
                    let reason = e.reason();
                    self.report.fail(reason, 1);
                    self.metrics.delivery_failed(reason, 1, &e.to_string());
                    let service = String::from_utf8_lossy(key);
                    tracing::warn!(origin, line = record.line, service = %service, "record not sent: {e}");
                    return Enqueue::Refused;
                }
            }
        }
    }

    /// Closes the open chunk with `meta` (what to do when it is retired) and opens a new one.
    pub(crate) fn seal(&mut self, meta: M) {
        let tracker = std::mem::replace(&mut self.current, Tracker::new());
        tracker.seal();
        self.pending.push_back((tracker, meta));
        self.metrics.in_flight.set(self.sink.in_flight() as i64);
        self.metrics
            .read(self.origin.label(), self.report.read - self.read_at_seal);
        self.read_at_seal = self.report.read;
        self.metrics.add_levels(&mut self.levels);
    }

    /// Retires settled chunks from the front, in order, calling `done` for each with its counts.
    pub(crate) fn retire_settled(&mut self, mut done: impl FnMut(M, Settled)) {
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
    pub(crate) fn wait(&mut self, deadline: Instant, mut done: impl FnMut(M, Settled)) -> bool {
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
    pub(crate) fn wait_oldest(&self, deadline: Instant) -> bool {
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
    pub(crate) fn drain(&mut self, meta: M, mut done: impl FnMut(M, Settled)) -> bool {
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
            let open = tracker.counts().open();
            if open > 0 {
                all = false;
                self.report.undelivered += open;
            }
        }
        self.metrics.in_flight.set(self.sink.in_flight() as i64);
        all
    }

    /// Seals the open chunk with `meta` and waits (async) until every chunk settled, retiring
    /// them in order: the end of an HTTP request, which answers only once Kafka is done with
    /// every record it took (librdkafka reports each one within its delivery timeout).
    pub(crate) async fn settle(&mut self, meta: M, mut done: impl FnMut(M, Settled)) {
        self.seal(meta);
        while let Some((tracker, _)) = self.pending.front() {
            let tracker = Arc::clone(tracker);
            tracker.settled().await;
            self.retire_settled(&mut done);
        }
    }

    /// The one accounting site: what Kafka did with a settled chunk goes to the report and the
    /// delivery metrics.
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
            .field("origin", &self.origin)
            .field("pending", &self.pending.len())
            .field("report", &self.report)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use prometheus::Registry;
    use schema::RecordReader;

    use super::*;
    use crate::batch::Item;
    use crate::config::ProducerConfig;

    /// A batch of `n` valid records.
    fn batch(n: usize) -> Batch {
        let text: String = (0..n)
            .map(|i| {
                format!(
                    "{{\"timestamp\":\"2026-01-02T03:04:05Z\",\"level\":\"info\",\"service\":\"api\",\"message\":\"m{i}\"}}\n"
                )
            })
            .collect();
        let mut reader = RecordReader::new(text.as_bytes());
        let mut batch = Batch::new();
        while let Some(item) = reader.next_record() {
            batch.push(item);
        }
        batch
    }

    /// Sends two records through a queue of one towards a broker that never answers (the
    /// second finds the queue full), after a shutdown signal with no time left to wait.
    fn interrupted(origin: Origin) -> Report {
        let mut config = ProducerConfig::default();
        config.kafka.bootstrap_servers = "127.0.0.1:1".into();
        config.kafka_queue_max_messages = 1;
        let sink = Arc::new(Sink::new(&config).unwrap());
        let metrics = Arc::new(Metrics::register(&Registry::new(), false).unwrap());
        let shutdown = CancellationToken::new();
        shutdown.cancel();
        let mut d: Dispatcher<()> =
            Dispatcher::new(sink, metrics, origin, shutdown, Duration::ZERO, 10);
        let batch = batch(2);
        let sent: Vec<Enqueue> = batch
            .items()
            .iter()
            .filter_map(|item| match item {
                Item::Record(r) => Some(d.send("test", &batch, r, |(), _| {})),
                Item::Rejected(_) => None,
            })
            .collect();
        assert_eq!(sent, [Enqueue::Sent, Enqueue::Interrupted]);
        d.report.clone()
    }

    #[test]
    fn a_file_sources_interrupted_send_counts_as_undelivered() {
        let report = interrupted(Origin::File);
        assert_eq!((report.read, report.undelivered), (2, 1), "{report}");
    }

    #[test]
    fn an_http_requests_interrupted_send_is_left_to_the_request() {
        let report = interrupted(Origin::Http(Duration::ZERO));
        assert_eq!((report.read, report.undelivered), (2, 0), "{report}");
        assert_eq!(report.failed_total(), 0, "{report}");
    }
}
