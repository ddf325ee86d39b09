//! Delivery accounting without a future per record: every message carries an
//! `Arc<`[`Tracker`]`>` of its chunk (a file chunk or one HTTP request) as its delivery opaque,
//! and the delivery callback ([`DeliveryContext`]) only bumps the tracker's atomic counters,
//! waking waiters once when the sealed chunk is settled.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{DeliveryResult, ProducerContext};
use rdkafka::ClientContext;
use tokio::sync::Notify;

/// Delivery accounting of one chunk of records: counters bumped by the delivery callback, and
/// a wake-up (async and blocking) once the chunk is sealed and every record settled.
#[derive(Debug)]
pub(crate) struct Tracker {
    enqueued: AtomicU64,
    delivered: AtomicU64,
    delivered_bytes: AtomicU64,
    failed: AtomicU64,
    too_large: AtomicU64,
    sealed: AtomicBool,
    first_error: Mutex<Option<String>>,
    created: Instant,
    notify: Notify,
    lock: Mutex<()>,
    cond: Condvar,
}

/// A chunk's counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Settled {
    /// Records handed to Kafka.
    pub(crate) enqueued: u64,
    /// Records Kafka acknowledged.
    pub(crate) delivered: u64,
    /// Value bytes Kafka acknowledged.
    pub(crate) delivered_bytes: u64,
    /// Records that failed for good (delivery timeout or another permanent error).
    pub(crate) failed: u64,
    /// Records the broker refused as too large.
    pub(crate) too_large: u64,
}

impl Settled {
    /// Records handed to Kafka that are neither acknowledged nor failed yet.
    pub(crate) fn open(&self) -> u64 {
        self.enqueued - self.delivered - self.failed - self.too_large
    }
}

impl Default for Tracker {
    fn default() -> Self {
        Self {
            enqueued: AtomicU64::new(0),
            delivered: AtomicU64::new(0),
            delivered_bytes: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            too_large: AtomicU64::new(0),
            sealed: AtomicBool::new(false),
            first_error: Mutex::new(None),
            created: Instant::now(),
            notify: Notify::new(),
            lock: Mutex::new(()),
            cond: Condvar::new(),
        }
    }
}

impl Tracker {
    /// A new, open tracker.
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Records enqueued so far.
    pub(crate) fn enqueued(&self) -> u64 {
        self.enqueued.load(Ordering::SeqCst)
    }

    /// Counts a record handed to Kafka (before the hand-over: its report may come at once).
    pub(crate) fn enqueue(&self) {
        self.enqueued.fetch_add(1, Ordering::SeqCst);
    }

    /// Takes back [`Tracker::enqueue`] for a record Kafka did not take.
    pub(crate) fn unenqueue(&self) {
        self.enqueued.fetch_sub(1, Ordering::SeqCst);
    }

    /// Time since the tracker was created (the chunk's first enqueue, roughly).
    pub(crate) fn age(&self) -> Duration {
        self.created.elapsed()
    }

    /// Declares that no more records will be added.
    pub(crate) fn seal(&self) {
        self.sealed.store(true, Ordering::SeqCst);
        if self.is_settled() {
            self.wake();
        }
    }

    /// True when sealed and every enqueued record was acknowledged or failed.
    pub(crate) fn is_settled(&self) -> bool {
        self.sealed.load(Ordering::SeqCst)
            && self.delivered.load(Ordering::SeqCst)
                + self.failed.load(Ordering::SeqCst)
                + self.too_large.load(Ordering::SeqCst)
                == self.enqueued.load(Ordering::SeqCst)
    }

    /// The counts so far.
    pub(crate) fn counts(&self) -> Settled {
        Settled {
            enqueued: self.enqueued.load(Ordering::SeqCst),
            delivered: self.delivered.load(Ordering::SeqCst),
            delivered_bytes: self.delivered_bytes.load(Ordering::SeqCst),
            failed: self.failed.load(Ordering::SeqCst),
            too_large: self.too_large.load(Ordering::SeqCst),
        }
    }

