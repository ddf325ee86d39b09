//! Loki's validation limits and the checks it applies to a push (LOKI.md, "Answers", refined by
//! the recorded corpus in `loki-conformance/`), with Loki's discard reasons and its exact error
//! texts. The test receiver enforces them; the consumer runs the same checks before sending
//! (its pre-flight), so Loki rarely has to reject anything.
//!
//! What the recording taught, and these checks follow:
//! - a label text that does not parse fails the whole push; too many labels, an over-long name
//!   or value, or a repeated name reject only that stream ([`parse_stream_labels`]);
//! - limits count bytes, not characters; `service_name` is not counted among the labels;
//! - structured-metadata names are rewritten, not rejected, unless they are empty or normalise
//!   to underscores only, which Loki answers with a permanent 500 ([`Discard::InvalidMetadataName`]);
//! - an entry dated before the schema's start fails its (new) stream with a permanent 500
//!   ([`Discard::BeforeSchemaStart`]);
//! - an entry is checked against the newest entry accepted before it, in earlier pushes or
//!   earlier in the same push, so the order inside a push matters ([`check_stream_entries`]).

use std::fmt;
use std::time::Duration;

use super::go_text::{model_time, model_time_millis, rfc3339_seconds, time_string};
use super::label_text;
use super::metadata::{normalize_metadata_name, structured_metadata_size};
use super::proto::{EntryAdapter, LabelPairAdapter};
use crate::labels::{is_valid_label_name, LabelSet};
use crate::timestamp::Timestamp;

/// The label Loki 3 adds to every stream (LOKI.md, "Answers").
pub const SERVICE_NAME: &str = "service_name";

/// The `service_name` of a stream that has none of the discovery labels.
pub const UNKNOWN_SERVICE: &str = "unknown_service";

/// Loki's default `discover_service_name`: the labels `service_name` is taken from, in order.
pub const DEFAULT_DISCOVER_SERVICE_NAME: [&str; 13] = [
    "service",
    "app",
    "application",
    "app_name",
    "name",
    "app_kubernetes_io_name",
    "container",
    "container_name",
    "k8s_container_name",
    "component",
    "workload",
    "job",
    "k8s_job_name",
];

/// The start of the schema in the Loki the conformance corpus was recorded from (its
/// `loki-config.yaml`: `schema_config.configs[0].from: 2020-10-24`, the date of Loki's own
/// example configurations, and of ours in `deploy/loki/config.yaml`), in nanoseconds. A Loki
/// whose first period starts later must be described with its own (the consumer's
/// `LOKI_SCHEMA_START`).
pub const DEFAULT_SCHEMA_START_NANOS: i64 = 1_603_497_600_000_000_000;

/// Loki's per-tenant limits that a push is checked against. Defaults are Loki's, except
/// `schema_start`, which is the recorded Loki's ([`DEFAULT_SCHEMA_START_NANOS`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// `max_line_size`: longest accepted line in bytes (256 KiB); 0 for no limit.
    pub max_line_size: usize,
    /// `max_label_names_per_series` (15); `service_name` is not counted.
    pub max_label_names_per_series: usize,
    /// `max_label_name_length` in bytes (1024).
    pub max_label_name_length: usize,
    /// `max_label_value_length` in bytes (2048).
    pub max_label_value_length: usize,
    /// `reject_old_samples` (true).
    pub reject_old_samples: bool,
    /// `reject_old_samples_max_age` (7 days).
    pub reject_old_samples_max_age: Duration,
    /// `creation_grace_period`: how far in the future an entry may be (10 minutes).
    pub creation_grace_period: Duration,
    /// `max_chunk_age`; an entry more than half of it behind its stream's newest entry is
    /// rejected (2 hours, so 1 hour behind).
    pub max_chunk_age: Duration,
    /// `max_structured_metadata_size` in bytes, `detected_level` not counted (64 KiB); 0 for no
    /// limit.
    pub max_structured_metadata_size: usize,
    /// `max_structured_metadata_entries_count` (128); 0 for no limit.
    pub max_structured_metadata_entries: usize,
    /// The `from` date of the first `schema_config` period: Loki cannot create a stream for an
    /// entry dated before it and answers 500 `no schema config found` for as long as one asks
    /// (default 2020-10-24T00:00:00Z, [`DEFAULT_SCHEMA_START_NANOS`]).
    pub schema_start: Timestamp,
    /// `discover_service_name`: the labels the `service_name` label is taken from when a stream
    /// has none, in order ([`DEFAULT_DISCOVER_SERVICE_NAME`]); empty turns discovery off.
    pub discover_service_name: Vec<String>,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_line_size: 256 * 1024,
            max_label_names_per_series: 15,
            max_label_name_length: 1024,
            max_label_value_length: 2048,
            reject_old_samples: true,
            reject_old_samples_max_age: Duration::from_secs(7 * 24 * 3600),
            creation_grace_period: Duration::from_secs(600),
            max_chunk_age: Duration::from_secs(2 * 3600),
            max_structured_metadata_size: 64 * 1024,
            max_structured_metadata_entries: 128,
            schema_start: Timestamp::from_nanos(DEFAULT_SCHEMA_START_NANOS)
                .unwrap_or(Timestamp::EPOCH),
            discover_service_name: DEFAULT_DISCOVER_SERVICE_NAME
                .iter()
                .map(|s| (*s).to_owned())
                .collect(),
        }
    }
}

