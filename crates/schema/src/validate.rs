//! Parsing one JSON object into a [`LogRecord`] and applying every rule of DESIGN.md's data
//! contract table. Each failure is a typed [`RecordError`] whose [`Reason`] is a closed set,
//! usable as a metric label.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;
use thiserror::Error;

use crate::record::{Level, LogRecord, MAX_SERVICE_LEN};
use crate::timestamp::{Timestamp, TimestampError};

/// Why a record (or a piece of input) was rejected: a closed set of codes for metric labels
/// (`ingestion_errors_total{reason}`) and error reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    /// Input bytes are not valid UTF-8.
    InvalidUtf8,
    /// Not parseable as JSON.
    InvalidJson,
    /// A JSON value that is not an object where a record was expected.
    NotAnObject,
    /// Input ended inside a record or before a JSON array was closed.
    Truncated,
    /// A record over the size cap.
    RecordTooLarge,
    /// A required field is absent.
    MissingField,
    /// A field has the wrong JSON type.
    WrongType,
    /// A field appears twice in one record.
    DuplicateField,
    /// `timestamp` is not RFC 3339 or an epoch number.
    InvalidTimestamp,
    /// `timestamp` is before 1970 or after 2262.
    TimestampOutOfRange,
    /// `level` is not one of the accepted names.
    InvalidLevel,
    /// `service` is empty.
    EmptyService,
    /// `service` is longer than 128 bytes.
    ServiceTooLong,
    /// The input could not be read (an I/O error, not the record's fault).
    ReadFailed,
}

impl Reason {
    /// Every reason (for pre-initialising metric series to 0).
    pub const ALL: [Reason; 14] = [
        Reason::InvalidUtf8,
        Reason::InvalidJson,
        Reason::NotAnObject,
        Reason::Truncated,
        Reason::RecordTooLarge,
        Reason::MissingField,
        Reason::WrongType,
        Reason::DuplicateField,
        Reason::InvalidTimestamp,
        Reason::TimestampOutOfRange,
        Reason::InvalidLevel,
        Reason::EmptyService,
        Reason::ServiceTooLong,
        Reason::ReadFailed,
    ];