    /// The first delivery error seen, for the log line.
    pub(crate) fn first_error(&self) -> String {
        self.first_error
            .lock()
            .ok()
            .and_then(|e| e.clone())
            .unwrap_or_default()
    }

    /// Waits (async) until settled.
    pub(crate) async fn settled(&self) -> Settled {
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.is_settled() {
                return self.counts();
            }
            notified.await;
        }
    }

    /// Waits (blocking) until settled or `deadline`; true when settled.
    pub(crate) fn wait_until(&self, deadline: Instant) -> bool {
        let Ok(mut guard) = self.lock.lock() else {
            return self.is_settled();
        };
        loop {
            if self.is_settled() {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            let wait = (deadline - now).min(Duration::from_millis(100));
            guard = match self.cond.wait_timeout(guard, wait) {
                Ok((g, _)) => g,
                Err(_) => return self.is_settled(),
            };
        }
    }

    fn settle(&self, counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::SeqCst);
        if self.is_settled() {
            self.wake();
        }
    }

    fn wake(&self) {
        self.notify.notify_waiters();
        let _guard = self.lock.lock();
        self.cond.notify_all();
    }

    fn note_error(&self, e: &KafkaError) {
        if let Ok(mut first) = self.first_error.lock() {
            if first.is_none() {
                *first = Some(e.to_string());
            }
        }
    }
}

/// The producer context: routes delivery reports to the record's [`Tracker`], and counts the
/// records handed to librdkafka and not yet reported (librdkafka's own count, its out-queue
/// length, also holds requests and events, which made it grow by itself while a broker was
/// down).
#[derive(Debug, Default)]
pub(crate) struct DeliveryContext {
    in_flight: AtomicU64,
}

impl DeliveryContext {
    /// Records handed to librdkafka and not yet reported.
    pub(crate) fn in_flight(&self) -> u64 {
        self.in_flight.load(Ordering::SeqCst)
    }

    /// A record is about to be handed over (counted before, so its report can never come
    /// first).
    pub(crate) fn handing_over(&self) {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
    }

    /// librdkafka refused the record just counted.
    pub(crate) fn refused(&self) {
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

impl ClientContext for DeliveryContext {}

impl ProducerContext for DeliveryContext {
    type DeliveryOpaque = Arc<Tracker>;

    fn delivery(&self, result: &DeliveryResult<'_>, tracker: Arc<Tracker>) {
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        match result {
            Ok(message) => {
                let len = message.payload_len() as u64;
                tracker.delivered_bytes.fetch_add(len, Ordering::SeqCst);
                tracker.settle(&tracker.delivered);
            }
            Err((e, _)) => {
                tracker.note_error(e);
                if is_too_large(e) {
                    tracker.settle(&tracker.too_large);
                } else {
                    tracker.settle(&tracker.failed);
                }
            }
        }
    }
}

fn is_too_large(e: &KafkaError) -> bool {
    matches!(
        e.rdkafka_error_code(),
        Some(RDKafkaErrorCode::MessageSizeTooLarge | RDKafkaErrorCode::InvalidMessageSize)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tracker_settles_only_when_sealed_and_every_record_is_back() {
        let t = Tracker::new();
        t.enqueue();
        t.enqueue();
        t.settle(&t.delivered);
        assert!(!t.is_settled());
        t.settle(&t.failed);
        assert!(!t.is_settled(), "not sealed yet");
        t.seal();
        assert!(t.is_settled());
        assert!(t.wait_until(Instant::now()));
        let c = t.counts();
        assert_eq!((c.enqueued, c.delivered, c.failed, c.open()), (2, 1, 1, 0));
    }

    #[tokio::test]
    async fn an_async_waiter_wakes_when_the_last_record_settles() {
        let t = Tracker::new();
        t.enqueue();
        t.seal();
        let waiter = tokio::spawn({
            let t = Arc::clone(&t);
            async move { t.settled().await }
        });
        tokio::task::yield_now().await;
        let t2 = Arc::clone(&t);
        std::thread::spawn(move || t2.settle(&t2.delivered))
            .join()
            .unwrap();
        let got = tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(got.delivered, 1);
    }
}