impl Limits {
    /// How far behind its stream's newest entry an entry may be.
    pub fn max_behind(&self) -> Duration {
        self.max_chunk_age / 2
    }
}

/// Why Loki refuses an entry. Loki's own discard reasons (`loki_discarded_samples_total{reason}`),
/// plus three of ours for what Loki refuses without a discard reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Discard {
    /// Tenant ingestion rate exceeded (429).
    RateLimited,
    /// Per-stream rate exceeded (429).
    PerStreamRateLimit,
    /// Too many active streams (429).
    StreamLimit,
    /// Older than `reject_old_samples_max_age` (400).
    GreaterThanMaxSampleAge,
    /// Too far behind the stream's newest entry (400).
    TooFarBehind,
    /// Beyond `creation_grace_period` in the future (400).
    TooFarInFuture,
    /// A label text that does not parse: the whole push is refused (400).
    InvalidLabels,
    /// More labels than allowed: the stream is refused (400).
    MaxLabelNamesPerSeries,
    /// A label name over its limit: the stream is refused (400).
    LabelNameTooLong,
    /// A label value over its limit: the stream is refused (400).
    LabelValueTooLong,
    /// A label name given twice: the stream is refused (400).
    DuplicateLabelNames,
    /// A stream without labels, with `service_name` discovery off: the stream is refused (400).
    MissingLabels,
    /// Line over `max_line_size` (400).
    LineTooLong,
    /// Structured metadata over its byte limit (400).
    StructuredMetadataTooLarge,
    /// Structured metadata with too many entries (400).
    StructuredMetadataTooMany,
    /// Ours: dated before the schema's start. Loki answers 500 `no schema config found` and
    /// refuses the entry's (new) stream, on every retry.
    BeforeSchemaStart,
    /// Ours: a structured-metadata name that is empty or normalises to underscores only. Loki
    /// answers 500 and refuses the whole push, on every retry.
    InvalidMetadataName,
    /// Ours, pre-flight only: a label name outside `[a-zA-Z_][a-zA-Z0-9_]*` (possible in the
    /// quoted form `{"a.b"="c"}`). Loki stores the stream but every query over it then fails
    /// with 500, so the pre-flight refuses it.
    UnqueryableLabelName,
}

impl Discard {
    /// Every reason, for pre-initialising metric series.
    pub const ALL: [Discard; 18] = [
        Discard::RateLimited,
        Discard::PerStreamRateLimit,
        Discard::StreamLimit,
        Discard::GreaterThanMaxSampleAge,
        Discard::TooFarBehind,
        Discard::TooFarInFuture,
        Discard::InvalidLabels,
        Discard::MaxLabelNamesPerSeries,
        Discard::LabelNameTooLong,
        Discard::LabelValueTooLong,
        Discard::DuplicateLabelNames,
        Discard::MissingLabels,
        Discard::LineTooLong,
        Discard::StructuredMetadataTooLarge,
        Discard::StructuredMetadataTooMany,
        Discard::BeforeSchemaStart,
        Discard::InvalidMetadataName,
        Discard::UnqueryableLabelName,
    ];

