//! Capped exponential back-off with jitter, honouring a server's `Retry-After` (DESIGN.md,
//! "Delivery semantics": 429, 5xx and network errors are retried without limit by default).

use std::sync::Mutex;
use std::time::Duration;

use rand::Rng;
use tokio::time::Instant;

/// The longest `Retry-After` honoured; a larger value is capped so a misbehaving proxy cannot
/// park the pipeline for hours.
pub(crate) const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);

/// Back-off state of one retried operation.
#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    min: Duration,
    max: Duration,
    attempt: u32,
}

impl Backoff {
    /// Starts at `min`, doubling up to `max`.
    pub(crate) fn new(min: Duration, max: Duration) -> Self {
        Self {
            min,
            max: max.max(min),
            attempt: 0,
        }
    }

    /// Attempts made so far.
    pub(crate) fn attempt(&self) -> u32 {
        self.attempt
    }

    /// Starts over at `min` (the operation succeeded).
    pub(crate) fn reset(&mut self) {
        self.attempt = 0;
    }

    /// The delay before the next attempt: "equal jitter" (half fixed, half random) of
    /// `min · 2^attempt` capped at `max`, but never less than the server's `Retry-After`.
    pub(crate) fn next_delay(&mut self, retry_after: Option<Duration>) -> Duration {
        let exp = self
            .min
            .saturating_mul(1u32.checked_shl(self.attempt.min(20)).unwrap_or(u32::MAX))
            .min(self.max);
        self.attempt = self.attempt.saturating_add(1);
        let half = exp / 2;
        let jitter = if half.is_zero() {
            Duration::ZERO
        } else {
            Duration::from_nanos(rand::thread_rng().gen_range(0..=half.as_nanos() as u64))
        };
        let delay = half + jitter;
        match retry_after {
            Some(ra) => delay.max(ra.min(MAX_RETRY_AFTER)),
            None => delay,
        }
    }
}

/// A Loki-wide back-off shared by every delivery. When a push gets no answer or a 5xx, Loki as
/// a whole is in trouble, not one stream: no push starts before the gate opens again, so a
/// queue of batches does not multiply the attempts against a Loki that is down (each batch
/// keeping its own back-off would make them grow with the queue). Success closes the episode.
#[derive(Debug)]
pub(crate) struct Gate {
    state: Mutex<GateState>,
}

#[derive(Debug)]
struct GateState {
    backoff: Backoff,
    open_at: Option<Instant>,
}

impl Gate {
    /// An open gate whose back-off runs from `min` to `max`.
    pub(crate) fn new(min: Duration, max: Duration) -> Self {
        Self {
            state: Mutex::new(GateState {
                backoff: Backoff::new(min, max),
                open_at: None,
            }),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, GateState> {
        // The state stays consistent whatever a panicking holder did: both fields are plain.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// When the next push may start, if that is later than `now`.
    pub(crate) fn closed_until(&self, now: Instant) -> Option<Instant> {
        self.state().open_at.filter(|at| *at > now)
    }

    /// Records a Loki-wide failure seen at `now`: the gate closes for the next back-off step
    /// (at least `retry_after`), counted from now. Failures of pushes that were already in
    /// flight when the gate closed do not add steps.
    pub(crate) fn failed(&self, now: Instant, retry_after: Option<Duration>) {
        let mut s = self.state();
        if s.open_at.is_some_and(|at| at > now) {
            return;
        }
        let delay = s.backoff.next_delay(retry_after);
        s.open_at = Some(now + delay);
    }

    /// Records an accepted push: the gate opens and the back-off starts over.
    pub(crate) fn succeeded(&self) {
        let mut s = self.state();
        s.backoff.reset();
        s.open_at = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_and_stay_within_the_cap() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
        let mut last_cap = Duration::ZERO;
        for i in 0..12 {
            let d = b.next_delay(None);
            let cap = (Duration::from_millis(100) * 2u32.pow(i.min(5))).min(Duration::from_secs(2));
            assert!(
                d >= cap / 2 && d <= cap,
                "attempt {i}: {d:?} not in [{:?}, {cap:?}]",
                cap / 2
            );
            assert!(cap >= last_cap);
            last_cap = cap;
        }
        assert_eq!(b.attempt(), 12);
    }

    #[test]
    fn retry_after_is_honoured_and_capped() {
        let mut b = Backoff::new(Duration::from_millis(10), Duration::from_millis(20));
        assert!(b.next_delay(Some(Duration::from_secs(3))) >= Duration::from_secs(3));
        assert_eq!(
            b.next_delay(Some(Duration::from_secs(10_000))),
            MAX_RETRY_AFTER
        );
    }

    #[test]
    fn huge_attempt_counts_do_not_overflow() {
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(30));
        for _ in 0..100 {
            assert!(b.next_delay(None) <= Duration::from_secs(30));
        }
    }

    #[test]
    fn the_gate_closes_once_per_episode_step_and_opens_on_success() {
        let gate = Gate::new(Duration::from_millis(100), Duration::from_secs(1));
        let t0 = Instant::now();
        assert_eq!(gate.closed_until(t0), None, "open at first");
        gate.failed(t0, None);
        let first = gate.closed_until(t0).expect("closed after a failure");
        assert!(
            first >= t0 + Duration::from_millis(50) && first <= t0 + Duration::from_millis(100)
        );
        // Four pushes that were in flight fail too: still one step.
        for _ in 0..4 {
            gate.failed(t0 + Duration::from_millis(1), None);
        }
        assert_eq!(gate.closed_until(t0), Some(first));
        // After it opened, the next failure closes it for a longer step.
        gate.failed(first, None);
        let second = gate.closed_until(first).expect("closed again");
        assert!(
            second >= first + Duration::from_millis(100),
            "{:?}",
            second - first
        );
        // Retry-After wins when longer.
        gate.failed(second, Some(Duration::from_secs(3)));
        assert!(gate.closed_until(second).expect("closed") >= second + Duration::from_secs(3));
        gate.succeeded();
        assert_eq!(gate.closed_until(second), None);
        gate.failed(second, None);
        let again = gate.closed_until(second).expect("closed");
        assert!(
            again <= second + Duration::from_millis(100),
            "back-off restarted"
        );
    }
}
