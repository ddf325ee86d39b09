//! The Kafka wire form of a record (DESIGN.md, "Kafka message"): key = `service`, value = the
//! canonical compact JSON, headers `schema-version: 1` and `content-type: application/json`;
//! plus the header names of dead-letter messages and of records re-published from them.

use thiserror::Error;

pub use crate::record::NotCanonical;
use crate::record::{restamp_json, LogRecord};
use crate::timestamp::Timestamp;
use crate::validate::{parse_record, Reason, RecordError};

/// Header carrying the schema version.
pub const HEADER_SCHEMA_VERSION: &str = "schema-version";
/// The schema version this crate writes and reads.
pub const SCHEMA_VERSION: &str = "1";
/// Header carrying the value's content type.
pub const HEADER_CONTENT_TYPE: &str = "content-type";
/// The content type of values.
pub const CONTENT_TYPE_JSON: &str = "application/json";

/// The headers every record message carries, in order.
pub const RECORD_HEADERS: [(&str, &str); 2] = [
    (HEADER_SCHEMA_VERSION, SCHEMA_VERSION),
    (HEADER_CONTENT_TYPE, CONTENT_TYPE_JSON),
];

/// Dead-letter header: the human-readable error.
pub const DLQ_HEADER_ERROR: &str = "dlq-error";
/// Dead-letter header: the reason code (a closed set, as in metrics).
pub const DLQ_HEADER_REASON: &str = "dlq-reason";
/// Dead-letter header: the topic the message came from.
pub const DLQ_HEADER_SOURCE_TOPIC: &str = "dlq-source-topic";
/// Dead-letter header: the partition the message came from.
pub const DLQ_HEADER_SOURCE_PARTITION: &str = "dlq-source-partition";
/// Dead-letter header: the offset the message had.
pub const DLQ_HEADER_SOURCE_OFFSET: &str = "dlq-source-offset";

/// Header of a record re-published from the dead-letter topic (`consumer redrive`): the
/// dead-letter topic it came from. The consumer ignores it; the redrive uses it to recognise
/// its own copies after a crash.
pub const REDRIVE_HEADER_TOPIC: &str = "redriven-from-topic";
/// Redrive header: the dead letter's partition.
pub const REDRIVE_HEADER_PARTITION: &str = "redriven-from-partition";
/// Redrive header: the dead letter's offset.
pub const REDRIVE_HEADER_OFFSET: &str = "redriven-from-offset";

/// The message key of a record: its service, so one service's records stay in order on one
/// partition.
pub fn key<'r>(record: &'r LogRecord<'_>) -> &'r [u8] {
    record.service.as_bytes()
}

/// Appends the message value (canonical compact JSON) to `out`.
pub fn encode_value(record: &LogRecord<'_>, out: &mut Vec<u8>) {
    record.write_json(out);
}

/// Replaces the timestamp of a value [`encode_value`] wrote, in place: the bytes become exactly
/// what encoding the record with `timestamp` gives (a `--loop` replay re-dates records it
/// already encoded). Refuses bytes `encode_value` did not write, leaving them unchanged.
pub fn restamp_value(value: &mut [u8], timestamp: Timestamp) -> Result<(), NotCanonical> {
    restamp_json(value, timestamp)
}

/// A Kafka message that is not a valid record.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum WireError {
    /// The message has no value (a tombstone).
    #[error("message has no value")]
    EmptyValue,
    /// A `schema-version` header other than the one this build reads.
    #[error("unsupported schema-version header {0:?} (this build reads {SCHEMA_VERSION})")]
    UnsupportedSchemaVersion(String),
    /// A `content-type` header other than JSON.
    #[error("unsupported content-type header {0:?}")]
    UnsupportedContentType(String),
    /// The value breaks the data contract.
    #[error(transparent)]
    Record(#[from] RecordError),
}

impl WireError {
    /// The reason code for metrics and dead-letter headers.
    pub fn reason(&self) -> &'static str {
        match self {
            WireError::EmptyValue => "empty_value",
            WireError::UnsupportedSchemaVersion(_) => "unsupported_schema_version",
            WireError::UnsupportedContentType(_) => "unsupported_content_type",
            WireError::Record(e) => e.reason().as_str(),
        }
    }

    /// Every reason code [`WireError::reason`] can return.
    pub fn all_reasons() -> impl Iterator<Item = &'static str> {
        [
            "empty_value",
            "unsupported_schema_version",
            "unsupported_content_type",
        ]
        .into_iter()
        .chain(Reason::ALL.iter().map(|r| r.as_str()))
    }
}

