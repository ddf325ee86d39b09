//! Backpressure: what the consumer holds (batching, in flight, retrying) against the configured
//! bounds (`BUFFER_MAX_RECORDS`, `BUFFER_MAX_BYTES`). At the bound, reading stops (librdkafka's
//! own queue then fills and its fetches stop); only a long stall (Loki down) or a
//! misconfigured Loki pauses the partitions, which costs a re-fetch. Memory is bounded by
//! configuration, never by input, and lag grows instead.

use std::time::{Duration, Instant};

/// How long the buffer may stay full, with reading stopped, before the partitions are paused.
pub(crate) const PAUSE_AFTER: Duration = Duration::from_secs(5);

/// What the loop must do to the partitions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Change {
    /// Pause every assigned partition.
    Pause,
    /// Resume them (after seeking each to just after its last received record).
    Resume,
}

/// Records and bytes held, and the pause state.
#[derive(Debug)]
pub(crate) struct Flow {
    records: usize,
    bytes: usize,
    max_records: usize,
    max_bytes: usize,
    paused: bool,
    /// Since when the buffer has been at its bound without a pause (reading stopped).
    over_since: Option<Instant>,
}

impl Flow {
    /// Nothing held, not paused.
    pub(crate) fn new(max_records: usize, max_bytes: usize) -> Self {
        Self {
            records: 0,
            bytes: 0,
            max_records,
            max_bytes,
            paused: false,
            over_since: None,
        }
    }

    /// A record of `bytes` is now held.
    pub(crate) fn hold(&mut self, bytes: usize) {
        self.records += 1;
        self.bytes += bytes;
    }

    /// `records` records of `bytes` in all are no longer held.
    pub(crate) fn release(&mut self, records: usize, bytes: usize) {
        self.records = self.records.saturating_sub(records);
        self.bytes = self.bytes.saturating_sub(bytes);
    }

    /// Records held.
    pub(crate) fn records(&self) -> usize {
        self.records
    }

    /// Bytes held.
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }

    /// The bounds themselves.
    pub(crate) fn bounds(&self) -> (usize, usize) {
        (self.max_records, self.max_bytes)
    }

    /// True at or over either bound: reading stops.
    pub(crate) fn over_bounds(&self) -> bool {
        self.records >= self.max_records || self.bytes >= self.max_bytes
    }

    /// Whether the partitions are paused.
    pub(crate) fn paused(&self) -> bool {
        self.paused
    }

    /// Whether the loop may take more messages: not at the bound, or paused (a paused consumer
    /// must still be polled for rebalances; librdkafka delivers nothing for paused partitions).
    pub(crate) fn may_read(&self) -> bool {
        self.paused || !self.over_bounds()
    }

    /// Marks the partitions paused (at shutdown, or when new ones join a paused consumer).
    pub(crate) fn set_paused(&mut self) {
        self.paused = true;
    }

    /// Decides, at `now`, whether to pause or resume. Not reading is enough for short stalls;
    /// a long one (Loki down), or a Loki that refuses our credentials, pauses the partitions so
    /// the consumer can keep polling (group membership, rebalances) without fetching. It resumes
    /// only at half the bounds: every pause costs a re-fetch, so fewer, longer runs.
    pub(crate) fn decide(&mut self, now: Instant, misconfigured: bool) -> Option<Change> {
        let over = self.over_bounds();
        self.over_since = match (over, self.over_since) {
            (true, Some(since)) => Some(since),
            (true, None) => Some(now),
            (false, _) => None,
        };
        let stalled = self
            .over_since
            .is_some_and(|since| now.saturating_duration_since(since) >= PAUSE_AFTER);
        let under = self.records <= self.max_records / 2 && self.bytes <= self.max_bytes / 2;
        if !self.paused && (stalled || misconfigured) {
            tracing::info!(
                held_records = self.records,
                held_bytes = self.bytes,
                misconfigured,
                "pausing consumption"
            );
            self.paused = true;
            Some(Change::Pause)
        } else if self.paused && under && !misconfigured {
            tracing::info!(held_records = self.records, "resuming consumption");
            self.paused = false;
            Some(Change::Resume)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reading_stops_at_the_bound_and_a_pause_follows_only_a_long_stall() {
        let mut f = Flow::new(2, 1000);
        let t0 = Instant::now();
        f.hold(10);
        assert!(f.may_read());
        f.hold(10);
        assert!(!f.may_read(), "at the record bound");
        assert_eq!(f.decide(t0, false), None);
        assert_eq!(f.decide(t0 + PAUSE_AFTER / 2, false), None);
        assert_eq!(f.decide(t0 + PAUSE_AFTER, false), Some(Change::Pause));
        assert!(f.may_read(), "a paused consumer is still polled");
        f.release(1, 10);
        assert_eq!(
            f.decide(t0 + PAUSE_AFTER, false),
            Some(Change::Resume),
            "at half"
        );
        assert_eq!((f.records(), f.bytes()), (1, 10));
    }

    #[test]
    fn a_misconfigured_loki_pauses_at_once_and_holds_the_pause() {
        let mut f = Flow::new(100, 1000);
        let t0 = Instant::now();
        assert_eq!(f.decide(t0, true), Some(Change::Pause));
        assert_eq!(f.decide(t0, true), None);
        assert_eq!(f.decide(t0, false), Some(Change::Resume));
    }

    #[test]
    fn the_byte_bound_counts_too() {
        let mut f = Flow::new(100, 50);
        f.hold(60);
        assert!(f.over_bounds());
        f.release(5, 100);
        assert_eq!((f.records(), f.bytes()), (0, 0), "never below zero");
    }
}