    /// The snake_case code.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::InvalidUtf8 => "invalid_utf8",
            Reason::InvalidJson => "invalid_json",
            Reason::NotAnObject => "not_an_object",
            Reason::Truncated => "truncated",
            Reason::RecordTooLarge => "record_too_large",
            Reason::MissingField => "missing_field",
            Reason::WrongType => "wrong_type",
            Reason::DuplicateField => "duplicate_field",
            Reason::InvalidTimestamp => "invalid_timestamp",
            Reason::TimestampOutOfRange => "timestamp_out_of_range",
            Reason::InvalidLevel => "invalid_level",
            Reason::EmptyService => "empty_service",
            Reason::ServiceTooLong => "service_too_long",
            Reason::ReadFailed => "read_failed",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A record that breaks the data contract.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RecordError {
    /// The bytes are not valid UTF-8; `offset` is the first bad byte within the record.
    #[error("invalid UTF-8 at byte {offset} of the record")]
    InvalidUtf8 {
        /// Byte offset of the first invalid byte, relative to the record's start.
        offset: usize,
    },
    /// The text is not valid JSON.
    #[error("invalid JSON at line {line} column {column} of the record: {detail}")]
    InvalidJson {
        /// serde_json's description.
        detail: String,
        /// 1-based line within the record.
        line: usize,
        /// 1-based column within the record.
        column: usize,
        /// The text ended before the JSON value did.
        eof: bool,
    },
    /// Valid JSON, but not an object.
    #[error("record is a JSON {found}, not an object")]
    NotAnObject {
        /// The JSON type found (`array`, `string`, …).
        found: &'static str,
    },
    /// A required field is absent (or `null`).
    #[error("missing required field `{0}`")]
    MissingField(&'static str),
    /// A field has the wrong JSON type.
    #[error("field `{field}` must be {expected}")]
    WrongType {
        /// The field.
        field: &'static str,
        /// What it must be.
        expected: &'static str,
    },
    /// A field appears more than once.
    #[error("field `{0}` appears more than once")]
    DuplicateField(String),
    /// The timestamp is invalid.
    #[error("field `timestamp` {value:?}: {source}")]
    Timestamp {
        /// The offending value (truncated to 64 bytes).
        value: String,
        /// What is wrong with it.
        source: TimestampError,
    },
    /// The level is not accepted.
    #[error("field `level` {0:?} is not one of trace, debug, info, warn, warning, error, fatal, critical")]
    InvalidLevel(String),
    /// `service` is the empty string.
    #[error("field `service` is empty")]
    EmptyService,
    /// `service` is too long.
    #[error("field `service` is {0} bytes, more than the 128 allowed")]
    ServiceTooLong(usize),
}

impl RecordError {
    /// The reason code for metrics.
    pub fn reason(&self) -> Reason {
        match self {
            RecordError::InvalidUtf8 { .. } => Reason::InvalidUtf8,
            RecordError::InvalidJson { .. } => Reason::InvalidJson,
            RecordError::NotAnObject { .. } => Reason::NotAnObject,
            RecordError::MissingField(_) => Reason::MissingField,
            RecordError::WrongType { .. } => Reason::WrongType,
            RecordError::DuplicateField(_) => Reason::DuplicateField,
            RecordError::Timestamp { source, .. } => match source {
                TimestampError::Syntax(_) => Reason::InvalidTimestamp,
                TimestampError::OutOfRange => Reason::TimestampOutOfRange,
            },
            RecordError::InvalidLevel(_) => Reason::InvalidLevel,
            RecordError::EmptyService => Reason::EmptyService,
            RecordError::ServiceTooLong(_) => Reason::ServiceTooLong,
        }
    }
}

/// Parses and validates one record from bytes (checking UTF-8 first).
pub fn parse_record_bytes(input: &[u8]) -> Result<LogRecord<'_>, RecordError> {
    let text = std::str::from_utf8(input).map_err(|e| RecordError::InvalidUtf8 {
        offset: e.valid_up_to(),
    })?;
    parse_record(text)
}

/// Parses and validates one record: a JSON object with the contract fields.
pub fn parse_record(input: &str) -> Result<LogRecord<'_>, RecordError> {
    let first = input.bytes().find(|b| !b.is_ascii_whitespace());
    if first != Some(b'{') {
        return Err(match serde_json::from_str::<&RawValue>(input) {
            Ok(_) => RecordError::NotAnObject {
                found: json_type_name(first),
            },
            Err(e) => json_error(&e),
        });
    }
    let fields: RawFields<'_> = serde_json::from_str(input).map_err(|e| json_error(&e))?;
    build(fields)
}

fn json_error(e: &serde_json::Error) -> RecordError {
    RecordError::InvalidJson {
        detail: e.to_string(),
        line: e.line(),
        column: e.column(),
        eof: e.is_eof(),
    }
}

fn json_type_name(first: Option<u8>) -> &'static str {
    match first {
        Some(b'[') => "array",
        Some(b'"') => "string",
        Some(b't' | b'f') => "boolean",
        Some(b'n') => "null",
        _ => "number",
    }
}

