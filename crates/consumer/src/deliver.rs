//! Delivering one batch until every record in it is in Loki or in the dead-letter topic
//! (DESIGN.md, "Delivery semantics"):
//! - 2xx: delivered.
//! - 429, 5xx, network errors: retried with capped exponential back-off and jitter, honouring
//!   `Retry-After`, without limit by default. The in-flight permit is released while waiting, so
//!   a stream that is being throttled never holds up the others. No answer or a 5xx also
//!   closes the tenant's gate ([`Gate`]): none of its pushes starts before it opens, so the
//!   attempts against a Loki that is down do not grow with the number of queued batches. Gates
//!   and in-flight limits are per tenant (`tenants`): one tenant's trouble never delays
//!   another's pushes.
//! - 400: Loki stored the good entries and rejected others without saying which. The batch is
//!   split in halves and re-pushed (safe: Loki drops exact duplicates) until each rejected entry
//!   stands alone; exactly those go to the dead-letter topic, with Loki's reason.
//! - 413: split and retried.
//! - 401/403/404: misconfiguration. Readiness turns false, consumption pauses, the push is
//!   retried slowly; nothing is committed meanwhile.
//! - A 500 that persists for this push while Loki accepts other pushes
//!   (`loki_persistent_error_attempts` answers in a row, other pushes accepted meanwhile) is
//!   permanent, not an outage: Loki answers a record dated before its schema, for one, with a
//!   500 forever. The batch is split like a 400, each part giving up after
//!   [`ISOLATING_ATTEMPTS`] 500s (Loki was shown to work), and exactly the records that fail
//!   alone go to the dead-letter topic (`loki_persistent_error`, with Loki's answer), so one
//!   record never holds its partition. Likewise 429s that persist for a push while the
//!   tenant's other pushes pass mean the push is bigger than the tenant's burst can ever take:
//!   it is split (never dead-lettered). A Loki that is down gives no such evidence (no answer,
//!   503s, or every push failing, even with `/ready` up, as with a full disk) and is retried
//!   without limit; so is a failing push while nothing else flows.
//!
//! A push carries one stream: Loki answers a push with the result of its last stream only, so a
//! rejection of an earlier stream's entry could otherwise hide behind a 204.

use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio_util::sync::CancellationToken;

use crate::batch::{Batch, Held};
use crate::dlq::{DeadLetter, DeadLetters};
use crate::health::LokiHealth;
use crate::loki::{LokiClient, Outcome, RetryReason};
use crate::metrics::Metrics;
use crate::retry::Backoff;

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
    /// Consecutive 5xx answers to one push, with Loki otherwise working, that make its failure
    /// permanent; 0 = never.
    pub(crate) persistent_after: u32,
}

/// Consecutive 500s after which a part of a batch already found to fail permanently is taken
/// as failing permanently too (Loki was shown to work when the batch was).
pub(crate) const ISOLATING_ATTEMPTS: u32 = 2;

/// When a run of 500s to one push makes its failure permanent.
#[derive(Debug, Clone, Copy)]
enum Permanence {
    /// Never (`loki_persistent_error_attempts` is 0).
    Never,
    /// After this many 500s in a row, when Loki accepted other pushes meanwhile.
    WithEvidence(u32),
    /// After this many 500s in a row (a part of a batch found to fail permanently).
    After(u32),
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
    /// A 5xx that persists for this push while Loki works otherwise.
    Persistent(String),
    /// 429s that persist for this push while the tenant's other pushes pass: it is bigger
    /// than the tenant's burst can ever take. Split it, dead-letter nothing.
    Throttled,
    Abandoned,
}

/// A run of 429s to one push of several entries.
#[derive(Debug, Clone, Copy)]
struct Throttle {
    answers: u32,
    /// Pushes of the tenant Loki had accepted when the run began.
    accepted_before: u64,
}

/// A run of 500s to one push.
#[derive(Debug, Clone, Copy)]
struct Streak {
    answers: u32,
    /// Pushes Loki had accepted when the first push of the run was sent.
    accepted_before: u64,
}

impl Streak {
    fn is_permanent(&self, shared: &Shared, rule: Permanence) -> bool {
        match rule {
            Permanence::Never => false,
            Permanence::After(n) => self.answers >= n,
            Permanence::WithEvidence(n) => {
                self.answers >= n && shared.health.accepted() > self.accepted_before
            }
        }
    }
}

