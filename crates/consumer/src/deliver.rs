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

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use schema::loki::codec::ProtobufEncoder;
use schema::loki::entry_size;
use schema::loki::proto::{EntryAdapter, PushRequest, StreamAdapter};
use service::admin::Readiness;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::batch::{Batch, Held};
use crate::dlq::{DeadLetter, DeadLetters};
use crate::loki::{LokiClient, Outcome};
use crate::metrics::{Metrics, RetryReason};
use crate::retry::{Backoff, Gate};

/// Retry settings.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// First back-off.
    pub min_backoff: Duration,
    /// Back-off cap.
    pub max_backoff: Duration,
    /// Attempts before giving up (records then go to the dead-letter topic); 0 = never.
    pub max_attempts: u32,
    /// Retry interval while misconfigured.
    pub misconfig_interval: Duration,
}

/// What every delivery task shares.
pub struct Shared {
    /// The Loki client.
    pub loki: LokiClient,
    /// The dead-letter writer.
    pub dlq: DeadLetters,
    /// Metrics.
    pub metrics: Metrics,
    /// Retry settings.
    pub retry: RetryPolicy,
    /// Limits pushes in flight (held only while a request is outstanding).
    pub permits: Semaphore,
    /// Loki-wide back-off after a push got no answer or a 5xx.
    pub gate: Gate,
    /// True while Loki answers 401/403/404.
    pub misconfigured: AtomicBool,
    /// Readiness (the `loki` check).
    pub readiness: Arc<Readiness>,
    /// Cancelled when shutdown gives up waiting: deliveries stop, offsets stay uncommitted.
    pub abandon: CancellationToken,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared").finish_non_exhaustive()
    }
}