/// Parses a message back into a record, checking the headers when present (messages from other
/// producers may lack them) and re-validating the value: a consumer never trusts its input.
pub fn decode<'a, 'h, H>(value: Option<&'a [u8]>, headers: H) -> Result<LogRecord<'a>, WireError>
where
    H: IntoIterator<Item = (&'h str, Option<&'h [u8]>)>,
{
    decode_with_text(value, headers).map(|(record, _)| record)
}

/// Like [`decode`], also returning the value as text (validated as UTF-8 once, for callers
/// that forward the canonical bytes as they are).
pub fn decode_with_text<'a, 'h, H>(
    value: Option<&'a [u8]>,
    headers: H,
) -> Result<(LogRecord<'a>, &'a str), WireError>
where
    H: IntoIterator<Item = (&'h str, Option<&'h [u8]>)>,
{
    for (name, v) in headers {
        let v = v.unwrap_or_default();
        if name.eq_ignore_ascii_case(HEADER_SCHEMA_VERSION) && v != SCHEMA_VERSION.as_bytes() {
            return Err(WireError::UnsupportedSchemaVersion(
                String::from_utf8_lossy(v).into_owned(),
            ));
        }
        if name.eq_ignore_ascii_case(HEADER_CONTENT_TYPE)
            && !v.starts_with(CONTENT_TYPE_JSON.as_bytes())
        {
            return Err(WireError::UnsupportedContentType(
                String::from_utf8_lossy(v).into_owned(),
            ));
        }
    }
    let value = value
        .filter(|v| !v.is_empty())
        .ok_or(WireError::EmptyValue)?;
    let text = std::str::from_utf8(value).map_err(|e| {
        WireError::Record(RecordError::InvalidUtf8 {
            offset: e.valid_up_to(),
        })
    })?;
    Ok((parse_record(text)?, text))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validate::parse_record;

    const REC: &str = r#"{"timestamp":"2026-01-02T03:04:05.5+01:00","level":"Warning","service":"api","message":"m","n":{"a": 1}}"#;

    #[test]
    fn encodes_key_and_canonical_value() {
        let r = parse_record(REC).unwrap();
        let mut v = Vec::new();
        encode_value(&r, &mut v);
        assert_eq!(key(&r), b"api");
        assert_eq!(
            std::str::from_utf8(&v).unwrap(),
            r#"{"timestamp":"2026-01-02T02:04:05.500000000Z","level":"warn","service":"api","message":"m","n":{"a":1}}"#
        );
    }

    #[test]
    fn restamping_a_value_equals_encoding_the_record_with_the_new_timestamp() {
        let mut record = parse_record(REC).unwrap();
        let mut value = Vec::new();
        encode_value(&record, &mut value);
        for nanos in [0, 1, 999_999_999, 1_767_323_045_123_456_789, i64::MAX] {
            let ts = Timestamp::from_nanos(nanos).unwrap();
            record.timestamp = ts;
            let mut want = Vec::new();
            encode_value(&record, &mut want);
            restamp_value(&mut value, ts).unwrap();
            assert_eq!(
                String::from_utf8_lossy(&value),
                String::from_utf8_lossy(&want)
            );
        }
    }

    #[test]
    fn the_timestamp_opens_the_value_at_a_fixed_width() {
        // restamp_value relies on this layout: it fails here first if encode_value changes it.
        let r = parse_record(REC).unwrap();
        let mut v = Vec::new();
        encode_value(&r, &mut v);
        let text = std::str::from_utf8(&v).unwrap();
        let stamp = r.timestamp.to_rfc3339();
        assert_eq!(stamp.len(), Timestamp::RFC3339_LEN);
        assert!(
            text.starts_with(&format!("{{\"timestamp\":\"{stamp}\",")),
            "{text}"
        );
    }

    #[test]
    fn restamping_refuses_bytes_encode_value_did_not_write() {
        let ts = Timestamp::from_nanos(1).unwrap();
        for other in [
            &br#"{"level":"info","timestamp":"2026-01-02T02:04:05.500000000Z"}"#[..],
            br#"{"timestamp":"2026-01-02T02:04:05Z","level":"info"}"#,
            br#"{"timestamp":"2026-01-02T02:04:05.500000000Z"#,
            b"",
        ] {
            let mut v = other.to_vec();
            assert_eq!(restamp_value(&mut v, ts), Err(NotCanonical));
            assert_eq!(v, other, "left unchanged");
        }
    }

    #[test]
    fn decodes_what_it_encodes() {
        let r = parse_record(REC).unwrap();
        let mut v = Vec::new();
        encode_value(&r, &mut v);
        let headers = RECORD_HEADERS.map(|(k, v)| (k, Some(v.as_bytes())));
        assert_eq!(decode(Some(&v), headers).unwrap(), r);
    }

    #[test]
    fn decodes_without_headers() {
        assert!(decode(Some(REC.as_bytes()), []).is_ok());
    }

    #[test]
    fn rejects_other_schema_versions_and_content_types() {
        let e = decode(Some(REC.as_bytes()), [("schema-version", Some(&b"2"[..]))]).unwrap_err();
        assert_eq!(e.reason(), "unsupported_schema_version");
        let e = decode(
            Some(REC.as_bytes()),
            [("content-type", Some(&b"text/plain"[..]))],
        )
        .unwrap_err();
        assert_eq!(e.reason(), "unsupported_content_type");
    }

    #[test]
    fn rejects_tombstones_and_bad_values_with_reasons() {
        assert_eq!(decode(None, []).unwrap_err(), WireError::EmptyValue);
        assert_eq!(decode(Some(b""), []).unwrap_err(), WireError::EmptyValue);
        assert_eq!(
            decode(Some(b"not json"), []).unwrap_err().reason(),
            "invalid_json"
        );
        assert_eq!(
            decode(Some(b"\xff"), []).unwrap_err().reason(),
            "invalid_utf8"
        );
    }
}