    /// The reason's name (Loki's where Loki has one).
    pub fn as_str(self) -> &'static str {
        match self {
            Discard::RateLimited => "rate_limited",
            Discard::PerStreamRateLimit => "per_stream_rate_limit",
            Discard::StreamLimit => "stream_limit",
            Discard::GreaterThanMaxSampleAge => "greater_than_max_sample_age",
            Discard::TooFarBehind => "too_far_behind",
            Discard::TooFarInFuture => "too_far_in_future",
            Discard::InvalidLabels => "invalid_labels",
            Discard::MaxLabelNamesPerSeries => "max_label_names_per_series",
            Discard::LabelNameTooLong => "label_name_too_long",
            Discard::LabelValueTooLong => "label_value_too_long",
            Discard::DuplicateLabelNames => "duplicate_label_names",
            Discard::MissingLabels => "missing_labels",
            Discard::LineTooLong => "line_too_long",
            Discard::StructuredMetadataTooLarge => "structured_metadata_too_large",
            Discard::StructuredMetadataTooMany => "structured_metadata_too_many",
            Discard::BeforeSchemaStart => "before_schema_start",
            Discard::InvalidMetadataName => "invalid_metadata_name",
            Discard::UnqueryableLabelName => "unqueryable_label_name",
        }
    }

    /// True for reasons that make Loki refuse the whole push (a label text that does not parse;
    /// an invalid structured-metadata name), false for those that refuse one entry or one
    /// stream and let the rest of the push be stored.
    pub fn rejects_whole_request(self) -> bool {
        matches!(self, Discard::InvalidLabels | Discard::InvalidMetadataName)
    }

    /// True for reasons that refuse a whole stream of a push (its label set).
    pub fn rejects_stream(self) -> bool {
        matches!(
            self,
            Discard::MaxLabelNamesPerSeries
                | Discard::LabelNameTooLong
                | Discard::LabelValueTooLong
                | Discard::DuplicateLabelNames
                | Discard::MissingLabels
                | Discard::UnqueryableLabelName
        )
    }

    /// The HTTP status Loki answers a push refused for this reason with (when it is the answer
    /// the push gets: see the receiver for which error wins). 500 for the permanent failures
    /// Loki does not classify; retrying them never helps.
    pub fn status(self) -> u16 {
        match self {
            Discard::RateLimited | Discard::PerStreamRateLimit | Discard::StreamLimit => 429,
            Discard::BeforeSchemaStart | Discard::InvalidMetadataName => 500,
            _ => 400,
        }
    }

    /// True when retrying the same entries can never succeed (everything but the rate and
    /// stream limits).
    pub fn is_permanent(self) -> bool {
        !matches!(
            self,
            Discard::RateLimited | Discard::PerStreamRateLimit | Discard::StreamLimit
        )
    }
}

impl fmt::Display for Discard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One rejection, with Loki's message text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// The discard reason.
    pub reason: Discard,
    /// Loki's error text for it.
    pub message: String,
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

fn reject(reason: Discard, message: String) -> Rejection {
    Rejection { reason, message }
}

/// A stream's labels after Loki's parsing, `service_name` discovery and validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamLabels {
    /// The label set, with `service_name` when Loki adds it.
    pub labels: LabelSet,
    /// The set as Loki prints it in its messages (`{a="1", service_name="x"}`).
    pub text: String,
}

/// Parses a stream's label text as Loki does (Prometheus' parser, then `service_name`
/// discovery), then validates it as Loki's distributor does. A text that does not parse is a
/// [`Discard::InvalidLabels`] rejection of the whole push (`couldn't parse labels: …`); the other
/// failures ([`Discard::rejects_stream`]) refuse only this stream.
pub fn parse_stream_labels(text: &str, limits: &Limits) -> Result<StreamLabels, Rejection> {
    let mut pairs = label_text::parse(text).map_err(|e| {
        reject(
            Discard::InvalidLabels,
            format!("couldn't parse labels: {e}"),
        )
    })?;
    if !limits.discover_service_name.is_empty() && !pairs.iter().any(|(k, _)| k == SERVICE_NAME) {
        let service = limits
            .discover_service_name
            .iter()
            .find_map(|name| {
                pairs
                    .iter()
                    .find(|(k, _)| k == name)
                    .map(|(_, v)| v.as_str())
                    .filter(|v| !v.is_empty())
            })
            .unwrap_or(UNKNOWN_SERVICE)
            .to_owned();
        pairs.push((SERVICE_NAME.to_owned(), service));
        pairs.sort_by(|a, b| a.0.cmp(&b.0));
    }
    let text = label_text::render(&pairs);
    validate_labels(&pairs, &text, limits)?;
    Ok(StreamLabels {
        labels: LabelSet::from_pairs(pairs),
        text,
    })
}

/// Loki's `ValidateLabels` on parsed pairs (sorted, repeated names kept); `text` is how Loki
/// prints the set.
fn validate_labels(
    pairs: &[(String, String)],
    text: &str,
    limits: &Limits,
) -> Result<(), Rejection> {
    if pairs.is_empty() {
        return Err(reject(
            Discard::MissingLabels,
            "error at least one label pair is required per stream".to_owned(),
        ));
    }
    let mut count = pairs.len();
    if pairs.iter().any(|(k, _)| k == SERVICE_NAME) {
        count -= 1;
    }
    if count > limits.max_label_names_per_series {
        return Err(reject(
            Discard::MaxLabelNamesPerSeries,
            format!(
                "entry for stream '{text}' has {count} label names; limit {}",
                limits.max_label_names_per_series
            ),
        ));
    }
    let mut last = "";
    for (name, value) in pairs {
        if name.len() > limits.max_label_name_length {
            return Err(reject(
                Discard::LabelNameTooLong,
                format!("stream '{text}' has label name too long: '{name}'"),
            ));
        }
        if value.len() > limits.max_label_value_length {
            return Err(reject(
                Discard::LabelValueTooLong,
                format!("stream '{text}' has label value too long: '{value}'"),
            ));
        }
        if name == last {
            return Err(reject(
                Discard::DuplicateLabelNames,
                format!("stream '{text}' has duplicate label name: '{name}'"),
            ));
        }
        last = name;
    }
    Ok(())
}

