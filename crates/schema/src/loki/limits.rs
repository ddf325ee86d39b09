//! Loki's validation limits and the checks it applies to a push (LOKI.md, "Answers"), with
//! Loki's own discard reasons and error texts. The test receiver enforces them; the consumer
//! runs the same checks before sending, so Loki rarely has to reject anything.

use std::fmt;
use std::time::Duration;

use super::proto::EntryAdapter;
use crate::labels::{is_valid_label_name, LabelSet};

/// Loki's per-tenant limits that a push is checked against. Defaults are Loki's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// `max_line_size`: longest accepted line in bytes (256 KiB).
    pub max_line_size: usize,
    /// `max_label_names_per_series` (15).
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
    /// `max_structured_metadata_size` in bytes (64 KiB).
    pub max_structured_metadata_size: usize,
    /// `max_structured_metadata_entries_count` (128).
    pub max_structured_metadata_entries: usize,
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
        }
    }
}

impl Limits {
    /// How far behind its stream's newest entry an entry may be.
    pub fn max_behind(&self) -> Duration {
        self.max_chunk_age / 2
    }
}

/// Loki's discard reasons (`loki_discarded_samples_total{reason}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Discard {
    /// Tenant ingestion rate exceeded (429).
    RateLimited,
    /// Per-stream rate exceeded (429).
    PerStreamRateLimit,
    /// Too many active streams (429).
    StreamLimit,
    /// Older than `reject_old_samples_max_age`.
    GreaterThanMaxSampleAge,
    /// Too far behind the stream's newest entry.
    TooFarBehind,
    /// Beyond `creation_grace_period` in the future.
    TooFarInFuture,
    /// Label string does not parse or has an invalid name.
    InvalidLabels,
    /// More labels than allowed.
    MaxLabelNamesPerSeries,
    /// A label name over its limit.
    LabelNameTooLong,
    /// A label value over its limit.
    LabelValueTooLong,
    /// Line over `max_line_size`.
    LineTooLong,
    /// Structured metadata over its byte limit.
    StructuredMetadataTooLarge,
    /// Structured metadata with too many entries.
    StructuredMetadataTooMany,
}

impl Discard {
    /// Every reason, for pre-initialising metric series.
    pub const ALL: [Discard; 13] = [
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
        Discard::LineTooLong,
        Discard::StructuredMetadataTooLarge,
        Discard::StructuredMetadataTooMany,
    ];