/// The result of delivering a batch.
#[derive(Debug)]
pub struct Completion {
    /// Positions now safely in Loki or the dead-letter topic.
    pub delivered: Vec<Held>,
    /// Records the batch held (delivered or not), to release from the buffer accounting.
    pub records: usize,
    /// Bytes the batch held.
    pub bytes: usize,
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
pub async fn deliver(shared: Arc<Shared>, mut batch: Batch) -> Completion {
    batch.sort();
    let records = batch.len();
    let bytes = batch.bytes;
    let labels = batch.labels.clone();
    let oldest = batch.oldest_kafka_ms;
    let mut work: Vec<(Vec<EntryAdapter>, Vec<Held>)> = vec![(
        std::mem::take(&mut batch.entries),
        std::mem::take(&mut batch.held),
    )];
    let mut delivered = Vec::with_capacity(records);
    let mut letters: Vec<(DeadLetter, Held)> = Vec::new();
    let mut first = true;
    while let Some((entries, held)) = work.pop() {
        let (outcome, entries) = push_until_final(&shared, &labels, entries).await;
        match outcome {
            Final::Accepted => {
                let n = entries.len();
                let b: usize = entries.iter().map(entry_size).sum();
                shared
                    .metrics
                    .pushed(n, b, if first { oldest } else { None });
                delivered.extend(held);
            }
            Final::Abandoned => {
                return Completion {
                    delivered,
                    records,
                    bytes,
                };
            }
            Final::Rejected(body) if entries.len() == 1 => {
                let reason = rejection_reason(&body);
                for (e, h) in entries.into_iter().zip(held) {
                    shared
                        .metrics
                        .loki_rejected(reason, h.partition, h.offset, &body);
                    letters.push((letter(e, reason, &body, h), h));
                }
            }
            Final::TooLarge if entries.len() == 1 => {
                for (e, h) in entries.into_iter().zip(held) {
                    let msg = "Loki answered 413 for a single entry";
                    letters.push((letter(e, "request_too_large", msg, h), h));
                }
            }
            Final::Rejected(_) | Final::TooLarge => {
                let mid = entries.len() / 2;
                let mut left = entries;
                let right = left.split_off(mid);
                let mut lheld = held;
                let rheld = lheld.split_off(mid);
                work.push((right, rheld));
                work.push((left, lheld));
            }
            Final::GaveUp(detail) => {
                for (e, h) in entries.into_iter().zip(held) {
                    letters.push((letter(e, "retries_exhausted", &detail, h), h));
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

fn letter(e: EntryAdapter, reason: &str, error: &str, h: Held) -> DeadLetter {
    DeadLetter {
        value: e.line.into_bytes(),
        key: None,
        reason: reason.to_owned(),
        error: error.to_owned(),
        partition: h.partition,
        offset: h.offset,
    }
}

/// Loki's discard reason for a 400 text about one entry (for labelling only; decisions are
/// made on status codes).
pub fn rejection_reason(body: &str) -> &'static str {
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

thread_local! {
    /// Encode buffers reused by every push on this worker thread: a fresh megabyte per push
    /// cost page faults and zeroing that showed as a tenth of the CPU.
    static ENCODER: std::cell::RefCell<ProtobufEncoder> = std::cell::RefCell::new(ProtobufEncoder::new());
}

/// Encodes a push of `entries` (moved in and handed back, so nothing is copied).
fn encode(
    shared: &Shared,
    labels: &str,
    entries: Vec<EntryAdapter>,
) -> (Result<Bytes, String>, Vec<EntryAdapter>) {
    let mut push = PushRequest {
        streams: vec![StreamAdapter {
            labels: labels.to_owned(),
            entries,
            hash: 0,
        }],
    };
    let body = ENCODER.with(|e| {
        shared
            .loki
            .encode(&push, &mut e.borrow_mut())
            .map_err(|e| e.to_string())
    });
    let entries = push.streams.pop().map(|s| s.entries).unwrap_or_default();
    (body, entries)
}

async fn push_until_final(
    shared: &Shared,
    labels: &str,
    entries: Vec<EntryAdapter>,
) -> (Final, Vec<EntryAdapter>) {
    let (body, entries) = encode(shared, labels, entries);
    let body = match body {
        Ok(b) => b,
        Err(e) => {
            return (
                Final::Rejected(format!("cannot encode the push: {e}")),
                entries,
            )
        }
    };
    let mut backoff = Backoff::new(shared.retry.min_backoff, shared.retry.max_backoff);
    loop {
        if shared.abandon.is_cancelled() {
            return (Final::Abandoned, entries);
        }
        if let Some(open_at) = shared.gate.closed_until(tokio::time::Instant::now()) {
            tokio::select! {
                _ = tokio::time::sleep_until(open_at) => {}
                _ = shared.abandon.cancelled() => return (Final::Abandoned, entries),
            }
            continue;
        }
        let permit = tokio::select! {
            p = shared.permits.acquire() => p,
            _ = shared.abandon.cancelled() => return (Final::Abandoned, entries),
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
                if shared.misconfigured.swap(false, Ordering::SeqCst) {
                    shared.metrics.loki_misconfigured.set(0);
                    shared.readiness.set("loki", true, "push accepted again");
                    tracing::info!("Loki accepts pushes again; resuming");
                }
                return (Final::Accepted, entries);
            }
            Outcome::Rejected { body, .. } => return (Final::Rejected(body), entries),
            Outcome::TooLarge => {
                shared.metrics.push_retry(
                    RetryReason::TooLarge,
                    backoff.attempt() + 1,
                    0,
                    "413: splitting",
                );
                return (Final::TooLarge, entries);
            }
            Outcome::Retry {
                reason,
                retry_after,
                detail,
            } => {
                if shared.retry.max_attempts > 0
                    && backoff.attempt() + 1 >= shared.retry.max_attempts
                {
                    return (Final::GaveUp(detail), entries);
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
                if !shared.misconfigured.swap(true, Ordering::SeqCst) {
                    shared.metrics.loki_misconfigured.set(1);
                }
                shared.readiness.set("loki", false, detail.clone());
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
            _ = shared.abandon.cancelled() => return (Final::Abandoned, entries),
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