/// Delivers a batch; returns when each record is in Loki or the dead-letter topic, or when
/// delivery was abandoned at shutdown (those positions are then not in `delivered`).
pub(crate) async fn deliver(shared: Arc<Shared>, mut batch: Batch) -> Completion {
    batch.entries.sort_by_time();
    let records = batch.len();
    let bytes = batch.bytes();
    // Ranges still to push, and whether they are parts of a push found to fail permanently.
    let mut work: Vec<(Range<usize>, bool)> = vec![(0..records, false)];
    let mut delivered = Vec::with_capacity(records);
    let mut letters: Vec<(DeadLetter, Held)> = Vec::new();
    let mut first = true;
    while let Some((range, isolating)) = work.pop() {
        let rule = match shared.retry.persistent_after {
            0 => Permanence::Never,
            n if isolating => Permanence::After(n.min(ISOLATING_ATTEMPTS)),
            n => Permanence::WithEvidence(n),
        };
        let outcome = push_until_final(&shared, &batch, range.clone(), rule).await;
        let held = &batch.entries.tags()[range.clone()];
        match outcome {
            Final::Accepted => {
                shared.metrics.pushed(
                    range.len(),
                    batch.entries.bytes_of(range.clone()),
                    if first { batch.oldest_kafka_ms } else { None },
                );
                shared
                    .metrics
                    .tenant_pushed(&batch.tenant.label, range.len());
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
            Final::Persistent(answer) if range.len() == 1 => {
                let h = held[0];
                shared
                    .metrics
                    .loki_persistent_error(h.partition, h.offset, &answer);
                letters.push((letter(&batch, range.start, PERSISTENT_REASON, &answer), h));
            }
            Final::Throttled => {
                let mid = range.start + range.len() / 2;
                work.push((mid..range.end, isolating));
                work.push((range.start..mid, isolating));
            }
            Final::Rejected(_) | Final::TooLarge | Final::Persistent(_) => {
                let isolating = isolating || matches!(outcome, Final::Persistent(_));
                let mid = range.start + range.len() / 2;
                work.push((mid..range.end, isolating));
                work.push((range.start..mid, isolating));
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

/// The dead-letter reason of records Loki keeps failing with a 5xx while it works otherwise.
pub(crate) const PERSISTENT_REASON: &str = "loki_persistent_error";

/// Pushes `range` of the batch until Loki's answer is final; `rule` says when a run of 500s
/// is.
async fn push_until_final(
    shared: &Shared,
    batch: &Batch,
    range: Range<usize>,
    rule: Permanence,
) -> Final {
    let entries = range.len();
    let body: Bytes = match shared.loki.encode(&batch.labels, &batch.entries, range) {
        Ok(b) => b,
        Err(e) => return Final::Rejected(format!("cannot encode the push: {e}")),
    };
    let mut backoff = Backoff::new(shared.retry.min_backoff, shared.retry.max_backoff);
    let mut streak: Option<Streak> = None;
    let mut throttle: Option<Throttle> = None;
    let tenant = &batch.tenant;
    loop {
        if shared.abandon.is_cancelled() {
            return Final::Abandoned;
        }
        if let Some(open_at) = tenant.gate.closed_until(tokio::time::Instant::now()) {
            tokio::select! {
                _ = tokio::time::sleep_until(open_at) => {}
                _ = shared.abandon.cancelled() => return Final::Abandoned,
            }
            continue;
        }
        let permit = tokio::select! {
            p = tenant.permits.acquire() => p,
            _ = shared.abandon.cancelled() => return Final::Abandoned,
        };
        // Another push may have closed the gate while this one waited for a permit.
        if tenant
            .gate
            .closed_until(tokio::time::Instant::now())
            .is_some()
        {
            continue;
        }
        // Pushes Loki accepts from here on are evidence that it works while this one fails:
        // counted from the send, not from the answer, so others answered while this one was in
        // flight count too (a failing push sent last among many otherwise never saw any).
        let accepted_at_send = shared.health.accepted();
        shared.metrics.in_flight.inc();
        let (outcome, status, took) = shared.loki.push(body.clone(), tenant.header.as_ref()).await;
        shared.metrics.in_flight.dec();
        drop(permit);
        shared.metrics.push_answered(status, took.as_secs_f64());
        let delay = match outcome {
            Outcome::Accepted => {
                tenant.gate.succeeded();
                tenant.push_accepted();
                shared.health.push_accepted();
                return Final::Accepted;
            }
            Outcome::Rejected { body, .. } => return Final::Rejected(body),
            Outcome::TooLarge => {
                shared.metrics.push_retry(
                    &tenant.name,
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
                if status == Some(500) {
                    let s = streak.get_or_insert(Streak {
                        answers: 0,
                        accepted_before: accepted_at_send,
                    });
                    s.answers += 1;
                    if s.is_permanent(shared, rule) {
                        return Final::Persistent(detail);
                    }
                } else {
                    // A 429, a 503 or no answer at all says nothing about this push: the run
                    // starts over.
                    streak = None;
                }
                if status == Some(429) && entries > 1 {
                    let t = throttle.get_or_insert(Throttle {
                        answers: 0,
                        accepted_before: tenant.accepted(),
                    });
                    t.answers += 1;
                    let after = shared.retry.persistent_after;
                    if after > 0 && t.answers >= after && tenant.accepted() > t.accepted_before {
                        shared.metrics.push_retry(
                            &tenant.name,
                            RetryReason::RateLimited,
                            backoff.attempt() + 1,
                            0,
                            "429 to this push while the tenant's others pass: splitting",
                        );
                        return Final::Throttled;
                    }
                } else {
                    throttle = None;
                }
                if shared.retry.max_attempts > 0
                    && backoff.attempt() + 1 >= shared.retry.max_attempts
                {
                    return Final::GaveUp(detail);
                }
                if matches!(reason, RetryReason::Network | RetryReason::ServerError) {
                    tenant.gate.failed(tokio::time::Instant::now(), retry_after);
                }
                shared.metrics.tenant_retry(&tenant.label, reason);
                let delay = backoff.next_delay(retry_after);
                shared.metrics.push_retry(
                    &tenant.name,
                    reason,
                    backoff.attempt(),
                    delay.as_millis() as u64,
                    &detail,
                );
                delay
            }
            Outcome::Misconfigured { status, body } => {
                streak = None;
                let detail = format!("{status}: {body}");
                shared.health.push_misconfigured(&detail);
                let delay = shared.retry.misconfig_interval;
                shared.metrics.push_retry(
                    &tenant.name,
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
