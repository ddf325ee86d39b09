//! A dead letter as the redrive reads it (the headers `crate::dlq` writes), and the choice of
//! what to do with it: move it back to the main topic, or leave it where it is, and why.

use rdkafka::message::{Headers, Message};
use schema::kafka::{
    WireError, DLQ_HEADER_ERROR, DLQ_HEADER_REASON, DLQ_HEADER_SOURCE_OFFSET,
    DLQ_HEADER_SOURCE_PARTITION, DLQ_HEADER_SOURCE_TOPIC,
};
use serde::Serialize;

/// The reason shown for a letter without a `dlq-reason` header.
pub(crate) const UNKNOWN_REASON: &str = "unknown";

/// One message of the dead-letter topic, borrowed from the client's buffer.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Letter<'m> {
    /// Its partition in the dead-letter topic.
    pub(crate) partition: i32,
    /// Its offset there.
    pub(crate) offset: i64,
    /// When it was dead-lettered (the message's timestamp), in ns since the epoch.
    pub(crate) written_ns: Option<i64>,
    /// `dlq-reason` ([`UNKNOWN_REASON`] when absent).
    pub(crate) reason: &'m str,
    /// `dlq-error`.
    pub(crate) error: &'m str,
    /// `dlq-source-topic`.
    pub(crate) source_topic: Option<&'m str>,
    /// `dlq-source-partition`.
    pub(crate) source_partition: Option<i32>,
    /// `dlq-source-offset`.
    pub(crate) source_offset: Option<i64>,
    /// The message key.
    pub(crate) key: Option<&'m [u8]>,
    /// The value: the record's line, or the original bytes of a poison message.
    pub(crate) value: &'m [u8],
}

impl<'m> Letter<'m> {
    /// Reads a message of the dead-letter topic.
    pub(crate) fn of<M: Message>(m: &'m M) -> Self {
        let mut letter = Letter {
            partition: m.partition(),
            offset: m.offset(),
            written_ns: m
                .timestamp()
                .to_millis()
                .map(|ms| ms.saturating_mul(1_000_000)),
            reason: UNKNOWN_REASON,
            error: "",
            source_topic: None,
            source_partition: None,
            source_offset: None,
            key: m.key(),
            value: m.payload().unwrap_or_default(),
        };
        if let Some(headers) = m.headers() {
            for h in headers.iter() {
                let Some(text) = h.value.and_then(|v| std::str::from_utf8(v).ok()) else {
                    continue;
                };
                match h.key {
                    DLQ_HEADER_REASON if !text.is_empty() => letter.reason = text,
                    DLQ_HEADER_ERROR => letter.error = text,
                    DLQ_HEADER_SOURCE_TOPIC => letter.source_topic = Some(text),
                    DLQ_HEADER_SOURCE_PARTITION => letter.source_partition = text.parse().ok(),
                    DLQ_HEADER_SOURCE_OFFSET => letter.source_offset = text.parse().ok(),
                    _ => {}
                }
            }
        }
        letter
    }

    /// The record in the value, when it is one (`None` for a poison message).
    pub(crate) fn record(&self) -> Option<schema::LogRecord<'m>> {
        schema::kafka::decode(Some(self.value), []).ok()
    }
}

/// True for the reasons of messages that are not valid records (`invalid_json`,
/// `unsupported_schema_version`, …): re-publishing them only brings them back, unless the
/// consumer changed meanwhile.
pub(crate) fn is_poison_reason(reason: &str) -> bool {
    WireError::all_reasons().any(|r| r == reason)
}

/// Why a letter stays in the dead-letter topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Leave {
    /// The filters (reason, time, source partition) do not select it.
    NotSelected,
    /// Not a valid record, and its reason was not named with `--reason`.
    Poison,
    /// It came from another topic than the one the redrive publishes to.
    OtherTopic,
    /// An interrupted run already published it (found in the main topic).
    MovedBefore,
    /// It is a record this run re-published that failed again (`--follow`).
    FailedAgain,
}

impl Leave {
    /// Every value, in report order.
    pub(crate) const ALL: [Leave; 5] = [
        Leave::NotSelected,
        Leave::Poison,
        Leave::OtherTopic,
        Leave::MovedBefore,
        Leave::FailedAgain,
    ];

    /// The column name in reports.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Leave::NotSelected => "not selected",
            Leave::Poison => "poison",
            Leave::OtherTopic => "other topic",
            Leave::MovedBefore => "moved before",
            Leave::FailedAgain => "failed again",
        }
    }
}

/// What to do with a letter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Publish it to the main topic with this key (the record's service, as the producer
    /// keys it; a poison message keeps its own key).
    Move {
        /// The message key.
        key: Option<Vec<u8>>,
        /// The record's timestamp (ns), when the value is a record.
        record_ns: Option<i64>,
    },
    /// Leave it.
    Leave(Leave, Option<i64>),
}

/// Which letters move. Empty filters select everything (poison aside).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Selection {
    /// `--reason`: only these reasons; a poison reason named here moves too.
    pub(crate) reasons: Vec<String>,
    /// `--since`/`--until` on when the letter was written (ns; start inclusive, end
    /// exclusive).
    pub(crate) written: (Option<i64>, Option<i64>),
    /// `--record-since`/`--record-until` on the record's own timestamp (ns).
    pub(crate) record_time: (Option<i64>, Option<i64>),
    /// `--source-partition`: only letters from these partitions of the main topic.
    pub(crate) source_partitions: Vec<i32>,
}