    /// Loki's name for the reason.
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
            Discard::LineTooLong => "line_too_long",
            Discard::StructuredMetadataTooLarge => "structured_metadata_too_large",
            Discard::StructuredMetadataTooMany => "structured_metadata_too_many",
        }
    }

    /// True for reasons that reject the whole request (bad label sets), false for those that
    /// reject one entry and let the rest of the request be stored.
    pub fn rejects_whole_request(self) -> bool {
        matches!(
            self,
            Discard::InvalidLabels
                | Discard::MaxLabelNamesPerSeries
                | Discard::LabelNameTooLong
                | Discard::LabelValueTooLong
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

/// Parses and checks a stream's label string as Loki's distributor does. Any failure rejects
/// the whole request.
pub fn check_labels(labels: &str, limits: &Limits) -> Result<LabelSet, Rejection> {
    let set = LabelSet::parse(labels).map_err(|e| {
        reject(
            Discard::InvalidLabels,
            format!("error parsing labels '{labels}' with error: {e}"),
        )
    })?;
    if set.len() > limits.max_label_names_per_series {
        return Err(reject(
            Discard::MaxLabelNamesPerSeries,
            format!(
                "entry for stream '{labels}' has {} label names; limit {}",
                set.len(),
                limits.max_label_names_per_series
            ),
        ));
    }
    for (name, value) in set.pairs() {
        if !is_valid_label_name(name) {
            return Err(reject(
                Discard::InvalidLabels,
                format!("error parsing labels '{labels}' with error: invalid label name {name:?}"),
            ));
        }
        if name.len() > limits.max_label_name_length {
            return Err(reject(
                Discard::LabelNameTooLong,
                format!("stream '{labels}' has label name too long: '{name}'"),
            ));
        }
        if value.len() > limits.max_label_value_length {
            return Err(reject(
                Discard::LabelValueTooLong,
                format!("stream '{labels}' has label value too long: '{value}'"),
            ));
        }
    }
    Ok(set)
}

/// Checks one entry as Loki does. `now` and `newest_in_stream` are nanoseconds since the epoch;
/// `newest_in_stream` is the newest entry Loki already holds (or has accepted earlier in the
/// same push) for this stream.
pub fn check_entry(
    labels: &str,
    entry: &EntryAdapter,
    now: i64,
    newest_in_stream: Option<i64>,
    limits: &Limits,
) -> Result<(), Rejection> {
    check_entry_parts(
        labels,
        entry.nanos(),
        entry.line.len(),
        entry
            .structured_metadata
            .iter()
            .map(|p| (p.name.as_str(), p.value.as_str())),
        (now, newest_in_stream),
        limits,
    )
}

/// [`check_entry`] on an entry's parts (timestamp in ns, line length in bytes, structured
/// metadata pairs), for callers that never build an [`EntryAdapter`]. `clock` is
/// `(now, newest_in_stream)` as in [`check_entry`].
pub fn check_entry_parts<'m, M>(
    labels: &str,
    ts: i64,
    line_len: usize,
    metadata: M,
    clock: (i64, Option<i64>),
    limits: &Limits,
) -> Result<(), Rejection>
where
    M: Iterator<Item = (&'m str, &'m str)> + Clone,
{
    let (now, newest_in_stream) = clock;
    let max_age = duration_nanos(limits.reject_old_samples_max_age);
    if limits.reject_old_samples && ts < now.saturating_sub(max_age) {
        return Err(reject(
            Discard::GreaterThanMaxSampleAge,
            format!(
                "entry for stream '{labels}' has timestamp too old: {}, oldest acceptable timestamp is: {}",
                rfc3339(ts),
                rfc3339(now.saturating_sub(max_age))
            ),
        ));
    }
    if ts > now.saturating_add(duration_nanos(limits.creation_grace_period)) {
        return Err(reject(
            Discard::TooFarInFuture,
            format!(
                "entry for stream '{labels}' has timestamp too new: {}",
                rfc3339(ts)
            ),
        ));
    }
    if line_len > limits.max_line_size {
        return Err(reject(
            Discard::LineTooLong,
            format!(
                "max entry size '{}' bytes exceeded for stream '{labels}' while adding an entry with length '{}' bytes",
                limits.max_line_size,
                line_len
            ),
        ));
    }
    check_metadata(labels, metadata, limits)?;
    if let Some(newest) = newest_in_stream {
        let cutoff = newest.saturating_sub(duration_nanos(limits.max_behind()));
        if ts < cutoff {
            return Err(reject(
                Discard::TooFarBehind,
                format!(
                    "entry with timestamp {} ignored, reason: 'entry too far behind, entry timestamp is: {}, oldest acceptable timestamp is: {}' for stream: {labels}",
                    rfc3339(ts),
                    rfc3339(ts),
                    rfc3339(cutoff)
                ),
            ));
        }
    }
    Ok(())
}

fn check_metadata<'m>(
    labels: &str,
    metadata: impl Iterator<Item = (&'m str, &'m str)> + Clone,
    limits: &Limits,
) -> Result<(), Rejection> {
    let count = metadata.clone().count();
    if count > limits.max_structured_metadata_entries {
        return Err(reject(
            Discard::StructuredMetadataTooMany,
            format!(
                "stream '{labels}' has too many structured metadata labels: '{count}', limit: '{}'",
                limits.max_structured_metadata_entries
            ),
        ));
    }
    let size: usize = metadata.map(|(n, v)| n.len() + v.len()).sum();
    if size > limits.max_structured_metadata_size {
        return Err(reject(
            Discard::StructuredMetadataTooLarge,
            format!(
                "stream '{labels}' has structured metadata too large: '{size}' bytes, limit: '{}' bytes",
                limits.max_structured_metadata_size
            ),
        ));
    }
    Ok(())
}

/// Loki's aggregated 400 text: per reason, in order of first occurrence,
/// `"<n> errors like: <first message>"`, joined by `"; "`.
pub fn aggregate_errors(rejections: &[Rejection]) -> String {
    let mut groups: Vec<(Discard, usize, &str)> = Vec::new();
    for r in rejections {
        match groups.iter_mut().find(|g| g.0 == r.reason) {
            Some(g) => g.1 += 1,
            None => groups.push((r.reason, 1, &r.message)),
        }
    }
    groups
        .iter()
        .map(|(_, n, m)| format!("{n} errors like: {m}"))
        .collect::<Vec<_>>()
        .join("; ")
}

fn duration_nanos(d: Duration) -> i64 {
    i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)
}