fn build(raw: RawFields<'_>) -> Result<LogRecord<'_>, RecordError> {
    if let Some(dup) = raw.duplicate {
        return Err(RecordError::DuplicateField(dup));
    }
    let [timestamp, level, service, message] = raw.core;
    let fields = raw.fields;
    let timestamp = parse_timestamp(required(timestamp, "timestamp")?)?;
    let level_raw = string_field(required(level, "level")?, "level")?;
    let level = Level::parse(&level_raw)
        .ok_or_else(|| RecordError::InvalidLevel(truncate(&level_raw, 64)))?;
    let service = string_field(required(service, "service")?, "service")?;
    if service.is_empty() {
        return Err(RecordError::EmptyService);
    }
    if service.len() > MAX_SERVICE_LEN {
        return Err(RecordError::ServiceTooLong(service.len()));
    }
    let message = string_field(required(message, "message")?, "message")?;
    Ok(LogRecord {
        timestamp,
        level,
        service,
        message,
        fields,
    })
}

fn required<'a>(v: Option<&'a RawValue>, name: &'static str) -> Result<&'a RawValue, RecordError> {
    match v {
        Some(v) if v.get() != "null" => Ok(v),
        _ => Err(RecordError::MissingField(name)),
    }
}

/// A JSON string field's content, borrowed when it has no escapes.
fn string_field<'a>(v: &'a RawValue, name: &'static str) -> Result<Cow<'a, str>, RecordError> {
    let raw = v.get();
    if !raw.starts_with('"') {
        return Err(RecordError::WrongType {
            field: name,
            expected: "a string",
        });
    }
    let inner = &raw[1..raw.len() - 1];
    if memchr::memchr(b'\\', inner.as_bytes()).is_none() {
        return Ok(Cow::Borrowed(inner));
    }
    serde_json::from_str::<String>(raw)
        .map(Cow::Owned)
        .map_err(|e| json_error(&e))
}

fn parse_timestamp(v: &RawValue) -> Result<Timestamp, RecordError> {
    let raw = v.get();
    let result = match raw.as_bytes().first() {
        Some(b'"') => {
            let s = string_field(v, "timestamp")?;
            Timestamp::parse_rfc3339(&s)
        }
        Some(b'-' | b'0'..=b'9') => {
            let (int, frac) = raw.split_once('.').unwrap_or((raw, ""));
            let plain = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
            if !int.is_empty() && plain(int) && plain(frac) {
                match int.parse::<u64>() {
                    Ok(n) => Timestamp::from_epoch_decimal(n, frac),
                    Err(_) => Err(TimestampError::OutOfRange),
                }
            } else {
                match raw.parse::<f64>() {
                    Ok(f) => Timestamp::from_epoch_f64(f),
                    Err(_) => Err(TimestampError::Syntax("number")),
                }
            }
        }
        _ => {
            return Err(RecordError::WrongType {
                field: "timestamp",
                expected: "an RFC 3339 string or an epoch number",
            })
        }
    };
    result.map_err(|source| RecordError::Timestamp {
        value: truncate(raw, 64),
        source,
    })
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// Removes insignificant whitespace from a raw JSON value; borrows when there is none.
fn compact(v: &RawValue) -> Cow<'_, RawValue> {
    let s = v.get();
    let b = s.as_bytes();
    // Strings, scalars and values without any whitespace byte (the common case) are borrowed.
    if !matches!(b.first(), Some(b'{' | b'[')) {
        return Cow::Borrowed(v);
    }
    if memchr::memchr3(b' ', b'\n', b'\t', b).is_none() && memchr::memchr(b'\r', b).is_none() {
        return Cow::Borrowed(v);
    }
    let mut in_str = false;
    let mut esc = false;
    let mut first_ws = None;
    for (i, &c) in b.iter().enumerate() {
        if in_str {
            if esc {
                esc = false;
            } else if c == b'\\' {
                esc = true;
            } else if c == b'"' {
                in_str = false;
            }
        } else if c == b'"' {
            in_str = true;
        } else if matches!(c, b' ' | b'\n' | b'\r' | b'\t') {
            first_ws = Some(i);
            break;
        }
    }
    let Some(start) = first_ws else {
        return Cow::Borrowed(v);
    };
    let mut out = String::with_capacity(s.len());
    out.push_str(&s[..start]);
    for ch in s[start..].chars() {
        if in_str {
            out.push(ch);
            if esc {
                esc = false;
            } else if ch == '\\' {
                esc = true;
            } else if ch == '"' {
                in_str = false;
            }
        } else if ch == '"' {
            in_str = true;
            out.push(ch);
        } else if !matches!(ch, ' ' | '\n' | '\r' | '\t') {
            out.push(ch);
        }
    }
    match RawValue::from_string(out) {
        Ok(b) => Cow::Owned(b),
        // Removing whitespace outside strings cannot make valid JSON invalid; keep the original
        // should that ever be wrong.
        Err(_) => Cow::Borrowed(v),
    }
}

/// The top-level object: the four contract fields' raw values, the other fields compacted in
/// input order, and the first repeated name, if any.
struct RawFields<'a> {
    core: [Option<&'a RawValue>; 4],
    fields: Vec<(Cow<'a, str>, Cow<'a, RawValue>)>,
    duplicate: Option<String>,
}

impl<'de> Deserialize<'de> for RawFields<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawFields<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut out = RawFields {
                    core: [None; 4],
                    fields: Vec::with_capacity(12),
                    duplicate: None,
                };
                while let Some(Key(key)) = map.next_key::<Key<'de>>()? {
                    let value: &'de RawValue = map.next_value()?;
                    let slot = match key.as_ref() {
                        "timestamp" => 0,
                        "level" => 1,
                        "service" => 2,
                        "message" => 3,
                        _ => {
                            if out.duplicate.is_none() && out.fields.iter().any(|(k, _)| *k == key)
                            {
                                out.duplicate = Some(key.clone().into_owned());
                            }
                            out.fields.push((key, compact(value)));
                            continue;
                        }
                    };
                    if out.core[slot].replace(value).is_some() && out.duplicate.is_none() {
                        out.duplicate = Some(key.into_owned());
                    }
                }
                Ok(out)
            }
        }
        d.deserialize_map(V)
    }
}

