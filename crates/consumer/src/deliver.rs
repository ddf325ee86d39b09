//! Delivering one batch until every record in it is in Loki or in the dead-letter topic
//! (DESIGN.md, "Delivery semantics"):
//! - 2xx: delivered.
//! - 429, 5xx, network errors: retried with capped exponential back-off and jitter, honouring
//!   `Retry-After`, without limit by default. The in-flight permit is released while waiting, so
//!   a stream that is being throttled never holds up the others. No answer or a 5xx also
//!   closes a Loki-wide gate ([`Gate`]): no push starts before it opens, so the attempts
//!   against a Loki that is down do not grow with the number of queued batches.
//! - 400: Loki stored the good entries and rejected others without saying which. The batch is
//!   split in halves and re-pushed (safe: Loki drops exact duplicates) until each rejected entry
//!   stands alone; exactly those go to the dead-letter topic, with Loki's reason.
//! - 413: split and retried.
//! - 401/403/404: misconfiguration. Readiness turns false, consumption pauses, the push is
//!   retried slowly; nothing is committed meanwhile.
//!
//! A push carries one stream: Loki answers a push with the result of its last stream only, so a
//! rejection of an earlier stream's entry could otherwise hide behind a 204.

use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::batch::{Batch, Held};
use crate::dlq::{DeadLetter, DeadLetters};
use crate::health::LokiHealth;
use crate::loki::{LokiClient, Outcome, RetryReason};
use crate::metrics::Metrics;
use crate::retry::{Backoff, Gate};

/// Retry settings.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RetryPolicy {
    /// First back-off.
    pub(crate) min_backoff: Duration,
    /// Back-off cap.
    pub(crate) max_backoff: Duration,
    /// Attempts before giving up (records then go to the dead-letter topic); 0 = never.
    pub(crate) max_attempts: u32,
    /// Retry interval while misconfigured.
    pub(crate) misconfig_interval: Duration,
}

/// What every delivery task shares.
pub(crate) struct Shared {
    /// The Loki client.
    pub(crate) loki: LokiClient,
    /// The dead-letter writer.
    pub(crate) dlq: DeadLetters,
    /// Metrics.
    pub(crate) metrics: Metrics,
    /// Retry settings.
    pub(crate) retry: RetryPolicy,
    /// Limits pushes in flight (held only while a request is outstanding).
    pub(crate) permits: Semaphore,
    /// Loki-wide back-off after a push got no answer or a 5xx.
    pub(crate) gate: Gate,
    /// Loki's health (readiness, misconfiguration).
    pub(crate) health: Arc<LokiHealth>,
    /// Cancelled when shutdown gives up waiting: deliveries stop, offsets stay uncommitted.
    pub(crate) abandon: CancellationToken,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared").finish_non_exhaustive()
    }
}

/// The result of delivering a batch.
#[derive(Debug)]
pub(crate) struct Completion {
    /// Positions now safely in Loki or the dead-letter topic.
    pub(crate) delivered: Vec<Held>,
    /// Records the batch held (delivered or not), to release from the buffer accounting.
    pub(crate) records: usize,
    /// Bytes the batch held.
    pub(crate) bytes: usize,
}

enum Final {
    Accepted,
    Rejected(String),
    TooLarge,
    GaveUp(String),
    Abandoned,
}

/// Delivers a batch; returns when each record is in Loki or the dead-letter topic, or when
/// delivery was abandoned at shutdown (those positions are then not in `delivered`).
pub(crate) async fn deliver(shared: Arc<Shared>, mut batch: Batch) -> Completion {
    batch.entries.sort_by_time();
    let records = batch.len();
    let bytes = batch.bytes();
    let mut work: Vec<Range<usize>> = Vec::new();
    work.push(0..records);
    let mut delivered = Vec::with_capacity(records);
    let mut letters: Vec<(DeadLetter, Held)> = Vec::new();
    let mut first = true;
    while let Some(range) = work.pop() {
        let outcome = push_until_final(&shared, &batch, range.clone()).await;
        let held = &batch.entries.tags()[range.clone()];
        match outcome {
            Final::Accepted => {
                shared.metrics.pushed(
                    range.len(),
                    batch.entries.bytes_of(range.clone()),
                    if first { batch.oldest_kafka_ms } else { None },
                );
                delivered.extend_from_slice(held);
            }
            Final::Abandoned => {
                return Completion {
                    delivered,
                    records,
                    bytes,
                };
            }
            Final::Rejected(body) if range.len() == 1 => {
                let reason = rejection_reason(&body);
                let h = held[0];
                shared
                    .metrics
                    .loki_rejected(reason, h.partition, h.offset, &body);
                letters.push((letter(&batch, range.start, reason, &body), h));
            }
            Final::TooLarge if range.len() == 1 => {
                let msg = "Loki answered 413 for a single entry";
                letters.push((
                    letter(&batch, range.start, "request_too_large", msg),
                    held[0],
                ));
            }
            Final::Rejected(_) | Final::TooLarge => {
                let mid = range.start + range.len() / 2;
                work.push(mid..range.end);
                work.push(range.start..mid);
            }
            Final::GaveUp(detail) => {
                for i in range {
                    let h = batch.entries.tags()[i];
                    letters.push((letter(&batch, i, "retries_exhausted", &detail), h));
                }
            }
        }
        first = false;
    }
    if !letters.is_empty() {
        let (dead, held): (Vec<DeadLetter>, Vec<Held>) = letters.into_iter().unzip();
        if shared.dlq.write(&dead, &shared.abandon).await {
            delivered.extend(held);
        }
    }
    Completion {
        delivered,
        records,
        bytes,
    }
}