fn within((since, until): (Option<i64>, Option<i64>), t: Option<i64>) -> bool {
    if since.is_none() && until.is_none() {
        return true;
    }
    t.is_some_and(|t| since.is_none_or(|s| t >= s) && until.is_none_or(|u| t < u))
}

impl Selection {
    /// What to do with `letter` when the redrive publishes to `main_topic`.
    pub(crate) fn judge(&self, letter: &Letter<'_>, main_topic: &str) -> Verdict {
        let record = letter.record();
        let record_ns = record.as_ref().map(|r| r.timestamp.as_nanos());
        if letter.source_topic != Some(main_topic) {
            return Verdict::Leave(Leave::OtherTopic, record_ns);
        }
        let named = self.reasons.iter().any(|r| r == letter.reason);
        let selected = (self.reasons.is_empty() || named)
            && within(self.written, letter.written_ns)
            && within(self.record_time, record_ns)
            && (self.source_partitions.is_empty()
                || letter
                    .source_partition
                    .is_some_and(|p| self.source_partitions.contains(&p)));
        if !selected {
            return Verdict::Leave(Leave::NotSelected, record_ns);
        }
        let poison = record.is_none() || is_poison_reason(letter.reason);
        if poison && !named {
            return Verdict::Leave(Leave::Poison, record_ns);
        }
        let key = match &record {
            Some(r) => Some(schema::kafka::key(r).to_vec()),
            None => letter.key.map(<[u8]>::to_vec),
        };
        Verdict::Move { key, record_ns }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LINE: &str = r#"{"timestamp":"2026-12-01T10:00:00.000000000Z","level":"info","service":"api","message":"m"}"#;

    fn letter<'a>(reason: &'a str, value: &'a str) -> Letter<'a> {
        Letter {
            partition: 0,
            offset: 7,
            written_ns: Some(2_000),
            reason,
            error: "e",
            source_topic: Some("logs"),
            source_partition: Some(1),
            source_offset: Some(40),
            key: None,
            value: value.as_bytes(),
        }
    }

    fn record_ns() -> Option<i64> {
        Some(
            schema::Timestamp::parse_rfc3339("2026-12-01T10:00:00Z")
                .unwrap()
                .as_nanos(),
        )
    }

    #[test]
    fn a_rejected_record_moves_keyed_by_its_service_when_nothing_narrows_the_selection() {
        let v = Selection::default().judge(&letter("greater_than_max_sample_age", LINE), "logs");
        assert_eq!(
            v,
            Verdict::Move {
                key: Some(b"api".to_vec()),
                record_ns: record_ns()
            }
        );
    }

    #[test]
    fn poison_stays_unless_its_reason_is_named() {
        let all = Selection::default();
        assert_eq!(
            all.judge(&letter("invalid_json", "not json"), "logs"),
            Verdict::Leave(Leave::Poison, None)
        );
        // A valid record under a poison reason (say, another schema version) stays too.
        assert_eq!(
            all.judge(&letter("unsupported_schema_version", LINE), "logs"),
            Verdict::Leave(Leave::Poison, record_ns())
        );
        let named = Selection {
            reasons: vec!["invalid_json".into()],
            ..Selection::default()
        };
        let mut l = letter("invalid_json", "not json");
        l.key = Some(b"k");
        assert_eq!(
            named.judge(&l, "logs"),
            Verdict::Move {
                key: Some(b"k".to_vec()),
                record_ns: None
            }
        );
    }

    #[test]
    fn each_filter_narrows_and_a_letter_from_another_topic_stays() {
        let l = letter("line_too_long", LINE);
        let leave = Verdict::Leave(Leave::NotSelected, record_ns());
        let s = |f: &dyn Fn(&mut Selection)| {
            let mut s = Selection::default();
            f(&mut s);
            s.judge(&l, "logs")
        };
        assert_eq!(s(&|s| s.reasons = vec!["too_far_behind".into()]), leave);
        assert_eq!(s(&|s| s.written = (Some(2_001), None)), leave);
        assert_eq!(s(&|s| s.written = (None, Some(2_000))), leave);
        assert!(matches!(
            s(&|s| s.written = (Some(2_000), Some(2_001))),
            Verdict::Move { .. }
        ));
        let ts = record_ns().unwrap();
        assert_eq!(s(&|s| s.record_time = (Some(ts + 1), None)), leave);
        assert!(matches!(
            s(&|s| s.record_time = (Some(ts), Some(ts + 1))),
            Verdict::Move { .. }
        ));
        assert_eq!(s(&|s| s.source_partitions = vec![0, 2]), leave);
        assert!(matches!(
            s(&|s| s.source_partitions = vec![1]),
            Verdict::Move { .. }
        ));
        assert_eq!(
            Selection::default().judge(&l, "other-logs"),
            Verdict::Leave(Leave::OtherTopic, record_ns())
        );
    }

    #[test]
    fn a_record_time_filter_never_selects_a_poison_message() {
        let s = Selection {
            reasons: vec!["invalid_json".into()],
            record_time: (Some(0), None),
            ..Selection::default()
        };
        assert_eq!(
            s.judge(&letter("invalid_json", "x"), "logs"),
            Verdict::Leave(Leave::NotSelected, None)
        );
    }

    #[test]
    fn poison_reasons_are_the_wire_form_s() {
        assert!(is_poison_reason("invalid_json"));
        assert!(is_poison_reason("empty_value"));
        assert!(!is_poison_reason("line_too_long"));
        assert!(!is_poison_reason(UNKNOWN_REASON));
    }
}