/// The consumer's pre-flight check of a stream's label text: everything
/// [`parse_stream_labels`] refuses, and in addition names outside `[a-zA-Z_][a-zA-Z0-9_]*`
/// ([`Discard::UnqueryableLabelName`]), which Loki stores but can never query back.
pub fn check_labels(labels: &str, limits: &Limits) -> Result<LabelSet, Rejection> {
    let parsed = parse_stream_labels(labels, limits)?;
    if let Some((name, _)) = parsed
        .labels
        .pairs()
        .iter()
        .find(|(k, _)| !is_valid_label_name(k))
    {
        return Err(reject(
            Discard::UnqueryableLabelName,
            format!(
                "stream '{}' has label name {name:?}, which Loki stores but cannot query back (every query over the stream fails)",
                parsed.text
            ),
        ));
    }
    Ok(parsed.labels)
}

/// Checks one entry as Loki does, in Loki's order: age, future, line size, structured
/// metadata size and count (the distributor), metadata names (the distributor's rewrite, a 500
/// for the whole push), then distance behind the stream's newest entry and the schema's start
/// (the ingester). `labels` is the stream as Loki prints it (for the messages); `now` and
/// `newest_in_stream` are nanoseconds since the epoch, `newest_in_stream` the newest entry Loki
/// already holds for the stream or accepted earlier in the same push (see
/// [`check_stream_entries`]).
///
/// Loki refuses an entry before the schema's start only when it creates the stream; an existing
/// stream refuses it as too far behind in practice. The check refuses it in both cases.
pub fn check_entry(
    labels: &str,
    entry: &EntryAdapter,
    now: i64,
    newest_in_stream: Option<i64>,
    limits: &Limits,
) -> Result<(), Rejection> {
    check_entry_parts(
        labels,
        EntryParts::of(entry),
        (now, newest_in_stream),
        limits,
    )
}

/// What the entry checks look at: an entry's timestamp, line length and structured metadata,
/// for callers that never build an [`EntryAdapter`] (the consumer encodes entries directly).
#[derive(Debug, Clone)]
pub struct EntryParts<M> {
    /// Timestamp, ns since the epoch.
    pub nanos: i64,
    /// Length of the line in bytes.
    pub line_len: usize,
    /// Structured metadata (name, value) pairs.
    pub metadata: M,
    /// The caller has already checked every name in `metadata` with
    /// [`normalize_metadata_name`] (names fixed at start, such as the consumer's configured
    /// fields), so the per-entry name check is skipped; sizes and counts are still checked.
    pub names_checked: bool,
}