/// The dead letter of entry `i` of the batch: its line, and why.
fn letter(batch: &Batch, i: usize, reason: &str, error: &str) -> DeadLetter {
    let h = batch.entries.tags()[i];
    // The entry was encoded by this process, so it decodes; should it not, the letter still
    // says where the record is (partition and offset) and why it is there.
    let value = batch
        .entries
        .entry(i)
        .map(|e| e.line.into_bytes())
        .unwrap_or_default();
    DeadLetter {
        value,
        key: None,
        reason: reason.to_owned(),
        error: error.to_owned(),
        partition: h.partition,
        offset: h.offset,
    }
}

/// Loki's discard reason for a 400 text about one entry (for labelling only; decisions are
/// made on status codes).
pub(crate) fn rejection_reason(body: &str) -> &'static str {
    if body.contains("max entry size") || body.contains("line too long") {
        "line_too_long"
    } else if body.contains("timestamp too old") {
        "greater_than_max_sample_age"
    } else if body.contains("timestamp too new") {
        "too_far_in_future"
    } else if body.contains("too far behind") {
        "too_far_behind"
    } else if body.contains("structured metadata") {
        "structured_metadata_too_large"
    } else if body.contains("label") {
        "invalid_labels"
    } else {
        "loki_rejected"
    }
}

async fn push_until_final(shared: &Shared, batch: &Batch, range: Range<usize>) -> Final {
    let body: Bytes = match shared.loki.encode(&batch.labels, &batch.entries, range) {
        Ok(b) => b,
        Err(e) => return Final::Rejected(format!("cannot encode the push: {e}")),
    };
    let mut backoff = Backoff::new(shared.retry.min_backoff, shared.retry.max_backoff);
    loop {
        if shared.abandon.is_cancelled() {
            return Final::Abandoned;
        }
        if let Some(open_at) = shared.gate.closed_until(tokio::time::Instant::now()) {
            tokio::select! {
                _ = tokio::time::sleep_until(open_at) => {}
                _ = shared.abandon.cancelled() => return Final::Abandoned,
            }
            continue;
        }
        let permit = tokio::select! {
            p = shared.permits.acquire() => p,
            _ = shared.abandon.cancelled() => return Final::Abandoned,
        };
        // Another push may have closed the gate while this one waited for a permit.
        if shared
            .gate
            .closed_until(tokio::time::Instant::now())
            .is_some()
        {
            continue;
        }
        shared.metrics.in_flight.inc();
        let (outcome, status, took) = shared.loki.push(body.clone()).await;
        shared.metrics.in_flight.dec();
        drop(permit);
        shared.metrics.push_answered(status, took.as_secs_f64());
        let delay = match outcome {
            Outcome::Accepted => {
                shared.gate.succeeded();
                shared.health.push_accepted();
                return Final::Accepted;
            }
            Outcome::Rejected { body, .. } => return Final::Rejected(body),
            Outcome::TooLarge => {
                shared.metrics.push_retry(
                    RetryReason::TooLarge,
                    backoff.attempt() + 1,
                    0,
                    "413: splitting",
                );
                return Final::TooLarge;
            }
            Outcome::Retry {
                reason,
                retry_after,
                detail,
            } => {
                if shared.retry.max_attempts > 0
                    && backoff.attempt() + 1 >= shared.retry.max_attempts
                {
                    return Final::GaveUp(detail);
                }
                if matches!(reason, RetryReason::Network | RetryReason::ServerError) {
                    shared.gate.failed(tokio::time::Instant::now(), retry_after);
                }
                let delay = backoff.next_delay(retry_after);
                shared.metrics.push_retry(
                    reason,
                    backoff.attempt(),
                    delay.as_millis() as u64,
                    &detail,
                );
                delay
            }
            Outcome::Misconfigured { status, body } => {
                let detail = format!("{status}: {body}");
                shared.health.push_misconfigured(&detail);
                let delay = shared.retry.misconfig_interval;
                shared.metrics.push_retry(
                    RetryReason::Misconfigured,
                    backoff.attempt() + 1,
                    delay.as_millis() as u64,
                    &detail,
                );
                delay
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = shared.abandon.cancelled() => return Final::Abandoned,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejection_texts_map_to_lokis_reasons() {
        assert_eq!(
            rejection_reason("1 errors like: max entry size '262144' bytes exceeded for stream"),
            "line_too_long"
        );
        assert_eq!(
            rejection_reason("entry for stream '{a=\"b\"}' has timestamp too new: x"),
            "too_far_in_future"
        );
        assert_eq!(
            rejection_reason("has timestamp too old: x"),
            "greater_than_max_sample_age"
        );
        assert_eq!(rejection_reason("something else"), "loki_rejected");
    }
}
