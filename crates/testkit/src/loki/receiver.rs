//! The receiver's core, independent of HTTP: Loki's push semantics on the [`Store`], with the
//! [`Metrics`] and the faults in force. It reproduces what a real Loki was recorded doing
//! (`loki-conformance/`, see the crate README), in Loki's order:
//!
//! 1. a push without streams is refused (422);
//! 2. every stream's label text is parsed as Loki parses it (JSON label names pasted unquoted):
//!    one that does not parse refuses the **whole push** (400), and `service_name` is added;
//! 3. the distributor, stream by stream in push order (streams without entries skipped):
//!    label validation (too many labels, too long, repeated, none: that **stream** is refused),
//!    then every entry (age, future, line size, structured metadata); refused entries are
//!    reported, the others go on (partial acceptance). A structured-metadata name Loki cannot
//!    normalise fails the whole push with a **500**. Metadata names are normalised and
//!    `detected_level` is added;
//! 4. the tenant rate applies to the accepted bytes (line plus metadata): over it, the whole
//!    push is refused (429) and nothing is stored;
//! 5. the ingester, stream by stream: creating a stream can fail (the active stream limit:
//!    429; an entry before the schema's start: a permanent 500); an entry equal to the stream's
//!    last is skipped, one too far behind the newest is refused; the per-stream rate applies to
//!    the stream's bytes as a whole (429, nothing of it stored); the rest is stored, exact
//!    duplicates (timestamp, line and metadata) dropped silently;
//! 6. the answer is the **last stream's** ingester error, else the distributor's errors
//!    (aggregated 400), else 204. So an earlier stream's refused entries can be answered 204
//!    (recorded: `too-far-behind-masked`, `stream-rate-other-stream-ok`).
//!
//! Accounting: every entry received ends up exactly once as accepted (stored, duplicate, or
//! counted in count-only mode) or discarded under one reason. Entries lost with a whole push
//! count under the reason that failed it.

use std::borrow::Cow;
use std::collections::hash_map::Entry as Slot;
use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError, RwLock};
use std::time::Instant;

use schema::loki::go_text::time_string;
use schema::loki::limits::{
    aggregate_messages, before_schema_start, check_entry_in_distributor, parse_stream_labels,
    too_far_behind_message, Discard, Limits,
};
use schema::loki::metadata::{
    normalize_structured_metadata, structured_metadata_size, DETECTED_LEVEL,
};
use schema::loki::proto::{LabelPairAdapter, PushRequest};
use schema::LabelSet;

use super::config::LokiConfig;
use super::faults::Faults;
use super::level;
use super::logql::Selector;
use super::metrics::{DiscardCounts, Metrics};
use super::ratelimit::{
    stream_limit_message, stream_rate_message, tenant_rate_message, TokenBucket,
};
use super::store::{Entry, LastLine, Store, StoredEntry, Stream, Tenant};
use super::tenant::FAKE_TENANT;

/// Loki's text for a push without streams (422).
pub(crate) const MISSING_STREAMS: &str =
    "error at least one valid stream is required for ingestion";

/// How many refused entries an ingester error lists (Loki's `max_returned_stream_errors`).
const MAX_RETURNED_ERRORS: usize = 10;

/// A push Loki does not answer 204: its status and Loki's text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Answer {
    /// The HTTP status.
    pub(crate) status: u16,
    /// Loki's text (the body, without its final newline).
    pub(crate) message: String,
}

impl Answer {
    fn new(status: u16, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }
}

/// The state shared by the API, the control API and the handle.
#[derive(Debug)]
pub(crate) struct Receiver {
    pub(crate) config: LokiConfig,
    /// The limits in force (`config.limits`, discovery off when the config says so).
    pub(crate) limits: Limits,
    pub(crate) metrics: Metrics,
    faults: RwLock<Faults>,
    store: Mutex<Store>,
}

/// An entry that passed the distributor.
struct Validated {
    ts: i64,
    line: String,
    metadata: Vec<LabelPairAdapter>,
    detected_level: Option<String>,
    /// Line plus metadata bytes, as Loki's rate limits count them.
    size: usize,
}

impl Validated {
    /// Every metadata pair Loki holds for the entry, `detected_level` included, by name.
    fn stored_metadata(&self) -> Vec<(String, String)> {
        let mut all: Vec<(String, String)> = self
            .metadata
            .iter()
            .map(|p| (p.name.clone(), p.value.clone()))
            .chain(
                self.detected_level
                    .iter()
                    .map(|l| (DETECTED_LEVEL.to_owned(), l.clone())),
            )
            .collect();
        all.sort_unstable();
        all
    }
}