impl<'e>
    EntryParts<
        std::iter::Map<
            std::slice::Iter<'e, LabelPairAdapter>,
            fn(&'e LabelPairAdapter) -> (&'e str, &'e str),
        >,
    >
{
    /// The parts of `entry`.
    pub fn of(entry: &'e EntryAdapter) -> Self {
        fn pair(p: &LabelPairAdapter) -> (&str, &str) {
            (p.name.as_str(), p.value.as_str())
        }
        Self {
            nanos: entry.nanos(),
            line_len: entry.line.len(),
            metadata: entry
                .structured_metadata
                .iter()
                .map(pair as fn(&'e LabelPairAdapter) -> (&'e str, &'e str)),
            names_checked: false,
        }
    }
}

/// [`check_entry`] on an entry's parts; `clock` is `(now, newest_in_stream)`.
pub fn check_entry_parts<'m, M>(
    labels: &str,
    entry: EntryParts<M>,
    clock: (i64, Option<i64>),
    limits: &Limits,
) -> Result<(), Rejection>
where
    M: Iterator<Item = (&'m str, &'m str)> + Clone,
{
    let (now, newest_in_stream) = clock;
    let ts = entry.nanos;
    distributor_checks(labels, entry, now, limits)?;
    if let Some(newest) = newest_in_stream {
        let cutoff = newest.saturating_sub(duration_nanos(limits.max_behind()));
        if ts < cutoff {
            return Err(reject(
                Discard::TooFarBehind,
                too_far_behind_message(ts, cutoff),
            ));
        }
    }
    match before_schema_start(ts, limits) {
        Some(rejection) => Err(rejection),
        None => Ok(()),
    }
}

/// The checks Loki's distributor applies to an entry, in its order: age, future, line size,
/// structured metadata size and count, then the metadata names (whose failure, a
/// [`Discard::InvalidMetadataName`], fails the whole push).
pub fn check_entry_in_distributor(
    labels: &str,
    entry: &EntryAdapter,
    now: i64,
    limits: &Limits,
) -> Result<(), Rejection> {
    distributor_checks(labels, EntryParts::of(entry), now, limits)
}

fn distributor_checks<'m, M>(
    labels: &str,
    entry: EntryParts<M>,
    now: i64,
    limits: &Limits,
) -> Result<(), Rejection>
where
    M: Iterator<Item = (&'m str, &'m str)> + Clone,
{
    let ts = entry.nanos;
    let max_age = duration_nanos(limits.reject_old_samples_max_age);
    let oldest = now.saturating_sub(max_age);
    if limits.reject_old_samples && ts < oldest {
        return Err(reject(
            Discard::GreaterThanMaxSampleAge,
            format!(
                "entry for stream '{labels}' has timestamp too old: {}, oldest acceptable timestamp is: {}",
                rfc3339_seconds(ts),
                rfc3339_seconds(oldest)
            ),
        ));
    }
    if ts > now.saturating_add(duration_nanos(limits.creation_grace_period)) {
        return Err(reject(
            Discard::TooFarInFuture,
            format!(
                "entry for stream '{labels}' has timestamp too new: {}",
                rfc3339_seconds(ts)
            ),
        ));
    }
    if limits.max_line_size != 0 && entry.line_len > limits.max_line_size {
        return Err(reject(
            Discard::LineTooLong,
            format!(
                "max entry size '{}' bytes exceeded for stream '{labels}' while adding an entry with length '{}' bytes",
                limits.max_line_size,
                entry.line_len
            ),
        ));
    }
    check_metadata(labels, entry.metadata, entry.names_checked, limits)
}

/// Loki's ingester refusing to create a stream for an entry at `ts` (the oldest of the stream
/// in the push): `failed to create stream: no schema config found for time …` (a 500).
pub fn before_schema_start(ts: i64, limits: &Limits) -> Option<Rejection> {
    let millis = model_time_millis(ts);
    (millis < model_time_millis(limits.schema_start.as_nanos())).then(|| {
        reject(
            Discard::BeforeSchemaStart,
            format!(
                "failed to create stream: no schema config found for time {}",
                model_time(millis)
            ),
        )
    })
}

/// Loki's text for one entry refused as too far behind, as its ingester lists it.
pub fn too_far_behind_message(ts: i64, cutoff: i64) -> String {
    format!(
        "entry with timestamp {} ignored, reason: 'entry too far behind, entry timestamp is: {}, oldest acceptable timestamp is: {}'",
        time_string(ts),
        rfc3339_seconds(ts),
        rfc3339_seconds(cutoff)
    )
}

fn check_metadata<'m>(
    labels: &str,
    metadata: impl Iterator<Item = (&'m str, &'m str)> + Clone,
    names_checked: bool,
    limits: &Limits,
) -> Result<(), Rejection> {
    let count = metadata.clone().count();
    if count == 0 {
        return Ok(());
    }
    let size = structured_metadata_size(metadata.clone());
    if limits.max_structured_metadata_size != 0 && size > limits.max_structured_metadata_size {
        return Err(reject(
            Discard::StructuredMetadataTooLarge,
            format!(
                "stream '{labels}' has structured metadata too large: '{size}' bytes, limit: '{}' bytes. Please see `limits_config.max_structured_metadata_size` or contact your Loki administrator to increase it",
                limits.max_structured_metadata_size
            ),
        ));
    }
    if limits.max_structured_metadata_entries != 0 && count > limits.max_structured_metadata_entries
    {
        return Err(reject(
            Discard::StructuredMetadataTooMany,
            format!(
                "stream '{labels}' has too many structured metadata labels: '{count}', limit: '{}'. Please see `limits_config.max_structured_metadata_entries_count` or contact your Loki administrator to increase it",
                limits.max_structured_metadata_entries
            ),
        ));
    }
    if names_checked {
        return Ok(());
    }
    // Only a name can make Loki's rewrite fail; checking the names allocates nothing.
    for (name, _) in metadata {
        normalize_metadata_name(name)
            .map_err(|e| reject(Discard::InvalidMetadataName, e.to_string()))?;
    }
    Ok(())
}

/// Checks a stream's entries in push order, as Loki does: each against the newest entry
/// accepted before it (`newest_stored`, or earlier in this push), so `[now-61m, now]` passes and
/// `[now, now-61m]` refuses the second. Returns each entry's verdict and the stream's newest
/// accepted timestamp afterwards.
pub fn check_stream_entries(
    labels: &str,
    entries: &[EntryAdapter],
    now: i64,
    newest_stored: Option<i64>,
    limits: &Limits,
) -> (Vec<Result<(), Rejection>>, Option<i64>) {
    let mut newest = newest_stored;
    let verdicts = entries
        .iter()
        .map(|entry| {
            let verdict = check_entry(labels, entry, now, newest, limits);
            if verdict.is_ok() {
                let ts = entry.nanos();
                newest = Some(newest.map_or(ts, |n| n.max(ts)));
            }
            verdict
        })
        .collect();
    (verdicts, newest)
}