struct Key<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string key")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Key(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(Key(Cow::Owned(v)))
            }
        }
        d.deserialize_str(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str =
        r#"{"timestamp":"2026-01-02T03:04:05Z","level":"INFO","service":"api","message":"hi"}"#;

    fn with(field: &str, value: &str) -> String {
        let mut v: serde_json::Map<String, serde_json::Value> = serde_json::from_str(GOOD).unwrap();
        if value == "<absent>" {
            v.remove(field);
        } else {
            v.insert(field.into(), serde_json::from_str(value).unwrap());
        }
        serde_json::to_string(&v).unwrap()
    }

    fn reason(input: &str) -> Reason {
        parse_record(input).unwrap_err().reason()
    }

    #[test]
    fn accepts_a_minimal_record_and_normalises_it() {
        let r = parse_record(GOOD).unwrap();
        assert_eq!(r.level, Level::Info);
        assert_eq!(
            r.to_json(),
            r#"{"timestamp":"2026-01-02T03:04:05.000000000Z","level":"info","service":"api","message":"hi"}"#
        );
    }

    #[test]
    fn keeps_extra_fields_verbatim_in_order_and_compacts_them() {
        let input = r#"{"b": 1, "timestamp":1767323045,"level":"warning","service":"api","message":"m",
            "http": { "method" : "GET", "path": "/a b" }, "a": [1, 2]}"#;
        let r = parse_record(input).unwrap();
        assert_eq!(
            r.to_json(),
            r#"{"timestamp":"2026-01-02T03:04:05.000000000Z","level":"warn","service":"api","message":"m","b":1,"http":{"method":"GET","path":"/a b"},"a":[1,2]}"#
        );
    }

    #[test]
    fn borrows_unescaped_strings_from_the_input() {
        let r = parse_record(GOOD).unwrap();
        assert!(matches!(r.service, Cow::Borrowed(_)));
        assert!(matches!(r.message, Cow::Borrowed(_)));
    }

    #[test]
    fn unescapes_escaped_strings() {
        let input = with("message", r#""a\"b\u00e9""#);
        let r = parse_record(&input).unwrap();
        assert_eq!(r.message, "a\"bé");
    }

    #[test]
    fn rejects_missing_timestamp() {
        assert_eq!(
            parse_record(&with("timestamp", "<absent>")).unwrap_err(),
            RecordError::MissingField("timestamp")
        );
    }

    #[test]
    fn rejects_missing_level() {
        assert_eq!(reason(&with("level", "<absent>")), Reason::MissingField);
    }

    #[test]
    fn rejects_missing_service() {
        assert_eq!(reason(&with("service", "<absent>")), Reason::MissingField);
    }

    #[test]
    fn rejects_missing_message() {
        assert_eq!(reason(&with("message", "<absent>")), Reason::MissingField);
    }

    #[test]
    fn treats_null_as_missing() {
        assert_eq!(
            parse_record(&with("message", "null")).unwrap_err(),
            RecordError::MissingField("message")
        );
    }

    #[test]
    fn rejects_non_string_message() {
        assert_eq!(
            parse_record(&with("message", "42")).unwrap_err(),
            RecordError::WrongType {
                field: "message",
                expected: "a string"
            }
        );
    }

    #[test]
    fn rejects_non_string_service_and_level() {
        assert_eq!(reason(&with("service", "[1]")), Reason::WrongType);
        assert_eq!(reason(&with("level", "3")), Reason::WrongType);
    }

    #[test]
    fn rejects_boolean_timestamp() {
        assert_eq!(reason(&with("timestamp", "true")), Reason::WrongType);
    }

    #[test]
    fn rejects_unparseable_timestamp_string() {
        assert_eq!(
            reason(&with("timestamp", r#""yesterday""#)),
            Reason::InvalidTimestamp
        );
    }

    #[test]
    fn rejects_negative_epoch() {
        assert_eq!(
            reason(&with("timestamp", "-5")),
            Reason::TimestampOutOfRange
        );
    }

    #[test]
    fn accepts_epoch_seconds_millis_micros_nanos_and_fractional_seconds() {
        let want = "2026-01-02T03:04:05.000000000Z";
        for v in [
            "1767323045",
            "1767323045000",
            "1767323045000000",
            "1767323045000000000",
            "1767323045.0",
            "1767323045000.000",
            "1.767323045e9",
        ] {
            let input = with("timestamp", v);
            let r = parse_record(&input).unwrap();
            assert_eq!(r.timestamp.to_rfc3339(), want, "{v}");
        }
    }

    #[test]
    fn rejects_unknown_level() {
        let e = parse_record(&with("level", r#""verbose""#)).unwrap_err();
        assert_eq!(e, RecordError::InvalidLevel("verbose".into()));
        assert_eq!(e.reason().as_str(), "invalid_level");
    }

    #[test]
    fn rejects_empty_service() {
        assert_eq!(reason(&with("service", r#""""#)), Reason::EmptyService);
    }

    #[test]
    fn rejects_service_over_128_bytes_and_accepts_exactly_128() {
        let long = format!("\"{}\"", "s".repeat(129));
        assert_eq!(
            parse_record(&with("service", &long)).unwrap_err(),
            RecordError::ServiceTooLong(129)
        );
        let max = format!("\"{}\"", "s".repeat(128));
        assert!(parse_record(&with("service", &max)).is_ok());
    }

    #[test]
    fn rejects_duplicate_fields() {
        let dup = r#"{"timestamp":1,"level":"info","service":"a","message":"m","level":"warn"}"#;
        assert_eq!(
            parse_record(dup).unwrap_err(),
            RecordError::DuplicateField("level".into())
        );
        let dup_extra = r#"{"timestamp":1,"level":"info","service":"a","message":"m","x":1,"x":2}"#;
        assert_eq!(reason(dup_extra), Reason::DuplicateField);
    }

    #[test]
    fn rejects_non_objects_naming_the_type() {
        assert_eq!(
            parse_record("[1,2]").unwrap_err(),
            RecordError::NotAnObject { found: "array" }
        );
        assert_eq!(reason("\"str\""), Reason::NotAnObject);
        assert_eq!(reason("12"), Reason::NotAnObject);
    }

    #[test]
    fn rejects_invalid_json_with_its_position() {
        let e = parse_record("{\"timestamp\":\n tru}").unwrap_err();
        match e {
            RecordError::InvalidJson { line, .. } => assert_eq!(line, 2),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn rejects_invalid_utf8_with_its_offset() {
        let mut bytes = GOOD.as_bytes().to_vec();
        bytes[70] = 0xff;
        assert_eq!(
            parse_record_bytes(&bytes).unwrap_err(),
            RecordError::InvalidUtf8 { offset: 70 }
        );
    }

    #[test]
    fn field_str_reads_strings_and_other_values() {
        let r = parse_record(
            r#"{"timestamp":1,"level":"info","service":"a","message":"m","t":"x\"y","n":5,"z":null}"#,
        )
        .unwrap();
        assert_eq!(r.field_str("t").unwrap(), "x\"y");
        assert_eq!(r.field_str("n").unwrap(), "5");
        assert_eq!(r.field_str("z"), None);
        assert_eq!(r.field_str("absent"), None);
    }
}