/// A stream of the push that reaches the ingester.
struct ToIngest {
    labels: LabelSet,
    /// The label set as Loki prints it.
    text: String,
    entries: Vec<Validated>,
}

/// One entry an ingester refused, for its error text.
struct Failure {
    ts: i64,
    /// The reason, as Loki words it.
    reason: String,
}

/// What one stream's push did.
#[derive(Default)]
struct StreamOutcome {
    stored: u64,
    duplicates: u64,
    accepted: u64,
    discarded: Vec<(Discard, u64)>,
    /// The stream's error, which becomes the push's answer when the stream is the last.
    answer: Option<Answer>,
}

impl Receiver {
    /// A receiver with an empty store.
    pub(crate) fn new(config: LokiConfig) -> Result<Self, prometheus::Error> {
        let metrics = Metrics::new()?;
        if !config.auth_enabled {
            metrics.tenant_seen(FAKE_TENANT);
        }
        Ok(Self {
            faults: RwLock::new(config.faults),
            limits: config.effective_limits(),
            config,
            metrics,
            store: Mutex::new(Store::default()),
        })
    }

    /// The faults in force.
    pub(crate) fn faults(&self) -> Faults {
        *self.faults.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// Replaces the faults (the listener side of `refuse` is the server's business).
    pub(crate) fn set_faults(&self, faults: Faults) {
        *self.faults.write().unwrap_or_else(PoisonError::into_inner) = faults;
    }

    fn store(&self) -> MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Forgets every entry, stream and tenant, and zeroes the metrics.
    pub(crate) fn reset(&self) {
        self.store().clear();
        let fake = (!self.config.auth_enabled).then_some(FAKE_TENANT);
        self.metrics.reset(fake);
    }

    /// A tenant's stored entries in streams selected by `selector` (all when `None`).
    pub(crate) fn entries(&self, tenant: &str, selector: Option<&Selector>) -> Vec<StoredEntry> {
        self.store().entries(tenant, selector)
    }

    /// Removes `tenant`'s entries with these (timestamp, line) pairs from every stream; returns
    /// how many entries were removed.
    pub(crate) fn remove_entries(&self, tenant: &str, entries: &[(i64, String)]) -> usize {
        let mut store = self.store();
        entries
            .iter()
            .map(|(ts, line)| store.remove(tenant, *ts, line))
            .sum()
    }

    /// Runs `f` on the store (queries).
    pub(crate) fn with_store<T>(&self, f: impl FnOnce(&Store) -> T) -> T {
        f(&self.store())
    }

    /// Handles a decoded push for `tenant` as Loki does (see the module documentation);
    /// `now_ns` is the wall clock in nanoseconds since the epoch (timestamp rules), `now` the
    /// monotonic clock (rate buckets).
    pub(crate) fn ingest(
        &self,
        tenant: &str,
        push: PushRequest,
        now_ns: i64,
        now: Instant,
    ) -> Result<(), Answer> {
        if push.streams.is_empty() {
            return Err(Answer::new(422, MISSING_STREAMS));
        }
        let (lines, bytes) = push
            .streams
            .iter()
            .flat_map(|s| &s.entries)
            .fold((0u64, 0u64), |(l, b), e| (l + 1, b + e.line.len() as u64));
        self.metrics
            .received(tenant, push.streams.len(), lines, bytes);
        self.metrics.tenant_seen(tenant);
        let mut discards = DiscardCounts::default();

        // Loki's HTTP parsing: every stream's labels, service_name added. A text that does not
        // parse refuses the whole push.
        let mut parsed = Vec::with_capacity(push.streams.len());
        for stream in push.streams {
            let labels = parse_stream_labels(&stream.labels, &self.limits);
            if let Err(r) = &labels {
                if r.reason == Discard::InvalidLabels {
                    discards.add(Discard::InvalidLabels, lines);
                    self.metrics.discarded(tenant, &discards);
                    return Err(Answer::new(400, r.message.clone()));
                }
            }
            parsed.push((labels, stream.entries));
        }

        // The distributor.
        let mut errors: Vec<String> = Vec::new();
        let mut ingest: Vec<ToIngest> = Vec::new();
        let (mut valid_lines, mut valid_bytes, mut discarded) = (0usize, 0usize, 0u64);
        for (labels, entries) in parsed {
            if entries.is_empty() {
                continue;
            }
            let labels = match labels {
                Ok(labels) => labels,
                Err(r) => {
                    discards.add(r.reason, entries.len() as u64);
                    discarded += entries.len() as u64;
                    errors.push(r.message);
                    continue;
                }
            };
            let mut kept = Vec::with_capacity(entries.len());
            for entry in entries {
                if let Err(r) =
                    check_entry_in_distributor(&labels.text, &entry, now_ns, &self.limits)
                {
                    if r.reason == Discard::InvalidMetadataName {
                        discards.add(Discard::InvalidMetadataName, lines - discarded);
                        self.metrics.discarded(tenant, &discards);
                        return Err(Answer::new(500, r.message));
                    }
                    discards.add(r.reason, 1);
                    discarded += 1;
                    errors.push(r.message);
                    continue;
                }
                let ts = entry.nanos();
                // The check above normalised these names already; usually nothing changes.
                let changed = match normalize_structured_metadata(&entry.structured_metadata) {
                    Ok(Cow::Owned(normalized)) => Some(normalized),
                    Ok(Cow::Borrowed(_)) | Err(_) => None,
                };
                let mut metadata = changed.unwrap_or(entry.structured_metadata);
                let detected_level = if self.config.discover_log_levels {
                    level::detect(labels.labels.pairs(), &mut metadata, &entry.line)
                } else {
                    None
                };
                let size = entry.line.len()
                    + structured_metadata_size(
                        metadata.iter().map(|p| (p.name.as_str(), p.value.as_str())),
                    );
                valid_bytes += size;
                valid_lines += 1;
                kept.push(Validated {
                    ts,
                    line: entry.line,
                    metadata,
                    detected_level,
                    size,
                });
            }
            if !kept.is_empty() {
                ingest.push(ToIngest {
                    labels: labels.labels,
                    text: labels.text,
                    entries: kept,
                });
            }
        }
        let validation = (!errors.is_empty()).then(|| {
            let texts: Vec<&str> = errors.iter().map(String::as_str).collect();
            Answer::new(400, aggregate_messages(&texts))
        });
        if ingest.is_empty() {
            self.metrics.discarded(tenant, &discards);
            return validation.map_or(Ok(()), Err);
        }

        // The tenant rate, then the ingester, under one lock.
        let mut store = self.store();
        let (tenant_rate, tenant_burst) = self.config.tenant_rate();
        let (state, _) = store.tenant_mut(tenant, || Tenant {
            bucket: TokenBucket::new(tenant_rate, tenant_burst, now),
            streams: HashMap::new(),
        });
        if !state.bucket.allow(valid_bytes, now) {
            let rate = state.bucket.rate();
            drop(store);
            discards.add(Discard::RateLimited, valid_lines as u64);
            self.metrics.discarded(tenant, &discards);
            return Err(Answer::new(
                429,
                tenant_rate_message(tenant, rate, valid_lines, valid_bytes),
            ));
        }
        let mut last_answer: Option<Answer> = None;
        let (mut stored, mut accepted, mut duplicates) = (0u64, 0u64, 0u64);
        for stream in ingest {
            let n = stream.entries.len();
            match self.ingest_stream(tenant, state, stream, now) {
                Ok(outcome) => {
                    stored += outcome.stored;
                    duplicates += outcome.duplicates;
                    accepted += outcome.accepted;
                    for (reason, count) in outcome.discarded {
                        discards.add(reason, count);
                    }
                    last_answer = outcome.answer;
                }
                Err((reason, answer)) => {
                    discards.add(reason, n as u64);
                    last_answer = Some(answer);
                }
            }
        }
        store.add_stored(stored);
        // Counted while the store is locked: concurrent pushes setting the size after unlocking
        // could leave an older, smaller size last (seen in CI: 3,972 reported, 4,000 held).
        self.metrics.ingested(accepted, duplicates, store.stored());
        drop(store);
        self.metrics.discarded(tenant, &discards);
        match last_answer.or(validation) {
            Some(answer) => Err(answer),
            None => Ok(()),
        }
    }

    /// One stream in Loki's ingester: creation (stream limit, schema), then its push.
    fn ingest_stream(
        &self,
        tenant: &str,
        state: &mut Tenant,
        push: ToIngest,
        now: Instant,
    ) -> Result<StreamOutcome, (Discard, Answer)> {
        let active = state.streams.len();
        let stream = match state.streams.entry(push.labels.clone()) {
            Slot::Occupied(slot) => slot.into_mut(),
            Slot::Vacant(slot) => {
                let max = self.config.max_streams_per_user;
                if max > 0 && active >= max {
                    return Err((
                        Discard::StreamLimit,
                        Answer::new(429, stream_limit_message(tenant, &push.text)),
                    ));
                }
                let oldest = push.entries.iter().map(|e| e.ts).min().unwrap_or(0);
                if let Some(r) = before_schema_start(oldest, &self.limits) {
                    return Err((
                        Discard::BeforeSchemaStart,
                        Answer::new(
                            500,
                            format!("rpc error: code = Unknown desc = {}", r.message),
                        ),
                    ));
                }
                let (rate, burst) = self.config.stream_rate();
                slot.insert(Stream::new(TokenBucket::new(rate, burst, now)))
            }
        };
        Ok(self.push_stream(tenant, stream, push, now))
    }

    /// Loki's `stream.Push`: skips an entry equal to the last one, refuses those too far behind
    /// the newest, applies the per-stream rate to the whole stream, stores the rest.
    fn push_stream(
        &self,
        tenant: &str,
        stream: &mut Stream,
        push: ToIngest,
        now: Instant,
    ) -> StreamOutcome {
        let total = push.entries.len();
        let max_behind = i64::try_from(self.limits.max_behind().as_nanos()).unwrap_or(i64::MAX);
        let mut newest = stream.newest;
        let mut failures: Vec<Failure> = Vec::new();
        let mut to_store: Vec<Validated> = Vec::with_capacity(total);
        let mut valid_bytes = 0usize;
        let mut outcome = StreamOutcome::default();
        for e in push.entries {
            // Skipped when equal to the last entry appended, in this push or before.
            let same_as_last = match to_store.last() {
                Some(l) => {
                    l.ts == e.ts && l.line == e.line && l.stored_metadata() == e.stored_metadata()
                }
                None => stream.last.as_ref().is_some_and(|l| {
                    l.ts == e.ts && l.line == e.line && l.metadata == e.stored_metadata()
                }),
            };
            if same_as_last {
                outcome.duplicates += 1;
                outcome.accepted += 1;
                continue;
            }
            if let Some(n) = newest {
                let cutoff = n.saturating_sub(max_behind);
                if e.ts < cutoff {
                    // The per-entry line is "entry with timestamp … ignored, reason: '…'".
                    failures.push(Failure {
                        ts: e.ts,
                        reason: reason_of(&too_far_behind_message(e.ts, cutoff)),
                    });
                    outcome.discarded.push((Discard::TooFarBehind, 1));
                    continue;
                }
            }
            newest = Some(newest.map_or(e.ts, |n| n.max(e.ts)));
            valid_bytes += e.size;
            to_store.push(e);
        }
        if !stream.bucket.allow(valid_bytes, now) {
            let rate = stream.bucket.rate();
            let failures: Vec<Failure> = to_store
                .iter()
                .map(|e| Failure {
                    ts: e.ts,
                    reason: stream_rate_message(rate, &push.text, e.size),
                })
                .collect();
            outcome
                .discarded
                .push((Discard::PerStreamRateLimit, to_store.len() as u64));
            outcome.answer = Some(Answer::new(
                429,
                ingester_error(&failures, total, tenant, &push.text),
            ));
            return outcome;
        }
        if let Some(l) = to_store.last() {
            stream.last = Some(LastLine {
                ts: l.ts,
                line: l.line.clone(),
                metadata: l.stored_metadata(),
            });
        }
        stream.newest = newest;
        for e in to_store {
            outcome.accepted += 1;
            if self.config.count_only {
                continue;
            }
            let entry = Entry {
                line: e.line,
                metadata: e.metadata,
                detected_level: e.detected_level,
            };
            if stream.insert(e.ts, entry) {
                outcome.stored += 1;
            } else {
                outcome.duplicates += 1;
            }
        }
        if !failures.is_empty() {
            outcome.answer = Some(Answer::new(
                400,
                ingester_error(&failures, total, tenant, &push.text),
            ));
        }
        outcome
    }
}

/// The reason part of Loki's "entry with timestamp … ignored, reason: '<reason>'" line.
fn reason_of(line: &str) -> String {
    line.split_once("reason: '")
        .and_then(|(_, rest)| rest.strip_suffix('\''))
        .unwrap_or(line)
        .to_owned()
}

/// Loki's ingester error: the first refused entries, one a line, then the count.
fn ingester_error(failures: &[Failure], total: usize, tenant: &str, stream: &str) -> String {
    let mut text = String::new();
    for f in failures.iter().take(MAX_RETURNED_ERRORS) {
        text.push_str(&format!(
            "entry with timestamp {} ignored, reason: '{}',\n",
            time_string(f.ts),
            f.reason
        ));
    }
    text.push_str(&format!(
        "user '{tenant}', total ignored: {} out of {total} for stream: {stream}",
        failures.len()
    ));
    text
}

#[cfg(test)]
mod tests {
    use schema::loki::proto::{EntryAdapter, StreamAdapter, Timestamp};