/// Loki's 400 text for the errors of a push (its `GroupedErrors`): one error alone is its text;
/// otherwise per distinct text, in order of first occurrence, `"<n> errors like: <text>"`,
/// joined by `"; "` (Loki's order is random: it iterates a Go map).
pub fn aggregate_errors(rejections: &[Rejection]) -> String {
    let messages: Vec<&str> = rejections.iter().map(|r| r.message.as_str()).collect();
    aggregate_messages(&messages)
}

/// [`aggregate_errors`] on plain texts.
pub fn aggregate_messages(messages: &[&str]) -> String {
    let mut groups: Vec<(&str, usize)> = Vec::new();
    for m in messages {
        match groups.iter_mut().find(|g| g.0 == *m) {
            Some(g) => g.1 += 1,
            None => groups.push((m, 1)),
        }
    }
    let prefix = groups.len() > 1;
    groups
        .iter()
        .map(|(m, n)| {
            if prefix || *n > 1 {
                format!("{n} errors like: {m}")
            } else {
                (*m).to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("; ")
}

fn duration_nanos(d: Duration) -> i64 {
    i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loki::proto::{LabelPairAdapter, Timestamp as PbTimestamp};

    const NOW: i64 = 1_800_000_000_000_000_000;
    const L: &str = r#"{service="api", service_name="api"}"#;
    const HOUR: i64 = 3_600_000_000_000;

    fn entry(ts: i64, line: &str) -> EntryAdapter {
        EntryAdapter {
            timestamp: Some(PbTimestamp::from_nanos(ts)),
            line: line.into(),
            structured_metadata: vec![],
        }
    }

    fn meta(mut e: EntryAdapter, pairs: &[(&str, &str)]) -> EntryAdapter {
        e.structured_metadata = pairs
            .iter()
            .map(|(name, value)| LabelPairAdapter {
                name: (*name).into(),
                value: (*value).into(),
            })
            .collect();
        e
    }

    fn reason_with(e: &EntryAdapter, newest: Option<i64>, limits: &Limits) -> Option<Discard> {
        check_entry(L, e, NOW, newest, limits)
            .err()
            .map(|r| r.reason)
    }

    fn reason(e: &EntryAdapter, newest: Option<i64>) -> Option<Discard> {
        reason_with(e, newest, &Limits::default())
    }

    #[test]
    fn accepts_a_normal_entry() {
        assert_eq!(reason(&entry(NOW, "x"), Some(NOW)), None);
    }

    #[test]
    fn rejects_entries_older_than_seven_days() {
        let r = check_entry(
            L,
            &entry(NOW - 7 * 24 * HOUR - 1, "x"),
            NOW,
            None,
            &Limits::default(),
        )
        .unwrap_err();
        assert_eq!(r.reason, Discard::GreaterThanMaxSampleAge);
        assert!(r.message.contains("has timestamp too old: 2027-01-08T07:59:59Z, oldest acceptable timestamp is: 2027-01-08T08:00:00Z"), "{}", r.message);
        assert_eq!(reason(&entry(NOW - 7 * 24 * HOUR + 1, "x"), None), None);
    }

    #[test]
    fn old_entries_after_the_schema_start_pass_when_reject_old_samples_is_off() {
        let limits = Limits {
            reject_old_samples: false,
            ..Limits::default()
        };
        assert_eq!(
            reason_with(&entry(DEFAULT_SCHEMA_START_NANOS, "x"), None, &limits),
            None
        );
    }

    #[test]
    fn rejects_entries_before_the_schema_start_with_lokis_500_text() {
        let limits = Limits {
            reject_old_samples: false,
            ..Limits::default()
        };
        for (ts, time) in [
            (0, "0"),
            (-1, "0"),
            (-5_000_000_000, "-5"),
            (DEFAULT_SCHEMA_START_NANOS - 1, "1603497599.999"),
            (1_567_296_000_000_000_000, "1567296000"),
        ] {
            let r = check_entry(L, &entry(ts, "x"), NOW, None, &limits).unwrap_err();
            assert_eq!(r.reason, Discard::BeforeSchemaStart);
            assert_eq!(
                r.message,
                format!("failed to create stream: no schema config found for time {time}")
            );
            assert_eq!(r.reason.status(), 500);
        }
        let custom = Limits {
            schema_start: Timestamp::EPOCH,
            ..limits
        };
        assert_eq!(reason_with(&entry(-1, "x"), None, &custom), None);
        assert_eq!(
            reason_with(&entry(-1_000_001, "x"), None, &custom),
            Some(Discard::BeforeSchemaStart)
        );
    }

    #[test]
    fn rejects_entries_beyond_the_grace_period() {
        let e = entry(NOW + HOUR / 6 + 1, "x");
        let r = check_entry(L, &e, NOW, None, &Limits::default()).unwrap_err();
        assert_eq!(r.reason, Discard::TooFarInFuture);
        assert_eq!(
            r.message,
            format!("entry for stream '{L}' has timestamp too new: 2027-01-15T08:10:00Z")
        );
    }

    #[test]
    fn rejects_lines_over_256_kib_counting_bytes() {
        let long = "x".repeat(256 * 1024 + 1);
        let r = check_entry(L, &entry(NOW, &long), NOW, None, &Limits::default()).unwrap_err();
        assert_eq!(r.reason, Discard::LineTooLong);
        assert!(r
            .message
            .starts_with("max entry size '262144' bytes exceeded"));
        assert_eq!(reason(&entry(NOW, &"x".repeat(256 * 1024)), None), None);
        assert_eq!(
            reason(&entry(NOW, &"€".repeat(87_382)), None),
            Some(Discard::LineTooLong)
        );
        assert_eq!(reason(&entry(NOW, &"é".repeat(131_072)), None), None);
    }

    #[test]
    fn rejects_entries_over_an_hour_behind_the_stream_with_lokis_text() {
        let r = check_entry(
            L,
            &entry(NOW - HOUR - 1, "x"),
            NOW,
            Some(NOW),
            &Limits::default(),
        )
        .unwrap_err();
        assert_eq!(r.reason, Discard::TooFarBehind);
        assert_eq!(r.message, "entry with timestamp 2027-01-15 06:59:59.999999999 +0000 UTC ignored, reason: 'entry too far behind, entry timestamp is: 2027-01-15T06:59:59Z, oldest acceptable timestamp is: 2027-01-15T07:00:00Z'");
        assert_eq!(reason(&entry(NOW - HOUR + 1, "x"), Some(NOW)), None);
    }

    #[test]
    fn order_inside_a_push_matters() {
        let limits = Limits::default();
        let old = entry(NOW - 61 * 60_000_000_000, "61m ago");
        let new = entry(NOW, "now");
        let (v, newest) = check_stream_entries(L, &[old.clone(), new.clone()], NOW, None, &limits);
        assert!(v.iter().all(Result::is_ok));
        assert_eq!(newest, Some(NOW));
        let (v, _) = check_stream_entries(L, &[new, old], NOW, None, &limits);
        assert!(v[0].is_ok());
        assert_eq!(v[1].as_ref().unwrap_err().reason, Discard::TooFarBehind);
    }

    #[test]
    fn rejects_too_much_structured_metadata_leaving_out_detected_level() {
        let names: Vec<String> = (0..129).map(|i| format!("k{i}")).collect();
        let pairs: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), "v")).collect();
        let e = meta(entry(NOW, "x"), &pairs);
        assert_eq!(reason(&e, None), Some(Discard::StructuredMetadataTooMany));
        let big = "v".repeat(65_535);
        let e = meta(entry(NOW, "x"), &[("k", &big), ("detected_level", "info")]);
        assert_eq!(reason(&e, None), None);
        let big = "v".repeat(65_536);
        let e = meta(entry(NOW, "x"), &[("k", &big)]);
        let r = check_entry(L, &e, NOW, None, &Limits::default()).unwrap_err();
        assert_eq!(r.reason, Discard::StructuredMetadataTooLarge);
        assert!(r.message.contains("'65537' bytes, limit: '65536' bytes"));
    }

    #[test]
    fn rejects_metadata_names_loki_cannot_normalise() {
        let e = meta(entry(NOW, "x"), &[("", "v")]);
        let r = check_entry(L, &e, NOW, None, &Limits::default()).unwrap_err();
        assert_eq!(r.reason, Discard::InvalidMetadataName);
        assert_eq!(r.message, "label name is empty");
        assert!(r.reason.rejects_whole_request());
        let e = meta(entry(NOW, "x"), &[("é", "v")]);
        assert_eq!(reason(&e, None), Some(Discard::InvalidMetadataName));
        let e = meta(entry(NOW, "x"), &[("trace.id", "v"), ("1abc", "w")]);
        assert_eq!(reason(&e, None), None);
    }

    /// A caller whose names were checked once (the consumer's configured fields) skips the name
    /// check per entry; sizes and counts are still checked.
    #[test]
    fn names_checked_by_the_caller_skip_only_the_name_check() {
        let e = meta(entry(NOW, "x"), &[("é", "v")]);
        let parts = |names_checked| EntryParts {
            names_checked,
            ..EntryParts::of(&e)
        };
        let check = |parts| check_entry_parts(L, parts, (NOW, None), &Limits::default());
        assert_eq!(
            check(parts(false)).unwrap_err().reason,
            Discard::InvalidMetadataName
        );
        assert!(check(parts(true)).is_ok());
        let big = "v".repeat(65_536);
        let e = meta(entry(NOW, "x"), &[("k", &big)]);
        let parts = EntryParts {
            names_checked: true,
            ..EntryParts::of(&e)
        };
        assert_eq!(
            check_entry_parts(L, parts, (NOW, None), &Limits::default())
                .unwrap_err()
                .reason,
            Discard::StructuredMetadataTooLarge
        );
    }

    #[test]
    fn an_unparsable_label_text_rejects_the_whole_push() {
        let d = Limits::default();
        let r = check_labels(r#"{1a="x"}"#, &d).unwrap_err();
        assert_eq!(r.reason, Discard::InvalidLabels);
        assert_eq!(
            r.message,
            "couldn't parse labels: 1:2: parse error: unexpected character inside braces: '1'"
        );
        assert!(r.reason.rejects_whole_request());
        assert_eq!(
            check_labels("service=api", &d).unwrap_err().reason,
            Discard::InvalidLabels
        );
    }

    #[test]
    fn bad_label_sets_reject_their_stream_with_lokis_texts() {
        let d = Limits::default();
        let many: Vec<String> = (0..16).map(|i| format!("l{i:02}=\"v\"")).collect();
        let r = check_labels(&format!("{{{}}}", many.join(",")), &d).unwrap_err();
        assert_eq!(r.reason, Discard::MaxLabelNamesPerSeries);
        assert!(
            r.message.ends_with(
                r#"l15="v", service_name="unknown_service"}' has 16 label names; limit 15"#
            ),
            "{}",
            r.message
        );
        assert!(r.reason.rejects_stream() && !r.reason.rejects_whole_request());
        let long_name = format!("{{{}=\"v\"}}", "n".repeat(1025));
        assert_eq!(
            check_labels(&long_name, &d).unwrap_err().reason,
            Discard::LabelNameTooLong
        );
        let long_value = format!("{{n=\"{}\"}}", "€".repeat(683));
        assert_eq!(
            check_labels(&long_value, &d).unwrap_err().reason,
            Discard::LabelValueTooLong
        );
        let r = check_labels(r#"{s="bad", a="1", a="2"}"#, &d).unwrap_err();
        assert_eq!(r.reason, Discard::DuplicateLabelNames);
        assert_eq!(
            r.message,
            r#"stream '{a="1", a="2", s="bad", service_name="unknown_service"}' has duplicate label name: 'a'"#
        );
    }

    #[test]
    fn service_name_is_discovered_and_not_counted() {
        let d = Limits::default();
        let fifteen: Vec<String> = (0..15).map(|i| format!("l{i:02}=\"v\"")).collect();
        let with = format!("{{{}, service_name=\"svc\"}}", fifteen.join(", "));
        assert_eq!(check_labels(&with, &d).unwrap().len(), 16);
        let set = check_labels(r#"{job="j", app="a"}"#, &d).unwrap();
        assert_eq!(set.get(SERVICE_NAME), Some("a"));
        assert_eq!(
            check_labels("{}", &d).unwrap().get(SERVICE_NAME),
            Some(UNKNOWN_SERVICE)
        );
        let off = Limits {
            discover_service_name: Vec::new(),
            ..Limits::default()
        };
        assert_eq!(
            check_labels("{}", &off).unwrap_err().reason,
            Discard::MissingLabels
        );
    }

    #[test]
    fn quoted_names_are_refused_by_the_pre_flight_only() {
        let d = Limits::default();
        assert!(parse_stream_labels(r#"{"a.b"="c"}"#, &d).is_ok());
        assert_eq!(
            check_labels(r#"{"a.b"="c"}"#, &d).unwrap_err().reason,
            Discard::UnqueryableLabelName
        );
        assert!(check_labels(r#"metricname{__a="c"}"#, &d).is_ok());
    }

    #[test]
    fn aggregates_errors_like_loki() {
        let r = |reason, m: &str| Rejection {
            reason,
            message: m.into(),
        };
        assert_eq!(aggregate_errors(&[r(Discard::LineTooLong, "a")]), "a");
        assert_eq!(
            aggregate_errors(&[r(Discard::LineTooLong, "a"), r(Discard::LineTooLong, "a")]),
            "2 errors like: a"
        );
        let text = aggregate_errors(&[
            r(Discard::LineTooLong, "a"),
            r(Discard::TooFarInFuture, "b"),
            r(Discard::LineTooLong, "a"),
        ]);
        assert_eq!(text, "2 errors like: a; 1 errors like: b");
    }
}