fn rfc3339(nanos: i64) -> String {
    crate::timestamp::Timestamp::from_nanos(nanos.max(0))
        .map(|t| t.to_rfc3339())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loki::proto::{LabelPairAdapter, Timestamp};

    const NOW: i64 = 1_800_000_000_000_000_000;
    const L: &str = r#"{service="api"}"#;

    fn entry(ts: i64, line: &str) -> EntryAdapter {
        EntryAdapter {
            timestamp: Some(Timestamp::from_nanos(ts)),
            line: line.into(),
            structured_metadata: vec![],
        }
    }

    fn reason(e: &EntryAdapter, newest: Option<i64>) -> Option<Discard> {
        check_entry(L, e, NOW, newest, &Limits::default())
            .err()
            .map(|r| r.reason)
    }

    const HOUR: i64 = 3_600_000_000_000;

    #[test]
    fn accepts_a_normal_entry() {
        assert_eq!(reason(&entry(NOW, "x"), Some(NOW)), None);
    }

    #[test]
    fn rejects_entries_older_than_seven_days() {
        assert_eq!(
            reason(&entry(NOW - 7 * 24 * HOUR - 1, "x"), None),
            Some(Discard::GreaterThanMaxSampleAge)
        );
        assert_eq!(reason(&entry(NOW - 7 * 24 * HOUR + 1, "x"), None), None);
    }

    #[test]
    fn old_entries_pass_when_reject_old_samples_is_off() {
        let limits = Limits {
            reject_old_samples: false,
            ..Limits::default()
        };
        assert!(check_entry(L, &entry(1, "x"), NOW, None, &limits).is_ok());
    }

    #[test]
    fn rejects_entries_beyond_the_grace_period() {
        let e = entry(NOW + HOUR / 6 + 1, "x");
        let r = check_entry(L, &e, NOW, None, &Limits::default()).unwrap_err();
        assert_eq!(r.reason, Discard::TooFarInFuture);
        assert!(r.message.contains("has timestamp too new"));
    }

    #[test]
    fn rejects_lines_over_256_kib() {
        let long = "x".repeat(256 * 1024 + 1);
        let r = check_entry(L, &entry(NOW, &long), NOW, None, &Limits::default()).unwrap_err();
        assert_eq!(r.reason, Discard::LineTooLong);
        assert!(r
            .message
            .starts_with("max entry size '262144' bytes exceeded"));
        assert_eq!(reason(&entry(NOW, &"x".repeat(256 * 1024)), None), None);
    }

    #[test]
    fn rejects_entries_over_an_hour_behind_the_stream() {
        assert_eq!(
            reason(&entry(NOW - HOUR - 1, "x"), Some(NOW)),
            Some(Discard::TooFarBehind)
        );
        assert_eq!(reason(&entry(NOW - HOUR + 1, "x"), Some(NOW)), None);
    }

    #[test]
    fn rejects_too_much_structured_metadata() {
        let mut e = entry(NOW, "x");
        e.structured_metadata = (0..129)
            .map(|i| LabelPairAdapter {
                name: format!("k{i}"),
                value: "v".into(),
            })
            .collect();
        assert_eq!(reason(&e, None), Some(Discard::StructuredMetadataTooMany));
        e.structured_metadata = vec![LabelPairAdapter {
            name: "k".into(),
            value: "v".repeat(64 * 1024),
        }];
        assert_eq!(reason(&e, None), Some(Discard::StructuredMetadataTooLarge));
    }

    #[test]
    fn rejects_bad_label_sets() {
        let d = Limits::default();
        assert_eq!(
            check_labels("{1a=\"x\"}", &d).unwrap_err().reason,
            Discard::InvalidLabels
        );
        assert_eq!(
            check_labels("service=api", &d).unwrap_err().reason,
            Discard::InvalidLabels
        );
        let many: Vec<String> = (0..16).map(|i| format!("l{i}=\"v\"")).collect();
        assert_eq!(
            check_labels(&format!("{{{}}}", many.join(",")), &d)
                .unwrap_err()
                .reason,
            Discard::MaxLabelNamesPerSeries
        );
        let long_name = format!("{{{}=\"v\"}}", "n".repeat(1025));
        assert_eq!(
            check_labels(&long_name, &d).unwrap_err().reason,
            Discard::LabelNameTooLong
        );
        let long_value = format!("{{n=\"{}\"}}", "v".repeat(2049));
        assert_eq!(
            check_labels(&long_value, &d).unwrap_err().reason,
            Discard::LabelValueTooLong
        );
        assert!(check_labels("{}", &d).unwrap().is_empty());
    }

    #[test]
    fn aggregates_errors_like_loki() {
        let r = |reason, m: &str| Rejection {
            reason,
            message: m.into(),
        };
        let text = aggregate_errors(&[
            r(Discard::LineTooLong, "a"),
            r(Discard::TooFarInFuture, "b"),
            r(Discard::LineTooLong, "c"),
        ]);
        assert_eq!(text, "2 errors like: a; 1 errors like: b");
    }
}