    use super::*;

    const NOW: i64 = 1_800_000_000_000_000_000;
    const SEC: i64 = 1_000_000_000;
    const MINUTE: i64 = 60 * SEC;

    fn receiver(config: LokiConfig) -> Receiver {
        Receiver::new(config).unwrap()
    }

    fn push(streams: &[(&str, &[(i64, &str)])]) -> PushRequest {
        PushRequest {
            streams: streams
                .iter()
                .map(|(labels, entries)| StreamAdapter {
                    labels: (*labels).to_owned(),
                    entries: entries
                        .iter()
                        .map(|(ts, line)| EntryAdapter {
                            timestamp: Some(Timestamp::from_nanos(*ts)),
                            line: (*line).to_owned(),
                            structured_metadata: vec![],
                        })
                        .collect(),
                    hash: 0,
                })
                .collect(),
        }
    }

    fn ingest(r: &Receiver, p: PushRequest) -> Result<(), Answer> {
        r.ingest("fake", p, NOW, Instant::now())
    }

    fn lines(r: &Receiver) -> Vec<String> {
        r.entries("fake", None)
            .into_iter()
            .map(|e| e.line)
            .collect()
    }

    #[test]
    fn checks_entries_against_the_newest_accepted_earlier_in_the_same_push() {
        let r = receiver(LokiConfig::default());
        let answer = ingest(
            &r,
            push(&[(r#"{a="1"}"#, &[(NOW, "new"), (NOW - 61 * MINUTE, "old")])]),
        )
        .unwrap_err();
        assert_eq!(answer.status, 400);
        assert!(answer.message.ends_with(
            r#"user 'fake', total ignored: 1 out of 2 for stream: {a="1", service_name="unknown_service"}"#
        ));
        assert_eq!(lines(&r), ["new"]);
        // Old first, then new: both stored.
        ingest(
            &r,
            push(&[(r#"{a="2"}"#, &[(NOW - 61 * MINUTE, "old"), (NOW, "new")])]),
        )
        .unwrap();
        assert_eq!(r.entries("fake", None).len(), 3);
    }

    #[test]
    fn the_last_streams_result_is_the_answer() {
        let r = receiver(LokiConfig::default());
        ingest(&r, push(&[(r#"{s="1"}"#, &[(NOW, "s1")])])).unwrap();
        // Stream 1's entry is too far behind, stream 2 is fine: 204, the entry is lost.
        let masked = push(&[
            (r#"{s="1"}"#, &[(NOW - 61 * MINUTE, "behind")]),
            (r#"{s="2"}"#, &[(NOW, "s2")]),
        ]);
        assert_eq!(ingest(&r, masked), Ok(()));
        assert_eq!(r.metrics.stats().discarded_for(Discard::TooFarBehind), 1);
        assert_eq!(lines(&r), ["s1", "s2"]);
    }

    #[test]
    fn streams_of_one_label_set_are_pushed_one_after_the_other() {
        let r = receiver(LokiConfig::default());
        ingest(
            &r,
            push(&[
                (r#"{a="1"}"#, &[(NOW, "x")]),
                (r#"{ a = "1" }"#, &[(NOW, "x"), (NOW, "y")]),
            ]),
        )
        .unwrap();
        assert_eq!(lines(&r), ["x", "y"]);
        assert_eq!(r.metrics.stats().duplicates, 1);
    }

    #[test]
    fn an_unparsable_stream_refuses_the_whole_push_and_a_bad_label_set_only_its_stream() {
        let r = receiver(LokiConfig::default());
        let answer = ingest(
            &r,
            push(&[
                (r#"{a="1"}"#, &[(NOW, "good")]),
                ("{bad-name=\"x\"}", &[(NOW, "bad")]),
            ]),
        )
        .unwrap_err();
        assert_eq!(answer.status, 400);
        assert!(answer.message.starts_with("couldn't parse labels: 1:5:"));
        assert!(lines(&r).is_empty());
        let answer = ingest(
            &r,
            push(&[
                (r#"{a="1"}"#, &[(NOW, "good")]),
                (r#"{a="1", a="2"}"#, &[(NOW, "bad")]),
            ]),
        )
        .unwrap_err();
        assert!(answer.message.ends_with("has duplicate label name: 'a'"));
        assert_eq!(lines(&r), ["good"]);
    }

    #[test]
    fn a_stream_without_labels_is_refused_when_discovery_is_off() {
        let r = receiver(LokiConfig {
            discover_service_name: false,
            ..LokiConfig::default()
        });
        assert_eq!(
            ingest(&r, push(&[("{}", &[(NOW, "x")])])).unwrap_err(),
            Answer::new(400, "error at least one label pair is required per stream")
        );
    }

    #[test]
    fn streams_without_entries_are_skipped_but_must_parse() {
        let r = receiver(LokiConfig::default());
        assert!(ingest(&r, push(&[(r#"{a="1"}"#, &[])])).is_ok());
        assert_eq!(ingest(&r, push(&[])).unwrap_err().status, 422);
        assert_eq!(
            ingest(&r, push(&[("not labels", &[])])).unwrap_err().status,
            400
        );
    }

    #[test]
    fn the_schema_start_fails_a_new_stream_with_a_500_and_spares_the_others() {
        let r = receiver(LokiConfig {
            limits: Limits {
                reject_old_samples: false,
                ..Limits::default()
            },
            ..LokiConfig::default()
        });
        let answer = ingest(
            &r,
            push(&[(r#"{s="a"}"#, &[(NOW, "a")]), (r#"{s="b"}"#, &[(0, "b")])]),
        )
        .unwrap_err();
        assert_eq!(
            answer,
            Answer::new(
                500,
                "rpc error: code = Unknown desc = failed to create stream: no schema config found for time 0"
            )
        );
        assert_eq!(lines(&r), ["a"]);
        assert_eq!(
            r.metrics.stats().discarded_for(Discard::BeforeSchemaStart),
            1
        );
    }

    #[test]
    fn per_stream_rate_refuses_the_stream_and_keeps_the_tokens() {
        let r = receiver(LokiConfig {
            per_stream_rate_limit_mb: 100.0 / 1_048_576.0,
            per_stream_rate_limit_burst_mb: 100.0 / 1_048_576.0,
            ..LokiConfig::default()
        });
        let line = "x".repeat(60);
        assert!(ingest(&r, push(&[(r#"{a="1"}"#, &[(NOW, &line)])])).is_ok());
        let refused = ingest(&r, push(&[(r#"{a="1"}"#, &[(NOW + 1, &line)])])).unwrap_err();
        assert_eq!(refused.status, 429);
        // Another stream has its own bucket.
        assert!(ingest(&r, push(&[(r#"{a="2"}"#, &[(NOW, &line)])])).is_ok());
        let stats = r.metrics.stats();
        assert_eq!(stats.discarded_for(Discard::PerStreamRateLimit), 1);
        assert_eq!(stats.entries_stored, 2);
    }

    #[test]
    fn count_only_mode_counts_and_stores_nothing() {
        let r = receiver(LokiConfig {
            count_only: true,
            ..LokiConfig::default()
        });
        ingest(&r, push(&[(r#"{a="1"}"#, &[(NOW, "x"), (NOW, "y")])])).unwrap();
        assert!(r.entries("fake", None).is_empty());
        let stats = r.metrics.stats();
        assert_eq!((stats.entries_accepted, stats.entries_stored), (2, 0));
    }

    #[test]
    fn ingester_errors_list_ten_entries_then_the_count() {
        let failures: Vec<Failure> = (0..12)
            .map(|i| Failure {
                ts: NOW + i,
                reason: "r".into(),
            })
            .collect();
        let text = ingester_error(&failures, 12, "fake", "{a=\"1\"}");
        assert_eq!(text.lines().count(), 11);
        assert!(text.ends_with("user 'fake', total ignored: 12 out of 12 for stream: {a=\"1\"}"));
    }
}
